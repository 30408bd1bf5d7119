//! The image repository: creating it, adding releases, publishing snapshot and timestamp,
//! rotating root and verifying the result, in the standard TUF 1.0 on-disk layout
//! (see docs/repository-layout.md).
#![forbid(unsafe_code)]

pub mod documents;
pub mod expiry;
mod repo;

pub use repo::*;
