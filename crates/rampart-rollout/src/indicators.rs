//! Indicators from stored events (issue 18): update success rate, rollback frequency, time to
//! a share of a campaign's targets, and time to detect and to remediate per incident and per
//! advisory, as time series over a window the caller picks and as summary figures (median and
//! 90th percentile).
//!
//! Everything here is arithmetic over what storage counted or read: the caller passes the
//! window, `now` and the events; nothing reads a clock or a database. Percentiles use the
//! nearest-rank rule, so every figure is a value that was observed (a median of 4 values is
//! the 2nd smallest, not an average of two).

use serde::Serialize;

use crate::report::{SHARES, TimeToShare};

pub const HOUR: i64 = 3_600;
pub const DAY: i64 = 86_400;
/// Most buckets one answer holds (a month of hours).
pub const MAX_BUCKETS: i64 = 744;
/// Longest window a caller may ask for.
pub const MAX_WINDOW_SECS: i64 = 366 * DAY;
/// The latest time a window may name (9999-12-31 23:59:59 UTC), so no arithmetic on it
/// overflows.
pub const MAX_TIME: i64 = 253_402_300_799;
/// The window when the caller names no `from`.
pub const DEFAULT_WINDOW_SECS: i64 = 7 * DAY;
/// Windows up to this long are bucketed by hour unless the caller says otherwise.
pub const HOURLY_UP_TO_SECS: i64 = 2 * DAY;

/// The report statuses that are an update's final result (what storage counts).
pub const RESULT_STATUSES: [&str; 4] =
    ["installed", "failed", "verification_failed", "rolled_back"];

/// The width of one bucket of a time series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
}

impl Bucket {
    pub fn secs(self) -> i64 {
        match self {
            Bucket::Hour => HOUR,
            Bucket::Day => DAY,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }

    pub fn parse(s: &str) -> Option<Bucket> {
        [Bucket::Hour, Bucket::Day]
            .into_iter()
            .find(|b| b.as_str() == s)
    }
}

/// A window asked for that cannot be answered; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("from ({from}) must be before to ({to}); both are Unix seconds")]
    Empty { from: i64, to: i64 },
    #[error(
        "from and to must be Unix seconds from 0 to {MAX_TIME} (the end of year 9999), not {0}"
    )]
    OutOfRange(i64),
    #[error(
        "the window is {secs} seconds long; at most {max} seconds ({days} days) may be asked for: move from closer to to",
        max = MAX_WINDOW_SECS,
        days = MAX_WINDOW_SECS / DAY
    )]
    TooLong { secs: i64 },
    #[error(
        "the window holds {buckets} {bucket} buckets, more than the {max} one answer may hold: use bucket=day or a shorter window",
        bucket = bucket.as_str(),
        max = MAX_BUCKETS
    )]
    TooManyBuckets { buckets: i64, bucket: Bucket },
}

/// The span a series covers: `[from, to)` cut into buckets of one width; `from` and `to` are
/// whole buckets in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub from: i64,
    pub to: i64,
    pub bucket: Bucket,
}

impl Window {
    /// The window asked for: `to` defaults to `now`, `from` to [`DEFAULT_WINDOW_SECS`] before
    /// `to`, the bucket to hours for windows up to [`HOURLY_UP_TO_SECS`] and days beyond. The
    /// edges widen to whole buckets (`from` down, `to` up), so an hour bucket is a clock hour.
    pub fn new(
        from: Option<i64>,
        to: Option<i64>,
        bucket: Option<Bucket>,
        now: i64,
    ) -> Result<Window, WindowError> {
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to.saturating_sub(DEFAULT_WINDOW_SECS).max(0));
        for t in [to, from] {
            if !(0..=MAX_TIME).contains(&t) {
                return Err(WindowError::OutOfRange(t));
            }
        }
        if from >= to {
            return Err(WindowError::Empty { from, to });
        }
        let secs = to - from;
        if secs > MAX_WINDOW_SECS {
            return Err(WindowError::TooLong { secs });
        }
        let bucket = bucket.unwrap_or(if secs <= HOURLY_UP_TO_SECS {
            Bucket::Hour
        } else {
            Bucket::Day
        });
        let width = bucket.secs();
        let from = from - from.rem_euclid(width);
        let to = ceil_div(to, width) * width;
        let buckets = (to - from) / width;
        if buckets > MAX_BUCKETS {
            return Err(WindowError::TooManyBuckets { buckets, bucket });
        }
        Ok(Window { from, to, bucket })
    }

    /// The `secs` up to and including the second `now`, not widened (what `/metrics`
    /// reports: "the last 24 hours", an event stored this very second included).
    pub fn trailing(now: i64, secs: i64, bucket: Bucket) -> Window {
        let to = now.saturating_add(1);
        Window {
            from: to.saturating_sub(secs),
            to,
            bucket,
        }
    }

    /// How many buckets the window holds (the last one may be short in a trailing window).
    pub fn buckets(&self) -> usize {
        usize::try_from(ceil_div(self.to - self.from, self.bucket.secs())).unwrap_or(0)
    }

    pub fn bucket_start(&self, index: usize) -> i64 {
        self.from + self.bucket.secs() * index as i64
    }

    /// The bucket holding `t`, if the window does.
    pub fn index(&self, t: i64) -> Option<usize> {
        (self.from..self.to)
            .contains(&t)
            .then(|| ((t - self.from) / self.bucket.secs()) as usize)
    }

    pub fn contains(&self, t: i64) -> bool {
        (self.from..self.to).contains(&t)
    }
}

