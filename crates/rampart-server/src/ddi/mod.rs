//! The hawkBit Direct Device Integration (DDI) API v1, so existing SWUpdate, RAUC
//! (rauc-hawkbit-updater) and other hawkBit clients update from Rampart unchanged.
//!
//! ```text
//! GET  /{tenant}/controller/v1/{id}                                    poll
//! GET  /{tenant}/controller/v1/{id}/deploymentBase/{action}           the deployment
//! POST /{tenant}/controller/v1/{id}/deploymentBase/{action}/feedback  progress and result
//! GET  /{tenant}/controller/v1/{id}/cancelAction/{action}             a withdrawal
//! POST /{tenant}/controller/v1/{id}/cancelAction/{action}/feedback    its confirmation
//! PUT  /{tenant}/controller/v1/{id}/configData                        attributes
//! GET  /{tenant}/controller/v1/{id}/installedBase/{action}            the installed deployment
//! GET  /{tenant}/controller/v1/{id}/softwaremodules/{m}/artifacts     a module's files
//! GET|HEAD .../softwaremodules/{m}/artifacts/{file}[.MD5SUM]          download (Range)
//! ```
//!
//! It is a front on the same inventory, assignments, campaigns and audit log as the native
//! device API: a DDI action is one device's view of its current assignment (plain or
//! campaign), opened when the device polls; DDI feedback is stored as native reports, so it
//! counts toward campaign gates exactly as native reports do. Artifacts are the image
//! repository's targets (any file: a `.swu`, a RAUC bundle), served only after their SHA-256
//! matched the signed TUF metadata; their SHA-1 and MD5, which DDI clients check, are computed
//! from the same bytes once. The protocol rules are pure (`rampart_ddi`); this module does the
//! I/O. Authentication per tenant: `TargetToken`, `GatewayToken`, client certificate.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use rampart_db::{
    Db, DbError, DdiAction, DdiDeviceState, DdiFeedback, DdiModule, DdiTenant, EnrolledBy,
    Enrolment, NewAction, Report,
};
use rampart_ddi::action::cache_buster;
use rampart_ddi::config_data::ConfigData;
use rampart_ddi::wire::{
    ActionHistory, Artifact as WireArtifact, CancelActionDoc, Chunk, Deployment, DeploymentBase,
    ErrorBody, Feedback, Hashes, Link, Links, PollAnswer, StopId, md5sum_line, parse_lenient,
};
use rampart_ddi::{
    ActionState, ActionType, Credential, FeedbackError, WindowState, cancel_feedback,
    deployment_feedback, deployment_modes, parse_authorization,
};
use rampart_rollout::window::MaintenanceWindow;
use serde::Deserialize;
use serde_json::json;

use crate::delivery::artifact_store::ArtifactStore;
use crate::delivery::image_repo::HostedRepo;
use crate::device_api::ReportSinks;
use crate::engines::last_seen::LastSeen;
use crate::helpers::unix_now;
use crate::listen::auth_failures::{AuthFailures, FailureKind};
use crate::listen::http::{ApiError, BodyLimits, read_body};
use crate::listen::https::DdiPeer;
use crate::observe::metrics::Metrics;

/// `actionHistory` returns at most this many messages.
const MAX_HISTORY: usize = 100;
/// A feedback's native report carries at most this many of its messages, each cut to
/// [`REPORT_MESSAGE_CHARS`] (reports are bounded at 16 KiB of details).
const REPORT_MESSAGES: usize = 8;
const REPORT_MESSAGE_CHARS: usize = 256;

/// Shared state of the DDI front.
pub(crate) struct DdiApi {
    pub(crate) db: Db,
    pub(crate) audit: crate::observe::audit::AuditWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) last_seen: Arc<LastSeen>,
    pub(crate) poll_interval_secs: u64,
    pub(crate) body_limits: BodyLimits,
    pub(crate) repo: Option<Arc<HostedRepo>>,
    pub(crate) artifacts: Option<ArtifactStore>,
    pub(crate) sinks: ReportSinks,
    /// The listener's address, for links when a request has no usable `Host`.
    pub(crate) local_addr: SocketAddr,
    /// Computing a module's digests reads the whole artifact: once at a time.
    pub(crate) module_lock: Arc<tokio::sync::Mutex<()>>,
    /// Failed authentications per source (counted, audited, slowed down).
    pub(crate) auth_failures: Arc<AuthFailures>,
}

/// A DDI error: hawkBit's status codes, and its error document unless the status alone says
/// it (hawkBit answers 410 and some 404s with no body).
#[derive(Debug)]
pub(crate) struct DdiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    empty: bool,
    /// A failed authentication of this kind (counted and slowed down per source by
    /// [`crate::listen::auth_failures::guard`]).
    failure: Option<FailureKind>,
}

