//! Structured logs: one JSON object per line on standard error, e.g.
//! `{"ts":1795300000,"level":"error","msg":"storing a report","error":"..."}`, so log shippers
//! can index them without parsing prose. Request-level detail lives in the metrics; logs carry
//! what an operator must act on (storage errors, audit failures) and lifecycle events.

use std::io::Write as _;

use serde_json::{Map, Value};

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
    Error,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// The line for `msg` with `fields` (an object's members are merged in; anything else is
/// stored under `"data"`).
pub fn line(level: Level, msg: &str, fields: Value) -> String {
    let mut out = Map::new();
    out.insert("ts".into(), Value::from(crate::helpers::unix_now()));
    out.insert("level".into(), Value::from(level.as_str()));
    out.insert("msg".into(), Value::from(msg));
    match fields {
        Value::Object(map) => {
            for (k, v) in map {
                out.entry(k).or_insert(v);
            }
        }
        Value::Null => {}
        other => {
            out.insert("data".into(), other);
        }
    }
    Value::Object(out).to_string()
}

/// Writes one log line to standard error (a failed write is ignored: logging never fails a
/// request).
pub fn emit(level: Level, msg: &str, fields: Value) {
    let mut text = line(level, msg, fields);
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

pub fn info(msg: &str, fields: Value) {
    emit(Level::Info, msg, fields);
}

pub fn warn(msg: &str, fields: Value) {
    emit(Level::Warn, msg, fields);
}

pub fn error(msg: &str, fields: Value) {
    emit(Level::Error, msg, fields);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_single_json_objects_with_fixed_keys_first() {
        let l = line(
            Level::Error,
            "storing a report",
            serde_json::json!({"error": "disk full\nreally", "msg": "cannot override"}),
        );
        assert!(!l.contains('\n'));
        let v: Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "storing a report");
        assert_eq!(v["error"], "disk full\nreally");
        assert!(v["ts"].as_i64().unwrap() > 1_700_000_000);
        assert!(l.starts_with("{\"ts\":"));
    }
}
