//! The forensic evidence routes of the management API (issue 16, decision 0034):
//!
//! * `GET /api/v1/incidents/{id}/evidence` (read) — the incident's evidence requests (open,
//!   stored, refused with the reason) and stored bundles (hash, length, device, anchor).
//! * `GET /api/v1/evidence/{request}/bundle` (audit) — one stored bundle's bytes
//!   (`application/json`, the `rampart-evidence/1` document), checked against its recorded hash
//!   before it is sent; audited.
//! * `GET /api/v1/incidents/{id}/export` (audit) — the incident's chain-of-custody export
//!   (`rampart-incident-export/1`: bundles, certificates, timeline, audit segment and a head
//!   signed now, transparency-log proofs), for `rampart incident verify-export`; audited.
//!
//! All answer 404 `evidence_disabled` when the server keeps no evidence.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use crate::engines::evidence::{Evidence, ExportError};
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, db_error, json_bytes_response, json_response};

use super::{ManagementApi, Permission};

/// Longest incident or request id accepted in a path.
const MAX_ID: usize = 256;

/// The evidence routes.
pub(crate) fn router(api: Arc<ManagementApi>) -> Router {
    Router::new()
        .route("/api/v1/incidents/{id}/evidence", get(list))
        .route("/api/v1/incidents/{id}/export", get(export))
        .route("/api/v1/evidence/{id}/bundle", get(bundle))
        .with_state(api)
}

impl ManagementApi {
    fn evidence(&self) -> Result<&Arc<Evidence>, ApiError> {
        self.evidence.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "evidence_disabled",
                "this server keeps no forensic evidence; start it with --evidence-dir DIR",
            )
        })
    }
}

impl ManagementApi {
    /// A plausible incident id naming an incident that exists (else 422 or 404).
    async fn check_incident(&self, id: &str) -> Result<(), ApiError> {
        check_id("the incident id", id)?;
        if self
            .db
            .incident(id)
            .await
            .map_err(|e| db_error("reading an incident", e))?
            .is_some()
        {
            Ok(())
        } else {
            Err(export_error(ExportError::UnknownIncident(id.to_owned())))
        }
    }
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "{what} must be 1 to {MAX_ID} bytes without control characters"
        )));
    }
    Ok(())
}

fn export_error(e: ExportError) -> ApiError {
    match e {
        ExportError::UnknownIncident(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_incident", e.to_string())
        }
        ExportError::NoAuditKey => {
            ApiError::new(StatusCode::CONFLICT, "no_audit_key", e.to_string())
        }
        ExportError::TooLarge(detail) => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "export_too_large", detail)
        }
        ExportError::Unavailable(detail) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            detail,
        ),
    }
}

async fn list(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    Ok(json_response(
        StatusCode::OK,
        &evidence_listing(&api, &id).await?,
    ))
}

/// An incident's evidence requests and stored bundles with their custody (hash, quote check,
/// audit record, transparency-log anchor): `GET /api/v1/incidents/{id}/evidence` and the web
/// console's incident page. 404 `evidence_disabled` when the server keeps no evidence.
pub(crate) async fn evidence_listing(api: &ManagementApi, id: &str) -> Result<Value, ApiError> {
    api.evidence()?;
    api.check_incident(id).await?;
    let limit = rampart_db::MAX_EVIDENCE_LIST;
    let requests = api
        .db
        .evidence_requests_of_incident(id, limit)
        .await
        .map_err(|e| db_error("reading evidence requests", e))?;
    let bundles = api
        .db
        .evidence_bundles_of_incident(id, limit)
        .await
        .map_err(|e| db_error("reading evidence bundles", e))?;
    let bundles: Vec<_> = bundles
        .into_iter()
        .map(|b| {
            json!({
                "request_id": b.request_id,
                "device_id": b.device_id,
                "sha256": b.sha256,
                "length": b.length,
                "quote_checked": b.quote_checked,
                "stored_at": b.stored_at,
                "audit_seq": b.audit_seq,
                "log_index": b.log_index,
                "anchored": b.log_proof.is_some(),
            })
        })
        .collect();
    Ok(json!({"incident": id, "requests": requests, "bundles": bundles}))
}

async fn bundle(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Audit).await?;
    let evidence = api.evidence()?.clone();
    check_id("the evidence request id", &id)?;
    let (stored, bytes) = evidence.bundle(&id).await.map_err(export_error)?.ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_evidence",
            format!(
                "no stored evidence bundle for request {id:?}; list an incident's with GET /api/v1/incidents/{{id}}/evidence"
            ),
        )
    })?;
    api.audit
        .record(
            unix_now(),
            &caller.actor(),
            "incident.evidence_downloaded",
            &format!("incident:{}", stored.incident_id),
            json!({"request": id, "sha256": stored.sha256}),
        )
        .await
        .map_err(crate::listen::http::audit_error)?;
    let mut response = json_bytes_response(StatusCode::OK, bytes);
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", stored.sha256)) {
        response.headers_mut().insert(header::ETAG, value);
    }
    Ok(response)
}

async fn export(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Audit).await?;
    let evidence = api.evidence()?.clone();
    if api.audit_anchor.is_none() {
        return Err(export_error(ExportError::NoAuditKey));
    }
    api.check_incident(&id).await?;
    let now = unix_now();
    // Recorded first, so the head signed for the export covers the export itself too.
    api.audit
        .record(
            now,
            &caller.actor(),
            "incident.exported",
            &format!("incident:{id}"),
            json!({"incident": id}),
        )
        .await
        .map_err(crate::listen::http::audit_error)?;
    let document = evidence
        .export(&id, api.audit_anchor.as_deref(), now)
        .await
        .map_err(export_error)?;
    let body = serde_json::to_vec(&document).map_err(|_| ApiError::internal())?;
    let mut response = json_bytes_response(StatusCode::OK, body);
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"incident-{}.json\"",
        id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_")
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response.into_response())
}
