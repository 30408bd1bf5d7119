//! `rampart risk sbom-check`: an SBOM matched against the real PyPI advisories
//! (`../shared/vectors/osv-pypi/`, Python Packaging Advisory Database, CC BY 4.0) by the
//! binary, offline.

use std::collections::BTreeSet;
use std::path::Path;

use rampart_testkit::cli::{fails, ok, rampart, s};

const PYPI_ADVISORIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);

fn cyclonedx(components: &[(&str, &str, Option<&str>)]) -> String {
    let components: Vec<serde_json::Value> = components
        .iter()
        .map(|(name, version, purl)| {
            let mut component = serde_json::json!({
                "type": "library", "bom-ref": format!("{name}@{version}"),
                "name": name, "version": version,
            });
            if let Some(purl) = purl {
                component["purl"] = serde_json::json!(purl);
            }
            component
        })
        .collect();
    serde_json::json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "components": components,
    })
    .to_string()
}

fn write_sbom(dir: &Path) -> std::path::PathBuf {
    let sbom = dir.join("sbom.cdx.json");
    let text = cyclonedx(&[
        ("requests", "2.19.0", Some("pkg:pypi/requests@2.19.0")),
        ("urllib3", "1.24.1", Some("pkg:pypi/urllib3@1.24.1")),
        ("jinja2", "2.10", Some("pkg:pypi/jinja2@2.10")),
        ("PyYAML", "5.3", Some("pkg:pypi/pyyaml@5.3")),
        ("Django", "2.2.0", Some("pkg:pypi/django@2.2.0")),
        ("Pillow", "8.0.0", Some("pkg:pypi/pillow@8.0.0")),
        // Listed twice (two bom-refs in a real SBOM): reported once.
        ("Pillow", "8.0.0", Some("pkg:pypi/pillow@8.0.0")),
        ("requests", "2.32.3", Some("pkg:pypi/requests@2.32.3")),
        ("urllib3", "2.2.3", Some("pkg:pypi/urllib3@2.2.3")),
        ("jinja2", "3.1.4", Some("pkg:pypi/jinja2@3.1.4")),
        ("PyYAML", "6.0.2", Some("pkg:pypi/pyyaml@6.0.2")),
        ("Django", "5.1.2", Some("pkg:pypi/django@5.1.2")),
        ("Pillow", "11.0.0", Some("pkg:pypi/pillow@11.0.0")),
        (
            "Newtonsoft.Json",
            "12.0.1",
            Some("pkg:nuget/Newtonsoft.Json@12.0.1"),
        ),
        ("busybox", "1.36.1", None),
    ]);
    std::fs::write(&sbom, text).unwrap();
    sbom
}

#[test]
fn sbom_check_json_reports_the_vulnerable_pins_only() {
    let tmp = tempfile::tempdir().unwrap();
    let sbom = write_sbom(tmp.path());
    let output = rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--advisories",
        PYPI_ADVISORIES,
        "--json",
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    // The component with no purl is named on stderr, not dropped.
    assert!(stderr.contains("busybox 1.36.1: not checked"), "{stderr}");

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["matches", "unmatched_ecosystems"]);
    assert_eq!(report["unmatched_ecosystems"], serde_json::json!(["NuGet"]));

    let matches = report["matches"].as_array().unwrap();
    for m in matches {
        let fields: Vec<&String> = m.as_object().unwrap().keys().collect();
        assert_eq!(
            fields,
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
    }
    let affected: BTreeSet<&str> = matches
        .iter()
        .map(|m| m["version"].as_str().unwrap())
        .collect();
    // Every known-vulnerable pin, and none of the fixed ones.
    assert_eq!(
        affected,
        BTreeSet::from(["2.19.0", "1.24.1", "2.10", "5.3", "2.2.0", "8.0.0"])
    );
    let found: BTreeSet<(&str, &str)> = matches
        .iter()
        .map(|m| {
            (
                m["advisory"].as_str().unwrap(),
                m["version"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found.len(),
        matches.len(),
        "a duplicate component reported twice"
    );
    let requests = matches
        .iter()
        .find(|m| m["advisory"] == "PYSEC-2018-28")
        .expect("CVE-2018-18074 in requests 2.19.0");
    assert_eq!(requests["purl"], "pkg:pypi/requests@2.19.0");
    assert_eq!(
        requests["aliases"],
        serde_json::json!(["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"])
    );
    assert_eq!(requests["fixed"], serde_json::json!(["2.20.0"]));
    assert!(
        found.contains(&("PYSEC-2020-96", "5.3")),
        "PyYAML 5.3 full_load"
    );
    assert!(
        found.contains(&("PYSEC-2019-217", "2.10")),
        "jinja2 2.10 sandbox escape"
    );

    // The table says the same.
    let table = ok(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--advisories",
        PYPI_ADVISORIES,
    ]));
    assert!(table.contains("PYSEC-2018-28"), "{table}");
    assert!(
        table.contains(&format!(
            "{} matches: 6 of 14 components affected",
            matches.len()
        )),
        "{table}"
    );
}

#[test]
fn sbom_check_refuses_a_bad_advisory_file_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let sbom = write_sbom(tmp.path());
    let feed = tmp.path().join("feed");
    std::fs::create_dir(&feed).unwrap();
    std::fs::copy(
        Path::new(PYPI_ADVISORIES).join("PYSEC-2018-28.json"),
        feed.join("PYSEC-2018-28.json"),
    )
    .unwrap();
    let check = |file: &str, contents: &[u8], expected: &str| {
        let bad = feed.join(file);
        std::fs::write(&bad, contents).unwrap();
        let out = fails(rampart(&[
            "risk",
            "sbom-check",
            "--sbom",
            s(&sbom),
            "--advisories",
            s(&feed),
        ]));
        assert!(out.contains(file) && out.contains(expected), "{out}");
        std::fs::remove_file(bad).unwrap();
    };
    check("garbage.json", b"<html>not json</html>", "not OSV JSON");
    check(
        "deep.json",
        format!(
            "{{\"id\":\"X\",\"modified\":\"m\",\"x\":{}}}",
            "[".repeat(100)
        )
        .as_bytes(),
        "more than 32 deep",
    );
    check(
        "huge.json",
        &vec![b' '; 1024 * 1024 + 1],
        "larger than the 1048576-byte limit",
    );
    // With the bad files gone it runs.
    ok(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--advisories",
        s(&feed),
    ]));
    // A document that is no SBOM is refused clearly.
    std::fs::write(&sbom, b"{\"hello\":1}").unwrap();
    let out = fails(rampart(&[
        "risk",
        "sbom-check",
        "--sbom",
        s(&sbom),
        "--advisories",
        s(&feed),
    ]));
    assert!(out.contains("neither CycloneDX JSON"), "{out}");
}
