//! The TUF client workflow (TUF 1.0 spec, section 5) as an I/O shell around
//! [`rampart_core::TrustedSet`]: it fetches with hard size limits, keeps trusted metadata on disk
//! (only after the core accepted it), walks delegations and downloads verified targets.
#![forbid(unsafe_code)]

pub mod fetch;
pub mod store;
mod updater;

pub use fetch::{FetchError, Fetcher, HttpFetcher};
pub use updater::{ClientError, Limits, Updater, UpdaterConfig};
