//! TPM2_MakeCredential in software (the verifier's side of AK enrolment) and
//! TPM2_ActivateCredential for the software TPM model's ECC endorsement key.
//!
//! MakeCredential seals a short secret to one attestation key *name* and one endorsement
//! key: only a TPM holding that EK's private key, and holding a loaded object with that name,
//! recovers it (TPM 2.0 Part 1, "Credential Protection"; Part 3, TPM2_MakeCredential):
//! 1. a seed, shared with the EK: RSA EKs get a random seed under RSA-OAEP (SHA-256, label
//!    "IDENTITY\0"); ECC EKs get an ephemeral ECDH key, seed = KDFe(Z, "IDENTITY",
//!    ephemeral x, EK x);
//! 2. symKey = KDFa(seed, "STORAGE", AK name), the credential (as a TPM2B_DIGEST) encrypted
//!    with the EK's symmetric algorithm (AES-128-CFB, zero IV);
//! 3. hmacKey = KDFa(seed, "INTEGRITY"), outer HMAC-SHA-256 over the ciphertext and the AK
//!    name.
//!
//! The outputs are the contents of TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET, what
//! `tpm2_activatecredential` and [`crate::device::TpmDevice::activate_credential`] take.

use aes::cipher::KeyIvInit;
use p256::elliptic_curve::sec1::ToSec1Point as _;
use ring::hmac;

use crate::eventlog::sha256;
use crate::wire::{self, Public, PublicKey, Reader, alg, object_attributes as attr};

/// The longest credential MakeCredential seals: a TPM refuses one longer than the digest of
/// the EK's name algorithm (SHA-256).
pub const MAX_CREDENTIAL: usize = 32;
/// The largest credential blob or encrypted secret accepted (an RSA-4096 secret is 512).
pub const MAX_BLOB: usize = 1024;

/// The key of an endorsement key's public area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EkKey {
    /// An RSA key: modulus (big-endian) and public exponent.
    Rsa {
        /// The modulus.
        modulus: Vec<u8>,
        /// The public exponent (65537 when the TPMT_PUBLIC says 0).
        exponent: u32,
    },
    /// A NIST P-256 point.
    EccP256 {
        /// The x coordinate, 32 bytes.
        x: [u8; 32],
        /// The y coordinate, 32 bytes.
        y: [u8; 32],
    },
}

/// What MakeCredential needs of an endorsement key's TPMT_PUBLIC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkPublic {
    /// The name algorithm (SHA-256 is the only one accepted).
    pub name_alg: u16,
    /// The object attributes.
    pub attributes: u32,
    /// The symmetric algorithm's key size in bits (AES, CFB mode).
    pub sym_key_bits: u16,
    /// The key.
    pub key: EkKey,
}

/// A credential could not be made or activated.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The EK's public area cannot be read.
    #[error("endorsement key public area (TPMT_PUBLIC) is invalid: {0}")]
    BadPublic(String),
    /// The EK uses algorithms this verifier does not implement.
    #[error(
        "endorsement key not supported: {0}; use a standard EK template (RSA 2048 or ECC NIST P-256, SHA-256, AES-128-CFB)"
    )]
    Unsupported(String),
    /// The AK name is not a SHA-256 name.
    #[error(
        "attestation key name must be 34 bytes: 0x000b (SHA-256) then the digest of its TPMT_PUBLIC; got {0} bytes"
    )]
    BadName(usize),
    /// The credential is empty or too long.
    #[error("credential must be 1 to {MAX_CREDENTIAL} bytes, got {0}")]
    BadCredential(usize),
    /// The blob or secret cannot be read.
    #[error("credential blob or encrypted secret is malformed: {0}")]
    Malformed(&'static str),
    /// The outer HMAC does not match: another EK, another AK name or a tampered blob.
    #[error(
        "credential integrity check failed: it was made for another endorsement key or attestation key name, or was altered"
    )]
    Integrity,
}

