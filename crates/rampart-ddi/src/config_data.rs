//! `PUT configData`: device attributes into the inventory, with hawkBit's modes and limits.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Longest key and value.
pub const MAX_ATTRIBUTE_CHARS: usize = 128;
/// Most attributes a device may have (hawkBit's default quota).
pub const MAX_ATTRIBUTES: usize = 100;

/// How `data` combines with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigMode {
    /// Set the given keys (a `null` value removes the key); keep the others.
    #[default]
    Merge,
    /// Only the given keys remain.
    Replace,
    /// Remove the given keys (values ignored).
    Remove,
}

/// The request body. Unknown fields (`id`, `time`, `status` from SWUpdate) are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigData {
    #[serde(default)]
    pub mode: Option<ConfigMode>,
    pub data: Map<String, Value>,
}

/// Why a configData request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigDataError {
    #[error("configData needs a non-empty `data` object")]
    Empty,
    #[error("attribute {key:?}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("a device may have at most {MAX_ATTRIBUTES} attributes; this would make {0}")]
    TooMany(usize),
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == ' ' || "_-!@#$%^&*()+=[]{}|;:'\",.<>/\\?".contains(c)
}

fn check(key: &str, what: &str, s: &str) -> Result<(), ConfigDataError> {
    let invalid = |reason: String| ConfigDataError::Invalid {
        key: key.chars().take(MAX_ATTRIBUTE_CHARS).collect(),
        reason,
    };
    if s.chars().count() > MAX_ATTRIBUTE_CHARS {
        return Err(invalid(format!(
            "the {what} is longer than {MAX_ATTRIBUTE_CHARS} characters"
        )));
    }
    if let Some(bad) = s.chars().find(|c| !allowed(*c)) {
        return Err(invalid(format!(
            "the {what} holds {bad:?}; allowed are ASCII letters, digits, space and common punctuation"
        )));
    }
    Ok(())
}

/// The attributes after applying `request` to `current`. Every entry is checked before
/// anything changes; the whole request fails on one bad entry.
pub fn apply_config_data(
    current: &Map<String, Value>,
    request: &ConfigData,
) -> Result<Map<String, Value>, ConfigDataError> {
    if request.data.is_empty() {
        return Err(ConfigDataError::Empty);
    }
    for (key, value) in &request.data {
        if key.is_empty() {
            return Err(ConfigDataError::Invalid {
                key: String::new(),
                reason: "the key is empty".into(),
            });
        }
        check(key, "key", key)?;
        match value {
            Value::Null => {}
            Value::String(s) => check(key, "value", s)?,
            _ => {
                return Err(ConfigDataError::Invalid {
                    key: key.clone(),
                    reason: "values must be strings (or null to remove the key)".into(),
                });
            }
        }
    }
    let mode = request.mode.unwrap_or_default();
    let mut next = match mode {
        ConfigMode::Replace => Map::new(),
        ConfigMode::Merge | ConfigMode::Remove => current.clone(),
    };
    for (key, value) in &request.data {
        match (mode, value) {
            (ConfigMode::Remove, _) | (_, Value::Null) => {
                next.remove(key);
            }
            _ => {
                next.insert(key.clone(), value.clone());
            }
        }
    }
    if next.len() > current.len() && next.len() > MAX_ATTRIBUTES {
        return Err(ConfigDataError::TooMany(next.len()));
    }
    Ok(next)
}