/// `n / d` rounded up, for `n >= 0` and `d > 0` (i64's own is not stable).
fn ceil_div(n: i64, d: i64) -> i64 {
    n / d + i64::from(n % d != 0)
}

/// Update results: installs that succeeded, failed (verification failures included) and
/// rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ResultCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub rolled_back: u64,
}

impl ResultCounts {
    /// Counts `n` reports of `status`; a status that is no final result counts nothing.
    pub fn add(&mut self, status: &str, n: u64) {
        match status {
            "installed" => self.succeeded += n,
            "failed" | "verification_failed" => self.failed += n,
            "rolled_back" => self.rolled_back += n,
            _ => {}
        }
    }

    pub fn results(&self) -> u64 {
        self.succeeded + self.failed + self.rolled_back
    }

    /// Successes among results (`None` without results).
    pub fn success_ratio(&self) -> Option<f64> {
        self.ratio(self.succeeded)
    }

    /// Rollbacks among results (`None` without results).
    pub fn rollback_ratio(&self) -> Option<f64> {
        self.ratio(self.rolled_back)
    }

    fn ratio(&self, part: u64) -> Option<f64> {
        let results = self.results();
        (results > 0).then(|| part as f64 / results as f64)
    }
}

/// A count storage made: `n` reports of `status` in bucket `bucket` (an index into the
/// window's buckets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketCount {
    pub bucket: i64,
    pub status: String,
    pub n: u64,
}

/// The nearest-rank `percent`-th percentile of `sorted` (ascending): the smallest value with
/// at least `percent`% of the values at or below it. `None` for no values.
pub fn percentile(sorted: &[i64], percent: u32) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (sorted.len() as u64 * u64::from(percent.min(100)))
        .div_ceil(100)
        .max(1);
    sorted.get(rank as usize - 1).copied()
}

/// A set of durations (seconds): how many, their median and 90th percentile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Durations {
    pub count: u64,
    pub median: Option<i64>,
    pub p90: Option<i64>,
}

impl Durations {
    pub fn of(mut values: Vec<i64>) -> Durations {
        values.sort_unstable();
        Durations {
            count: values.len() as u64,
            median: percentile(&values, 50),
            p90: percentile(&values, 90),
        }
    }
}

/// One incident's response, as stored: when it was detected, how long detection took, and
/// when and how long after detection it was remediated (recovered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IncidentTiming {
    pub detected_at: i64,
    pub to_detect: i64,
    pub remediated_at: Option<i64>,
    pub to_remediate: Option<i64>,
}

/// One advisory's exposure, as stored: when the fleet was first known affected and how long
/// after publication, and when the fleet was remediated and the window from publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdvisoryTiming {
    pub known_affected_at: Option<i64>,
    /// `known_affected_at - published` (`None` without a published time).
    pub to_known_affected: Option<i64>,
    pub remediated_at: Option<i64>,
    /// The exposure window, publication to remediation.
    pub to_remediate: Option<i64>,
}

/// One campaign that started in the window, and when shares of its targets succeeded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignTimes {
    pub id: String,
    pub name: String,
    pub started: i64,
    pub targeted: u64,
    pub time_to: Vec<TimeToShare>,
}

