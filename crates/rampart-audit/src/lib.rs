//! Rampart's tamper-evident audit log. Pure: no I/O, no clock (the caller passes every timestamp
//! in, as unix seconds; [`unix_from_rfc3339`] converts an RFC 3339 string), no async.
//!
//! The update server appends every management action and every security-relevant device event
//! (enrolment, refused certificate, failed verification reported by a device, revocation) to a
//! hash chain: each [`AuditRecord`] carries the hash of the one before it, so
//! [`verify`] detects any edited, removed, duplicated or reordered record, and
//! [`verify_against`] also detects a removed tail when the verifier knows a head published
//! earlier (a checkpoint).
//!
//! * [`AuditChain`]: appends records ([`AuditChain::new`], [`AuditChain::resume`]).
//! * [`verify`] / [`verify_against`]: check a whole chain from its first record.
//! * [`AuditHead`]: signed heads (signed notes under an audit key) that anchor the chain
//!   outside the database; [`verify_signed_head`] and [`verify_against_heads`] detect a
//!   history rewritten with recomputed hashes, or a cut tail, and name the first bad record.
//! * [`to_jsonl`] / [`parse_jsonl`]: the storage and exchange form, one JSON object per line.
//! * [`to_csv`]: a spreadsheet export (RFC 4180).
//!
//! # Records
//!
//! | field       | type            | rules                                                        |
//! |-------------|-----------------|--------------------------------------------------------------|
//! | `seq`       | `u64`           | 0 for the first record, then contiguous                      |
//! | `time`      | `i64`           | unix seconds, within years 0000 to 9999 ([`MIN_TIME`], [`MAX_TIME`]) |
//! | `actor`     | UTF-8 string    | who acted: `token:ops-1`, `device:dev-42`, `system`; 1 to 256 bytes |
//! | `action`    | UTF-8 string    | what was done: `device.enrolled`, `certificate.refused`, ...; 1 to 256 bytes |
//! | `subject`   | UTF-8 string    | what it was done to; 0 to 256 bytes                          |
//! | `details`   | JSON object     | at most 16 KiB in canonical form, 16 levels deep, integers only |
//! | `prev_hash` | 32 bytes        | `hash` of record `seq - 1`; 32 zero bytes for record 0       |
//! | `hash`      | 32 bytes        | SHA-256 of the encoding below                                |
//!
//! `actor`, `action` and `subject` must not contain control characters (`char::is_control`),
//! line or paragraph separators (U+2028, U+2029) or invisible formatting characters that could
//! disguise a value when displayed (U+061C, U+200B to U+200F, U+202A to U+202E, U+2060,
//! U+2066 to U+2069, U+FEFF). Numbers in `details` must be integers in the `i64` or `u64`
//! range: floating-point numbers have no single agreed text form, so write fractions as strings.
//!
//! # Record hash
//!
//! `hash` is SHA-256 over the concatenation of, in this order:
//!
//! ```text
//! u64be(20) || "rampart.dev/audit/v1"       domain separator (DOMAIN)
//! u64be(seq)
//! i64be(time)                               two's complement
//! u64be(len(actor))   || actor              UTF-8 bytes
//! u64be(len(action))  || action             UTF-8 bytes
//! u64be(len(subject)) || subject            UTF-8 bytes
//! u64be(len(details)) || details            canonical JSON, below
//! prev_hash                                 32 bytes
//! ```
//!
//! where `u64be`/`i64be` are 8-byte big-endian integers and `len` counts bytes. Every
//! variable-length field is preceded by its length and every other field has a fixed size, so
//! the encoding of two different records always differs.
//!
//! The canonical JSON of `details` ([`canonical_json`]) has no whitespace; object members are
//! sorted by the UTF-8 bytes of their keys; integers are written in shortest decimal form;
//! strings escape `"` as `\"`, `\` as `\\`, U+0008 as `\b`, U+000C as `\f`, U+000A as `\n`,
//! U+000D as `\r`, U+0009 as `\t` and every other character below U+0020 as `\u00xx` (lowercase
//! hex); every other character, U+007F and non-ASCII included, is written as its UTF-8 bytes.
//!
//! # Serialized form
//!
//! One record per line ([`to_jsonl`]), members in this order, hashes as 64 lowercase hex digits
//! and `details` in canonical form:
//!
//! ```text
//! {"seq":0,"time":1767225600,"actor":"token:ops-1","action":"device.enrolled","subject":"dev-42","details":{"serial":"A1"},"prev_hash":"00…00","hash":"9f…"}
//! ```
//!
//! [`parse_jsonl`] accepts member order and whitespace freely but nothing else: unknown or
//! duplicated members (also inside `details`), uppercase or short hex, non-integer numbers and
//! records breaking the rules above are errors naming the line.
#![forbid(unsafe_code)]

mod chain;
mod csv;
mod error;
mod head;
mod jsonl;
mod record;
mod time;

#[cfg(test)]
mod tests;

pub use chain::{AuditChain, VerifiedChain, verify, verify_against};
pub use csv::{CSV_HEADER, to_csv};
pub use error::AuditError;
pub use head::{AuditHead, HEAD_HEADER, verify_against_heads, verify_signed_head};
pub use jsonl::{MAX_LINE_BYTES, parse_jsonl, to_json_line, to_jsonl};
pub use record::{
    AuditRecord, DOMAIN, GENESIS_HASH, MAX_DETAILS_BYTES, MAX_DETAILS_DEPTH, MAX_TEXT_BYTES,
    MAX_TIME, MIN_TIME, canonical_json, hash_input,
};
pub use time::{rfc3339_from_unix, unix_from_rfc3339};
