//! Forensic evidence uploads on the native device API (issue 16, decision 0034), when the
//! server keeps evidence (`rampart server --evidence-dir DIR`; else 404 `evidence_disabled`).
//! A device learns of a request from its poll answer (`evidence`) and uploads the bundle in
//! chunks, resuming from what the server holds:
//!
//! * `GET /device/v1/evidence/{id}` — an [`EvidenceProgress`]: bytes received, complete or not.
//! * `PUT /device/v1/evidence/{id}?offset=N` — body `application/octet-stream`, at most the
//!   request's `chunk_bytes`; `offset` must be the bytes received (else 409 with the progress,
//!   resume from `received`). Flushed to disk before the answer (an [`EvidenceProgress`]).
//!   413 `payload_too_large` over the chunk or the request's `max_bytes`, 413
//!   `evidence_quota_exceeded` over the device's or incident's quota, 429
//!   `too_many_evidence_requests` faster than the upload rate.
//! * `POST /device/v1/evidence/{id}/complete` — an [`EvidenceComplete`] `{length, sha256}`:
//!   the server checks the bytes and the bundle (this device, this request, incident and nonce,
//!   signed with the key of the certificate presented on this connection, the TPM quote's
//!   binding). 200 with the progress (`complete`, `sha256`) once stored; 422
//!   `evidence_refused` with the reason if it failed a check (recorded; the request is used).
//!
//! Another device's request is 404, like an unknown one; a used request (stored or refused)
//! is 409 `evidence_request_closed`. Bodies are bounded; no bad input gets a 500.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_protocol::{EvidenceComplete, EvidenceProgress};
use serde::Deserialize;
use serde_json::json;

use super::api::DeviceApi;
use crate::engines::evidence::{Evidence, EvidenceError};
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, BodyLimits, json_response, parse_json, read_body_of};
use crate::listen::mtls::PeerIdentity;

/// Longest request id accepted in a path.
const MAX_ID: usize = 64;
/// Largest completion body.
const MAX_COMPLETE_BODY: usize = 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Offset {
    offset: u64,
}

impl DeviceApi {
    /// What every evidence route starts with: evidence enabled (else 404), a plausible id, the
    /// calling device (403 if revoked), and the upload rate (429).
    async fn evidence_caller(
        &self,
        peer: &PeerIdentity,
        id: &str,
    ) -> Result<(Arc<Evidence>, String), ApiError> {
        let evidence = self.evidence_engine()?;
        if id.is_empty()
            || id.len() > MAX_ID
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(unknown_request(id));
        }
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        if let Err(wait) = self
            .evidence_rate
            .take(&device.id, std::time::Instant::now())
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_evidence_requests",
                format!(
                    "this device calls the evidence routes faster than {} times per second (bursts of {}); send again in {} s",
                    evidence.config.uploads_per_second,
                    evidence.config.upload_burst,
                    wait.as_secs() + 1
                ),
            ));
        }
        Ok((evidence, device.id))
    }
}

impl DeviceApi {
    /// The evidence engine, or 404 when the server keeps no evidence.
    fn evidence_engine(&self) -> Result<Arc<Evidence>, ApiError> {
        self.evidence.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "evidence_disabled",
                "this server keeps no forensic evidence (start it with --evidence-dir DIR)",
            )
        })
    }
}

fn unknown_request(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_evidence_request",
        format!(
            "no evidence request {:?} for this device; upload only to the request a poll answer names",
            id.chars().take(MAX_ID).collect::<String>()
        ),
    )
}

/// The answer to an evidence error: 409s carry the progress, so the device resumes from it.
fn answer(e: EvidenceError) -> Response {
    use axum::response::IntoResponse as _;
    let with_progress = |error: &str, detail: String, progress: EvidenceProgress| {
        json_response(
            StatusCode::CONFLICT,
            &json!({
                "error": error,
                "detail": detail,
                "id": progress.id,
                "received": progress.received,
                "complete": progress.complete,
                "sha256": progress.sha256,
            }),
        )
    };
    match e {
        EvidenceError::UnknownRequest(id) | EvidenceError::NotYours(id) => {
            unknown_request(&id).into_response()
        }
        EvidenceError::Conflict { detail, progress } => {
            with_progress("offset_mismatch", detail, progress)
        }
        EvidenceError::Closed { detail, progress } => {
            with_progress("evidence_request_closed", detail, progress)
        }
        EvidenceError::TooLarge(detail) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
                .into_response()
        }
        EvidenceError::Quota(detail) => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "evidence_quota_exceeded",
            detail,
        )
        .into_response(),
        EvidenceError::Invalid(detail) => ApiError::invalid(detail).into_response(),
        e @ EvidenceError::Refused(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "evidence_refused",
            e.to_string(),
        )
        .into_response(),
        EvidenceError::Unavailable(detail) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage_unavailable",
            detail,
        )
        .into_response(),
    }
}

fn answered(result: Result<EvidenceProgress, EvidenceError>) -> Response {
    match result {
        Ok(progress) => json_response(StatusCode::OK, &progress),
        Err(e) => answer(e),
    }
}

pub(super) async fn progress(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (evidence, device) = api.evidence_caller(&peer, &id).await?;
    Ok(answered(evidence.progress(&device, &id).await))
}

pub(super) async fn upload(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Path(id): Path<String>,
    query: Result<Query<Offset>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The body is read before any refusal, so the device gets its answer on a connection it
    // can keep using.
    let limits = BodyLimits {
        max_bytes: usize::try_from(api.evidence_engine()?.config.chunk_bytes).unwrap_or(usize::MAX),
        read_timeout: api.body_limits.read_timeout,
    };
    let chunk = read_body_of(&headers, body, limits, "application/octet-stream").await?;
    let Query(Offset { offset }) = query.map_err(|_| {
        ApiError::invalid("give the chunk's offset as ?offset=N (the bytes received so far)")
    })?;
    let (evidence, device) = api.evidence_caller(&peer, &id).await?;
    Ok(answered(
        evidence.append(&device, &id, offset, &chunk).await,
    ))
}

pub(super) async fn complete(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limits = BodyLimits {
        max_bytes: MAX_COMPLETE_BODY,
        read_timeout: api.body_limits.read_timeout,
    };
    let bytes = crate::listen::http::read_body(&headers, body, limits).await?;
    let (evidence, device) = api.evidence_caller(&peer, &id).await?;
    let done: EvidenceComplete = parse_json(
        &bytes,
        r#"{"length": <bytes uploaded>, "sha256": "<hex SHA-256 of the bundle>"}"#,
    )?;
    if done.sha256.len() != 64 || !done.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::invalid(
            "sha256 must be the bundle's SHA-256 as 64 hex digits",
        ));
    }
    Ok(answered(
        evidence
            .complete(&device, &peer.certificate, &id, &done)
            .await,
    ))
}
