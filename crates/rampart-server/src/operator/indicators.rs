//! Indicators from stored events (issue 18):
//!
//! * `GET /api/v1/indicators?from&to&bucket` (read): update success rate, rollback frequency,
//!   time to 50/90/99/100% of each campaign started in the window, and time to detect and to
//!   remediate per incident and per advisory, as a series per hour or day and as summary
//!   figures (median, 90th percentile). The window is bounded (`rampart_rollout::indicators`:
//!   at most 366 days and 744 buckets); a window that breaks a bound is a 422 saying which.
//! * the `rampart_indicator_*` gauges of `/metrics` ([`IndicatorGauges`]): the same
//!   computation over the last 24 hours, cached for [`GAUGE_CACHE_SECS`] so a scrape storm
//!   costs one computation.
//!
//! [`compute`] is the one computation both (and the console's indicators page) use: SQL
//! aggregates and bounded reads (`rampart_db`'s `indicators`), then the pure arithmetic.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::{Db, DbError};
use rampart_rollout::indicators::{
    AdvisoryTiming, Bucket, BucketCount, Events, IncidentTiming, Indicators, RESULT_STATUSES,
    Window, campaign_times,
};
use rampart_rollout::report::{SHARES, successes_needed};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::engines::incidents::lifecycle_of;
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, db_error, json_response};

use super::{ManagementApi, Permission};

/// How long `/metrics` reuses its indicators before computing them again.
pub(crate) const GAUGE_CACHE_SECS: i64 = 30;
/// The window of the `/metrics` gauges.
pub(crate) const GAUGE_WINDOW_SECS: i64 = rampart_rollout::indicators::DAY;

/// The indicators of a window, and whether a bounded read left rows out.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct IndicatorsAnswer {
    #[serde(flatten)]
    pub(crate) indicators: Indicators,
    /// Reads that hit their bound (the figures then cover the newest rows only).
    pub(crate) truncated: Truncated,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Truncated {
    pub(crate) incidents: bool,
    pub(crate) advisories: bool,
}

/// The indicators of `window`, from storage.
pub(crate) async fn compute(db: &Db, window: Window) -> Result<IndicatorsAnswer, DbError> {
    let (from, to) = (window.from, window.to);
    let report_counts = db
        .report_counts(from, to, window.bucket.secs(), &RESULT_STATUSES)
        .await?
        .into_iter()
        .map(|c| BucketCount {
            bucket: c.bucket,
            status: c.status,
            n: c.n,
        })
        .collect();
    let (incidents, incidents_more) = db.incidents_in_window(from, to).await?;
    let incidents = incidents
        .iter()
        .map(|i| {
            let timings = lifecycle_of(i).timings();
            IncidentTiming {
                detected_at: i.detected_at,
                to_detect: timings.to_detect,
                remediated_at: i.recovered_at,
                to_remediate: timings.to_recover,
            }
        })
        .collect();
    let (exposures, exposures_more) = db.exposures_in_window(from, to).await?;
    let advisories = exposures
        .iter()
        .map(|r| {
            let e = &r.exposure;
            AdvisoryTiming {
                known_affected_at: e.first_affected_at,
                to_known_affected: e
                    .published
                    .zip(e.first_affected_at)
                    .map(|(published, known)| (known - published).max(0)),
                remediated_at: e.remediated_at,
                to_remediate: e.window_secs(),
            }
        })
        .collect();
    let mut campaigns = Vec::new();
    for c in db.campaigns_in_window(from, to).await? {
        let started = c.state.get("started").and_then(serde_json::Value::as_i64);
        let Some(started) = started.filter(|&s| window.contains(s)) else {
            continue;
        };
        let targeted = db.campaign_targeted(&c.id).await?;
        let ks: Vec<u64> = SHARES
            .iter()
            .map(|&p| successes_needed(targeted, p))
            .collect();
        let times = db.campaign_kth_successes(&c.id, &ks).await?;
        let kth: Vec<(u32, Option<i64>)> = SHARES.iter().copied().zip(times).collect();
        campaigns.push(campaign_times(&c.id, &c.name, started, targeted, &kth));
    }
    Ok(IndicatorsAnswer {
        indicators: rampart_rollout::indicators::compute(
            window,
            Events {
                report_counts,
                incidents,
                advisories,
                campaigns,
            },
        ),
        truncated: Truncated {
            incidents: incidents_more,
            advisories: exposures_more,
        },
    })
}

