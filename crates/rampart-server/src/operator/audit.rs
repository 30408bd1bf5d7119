//! The audit routes of the management API: the newest signed audit head and signing one on
//! request (the anchoring itself is `engines::audit_anchor`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::engines::audit_anchor::{AnchorError, PAGE, SignedHead, newest_signed_by};
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, db_error, json_response};
use crate::operator::{ManagementApi, Permission};

fn head_json(head: &SignedHead, public_key: Option<String>) -> serde_json::Value {
    json!({
        "size": head.head.size,
        "hash": hex::encode(head.head.hash),
        "time": head.head.time,
        "note": head.note,
        "log_index": head.log_index,
        "public_key": public_key,
    })
}

fn anchor_error(e: AnchorError) -> ApiError {
    match e {
        AnchorError::Db(e) => ApiError::from_db("anchoring the audit log", e),
        AnchorError::Tampered(_) => {
            ApiError::new(StatusCode::CONFLICT, "audit_log_tampered", e.to_string())
        }
        AnchorError::Sign(_) => ApiError::internal(),
    }
}

/// `GET /api/v1/audit/head`: the newest signed head (admin, auditor).
pub(crate) async fn get_head(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Audit).await?;
    let none = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_audit_head",
            "no audit head has been signed yet: start the server with --audit-key FILE, or sign one with POST /api/v1/audit/anchor",
        )
    };
    let unreadable = |e: String| {
        ApiError::new(
            StatusCode::CONFLICT,
            "audit_head_unreadable",
            format!(
                "the newest stored audit head does not parse ({e}); run `rampart audit verify --db URL --anchor-key KEY`"
            ),
        )
    };
    let read_error = |e| ApiError::from_db("reading the audit heads", e);
    let (head, public_key) = match &api.audit_anchor {
        // With the audit key at hand, only a head it signed is served.
        Some(anchor) => {
            let heads = api.db.audit_heads(PAGE).await.map_err(read_error)?;
            let key = anchor.config.key.verifier();
            let head = newest_signed_by(&heads, &key).ok_or_else(none)?;
            (head, Some(anchor.public_key()))
        }
        None => {
            let stored = api
                .db
                .latest_audit_head()
                .await
                .map_err(read_error)?
                .ok_or_else(none)?;
            let note = rampart_log::note::Note::parse(stored.note.as_bytes())
                .map_err(|e| unreadable(e.to_string()))?;
            let head = SignedHead {
                head: rampart_audit::AuditHead::parse_text(&note.text)
                    .map_err(|e| unreadable(e.to_string()))?,
                note: stored.note,
                log_index: stored.log_index,
            };
            (head, None)
        }
    };
    Ok(json_response(StatusCode::OK, &head_json(&head, public_key)))
}

