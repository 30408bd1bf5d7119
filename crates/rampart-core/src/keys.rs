//! Public keys in TUF form, key ids, and signature verification for every scheme Rampart accepts.
//!
//! Schemes: `ed25519`, `ecdsa-sha2-nistp256` (DER signatures, PEM SubjectPublicKeyInfo keys as
//! securesystemslib writes them), `rsassa-pss-sha256` (PEM keys, read-only: accepted for
//! interoperability with existing TUF repositories) and `ml-dsa-65` (FIPS 204, post-quantum).

use ml_dsa::{EncodedVerifyingKey, MlDsa65};
use ring::signature as rs;
use serde::{Deserialize, Serialize};

use crate::cjson::to_canonical_bytes;

/// The signature schemes Rampart knows, by their TUF `scheme` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Ed25519,
    EcdsaP256Sha256,
    RsaPssSha256,
    MlDsa65,
}

impl Scheme {
    pub const ALL: [Scheme; 4] = [
        Scheme::Ed25519,
        Scheme::EcdsaP256Sha256,
        Scheme::RsaPssSha256,
        Scheme::MlDsa65,
    ];

    /// The TUF `scheme` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Ed25519 => "ed25519",
            Scheme::EcdsaP256Sha256 => "ecdsa-sha2-nistp256",
            Scheme::RsaPssSha256 => "rsassa-pss-sha256",
            Scheme::MlDsa65 => "ml-dsa-65",
        }
    }

    /// The TUF `keytype` string Rampart writes for this scheme.
    pub fn keytype(self) -> &'static str {
        match self {
            Scheme::Ed25519 => "ed25519",
            Scheme::EcdsaP256Sha256 => "ecdsa",
            Scheme::RsaPssSha256 => "rsa",
            Scheme::MlDsa65 => "ml-dsa",
        }
    }

    /// Parses a user- or metadata-supplied scheme name.
    pub fn parse(name: &str) -> Result<Scheme, KeyError> {
        Ok(match name {
            "ed25519" => Scheme::Ed25519,
            "ecdsa-sha2-nistp256" | "p256" | "ecdsa-p256" => Scheme::EcdsaP256Sha256,
            "rsassa-pss-sha256" => Scheme::RsaPssSha256,
            "ml-dsa-65" | "mldsa65" => Scheme::MlDsa65,
            other => return Err(KeyError::UnsupportedScheme(other.to_string())),
        })
    }

    /// Resolves a TUF (keytype, scheme) pair, accepting the legacy keytypes older repositories use.
    fn from_key(keytype: &str, scheme: &str) -> Result<Scheme, KeyError> {
        let s = Scheme::parse(scheme)?;
        let keytype_ok = match s {
            Scheme::Ed25519 => keytype == "ed25519",
            Scheme::EcdsaP256Sha256 => keytype == "ecdsa" || keytype == "ecdsa-sha2-nistp256",
            Scheme::RsaPssSha256 => keytype == "rsa",
            Scheme::MlDsa65 => keytype == "ml-dsa",
        };
        if keytype_ok {
            Ok(s)
        } else {
            Err(KeyError::UnsupportedScheme(format!("{keytype}/{scheme}")))
        }
    }
}

/// Errors about keys and signatures.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error(
        "unsupported key type or signature scheme {0:?}; Rampart supports ed25519, ecdsa-sha2-nistp256, rsassa-pss-sha256 (verify only) and ml-dsa-65"
    )]
    UnsupportedScheme(String),
    #[error("malformed public key: {0}")]
    MalformedPublicKey(String),
    #[error("malformed signature encoding: {0}")]
    MalformedSignature(String),
    #[error("signature does not verify")]
    BadSignature,
}

/// The `keyval` object of a TUF key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyVal {
    pub public: String,
}

/// A public key as it appears in TUF metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub keytype: String,
    pub scheme: String,
    pub keyval: KeyVal,
}

impl Key {
    /// Builds the TUF key for raw public key bytes of `scheme` (the encoding each scheme uses:
    /// hex for ed25519 and ml-dsa-65, PEM SubjectPublicKeyInfo for ECDSA).
    pub fn from_public_bytes(scheme: Scheme, public: &[u8]) -> Result<Key, KeyError> {
        let public = match scheme {
            Scheme::Ed25519 => {
                if public.len() != 32 {
                    return Err(KeyError::MalformedPublicKey(format!(
                        "ed25519 public key must be 32 bytes, got {}",
                        public.len()
                    )));
                }
                hex::encode(public)
            }
            Scheme::MlDsa65 => {
                if public.len() != ML_DSA_65_PUBLIC_LEN {
                    return Err(KeyError::MalformedPublicKey(format!(
                        "ml-dsa-65 public key must be {ML_DSA_65_PUBLIC_LEN} bytes, got {}",
                        public.len()
                    )));
                }
                hex::encode(public)
            }
            Scheme::EcdsaP256Sha256 => p256_point_to_pem(public)?,
            Scheme::RsaPssSha256 => {
                return Err(KeyError::UnsupportedScheme(
                    "rsassa-pss-sha256 keys are accepted for verification only".into(),
                ));
            }
        };
        Ok(Key {
            keytype: scheme.keytype().to_string(),
            scheme: scheme.as_str().to_string(),
            keyval: KeyVal { public },
        })
    }

