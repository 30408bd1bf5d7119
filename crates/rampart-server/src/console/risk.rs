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
use super::layout::{Section, document, error_page, html_response, json_text, path_segment, query};
use super::session::Session;
use crate::operator::Permission;
use crate::operator::releases::release_catalog;
use crate::operator::risk::{FleetAdvisory, fleet_advisories, posture_report};
use crate::operator::risk_remediate::{RemediateRequest, remediate_advisory};

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
    let affecting = match fleet_advisories(&console.api).await {
        Ok(advisories) => advisories,
        Err(e) => return error_page(&e, Some(&session)),
    };
    // The releases a remediation may install, for the roles that may remediate.
    let releases = if session.may(Permission::Operate) && !affecting.is_empty() {
        match release_catalog(&console.api).await {
            Ok(catalog) => Some(
                catalog
                    .releases
                    .into_iter()
                    .filter(|r| r.release.is_some())
                    .map(|r| r.target)
                    .collect::<Vec<_>>(),
            ),
            Err(e) => return error_page(&e, Some(&session)),
        }
    } else {
        None
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
        h2 { "Advisories affecting the fleet" }
        (advisories(&affecting, releases.as_deref(), &session))
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

/// Advisories listed (most severe first); the rest are counted.
const ADVISORIES_SHOWN: usize = 100;

fn advisories(list: &[FleetAdvisory], releases: Option<&[String]>, session: &Session) -> Markup {
    html! {
        @if list.is_empty() {
            p.note #no-advisories { "No imported advisory affects a release the fleet runs or keeps." }
        } @else {
            @if list.len() > ADVISORIES_SHOWN {
                p.note { "The " (ADVISORIES_SHOWN) " most severe of " (list.len()) " advisories." }
            }
            @if releases.is_none() {
                p.note #no-remediation { "Your role (" (session.role().as_str()) ") may look at advisories; an operator remediates them." }
            }
            table #advisories {
                thead { tr {
                    th { "Advisory" } th { "Severity" } th.num { "Affected devices" } th.num { "Inactive slot only" }
                    th { "Affected releases" } th { "Fixed in" }
                    @if releases.is_some() { th { "Remediate" } }
                } }
                tbody { @for a in list.iter().take(ADVISORIES_SHOWN) {
                    tr data-advisory=(a.id) {
                        td { (a.id) }
                        td {
                            @match a.severity.rating {
                                Some(rating) => { span.badge.bad { (rating.as_str()) } @if let Some(score) = a.severity.score { " " (format!("{score:.1}")) } }
                                None => span.note { "unscored" },
                            }
                        }
                        td.num { (a.affected) }
                        td.num { (a.fallback_only) }
                        td { (a.releases.join(", ")) }
                        td { (a.fixed.join(", ")) }
                        @if let Some(releases) = releases {
                            td {
                                form.remediate method="post" action={ "/console/risk/advisories/" (path_segment(&a.id)) "/remediate" } {
                                    input type="hidden" name="csrf" value=(session.csrf());
                                    select name="release" required aria-label="Fixed release" {
                                        @for r in releases { option value=(r) { (r) } }
                                    }
                                    label { input type="checkbox" name="start" value="on"; " start now" }
                                    button type="submit" { "Create campaign" }
                                }
                            }
                        }
                    }
                } }
            }
        }
    }
}

/// The remediation form.
#[derive(Deserialize)]
pub(super) struct RemediateForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    release: String,
    #[serde(default)]
    start: Option<String>,
}

impl super::session::HasCsrf for RemediateForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/risk/advisories/{id}/remediate`: the remediation campaign, through the API's
/// own remediation code, then to the new campaign's page.
pub(super) async fn remediate(
    State(console): State<Arc<Console>>,
    headers: axum::http::HeaderMap,
    axum::extract::Path(advisory): axum::extract::Path<String>,
    body: axum::body::Body,
) -> Response {
    use axum::response::IntoResponse as _;
    let (session, form) = match console.form_session::<RemediateForm>(&headers, body).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let request = RemediateRequest {
        release: form.release,
        start: form.start.is_some(),
        ..RemediateRequest::default()
    };
    match remediate_advisory(&console.api, session.caller(), &advisory, request).await {
        Ok(created) => match created["id"].as_str() {
            Some(id) => {
                axum::response::Redirect::to(&format!("/console/campaigns/{id}")).into_response()
            }
            None => error_page(&crate::listen::http::ApiError::internal(), Some(&session)),
        },
        Err(e) => error_page(&e, Some(&session)),
    }
}
