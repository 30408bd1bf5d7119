//! Each advisory's exposure window (issue 17, decision 0046), as the risk watch keeps it:
//!
//! * `GET /api/v1/risk/exposure?state=open|remediated|withdrawn&limit&offset` (read): advisories
//!   by exposure; open ones oldest first (the longest-exposed on top), remediated and withdrawn
//!   ones latest first; each with its window (`published` -> `remediated_at`), paged.
//! * the `exposure` object of `GET /api/v1/risk/advisories/{id}` ([`exposure_json`]).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::ExposureRecord;
use rampart_vuln::exposure::{Exposure, ExposureState};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::listen::http::{ApiError, db_error, json_response};

use super::{ManagementApi, Permission, page_limit};

/// The `exposure` object of an advisory (`null` fields while unknown): what the console charts.
pub(super) fn exposure_json(exposure: Option<&Exposure>) -> Value {
    let Some(e) = exposure else {
        return json!({
            "state": "unaffected", "published": null, "first_affected_at": null,
            "remediated_at": null, "withdrawn_at": null, "window_secs": null,
            "affected_now": 0, "peak_affected": 0,
        });
    };
    json!({
        "state": e.state().as_str(),
        "published": e.published,
        "first_affected_at": e.first_affected_at,
        "remediated_at": e.remediated_at,
        "withdrawn_at": e.withdrawn_at,
        "window_secs": e.window_secs(),
        "affected_now": e.affected_now,
        "peak_affected": e.peak_affected,
    })
}

fn record_json(r: &ExposureRecord, now: i64) -> Value {
    let mut v = exposure_json(Some(&r.exposure));
    v["advisory"] = json!(r.advisory_id);
    // How long an open exposure has lasted so far (from publication, else first affected).
    v["open_secs"] = match r.exposure.state() {
        ExposureState::Open => json!(
            r.exposure
                .published
                .or(r.exposure.first_affected_at)
                .map(|start| now.saturating_sub(start).max(0))
        ),
        _ => Value::Null,
    };
    v["updated_at"] = json!(r.updated_at);
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExposureQuery {
    state: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

pub(super) async fn list_exposure(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<ExposureQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(query) = query.map_err(|e| {
        ApiError::invalid(format!(
            "query: {}; this route takes state (open, remediated or withdrawn), limit and offset",
            e.body_text()
        ))
    })?;
    let state = match query.state.as_deref() {
        None => None,
        Some(s) => Some(ExposureState::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "state must be open, remediated or withdrawn, not {s:?}"
            ))
        })?),
    };
    let limit = page_limit(query.limit)?;
    let offset = match query.offset {
        None => 0,
        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "offset must be between 0 and {}, not {n}",
                u32::MAX
            )));
        }
    };
    let (total, records) = api
        .db
        .exposure_page(state, limit, offset)
        .await
        .map_err(|e| db_error("reading advisory exposure", e))?;
    let now = crate::helpers::unix_now();
    let rows: Vec<Value> = records.iter().map(|r| record_json(r, now)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "state": state.map(ExposureState::as_str),
            "total": total,
            "limit": limit,
            "offset": offset,
            "rows": rows,
        }),
    ))
}
