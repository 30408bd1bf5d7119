//! VEX on firmware parts matched by CPE or by name (issue 17): the Yocto-like SBOM and the NVD
//! records of tests/data/nvd-firmware/, and vendor statements naming the part by OpenVEX
//! `identifiers.cpe23`, by a CycloneDX `affects[].ref` to a component whose `cpe` is set, and
//! by the SBOM's own `bom-ref`. Suppression keeps the justification; a statement about another
//! version, another product or another CVE hides nothing.

use rampart_vuln::component::Component;
use rampart_vuln::matching::Match;
use rampart_vuln::nvd::{CpeIndex, parse_nvd_document};
use rampart_vuln::sbom::parse_sbom;
use rampart_vuln::suppression::{SourcedVex, SuppressedMatch, split_cpe_matches};
use rampart_vuln::vex::{VexStatus, parse_vex};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/nvd-firmware");

fn image_components() -> Vec<Component> {
    let bytes = std::fs::read(format!("{DATA}/yocto-image-vulnerable.cdx.json")).unwrap();
    parse_sbom(&bytes).unwrap().components
}

fn firmware_matches(components: &[Component]) -> Vec<Match> {
    let mut advisories = Vec::new();
    for file in [
        "nvd-busybox.json",
        "nvd-u-boot.json",
        "nvd-linux-kernel.json",
    ] {
        let bytes = std::fs::read(format!("{DATA}/nvd/{file}")).unwrap();
        advisories.extend(parse_nvd_document(&bytes).unwrap());
    }
    CpeIndex::build(advisories)
        .match_cpe_components(components)
        .matches
}

fn openvex(cve: &str, identifiers: &str) -> String {
    format!(
        r#"{{"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://vendor.example/vex/1",
            "author": "Vendor", "timestamp": "2024-03-01T12:00:00Z", "version": 1,
            "statements": [{{"vulnerability": {{"name": "{cve}"}},
              "products": [{{"@id": "https://vendor.example/image", "identifiers": {identifiers}}}],
              "status": "not_affected", "justification": "vulnerable_code_not_present",
              "impact_statement": "The image builds busybox without the affected applets."}}]}}"#
    )
}

fn cyclonedx(cve: &str, reference: &str, components: &str) -> String {
    format!(
        r#"{{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
            "metadata": {{"timestamp": "2024-03-01T12:00:00Z"}},
            "components": {components},
            "vulnerabilities": [{{"id": "{cve}", "affects": [{{"ref": "{reference}"}}],
              "analysis": {{"state": "not_affected", "justification": "code_not_present",
                "detail": "Removed at build time."}}}}]}}"#
    )
}

fn vex_of(document: &str) -> SourcedVex {
    SourcedVex::new(vec![(
        "vendor.vex.json".to_owned(),
        parse_vex(document.as_bytes()).unwrap(),
    )])
}

fn advisories(matches: &[Match]) -> Vec<&str> {
    matches.iter().map(|m| m.advisory.as_str()).collect()
}

fn suppressed_ids(suppressed: &[SuppressedMatch]) -> Vec<(&str, &str)> {
    suppressed
        .iter()
        .map(|s| (s.matched.name.as_str(), s.matched.advisory.as_str()))
        .collect()
}

#[test]
fn openvex_cpe23_identifier_suppresses_a_busybox_cve_matched_by_name() {
    let components = image_components();
    let matches = firmware_matches(&components);
    assert!(
        advisories(&matches).contains(&"CVE-2022-28391"),
        "{matches:?}"
    );
    let vex = vex_of(&openvex(
        "CVE-2022-28391",
        r#"{"cpe23": "cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*"}"#,
    ));
    let (kept, suppressed) = vex.split(matches.clone(), &components);
    assert_eq!(suppressed_ids(&suppressed), [("busybox", "CVE-2022-28391")]);
    let verdict = &suppressed[0].vex;
    assert_eq!(verdict.status, VexStatus::NotAffected);
    assert_eq!(
        verdict.justification.as_deref(),
        Some("vulnerable_code_not_present")
    );
    assert!(
        verdict
            .impact_statement
            .as_deref()
            .unwrap()
            .contains("applets")
    );
    assert_eq!(verdict.source, "vendor.vex.json");
    assert_eq!(kept.len(), matches.len() - 1);
    // A CPE without a version covers every version of the part.
    let any_version = vex_of(&openvex(
        "CVE-2022-28391",
        r#"{"cpe23": "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*"}"#,
    ));
    assert_eq!(any_version.split(matches, &components).1.len(), 1);
}

