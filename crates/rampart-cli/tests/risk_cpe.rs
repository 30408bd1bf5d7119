//! `rampart risk sbom-check --nvd`: firmware parts (busybox, U-Boot, the kernel) matched by
//! CPE or by name against NVD CVE API 2.0 documents written after the public records
//! (`rampart-vuln/tests/data/nvd-firmware/`, see its README), merged with the real PyPI OSV
//! advisories (`../shared/vectors/osv-pypi/`), by the binary, offline.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rampart_testkit::cli::{fails, rampart, s};
use serde_json::{Value, json};

const PYPI_ADVISORIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);
const FIRMWARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rampart-vuln/tests/data/nvd-firmware"
);

fn nvd_dir() -> PathBuf {
    Path::new(FIRMWARE).join("nvd")
}

/// Runs `sbom-check --json` (with the OSV directory when `osv`), returning the report and
/// standard error.
fn check(sbom: &Path, osv: bool, nvd: &[PathBuf]) -> (Value, String) {
    let mut args = vec![
        "risk".to_owned(),
        "sbom-check".to_owned(),
        "--sbom".to_owned(),
        s(sbom).to_owned(),
        "--json".to_owned(),
    ];
    if osv {
        args.extend(["--advisories".to_owned(), PYPI_ADVISORIES.to_owned()]);
    }
    for path in nvd {
        args.extend(["--nvd".to_owned(), s(path).to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = rampart(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    (serde_json::from_slice(&output.stdout).unwrap(), stderr)
}

/// (name, version, advisory, matched_by) of every match.
fn found(report: &Value) -> BTreeSet<(String, String, String, String)> {
    report["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = |k: &str| m[k].as_str().unwrap().to_owned();
            (
                text("name"),
                text("version"),
                text("advisory"),
                text("matched_by"),
            )
        })
        .collect()
}

fn row(name: &str, version: &str, advisory: &str, by: &str) -> (String, String, String, String) {
    (name.into(), version.into(), advisory.into(), by.into())
}

fn write_cyclonedx(dir: &Path, file: &str, components: Value) -> PathBuf {
    let path = dir.join(file);
    let sbom = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": components,
    });
    std::fs::write(&path, sbom.to_string()).unwrap();
    path
}

#[test]
fn sbom_check_with_nvd_finds_busybox_uboot_and_kernel_cves_on_vulnerable_versions_only() {
    // The Yocto-like image fixture: parts without purls, one kernel with a CPE.
    let vulnerable = Path::new(FIRMWARE).join("yocto-image-vulnerable.cdx.json");
    let (report, stderr) = check(&vulnerable, true, &[nvd_dir()]);
    assert_eq!(
        found(&report),
        BTreeSet::from([
            row("busybox", "1.35.0", "CVE-2022-28391", "name"),
            row("u-boot", "2022.01", "CVE-2022-30790", "name"),
            row("linux-yocto", "5.15.24", "CVE-2022-0847", "name"),
            row("vendor-kernel", "5.10.101", "CVE-2022-0847", "cpe"),
        ])
    );
    // The part neither a CPE nor a known name identifies is named, not dropped.
    assert!(
        stderr.contains("base-files 3.0.14: not checked"),
        "{stderr}"
    );
    let fixed_versions: BTreeSet<&str> = report["matches"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["fixed"].as_array().unwrap())
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(fixed_versions, BTreeSet::from(["5.15.25", "5.10.102"]));

    // The same image with every part at a fixed version: nothing.
    let fixed = Path::new(FIRMWARE).join("yocto-image-fixed.cdx.json");
    let (report, _) = check(&fixed, true, &[nvd_dir()]);
    assert_eq!(report["matches"], json!([]), "{report}");

    // Each record's version bounds, around their edges (one NVD file at a time works too).
    let tmp = tempfile::tempdir().unwrap();
    let sbom = write_cyclonedx(
        tmp.path(),
        "edges.cdx.json",
        json!([
            {"type": "library", "name": "busybox", "version": "1.27.2"},
            {"type": "library", "name": "busybox", "version": "1.34.1"},
            {"type": "firmware", "name": "u-boot", "version": "2019.07"},
            {"type": "firmware", "name": "u-boot", "version": "2016.09"},
            {"type": "firmware", "name": "U-Boot", "version": "2022.07"},
            {"type": "operating-system", "name": "linux", "version": "4.4.25"},
            {"type": "operating-system", "name": "linux", "version": "4.4.26"},
            {"type": "operating-system", "name": "kernel", "version": "5.16.10"},
            {"type": "operating-system", "name": "kernel", "version": "5.16.11"},
        ]),
    );
    let (report, _) = check(&sbom, false, &[nvd_dir()]);
    assert_eq!(
        found(&report),
        BTreeSet::from([
            row("busybox", "1.27.2", "CVE-2017-16544", "name"),
            row("busybox", "1.27.2", "CVE-2022-28391", "name"),
            row("busybox", "1.27.2", "CVE-2022-48174", "name"),
            row("busybox", "1.34.1", "CVE-2022-28391", "name"),
            row("busybox", "1.34.1", "CVE-2022-48174", "name"),
            row("u-boot", "2019.07", "CVE-2019-14192", "name"),
            row("u-boot", "2019.07", "CVE-2022-30790", "name"),
            row("u-boot", "2016.09", "CVE-2019-14192", "name"),
            row("linux", "4.4.25", "CVE-2016-5195", "name"),
            row("kernel", "5.16.10", "CVE-2022-0847", "name"),
        ])
    );
}

#[test]
fn a_component_with_a_cpe_matches_by_cpe() {
    let tmp = tempfile::tempdir().unwrap();
    // A name Rampart does not know: only its CPE identifies it.
    let cpe = "cpe:2.3:o:linux:linux_kernel:4.4.25:*:*:*:*:*:*:*";
    let sbom = write_cyclonedx(
        tmp.path(),
        "cpe.cdx.json",
        json!([
            {"type": "operating-system", "name": "board-kernel", "version": "4.4.25", "cpe": cpe},
            {"type": "operating-system", "name": "board-kernel-nocpe", "version": "4.4.25"},
        ]),
    );
    let (report, stderr) = check(&sbom, false, &[nvd_dir().join("nvd-linux-kernel.json")]);
    let matches = report["matches"].as_array().unwrap();
    assert_eq!(matches.len(), 1, "{report}");
    let m = &matches[0];
    assert_eq!(
        m.as_object().unwrap().keys().collect::<Vec<_>>(),
        [
            "purl",
            "name",
            "version",
            "advisory",
            "aliases",
            "fixed",
            "cpe",
            "matched_by"
        ]
    );
    assert_eq!(m["matched_by"], "cpe");
    assert_eq!(m["cpe"], cpe);
    assert_eq!(m["purl"], Value::Null);
    assert_eq!(m["advisory"], "CVE-2016-5195");
    assert_eq!(m["fixed"], json!(["4.4.26"]));
    assert!(
        stderr.contains("board-kernel-nocpe 4.4.25: not checked"),
        "{stderr}"
    );

    // The table says how each component matched.
    let output = rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--nvd",
        s(&nvd_dir()),
    ])
    .output()
    .unwrap();
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(table.starts_with("COMPONENT"), "{table}");
    assert!(table.contains("MATCHED BY"), "{table}");
    let line = table
        .lines()
        .find(|l| l.starts_with("board-kernel "))
        .unwrap();
    assert!(
        line.contains(" cpe ") && line.contains("CVE-2016-5195"),
        "{line}"
    );
}

