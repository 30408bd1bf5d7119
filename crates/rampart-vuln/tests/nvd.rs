//! NVD CVE API 2.0 records and CPE matching of firmware components: a fixture of real CVEs
//! (tests/data/nvd-firmware-cves.json: real ids, CPE names and version bounds as the CVE
//! descriptions state them, configurations abbreviated), a Yocto-style SBOM without CPEs, and
//! every limit and refusal.

use rampart_vuln::component::Component;
use rampart_vuln::nvd::{
    self, CpeIndex, FIRMWARE_NAMES, NvdAdvisory, NvdError, firmware_cpe, parse_nvd_document,
};
use rampart_vuln::severity::Rating;

const FIXTURE: &str = include_str!("data/nvd-firmware-cves.json");

fn fixture_index() -> CpeIndex {
    CpeIndex::build(parse_nvd_document(FIXTURE.as_bytes()).unwrap())
}

fn named(name: &str, version: &str) -> Component {
    Component {
        name: name.to_owned(),
        version: version.to_owned(),
        ..Component::default()
    }
}

fn with_cpe(name: &str, cpe: &str) -> Component {
    Component {
        name: name.to_owned(),
        cpe: Some(cpe.to_owned()),
        ..Component::default()
    }
}

/// (advisory, fixed) of every match of one component.
fn advisories(index: &CpeIndex, component: Component) -> Vec<(String, Vec<String>)> {
    index
        .match_cpe_components(&[component])
        .matches
        .into_iter()
        .map(|m| (m.advisory, m.fixed))
        .collect()
}

