//! Incident response on the native device API (issue 16): the signed quarantine instruction a
//! poll answer carries ([`SignedQuarantine`]) and the device's acknowledgement of its
//! containment hook (`POST /device/v1/quarantine/ack`, [`QuarantineAck`]); the server's request
//! for a forensic evidence bundle ([`EvidenceRequest`]) and its resumable, chunked upload
//! (`GET /device/v1/evidence/{id}` and `PUT /device/v1/evidence/{id}?offset=N` answer
//! [`EvidenceProgress`]; `POST /device/v1/evidence/{id}/complete` takes [`EvidenceComplete`]).
//!
//! Quarantine is enforced by the server whether or not a device cooperates (no assignments, only
//! the quarantine routes answer); the instruction is for cooperative devices, so they can run
//! their containment hook (for example a network lock-down). It is signed by the director's
//! online targets key(s) over the canonical JSON of `signed`, like director metadata, so an
//! agent verifies it with the director root it already trusts and a forged one is ignored.

use serde::{Deserialize, Serialize};

/// A quarantine instruction: the statement and the director key signatures over its canonical
/// JSON (OLPC canonical form, as TUF signs `signed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct SignedQuarantine {
    pub signed: QuarantineStatement,
    pub signatures: Vec<InstructionSignature>,
}

/// What the server states about one device's quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct QuarantineStatement {
    /// Always `"rampart-quarantine"`: a signature over one kind of document never passes for
    /// another.
    #[serde(rename = "_type")]
    pub kind: String,
    /// The device this is for (the agent refuses an instruction for anyone else).
    pub device_id: String,
    /// The incident that quarantined it (empty when an operator quarantined it directly).
    pub incident: String,
    /// `quarantined`, or `released` once an operator released the device.
    pub state: QuarantineState,
    /// Run the device's containment hook (for `quarantined`) or its release hook (`released`).
    pub containment: bool,
    /// When the server issued the statement (Unix seconds).
    pub issued: i64,
    /// After this time (Unix seconds) an agent ignores the statement; a later poll brings a
    /// fresh one.
    pub expires: i64,
}

/// The quarantine states a statement names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum QuarantineState {
    Quarantined,
    Released,
}

/// One signature over the canonical JSON of a signed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct InstructionSignature {
    /// The key id (as in the director's TUF metadata).
    pub keyid: String,
    /// The signature, hex.
    pub sig: String,
}

/// `POST /device/v1/quarantine/ack`: what the device did about a quarantine statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QuarantineAck {
    /// The statement's incident (empty for an operator's direct quarantine).
    pub incident: String,
    /// The statement's state this acknowledges.
    pub state: QuarantineState,
    /// The statement's `issued`, so the server knows which one was acted on.
    pub issued: i64,
    pub hook: HookOutcome,
    /// The hook's output or error, at most 4,096 bytes.
    #[serde(default)]
    pub detail: String,
}

/// How the containment (or release) hook went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum HookOutcome {
    /// The hook ran and exited 0.
    Succeeded,
    /// The hook ran and failed (exit status, timeout or could not start).
    Failed,
    /// The device has no hook configured.
    NotConfigured,
}

/// In a poll answer: the server wants a forensic evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct EvidenceRequest {
    /// Names the upload (`/device/v1/evidence/{id}`).
    pub id: String,
    /// The incident the evidence is for.
    pub incident: String,
    /// Hex; bound into the bundle's signed manifest (and, with a TPM, into the quote's
    /// qualifying data together with the bundle hash), so a bundle cannot be replayed for
    /// another request.
    pub nonce: String,
    /// The largest bundle the server accepts for this request, in bytes.
    pub max_bytes: u64,
    /// The largest chunk one `PUT` may carry, in bytes.
    pub chunk_bytes: u64,
}

/// The state of an evidence upload: how many bytes the server holds (resume from there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct EvidenceProgress {
    pub id: String,
    /// Bytes received and stored so far, in order from offset 0.
    pub received: u64,
    /// True once the bundle was completed and verified.
    pub complete: bool,
    /// The bundle's SHA-256 (hex) once complete: its content address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// `POST /device/v1/evidence/{id}/complete`: the whole bundle is uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EvidenceComplete {
    /// The bundle's length in bytes.
    pub length: u64,
    /// The bundle's SHA-256, hex.
    pub sha256: String,
}
