//! The device API's error document.

use serde::{Deserialize, Serialize};

/// Every error answer of the device (and management) API: `{"error": "<code>", "detail":
/// "<explanation>"}`. `error` is a stable machine-readable code, `detail` explains to a person
/// what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[cfg_attr(any(test, feature = "schema"), schemars(rename = "Error"))]
pub struct ErrorDocument {
    pub error: String,
    /// Read as empty when absent.
    #[serde(default)]
    pub detail: String,
}
