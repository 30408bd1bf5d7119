//! `POST /device/v1/reports`: status, progress and result reports.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A report: what a device says about an assignment. Sent again under the same `id` until the
/// server stored it (the server answers a resent one idempotently).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// Unique per device (e.g. a random UUID): 1 to 128 of A-Z a-z 0-9 . _ : -
    #[cfg_attr(
        any(test, feature = "schema"),
        schemars(regex(pattern = r"^[A-Za-z0-9._:-]{1,128}$"))
    )]
    pub id: String,
    pub status: ReportStatus,
    /// A JSON object; agent reports carry the reason code (see `Reason`) in `reason`, and the
    /// target and version. Absent or `null`: `{}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        any(test, feature = "schema"),
        schemars(with = "serde_json::Map<String, Value>")
    )]
    pub details: Option<Value>,
    /// The assignment id the report is about (from the poll answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// Percent done (0-100), for `downloading` and `installing`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::present"
    )]
    #[cfg_attr(
        any(test, feature = "schema"),
        schemars(with = "u64", range(max = 100))
    )]
    pub progress: Option<u64>,
}

/// The server's answer to a stored report: 201 when stored now, 200 (`duplicate`) when a
/// report with this id and the same content was stored before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct ReportAnswer {
    pub id: String,
    /// When the report was stored (Unix seconds).
    pub created: i64,
    pub duplicate: bool,
}

/// What a device reports about an assignment. The server refuses any other status (422),
/// which also keeps its metric labels bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReportStatus {
    Downloading,
    Downloaded,
    Installing,
    Installed,
    Rebooting,
    Failed,
    RolledBack,
    Cancelled,
    /// The device refused the update because verification failed (signature, hash, director
    /// and image repository disagreeing, ...). Recorded in the server's audit log.
    VerificationFailed,
}

impl ReportStatus {
    /// Every status, in declaration order (`status as usize` indexes it).
    pub const ALL: [ReportStatus; 9] = [
        ReportStatus::Downloading,
        ReportStatus::Downloaded,
        ReportStatus::Installing,
        ReportStatus::Installed,
        ReportStatus::Rebooting,
        ReportStatus::Failed,
        ReportStatus::RolledBack,
        ReportStatus::Cancelled,
        ReportStatus::VerificationFailed,
    ];

    /// The wire (and database) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Downloading => "downloading",
            ReportStatus::Downloaded => "downloaded",
            ReportStatus::Installing => "installing",
            ReportStatus::Installed => "installed",
            ReportStatus::Rebooting => "rebooting",
            ReportStatus::Failed => "failed",
            ReportStatus::RolledBack => "rolled_back",
            ReportStatus::Cancelled => "cancelled",
            ReportStatus::VerificationFailed => "verification_failed",
        }
    }
}

impl std::fmt::Display for ReportStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// A status equals its wire spelling, so logs, stored rows and tests compare with text.
impl PartialEq<&str> for ReportStatus {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A report status that is not one of [`ReportStatus`]'s spellings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl std::fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown report status {:?}", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

impl std::str::FromStr for ReportStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ReportStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

/// Why an update ended the way it did: the reason code agent reports carry in
/// `details.reason` (and the agent keeps in its state file). The server stores it as given and
/// counts failures by it (campaign figures); it may write codes of its own (e.g.
/// `already_running` for a report on a device's behalf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Installed and committed.
    Ok,
    /// TUF metadata (director or image repository) failed verification: signature,
    /// threshold, expiry, rollback, or the two repositories disagreeing.
    MetadataInvalid,
    /// The image's SHA-256 (or another listed hash) did not match the signed one.
    HashMismatch,
    /// The download was longer than the signed length (an endless download).
    TooLong,
    /// The download ended before the signed length.
    Truncated,
    /// The download stalled or was slower than the minimum rate.
    DownloadStalled,
    /// The server or network failed; retried later.
    DownloadFailed,
    /// The update server answered the device's poll with an error (revoked, unknown or
    /// conflicting identity, rate-limited...): its answer says why; retried later.
    PollRefused,
    /// The release is not built for this device's hardware id.
    HardwareIncompatible,
    /// The release's security version is below the device's anti-rollback counter.
    SecurityVersionRollback,
    /// The release is not proven to be in the transparency log with the witness quorum.
    NotInTransparencyLog,
    /// The release information in the metadata is malformed.
    ReleaseInvalid,
    /// The image is larger than the inactive slot.
    SlotTooSmall,
    /// Writing or reading the slot failed.
    SlotIo,
    /// The bootloader environment is corrupt (both copies fail their CRC, bad block) or
    /// holds malformed A/B variables.
    BootEnvCorrupt,
    /// The bootloader backend failed (script error, I/O).
    BootloaderFailed,
    /// The agent's state file is corrupt.
    StateCorrupt,
    /// The new slot booted but failed its health checks.
    HealthCheckFailed,
    /// The bootloader gave up on the new slot (its boot counter ran out) and booted the old one.
    BootloaderFallback,
    /// The device runs a slot other than the committed one without an update in progress.
    UnexpectedSlot,
    /// The operator cancelled the assignment.
    Cancelled,
    /// The device's TPM failed or is unreachable (measured boot, attestation, or its
    /// anti-rollback counter): nothing is installed while the hardware floor cannot be read.
    TpmFailed,
}

impl Reason {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::MetadataInvalid => "metadata_invalid",
            Reason::HashMismatch => "hash_mismatch",
            Reason::TooLong => "too_long",
            Reason::Truncated => "truncated",
            Reason::DownloadStalled => "download_stalled",
            Reason::DownloadFailed => "download_failed",
            Reason::PollRefused => "poll_refused",
            Reason::HardwareIncompatible => "hardware_incompatible",
            Reason::SecurityVersionRollback => "security_version_rollback",
            Reason::NotInTransparencyLog => "not_in_transparency_log",
            Reason::ReleaseInvalid => "release_invalid",
            Reason::SlotTooSmall => "slot_too_small",
            Reason::SlotIo => "slot_io",
            Reason::BootEnvCorrupt => "boot_env_corrupt",
            Reason::BootloaderFailed => "bootloader_failed",
            Reason::StateCorrupt => "state_corrupt",
            Reason::HealthCheckFailed => "health_check_failed",
            Reason::BootloaderFallback => "bootloader_fallback",
            Reason::UnexpectedSlot => "unexpected_slot",
            Reason::Cancelled => "cancelled",
            Reason::TpmFailed => "tpm_failed",
        }
    }
}
