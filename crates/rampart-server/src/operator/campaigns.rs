//! The campaign routes (management listener, bearer tokens); the engine they drive is
//! `engines::campaigns`.
//! * `GET/POST /api/v1/campaigns` — list; create (`{"spec": CampaignSpec, "start": bool}`).
//! * `GET /api/v1/campaigns/{id}` — spec, state, plan and per-wave figures.
//! * `POST /api/v1/campaigns/{id}/{start|pause|resume|abort|approve}`.
//! * `GET /api/v1/campaigns/{id}/report?format=json|csv`.
//! * `PUT/DELETE /api/v1/groups/{name}/maintenance-window`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_db::Campaign;
use rampart_rollout::window::MaintenanceWindow;
use rampart_rollout::{Action, CampaignSpec, CampaignState, DeviceRecord, Outcome, Plan, Status};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engines::campaigns::{ActionFailed, CampaignError, Loaded, load};
use crate::helpers::{new_id, unix_now};
use crate::listen::http::{ApiError, db_error, json_response, write_error};
use crate::operator::{Caller, ManagementApi, Permission};

/// A refused or failed campaign action, as an answer.
pub(super) fn action_failed(e: ActionFailed) -> ApiError {
    match e {
        ActionFailed::Refused(e) => action_error(e),
        ActionFailed::Invalid(detail) => ApiError::invalid(detail),
        ActionFailed::Read(context, e) => db_error(context, e),
        ActionFailed::Write(context, e) => write_error(context)(e),
        ActionFailed::Step(e) => campaign_api_error(e),
        ActionFailed::Encoding => ApiError::internal(),
    }
}

fn action_error(e: rampart_rollout::ActionError) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "invalid_action", e.to_string())
}

fn campaign_api_error(e: CampaignError) -> ApiError {
    match e {
        CampaignError::Db(e) => ApiError::from_db("a campaign step", e),
        CampaignError::Audit(e) => write_error("a campaign step")(e),
        CampaignError::Corrupt(..) => {
            crate::observe::log::error(
                "a stored campaign is unreadable",
                json!({"error": e.to_string()}),
            );
            ApiError::internal()
        }
    }
}

pub(crate) async fn loaded(api: &ManagementApi, id: &str) -> Result<Loaded, ApiError> {
    let row = api
        .db
        .campaign(id)
        .await
        .map_err(|e| ApiError::from_db("reading a campaign", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_campaign",
                format!("no campaign {id:?}; list them with GET /api/v1/campaigns"),
            )
        })?;
    load(row).map_err(campaign_api_error)
}

// ---- handlers ------------------------------------------------------------------------------

pub(crate) async fn create(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        spec: CampaignSpec,
        #[serde(default)]
        start: bool,
    }
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let r: Request = api
        .body(
            &headers,
            body,
            r#"{"spec": {"name", "release", "targets": {...}, "phases"?, "gate"?, "policy"?, ...}, "start": true|false}"#,
        )
        .await?;
    r.spec
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let campaigns = api.campaigns()?;
    let release = api.firmware_release(&r.spec.release).await?;
    if let Some(back) = &r.spec.rollback_release {
        api.firmware_release(back).await?;
    }
    let now = unix_now();
    let id = new_id("c")?;
    let row = Campaign {
        id: id.clone(),
        name: r.spec.name.clone(),
        release_target: r.spec.release.clone(),
        spec: serde_json::to_value(&r.spec).map_err(|_| ApiError::internal())?,
        plan: vec![],
        state: serde_json::to_value(CampaignState::draft()).map_err(|_| ApiError::internal())?,
        status: Status::Draft.as_str().into(),
        created: now,
        created_by: caller.actor(),
        updated: now,
    };
    api.audit
        .write(
            now,
            &caller.actor(),
            "campaign.created",
            &id,
            json!({"name": row.name, "release": row.release_target}),
            |line| {
                let (db, row) = (api.db.clone(), row.clone());
                async move { db.create_campaign(&row, &line).await }
            },
        )
        .await
        .map_err(write_error("creating a campaign"))?;
    let mut started = Value::Null;
    if r.start {
        let _guard = campaigns.lock.lock().await;
        let c = loaded(&api, &id).await?;
        started = campaigns
            .start(c, &release, &caller.actor(), unix_now())
            .await
            .map_err(action_failed)?;
    }
    let c = loaded(&api, &id).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"id": id, "status": c.state.status.as_str(), "state": c.state, "plan": c.row.plan, "started": started}),
    ))
}

pub(crate) async fn list(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let rows = api
        .db
        .list_campaigns(1000)
        .await
        .map_err(|e| ApiError::from_db("listing campaigns", e))?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|c| {
            json!({"id": c.id, "name": c.name, "release": c.release_target, "status": c.status,
                   "created": c.created, "created_by": c.created_by, "waves": c.plan.len(),
                   "targets": c.plan.last().copied().unwrap_or(0)})
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"campaigns": list})))
}

pub(crate) async fn get(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let c = loaded(&api, &id).await?;
    let report = report_json(&api, &c).await?;
    Ok(json_response(StatusCode::OK, &report))
}

pub(crate) async fn action(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let body = act(&api, &caller, &id, &action).await?;
    Ok(json_response(StatusCode::OK, &body))
}

