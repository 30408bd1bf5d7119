//! OLPC canonical JSON, the byte form TUF signatures are computed over.

use serde::Serialize;

/// Why a value has no canonical form.
#[derive(Debug, thiserror::Error)]
#[error("value cannot be written as canonical JSON (floats are not allowed): {0}")]
pub struct CanonicalJsonError(String);

/// Serializes `value` as canonical JSON: keys sorted, no insignificant whitespace, integers only.
pub fn to_canonical_bytes<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CanonicalJsonError> {
    let mut out = Vec::new();
    let mut ser =
        serde_json::Serializer::with_formatter(&mut out, olpc_cjson::CanonicalFormatter::new());
    value
        .serialize(&mut ser)
        .map_err(|e| CanonicalJsonError(e.to_string()))?;
    Ok(out)
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
    fn refuses_floats() {
        assert!(to_canonical_bytes(&json!({"a": 1.5})).is_err());
    }

    #[test]
    fn leaves_control_and_unicode_bytes_unescaped() {
        // OLPC canonical JSON escapes only quote and backslash.
        let v = json!({"k": "é\n"});
        assert_eq!(
            to_canonical_bytes(&v).unwrap(),
            "{\"k\":\"é\n\"}".as_bytes()
        );
    }
}
