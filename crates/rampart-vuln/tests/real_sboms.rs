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

/// Rampart's own device agent as cargo-cyclonedx 0.5.9 describes it (see `data/README.md`):
/// a real SBOM of a Rust binary, with registry crates and the workspace's path crates.
fn rampart_agent_sbom() -> rampart_vuln::sbom::Sbom {
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rampart-agent.cdx.json"),
    )
    .unwrap();
    parse_sbom(&bytes).unwrap()
}

/// An OSV record for a crates.io package, affected from 0 up to `fixed`.
fn crates_io_advisory(id: &str, name: &str, fixed: &str) -> rampart_vuln::osv::Advisory {
    let record = serde_json::json!({
        "schema_version": "1.6.0", "id": id, "modified": "2026-01-01T00:00:00Z",
        "affected": [{
            "package": {"ecosystem": "crates.io", "name": name},
            "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": fixed}]}]
        }]
    });
    rampart_vuln::osv::parse_advisory(record.to_string().as_bytes()).unwrap()
}

fn version_of(sbom: &rampart_vuln::sbom::Sbom, name: &str) -> String {
    sbom.components
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no {name} in the agent's SBOM"))
        .version
        .clone()
}

#[test]
fn cargo_cyclonedx_sbom_of_rampart_s_agent_reads_every_crate_as_crates_io() {
    let sbom = rampart_agent_sbom();
    assert_eq!(
        (sbom.format, sbom.spec_version.as_str()),
        (SbomFormat::CycloneDx, "1.5")
    );
    assert_eq!(sbom.components.len(), 177);
    for component in &sbom.components {
        let purl = component.purl.as_deref().unwrap_or_default();
        assert!(purl.starts_with("pkg:cargo/"), "{purl}");
        assert!(!component.version.is_empty(), "{purl} has no version");
    }
}

#[test]
fn a_crates_io_advisory_matches_the_agent_s_crate_below_its_fix_and_not_at_it() {
    let sbom = rampart_agent_sbom();
    let ring = version_of(&sbom, "ring");
    let rustls = version_of(&sbom, "rustls");
    let next_patch = |v: &str| {
        let v = semver::Version::parse(v).unwrap();
        format!("{}.{}.{}", v.major, v.minor, v.patch + 1)
    };
    let index = rampart_vuln::matching::AdvisoryIndex::build([
        // Fixed in the next patch release: the agent's version is affected.
        crates_io_advisory("RAMPART-TEST-RING", "ring", &next_patch(&ring)),
        // Fixed in exactly the agent's version: not affected.
        crates_io_advisory("RAMPART-TEST-RUSTLS", "rustls", &rustls),
    ]);
    let report = index.match_components(&sbom.components);
    let found: Vec<(&str, &str, &str)> = report
        .matches
        .iter()
        .map(|m| (m.advisory.as_str(), m.name.as_str(), m.version.as_str()))
        .collect();
    assert_eq!(found, [("RAMPART-TEST-RING", "ring", ring.as_str())]);
    assert!(report.unmatched_ecosystems.is_empty());
}

#[test]
fn a_path_dependency_is_not_matched_against_registry_advisories_of_its_name() {
    let sbom = rampart_agent_sbom();
    // The workspace's own crates are path dependencies (`download_url=file://...`): a
    // crates.io advisory for a crate of the same name is about someone else's code.
    let core = version_of(&sbom, "rampart-core");
    let index = rampart_vuln::matching::AdvisoryIndex::build([crates_io_advisory(
        "RAMPART-TEST-NAME-CLASH",
        "rampart-core",
        "999.0.0",
    )]);
    let report = index.match_components(&sbom.components);
    assert!(report.matches.is_empty(), "{:?}", report.matches);
    let local = report
        .unidentified
        .iter()
        .find(|u| u.component.name == "rampart-core")
        .expect("the path crate is reported, not silently dropped");
    assert!(local.reason.contains("local path"), "{}", local.reason);
    assert!(!core.is_empty());
}
