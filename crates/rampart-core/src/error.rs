//! Typed errors of TUF verification. Each names the role involved and what went wrong.

use crate::keys::KeyError;

/// Why metadata or a target was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TufError {
    #[error("{role} metadata is malformed: {reason}")]
    Malformed { role: String, reason: String },
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("expected {expected} metadata but the file says _type {found:?}")]
    WrongType { expected: String, found: String },
    #[error("{role} metadata has unsupported spec_version {found:?}; this client supports 1.x")]
    UnsupportedSpecVersion { role: String, found: String },
    #[error(
        "{role} metadata is signed by {valid} valid distinct key(s) but its threshold is {threshold}"
    )]
    ThresholdNotMet {
        role: String,
        valid: usize,
        threshold: u32,
    },
    #[error("{role} metadata expired at {expires}")]
    Expired { role: String, expires: String },
    #[error("{role} version {new} is older than the trusted version {trusted} (rollback)")]
    Rollback {
        role: String,
        trusted: u64,
        new: u64,
    },
    #[error("{role} version {found} is not the expected version {expected}")]
    BadVersion {
        role: String,
        expected: u64,
        found: u64,
    },
    #[error("{role} version {version} is the same as the trusted one")]
    EqualVersion { role: String, version: u64 },
    #[error("{what} is {found} bytes but metadata says {expected}")]
    LengthMismatch {
        what: String,
        expected: u64,
        found: u64,
    },
    #[error("{what} does not match its {algorithm} hash in metadata")]
    HashMismatch { what: String, algorithm: String },
    #[error("{what} lists no hash algorithm this client supports (sha256, sha512)")]
    NoSupportedHash { what: String },
    #[error("{role} is not listed in {listed_in} metadata")]
    MissingMeta { role: String, listed_in: String },
    #[error("snapshot drops {role}, which the trusted snapshot lists")]
    RoleRemoved { role: String },
    #[error("metadata update out of order: {0}")]
    OutOfOrder(&'static str),
    #[error("target path {path:?} is not acceptable: {reason}")]
    BadTargetPath { path: String, reason: String },
    #[error("target {0:?} is not listed by any trusted targets role")]
    TargetNotFound(String),
    #[error("key error: {0}")]
    Key(#[from] KeyError),
}
