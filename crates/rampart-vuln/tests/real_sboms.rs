//! SBOMs made at test time by a real generator (PyPI cyclonedx-bom, installed with a Python
//! environment of known-vulnerable packages by scripts/make-sboms.sh, which scripts/test.sh
//! runs). A missing generator fails these tests with what to run; they never skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_vuln::sbom::{SbomFormat, parse_sbom};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn cyclonedx_py() -> PathBuf {
    let tool = repo_root().join("target/sbom-tool-venv/bin/cyclonedx-py");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/make-sboms.sh (scripts/test.sh runs it) to install the CycloneDX generator",
        tool.display()
    );
    tool
}

fn generate(args: &[&str], spec_version: &str) -> Vec<u8> {
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("sbom.cdx.json");
    let status = Command::new(cyclonedx_py())
        .args(args)
        .args(["--sv", spec_version, "--of", "JSON", "-o"])
        .arg(&file)
        .status()
        .unwrap();
    assert!(status.success(), "cyclonedx-py {args:?} failed: {status}");
    std::fs::read(&file).unwrap()
}

fn pins(sbom: &rampart_vuln::sbom::Sbom) -> Vec<String> {
    let mut purls: Vec<String> = sbom
        .components
        .iter()
        .filter_map(|c| c.purl.clone())
        .collect();
    purls.sort();
    purls
}

#[test]
fn cyclonedx_py_requirements_sbom_of_the_vulnerable_pins_reads_in_every_spec_version() {
    let requirements = repo_root().join("scripts/sbom/vulnerable-pins.txt");
    for spec in ["1.4", "1.5", "1.6"] {
        let bytes = generate(&["requirements", requirements.to_str().unwrap()], spec);
        let sbom = parse_sbom(&bytes).unwrap();
        assert_eq!(
            (sbom.format, sbom.spec_version.as_str()),
            (SbomFormat::CycloneDx, spec)
        );
        assert_eq!(
            pins(&sbom),
            [
                "pkg:pypi/django@2.2.0",
                "pkg:pypi/jinja2@2.10",
                "pkg:pypi/pillow@8.0.0",
                "pkg:pypi/pyyaml@5.3",
                "pkg:pypi/requests@2.19.0",
                "pkg:pypi/urllib3@1.24.1",
            ]
        );
        assert_eq!(sbom.duplicates, 0);
    }
}

#[test]
fn cyclonedx_py_environment_sbom_of_an_installed_environment_lists_its_packages() {
    let python = repo_root().join("target/sbom-subject-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/make-sboms.sh to make the Python environment",
        python.display()
    );
    let bytes = generate(&["environment", python.to_str().unwrap()], "1.6");
    let sbom = parse_sbom(&bytes).unwrap();
    let purls = pins(&sbom);
    // Installed metadata normalizes Django's version to "2.2"; pip and setuptools come with
    // every venv, in whatever version.
    for expected in [
        "pkg:pypi/django@2.2",
        "pkg:pypi/jinja2@2.10",
        "pkg:pypi/requests@2.19.0",
        "pkg:pypi/urllib3@1.24.1",
    ] {
        assert!(
            purls.iter().any(|p| p == expected),
            "{expected} not in {purls:?}"
        );
    }
    assert!(sbom.components.iter().all(|c| !c.version.is_empty()));
}