fn ids(index: &CpeIndex, component: Component) -> Vec<String> {
    advisories(index, component)
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

#[test]
fn the_fixture_parses_into_records_with_criteria_and_scores() {
    let records = parse_nvd_document(FIXTURE.as_bytes()).unwrap();
    assert_eq!(records.len(), 8);
    let uboot = &records[0];
    assert_eq!(uboot.id, "CVE-2022-30790");
    assert_eq!(uboot.status.as_deref(), Some("Analyzed"));
    assert_eq!(uboot.criteria.len(), 1);
    assert_eq!(
        uboot.criteria[0].bounds.end_including.as_deref(),
        Some("2022.07-rc5")
    );
    let severity = uboot.severity().unwrap();
    assert_eq!(severity.score, 9.6);
    assert_eq!(severity.rating, Rating::Critical);
    // NVD's own (Primary) score comes before the CNA's, whatever the order given.
    let glibc = records.iter().find(|r| r.id == "CVE-2023-4911").unwrap();
    assert!(glibc.cvss[0].primary);
    assert_eq!(glibc.cvss[0].source.as_deref(), Some("nvd@nist.gov"));
    // CVSS v3.0 is scored too.
    let dropbear = records.iter().find(|r| r.id == "CVE-2016-7406").unwrap();
    assert_eq!(dropbear.severity().unwrap().score, 9.8);
    let index = CpeIndex::build(records);
    assert_eq!(index.len(), 8);
    assert!(index.problems().is_empty(), "{:?}", index.problems());
}

#[test]
fn yocto_components_without_cpes_match_by_their_firmware_names() {
    let index = fixture_index();
    assert_eq!(
        advisories(&index, named("busybox", "1.35.0")),
        [("CVE-2022-28391".to_owned(), vec![])]
    );
    assert!(ids(&index, named("busybox", "1.36.1")).is_empty());
    assert_eq!(ids(&index, named("u-boot", "2022.04")), ["CVE-2022-30790"]);
    assert_eq!(
        ids(&index, named("u-boot", "2022.07-rc5")),
        ["CVE-2022-30790"]
    );
    assert!(ids(&index, named("u-boot", "2022.07")).is_empty());
    assert!(ids(&index, named("u-boot", "2023.04")).is_empty());
    assert!(ids(&index, named("u-boot", "2016.09")).is_empty());
    assert_eq!(
        advisories(&index, named("linux-yocto", "5.15.20")),
        [("CVE-2022-0847".to_owned(), vec!["5.15.25".to_owned()])]
    );
    assert!(ids(&index, named("linux", "5.15.25")).is_empty());
    assert!(ids(&index, named("linux", "5.4.200")).is_empty());
    assert_eq!(ids(&index, named("glibc", "2.37")), ["CVE-2023-4911"]);
    assert!(ids(&index, named("glibc", "2.39")).is_empty());
    assert_eq!(ids(&index, named("dropbear", "2016.72")), ["CVE-2016-7406"]);
    // A generic purl, as Yocto's SPDX writes them, names the component too.
    let zlib = Component {
        name: "zlib".to_owned(),
        version: "1.2.11".to_owned(),
        purl: Some("pkg:generic/zlib@1.2.11".to_owned()),
        ..Component::default()
    };
    let report = index.match_cpe_components(&[zlib]);
    assert_eq!(report.matches[0].advisory, "CVE-2018-25032");
    assert_eq!(report.matches[0].purl, "pkg:generic/zlib@1.2.11");
    assert_eq!(report.matches[0].fixed, ["1.2.12"]);
}

#[test]
fn openssl_is_flagged_below_each_branchs_fix_and_not_at_or_above_it() {
    let index = fixture_index();
    let at = |version: &str| {
        advisories(
            &index,
            with_cpe(
                "openssl",
                &format!("cpe:2.3:a:openssl:openssl:{version}:*:*:*:*:*:*:*"),
            ),
        )
    };
    assert_eq!(
        at("3.0.1"),
        [("CVE-2022-0778".to_owned(), vec!["3.0.2".to_owned()])]
    );
    assert_eq!(
        at("1.1.1k"),
        [("CVE-2022-0778".to_owned(), vec!["1.1.1n".to_owned()])]
    );
    assert_eq!(
        at("1.0.2zc"),
        [("CVE-2022-0778".to_owned(), vec!["1.0.2zd".to_owned()])]
    );
    // The fixed versions themselves, and a version only an exact criterion names.
    assert!(at("3.0.2").is_empty());
    assert!(at("1.1.1n").is_empty());
    assert!(at("1.0.2zd").is_empty());
    assert_eq!(
        at("3.0.4"),
        [("CVE-2022-2274".to_owned(), vec![])],
        "3.0.4 is past 0778's fix and is 2274's exact version"
    );
    assert!(at("3.0.5").is_empty());
    // The matched component is named by its CPE when it has no purl.
    let report = index.match_cpe_components(&[with_cpe(
        "openssl",
        "cpe:2.3:a:openssl:openssl:3.0.1:*:*:*:*:*:*:*",
    )]);
    assert_eq!(
        report.matches[0].purl,
        "cpe:2.3:a:openssl:openssl:3.0.1:*:*:*:*:*:*:*"
    );
    assert_eq!(report.matches[0].version, "3.0.1");
}

#[test]
fn kernel_release_candidates_match_only_their_own_criteria() {
    let index = fixture_index();
    let kernel = |cpe: &str| ids(&index, with_cpe("linux", cpe));
    assert_eq!(
        kernel("cpe:2.3:o:linux:linux_kernel:5.17:rc3:*:*:*:*:*:*"),
        ["CVE-2022-0847"]
    );
    assert!(kernel("cpe:2.3:o:linux:linux_kernel:5.17:rc6:*:*:*:*:*:*").is_empty());
    assert!(kernel("cpe:2.3:o:linux:linux_kernel:5.17:*:*:*:*:*:*:*").is_empty());
    // Yocto leaves the part unsaid.
    assert_eq!(
        kernel("cpe:2.3:*:linux:linux_kernel:5.16.10:*:*:*:*:*:*:*"),
        ["CVE-2022-0847"]
    );
}

#[test]
fn which_components_are_matched_skipped_or_reported() {
    let index = fixture_index();
    let pypi = Component {
        name: "requests".to_owned(),
        version: "2.19.0".to_owned(),
        purl: Some("pkg:pypi/requests@2.19.0".to_owned()),
        ..Component::default()
    };
    let deb_openssl = Component {
        name: "openssl".to_owned(),
        version: "3.0.1-1".to_owned(),
        purl: Some("pkg:deb/debian/openssl@3.0.1-1".to_owned()),
        ..Component::default()
    };
    let report = index.match_cpe_components(&[
        pypi,
        // A distribution's openssl is Debian's advisories' (backported fixes), not NVD's.
        deb_openssl,
        named("mystery-blob", "1.0"),
        with_cpe("bad", "cpe:/a:denx:u-boot:2022.04"),
        with_cpe("vague", "cpe:2.3:a:*:*:1.0:*:*:*:*:*:*:*"),
        named("busybox", ""),
        named("busybox", "git-snapshot"),
    ]);
    assert!(report.matches.is_empty(), "{:?}", report.matches);
    assert_eq!(report.unidentified.len(), 3);
    assert!(
        report.unidentified[0]
            .reason
            .contains("not a firmware name Rampart knows")
    );
    assert!(report.unidentified[1].reason.contains("cpe:2.3:"));
    assert!(
        report.unidentified[2]
            .reason
            .contains("no vendor and product")
    );
    assert_eq!(report.unversioned.len(), 1);
    assert_eq!(report.unordered_versions.len(), 1);
    assert!(
        report.unordered_versions[0]
            .reason
            .contains("does not start with a number")
    );
}

#[test]
fn duplicate_components_are_reported_once() {
    let index = fixture_index();
    let report =
        index.match_cpe_components(&[named("busybox", "1.35.0"), named("BusyBox", "1.35.0")]);
    assert_eq!(report.matches.len(), 1);
}

#[test]
fn the_firmware_name_table_maps_to_nvds_vendor_and_product() {
    let cpe = |name: &str| firmware_cpe(name).unwrap().to_formatted_string();
    assert_eq!(cpe("busybox"), "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*");
    assert_eq!(cpe("U-Boot"), "cpe:2.3:a:denx:u-boot:*:*:*:*:*:*:*:*");
    assert_eq!(
        cpe("kernel"),
        "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*"
    );
    assert_eq!(cpe("glibc"), "cpe:2.3:a:gnu:glibc:*:*:*:*:*:*:*:*");
    assert_eq!(
        cpe("dropbear"),
        "cpe:2.3:a:dropbear_ssh_project:dropbear_ssh:*:*:*:*:*:*:*:*"
    );
    // No guessing by prefix.
    assert!(firmware_cpe("busybox-extra").is_none());
    assert!(firmware_cpe("openssl3").is_none());
    for (name, ..) in FIRMWARE_NAMES {
        assert!(firmware_cpe(name).is_some(), "{name}");
    }
}

fn document(cves: &str) -> String {
    format!(r#"{{"vulnerabilities":[{cves}]}}"#)
}

fn cve(id: &str, status: &str, configurations: &str) -> String {
    format!(
        r#"{{"cve":{{"id":"{id}","vulnStatus":"{status}","configurations":[{configurations}]}}}}"#
    )
}

fn one(criteria: &str, vulnerable: bool, bounds: &str) -> String {
    format!(
        r#"{{"nodes":[{{"operator":"OR","cpeMatch":[{{"vulnerable":{vulnerable},"criteria":"{criteria}"{bounds}}}]}}]}}"#
    )
}

fn parse_one(json: &str) -> NvdAdvisory {
    parse_nvd_document(json.as_bytes()).unwrap().remove(0)
}

#[test]
fn a_rejected_cve_matches_nothing_and_withdraws_an_indexed_one() {
    let busybox_all = one("cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*", true, "");
    let live = parse_one(&document(&cve("CVE-2099-0001", "Analyzed", &busybox_all)));
    let rejected = parse_one(&document(&cve("CVE-2099-0001", "Rejected", &busybox_all)));
    assert!(rejected.is_withdrawn());

    let index = CpeIndex::build([rejected.clone()]);
    assert!(ids(&index, named("busybox", "1.36.1")).is_empty());
    assert_eq!(index.withdrawn_skipped(), 1);

    let mut index = CpeIndex::build([live]);
    assert_eq!(ids(&index, named("busybox", "1.36.1")), ["CVE-2099-0001"]);
    index.insert(rejected);
    assert!(ids(&index, named("busybox", "1.36.1")).is_empty());
    assert!(index.is_empty());
}

#[test]
fn a_changed_cve_replaces_the_earlier_record() {
    let before = parse_one(&document(&cve(
        "CVE-2099-0002",
        "Analyzed",
        &one(
            "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*",
            true,
            r#","versionEndExcluding":"1.37.0""#,
        ),
    )));
    let after = parse_one(&document(&cve(
        "CVE-2099-0002",
        "Modified",
        &one(
            "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*",
            true,
            r#","versionEndExcluding":"1.36.0""#,
        ),
    )));
    let mut index = CpeIndex::build([before]);
    assert_eq!(ids(&index, named("busybox", "1.36.1")), ["CVE-2099-0002"]);
    index.insert(after);
    assert_eq!(index.len(), 1);
    assert!(ids(&index, named("busybox", "1.36.1")).is_empty());
}

#[test]
fn platform_criteria_are_context_not_affected_components() {
    // A firmware flaw that needs given hardware: the hardware criterion is not vulnerable.
    let configuration = r#"{"operator":"AND","nodes":[
        {"operator":"OR","cpeMatch":[{"vulnerable":true,"criteria":"cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*"}]},
        {"operator":"OR","cpeMatch":[{"vulnerable":false,"criteria":"cpe:2.3:a:denx:u-boot:*:*:*:*:*:*:*:*"}]}]}"#;
    let index = CpeIndex::build([parse_one(&document(&cve(
        "CVE-2099-0003",
        "Analyzed",
        configuration,
    )))]);
    assert_eq!(ids(&index, named("busybox", "1.35.0")), ["CVE-2099-0003"]);
    assert!(ids(&index, named("u-boot", "2022.04")).is_empty());
}

