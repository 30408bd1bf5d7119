//! The DDI routes and their handlers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use rampart_db::{DdiAction, DdiModule};
use rampart_ddi::action::cache_buster;
use rampart_ddi::config_data::ConfigData;
use rampart_ddi::wire::{
    CancelActionDoc, Feedback, Link, Links, PollAnswer, StopId, md5sum_line, parse_lenient,
};
use rampart_ddi::{
    ActionState, ActionType, FeedbackError, WindowState, cancel_feedback, deployment_feedback,
    deployment_modes,
};

use crate::helpers::unix_now;
use crate::listen::http::read_body;
use crate::listen::https::DdiPeer;
use crate::observe::metrics::Metrics;

use super::DdiApi;
use super::actions::*;
use super::auth::*;
use super::checks::*;
use super::errors::*;

/// The DDI routes.
pub(crate) fn router(api: Arc<DdiApi>) -> Router {
    let metrics = api.metrics.clone();
    let guard = crate::listen::auth_failures::Guard {
        failures: api.auth_failures.clone(),
        api: crate::listen::auth_failures::Api::Ddi,
    };
    let base = "/{tenant}/controller/v1/{controller}";
    Router::new()
        .route(base, get(poll))
        .route(
            &format!("{base}/deploymentBase/{{action}}"),
            get(deployment_base),
        )
        .route(
            &format!("{base}/deploymentBase/{{action}}/feedback"),
            post(deployment_feedback_route),
        )
        .route(
            &format!("{base}/cancelAction/{{action}}"),
            get(cancel_action),
        )
        .route(
            &format!("{base}/cancelAction/{{action}}/feedback"),
            post(cancel_feedback_route),
        )
        .route(&format!("{base}/configData"), put(config_data))
        .route(
            &format!("{base}/installedBase/{{action}}"),
            get(installed_base),
        )
        .route(
            &format!("{base}/softwaremodules/{{module}}/artifacts"),
            get(module_artifacts),
        )
        .route(
            &format!("{base}/softwaremodules/{{module}}/artifacts/{{file}}"),
            get(artifact_file),
        )
        .with_state(api)
        .fallback(|| async {
            DdiError::new(
                StatusCode::NOT_FOUND,
                "rampart.not_found",
                "no such DDI resource; the API is under /{tenant}/controller/v1/{controllerId}",
            )
        })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .layer(axum::middleware::from_fn_with_state(
            guard,
            crate::listen::auth_failures::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::observe::metrics::track_requests,
        ))
}

pub(super) async fn poll(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, true)
        .await?;
    Metrics::inc(&api.metrics.polls);
    let now = unix_now();
    let base = api.base(&headers, &caller.tenant.name, &caller.id);
    let mut links = Links::new();
    // A quarantined device is offered no deployment and no configData (decision 0031), but
    // for a forced re-image: the one install quarantine allows.
    let quarantined = api.quarantine(&caller.id).await?.is_some();
    let (active, installed) = api
        .db
        .ddi_actions_now(&caller.id)
        .await
        .map_err(|e| DdiError::db("reading DDI actions", e))?;
    if let Some(action) = api
        .sync_action(&caller, active, installed.as_ref(), now)
        .await?
    {
        if action.state == ActionState::Canceling.as_str() {
            // No query string: SWUpdate appends `/feedback` to this link as text.
            links.insert(
                "cancelAction".into(),
                Link::new(format!("{base}/cancelAction/{}", action.id)),
            );
        } else {
            let window = api.action_window(&caller, &action, now).await?;
            // While the device's window is closed the deployment is held back: SWUpdate
            // answers `update: skip` by closing the action as if installed. So it is for a
            // device the fleet-wide attestation policy keeps from updates.
            if window != WindowState::Closed
                && api.attestation_allows(&caller.id, now).await?
                && (!quarantined || super::actions::is_reimage(&caller, &action))
            {
                let ty = ActionType::from_stored(&action.update_type, action.forced_at);
                let c = cache_buster(action.id as u64, deployment_modes(ty, window, now));
                links.insert(
                    "deploymentBase".into(),
                    Link::new(format!("{base}/deploymentBase/{}?c={c}", action.id)),
                );
            }
        }
    }
    if let Some(installed) = installed {
        links.insert(
            "installedBase".into(),
            Link::new(format!("{base}/installedBase/{}", installed.id)),
        );
    }
    if caller.state.request_attributes && !quarantined {
        links.insert("configData".into(), Link::new(format!("{base}/configData")));
    }
    json_answer(&PollAnswer::new(api.poll_interval_secs, links))
}

pub(super) fn check_c(q: &HistoryQuery) -> Result<(), DdiError> {
    if let Some(c) = &q.c
        && c.parse::<i64>().is_err()
    {
        return Err(DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.param.invalid",
            format!("c must be a number, not {c:?}"),
        ));
    }
    Ok(())
}

