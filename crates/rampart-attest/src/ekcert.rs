//! Endorsement-key certificates: the chain from a TPM's EK certificate to a root the operator
//! configured, at a time the caller gives, and the certified key equal to the EK the device
//! presents (its TPMT_PUBLIC).
//!
//! EK certificates are not TLS certificates: the subject is often empty and the TPM's
//! manufacturer, model and firmware version sit in a critical subjectAltName directoryName
//! (TCG EK Credential Profile), with a Subject Directory Attributes extension and the
//! tcg-kp-EKCertificate extended key usage, and there is no host name to check. So the chain
//! is checked here: X.509 parsed by x509-parser, signatures checked by ring, every
//! certificate in its validity period, issuers that are CAs allowed to sign certificates, and
//! no critical extension this check does not understand.

use std::time::SystemTime;

use ring::signature::{self, UnparsedPublicKey};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::credential::{EkKey, EkPublic};

/// The largest certificate accepted (EK certificates are about a kilobyte).
pub const MAX_CERTIFICATE: usize = 16 * 1024;
/// The most intermediates a chain may have.
pub const MAX_INTERMEDIATES: usize = 8;

/// tcg-kp-EKCertificate: the extended key usage of an EK certificate.
const OID_TCG_KP_EK_CERTIFICATE: &str = "2.23.133.8.1";
/// The critical extensions this check understands: keyUsage, subjectAltName, basicConstraints,
/// extKeyUsage.
const UNDERSTOOD_CRITICAL: [&str; 4] = ["2.5.29.15", "2.5.29.17", "2.5.29.19", "2.5.29.37"];

/// An EK certificate does not establish the EK.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EkCertError {
    /// A certificate cannot be parsed.
    #[error("{which} is not a valid X.509 certificate: {reason}")]
    Malformed {
        /// Which certificate.
        which: String,
        /// What is wrong.
        reason: String,
    },
    /// A limit was exceeded.
    #[error("{0}")]
    TooLarge(String),
    /// A certificate is outside its validity period.
    #[error(
        "{which} is not valid at the verification time (valid from {not_before} to {not_after}, unix seconds)"
    )]
    Expired {
        /// Which certificate.
        which: String,
        /// Its notBefore.
        not_before: i64,
        /// Its notAfter.
        not_after: i64,
    },
    /// No configured root or given intermediate signed the certificate.
    #[error(
        "{which} (issuer {issuer}) is not signed by any configured EK root or given intermediate; add the TPM manufacturer's CA to the EK roots, or approve this EK public key"
    )]
    UnknownIssuer {
        /// Which certificate.
        which: String,
        /// Its issuer name.
        issuer: String,
    },
    /// A certificate has a critical extension this check does not understand.
    #[error("{which} has a critical extension {oid} this verifier does not understand")]
    UnknownCriticalExtension {
        /// Which certificate.
        which: String,
        /// The extension's OID.
        oid: String,
    },
    /// An intermediate is not a CA that may sign certificates.
    #[error("{which} is not a certificate authority (basicConstraints CA and keyCertSign)")]
    NotACa {
        /// Which certificate.
        which: String,
    },
    /// The certificate's extended key usage does not include tcg-kp-EKCertificate.
    #[error(
        "the certificate's extended key usage does not include tcg-kp-EKCertificate (2.23.133.8.1): it is not an EK certificate"
    )]
    NotAnEkCertificate,
    /// The certified key is not the EK the device presented.
    #[error(
        "the EK certificate certifies another key than the endorsement key the device presented"
    )]
    KeyMismatch,
    /// The EK public area cannot be read.
    #[error(transparent)]
    EkPublic(#[from] crate::credential::CredentialError),
}

/// The key an EK certificate certifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertifiedKey {
    /// RSA: modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// The modulus.
        modulus: Vec<u8>,
        /// The exponent.
        exponent: Vec<u8>,
    },
    /// An elliptic-curve point, uncompressed (0x04 || x || y), with its curve's OID.
    Ec {
        /// The named curve (e.g. 1.2.840.10045.3.1.7 for P-256).
        curve: String,
        /// The point.
        point: Vec<u8>,
    },
}

/// OID of NIST P-256 (prime256v1).
const OID_P256: &str = "1.2.840.10045.3.1.7";
/// OID of NIST P-384 (secp384r1).
const OID_P384: &str = "1.3.132.0.34";

