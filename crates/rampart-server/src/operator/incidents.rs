//! The incident routes of the management API (issue 16, docs/decisions/0030): viewers read
//! incidents and playbooks; operators open, acknowledge, move, contain, re-image, collect and
//! close them, and approve or reject held actions their role may approve; admins may do all,
//! and alone store playbooks. The work is the incident store's (`engines::incidents`).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use rampart_db::{Incident, IncidentAction, IncidentFilter, MAX_INCIDENT_PAGE};
use rampart_incident::model::{Action, Detector, IncidentState, Severity};
use rampart_incident::playbook::Playbooks;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engines::incidents::{IncidentError, IncidentView, OperatorIncident, lifecycle_of};
use crate::listen::http::{ApiError, audit_error, json_response};

use super::{Caller, ManagementApi, Permission, Role};

/// Longest incident or action id accepted in a path (ids are `inc-`/`act-` and 16 hex
/// digits; anything longer is unknown without asking the database).
const MAX_ID: usize = 64;

fn answer(context: &str, e: IncidentError) -> ApiError {
    match e {
        IncidentError::Invalid(m) => ApiError::invalid(m),
        IncidentError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, "unknown_incident", m),
        IncidentError::Conflict(m) | IncidentError::Contended(m) => {
            ApiError::new(StatusCode::CONFLICT, "conflict", m)
        }
        IncidentError::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", m),
        IncidentError::Audit(e) => audit_error(e),
        IncidentError::Db(e) => ApiError::from_db(context, e),
        IncidentError::NoRandomness => ApiError::internal(),
    }
}

fn check_id(what: &str, id: &str) -> Result<(), ApiError> {
    if id.is_empty()
        || id.len() > MAX_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_incident",
            format!("no {what} {id:?}; list incidents with `rampart incident list`"),
        ));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    pub(crate) state: Option<String>,
    pub(crate) severity: Option<String>,
    pub(crate) detector: Option<String>,
    pub(crate) device: Option<String>,
    pub(crate) limit: Option<i64>,
    pub(crate) offset: Option<i64>,
}

async fn list(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let incidents = list_incidents(&api, q).await?;
    let rows: Vec<Value> = incidents
        .iter()
        .map(|i| {
            let mut v = json!(i);
            v["timings"] = json!(lifecycle_of(i).timings());
            v
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"incidents": rows})))
}

/// One page of incidents, newest first, filtered as `q` asks (422 for a value no incident
/// could have): `GET /api/v1/incidents`, the web console's incident list and a device's page.
pub(crate) async fn list_incidents(
    api: &ManagementApi,
    q: ListQuery,
) -> Result<Vec<Incident>, ApiError> {
    let known = |what: &str, v: &Option<String>, ok: fn(&str) -> bool, names: &str| match v {
        Some(v) if !ok(v) => Err(ApiError::invalid(format!(
            "{what} {v:?} is unknown; use one of {names}"
        ))),
        _ => Ok(()),
    };
    known(
        "state",
        &q.state,
        |s| IncidentState::parse(s).is_some(),
        "detected, contained, eradicated, recovered, closed",
    )?;
    known(
        "severity",
        &q.severity,
        |s| Severity::parse(s).is_some(),
        "low, medium, high, critical",
    )?;
    known(
        "detector",
        &q.detector,
        |s| Detector::parse(s).is_some(),
        "the detectors of GET /api/v1/playbooks",
    )?;
    if let Some(d) = &q.device {
        crate::listen::http::check_device_id(d)?;
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=MAX_INCIDENT_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {MAX_INCIDENT_PAGE}, not {limit}"
        )));
    }
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset must not be negative"));
    }
    let filter = IncidentFilter {
        state: q.state,
        severity: q.severity,
        detector: q.detector,
        device_id: q.device,
        limit,
        offset,
    };
    api.db
        .incidents(&filter)
        .await
        .map_err(|e| ApiError::from_db("listing incidents", e))
}

/// One incident with its devices, timeline, actions and timings (404 for an unknown one):
/// `GET /api/v1/incidents/{id}` and the web console's incident page.
pub(crate) async fn incident_view(api: &ManagementApi, id: &str) -> Result<IncidentView, ApiError> {
    check_id("incident", id)?;
    api.incidents
        .view(id)
        .await
        .map_err(|e| answer("reading an incident", e))
}

async fn show(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let view = incident_view(&api, &id).await?;
    Ok(json_response(StatusCode::OK, &view))
}

