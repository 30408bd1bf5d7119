use super::*;
use crate::device_signature::tests::TestKey;

const DEVICE: &str = "device-7";
const REQUEST: &str = "ev-1";
const INCIDENT: &str = "inc-1";
const NONCE: &str = "00112233445566778899aabbccddeeff";

fn head() -> ChainHead {
    ChainHead {
        seq: 41,
        hash: "ab".repeat(32),
    }
}

fn manifest_of(items: &[(String, Vec<u8>)]) -> Manifest {
    Manifest::new(
        DEVICE,
        REQUEST,
        INCIDENT,
        NONCE,
        1_767_000_000,
        "0.1.0",
        items,
        head(),
    )
}

fn bundle_with(key: &TestKey, items: Vec<(String, Vec<u8>)>) -> Bundle {
    let manifest = manifest_of(&items);
    let signature = key.sign(&manifest.signing_message());
    Bundle {
        manifest,
        items,
        signature,
        certificate: key.certificate.clone(),
        quote: None,
    }
}

fn assert_signature_invalid(bundle: &Bundle, key: &TestKey) {
    assert!(matches!(
        bundle.verify_signature(&key.spki()),
        Err(EvidenceError::Signature(SignatureError::Invalid { .. }))
    ));
}

/// A P-256 device key and a bundle of the sample items it signed.
fn sample() -> (TestKey, Bundle) {
    let key = TestKey::p256();
    let bundle = bundle_with(&key, sample_items());
    (key, bundle)
}

fn sample_items() -> Vec<(String, Vec<u8>)> {
    vec![
        ("agent-log/agent.log".into(), b"{\"seq\":0}\n".to_vec()),
        ("slots/a.sha256".into(), vec![0u8; 300]),
        (
            "commands/ip-addr.txt".into(),
            "inet 10.0.0.7 \u{e9}\n".into(),
        ),
    ]
}

fn expected() -> ExpectedRequest<'static> {
    ExpectedRequest {
        device_id: DEVICE,
        request_id: REQUEST,
        incident: INCIDENT,
        nonce: NONCE,
    }
}

#[test]
fn a_bundle_round_trips_and_verifies_with_the_device_key() {
    let (key, bundle) = sample();
    let bytes = bundle.to_bytes();
    let parsed = Bundle::parse(&bytes, bytes.len() as u64).unwrap();
    assert_eq!(parsed, bundle);
    parsed.check_request(&expected()).unwrap();
    parsed.verify_signature(&key.spki()).unwrap();
    assert_eq!(parsed.certificate_spki().unwrap(), key.spki());
    assert_eq!(parsed.item("slots/a.sha256"), Some(&[0u8; 300][..]));
}

#[test]
fn every_device_key_algorithm_verifies_and_a_mismatched_key_type_is_named() {
    for key in [
        TestKey::p256(),
        TestKey::new(
            &rcgen::PKCS_ECDSA_P384_SHA384,
            SignatureAlgorithm::EcdsaP384Sha384,
        ),
        TestKey::new(&rcgen::PKCS_ED25519, SignatureAlgorithm::Ed25519),
    ] {
        let bundle = bundle_with(&key, sample_items());
        bundle.verify_signature(&key.spki()).unwrap();
        let mut claimed = bundle;
        claimed.signature.algorithm = "rsa_pss_sha256".into();
        let mismatch = claimed.verify_signature(&key.spki());
        assert!(
            matches!(
                mismatch,
                Err(EvidenceError::Signature(SignatureError::KeyMismatch { .. }))
            ),
            "{mismatch:?}"
        );
    }
}

#[test]
fn a_truncated_bundle_is_refused_as_truncated() {
    let key = TestKey::p256();
    let bytes = bundle_with(&key, sample_items()).to_bytes();
    let cut = &bytes[..bytes.len() - 40];
    assert!(matches!(
        Bundle::parse(cut, 1 << 20),
        Err(EvidenceError::Truncated { .. })
    ));
}

#[test]
fn an_oversized_bundle_is_refused_before_it_is_parsed() {
    let key = TestKey::p256();
    let bytes = bundle_with(&key, sample_items()).to_bytes();
    assert_eq!(
        Bundle::parse(&bytes, bytes.len() as u64 - 1),
        Err(EvidenceError::TooLarge {
            size: bytes.len() as u64,
            max: bytes.len() as u64 - 1
        })
    );
    // Not even JSON: the size alone refuses it.
    assert!(matches!(
        Bundle::parse(&[b'['; 100], 99),
        Err(EvidenceError::TooLarge { .. })
    ));
}

#[test]
fn a_bundle_for_another_device_is_refused() {
    let (_, bundle) = sample();
    let other_device = ExpectedRequest {
        device_id: "device-8",
        ..expected()
    };
    let other_request = ExpectedRequest {
        request_id: "ev-2",
        ..expected()
    };
    let other_incident = ExpectedRequest {
        incident: "inc-2",
        ..expected()
    };
    for (other, field) in [
        (other_device, "device_id"),
        (other_request, "request_id"),
        (other_incident, "incident"),
    ] {
        let refused = bundle.check_request(&other);
        assert!(
            matches!(&refused, Err(EvidenceError::WrongRequest { field: f, .. }) if *f == field),
            "{refused:?}"
        );
    }
}

#[test]
fn a_bundle_replayed_for_a_request_with_another_nonce_is_refused() {
    let (key, bundle) = sample();
    let replay = ExpectedRequest {
        nonce: "ffeeddccbbaa99887766554433221100",
        ..expected()
    };
    assert!(matches!(
        bundle.check_request(&replay),
        Err(EvidenceError::NonceMismatch { .. })
    ));
    // Rewriting the nonce to match breaks the signature.
    let mut rewritten = bundle;
    rewritten.manifest.nonce = replay.nonce.to_owned();
    rewritten.check_request(&replay).unwrap();
    assert_signature_invalid(&rewritten, &key);
}

