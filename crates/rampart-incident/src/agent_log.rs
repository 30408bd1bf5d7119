//! The agent's tamper-evident log: a hash chain of records, anchored now and then by the device
//! key. Pure: the agent's shell writes the lines (and rotates files), the server and the offline
//! verifier read them back from an evidence bundle.
//!
//! A record is one JSON line `{seq, time, kind, level, message, prev, [anchor], hash}`:
//! - `seq` counts from 0 and never skips; `time` is the device's clock (Unix milliseconds);
//! - `prev` is the previous record's `hash` (64 zero hex digits before the first record);
//! - `hash` = SHA-256(prev's 32 bytes || canonical JSON of the record without `hash`).
//!
//! Rotation keeps the chain: a new file's first record links to the rotated file's last one,
//! so any run of consecutive files verifies as one chain.
//!
//! An **anchor** is a record of kind `anchor` whose `anchor.signature` is the device key's
//! signature over [`ANCHOR_SIGNING_CONTEXT`] || canonical JSON of `{device_id, seq, prev,
//! time}`: "the records before `seq` end with hash `prev`". The server keeps every anchor it
//! receives in a bundle. What that proves, and what not:
//! - a chain that verifies was not edited *after the fact without rewriting every later record*;
//!   a device holding its key can rewrite and re-hash a chain, so the chain alone proves little;
//! - an anchor the server already holds pins the history before it: a later log whose record
//!   `seq - 1` has another hash was rewritten after the server saw that anchor
//!   ([`check_known_anchors`]). A compromised device can still lie about anything after its
//!   last anchor the server saw, and about everything if it was compromised before logging it:
//!   evidence from a compromised device is its claim; anchors bound *when* it could have been
//!   rewritten.

use serde::{Deserialize, Serialize};

use crate::device_signature::sha256;
use crate::device_signature::{DeviceSignature, SignatureError};

/// What the device key signs before an anchor's canonical statement.
pub const ANCHOR_SIGNING_CONTEXT: &[u8] = b"rampart-agent-log/1 anchor\n";
/// The `prev` of the very first record.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The longest message kept; longer ones are cut (on a character boundary) before hashing.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The longest line accepted when reading a log.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// A record's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A log line.
    Entry,
    /// The chain head signed by the device key.
    Anchor,
}

/// A record's severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The head of a chain: the last record's `seq` and `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainHead {
    pub seq: u64,
    /// Hex.
    pub hash: String,
}

/// An anchor's signed part beyond the record: whose key signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorSignature {
    pub device_id: String,
    pub signature: DeviceSignature,
}

/// One record, as a line holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub seq: u64,
    /// Unix milliseconds, the device's clock.
    pub time: i64,
    pub kind: RecordKind,
    pub level: Level,
    pub message: String,
    /// The previous record's hash, hex.
    pub prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<AnchorSignature>,
    /// SHA-256(prev || canonical record without `hash`), hex.
    pub hash: String,
}

/// The record without its hash: what the hash covers.
#[derive(Serialize)]
struct HashedPart<'a> {
    seq: u64,
    time: i64,
    kind: RecordKind,
    level: Level,
    message: &'a str,
    prev: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    anchor: Option<&'a AnchorSignature>,
}

/// What an anchor's signature covers.
#[derive(Serialize)]
struct AnchorStatement<'a> {
    device_id: &'a str,
    seq: u64,
    prev: &'a str,
    time: i64,
}

impl Record {
    /// The hash this record should have.
    pub fn compute_hash(&self) -> String {
        let part = HashedPart {
            seq: self.seq,
            time: self.time,
            kind: self.kind,
            level: self.level,
            message: &self.message,
            prev: &self.prev,
            anchor: self.anchor.as_ref(),
        };
        let canonical = rampart_core::cjson::to_canonical_bytes(&part)
            .expect("a record has only strings and integers");
        let prev = hex::decode(&self.prev).unwrap_or_default();
        let mut bytes = Vec::with_capacity(prev.len() + canonical.len());
        bytes.extend_from_slice(&prev);
        bytes.extend_from_slice(&canonical);
        hex::encode(sha256(&bytes))
    }

    /// The record as one line of a log file, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).expect("a record serializes");
        line.push('\n');
        line
    }

    /// The head this record makes.
    pub fn head(&self) -> ChainHead {
        ChainHead {
            seq: self.seq,
            hash: self.hash.clone(),
        }
    }
}