pub(super) async fn deployment_base(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Answer {
    let Query(q) = q.map_err(query_error)?;
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
    check_c(&q)?;
    let action = api.own_action(&caller, parse_action_id(&action)?).await?;
    api.require_not_quarantined_unless_reimage(&caller, &action)
        .await?;
    api.require_attested(&caller.id, unix_now()).await?;
    if matches!(
        ActionState::parse(&action.state),
        Some(ActionState::Canceling | ActionState::Canceled)
    ) {
        return Err(DdiError::empty(StatusCode::NOT_FOUND));
    }
    let now = unix_now();
    // While the device's window is closed, an install is not offered at all, not even to a
    // client that kept the link: SWUpdate answers `update: skip` by closing the action as if
    // it had installed. (A download-only action is `skip` by nature and stays offered.)
    let ty = ActionType::from_stored(&action.update_type, action.forced_at);
    let window = api.action_window(&caller, &action, now).await?;
    if ty != ActionType::DownloadOnly && window == WindowState::Closed {
        return Err(DdiError::empty(StatusCode::NOT_FOUND));
    }
    let base = api.base(&headers, &caller.tenant.name, &caller.id);
    let doc = api
        .deployment_doc(&action, window, &base, q.action_history, now)
        .await?;
    json_answer(&doc)
}

pub(super) async fn installed_base(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Answer {
    let Query(q) = q.map_err(query_error)?;
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
    let action = api.own_action(&caller, parse_action_id(&action)?).await?;
    let state = ActionState::parse(&action.state).unwrap_or(ActionState::Open);
    if state.is_active() || state == ActionState::Canceled {
        return Err(DdiError::empty(StatusCode::NOT_FOUND));
    }
    let now = unix_now();
    let window = api.window(&caller.id, now).await?;
    let base = api.base(&headers, &caller.tenant.name, &caller.id);
    let doc = api
        .deployment_doc(&action, window, &base, q.action_history, now)
        .await?;
    json_answer(&doc)
}

pub(super) async fn feedback_body(
    api: &DdiApi,
    headers: &HeaderMap,
    body: Body,
) -> Result<Feedback, DdiError> {
    let bytes = read_body(headers, body, api.body_limits).await?;
    check_unique_keys(&bytes)?;
    parse_lenient::<Feedback>(&bytes).map_err(|e| {
        DdiError::bad_body(format!(
            "the feedback is not well formed ({e}); send {{\"status\": {{\"execution\": \"proceeding|closed|...\", \"result\": {{\"finished\": \"none|success|failure\"}}, \"details\": [...]}}}}"
        ))
    })
}

/// What both feedback routes need: the authenticated device, the parsed feedback, and the
/// action (its own) with its state.
pub(super) struct FeedbackCall {
    caller: Caller,
    feedback: Feedback,
    action: DdiAction,
    state: ActionState,
}

pub(super) async fn feedback_call(
    api: &DdiApi,
    peer: &DdiPeer,
    (tenant, controller, action): (String, String, String),
    headers: &HeaderMap,
    body: Body,
) -> Result<FeedbackCall, DdiError> {
    let caller = api
        .authenticate(&tenant, &controller, headers, peer, false)
        .await?;
    let action_id = parse_action_id(&action)?;
    let feedback = feedback_body(api, headers, body).await?;
    let action = api.own_action(&caller, action_id).await?;
    let state = ActionState::parse(&action.state).unwrap_or(ActionState::Error);
    Ok(FeedbackCall {
        caller,
        feedback,
        action,
        state,
    })
}

pub(super) async fn deployment_feedback_route(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let call = feedback_call(&api, &peer, path, &headers, body).await?;
    let ty = ActionType::from_stored(&call.action.update_type, call.action.forced_at);
    let effect = match deployment_feedback(
        call.state,
        ty,
        call.feedback.status.execution,
        call.feedback.status.result.finished,
    ) {
        Ok(effect) => effect,
        // hawkBit: 410 Gone with no body for a closed action.
        Err(FeedbackError::Closed) => return Err(DdiError::empty(StatusCode::GONE)),
        Err(FeedbackError::NotCanceling) => {
            return Err(DdiError::empty(StatusCode::METHOD_NOT_ALLOWED));
        }
    };
    api.record(
        &call.caller,
        &call.action,
        &call.feedback,
        effect.state,
        effect.report,
        effect.note,
    )
    .await
}

pub(super) async fn cancel_action(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller, action)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
    let action = api.own_action(&caller, parse_action_id(&action)?).await?;
    if !matches!(
        ActionState::parse(&action.state),
        Some(ActionState::Canceling | ActionState::Canceled)
    ) {
        return Err(DdiError::empty(StatusCode::NOT_FOUND));
    }
    json_answer(&CancelActionDoc {
        id: action.id.to_string(),
        cancel_action: StopId {
            stop_id: action.id.to_string(),
        },
    })
}

pub(super) async fn cancel_feedback_route(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path(path): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let call = feedback_call(&api, &peer, path, &headers, body).await?;
    let effect = cancel_feedback(
        call.state,
        call.feedback.status.execution,
        call.feedback.status.result.finished,
    )
    .map_err(|_| {
        DdiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "hawkbit.server.error.action.notCancelable",
            "The action is not in canceling state.",
        )
    })?;
    api.record(
        &call.caller,
        &call.action,
        &call.feedback,
        effect.state,
        effect.report_cancelled.then_some("cancelled"),
        None,
    )
    .await
}