/// The query of `GET /api/v1/indicators` (and of the console's page).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct IndicatorsQuery {
    pub(crate) from: Option<i64>,
    pub(crate) to: Option<i64>,
    pub(crate) bucket: Option<String>,
}

/// 422 with what to change.
fn bad_window(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_window", detail)
}

/// The window a query asks for, at `now` (422 for one that breaks a bound).
pub(crate) fn window_of(query: &IndicatorsQuery, now: i64) -> Result<Window, ApiError> {
    let bucket = match query.bucket.as_deref() {
        None | Some("") => None,
        Some(b) => Some(
            Bucket::parse(b)
                .ok_or_else(|| bad_window(format!("bucket must be hour or day, not {b:?}")))?,
        ),
    };
    Window::new(query.from, query.to, bucket, now).map_err(|e| bad_window(e.to_string()))
}

/// The indicators a query asks for, read with the API's permission rule already applied.
pub(crate) async fn indicators_for(
    api: &ManagementApi,
    query: &IndicatorsQuery,
) -> Result<IndicatorsAnswer, ApiError> {
    let window = window_of(query, unix_now())?;
    compute(&api.db, window)
        .await
        .map_err(|e| db_error("computing indicators", e))
}

pub(super) async fn get_indicators(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<IndicatorsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(query) = query.map_err(|e| {
        bad_window(format!(
            "query: {}; this route takes from and to (Unix seconds) and bucket (hour or day)",
            e.body_text()
        ))
    })?;
    let answer = indicators_for(&api, &query).await?;
    Ok(json_response(StatusCode::OK, &answer))
}

/// The `/metrics` gauges: the last 24 hours' indicators, computed at most once per
/// [`GAUGE_CACHE_SECS`] (a scrape in between reuses them; concurrent scrapes wait for one
/// computation).
pub(crate) struct IndicatorGauges {
    db: Db,
    cache: Mutex<Option<(i64, Indicators)>>,
}

impl IndicatorGauges {
    pub(crate) fn new(db: Db) -> IndicatorGauges {
        IndicatorGauges {
            db,
            cache: Mutex::new(None),
        }
    }

    /// The gauges' text at `now`; nothing (and a log line) if storage failed.
    pub(crate) async fn render(&self, now: i64) -> String {
        let mut cache = self.cache.lock().await;
        let fresh = matches!(&*cache, Some((at, _)) if now.saturating_sub(*at) < GAUGE_CACHE_SECS && *at <= now);
        if !fresh {
            let window = Window::trailing(now, GAUGE_WINDOW_SECS, Bucket::Day);
            match compute(&self.db, window).await {
                Ok(answer) => *cache = Some((now, answer.indicators)),
                Err(e) => {
                    crate::observe::log::error(
                        "computing the indicator gauges failed",
                        serde_json::json!({"error": e.to_string()}),
                    );
                    return String::new();
                }
            }
        }
        cache
            .as_ref()
            .map(|(_, indicators)| gauges_text(indicators))
            .unwrap_or_default()
    }
}