    /// The TUF key id: hex SHA-256 of the canonical JSON of the key.
    pub fn key_id(&self) -> String {
        let bytes = to_canonical_bytes(self).expect("a key holds only strings");
        hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes))
    }

    /// The scheme of this key, if Rampart supports it.
    pub fn scheme(&self) -> Result<Scheme, KeyError> {
        Scheme::from_key(&self.keytype, &self.scheme)
    }

    /// Decoded public key material, used to tell whether two key ids name the same key.
    pub fn material(&self) -> Result<Vec<u8>, KeyError> {
        Ok(match self.scheme()? {
            Scheme::Ed25519 | Scheme::MlDsa65 => hex::decode(&self.keyval.public)
                .map_err(|e| KeyError::MalformedPublicKey(e.to_string()))?,
            Scheme::EcdsaP256Sha256 | Scheme::RsaPssSha256 => spki_key_bits(&self.keyval.public)?,
        })
    }

    /// Verifies `signature` (raw bytes) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
        let scheme = self.scheme()?;
        let material = self.material()?;
        match scheme {
            Scheme::Ed25519 => {
                if material.len() != 32 {
                    return Err(KeyError::MalformedPublicKey(
                        "ed25519 key is not 32 bytes".into(),
                    ));
                }
                rs::UnparsedPublicKey::new(&rs::ED25519, &material)
                    .verify(message, signature)
                    .map_err(|_| KeyError::BadSignature)
            }
            Scheme::EcdsaP256Sha256 => {
                rs::UnparsedPublicKey::new(&rs::ECDSA_P256_SHA256_ASN1, &material)
                    .verify(message, signature)
                    .map_err(|_| KeyError::BadSignature)
            }
            Scheme::RsaPssSha256 => {
                rs::UnparsedPublicKey::new(&rs::RSA_PSS_2048_8192_SHA256, &material)
                    .verify(message, signature)
                    .map_err(|_| KeyError::BadSignature)
            }
            Scheme::MlDsa65 => verify_ml_dsa_65(&material, message, signature),
        }
    }
}

/// Length of an encoded ML-DSA-65 public key (FIPS 204).
pub const ML_DSA_65_PUBLIC_LEN: usize = 1952;
/// Length of an encoded ML-DSA-65 signature (FIPS 204).
pub const ML_DSA_65_SIGNATURE_LEN: usize = 3309;

fn verify_ml_dsa_65(public: &[u8], message: &[u8], signature: &[u8]) -> Result<(), KeyError> {
    let encoded = EncodedVerifyingKey::<MlDsa65>::try_from(public).map_err(|_| {
        KeyError::MalformedPublicKey(format!(
            "ml-dsa-65 public key must be {ML_DSA_65_PUBLIC_LEN} bytes, got {}",
            public.len()
        ))
    })?;
    let vk = ml_dsa::VerifyingKey::<MlDsa65>::decode(&encoded);
    let sig = ml_dsa::Signature::<MlDsa65>::try_from(signature).map_err(|_| {
        KeyError::MalformedSignature(format!(
            "ml-dsa-65 signature must be {ML_DSA_65_SIGNATURE_LEN} well-formed bytes"
        ))
    })?;
    if vk.verify_with_context(message, b"", &sig) {
        Ok(())
    } else {
        Err(KeyError::BadSignature)
    }
}

