//! Hosting the image repository to devices (native device API, mutual TLS).
//!
//! * `GET /device/v1/repo/metadata/{file}` — the image repository's TUF metadata files
//!   (`N.root.json`, `timestamp.json`, `N.snapshot.json`, `N.targets.json`, delegated roles),
//!   as they are on disk. Any device may read them: they are signed, and the device verifies
//!   them with its TUF client. A name other than letters, digits, `.`, `_` and `-` ending in
//!   `.json` is refused with 400 (no path can leave `metadata/`).
//! * `GET /device/v1/repo/targets/{path}` — an artifact, in consistent-snapshot form
//!   (`[dir/]<hash>.<name>`). Only the artifacts of the device's current assignment are served:
//!   the assigned target and the documents its release information references (SBOM,
//!   provenance, tlog-proof). Anything else is 403 `artifact_not_assigned`; a path with an empty,
//!   `.` or `..` segment, a backslash or a control character is 400 `bad_path`. How the
//!   artifact is answered (ranges, ETags) is [`crate::delivery`]'s.
//!
//! The server's view of the repository ([`HostedRepo`](crate::delivery::image_repo::HostedRepo)) is read exactly as a device reads it:
//! the TUF client over `file://`, from `metadata/1.root.json` through every rotation, so a
//! tampered or expired repository is reported (503, logged with the reason) instead of served
//! as assignments.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Delivery;
use crate::delivery::artifact_store::open_file;
use crate::delivery::image_repo::MAX_METADATA_BYTES;
use crate::delivery::serve_artifact;
use crate::helpers::unix_now;
use crate::listen::http::ApiError;
use crate::listen::mtls::PeerIdentity;

/// Longest artifact path accepted, in bytes.
const MAX_PATH_LEN: usize = 1024;

fn bad_path(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", detail)
}

/// A metadata file name: letters, digits, `.`, `_`, `-`, ending in `.json`, not hidden.
fn check_metadata_name(file: &str) -> Result<(), ApiError> {
    let ok = file.len() <= 255
        && file.len() > ".json".len()
        && file.ends_with(".json")
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad_path(format!(
            "{file:?} is not a metadata file name; ask for e.g. timestamp.json, 1.root.json or 3.snapshot.json"
        )))
    }
}

/// An artifact path below `targets/`: relative, no empty, `.` or `..` segment, no backslash or
/// control character.
fn check_artifact_path(path: &str) -> Result<(), ApiError> {
    let bad = path.is_empty()
        || path.len() > MAX_PATH_LEN
        || path.bytes().any(|b| b == b'\\' || b.is_ascii_control())
        || path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        Err(bad_path(format!(
            "{path:?} is not an artifact path; ask for targets/[dir/]<hash>.<name> as the TUF metadata lists it"
        )))
    } else {
        Ok(())
    }
}

pub(crate) async fn metadata_file(
    State(delivery): State<Arc<Delivery>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    UrlPath(file): UrlPath<String>,
) -> Result<Response, ApiError> {
    check_metadata_name(&file)?;
    let device_id = delivery.device(&peer).await?;
    delivery
        .api
        .require_not_quarantined_unless_reimaging(&device_id)
        .await?;
    let path = delivery.repo.dir().join("metadata").join(&file);
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the image repository has no metadata file {file:?}"),
        )
    };
    let (body, length) = match open_file(&path, 0, None).await {
        Ok(Some((stream, length))) => (Body::from_stream(stream), length),
        Ok(None) => return Err(not_found()),
        Err(e) => {
            crate::observe::log::error(
                &format!("reading {}: {e}", path.display()),
                serde_json::Value::Null,
            );
            return Err(ApiError::internal());
        }
    };
    if length > MAX_METADATA_BYTES {
        crate::observe::log::error(
            &format!(
                "{} is {length} bytes, over the {MAX_METADATA_BYTES}-byte limit",
                path.display()
            ),
            serde_json::Value::Null,
        );
        return Err(not_found());
    }
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

pub(crate) async fn target_file(
    State(delivery): State<Arc<Delivery>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_artifact_path(&path)?;
    let device_id = delivery.device(&peer).await?;
    delivery
        .api
        .require_not_quarantined_unless_reimaging(&device_id)
        .await?;
    delivery
        .api
        .require_attested(&device_id, unix_now())
        .await?;
    let assignment = delivery
        .api
        .db
        .device_assignment(&device_id)
        .await
        .map_err(|e| ApiError::from_db("reading a device assignment", e))?;
    let not_assigned = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "artifact_not_assigned",
            format!(
                "{path:?} is not an artifact of the release assigned to device {device_id:?}; a device may fetch only the target its director metadata lists and that release's documents"
            ),
        )
    };
    let target = match assignment {
        Some(a) if !a.target.is_empty() => a.target,
        _ => return Err(not_assigned()),
    };
    let now = unix_now();
    let artifacts = delivery
        .blocking(move |repo| repo.artifacts(&target, now))
        .await?;
    let Some(artifact) = artifacts.into_iter().find(|a| a.file == path) else {
        return Err(not_assigned());
    };
    serve_artifact(
        &delivery.artifacts,
        &path,
        &artifact,
        &headers,
        method == Method::HEAD,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_odd_paths_are_refused() {
        for bad in [
            "../secret",
            "a/../../b",
            "./a",
            "a//b",
            "/etc/passwd",
            "a\\..\\b",
            "a\0b",
            "",
            "a/",
        ] {
            assert_eq!(
                check_artifact_path(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
        check_artifact_path("1.0.0/abc.fw.img").unwrap();
        check_artifact_path("abc.fw..img").unwrap();
        for bad in [
            "../1.root.json",
            "a/b.json",
            ".hidden.json",
            "x.txt",
            ".json",
            "a b.json",
        ] {
            assert!(check_metadata_name(bad).is_err(), "{bad:?}");
        }
        check_metadata_name("timestamp.json").unwrap();
        check_metadata_name("3.board-a_x.json").unwrap();
    }
}
