//! The repository refuses to publish what its clients would refuse, and a delegate cannot
//! interfere with releases outside its delegation.

use std::path::{Path, PathBuf};

use rampart_core::Scheme;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_keys::{SignError, Signer};
use rampart_repo::{
    ExpiryDays, InitOptions, NoProgress, ReleaseRequest, RepoError, Repository, RoleSigners,
};

const NOW: i64 = 1_800_000_000;

fn open(r: &str) -> Result<Box<dyn Signer>, SignError> {
    Ok(Box::new(FileSigner::open(Path::new(r), "pw")?))
}

fn keys(dir: &Path, name: &str, scheme: Scheme, n: usize) -> RoleSigners {
    let keys = (0..n)
        .map(|i| {
            let (_, bytes) = FileSigner::generate(
                scheme,
                "pw",
                KdfParams {
                    m_kib: 64,
                    t: 1,
                    p: 1,
                },
            )
            .unwrap();
            let p = dir.join(format!("{name}-{i}.key"));
            std::fs::write(&p, bytes).unwrap();
            p.display().to_string()
        })
        .collect();
    RoleSigners { keys, threshold: 1 }
}

fn repo(dir: &Path, timestamp: RoleSigners) -> Result<Repository, RepoError> {
    let opts = InitOptions {
        root: keys(dir, "root", Scheme::Ed25519, 1),
        targets: keys(dir, "targets", Scheme::Ed25519, 1),
        snapshot: keys(dir, "snapshot", Scheme::Ed25519, 1),
        timestamp,
        expiry_days: ExpiryDays::default(),
    };
    Repository::init(&dir.join("repo"), opts, &open, NOW)
}

fn image(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, name.as_bytes()).unwrap();
    p
}

fn release(img: PathBuf, name: &str, sv: u64, role: Option<&str>) -> ReleaseRequest {
    ReleaseRequest {
        image: img,
        target_name: Some(name.into()),
        hardware_ids: vec!["board-a".into()],
        version: "1.0.0".into(),
        security_version: sv,
        sbom: None,
        provenance: None,
        role: role.map(str::to_string),
    }
}

#[test]
fn a_timestamp_too_large_for_clients_is_never_published() {
    let dir = tempfile::tempdir().unwrap();
    // Ten ML-DSA-65 signatures make a timestamp of about 66 KB, over the 64 KiB clients accept.
    let err = repo(dir.path(), keys(dir.path(), "ts", Scheme::MlDsa65, 10))
        .err()
        .expect("refused");
    assert!(
        matches!(
            err,
            RepoError::TooLargeForClients {
                role: "timestamp",
                ..
            }
        ),
        "{err}"
    );
    assert!(!dir.path().join("repo/metadata/timestamp.json").exists());
    // Three fit.
    let dir = tempfile::tempdir().unwrap();
    repo(dir.path(), keys(dir.path(), "ts", Scheme::MlDsa65, 3)).unwrap();
}

#[test]
fn a_delegate_cannot_block_owner_releases_with_a_huge_security_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = repo(dir.path(), keys(dir.path(), "ts", Scheme::Ed25519, 1)).unwrap();
    r.delegate(
        "vendor",
        vec!["vendor/*".into()],
        keys(dir.path(), "vendor", Scheme::Ed25519, 1),
        false,
        &open,
        NOW,
    )
    .unwrap();
    r.add_releases(
        &[release(
            image(dir.path(), "evil.img"),
            "vendor/evil.img",
            u64::MAX,
            Some("vendor"),
        )],
        &open,
        NOW,
        &NoProgress,
    )
    .unwrap();
    // The owner's own role is unaffected...
    r.add_releases(
        &[release(image(dir.path(), "fw.img"), "fw/fw.img", 5, None)],
        &open,
        NOW,
        &NoProgress,
    )
    .unwrap();
    // ...while within one role security versions still only go up.
    let err = r
        .add_releases(
            &[release(image(dir.path(), "old.img"), "fw/old.img", 4, None)],
            &open,
            NOW,
            &NoProgress,
        )
        .unwrap_err();
    assert!(
        matches!(err, RepoError::SecurityVersionDecrease { existing: 5, .. }),
        "{err}"
    );
}

#[test]
fn release_documents_must_fall_inside_the_delegation_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut r = repo(dir.path(), keys(dir.path(), "ts", Scheme::Ed25519, 1)).unwrap();
    r.delegate(
        "vendor",
        vec!["vendor/*.img".into()],
        keys(dir.path(), "vendor", Scheme::Ed25519, 1),
        false,
        &open,
        NOW,
    )
    .unwrap();
    let sbom = dir.path().join("sbom.json");
    std::fs::write(&sbom, r#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#).unwrap();
    let mut req = release(
        image(dir.path(), "fw.img"),
        "vendor/fw.img",
        1,
        Some("vendor"),
    );
    req.sbom = Some(sbom);
    let err = r.add_releases(&[req], &open, NOW, &NoProgress).unwrap_err();
    assert!(
        matches!(&err, RepoError::OutsideDelegation { target, .. } if target == "vendor/fw.img.cdx.json"),
        "{err}"
    );
    assert!(
        !dir.path().join("repo/targets/vendor").exists(),
        "nothing stored for a refused release"
    );
    r.verify(None, NOW, &NoProgress).unwrap();
}
