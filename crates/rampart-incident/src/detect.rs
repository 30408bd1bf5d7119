//! The detectors: one rule per detector over typed [`Signal`]s the server reads from stored
//! state, with no I/O and no clock (every time is an argument), returning [`Finding`]s for the
//! incident store. Thresholds are in [`DetectorConfig`].
//!
//! Each rule names its cause (the incident's dedupe key): devices whose signals share a cause
//! join one incident. A device's finding for one cause is returned once within
//! `repeat_after_secs` (the store keeps a device in an open incident once in any case).
//!
//! Failing closed: a signal that could not be read is itself a finding
//! ([`Detectors::detector_failure`]), and an engine whose heartbeat is older than its bound is
//! one too ([`Detectors::stalled_engines`]); neither can be disabled.

mod config;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rampart_notify::{ROLLED_BACK, RollbackSpikeConfig, RollbackSpikeDetector};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use config::{
    ConfigError, DetectorConfig, EngineHealth, HeartbeatConfig, MAX_THRESHOLD, MAX_WINDOW_SECS,
    MIN_HEARTBEAT_BOUND_SECS, SpikeConfig, StaleConfig, UnknownFirmwareConfig,
};

use crate::finding::Finding;
use crate::model::{Cause, Detector};

/// (cause, device) pairs remembered for `repeat_after_secs`; past this many the oldest are
/// forgotten (the incident store still keeps a device in an open incident once).
pub const MAX_REMEMBERED: usize = 100_000;
/// Keys (release and hardware, hardware) a burst rule tracks at once; past this many the
/// quietest are forgotten.
pub const MAX_BURST_KEYS: usize = 10_000;
/// Longest text a cause key takes from a signal (longer values are cut).
pub const MAX_KEY_TEXT: usize = 200;

/// What the server read from stored state, typed for the rules. `at` is the signal's own time
/// (a report's or event's), which becomes the finding's `first_signal_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case")]
pub enum Signal {
    /// A quote or an attestation-key enrolment was refused.
    AttestationFailed {
        device_id: String,
        /// The release the device claims to run ('' if unknown).
        release: String,
        /// The failed check's class (`pcr_mismatch`, `signature`, `enrolment_refused`, ...).
        check: String,
        reason: String,
        at: i64,
    },
    /// A device whose last passing quote expired at `stale_since` and has not been renewed.
    AttestationStale {
        device_id: String,
        hardware_id: String,
        stale_since: i64,
    },
    /// A device reported `verification_failed`: it was served an image that failed
    /// verification.
    VerificationFailed {
        device_id: String,
        release: String,
        reason: String,
        at: i64,
    },
    /// A device reported `rolled_back`.
    RolledBack {
        device_id: String,
        hardware_id: String,
        release: String,
        at: i64,
    },
    /// The transparency-log monitor saw a release statement signed with our key for a
    /// target the registry does not list.
    UnknownSignedRelease {
        target: String,
        sha256: String,
        at: i64,
        detail: Value,
    },
    /// What a device says it runs: its version and the SHA-256 of its slots, where it
    /// reports them.
    Inventory {
        device_id: String,
        version: String,
        /// (slot name, lowercase hex SHA-256).
        slot_sha256: Vec<(String, String)>,
        at: i64,
    },
    /// A revoked certificate or token was presented.
    RevokedCredentialUse {
        /// `certificate:<device id>` or `token:<name>`.
        credential: String,
        device_id: Option<String>,
        at: i64,
        detail: Value,
    },
    /// The stored hardware id of a device differs from the one it now claims.
    HardwareIdChange {
        device_id: String,
        from: String,
        to: String,
        at: i64,
    },
}

/// The releases the registry (the hosted image repository) knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownReleases {
    pub versions: BTreeSet<String>,
    /// Lowercase hex SHA-256 of every target.
    pub sha256: BTreeSet<String>,
}

/// An engine's last heartbeat (`None`: it has not beaten since `started_at`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Beat {
    pub engine: String,
    pub beat_at: Option<i64>,
}

/// A burst rule's state for one key: the devices counted within the window, and until when a
/// burst that reached the threshold lets further devices join.
#[derive(Debug, Default)]
struct Burst {
    /// device -> when it counted.
    devices: BTreeMap<String, i64>,
    active_until: i64,
}

