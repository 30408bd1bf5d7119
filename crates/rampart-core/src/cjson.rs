//! OLPC canonical JSON as securesystemslib writes it, the byte form TUF signatures cover:
//! object keys sorted by their UTF-8 bytes, no insignificant whitespace, only `"` and `\`
//! escaped, integers only. Hand-written rather than taken from `olpc-cjson`, which also applies
//! Unicode NFC normalisation (so its bytes differ from python-tuf's for non-NFC strings) and
//! cost ten times more: see docs/decisions/0002-canonical-json.md.

use serde::Serialize;
use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error)]
#[error("value cannot be written as canonical JSON: {0}")]
pub struct CanonicalJsonError(String);

/// Serializes `value` as canonical JSON.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalJsonError> {
    let v = serde_json::to_value(value).map_err(|e| CanonicalJsonError(e.to_string()))?;
    let mut out = Vec::with_capacity(256);
    write_value(&v, &mut out, false)?;
    Ok(out)
}

/// Serializes `value` like canonical JSON but as valid JSON: control characters in strings are
/// escaped. For values without control characters (all of Rampart's except PEM keys) the bytes
/// are exactly canonical, so readers can verify signatures over them as received.
pub fn to_sorted_json_bytes<T: Serialize + ?Sized>(
    value: &T,
) -> Result<Vec<u8>, CanonicalJsonError> {
    let v = serde_json::to_value(value).map_err(|e| CanonicalJsonError(e.to_string()))?;
    let mut out = Vec::with_capacity(256);
    write_value(&v, &mut out, true)?;
    Ok(out)
}

/// Canonical bytes of an already parsed JSON value (no conversion needed).
pub fn value_to_canonical_bytes(v: &Value) -> Result<Vec<u8>, CanonicalJsonError> {
    let mut out = Vec::with_capacity(256);
    write_value(v, &mut out, false)?;
    Ok(out)
}

/// Tells whether `json` (already known to be valid JSON) is exactly in canonical form: no
/// whitespace, object keys in strictly increasing byte order, only `\"` and `\\` escapes, plain
/// integers. A `false` for unusual but canonical input (keys with escapes, huge integers) only
/// costs a re-serialization.
pub fn is_canonical(json: &[u8]) -> bool {
    let mut s = Scanner { b: json, i: 0 };
    s.value(0) && s.i == json.len()
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> bool {
        if depth > 128 {
            return false;
        }
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => self.string().is_some(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn number(&mut self) -> bool {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let digits = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = self.i - digits;
        // No leading zeros, no "-0", small enough to be an i64/u64 either way.
        let ok = (1..=18).contains(&n) && (self.b[digits] != b'0' || (n == 1 && start == digits));
        ok && !matches!(self.peek(), Some(b'.' | b'e' | b'E'))
    }

    /// Scans a string, returning its raw content if it has no escapes other than `\"` and `\\`.
    fn string(&mut self) -> Option<(usize, usize, bool)> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => {
                    if !matches!(self.b.get(self.i + 1), Some(b'"' | b'\\')) {
                        return None;
                    }
                    escaped = true;
                    self.i += 2;
                }
                _ => self.i += 1,
            }
        }
        let end = self.i;
        self.i += 1;
        Some((start, end, escaped))
    }

    fn array(&mut self, depth: usize) -> bool {
        self.i += 1;
        if self.peek() == Some(b']') {
            self.i += 1;
            return true;
        }
        loop {
            if !self.value(depth + 1) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }

    fn object(&mut self, depth: usize) -> bool {
        self.i += 1;
        if self.peek() == Some(b'}') {
            self.i += 1;
            return true;
        }
        let mut prev: Option<(usize, usize)> = None;
        loop {
            if self.peek() != Some(b'"') {
                return false;
            }
            // Keys with escapes would need unescaping to compare; let the slow path handle them.
            let Some((ks, ke, false)) = self.string() else {
                return false;
            };
            if let Some((ps, pe)) = prev
                && self.b[ps..pe] >= self.b[ks..ke]
            {
                return false;
            }
            prev = Some((ks, ke));
            if self.peek() != Some(b':') {
                return false;
            }
            self.i += 1;
            if !self.value(depth + 1) {
                return false;
            }
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return true;
                }
                _ => return false,
            }
        }
    }
}