impl EkPublic {
    /// Reads an endorsement key's TPMT_PUBLIC (RSA or ECC), refusing anything a standard EK
    /// template would not produce: a name algorithm other than SHA-256, a symmetric algorithm
    /// other than AES-CFB, an ECC curve other than P-256, a key that is not a restricted
    /// decryption key.
    pub fn parse(bytes: &[u8]) -> Result<EkPublic, CredentialError> {
        let public = Public::parse(bytes).map_err(|e| match e {
            wire::WireError::Unsupported { .. } => CredentialError::Unsupported(e.to_string()),
            _ => CredentialError::BadPublic(e.to_string()),
        })?;
        if public.name_alg != alg::SHA256 {
            return Err(CredentialError::Unsupported(format!(
                "name algorithm {:#06x}",
                public.name_alg
            )));
        }
        let (symmetric, key) = match public.key {
            PublicKey::Rsa {
                symmetric,
                exponent,
                modulus,
                ..
            } => {
                let exponent = if exponent == 0 { 65537 } else { exponent };
                (symmetric, EkKey::Rsa { modulus, exponent })
            }
            PublicKey::Ecc {
                symmetric, x, y, ..
            } => (
                symmetric,
                EkKey::EccP256 {
                    x: coordinate(&x)?,
                    y: coordinate(&y)?,
                },
            ),
        };
        let Some((sym_key_bits, alg::CFB)) = symmetric
            .key_bits_mode
            .filter(|_| symmetric.algorithm == alg::AES)
        else {
            return Err(CredentialError::Unsupported(format!(
                "symmetric algorithm {:#06x} {:?} (an EK protects credentials with AES-CFB)",
                symmetric.algorithm, symmetric.key_bits_mode
            )));
        };
        if sym_key_bits != 128 {
            return Err(CredentialError::Unsupported(format!(
                "symmetric key size {sym_key_bits} bits"
            )));
        }
        let restricted_decrypt = attr::RESTRICTED | attr::DECRYPT;
        if public.object_attributes & restricted_decrypt != restricted_decrypt {
            return Err(CredentialError::BadPublic(
                "not a restricted decryption key, so it is not an endorsement key".into(),
            ));
        }
        Ok(EkPublic {
            name_alg: public.name_alg,
            attributes: public.object_attributes,
            sym_key_bits,
            key,
        })
    }
}

/// A P-256 coordinate from a TPM2B: at most 32 bytes, left-padded.
fn coordinate(bytes: &[u8]) -> Result<[u8; 32], CredentialError> {
    if bytes.len() > 32 {
        return Err(CredentialError::BadPublic(format!(
            "P-256 coordinate is {} bytes",
            bytes.len()
        )));
    }
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(bytes);
    Ok(out)
}

/// The output of MakeCredential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MadeCredential {
    /// TPM2B_ID_OBJECT contents: TPM2B_DIGEST(outer HMAC) || encrypted credential.
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET contents: the OAEP ciphertext (RSA EK) or the ephemeral
    /// TPMS_ECC_POINT (ECC EK).
    pub encrypted_secret: Vec<u8>,
}

/// TPM2_MakeCredential: seals `credential` to the attestation key named `ak_name` in the TPM
/// whose endorsement key is `ek_public` (TPMT_PUBLIC). `entropy` must be fresh random bytes
/// (the server takes them from the operating system); the function is otherwise pure.
pub fn make_credential(
    ek_public: &[u8],
    ak_name: &[u8],
    credential: &[u8],
    entropy: &[u8; 32],
) -> Result<MadeCredential, CredentialError> {
    let ek = EkPublic::parse(ek_public)?;
    check_name(ak_name)?;
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL {
        return Err(CredentialError::BadCredential(credential.len()));
    }
    let mut rng = EntropyRng::new(entropy);
    let (seed, encrypted_secret) = match &ek.key {
        EkKey::Rsa { modulus, exponent } => {
            let mut seed = [0u8; 32];
            rand_core::Rng::fill_bytes(&mut rng, &mut seed);
            let n = rsa::BoxedUint::from_be_slice(modulus, modulus.len() as u32 * 8)
                .map_err(|_| CredentialError::BadPublic("RSA modulus".into()))?;
            let e = rsa::BoxedUint::from(u64::from(*exponent));
            let key = rsa::PublicKey::new(n, e)
                .map_err(|e| CredentialError::BadPublic(format!("RSA key: {e}")))?;
            let padding = rsa::Oaep::<sha2::Sha256>::new_with_label(&b"IDENTITY\0"[..]);
            let secret = key
                .encrypt(&mut rng, padding, &seed)
                .map_err(|e| CredentialError::BadPublic(format!("RSA-OAEP: {e}")))?;
            (seed, secret)
        }
        EkKey::EccP256 { x, y } => {
            let ek_point = p256_point(x, y).map_err(|_| {
                CredentialError::BadPublic("ECC point is not on the P-256 curve".into())
            })?;
            let ephemeral = nonzero_scalar(&mut rng);
            let ephemeral_public = p256::PublicKey::from_secret_scalar(&ephemeral);
            let (ex, ey) = xy(&ephemeral_public);
            let z = p256::ecdh::diffie_hellman(ephemeral, ek_point.as_affine());
            let seed = kdfe_identity(z.raw_secret_bytes().as_slice(), &ex, x);
            (seed, ecc_point(&ex, &ey))
        }
    };
    let blob = seal(&seed, ak_name, credential);
    Ok(MadeCredential {
        credential_blob: blob,
        encrypted_secret,
    })
}