#[test]
fn unusable_criteria_are_reported_and_the_rest_of_the_record_still_matches() {
    let configurations = [
        one("cpe:/a:busybox:busybox:1.0", true, ""),
        one(
            "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*",
            true,
            r#","versionEndExcluding":"latest""#,
        ),
        one("cpe:2.3:a:*:*:*:*:*:*:*:*:*:*", true, ""),
        one(
            "cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*",
            true,
            r#","versionEndExcluding":"1.36.0""#,
        ),
    ]
    .join(",");
    let index = CpeIndex::build([parse_one(&document(&cve(
        "CVE-2099-0004",
        "Analyzed",
        &configurations,
    )))]);
    assert_eq!(index.problems().len(), 3);
    assert!(index.problems()[0].problem.contains("cpe:2.3:"));
    assert!(index.problems()[1].problem.contains("versionEndExcluding"));
    assert!(
        index.problems()[2]
            .problem
            .contains("no vendor and product")
    );
    assert_eq!(ids(&index, named("busybox", "1.35.0")), ["CVE-2099-0004"]);
}

// ----- limits and refusals --------------------------------------------------------------------

#[test]
fn an_oversized_document_is_refused_before_parsing() {
    let mut bytes = document("").into_bytes();
    bytes.resize(nvd::MAX_NVD_BYTES + 1, b' ');
    assert!(matches!(
        parse_nvd_document(&bytes),
        Err(NvdError::TooLarge { .. })
    ));
}

