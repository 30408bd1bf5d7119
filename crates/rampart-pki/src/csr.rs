//! PKCS#10 certificate signing requests (RFC 2986) made on a device whose key never leaves its
//! TPM or secure element: the request is checked (size, structure, the key's own signature over
//! it, the device id in its subject) before the CA certifies the key.

use crate::der::{self, DeviceKey, TAG_BIT_STRING, TAG_INTEGER, TAG_OID, TAG_SEQUENCE};
use crate::{CertificateAuthority, Error, Result, validate_device_id};

/// The largest request accepted: a P-256 or Ed25519 request with a short subject is a few
/// hundred bytes.
pub const MAX_CSR_LEN: usize = 16 * 1024;

/// `[0] IMPLICIT SET OF Attribute` of CertificationRequestInfo.
const TAG_CTX0_CONSTRUCTED: u8 = 0xa0;
/// DER content of OID 1.2.840.10045.4.3.2 (ecdsa-with-SHA256).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
/// DER content of OID 1.3.101.112 (id-Ed25519).
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// A request whose signature verified: who asks, for which key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRequest {
    /// The device id: the subject's commonName.
    pub device_id: String,
    /// The DER SubjectPublicKeyInfo of the key to certify.
    pub public_key_spki_der: Vec<u8>,
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidRequest(reason.into())
}

/// Parses a DER certificate signing request and verifies its self-signature (ECDSA P-256 with
/// SHA-256, or Ed25519) with the public key it carries, then reads the device id from its
/// subject commonName.
pub fn verify_request(der_bytes: &[u8]) -> Result<VerifiedRequest> {
    if der_bytes.len() > MAX_CSR_LEN {
        return Err(invalid(format!(
            "it is {} bytes, more than the {MAX_CSR_LEN} a device's request can need",
            der_bytes.len()
        )));
    }
    let malformed = || invalid("it is not a DER PKCS#10 request");
    let (request, trailing) = der::expect(der_bytes, TAG_SEQUENCE).ok_or_else(malformed)?;
    if !trailing.is_empty() {
        return Err(malformed());
    }
    let (info, rest) = der::expect(request.content, TAG_SEQUENCE).ok_or_else(malformed)?;
    let (algorithm, rest) = der::expect(rest, TAG_SEQUENCE).ok_or_else(malformed)?;
    let (signature, rest) = der::expect(rest, TAG_BIT_STRING).ok_or_else(malformed)?;
    if !rest.is_empty() {
        return Err(malformed());
    }
    let (version, fields) = der::expect(info.content, TAG_INTEGER).ok_or_else(malformed)?;
    if version.content != [0] {
        return Err(invalid("its version is not v1 (0)"));
    }
    let (subject, fields) = der::expect(fields, TAG_SEQUENCE).ok_or_else(malformed)?;
    let (spki, fields) = der::expect(fields, TAG_SEQUENCE).ok_or_else(malformed)?;
    let (_attributes, fields) = der::expect(fields, TAG_CTX0_CONSTRUCTED).ok_or_else(malformed)?;
    if !fields.is_empty() {
        return Err(malformed());
    }
    let (algorithm_oid, _) = der::expect(algorithm.content, TAG_OID).ok_or_else(malformed)?;
    let signature = match signature.content {
        [0, bits @ ..] => bits,
        _ => return Err(malformed()),
    };
    let (verification, key): (&dyn ring::signature::VerificationAlgorithm, &[u8]) =
        match (algorithm_oid.content, der::device_key(spki.raw)) {
            (OID_ECDSA_SHA256, Some(DeviceKey::P256(point))) => {
                (&ring::signature::ECDSA_P256_SHA256_ASN1, point)
            }
            (OID_ED25519, Some(DeviceKey::Ed25519(raw))) => (&ring::signature::ED25519, raw),
            (_, None) => {
                return Err(invalid(
                    "its key is neither ECDSA P-256 nor Ed25519, the keys device certificates \
                     are issued for",
                ));
            }
            _ => {
                return Err(invalid(
                    "its signature algorithm does not match its key (ecdsa-with-SHA256 for \
                     P-256, Ed25519 for Ed25519)",
                ));
            }
        };
    ring::signature::UnparsedPublicKey::new(verification, key)
        .verify(info.raw, signature)
        .map_err(|_| {
            invalid(
                "its signature does not verify with the key it carries: it was altered, or not \
                 signed by that key",
            )
        })?;
    let device_id = der::common_name(subject.raw)
        .ok_or_else(|| invalid("its subject has no commonName naming the device"))?;
    validate_device_id(device_id)?;
    Ok(VerifiedRequest {
        device_id: device_id.to_owned(),
        public_key_spki_der: spki.raw.to_vec(),
    })
}