fn write_value(
    v: &Value,
    out: &mut Vec<u8>,
    escape_controls: bool,
) -> Result<(), CanonicalJsonError> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalJsonError(format!(
                    "{n} is not an integer; floats are not allowed"
                )));
            }
        }
        Value::String(s) => write_string(s, out, escape_controls),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, escape_controls)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (k, val)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(k, out, escape_controls);
                out.push(b':');
                write_value(val, out, escape_controls)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>, escape_controls: bool) {
    out.push(b'"');
    for &b in s.as_bytes() {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        } else if escape_controls && b < 0x20 {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(format!("\\u{b:04x}").as_bytes()),
            }
            continue;
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_drops_whitespace() {
        let v = json!({"b": 1, "a": [true, null, "x\"y\\z"], "c": {"z": 0, "y": -3}});
        assert_eq!(
            to_canonical_bytes(&v).unwrap(),
            br#"{"a":[true,null,"x\"y\\z"],"b":1,"c":{"y":-3,"z":0}}"#
        );
    }

    #[test]
    fn recognises_exactly_the_canonical_form() {
        for v in [
            json!({"b": 1, "a": [true, null, "x\"y\\z"], "c": {"z": 0, "y": -3}}),
            json!({"signed": {"targets": {"a/b": {"length": 0}}, "version": 18446744073709551u64}, "x": []}),
            json!([]),
            json!({}),
        ] {
            let canon = to_canonical_bytes(&v).unwrap();
            assert!(is_canonical(&canon), "{}", String::from_utf8_lossy(&canon));
        }
        for text in [
            r#"{"b":1,"a":2}"#,
            r#"{"a": 1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":1e3}"#,
            r#"{"a":-0}"#,
            r#"{"a":01}"#,
            r#"{"a":"\n"}"#,
            r#"{"a":1,"a":2}"#,
            "[1, 2]",
            " {}",
        ] {
            assert!(!is_canonical(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn sorted_json_escapes_controls_and_round_trips() {
        let v = json!({"pem": "-----BEGIN\nKEY\u{1}", "a": 1});
        let bytes = to_sorted_json_bytes(&v).unwrap();
        assert_eq!(bytes, br#"{"a":1,"pem":"-----BEGIN\nKEY\u0001"}"#);
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, v);
        assert!(!is_canonical(&bytes), "escaped controls are not canonical");
        let plain = json!({"a": [1, {"b": "c"}]});
        assert_eq!(
            to_sorted_json_bytes(&plain).unwrap(),
            to_canonical_bytes(&plain).unwrap()
        );
    }

    #[test]
    fn refuses_floats() {
        assert!(to_canonical_bytes(&json!({"a": 1.5})).is_err());
    }

    #[test]
    fn leaves_control_and_unicode_bytes_unescaped_and_unnormalised() {
        // Only quote and backslash are escaped; "e" + combining acute stays decomposed, as
        // securesystemslib leaves it.
        let v = json!({"k": "e\u{301}\n", "\u{e9}": 1, "z": 2});
        assert_eq!(
            to_canonical_bytes(&v).unwrap(),
            "{\"k\":\"e\u{301}\n\",\"z\":2,\"\u{e9}\":1}".as_bytes()
        );
    }

    #[test]
    fn matches_python_json_dumps_sort_keys_compact() {
        // json.dumps({"keyval": {"public": "ab"}, "keytype": "ed25519", "scheme": "ed25519", "n": [1, -2, 18446744073709551615]}, sort_keys=True, separators=(",", ":"))
        let v = json!({"keyval": {"public": "ab"}, "keytype": "ed25519", "scheme": "ed25519", "n": [1, -2, 18446744073709551615u64]});
        assert_eq!(
            to_canonical_bytes(&v).unwrap(),
            br#"{"keytype":"ed25519","keyval":{"public":"ab"},"n":[1,-2,18446744073709551615],"scheme":"ed25519"}"#
        );
    }
}
