//! The native device API (`/device/v1/...`, JSON over mutual TLS) as wire types: what a device
//! sends when it polls ([`DeviceFacts`]), what the server answers ([`PollAnswer`] with its
//! [`Assignment`] and [`UpdateKind`]), the reports a device sends ([`ReportRequest`] with its
//! [`ReportStatus`], and the [`Reason`] codes agent reports carry in `details.reason`), the
//! attribute updates ([`AttributesUpdate`]), quarantine and forensic evidence (`incident`),
//! the server's answers to those, and the error
//! document ([`ErrorDocument`]). The update server, the device agent and the fleet simulator
//! read and write these types; the OpenAPI document's device schemas are generated from them
//! (feature `schema`, `examples/device_api_schemas.rs`; the crate's tests fail when the document
//! and the types disagree).
//!
//! Pure: serde only, no I/O. Size limits stay in the shells (the server's body limits, the
//! agent's answer limit).
//!
//! # Strict where the server reads, tolerant where the agent reads
//!
//! - **The server parses untrusted device input strictly**: a report or attribute update with
//!   an unknown field, a status outside [`ReportStatus`], a `progress` of `null` or a value of
//!   the wrong type is refused (422), so nothing a device sends is silently dropped or guessed.
//!   Device facts are the one exception, on purpose: unknown keys in a poll body are ignored,
//!   so that a newer agent that reports a new fact can still poll an older server (a poll the
//!   server refused would leave the device unable to update at all).
//! - **The agent parses the server's answers tolerantly**: unknown fields are ignored (a newer
//!   server may add some), `poll_interval_secs` and the assignment's `type` may be absent (an
//!   older server), but a `type` this agent does not know is refused rather than guessed.
//!
//! Every type serializes exactly as the server and the agent wrote these documents by hand
//! before (field names, order, which optional fields are left out, `null`s).

#![forbid(unsafe_code)]

mod attestation;
mod attributes;
mod error;
mod incident;
mod poll;
mod report;
#[cfg(any(test, feature = "schema"))]
pub mod schema;

pub use attestation::{
    AttestationAnswer, AttestationOutcome, AttestationRequest, EnrolAnswer, EnrolChallenge,
    EnrolProof, EnrolRequest, QuoteSubmission,
};
pub use attributes::{AttributesAnswer, AttributesMode, AttributesUpdate};
pub use error::ErrorDocument;
pub use incident::{
    EvidenceComplete, EvidenceProgress, EvidenceRequest, HookOutcome, InstructionSignature,
    QuarantineAck, QuarantineState, QuarantineStatement, SignedQuarantine,
};
pub use poll::{
    Assignment, DeviceFacts, MAX_SLOT_NAME_LEN, MAX_SLOT_VERSION_LEN, MAX_SLOT_VERSIONS,
    PollAnswer, UpdateKind, check_slot_version,
};
pub use report::{Reason, ReportAnswer, ReportRequest, ReportStatus, UnknownStatus};

/// For an optional field that may be absent but not `null`: absent gives `None` (through
/// `#[serde(default)]`), `null` is refused as a value of the wrong type.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests;