impl CertificateAuthority {
    /// Issues a device client certificate for a verified certificate signing request
    /// ([`verify_request`]): the key the device generated and kept (in its TPM or
    /// secure element) is certified for the device id in the request's subject, exactly as
    /// [`CertificateAuthority::issue_device_for_public_key`] does. When `expected_device_id` is
    /// given, the request must name that device. Returns the device id and the certificate PEM.
    pub fn issue_device_for_request(
        &self,
        request_der: &[u8],
        expected_device_id: Option<&str>,
        validity_days: u32,
    ) -> Result<(String, String)> {
        let request = verify_request(request_der)?;
        if let Some(expected) = expected_device_id
            && expected != request.device_id
        {
            return Err(Error::InvalidRequest(format!(
                "it names device {:?}, not {expected:?}",
                request.device_id
            )));
        }
        let pem = self.issue_device_for_public_key(
            &request.device_id,
            &request.public_key_spki_der,
            validity_days,
        )?;
        Ok((request.device_id, pem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(device_id: &str) -> (Vec<u8>, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, device_id);
        let csr = params.serialize_request(&key).unwrap();
        (csr.der().to_vec(), key)
    }

    #[test]
    fn a_device_request_verifies() {
        let (der, key) = request("dev-1");
        let verified = verify_request(&der).unwrap();
        assert_eq!(verified.device_id, "dev-1");
        assert_eq!(
            verified.public_key_spki_der,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
    }

    #[test]
    fn csr_with_altered_content_is_refused() {
        let (mut der, _) = request("dev-1");
        // The device id's last character: the subject changes, the signature does not.
        let at = der.windows(5).position(|w| w == b"dev-1").unwrap() + 4;
        der[at] = b'2';
        let err = verify_request(&der).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn csr_signed_by_another_key_is_refused() {
        let (der, _) = request("dev-1");
        let (other, _) = request("dev-1");
        // Request 1's info and key with request 2's signature.
        let split = |d: &[u8]| {
            let (seq, _) = der::expect(d, TAG_SEQUENCE).unwrap();
            let (info, rest) = der::expect(seq.content, TAG_SEQUENCE).unwrap();
            (info.raw.to_vec(), rest.to_vec())
        };
        let (info, _) = split(&der);
        let (_, signature) = split(&other);
        let body = [info, signature].concat();
        let mut forged = match body.len() {
            n @ 0..0x80 => vec![0x30, n as u8],
            n @ 0x80..0x100 => vec![0x30, 0x81, n as u8],
            n => [&[0x30, 0x82][..], &(n as u16).to_be_bytes()].concat(),
        };
        forged.extend_from_slice(&body);
        let err = verify_request(&forged).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn oversized_or_garbage_requests_are_refused() {
        let err = verify_request(&vec![0x30; MAX_CSR_LEN + 1])
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than"), "{err}");
        let err = verify_request(b"not a request").unwrap_err().to_string();
        assert!(err.contains("not a DER PKCS#10"), "{err}");
    }

    #[test]
    fn request_with_a_bad_device_id_is_refused() {
        let (der, _) = request("../etc");
        assert!(matches!(
            verify_request(&der),
            Err(Error::InvalidDeviceId(_))
        ));
    }
}