/// TPM2_ActivateCredential with a P-256 endorsement key's private scalar `ek_private` (the
/// software TPM model's): recovers the credential sealed to `ak_name` and this EK.
pub fn activate_credential_p256(
    ek_private: &[u8; 32],
    ak_name: &[u8],
    credential_blob: &[u8],
    encrypted_secret: &[u8],
) -> Result<Vec<u8>, CredentialError> {
    check_name(ak_name)?;
    if credential_blob.len() > MAX_BLOB || encrypted_secret.len() > MAX_BLOB {
        return Err(CredentialError::Malformed("larger than any credential"));
    }
    let parse_err =
        |_| CredentialError::Malformed("encrypted secret is not a P-256 TPMS_ECC_POINT");
    let mut r = Reader::new("TPMS_ECC_POINT", encrypted_secret, MAX_BLOB).map_err(parse_err)?;
    let x = r.sized("x", 32).map_err(parse_err)?;
    let y = r.sized("y", 32).map_err(parse_err)?;
    r.finish().map_err(parse_err)?;
    let (ex, ey) = (coordinate(x)?, coordinate(y)?);
    let ephemeral = p256_point(&ex, &ey).map_err(|_| {
        CredentialError::Malformed("encrypted secret's point is not on the P-256 curve")
    })?;
    let scalar: Option<p256::NonZeroScalar> =
        p256::NonZeroScalar::from_repr((*ek_private).into()).into();
    let scalar = scalar.ok_or(CredentialError::Malformed("EK private key is not a scalar"))?;
    let (ek_x, _) = xy(&p256::PublicKey::from_secret_scalar(&scalar));
    let z = p256::ecdh::diffie_hellman(scalar, ephemeral.as_affine());
    let seed = kdfe_identity(z.raw_secret_bytes().as_slice(), &ex, &ek_x);
    unseal(&seed, ak_name, credential_blob)
}

/// A SHA-256 object name: 0x000B || 32-byte digest.
fn check_name(name: &[u8]) -> Result<(), CredentialError> {
    if name.len() != 34 || name[..2] != alg::SHA256.to_be_bytes() {
        return Err(CredentialError::BadName(name.len()));
    }
    Ok(())
}

/// Steps 2 and 3 of MakeCredential: encrypt the credential under the name, add the outer HMAC.
fn seal(seed: &[u8; 32], name: &[u8], credential: &[u8]) -> Vec<u8> {
    let sym_key = kdfa(seed, b"STORAGE", name, 16);
    let mut enc_identity = (credential.len() as u16).to_be_bytes().to_vec();
    enc_identity.extend_from_slice(credential);
    Aes128Cfb::new(&aes_key(&sym_key).into(), &[0u8; 16].into()).encrypt(&mut enc_identity);
    let outer = outer_hmac(seed, &enc_identity, name);
    let mut blob = 32u16.to_be_bytes().to_vec();
    blob.extend_from_slice(outer.as_ref());
    blob.extend_from_slice(&enc_identity);
    blob
}

/// The inverse of [`seal`], checking the outer HMAC first.
fn unseal(seed: &[u8; 32], name: &[u8], blob: &[u8]) -> Result<Vec<u8>, CredentialError> {
    let malformed = |_| CredentialError::Malformed("credential blob ends in its integrity field");
    let mut r = Reader::new("TPM2B_ID_OBJECT", blob, MAX_BLOB).map_err(malformed)?;
    let integrity = r.sized("integrityHMAC", 64).map_err(malformed)?;
    let enc_identity = r.take("encIdentity", r.remaining()).map_err(malformed)?;
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, &kdfa(seed, b"INTEGRITY", &[], 32));
    let mut signed = enc_identity.to_vec();
    signed.extend_from_slice(name);
    hmac::verify(&hmac_key, &signed, integrity).map_err(|_| CredentialError::Integrity)?;
    let sym_key = kdfa(seed, b"STORAGE", name, 16);
    let mut plain = enc_identity.to_vec();
    Aes128CfbDec::new(&aes_key(&sym_key).into(), &[0u8; 16].into()).decrypt(&mut plain);
    let wrong_size = |_| CredentialError::Malformed("decrypted credential's size is wrong");
    let mut p = Reader::new("TPM2B_DIGEST", &plain, MAX_BLOB).map_err(wrong_size)?;
    let credential = p.sized("credential", MAX_CREDENTIAL).map_err(wrong_size)?;
    p.finish().map_err(wrong_size)?;
    if credential.is_empty() {
        return Err(CredentialError::Malformed("decrypted credential is empty"));
    }
    Ok(credential.to_vec())
}

