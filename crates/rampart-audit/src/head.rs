//! Signed audit heads: anchors that make a rewritten or truncated history detectable.
//!
//! The chain alone is unkeyed: whoever can write the database can edit a record and recompute
//! every hash after it, or cut the tail, and [`crate::verify`] still passes. A signed head
//! states, under a key the database does not hold, how many records the chain had and the hash
//! of the last one at a moment in time. Kept outside the database (off-box copies, the
//! transparency log), it pins that prefix of the history: [`verify_against_heads`] then names
//! the first record that no longer matches or is missing.
//!
//! A head is a [C2SP signed note](https://c2sp.org/signed-note) (the format of the
//! transparency log's entries and checkpoints) whose text is exactly:
//!
//! ```text
//! rampart.dev/audit-head/v1
//! size <records covered, decimal, at least 1>
//! hash <hash of record size-1, 64 lowercase hex digits>
//! time <unix seconds when it was signed, decimal>
//! ```
//!
//! signed with an Ed25519 note key (`rampart log keygen`). Because it is a plain signed note,
//! the same bytes can be appended to the transparency log as an entry, so its witnesses vouch
//! that the head was published.

use rampart_log::note::{Note, NoteSigner, Verifier};

use crate::chain::{VerifiedChain, verify};
use crate::record::MAX_TIME;
use crate::{AuditError, AuditRecord};

/// First line of an audit head's text; distinguishes it from every other signed note (release
/// statements, checkpoints) that the same key or log might carry.
pub const HEAD_HEADER: &str = "rampart.dev/audit-head/v1";

/// The state of the chain that a head vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditHead {
    /// Number of records covered (records 0 to `size - 1`); at least 1.
    pub size: u64,
    /// Hash of record `size - 1`.
    pub hash: [u8; 32],
    /// When the head was signed, unix seconds.
    pub time: i64,
}

impl AuditHead {
    /// The head of a verified chain, signed at `time` (`None` for an empty chain: there is
    /// nothing to anchor).
    pub fn of(chain: &VerifiedChain, time: i64) -> Option<AuditHead> {
        (chain.count > 0).then_some(AuditHead {
            size: chain.count,
            hash: chain.head,
            time,
        })
    }

    /// The note text described in the module documentation.
    pub fn to_text(&self) -> String {
        format!(
            "{HEAD_HEADER}\nsize {}\nhash {}\ntime {}\n",
            self.size,
            hex::encode(self.hash),
            self.time
        )
    }

    /// Parses a head's text strictly: only what [`AuditHead::to_text`] writes is accepted.
    pub fn parse_text(text: &str) -> Result<AuditHead, AuditError> {
        let bad = |reason: String| AuditError::HeadFormat { reason };
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end with a newline".into()))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [header, size, hash, time] = lines[..] else {
            return Err(bad(format!(
                "expected 4 lines ({HEAD_HEADER}, size, hash, time), found {}",
                lines.len()
            )));
        };
        if header != HEAD_HEADER {
            return Err(bad(format!(
                "the first line is {header:?}, not {HEAD_HEADER:?}: not an audit head"
            )));
        }
        let size_text = field(size, "size")?;
        let size = decimal(size_text)
            .and_then(|v| u64::try_from(v).ok())
            .filter(|&v| v >= 1)
            .ok_or_else(|| bad(format!("size {size_text:?} is not a whole number from 1")))?;
        let hash_text = field(hash, "hash")?;
        let hash = parse_hash(hash_text)
            .ok_or_else(|| bad(format!("hash {hash_text:?} is not 64 lowercase hex digits")))?;
        let time_text = field(time, "time")?;
        let time = decimal(time_text)
            .and_then(|v| i64::try_from(v).ok())
            .filter(|&v| v <= MAX_TIME)
            .ok_or_else(|| bad(format!("time {time_text:?} is not unix seconds")))?;
        Ok(AuditHead { size, hash, time })
    }

    /// Signs the head: the signed note's bytes, ready to store, publish or log.
    pub fn sign(&self, key: &NoteSigner) -> Result<Vec<u8>, AuditError> {
        let mut note = Note::new(self.to_text()).map_err(|e| AuditError::HeadFormat {
            reason: e.to_string(),
        })?;
        key.sign_note(&mut note)
            .map_err(|e| AuditError::HeadSignature {
                reason: e.to_string(),
            })?;
        Ok(note.to_bytes())
    }
}

/// The value of a `name value` line.
fn field<'a>(line: &'a str, name: &str) -> Result<&'a str, AuditError> {
    line.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or_else(|| AuditError::HeadFormat {
            reason: format!("expected a line \"{name} ...\", found {line:?}"),
        })
}

/// Unsigned decimal without sign, leading zeros or spaces (the text has one spelling).
fn decimal(text: &str) -> Option<u128> {
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let lowercase = text
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !lowercase {
        return None;
    }
    hex::decode(text).ok()?.try_into().ok()
}

/// Checks a signed head (the note's bytes) against the anchoring key and returns the head it
/// vouches for. A note without a valid signature by `key`, or whose text is not an audit head,
/// is refused.
pub fn verify_signed_head(note: &[u8], key: &Verifier) -> Result<AuditHead, AuditError> {
    let parsed = Note::parse(note).map_err(|e| AuditError::HeadSignature {
        reason: format!("not a signed note: {e}"),
    })?;
    parsed
        .verify(std::slice::from_ref(key))
        .map_err(|e| AuditError::HeadSignature {
            reason: format!("{e} (the head must be signed by the audit key {key})"),
        })?;
    AuditHead::parse_text(&parsed.text)
}

/// Verifies a whole chain like [`crate::verify`] and then against every head in `heads`
/// (signatures already checked with [`verify_signed_head`]): each head's `size` records must be
/// present and record `size - 1` must have the head's hash.
///
/// Heads are checked from the smallest, so the error names the first place the history
/// departs from what was anchored: [`AuditError::AnchorTruncated`] when records a head covers
/// are missing, [`AuditError::AnchorMismatch`] when a covered record no longer has the
/// anchored hash (the history was rewritten at or before it, after the last head that still
/// matches).
pub fn verify_against_heads(
    records: &[AuditRecord],
    heads: &[AuditHead],
) -> Result<VerifiedChain, AuditError> {
    let verified = verify(records)?;
    let mut sorted: Vec<&AuditHead> = heads.iter().collect();
    sorted.sort_by_key(|h| h.size);
    let mut last_matching: Option<&AuditHead> = None;
    for head in sorted {
        if head.size > verified.count {
            return Err(AuditError::AnchorTruncated {
                anchored: head.size,
                found: verified.count,
                signed_at: head.time,
            });
        }
        // `1 <= head.size <= records.len()` here, so the index fits.
        let record = &records[(head.size - 1) as usize];
        if record.hash != head.hash {
            return Err(AuditError::AnchorMismatch {
                seq: record.seq,
                count: verified.count,
                anchored: head.size,
                signed_at: head.time,
                intact_before: last_matching.map_or(0, |h| h.size),
            });
        }
        last_matching = Some(head);
    }
    Ok(verified)
}
