//! Whether an alert sink (a syslog receiver, a webhook) keeps failing, judged from what its
//! outbox holds, on a caller-given clock. A sink fails when its oldest undelivered alert has
//! failed too many attempts in a row, has waited too long, or when the last alert it settled
//! was given up. The server raises an alert of its own through the other sinks when one fails.

use std::time::Duration;

/// Default failed attempts in a row that make a sink failing.
pub const DEFAULT_MAX_FAILURES: u32 = 5;
/// Default longest wait of an undelivered alert before its sink is failing.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// When a sink counts as failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failed attempts of one alert in a row (at least 1).
    pub max_failures: u32,
    /// Longest an alert may wait undelivered.
    pub max_age: Duration,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            max_failures: DEFAULT_MAX_FAILURES,
            max_age: DEFAULT_MAX_AGE,
        }
    }
}

/// What a sink's outbox says about it (times in Unix seconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// When the oldest undelivered alert was queued; `None` when none waits.
    pub oldest_pending: Option<i64>,
    /// The most failed attempts of any undelivered alert.
    pub failed_attempts: u32,
    /// When an alert was last delivered.
    pub last_delivered: Option<i64>,
    /// When an alert was last given up after its last attempt.
    pub last_given_up: Option<i64>,
}

/// Why a sink is failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkProblem {
    /// An alert failed this many attempts in a row.
    ConsecutiveFailures(u32),
    /// An alert has waited this many seconds.
    Waiting(i64),
    /// The last alert settled was given up (at this time), none delivered since.
    GaveUp(i64),
}

impl std::fmt::Display for SinkProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SinkProblem::ConsecutiveFailures(n) => {
                write!(f, "an alert failed {n} delivery attempts in a row")
            }
            SinkProblem::Waiting(secs) => write!(f, "an alert has waited {secs} s undelivered"),
            SinkProblem::GaveUp(at) => write!(
                f,
                "an alert was given up at {at} (Unix time) and none was delivered since"
            ),
        }
    }
}

/// Judges a sink at `now`: `Some(problem)` while it is failing.
pub fn judge(stats: &SinkStats, policy: &HealthPolicy, now: i64) -> Option<SinkProblem> {
    if stats.failed_attempts >= policy.max_failures.max(1) {
        return Some(SinkProblem::ConsecutiveFailures(stats.failed_attempts));
    }
    let max_age = i64::try_from(policy.max_age.as_secs()).unwrap_or(i64::MAX);
    if let Some(oldest) = stats.oldest_pending {
        let waited = now.saturating_sub(oldest);
        if waited > max_age {
            return Some(SinkProblem::Waiting(waited));
        }
    }
    match (stats.last_given_up, stats.last_delivered) {
        (Some(gave_up), delivered) if delivered.is_none_or(|d| d < gave_up) => {
            Some(SinkProblem::GaveUp(gave_up))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: HealthPolicy = HealthPolicy {
        max_failures: 3,
        max_age: Duration::from_secs(60),
    };

    #[test]
    fn a_healthy_sink_is_not_failing() {
        assert_eq!(judge(&SinkStats::default(), &POLICY, 1000), None);
        let stats = SinkStats {
            oldest_pending: Some(990),
            failed_attempts: 2,
            last_delivered: Some(980),
            last_given_up: Some(900),
        };
        assert_eq!(judge(&stats, &POLICY, 1000), None);
    }

    #[test]
    fn consecutive_failures_make_a_sink_failing() {
        let stats = SinkStats {
            oldest_pending: Some(995),
            failed_attempts: 3,
            ..SinkStats::default()
        };
        assert_eq!(
            judge(&stats, &POLICY, 1000),
            Some(SinkProblem::ConsecutiveFailures(3))
        );
    }

    #[test]
    fn an_alert_waiting_too_long_makes_a_sink_failing() {
        let stats = SinkStats {
            oldest_pending: Some(900),
            failed_attempts: 1,
            ..SinkStats::default()
        };
        assert_eq!(judge(&stats, &POLICY, 960), None);
        assert_eq!(
            judge(&stats, &POLICY, 1000),
            Some(SinkProblem::Waiting(100))
        );
    }

    #[test]
    fn a_given_up_alert_counts_until_one_is_delivered() {
        let stats = SinkStats {
            last_given_up: Some(900),
            last_delivered: Some(800),
            ..SinkStats::default()
        };
        assert_eq!(judge(&stats, &POLICY, 1000), Some(SinkProblem::GaveUp(900)));
        let recovered = SinkStats {
            last_delivered: Some(950),
            ..stats
        };
        assert_eq!(judge(&recovered, &POLICY, 1000), None);
    }
}
