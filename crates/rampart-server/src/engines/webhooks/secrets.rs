//! Webhook secrets at rest: sealed with the server's secrets key.
//!
//! A webhook's secret is the HMAC key its deliveries are signed with, so the server must be able
//! to read it back (it cannot be stored as a hash). It is stored sealed with ChaCha20-Poly1305
//! under a 32-byte key kept in a file outside the database (`rampart server --secrets-key FILE`),
//! so a copy of the database (a backup, a dump, a stolen disk image of the database volume)
//! does not give away the secrets. Each sealed value is bound to its webhook's id (the AEAD's
//! associated data): a sealed secret copied onto another webhook does not open.
//!
//! Stored form: [`StoredSecret`] with the key's id (a digest of the key, so a wrong key is named
//! as such) and `hex(nonce || ciphertext || tag)`.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use rampart_db::StoredSecret;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

/// Bytes in a secrets key file.
pub const SECRETS_KEY_LEN: usize = 32;

/// Why the secrets key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsKeyError {
    #[error(
        "the webhook secrets key {path}: {source}; give a readable file with --secrets-key (it is created, mode 0600, if missing)"
    )]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the webhook secrets key {path} is {len} bytes; it must be exactly {SECRETS_KEY_LEN} random bytes (give a path that does not exist to have one created)"
    )]
    Length { path: String, len: usize },
    #[error("the system random generator failed while making a webhook secrets key or nonce")]
    Random,
    #[error("sealing a webhook secret failed (it is longer than ChaCha20-Poly1305 can seal)")]
    Seal,
}

/// Why a stored secret could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error(
        "webhook {webhook}'s secret was sealed with secrets key {sealed_with}, but this server's key is {key}: start the server with the key file it was sealed with (--secrets-key), or delete and re-create the webhook"
    )]
    WrongKey {
        webhook: String,
        sealed_with: String,
        key: String,
    },
    #[error(
        "webhook {webhook}'s sealed secret does not open with secrets key {key} (it was altered, or belongs to another webhook); delete and re-create the webhook"
    )]
    Corrupt { webhook: String, key: String },
    #[error(
        "webhook {webhook}'s secret is stored in clear; restart the server so that it seals it"
    )]
    Plaintext { webhook: String },
}

/// The server's webhook secrets key.
pub struct SecretsKey {
    key: LessSafeKey,
    id: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SecretsKey {
    pub fn from_bytes(bytes: &[u8; SECRETS_KEY_LEN]) -> SecretsKey {
        // Names the key without revealing it: a digest under a fixed label, 16 hex digits.
        let mut context = ring::digest::Context::new(&ring::digest::SHA256);
        context.update(b"rampart webhook secrets key id\0");
        context.update(bytes);
        let id = hex::encode(&context.finish().as_ref()[..8]);
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte ChaCha20 key"),
        );
        SecretsKey {
            key,
            id,
            rng: SystemRandom::new(),
        }
    }

    /// A new random key, held only in memory (for a database that lives only in memory).
    pub fn ephemeral() -> Result<SecretsKey, SecretsKeyError> {
        let mut bytes = [0u8; SECRETS_KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretsKeyError::Random)?;
        Ok(SecretsKey::from_bytes(&bytes))
    }

    /// Reads the key file at `path`, or creates it (32 random bytes, mode 0600, never replacing
    /// a file) if there is none. Returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(SecretsKey, bool), SecretsKeyError> {
        let shown = path.display().to_string();
        let io = |source| SecretsKeyError::Io {
            path: shown.clone(),
            source,
        };
        match std::fs::File::open(path) {
            Ok(file) => {
                let mut bytes = Vec::with_capacity(SECRETS_KEY_LEN);
                file.take(SECRETS_KEY_LEN as u64 + 1)
                    .read_to_end(&mut bytes)
                    .map_err(io)?;
                let key: [u8; SECRETS_KEY_LEN] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| SecretsKeyError::Length {
                            path: shown.clone(),
                            len: bytes.len(),
                        })?;
                Ok((SecretsKey::from_bytes(&key), false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; SECRETS_KEY_LEN];
                SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| SecretsKeyError::Random)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                match options.open(path) {
                    Ok(mut file) => {
                        file.write_all(&bytes).map_err(io)?;
                        file.sync_all().map_err(io)?;
                        Ok((SecretsKey::from_bytes(&bytes), true))
                    }
                    // Another server created it meanwhile: use theirs.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(path)
                    }
                    Err(e) => Err(io(e)),
                }
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The key's public name (16 hex digits of a digest of it), stored with each sealed secret.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals `secret` for the webhook `webhook_id`.
    pub fn seal(&self, webhook_id: &str, secret: &str) -> Result<StoredSecret, SecretsKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .map_err(|_| SecretsKeyError::Random)?;
        let mut sealed = secret.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(webhook_id.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SecretsKeyError::Seal)?;
        let mut stored = nonce.to_vec();
        stored.extend_from_slice(&sealed);
        Ok(StoredSecret {
            key_id: self.id.clone(),
            value: hex::encode(&stored),
        })
    }

    /// Opens the sealed secret of the webhook `webhook_id`.
    pub fn open(&self, webhook_id: &str, stored: &StoredSecret) -> Result<String, OpenError> {
        if stored.key_id.is_empty() {
            return Err(OpenError::Plaintext {
                webhook: webhook_id.to_owned(),
            });
        }
        if stored.key_id != self.id {
            return Err(OpenError::WrongKey {
                webhook: webhook_id.to_owned(),
                sealed_with: stored.key_id.clone(),
                key: self.id.clone(),
            });
        }
        let corrupt = || OpenError::Corrupt {
            webhook: webhook_id.to_owned(),
            key: self.id.clone(),
        };
        let mut bytes = hex::decode(&stored.value).map_err(|_| corrupt())?;
        if bytes.len() < NONCE_LEN {
            return Err(corrupt());
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| corrupt())?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(webhook_id.as_bytes()), &mut sealed)
            .map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map_err(|_| corrupt())
    }
}

