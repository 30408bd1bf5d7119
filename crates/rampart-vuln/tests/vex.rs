//! VEX: CycloneDX VEX and OpenVEX read, the conflict rule, product matching, every limit, and
//! a real PyPI advisory suppressed by its alias.

use rampart_vuln::component::Component;
use rampart_vuln::vex::{
    MAX_ID_BYTES, MAX_PRODUCTS_PER_STATEMENT, MAX_STATEMENTS, MAX_VEX_BYTES, MAX_VEX_DEPTH,
    VexError, VexFormat, VexSet, VexStatement, VexStatus, parse_vex,
};

fn jinja2() -> Component {
    Component {
        reference: "pkg:pypi/jinja2@2.10".into(),
        name: "jinja2".into(),
        version: "2.10".into(),
        purl: Some("pkg:pypi/jinja2@2.10".into()),
        ..Component::default()
    }
}

const CYCLONEDX_VEX: &str = r#"{
  "bomFormat":"CycloneDX","specVersion":"1.5","version":1,
  "metadata":{"timestamp":"2024-01-01T00:00:00Z"},
  "vulnerabilities":[
    {"id":"CVE-2019-10906",
     "references":[{"id":"GHSA-462w-v97r-4m45","source":{"name":"GitHub"}}],
     "analysis":{"state":"not_affected","justification":"code_not_reachable",
                 "detail":"The sandbox is never used: templates are built in at build time.",
                 "lastUpdated":"2024-03-01T12:00:00Z"},
     "affects":[{"ref":"urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:pypi/jinja2@2.10"}]},
    {"id":"CVE-2018-18074",
     "analysis":{"state":"exploitable"},
     "affects":[{"ref":"pkg:pypi/requests@2.19.0"}]},
    {"id":"CVE-2020-0000","description":"listed without analysis: no statement"}
  ]
}"#;

#[test]
fn cyclonedx_vex_statements_are_read_with_their_justification() {
    let statements = parse_vex(CYCLONEDX_VEX.as_bytes()).unwrap();
    assert_eq!(statements.len(), 2);
    let first = &statements[0];
    assert_eq!(first.format, VexFormat::CycloneDx);
    assert_eq!(first.vulnerability, "CVE-2019-10906");
    assert_eq!(first.aliases, ["GHSA-462w-v97r-4m45"]);
    assert_eq!(first.status, VexStatus::NotAffected);
    assert_eq!(first.justification.as_deref(), Some("code_not_reachable"));
    assert!(first.detail.as_deref().unwrap().contains("sandbox"));
    assert_eq!(first.timestamp, Some(1_709_294_400));
    assert!(first.suppresses());
    // No time of its own: the document's.
    assert_eq!(statements[1].status, VexStatus::Affected);
    assert_eq!(statements[1].timestamp, Some(1_704_067_200));
    assert!(!statements[1].suppresses());
}

#[test]
fn cyclonedx_states_map_onto_the_four_statuses() {
    for (state, status) in [
        ("not_affected", VexStatus::NotAffected),
        ("false_positive", VexStatus::NotAffected),
        ("resolved", VexStatus::Fixed),
        ("resolved_with_pedigree", VexStatus::Fixed),
        ("exploitable", VexStatus::Affected),
        ("in_triage", VexStatus::UnderInvestigation),
    ] {
        let doc = format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{{"id":"CVE-1","analysis":{{"state":"{state}"}},"affects":[{{"ref":"x"}}]}}]}}"#
        );
        let statements = parse_vex(doc.as_bytes()).unwrap();
        assert_eq!(statements[0].status, status, "{state}");
        assert_eq!(statements[0].stated_status, state);
    }
    let doc = br#"{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"id":"CVE-1","analysis":{"state":"fine"},"affects":[]}]}"#;
    let err = parse_vex(doc).unwrap_err();
    assert!(
        matches!(&err, VexError::InvalidStatement { index: 0, reason } if reason.contains("\"fine\"")),
        "{err}"
    );
}

