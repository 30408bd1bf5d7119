//! Supply-chain risk fixtures shared by the risk tests: releases whose CycloneDX SBOMs pin
//! known-vulnerable PyPI packages (and a clean one), devices polling as running them, the real
//! PyPI advisories of ../shared/vectors/osv-pypi and their import through the management API;
//! firmware images whose parts NVD records match by CPE or name.

use rampart_repo::{NoProgress, ReleaseRequest, Repository};
use serde_json::{Value, json};

use super::ops::Ops;
use super::*;

pub const OSV_PYPI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);

/// NVD records and Yocto-like image SBOMs written after the public ones (decision 0048).
pub const FIRMWARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rampart-vuln/tests/data/nvd-firmware"
);

pub const VULNERABLE_PINS: [(&str, &str); 6] = [
    ("requests", "2.19.0"),
    ("urllib3", "1.24.1"),
    ("jinja2", "2.10"),
    ("PyYAML", "5.3"),
    ("Django", "2.2.0"),
    ("Pillow", "8.0.0"),
];

pub fn cyclonedx(pins: &[(&str, &str)]) -> String {
    let components: Vec<Value> = pins
        .iter()
        .map(|(name, version)| {
            let purl = format!("pkg:pypi/{}@{version}", name.to_ascii_lowercase());
            json!({"type": "library", "bom-ref": purl, "name": name, "version": version, "purl": purl})
        })
        .collect();
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": components})
        .to_string()
}

/// A release to publish: target name, version, hardware ids and its SBOM's text.
pub struct SbomRelease<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub hardware: &'a [&'a str],
    pub sbom: String,
}