/// Per share of the targets: the campaigns that reached it (their durations) and those that
/// did not (yet).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareSummary {
    pub percent: u32,
    pub reached: Durations,
    pub not_reached: u64,
}

/// One bucket of the series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketFigures {
    pub start: i64,
    pub results: ResultCounts,
    pub success_ratio: Option<f64>,
    pub rollback_ratio: Option<f64>,
    /// Incidents detected in the bucket, and their time to detect.
    pub incidents_detected: Durations,
    /// Incidents remediated in the bucket, and their time to remediate.
    pub incidents_remediated: Durations,
    /// Advisories remediated fleet-wide in the bucket, and their exposure windows.
    pub advisories_remediated: Durations,
}

/// The whole window's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub results: ResultCounts,
    pub success_ratio: Option<f64>,
    pub rollback_ratio: Option<f64>,
    pub incident_time_to_detect: Durations,
    pub incident_time_to_remediate: Durations,
    /// Publication to the fleet known affected.
    pub advisory_time_to_known_affected: Durations,
    /// Publication to the fleet remediated (the exposure window).
    pub advisory_time_to_remediate: Durations,
    pub campaign_time_to: Vec<ShareSummary>,
}

/// Every indicator over one window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Indicators {
    pub window: Window,
    pub summary: Summary,
    pub series: Vec<BucketFigures>,
    pub campaigns: Vec<CampaignTimes>,
}

/// What storage read for a window.
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Result reports counted per bucket and status.
    pub report_counts: Vec<BucketCount>,
    pub incidents: Vec<IncidentTiming>,
    pub advisories: Vec<AdvisoryTiming>,
    pub campaigns: Vec<CampaignTimes>,
}

/// The indicators of `window` from `events`. Events outside the window are left out: an
/// incident counts toward detection in the bucket it was detected in and toward remediation in
/// the bucket it was remediated in; an advisory likewise by when the fleet was known affected
/// and when it was remediated.
pub fn compute(window: Window, events: Events) -> Indicators {
    let n = window.buckets();
    let mut results = vec![ResultCounts::default(); n];
    let mut total = ResultCounts::default();
    for c in &events.report_counts {
        if let Some(r) = usize::try_from(c.bucket)
            .ok()
            .and_then(|i| results.get_mut(i))
        {
            r.add(&c.status, c.n);
            total.add(&c.status, c.n);
        }
    }
    let mut detected = vec![Vec::new(); n];
    let mut remediated = vec![Vec::new(); n];
    let mut all_detect = Vec::new();
    let mut all_remediate = Vec::new();
    for i in &events.incidents {
        if let Some(b) = window.index(i.detected_at) {
            detected[b].push(i.to_detect);
            all_detect.push(i.to_detect);
        }
        if let (Some(at), Some(secs)) = (i.remediated_at, i.to_remediate)
            && let Some(b) = window.index(at)
        {
            remediated[b].push(secs);
            all_remediate.push(secs);
        }
    }
    let mut advisories_remediated = vec![Vec::new(); n];
    let mut known_affected = Vec::new();
    let mut advisory_remediate = Vec::new();
    for a in &events.advisories {
        if let (Some(at), Some(secs)) = (a.known_affected_at, a.to_known_affected)
            && window.contains(at)
        {
            known_affected.push(secs);
        }
        if let (Some(at), Some(secs)) = (a.remediated_at, a.to_remediate)
            && let Some(b) = window.index(at)
        {
            advisories_remediated[b].push(secs);
            advisory_remediate.push(secs);
        }
    }
    let mut detected = detected.into_iter();
    let mut remediated = remediated.into_iter();
    let mut advisories_remediated = advisories_remediated.into_iter();
    let series = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| BucketFigures {
            start: window.bucket_start(i),
            success_ratio: r.success_ratio(),
            rollback_ratio: r.rollback_ratio(),
            results: r,
            incidents_detected: Durations::of(detected.next().unwrap_or_default()),
            incidents_remediated: Durations::of(remediated.next().unwrap_or_default()),
            advisories_remediated: Durations::of(advisories_remediated.next().unwrap_or_default()),
        })
        .collect();
    let campaign_time_to = share_summaries(&events.campaigns);
    Indicators {
        window,
        summary: Summary {
            results: total,
            success_ratio: total.success_ratio(),
            rollback_ratio: total.rollback_ratio(),
            incident_time_to_detect: Durations::of(all_detect),
            incident_time_to_remediate: Durations::of(all_remediate),
            advisory_time_to_known_affected: Durations::of(known_affected),
            advisory_time_to_remediate: Durations::of(advisory_remediate),
            campaign_time_to,
        },
        series,
        campaigns: events.campaigns,
    }
}

