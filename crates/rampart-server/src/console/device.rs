//! `GET /console/devices/{id}`: one device: inventory, attributes, slots, assignment,
//! attestation, quarantine and recent reports, read by the same code as
//! `GET /api/v1/devices/{id}` (`operator::devices::device_view`); its risk (the advisories of
//! the releases its slots hold), its incidents and, for auditors and admins, its audit records,
//! each read by the management API's code.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use rampart_db::{Quarantine, Report};
use serde_json::Value;

use super::Console;
use super::audit::record_table;
use super::fleet::status_badge;
use super::incidents::incident_table;
use super::layout::{Section, document, error_page, html_response, json_text, query, time};
use super::session::Session;
use crate::listen::http::ApiError;
use crate::operator::Permission;
use crate::operator::audit::{DEVICE_RECORDS_SCANNED, device_records};
use crate::operator::devices::{DeviceView, device_view};
use crate::operator::incidents::{ListQuery, list_incidents};
use crate::operator::risk::{DeviceRisk, device_risk};

/// Longest report detail shown (a device may send up to the report size limit).
const MAX_DETAIL_CHARS: usize = 400;

pub(super) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    Path(id): Path<String>,
) -> Response {
    let view = match device_view(&console.api, &id).await {
        Ok(view) => view,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let quarantine = match console.api.db.quarantine(&id).await {
        Ok(q) => q,
        Err(e) => {
            return error_page(
                &ApiError::from_db("reading a quarantine", e),
                Some(&session),
            );
        }
    };
    let incidents = ListQuery {
        device: Some(id.clone()),
        limit: Some(LISTED as i64),
        ..ListQuery::default()
    };
    let incidents = match list_incidents(&console.api, incidents).await {
        Ok(incidents) => incidents,
        Err(e) => return error_page(&e, Some(&session)),
    };
    // Risk needs the image repository: without one, the page says why instead of failing.
    let risk = device_risk(&console.api, &id).await;
    // Audit records are for the roles that may read the audit log.
    let records = if session.may(Permission::Audit) {
        match device_records(&console.api, &id, LISTED).await {
            Ok(records) => Some(records),
            Err(e) => return error_page(&e, Some(&session)),
        }
    } else {
        None
    };
    let title = format!("Device {}", view.device.id);
    let more = html! {
        h2 { "Risk" }
        (risk_section(&risk))
        h2 { "Incidents" }
        (incident_table(&incidents))
        h2 { "Audit records" }
        @match &records {
            None => p.note #no-audit { "Your role (" (session.role().as_str()) ") may not read the audit log." },
            Some(records) => {
                p.note { "Records about this device among the newest " (DEVICE_RECORDS_SCANNED) " of the log, newest first." }
                (record_table(records))
            }
        }
    };
    html_response(
        StatusCode::OK,
        document(
            &title,
            Section::Fleet,
            Some(&session),
            html! { (content(&view, quarantine.as_ref())) (more) },
        ),
    )
}

/// Incidents and audit records listed on a device's page.
const LISTED: usize = 20;

fn risk_section(risk: &Result<Option<DeviceRisk>, ApiError>) -> Markup {
    html! {
        @match risk {
            Err(e) => p.note #no-risk { (e.detail) },
            Ok(None) => p.note #no-risk { "This device was not assessed." },
            Ok(Some(r)) => {
                p {
                    "Runs "
                    @match &r.release {
                        Some(release) => a href={ "/console/release" (query(&[("target", release)])) } { (release) },
                        None => span.note { "a version no release of the repository has (its exposure is unknown)" },
                    }
                    "; " strong data-field="advisories" { (r.advisories.len()) } " advisories apply."
                }
                @if !r.advisories.is_empty() {
                    table #device-advisories {
                        thead { tr { th { "Advisory" } th { "Severity" } th { "Slot" } } }
                        tbody { @for (id, severity, slot) in &r.advisories {
                            tr {
                                td { (id) }
                                td { (severity.rating.map(|r| r.as_str()).unwrap_or("unscored")) }
                                td { (slot) }
                            }
                        } }
                    }
                }
            }
        }
    }
}

