//! Passphrase-encrypted key files.
//!
//! Format (JSON, one file per key): the public TUF key in clear, then the private key sealed
//! with XChaCha20-Poly1305 under a key derived by Argon2id from the passphrase. The public part
//! is the AEAD's associated data, so swapping it makes decryption fail. See
//! docs/decisions/0003-key-file-format.md.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ml_dsa::{Keypair as _, MlDsa65};
use rampart_core::{Key, Scheme};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as rs, KeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{PASSPHRASE_ENV, SignError, Signer};

/// Argon2id cost parameters recorded in each file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Default for KdfParams {
    /// OWASP's Argon2id recommendation (64 MiB, 3 passes): about 0.2 s per unlock here.
    fn default() -> Self {
        KdfParams {
            m_kib: 65536,
            t: 3,
            p: 1,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyFile {
    format: String,
    public: Key,
    kdf: String,
    kdf_params: KdfParams,
    salt: String,
    cipher: String,
    nonce: String,
    ciphertext: String,
}

const FORMAT: &str = "rampart-key-v1";
/// Refuse key files larger than this before parsing (an ML-DSA key file is about 6 KiB).
const MAX_KEY_FILE: u64 = 64 * 1024;

enum Private {
    Ed25519(rs::Ed25519KeyPair),
    P256(rs::EcdsaKeyPair),
    MlDsa65(Box<ml_dsa::SigningKey<MlDsa65>>),
}

/// A signer whose private key was read from an encrypted key file.
pub struct FileSigner {
    public: Key,
    private: Private,
}

fn rng_fill(buf: &mut [u8]) {
    SystemRandom::new()
        .fill(buf)
        .expect("the OS random source works");
}

fn derive(pass: &[u8], salt: &[u8], p: KdfParams) -> Result<Zeroizing<[u8; 32]>, SignError> {
    let params =
        argon2::Params::new(p.m_kib, p.t, p.p, Some(32)).map_err(|e| SignError::KeyFile {
            path: String::new(),
            reason: format!("bad Argon2 parameters: {e}"),
        })?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    a.hash_password_into(pass, salt, out.as_mut())
        .map_err(|e| SignError::KeyFile {
            path: String::new(),
            reason: format!("key derivation failed: {e}"),
        })?;
    Ok(out)
}

impl FileSigner {
    /// Generates a new private key of `scheme`, returning the signer and the encrypted file bytes.
    pub fn generate(
        scheme: Scheme,
        passphrase: &str,
        kdf: KdfParams,
    ) -> Result<(FileSigner, Vec<u8>), SignError> {
        let rng = SystemRandom::new();
        let secret: Zeroizing<Vec<u8>> = Zeroizing::new(match scheme {
            Scheme::Ed25519 => rs::Ed25519KeyPair::generate_pkcs8(&rng)
                .expect("key generation works")
                .as_ref()
                .to_vec(),
            Scheme::EcdsaP256Sha256 => {
                rs::EcdsaKeyPair::generate_pkcs8(&rs::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                    .expect("key generation works")
                    .as_ref()
                    .to_vec()
            }
            Scheme::MlDsa65 => {
                let mut seed = [0u8; 32];
                rng_fill(&mut seed);
                seed.to_vec()
            }
            Scheme::RsaPssSha256 => {
                return Err(rampart_core::KeyError::UnsupportedScheme(
                    "rsassa-pss-sha256 keys cannot be generated; use ed25519, ecdsa-sha2-nistp256 or ml-dsa-65".into(),
                )
                .into());
            }
        });
        let signer = FileSigner::from_secret(scheme, &secret, "<new key>")?;
        let bytes = seal(&signer.public, &secret, passphrase, kdf)?;
        Ok((signer, bytes))
    }

    fn from_secret(scheme: Scheme, secret: &[u8], path: &str) -> Result<FileSigner, SignError> {
        let bad = |reason: String| SignError::KeyFile {
            path: path.to_string(),
            reason,
        };
        let (private, public_bytes) = match scheme {
            Scheme::Ed25519 => {
                let kp = rs::Ed25519KeyPair::from_pkcs8(secret)
                    .map_err(|e| bad(format!("bad Ed25519 key: {e}")))?;
                let pk = kp.public_key().as_ref().to_vec();
                (Private::Ed25519(kp), pk)
            }
            Scheme::EcdsaP256Sha256 => {
                let kp = rs::EcdsaKeyPair::from_pkcs8(
                    &rs::ECDSA_P256_SHA256_ASN1_SIGNING,
                    secret,
                    &SystemRandom::new(),
                )
                .map_err(|e| bad(format!("bad P-256 key: {e}")))?;
                let pk = kp.public_key().as_ref().to_vec();
                (Private::P256(kp), pk)
            }
            Scheme::MlDsa65 => {
                let seed: [u8; 32] = secret
                    .try_into()
                    .map_err(|_| bad("ML-DSA-65 seed must be 32 bytes".into()))?;
                let sk = ml_dsa::SigningKey::<MlDsa65>::from_seed(&seed.into());
                let pk = sk.verifying_key().encode().to_vec();
                (Private::MlDsa65(Box::new(sk)), pk)
            }
            Scheme::RsaPssSha256 => {
                return Err(bad("RSA keys are not supported for signing".into()));
            }
        };
        Ok(FileSigner {
            public: Key::from_public_bytes(scheme, &public_bytes)?,
            private,
        })
    }

    /// Reads and decrypts a key file.
    pub fn open(path: &Path, passphrase: &str) -> Result<FileSigner, SignError> {
        let shown = path.display().to_string();
        let bytes = read_bounded(path).map_err(|reason| SignError::KeyFile {
            path: shown.clone(),
            reason,
        })?;
        Self::from_file_bytes(&bytes, passphrase, &shown)
    }

    /// Decrypts key-file bytes; `name` is used in errors.
    pub fn from_file_bytes(
        bytes: &[u8],
        passphrase: &str,
        name: &str,
    ) -> Result<FileSigner, SignError> {
        let bad = |reason: String| SignError::KeyFile {
            path: name.to_string(),
            reason,
        };
        let f: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| bad(format!("not a Rampart key file: {e}")))?;
        if f.format != FORMAT || f.kdf != "argon2id" || f.cipher != "xchacha20poly1305" {
            return Err(bad(format!(
                "unsupported key file format {:?}/{}/{}",
                f.format, f.kdf, f.cipher
            )));
        }
        if f.kdf_params.m_kib > 1024 * 1024 || f.kdf_params.t > 16 || f.kdf_params.p > 8 {
            return Err(bad(
                "Argon2 parameters exceed the limits (1 GiB, 16 passes, 8 lanes)".into(),
            ));
        }
        let scheme = f.public.scheme()?;
        let salt = B64
            .decode(&f.salt)
            .map_err(|e| bad(format!("bad salt: {e}")))?;
        let nonce = B64
            .decode(&f.nonce)
            .map_err(|e| bad(format!("bad nonce: {e}")))?;
        let ct = B64
            .decode(&f.ciphertext)
            .map_err(|e| bad(format!("bad ciphertext: {e}")))?;
        let nonce: [u8; 24] = nonce
            .try_into()
            .map_err(|_| bad("nonce must be 24 bytes".into()))?;
        let k = derive(passphrase.as_bytes(), &salt, f.kdf_params)?;
        let aad = rampart_core::cjson::to_canonical_bytes(&f.public).expect("keys serialize");
        let cipher = XChaCha20Poly1305::new((&*k).into());
        let secret = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &ct,
                        aad: &aad,
                    },
                )
                .map_err(|_| SignError::WrongPassphrase(name.to_string()))?,
        );
        let signer = FileSigner::from_secret(scheme, &secret, name)?;
        if signer.public != f.public {
            return Err(bad(
                "private key does not match the public key in the file".into()
            ));
        }
        Ok(signer)
    }
}

