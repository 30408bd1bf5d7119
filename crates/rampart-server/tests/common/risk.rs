//! Supply-chain risk fixtures shared by the risk tests: releases whose CycloneDX SBOMs pin
//! known-vulnerable PyPI packages (and a clean one), devices polling as running them, the real
//! PyPI advisories of ../shared/vectors/osv-pypi and their import through the management API.

use rampart_repo::{NoProgress, ReleaseRequest, Repository};
use serde_json::{Value, json};

use super::ops::Ops;
use super::*;

pub const OSV_PYPI: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
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

/// Adds `fw-vuln.bin` (3.0.0, the vulnerable pins) and `fw-clean.bin` (4.0.0, a package no
/// advisory names) for board-a and board-b to the hosted repository.
/// Waits until the hosted view lists them. (It notices a new `timestamp.json` by its modification
/// time and length, so the repository is written at least a second after the server read it.)
pub async fn add_sbom_releases(ops: &Ops) {
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let dir = ops.repo_dir.path();
    let repo = Repository::open(&dir.join("repo")).unwrap();
    let mut requests = Vec::new();
    for (name, version, pins) in [
        ("fw-vuln.bin", "3.0.0", &VULNERABLE_PINS[..]),
        (
            "fw-clean.bin",
            "4.0.0",
            &[("rampart-test-clean-lib", "1.0.0")][..],
        ),
    ] {
        let image = dir.join(name);
        std::fs::write(&image, format!("firmware {name}").repeat(100)).unwrap();
        let sbom = dir.join(format!("{name}.cdx.json"));
        std::fs::write(&sbom, cyclonedx(pins)).unwrap();
        requests.push(ReleaseRequest {
            image,
            target_name: Some(name.to_owned()),
            hardware_ids: vec!["board-a".into(), "board-b".into()],
            version: version.to_owned(),
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
    // The hosted view rechecks the repository every two seconds: wait until it lists both
    // releases (a state, however long a busy machine takes).
    wait_until("the hosted repository lists the SBOM releases", || async {
        let r = ops
            .call(&ops.viewer, "GET", "/api/v1/releases", None)
            .await
            .json();
        let listed = r["releases"].as_array().cloned().unwrap_or_default();
        ["fw-vuln.bin", "fw-clean.bin"]
            .iter()
            .all(|t| listed.iter().any(|r| r["target"] == *t))
    })
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
