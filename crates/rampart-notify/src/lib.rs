//! Pure alert-delivery logic, on a caller-given clock and with caller-given randomness: the
//! `X-Rampart-Signature` of a webhook delivery, the delay before a retry, the rollback-spike
//! detector, RFC 5424 syslog messages and their framing (`syslog`), and whether a sink keeps
//! failing (`sink_health`). The update server's webhook dispatcher
//! (`rampart_server::webhooks`) and alert engine (`engines::alerts`) are the I/O shells around
//! it: storage, the HTTP client, the sockets, the clock. What an alert says is
//! `rampart_incident::alert`'s.

#![forbid(unsafe_code)]

pub mod sink_health;
pub mod syslog;

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

/// The report status the rollback-spike detector counts (the device protocol's spelling).
pub const ROLLED_BACK: &str = "rolled_back";

/// Default rolled-back reports within the window that make a spike.
pub const DEFAULT_SPIKE_THRESHOLD: usize = 10;
/// Default sliding window of the rollback-spike detector.
pub const DEFAULT_SPIKE_WINDOW: Duration = Duration::from_secs(300);

/// Largest spike threshold: the detector keeps this many timestamps.
pub const MAX_SPIKE_THRESHOLD: usize = 100_000;
/// Device ids named in a rollback-spike alert.
const SPIKE_EXAMPLES: usize = 5;

/// The rollback-spike detector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSpikeConfig {
    /// `rolled_back` reports within `window` that make a spike (1 to 100,000).
    pub threshold: usize,
    /// The sliding window (whole seconds, at least 1).
    pub window: Duration,
}

impl Default for RollbackSpikeConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_SPIKE_THRESHOLD,
            window: DEFAULT_SPIKE_WINDOW,
        }
    }
}

// ---- the rollback-spike detector ----------------------------------------------------------

/// A detected rollback spike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSpike {
    /// `rolled_back` reports within the window (the threshold, when it fires).
    pub count: usize,
    pub window_secs: u64,
    pub threshold: usize,
    /// A few of the devices (most recent first, without repeats).
    pub example_devices: Vec<String>,
    /// Unix seconds of the oldest and newest report counted.
    pub first: i64,
    pub last: i64,
}

impl RollbackSpike {
    /// The `data` of the `fleet.rollback_spike` event.
    pub fn payload(&self) -> Value {
        json!({
            "count": self.count,
            "window_secs": self.window_secs,
            "threshold": self.threshold,
            "example_devices": self.example_devices,
            "first_report": self.first,
            "last_report": self.last,
        })
    }
}

/// Counts `rolled_back` reports in a sliding window, on a caller-given clock. It fires once when
/// the count reaches the threshold, and again only after the count fell below the threshold.
///
/// It keeps only the newest `threshold` reports: the count reaches the threshold exactly when the
/// oldest of those is still inside the window, so memory stays bounded whatever the report rate.
#[derive(Debug, Clone)]
pub struct RollbackSpikeDetector {
    threshold: usize,
    window_secs: i64,
    /// (Unix seconds, device id) of the newest reports, oldest first; at most `threshold`.
    recent: VecDeque<(i64, String)>,
    /// False from a spike until the count falls below the threshold.
    armed: bool,
}

impl RollbackSpikeDetector {
    pub fn new(config: &RollbackSpikeConfig) -> Self {
        let threshold = config.threshold.clamp(1, MAX_SPIKE_THRESHOLD);
        Self {
            threshold,
            window_secs: i64::try_from(config.window.as_secs().max(1)).unwrap_or(i64::MAX),
            recent: VecDeque::with_capacity(threshold.min(1024)),
            armed: true,
        }
    }

    /// Notes a report with `status` from `device_id` at `now` (Unix seconds); returns the spike
    /// if this report made one.
    pub fn observe(&mut self, status: &str, device_id: &str, now: i64) -> Option<RollbackSpike> {
        if status != ROLLED_BACK {
            // Other reports change nothing: the window is re-evaluated at the next rollback.
            return None;
        }
        let horizon = now.saturating_sub(self.window_secs);
        while self.recent.front().is_some_and(|(t, _)| *t <= horizon) {
            self.recent.pop_front();
        }
        if self.recent.len() < self.threshold {
            self.armed = true;
        }
        if self.recent.len() == self.threshold {
            self.recent.pop_front();
        }
        self.recent.push_back((now, device_id.to_owned()));
        if !self.armed || self.recent.len() < self.threshold {
            return None;
        }
        self.armed = false;
        let mut examples: Vec<String> = Vec::new();
        for (_, id) in self.recent.iter().rev() {
            if examples.len() == SPIKE_EXAMPLES {
                break;
            }
            if !examples.contains(id) {
                examples.push(id.clone());
            }
        }
        Some(RollbackSpike {
            count: self.recent.len(),
            window_secs: self.window_secs.unsigned_abs(),
            threshold: self.threshold,
            example_devices: examples,
            first: self.recent.front().map_or(now, |(t, _)| *t),
            last: now,
        })
    }