/// Per share of [`SHARES`], the campaigns' times to reach it.
fn share_summaries(campaigns: &[CampaignTimes]) -> Vec<ShareSummary> {
    SHARES
        .iter()
        .map(|&percent| {
            let mut reached = Vec::new();
            let mut not_reached = 0;
            for c in campaigns {
                match c
                    .time_to
                    .iter()
                    .find(|t| t.percent == percent)
                    .and_then(|t| t.seconds)
                {
                    Some(secs) => reached.push(secs),
                    None => not_reached += 1,
                }
            }
            ShareSummary {
                percent,
                reached: Durations::of(reached),
                not_reached,
            }
        })
        .collect()
}

/// A campaign's times to each share of [`SHARES`], from its start, given the
/// `k`-th success time for each share's `k` ([`crate::report::successes_needed`]) as storage found it.
pub fn campaign_times(
    id: &str,
    name: &str,
    started: i64,
    targeted: u64,
    kth_success: &[(u32, Option<i64>)],
) -> CampaignTimes {
    let time_to = SHARES
        .iter()
        .map(|&percent| TimeToShare {
            percent,
            seconds: kth_success
                .iter()
                .find(|(p, _)| *p == percent)
                .and_then(|(_, t)| *t)
                .filter(|_| targeted > 0)
                .map(|t| (t - started).max(0)),
        })
        .collect();
    CampaignTimes {
        id: id.to_owned(),
        name: name.to_owned(),
        started,
        targeted,
        time_to,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::successes_needed;

    const T0: i64 = 1_700_000_000 - 1_700_000_000 % DAY; // a UTC midnight

    fn count(bucket: i64, status: &str, n: u64) -> BucketCount {
        BucketCount {
            bucket,
            status: status.into(),
            n,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 90), Some(7));
        // 4 values: the median is the 2nd (ceil(4 * 0.5) = 2), p90 the 4th (ceil(3.6) = 4).
        assert_eq!(percentile(&[10, 20, 30, 40], 50), Some(20));
        assert_eq!(percentile(&[10, 20, 30, 40], 90), Some(40));
        // 10 values 1..=10: p90 is the 9th, the median the 5th.
        let ten: Vec<i64> = (1..=10).collect();
        assert_eq!(percentile(&ten, 90), Some(9));
        assert_eq!(percentile(&ten, 50), Some(5));
        assert_eq!(percentile(&ten, 100), Some(10));
        assert_eq!(
            Durations::of(vec![300, 60, 120]),
            Durations {
                count: 3,
                median: Some(120),
                p90: Some(300)
            }
        );
        assert_eq!(Durations::of(vec![]), Durations::default());
    }

    #[test]
    fn a_window_widens_to_whole_buckets_and_is_bounded() {
        let now = T0 + 5 * HOUR + 30 * 60;
        // The default: the week before now, by day (longer than two days).
        let w = Window::new(None, None, None, now).unwrap();
        assert_eq!(w.bucket, Bucket::Day);
        assert_eq!((w.from, w.to), (T0 - 7 * DAY, T0 + DAY));
        assert_eq!(w.buckets(), 8);
        // A day by hour: 13:30 to 15:10 is the clock hours 13:00 to 16:00.
        let w = Window::new(
            Some(T0 + 13 * HOUR + 1_800),
            Some(T0 + 15 * HOUR + 600),
            None,
            now,
        )
        .unwrap();
        assert_eq!(w.bucket, Bucket::Hour);
        assert_eq!(
            (w.from, w.to, w.buckets()),
            (T0 + 13 * HOUR, T0 + 16 * HOUR, 3)
        );
        assert_eq!(w.index(T0 + 13 * HOUR), Some(0));
        assert_eq!(w.index(T0 + 15 * HOUR + 3_599), Some(2));
        assert_eq!(w.index(T0 + 16 * HOUR), None);
        assert_eq!(w.index(T0 + 13 * HOUR - 1), None);
        // Refusals that say what to change.
        assert_eq!(
            Window::new(Some(T0), Some(T0), None, now),
            Err(WindowError::Empty { from: T0, to: T0 })
        );
        assert_eq!(
            Window::new(Some(-5), Some(T0), None, now),
            Err(WindowError::OutOfRange(-5))
        );
        assert_eq!(
            Window::new(None, Some(i64::MAX), None, now),
            Err(WindowError::OutOfRange(i64::MAX))
        );
        let long = Window::new(Some(T0 - 400 * DAY), Some(T0), None, now).unwrap_err();
        assert!(
            long.to_string()
                .contains("at most 31622400 seconds (366 days)"),
            "{long}"
        );
        let hourly =
            Window::new(Some(T0 - 40 * DAY), Some(T0), Some(Bucket::Hour), now).unwrap_err();
        assert_eq!(
            hourly,
            WindowError::TooManyBuckets {
                buckets: 960,
                bucket: Bucket::Hour
            }
        );
        assert!(hourly.to_string().contains("use bucket=day"), "{hourly}");
        // A month of hours is the most one answer holds.
        assert!(Window::new(Some(T0 - 31 * DAY), Some(T0), Some(Bucket::Hour), now).is_ok());
        assert_eq!(Bucket::parse("day"), Some(Bucket::Day));
        assert_eq!(Bucket::parse("week"), None);
    }

    #[test]
    fn a_trailing_window_holds_the_current_second() {
        let w = Window::trailing(T0, DAY, Bucket::Day);
        assert!(w.contains(T0));
        assert!(w.contains(T0 - DAY + 1));
        assert!(!w.contains(T0 - DAY));
        assert_eq!(w.buckets(), 1);
    }

    #[test]
    fn success_and_rollback_rates_per_bucket_and_in_total() {
        let w = Window::new(Some(T0), Some(T0 + 3 * HOUR), Some(Bucket::Hour), T0).unwrap();
        let events = Events {
            report_counts: vec![
                count(0, "installed", 8),
                count(0, "failed", 1),
                count(0, "rolled_back", 1),
                count(0, "downloading", 50), // progress: not a result
                count(2, "installed", 3),
                count(2, "verification_failed", 1),
                count(7, "installed", 99), // outside the window
            ],
            ..Events::default()
        };
        let ind = compute(w, events);
        assert_eq!(ind.series.len(), 3);
        let b0 = &ind.series[0];
        assert_eq!(
            b0.results,
            ResultCounts {
                succeeded: 8,
                failed: 1,
                rolled_back: 1
            }
        );
        assert_eq!(b0.success_ratio, Some(0.8));
        assert_eq!(b0.rollback_ratio, Some(0.1));
        // An hour without results has no rate (not a rate of 0).
        assert_eq!(ind.series[1].start, T0 + HOUR);
        assert_eq!(ind.series[1].success_ratio, None);
        assert_eq!(ind.series[2].success_ratio, Some(0.75));
        assert_eq!(ind.series[2].rollback_ratio, Some(0.0));
        // In total: 11 of 14 succeeded, 1 of 14 rolled back.
        assert_eq!(ind.summary.results.results(), 14);
        assert_eq!(ind.summary.success_ratio, Some(11.0 / 14.0));
        assert_eq!(ind.summary.rollback_ratio, Some(1.0 / 14.0));
    }

    #[test]
    fn an_empty_window_has_buckets_but_no_figures() {
        let w = Window::new(Some(T0), Some(T0 + DAY), Some(Bucket::Hour), T0).unwrap();
        let ind = compute(w, Events::default());
        assert_eq!(ind.series.len(), 24);
        assert!(ind.series.iter().all(|b| b.results.results() == 0
            && b.success_ratio.is_none()
            && b.incidents_detected.count == 0));
        assert_eq!(ind.summary.success_ratio, None);
        assert_eq!(ind.summary.incident_time_to_detect, Durations::default());
        assert_eq!(ind.summary.campaign_time_to.len(), 4);
        assert!(
            ind.summary
                .campaign_time_to
                .iter()
                .all(|s| s.reached.count == 0 && s.not_reached == 0)
        );
    }

    #[test]
    fn incident_and_advisory_timings_count_where_they_happened() {
        let w = Window::new(Some(T0), Some(T0 + 2 * DAY), Some(Bucket::Day), T0).unwrap();
        let incident = |detected_at, to_detect, remediated: Option<(i64, i64)>| IncidentTiming {
            detected_at,
            to_detect,
            remediated_at: remediated.map(|r| r.0),
            to_remediate: remediated.map(|r| r.1),
        };
        let events = Events {
            incidents: vec![
                incident(T0 + 100, 40, Some((T0 + 700, 600))),
                incident(T0 + 200, 10, None),
                incident(T0 + DAY + 5, 30, Some((T0 + DAY + 3_605, 3_600))),
                // Detected before the window, remediated in its second day.
                incident(T0 - 50, 1_000, Some((T0 + DAY + 10, DAY + 60))),
            ],
            advisories: vec![
                AdvisoryTiming {
                    known_affected_at: Some(T0 + 50),
                    to_known_affected: Some(2 * DAY),
                    remediated_at: Some(T0 + DAY + 50),
                    to_remediate: Some(3 * DAY),
                },
                AdvisoryTiming {
                    known_affected_at: Some(T0 - 10),
                    to_known_affected: Some(7),
                    remediated_at: None,
                    to_remediate: None,
                },
            ],
            ..Events::default()
        };
        let ind = compute(w, events);
        // Day 1: two detected (10 s and 40 s), one remediated in 600 s.
        assert_eq!(
            ind.series[0].incidents_detected,
            Durations {
                count: 2,
                median: Some(10),
                p90: Some(40)
            }
        );
        assert_eq!(ind.series[0].incidents_remediated.median, Some(600));
        // Day 2: one detected, two remediated (3,600 s and a day and a minute).
        assert_eq!(ind.series[1].incidents_detected.count, 1);
        assert_eq!(
            ind.series[1].incidents_remediated,
            Durations {
                count: 2,
                median: Some(3_600),
                p90: Some(DAY + 60)
            }
        );
        // The window: detect 10, 30, 40 (the incident detected before it is left out).
        assert_eq!(
            ind.summary.incident_time_to_detect,
            Durations {
                count: 3,
                median: Some(30),
                p90: Some(40)
            }
        );
        assert_eq!(ind.summary.incident_time_to_remediate.count, 3);
        assert_eq!(ind.summary.incident_time_to_remediate.median, Some(3_600));
        // One advisory known affected in the window, two days after publication; remediated
        // on day 2 after a three-day exposure.
        assert_eq!(
            ind.summary.advisory_time_to_known_affected,
            Durations {
                count: 1,
                median: Some(2 * DAY),
                p90: Some(2 * DAY)
            }
        );
        assert_eq!(ind.series[1].advisories_remediated.median, Some(3 * DAY));
        assert_eq!(ind.series[0].advisories_remediated.count, 0);
    }

    #[test]
    fn campaign_times_and_a_campaign_that_never_reaches_ninety_percent() {
        // 10 targets: 50% is the 5th success, 90% the 9th, 99% and 100% the 10th.
        assert_eq!(successes_needed(10, 50), 5);
        assert_eq!(successes_needed(10, 90), 9);
        assert_eq!(successes_needed(10, 99), 10);
        assert_eq!(successes_needed(3, 50), 2);
        assert_eq!(successes_needed(0, 50), 1);
        let fast = campaign_times(
            "c-1",
            "fast",
            T0,
            10,
            &[
                (50, Some(T0 + 120)),
                (90, Some(T0 + 300)),
                (99, Some(T0 + 600)),
                (100, Some(T0 + 600)),
            ],
        );
        // Only 8 of 10 succeeded: 50% reached, 90% never.
        let stuck = campaign_times(
            "c-2",
            "stuck",
            T0 + 1_000,
            10,
            &[(50, Some(T0 + 1_400)), (90, None), (99, None), (100, None)],
        );
        assert_eq!(stuck.time_to[0].seconds, Some(400));
        assert_eq!(stuck.time_to[1].seconds, None);
        let w = Window::new(Some(T0), Some(T0 + DAY), None, T0).unwrap();
        let ind = compute(
            w,
            Events {
                campaigns: vec![fast, stuck],
                ..Events::default()
            },
        );
        let share = |p: u32| {
            ind.summary
                .campaign_time_to
                .iter()
                .find(|s| s.percent == p)
                .unwrap()
                .clone()
        };
        assert_eq!(share(50).reached.count, 2);
        assert_eq!(share(50).reached.median, Some(120));
        assert_eq!(share(50).reached.p90, Some(400));
        assert_eq!(share(90).reached.median, Some(300));
        assert_eq!(share(90).not_reached, 1);
        assert_eq!(share(100).reached.count, 1);
        assert_eq!(ind.campaigns.len(), 2);
    }
}
