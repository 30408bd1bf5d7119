use rampart_attest::device::TpmDevice as _;
use rampart_attest::soft::SoftTpm;

use super::*;
use crate::agent_log::ChainHead;
use crate::evidence::{DeviceSignature, Manifest, SignatureAlgorithm};

/// A device key and its self-signed certificate (the custody checks only need the key's
/// SubjectPublicKeyInfo from it; the chain to the CA is the verifier's).
fn device_identity() -> (Vec<u8>, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["dev-1".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.der().to_vec(), key)
}

const NONCE: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn expected() -> Expected<'static> {
    Expected {
        device_id: "dev-1",
        request_id: "ev-1",
        incident: "inc-1",
        nonce: NONCE,
    }
}

/// A bundle for [`expected`], signed with `key`, quoted by `tpm` over `qualifying` when given.
fn bundle(
    certificate: &[u8],
    key: &rcgen::KeyPair,
    quote: Option<(&mut SoftTpm, Option<[u8; 32]>)>,
) -> Vec<u8> {
    let items = vec![("journal.txt".to_string(), b"boot ok".to_vec())];
    let manifest = Manifest::new(
        "dev-1",
        "ev-1",
        "inc-1",
        NONCE,
        1_767_000_000,
        "test",
        &items,
        ChainHead {
            seq: 0,
            hash: "0".repeat(64),
        },
    );
    let pkcs8 = key.serialize_der();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap();
    let signature = signer
        .sign(
            &ring::rand::SystemRandom::new(),
            &manifest.signing_message(),
        )
        .unwrap();
    let quote = quote.map(|(tpm, qualifying)| {
        let qualifying = qualifying.unwrap_or_else(|| manifest.quote_qualifying_data().unwrap());
        let q = tpm.quote(&qualifying, &[13]).unwrap();
        crate::evidence::QuoteParts {
            message: q.message,
            signature: q.signature,
            pcrs: q.pcrs,
        }
    });
    Bundle {
        manifest,
        items,
        signature: DeviceSignature::new(SignatureAlgorithm::EcdsaP256Sha256, signature.as_ref()),
        certificate: certificate.to_vec(),
        quote,
    }
    .to_bytes()
}

#[test]
fn a_bundle_quoted_by_the_devices_attestation_key_passes_with_the_quote_checked() {
    let (certificate, key) = device_identity();
    let mut tpm = SoftTpm::new([1; 32]);
    let ak = tpm.attestation_key().unwrap();
    let bytes = bundle(&certificate, &key, Some((&mut tpm, None)));
    assert_eq!(
        check_upload(&bytes, 1 << 20, &expected(), &certificate, Some(&ak)),
        Ok(true)
    );
    // Without an attestation key on record there is nothing to check the quote with.
    assert_eq!(
        check_upload(&bytes, 1 << 20, &expected(), &certificate, None),
        Ok(false)
    );
}

#[test]
fn a_tpm_devices_bundle_without_a_quote_is_refused() {
    let (certificate, key) = device_identity();
    let mut tpm = SoftTpm::new([2; 32]);
    let ak = tpm.attestation_key().unwrap();
    let bytes = bundle(&certificate, &key, None);
    let e = check_upload(&bytes, 1 << 20, &expected(), &certificate, Some(&ak)).unwrap_err();
    assert!(e.to_string().contains("carries no quote"), "{e}");
}

#[test]
fn a_quote_that_does_not_bind_this_manifest_and_nonce_is_refused() {
    let (certificate, key) = device_identity();
    let mut tpm = SoftTpm::new([3; 32]);
    let ak = tpm.attestation_key().unwrap();
    // A genuine quote by the device's TPM, over other qualifying data (another bundle's).
    let bytes = bundle(&certificate, &key, Some((&mut tpm, Some([9; 32]))));
    let e = check_upload(&bytes, 1 << 20, &expected(), &certificate, Some(&ak)).unwrap_err();
    assert!(e.to_string().contains("nonce"), "{e}");
}

#[test]
fn a_quote_by_another_tpm_is_refused() {
    let (certificate, key) = device_identity();
    let mut other = SoftTpm::new([4; 32]);
    let ak = SoftTpm::new([5; 32]).attestation_key().unwrap();
    let bytes = bundle(&certificate, &key, Some((&mut other, None)));
    let e = check_upload(&bytes, 1 << 20, &expected(), &certificate, Some(&ak)).unwrap_err();
    assert!(e.to_string().contains("signature"), "{e}");
}

#[test]
fn a_bundle_carrying_another_certificate_than_the_connections_is_refused() {
    let (certificate, key) = device_identity();
    let (other_certificate, _) = device_identity();
    let bytes = bundle(&certificate, &key, None);
    let e = check_upload(&bytes, 1 << 20, &expected(), &other_certificate, None).unwrap_err();
    assert!(e.to_string().contains("another certificate"), "{e}");
}

#[test]
fn an_export_that_is_not_one_is_refused_naming_why() {
    for (bytes, why) in [
        (&b"{"[..], "not a rampart-incident-export/1"),
        (
            &br#"{"format":"x","incident":"i","exported_at":0,"evidence":[],"timeline":[],"audit_records":[],"audit_head":""}"#[..],
            "its format",
        ),
    ] {
        let e = verify_export(bytes, &[], None).unwrap_err().to_string();
        assert!(e.contains(why), "{e}");
    }
}
