//! `GET /console/indicators?span=24h|7d|30d`: update success rate, rollback frequency, time to
//! detect and remediate incidents and advisories, and campaigns' time to a share of their
//! targets, as charts and tables, read by the same code as `GET /api/v1/indicators`
//! (`operator::indicators::indicators_for`). The charts are SVG drawn on the server
//! ([`super::chart`]).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use rampart_rollout::indicators::{Bucket, DAY, Durations, Indicators};
use serde::Deserialize;

use super::Console;
use super::access::page_query;
use super::chart::{Chart, Kind, Series, Unit, duration, format_value, svg};
use super::layout::{Section, document, error_page, html_response, query, time};
use super::session::Session;
use crate::helpers::unix_now;
use crate::listen::http::ApiError;
use crate::operator::indicators::{IndicatorsAnswer, IndicatorsQuery, indicators_for};

/// The spans offered: (value of `span`, label, length, bucket).
const SPANS: [(&str, &str, i64, Bucket); 3] = [
    ("24h", "Last 24 hours", DAY, Bucket::Hour),
    ("7d", "Last 7 days", 7 * DAY, Bucket::Hour),
    ("30d", "Last 30 days", 30 * DAY, Bucket::Day),
];
const DEFAULT_SPAN: &str = "7d";

const SUCCEEDED: &str = "#2e7d32";
const FAILED: &str = "#c62828";
const ROLLED_BACK: &str = "#ef6c00";
const FIRST_LINE: &str = "#1565c0";
const SECOND_LINE: &str = "#6a1b9a";

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct SpanQuery {
    #[serde(default)]
    span: String,
}

pub(super) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    q: Result<Query<SpanQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match page_query(q) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let span = if q.span.is_empty() {
        DEFAULT_SPAN
    } else {
        &q.span
    };
    let Some(&(_, _, length, bucket)) = SPANS.iter().find(|(v, ..)| *v == span) else {
        return error_page(
            &ApiError::invalid(format!("span must be 24h, 7d or 30d, not {span:?}")),
            Some(&session),
        );
    };
    let now = unix_now();
    let asked = IndicatorsQuery {
        from: Some(now - length),
        to: Some(now),
        bucket: Some(bucket.as_str().into()),
    };
    let answer = match indicators_for(&console.api, &asked).await {
        Ok(answer) => answer,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let content = html! {
        nav.pager #spans {
            "Window: "
            @for (value, label, ..) in SPANS {
                @if value == span {
                    strong { (label) }
                } @else {
                    a href={ "/console/indicators" (query(&[("span", value)])) } { (label) }
                }
            }
        }
        (body(&answer))
    };
    html_response(
        StatusCode::OK,
        document("Indicators", Section::Indicators, Some(&session), content),
    )
}

/// A duration figure, or a dash when there is nothing to compute it from.
fn secs(v: Option<i64>) -> String {
    v.map(duration).unwrap_or_else(|| "–".into())
}

fn ratio(v: Option<f64>) -> String {
    v.map(|r| format_value(Unit::Ratio, r))
        .unwrap_or_else(|| "–".into())
}

fn durations_row(label: &str, d: &Durations) -> Markup {
    html! {
        tr { th { (label) } td.num { (d.count) } td.num { (secs(d.median)) } td.num { (secs(d.p90)) } }
    }
}