/// Rollback spikes of one release on one hardware id: `rampart_notify`'s detector (the one
/// sliding window, also behind the fleet-wide webhook) and, once it fired, until when further
/// rolled-back devices join.
#[derive(Debug)]
struct Spike {
    detector: RollbackSpikeDetector,
    active_until: i64,
    last_at: i64,
}

/// The detectors' state: the burst windows and the findings already returned.
#[derive(Debug)]
pub struct Detectors {
    config: DetectorConfig,
    spikes: HashMap<(String, String), Spike>,
    stale: HashMap<String, Burst>,
    /// (dedupe key, device or '') -> when it was last returned.
    returned: HashMap<(String, String), i64>,
}

/// Cuts `s` to [`MAX_KEY_TEXT`] bytes at a character boundary.
fn key_text(s: &str) -> &str {
    if s.len() <= MAX_KEY_TEXT {
        return s;
    }
    let mut end = MAX_KEY_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() { "unknown" } else { key_text(s) }
}

impl Detectors {
    /// Detectors with checked settings (see [`DetectorConfig::validate`]).
    pub fn new(config: DetectorConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            config,
            spikes: HashMap::new(),
            stale: HashMap::new(),
            returned: HashMap::new(),
        })
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Runs the rule of `signal` at `now`. `known` is the registry's releases (`None`: the
    /// server hosts no repository, so firmware cannot be judged unknown).
    pub fn observe(
        &mut self,
        signal: &Signal,
        known: Option<&KnownReleases>,
        now: i64,
    ) -> Vec<Finding> {
        let found = match signal {
            Signal::AttestationFailed {
                device_id,
                release,
                check,
                reason,
                at,
            } => {
                let key = if release.is_empty() {
                    format!("check:{}", or_unknown(check))
                } else {
                    format!("release:{}", key_text(release))
                };
                vec![self.finding(
                    Detector::AttestationFailed,
                    key,
                    format!("attestation failed ({})", or_unknown(check)),
                    Some(device_id),
                    Some(release),
                    *at,
                    json!({"check": check, "reason": reason}),
                )]
            }
            Signal::AttestationStale {
                device_id,
                hardware_id,
                stale_since,
            } => self.stale(device_id, hardware_id, *stale_since, now),
            Signal::VerificationFailed {
                device_id,
                release,
                reason,
                at,
            } => vec![self.finding(
                Detector::VerificationFailed,
                or_unknown(release).to_owned(),
                format!(
                    "devices were served an image of {} that failed verification",
                    or_unknown(release)
                ),
                Some(device_id),
                Some(release),
                *at,
                json!({"reason": reason}),
            )],
            Signal::RolledBack {
                device_id,
                hardware_id,
                release,
                at,
            } => self.rolled_back(device_id, hardware_id, release, *at),
            Signal::UnknownSignedRelease {
                target,
                sha256,
                at,
                detail,
            } => vec![self.finding(
                Detector::UnknownSignedRelease,
                format!("{}:{}", key_text(target), key_text(sha256)),
                format!(
                    "a release signed with our key that the registry does not know: {}",
                    key_text(target)
                ),
                None,
                Some(target),
                *at,
                json!({"target": target, "sha256": sha256, "monitor": detail}),
            )],
            Signal::Inventory {
                device_id,
                version,
                slot_sha256,
                at,
            } => match known {
                Some(known) => self
                    .unknown_firmware(device_id, version, slot_sha256, known)
                    .into_iter()
                    .map(|(key, title, detail)| {
                        self.finding(
                            Detector::UnknownFirmware,
                            key,
                            title,
                            Some(device_id),
                            Some(version),
                            *at,
                            detail,
                        )
                    })
                    .collect(),
                None => Vec::new(),
            },
            Signal::RevokedCredentialUse {
                credential,
                device_id,
                at,
                detail,
            } => vec![self.finding(
                Detector::RevokedCredentialUse,
                key_text(credential).to_owned(),
                format!("revoked credential used: {}", key_text(credential)),
                device_id.as_deref(),
                None,
                *at,
                detail.clone(),
            )],
            Signal::HardwareIdChange {
                device_id,
                from,
                to,
                at,
            } => vec![self.finding(
                Detector::HardwareIdChange,
                format!("{}->{}", or_unknown(from), or_unknown(to)),
                format!(
                    "devices changed hardware id from {} to {}",
                    or_unknown(from),
                    or_unknown(to)
                ),
                Some(device_id),
                None,
                *at,
                json!({"from": from, "to": to}),
            )],
        };
        let mut out = Vec::with_capacity(found.len());
        for f in found {
            if self.config.enabled(f.cause.detector) {
                out.extend(self.once(f, now));
            }
        }
        out
    }

    /// A signal source or rule that could not evaluate at `now` (fail closed: an incident of
    /// its own, one per source).
    pub fn detector_failure(&mut self, source: &str, error: &str, now: i64) -> Option<Finding> {
        let f = self.finding(
            Detector::DetectorFailure,
            key_text(source).to_owned(),
            format!("detector {} cannot evaluate", key_text(source)),
            None,
            None,
            now,
            json!({"source": source, "error": error}),
        );
        self.once(f, now)
    }

    /// Engines whose last beat is older than their bound at `now`; an engine that never beat
    /// counts from `started_at` (the server's start).
    pub fn stalled_engines(&mut self, beats: &[Beat], started_at: i64, now: i64) -> Vec<Finding> {
        let mut found = Vec::new();
        for beat in beats {
            let health = self.config.engine_health(beat, started_at, now);
            if !health.stalled {
                continue;
            }
            let (last, age, bound) = (health.last, health.age_secs, health.bound_secs);
            let f = self.finding(
                Detector::EngineStalled,
                key_text(&beat.engine).to_owned(),
                format!("engine {} stalled", key_text(&beat.engine)),
                None,
                None,
                last.saturating_add(bound),
                json!({"engine": beat.engine, "last_beat": beat.beat_at, "age_secs": age, "bound_secs": bound}),
            );
            found.extend(self.once(f, now));
        }
        found
    }

    /// Forgets that `f` was returned, so the same signal read again returns it again (the
    /// caller could not record it and reads its signals again).
    pub fn forget(&mut self, f: &Finding) {
        self.returned.remove(&(
            f.cause.dedupe_key(),
            f.device_id.clone().unwrap_or_default(),
        ));
    }

    /// The finding of a rule, with its configured severity.
    #[allow(clippy::too_many_arguments)]
    fn finding(
        &self,
        detector: Detector,
        key: String,
        title: String,
        device_id: Option<&str>,
        release: Option<&str>,
        first_signal_at: i64,
        detail: Value,
    ) -> Finding {
        Finding {
            cause: Cause { detector, key },
            severity: self.config.severity_of(detector),
            title,
            device_id: device_id.map(str::to_owned),
            release: release.filter(|r| !r.is_empty()).map(str::to_owned),
            first_signal_at,
            detail,
        }
        .bounded()
    }

    /// `f`, unless the same cause and device was returned within `repeat_after_secs`.
    fn once(&mut self, f: Finding, now: i64) -> Option<Finding> {
        let repeat = i64::try_from(self.config.repeat_after_secs).unwrap_or(i64::MAX);
        let key = (
            f.cause.dedupe_key(),
            f.device_id.clone().unwrap_or_default(),
        );
        if self
            .returned
            .get(&key)
            .is_some_and(|&at| now.saturating_sub(at) < repeat)
        {
            return None;
        }
        if self.returned.len() >= MAX_REMEMBERED {
            self.returned
                .retain(|_, at| now.saturating_sub(*at) < repeat);
            if self.returned.len() >= MAX_REMEMBERED {
                self.returned.clear();
            }
        }
        self.returned.insert(key, now);
        Some(f)
    }

    /// Unknown firmware: the version, and each slot's hash, that no release has.
    fn unknown_firmware(
        &self,
        device_id: &str,
        version: &str,
        slot_sha256: &[(String, String)],
        known: &KnownReleases,
    ) -> Vec<(String, String, Value)> {
        let mut out = Vec::new();
        let judge = &self.config.unknown_firmware;
        if judge.versions && !version.is_empty() && !known.versions.contains(version) {
            out.push((
                format!("version:{}", key_text(version)),
                format!(
                    "devices run version {} that no release has",
                    key_text(version)
                ),
                json!({"version": version, "device_id": device_id}),
            ));
        }
        for (slot, hash) in slot_sha256.iter().filter(|_| judge.slot_hashes) {
            let hash = hash.to_ascii_lowercase();
            if !known.sha256.contains(&hash) {
                out.push((
                    format!("sha256:{}", key_text(&hash)),
                    format!(
                        "devices hold an image (sha256 {}) that no release has",
                        key_text(&hash)
                    ),
                    json!({"slot": slot, "sha256": hash, "device_id": device_id}),
                ));
            }
        }
        out
    }

    /// Stale attestation per hardware id: a device counts once stale past the grace; a burst
    /// of `threshold` within the window opens the incident, later ones join while it lasts.
    fn stale(
        &mut self,
        device_id: &str,
        hardware_id: &str,
        stale_since: i64,
        now: i64,
    ) -> Vec<Finding> {
        let cfg = self.config.attestation_stale.clone();
        let grace = i64::try_from(cfg.grace_secs).unwrap_or(i64::MAX);
        let window = i64::try_from(cfg.window_secs).unwrap_or(i64::MAX);
        let counted_at = stale_since.saturating_add(grace);
        if now < counted_at || now.saturating_sub(counted_at) >= window {
            // Not past the grace yet (it is read again later), or too old to be a burst.
            return Vec::new();
        }
        let hardware = or_unknown(hardware_id).to_owned();
        if !self.stale.contains_key(&hardware) && self.stale.len() >= MAX_BURST_KEYS {
            self.stale
                .retain(|_, b| b.devices.values().any(|&t| now.saturating_sub(t) < window));
            if self.stale.len() >= MAX_BURST_KEYS {
                return vec![];
            }
        }
        let burst = self.stale.entry(hardware.clone()).or_default();
        burst.devices.retain(|_, t| now.saturating_sub(*t) < window);
        if burst.devices.len() < MAX_THRESHOLD {
            burst.devices.insert(device_id.to_owned(), counted_at);
        }
        let members: Vec<(String, i64)> = if now < burst.active_until {
            vec![(device_id.to_owned(), counted_at)]
        } else if burst.devices.len() >= cfg.threshold {
            burst.active_until = now.saturating_add(window);
            burst.devices.iter().map(|(d, t)| (d.clone(), *t)).collect()
        } else {
            return Vec::new();
        };
        let count = burst.devices.len();
        members
            .into_iter()
            .map(|(device, at)| {
                self.finding(
                    Detector::AttestationStale,
                    hardware.clone(),
                    format!("{count} devices of hardware {hardware} stopped attesting"),
                    Some(&device),
                    None,
                    at.saturating_sub(grace),
                    json!({"hardware_id": hardware, "stale_devices": count, "grace_secs": cfg.grace_secs, "window_secs": cfg.window_secs}),
                )
            })
            .collect()
    }

    /// Rollback spikes per release and hardware id.
    fn rolled_back(
        &mut self,
        device_id: &str,
        hardware_id: &str,
        release: &str,
        at: i64,
    ) -> Vec<Finding> {
        let cfg = &self.config.rollback_spike;
        let window = i64::try_from(cfg.window_secs).unwrap_or(i64::MAX);
        let key = (
            or_unknown(release).to_owned(),
            or_unknown(hardware_id).to_owned(),
        );
        if !self.spikes.contains_key(&key) && self.spikes.len() >= MAX_BURST_KEYS {
            self.spikes
                .retain(|_, s| at.saturating_sub(s.last_at) < window);
            if self.spikes.len() >= MAX_BURST_KEYS {
                return vec![];
            }
        }
        let spike_config = RollbackSpikeConfig {
            threshold: cfg.threshold,
            window: std::time::Duration::from_secs(cfg.window_secs),
        };
        let threshold = cfg.threshold;
        let spike = self.spikes.entry(key.clone()).or_insert_with(|| Spike {
            detector: RollbackSpikeDetector::new(&spike_config),
            active_until: i64::MIN,
            last_at: at,
        });
        spike.last_at = spike.last_at.max(at);
        let fired = spike.detector.observe(ROLLED_BACK, device_id, at);
        let (members, first, count) = match fired {
            Some(s) => {
                spike.active_until = at.saturating_add(window);
                (spike.detector.devices_in_window(), s.first, s.count)
            }
            None if at < spike.active_until => (vec![device_id.to_owned()], at, threshold),
            None => return Vec::new(),
        };
        let (release, hardware) = key;
        members
            .into_iter()
            .map(|device| {
                self.finding(
                    Detector::RollbackSpike,
                    format!("{release}@{hardware}"),
                    format!("rollback spike: {release} on hardware {hardware}"),
                    Some(&device),
                    Some(&release),
                    first,
                    json!({"release": release, "hardware_id": hardware, "rollbacks": count, "threshold": threshold, "window_secs": window}),
                )
            })
            .collect()
    }
}
