//! The device routes: the inventory, revocation, fleet versions, and device reports.

use rampart_db::DomainError;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::{DbError, Device, DeviceAssignment, DeviceFilter, Enrolment, Report};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engines::attestation::AttestationView;
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, json_response, parse_json, read_body};
use crate::listen::http::{db_error, write_error};

use super::{Caller, ManagementApi, Permission, page_limit};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeviceQuery {
    hardware_id: Option<String>,
    firmware_version: Option<String>,
    region: Option<String>,
    tag: Option<String>,
    group: Option<String>,
    min_security_version: Option<u64>,
    /// `key=value`: devices whose attribute `key` equals `value`.
    attribute: Option<String>,
    /// `name=state`: devices whose slot `name` reports `state`.
    slot: Option<String>,
    /// `active` (not revoked) or `revoked`.
    status: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn list_devices(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let attribute = match q.attribute {
        None => None,
        Some(a) => Some(
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::invalid("attribute must be key=value"))?,
        ),
    };
    let slot = match q.slot {
        None => None,
        Some(a) => Some(
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::invalid("slot must be name=state, e.g. b=bad"))?,
        ),
    };
    let revoked = match q.status.as_deref() {
        None => None,
        Some("active") => Some(false),
        Some("revoked") => Some(true),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "status must be active or revoked, not {other:?}"
            )));
        }
    };
    let filter = DeviceFilter {
        slot,
        revoked,
        hardware_id: q.hardware_id,
        firmware_version: q.firmware_version,
        region: q.region,
        tag: q.tag,
        group: q.group,
        min_security_version: q.min_security_version,
        attribute,
        ..DeviceFilter::default()
    };
    let limit = page_limit(q.limit)?;
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid(format!(
            "offset must be 0 or more, not {offset}"
        )));
    }
    let devices = api
        .db
        .list_devices(&filter, limit, offset)
        .await
        .map_err(|e| db_error("listing devices", e))?;
    Ok(json_response(StatusCode::OK, &json!({"devices": devices})))
}

pub(super) async fn get_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let view = device_view(&api, &id).await?;
    let mut body = json!({"device": view.device, "enrolment": view.enrolment, "assignment": view.assignment, "update_status": view.update_status, "recent_reports": view.recent_reports});
    if let Some(attestation) = view.attestation {
        body["attestation"] = json!(attestation);
    }
    Ok(json_response(StatusCode::OK, &body))
}

/// Reports a device view shows.
const RECENT_REPORTS: i64 = 20;

/// One device as an operator sees it (`GET /api/v1/devices/{id}` and the console's device page).
pub(crate) struct DeviceView {
    pub(crate) device: Device,
    /// How it was enrolled (certificate, target or gateway token): what may act for it.
    pub(crate) enrolment: Option<Enrolment>,
    pub(crate) assignment: Option<DeviceAssignment>,
    /// What it runs against what it was told to install (see [`update_status`]).
    pub(crate) update_status: &'static str,
    /// Newest first, at most [`RECENT_REPORTS`].
    pub(crate) recent_reports: Vec<Report>,
    /// Computed now (a pass expires by time alone); `None` when the server does not attest.
    pub(crate) attestation: Option<AttestationView>,
}

/// Reads [`DeviceView`] of device `id` (404 for an unknown one).
pub(crate) async fn device_view(api: &ManagementApi, id: &str) -> Result<DeviceView, ApiError> {
    crate::listen::http::check_device_id(id)?;
    let device = api
        .db
        .device(id)
        .await
        .map_err(|e| db_error("reading a device", e))?
        .ok_or_else(|| {
            db_error(
                "",
                DbError::Domain(DomainError::UnknownDevice(id.to_owned())),
            )
        })?;
    let enrolment = api
        .db
        .device_enrolment(id)
        .await
        .map_err(|e| db_error("reading a device", e))?;
    let assignment = api
        .db
        .device_assignment(id)
        .await
        .map_err(|e| db_error("reading an assignment", e))?;
    let recent_reports = api
        .db
        .recent_reports(id, RECENT_REPORTS)
        .await
        .map_err(|e| db_error("reading reports", e))?;
    let attestation = match &api.attestation {
        Some(engine) => Some(
            engine
                .view(id, unix_now())
                .await
                .map_err(|e| db_error("reading a device's attestation", e))?,
        ),
        None => None,
    };
    Ok(DeviceView {
        update_status: update_status(assignment.as_ref(), recent_reports.first()),
        device,
        enrolment,
        assignment,
        recent_reports,
        attestation,
    })
}

