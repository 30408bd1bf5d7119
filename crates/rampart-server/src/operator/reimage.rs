//! `POST /api/v1/devices/{id}/reimage` (operator role): a forced re-image of one device, to the
//! release named in the body or else to the device's last attested-good release (see
//! [`crate::engines::reimage`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use crate::engines::reimage::{ReimageError, ReimageRequest, reimage_device};
use crate::helpers::new_id;
use crate::listen::http::{ApiError, json_response, parse_json, read_body, write_error};

use super::{ManagementApi, Permission};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Request {
    /// The release (target path); absent: the device's last attested-good release.
    #[serde(default)]
    release: Option<String>,
}

pub(super) async fn reimage(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    crate::listen::http::check_device_id(&id)?;
    let bytes = read_body(&headers, body, api.body_limits).await?;
    let request: Request = if bytes.iter().all(u8::is_ascii_whitespace) {
        Request::default()
    } else {
        parse_json(&bytes, r#"{"release": "<release target> (optional)"}"#)?
    };
    if let Some(release) = &request.release
        && (release.is_empty() || release.len() > 1024 || release.chars().any(char::is_control))
    {
        return Err(ApiError::invalid(
            "release must be a target path of 1 to 1024 bytes without control characters",
        ));
    }
    let actor = caller.actor();
    let (assignment, choice) = reimage_device(
        &api.db,
        &api.audit,
        api.image_repo.as_ref(),
        &ReimageRequest {
            device_id: &id,
            release: request.release.as_deref(),
            actor: &actor,
            assignment_id: new_id("rei")?,
            incident: None,
        },
    )
    .await
    .map_err(reimage_error)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"assignment": assignment, "release_chosen": choice.as_str()}),
    ))
}

fn reimage_error(e: ReimageError) -> ApiError {
    match e {
        ReimageError::UnknownDevice(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "unknown_device", e.to_string())
        }
        ReimageError::NoRepository => {
            ApiError::new(StatusCode::CONFLICT, "no_image_repository", e.to_string())
        }
        ReimageError::Write { context, source } => write_error(context)(source),
        ReimageError::Repository(_) => {
            crate::observe::log::error(
                "a re-image could not read the image repository",
                json!({"error": e.to_string()}),
            );
            ApiError::internal()
        }
        ReimageError::Revoked(_)
        | ReimageError::NoKnownGoodRelease(_)
        | ReimageError::UnknownRelease(_)
        | ReimageError::IncompatibleHardware { .. }
        | ReimageError::BelowFloor { .. } => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reimage_refused",
            e.to_string(),
        ),
    }
}