// DER prefix of a SubjectPublicKeyInfo for an uncompressed P-256 point (id-ecPublicKey, prime256v1).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Wraps an uncompressed P-256 point (65 bytes, 0x04 || x || y) in PEM SubjectPublicKeyInfo.
pub fn p256_point_to_pem(point: &[u8]) -> Result<String, KeyError> {
    if point.len() != 65 || point[0] != 0x04 {
        return Err(KeyError::MalformedPublicKey(
            "P-256 public key must be a 65-byte uncompressed point".into(),
        ));
    }
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    Ok(pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

/// Extracts the subject public key bits from a PEM SubjectPublicKeyInfo.
fn spki_key_bits(pem_text: &str) -> Result<Vec<u8>, KeyError> {
    use spki::der::Decode;
    let parsed = pem::parse(pem_text.trim())
        .map_err(|e| KeyError::MalformedPublicKey(format!("not PEM: {e}")))?;
    if parsed.tag() != "PUBLIC KEY" {
        return Err(KeyError::MalformedPublicKey(format!(
            "expected a PEM PUBLIC KEY block, found {}",
            parsed.tag()
        )));
    }
    let info = spki::SubjectPublicKeyInfoRef::from_der(parsed.contents())
        .map_err(|e| KeyError::MalformedPublicKey(format!("bad SubjectPublicKeyInfo: {e}")))?;
    info.subject_public_key
        .as_bytes()
        .map(<[u8]>::to_vec)
        .ok_or_else(|| {
            KeyError::MalformedPublicKey("public key bit string is not whole bytes".into())
        })
}

/// Converts a fixed-width P-256 ECDSA signature (r || s, 64 bytes, as PKCS#11 returns it) to DER.
pub fn p256_fixed_to_der(fixed: &[u8]) -> Result<Vec<u8>, KeyError> {
    if fixed.len() != 64 {
        return Err(KeyError::MalformedSignature(format!(
            "P-256 r||s signature must be 64 bytes, got {}",
            fixed.len()
        )));
    }
    fn der_uint(bytes: &[u8]) -> Vec<u8> {
        let mut b: &[u8] = bytes;
        while b.len() > 1 && b[0] == 0 {
            b = &b[1..];
        }
        let mut out = vec![0x02];
        if b[0] & 0x80 != 0 {
            out.push((b.len() + 1) as u8);
            out.push(0);
        } else {
            out.push(b.len() as u8);
        }
        out.extend_from_slice(b);
        out
    }
    let r = der_uint(&fixed[..32]);
    let s = der_uint(&fixed[32..]);
    let mut out = vec![0x30, (r.len() + s.len()) as u8];
    out.extend(r);
    out.extend(s);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 8032 section 7.1, TEST 2 (one-byte message).
    const RFC8032_PK: &str = "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c";
    const RFC8032_MSG: &str = "72";
    const RFC8032_SIG: &str = "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00";

    fn ed_key() -> Key {
        Key {
            keytype: "ed25519".into(),
            scheme: "ed25519".into(),
            keyval: KeyVal {
                public: RFC8032_PK.into(),
            },
        }
    }

    #[test]
    fn ed25519_rfc8032_vector_verifies() {
        let sig = hex::decode(RFC8032_SIG).unwrap();
        let msg = hex::decode(RFC8032_MSG).unwrap();
        ed_key().verify(&msg, &sig).unwrap();
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert_eq!(ed_key().verify(&msg, &bad), Err(KeyError::BadSignature));
    }

    // RFC 6979 appendix A.2.5: P-256 key, message "sample", SHA-256, deterministic (r, s).
    const RFC6979_P256_POINT: &str = "0460fed4ba255a9d31c961eb74c6356d68c049b8923b61fa6ce669622e60f29fb67903fe1008b8bc99a41ae9e95628bc64f2f1b20c2d7e9f5177a3c294d4462299";
    const RFC6979_P256_R_S: &str = "efd48b2aacb6a8fd1140dd9cd45e81d69d2c877b56aaf991c34d0ea84eaf3716f7cb1c942d657c41d436c7a1b6e29f65f3e900dbb9aff4064dc4ab2f843acda8";

    #[test]
    fn p256_rfc6979_vector_verifies_through_pem_and_der() {
        let key = Key::from_public_bytes(
            Scheme::EcdsaP256Sha256,
            &hex::decode(RFC6979_P256_POINT).unwrap(),
        )
        .unwrap();
        assert!(key.keyval.public.starts_with("-----BEGIN PUBLIC KEY-----"));
        let der = p256_fixed_to_der(&hex::decode(RFC6979_P256_R_S).unwrap()).unwrap();
        key.verify(b"sample", &der).unwrap();
        assert_eq!(key.verify(b"samplf", &der), Err(KeyError::BadSignature));
    }

    #[test]
    fn key_id_is_sha256_of_canonical_key() {
        let k = ed_key();
        let canon = format!(
            r#"{{"keytype":"ed25519","keyval":{{"public":"{RFC8032_PK}"}},"scheme":"ed25519"}}"#
        );
        let want = hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            canon.as_bytes(),
        ));
        assert_eq!(k.key_id(), want);
    }

    #[test]
    fn unknown_scheme_is_a_clear_error() {
        let mut k = ed_key();
        k.scheme = "rsa-pkcs1v15-md5".into();
        assert!(matches!(
            k.verify(b"m", b"s"),
            Err(KeyError::UnsupportedScheme(_))
        ));
    }

    #[test]
    fn p256_fixed_to_der_encodes_high_bit_with_padding() {
        let mut fixed = [0u8; 64];
        fixed[0] = 0x80;
        fixed[63] = 0x01;
        let der = p256_fixed_to_der(&fixed).unwrap();
        assert_eq!(der[0], 0x30);
        assert_eq!(&der[2..5], &[0x02, 33, 0x00]);
        assert_eq!(&der[der.len() - 3..], &[0x02, 0x01, 0x01]);
    }
}