/// Publishes `releases` (each image a few bytes of text, its SBOM attached) into the hosted
/// repository and waits until the hosted view lists them all. (It notices a new
/// `timestamp.json` by its modification time and length, so the repository is written at
/// least a second after the server read it; it rechecks every two seconds, so this waits on
/// the state, however long a busy machine takes.)
pub async fn publish_sbom_releases(ops: &Ops, releases: &[SbomRelease<'_>]) {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let dir = ops.repo_dir.path();
    let repo = Repository::open(&dir.join("repo")).unwrap();
    let mut requests = Vec::new();
    for release in releases {
        let image = dir.join(release.name);
        std::fs::write(&image, format!("firmware {}", release.name).repeat(100)).unwrap();
        let sbom = dir.join(format!("{}.cdx.json", release.name));
        std::fs::write(&sbom, &release.sbom).unwrap();
        requests.push(ReleaseRequest {
            image,
            target_name: Some(release.name.to_owned()),
            hardware_ids: release.hardware.iter().map(|h| (*h).to_owned()).collect(),
            version: release.version.to_owned(),
            security_version: 1,
            sbom: Some(sbom),
            provenance: None,
            role: None,
        });
    }
    let now = unix_now();
    repo.add_releases(&requests, &open_key, now, &NoProgress)
        .unwrap();
    repo.publish(&open_key, now).unwrap();
    wait_until("the hosted repository lists the SBOM releases", || async {
        let r = ops
            .call(&ops.viewer, "GET", "/api/v1/releases", None)
            .await
            .json();
        let listed = r["releases"].as_array().cloned().unwrap_or_default();
        releases
            .iter()
            .all(|t| listed.iter().any(|r| r["target"] == t.name))
    })
    .await;
}

/// Adds `fw-vuln.bin` (3.0.0, the vulnerable pins) and `fw-clean.bin` (4.0.0, a package no
/// advisory names) for board-a and board-b to the hosted repository.
pub async fn add_sbom_releases(ops: &Ops) {
    let boards = ["board-a", "board-b"];
    publish_sbom_releases(
        ops,
        &[
            SbomRelease {
                name: "fw-vuln.bin",
                version: "3.0.0",
                hardware: &boards,
                sbom: cyclonedx(&VULNERABLE_PINS),
            },
            SbomRelease {
                name: "fw-clean.bin",
                version: "4.0.0",
                hardware: &boards,
                sbom: cyclonedx(&[("rampart-test-clean-lib", "1.0.0")]),
            },
        ],
    )
    .await;
}

pub async fn poll_as(ops: &Ops, id: &str, hardware: &str, region: &str, version: &str) {
    let mut dev = ops.server.connect(&ops.fx.device(id)).await;
    let r = dev
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": hardware, "firmware_version": version, "security_version": 1,
                    "region": region, "tags": [], "slots": {"a": "good", "b": "inactive"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
}

pub fn real_advisories() -> Vec<Value> {
    let mut paths: Vec<_> = std::fs::read_dir(OSV_PYPI)
        .unwrap_or_else(|e| panic!("{OSV_PYPI}: {e} (the shared vectors are needed)"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() > 2000, "{} advisories", paths.len());
    paths
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect()
}

/// The real advisories naming the PyPI package `name` (any case).
pub fn advisories_naming(name: &str) -> Vec<Value> {
    real_advisories()
        .into_iter()
        .filter(|r| {
            r["affected"].as_array().into_iter().flatten().any(|a| {
                a["package"]["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
        })
        .collect()
}

pub async fn import(ops: &Ops, token: &str, records: &[Value]) -> Value {
    let mut total = json!({"added": 0, "replaced": 0, "unchanged": 0, "withdrawn": 0});
    for batch in records.chunks(500) {
        let r = ops
            .call(
                token,
                "POST",
                "/api/v1/risk/advisories",
                Some(&json!({"advisories": batch})),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let counts = r.json();
        for key in ["added", "replaced", "unchanged", "withdrawn"] {
            total[key] = json!(total[key].as_u64().unwrap() + counts[key].as_u64().unwrap());
        }
    }
    total
}

pub async fn posture(ops: &Ops, by: &str) -> Value {
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/risk/posture?by={by}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

pub fn row<'a>(posture: &'a Value, key: &str) -> &'a Value {
    posture["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {posture}"))
}

/// Every record of the fixture's NVD documents.
pub fn nvd_records() -> Vec<Value> {
    let mut records = Vec::new();
    for name in [
        "nvd-busybox.json",
        "nvd-u-boot.json",
        "nvd-linux-kernel.json",
        "nvd-urllib3.json",
    ] {
        let path = std::path::Path::new(FIRMWARE).join("nvd").join(name);
        let document: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        records.extend(
            document["vulnerabilities"]
                .as_array()
                .unwrap()
                .iter()
                .cloned(),
        );
    }
    records
}

pub async fn import_nvd(ops: &Ops, token: &str, records: &[Value]) -> Value {
    let r = ops
        .call(
            token,
            "POST",
            "/api/v1/risk/nvd",
            Some(&json!({"vulnerabilities": records})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

/// The fixture SBOM with urllib3 1.24.1 added (by purl and CPE).
fn firmware_image_sbom(file: &str, urllib3: &str) -> String {
    let mut sbom: Value =
        serde_json::from_slice(&std::fs::read(std::path::Path::new(FIRMWARE).join(file)).unwrap())
            .unwrap();
    sbom["components"].as_array_mut().unwrap().push(json!({
        "type": "library", "name": "urllib3", "version": urllib3,
        "purl": format!("pkg:pypi/urllib3@{urllib3}"),
        "cpe": format!("cpe:2.3:a:python:urllib3:{urllib3}:*:*:*:*:*:*:*"),
    }));
    sbom.to_string()
}

/// Adds `fw-yocto-vuln.bin` (5.0.0) and `fw-yocto-fixed.bin` (6.0.0) for board-y.
pub async fn add_firmware_image_releases(ops: &Ops) {
    publish_sbom_releases(
        ops,
        &[
            SbomRelease {
                name: "fw-yocto-vuln.bin",
                version: "5.0.0",
                hardware: &["board-y"],
                sbom: firmware_image_sbom("yocto-image-vulnerable.cdx.json", "1.24.1"),
            },
            SbomRelease {
                name: "fw-yocto-fixed.bin",
                version: "6.0.0",
                hardware: &["board-y"],
                sbom: firmware_image_sbom("yocto-image-fixed.cdx.json", "1.26.19"),
            },
        ],
    )
    .await;
}