fn seal(
    public: &Key,
    secret: &[u8],
    passphrase: &str,
    kdf: KdfParams,
) -> Result<Vec<u8>, SignError> {
    let mut salt = [0u8; 16];
    rng_fill(&mut salt);
    let mut nonce = [0u8; 24];
    rng_fill(&mut nonce);
    let k = derive(passphrase.as_bytes(), &salt, kdf)?;
    let aad = rampart_core::cjson::to_canonical_bytes(public).expect("keys serialize");
    let cipher = XChaCha20Poly1305::new((&*k).into());
    let ct = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: secret,
                aad: &aad,
            },
        )
        .expect("encryption of a small buffer cannot fail");
    let f = KeyFile {
        format: FORMAT.into(),
        public: public.clone(),
        kdf: "argon2id".into(),
        kdf_params: kdf,
        salt: B64.encode(salt),
        cipher: "xchacha20poly1305".into(),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(ct),
    };
    let mut out = serde_json::to_vec_pretty(&f).expect("key file serializes");
    out.push(b'\n');
    Ok(out)
}

/// Writes a new key file: created owner-only (mode 0600) and exclusively, so an existing file
/// (or a symlink planted where it should go) is never replaced or followed. The contents are
/// encrypted, but a key file readable by every user of the machine is an offline passphrase
/// guessing target all the same.
pub fn write_key_file(path: &Path, bytes: &[u8]) -> Result<(), SignError> {
    use std::io::Write as _;
    let bad = |reason: String| SignError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            bad("exists; refusing to overwrite a key file (choose another path)".into())
        } else {
            bad(format!("cannot create: {e}"))
        }
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| bad(format!("cannot write: {e}")))
}

/// Reads only the public key of a key file (no passphrase needed).
pub fn read_public(path: &Path) -> Result<Key, SignError> {
    let shown = path.display().to_string();
    let bad = |reason: String| SignError::KeyFile {
        path: shown.clone(),
        reason,
    };
    let bytes = read_bounded(path).map_err(&bad)?;
    let f: KeyFile =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a Rampart key file: {e}")))?;
    Ok(f.public)
}