/// Where the secrets key lives when none is given: next to a SQLite database file
/// (`DIR/NAME.db` → `DIR/NAME.secrets.key`); `None` for PostgreSQL and in-memory databases.
pub fn default_key_path(db_url: &str) -> Option<PathBuf> {
    let db = rampart_db::sqlite_file(db_url)?;
    let stem = db.file_stem()?.to_string_lossy().into_owned();
    Some(db.with_file_name(format!("{stem}.secrets.key")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_webhook() {
        let key = SecretsKey::from_bytes(&[7u8; 32]);
        let other = SecretsKey::from_bytes(&[8u8; 32]);
        let sealed = key
            .seal("whk-1", "a-webhook-secret-of-32-bytes-xyz")
            .unwrap();
        assert_eq!(sealed.key_id, key.id());
        assert!(!sealed.value.contains("a-webhook-secret"));
        assert_eq!(
            key.open("whk-1", &sealed).unwrap(),
            "a-webhook-secret-of-32-bytes-xyz"
        );
        // Two seals of one secret differ (random nonces).
        assert_ne!(
            key.seal("whk-1", "same").unwrap(),
            key.seal("whk-1", "same").unwrap()
        );
        assert!(matches!(
            other.open("whk-1", &sealed),
            Err(OpenError::WrongKey { .. })
        ));
        let message = other.open("whk-1", &sealed).unwrap_err().to_string();
        assert!(
            message.contains(key.id()) && message.contains("--secrets-key"),
            "{message}"
        );
        // Moved to another webhook, or altered: refused.
        assert!(matches!(
            key.open("whk-2", &sealed),
            Err(OpenError::Corrupt { .. })
        ));
        let mut altered = sealed.clone();
        altered.value.replace_range(
            20..21,
            if &altered.value[20..21] == "0" {
                "1"
            } else {
                "0"
            },
        );
        assert!(matches!(
            key.open("whk-1", &altered),
            Err(OpenError::Corrupt { .. })
        ));
        let plaintext = StoredSecret {
            key_id: String::new(),
            value: "clear".into(),
        };
        assert!(matches!(
            key.open("whk-1", &plaintext),
            Err(OpenError::Plaintext { .. })
        ));
    }

    #[test]
    fn a_missing_key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.key");
        let (created, was_created) = SecretsKey::load_or_create(&path).unwrap();
        assert!(was_created);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{mode:o}");
        }
        let (again, was_created) = SecretsKey::load_or_create(&path).unwrap();
        assert!(!was_created);
        assert_eq!(again.id(), created.id());
        std::fs::write(&path, b"short").unwrap();
        let e = SecretsKey::load_or_create(&path).unwrap_err().to_string();
        assert!(
            e.contains("is 5 bytes") && e.contains("32 random bytes"),
            "{e}"
        );
        let e = SecretsKey::load_or_create(&dir.path().join("no/such/dir/k"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--secrets-key"), "{e}");
    }

    #[test]
    fn the_default_key_sits_next_to_a_sqlite_file() {
        assert_eq!(
            default_key_path("sqlite:///var/lib/rampart/server.db"),
            Some(PathBuf::from("/var/lib/rampart/server.secrets.key"))
        );
        assert_eq!(
            default_key_path("sqlite://rampart-server.db?mode=rwc"),
            Some(PathBuf::from("rampart-server.secrets.key"))
        );
        assert_eq!(default_key_path("sqlite::memory:"), None);
        assert_eq!(default_key_path("postgres://u@h/db"), None);
    }
}
