//! `POST /device/v1/poll`: the device's facts in, the assignment out.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The body of a poll: what a device says about itself. An empty body or `{}` (no facts) is
/// also a poll; the server handles that before reading this type.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct DeviceFacts {
    pub hardware_id: String,
    pub firmware_version: String,
    pub security_version: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub region: String,
    /// Slot states, e.g. `{"a": "active", "b": "bad"}`.
    #[serde(default)]
    pub slots: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Free key/values. Absent: the stored attributes are kept; present (even `{}`): they are
    /// replaced.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    #[cfg_attr(any(test, feature = "schema"), schemars(with = "Map<String, Value>"))]
    pub attributes: Option<Map<String, Value>>,
    /// The boot the device is in (Linux's `/proc/sys/kernel/random/boot_id`; absent: not
    /// said). When it differs from the boot of the device's last quote, the server asks for a
    /// quote in this poll's answer, whatever the freshness window: a reboot into a changed
    /// image is measured at once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
}

/// The server's answer to a poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct PollAnswer {
    /// The device the server took the caller for (the agent checks it is its own).
    pub device_id: String,
    /// How long the server asks the device to wait before its next poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u64>,
    /// What the device should install, or `null` when nothing is assigned (never, or
    /// cancelled).
    #[serde(default)]
    pub assignment: Option<Assignment>,
    /// The server wants a fresh TPM quote (absent: not now, or attestation is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<crate::AttestationRequest>,
    /// The device is quarantined (or was just released): a signed statement for its
    /// containment hook. Absent: not quarantined, or nothing new to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<crate::SignedQuarantine>,
    /// The server wants a forensic evidence bundle (absent: not now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<crate::EvidenceRequest>,
}

/// What a poll answer assigns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[cfg_attr(any(test, feature = "schema"), schemars(rename = "PollAssignment"))]
pub struct Assignment {
    /// The assignment id, which reports name.
    pub id: String,
    /// The release's target path in the image repository.
    pub target: String,
    /// The version of the director targets metadata that lists it for this device.
    pub director_version: u64,
    /// How the device treats it (absent or `null`: forced, from servers that predate the
    /// field; a type the reader does not know is refused).
    #[serde(rename = "type", default, deserialize_with = "kind_or_forced")]
    pub kind: UpdateKind,
    /// A forced re-image (incident response): install the release into the inactive slot,
    /// boot and health-check it, then write it to the other slot too, so no slot keeps the
    /// previous image. Bypasses soft-update and maintenance-window deferral. Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reimage: bool,
}

/// How a device treats an assignment: the poll answer's `assignment.type`, set by the operator
/// per assignment or campaign (a time-forced one is sent as soft until its time, then forced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum UpdateKind {
    /// Install and reboot as soon as it is verified.
    #[default]
    Forced,
    /// Install when the device allows it now; otherwise wait for a later poll.
    Soft,
    /// Download and verify into the inactive slot, report `downloaded`, do not activate: a
    /// later forced or soft assignment of the same release activates it without downloading it
    /// again.
    DownloadOnly,
}

impl UpdateKind {
    /// Every kind.
    pub const ALL: [UpdateKind; 3] = [
        UpdateKind::Forced,
        UpdateKind::Soft,
        UpdateKind::DownloadOnly,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Forced => "forced",
            UpdateKind::Soft => "soft",
            UpdateKind::DownloadOnly => "download_only",
        }
    }

    /// Reads the wire spelling; absent means forced (servers that predate the field). A type
    /// this agent does not know is refused rather than guessed.
    pub fn parse(s: Option<&str>) -> Result<UpdateKind, String> {
        let Some(s) = s else {
            return Ok(UpdateKind::Forced);
        };
        UpdateKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown assignment type {s:?} (expected forced, soft or download_only); not acting on it"
                )
            })
    }
}

/// The assignment's `type` as [`UpdateKind::parse`] reads it.
fn kind_or_forced<'de, D: Deserializer<'de>>(deserializer: D) -> Result<UpdateKind, D::Error> {
    let s = Option::<String>::deserialize(deserializer)?;
    UpdateKind::parse(s.as_deref()).map_err(serde::de::Error::custom)
}
