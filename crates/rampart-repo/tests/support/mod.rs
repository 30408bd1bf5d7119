//! What the repository's tests share: passphrase-file signers and a fresh repository with one
//! Ed25519 key per role.

#![allow(dead_code)]

use std::path::Path;

use rampart_core::Scheme;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_keys::{SignError, Signer};
use rampart_repo::{ExpiryDays, InitOptions, Repository, RoleSigners};

/// The test clock (Unix seconds).
pub const NOW: i64 = 1_800_000_000;

/// Opens a key file written by [`key`] (passphrase `pw`).
pub fn open(r: &str) -> Result<Box<dyn Signer>, SignError> {
    Ok(Box::new(FileSigner::open(Path::new(r), "pw")?))
}

/// A new Ed25519 key file `NAME.key` in `dir` (cheap KDF parameters), as one role's signers.
pub fn key(dir: &Path, name: &str) -> RoleSigners {
    let (_, bytes) = FileSigner::generate(
        Scheme::Ed25519,
        "pw",
        KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
    )
    .unwrap();
    let p = dir.join(format!("{name}.key"));
    std::fs::write(&p, bytes).unwrap();
    RoleSigners {
        keys: vec![p.display().to_string()],
        threshold: 1,
    }
}

/// A new repository in `dir/repo`, one key per role, initialised at [`NOW`].
pub fn repo(dir: &Path) -> Repository {
    let opts = InitOptions {
        root: key(dir, "root"),
        targets: key(dir, "targets"),
        snapshot: key(dir, "snapshot"),
        timestamp: key(dir, "timestamp"),
        expiry_days: ExpiryDays::default(),
    };
    Repository::init(&dir.join("repo"), opts, &open, NOW).unwrap()
}
