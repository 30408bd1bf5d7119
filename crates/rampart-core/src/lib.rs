//! Rampart's pure trust core: canonical JSON, key schemes, TUF metadata, verification, the TUF
//! client state machine, delegation rules and Rampart's release fields.
//!
//! Nothing here does I/O, reads a clock or spawns work: callers pass bytes and the time in.
#![forbid(unsafe_code)]

pub mod cjson;
pub mod delegation;
pub mod director;
pub mod error;
pub mod keys;
pub mod metadata;
pub mod release;
pub mod trusted;
pub mod verify;

pub use error::TufError;
pub use keys::{Key, KeyError, Scheme};
pub use trusted::TrustedSet;
