use rcgen::{CertificateParams, KeyPair, PublicKeyData, SigningKey};

use super::*;

/// A device key for tests, with a self-signed certificate.
pub(crate) struct TestKey {
    pub key: KeyPair,
    pub algorithm: SignatureAlgorithm,
    pub certificate: Vec<u8>,
}

impl TestKey {
    pub fn new(alg: &'static rcgen::SignatureAlgorithm, algorithm: SignatureAlgorithm) -> TestKey {
        let key = KeyPair::generate_for(alg).unwrap();
        let certificate = CertificateParams::new(vec!["device-7".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .der()
            .to_vec();
        TestKey {
            key,
            algorithm,
            certificate,
        }
    }

    pub fn p256() -> TestKey {
        TestKey::new(
            &rcgen::PKCS_ECDSA_P256_SHA256,
            SignatureAlgorithm::EcdsaP256Sha256,
        )
    }

    pub fn sign(&self, message: &[u8]) -> DeviceSignature {
        DeviceSignature::new(self.algorithm, &self.key.sign(message).unwrap())
    }

    pub fn spki(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }
}

#[test]
fn the_certificate_spki_is_the_key_that_verifies() {
    let key = TestKey::p256();
    assert_eq!(certificate_spki(&key.certificate).unwrap(), key.spki());
    assert!(matches!(
        certificate_spki(b"not a certificate"),
        Err(SignatureError::BadKey { .. })
    ));
}

#[test]
fn unknown_algorithms_oversized_signatures_and_bad_keys_are_refused_by_name() {
    let key = TestKey::p256();
    let mut signature = key.sign(b"m");
    signature.verify(&key.spki(), b"m").unwrap();
    signature.algorithm = "md5_rsa".into();
    assert!(matches!(
        signature.verify(&key.spki(), b"m"),
        Err(SignatureError::UnknownAlgorithm { .. })
    ));
    let oversized = DeviceSignature {
        algorithm: "ecdsa_p256_sha256".into(),
        value: "A".repeat(MAX_SIGNATURE_B64 + 4),
    };
    assert!(matches!(
        oversized.verify(&key.spki(), b"m"),
        Err(SignatureError::Malformed { .. })
    ));
    assert!(matches!(
        key.sign(b"m").verify(b"\x30\x00", b"m"),
        Err(SignatureError::BadKey { .. })
    ));
    assert!(matches!(
        key.sign(b"m").verify(&key.spki(), b"n"),
        Err(SignatureError::Invalid { .. })
    ));
}
