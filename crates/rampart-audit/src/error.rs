//! Errors of the audit log. Verification errors name the record (`seq`) where the chain breaks
//! and say what kind of tampering the break points to.

/// Why a record could not be appended, parsed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A value passed to [`crate::AuditChain::append`] breaks the record rules.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: &'static str, reason: String },

    /// A stored record breaks the record rules (it was not written by [`crate::AuditChain`]).
    #[error("record {seq}: invalid {field}: {reason}")]
    InvalidRecord {
        seq: u64,
        field: &'static str,
        reason: String,
    },

    /// The sequence numbers are used up (the last record has seq `u64::MAX - 1`).
    #[error("the audit chain cannot grow: sequence numbers are exhausted")]
    SequenceExhausted,

    /// The record's stored hash is not the hash of its content: the record was edited.
    #[error(
        "record {seq} was edited: its content hashes to {}, but its stored hash is {}",
        hex::encode(.computed),
        hex::encode(.stored)
    )]
    HashMismatch {
        seq: u64,
        stored: [u8; 32],
        computed: [u8; 32],
    },

    /// The record's `prev_hash` is not the hash of the record before it (for record 0, not the
    /// genesis value): the record before it was rewritten (hash recomputed), or records between
    /// them were removed and the rest renumbered.
    #[error(
        "record {seq}: prev_hash {} is not {}, the hash of {}: the record before it was rewritten or records were removed",
        hex::encode(.found),
        hex::encode(.expected),
        if *.seq == 0 { "the genesis (32 zero bytes)".to_string() } else { format!("record {}", .seq - 1) }
    )]
    BrokenLink {
        seq: u64,
        expected: [u8; 32],
        found: [u8; 32],
    },

    /// Records are missing: record `seq` is absent, the next record present is `next`.
    #[error("record {seq} is missing (removed): the next record present is {next}")]
    Missing { seq: u64, next: u64 },

    /// Records are out of order: `found` stands where `expected` belongs, and `expected`
    /// appears later.
    #[error("records reordered: record {found} stands where record {expected} belongs")]
    OutOfOrder { expected: u64, found: u64 },

    /// An exact copy of record `seq` appears again at 0-based `position`.
    #[error("record {seq} is duplicated: a copy appears at position {position}")]
    Duplicate { seq: u64, position: u64 },

    /// The record at 0-based `position` is numbered `found`, which fits nowhere: `expected`
    /// belongs there.
    #[error("position {position} holds a record numbered {found}; record {expected} belongs there")]
    UnexpectedSeq {
        position: u64,
        expected: u64,
        found: u64,
    },

    /// The chain is shorter than the published checkpoint: its last records were removed.
    #[error(
        "chain truncated: {found_count} records, but a head over {expected_count} records was published; records {found_count} onwards were removed"
    )]
    Truncated {
        expected_count: u64,
        found_count: u64,
    },

    /// The chain's head after `count` records is not the published one: history was rewritten.
    #[error(
        "history rewritten: the head after {count} records is {}, but the published head is {}",
        hex::encode(.found),
        hex::encode(.expected)
    )]
    CheckpointMismatch {
        count: u64,
        expected: [u8; 32],
        found: [u8; 32],
    },

    /// Records that a signed audit head covers are missing: the history was cut after the head
    /// was signed.
    #[error(
        "history truncated: the anchored head (signed at {}) covers {anchored} records, the log has {found}; records {found} to {} are missing",
        crate::rfc3339_from_unix(*.signed_at).unwrap_or_else(|| .signed_at.to_string()),
        .anchored - 1
    )]
    AnchorTruncated {
        anchored: u64,
        found: u64,
        signed_at: i64,
    },

    /// Record `seq` (the last one a signed head covers) no longer has the anchored hash: a
    /// record from `intact_before` to `seq` was rewritten (hashes recomputed) after the head
    /// was signed.
    #[error(
        "record {seq} of {count} does not match the anchored head (signed at {}, covering {anchored} records): history was rewritten in records {intact_before} to {seq}{}",
        crate::rfc3339_from_unix(*.signed_at).unwrap_or_else(|| .signed_at.to_string()),
        if *.intact_before > 0 { format!(" (records 0 to {} match an earlier anchored head)", .intact_before - 1) } else { String::new() }
    )]
    AnchorMismatch {
        seq: u64,
        count: u64,
        anchored: u64,
        signed_at: i64,
        intact_before: u64,
    },

    /// A signed audit head's text is not an audit head.
    #[error("not a valid audit head: {reason}")]
    HeadFormat { reason: String },

    /// A signed audit head is not validly signed by the expected audit key (forged, damaged or
    /// signed by another key).
    #[error("audit head signature refused: {reason}")]
    HeadSignature { reason: String },

    /// A line of JSON Lines input is not a valid record.
    #[error("line {line}: {reason}")]
    Parse { line: usize, reason: String },

    /// An RFC 3339 timestamp could not be read.
    #[error("invalid RFC 3339 timestamp {input:?}: {reason}")]
    Timestamp { input: String, reason: String },
}
