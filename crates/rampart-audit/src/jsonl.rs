//! JSON Lines: the storage and exchange form of a chain, one record per line.

use crate::record::{canonical_json, write_json_string};
use crate::{AuditError, AuditRecord};

/// Longest line [`parse_jsonl`] reads, in bytes (line ending excluded). The longest record
/// [`to_jsonl`] writes is about 18 KiB.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Writes records as JSON Lines: each record on its own line ending in `\n`.
pub fn to_jsonl(records: &[AuditRecord]) -> String {
    let mut out = String::with_capacity(records.len() * 320);
    for record in records {
        write_line(record, &mut out);
        out.push('\n');
    }
    out
}

/// One record as a single line of JSON, without the line ending: members in the documented
/// order, `details` in canonical form, hashes as lowercase hex.
pub fn to_json_line(record: &AuditRecord) -> String {
    let mut out = String::with_capacity(320);
    write_line(record, &mut out);
    out
}

fn write_line(r: &AuditRecord, out: &mut String) {
    out.push_str("{\"seq\":");
    out.push_str(&r.seq.to_string());
    out.push_str(",\"time\":");
    out.push_str(&r.time.to_string());
    out.push_str(",\"actor\":");
    write_json_string(&r.actor, out);
    out.push_str(",\"action\":");
    write_json_string(&r.action, out);
    out.push_str(",\"subject\":");
    write_json_string(&r.subject, out);
    out.push_str(",\"details\":");
    out.push_str(&canonical_json(&r.details));
    out.push_str(",\"prev_hash\":\"");
    out.push_str(&hex::encode(r.prev_hash));
    out.push_str("\",\"hash\":\"");
    out.push_str(&hex::encode(r.hash));
    out.push_str("\"}");
}

/// Reads JSON Lines written by [`to_jsonl`]: one record per line, lines ending in `\n` (or
/// `\r\n`), the last line ending optional; empty input is an empty chain.
///
/// Strict: a blank line, a line over [`MAX_LINE_BYTES`], invalid UTF-8 or JSON, a missing,
/// unknown or duplicated member (also duplicated keys inside `details`), a hash that is not 64
/// lowercase hex digits, a non-integer number or a record breaking the field rules is an error
/// naming the 1-based line. Does not verify the chain: call [`crate::verify`] on the result.
pub fn parse_jsonl(input: impl AsRef<[u8]>) -> Result<Vec<AuditRecord>, AuditError> {
    let input = input.as_ref();
    let mut records = Vec::new();
    if input.is_empty() {
        return Ok(records);
    }
    let body = input.strip_suffix(b"\n").unwrap_or(input);
    for (index, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let fail = |reason: String| AuditError::Parse { line, reason };
        let text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if text.len() > MAX_LINE_BYTES {
            return Err(fail(format!(
                "line is {} bytes, at most {MAX_LINE_BYTES} allowed",
                text.len()
            )));
        }
        if text.iter().all(u8::is_ascii_whitespace) {
            return Err(fail("blank line".to_string()));
        }
        let text = std::str::from_utf8(text).map_err(|e| fail(format!("not valid UTF-8: {e}")))?;
        let record: AuditRecord = serde_json::from_str(text).map_err(|e| fail(json_reason(&e)))?;
        record.check_fields().map_err(|e| {
            fail(format!(
                "record {}: invalid {}: {}",
                record.seq, e.field, e.reason
            ))
        })?;
        records.push(record);
    }
    Ok(records)
}

/// serde_json's message with its position given as a column (the line is always 1 here).
fn json_reason(e: &serde_json::Error) -> String {
    let message = e.to_string();
    let message = match message.rfind(" at line ") {
        Some(at) => &message[..at],
        None => &message,
    };
    if e.column() > 0 {
        format!("{message} (column {})", e.column())
    } else {
        message.to_string()
    }
}
