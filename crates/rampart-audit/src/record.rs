//! The record, its hash encoding, canonical JSON of `details`, and the field rules.

use std::fmt;

use ring::digest;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::AuditError;

/// Domain separator at the start of every hashed record encoding.
pub const DOMAIN: &str = "rampart.dev/audit/v1";
/// `prev_hash` of record 0, and the head of an empty chain.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Largest `actor`, `action` or `subject`, in bytes.
pub const MAX_TEXT_BYTES: usize = 256;
/// Largest canonical JSON of `details`, in bytes.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;
/// Deepest nesting of arrays and objects in `details`, the `details` object itself counting 1.
pub const MAX_DETAILS_DEPTH: usize = 16;
/// Earliest `time`: 0000-01-01T00:00:00Z.
pub const MIN_TIME: i64 = -62_167_219_200;
/// Latest `time`: 9999-12-31T23:59:59Z.
pub const MAX_TIME: i64 = 253_402_300_799;

/// One entry of the audit log. See the crate documentation for the field rules and the hash.
///
/// Serializes (serde) as the JSON object of the JSON Lines form, hashes as lowercase hex;
/// deserializes strictly (unknown or duplicated members, bad hex and non-integer numbers are
/// errors) but does not check the field rules: [`AuditRecord::validate`] and [`crate::verify`]
/// do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain: 0 for the first record, then contiguous.
    pub seq: u64,
    /// When it happened, unix seconds (given by the caller).
    pub time: i64,
    /// Who acted, e.g. `token:ops-1`, `device:dev-42`, `system`.
    pub actor: String,
    /// What was done, e.g. `device.enrolled`, `certificate.refused`, `release.created`.
    pub action: String,
    /// What it was done to (a device, release, token id); may be empty.
    pub subject: String,
    /// Further facts, a JSON object.
    pub details: Value,
    /// Hash of the previous record, [`GENESIS_HASH`] for record 0.
    pub prev_hash: [u8; 32],
    /// SHA-256 of [`AuditRecord::hash_input`].
    pub hash: [u8; 32],
}

impl AuditRecord {
    /// The bytes the record hash covers (see the crate documentation).
    pub fn hash_input(&self) -> Vec<u8> {
        hash_input(
            self.seq,
            self.time,
            &self.actor,
            &self.action,
            &self.subject,
            &canonical_json(&self.details),
            &self.prev_hash,
        )
    }

    /// The hash of the record's content, which `hash` should equal.
    pub fn compute_hash(&self) -> [u8; 32] {
        sha256(&self.hash_input())
    }

    /// Checks the field rules (sizes, characters, `details` shape, time range); not the hash.
    pub fn validate(&self) -> Result<(), AuditError> {
        self.check_fields()
            .map(|_| ())
            .map_err(|e| AuditError::InvalidRecord {
                seq: self.seq,
                field: e.field,
                reason: e.reason,
            })
    }

    pub(crate) fn check_fields(&self) -> Result<String, FieldError> {
        check_fields(
            self.time,
            &self.actor,
            &self.action,
            &self.subject,
            &self.details,
        )
    }
}

/// The hash encoding of a record's content (see the crate documentation); `details` is the
/// canonical JSON of the details object.
pub fn hash_input(
    seq: u64,
    time: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &str,
    prev_hash: &[u8; 32],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        8 * 7 + DOMAIN.len() + actor.len() + action.len() + subject.len() + details.len() + 32,
    );
    put_bytes(&mut out, DOMAIN.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&time.to_be_bytes());
    put_bytes(&mut out, actor.as_bytes());
    put_bytes(&mut out, action.as_bytes());
    put_bytes(&mut out, subject.as_bytes());
    put_bytes(&mut out, details.as_bytes());
    out.extend_from_slice(prev_hash);
    out
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// The canonical JSON of a value (see the crate documentation): no whitespace, object members
/// sorted by key bytes, minimal string escaping. Numbers that are not integers, which records
/// may not hold, are written as `serde_json` writes them.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::with_capacity(128);
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in sorted_members(map).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json_string(key, out);
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

fn sorted_members(map: &Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut members: Vec<_> = map.iter().collect();
    // `str` orders by its UTF-8 bytes.
    members.sort_unstable_by(|a, b| a.0.cmp(b.0));
    members
}

/// Writes `s` as a JSON string with the canonical escapes.
pub(crate) fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < '\u{20}' => {
                out.push_str("\\u00");
                out.push(hex_digit(c as u8 >> 4));
                out.push(hex_digit(c as u8 & 0xf));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789abcdef"[usize::from(n & 0xf)])
}

/// A broken field rule.
#[derive(Debug)]
pub(crate) struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

/// Checks the field rules and returns the canonical JSON of `details`.
pub(crate) fn check_fields(
    time: i64,
    actor: &str,
    action: &str,
    subject: &str,
    details: &Value,
) -> Result<String, FieldError> {
    if !(MIN_TIME..=MAX_TIME).contains(&time) {
        return Err(FieldError {
            field: "time",
            reason: format!(
                "{time} is outside years 0000 to 9999 ({MIN_TIME} to {MAX_TIME} unix seconds)"
            ),
        });
    }
    check_text("actor", actor, false)?;
    check_text("action", action, false)?;
    check_text("subject", subject, true)?;
    check_details(details).map_err(|reason| FieldError {
        field: "details",
        reason,
    })
}