#[test]
fn one_cve_through_an_osv_alias_and_nvd_is_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    // urllib3 1.24.1: PYSEC-2019-133 (alias CVE-2019-11324) by purl, and CVE-2019-11324 by CPE.
    let sbom = write_cyclonedx(
        tmp.path(),
        "urllib3.cdx.json",
        json!([{
            "type": "library", "name": "urllib3", "version": "1.24.1",
            "purl": "pkg:pypi/urllib3@1.24.1",
            "cpe": "cpe:2.3:a:python:urllib3:1.24.1:*:*:*:*:*:*:*",
        }]),
    );
    let (with_nvd, _) = check(&sbom, true, &[nvd_dir().join("nvd-urllib3.json")]);
    let (osv_only, _) = check(&sbom, true, &[]);
    let named = |report: &Value, id: &str| -> Vec<Value> {
        report["matches"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| {
                m["advisory"] == id || m["aliases"].as_array().unwrap().contains(&json!(id))
            })
            .cloned()
            .collect()
    };
    let cve = named(&with_nvd, "CVE-2019-11324");
    assert_eq!(cve.len(), 1, "{with_nvd}");
    assert_eq!(cve[0]["advisory"], "PYSEC-2019-133");
    assert_eq!(cve[0]["matched_by"], "purl");
    assert_eq!(
        cve[0]["cpe"],
        "cpe:2.3:a:python:urllib3:1.24.1:*:*:*:*:*:*:*"
    );
    // Nothing else changed: the NVD record added no second finding.
    assert_eq!(
        with_nvd["matches"].as_array().unwrap().len(),
        osv_only["matches"].as_array().unwrap().len()
    );
    // Without the OSV record, the NVD one alone is the finding.
    let (nvd_only, _) = check(&sbom, false, &[nvd_dir().join("nvd-urllib3.json")]);
    assert_eq!(
        found(&nvd_only),
        BTreeSet::from([row("urllib3", "1.24.1", "CVE-2019-11324", "cpe")])
    );
}