/// Patch status: what a device runs against what it was told to install, from its assignment
/// and its latest report.
fn update_status(assignment: Option<&DeviceAssignment>, latest: Option<&Report>) -> &'static str {
    match (assignment, latest) {
        (None, _) => "unassigned",
        // Its assignment was withdrawn, but the device refused the cancellation (or had
        // already begun) and installed it: it runs that release, which `unassigned` would hide.
        (Some(a), Some(r))
            if a.target.is_empty() && !r.assignment.is_empty() && r.status == "installed" =>
        {
            "installed_after_cancel"
        }
        (Some(a), _) if a.target.is_empty() => "unassigned",
        (Some(a), Some(r)) if r.assignment == a.assignment_id && r.status == "installed" => {
            "up_to_date"
        }
        (Some(a), Some(r))
            if r.assignment == a.assignment_id
                && matches!(
                    r.status.as_str(),
                    "failed" | "rolled_back" | "verification_failed"
                ) =>
        {
            "failed"
        }
        (Some(_), _) => "pending",
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeRequest {
    #[serde(default)]
    reason: String,
}

pub(super) async fn revoke_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    crate::listen::http::check_device_id(&id)?;
    let bytes = read_body(&headers, body, api.body_limits).await?;
    let request: RevokeRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RevokeRequest::default()
    } else {
        parse_json(&bytes, r#"{"reason": "..."}"#)?
    };
    set_revoked(&api, &caller, &id, true, &request.reason).await
}

pub(super) async fn reinstate_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    crate::listen::http::check_device_id(&id)?;
    set_revoked(&api, &caller, &id, false, "").await
}

pub(super) async fn set_revoked(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    revoked: bool,
    reason: &str,
) -> Result<Response, ApiError> {
    let action = if revoked {
        "device.revoked"
    } else {
        "device.reinstated"
    };
    api.audit
        .write(
            unix_now(),
            &caller.actor(),
            action,
            id,
            json!({"reason": reason}),
            |line| {
                let db = api.db.clone();
                let id = id.to_owned();
                async move { db.set_revoked_audited(&id, revoked, &line).await }
            },
        )
        .await
        .map_err(write_error("revoking a device"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"device_id": id, "revoked": revoked}),
    ))
}

pub(super) async fn fleet_versions(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let counts = api
        .db
        .version_counts()
        .await
        .map_err(|e| db_error("counting versions", e))?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let versions: Vec<Value> = counts
        .into_iter()
        .map(|(v, n)| json!({"firmware_version": v, "devices": n}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"devices": total, "versions": versions}),
    ))
}

// ---- reports -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReportQuery {
    device: String,
    /// Newest first, at most this many (default 100, at most 1000).
    limit: Option<i64>,
}

pub(super) async fn list_reports(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|_| ApiError::invalid("give ?device=<device id>"))?;
    crate::listen::http::check_device_id(&q.device)?;
    if api
        .db
        .device(&q.device)
        .await
        .map_err(|e| db_error("reading a device", e))?
        .is_none()
    {
        return Err(db_error(
            "",
            DbError::Domain(DomainError::UnknownDevice(q.device)),
        ));
    }
    let reports = api
        .db
        .recent_reports(&q.device, page_limit(q.limit)?)
        .await
        .map_err(|e| db_error("reading reports", e))?;
    Ok(json_response(StatusCode::OK, &json!({"reports": reports})))
}