fn check_text(field: &'static str, s: &str, may_be_empty: bool) -> Result<(), FieldError> {
    let fail = |reason: String| Err(FieldError { field, reason });
    if s.is_empty() && !may_be_empty {
        return fail("must not be empty".to_string());
    }
    if s.len() > MAX_TEXT_BYTES {
        return fail(format!(
            "is {} bytes, at most {MAX_TEXT_BYTES} allowed",
            s.len()
        ));
    }
    if let Some((at, c)) = s.char_indices().find(|&(_, c)| is_forbidden_char(c)) {
        return fail(format!(
            "contains the control or invisible character U+{:04X} at byte {at}",
            u32::from(c)
        ));
    }
    Ok(())
}

/// Control characters, line and paragraph separators, and invisible characters that change how
/// the text around them is displayed (bidirectional overrides, zero-width characters).
fn is_forbidden_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

fn check_details(details: &Value) -> Result<String, String> {
    if !details.is_object() {
        return Err(format!("must be a JSON object, found {}", kind_of(details)));
    }
    check_value(details, 1)?;
    let canonical = canonical_json(details);
    if canonical.len() > MAX_DETAILS_BYTES {
        return Err(format!(
            "is {} bytes as canonical JSON, at most {MAX_DETAILS_BYTES} allowed",
            canonical.len()
        ));
    }
    Ok(canonical)
}

fn check_value(value: &Value, depth: usize) -> Result<(), String> {
    match value {
        Value::Number(n) if !(n.is_i64() || n.is_u64()) => Err(format!(
            "number {n} is not an integer in the i64 or u64 range (write fractions as strings)"
        )),
        Value::Array(_) | Value::Object(_) if depth > MAX_DETAILS_DEPTH => Err(format!(
            "nests arrays and objects deeper than {MAX_DETAILS_DEPTH} levels"
        )),
        Value::Array(items) => items.iter().try_for_each(|v| check_value(v, depth + 1)),
        Value::Object(map) => map.values().try_for_each(|v| check_value(v, depth + 1)),
        _ => Ok(()),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads a hash written as exactly 64 lowercase hex digits.
pub(crate) fn parse_hash(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!(
            "must be 64 lowercase hex digits, found {} characters",
            s.chars().count()
        ));
    }
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("must be 64 lowercase hex digits".to_string());
    }
    let mut out = [0; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

impl Serialize for AuditRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("AuditRecord", 8)?;
        s.serialize_field("seq", &self.seq)?;
        s.serialize_field("time", &self.time)?;
        s.serialize_field("actor", &self.actor)?;
        s.serialize_field("action", &self.action)?;
        s.serialize_field("subject", &self.subject)?;
        s.serialize_field("details", &Sorted(&self.details))?;
        s.serialize_field("prev_hash", &hex::encode(self.prev_hash))?;
        s.serialize_field("hash", &hex::encode(self.hash))?;
        s.end()
    }
}

/// Serializes a JSON value with object members sorted, like the canonical form.
struct Sorted<'a>(&'a Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Object(map) => {
                let mut m = serializer.serialize_map(Some(map.len()))?;
                for (key, value) in sorted_members(map) {
                    m.serialize_entry(key, &Sorted(value))?;
                }
                m.end()
            }
            Value::Array(items) => {
                let mut s = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    s.serialize_element(&Sorted(item))?;
                }
                s.end()
            }
            other => other.serialize(serializer),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRepr {
    seq: u64,
    time: i64,
    actor: String,
    action: String,
    subject: String,
    details: StrictValue,
    prev_hash: String,
    hash: String,
}

impl<'de> Deserialize<'de> for AuditRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only a JSON object: derived structs would also accept an array of the values.
        let r = deserializer.deserialize_map(ReprVisitor)?;
        let hash_field = |name: &str, s: &str| {
            parse_hash(s).map_err(|e| de::Error::custom(format!("{name} {e}")))
        };
        Ok(AuditRecord {
            seq: r.seq,
            time: r.time,
            actor: r.actor,
            action: r.action,
            subject: r.subject,
            details: r.details.0,
            prev_hash: hash_field("prev_hash", &r.prev_hash)?,
            hash: hash_field("hash", &r.hash)?,
        })
    }
}

struct ReprVisitor;

impl<'de> Visitor<'de> for ReprVisitor {
    type Value = RecordRepr;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an audit record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, access: A) -> Result<RecordRepr, A::Error> {
        RecordRepr::deserialize(de::value::MapAccessDeserializer::new(access))
    }
}

/// A JSON value read strictly: duplicated object keys and non-integer numbers are errors.
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Err(E::custom(format!(
            "number {v} in details is not an integer in the i64 or u64 range"
        )))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(item)) = access.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key {key:?} in details"
                )));
            }
            let StrictValue(value) = access.next_value()?;
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}
