//! Vendor-signed VEX: DSSE envelopes over CycloneDX VEX and OpenVEX signed with real keys,
//! verified against trusted vendor keys; unsigned, untrusted and tampered documents refused;
//! and VEX applied to the matches of a real PyPI advisory (`../shared/vectors/osv-pypi/`).

use base64::Engine as _;
use rampart_core::keys::{Key, Scheme};
use rampart_vuln::component::Component;
use rampart_vuln::matching::AdvisoryIndex;
use rampart_vuln::osv::parse_advisory;
use rampart_vuln::provenance::{Envelope, EnvelopeError};
use rampart_vuln::signed_vex::{
    CYCLONEDX_VEX_PAYLOAD_TYPE, OPENVEX_PAYLOAD_TYPE, SignedVexError, prepare_for_signing,
    read_vex_unverified, verify_signed_vex,
};
use rampart_vuln::suppression::SourcedVex;
use rampart_vuln::vex::{VexFormat, VexStatus};
use ring::signature::{self as rs, KeyPair as _};

const PYSEC_2019_217: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/vectors/osv-pypi/PYSEC-2019-217.json"
);

struct Vendor {
    key: Key,
    pair: rs::Ed25519KeyPair,
}

impl Vendor {
    fn new(seed: u8) -> Vendor {
        let pair = rs::Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref()).unwrap();
        Vendor { key, pair }
    }

    fn sign(&self, document: &[u8]) -> Vec<u8> {
        let payload_type = prepare_for_signing(document).unwrap();
        let envelope = Envelope::sign(payload_type, document, &self.key.key_id(), |m| {
            Ok::<_, std::convert::Infallible>(self.pair.sign(m).as_ref().to_vec())
        })
        .unwrap();
        envelope.to_line().into_bytes()
    }
}

const OPENVEX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/vex/jinja2-not-affected.openvex.json"
));

const CYCLONEDX_VEX: &str = r#"{
  "bomFormat":"CycloneDX","specVersion":"1.5","version":1,
  "metadata":{"timestamp":"2024-01-01T00:00:00Z"},
  "vulnerabilities":[
    {"id":"CVE-2019-10906",
     "analysis":{"state":"not_affected","justification":"code_not_reachable"},
     "affects":[{"ref":"pkg:pypi/jinja2@2.10"}]}
  ]
}"#;

#[test]
fn a_signed_openvex_and_cyclonedx_vex_verify_with_the_vendor_key() {
    let vendor = Vendor::new(7);
    let signed = vendor.sign(OPENVEX.as_bytes());
    let envelope: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    assert_eq!(envelope["payloadType"], OPENVEX_PAYLOAD_TYPE);
    let document = verify_signed_vex(&signed, std::slice::from_ref(&vendor.key)).unwrap();
    assert_eq!(document.format, VexFormat::OpenVex);
    assert_eq!(document.signer_key_id, Some(vendor.key.key_id()));
    assert_eq!(document.payload, OPENVEX.as_bytes());
    assert_eq!(
        document.statements[0].justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );

    let signed = vendor.sign(CYCLONEDX_VEX.as_bytes());
    let envelope: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    assert_eq!(envelope["payloadType"], CYCLONEDX_VEX_PAYLOAD_TYPE);
    // Another trusted key beside it does not matter: the hint names the vendor's.
    let other = Vendor::new(9);
    let document = verify_signed_vex(&signed, &[other.key.clone(), vendor.key.clone()]).unwrap();
    assert_eq!(document.format, VexFormat::CycloneDx);
}

#[test]
fn an_unsigned_vex_is_refused_when_signers_are_required() {
    let vendor = Vendor::new(7);
    // A bare document.
    let err = verify_signed_vex(OPENVEX.as_bytes(), std::slice::from_ref(&vendor.key)).unwrap_err();
    assert_eq!(err, SignedVexError::Unsigned, "{err}");
    assert!(err.to_string().contains("rampart risk vex sign"), "{err}");
    // An envelope with its signatures taken off.
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&vendor.sign(OPENVEX.as_bytes())).unwrap();
    envelope["signatures"] = serde_json::json!([]);
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let err = verify_signed_vex(&bytes, std::slice::from_ref(&vendor.key)).unwrap_err();
    assert_eq!(err, SignedVexError::Unsigned, "{err}");
    // Without signers configured it is read, and the caller is told it went unchecked.
    let (document, enveloped) = read_vex_unverified(OPENVEX.as_bytes()).unwrap();
    assert!(!enveloped);
    assert_eq!(document.signer_key_id, None);
    assert_eq!(document.statements.len(), 1);
}

