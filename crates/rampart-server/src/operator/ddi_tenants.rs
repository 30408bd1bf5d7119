//! The DDI front's management routes (`/api/v1/ddi/...`): tenants, target tokens, a device's
//! DDI actions, and deleting a DDI device (the DDI device API itself is `crate::ddi`).

use rampart_db::DomainError;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post, put};
use rampart_db::{DbError, DdiTenant};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::helpers::{token_digest, unix_now};
use crate::listen::http::{ApiError, read_body, write_error};
use crate::operator::{ManagementApi, Permission};

/// A random token: 32 characters from `[A-Za-z0-9]` (hawkBit's form).
pub(crate) fn new_token() -> Result<String, ApiError> {
    use ring::rand::SecureRandom as _;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal())?;
    // 256 = 4 * 62 + 8: the first 8 characters come up 5 times in 256 instead of 4, which
    // leaves 32 characters well above 180 bits of entropy.
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect())
}

/// Tenant settings as the API takes them; absent fields keep their value (or take the
/// default when creating: target tokens on, gateway tokens and certificates off).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TenantRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    target_token: Option<bool>,
    #[serde(default)]
    gateway_token: Option<bool>,
    #[serde(default)]
    mtls: Option<bool>,
    /// Issue a new gateway token (the old one stops working).
    #[serde(default)]
    rotate_gateway_token: bool,
}

const TENANT_BODY: &str = r#"{"name": "DEFAULT", "target_token": true, "gateway_token": false, "mtls": false, "rotate_gateway_token": false}"#;

/// The settings to store, and the new gateway token if one is issued (shown once).
fn tenant_settings(
    r: &TenantRequest,
    current: Option<&DdiTenant>,
) -> Result<(rampart_db::TenantSettings, Option<String>), ApiError> {
    let target_token = r
        .target_token
        .unwrap_or(current.is_none_or(|t| t.target_token));
    let gateway_token = r
        .gateway_token
        .unwrap_or(current.is_some_and(|t| t.gateway_token));
    let mtls = r.mtls.unwrap_or(current.is_some_and(|t| t.mtls));
    // Enabling gateway tokens (again) always issues a new one: a token from before it was
    // disabled never comes back to life.
    let was_on = current.is_some_and(|t| t.gateway_token && t.has_gateway_token);
    let issue = r.rotate_gateway_token || (gateway_token && !was_on);
    let token = issue.then(new_token).transpose()?;
    Ok((
        rampart_db::TenantSettings {
            target_token,
            gateway_token,
            mtls,
            gateway_token_hash: token.as_deref().map(token_digest),
        },
        token,
    ))
}

fn tenant_answer(tenant: &DdiTenant, gateway_token: Option<String>) -> Value {
    let mut v = json!({"tenant": tenant});
    if let Some(t) = gateway_token {
        v["gateway_token"] = json!(t);
        v["note"] = json!("the gateway token is shown once; store it now");
    }
    v
}

async fn list_tenants(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let tenants = api
        .db
        .ddi_tenants()
        .await
        .map_err(|e| crate::listen::http::db_error("listing DDI tenants", e))?;
    Ok(crate::listen::http::json_response(
        StatusCode::OK,
        &json!({"tenants": tenants}),
    ))
}

async fn create_tenant(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    let r: TenantRequest = api.body(&headers, body, TENANT_BODY).await?;
    let Some(name) = r.name.clone() else {
        return Err(ApiError::invalid(format!(
            "give the tenant a name: {TENANT_BODY}"
        )));
    };
    let name = rampart_db::tenant_name(&name).map_err(|e| ApiError::invalid(e.to_string()))?;
    let (settings, token) = tenant_settings(&r, None)?;
    let now = unix_now();
    let details = json!({"target_token": settings.target_token, "gateway_token": settings.gateway_token, "mtls": settings.mtls});
    let tenant = api
        .audit
        .write(
            now,
            &caller.actor(),
            "ddi.tenant_created",
            &name,
            details,
            |line| {
                let (db, name, settings) = (api.db.clone(), name.clone(), settings.clone());
                async move { db.create_ddi_tenant(&name, &settings, now, &line).await }
            },
        )
        .await
        .map_err(write_error("creating a DDI tenant"))?;
    Ok(crate::listen::http::json_response(
        StatusCode::CREATED,
        &tenant_answer(&tenant, token),
    ))
}

async fn update_tenant(
    State(api): State<Arc<ManagementApi>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    let r: TenantRequest = api.body(&headers, body, TENANT_BODY).await?;
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_tenant",
            format!("no DDI tenant {name:?}; list them with GET /api/v1/ddi/tenants"),
        )
    };
    let current = api
        .db
        .ddi_tenant(&name)
        .await
        .map_err(|e| crate::listen::http::db_error("reading a DDI tenant", e))?
        .ok_or_else(unknown)?;
    if r.name
        .as_deref()
        .is_some_and(|n| !n.eq_ignore_ascii_case(&current.name))
    {
        return Err(ApiError::invalid("a tenant cannot be renamed"));
    }
    let (settings, token) = tenant_settings(&r, Some(&current))?;
    let details = json!({"target_token": settings.target_token, "gateway_token": settings.gateway_token,
        "mtls": settings.mtls, "gateway_token_rotated": token.is_some()});
    let tenant = api
        .audit
        .write(
            unix_now(),
            &caller.actor(),
            "ddi.tenant_updated",
            &current.name,
            details,
            |line| {
                let (db, name, settings) = (api.db.clone(), current.name.clone(), settings.clone());
                async move { db.update_ddi_tenant(&name, &settings, &line).await }
            },
        )
        .await
        .map_err(write_error("updating a DDI tenant"))?
        .ok_or_else(unknown)?;
    Ok(crate::listen::http::json_response(
        StatusCode::OK,
        &tenant_answer(&tenant, token),
    ))
}

