//! `GET /console/incidents` (newest first, filtered by state) and `/console/incidents/{id}` (its
//! timeline, devices, evidence with custody, and actions), with the operator's moves as forms:
//! `POST /console/incidents/{id}/{act}` (acknowledge, contain, collect evidence, move forward,
//! close) and `POST /console/incident-actions/{id}/{decision}` (approve or reject a held
//! action). Every read and every move goes through the management API's code
//! (`operator::incidents`, `operator::evidence`), which refuses a role that may not.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use rampart_db::{Incident, IncidentAction};
use rampart_incident::model::IncidentState;
use serde::Deserialize;
use serde_json::Value;

use super::Console;
use super::access::page_query;
use super::layout::{Section, document, error_page, html_response, json_text, query, time};
use super::session::{HasCsrf, Session};
use crate::engines::incidents::IncidentView;
use crate::listen::http::ApiError;
use crate::operator::Permission;
use crate::operator::evidence::evidence_listing;
use crate::operator::incidents::{
    IncidentAct, ListQuery, act, decide_action, incident_view, list_incidents, parse_state,
};

/// Incidents per page.
const PAGE: i64 = 50;
/// The states the filter offers.
const STATES: [&str; 5] = ["detected", "contained", "eradicated", "recovered", "closed"];
/// The states an operator may move an incident forward to from the page.
const MOVES: [&str; 3] = ["contained", "eradicated", "recovered"];

#[derive(Deserialize, Default)]
pub(super) struct IncidentsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    offset: Option<i64>,
}

pub(super) async fn list(
    State(console): State<Arc<Console>>,
    session: Session,
    q: Result<Query<IncidentsQuery>, QueryRejection>,
) -> Response {
    let q = match page_query(q) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let offset = q.offset.unwrap_or(0);
    let listing = ListQuery {
        state: (!q.state.is_empty()).then(|| q.state.clone()),
        // One more than a page: whether there is a next page.
        limit: Some(PAGE + 1),
        offset: Some(offset),
        ..ListQuery::default()
    };
    let mut incidents = match list_incidents(&console.api, listing).await {
        Ok(incidents) => incidents,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let more = incidents.len() as i64 > PAGE;
    incidents.truncate(PAGE as usize);
    let content = html! {
        form.filters method="get" action="/console/incidents" data-autosubmit {
            label {
                "State"
                select name="state" {
                    option value="" { "any" }
                    @for state in STATES {
                        option value=(state) selected[q.state == state] { (state) }
                    }
                }
            }
            button type="submit" { "Filter" }
        }
        (incident_table(&incidents))
        div.pager {
            @if offset > 0 {
                a href={ "/console/incidents" (query(&[("state", &q.state)])) } { "First page" }
            }
            @if more {
                a href={ "/console/incidents" (query(&[("state", &q.state), ("offset", &(offset + PAGE).to_string())])) } rel="next" { "Next page" }
            }
        }
    };
    html_response(
        StatusCode::OK,
        document("Incidents", Section::Incidents, Some(&session), content),
    )
}

/// Incidents as a table, each a link to its page (also on a device's page).
pub(super) fn incident_table(incidents: &[Incident]) -> Markup {
    html! {
        @if incidents.is_empty() {
            p.note #no-incidents { "No incidents." }
        } @else {
            table #incidents {
                thead { tr {
                    th { "Incident" } th { "Severity" } th { "State" } th { "Detector" }
                    th { "Detected" } th { "Acknowledged" }
                } }
                tbody {
                    @for i in incidents {
                        tr data-incident=(i.id) {
                            td { a href={ "/console/incidents/" (i.id) } { (i.title) } }
                            td { (severity_badge(&i.severity)) }
                            td { span.badge data-state=(i.state) { (i.state) } }
                            td { (i.detector) }
                            td { (time(i.detected_at)) }
                            td { (i.acknowledged_at.map(time).unwrap_or_else(|| "not yet".into())) }
                        }
                    }
                }
            }
        }
    }
}

fn severity_badge(severity: &str) -> Markup {
    let class = match severity {
        "critical" | "high" => "bad",
        "medium" => "warn",
        _ => "",
    };
    html! { span.badge.(class) { (severity) } }
}

pub(super) async fn detail(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let view = match incident_view(&console.api, &id).await {
        Ok(view) => view,
        Err(e) => return error_page(&e, Some(&session)),
    };
    // The server may keep no evidence: the page says so instead of failing.
    let evidence = evidence_listing(&console.api, &id).await;
    let title = format!("Incident {}", view.incident.title);
    html_response(
        StatusCode::OK,
        document(
            &title,
            Section::Incidents,
            Some(&session),
            content(&view, &evidence, &session),
        ),
    )
}