#[test]
fn a_vex_signed_by_an_untrusted_key_is_refused() {
    let vendor = Vendor::new(7);
    let stranger = Vendor::new(8);
    let signed = stranger.sign(OPENVEX.as_bytes());
    let err = verify_signed_vex(&signed, std::slice::from_ref(&vendor.key)).unwrap_err();
    assert_eq!(
        err,
        SignedVexError::UntrustedSigner {
            key_ids: vec![stranger.key.key_id()]
        }
    );
    // The stranger's signature with the vendor's key id as its hint: checked against the
    // vendor's key, and it does not verify.
    let mut envelope: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    envelope["signatures"][0]["keyid"] = serde_json::json!(vendor.key.key_id());
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let err = verify_signed_vex(&bytes, std::slice::from_ref(&vendor.key)).unwrap_err();
    assert!(
        matches!(&err, SignedVexError::WrongSignature { key_id, .. } if *key_id == vendor.key.key_id()),
        "{err}"
    );
    // No keys at all is a configuration error, not an acceptance.
    assert_eq!(
        verify_signed_vex(&signed, &[]).unwrap_err(),
        SignedVexError::NoTrustedKeys
    );
}

#[test]
fn a_vex_whose_payload_was_changed_after_signing_is_refused() {
    let vendor = Vendor::new(7);
    let signed = vendor.sign(OPENVEX.as_bytes());
    let mut envelope: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    // The statement turned from one vulnerability to another after signing.
    let changed = OPENVEX.replace("CVE-2019-10906", "CVE-2016-10745");
    envelope["payload"] =
        serde_json::json!(base64::engine::general_purpose::STANDARD.encode(changed));
    let bytes = serde_json::to_vec(&envelope).unwrap();
    let err = verify_signed_vex(&bytes, std::slice::from_ref(&vendor.key)).unwrap_err();
    assert!(
        matches!(&err, SignedVexError::WrongSignature { signature: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("changed after signing"), "{err}");
    // The payload type is signed too: relabelled, the signature no longer verifies.
    let mut envelope: serde_json::Value = serde_json::from_slice(&signed).unwrap();
    envelope["payloadType"] = serde_json::json!(CYCLONEDX_VEX_PAYLOAD_TYPE);
    let bytes = serde_json::to_vec(&envelope).unwrap();
    assert!(matches!(
        verify_signed_vex(&bytes, std::slice::from_ref(&vendor.key)).unwrap_err(),
        SignedVexError::WrongSignature { .. }
    ));
}

#[test]
fn an_envelope_of_another_payload_type_or_a_mislabelled_document_is_refused() {
    let vendor = Vendor::new(7);
    let envelope = Envelope::sign(
        "application/vnd.in-toto+json",
        OPENVEX.as_bytes(),
        &vendor.key.key_id(),
        |m| Ok::<_, std::convert::Infallible>(vendor.pair.sign(m).as_ref().to_vec()),
    )
    .unwrap();
    let err = verify_signed_vex(
        envelope.to_line().as_bytes(),
        std::slice::from_ref(&vendor.key),
    )
    .unwrap_err();
    assert!(matches!(err, SignedVexError::NotVexPayload(_)), "{err}");
    // An OpenVEX document signed as CycloneDX: the signature holds, the label does not.
    let envelope = Envelope::sign(
        CYCLONEDX_VEX_PAYLOAD_TYPE,
        OPENVEX.as_bytes(),
        &vendor.key.key_id(),
        |m| Ok::<_, std::convert::Infallible>(vendor.pair.sign(m).as_ref().to_vec()),
    )
    .unwrap();
    let err = verify_signed_vex(
        envelope.to_line().as_bytes(),
        std::slice::from_ref(&vendor.key),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SignedVexError::FormatMismatch {
                found: VexFormat::OpenVex,
                ..
            }
        ),
        "{err}"
    );
    // Not VEX at all is never signed, nor an SBOM that makes no VEX statement.
    assert!(prepare_for_signing(br#"{"_type":"https://in-toto.io/Statement/v1"}"#).is_err());
    let sbom = br#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[]}"#;
    assert!(prepare_for_signing(sbom).is_err());
}

#[test]
fn an_oversized_or_deeply_nested_envelope_is_refused_before_parsing() {
    let vendor = Vendor::new(7);
    let big = vec![b' '; rampart_vuln::provenance::MAX_ENVELOPE_BYTES + 1];
    assert!(matches!(
        verify_signed_vex(&big, std::slice::from_ref(&vendor.key)).unwrap_err(),
        SignedVexError::Envelope(EnvelopeError::TooLarge { .. })
    ));
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        verify_signed_vex(deep.as_bytes(), std::slice::from_ref(&vendor.key)).unwrap_err(),
        SignedVexError::Envelope(EnvelopeError::TooDeep)
    ));
}

fn jinja2(reference: &str) -> Component {
    Component {
        reference: reference.into(),
        name: "jinja2".into(),
        version: "2.10".into(),
        purl: Some("pkg:pypi/jinja2@2.10".into()),
        ..Component::default()
    }
}

#[test]
fn a_signed_vex_suppresses_a_real_pypi_advisory_with_its_justification() {
    let record = std::fs::read(PYSEC_2019_217).expect("the osv-pypi vectors (../shared/vectors)");
    let mut index = AdvisoryIndex::new();
    index.insert(parse_advisory(&record).unwrap());
    let components = vec![jinja2("a")];
    let report = index.match_components(&components);
    assert_eq!(report.matches.len(), 1, "{:?}", report.matches);
    assert_eq!(report.matches[0].advisory, "PYSEC-2019-217");

    let vendor = Vendor::new(7);
    let document = verify_signed_vex(
        &vendor.sign(OPENVEX.as_bytes()),
        std::slice::from_ref(&vendor.key),
    )
    .unwrap();
    // The statement names the CVE; the advisory is PYSEC-2019-217 with the CVE as alias.
    let vex = SourcedVex::new(vec![("vendor.vex.json".into(), document.statements)]);
    let (kept, suppressed) = vex.split(report.matches.clone(), &components);
    assert!(kept.is_empty());
    assert_eq!(suppressed.len(), 1);
    let verdict = &suppressed[0].vex;
    assert_eq!(verdict.status, VexStatus::NotAffected);
    assert_eq!(
        verdict.justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
    assert!(
        verdict
            .impact_statement
            .as_deref()
            .unwrap()
            .contains("sandbox")
    );
    assert_eq!(verdict.source, "vendor.vex.json");
    let json = serde_json::to_value(&suppressed[0]).unwrap();
    assert_eq!(json["advisory"], "PYSEC-2019-217");
    assert_eq!(json["vex"]["status"], "not_affected");

    // A later `affected` statement from another document overrides the earlier one.
    let later = OPENVEX
        .replace("2024-03-01T12:00:00Z", "2024-06-01T00:00:00Z")
        .replace(
            r#""status": "not_affected""#,
            r#""status": "affected", "action_statement": "upgrade""#,
        );
    let later = verify_signed_vex(
        &vendor.sign(later.as_bytes()),
        std::slice::from_ref(&vendor.key),
    )
    .unwrap();
    let vex = SourcedVex::new(vec![
        ("vendor.vex.json".into(), vex_statements(OPENVEX)),
        ("later.vex.json".into(), later.statements),
    ]);
    let (kept, suppressed) = vex.split(report.matches.clone(), &components);
    assert_eq!(kept.len(), 1);
    assert!(suppressed.is_empty());

    // Two listed copies of the pin, the statement naming only one by bom-ref: not suppressed.
    let by_ref = r#"{"@context":"https://openvex.dev/ns/v0.2.0","timestamp":"2024-03-01T12:00:00Z",
      "statements":[{"vulnerability":{"name":"CVE-2019-10906"},"products":[{"@id":"a"}],
      "status":"not_affected","justification":"component_not_present"}]}"#;
    let vex = SourcedVex::new(vec![("by-ref".into(), vex_statements(by_ref))]);
    let two = vec![jinja2("a"), jinja2("b")];
    let (kept, _) = vex.split(index.match_components(&two).matches, &two);
    assert_eq!(kept.len(), 1);
    let (kept, suppressed) = vex.split(report.matches, &components);
    assert!(kept.is_empty() && suppressed.len() == 1);
}

fn vex_statements(text: &str) -> Vec<rampart_vuln::vex::VexStatement> {
    rampart_vuln::vex::parse_vex(text.as_bytes()).unwrap()
}