impl DdiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> DdiError {
        DdiError {
            status,
            code,
            message: message.into(),
            empty: false,
            failure: None,
        }
    }

    fn empty(status: StatusCode) -> DdiError {
        DdiError {
            status,
            code: "",
            message: String::new(),
            empty: true,
            failure: None,
        }
    }

    fn unauthorized(kind: FailureKind, message: impl Into<String>) -> DdiError {
        DdiError {
            failure: Some(kind),
            ..DdiError::new(
                StatusCode::UNAUTHORIZED,
                "hawkbit.server.error.unauthorized",
                message,
            )
        }
    }

    fn not_found(message: impl Into<String>) -> DdiError {
        DdiError::new(
            StatusCode::NOT_FOUND,
            "hawkbit.server.error.repo.entitiyNotFound",
            message,
        )
    }

    fn bad_body(message: impl Into<String>) -> DdiError {
        DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.body.notReadable",
            message,
        )
    }

    fn unavailable(context: &str, e: impl std::fmt::Display) -> DdiError {
        crate::observe::log::error(context, json!({"error": e.to_string()}));
        DdiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "rampart.storage_unavailable",
            "the server could not complete this request; retry later",
        )
    }

    fn db(context: &str, e: DbError) -> DdiError {
        match e {
            DbError::Invalid(m) => DdiError::new(
                StatusCode::BAD_REQUEST,
                "hawkbit.server.error.repo.constraintViolation",
                m,
            ),
            DbError::UnknownDevice(d) => {
                DdiError::not_found(format!("Target with given identifier {d} does not exist."))
            }
            other => DdiError::unavailable(context, other),
        }
    }
}

impl From<ApiError> for DdiError {
    fn from(e: ApiError) -> DdiError {
        let code = match e.status {
            StatusCode::PAYLOAD_TOO_LARGE => "rampart.payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "rampart.unsupported_media_type",
            StatusCode::REQUEST_TIMEOUT => "rampart.request_timeout",
            StatusCode::RANGE_NOT_SATISFIABLE => "rampart.range_not_satisfiable",
            StatusCode::SERVICE_UNAVAILABLE => "rampart.unavailable",
            _ => "hawkbit.server.error.rest.body.notReadable",
        };
        DdiError::new(e.status, code, e.detail)
    }
}

impl IntoResponse for DdiError {
    fn into_response(self) -> Response {
        let mut response = if self.empty {
            self.status.into_response()
        } else {
            let body = ErrorBody {
                exception_class: "io.rampart.ddi.DdiException".into(),
                error_code: self.code.into(),
                message: self.message,
            };
            crate::listen::http::json_response(self.status, &body)
        };
        if let Some(kind) = self.failure {
            response.extensions_mut().insert(kind);
        }
        response
    }
}

type Answer = Result<Response, DdiError>;

fn ok_empty() -> Response {
    // SWUpdate counts only 200, 206 and 226 as success: never 204.
    (StatusCode::OK, "").into_response()
}

fn json_answer(value: &impl serde::Serialize) -> Answer {
    let body =
        serde_json::to_vec(value).map_err(|e| DdiError::unavailable("encoding a DDI answer", e))?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/hal+json"),
        )],
        body,
    )
        .into_response())
}

/// Equal digests, compared in constant time.
fn same_digest(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && !a.is_empty()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A controller id is a device id: the one grammar of [`crate::listen::http::check_device_id`] (a
/// certificate's device and a token's controller must be able to name the same row, and the id
/// is a path segment of every link the server hands out).
fn check_controller(id: &str) -> Result<(), DdiError> {
    if rampart_pki::validate_device_id(id).is_err() {
        return Err(DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.repo.constraintViolation",
            crate::listen::http::device_id_problem(id),
        ));
    }
    Ok(())
}

/// A query string that is not what the route takes: hawkBit's error document, not axum's
/// plain-text rejection.
fn query_error(e: QueryRejection) -> DdiError {
    DdiError::new(
        StatusCode::BAD_REQUEST,
        "hawkbit.server.error.rest.param.invalid",
        format!("the query string is not valid: {}", e.body_text()),
    )
}

/// A feedback or configData body that names a key twice in one object (the one JSON policy of
/// [`crate::listen::http::parse_json`]). DDI clients' bodies may carry raw control characters, which
/// the lenient parser reads as spaces; the check reads them the same way.
fn check_unique_keys(bytes: &[u8]) -> Result<(), DdiError> {
    let spaced: Vec<u8> = bytes
        .iter()
        .map(|b| if *b < 0x20 { b' ' } else { *b })
        .collect();
    match crate::listen::http::duplicate_key(&spaced) {
        Some(key) => Err(DdiError::bad_body(
            crate::listen::http::duplicate_key_error(&key).detail,
        )),
        None => Ok(()),
    }
}

fn parse_action_id(s: &str) -> Result<i64, DdiError> {
    s.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        DdiError::new(
            StatusCode::BAD_REQUEST,
            "hawkbit.server.error.rest.param.invalid",
            format!("action id {s:?} is not a positive number"),
        )
    })
}

