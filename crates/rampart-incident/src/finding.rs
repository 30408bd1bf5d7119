//! What a detector found: the cause (which deduplicates incidents), how bad it is, the device
//! and release involved, and when the earliest evidence happened. The server's incident store
//! records a finding by opening the cause's incident or joining the open one.

use serde::{Deserialize, Serialize};

use crate::model::{Cause, Severity};

/// One detector finding, handed to the incident store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The cause: one open incident per cause, further findings of it join that incident.
    pub cause: Cause,
    pub severity: Severity,
    /// A one-line human title for the incident (used when the finding opens it).
    pub title: String,
    /// The device the finding is about; `None` for incident-wide causes (an engine stalled,
    /// an unknown release seen in the transparency log).
    pub device_id: Option<String>,
    /// The release involved, when one is.
    pub release: Option<String>,
    /// Unix seconds of the earliest evidence (a report's or event's own time), so time to
    /// detect = detected_at - first_signal_at.
    pub first_signal_at: i64,
    /// The detector's details (a JSON object).
    pub detail: serde_json::Value,
}
