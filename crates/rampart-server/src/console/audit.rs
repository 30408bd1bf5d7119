//! `GET /console/audit` (the audit records, newest page first, paged by sequence number),
//! `GET /console/audit?verify=1` (the same page with the whole chain verified: its head and
//! count, or the first bad record) and `GET /console/audit/export?format=` (a download served
//! with the session, so no token is ever in a URL). Auditors and admins only, by the API's rule
//! (`Permission::Audit`); the reads are the management API's (`operator::audit`).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use rampart_audit::AuditRecord;
use serde::Deserialize;

use super::Console;
use super::access::page_query;
use super::layout::{Section, document, error_page, html_response, query, time};
use super::session::Session;
use crate::listen::http::ApiError;
use crate::operator::Permission;
use crate::operator::audit::{ChainCheck, MAX_EXPORT, audit_export, audit_page, verify_chain};

/// Records per page.
const PAGE: i64 = 50;
/// Longest details shown per record.
const MAX_DETAILS_CHARS: usize = 300;

#[derive(Deserialize, Default)]
pub(super) struct AuditQuery {
    /// The first record's sequence number; none: the newest page.
    #[serde(default)]
    from: Option<u64>,
    /// Anything: verify the chain too.
    #[serde(default)]
    verify: Option<String>,
}

/// An audit page's query, for a session whose role may read the audit log.
fn audit_query<T>(session: &Session, q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    session
        .caller()
        .require(Permission::Audit)
        .and_then(|()| page_query(q))
}

pub(super) async fn page(
    State(console): State<Arc<Console>>,
    session: Session,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Response {
    let q = match audit_query(&session, q) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let (records, newest) = match audit_page(&console.api, q.from, PAGE).await {
        Ok(read) => read,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let check = match q.verify {
        None => None,
        Some(_) => match verify_chain(&console.api).await {
            Ok(check) => Some(check),
            Err(e) => return error_page(&e, Some(&session)),
        },
    };
    let first = records.first().map(|r| r.seq);
    let last = records.last().map(|r| r.seq);
    let from = |seq: u64| seq.to_string();
    let content = html! {
        div.cards {
            section #verify {
                h2 { "Chain" }
                (verification(check.as_ref()))
                form method="get" action="/console/audit" {
                    input type="hidden" name="verify" value="1";
                    @if let Some(from) = q.from { input type="hidden" name="from" value=(from); }
                    button type="submit" { "Verify the chain" }
                }
            }
            section #export {
                h2 { "Export" }
                p { "The first " (MAX_EXPORT) " records, as a file: "
                    a #export-jsonl href="/console/audit/export?format=jsonl" download { "JSON Lines" } ", "
                    a href="/console/audit/export?format=csv" download { "CSV" } ", "
                    a href="/console/audit/export?format=json" download { "JSON" } "." }
                p.note { "The JSON Lines file is what " code { "rampart audit verify FILE" } " checks offline." }
            }
        }
        h2 { "Records" }
        p { @match newest { Some(n) => { (n + 1) " records; newest is " (n) "." } None => { "The audit log is empty." } } }
        (record_table(&records))
        div.pager {
            @if let Some(first) = first.filter(|f| *f > 0) {
                a href={ "/console/audit" (query(&[("from", &from(first.saturating_sub(PAGE as u64)))])) } { "Older" }
            }
            @if let (Some(last), Some(newest)) = (last, newest) {
                @if last < newest {
                    a href={ "/console/audit" (query(&[("from", &from(last + 1))])) } rel="next" { "Newer" }
                    a href="/console/audit" { "Newest" }
                }
            }
        }
    };
    html_response(
        StatusCode::OK,
        document("Audit log", Section::Audit, Some(&session), content),
    )
}

fn verification(check: Option<&Result<ChainCheck, String>>) -> Markup {
    html! {
        @match check {
            None => p.note { "Verify re-reads every record and checks each one's hash and link to the one before it" " (and the heads the server signed, when it has its audit key)." },
            Some(Ok(c)) => dl.facts #chain-ok {
                dt { "Result" } dd { span.badge.good { "intact" } }
                dt { "Records" } dd data-field="count" { (c.count) }
                dt { "Head" } dd { code data-field="head" { (c.head) } }
                dt { "Signed heads" } dd { (c.signed_heads) }
            },
            Some(Err(problem)) => dl.facts #chain-bad {
                dt { "Result" } dd { span.badge.bad { "TAMPERED" } }
                dt { "First problem" } dd { (problem) }
            },
        }
    }
}

/// Audit records as a table (also a device's records on its page).
pub(super) fn record_table(records: &[AuditRecord]) -> Markup {
    html! {
        @if records.is_empty() {
            p.note #no-records { "No records." }
        } @else {
            table #audit-records {
                thead { tr { th.num { "Seq" } th { "Time" } th { "Actor" } th { "Action" } th { "Subject" } th { "Details" } } }
                tbody { @for r in records {
                    tr data-seq=(r.seq) {
                        td.num { (r.seq) }
                        td { (time(r.time)) }
                        td { (r.actor) }
                        td { (r.action) }
                        td { (r.subject) }
                        td { pre.text { (bounded(&r.details.to_string())) } }
                    }
                } }
            }
        }
    }
}

fn bounded(text: &str) -> String {
    if text.chars().count() <= MAX_DETAILS_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_DETAILS_CHARS).collect();
    cut.push('…');
    cut
}

#[derive(Deserialize, Default)]
pub(super) struct ExportQuery {
    #[serde(default)]
    format: String,
}

/// `GET /console/audit/export?format=jsonl|csv|json`: a download of the first
/// [`MAX_EXPORT`] records.
pub(super) async fn export(
    State(console): State<Arc<Console>>,
    session: Session,
    q: Result<Query<ExportQuery>, QueryRejection>,
) -> Response {
    let q = match audit_query(&session, q) {
        Ok(q) => q,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let format = if q.format.is_empty() {
        "jsonl"
    } else {
        q.format.as_str()
    };
    let (content_type, body) = match audit_export(&console.api, format, 0, MAX_EXPORT).await {
        Ok(export) => export,
        Err(e) => return error_page(&e, Some(&session)),
    };
    let disposition = match format {
        "csv" => "attachment; filename=\"rampart-audit.csv\"",
        "json" => "attachment; filename=\"rampart-audit.json\"",
        _ => "attachment; filename=\"rampart-audit.jsonl\"",
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static(disposition),
            ),
        ],
        body,
    )
        .into_response()
}
