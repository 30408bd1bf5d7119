//! `GET /console/risk`: the fleet's supply-chain risk posture by region, hardware, release, tag
//! or device, most at risk first, read by the same code as `GET /api/v1/risk/posture`
//! (`operator::risk::posture_report`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::Console;
use super::access::page_query;
use super::layout::{Section, document, error_page, html_response, json_text, query};
use super::session::Session;
use crate::operator::risk::posture_report;

/// Rows per page.
const PAGE: i64 = 50;
/// The groupings offered: (value of `by`, label).
const GROUPINGS: [(&str, &str); 5] = [
    ("region", "Region"),
    ("hardware", "Hardware"),
    ("release", "Release"),
    ("tag", "Tag"),
    ("device", "Device"),
];

#[derive(Deserialize, Default)]
pub(super) struct RiskQuery {
    #[serde(default)]
    by: String,
    #[serde(default)]
    offset: Option<i64>,
}

pub(super) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    q: Result<Query<RiskQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match page_query(q) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let by = if q.by.is_empty() { "region" } else { &q.by };
    let offset = q.offset.unwrap_or(0);
    let report = match posture_report(&console.api, Some(by), Some(PAGE), Some(offset)).await {
        Ok(report) => report,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let total = report["total"].as_u64().unwrap_or(0);
    let next = offset.saturating_add(PAGE);
    let content = html! {
        p {
            strong { (report["devices"]) } " devices assessed against "
            strong { (report["advisories"]) } " advisories"
            @if report["devices_not_read"].as_u64().unwrap_or(0) > 0 {
                " (" (report["devices_not_read"]) " devices not read)"
            }
            "."
        }
        nav.pager #groupings {
            "Group by: "
            @for (value, label) in GROUPINGS {
                @if value == by {
                    strong { (label) }
                } @else {
                    a href={ "/console/risk" (query(&[("by", value)])) } { (label) }
                }
            }
        }
        (rows(&report["rows"]))
        div.pager {
            @if offset > 0 {
                a href={ "/console/risk" (query(&[("by", by)])) } { "First page" }
            }
            @if u64::try_from(next).unwrap_or(u64::MAX) < total {
                a href={ "/console/risk" (query(&[("by", by), ("offset", &next.to_string())])) } rel="next" { "Next page" }
            }
        }
    };
    html_response(
        StatusCode::OK,
        document("Risk", Section::Risk, Some(&session), content),
    )
}

fn rows(rows: &Value) -> Markup {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or_default();
    let count = |row: &Value, severity: &str| row["counts"][severity].as_u64().unwrap_or(0);
    html! {
        @if rows.is_empty() {
            p.note #no-risk { "No devices to assess." }
        } @else {
            table #posture {
                thead { tr {
                    th { "Group" } th.num { "Devices" } th.num { "Affected" }
                    th.num { "Critical" } th.num { "High" } th.num { "Medium" } th.num { "Low" }
                    th.num { "Score" } th { "Worst advisory" } th.num { "Fallback affected" }
                } }
                tbody {
                    @for row in rows {
                        tr data-key=(json_text(&row["key"])) {
                            td { @if json_text(&row["key"]).is_empty() { span.note { "(none)" } } @else { (json_text(&row["key"])) } }
                            td.num { (row["devices"]) }
                            td.num { (row["affected_devices"]) }
                            td.num { (count(row, "critical")) }
                            td.num { (count(row, "high")) }
                            td.num { (count(row, "medium")) }
                            td.num { (count(row, "low")) }
                            td.num { (row["score"]) }
                            td {
                                @if let Some(id) = row["worst"]["id"].as_str() {
                                    (id)
                                    @if let Some(rating) = row["worst"]["rating"].as_str() { " " span.badge.bad { (rating) } }
                                }
                            }
                            td.num { (row["fallback_affected"].as_u64().unwrap_or(0)) }
                        }
                    }
                }
            }
        }
    }
}
