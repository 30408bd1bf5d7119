//! How fast one device may send reports: a token bucket per device. A device certificate is
//! enough to call `POST /device/v1/reports`, and without a rate one certificate stored ten
//! thousand reports in fifteen seconds. Reports over the rate are answered 429 with
//! `Retry-After`; the agent keeps results queued and sends them again, so none is lost.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Reports a device may send at once after a quiet spell.
pub const REPORT_BURST: f64 = 120.0;
/// Reports per second a device may send in the long run.
pub const REPORTS_PER_SECOND: f64 = 2.0;
/// Attestation calls a device may make at once (an enrolment and a quote take three); each
/// refused step is written to the audit log, so the attestation routes have their own rate.
pub const ATTESTATION_BURST: f64 = 20.0;
/// Attestation calls per second a device may make in the long run (a quote is due every half
/// freshness window, minutes apart).
pub const ATTESTATION_PER_SECOND: f64 = 0.2;
/// Buckets kept before full (idle) ones are forgotten; bounds the table's memory.
const MAX_TRACKED_DEVICES: usize = 100_000;

#[derive(Debug)]
pub struct ReportRate {
    buckets: Mutex<HashMap<String, Bucket>>,
    burst: f64,
    per_second: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Default for ReportRate {
    fn default() -> Self {
        Self::new(REPORT_BURST, REPORTS_PER_SECOND)
    }
}

impl ReportRate {
    pub fn new(burst: f64, per_second: f64) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            burst,
            per_second,
        }
    }

    /// Takes one report from `device`'s allowance at `now`: `Ok` to store it, or how long to
    /// wait before the next one is allowed.
    pub fn take(&self, device: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_DEVICES && !buckets.contains_key(device) {
            let (burst, per_second) = (self.burst, self.per_second);
            buckets.retain(|_, b| refilled(*b, now, burst, per_second) < burst);
        }
        let bucket = buckets.entry(device.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let tokens = refilled(*bucket, now, self.burst, self.per_second);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                updated: now,
            };
            Ok(())
        } else {
            *bucket = Bucket {
                tokens,
                updated: now,
            };
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_second))
        }
    }
}

fn refilled(bucket: Bucket, now: Instant, burst: f64, per_second: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    (bucket.tokens + elapsed * per_second).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_holds_per_device() {
        let rate = ReportRate::new(3.0, 1.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            rate.take("a", t0).unwrap();
        }
        let wait = rate.take("a", t0).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
        // Another device has its own allowance.
        rate.take("b", t0).unwrap();
        // One second later, one more report.
        rate.take("a", t0 + Duration::from_secs(1)).unwrap();
        assert!(rate.take("a", t0 + Duration::from_secs(1)).is_err());
        // The allowance never exceeds the burst, however long the device was quiet.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            rate.take("a", later).unwrap();
        }
        assert!(rate.take("a", later).is_err());
    }
}
