//! The detectors' thresholds: the `[detectors]` table of the server's `--incident-config` file.
//! Every field has a default; [`DetectorConfig::validate`] says which key is wrong and why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Detector, Severity};

/// Largest count threshold a detector accepts (each keeps at most this many devices per key).
pub const MAX_THRESHOLD: usize = 100_000;
/// Longest window or bound, in seconds (30 days).
pub const MAX_WINDOW_SECS: u64 = 30 * 24 * 3600;
/// Shortest heartbeat bound: engines beat at least every few seconds, so less would open
/// incidents for a busy scheduler.
pub const MIN_HEARTBEAT_BOUND_SECS: u64 = 5;

/// The detectors' settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorConfig {
    /// Detectors switched off. `detector_failure` and `engine_stalled` cannot be: they are how
    /// the detection itself fails closed.
    pub disabled: Vec<Detector>,
    /// Severity per detector, over the built-in defaults (see [`DetectorConfig::severity_of`]).
    pub severity: BTreeMap<Detector, Severity>,
    /// A device's finding for one cause is handed to the incident store once within this many
    /// seconds (the store also keeps a device in an open incident once).
    pub repeat_after_secs: u64,
    /// How often the sources read whole are read (the inventory's versions and slot hashes
    /// against the registry, passes gone stale): not every round.
    pub inventory_interval_secs: u64,
    pub attestation_stale: StaleConfig,
    pub rollback_spike: SpikeConfig,
    pub heartbeat: HeartbeatConfig,
    pub unknown_firmware: UnknownFirmwareConfig,
}

/// Unknown firmware: what a device reports that no release of the registry has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnknownFirmwareConfig {
    /// Judge the version a device reports (a claim: off by default, because devices that
    /// left the factory with an image that was never a release of this registry would all be
    /// found; switch it on once every version in the field is a release).
    pub versions: bool,
    /// Judge the SHA-256 of the slots a device reports (the image itself: on by default).
    pub slot_hashes: bool,
}

impl Default for UnknownFirmwareConfig {
    fn default() -> Self {
        Self {
            versions: false,
            slot_hashes: true,
        }
    }
}

/// Stale attestation: a device counts once it has been stale for `grace_secs` past its
/// freshness window; `threshold` such devices of one hardware id within `window_secs` open an
/// incident (and later ones of that hardware join it while the burst lasts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaleConfig {
    pub grace_secs: u64,
    pub threshold: usize,
    pub window_secs: u64,
}

/// Rollback spikes: `threshold` rolled-back reports of one release on one hardware id within
/// `window_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpikeConfig {
    pub threshold: usize,
    pub window_secs: u64,
}

/// Engine heartbeats: an engine whose last beat is older than its bound is stalled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// The bound of every engine without its own.
    pub bound_secs: u64,
    /// Bounds per engine name (e.g. `audit_anchor = 900` for a slow anchoring interval).
    pub bounds: BTreeMap<String, u64>,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            disabled: Vec::new(),
            severity: BTreeMap::new(),
            repeat_after_secs: 600,
            inventory_interval_secs: 30,
            attestation_stale: StaleConfig::default(),
            rollback_spike: SpikeConfig::default(),
            heartbeat: HeartbeatConfig::default(),
            unknown_firmware: UnknownFirmwareConfig::default(),
        }
    }
}

impl Default for StaleConfig {
    fn default() -> Self {
        Self {
            grace_secs: 900,
            threshold: 5,
            window_secs: 3600,
        }
    }
}

impl Default for SpikeConfig {
    fn default() -> Self {
        Self {
            threshold: 5,
            window_secs: 600,
        }
    }
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            bound_secs: 120,
            bounds: BTreeMap::new(),
        }
    }
}

/// Why a `[detectors]` table was refused: the key and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("[detectors] {key}: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn bad(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        problem: problem.into(),
    }
}

fn check_count(key: &str, n: usize) -> Result<(), ConfigError> {
    if (1..=MAX_THRESHOLD).contains(&n) {
        Ok(())
    } else {
        Err(bad(key, format!("must be 1 to {MAX_THRESHOLD}, not {n}")))
    }
}