/// How the request authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthBy {
    TargetToken,
    GatewayToken,
    Certificate,
}

impl AuthBy {
    fn as_str(self) -> &'static str {
        self.enrolment().as_str()
    }

    /// The enrolment a row gets when this credential brings it in.
    fn enrolment(self) -> EnrolledBy {
        match self {
            AuthBy::TargetToken => EnrolledBy::TargetToken,
            AuthBy::GatewayToken => EnrolledBy::GatewayToken,
            AuthBy::Certificate => EnrolledBy::Certificate,
        }
    }

    fn failure(self) -> FailureKind {
        match self {
            AuthBy::TargetToken => FailureKind::DdiTargetToken,
            AuthBy::GatewayToken => FailureKind::DdiGatewayToken,
            AuthBy::Certificate => FailureKind::DdiCertificate,
        }
    }

    /// Whether this credential may act for a row enrolled as `enrolment` (decision 0021): a
    /// certificate only for a certificate's row, a gateway token only for a token's row. A
    /// TargetToken matched the digest only an operator sets, naming the device.
    fn may_act_for(self, enrolment: &Enrolment) -> bool {
        match self {
            AuthBy::Certificate => enrolment.by == EnrolledBy::Certificate,
            AuthBy::GatewayToken => enrolment.by != EnrolledBy::Certificate,
            AuthBy::TargetToken => true,
        }
    }
}

/// The refusal of a credential for a row another identity enrolled: what happened and what the
/// operator does about it.
fn enrolment_refusal(controller: &str, by: AuthBy, enrolment: &Enrolment) -> DdiError {
    let tenant = if enrolment.tenant.is_empty() {
        String::new()
    } else {
        format!(" of tenant {}", enrolment.tenant)
    };
    match enrolment.by {
        EnrolledBy::Certificate => DdiError::unauthorized(
            by.failure(),
            format!(
                "{controller} was enrolled with its device certificate: only that certificate acts for it, never a token (the tenant must accept certificates: mtls)"
            ),
        ),
        other => DdiError {
            failure: Some(by.failure()),
            ..DdiError::new(
                StatusCode::CONFLICT,
                "rampart.enrolled_by_token",
                format!(
                    "{controller} was enrolled by a {}{tenant}, so a certificate never takes it over; if this certificate is the real {controller}, an operator deletes that row (DELETE /api/v1/ddi/devices/{controller}, audited) and the device enrols afresh with its certificate",
                    other.as_str().replace('_', " ")
                ),
            )
        },
    }
}

/// An authenticated device.
struct Caller {
    id: String,
    tenant: DdiTenant,
    state: DdiDeviceState,
}

#[derive(Deserialize, Default)]
struct HistoryQuery {
    #[serde(rename = "actionHistory", default)]
    action_history: Option<i64>,
    /// The cache buster; must be a number if present (hawkBit: 400 otherwise).
    #[serde(default)]
    c: Option<String>,
}

