//! `rampart risk sbom-check --vex ... --nvd ...` on firmware parts, by the binary: the Yocto-like
//! image of `rampart-vuln/tests/data/nvd-firmware/` (busybox 1.35.0 without purl or CPE) and
//! its NVD records, with urllib3 1.24.1 added and the real PyPI advisories
//! (`../shared/vectors/osv-pypi/`). A vendor's signed OpenVEX says CVE-2022-28391 does not
//! affect busybox 1.35.0 (named by `identifiers.cpe23`) and PYSEC-2019-133 does not affect
//! urllib3: both leave `matches` for `suppressed` with the justification, and urllib3's
//! CVE-2019-11324, which NVD also lists by CPE, does not come back through the CPE matcher.

use std::path::Path;

use rampart_testkit::cli::{new_key, ok, rampart, s};
use serde_json::{Value, json};

const PYPI_ADVISORIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);
const FIRMWARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rampart-vuln/tests/data/nvd-firmware"
);

const OPENVEX: &str = r#"{
  "@context": "https://openvex.dev/ns/v0.2.0",
  "@id": "https://vendor.example/vex/image-1",
  "author": "Vendor Security",
  "timestamp": "2024-03-01T12:00:00Z",
  "version": 1,
  "statements": [
    {"vulnerability": {"name": "CVE-2022-28391"},
     "products": [{"@id": "https://vendor.example/image/busybox",
                   "identifiers": {"cpe23": "cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*"}}],
     "status": "not_affected",
     "justification": "vulnerable_code_not_present",
     "impact_statement": "The image's busybox is built without netstat and nslookup."},
    {"vulnerability": {"name": "PYSEC-2019-133"},
     "products": [{"@id": "pkg:pypi/urllib3@1.24.1"}],
     "status": "not_affected",
     "justification": "vulnerable_code_not_in_execute_path",
     "impact_statement": "No request goes to a host given by a user."}
  ]
}"#;

/// The vulnerable image SBOM with urllib3 1.24.1 (by purl and CPE).
fn write_sbom(dir: &Path) -> std::path::PathBuf {
    let fixture = Path::new(FIRMWARE).join("yocto-image-vulnerable.cdx.json");
    let mut sbom: Value = serde_json::from_slice(&std::fs::read(fixture).unwrap()).unwrap();
    sbom["components"].as_array_mut().unwrap().push(json!({
        "type": "library", "name": "urllib3", "version": "1.24.1",
        "purl": "pkg:pypi/urllib3@1.24.1",
        "cpe": "cpe:2.3:a:python:urllib3:1.24.1:*:*:*:*:*:*:*",
    }));
    let path = dir.join("image.cdx.json");
    std::fs::write(&path, sbom.to_string()).unwrap();
    path
}

fn check(sbom: &Path, vex: &[&str]) -> Value {
    let nvd_files: Vec<String> = [
        "nvd-busybox.json",
        "nvd-u-boot.json",
        "nvd-linux-kernel.json",
        "nvd-urllib3.json",
    ]
    .iter()
    .map(|file| format!("{FIRMWARE}/nvd/{file}"))
    .collect();
    let mut args = vec![
        "risk",
        "sbom-check",
        "--sbom",
        s(sbom),
        "--advisories",
        PYPI_ADVISORIES,
        "--json",
    ];
    for file in &nvd_files {
        args.extend(["--nvd", file.as_str()]);
    }
    args.extend_from_slice(vex);
    let output = rampart(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    serde_json::from_slice(&output.stdout).unwrap()
}

/// (name, advisory) of every entry under `key`.
fn listed(report: &Value, key: &str) -> Vec<(String, String)> {
    report[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["advisory"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(list: &[(String, String)], name: &str, advisory: &str) -> bool {
    list.iter().any(|(n, a)| n == name && a == advisory)
}

#[test]
fn sbom_check_signed_vex_suppresses_a_busybox_cve_matched_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let sbom = write_sbom(tmp.path());
    let key = new_key(tmp.path(), "vendor");
    let public = tmp.path().join("vendor.pub.json");
    std::fs::write(&public, ok(rampart(&["key", "export-public", &key]))).unwrap();
    let bare = tmp.path().join("image.openvex.json");
    std::fs::write(&bare, OPENVEX).unwrap();
    let envelope = tmp.path().join("image.openvex.dsse.json");
    ok(rampart(&[
        "risk",
        "vex",
        "sign",
        "--vex",
        s(&bare),
        "--key",
        &key,
        "--out",
        s(&envelope),
    ]));

    let plain = check(&sbom, &[]);
    let matches = listed(&plain, "matches");
    assert!(has(&matches, "busybox", "CVE-2022-28391"), "{plain}");
    assert!(has(&matches, "urllib3", "PYSEC-2019-133"), "{plain}");

    let report = check(&sbom, &["--vex", s(&envelope), "--vex-signer", s(&public)]);
    let matches = listed(&report, "matches");
    let suppressed = listed(&report, "suppressed");
    assert!(!has(&matches, "busybox", "CVE-2022-28391"), "{report}");
    assert!(has(&suppressed, "busybox", "CVE-2022-28391"), "{report}");
    // The OSV advisory and its CVE, which NVD lists by CPE, leave together: no finding of
    // urllib3 names CVE-2019-11324 any more.
    assert!(!has(&matches, "urllib3", "PYSEC-2019-133"), "{report}");
    assert!(!has(&matches, "urllib3", "CVE-2019-11324"), "{report}");
    assert!(has(&suppressed, "urllib3", "CVE-2019-11324"), "{report}");
    // Everything else about busybox, U-Boot and the kernels stands.
    for (name, advisory) in [
        ("u-boot", "CVE-2022-30790"),
        ("linux-yocto", "CVE-2022-0847"),
        ("vendor-kernel", "CVE-2022-0847"),
    ] {
        assert!(has(&matches, name, advisory), "{name} {advisory}: {report}");
    }
    let busybox = report["suppressed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["advisory"] == "CVE-2022-28391")
        .unwrap();
    assert_eq!(busybox["purl"], Value::Null, "{busybox}");
    assert_eq!(
        busybox["cpe"], "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*",
        "{busybox}"
    );
    assert_eq!(busybox["vex"]["status"], "not_affected");
    assert_eq!(
        busybox["vex"]["justification"],
        "vulnerable_code_not_present"
    );
    assert_eq!(busybox["vex"]["source"], s(&envelope));
}