#[test]
fn a_deeply_nested_document_is_refused_before_parsing() {
    let deep = format!(
        r#"{{"vulnerabilities":[{}{}]}}"#,
        "[".repeat(nvd::MAX_JSON_DEPTH),
        "]".repeat(nvd::MAX_JSON_DEPTH)
    );
    let error = parse_nvd_document(deep.as_bytes()).unwrap_err();
    assert!(matches!(error, NvdError::TooDeep { .. }), "{error}");
}

#[test]
fn a_document_that_is_not_nvd_json_is_refused_with_the_reason() {
    for bad in [
        "not json",
        r#"{"id":"GHSA-xxxx","affected":[]}"#,
        r#"{"vulnerabilities":[{"cve":{"configurations":[]}}]}"#,
    ] {
        let error = parse_nvd_document(bad.as_bytes()).unwrap_err();
        assert!(matches!(error, NvdError::Json(_)), "{bad}: {error}");
        assert!(error.to_string().contains("NVD CVE API 2.0"));
    }
    let empty_id = document(&cve(" ", "Analyzed", ""));
    assert!(matches!(
        parse_nvd_document(empty_id.as_bytes()),
        Err(NvdError::Invalid { .. })
    ));
}

#[test]
fn too_many_vulnerabilities_are_refused() {
    let item = r#"{"cve":{"id":"CVE-2099-0005"}}"#;
    let items = vec![item; nvd::MAX_VULNERABILITIES + 1].join(",");
    assert!(matches!(
        parse_nvd_document(document(&items).as_bytes()),
        Err(NvdError::TooMany {
            what: "vulnerabilities",
            ..
        })
    ));
    let items = vec![item; nvd::MAX_VULNERABILITIES].join(",");
    assert_eq!(
        parse_nvd_document(document(&items).as_bytes())
            .unwrap()
            .len(),
        nvd::MAX_VULNERABILITIES
    );
}