/// Reads every certificate of a PEM bundle (the operator's EK roots file), as DER.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, EkCertError> {
    let mut out = Vec::new();
    for (i, block) in x509_parser::pem::Pem::iter_from_buffer(pem).enumerate() {
        let block = block.map_err(|e| EkCertError::Malformed {
            which: format!("PEM block {}", i + 1),
            reason: e.to_string(),
        })?;
        if block.label == "CERTIFICATE" {
            out.push(block.contents);
        }
    }
    if out.is_empty() {
        return Err(EkCertError::Malformed {
            which: "the PEM bundle".into(),
            reason: "it holds no CERTIFICATE block".into(),
        });
    }
    Ok(out)
}

/// Verifies `leaf` (the EK certificate, DER, as read from the TPM's NV index; trailing
/// zero or 0xff padding is allowed) up to one of `roots` through `intermediates` (DER) at
/// `now`, and that it certifies the EK whose TPMT_PUBLIC is `ek_public`.
pub fn verify_ek_certificate(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: SystemTime,
    ek_public: &[u8],
) -> Result<(), EkCertError> {
    let certified = verify_ek_chain(leaf, intermediates, roots, now)?;
    let ek = EkPublic::parse(ek_public)?;
    let same = match (&certified, &ek.key) {
        (
            CertifiedKey::Rsa { modulus, exponent },
            EkKey::Rsa {
                modulus: n,
                exponent: e,
            },
        ) => modulus == strip_zeros(n) && exponent.as_slice() == strip_zeros(&e.to_be_bytes()),
        (CertifiedKey::Ec { curve, point }, EkKey::EccP256 { x, y }) => {
            curve == OID_P256 && point.len() == 65 && point[1..33] == x[..] && point[33..] == y[..]
        }
        _ => false,
    };
    if !same {
        return Err(EkCertError::KeyMismatch);
    }
    Ok(())
}

/// Verifies the chain of [`verify_ek_certificate`] without comparing the key, and returns the
/// certified key (for EKs this verifier cannot use for credentials, such as ECC P-384).
pub fn verify_ek_chain(
    leaf: &[u8],
    intermediates: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: SystemTime,
) -> Result<CertifiedKey, EkCertError> {
    if intermediates.len() > MAX_INTERMEDIATES {
        return Err(EkCertError::TooLarge(format!(
            "{} intermediate certificates, more than {MAX_INTERMEDIATES}",
            intermediates.len()
        )));
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let leaf_cert = parse("the EK certificate", leaf, true)?;
    let intermediates = intermediates
        .iter()
        .enumerate()
        .map(|(i, der)| parse(&format!("intermediate certificate {}", i + 1), der, false))
        .collect::<Result<Vec<_>, _>>()?;
    let roots = roots
        .iter()
        .enumerate()
        .map(|(i, der)| parse(&format!("EK root {}", i + 1), der, false))
        .collect::<Result<Vec<_>, _>>()?;

    check_certificate("the EK certificate", &leaf_cert, now)?;
    if let Ok(Some(eku)) = leaf_cert.extended_key_usage()
        && !eku
            .value
            .other
            .iter()
            .any(|o| o.to_id_string() == OID_TCG_KP_EK_CERTIFICATE)
    {
        return Err(EkCertError::NotAnEkCertificate);
    }
    let certified = certified_key(&leaf_cert)?;

    let mut current = leaf_cert;
    let mut which = "the EK certificate".to_string();
    // Each step moves one certificate up; a chain longer than the intermediates loops.
    for _ in 0..=intermediates.len() {
        if roots.iter().any(|root| signed_by(&current, root)) {
            return Ok(certified);
        }
        let Some((i, issuer)) = intermediates
            .iter()
            .enumerate()
            .find(|(_, issuer)| signed_by(&current, issuer))
        else {
            break;
        };
        let issuer_which = format!("intermediate certificate {}", i + 1);
        check_certificate(&issuer_which, issuer, now)?;
        if !is_ca(issuer) {
            return Err(EkCertError::NotACa {
                which: issuer_which,
            });
        }
        current = issuer.clone();
        which = issuer_which;
    }
    Err(EkCertError::UnknownIssuer {
        which,
        issuer: current.issuer().to_string(),
    })
}

fn parse<'a>(
    which: &str,
    der: &'a [u8],
    allow_padding: bool,
) -> Result<X509Certificate<'a>, EkCertError> {
    if der.len() > MAX_CERTIFICATE {
        return Err(EkCertError::TooLarge(format!(
            "{which} is {} bytes, more than {MAX_CERTIFICATE}",
            der.len()
        )));
    }
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| EkCertError::Malformed {
        which: which.to_string(),
        reason: e.to_string(),
    })?;
    // TPM NV indices can be larger than the certificate they hold.
    let padding_only = rest.iter().all(|b| *b == 0 || *b == 0xff);
    let accepted = rest.is_empty() || (allow_padding && padding_only);
    if !accepted {
        return Err(EkCertError::Malformed {
            which: which.to_string(),
            reason: format!("{} bytes follow the certificate", rest.len()),
        });
    }
    Ok(cert)
}