/// The 16 bytes of an AES-128 key from KDFa's output (always 16 bytes long).
fn aes_key(kdfa_output: &[u8]) -> [u8; 16] {
    let mut key = [0u8; 16];
    key.copy_from_slice(&kdfa_output[..16]);
    key
}

type Aes128Cfb = cfb_mode::Encryptor<aes::Aes128>;
type Aes128CfbDec = cfb_mode::Decryptor<aes::Aes128>;

fn outer_hmac(seed: &[u8; 32], enc_identity: &[u8], name: &[u8]) -> hmac::Tag {
    let key = hmac::Key::new(hmac::HMAC_SHA256, &kdfa(seed, b"INTEGRITY", &[], 32));
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(enc_identity);
    ctx.update(name);
    ctx.sign()
}

/// KDFa with SHA-256 (TPM 2.0 Part 1, 11.4.10.2; NIST SP 800-108 counter mode):
/// HMAC(key, [i]32 || label || 0x00 || context || [bits]32), no contextV here.
pub fn kdfa(key: &[u8], label: &[u8], context: &[u8], bytes: usize) -> Vec<u8> {
    let hmac_key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        let mut ctx = hmac::Context::with_key(&hmac_key);
        ctx.update(&counter.to_be_bytes());
        ctx.update(label);
        ctx.update(&[0]);
        ctx.update(context);
        ctx.update(&((bytes as u32) * 8).to_be_bytes());
        out.extend_from_slice(ctx.sign().as_ref());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// KDFe with SHA-256 for one 32-byte seed (TPM 2.0 Part 1, 11.4.10.3; NIST SP 800-56A):
/// SHA-256([1]32 || Z || "IDENTITY" || 0x00 || partyU x || partyV x).
fn kdfe_identity(z: &[u8], party_u: &[u8; 32], party_v: &[u8; 32]) -> [u8; 32] {
    let mut input = Vec::with_capacity(4 + 32 + 9 + 64);
    input.extend_from_slice(&1u32.to_be_bytes());
    input.extend_from_slice(z);
    input.extend_from_slice(b"IDENTITY\0");
    input.extend_from_slice(party_u);
    input.extend_from_slice(party_v);
    sha256(&input)
}

/// A P-256 public key from its coordinates, refusing points off the curve.
pub(crate) fn p256_point(x: &[u8; 32], y: &[u8; 32]) -> Result<p256::PublicKey, ()> {
    let mut sec1 = [0u8; 65];
    sec1[0] = 4;
    sec1[1..33].copy_from_slice(x);
    sec1[33..].copy_from_slice(y);
    p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| ())
}

/// The coordinates of a P-256 public key.
pub(crate) fn xy(key: &p256::PublicKey) -> ([u8; 32], [u8; 32]) {
    let point = key.to_sec1_point(false);
    let bytes = point.as_bytes();
    let mut x = [0u8; 32];
    let mut y = [0u8; 32];
    x.copy_from_slice(&bytes[1..33]);
    y.copy_from_slice(&bytes[33..65]);
    (x, y)
}

/// TPMS_ECC_POINT: TPM2B x, TPM2B y.
pub(crate) fn ecc_point(x: &[u8; 32], y: &[u8; 32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(68);
    for c in [x, y] {
        out.extend_from_slice(&32u16.to_be_bytes());
        out.extend_from_slice(c);
    }
    out
}

/// A non-zero P-256 scalar drawn from `rng`.
fn nonzero_scalar(rng: &mut EntropyRng) -> p256::NonZeroScalar {
    loop {
        let mut bytes = [0u8; 32];
        rand_core::Rng::fill_bytes(rng, &mut bytes);
        let scalar: Option<p256::NonZeroScalar> =
            p256::NonZeroScalar::from_repr(bytes.into()).into();
        if let Some(s) = scalar {
            return s;
        }
    }
}

/// A deterministic random stream from caller-given entropy: SHA-256(entropy || counter)
/// blocks. It keeps this crate free of I/O; its output is as unpredictable as the entropy.
struct EntropyRng {
    entropy: [u8; 32],
    counter: u64,
    block: [u8; 32],
    used: usize,
}

impl EntropyRng {
    fn new(entropy: &[u8; 32]) -> Self {
        EntropyRng {
            entropy: *entropy,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }
}

impl rand_core::TryRng for EntropyRng {
    type Error = core::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        for byte in dst {
            if self.used == 32 {
                let mut input = [0u8; 40];
                input[..32].copy_from_slice(&self.entropy);
                input[32..].copy_from_slice(&self.counter.to_be_bytes());
                self.block = sha256(&input);
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

impl rand_core::TryCryptoRng for EntropyRng {}
