//! The director routes of the native device API (the director itself is `delivery::director`).
//!
//! * `GET /device/v1/director/root.json` — the director root the server runs with.
//! * `GET /device/v1/director/{N}.root.json` — director root version N, from the directory of
//!   the configured root file (404 when there is none: a device walking the rotation chain
//!   stops there).
//! * `GET /device/v1/director/targets.json` — the calling device's director targets metadata:
//!   version = the device's assignment version (it only grows), expiring
//!   `DirectorConfig::targets_expiry` ahead, listing the assigned target copied from the
//!   image repository and bound to the device. 404 `no_assignment` before the device was ever
//!   assigned anything; an assignment cancelled since lists no target. Signed copies are cached
//!   per (device, version) while more than half their validity remains, for at most
//!   `MAX_CACHED` devices. `ETag`/`If-None-Match` → 304.

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_core::director::{build_targets, envelope, signing_bytes};
use rampart_core::metadata::Signature;

use super::Delivery;
use crate::delivery::director::{Director, MAX_ROOT_BYTES, Signed};
use crate::helpers::unix_now;
use crate::listen::http::ApiError;
use crate::listen::mtls::PeerIdentity;

fn not_found(detail: String) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", detail)
}

fn json_with_etag(bytes: &[u8], headers: &HeaderMap, etag: &str) -> Result<Response, ApiError> {
    let etag_value = HeaderValue::from_str(etag).map_err(|_| ApiError::internal())?;
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag);
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, bytes.to_vec()).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    let h = response.headers_mut();
    h.insert(header::ETAG, etag_value);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

fn etag_of(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    format!("\"{}\"", hex::encode(&digest.as_ref()[..16]))
}

/// `GET /device/v1/director/{file}`: `root.json`, `N.root.json` or `targets.json`.
pub(crate) async fn director_file(
    State(delivery): State<Arc<Delivery>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(director) = delivery.director.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_director",
            "this server runs no Uptane director (start it with --director-root and --director-key)",
        ));
    };
    let device_id = delivery.device(&peer).await?;
    if file == "targets.json" {
        // The root files stay readable to a quarantined device: it checks the signed
        // quarantine instruction with them.
        delivery
            .api
            .require_not_quarantined_unless_reimaging(&device_id)
            .await?;
        delivery
            .api
            .require_attested(&device_id, unix_now())
            .await?;
        return targets(&delivery, director, &device_id, &headers).await;
    }
    if file == "root.json" {
        return json_with_etag(
            &director.root_bytes,
            &headers,
            &etag_of(&director.root_bytes),
        );
    }
    let no_such = || {
        not_found(format!(
            "the director has no file {file:?}; it serves root.json, N.root.json and targets.json"
        ))
    };
    let version: u64 = file
        .strip_suffix(".root.json")
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(no_such)?;
    if version == director.root_version {
        return json_with_etag(
            &director.root_bytes,
            &headers,
            &etag_of(&director.root_bytes),
        );
    }
    // Never hand out a root newer than the one this server signs under: a device that adopted
    // it would refuse everything signed with the current online key until the server restarts.
    if version > director.root_version {
        return Err(not_found(format!(
            "there is no director root version {version} (the current one is {})",
            director.root_version
        )));
    }
    let path = director.root_dir.join(format!("{version}.root.json"));
    let bytes = match tokio::fs::read(&path).await {
        Ok(bytes) if bytes.len() as u64 <= MAX_ROOT_BYTES => bytes,
        Ok(_) => {
            crate::observe::log::error(
                &format!("{} is over {MAX_ROOT_BYTES} bytes", path.display()),
                serde_json::Value::Null,
            );
            return Err(no_such());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(not_found(format!(
                "there is no director root version {version} (the current one is {})",
                director.root_version
            )));
        }
        Err(e) => {
            crate::observe::log::error(
                &format!("reading {}: {e}", path.display()),
                serde_json::Value::Null,
            );
            return Err(ApiError::internal());
        }
    };
    json_with_etag(&bytes, &headers, &etag_of(&bytes))
}

async fn targets(
    delivery: &Delivery,
    director: &Director,
    device_id: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let assignment = delivery
        .api
        .db
        .device_assignment(device_id)
        .await
        .map_err(|e| ApiError::from_db("reading a device assignment", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_assignment",
                format!(
                    "no release has ever been assigned to device {device_id:?}; poll until the answer's assignment is not null"
                ),
            )
        })?;
    let version = u64::try_from(assignment.version)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| {
            crate::observe::log::error(
                &format!(
                    "device {device_id:?} has assignment version {}",
                    assignment.version
                ),
                serde_json::Value::Null,
            );
            ApiError::internal()
        })?;
    let now = unix_now();
    if let Some((bytes, etag)) =
        director.cached(device_id, assignment.version, &assignment.target, now)
    {
        return json_with_etag(&bytes, headers, &etag);
    }
    let mut assigned = Vec::new();
    if !assignment.target.is_empty() {
        let target = assignment.target.clone();
        let info = delivery
            .blocking(move |repo| repo.target(&target, now))
            .await?
            .ok_or_else(|| {
                crate::observe::log::error(&format!(
                    "device {device_id:?} is assigned {:?}, which the image repository does not list",
                    assignment.target
                ), serde_json::Value::Null);
                ApiError::new(
                    StatusCode::CONFLICT,
                    "assigned_target_missing",
                    format!(
                        "the release assigned to this device ({:?}) is not in the image repository; the operator must assign a published release. Retry later",
                        assignment.target
                    ),
                )
            })?;
        assigned.push((assignment.target.clone(), info));
    }
    let expires_unix = now.saturating_add(director.expiry_secs);
    let body = build_targets(device_id, version, expires_unix, &assigned);
    let canonical = signing_bytes(&body);
    let signer = director.signer.clone();
    let signature = tokio::task::spawn_blocking(move || signer.sign(&canonical))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(|e| {
            crate::observe::log::error(
                &format!("signing director metadata: {e}"),
                serde_json::Value::Null,
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "director_unavailable",
                "the director could not sign this device's metadata right now; retry later",
            )
        })?;
    let bytes = Arc::new(envelope(
        &body,
        &[Signature {
            keyid: director.signer.key_id(),
            sig: hex::encode(signature),
        }],
    ));
    let etag = etag_of(&bytes);
    director.remember(
        device_id,
        Signed {
            version: assignment.version,
            target: assignment.target,
            expires_unix,
            bytes: bytes.clone(),
            etag: etag.clone(),
        },
    );
    json_with_etag(&bytes, headers, &etag)
}
