//! CSV export (RFC 4180), for spreadsheets and auditors.

use crate::record::canonical_json;
use crate::{AuditRecord, rfc3339_from_unix};

/// The header row of [`to_csv`] (without its line ending).
pub const CSV_HEADER: &str = "seq,time,time_utc,actor,action,subject,details,prev_hash,hash";

/// Exports records as CSV per RFC 4180: a header row ([`CSV_HEADER`]), then one row per record,
/// every row ending in CRLF. `time_utc` is `time` as RFC 3339 (`2026-01-01T00:00:00Z`),
/// `details` its canonical JSON, hashes lowercase hex. A field containing a comma, a double
/// quote, CR or LF is enclosed in double quotes, with its double quotes doubled.
///
/// Values are written as they are. A spreadsheet may treat a cell beginning with `=`, `+`,
/// `-` or `@` as a formula; the export is data for auditors, so open it as text (or import it)
/// rather than trusting a spreadsheet's guess when subjects come from devices.
pub fn to_csv(records: &[AuditRecord]) -> String {
    let mut out = String::with_capacity(CSV_HEADER.len() + 2 + records.len() * 360);
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for r in records {
        let fields = [
            r.seq.to_string(),
            r.time.to_string(),
            rfc3339_from_unix(r.time).unwrap_or_default(),
            r.actor.clone(),
            r.action.clone(),
            r.subject.clone(),
            canonical_json(&r.details),
            hex::encode(r.prev_hash),
            hex::encode(r.hash),
        ];
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_field(field, &mut out);
        }
        out.push_str("\r\n");
    }
    out
}

/// Writes one field, quoted when RFC 4180 requires it.
fn write_field(field: &str, out: &mut String) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(s: &str) -> String {
        let mut out = String::new();
        write_field(s, &mut out);
        out
    }

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(field("plain value"), "plain value");
        assert_eq!(field(""), "");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("line1\nline2"), "\"line1\nline2\"");
        assert_eq!(field("cr\rhere"), "\"cr\rhere\"");
        assert_eq!(field("\""), "\"\"\"\"");
    }
}
