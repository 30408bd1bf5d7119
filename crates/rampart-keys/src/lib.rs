//! Signing backends. Every backend yields a [`Signer`]: a TUF public key plus a way to sign
//! bytes, so repository code never learns where a private key lives.
//!
//! * [`file`]: a key file encrypted under a passphrase (Argon2id + XChaCha20-Poly1305).
//! * [`pkcs11`]: a key generated non-extractable on a PKCS#11 token; signing happens inside it.
#![forbid(unsafe_code)]

pub mod file;
pub mod pkcs11;

use rampart_core::{Key, Scheme};

/// Errors of the signing backends.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("wrong passphrase for key file {0} (or the file was modified)")]
    WrongPassphrase(String),
    #[error("no passphrase: set {0} or run in a terminal to be prompted")]
    NoPassphrase(&'static str),
    #[error("PKCS#11: {0}")]
    Pkcs11(String),
    #[error("key reference {0:?} not understood; use file:PATH or pkcs11:token=LABEL;object=LABEL")]
    BadReference(String),
    #[error(transparent)]
    Key(#[from] rampart_core::KeyError),
}

/// Something that holds a private key and signs with it.
pub trait Signer: Send + Sync {
    /// The TUF public key of this signer.
    fn public_key(&self) -> &Key;

    /// Signs `message`, returning the signature in its TUF encoding (DER for ECDSA, raw for
    /// Ed25519 and ML-DSA-65).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;

    fn key_id(&self) -> String {
        self.public_key().key_id()
    }

    fn scheme(&self) -> Scheme {
        self.public_key()
            .scheme()
            .expect("signers are built for supported schemes")
    }
}

/// Environment variable holding the passphrase of encrypted key files.
pub const PASSPHRASE_ENV: &str = "RAMPART_KEY_PASSPHRASE";

/// Opens a signer from a key reference: `file:PATH` (or a bare path) or a PKCS#11 reference
/// `pkcs11:token=LABEL;object=LABEL` (module from `RAMPART_PKCS11_MODULE`, PIN from
/// `RAMPART_PKCS11_PIN`).
pub fn open_signer(reference: &str) -> Result<Box<dyn Signer>, SignError> {
    if let Some(rest) = reference.strip_prefix("pkcs11:") {
        let r = pkcs11::TokenKeyRef::parse(rest)?;
        return Ok(Box::new(pkcs11::Pkcs11Signer::open(
            &pkcs11::ModuleConfig::from_env()?,
            &r,
        )?));
    }
    let path = reference.strip_prefix("file:").unwrap_or(reference);
    let pass = file::passphrase_from_env_or_prompt(&format!("Passphrase for {path}: "))?;
    Ok(Box::new(file::FileSigner::open(
        std::path::Path::new(path),
        &pass,
    )?))
}
