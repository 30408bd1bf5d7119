//! The device's mutual-TLS key inside the TPM: [`TpmTlsKey`] is a rustls
//! [`SigningKey`](rustls::sign::SigningKey) whose handshake signatures are TPM2_Sign with the
//! persistent ECDSA P-256 key (SHA-256 computed here, the signature DER-encoded as TLS wants
//! it), and makes the certificate signing request the operator's CA answers
//! (`rampart device provision --csr`), so the private key never exists outside the TPM.

use std::fmt;
use std::sync::{Arc, Mutex};

use rampart_attest::device::TpmError;
use rustls::sign::SigningKey;
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{Digest, Public, Signature, SignatureScheme as TpmScheme};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;

use crate::{Session, error, tss_error};

/// DER SubjectPublicKeyInfo header of an id-ecPublicKey on prime256v1 (RFC 5480), followed by
/// the 65-byte uncompressed point.
const P256_SPKI_HEADER: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The TLS client key in the TPM (see the module documentation). Cloning shares the TPM
/// context.
#[derive(Clone)]
pub struct TpmTlsKey {
    shared: Arc<Mutex<Session>>,
    key: KeyHandle,
    /// The uncompressed point, `04 || X || Y`.
    point: Vec<u8>,
    spki: Vec<u8>,
}

impl fmt::Debug for TpmTlsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmTlsKey")
            .field("public_key", &hex::encode(&self.point))
            .finish_non_exhaustive()
    }
}

impl TpmTlsKey {
    pub(crate) fn new(
        shared: Arc<Mutex<Session>>,
        key: KeyHandle,
        public: &Public,
    ) -> Result<TpmTlsKey, TpmError> {
        let Public::Ecc { unique, .. } = public else {
            return Err(error("TLS key", "the TLS key is not an ECC key"));
        };
        let (x, y) = (unique.x().as_slice(), unique.y().as_slice());
        if x.len() > 32 || y.len() > 32 {
            return Err(error("TLS key", "the TLS key's point is not a P-256 point"));
        }
        // The TPM may drop leading zero bytes of a coordinate; the encoding wants 32 each.
        let mut point = vec![0x04];
        for coordinate in [x, y] {
            point.resize(point.len() + 32 - coordinate.len(), 0);
            point.extend_from_slice(coordinate);
        }
        let spki = [&P256_SPKI_HEADER[..], &point].concat();
        Ok(TpmTlsKey {
            shared,
            key,
            point,
            spki,
        })
    }

    /// The key's DER SubjectPublicKeyInfo (what the device certificate must certify).
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// TPM2_Sign over SHA-256(`message`): the ECDSA signature, DER-encoded (X9.62 / RFC 3279).
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, TpmError> {
        const OP: &str = "sign with the TLS key";
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        let digest = Digest::try_from(digest.as_ref().to_vec()).map_err(|e| tss_error(OP, e))?;
        // An unrestricted key signs any digest: the null ticket says no TPM hash produced it.
        let ticket = TPMT_TK_HASHCHECK {
            tag: TPM2_ST_HASHCHECK,
            hierarchy: TPM2_RH_NULL,
            digest: Default::default(),
        }
        .try_into()
        .map_err(|e| tss_error(OP, e))?;
        let signature = {
            let mut session = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            session
                .ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.sign(self.key, digest, TpmScheme::Null, ticket)
                })
                .map_err(|e| tss_error(OP, e))?
        };
        let Signature::EcDsa(ecdsa) = signature else {
            return Err(error(OP, "the TPM returned a signature that is not ECDSA"));
        };
        Ok(ecdsa_der(
            ecdsa.signature_r().as_slice(),
            ecdsa.signature_s().as_slice(),
        ))
    }

    /// A PKCS#10 certificate signing request (PEM) for this key, its subject commonName the
    /// device id, signed in the TPM. The CA issues the device certificate from it.
    pub fn certificate_request_pem(&self, device_id: &str) -> Result<String, TpmError> {
        const OP: &str = "make the certificate signing request";
        rampart_pki::validate_device_id(device_id).map_err(|e| error(OP, e.to_string()))?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, device_id);
        let request = params
            .serialize_request(&CsrKey(self))
            .map_err(|e| error(OP, e.to_string()))?;
        request.pem().map_err(|e| error(OP, e.to_string()))
    }
}

/// The key as rcgen's signer of the CSR.
struct CsrKey<'a>(&'a TpmTlsKey);

impl rcgen::PublicKeyData for CsrKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.0.point
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for CsrKey<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0
            .sign_sha256(msg)
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

/// `ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }` from the big-endian scalars.
fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    fn integer(out: &mut Vec<u8>, value: &[u8]) {
        let first = value.iter().position(|&b| b != 0).unwrap_or(value.len());
        let trimmed = &value[first..];
        // A set high bit would read as negative: DER prefixes a zero byte.
        let pad = trimmed.first().is_none_or(|&b| b & 0x80 != 0);
        out.push(0x02);
        out.push((trimmed.len() + usize::from(pad)) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(trimmed);
    }
    let mut body = Vec::with_capacity(72);
    integer(&mut body, r);
    integer(&mut body, s);
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

impl SigningKey for TpmTlsKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        Some(SubjectPublicKeyInfoDer::from(self.spki.as_slice()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl rustls::sign::Signer for TpmTlsKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.sign_sha256(message)
            .map_err(|e| rustls::Error::General(e.to_string()))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::ecdsa_der;

    #[test]
    fn ecdsa_der_trims_and_pads_integers() {
        let r = [&[0u8, 0x01][..], &[0x22; 30]].concat();
        let s = [0x80u8; 32];
        let der = ecdsa_der(&r, &s);
        assert_eq!(&der[..4], &[0x30, 2 + 31 + 2 + 33, 0x02, 31]);
        assert_eq!(der[4], 0x01, "leading zero bytes are dropped");
        assert_eq!(
            &der[35..38],
            &[0x02, 33, 0x00],
            "a high bit gets a zero byte"
        );
    }
}