impl DdiApi {
    /// Checks the tenant, the credential and the device. `register`: a gateway token or a
    /// certificate may bring an unknown controller into the inventory (the poll does).
    async fn authenticate(
        &self,
        tenant: &str,
        controller: &str,
        headers: &HeaderMap,
        peer: &DdiPeer,
        register: bool,
    ) -> Result<Caller, DdiError> {
        check_controller(controller)?;
        // One read serves the tenant, the credential check and the request (the device is
        // read again only after joining it to the tenant).
        let (tenant_row, mut state) = self
            .db
            .ddi_request_view(tenant, controller)
            .await
            .map_err(|e| DdiError::db("reading a DDI tenant and device", e))?
            .ok_or_else(|| {
                DdiError::unauthorized(
                    FailureKind::DdiOther,
                    format!(
                        "unknown tenant {:?}; the operator creates tenants with `rampart ddi tenant create`",
                        tenant.chars().take(64).collect::<String>()
                    ),
                )
            })?;
        let header = headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or(""));
        let by = match header.map(parse_authorization) {
            Some(Some(Credential::Target(token))) => {
                if !tenant_row.target_token {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiTargetToken,
                        format!(
                            "TargetToken authentication is disabled for tenant {}",
                            tenant_row.name
                        ),
                    ));
                }
                let member = state.as_ref().is_some_and(|s| {
                    s.tenant.as_deref() == Some(tenant_row.name.as_str())
                        && same_digest(&s.token_hash, &crate::helpers::token_digest(token))
                });
                if !member {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiTargetToken,
                        format!(
                            "the TargetToken is not {controller}'s in tenant {} (or {controller} has none; the operator issues one with `rampart ddi token`)",
                            tenant_row.name
                        ),
                    ));
                }
                AuthBy::TargetToken
            }
            Some(Some(Credential::Gateway(token))) => {
                if !tenant_row.gateway_token
                    || !same_digest(
                        &tenant_row.gateway_token_hash,
                        &crate::helpers::token_digest(token),
                    )
                {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiGatewayToken,
                        format!(
                            "the GatewayToken is not tenant {}'s (or gateway tokens are disabled for it)",
                            tenant_row.name
                        ),
                    ));
                }
                AuthBy::GatewayToken
            }
            Some(None) => {
                return Err(DdiError::unauthorized(
                    FailureKind::DdiOther,
                    "unsupported Authorization header; send `TargetToken <token>` or `GatewayToken <token>`",
                ));
            }
            None => match &peer.certificate_device {
                Some(cert) if !tenant_row.mtls => {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiCertificate,
                        format!(
                            "client certificates ({cert}) are not accepted for tenant {}; send a TargetToken or GatewayToken",
                            tenant_row.name
                        ),
                    ));
                }
                Some(cert) if cert != controller => {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiCertificate,
                        format!("the client certificate is device {cert}'s, not {controller}'s"),
                    ));
                }
                Some(_) => AuthBy::Certificate,
                None => {
                    return Err(DdiError::unauthorized(
                        FailureKind::DdiOther,
                        "no credentials: send `Authorization: TargetToken <token>` or `GatewayToken <token>`, or a device certificate",
                    ));
                }
            },
        };
        let known_member = state
            .as_ref()
            .is_some_and(|s| s.tenant.as_deref() == Some(tenant_row.name.as_str()));
        if let Some(other) = state.as_ref().and_then(|s| s.tenant.clone())
            && other != tenant_row.name
        {
            return Err(DdiError::unauthorized(
                by.failure(),
                format!("{controller} belongs to another tenant"),
            ));
        }
        // One identity rule: the credential must be of the kind that enrolled the row.
        if let Some(s) = &state
            && !by.may_act_for(&s.enrolment)
        {
            return Err(enrolment_refusal(controller, by, &s.enrolment));
        }
        let revoked = || {
            DdiError::new(
                StatusCode::FORBIDDEN,
                "rampart.device_revoked",
                format!("device {controller} has been revoked by the fleet operator"),
            )
        };
        // Refused before anything is written.
        if state.as_ref().is_some_and(|s| s.revoked) {
            return Err(revoked());
        }
        if !known_member {
            if !register {
                return Err(DdiError::not_found(format!(
                    "Target with given identifier {controller} does not exist."
                )));
            }
            // A gateway token may bring in controllers the inventory does not know; a device
            // that exists (e.g. enrolled natively with its certificate) joins a tenant only by
            // its own certificate or by the operator issuing it a token, never by a token
            // shared by a whole tenant.
            if state.is_some() && by == AuthBy::GatewayToken {
                return Err(DdiError::unauthorized(
                    by.failure(),
                    format!(
                        "{controller} is in the inventory but not a device of tenant {}; the operator adds it with `rampart ddi token --tenant {} {controller}`",
                        tenant_row.name, tenant_row.name
                    ),
                ));
            }
            self.join(controller, &tenant_row.name, by, peer).await?;
            state = self
                .db
                .ddi_request_view(&tenant_row.name, controller)
                .await
                .map_err(|e| DdiError::db("reading a DDI device", e))?
                .and_then(|(_, state)| state);
            // Another tenant may have won the race to register it.
            if state.as_ref().and_then(|s| s.tenant.as_deref()) != Some(tenant_row.name.as_str()) {
                return Err(DdiError::unauthorized(
                    by.failure(),
                    format!("{controller} belongs to another tenant"),
                ));
            }
        }
        let Some(state) = state else {
            return Err(DdiError::not_found(format!(
                "Target with given identifier {controller} does not exist."
            )));
        };
        if state.revoked {
            return Err(revoked());
        }
        self.last_seen.record(controller, unix_now());
        Ok(Caller {
            id: controller.to_owned(),
            tenant: tenant_row,
            state,
        })
    }

    /// Registers a controller a gateway token or certificate vouched for (audited when new
    /// to the inventory).
    async fn join(
        &self,
        controller: &str,
        tenant: &str,
        by: AuthBy,
        peer: &DdiPeer,
    ) -> Result<(), DdiError> {
        let now = unix_now();
        let details = json!({"tenant": tenant, "authenticated_by": by.as_str(),
            "remote_address": peer.remote_addr.ip().to_string()});
        let (db, id, t) = (self.db.clone(), controller.to_owned(), tenant.to_owned());
        let new = self
            .audit
            .write(
                now,
                &format!("device:{controller}"),
                "ddi.device_joined",
                controller,
                details,
                |line| {
                    let (db, id, t) = (db.clone(), id.clone(), t.clone());
                    async move {
                        db.join_ddi_tenant(&id, &t, by.enrolment(), now, &line)
                            .await
                    }
                },
            )
            .await
            .map_err(|e| match e {
                // Another identity enrolled the row between this request's read and its join.
                crate::observe::audit::AuditWriteError::Db(DbError::Conflict(m)) => DdiError {
                    failure: Some(by.failure()),
                    ..DdiError::new(StatusCode::CONFLICT, "rampart.enrolment_conflict", m)
                },
                other => DdiError::unavailable("registering a DDI device", other),
            })?;
        if new {
            Metrics::inc(&self.metrics.devices_registered);
        }
        Ok(())
    }

    /// The device's maintenance window now: none, open or closed (open if any of its groups'
    /// windows is open, as campaigns judge it).
    async fn window(&self, device: &str, now: i64) -> Result<WindowState, DdiError> {
        let windows = self
            .db
            .device_windows(device)
            .await
            .map_err(|e| DdiError::db("reading maintenance windows", e))?;
        if windows.is_empty() {
            return Ok(WindowState::NoWindow);
        }
        let open = windows
            .iter()
            .any(|w| MaintenanceWindow::stored_is_open(w, now));
        Ok(if open {
            WindowState::Open
        } else {
            WindowState::Closed
        })
    }

    /// Brings the device's actions in line with its assignment: an open action whose
    /// assignment was withdrawn or replaced is being cancelled; a current assignment without
    /// an action gets one (unless it already ran to an end, or that release is installed).
    /// Returns the active action.
    /// `active` and `installed` are the device's current actions ([`rampart_db::Db::ddi_actions_now`]).
    async fn sync_action(
        &self,
        caller: &Caller,
        active: Option<DdiAction>,
        installed: Option<&DdiAction>,
        now: i64,
    ) -> Result<Option<DdiAction>, DdiError> {
        let db_err = |e| DdiError::db("reading DDI actions", e);
        let assignment = caller
            .state
            .assignment
            .clone()
            .filter(|a| !a.target.is_empty());
        if let Some(mut action) = active {
            let current = assignment.as_ref().is_some_and(|a| {
                a.assignment_id == action.assignment_id && a.version == action.assignment_version
            });
            // A device that refused the cancellation finishes the action first (hawkBit's
            // CANCEL_REJECTED); the next poll then offers what is assigned now.
            if !current && action.state == ActionState::Open.as_str() && !action.cancel_rejected {
                let cancelled = self
                    .db
                    .cancel_ddi_action(action.id)
                    .await
                    .map_err(|e| DdiError::db("cancelling a DDI action", e))?;
                if cancelled {
                    action.state = ActionState::Canceling.as_str().into();
                } else {
                    // Closed by feedback meanwhile.
                    return Ok(self
                        .db
                        .ddi_action(action.id)
                        .await
                        .map_err(db_err)?
                        .filter(|a| {
                            ActionState::parse(&a.state).is_some_and(ActionState::is_active)
                        }));
                }
            }
            return Ok(Some(action));
        }
        let Some(a) = assignment else {
            return Ok(None);
        };
        if let Some(existing) = self
            .db
            .ddi_action_for(&caller.id, &a.assignment_id, a.version)
            .await
            .map_err(db_err)?
        {
            // Ran to its end already (nothing more to offer), or a concurrent poll opened it
            // a moment ago (offer that one).
            let active = ActionState::parse(&existing.state).is_some_and(ActionState::is_active);
            return Ok(active.then_some(existing));
        }
        if installed.is_some_and(|i| i.target == a.target) {
            return Ok(None);
        }
        let module = match self.module(&a.target, now).await {
            Ok(m) => m,
            Err(e) => {
                // The poll still answers (the device keeps its schedule); the operator sees why.
                crate::observe::log::error(
                    "a DDI device's assigned release cannot be offered",
                    json!({"device": caller.id, "target": a.target, "error": e.message}),
                );
                return Ok(None);
            }
        };
        let action = self
            .db
            .open_ddi_action(&NewAction {
                device_id: &caller.id,
                assignment_id: &a.assignment_id,
                assignment_version: a.version,
                target: &a.target,
                module_id: module.id,
                update_type: &a.update_type,
                forced_at: a.forced_at,
                now,
            })
            .await
            .map_err(|e| DdiError::db("opening a DDI action", e))?;
        Ok(Some(action))
    }

    /// The release `target` as a software module: its digests are computed from the stored
    /// artifact once, after its SHA-256 and length matched the signed metadata.
    async fn module(&self, target: &str, now: i64) -> Result<DdiModule, DdiError> {
        if let Some(m) = self
            .db
            .ddi_module_by_target(target)
            .await
            .map_err(|e| DdiError::db("reading a DDI module", e))?
        {
            return Ok(m);
        }
        let (repo, store) = self.repo_and_store()?;
        // Its own task: reading a large artifact from a slow store may outlast this request
        // (a client that gives up), and the work must then still finish for the next poll.
        let work = tokio::spawn(describe_module(
            self.db.clone(),
            self.module_lock.clone(),
            repo,
            store,
            target.to_owned(),
            now,
        ));
        work.await
            .map_err(|e| DdiError::unavailable("describing a DDI module", e))?
    }

    fn repo_and_store(&self) -> Result<(Arc<HostedRepo>, ArtifactStore), DdiError> {
        match (&self.repo, &self.artifacts) {
            (Some(repo), Some(store)) => Ok((repo.clone(), store.clone())),
            _ => Err(DdiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rampart.no_image_repository",
                "this server hosts no image repository (`rampart server --repo DIR`)",
            )),
        }
    }

    /// `https://host[:port]/{tenant}/controller/v1/{id}` for links: the request's `Host` if it
    /// is a plain host name or address, else the listener's address.
    fn base(&self, headers: &HeaderMap, tenant: &str, id: &str) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| self.local_addr.to_string());
        format!("https://{host}/{tenant}/controller/v1/{}", utf8_percent(id))
    }

    /// The action `id` of this device, or 404.
    async fn own_action(&self, caller: &Caller, id: i64) -> Result<DdiAction, DdiError> {
        match self
            .db
            .ddi_action(id)
            .await
            .map_err(|e| DdiError::db("reading a DDI action", e))?
        {
            Some(a) if a.device_id == caller.id => Ok(a),
            Some(_) => Err(DdiError::not_found(format!(
                "Not a valid action ({id}) for target: {}",
                caller.id
            ))),
            None => Err(DdiError::not_found(format!(
                "Action with given identifier {id} does not exist."
            ))),
        }
    }

    /// The deployment document of `action`, with the device's `window` as read for this
    /// request.
    async fn deployment_doc(
        &self,
        action: &DdiAction,
        window: WindowState,
        base: &str,
        history: Option<i64>,
        now: i64,
    ) -> Result<DeploymentBase, DdiError> {
        let module = self
            .db
            .ddi_module(action.module_id)
            .await
            .map_err(|e| DdiError::db("reading a DDI module", e))?
            .ok_or_else(|| DdiError::unavailable("a DDI action's module vanished", action.id))?;
        let ty = ActionType::from_stored(&action.update_type, action.forced_at);
        let modes = deployment_modes(ty, window, now);
        let action_history = match history {
            None | Some(0) => None,
            Some(n) => {
                let limit = if n < 0 {
                    MAX_HISTORY
                } else {
                    (n as usize).min(MAX_HISTORY)
                };
                let messages = self
                    .db
                    .ddi_action_messages(action.id, limit)
                    .await
                    .map_err(|e| DdiError::db("reading action messages", e))?;
                let state = ActionState::parse(&action.state).unwrap_or(ActionState::Open);
                (!messages.is_empty()).then(|| ActionHistory {
                    status: state.hawkbit_status().into(),
                    messages,
                })
            }
        };
        Ok(DeploymentBase {
            id: action.id.to_string(),
            deployment: Deployment {
                download: modes.download,
                update: modes.update,
                maintenance_window: modes.window,
                chunks: vec![Chunk {
                    part: "os".into(),
                    version: module.version.clone(),
                    name: module.target.clone(),
                    artifacts: vec![wire_artifact(base, &module)],
                    metadata: Vec::new(),
                }],
            },
            action_history,
        })
    }

    /// Stores one feedback and tells campaigns and alerts about its native report.
    async fn record(
        &self,
        caller: &Caller,
        action: &DdiAction,
        feedback: &Feedback,
        new_state: ActionState,
        report_status: Option<&'static str>,
        note: Option<&'static str>,
    ) -> Answer {
        let messages = feedback.messages().map_err(|n| {
            DdiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "hawkbit.server.error.quota.tooManyEntries",
                format!(
                    "Quota exceeded: {n} messages in one feedback; the maximum is {}.",
                    rampart_ddi::wire::MAX_MESSAGES_PER_FEEDBACK
                ),
            )
        })?;
        let now = unix_now();
        let report = match report_status {
            None => None,
            Some(status) => {
                let id = crate::helpers::new_id("ddi")
                    .map_err(|_| DdiError::unavailable("making a report id", "no randomness"))?;
                // The full messages are in the action's history (`actionHistory`); the report
                // carries a bounded excerpt, so any accepted feedback fits a report.
                let excerpt: Vec<String> = messages
                    .iter()
                    .take(REPORT_MESSAGES)
                    .map(|m| m.chars().take(REPORT_MESSAGE_CHARS).collect())
                    .collect();
                let mut details = json!({
                    "ddi": {
                        "action": action.id,
                        "execution": feedback.status.execution.as_str(),
                        "finished": feedback.status.result.finished.as_str(),
                        "messages": excerpt,
                        "messages_total": messages.len(),
                    },
                    "target": action.target,
                });
                if status == "failed" {
                    details["reason"] = json!("install_failed");
                    details["detail"] = json!(excerpt.join("; "));
                }
                if let Some(note) = note {
                    details["note"] = json!(note);
                }
                Some(Report {
                    id,
                    device_id: caller.id.clone(),
                    assignment: action.assignment_id.clone(),
                    status: status.into(),
                    progress: 0,
                    details,
                    created: now,
                })
            }
        };
        self.db
            .record_ddi_feedback(&DdiFeedback {
                action_id: action.id,
                expected_state: &action.state,
                new_state: new_state.as_str(),
                execution: feedback.status.execution.as_str(),
                finished: feedback.status.result.finished.as_str(),
                messages: &messages,
                report: report.as_ref(),
                now,
            })
            .await
            .map_err(|e| match e {
                DbError::Quota(m) => DdiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "hawkbit.server.error.quota.tooManyEntries",
                    m,
                ),
                DbError::Conflict(m) => DdiError::new(
                    StatusCode::CONFLICT,
                    "hawkbit.server.error.repo.concurrentModification",
                    m,
                ),
                other => DdiError::db("storing DDI feedback", other),
            })?;
        if let Some(report) = report {
            if let Some(i) = rampart_protocol::ReportStatus::ALL
                .iter()
                .position(|s| s.as_str() == report.status)
            {
                Metrics::inc(&self.metrics.reports[i]);
            }
            self.sinks.deliver(&report, now).await;
        }
        Ok(ok_empty())
    }
}

