//! Signatures made by a device's own key (its TLS client key: a file, PKCS#11 or TPM key), as
//! evidence bundles and the agent log's anchors carry them, and their verification with the
//! key's SubjectPublicKeyInfo. The algorithms are the ones a TLS client key signs with (the
//! agent signs through rustls' `SigningKey`), named on the wire in snake case.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{self as rs, UnparsedPublicKey, VerificationAlgorithm};
use serde::{Deserialize, Serialize};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The largest signature accepted, base64 (an RSA-8192 signature is 1,366 characters).
pub const MAX_SIGNATURE_B64: usize = 2048;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";

/// How a device signature was made. ECDSA signatures are ASN.1 DER (as TLS carries them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureAlgorithm {
    EcdsaP256Sha256,
    EcdsaP384Sha384,
    Ed25519,
    RsaPssSha256,
    RsaPssSha384,
    RsaPssSha512,
    RsaPkcs1Sha256,
    RsaPkcs1Sha384,
    RsaPkcs1Sha512,
}

/// The key type an algorithm needs, to say what did not match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyType {
    P256,
    P384,
    Ed25519,
    Rsa,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            KeyType::P256 => "an ECDSA P-256 key",
            KeyType::P384 => "an ECDSA P-384 key",
            KeyType::Ed25519 => "an Ed25519 key",
            KeyType::Rsa => "an RSA key",
        }
    }
}

impl SignatureAlgorithm {
    pub const ALL: [SignatureAlgorithm; 9] = [
        SignatureAlgorithm::EcdsaP256Sha256,
        SignatureAlgorithm::EcdsaP384Sha384,
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::RsaPssSha256,
        SignatureAlgorithm::RsaPssSha384,
        SignatureAlgorithm::RsaPssSha512,
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPkcs1Sha384,
        SignatureAlgorithm::RsaPkcs1Sha512,
    ];

    /// The wire name (`ecdsa_p256_sha256`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => "ecdsa_p256_sha256",
            SignatureAlgorithm::EcdsaP384Sha384 => "ecdsa_p384_sha384",
            SignatureAlgorithm::Ed25519 => "ed25519",
            SignatureAlgorithm::RsaPssSha256 => "rsa_pss_sha256",
            SignatureAlgorithm::RsaPssSha384 => "rsa_pss_sha384",
            SignatureAlgorithm::RsaPssSha512 => "rsa_pss_sha512",
            SignatureAlgorithm::RsaPkcs1Sha256 => "rsa_pkcs1_sha256",
            SignatureAlgorithm::RsaPkcs1Sha384 => "rsa_pkcs1_sha384",
            SignatureAlgorithm::RsaPkcs1Sha512 => "rsa_pkcs1_sha512",
        }
    }

    pub fn parse(s: &str) -> Option<SignatureAlgorithm> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }

    fn key_type(self) -> KeyType {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => KeyType::P256,
            SignatureAlgorithm::EcdsaP384Sha384 => KeyType::P384,
            SignatureAlgorithm::Ed25519 => KeyType::Ed25519,
            _ => KeyType::Rsa,
        }
    }

    fn ring(self) -> &'static dyn VerificationAlgorithm {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => &rs::ECDSA_P256_SHA256_ASN1,
            SignatureAlgorithm::EcdsaP384Sha384 => &rs::ECDSA_P384_SHA384_ASN1,
            SignatureAlgorithm::Ed25519 => &rs::ED25519,
            SignatureAlgorithm::RsaPssSha256 => &rs::RSA_PSS_2048_8192_SHA256,
            SignatureAlgorithm::RsaPssSha384 => &rs::RSA_PSS_2048_8192_SHA384,
            SignatureAlgorithm::RsaPssSha512 => &rs::RSA_PSS_2048_8192_SHA512,
            SignatureAlgorithm::RsaPkcs1Sha256 => &rs::RSA_PKCS1_2048_8192_SHA256,
            SignatureAlgorithm::RsaPkcs1Sha384 => &rs::RSA_PKCS1_2048_8192_SHA384,
            SignatureAlgorithm::RsaPkcs1Sha512 => &rs::RSA_PKCS1_2048_8192_SHA512,
        }
    }
}

/// A signature by the device key: `{algorithm, value}` with the value base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSignature {
    /// A [`SignatureAlgorithm`] wire name.
    pub algorithm: String,
    /// The signature bytes, base64 (standard alphabet, padded).
    pub value: String,
}