#[test]
fn sbom_check_refuses_an_oversized_or_deeply_nested_nvd_document_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sbom = Path::new(FIRMWARE).join("yocto-image-vulnerable.cdx.json");
    let nested = tmp.path().join("nested.json");
    let deep = format!(
        "{{\"vulnerabilities\":[{}{}]}}",
        "[".repeat(200),
        "]".repeat(200)
    );
    std::fs::write(&nested, deep).unwrap();
    let out = fails(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--nvd",
        s(&nested),
    ]));
    assert!(out.contains("nested.json"), "{out}");
    assert!(
        out.contains("nests JSON arrays and objects more than"),
        "{out}"
    );

    // Larger than the per-file limit: refused from its length, before it is read.
    let large = tmp.path().join("large.json");
    let file = std::fs::File::create(&large).unwrap();
    file.set_len(rampart_vuln::nvd::MAX_NVD_BYTES as u64 + 1)
        .unwrap();
    let out = fails(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--nvd",
        s(&large),
    ]));
    assert!(
        out.contains("large.json") && out.contains("larger than the"),
        "{out}"
    );

    // A directory with no documents, and a file that is not an NVD document.
    let empty = tempfile::tempdir().unwrap();
    let out = fails(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--nvd",
        s(empty.path()),
    ]));
    assert!(out.contains("holds no *.json NVD documents"), "{out}");
    let out = fails(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--nvd",
        s(&sbom),
    ]));
    assert!(out.contains("not an NVD CVE API 2.0 document"), "{out}");
}

#[test]
fn dpkg_status_packages_are_left_to_debian_advisories_while_the_same_names_without_purl_match() {
    // This machine's dpkg status, with a busybox and a kernel image package as a Debian-based
    // firmware root file system has them.
    let status = std::fs::read_to_string("/var/lib/dpkg/status")
        .expect("/var/lib/dpkg/status is missing: this test reads a real Debian package database");
    let extra = "\n\nPackage: busybox\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:1.35.0-4+b3\n\n\
                 Package: linux-image-5.10.0-11-amd64\nStatus: install ok installed\nArchitecture: amd64\nSource: linux\nVersion: 5.10.92-1\n";
    let sbom =
        rampart_vuln::sbom::from_dpkg_status(&(status.trim_end().to_owned() + extra)).unwrap();
    let names: BTreeSet<&str> = sbom.components.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains("busybox") && names.contains("openssl"),
        "{names:?}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("dpkg.cdx.json");
    std::fs::write(&path, rampart_vuln::sbom::to_cyclonedx_json(&sbom)).unwrap();
    let (report, stderr) = check(&path, false, &[nvd_dir()]);
    // Debian's busybox 1.35.0-4 carries Debian's fixes: upstream NVD ranges would misjudge it;
    // deb packages are OSV's (Debian advisories), never matched by name, and not "unchecked".
    assert_eq!(report["matches"], json!([]), "{report}");
    assert!(!stderr.contains("busybox"), "{stderr}");
    assert!(!stderr.contains("not checked"), "{stderr}");

    // The same names as a Yocto image writes them (no purl) do match by name.
    let yocto = write_cyclonedx(
        tmp.path(),
        "yocto.cdx.json",
        json!([
            {"type": "library", "name": "busybox", "version": "1.35.0"},
            {"type": "operating-system", "name": "linux", "version": "5.10.92"},
        ]),
    );
    let (report, _) = check(&yocto, false, &[nvd_dir()]);
    assert_eq!(
        found(&report),
        BTreeSet::from([
            row("busybox", "1.35.0", "CVE-2022-28391", "name"),
            row("linux", "5.10.92", "CVE-2022-0847", "name"),
        ])
    );
}