fn check_secs(key: &str, secs: u64, min: u64) -> Result<(), ConfigError> {
    if (min..=MAX_WINDOW_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(bad(
            key,
            format!("must be {min} to {MAX_WINDOW_SECS} seconds, not {secs}"),
        ))
    }
}

impl DetectorConfig {
    /// Detectors that may never be disabled: without them a broken detector or engine would
    /// be silent.
    pub const FAIL_CLOSED: [Detector; 2] = [Detector::DetectorFailure, Detector::EngineStalled];

    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for d in &self.disabled {
            if Self::FAIL_CLOSED.contains(d) {
                return Err(bad(
                    "disabled",
                    format!(
                        "{} cannot be disabled: it is how detection fails closed (a detector that cannot evaluate, an engine that stalled)",
                        d.as_str()
                    ),
                ));
            }
            if *d == Detector::Operator {
                return Err(bad(
                    "disabled",
                    "operator is not a detector (operators open incidents through the API)",
                ));
            }
        }
        check_secs("repeat_after_secs", self.repeat_after_secs, 1)?;
        check_secs("inventory_interval_secs", self.inventory_interval_secs, 1)?;
        let stale = &self.attestation_stale;
        check_secs("attestation_stale.grace_secs", stale.grace_secs, 0)?;
        check_count("attestation_stale.threshold", stale.threshold)?;
        check_secs("attestation_stale.window_secs", stale.window_secs, 1)?;
        check_count("rollback_spike.threshold", self.rollback_spike.threshold)?;
        check_secs(
            "rollback_spike.window_secs",
            self.rollback_spike.window_secs,
            1,
        )?;
        check_secs(
            "heartbeat.bound_secs",
            self.heartbeat.bound_secs,
            MIN_HEARTBEAT_BOUND_SECS,
        )?;
        for (engine, secs) in &self.heartbeat.bounds {
            check_secs(
                &format!("heartbeat.bounds.{engine}"),
                *secs,
                MIN_HEARTBEAT_BOUND_SECS,
            )?;
        }
        Ok(())
    }

    /// Whether `detector` runs.
    pub fn enabled(&self, detector: Detector) -> bool {
        !self.disabled.contains(&detector)
    }

    /// The severity of `detector`'s findings: the configured one, or the built-in default.
    pub fn severity_of(&self, detector: Detector) -> Severity {
        if let Some(s) = self.severity.get(&detector) {
            return *s;
        }
        match detector {
            Detector::UnknownSignedRelease | Detector::VulnerableComponent => Severity::Critical,
            Detector::AttestationFailed
            | Detector::VerificationFailed
            | Detector::UnknownFirmware
            | Detector::RevokedCredentialUse
            | Detector::HardwareIdChange
            | Detector::DetectorFailure
            | Detector::EngineStalled
            | Detector::AlertDeliveryFailing => Severity::High,
            Detector::AttestationStale | Detector::RollbackSpike | Detector::Operator => {
                Severity::Medium
            }
        }
    }

    /// The heartbeat bound of `engine`, seconds.
    pub fn heartbeat_bound(&self, engine: &str) -> u64 {
        self.heartbeat
            .bounds
            .get(engine)
            .copied()
            .unwrap_or(self.heartbeat.bound_secs)
    }

    /// How `beat`'s engine stands at `now`: its age (an engine that never beat counts from
    /// `started_at`, the server's start), its bound, and whether it is past the bound. The
    /// watchdog ([`super::Detectors::stalled_engines`]) and the server's status both ask this.
    pub fn engine_health(&self, beat: &super::Beat, started_at: i64, now: i64) -> EngineHealth {
        let last = beat.beat_at.unwrap_or(started_at);
        let bound_secs = i64::try_from(self.heartbeat_bound(&beat.engine)).unwrap_or(i64::MAX);
        let age_secs = now.saturating_sub(last);
        EngineHealth {
            last,
            age_secs,
            bound_secs,
            stalled: age_secs > bound_secs,
        }
    }
}

/// An engine's heartbeat judged against its bound ([`DetectorConfig::engine_health`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineHealth {
    /// Its last beat, or the server's start when it has not beaten yet (Unix seconds).
    pub last: i64,
    pub age_secs: i64,
    pub bound_secs: i64,
    /// Older than its bound: the watchdog opens an `engine_stalled` incident for it.
    pub stalled: bool,
}