/// Describes the release `target` as a software module: its digests are computed from the
/// stored artifact once (one release at a time), after its SHA-256 and length matched the
/// signed metadata.
async fn describe_module(
    db: Db,
    lock: Arc<tokio::sync::Mutex<()>>,
    repo: Arc<HostedRepo>,
    store: ArtifactStore,
    target: String,
    now: i64,
) -> Result<DdiModule, DdiError> {
    let target = target.as_str();
    let _one_at_a_time = lock.lock().await;
    if let Some(m) = db
        .ddi_module_by_target(target)
        .await
        .map_err(|e| DdiError::db("reading a DDI module", e))?
    {
        return Ok(m);
    }
    let path = target.to_owned();
    let artifacts = tokio::task::spawn_blocking(move || repo.artifacts(&path, now))
        .await
        .map_err(|e| DdiError::unavailable("reading the image repository", e))?
        .map_err(|e| DdiError::unavailable("reading the image repository", e))?;
    let Some(artifact) = artifacts.into_iter().find(|a| {
        a.info.hashes.contains_key("sha256")
            && a.info.hashes["sha256"].eq_ignore_ascii_case(&a.hash)
    }) else {
        return Err(DdiError::not_found(format!(
            "the image repository has no target {target:?} with a SHA-256"
        )));
    };
    let length = artifact.info.length;
    let opened = store
        .open(&artifact.file, 0, length)
        .await
        .map_err(|e| DdiError::unavailable("reading an artifact", e))?
        .ok_or_else(|| {
            DdiError::unavailable(
                "an artifact is missing from the artifact store",
                store.location(&artifact.file),
            )
        })?;
    let mut stream = opened.stream;
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut sha256 = ring::digest::Context::new(&ring::digest::SHA256);
    let mut md5 = <md5::Md5 as md5::Digest>::new();
    let mut seen = 0u64;
    use futures_util::StreamExt as _;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| DdiError::unavailable("reading an artifact", e))?;
        seen += chunk.len() as u64;
        if seen > length {
            break;
        }
        sha1.update(&chunk);
        sha256.update(&chunk);
        md5::Digest::update(&mut md5, &chunk);
    }
    let sha256 = hex::encode(sha256.finish());
    if seen != length || !sha256.eq_ignore_ascii_case(&artifact.hash) {
        return Err(DdiError::unavailable(
            "a stored artifact does not match its signed metadata",
            format!(
                "{}: {seen} bytes with SHA-256 {sha256}, the metadata says {length} bytes with {}",
                store.location(&artifact.file),
                artifact.hash
            ),
        ));
    }
    let version = rampart_core::release::ReleaseInfo::from_custom(artifact.info.custom.as_ref())
        .map(|r| r.version)
        .unwrap_or_default();
    let filename = target.rsplit('/').next().unwrap_or(target).to_owned();
    let module = DdiModule {
        id: 0,
        target: target.to_owned(),
        filename,
        version,
        size: length as i64,
        sha1: hex::encode(sha1.finish()),
        md5: hex::encode(md5::Digest::finalize(md5)),
        sha256,
    };
    db.insert_ddi_module(&module, now)
        .await
        .map_err(|e| DdiError::db("storing a DDI module", e))
}

