//! A release's SBOM: CycloneDX and SPDX JSON are both read by rampart_vuln::sbom, stored under
//! their own suffix and media type, and a refused one stores nothing.

use std::path::{Path, PathBuf};

use rampart_repo::documents::DocumentError;
use rampart_repo::{NoProgress, ReleaseRequest, RepoError};

mod support;

use support::{NOW, open, repo};

fn release(dir: &Path, sbom: &str) -> ReleaseRequest {
    let image = dir.join("fw.img");
    std::fs::write(&image, b"firmware").unwrap();
    let sbom_path: PathBuf = dir.join("sbom.json");
    std::fs::write(&sbom_path, sbom).unwrap();
    ReleaseRequest {
        image,
        target_name: Some("1.0.0/fw.img".into()),
        hardware_ids: vec!["board-a".into()],
        version: "1.0.0".into(),
        security_version: 1,
        sbom: Some(sbom_path),
        provenance: None,
        role: None,
    }
}

/// The `custom.rampart.sbom` reference the signed targets metadata gives the image.
fn sbom_reference(dir: &Path) -> serde_json::Value {
    let metadata = dir.join("repo/metadata");
    let newest = std::fs::read_dir(&metadata)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".targets.json"))
        })
        .max_by_key(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.split('.').next().unwrap().parse::<u64>().unwrap_or(0)
        })
        .expect("a targets metadata file");
    let targets: serde_json::Value =
        serde_json::from_slice(&std::fs::read(newest).unwrap()).unwrap();
    targets["signed"]["targets"]["1.0.0/fw.img"]["custom"]["rampart"]["sbom"].clone()
}

#[test]
fn an_spdx_sbom_is_stored_as_spdx_json_with_its_media_type() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let spdx = r#"{"spdxVersion":"SPDX-2.3","SPDXID":"SPDXRef-DOCUMENT","packages":[
        {"SPDXID":"SPDXRef-busybox","name":"busybox","versionInfo":"1.36.1"}]}"#;
    r.add_releases(&[release(dir.path(), spdx)], &open, NOW, &NoProgress)
        .unwrap();
    r.publish(&open, NOW).unwrap();
    let reference = sbom_reference(dir.path());
    assert_eq!(reference["path"], "1.0.0/fw.img.spdx.json");
    assert_eq!(reference["media_type"], "application/spdx+json");
    r.verify(None, NOW, &NoProgress).unwrap();
}

#[test]
fn a_cyclonedx_sbom_keeps_its_cdx_json_name() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let cyclonedx = r#"{"bomFormat":"CycloneDX","specVersion":"1.6","version":1,
        "components":[{"type":"library","name":"zlib","version":"1.3"}]}"#;
    r.add_releases(&[release(dir.path(), cyclonedx)], &open, NOW, &NoProgress)
        .unwrap();
    let reference = sbom_reference(dir.path());
    assert_eq!(reference["path"], "1.0.0/fw.img.cdx.json");
    assert_eq!(reference["media_type"], "application/vnd.cyclonedx+json");
}

#[test]
fn a_refused_sbom_stores_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let r = repo(dir.path());
    let err = r
        .add_releases(
            &[release(
                dir.path(),
                r#"{"bomFormat":"CycloneDX","specVersion":"2.0"}"#,
            )],
            &open,
            NOW,
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::Document(DocumentError::Sbom(_))),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("supported: 1.2, 1.3, 1.4, 1.5, 1.6"),
        "{err}"
    );
    assert!(!dir.path().join("repo/targets/1.0.0").exists());
    r.verify(None, NOW, &NoProgress).unwrap();
}
