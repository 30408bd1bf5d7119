//! Appending to the chain, and verifying it.

use serde_json::Value;

use crate::record::{GENESIS_HASH, check_fields, hash_input, sha256};
use crate::{AuditError, AuditRecord};

/// The writing end of an audit chain: knows the next `seq` and the current head.
///
/// ```
/// use rampart_audit::{AuditChain, verify};
/// use serde_json::json;
///
/// let mut chain = AuditChain::new();
/// let r0 = chain.append(1_767_225_600, "token:ops-1", "release.created", "fw-1.2.0",
///     json!({"version": "1.2.0"})).unwrap();
/// let r1 = chain.append(1_767_225_660, "device:dev-42", "verification.failed", "dev-42",
///     json!({"reason": "bad signature"})).unwrap();
/// assert_eq!(verify(&[r0, r1]).unwrap().count, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditChain {
    next_seq: u64,
    head: [u8; 32],
}

impl Default for AuditChain {
    fn default() -> Self {
        Self::new()
    }
}

impl AuditChain {
    /// An empty chain: the next record is record 0, linked to [`GENESIS_HASH`].
    pub fn new() -> Self {
        AuditChain {
            next_seq: 0,
            head: GENESIS_HASH,
        }
    }

    /// Continues a stored chain after its last record (`None`: the chain is empty).
    ///
    /// Checks that `last` follows the record rules and that its hash matches its content; it
    /// cannot check the records before it, so verify the stored chain ([`verify`]) first
    /// unless its storage is trusted.
    pub fn resume(last: Option<&AuditRecord>) -> Result<Self, AuditError> {
        let Some(last) = last else {
            return Ok(Self::new());
        };
        last.validate()?;
        let computed = last.compute_hash();
        if computed != last.hash {
            return Err(AuditError::HashMismatch {
                seq: last.seq,
                stored: last.hash,
                computed,
            });
        }
        let next_seq = last
            .seq
            .checked_add(1)
            .ok_or(AuditError::SequenceExhausted)?;
        Ok(AuditChain {
            next_seq,
            head: last.hash,
        })
    }

    /// The `seq` the next appended record gets (the number of records so far).
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The hash of the last record, [`GENESIS_HASH`] while the chain is empty.
    pub fn head(&self) -> [u8; 32] {
        self.head
    }

    /// Appends a record and returns it, for the caller to store. On error the chain is
    /// unchanged. `time` is unix seconds; see the crate documentation for the field rules.
    pub fn append(
        &mut self,
        time: i64,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
    ) -> Result<AuditRecord, AuditError> {
        let seq = self.next_seq;
        let next_seq = seq.checked_add(1).ok_or(AuditError::SequenceExhausted)?;
        let canonical = check_fields(time, actor, action, subject, &details).map_err(|e| {
            AuditError::InvalidField {
                field: e.field,
                reason: e.reason,
            }
        })?;
        let prev_hash = self.head;
        let hash = sha256(&hash_input(
            seq, time, actor, action, subject, &canonical, &prev_hash,
        ));
        self.next_seq = next_seq;
        self.head = hash;
        Ok(AuditRecord {
            seq,
            time,
            actor: actor.to_string(),
            action: action.to_string(),
            subject: subject.to_string(),
            details,
            prev_hash,
            hash,
        })
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Number of records.
    pub count: u64,
    /// Hash of the last record ([`GENESIS_HASH`] for an empty chain): publish it, with
    /// `count`, as a checkpoint for [`verify_against`].
    pub head: [u8; 32],
}

/// Verifies a whole chain, from record 0: detects edited, removed, duplicated and reordered
/// records. Removing records from the end leaves a valid shorter chain; [`verify_against`]
/// with a published head detects that.
pub fn verify(records: &[AuditRecord]) -> Result<VerifiedChain, AuditError> {
    verify_against(records, None)
}

/// Verifies a whole chain like [`verify`] and, given `expected_head = Some((head, count))`
/// published earlier (a checkpoint), checks that the chain has at least `count` records and
/// that record `count - 1` has hash `head` (for `count = 0`, that `head` is
/// [`GENESIS_HASH`]). The chain may have grown since the checkpoint.
///
/// Checks, record by record: the `seq` is the record's position; the field rules hold; the
/// stored hash matches the content (else [`AuditError::HashMismatch`]: the record was edited);
/// `prev_hash` is the previous record's hash (else [`AuditError::BrokenLink`]: the previous
/// record was rewritten with a recomputed hash, or records were removed and the rest
/// renumbered). A wrong `seq` is reported as [`AuditError::Duplicate`],
/// [`AuditError::OutOfOrder`], [`AuditError::Missing`] or [`AuditError::UnexpectedSeq`].
pub fn verify_against(
    records: &[AuditRecord],
    expected_head: Option<([u8; 32], u64)>,
) -> Result<VerifiedChain, AuditError> {
    let mut head = GENESIS_HASH;
    for (position, record) in records.iter().enumerate() {
        let expected_seq = position as u64;
        if record.seq != expected_seq {
            return Err(misplaced(records, position));
        }
        let details = record
            .check_fields()
            .map_err(|e| AuditError::InvalidRecord {
                seq: record.seq,
                field: e.field,
                reason: e.reason,
            })?;
        let computed = sha256(&hash_input(
            record.seq,
            record.time,
            &record.actor,
            &record.action,
            &record.subject,
            &details,
            &record.prev_hash,
        ));
        if computed != record.hash {
            return Err(AuditError::HashMismatch {
                seq: record.seq,
                stored: record.hash,
                computed,
            });
        }
        if record.prev_hash != head {
            return Err(AuditError::BrokenLink {
                seq: record.seq,
                expected: head,
                found: record.prev_hash,
            });
        }
        head = record.hash;
    }
    let count = records.len() as u64;
    if let Some((expected, expected_count)) = expected_head {
        if count < expected_count {
            return Err(AuditError::Truncated {
                expected_count,
                found_count: count,
            });
        }
        // `expected_count <= records.len()` here, so the index fits.
        let found = match expected_count {
            0 => GENESIS_HASH,
            n => records[(n - 1) as usize].hash,
        };
        if found != expected {
            return Err(AuditError::CheckpointMismatch {
                count: expected_count,
                expected,
                found,
            });
        }
    }
    Ok(VerifiedChain { count, head })
}

/// Explains a record whose `seq` is not its position (all records before it are in place).
fn misplaced(records: &[AuditRecord], position: usize) -> AuditError {
    let expected = position as u64;
    let found = records[position].seq;
    if found < expected {
        // Records 0..position are in place, so record `found` is at position `found`.
        let original = usize::try_from(found).ok().and_then(|i| records.get(i));
        if original == Some(&records[position]) {
            return AuditError::Duplicate {
                seq: found,
                position: expected,
            };
        }
    }
    if records[position + 1..].iter().any(|r| r.seq == expected) {
        return AuditError::OutOfOrder { expected, found };
    }
    if found > expected {
        return AuditError::Missing {
            seq: expected,
            next: found,
        };
    }
    AuditError::UnexpectedSeq {
        position: expected,
        expected,
        found,
    }
}
