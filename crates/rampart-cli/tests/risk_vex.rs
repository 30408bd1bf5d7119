//! Vendor VEX on the command line, by the binary: `rampart risk vex sign` with a real key file,
//! `verify`, and `rampart risk sbom-check --vex` against the real PyPI advisories
//! (`../shared/vectors/osv-pypi/`): the match a signed statement suppresses moves out of
//! `matches` into `suppressed` with its justification; unsigned, untrusted and tampered VEX
//! refused when signers are given.

use std::path::Path;

use rampart_testkit::cli::{fails, new_key, ok, rampart, run, s};

const PYPI_ADVISORIES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi"
);

const OPENVEX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rampart-vuln/tests/data/vex/jinja2-not-affected.openvex.json"
));

fn write_sbom(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("sbom.cdx.json");
    let components: Vec<serde_json::Value> = [("jinja2", "2.10"), ("urllib3", "1.24.1")]
        .iter()
        .map(|(name, version)| {
            let purl = format!("pkg:pypi/{name}@{version}");
            serde_json::json!({"type": "library", "bom-ref": purl, "name": name,
                               "version": version, "purl": purl})
        })
        .collect();
    let sbom = serde_json::json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
                                  "components": components});
    std::fs::write(&path, sbom.to_string()).unwrap();
    path
}

/// The vendor's key file, its exported public key, and the VEX signed with it.
struct Signed {
    public: std::path::PathBuf,
    envelope: std::path::PathBuf,
    bare: std::path::PathBuf,
}

fn sign(dir: &Path, name: &str) -> Signed {
    let key = new_key(dir, name);
    let public = dir.join(format!("{name}.pub.json"));
    std::fs::write(&public, ok(rampart(&["key", "export-public", &key]))).unwrap();
    let bare = dir.join("vendor.openvex.json");
    std::fs::write(&bare, OPENVEX).unwrap();
    let envelope = dir.join(format!("{name}.openvex.dsse.json"));
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
    Signed {
        public,
        envelope,
        bare,
    }
}

fn sbom_check(sbom: &Path, extra: &[&str]) -> std::process::Command {
    let mut args = vec![
        "risk",
        "sbom-check",
        "--sbom",
        s(sbom),
        "--advisories",
        PYPI_ADVISORIES,
        "--json",
    ];
    args.extend_from_slice(extra);
    rampart(&args)
}

#[test]
fn sbom_check_with_a_signed_vex_moves_the_suppressed_match_out_of_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let sbom = write_sbom(tmp.path());
    let vendor = sign(tmp.path(), "vendor");

    let verified = ok(rampart(&[
        "risk",
        "vex",
        "verify",
        "--vex",
        s(&vendor.envelope),
        "--signer",
        s(&vendor.public),
    ]));
    assert!(verified.contains("VEX verified"), "{verified}");
    assert!(
        verified.contains("vulnerable_code_not_in_execute_path"),
        "{verified}"
    );

    let plain = sbom_check(&sbom, &[]).output().unwrap();
    assert!(plain.status.success());
    let plain: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    // Without --vex the output keeps the shape exactly.
    let keys: Vec<&String> = plain.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["matches", "unmatched_ecosystems"]);
    let jinja2 = |report: &serde_json::Value, key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["name"] == "jinja2")
            .map(|m| m["advisory"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(jinja2(&plain, "matches").contains(&"PYSEC-2019-217".to_owned()));

    let output = sbom_check(
        &sbom,
        &[
            "--vex",
            s(&vendor.envelope),
            "--vex-signer",
            s(&vendor.public),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(!stderr.contains("without a signature check"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["matches", "unmatched_ecosystems", "suppressed"]);
    assert!(!jinja2(&report, "matches").contains(&"PYSEC-2019-217".to_owned()));
    assert_eq!(jinja2(&report, "suppressed"), ["PYSEC-2019-217"]);
    let suppressed = &report["suppressed"][0];
    let fields: Vec<&String> = suppressed.as_object().unwrap().keys().collect();
    assert_eq!(
        fields,
        [
            "purl", "name", "version", "advisory", "aliases", "fixed", "vex"
        ]
    );
    assert_eq!(suppressed["vex"]["status"], "not_affected");
    assert_eq!(
        suppressed["vex"]["justification"],
        "vulnerable_code_not_in_execute_path"
    );
    assert!(
        suppressed["vex"]["impact_statement"]
            .as_str()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(suppressed["vex"]["source"], s(&vendor.envelope));
    // Everything else stands: the other jinja2 advisories and urllib3's.
    assert_eq!(
        report["matches"].as_array().unwrap().len() + 1,
        plain["matches"].as_array().unwrap().len()
    );

    // Unsigned VEX without signers: used, and said so on stderr.
    let (success, out) = run(sbom_check(&sbom, &["--vex", s(&vendor.bare)]));
    assert!(success, "{out}");
    assert!(out.contains("without a signature check"), "{out}");
    assert!(out.contains("PYSEC-2019-217"), "{out}");
}

#[test]
fn sbom_check_refuses_unsigned_untrusted_or_changed_vex_when_signers_are_given() {
    let tmp = tempfile::tempdir().unwrap();
    let sbom = write_sbom(tmp.path());
    let vendor = sign(tmp.path(), "vendor");
    let stranger = sign(tmp.path(), "stranger");

    let out = fails(sbom_check(
        &sbom,
        &["--vex", s(&vendor.bare), "--vex-signer", s(&vendor.public)],
    ));
    assert!(out.contains("not signed"), "{out}");
    let out = fails(sbom_check(
        &sbom,
        &[
            "--vex",
            s(&stranger.envelope),
            "--vex-signer",
            s(&vendor.public),
        ],
    ));
    assert!(out.contains("signed by no trusted vendor key"), "{out}");

    let mut envelope: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&vendor.envelope).unwrap()).unwrap();
    use base64::Engine as _;
    envelope["payload"] = serde_json::json!(
        base64::engine::general_purpose::STANDARD
            .encode(OPENVEX.replace("CVE-2019-10906", "CVE-2016-10745"))
    );
    let changed = tmp.path().join("changed.dsse.json");
    std::fs::write(&changed, envelope.to_string()).unwrap();
    let out = fails(rampart(&[
        "risk",
        "vex",
        "verify",
        "--vex",
        s(&changed),
        "--signer",
        s(&vendor.public),
    ]));
    assert!(out.contains("changed after signing"), "{out}");

    // Only a VEX document is signed.
    let out = fails(rampart(&[
        "risk",
        "vex",
        "sign",
        "--vex",
        s(&sbom),
        "--key",
        &new_key(tmp.path(), "other"),
    ]));
    assert!(out.contains("only a valid VEX document is signed"), "{out}");
}