/// Carries out the campaign action named `action` for `caller` (who needs
/// [`Permission::Operate`]): the management API's route and the web console's buttons both
/// come here, so both refuse and do exactly the same.
pub(crate) async fn act(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    action: &str,
) -> Result<Value, ApiError> {
    caller.require(Permission::Operate)?;
    let action = Action::parse(action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!(
                "{action:?} is not a campaign action; use start, pause, resume, abort or approve"
            ),
        )
    })?;
    let campaigns = api.campaigns()?;
    let _guard = campaigns.lock.lock().await;
    let c = loaded(api, id).await?;
    let now = unix_now();
    let details = match action {
        Action::Start => {
            let release = api.firmware_release(&c.spec.release).await?;
            if let Some(back) = &c.spec.rollback_release {
                api.firmware_release(back).await?;
            }
            campaigns
                .start(c, &release, &caller.actor(), now)
                .await
                .map_err(action_failed)?
        }
        other => campaigns
            .act(c, other, &caller.actor(), now)
            .await
            .map_err(action_failed)?,
    };
    let c = loaded(api, id).await?;
    Ok(json!({"id": id, "status": c.state.status.as_str(), "state": c.state, "result": details}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    format: Option<String>,
}

pub(crate) async fn report(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    crate::listen::http::ApiQuery(q): crate::listen::http::ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let c = loaded(&api, &id).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(json_response(StatusCode::OK, &report_json(&api, &c).await?)),
        "csv" => {
            let (figures, _) = figures_of(&api, &c).await?;
            let csv = figures
                .map(|f| rampart_rollout::to_csv(&f))
                .unwrap_or_default();
            Ok((
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                )],
                csv,
            )
                .into_response())
        }
        other => Err(ApiError::invalid(format!(
            "format {other:?} is not supported; use json or csv"
        ))),
    }
}

pub(crate) async fn figures_of(
    api: &ManagementApi,
    c: &Loaded,
) -> Result<(Option<rampart_rollout::Figures>, BTreeMap<String, u64>), ApiError> {
    let Some(plan) = &c.plan else {
        return Ok((None, BTreeMap::new()));
    };
    let devices = api
        .db
        .campaign_devices(&c.row.id)
        .await
        .map_err(|e| ApiError::from_db("reading a campaign's devices", e))?;
    let mut rollback: BTreeMap<String, u64> = BTreeMap::new();
    let records: Vec<DeviceRecord> = devices
        .iter()
        .map(|d| {
            if !d.rollback_outcome.is_empty() {
                *rollback.entry(d.rollback_outcome.clone()).or_default() += 1;
            }
            DeviceRecord {
                wave: d.wave.max(0) as usize,
                outcome: Outcome::parse(&d.outcome).unwrap_or(Outcome::Waiting),
                reason: (!d.reason.is_empty()).then(|| d.reason.clone()),
                result_at: d.result_at,
            }
        })
        .collect();
    Ok((
        Some(rampart_rollout::figures(plan, &records, c.state.started)),
        rollback,
    ))
}

async fn report_json(api: &ManagementApi, c: &Loaded) -> Result<Value, ApiError> {
    let (figures, rollback) = figures_of(api, c).await?;
    let rolled_back_devices: u64 = rollback.values().sum();
    Ok(json!({
        "id": c.row.id,
        "name": c.row.name,
        "release": c.row.release_target,
        "status": c.state.status.as_str(),
        "created": c.row.created,
        "created_by": c.row.created_by,
        "spec": c.spec,
        "state": c.state,
        "plan": c.row.plan,
        "wave": c.state.wave,
        "wave_name": Plan::wave_name(c.state.wave),
        "figures": figures,
        "fleet_rollback": (rolled_back_devices > 0).then(|| json!({
            "devices": rolled_back_devices,
            "by_status": rollback,
        })),
    }))
}

pub(crate) async fn set_window(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let w: MaintenanceWindow = api
        .body(
            &headers,
            body,
            r#"{"cron": "0 2 * * *", "duration_secs": 7200, "timezone": "Europe/Berlin"}"#,
        )
        .await?;
    let compiled = w.compile().map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = unix_now();
    let text = serde_json::to_string(&w).map_err(|_| ApiError::internal())?;
    api.audit
        .write(
            now,
            &caller.actor(),
            "group.window_set",
            &group,
            serde_json::to_value(&w).unwrap_or_default(),
            |line| {
                let (db, group, text) = (api.db.clone(), group.clone(), text.clone());
                async move { db.set_group_window(&group, Some(&text), &line).await }
            },
        )
        .await
        .map_err(write_error("setting a maintenance window"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"group": group, "maintenance_window": w, "open_now": compiled.is_open(now), "next_open": compiled.next_open(now)}),
    ))
}

pub(crate) async fn clear_window(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    api.audit
        .write(
            unix_now(),
            &caller.actor(),
            "group.window_cleared",
            &group,
            json!({}),
            |line| {
                let (db, group) = (api.db.clone(), group.clone());
                async move { db.set_group_window(&group, None, &line).await }
            },
        )
        .await
        .map_err(write_error("clearing a maintenance window"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
