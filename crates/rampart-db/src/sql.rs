//! SQL helpers shared by every concern: bounded text, JSON columns, placeholder lists.

use serde::Serialize;

use crate::error::DbError;

/// Longest stored text field, in bytes.
const MAX_FIELD: usize = 256;
/// Longest stored JSON document, in bytes.
const MAX_JSON: usize = 16 * 1024;

pub(crate) fn check_text(what: &str, v: &str) -> Result<(), DbError> {
    if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
        return Err(DbError::Invalid(format!(
            "{what} must be at most {MAX_FIELD} bytes without control characters"
        )));
    }
    Ok(())
}

pub(crate) fn json_text(what: &str, v: &impl Serialize) -> Result<String, DbError> {
    let s = serde_json::to_string(v).map_err(|e| DbError::Invalid(format!("{what}: {e}")))?;
    if s.len() > MAX_JSON {
        return Err(DbError::Invalid(format!("{what} is over {MAX_JSON} bytes")));
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