async fn open(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let request: OperatorIncident = api
        .body(
            &headers,
            body,
            r#"{"severity": "high", "title": "...", "devices": ["dev-1"], "release": "fw-1.2.0.img"}"#,
        )
        .await?;
    for d in &request.devices {
        crate::listen::http::check_device_id(d)?;
    }
    let id = api
        .incidents
        .open_by_operator(&caller.actor(), &request)
        .await
        .map_err(|e| answer("opening an incident", e))?;
    let view = api
        .incidents
        .view(&id)
        .await
        .map_err(|e| answer("reading an incident", e))?;
    Ok(json_response(StatusCode::CREATED, &view))
}

async fn ack(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let done = act(&api, &caller, &id, IncidentAct::Acknowledge).await?;
    Ok(json_response(StatusCode::OK, &done))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StateRequest {
    state: String,
    #[serde(default)]
    note: String,
}

async fn set_state(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    check_id("incident", &id)?;
    let request: StateRequest = api
        .body(&headers, body, r#"{"state": "contained", "note": "..."}"#)
        .await?;
    let to = parse_state(&request.state)?;
    move_answer(&api, &caller, &id, to, request.note).await
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    #[serde(default)]
    note: String,
}

async fn close(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    check_id("incident", &id)?;
    let request: CloseRequest = optional_body(&api, &headers, body, r#"{"note": "..."}"#).await?;
    move_answer(&api, &caller, &id, IncidentState::Closed, request.note).await
}

/// The answer of a move: the incident as it now is, with its timings.
async fn move_answer(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    to: IncidentState,
    note: String,
) -> Result<Response, ApiError> {
    let done = act(api, caller, id, IncidentAct::Move { to, note }).await?;
    Ok(json_response(StatusCode::OK, &done))
}

/// A state an operator moves an incident to, or 422 naming the ones there are.
pub(crate) fn parse_state(state: &str) -> Result<IncidentState, ApiError> {
    IncidentState::parse(state).ok_or_else(|| {
        ApiError::invalid(format!(
            "state {state:?} is unknown; use contained, eradicated, recovered or closed"
        ))
    })
}

/// What an operator does to an incident.
pub(crate) enum IncidentAct {
    Acknowledge,
    /// Forward to `to` (closing included), with a note for the timeline.
    Move {
        to: IncidentState,
        note: String,
    },
    /// Quarantine every device of the incident.
    Contain,
    /// Collect forensic evidence from every device of the incident.
    CollectEvidence,
    /// Re-image every device of the incident, onto `release` or each one's last good release.
    Reimage {
        release: Option<String>,
    },
}

/// Carries out `what` on incident `id` for `caller` (who needs [`Permission::Operate`]): the
/// management API's routes and the web console's forms both come here, so both refuse and do
/// exactly the same. The answer is the API's JSON.
pub(crate) async fn act(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    what: IncidentAct,
) -> Result<Value, ApiError> {
    caller.require(Permission::Operate)?;
    check_id("incident", id)?;
    match what {
        IncidentAct::Acknowledge => {
            let acknowledged = api
                .incidents
                .acknowledge(id, &caller.actor())
                .await
                .map_err(|e| answer("acknowledging an incident", e))?;
            Ok(json!({"id": id, "newly_acknowledged": acknowledged}))
        }
        IncidentAct::Move { to, note } => {
            let incident = api
                .incidents
                .move_to(id, to, &caller.actor(), &note)
                .await
                .map_err(|e| answer("moving an incident", e))?;
            let mut v = json!(incident);
            v["timings"] = json!(lifecycle_of(&incident).timings());
            Ok(v)
        }
        IncidentAct::Contain => {
            request_action(api, caller, id, Action::Quarantine, json!({})).await
        }
        IncidentAct::CollectEvidence => {
            request_action(api, caller, id, Action::CollectEvidence, json!({})).await
        }
        IncidentAct::Reimage { release } => {
            let detail = match &release {
                Some(release) => {
                    // Only a firmware release the hosted repository knows is a re-imaging target.
                    api.firmware_release(release).await?;
                    json!({"release": release})
                }
                None => json!({}),
            };
            request_action(api, caller, id, Action::Reimage, detail).await
        }
    }
}

/// A body that may be empty (no fields needed): empty means the defaults.
async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    api: &ManagementApi,
    headers: &HeaderMap,
    body: Body,
    expected: &str,
) -> Result<T, ApiError> {
    let bytes = crate::listen::http::read_body(headers, body, api.body_limits).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    crate::listen::http::parse_json(&bytes, expected)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReimageRequest {
    /// The known-good release (a target of the image repository); none: the re-imaging
    /// executor picks each device's last attested-good release.
    release: Option<String>,
}

async fn request_action(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    action: Action,
    detail: Value,
) -> Result<Value, ApiError> {
    let requested = api
        .incidents
        .request(id, action, &caller.actor(), detail)
        .await
        .map_err(|e| answer("requesting incident actions", e))?;
    Ok(json!({"id": id, "action": action.as_str(), "requested": requested}))
}

/// An action for every device of the incident: 202 with what was requested.
async fn act_on_devices(
    api: Arc<ManagementApi>,
    headers: HeaderMap,
    id: String,
    what: IncidentAct,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let done = act(&api, &caller, &id, what).await?;
    Ok(json_response(StatusCode::ACCEPTED, &done))
}

async fn contain(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act_on_devices(api, headers, id, IncidentAct::Contain).await
}

async fn collect(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    act_on_devices(api, headers, id, IncidentAct::CollectEvidence).await
}

async fn reimage(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    check_id("incident", &id)?;
    let request: ReimageRequest =
        optional_body(&api, &headers, body, r#"{"release": "fw-1.2.0.img"}"#).await?;
    let release = request.release;
    let done = act(&api, &caller, &id, IncidentAct::Reimage { release }).await?;
    Ok(json_response(StatusCode::ACCEPTED, &done))
}

async fn decide(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path((id, decision)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let approve = match decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "use POST /api/v1/incident-actions/{id}/approve or .../reject",
            ));
        }
    };
    let action = decide_action(&api, &caller, &id, approve).await?;
    Ok(json_response(StatusCode::OK, &action))
}

/// Approves or rejects the held incident action `id` for `caller` (an operator or admin, and
/// the role the playbook names): the API's route and the web console's buttons.
pub(crate) async fn decide_action(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    approve: bool,
) -> Result<IncidentAction, ApiError> {
    caller.require(Permission::Operate)?;
    check_id("incident action", id)?;
    // The playbook's roles: operator and admin (a viewer, auditor or monitor never got here).
    let role = match caller.role() {
        Role::Admin => Some(rampart_incident::model::Role::Admin),
        Role::Operator => Some(rampart_incident::model::Role::Operator),
        Role::Viewer | Role::Auditor | Role::Monitor => None,
    };
    api.incidents
        .decide(id, approve, &caller.actor(), role)
        .await
        .map_err(|e| match e {
            IncidentError::NotFound(m) => {
                ApiError::new(StatusCode::NOT_FOUND, "unknown_incident_action", m)
            }
            e => answer("deciding an incident action", e),
        })
}

async fn get_playbooks(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    Ok(json_response(StatusCode::OK, &api.incidents.playbooks()))
}

async fn put_playbooks(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    let playbooks: Playbooks = api
        .body(
            &headers,
            body,
            r#"{"attestation_failed": {"default": {"now": ["quarantine", "alert"], "approve": [{"action": "reimage", "role": "operator"}]}}}"#,
        )
        .await?;
    api.incidents
        .set_playbooks(playbooks, &caller.actor())
        .await
        .map_err(|e| answer("storing playbooks", e))?;
    Ok(json_response(StatusCode::OK, &api.incidents.playbooks()))
}

/// The incident routes, with request metrics.
pub(crate) fn router(api: Arc<ManagementApi>) -> Router {
    let metrics = api.metrics.clone();
    Router::new()
        .route("/api/v1/incidents", get(list).post(open))
        .route("/api/v1/incidents/{id}", get(show))
        .route("/api/v1/incidents/{id}/ack", post(ack))
        .route("/api/v1/incidents/{id}/state", post(set_state))
        .route("/api/v1/incidents/{id}/contain", post(contain))
        .route("/api/v1/incidents/{id}/reimage", post(reimage))
        .route("/api/v1/incidents/{id}/collect", post(collect))
        .route("/api/v1/incidents/{id}/close", post(close))
        .route("/api/v1/incident-actions/{id}/{decision}", post(decide))
        .route("/api/v1/playbooks", get(get_playbooks).put(put_playbooks))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::observe::metrics::track_requests,
        ))
        .with_state(api)
}