fn content(view: &IncidentView, evidence: &Result<Value, ApiError>, session: &Session) -> Markup {
    let i = &view.incident;
    let t = &view.timings;
    let secs = |s: Option<i64>| {
        s.map(|s| format!("{s} s"))
            .unwrap_or_else(|| "not yet".into())
    };
    html! {
        div.cards {
            section #summary {
                h2 { "Incident" }
                dl.facts {
                    dt { "Id" } dd { (i.id) }
                    dt { "State" } dd { span.badge data-state=(i.state) #state { (i.state) } }
                    dt { "Severity" } dd { (severity_badge(&i.severity)) }
                    dt { "Detector" } dd { (i.detector) }
                    dt { "Cause" } dd { (i.cause) }
                    @if !i.release.is_empty() { dt { "Release" } dd { (i.release) } }
                    dt { "Opened by" } dd { (i.opened_by) }
                    dt { "Acknowledged" } dd #acknowledged {
                        @match (&i.acknowledged_at, &i.acknowledged_by) {
                            (Some(at), by) => { (time(*at)) @if let Some(by) = by { " by " (by) } }
                            (None, _) => { "not yet" }
                        }
                    }
                }
            }
            section #timings {
                h2 { "Timings" }
                dl.facts {
                    dt { "First signal" } dd { (time(i.first_signal_at)) }
                    dt { "Detected" } dd { (time(i.detected_at)) }
                    dt { "Time to detect" } dd { (t.to_detect) " s" }
                    dt { "To acknowledge" } dd { (secs(t.to_acknowledge)) }
                    dt { "To contain" } dd { (secs(t.to_contain)) }
                    dt { "To recover" } dd { (secs(t.to_recover)) }
                    dt { "To close" } dd { (secs(t.to_close)) }
                }
            }
        }
        h2 { "Actions" }
        (operator_forms(i, session))
        h2 { "Devices" }
        @if view.devices.is_empty() {
            p.note { "No devices." }
        } @else {
            table #incident-devices {
                thead { tr { th { "Device" } th { "Joined" } th { "First signal" } th { "Why" } } }
                tbody { @for d in &view.devices {
                    tr {
                        td { a href={ "/console/devices/" (d.device_id) } { (d.device_id) } }
                        td { (time(d.joined_at)) }
                        td { (time(d.first_signal_at)) }
                        td { (d.reason) }
                    }
                } }
            }
        }
        h2 { "Playbook actions" }
        (actions(&view.actions, session))
        h2 { "Evidence" }
        (evidence_tables(evidence))
        h2 { "Timeline" }
        table #timeline {
            thead { tr { th { "Time" } th { "What" } th { "Who" } th { "Device" } th { "Detail" } th.num { "Audit record" } } }
            tbody { @for e in &view.timeline {
                tr {
                    td { (time(e.at)) }
                    td { (e.kind) }
                    td { (e.actor) }
                    td { (e.device_id) }
                    td { pre.text { (e.detail.to_string()) } }
                    td.num { (e.audit_seq) }
                }
            } }
        }
    }
}

/// The operator's moves the incident's state allows, for roles that may make them.
fn operator_forms(i: &Incident, session: &Session) -> Markup {
    let state = IncidentState::parse(&i.state).unwrap_or(IncidentState::Detected);
    let closed = state == IncidentState::Closed;
    let form = |act: &str, label: &str, note: bool| {
        html! {
            form method="post" action={ "/console/incidents/" (i.id) "/" (act) } {
                input type="hidden" name="csrf" value=(session.csrf());
                @if note { input type="text" name="note" placeholder="note (optional)" maxlength=(MAX_NOTE); }
                button type="submit" name="act" value=(act) { (label) }
            }
        }
    };
    html! {
        @if !session.may(Permission::Operate) {
            p.note #no-actions { "Your role (" (session.role().as_str()) ") may look at incidents but not act on them." }
        } @else if closed {
            p.note #no-actions { "The incident is closed." }
        } @else {
            div.actions #incident-actions {
                @if i.acknowledged_at.is_none() { (form("ack", "Acknowledge", false)) }
                (form("contain", "Quarantine its devices", false))
                (form("collect", "Collect evidence", false))
                @for to in MOVES {
                    @if IncidentState::parse(to).is_some_and(|to| to > state) {
                        (form(to, &format!("Mark {to}"), true))
                    }
                }
                (form("close", "Close", true))
            }
        }
    }
}