const OPENVEX: &str = r#"{
  "@context":"https://openvex.dev/ns/v0.2.0",
  "@id":"https://vendor.example/vex/2024-0001",
  "author":"Gateway Vendor Security","timestamp":"2024-02-01T00:00:00Z","version":1,
  "statements":[
    {"vulnerability":{"name":"CVE-2019-10906","aliases":["GHSA-462w-v97r-4m45"]},
     "products":[{"@id":"pkg:oci/gateway-image@sha256%3Aabc",
                  "subcomponents":[{"@id":"pkg:pypi/jinja2@2.10"}]}],
     "status":"not_affected","justification":"vulnerable_code_not_in_execute_path",
     "impact_statement":"Templates are never rendered from user input."},
    {"vulnerability":{"name":"CVE-2018-18074"},
     "products":[{"@id":"pkg:pypi/requests"}],
     "status":"fixed","timestamp":"2024-02-02T00:00:00Z"}
  ]
}"#;

#[test]
fn openvex_statements_are_read_with_products_and_subcomponents() {
    let statements = parse_vex(OPENVEX.as_bytes()).unwrap();
    assert_eq!(statements.len(), 2);
    let first = &statements[0];
    assert_eq!(first.format, VexFormat::OpenVex);
    assert_eq!(
        first.products,
        ["pkg:oci/gateway-image@sha256%3Aabc", "pkg:pypi/jinja2@2.10"]
    );
    assert_eq!(
        first.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
    assert_eq!(
        first.detail.as_deref(),
        Some("Templates are never rendered from user input.")
    );
    assert_eq!(first.timestamp, Some(1_706_745_600), "the document's time");
    assert_eq!(statements[1].status, VexStatus::Fixed);
    assert_eq!(statements[1].timestamp, Some(1_706_832_000));
}

#[test]
fn openvex_v0_0_bare_strings_are_read() {
    let doc = br#"{"@context":"https://openvex.dev/ns","statements":[
      {"vulnerability":"CVE-2019-10906","products":["pkg:pypi/jinja2@2.10"],
       "status":"not_affected","justification":"component_not_present"}]}"#;
    let statements = parse_vex(doc).unwrap();
    assert_eq!(statements[0].vulnerability, "CVE-2019-10906");
    assert_eq!(statements[0].products, ["pkg:pypi/jinja2@2.10"]);
    assert_eq!(statements[0].timestamp, None);
}

#[test]
fn openvex_not_affected_without_a_reason_is_refused() {
    let doc = br#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
      {"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:pypi/a@1"}],"status":"not_affected"}]}"#;
    let err = parse_vex(doc).unwrap_err();
    assert!(
        matches!(&err, VexError::InvalidStatement { index: 0, reason } if reason.contains("justification")),
        "{err}"
    );
}

fn statement(
    vulnerability: &str,
    product: &str,
    status: VexStatus,
    timestamp: Option<i64>,
) -> VexStatement {
    VexStatement {
        format: VexFormat::OpenVex,
        vulnerability: vulnerability.into(),
        aliases: Vec::new(),
        products: vec![product.into()],
        status,
        stated_status: String::new(),
        justification: None,
        detail: None,
        timestamp,
    }
}

#[test]
fn conflicting_vex_statements_the_most_recent_wins() {
    let set = VexSet::new(vec![
        statement(
            "CVE-1",
            "pkg:pypi/jinja2@2.10",
            VexStatus::Affected,
            Some(100),
        ),
        statement(
            "CVE-1",
            "pkg:pypi/jinja2@2.10",
            VexStatus::NotAffected,
            Some(200),
        ),
        statement(
            "CVE-2",
            "pkg:pypi/jinja2@2.10",
            VexStatus::NotAffected,
            Some(100),
        ),
        statement(
            "CVE-2",
            "pkg:pypi/jinja2@2.10",
            VexStatus::Affected,
            Some(300),
        ),
    ]);
    let decided = set.applies(&["CVE-1"], &jinja2()).unwrap();
    assert_eq!(
        (decided.status, decided.timestamp),
        (VexStatus::NotAffected, Some(200))
    );
    let decided = set.applies(&["CVE-2"], &jinja2()).unwrap();
    assert_eq!(
        (decided.status, decided.timestamp),
        (VexStatus::Affected, Some(300))
    );
}

