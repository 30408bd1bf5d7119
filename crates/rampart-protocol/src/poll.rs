//! `POST /device/v1/poll`: the device's facts in, the assignment out.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// The most slots a poll may give versions for (an A/B device has two; a few more leave room
/// for recovery partitions): more is refused, not truncated.
pub const MAX_SLOT_VERSIONS: usize = 8;
/// Longest slot name in `slot_versions`, in bytes.
pub const MAX_SLOT_NAME_LEN: usize = 32;
/// Longest version in `slot_versions`, in bytes (a release version is at most this long).
pub const MAX_SLOT_VERSION_LEN: usize = 128;

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
    /// The firmware version each slot holds, by the slot names of `slots`, e.g.
    /// `{"a": "1.0.0", "b": "2.0.0"}`: only the slots whose version the device knows (a slot
    /// being written, or never written by the agent, is left out). Absent: not said (older
    /// agents, hawkBit clients); the server then knows only the running version. At most 8
    /// slots, names of 1 to 32 bytes and versions of 1 to 128 bytes without control
    /// characters (`MAX_SLOT_VERSIONS`, `MAX_SLOT_NAME_LEN`, `MAX_SLOT_VERSION_LEN`); anything
    /// else refuses the poll (422). `null` is not a map and is refused too.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "bounded_slot_versions"
    )]
    #[cfg_attr(
        any(test, feature = "schema"),
        schemars(with = "BTreeMap<String, String>", extend("maxProperties" = MAX_SLOT_VERSIONS))
    )]
    pub slot_versions: Option<BTreeMap<String, String>>,
}

/// Reads `slot_versions` entry by entry, refusing the map at its ninth entry rather than after
/// collecting all of them, and any name or version out of bounds.
fn bounded_slot_versions<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(
                f,
                "a map of at most {MAX_SLOT_VERSIONS} slot names to firmware versions"
            )
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            use serde::de::Error;
            let mut out = BTreeMap::new();
            while let Some((name, version)) = map.next_entry::<String, String>()? {
                if out.len() == MAX_SLOT_VERSIONS {
                    return Err(A::Error::custom(format!(
                        "slot_versions gives more than {MAX_SLOT_VERSIONS} slots; report only the device's real slots"
                    )));
                }
                check_slot_version(&name, &version).map_err(A::Error::custom)?;
                if out.insert(name, version).is_some() {
                    return Err(A::Error::custom(
                        "slot_versions names a slot twice; give each slot once",
                    ));
                }
            }
            Ok(out)
        }
    }
    deserializer.deserialize_map(Bounded).map(Some)
}

/// Whether one `slot_versions` entry is within bounds (the agent checks what it sends with it
/// too, so a poll is never refused for what the agent could have left out).
pub fn check_slot_version(name: &str, version: &str) -> Result<(), String> {
    let bad =
        |s: &str, max: usize| s.is_empty() || s.len() > max || s.chars().any(char::is_control);
    if bad(name, MAX_SLOT_NAME_LEN) {
        return Err(format!(
            "slot name {:?} in slot_versions must be 1 to {MAX_SLOT_NAME_LEN} bytes without control characters",
            name.chars().take(40).collect::<String>()
        ));
    }
    if bad(version, MAX_SLOT_VERSION_LEN) {
        return Err(format!(
            "the version of slot {name:?} in slot_versions must be 1 to {MAX_SLOT_VERSION_LEN} bytes without control characters; leave out a slot whose version is not known"
        ));
    }
    Ok(())
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