pub(super) async fn config_data(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
    // Campaign selection reads attributes: a quarantined device does not change them.
    api.require_not_quarantined(&caller.id).await?;
    let bytes = read_body(&headers, body, api.body_limits).await?;
    check_unique_keys(&bytes)?;
    let request: ConfigData = parse_lenient(&bytes).map_err(|e| {
        DdiError::bad_body(format!(
            "configData is not well formed ({e}); send {{\"mode\": \"merge|replace|remove\", \"data\": {{\"key\": \"value\"}}}}"
        ))
    })?;
    api.db
        .update_ddi_attributes(&caller.id, |current| {
            rampart_ddi::apply_config_data(current, &request)
        })
        .await
        .map_err(|e| DdiError::db("storing attributes", e))?
        .map_err(|e| match e {
            rampart_ddi::ConfigDataError::TooMany(_) => DdiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "hawkbit.server.error.quota.tooManyEntries",
                e.to_string(),
            ),
            rampart_ddi::ConfigDataError::Empty => DdiError::bad_body(e.to_string()),
            rampart_ddi::ConfigDataError::Invalid { .. } => DdiError::new(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.invalidTargetAttributes",
                e.to_string(),
            ),
        })?;
    Metrics::inc(&api.metrics.attribute_updates);
    Ok(ok_empty())
}

/// The module `id` if it belongs to the device's active (open) or installed action. A
/// quarantined device gets only the module of its open re-image action.
pub(super) async fn assigned_module(
    api: &DdiApi,
    caller: &Caller,
    id: &str,
) -> Result<DdiModule, DdiError> {
    api.require_attested(&caller.id, unix_now()).await?;
    let id = id.parse::<i64>().map_err(|_| {
        DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.param.invalid",
            format!("software module id {id:?} is not a number"),
        )
    })?;
    let (active, installed) = api
        .db
        .ddi_actions_now(&caller.id)
        .await
        .map_err(|e| DdiError::db("reading DDI actions", e))?;
    let reimage = active.as_ref().filter(|a| {
        a.state == ActionState::Open.as_str()
            && a.module_id == id
            && super::actions::is_reimage(caller, a)
    });
    if reimage.is_none() {
        api.require_not_quarantined(&caller.id).await?;
    }
    let assigned = active
        .iter()
        .filter(|a| a.state == ActionState::Open.as_str())
        .chain(installed.iter())
        .any(|a| a.module_id == id);
    if !assigned {
        return Err(DdiError::not_found(format!(
            "No assignment found for SoftwareModule with id {{{id}}} to Target with id {{{}}}.",
            caller.id
        )));
    }
    api.db
        .ddi_module(id)
        .await
        .map_err(|e| DdiError::db("reading a DDI module", e))?
        .ok_or_else(|| DdiError::not_found(format!("SoftwareModule {id} does not exist.")))
}

pub(super) async fn module_artifacts(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller, module)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
    let module = assigned_module(&api, &caller, &module).await?;
    let base = api.base(&headers, &caller.tenant.name, &caller.id);
    json_answer(&vec![wire_artifact(&base, &module)])
}

pub(super) async fn artifact_file(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller, module, file)): Path<(String, String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Answer {
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
    let module = assigned_module(&api, &caller, &module).await?;
    if file == format!("{}.MD5SUM", module.filename) {
        let body = md5sum_line(&module.md5, &module.filename);
        let disposition = HeaderValue::from_str(&format!(
            "attachment;filename={}.MD5SUM",
            utf8_percent(&module.filename)
        ))
        .map_err(|e| DdiError::unavailable("a content disposition", e))?;
        return Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("text/plain")),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            body,
        )
            .into_response());
    }
    if file != module.filename {
        return Err(DdiError::empty(StatusCode::NOT_FOUND));
    }
    let (repo, store) = api.repo_and_store()?;
    let target = module.target.clone();
    let now = unix_now();
    let artifacts = tokio::task::spawn_blocking(move || repo.artifacts(&target, now))
        .await
        .map_err(|e| DdiError::unavailable("reading the image repository", e))?
        .map_err(|e| DdiError::unavailable("reading the image repository", e))?;
    // The bytes served are the ones the signed metadata lists: same SHA-256 as the module.
    let Some(artifact) = artifacts
        .into_iter()
        .find(|a| a.hash.eq_ignore_ascii_case(&module.sha256))
    else {
        return Err(DdiError::unavailable(
            "a DDI module's release is no longer in the image repository",
            &module.target,
        ));
    };
    let mut response = crate::delivery::serve_artifact(
        &store,
        &artifact.file,
        &artifact,
        &headers,
        method == Method::HEAD,
    )
    .await?;
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment;filename={}",
        utf8_percent(&module.filename)
    )) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}