/// The Prometheus text of the indicators' gauges. A figure with nothing to compute it from (a
/// ratio without results, a median without incidents) is left out rather than shown as 0.
pub(crate) fn gauges_text(ind: &Indicators) -> String {
    let s = &ind.summary;
    let mut out = String::new();
    let family = |out: &mut String, name: &str, help: &str, lines: &[(String, Option<f64>)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in lines {
            if let Some(v) = value {
                if labels.is_empty() {
                    let _ = writeln!(out, "{name} {v}");
                } else {
                    let _ = writeln!(out, "{name}{{{labels}}} {v}");
                }
            }
        }
    };
    family(
        &mut out,
        "rampart_indicator_update_results_24h",
        "Update results reported in the last 24 hours, by result (installed, failed including verification failures, rolled back).",
        &[
            (
                "result=\"succeeded\"".into(),
                Some(s.results.succeeded as f64),
            ),
            ("result=\"failed\"".into(), Some(s.results.failed as f64)),
            (
                "result=\"rolled_back\"".into(),
                Some(s.results.rolled_back as f64),
            ),
        ],
    );
    family(
        &mut out,
        "rampart_indicator_update_success_ratio_24h",
        "Successful installs among the update results of the last 24 hours (0 to 1; absent without results).",
        &[(String::new(), s.success_ratio)],
    );
    family(
        &mut out,
        "rampart_indicator_update_rollback_ratio_24h",
        "Rollbacks among the update results of the last 24 hours (0 to 1; absent without results).",
        &[(String::new(), s.rollback_ratio)],
    );
    let quantiles = |d: &rampart_rollout::indicators::Durations| {
        vec![
            ("quantile=\"0.5\"".to_string(), d.median.map(|v| v as f64)),
            ("quantile=\"0.9\"".to_string(), d.p90.map(|v| v as f64)),
        ]
    };
    family(
        &mut out,
        "rampart_indicator_incident_time_to_detect_seconds_24h",
        "Time to detect (first signal to detection) of the incidents detected in the last 24 hours, median and 90th percentile.",
        &quantiles(&s.incident_time_to_detect),
    );
    family(
        &mut out,
        "rampart_indicator_incident_time_to_remediate_seconds_24h",
        "Time to remediate (detection to recovery) of the incidents recovered in the last 24 hours, median and 90th percentile.",
        &quantiles(&s.incident_time_to_remediate),
    );
    family(
        &mut out,
        "rampart_indicator_advisory_time_to_remediate_seconds_24h",
        "Exposure window (publication to the fleet remediated) of the advisories remediated in the last 24 hours, median and 90th percentile.",
        &quantiles(&s.advisory_time_to_remediate),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_db::Report;

    async fn installed(db: &Db, id: &str, created: i64) {
        db.insert_report(&Report {
            id: id.into(),
            device_id: "dev-1".into(),
            assignment: "a-1".into(),
            status: "installed".into(),
            progress: 0,
            details: serde_json::json!({}),
            created,
        })
        .await
        .unwrap();
    }

    fn succeeded(text: &str) -> Option<&str> {
        text.lines().find_map(|l| {
            l.strip_prefix("rampart_indicator_update_results_24h{result=\"succeeded\"} ")
        })
    }

    #[tokio::test]
    async fn the_gauges_are_cached_for_a_short_interval_then_computed_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("i.db").display()))
            .await
            .unwrap();
        db.register_if_new("dev-1", 1_000).await.unwrap();
        let now = 2_000_000;
        installed(&db, "r1", now - 60).await;
        let gauges = IndicatorGauges::new(db.clone());
        let first = gauges.render(now).await;
        assert_eq!(succeeded(&first), Some("1"), "{first}");
        assert!(
            first.contains("rampart_indicator_update_success_ratio_24h 1\n"),
            "{first}"
        );
        // No incident: the timing gauges are declared but carry no sample.
        assert!(!first.contains("rampart_indicator_incident_time_to_detect_seconds_24h{"));
        installed(&db, "r2", now - 30).await;
        // Within the cache interval the stored answer is reused ...
        let cached = gauges.render(now + GAUGE_CACHE_SECS - 1).await;
        assert_eq!(succeeded(&cached), Some("1"), "{cached}");
        // ... after it, the new report counts.
        let fresh = gauges.render(now + GAUGE_CACHE_SECS).await;
        assert_eq!(succeeded(&fresh), Some("2"), "{fresh}");
        // Reports older than 24 hours fall out.
        let later = gauges.render(now + GAUGE_WINDOW_SECS).await;
        assert_eq!(succeeded(&later), Some("0"), "{later}");
    }
}