/// Validity period and critical extensions.
fn check_certificate(which: &str, cert: &X509Certificate<'_>, now: i64) -> Result<(), EkCertError> {
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now < not_before || now > not_after {
        return Err(EkCertError::Expired {
            which: which.to_string(),
            not_before,
            not_after,
        });
    }
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        let understood = UNDERSTOOD_CRITICAL.contains(&oid.as_str())
            && !matches!(ext.parsed_extension(), ParsedExtension::ParseError { .. });
        if ext.critical && !understood {
            return Err(EkCertError::UnknownCriticalExtension {
                which: which.to_string(),
                oid,
            });
        }
    }
    Ok(())
}

fn is_ca(cert: &X509Certificate<'_>) -> bool {
    let ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    let may_sign = match cert.key_usage() {
        Ok(Some(ku)) => ku.value.key_cert_sign(),
        Ok(None) => true,
        Err(_) => false,
    };
    ca && may_sign
}

/// Whether `issuer` is named as `cert`'s issuer and its key verifies `cert`'s signature.
fn signed_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
    if cert.issuer().as_raw() != issuer.subject().as_raw()
        || cert.signature_algorithm != cert.tbs_certificate.signature
    {
        return false;
    }
    let spki = issuer.public_key();
    let key_alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let sig_alg = cert.signature_algorithm.algorithm.to_id_string();
    let algorithm: &dyn signature::VerificationAlgorithm =
        match (key_alg.as_str(), curve.as_deref(), sig_alg.as_str()) {
            ("1.2.840.113549.1.1.1", _, "1.2.840.113549.1.1.11") => {
                &signature::RSA_PKCS1_2048_8192_SHA256
            }
            ("1.2.840.113549.1.1.1", _, "1.2.840.113549.1.1.12") => {
                &signature::RSA_PKCS1_2048_8192_SHA384
            }
            ("1.2.840.113549.1.1.1", _, "1.2.840.113549.1.1.13") => {
                &signature::RSA_PKCS1_2048_8192_SHA512
            }
            ("1.2.840.10045.2.1", Some(OID_P256), "1.2.840.10045.4.3.2") => {
                &signature::ECDSA_P256_SHA256_ASN1
            }
            ("1.2.840.10045.2.1", Some(OID_P256), "1.2.840.10045.4.3.3") => {
                &signature::ECDSA_P256_SHA384_ASN1
            }
            ("1.2.840.10045.2.1", Some(OID_P384), "1.2.840.10045.4.3.2") => {
                &signature::ECDSA_P384_SHA256_ASN1
            }
            ("1.2.840.10045.2.1", Some(OID_P384), "1.2.840.10045.4.3.3") => {
                &signature::ECDSA_P384_SHA384_ASN1
            }
            _ => return false,
        };
    UnparsedPublicKey::new(algorithm, &spki.subject_public_key.data)
        .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
        .is_ok()
}

fn certified_key(cert: &X509Certificate<'_>) -> Result<CertifiedKey, EkCertError> {
    let malformed = |reason: String| EkCertError::Malformed {
        which: "the EK certificate".into(),
        reason,
    };
    let spki = cert.public_key();
    match spki.parsed().map_err(|e| malformed(e.to_string()))? {
        PublicKey::RSA(rsa) => Ok(CertifiedKey::Rsa {
            modulus: strip_zeros(rsa.modulus).to_vec(),
            exponent: strip_zeros(rsa.exponent).to_vec(),
        }),
        PublicKey::EC(point) => Ok(CertifiedKey::Ec {
            curve: spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default(),
            point: point.data().to_vec(),
        }),
        _ => Err(malformed("its key is neither RSA nor EC".into())),
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}
