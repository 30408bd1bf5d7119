//! `POST /api/v1/monitor/alerts`: the transparency-log monitor (`rampart log monitor
//! --server URL`) reports a release signed with our key that the registry does not know. The
//! alert is stored as a security event with its audit record; the unknown-signed-release
//! detector reads it and opens the incident. Only a token of the `monitor` role (or an admin)
//! may call it: the monitor holds no other power.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::json;

use crate::engines::detectors::{MonitorAlert, record_monitor_alert};
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, json_response};

use super::{ManagementApi, Permission};

pub(super) async fn post_alert(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::MonitorAlert).await?;
    let alert: MonitorAlert = api
        .body(
            &headers,
            body,
            r#"{"target": "<target path>", "version": "...", "sha256": "<64 hex>", "index": <log entry>, "log": "<log origin>"}"#,
        )
        .await?;
    alert.validate().map_err(ApiError::invalid)?;
    record_monitor_alert(&api.db, &api.audit, &caller.actor(), &alert, unix_now())
        .await
        .map_err(crate::listen::http::write_error(
            "recording a monitor alert",
        ))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"recorded": true, "target": alert.target, "sha256": alert.sha256}),
    ))
}