fn content(view: &DeviceView, quarantine: Option<&Quarantine>) -> Markup {
    let d = &view.device;
    let f = &d.facts;
    html! {
        div.cards {
            section #inventory {
                h2 { "Inventory" }
                dl.facts {
                    dt { "Status" } dd { (status_badge(d.revoked, quarantine.is_some())) }
                    dt { "Hardware" } dd #hardware { (f.hardware_id) }
                    dt { "Firmware" } dd { (f.firmware_version) }
                    dt { "Security version" } dd { (f.security_version) }
                    dt { "Region" } dd { (f.region) }
                    dt { "Tags" } dd { (f.tags.join(", ")) }
                    dt { "First seen" } dd { (time(d.first_seen)) }
                    dt { "Last seen" } dd { (time(d.last_seen)) }
                    dt { "Enrolled by" } dd {
                        @match &view.enrolment {
                            Some(e) => { (format!("{:?}", e.by)) @if !e.tenant.is_empty() { " (tenant " (e.tenant) ")" } }
                            None => { "its certificate" }
                        }
                    }
                }
            }
            section #update {
                h2 { "Update" }
                dl.facts {
                    dt { "Update status" } dd { span.badge { (view.update_status) } }
                    @if let Some(a) = &view.assignment {
                        dt { "Assigned release" } dd { @if a.target.is_empty() { span.note { "none (withdrawn)" } } @else { (a.target) } }
                        dt { "Assignment" } dd { (a.assignment_id) }
                        dt { "Update type" } dd { (a.update_type) }
                        dt { "Assigned at" } dd { (time(a.updated)) }
                    } @else {
                        dt { "Assigned release" } dd { span.note { "none" } }
                    }
                }
            }
            section #attestation {
                h2 { "Attestation" }
                @match &view.attestation {
                    None => p.note { "This server does not attest devices." },
                    Some(a) => dl.facts {
                        dt { "Outcome" } dd { (format!("{:?}", a.outcome).to_lowercase()) }
                        @if !a.reason.is_empty() { dt { "Why" } dd { (a.reason) } }
                        dt { "Key enrolled" } dd { (if a.enrolled { "yes" } else { "no" }) }
                        dt { "Verified" } dd { (a.verified_at.map(time).unwrap_or_else(|| "never".into())) }
                        @if let Some(until) = a.fresh_until { dt { "Fresh until" } dd { (time(until)) } }
                        @if !a.release.is_empty() { dt { "Proved release" } dd { (a.release) } }
                    },
                }
            }
            section #quarantine {
                h2 { "Quarantine" }
                @match quarantine {
                    None => p.note { "Not quarantined." },
                    Some(q) => dl.facts {
                        dt { "Since" } dd { (time(q.since)) }
                        dt { "By" } dd { (q.actor) }
                        dt { "Reason" } dd { (q.reason) }
                        @if !q.incident_id.is_empty() { dt { "Incident" } dd { (q.incident_id) } }
                    },
                }
            }
        }
        h2 { "Slots" }
        table #slots {
            thead { tr { th { "Slot" } th { "State" } th { "Firmware" } } }
            tbody {
                @for (name, state) in &f.slots {
                    tr {
                        td { (name) }
                        td { (json_text(state)) }
                        td { (f.slot_versions.as_ref().and_then(|v| v.get(name)).map(String::as_str).unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "Attributes" }
        @if f.attributes.is_empty() {
            p.note { "The device reports no attributes." }
        } @else {
            table #attributes {
                thead { tr { th { "Name" } th { "Value" } } }
                tbody {
                    @for (name, value) in &f.attributes {
                        tr { td { (name) } td { (json_text(value)) } }
                    }
                }
            }
        }
        h2 { "Recent reports" }
        (reports(&view.recent_reports))
    }
}

fn reports(reports: &[Report]) -> Markup {
    html! {
        @if reports.is_empty() {
            p.note { "No reports yet." }
        } @else {
            table #reports {
                thead { tr { th { "Time" } th { "Status" } th { "Assignment" } th.num { "Progress" } th { "Details" } } }
                tbody {
                    @for r in reports {
                        tr {
                            td { (time(r.created)) }
                            td { (r.status) }
                            td { (r.assignment) }
                            td.num { (r.progress) "%" }
                            td { pre.text { (bounded(&report_detail(&r.details), MAX_DETAIL_CHARS)) } }
                        }
                    }
                }
            }
        }
    }
}

/// What a report says for a person: its message (and reason code) if it has one, else the
/// details as JSON.
fn report_detail(details: &Value) -> String {
    let field = |name: &str| details.get(name).and_then(Value::as_str);
    match (field("message"), field("reason")) {
        (Some(message), Some(reason)) => format!("{reason}: {message}"),
        (Some(message), None) => message.to_owned(),
        _ if details.as_object().is_some_and(|o| o.is_empty()) => String::new(),
        _ => details.to_string(),
    }
}

/// `text` cut to `max` characters, marked when cut.
fn bounded(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_details_read_as_their_message() {
        assert_eq!(report_detail(&json!({"message": "ok"})), "ok");
        assert_eq!(
            report_detail(&json!({"message": "boot failed", "reason": "health_check_failed"})),
            "health_check_failed: boot failed"
        );
        assert_eq!(report_detail(&json!({})), "");
        assert_eq!(report_detail(&json!({"x": 1})), r#"{"x":1}"#);
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("abc", 3), "abc");
    }
}