/// What an anchor at `seq` after `prev` signs for `device_id` at `time`.
pub fn anchor_signing_message(device_id: &str, seq: u64, prev: &str, time: i64) -> Vec<u8> {
    let statement = AnchorStatement {
        device_id,
        seq,
        prev,
        time,
    };
    let canonical = rampart_core::cjson::to_canonical_bytes(&statement)
        .expect("an anchor statement has only strings and integers");
    let mut message = ANCHOR_SIGNING_CONTEXT.to_vec();
    message.extend_from_slice(&canonical);
    message
}

/// The writer's side of the chain: hands out the next records. The shell persists each line
/// before it calls again, and restores the chain from the last line it finds on start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    head: Option<ChainHead>,
}

impl Chain {
    /// A chain with no record yet.
    pub fn new() -> Chain {
        Chain { head: None }
    }

    /// A chain continuing after `head` (the last record the shell found).
    pub fn after(head: ChainHead) -> Chain {
        Chain { head: Some(head) }
    }

    pub fn head(&self) -> Option<&ChainHead> {
        self.head.as_ref()
    }

    fn next_position(&self) -> (u64, String) {
        match &self.head {
            Some(h) => (h.seq + 1, h.hash.clone()),
            None => (0, GENESIS_PREV.to_owned()),
        }
    }

    fn push(&mut self, mut record: Record) -> Record {
        record.hash = record.compute_hash();
        self.head = Some(record.head());
        record
    }

    /// The next entry; `message` is cut to [`MAX_MESSAGE_BYTES`].
    pub fn append(&mut self, time: i64, level: Level, message: &str) -> Record {
        let (seq, prev) = self.next_position();
        self.push(Record {
            seq,
            time,
            kind: RecordKind::Entry,
            level,
            message: cut(message, MAX_MESSAGE_BYTES).to_owned(),
            prev,
            anchor: None,
            hash: String::new(),
        })
    }

    /// The next record as an anchor of the current head, signed by `sign` (the device key over
    /// the message it is given). Nothing changes if signing fails.
    pub fn anchor<E>(
        &mut self,
        time: i64,
        device_id: &str,
        sign: impl FnOnce(&[u8]) -> Result<DeviceSignature, E>,
    ) -> Result<Record, E> {
        let (seq, prev) = self.next_position();
        let signature = sign(&anchor_signing_message(device_id, seq, &prev, time))?;
        Ok(self.push(Record {
            seq,
            time,
            kind: RecordKind::Anchor,
            level: Level::Info,
            message: format!("anchor: records before {seq} end with {prev}"),
            prev,
            anchor: Some(AnchorSignature {
                device_id: device_id.to_owned(),
                signature,
            }),
            hash: String::new(),
        }))
    }
}