#[test]
fn too_many_configurations_or_nodes_are_refused() {
    let configuration = r#"{"nodes":[]}"#;
    let configurations = vec![configuration; nvd::MAX_CONFIGURATIONS + 1].join(",");
    let error =
        parse_nvd_document(document(&cve("CVE-2099-0006", "Analyzed", &configurations)).as_bytes())
            .unwrap_err();
    assert!(
        matches!(
            error,
            NvdError::TooMany {
                what: "configurations in one CVE",
                ..
            }
        ),
        "{error}"
    );

    let node = r#"{"operator":"OR","cpeMatch":[]}"#;
    let configuration = format!(
        r#"{{"nodes":[{}]}}"#,
        vec![node; nvd::MAX_NODES + 1].join(",")
    );
    let error =
        parse_nvd_document(document(&cve("CVE-2099-0006", "Analyzed", &configuration)).as_bytes())
            .unwrap_err();
    assert!(
        matches!(
            error,
            NvdError::TooMany {
                what: "nodes in one configuration",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn too_many_criteria_over_all_nodes_are_refused() {
    // Half in each of two nodes: the limit is per CVE, not per node.
    let criterion = r#"{"vulnerable":true,"criteria":"cpe:2.3:a:v:p:*:*:*:*:*:*:*:*"}"#;
    let half = vec![criterion; nvd::MAX_CRITERIA_PER_CVE / 2 + 1].join(",");
    let configuration = format!(r#"{{"nodes":[{{"cpeMatch":[{half}]}},{{"cpeMatch":[{half}]}}]}}"#);
    let error =
        parse_nvd_document(document(&cve("CVE-2099-0007", "Analyzed", &configuration)).as_bytes())
            .unwrap_err();
    assert!(
        matches!(
            error,
            NvdError::TooMany {
                what: "CPE match criteria in one CVE",
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn too_many_metrics_are_refused() {
    let metric = r#"{"type":"Primary","cvssData":{"vectorString":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}"#;
    let json = format!(
        r#"{{"vulnerabilities":[{{"cve":{{"id":"CVE-2099-0008","metrics":{{"cvssMetricV31":[{}]}}}}}}]}}"#,
        vec![metric; nvd::MAX_METRICS + 1].join(",")
    );
    assert!(matches!(
        parse_nvd_document(json.as_bytes()),
        Err(NvdError::TooMany {
            what: "CVSS v3.1 metrics",
            ..
        })
    ));
}

#[test]
fn overlong_fields_are_refused() {
    let long = "9".repeat(nvd::MAX_FIELD_LEN + 1);
    let long_id = document(&cve(&format!("CVE-{long}"), "Analyzed", ""));
    let error = parse_nvd_document(long_id.as_bytes()).unwrap_err();
    assert!(matches!(error, NvdError::Invalid { .. }), "{error}");
    assert!(
        error.to_string().len() < 300,
        "the message quotes a bounded id"
    );

    let long_bound = document(&cve(
        "CVE-2099-0009",
        "Analyzed",
        &one(
            "cpe:2.3:a:v:p:*:*:*:*:*:*:*:*",
            true,
            &format!(r#","versionEndExcluding":"{long}""#),
        ),
    ));
    let error = parse_nvd_document(long_bound.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("version bound"), "{error}");

    let long_criteria = document(&cve(
        "CVE-2099-0009",
        "Analyzed",
        &one(&format!("cpe:2.3:a:v:{long}:*:*:*:*:*:*:*:*"), true, ""),
    ));
    let error = parse_nvd_document(long_criteria.as_bytes()).unwrap_err();
    assert!(error.to_string().contains("criteria"), "{error}");
}
