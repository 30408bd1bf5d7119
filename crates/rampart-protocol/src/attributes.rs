//! `PUT /device/v1/attributes`: the device's free key/values.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// An attribute update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AttributesUpdate {
    pub mode: AttributesMode,
    pub data: Map<String, Value>,
}

/// How an update's `data` changes the stored attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum AttributesMode {
    /// Sets the given top-level keys; a `null` value removes the key.
    Merge,
    /// `data` (without its `null` values) becomes the whole attribute set.
    Replace,
}

/// The server's answer to an attribute update: the attributes now stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct AttributesAnswer {
    pub device_id: String,
    pub attributes: Map<String, Value>,
}