/// `POST /api/v1/audit/anchor`: records the request, then signs a head covering it (admin,
/// auditor).
pub(crate) async fn post_anchor(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Audit).await?;
    let anchor = api.audit_anchor.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "audit_anchoring_disabled",
            "this server signs no audit heads: start it with --audit-key FILE",
        )
    })?;
    api.audit
        .record(
            unix_now(),
            &caller.actor(),
            "audit.anchor_requested",
            "",
            json!({}),
        )
        .await
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "audit_log_unwritable", e.to_string()))?;
    let head = anchor
        .anchor()
        .await
        .map_err(anchor_error)?
        .ok_or_else(ApiError::internal)?;
    Ok(json_response(
        StatusCode::OK,
        &head_json(&head, Some(anchor.public_key())),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditQuery {
    /// `jsonl` (default), `json` or `csv`.
    format: Option<String>,
    from: Option<u64>,
    limit: Option<i64>,
}

pub(super) async fn export_audit(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Audit).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let (content_type, body) = audit_export(
        &api,
        q.format.as_deref().unwrap_or("jsonl"),
        q.from.unwrap_or(0),
        q.limit.unwrap_or(MAX_EXPORT),
    )
    .await?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

/// Most records one export holds (the storage's page ceiling).
pub(crate) const MAX_EXPORT: i64 = 100_000;

/// The audit records from `from` on, at most `limit`, as `jsonl`, `json` or `csv` (the media
/// type and the body): `GET /api/v1/audit` and the web console's download.
pub(crate) async fn audit_export(
    api: &ManagementApi,
    format: &str,
    from: u64,
    limit: i64,
) -> Result<(&'static str, String), ApiError> {
    let lines = api
        .db
        .audit_lines(from, limit)
        .await
        .map_err(|e| db_error("reading the audit log", e))?;
    let mut jsonl = String::new();
    for l in &lines {
        jsonl.push_str(&l.line);
        jsonl.push('\n');
    }
    match format {
        "jsonl" => Ok(("application/jsonl", jsonl)),
        "json" | "csv" => {
            let records = parse_records(&jsonl)?;
            if format == "csv" {
                Ok(("text/csv", rampart_audit::to_csv(&records)))
            } else {
                Ok((
                    "application/json",
                    serde_json::to_string(&records).map_err(|_| ApiError::internal())?,
                ))
            }
        }
        other => Err(ApiError::invalid(format!(
            "unknown format {other:?}: use jsonl, json or csv"
        ))),
    }
}

fn parse_records(jsonl: &str) -> Result<Vec<rampart_audit::AuditRecord>, ApiError> {
    rampart_audit::parse_jsonl(jsonl.as_bytes()).map_err(|e| {
        ApiError::new(
            StatusCode::CONFLICT,
            "audit_log_unreadable",
            format!("a stored record does not parse ({e}); export as jsonl and run `rampart audit verify`"),
        )
    })
}

/// One page of audit records, from `from` on, at most `limit` (1 to [`super::MAX_PAGE`]), and
/// the sequence number of the newest record (`None` for an empty log): the web console's
/// audit page.
pub(crate) async fn audit_page(
    api: &ManagementApi,
    from: Option<u64>,
    limit: i64,
) -> Result<(Vec<rampart_audit::AuditRecord>, Option<u64>), ApiError> {
    let limit = super::page_limit(Some(limit))?;
    read_records(api, from, limit).await
}

/// Up to `limit` records from `from` on (the newest `limit` without `from`), and the newest
/// record's sequence number.
async fn read_records(
    api: &ManagementApi,
    from: Option<u64>,
    limit: i64,
) -> Result<(Vec<rampart_audit::AuditRecord>, Option<u64>), ApiError> {
    let newest = api
        .db
        .last_audit()
        .await
        .map_err(|e| db_error("reading the audit log", e))?
        .map(|l| l.seq);
    let from = from
        .unwrap_or_else(|| newest.map_or(0, |n| n.saturating_add(1).saturating_sub(limit as u64)));
    let (_, jsonl) = audit_export(api, "jsonl", from, limit).await?;
    Ok((parse_records(&jsonl)?, newest))
}

/// Most records the server verifies on request; a longer log is verified offline with
/// `rampart audit verify --db URL` (the whole chain is held in memory while it is checked).
pub(crate) const MAX_VERIFIED: u64 = 1_000_000;

/// What verifying the stored chain found.
#[derive(Debug, Clone)]
pub(crate) struct ChainCheck {
    /// Records checked.
    pub count: u64,
    /// The last record's hash (hex), the chain's head.
    pub head: String,
    /// Signed audit heads the chain was checked against (0 without an audit key).
    pub signed_heads: usize,
}

/// Verifies the whole stored audit chain (and, when the server has its audit key, against
/// every head it signed): `Ok(Ok(check))`, or `Ok(Err(problem))` naming the first bad or
/// missing record. 409 when the log is longer than [`MAX_VERIFIED`]. The web console's
/// audit page.
pub(crate) async fn verify_chain(
    api: &ManagementApi,
) -> Result<Result<ChainCheck, String>, ApiError> {
    let read_error = |e| db_error("reading the audit log", e);
    let newest = api.db.last_audit().await.map_err(read_error)?;
    if newest.as_ref().is_some_and(|l| l.seq >= MAX_VERIFIED) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "audit_log_too_long",
            format!(
                "the audit log holds more than {MAX_VERIFIED} records, more than the server verifies on request; run `rampart audit verify --db URL` where the database is"
            ),
        ));
    }
    if let Some(anchor) = &api.audit_anchor {
        let keys = [anchor.config.key.verifier()];
        return match crate::engines::audit_anchor::verify_stored_log(&api.db, &keys, &[]).await {
            Ok(check) => Ok(Ok(ChainCheck {
                count: check.chain.count,
                head: hex::encode(check.chain.head),
                signed_heads: check.heads,
            })),
            Err(crate::engines::audit_anchor::AnchorCheckError::Db(e)) => Err(read_error(e)),
            // No head signed yet: the chain alone is checked below.
            Err(crate::engines::audit_anchor::AnchorCheckError::NoHead) => {
                verify_unanchored(api).await
            }
            Err(e) => Ok(Err(e.to_string())),
        };
    }
    verify_unanchored(api).await
}

async fn verify_unanchored(api: &ManagementApi) -> Result<Result<ChainCheck, String>, ApiError> {
    use crate::engines::audit_anchor::{AnchorCheckError, stored_records};
    let records = match stored_records(&api.db).await {
        Ok(records) => records,
        Err(AnchorCheckError::Db(e)) => return Err(db_error("reading the audit log", e)),
        Err(e) => return Ok(Err(e.to_string())),
    };
    Ok(rampart_audit::verify(&records)
        .map(|chain| ChainCheck {
            count: chain.count,
            head: hex::encode(chain.head),
            signed_heads: 0,
        })
        .map_err(|e| e.to_string()))
}

/// Newest records searched for a device's page: the records are stored as lines, not indexed
/// by subject, so a device's page looks through a bounded tail of the log (a full search is
/// `rampart audit export` and a filter).
pub(crate) const DEVICE_RECORDS_SCANNED: i64 = 10_000;

/// The newest (at most `max`) records about device `id` (its subject, or acted by it) among
/// the newest [`DEVICE_RECORDS_SCANNED`] records, newest first: the web console's device page.
pub(crate) async fn device_records(
    api: &ManagementApi,
    id: &str,
    max: usize,
) -> Result<Vec<rampart_audit::AuditRecord>, ApiError> {
    let (records, _) = read_records(api, None, DEVICE_RECORDS_SCANNED).await?;
    let as_device = format!("device:{id}");
    Ok(records
        .into_iter()
        .rev()
        .filter(|r| r.subject == id || r.subject == as_device || r.actor == as_device)
        .take(max)
        .collect())
}
