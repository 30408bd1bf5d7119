//! The attestation routes of the management API (docs/decisions/0027):
//!
//! * `POST /api/v1/attestation/approved-eks` (admin) — approves an endorsement key a TPM
//!   without an EK certificate presents: `{"ek_public": "<base64 TPMT_PUBLIC>", "note": "..."}`.
//!   201 when approved now, 200 when it already was; audited.
//! * `GET /api/v1/attestation/devices/{id}` (read) — the device's attestation: `attested`,
//!   `failed` (with the reason) or `stale`, computed at the time of the request.
//! * `GET /api/v1/attestation/status` (read) — how many devices are attested, failed, stale.
//! * `GET /api/v1/attestation/events?since=UNIX&device=ID&limit=N` (read) — security events
//!   (failed and stale attestations, refused enrolments) for incident response.
//!
//! All answer 404 `attestation_disabled` when the server runs without attestation.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use rampart_db::{ApprovedEk, MAX_TPM_STRUCTURE};
use serde::Deserialize;
use serde_json::json;

use crate::engines::attestation::Attestation;
use crate::helpers::{sha256_hex, unix_now};
use crate::listen::http::{ApiError, db_error, json_response};

use super::{ManagementApi, Permission};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ApproveEk {
    ek_public: String,
    #[serde(default)]
    note: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    since: Option<i64>,
    device: Option<String>,
    limit: Option<i64>,
}

impl ManagementApi {
    fn attestation(&self) -> Result<&Arc<Attestation>, ApiError> {
        self.attestation.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "attestation_disabled",
                "this server runs without attestation; start it with --attestation",
            )
        })
    }
}

pub(super) async fn approve_ek(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    api.attestation()?;
    let request: ApproveEk = api
        .body(
            &headers,
            body,
            r#"{"ek_public": "<base64 TPMT_PUBLIC of the EK>", "note": "..."}"#,
        )
        .await?;
    let ek_public = base64::engine::general_purpose::STANDARD
        .decode(request.ek_public.trim())
        .map_err(|e| ApiError::invalid(format!("ek_public is not base64: {e}")))?;
    if ek_public.is_empty() || ek_public.len() > MAX_TPM_STRUCTURE {
        return Err(ApiError::invalid(format!(
            "ek_public must be 1 to {MAX_TPM_STRUCTURE} bytes, not {}",
            ek_public.len()
        )));
    }
    // Only a key a TPM could present is approved: a readable TPMT_PUBLIC.
    rampart_attest::wire::Public::parse(&ek_public).map_err(|e| {
        ApiError::invalid(format!(
            "ek_public is not an EK's TPMT_PUBLIC ({e}); export it with `tpm2_createek -f tpmt -u EK.pub` or `tpm2_readpublic -f tpmt`"
        ))
    })?;
    if request.note.len() > 256 || request.note.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "note must be at most 256 bytes without control characters",
        ));
    }
    let now = unix_now();
    let approval = ApprovedEk {
        ek_digest: sha256_hex(&ek_public),
        ek_public: hex::encode(&ek_public),
        approved_at: now,
        approved_by: caller.actor(),
        note: request.note,
    };
    let approved = api
        .audit
        .write(
            now,
            &caller.actor(),
            "attestation.ek_approved",
            &format!("ek:{}", approval.ek_digest),
            json!({"ek_digest": approval.ek_digest, "note": approval.note}),
            |line| {
                let (db, approval) = (api.db.clone(), approval.clone());
                async move { db.approve_ek(&approval, &line).await }
            },
        )
        .await
        .map_err(crate::listen::http::write_error("approving an EK"))?;
    let status = if approved {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        &json!({"ek_digest": approval.ek_digest, "newly_approved": approved}),
    ))
}

pub(super) async fn device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    crate::listen::http::check_device_id(&id)?;
    let attestation = api.attestation()?;
    if api
        .db
        .device(&id)
        .await
        .map_err(|e| db_error("reading a device", e))?
        .is_none()
    {
        return Err(db_error(
            "",
            rampart_db::DbError::Domain(rampart_db::DomainError::UnknownDevice(id)),
        ));
    }
    let view = attestation
        .view(&id, unix_now())
        .await
        .map_err(|e| db_error("reading a device's attestation", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"device_id": id, "attestation": view}),
    ))
}

pub(super) async fn status(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let attestation = api.attestation()?;
    let (attested, failed, stale) = api
        .db
        .attestation_counts(unix_now(), attestation.config.freshness_secs())
        .await
        .map_err(|e| db_error("counting attestations", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "attested": attested,
            "failed": failed,
            "stale": stale,
            "freshness_secs": attestation.config.freshness_secs(),
            "required": attestation.config.require,
            "pcrs": attestation.config.selection_text(),
        }),
    ))
}

pub(super) async fn events(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    api.attestation()?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    if let Some(device) = &q.device {
        crate::listen::http::check_device_id(device)?;
    }
    let limit = super::page_limit(q.limit)?;
    let events = api
        .db
        .security_events(q.since.unwrap_or(0), q.device.as_deref(), limit)
        .await
        .map_err(|e| db_error("reading security events", e))?;
    Ok(json_response(StatusCode::OK, &json!({"events": events})))
}