/// Everything below the window picker.
fn body(answer: &IndicatorsAnswer) -> Markup {
    let ind: &Indicators = &answer.indicators;
    let s = &ind.summary;
    let starts: Vec<i64> = ind.series.iter().map(|b| b.start).collect();
    let hourly = ind.window.bucket == Bucket::Hour;
    let per_bucket = |f: &dyn Fn(&rampart_rollout::indicators::BucketFigures) -> Option<f64>| {
        ind.series.iter().map(f).collect::<Vec<_>>()
    };
    let count = |n: u64| Some(n as f64);
    let results = Chart {
        id: "chart-results",
        title: "Update results per bucket",
        kind: Kind::StackedBars,
        unit: Unit::Count,
        hourly,
        starts: &starts,
        series: vec![
            Series {
                name: "succeeded".into(),
                colour: SUCCEEDED,
                values: per_bucket(&|b| count(b.results.succeeded)),
            },
            Series {
                name: "failed".into(),
                colour: FAILED,
                values: per_bucket(&|b| count(b.results.failed)),
            },
            Series {
                name: "rolled back".into(),
                colour: ROLLED_BACK,
                values: per_bucket(&|b| count(b.results.rolled_back)),
            },
        ],
    };
    let rates = Chart {
        id: "chart-rates",
        title: "Success and rollback rate per bucket",
        kind: Kind::Lines,
        unit: Unit::Ratio,
        hourly,
        starts: &starts,
        series: vec![
            Series {
                name: "success rate".into(),
                colour: SUCCEEDED,
                values: per_bucket(&|b| b.success_ratio),
            },
            Series {
                name: "rollback rate".into(),
                colour: ROLLED_BACK,
                values: per_bucket(&|b| b.rollback_ratio),
            },
        ],
    };
    let median = |d: &Durations| d.median.map(|v| v as f64);
    let incidents = Chart {
        id: "chart-incidents",
        title: "Incidents: median time to detect and to remediate",
        kind: Kind::Lines,
        unit: Unit::Seconds,
        hourly,
        starts: &starts,
        series: vec![
            Series {
                name: "time to detect".into(),
                colour: FIRST_LINE,
                values: per_bucket(&|b| median(&b.incidents_detected)),
            },
            Series {
                name: "time to remediate".into(),
                colour: SECOND_LINE,
                values: per_bucket(&|b| median(&b.incidents_remediated)),
            },
        ],
    };
    html! {
        p.note {
            "From " (time(ind.window.from)) " to " (time(ind.window.to)) ", by " (ind.window.bucket.as_str()) "."
            @if answer.truncated.incidents || answer.truncated.advisories {
                " More incidents or advisories than one window reads: the figures cover the newest."
            }
        }
        h2 { "Updates" }
        table #update-summary {
            thead { tr { th.num { "Succeeded" } th.num { "Failed" } th.num { "Rolled back" } th.num { "Success rate" } th.num { "Rollback rate" } } }
            tbody { tr {
                td.num { (s.results.succeeded) } td.num { (s.results.failed) } td.num { (s.results.rolled_back) }
                td.num #success-rate { (ratio(s.success_ratio)) } td.num #rollback-rate { (ratio(s.rollback_ratio)) }
            } }
        }
        (svg(&results))
        (svg(&rates))
        h2 { "Incidents and advisories" }
        table #timings {
            thead { tr { th { "" } th.num { "Count" } th.num { "Median" } th.num { "90th percentile" } } }
            tbody {
                (durations_row("Incidents: time to detect", &s.incident_time_to_detect))
                (durations_row("Incidents: time to remediate", &s.incident_time_to_remediate))
                (durations_row("Advisories: published to known affected", &s.advisory_time_to_known_affected))
                (durations_row("Advisories: published to remediated", &s.advisory_time_to_remediate))
            }
        }
        (svg(&incidents))
        h2 { "Campaigns started in the window" }
        @if ind.campaigns.is_empty() {
            p.note #no-campaigns { "No campaign started in this window." }
        } @else {
            table #campaign-times {
                thead { tr {
                    th { "Campaign" } th { "Started" } th.num { "Targets" }
                    @for t in &s.campaign_time_to { th.num { "Time to " (t.percent) "%" } }
                } }
                tbody {
                    @for c in &ind.campaigns {
                        tr {
                            td { a href={ "/console/campaigns/" (c.id) } { (c.name) } }
                            td { (time(c.started)) }
                            td.num { (c.targeted) }
                            @for t in &c.time_to { td.num { (t.seconds.map(duration).unwrap_or_else(|| "not reached".into())) } }
                        }
                    }
                    tr {
                        th colspan="3" { "Median (campaigns that reached it)" }
                        @for t in &s.campaign_time_to { td.num { (secs(t.reached.median)) } }
                    }
                }
            }
        }
    }
}
