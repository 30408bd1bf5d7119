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
    let lines = api
        .db
        .audit_lines(q.from.unwrap_or(0), q.limit.unwrap_or(100_000))
        .await
        .map_err(|e| db_error("reading the audit log", e))?;
    let mut jsonl = String::new();
    for l in &lines {
        jsonl.push_str(&l.line);
        jsonl.push('\n');
    }
    let (content_type, body) = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => ("application/jsonl", jsonl),
        format @ ("json" | "csv") => {
            let records = rampart_audit::parse_jsonl(jsonl.as_bytes()).map_err(|e| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "audit_log_unreadable",
                    format!("a stored record does not parse ({e}); export as jsonl and run `rampart audit verify`"),
                )
            })?;
            if format == "csv" {
                ("text/csv", rampart_audit::to_csv(&records))
            } else {
                (
                    "application/json",
                    serde_json::to_string(&records).map_err(|_| ApiError::internal())?,
                )
            }
        }
        other => {
            return Err(ApiError::invalid(format!(
                "unknown format {other:?}: use jsonl, json or csv"
            )));
        }
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}