#[test]
fn conflicting_vex_statements_at_the_same_time_affected_wins() {
    for order in [[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]] {
        let statuses = [
            VexStatus::NotAffected,
            VexStatus::Affected,
            VexStatus::Fixed,
            VexStatus::UnderInvestigation,
        ];
        let set = VexSet::new(
            order
                .iter()
                .map(|&i| statement("CVE-1", "pkg:pypi/jinja2@2.10", statuses[i], Some(100)))
                .collect(),
        );
        assert_eq!(
            set.applies(&["CVE-1"], &jinja2()).unwrap().status,
            VexStatus::Affected
        );
    }
    // Without an affected statement, under investigation still beats fixed and not affected.
    let set = VexSet::new(vec![
        statement(
            "CVE-1",
            "pkg:pypi/jinja2@2.10",
            VexStatus::NotAffected,
            None,
        ),
        statement(
            "CVE-1",
            "pkg:pypi/jinja2@2.10",
            VexStatus::UnderInvestigation,
            None,
        ),
        statement("CVE-1", "pkg:pypi/jinja2@2.10", VexStatus::Fixed, None),
    ]);
    assert_eq!(
        set.applies(&["CVE-1"], &jinja2()).unwrap().status,
        VexStatus::UnderInvestigation
    );
}

#[test]
fn a_vex_statement_without_a_time_is_older_than_one_with_a_time() {
    let set = VexSet::new(vec![
        statement("CVE-1", "pkg:pypi/jinja2@2.10", VexStatus::Affected, None),
        statement(
            "CVE-1",
            "pkg:pypi/jinja2@2.10",
            VexStatus::NotAffected,
            Some(1),
        ),
    ]);
    assert_eq!(
        set.applies(&["CVE-1"], &jinja2()).unwrap().status,
        VexStatus::NotAffected
    );
}

#[test]
fn a_vex_statement_applies_only_to_the_components_and_vulnerabilities_it_names() {
    let product_forms = [
        ("pkg:pypi/jinja2@2.10", true),
        ("pkg:pypi/jinja2", true),
        ("pkg:pypi/jinja2@2.10.1", false),
        ("pkg:pypi/jinja2@2.1", false),
        ("pkg:pypi/jinja", false),
        ("pkg:npm/jinja2@2.10", false),
        (
            "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:pypi/jinja2@2.10",
            true,
        ),
        (
            "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#other",
            false,
        ),
    ];
    for (product, applies) in product_forms {
        let set = VexSet::new(vec![statement(
            "CVE-1",
            product,
            VexStatus::NotAffected,
            None,
        )]);
        assert_eq!(
            set.applies(&["CVE-1"], &jinja2()).is_some(),
            applies,
            "{product}"
        );
        assert!(set.applies(&["CVE-2"], &jinja2()).is_none());
    }
    // A qualified component purl is covered by the unqualified product purl; a qualified
    // product purl names only that qualified form.
    let libc = Component {
        name: "libc6".into(),
        version: "2.36-9".into(),
        purl: Some("pkg:deb/debian/libc6@2.36-9?arch=amd64&upstream=glibc".into()),
        ..Component::default()
    };
    let set = VexSet::new(vec![
        statement(
            "CVE-A",
            "pkg:deb/debian/libc6@2.36-9",
            VexStatus::Fixed,
            None,
        ),
        statement(
            "CVE-B",
            "pkg:deb/debian/libc6@2.36-9?arch=arm64",
            VexStatus::Fixed,
            None,
        ),
    ]);
    assert!(set.applies(&["CVE-A"], &libc).is_some());
    assert!(set.applies(&["CVE-B"], &libc).is_none());
    // A bom-ref that is not a purl.
    let busybox = Component {
        reference: "busybox-1.36".into(),
        name: "busybox".into(),
        version: "1.36.1".into(),
        ..Component::default()
    };
    let set = VexSet::new(vec![statement(
        "CVE-C",
        "busybox-1.36",
        VexStatus::NotAffected,
        None,
    )]);
    assert!(set.applies(&["CVE-C"], &busybox).is_some());
}

#[test]
fn vex_suppresses_a_real_pypi_advisory_through_its_alias() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/osv-pypi/PYSEC-2019-217.json"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}")))
            .unwrap();
    let mut ids = vec![record["id"].as_str().unwrap()];
    ids.extend(
        record["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap()),
    );
    assert_eq!(ids[0], "PYSEC-2019-217");
    // The vendor's VEX names the CVE, the advisory is a PYSEC record: the alias joins them.
    for document in [CYCLONEDX_VEX, OPENVEX] {
        let set = VexSet::new(parse_vex(document.as_bytes()).unwrap());
        let decided = set.applies(&ids, &jinja2()).unwrap();
        assert!(decided.suppresses());
        assert!(decided.justification.is_some());
    }
}