impl Default for Chain {
    fn default() -> Self {
        Chain::new()
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Parses log lines (one or more files' contents, concatenated in order). Blank lines are
/// skipped; a last line without its newline is refused as torn (the shell truncates a torn tail
/// on start before appending).
pub fn parse_lines(bytes: &[u8]) -> Result<Vec<Record>, LogError> {
    let mut records = Vec::new();
    let mut rest = bytes;
    let mut line_number = 0usize;
    while !rest.is_empty() {
        line_number += 1;
        let Some(end) = rest.iter().position(|b| *b == b'\n') else {
            return Err(LogError::TornLine { line: line_number });
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.len() > MAX_LINE_BYTES {
            return Err(LogError::LineTooLong {
                line: line_number,
                max: MAX_LINE_BYTES,
            });
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let record: Record = serde_json::from_slice(line).map_err(|e| LogError::BadLine {
            line: line_number,
            reason: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Where a chain being verified must start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainStart {
    /// At seq 0 after [`GENESIS_PREV`]: the log is complete.
    Genesis,
    /// Right after a head the verifier knows (e.g. the previous bundle's).
    After(ChainHead),
    /// Wherever the first record says (older files were rotated away); the summary says so.
    Anywhere,
}

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainSummary {
    /// The first record's seq and prev (where the verified part begins).
    pub first_seq: u64,
    pub first_prev: String,
    pub head: ChainHead,
    /// The anchors in it, in order (their signatures are checked by [`verify_anchors`]).
    pub anchors: Vec<Record>,
}

/// Verifies the links of `records` from `start`: consecutive seqs, each `prev` the previous
/// `hash`, each `hash` recomputed. The error names the first record that breaks the chain.
pub fn verify_chain(records: &[Record], start: &ChainStart) -> Result<ChainSummary, ChainError> {
    let Some(first) = records.first() else {
        return Err(ChainError::Empty);
    };
    let (mut expected_seq, mut expected_prev) = match start {
        ChainStart::Genesis => (0, GENESIS_PREV.to_owned()),
        ChainStart::After(h) => (h.seq + 1, h.hash.clone()),
        ChainStart::Anywhere => (first.seq, first.prev.clone()),
    };
    let mut anchors = Vec::new();
    for record in records {
        if record.seq != expected_seq {
            return Err(ChainError::Broken {
                seq: record.seq,
                reason: format!("expected seq {expected_seq}: records are missing or reordered"),
            });
        }
        if record.prev != expected_prev {
            return Err(ChainError::Broken {
                seq: record.seq,
                reason: "its prev is not the previous record's hash: a record before it was changed, removed or inserted".into(),
            });
        }
        if record.message.len() > MAX_MESSAGE_BYTES {
            return Err(ChainError::Broken {
                seq: record.seq,
                reason: format!("its message is longer than {MAX_MESSAGE_BYTES} bytes"),
            });
        }
        let computed = record.compute_hash();
        if computed != record.hash {
            return Err(ChainError::Broken {
                seq: record.seq,
                reason: "its hash does not match its content: it was changed".into(),
            });
        }
        if (record.kind == RecordKind::Anchor) != record.anchor.is_some() {
            return Err(ChainError::Broken {
                seq: record.seq,
                reason: "an anchor record needs its signature and only an anchor has one".into(),
            });
        }
        if record.kind == RecordKind::Anchor {
            anchors.push(record.clone());
        }
        expected_seq = record.seq + 1;
        expected_prev = record.hash.clone();
    }
    let last = records.last().expect("not empty");
    Ok(ChainSummary {
        first_seq: first.seq,
        first_prev: first.prev.clone(),
        head: last.head(),
        anchors,
    })
}

/// Verifies every anchor's signature with the device key (`spki_der`) and that each was made
/// for `device_id`; the error names the first anchor that fails.
pub fn verify_anchors(
    anchors: &[Record],
    device_id: &str,
    spki_der: &[u8],
) -> Result<(), ChainError> {
    for record in anchors {
        let Some(anchor) = &record.anchor else {
            return Err(ChainError::Broken {
                seq: record.seq,
                reason: "it is not an anchor".into(),
            });
        };
        if anchor.device_id != device_id {
            return Err(ChainError::AnchorWrongDevice {
                seq: record.seq,
                expected: device_id.to_owned(),
                found: anchor.device_id.clone(),
            });
        }
        let message = anchor_signing_message(device_id, record.seq, &record.prev, record.time);
        anchor
            .signature
            .verify(spki_der, &message)
            .map_err(|source| ChainError::AnchorSignature {
                seq: record.seq,
                source,
            })?;
    }
    Ok(())
}

/// An anchor the server received before: the records before `seq` ended with `prev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownAnchor {
    pub seq: u64,
    pub prev: String,
}

/// Checks a verified chain against anchors the server already holds: where the chain covers
/// record `seq - 1` of a known anchor, that record's hash must be the anchor's `prev`; where it
/// covers the anchor's own seq, the record there must be that anchor. A mismatch means the log
/// was rewritten after the server saw the anchor.
pub fn check_known_anchors(records: &[Record], known: &[KnownAnchor]) -> Result<(), ChainError> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let at = |seq: u64| -> Option<&Record> {
        let index = usize::try_from(seq.checked_sub(first.seq)?).ok()?;
        records.get(index).filter(|r| r.seq == seq)
    };
    for anchor in known {
        let before = anchor.seq.checked_sub(1).and_then(at);
        let rewritten = match (before, at(anchor.seq)) {
            (Some(r), _) if r.hash != anchor.prev => true,
            (_, Some(r)) if r.kind != RecordKind::Anchor || r.prev != anchor.prev => true,
            _ => false,
        };
        if rewritten {
            return Err(ChainError::RewrittenBeforeAnchor { seq: anchor.seq });
        }
    }
    Ok(())
}

/// Why log lines could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("log line {line} has no newline: the write was torn; drop it and read again")]
    TornLine { line: usize },
    #[error("log line {line} is longer than {max} bytes")]
    LineTooLong { line: usize, max: usize },
    #[error("log line {line} is not a record: {reason}")]
    BadLine { line: usize, reason: String },
}

/// Why a chain did not verify; names the first failing record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the log has no record")]
    Empty,
    #[error("the chain breaks at record {seq}: {reason}")]
    Broken { seq: u64, reason: String },
    #[error("the anchor at record {seq} was made for device {found:?}, not {expected:?}")]
    AnchorWrongDevice {
        seq: u64,
        expected: String,
        found: String,
    },
    #[error("the anchor at record {seq} does not verify: {source}")]
    AnchorSignature { seq: u64, source: SignatureError },
    #[error(
        "the log was rewritten after the server received the anchor at record {seq}: the records before it no longer match"
    )]
    RewrittenBeforeAnchor { seq: u64 },
}

#[cfg(test)]
mod tests;