fn actions(list: &[IncidentAction], session: &Session) -> Markup {
    html! {
        @if list.is_empty() {
            p.note { "No playbook actions." }
        } @else {
            table #incident-action-list {
                thead { tr { th { "Action" } th { "Device" } th { "State" } th { "Approval" } th { "Requested" } th { "Decided" } th { "Detail" } } }
                tbody { @for a in list {
                    tr data-action=(a.id) {
                        td { (a.action) }
                        td { (a.device_id) }
                        td { span.badge { (a.state) } }
                        td {
                            @if a.state == "pending_approval" && session.may(Permission::Operate) {
                                div.actions {
                                    @for (decision, label) in [("approve", "Approve"), ("reject", "Reject")] {
                                        form method="post" action={ "/console/incident-actions/" (a.id) "/" (decision) } {
                                            input type="hidden" name="csrf" value=(session.csrf());
                                            button type="submit" class=[(decision == "reject").then_some("danger")] { (label) }
                                        }
                                    }
                                }
                            } @else if !a.required_role.is_empty() {
                                "by " (a.required_role)
                            }
                        }
                        td { (time(a.requested_at)) }
                        td { (a.decided_at.map(time).unwrap_or_default()) @if let Some(by) = &a.decided_by { " by " (by) } }
                        td { pre.text { (a.detail.to_string()) } }
                    }
                } }
            }
        }
    }
}

fn evidence_tables(evidence: &Result<Value, ApiError>) -> Markup {
    html! {
        @match evidence {
            Err(e) => p.note #no-evidence { (e.detail) },
            Ok(v) => {
                @let requests = v["requests"].as_array().map(Vec::as_slice).unwrap_or_default();
                @let bundles = v["bundles"].as_array().map(Vec::as_slice).unwrap_or_default();
                @if requests.is_empty() {
                    p.note #no-evidence { "No evidence was requested." }
                } @else {
                    table #evidence-requests {
                        thead { tr { th { "Request" } th { "Device" } th { "State" } th.num { "Bytes" } th { "Requested" } th { "Why refused" } } }
                        tbody { @for r in requests {
                            tr {
                                td { (json_text(&r["id"])) }
                                td { (json_text(&r["device_id"])) }
                                td { (json_text(&r["state"])) }
                                td.num { (r["received"]) }
                                td { (time(r["requested_at"].as_i64().unwrap_or(0))) }
                                td { (json_text(&r["reason"])) }
                            }
                        } }
                    }
                }
                @if !bundles.is_empty() {
                    h3 { "Stored bundles and their custody" }
                    table #evidence-bundles {
                        thead { tr { th { "Device" } th { "SHA-256" } th.num { "Bytes" } th { "TPM quote" } th { "Stored" } th.num { "Audit record" } th { "Transparency log" } } }
                        tbody { @for b in bundles {
                            tr {
                                td { (json_text(&b["device_id"])) }
                                td { code { (json_text(&b["sha256"])) } }
                                td.num { (b["length"]) }
                                td { (if b["quote_checked"].as_bool() == Some(true) { "checked" } else { "none" }) }
                                td { (time(b["stored_at"].as_i64().unwrap_or(0))) }
                                td.num { (b["audit_seq"]) }
                                td { @if b["anchored"].as_bool() == Some(true) { "entry " (b["log_index"]) } @else { "not anchored" } }
                            }
                        } }
                    }
                    p.note { "The chain-of-custody export (for " code { "rampart incident verify-export" } ") is " code { "rampart incident export" } ", for auditors." }
                }
            }
        }
    }
}

/// Longest note an operator adds to a move.
const MAX_NOTE: usize = 1000;

#[derive(Deserialize)]
pub(super) struct MoveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    note: String,
}

impl HasCsrf for MoveForm {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /console/incidents/{id}/{act}`: the move, then back to the incident's page.
pub(super) async fn action(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
    body: Body,
) -> Response {
    let (session, form) = match console.form_session::<MoveForm>(&headers, body).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let what = match name.as_str() {
        "ack" => Ok(IncidentAct::Acknowledge),
        "contain" => Ok(IncidentAct::Contain),
        "collect" => Ok(IncidentAct::CollectEvidence),
        "close" => Ok(IncidentAct::Move {
            to: IncidentState::Closed,
            note: form.note,
        }),
        other => parse_state(other).map(|to| IncidentAct::Move {
            to,
            note: form.note,
        }),
    };
    let done = match what {
        Ok(what) => act(&console.api, session.caller(), &id, what).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => Redirect::to(&format!("/console/incidents/{id}")).into_response(),
        Err(e) => error_page(&e, Some(&session)),
    }
}

/// `POST /console/incident-actions/{id}/{decision}`: approve or reject, then back to the
/// incident's page.
pub(super) async fn decide(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, decision)): Path<(String, String)>,
    body: Body,
) -> Response {
    let (session, _) = match console
        .form_session::<super::session::CsrfOnly>(&headers, body)
        .await
    {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            let e = ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "a held action is approved or rejected; use the buttons on the incident's page",
            );
            return error_page(&e, Some(&session));
        }
    };
    match decide_action(&console.api, session.caller(), &id, approve).await {
        Ok(action) => {
            Redirect::to(&format!("/console/incidents/{}", action.incident_id)).into_response()
        }
        Err(e) => error_page(&e, Some(&session)),
    }
}