/// Issues a device's TargetToken (registering the device if new); the token is shown once.
async fn issue_target_token(
    State(api): State<Arc<ManagementApi>>,
    Path((tenant, device)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    struct TokenRequest {
        /// The device's hardware id (DDI clients do not report one).
        #[serde(default)]
        hardware_id: Option<String>,
        /// For a device its certificate enrolled: the operator's explicit choice that this
        /// token also speaks for it (refused otherwise, decision 0021).
        #[serde(default)]
        bind_certificate_device: bool,
    }
    let caller = api.authorize(&headers, Permission::Admin).await?;
    let bytes = read_body(&headers, body, api.body_limits).await?;
    let request: TokenRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        TokenRequest::default()
    } else {
        crate::listen::http::parse_json(&bytes, r#"{"hardware_id": "board-a"}"#)?
    };
    crate::listen::http::check_device_id(&device)?;
    let tenant_row = api
        .db
        .ddi_tenant(&tenant)
        .await
        .map_err(|e| crate::listen::http::db_error("reading a DDI tenant", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_tenant",
                format!("no DDI tenant {tenant:?}; create it first (POST /api/v1/ddi/tenants)"),
            )
        })?;
    let token = new_token()?;
    let digest = token_digest(&token);
    let now = unix_now();
    api.audit
        .write(
            now,
            &caller.actor(),
            "ddi.target_token_issued",
            &device,
            json!({"tenant": tenant_row.name, "hardware_id": request.hardware_id,
                "bind_certificate_device": request.bind_certificate_device}),
            |line| {
                let (db, device, t, digest, hw) = (
                    api.db.clone(),
                    device.clone(),
                    tenant_row.name.clone(),
                    digest.clone(),
                    request.hardware_id.clone(),
                );
                let bind = request.bind_certificate_device;
                async move {
                    db.set_ddi_target_token(&device, &t, &digest, hw.as_deref(), bind, now, &line)
                        .await
                }
            },
        )
        .await
        .map_err(write_error("issuing a target token"))?;
    Ok(crate::listen::http::json_response(
        StatusCode::CREATED,
        &json!({"device": device, "tenant": tenant_row.name, "target_token": token,
            "note": "the target token is shown once; configure it on the device now"}),
    ))
}

/// A device's DDI actions, newest first.
async fn device_actions(
    State(api): State<Arc<ManagementApi>>,
    Path(device): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    crate::listen::http::check_device_id(&device)?;
    let actions = api
        .db
        .ddi_actions_of(&device, 100)
        .await
        .map_err(|e| crate::listen::http::db_error("reading DDI actions", e))?;
    Ok(crate::listen::http::json_response(
        StatusCode::OK,
        &json!({"device": device, "actions": actions}),
    ))
}

/// Deletes a device and everything stored of it, audited: how an operator resolves a row the
/// wrong identity enrolled (a gateway token claiming an id before its device enrolled with its
/// certificate, decision 0021). The device enrols afresh at its next contact.
async fn delete_device(
    State(api): State<Arc<ManagementApi>>,
    Path(device): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    crate::listen::http::check_device_id(&device)?;
    let enrolment = api
        .db
        .device_enrolment(&device)
        .await
        .map_err(|e| crate::listen::http::db_error("reading a device", e))?
        .ok_or_else(|| {
            crate::listen::http::db_error(
                "",
                DbError::Domain(DomainError::UnknownDevice(device.clone())),
            )
        })?;
    let deleted = api
        .audit
        .write(
            unix_now(),
            &caller.actor(),
            "device.deleted",
            &device,
            json!({"enrolled_by": enrolment.by.as_str(), "enrolled_tenant": enrolment.tenant}),
            |line| {
                let (db, device) = (api.db.clone(), device.clone());
                async move { db.delete_device(&device, &line).await }
            },
        )
        .await
        .map_err(write_error("deleting a device"))?;
    Ok(crate::listen::http::json_response(
        StatusCode::OK,
        &json!({"device": device, "deleted": true, "enrolment": enrolment,
            "reports_deleted": deleted.reports, "ddi_actions_deleted": deleted.ddi_actions,
            "note": "the device enrols afresh at its next contact"}),
    ))
}

/// The management routes of the DDI front.
pub(crate) fn router(api: Arc<ManagementApi>) -> Router {
    let metrics = api.metrics.clone();
    Router::new()
        .route("/api/v1/ddi/tenants", get(list_tenants).post(create_tenant))
        .route("/api/v1/ddi/tenants/{name}", put(update_tenant))
        .route(
            "/api/v1/ddi/tenants/{name}/devices/{id}/token",
            post(issue_target_token),
        )
        .route("/api/v1/ddi/devices/{id}/actions", get(device_actions))
        .route(
            "/api/v1/ddi/devices/{id}",
            axum::routing::delete(delete_device),
        )
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::observe::metrics::track_requests,
        ))
        .with_state(api)
}