/// A module's artifact as DDI describes it: digests, size, and its download and MD5SUM links
/// (the `-http` variants name the same HTTPS URL: clients fall back to them).
fn wire_artifact(base: &str, module: &DdiModule) -> WireArtifact {
    let file = format!(
        "{base}/softwaremodules/{}/artifacts/{}",
        module.id,
        utf8_percent(&module.filename)
    );
    let mut links = Links::new();
    links.insert("download".into(), Link::new(file.clone()));
    links.insert("download-http".into(), Link::new(file.clone()));
    links.insert("md5sum".into(), Link::new(format!("{file}.MD5SUM")));
    links.insert("md5sum-http".into(), Link::new(format!("{file}.MD5SUM")));
    WireArtifact {
        filename: module.filename.clone(),
        hashes: Hashes {
            sha1: module.sha1.clone(),
            md5: module.md5.clone(),
            sha256: module.sha256.clone(),
        },
        size: module.size.max(0) as u64,
        links,
    }
}

/// Percent-encodes what a URL path segment cannot hold as is.
fn utf8_percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

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

async fn poll(
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
            let window = api.window(&caller.id, now).await?;
            // While the device's window is closed the deployment is held back: SWUpdate
            // answers `update: skip` by closing the action as if installed.
            if window != WindowState::Closed {
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
    if caller.state.request_attributes {
        links.insert("configData".into(), Link::new(format!("{base}/configData")));
    }
    json_answer(&PollAnswer::new(api.poll_interval_secs, links))
}

fn check_c(q: &HistoryQuery) -> Result<(), DdiError> {
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

async fn deployment_base(
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
    let window = api.window(&caller.id, now).await?;
    if ty != ActionType::DownloadOnly && window == WindowState::Closed {
        return Err(DdiError::empty(StatusCode::NOT_FOUND));
    }
    let base = api.base(&headers, &caller.tenant.name, &caller.id);
    let doc = api
        .deployment_doc(&action, window, &base, q.action_history, now)
        .await?;
    json_answer(&doc)
}

async fn installed_base(
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

async fn feedback_body(
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
struct FeedbackCall {
    caller: Caller,
    feedback: Feedback,
    action: DdiAction,
    state: ActionState,
}

async fn feedback_call(
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

async fn deployment_feedback_route(
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

async fn cancel_action(
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

async fn cancel_feedback_route(
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

async fn config_data(
    State(api): State<Arc<DdiApi>>,
    ConnectInfo(peer): ConnectInfo<DdiPeer>,
    Path((tenant, controller)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    let caller = api
        .authenticate(&tenant, &controller, &headers, &peer, false)
        .await?;
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

/// The module `id` if it belongs to the device's active (open) or installed action.
async fn assigned_module(api: &DdiApi, caller: &Caller, id: &str) -> Result<DdiModule, DdiError> {
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

async fn module_artifacts(
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

async fn artifact_file(
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