#[test]
fn a_tampered_item_is_refused_by_its_hash_or_length() {
    let key = TestKey::p256();
    let mut bundle = bundle_with(&key, sample_items());
    bundle.items[1].1[7] ^= 1;
    assert!(matches!(
        Bundle::parse(&bundle.to_bytes(), 1 << 20),
        Err(EvidenceError::ItemHash { name, .. }) if name == "slots/a.sha256"
    ));
    bundle.items[1].1.pop();
    assert!(matches!(
        Bundle::parse(&bundle.to_bytes(), 1 << 20),
        Err(EvidenceError::ItemLength {
            listed: 300,
            actual: 299,
            ..
        })
    ));
    // Re-listing the tampered item changes the manifest, which the signature covers.
    let mut relisted = bundle_with(&key, sample_items());
    relisted.items[1].1[7] ^= 1;
    relisted.manifest = manifest_of(&relisted.items);
    let parsed = Bundle::parse(&relisted.to_bytes(), 1 << 20).unwrap();
    assert_signature_invalid(&parsed, &key);
}

#[test]
fn a_wrongly_signed_bundle_is_refused() {
    let device = TestKey::p256();
    let attacker = TestKey::p256();
    let bundle = bundle_with(&attacker, sample_items());
    assert_signature_invalid(&bundle, &device);
    // A signature over the bare canonical manifest (no context prefix) does not pass either.
    let mut bare = bundle_with(&device, sample_items());
    bare.signature = device.sign(&bare.manifest.canonical_bytes());
    assert!(bare.verify_signature(&device.spki()).is_err());
}

#[test]
fn items_missing_unlisted_or_given_twice_are_refused() {
    let (_, bundle) = sample();
    let mut missing = bundle.clone();
    missing.items.pop();
    assert!(matches!(
        Bundle::parse(&missing.to_bytes(), 1 << 20),
        Err(EvidenceError::MissingItem { .. })
    ));
    let mut unlisted = bundle.clone();
    unlisted.items.push(("extra".into(), b"x".to_vec()));
    assert!(matches!(
        Bundle::parse(&unlisted.to_bytes(), 1 << 20),
        Err(EvidenceError::UnlistedItem { name }) if name == "extra"
    ));
    let text = String::from_utf8(bundle.to_bytes()).unwrap();
    let twice = text.replacen(
        "\"items\":{",
        "\"items\":{\"agent-log/agent.log\":\"AA==\",",
        1,
    );
    assert!(matches!(
        Bundle::parse(twice.as_bytes(), 1 << 20),
        Err(EvidenceError::Malformed { reason }) if reason.contains("twice")
    ));
    let mut listed_twice = bundle;
    let entry = listed_twice.manifest.items[0].clone();
    listed_twice.manifest.items.push(entry);
    assert!(matches!(
        Bundle::parse(&listed_twice.to_bytes(), 1 << 20),
        Err(EvidenceError::DuplicateItem { .. })
    ));
}

#[test]
fn item_names_that_escape_a_directory_are_refused() {
    for name in [
        "../etc/passwd",
        "/etc/passwd",
        "a//b",
        "a/./b",
        "a\\b",
        "",
        "a b",
        &"x".repeat(129),
    ] {
        assert!(
            matches!(check_name(name), Err(EvidenceError::BadName { .. })),
            "{name:?}"
        );
    }
    check_name("journal/journalctl.txt").unwrap();
    let key = TestKey::p256();
    let bundle = bundle_with(&key, vec![("../escape".into(), b"x".to_vec())]);
    assert!(matches!(
        Bundle::parse(&bundle.to_bytes(), 1 << 20),
        Err(EvidenceError::BadName { .. })
    ));
}

#[test]
fn unknown_fields_and_formats_are_refused() {
    let key = TestKey::p256();
    let text = String::from_utf8(bundle_with(&key, sample_items()).to_bytes()).unwrap();
    let other_format = text.replacen("rampart-evidence/1", "rampart-evidence/2", 1);
    assert!(matches!(
        Bundle::parse(other_format.as_bytes(), 1 << 20),
        Err(EvidenceError::WrongFormat { .. })
    ));
    let extra = text.replacen("\"manifest\":{", "\"manifest\":{\"extra\":1,", 1);
    assert!(matches!(
        Bundle::parse(extra.as_bytes(), 1 << 20),
        Err(EvidenceError::Malformed { .. })
    ));
}

#[test]
fn the_quote_qualifying_data_binds_the_manifest_and_the_nonce() {
    let (_, bundle) = sample();
    let data = bundle.manifest.quote_qualifying_data().unwrap();
    let mut expected_input = bundle.manifest.canonical_bytes();
    expected_input.extend_from_slice(&hex::decode(NONCE).unwrap());
    assert_eq!(data, sha256(&expected_input));
    let mut other = bundle.manifest.clone();
    other.collected_at += 1;
    assert_ne!(other.quote_qualifying_data().unwrap(), data);
}

#[test]
fn the_canonical_manifest_has_sorted_keys_and_no_whitespace() {
    let key = TestKey::p256();
    let bundle = bundle_with(&key, vec![("a".into(), b"x".to_vec())]);
    let text = String::from_utf8(bundle.manifest.canonical_bytes()).unwrap();
    assert!(
        text.starts_with("{\"agent_log_head\":{\"hash\":\""),
        "{text}"
    );
    assert!(!text.contains(' '));
    assert_eq!(bundle.manifest_digest(), sha256(text.as_bytes()));
}
