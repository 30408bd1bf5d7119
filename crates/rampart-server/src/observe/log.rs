//! Structured logs: one JSON object per line on standard error, e.g.
//! `{"ts":1795300000,"level":"error","msg":"storing a report","error":"..."}`, so log shippers
//! can index them without parsing prose. Request-level detail lives in the metrics; logs carry
//! what an operator must act on (storage errors, audit failures) and lifecycle events.

use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};

use serde_json::{Map, Value};

/// Severity of a log line, least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    /// Per-request detail (method, route, status, duration).
    Debug,
    Trace,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    /// `error`, `warn`, `info`, `debug` or `trace` (any case).
    pub fn parse(text: &str) -> Option<Level> {
        Level::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// The most verbose level written; `info` until [`set_level`] says otherwise.
static THRESHOLD: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Writes lines of `level` and every less verbose level from now on, in this whole process
/// (`rampart --log-level`, `RAMPART_LOG`).
pub fn set_level(level: Level) {
    THRESHOLD.store(level as u8, Ordering::Relaxed);
}

/// Whether a line of `level` is written (ask before building an expensive one).
pub fn enabled(level: Level) -> bool {
    level as u8 <= THRESHOLD.load(Ordering::Relaxed)
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
    if !enabled(level) {
        return;
    }
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

pub fn debug(msg: &str, fields: Value) {
    emit(Level::Debug, msg, fields);
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

    #[test]
    fn levels_parse_and_order_from_least_to_most_verbose() {
        assert_eq!(Level::parse("WARN"), Some(Level::Warn));
        assert_eq!(Level::parse(" trace "), Some(Level::Trace));
        assert_eq!(Level::parse("verbose"), None);
        assert!(Level::Error < Level::Warn && Level::Debug < Level::Trace);
        for l in Level::ALL {
            assert_eq!(Level::parse(l.as_str()), Some(l));
        }
    }
}