impl DeviceSignature {
    pub fn new(algorithm: SignatureAlgorithm, signature: &[u8]) -> DeviceSignature {
        DeviceSignature {
            algorithm: algorithm.as_str().to_owned(),
            value: STANDARD.encode(signature),
        }
    }

    /// Verifies this signature over `message` with the key in `spki_der` (a DER
    /// SubjectPublicKeyInfo, as in the device certificate).
    pub fn verify(&self, spki_der: &[u8], message: &[u8]) -> Result<(), SignatureError> {
        let algorithm = SignatureAlgorithm::parse(&self.algorithm).ok_or_else(|| {
            SignatureError::UnknownAlgorithm {
                found: truncated(&self.algorithm),
            }
        })?;
        if self.value.len() > MAX_SIGNATURE_B64 {
            return Err(SignatureError::Malformed {
                reason: format!(
                    "the signature is {} base64 characters; at most {MAX_SIGNATURE_B64} are accepted",
                    self.value.len()
                ),
            });
        }
        let signature = STANDARD
            .decode(&self.value)
            .map_err(|e| SignatureError::Malformed {
                reason: format!("the signature is not base64: {e}"),
            })?;
        let (key_type, raw_key) = parse_spki(spki_der)?;
        if key_type != algorithm.key_type() {
            return Err(SignatureError::KeyMismatch {
                algorithm: algorithm.as_str(),
                needs: algorithm.key_type().name(),
                key: key_type.name(),
            });
        }
        UnparsedPublicKey::new(algorithm.ring(), raw_key)
            .verify(message, &signature)
            .map_err(|_| SignatureError::Invalid {
                algorithm: algorithm.as_str(),
            })
    }
}

/// The key in a DER SubjectPublicKeyInfo, in the form ring takes (EC point, Ed25519 bytes or
/// PKCS#1 RSAPublicKey).
fn parse_spki(spki_der: &[u8]) -> Result<(KeyType, Vec<u8>), SignatureError> {
    let bad = |reason: String| SignatureError::BadKey { reason };
    let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
        .map_err(|e| bad(format!("not a DER SubjectPublicKeyInfo: {e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!(
            "{} bytes follow the SubjectPublicKeyInfo",
            rest.len()
        )));
    }
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let key_type = match (key_alg.as_str(), curve.as_deref()) {
        (OID_EC_PUBLIC_KEY, Some(OID_P256)) => KeyType::P256,
        (OID_EC_PUBLIC_KEY, Some(OID_P384)) => KeyType::P384,
        (OID_ED25519, _) => KeyType::Ed25519,
        (OID_RSA, _) => KeyType::Rsa,
        (alg, curve) => {
            return Err(bad(format!(
                "key algorithm {alg} (curve {}) is not one a device key may use (ECDSA P-256/P-384, Ed25519, RSA)",
                curve.unwrap_or("none")
            )));
        }
    };
    Ok((key_type, spki.subject_public_key.data.to_vec()))
}

/// The DER SubjectPublicKeyInfo of a DER X.509 certificate.
pub fn certificate_spki(certificate_der: &[u8]) -> Result<Vec<u8>, SignatureError> {
    let (_, cert) = x509_parser::parse_x509_certificate(certificate_der).map_err(|e| {
        SignatureError::BadKey {
            reason: format!("the certificate is not DER X.509: {e}"),
        }
    })?;
    Ok(cert.public_key().raw.to_vec())
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Why a device signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error(
        "signature algorithm {found:?} is unknown; use one of ecdsa_p256_sha256, ecdsa_p384_sha384, ed25519, rsa_pss_sha256/384/512, rsa_pkcs1_sha256/384/512"
    )]
    UnknownAlgorithm { found: String },
    #[error("the signature is malformed: {reason}")]
    Malformed { reason: String },
    #[error("the device key is unusable: {reason}")]
    BadKey { reason: String },
    #[error("the signature says {algorithm}, which needs {needs}, but the device key is {key}")]
    KeyMismatch {
        algorithm: &'static str,
        needs: &'static str,
        key: &'static str,
    },
    #[error(
        "the {algorithm} signature does not verify with the device key: the signed content was changed or another key signed it"
    )]
    Invalid { algorithm: &'static str },
}

#[cfg(test)]
pub(crate) mod tests;