    /// The distinct devices of the reports the detector holds, oldest first (at most the
    /// threshold): at a spike, every device that made it (the incident detectors make each
    /// one join the spike's incident).
    pub fn devices_in_window(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::with_capacity(self.recent.len());
        self.recent
            .iter()
            .filter(|(_, id)| seen.insert(id.as_str()))
            .map(|(_, id)| id.clone())
            .collect()
    }
}

// ---- signing and backoff -------------------------------------------------------------------

/// The `X-Rampart-Signature` value: `sha256=` and the lowercase hex HMAC-SHA256 of
/// `timestamp + "." + body` keyed with `secret`. The timestamp is inside the MAC so a captured
/// delivery cannot be replayed later with a fresh timestamp.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// The delay after failed attempt number `attempt` (1 for the first): `base · 2^(attempt-1)`,
/// at most `max`, scaled by `0.8 + 0.4 · jitter` (`jitter` in `[0, 1]`) so that many deliveries
/// failing together do not retry in lockstep, and never over `max`.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    let delay = base.saturating_mul(1u32 << doublings.min(31)).min(max);
    delay.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(600);
        assert_eq!(backoff_delay(1, base, max, 0.5), Duration::from_secs(2));
        assert_eq!(backoff_delay(2, base, max, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(3, base, max, 0.5), Duration::from_secs(8));
        assert_eq!(
            backoff_delay(1, base, max, 0.0),
            Duration::from_millis(1600)
        );
        assert_eq!(
            backoff_delay(1, base, max, 1.0),
            Duration::from_millis(2400)
        );
        assert_eq!(backoff_delay(9, base, max, 0.5), Duration::from_secs(512));
        for attempt in [10, 31, 32, 1000, u32::MAX] {
            assert_eq!(backoff_delay(attempt, base, max, 1.0), max, "{attempt}");
            assert!(backoff_delay(attempt, base, max, 0.0) >= Duration::from_secs(480));
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 with the message split as "timestamp.body".
        let key = b"Jefe";
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            b"1700000000.{\"a\":1}",
        );
        assert_eq!(
            sign(key, 1_700_000_000, b"{\"a\":1}"),
            format!("sha256={}", hex::encode(tag.as_ref()))
        );
        assert_ne!(
            sign(key, 1_700_000_001, b"{\"a\":1}"),
            sign(key, 1_700_000_000, b"{\"a\":1}")
        );
    }

    fn detector(threshold: usize, window_secs: u64) -> RollbackSpikeDetector {
        RollbackSpikeDetector::new(&RollbackSpikeConfig {
            threshold,
            window: Duration::from_secs(window_secs),
        })
    }

    #[test]
    fn a_spike_fires_once_at_the_threshold_within_the_window() {
        let mut d = detector(3, 60);
        assert_eq!(d.observe(ROLLED_BACK, "a", 100), None);
        assert_eq!(d.observe("succeeded", "x", 101), None);
        assert_eq!(d.observe(ROLLED_BACK, "b", 110), None);
        let spike = d
            .observe(ROLLED_BACK, "c", 120)
            .expect("the third rollback is a spike");
        assert_eq!(spike.count, 3);
        assert_eq!(spike.threshold, 3);
        assert_eq!(spike.window_secs, 60);
        assert_eq!((spike.first, spike.last), (100, 120));
        assert_eq!(spike.example_devices, ["c", "b", "a"]);
        assert_eq!(spike.payload()["first_report"], 100);
        // Still over the threshold: no second alert.
        assert_eq!(d.observe(ROLLED_BACK, "d", 125), None);
    }

    #[test]
    fn reports_outside_the_window_do_not_count_and_the_detector_rearms() {
        let mut d = detector(2, 10);
        assert_eq!(d.observe(ROLLED_BACK, "a", 100), None);
        // 100 is at the horizon of 110: it has left the window.
        assert_eq!(d.observe(ROLLED_BACK, "b", 110), None);
        assert!(d.observe(ROLLED_BACK, "c", 111).is_some());
        // The count falls below the threshold once the window moved on; then it fires again.
        assert_eq!(d.observe(ROLLED_BACK, "d", 200), None);
        assert!(d.observe(ROLLED_BACK, "d", 201).is_some());
    }

    #[test]
    fn examples_are_distinct_and_bounded() {
        let mut d = detector(8, 60);
        let mut spike = None;
        for (i, id) in ["a", "a", "b", "c", "d", "e", "f", "g"].iter().enumerate() {
            spike = d.observe(ROLLED_BACK, id, 100 + i as i64);
        }
        let spike = spike.expect("eight rollbacks make a spike");
        assert_eq!(spike.example_devices, ["g", "f", "e", "d", "c"]);
    }
}