/// Reads a key file, refusing more than `MAX_KEY_FILE` bytes without reading them.
fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(format!("over the {MAX_KEY_FILE}-byte limit for key files"));
    }
    Ok(bytes)
}

/// The passphrase from `RAMPART_KEY_PASSPHRASE`, else a terminal prompt.
pub fn passphrase_from_env_or_prompt(prompt: &str) -> Result<String, SignError> {
    if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
        return Ok(p);
    }
    rpassword::prompt_password(prompt).map_err(|_| SignError::NoPassphrase(PASSPHRASE_ENV))
}

impl Signer for FileSigner {
    fn public_key(&self) -> &Key {
        &self.public
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(match &self.private {
            Private::Ed25519(kp) => kp.sign(message).as_ref().to_vec(),
            Private::P256(kp) => kp
                .sign(&SystemRandom::new(), message)
                .map_err(|_| SignError::KeyFile {
                    path: String::new(),
                    reason: "ECDSA signing failed".into(),
                })?
                .as_ref()
                .to_vec(),
            Private::MlDsa65(sk) => sk
                .expanded_key()
                .sign_deterministic(message, b"")
                .map_err(|_| SignError::KeyFile {
                    path: String::new(),
                    reason: "ML-DSA signing failed".into(),
                })?
                .encode()
                .to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAST: KdfParams = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };

    #[test]
    fn every_scheme_signs_and_verifies_after_a_round_trip() {
        for scheme in [Scheme::Ed25519, Scheme::EcdsaP256Sha256, Scheme::MlDsa65] {
            let (s, bytes) = FileSigner::generate(scheme, "pw", FAST).unwrap();
            let reopened = FileSigner::from_file_bytes(&bytes, "pw", "mem").unwrap();
            assert_eq!(reopened.public_key(), s.public_key());
            let sig = reopened.sign(b"message").unwrap();
            s.public_key().verify(b"message", &sig).unwrap();
            assert!(s.public_key().verify(b"other", &sig).is_err(), "{scheme:?}");
        }
    }

    /// Known answer from an independent FIPS 204 implementation (PyPI dilithium-py 1.5.1,
    /// `ML_DSA_65.key_derive(bytes(range(32)))`, then `sign(sk, msg, ctx=b"", deterministic=True)`):
    /// the same seed must give the same public key and the same deterministic signature.
    #[test]
    fn ml_dsa_65_matches_an_independent_implementation() {
        let seed: Vec<u8> = (0u8..32).collect();
        let signer = FileSigner::from_secret(Scheme::MlDsa65, &seed, "kat").unwrap();
        let pk = hex::decode(&signer.public_key().keyval.public).unwrap();
        let sha = |b: &[u8]| hex::encode(ring::digest::digest(&ring::digest::SHA256, b));
        assert_eq!(
            sha(&pk),
            "d666806e11cee19a7c989f7445f90dd419cf4d2d51db8c0fdb4c0f0a542238c9"
        );
        let sig = signer.sign(b"rampart known-answer").unwrap();
        assert_eq!(sig.len(), rampart_core::keys::ML_DSA_65_SIGNATURE_LEN);
        assert_eq!(
            sha(&sig),
            "dce416ead69e8c4e81b94dbfb9f295cc24389da5ba482da921d12f58260c2ae9"
        );
        signer
            .public_key()
            .verify(b"rampart known-answer", &sig)
            .unwrap();
    }

    #[test]
    #[cfg(unix)]
    fn key_files_are_written_0600_and_never_replaced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.key");
        let (signer, bytes) = FileSigner::generate(Scheme::Ed25519, "pw", FAST).unwrap();
        write_key_file(&path, &bytes).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
        assert_eq!(
            FileSigner::open(&path, "pw").unwrap().public_key(),
            signer.public_key()
        );
        let e = write_key_file(&path, b"other").unwrap_err().to_string();
        assert!(e.contains("refusing to overwrite"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn wrong_passphrase_is_refused() {
        let (_, bytes) = FileSigner::generate(Scheme::Ed25519, "right", FAST).unwrap();
        assert!(matches!(
            FileSigner::from_file_bytes(&bytes, "wrong", "mem"),
            Err(SignError::WrongPassphrase(_))
        ));
    }

    #[test]
    fn swapped_public_key_is_detected() {
        let (_, a) = FileSigner::generate(Scheme::Ed25519, "pw", FAST).unwrap();
        let (b, _) = FileSigner::generate(Scheme::Ed25519, "pw", FAST).unwrap();
        let mut f: serde_json::Value = serde_json::from_slice(&a).unwrap();
        f["public"] = serde_json::to_value(b.public_key()).unwrap();
        let tampered = serde_json::to_vec(&f).unwrap();
        assert!(FileSigner::from_file_bytes(&tampered, "pw", "mem").is_err());
    }
}
