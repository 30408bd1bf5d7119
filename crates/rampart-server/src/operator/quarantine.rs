//! The quarantine routes (issue 16, decision 0031):
//!
//! * `POST /api/v1/devices/{id}/quarantine` (operate) — body `{"reason", "incident"?,
//!   "revoke"?}`: quarantines a registered device (idempotent: 200 with the existing quarantine
//!   when it already is one, 201 when this call quarantined it); with `"revoke": true` the
//!   device's certificate is revoked too, after the quarantine is written.
//! * `POST /api/v1/devices/{id}/release` (operate) — body `{"reason"}`: the only way a
//!   quarantine ends. The device's next polls carry a signed `released` statement.
//! * `GET /api/v1/devices/{id}/quarantine` (read): the quarantine and the last release.
//! * `GET /api/v1/quarantine` (read): quarantined devices, oldest first.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::{DbError, DomainError, NewQuarantine};
use serde::Deserialize;
use serde_json::json;

use crate::helpers::unix_now;
use crate::listen::http::{ApiError, db_error, json_response, parse_json, read_body, write_error};

use super::{ManagementApi, Permission, page_limit};

/// Longest reason, in bytes.
const MAX_REASON: usize = 256;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct QuarantineRequest {
    #[serde(default)]
    reason: String,
    /// The incident it belongs to (its timeline gets the entry).
    #[serde(default)]
    incident: String,
    /// Also revoke the device's certificate.
    #[serde(default)]
    revoke: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReleaseRequest {
    #[serde(default)]
    reason: String,
}

fn check_reason(reason: &str) -> Result<(), ApiError> {
    if reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "reason must be at most {MAX_REASON} bytes without control characters"
        )));
    }
    Ok(())
}

async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    api: &ManagementApi,
    headers: &HeaderMap,
    body: Body,
    expected: &str,
) -> Result<T, ApiError> {
    let bytes = read_body(headers, body, api.body_limits).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_json(&bytes, expected)
    }
}

async fn require_registered(api: &ManagementApi, id: &str) -> Result<(), ApiError> {
    let known = api
        .db
        .device(id)
        .await
        .map_err(|e| db_error("reading a device", e))?;
    if known.is_none() {
        return Err(db_error(
            "",
            DbError::Domain(DomainError::UnknownDevice(id.to_owned())),
        ));
    }
    Ok(())
}

pub(super) async fn quarantine_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    crate::listen::http::check_device_id(&id)?;
    let request: QuarantineRequest = optional_body(
        &api,
        &headers,
        body,
        r#"{"reason": "...", "incident": "<incident id>", "revoke": false}"#,
    )
    .await?;
    check_reason(&request.reason)?;
    if request.incident.len() > MAX_REASON || request.incident.chars().any(char::is_control) {
        return Err(ApiError::invalid("incident must be an incident id"));
    }
    require_registered(&api, &id).await?;
    let now = unix_now();
    let new = NewQuarantine {
        device_id: id.clone(),
        incident_id: request.incident.clone(),
        actor: caller.actor(),
        reason: request.reason.clone(),
        since: now,
    };
    // The quarantine is written first: a failed revocation leaves the device quarantined.
    let (quarantine, newly) = api
        .audit
        .write(
            now,
            &caller.actor(),
            "device.quarantined",
            &id,
            json!({"incident": request.incident, "reason": request.reason}),
            |line| {
                let (db, new) = (api.db.clone(), new.clone());
                async move { db.quarantine_device(&new, &line).await }
            },
        )
        .await
        .map_err(write_error("quarantining a device"))?;
    if request.revoke {
        super::devices::set_revoked(&api, &caller, &id, true, &request.reason).await?;
    }
    let status = if newly {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_response(
        status,
        &json!({"quarantine": quarantine, "newly_quarantined": newly, "revoked": request.revoke}),
    ))
}

pub(super) async fn release_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    crate::listen::http::check_device_id(&id)?;
    let request: ReleaseRequest =
        optional_body(&api, &headers, body, r#"{"reason": "..."}"#).await?;
    check_reason(&request.reason)?;
    let now = unix_now();
    let release = api
        .audit
        .write(
            now,
            &caller.actor(),
            "device.released",
            &id,
            json!({"reason": request.reason}),
            |line| {
                let (db, id, actor, reason) = (
                    api.db.clone(),
                    id.clone(),
                    caller.actor(),
                    request.reason.clone(),
                );
                async move { db.release_device(&id, &actor, &reason, now, &line).await }
            },
        )
        .await
        .map_err(write_error("releasing a device"))?;
    Ok(json_response(StatusCode::OK, &json!({"release": release})))
}

pub(super) async fn device_quarantine(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    crate::listen::http::check_device_id(&id)?;
    let quarantine = api
        .db
        .quarantine(&id)
        .await
        .map_err(|e| db_error("reading a quarantine", e))?;
    let release = api
        .db
        .quarantine_release(&id)
        .await
        .map_err(|e| db_error("reading a quarantine release", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"device_id": id, "quarantined": quarantine.is_some(), "quarantine": quarantine, "last_release": release}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<i64>,
}

pub(super) async fn list_quarantined(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let devices = api
        .db
        .quarantined_devices(page_limit(q.limit)?)
        .await
        .map_err(|e| db_error("listing quarantined devices", e))?;
    Ok(json_response(StatusCode::OK, &json!({"devices": devices})))
}
