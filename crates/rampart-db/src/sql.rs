//! SQL helpers shared by every concern: bounded text, JSON columns, placeholder lists.

use crate::error::DomainError;
use serde::Serialize;

use crate::error::DbError;

/// Longest stored text field, in bytes.
const MAX_FIELD: usize = 256;
/// Longest stored JSON document, in bytes.
const MAX_JSON: usize = 16 * 1024;

/// `s` with control characters replaced by spaces, cut to `max` bytes at a character boundary:
/// for texts stored from what others sent (error messages, refusal reasons), which are kept,
/// bounded, rather than refused.
pub(crate) fn bounded_text(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

pub(crate) fn check_text(what: &str, v: &str) -> Result<(), DbError> {
    if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "{what} must be at most {MAX_FIELD} bytes without control characters"
        ))));
    }
    Ok(())
}

pub(crate) fn json_text(what: &str, v: &impl Serialize) -> Result<String, DbError> {
    let s = serde_json::to_string(v)
        .map_err(|e| DbError::Domain(DomainError::Invalid(format!("{what}: {e}"))))?;
    if s.len() > MAX_JSON {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "{what} is over {MAX_JSON} bytes"
        ))));
    }
    Ok(s)
}

/// `$first, $first+1, …` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}