#[test]
fn vex_over_the_size_limit_is_refused_before_parsing() {
    let oversized = vec![b' '; MAX_VEX_BYTES + 1];
    assert_eq!(
        parse_vex(&oversized),
        Err(VexError::TooLarge {
            size: MAX_VEX_BYTES + 1,
            max: MAX_VEX_BYTES
        })
    );
}

#[test]
fn vex_nested_deeper_than_the_limit_is_refused() {
    let doc = format!(
        r#"{{"@context":"https://openvex.dev/ns","x":{}1{}}}"#,
        "[".repeat(MAX_VEX_DEPTH),
        "]".repeat(MAX_VEX_DEPTH)
    );
    assert!(matches!(
        parse_vex(doc.as_bytes()),
        Err(VexError::TooDeep { max, .. }) if max == MAX_VEX_DEPTH
    ));
}

#[test]
fn vex_with_more_statements_than_the_limit_is_refused() {
    let one = r#"{"vulnerability":"CVE-1","products":["p"],"status":"affected"}"#;
    let doc = format!(
        r#"{{"@context":"https://openvex.dev/ns","statements":[{}]}}"#,
        vec![one; MAX_STATEMENTS + 1].join(",")
    );
    assert_eq!(
        parse_vex(doc.as_bytes()),
        Err(VexError::TooManyStatements {
            max: MAX_STATEMENTS
        })
    );
}

#[test]
fn vex_statement_with_more_products_than_the_limit_is_refused() {
    let products = vec![r#""p""#; MAX_PRODUCTS_PER_STATEMENT + 1].join(",");
    let doc = format!(
        r#"{{"@context":"https://openvex.dev/ns","statements":[{{"vulnerability":"CVE-1","products":[{products}],"status":"affected"}}]}}"#
    );
    assert_eq!(
        parse_vex(doc.as_bytes()),
        Err(VexError::TooManyProducts {
            index: 0,
            max: MAX_PRODUCTS_PER_STATEMENT
        })
    );
}

#[test]
fn vex_field_longer_than_the_limit_is_refused() {
    let long = "x".repeat(MAX_ID_BYTES + 1);
    let doc = format!(
        r#"{{"@context":"https://openvex.dev/ns","statements":[{{"vulnerability":"CVE-1","products":["{long}"],"status":"affected"}}]}}"#
    );
    assert!(matches!(
        parse_vex(doc.as_bytes()),
        Err(VexError::FieldTooLong {
            field: "product",
            index: 0,
            ..
        })
    ));
}

#[test]
fn documents_that_are_not_vex_are_refused_with_a_reason() {
    assert!(matches!(parse_vex(b"{"), Err(VexError::NotJson(_))));
    assert_eq!(parse_vex(br#"{"name":"x"}"#), Err(VexError::UnknownFormat));
    assert_eq!(parse_vex(b"[]"), Err(VexError::UnknownFormat));
    assert_eq!(
        parse_vex(br#"{"bomFormat":"CycloneDX","specVersion":"1.3","vulnerabilities":[]}"#),
        Err(VexError::UnsupportedSpecVersion {
            found: "1.3".into()
        })
    );
    let err = parse_vex(
        br#"{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-1","products":["p"],"status":"affected","timestamp":"yesterday"}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("RFC 3339"), "{err}");
    for empty in [
        &br#"{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"CVE-1","products":[""],"status":"affected"}]}"#[..],
        br#"{"@context":"https://openvex.dev/ns","statements":[{"vulnerability":"","products":["p"],"status":"affected"}]}"#,
        br#"{"bomFormat":"CycloneDX","specVersion":"1.6","vulnerabilities":[{"id":"CVE-1","analysis":{"state":"exploitable"},"affects":[{"ref":""}]}]}"#,
    ] {
        let err = parse_vex(empty).unwrap_err();
        assert!(
            matches!(&err, VexError::InvalidStatement { reason, .. } if reason.contains("empty")),
            "{err}"
        );
    }
    let err = parse_vex(br#"{"@context":"https://openvex.dev/ns","statements":[{"products":[]}]}"#)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VexError::Malformed {
                format: VexFormat::OpenVex,
                ..
            }
        ),
        "{err}"
    );
}