#[test]
fn a_cpe_statement_about_another_version_product_or_cve_suppresses_nothing() {
    let components = image_components();
    let matches = firmware_matches(&components);
    for (cve, cpe) in [
        // Another busybox version: the image's 1.35.0 stays affected.
        (
            "CVE-2022-28391",
            "cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*",
        ),
        // Another vendor's product of the same name.
        (
            "CVE-2022-28391",
            "cpe:2.3:a:example:busybox:1.35.0:*:*:*:*:*:*:*",
        ),
        // A more specific CPE than the part's (an update the SBOM does not state).
        (
            "CVE-2022-28391",
            "cpe:2.3:a:busybox:busybox:1.35.0:p1:*:*:*:*:*:*",
        ),
        // The right part, another CVE.
        (
            "CVE-2017-16544",
            "cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*",
        ),
        // Not a CPE 2.3 name at all.
        ("CVE-2022-28391", "cpe:/a:busybox:busybox:1.35.0"),
    ] {
        let vex = vex_of(&openvex(cve, &format!(r#"{{"cpe23": "{cpe}"}}"#)));
        let (kept, suppressed) = vex.split(matches.clone(), &components);
        assert!(suppressed.is_empty(), "{cve} {cpe}: {suppressed:?}");
        assert_eq!(kept.len(), matches.len());
    }
}

#[test]
fn cyclonedx_ref_to_a_described_component_with_a_cpe_suppresses_the_kernel_cve() {
    let components = image_components();
    let matches = firmware_matches(&components);
    assert!(
        advisories(&matches).contains(&"CVE-2022-0847"),
        "{matches:?}"
    );
    // The VEX document describes the kernel under its own bom-ref, by CPE only.
    let document = cyclonedx(
        "CVE-2022-0847",
        "vendor-kernel",
        r#"[{"type": "operating-system", "bom-ref": "vendor-kernel", "name": "kernel",
             "cpe": "cpe:2.3:o:linux:linux_kernel:5.10.101:*:*:*:*:*:*:*"}]"#,
    );
    let statements = parse_vex(document.as_bytes()).unwrap();
    assert_eq!(
        statements[0].products,
        [
            "vendor-kernel",
            "cpe:2.3:o:linux:linux_kernel:5.10.101:*:*:*:*:*:*:*"
        ]
    );
    let (_, suppressed) = vex_of(&document).split(matches, &components);
    // The CPE names the vendor kernel (its SBOM CPE) and linux-yocto 5.15.24 is another version.
    assert_eq!(
        suppressed_ids(&suppressed),
        [("vendor-kernel", "CVE-2022-0847")]
    );
    assert_eq!(
        suppressed[0].vex.justification.as_deref(),
        Some("code_not_present")
    );
}

#[test]
fn cyclonedx_ref_to_the_sboms_bom_ref_suppresses_a_part_without_purl_or_cpe() {
    let components = image_components();
    let matches = firmware_matches(&components);
    let document = cyclonedx("CVE-2022-30790", "u-boot-2022.01", "[]");
    let (_, suppressed) = vex_of(&document).split(matches, &components);
    assert_eq!(suppressed_ids(&suppressed), [("u-boot", "CVE-2022-30790")]);
}

#[test]
fn a_cve_that_a_suppressed_osv_advisory_names_is_suppressed_with_it_on_the_same_component() {
    let urllib3 = Component {
        name: "urllib3".to_owned(),
        version: "1.24.1".to_owned(),
        purl: Some("pkg:pypi/urllib3@1.24.1".to_owned()),
        cpe: Some("cpe:2.3:a:python:urllib3:1.24.1:*:*:*:*:*:*:*".to_owned()),
        ..Component::default()
    };
    let bytes = std::fs::read(format!("{DATA}/nvd/nvd-urllib3.json")).unwrap();
    let cpe = CpeIndex::build(parse_nvd_document(&bytes).unwrap())
        .match_cpe_components(std::slice::from_ref(&urllib3))
        .matches;
    assert_eq!(advisories(&cpe), ["CVE-2019-11324"]);
    // The vendor spoke about the OSV id only; the CVE is its alias.
    let vex = vex_of(&openvex(
        "PYSEC-2019-133",
        r#"{"purl": "pkg:pypi/urllib3@1.24.1"}"#,
    ));
    let osv = Match {
        purl: "pkg:pypi/urllib3@1.24.1".to_owned(),
        name: "urllib3".to_owned(),
        version: "1.24.1".to_owned(),
        advisory: "PYSEC-2019-133".to_owned(),
        aliases: vec!["CVE-2019-11324".to_owned()],
        fixed: vec!["1.24.2".to_owned()],
    };
    let components = [urllib3];
    let (_, osv_suppressed) = vex.split(vec![osv], &components);
    assert_eq!(osv_suppressed.len(), 1);
    let (kept, suppressed) = split_cpe_matches(&vex, cpe.clone(), &osv_suppressed, &components);
    assert!(kept.is_empty(), "{kept:?}");
    assert_eq!(suppressed[0].matched.advisory, "CVE-2019-11324");
    assert_eq!(
        suppressed[0].vex.justification.as_deref(),
        Some("vulnerable_code_not_present")
    );
    // Without the OSV suppression the CVE stands (the statement names another id).
    let (kept, suppressed) = split_cpe_matches(&vex, cpe, &[], &components);
    assert_eq!((kept.len(), suppressed.len()), (1, 0));
}
