//! The device API (`/device/v1/...`, JSON over mutual TLS). The caller is
//! the device named by its verified client certificate; there is no other
//! authentication. Every authenticated request registers the device on first
//! contact, refuses a device revoked in the inventory (403), and records its
//! last-seen time in memory (written in batches, see [`crate::last_seen`]).
//!
//! The bodies are the wire types of `rampart_protocol`, which says how each is read.
//!
//! * `POST /device/v1/poll` — body: the device's facts
//!   ([`rampart_protocol::DeviceFacts`]) or `{}` (or empty). Answers a
//!   [`PollAnswer`] `{"device_id", "poll_interval_secs", "assignment"}`
//!   (`{"id", "target", "director_version", "type"}` or null) with an
//!   `ETag`; `If-None-Match` with that tag gets 304.
//!   Facts are written only when they differ from the stored ones; facts
//!   without an `attributes` key keep the stored attributes.
//! * `POST /device/v1/reports` — body a [`ReportRequest`] `{"id", "status",
//!   "assignment"?, "progress"?, "details"?}`. Stored durably before the 201; the same id
//!   with the same content from the same device answers 200 (idempotent
//!   retry); an id already used otherwise answers 409.
//! * `PUT /device/v1/attributes` — body an [`AttributesUpdate`] `{"mode":
//!   "merge"|"replace", "data": {...}}`. `merge` sets the given top-level keys (a `null` value removes
//!   the key); `replace` makes `data` the whole attribute set.
//!
//! Errors are JSON `{"error": "<code>", "detail": "<explanation>"}`: 400
//! malformed JSON, 403 revoked, 404/405 unknown endpoint or method, 408 slow
//! body, 409 report-id conflict, 413 body over the limit, 415 not JSON, 422
//! well-formed but invalid content, 503 storage unavailable.

use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use rampart_db::{Db, DbError, Device, DeviceAssignment, DeviceFacts, Report};
use rampart_protocol::{
    AttributesAnswer, AttributesMode, AttributesUpdate, PollAnswer, ReportAnswer, ReportRequest,
    UpdateKind,
};
use serde_json::{Map, Value};

use crate::engines::last_seen::LastSeen;
use crate::engines::report_sinks::ReportSinks;
use crate::helpers::unix_now;
use crate::listen::http::{
    ApiError, BodyLimits, json_bytes_response, json_response, parse_json, read_body,
};
use crate::listen::mtls::PeerIdentity;
use crate::observe::metrics::{Metrics, track_requests};

/// Longest report id, in bytes.
pub const MAX_REPORT_ID_LEN: usize = 128;

/// A device's failed verifications are audited at most once per this many seconds.
pub const VERIFICATION_AUDIT_INTERVAL: i64 = 60;
/// Devices whose last audited failed verification is remembered (then the memory is reset).
const MAX_TRACKED_VERIFICATION_AUDITS: usize = 100_000;
/// Longest reason copied from a report into its audit record.
const MAX_AUDITED_REASON_CHARS: usize = 512;

/// Number of lock stripes serialising read-modify-write updates of a device row.
const DEVICE_LOCK_STRIPES: usize = 64;

/// What a device reports about an assignment (the protocol's type; unknown statuses are refused
/// with 422, which also keeps the metric labels bounded).
pub use rampart_protocol::ReportStatus;

/// Shared state of the device API.
pub(crate) struct DeviceApi {
    pub(crate) db: Db,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) last_seen: Arc<LastSeen>,
    pub(crate) poll_interval_secs: u64,
    pub(crate) body_limits: BodyLimits,
    pub(crate) audit: crate::observe::audit::AuditWriter,
    device_locks: Box<[tokio::sync::Mutex<()>]>,
    sinks: ReportSinks,
    /// Per device: when its last failed verification was audited, and how many were not since.
    verification_audits: std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>,
    /// Per device: when a certificate's refusal for a token-enrolled row was last audited.
    pub(crate) identity_refusals: crate::listen::auth_failures::OncePerInterval,
    /// How fast each device may send reports.
    report_rate: super::report_rate::ReportRate,
    /// The hosted image repository, to learn the version of an assigned target.
    image_repo: Option<Arc<crate::delivery::image_repo::HostedRepo>>,
    /// (device, assignment) pairs known to have a result: polls skip them cheaply.
    settled: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Target path -> its release version (`None`: not a release), from `image_repo`.
    target_versions: std::sync::Mutex<std::collections::HashMap<String, Option<String>>>,
}

/// Entries kept in each of the fulfilment caches before they are cleared (bounded memory).
const MAX_FULFILMENT_CACHE: usize = 1_000_000;

impl DeviceApi {
    /// Lets polls fulfil an assignment of the release a device already runs.
    pub(crate) fn with_image_repo(
        mut self,
        image_repo: Option<Arc<crate::delivery::image_repo::HostedRepo>>,
    ) -> Self {
        self.image_repo = image_repo;
        self
    }

    pub(crate) fn new(
        db: Db,
        metrics: Arc<Metrics>,
        last_seen: Arc<LastSeen>,
        poll_interval_secs: u64,
        body_limits: BodyLimits,
        audit: crate::observe::audit::AuditWriter,
        sinks: ReportSinks,
    ) -> Self {
        Self {
            report_rate: super::report_rate::ReportRate::default(),
            image_repo: None,
            settled: Default::default(),
            target_versions: Default::default(),
            sinks,
            db,
            metrics,
            last_seen,
            poll_interval_secs,
            body_limits,
            audit,
            verification_audits: std::sync::Mutex::new(std::collections::HashMap::new()),
            identity_refusals: crate::listen::auth_failures::OncePerInterval::new(
                VERIFICATION_AUDIT_INTERVAL,
                MAX_TRACKED_VERIFICATION_AUDITS,
            ),
            device_locks: (0..DEVICE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Serialises read-modify-write updates of one device's row (facts and
    /// attributes are written whole).
    async fn lock_device(&self, device_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        let mut hasher = std::hash::DefaultHasher::new();
        device_id.hash(&mut hasher);
        let stripe = (hasher.finish() % self.device_locks.len() as u64) as usize;
        self.device_locks[stripe].lock().await
    }

    /// The calling device, registered if this is its first contact; 403 if
    /// it is revoked in the inventory.
    pub(crate) async fn identify(&self, peer: &PeerIdentity, now: i64) -> Result<Device, ApiError> {
        let id = peer.device_id.as_str();
        let found = self
            .db
            .device(id)
            .await
            .map_err(|e| ApiError::from_db("reading a device", e))?;
        let device = match found {
            Some(device) => device,
            None => {
                // Enrolment is a security event (which certificate, from where); the device
                // row and its record are written in one transaction.
                let details = serde_json::json!({
                    "serial": peer.serial,
                    "remote_address": peer.remote_addr.ip().to_string(),
                });
                let db = self.db.clone();
                let new = self
                    .audit
                    .write(
                        now,
                        &format!("device:{id}"),
                        "device.enrolled",
                        id,
                        details,
                        |line| {
                            let db = db.clone();
                            async move { db.register_audited(id, now, &line).await }
                        },
                    )
                    .await
                    .map_err(|e| {
                        crate::observe::log::error(
                            "registering a device and recording its enrolment",
                            serde_json::json!({"device": id, "error": e.to_string()}),
                        );
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "storage_unavailable",
                            "the server could not register this device; retry later",
                        )
                    })?;
                if new {
                    Metrics::inc(&self.metrics.devices_registered);
                }
                self.stored_device(id).await?
            }
        };
        // A certificate never adopts a row a token enrolled (decision 0021).
        self.check_certificate_enrolment(peer, now).await?;
        if device.revoked {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "device_revoked",
                format!(
                    "device {id:?} has been revoked by the fleet operator; it may no longer use the device API"
                ),
            ));
        }
        Ok(device)
    }

    /// For a `verification_failed` report: the audit record's actor and details, unless this
    /// device already had one audited within [`VERIFICATION_AUDIT_INTERVAL`] (the report is still
    /// stored, and the next record counts the ones in between), so one device cannot flood the
    /// audit log. The details point to the stored report and carry at most a short reason.
    fn verification_failure_record(
        &self,
        report: &Report,
        status: ReportStatus,
        now: i64,
    ) -> Option<(String, Value)> {
        if status != ReportStatus::VerificationFailed {
            return None;
        }
        let mut seen = self
            .verification_audits
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if seen.len() >= MAX_TRACKED_VERIFICATION_AUDITS {
            seen.clear();
        }
        let entry = seen
            .entry(report.device_id.clone())
            .or_insert((i64::MIN, 0));
        if now.saturating_sub(entry.0) < VERIFICATION_AUDIT_INTERVAL {
            entry.1 += 1;
            return None;
        }
        let not_audited_before = std::mem::take(&mut entry.1);
        entry.0 = now;
        let reason: String = ["error", "reason"]
            .iter()
            .find_map(|k| report.details.get(*k).and_then(Value::as_str))
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_AUDITED_REASON_CHARS)
            .collect();
        let details = serde_json::json!({
            "report": report.id,
            "assignment": report.assignment,
            "reason": reason,
            "not_audited_before": not_audited_before,
        });
        Some((format!("device:{}", report.device_id), details))
    }

    async fn stored_device(&self, id: &str) -> Result<Device, ApiError> {
        self.db
            .device(id)
            .await
            .map_err(|e| ApiError::from_db("reading a device", e))?
            .ok_or_else(|| {
                crate::observe::log::error(
                    "device vanished from the inventory",
                    serde_json::json!({"device": id}),
                );
                ApiError::internal()
            })
    }

    /// Stores polled facts if they differ from the stored ones.
    async fn store_facts(
        &self,
        id: &str,
        mut facts: DeviceFacts,
        keep_attributes: bool,
        now: i64,
    ) -> Result<(), ApiError> {
        facts
            .validate()
            .map_err(|e| ApiError::from_db("device facts", e))?;
        normalize_tags(&mut facts.tags);
        let _guard = self.lock_device(id).await;
        let mut stored = self.stored_device(id).await?.facts;
        if keep_attributes {
            facts.attributes = stored.attributes.clone();
        }
        normalize_tags(&mut stored.tags);
        if facts != stored {
            self.db
                .upsert_device(id, &facts, now)
                .await
                .map_err(|e| ApiError::from_db("storing device facts", e))?;
        }
        Ok(())
    }

    async fn poll(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        let now = unix_now();
        // One database read: revocation and assignment (see super::poll_read).
        let device = self.polling_device(peer, now).await?;
        self.last_seen.record(&device.id, now);
        let mut running = None;
        if let Some((facts, keep_attributes)) = parse_poll_facts(&bytes)? {
            running = Some(facts.firmware_version.clone());
            self.store_facts(&device.id, facts, keep_attributes, now)
                .await?;
        }
        if let (Some(assignment), Some(running)) = (&device.assignment, running) {
            self.fulfil_if_running(&device.id, assignment, &running, now)
                .await;
        }
        Metrics::inc(&self.metrics.polls);

        // Read with the revocation flag above; the ETag changes with every change of the
        // assignment.
        // A time-forced assignment is soft until its time, then forced: the answer (and its
        // ETag) changes then, so the device learns it on its next poll.
        let assignment = match device.assignment.filter(|a| !a.target.is_empty()) {
            None => None,
            Some(a) => {
                let effective =
                    rampart_rollout::spec::UpdateType::effective(&a.update_type, a.forced_at, now);
                // Stored types are checked when the assignment is written, and versions
                // count up from 1.
                let unreadable = |e: String| {
                    crate::log::error(
                        "a stored assignment cannot be sent to its device",
                        serde_json::json!({"device": device.id, "error": e}),
                    );
                    ApiError::internal()
                };
                Some(rampart_protocol::Assignment {
                    kind: UpdateKind::parse(Some(effective)).map_err(unreadable)?,
                    director_version: u64::try_from(a.version)
                        .map_err(|_| unreadable(format!("version {}", a.version)))?,
                    id: a.assignment_id,
                    target: a.target,
                })
            }
        };
        let answer = serde_json::to_vec(&PollAnswer {
            device_id: device.id.clone(),
            poll_interval_secs: Some(self.poll_interval_secs),
            assignment,
        })
        .map_err(|_| ApiError::internal())?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &answer);
        let etag = format!("\"{}\"", hex::encode(&digest.as_ref()[..16]));
        let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?;
        let cache_control = HeaderValue::from_static("no-cache");
        if if_none_match(headers, &etag) {
            Metrics::inc(&self.metrics.polls_not_modified);
            return Ok((
                StatusCode::NOT_MODIFIED,
                [
                    (header::ETAG, etag_value),
                    (header::CACHE_CONTROL, cache_control),
                ],
            )
                .into_response());
        }
        let mut response = json_bytes_response(StatusCode::OK, answer);
        response.headers_mut().insert(header::ETAG, etag_value);
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, cache_control);
        Ok(response)
    }

    /// A device told to install the release it already runs (typically: it rolled itself back
    /// to the release a halted campaign now rolls the fleet back to) has nothing to do and
    /// would never report, leaving the assignment "assigned" forever and the campaign's
    /// figures short. Its poll fulfils the assignment instead: an `installed` report on its
    /// behalf (id `running-<assignment>`, details saying so), delivered to campaigns like any
    /// other. Checked once per device and assignment (then remembered).
    async fn fulfil_if_running(
        &self,
        device_id: &str,
        assignment: &DeviceAssignment,
        running: &str,
        now: i64,
    ) {
        if assignment.target.is_empty() || running.is_empty() {
            return;
        }
        let key = (device_id.to_owned(), assignment.assignment_id.clone());
        if lock(&self.settled).contains(&key) {
            return;
        }
        if self
            .target_version(&assignment.target, now)
            .await
            .as_deref()
            != Some(running)
        {
            return;
        }
        match self
            .db
            .has_result_for(device_id, &assignment.assignment_id)
            .await
        {
            Ok(false) => {}
            Ok(true) => return remember(&self.settled, key),
            // Tried again at the next poll.
            Err(_) => return,
        }
        let report = Report {
            id: format!("running-{}", assignment.assignment_id),
            device_id: device_id.to_owned(),
            assignment: assignment.assignment_id.clone(),
            status: ReportStatus::Installed.as_str().to_owned(),
            progress: 100,
            details: serde_json::json!({
                "source": "server",
                "reason": "already_running",
                "detail": format!("the device reported it already runs {running}, the assigned release"),
            }),
            created: now,
        };
        if validate_report_id(&report.id).is_err() {
            return;
        }
        // An error means a concurrent poll stored it, or storage trouble: tried again next time.
        if self.db.insert_report(&report).await.is_ok() {
            Metrics::inc(&self.metrics.reports[ReportStatus::Installed as usize]);
            self.sinks.deliver(&report, now).await;
            remember(&self.settled, key);
        }
    }

    /// The release version of a target of the hosted repository (cached).
    async fn target_version(&self, target: &str, now: i64) -> Option<String> {
        if let Some(known) = lock(&self.target_versions).get(target) {
            return known.clone();
        }
        let repo = self.image_repo.clone()?;
        let name = target.to_owned();
        let version = tokio::task::spawn_blocking(move || repo.target(&name, now))
            .await
            .ok()?
            .ok()?
            .map(|file| {
                rampart_core::release::ReleaseInfo::from_custom(file.custom.as_ref())
                    .ok()
                    .map(|info| info.version)
            })
            .unwrap_or(None);
        let mut versions = lock(&self.target_versions);
        if versions.len() >= MAX_FULFILMENT_CACHE {
            versions.clear();
        }
        versions.insert(target.to_owned(), version.clone());
        version
    }

    async fn report(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        if let Err(wait) = self.report_rate.take(&device.id, std::time::Instant::now()) {
            return Ok(too_many_reports(wait));
        }
        let request: ReportRequest = parse_json(
            &bytes,
            r#"a report {"id": "<unique id>", "status": "<status>", "assignment": "...", "progress": 0-100, "details": {...}}"#,
        )?;
        validate_report_id(&request.id)?;
        let progress = request.progress.unwrap_or(0);
        if progress > 100 {
            return Err(ApiError::invalid(format!(
                "progress must be between 0 and 100, not {progress}"
            )));
        }
        let details = match request.details {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(details @ Value::Object(_)) => details,
            Some(_) => return Err(ApiError::invalid("details must be a JSON object")),
        };
        let report = Report {
            id: request.id,
            device_id: device.id,
            assignment: request.assignment.unwrap_or_default(),
            status: request.status.as_str().to_owned(),
            progress,
            details,
            created: now,
        };
        // A retried verification failure is answered from the stored report, not re-audited.
        if request.status == ReportStatus::VerificationFailed
            && let Ok(Some(stored)) = self.db.report(&report.device_id, &report.id).await
        {
            return self.answer_stored(&report, &stored);
        }
        let audited = self.verification_failure_record(&report, request.status, now);
        let alert = audited.as_ref().map(|(_, details)| details.clone());
        let inserted = match audited {
            None => self.db.insert_report(&report).await,
            Some((actor, details)) => {
                // The report and its audit record are one transaction: a failed verification is
                // never acknowledged without being recorded.
                let result = self
                    .audit
                    .write(
                        now,
                        &actor,
                        "device.verification_failed",
                        &report.device_id,
                        details,
                        |line| {
                            let (db, report) = (self.db.clone(), report.clone());
                            async move { db.insert_report_audited(&report, Some(&line)).await }
                        },
                    )
                    .await;
                match result {
                    Ok(()) => Ok(()),
                    Err(crate::observe::audit::AuditWriteError::Db(e)) => Err(e),
                    Err(e) => {
                        crate::observe::log::error(
                            "recording a failed verification in the audit log",
                            serde_json::json!({"error": e.to_string()}),
                        );
                        return Err(ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "storage_unavailable",
                            "the server could not record this report; retry later",
                        ));
                    }
                }
            }
        };
        match inserted {
            Ok(()) => {
                Metrics::inc(&self.metrics.reports[request.status as usize]);
                self.sinks.deliver(&report, now).await;
                if let Some(mut data) = alert {
                    // Alerted as often as audited (at most once a minute per device).
                    data["device"] = Value::String(report.device_id.clone());
                    let hooks = self.sinks.hooks.clone();
                    tokio::spawn(async move {
                        let _ = hooks
                            .emit(
                                crate::engines::webhooks::WebhookEvent::VerificationFailed,
                                data,
                            )
                            .await;
                    });
                }
                Ok(report_answer(StatusCode::CREATED, &report.id, now, false))
            }
            Err(DbError::Invalid(message)) => Err(ApiError::invalid(message)),
            Err(insert_error) => self.repeated_report(&report, insert_error).await,
        }
    }

    /// The insert failed: if the id is already stored, this is either an
    /// idempotent retry (200) or a conflicting reuse of the id (409).
    async fn repeated_report(
        &self,
        report: &Report,
        insert_error: DbError,
    ) -> Result<Response, ApiError> {
        match self.db.report(&report.device_id, &report.id).await {
            Ok(Some(stored)) => self.answer_stored(report, &stored),
            _ => Err(ApiError::from_db("storing a report", insert_error)),
        }
    }

    /// A report whose id this device already used: an idempotent retry (200) if it is the same
    /// report, else a conflict (409).
    fn answer_stored(&self, report: &Report, stored: &Report) -> Result<Response, ApiError> {
        if same_report(stored, report) {
            Metrics::inc(&self.metrics.reports_duplicate);
            return Ok(report_answer(
                StatusCode::OK,
                &stored.id,
                stored.created,
                true,
            ));
        }
        Err(ApiError::new(
            StatusCode::CONFLICT,
            "report_id_conflict",
            format!(
                "report id {:?} was already used by this device for a different report; send a new report under a new id",
                report.id
            ),
        ))
    }

    async fn attributes(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<Response, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        let request: AttributesUpdate = parse_json(
            &bytes,
            r#"{"mode": "merge" or "replace", "data": {<attributes>}}"#,
        )?;

        let _guard = self.lock_device(&device.id).await;
        let stored = self.stored_device(&device.id).await?.facts;
        let mut facts = stored.clone();
        match request.mode {
            AttributesMode::Merge => {
                for (key, value) in request.data {
                    if value.is_null() {
                        facts.attributes.shift_remove(&key);
                    } else {
                        facts.attributes.insert(key, value);
                    }
                }
            }
            AttributesMode::Replace => {
                facts.attributes = request
                    .data
                    .into_iter()
                    .filter(|(_, value)| !value.is_null())
                    .collect();
            }
        }
        if facts.attributes != stored.attributes {
            facts
                .validate()
                .map_err(|e| ApiError::from_db("device attributes", e))?;
            self.db
                .upsert_device(&device.id, &facts, now)
                .await
                .map_err(|e| ApiError::from_db("storing device attributes", e))?;
            Metrics::inc(&self.metrics.attribute_updates);
        }
        Ok(json_response(
            StatusCode::OK,
            &AttributesAnswer {
                device_id: device.id,
                attributes: facts.attributes,
            },
        ))
    }
}

/// The device API routes, with request metrics.
pub(crate) fn router(api: Arc<DeviceApi>, delivery: Router) -> Router {
    let metrics = api.metrics.clone();
    Router::new()
        .route("/device/v1/poll", post(poll))
        .route("/device/v1/reports", post(report))
        .route("/device/v1/attributes", put(attributes))
        .with_state(api)
        .merge(delivery)
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            track_requests,
        ))
}

async fn poll(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.poll(&peer, &headers, body).await
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn remember(
    settled: &std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    key: (String, String),
) {
    let mut settled = lock(settled);
    if settled.len() >= MAX_FULFILMENT_CACHE {
        settled.clear();
    }
    settled.insert(key);
}

/// 429 for a device over its report rate, with when to send again.
fn too_many_reports(wait: std::time::Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_reports",
        format!(
            "this device sends reports faster than {} a second (bursts of {}); send again in {seconds} s",
            super::report_rate::REPORTS_PER_SECOND,
            super::report_rate::REPORT_BURST
        ),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

async fn report(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.report(&peer, &headers, body).await
}

async fn attributes(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.attributes(&peer, &headers, body).await
}

/// The poll body: `None` for an empty body or `{}`, else the facts and
/// whether the stored attributes are kept (no `attributes` key given).
fn parse_poll_facts(bytes: &[u8]) -> Result<Option<(DeviceFacts, bool)>, ApiError> {
    const EXPECTED: &str =
        r#"the device's facts {"hardware_id", "firmware_version", "security_version", ...} or {}"#;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let Value::Object(map) = parse_json::<Value>(bytes, EXPECTED)? else {
        return Err(ApiError::invalid(format!(
            "the poll body must be a JSON object: {EXPECTED}"
        )));
    };
    if map.is_empty() {
        return Ok(None);
    }
    let facts: rampart_protocol::DeviceFacts = serde_json::from_value(Value::Object(map))
        .map_err(|e| ApiError::invalid(format!("device facts: {e}; expected {EXPECTED}")))?;
    let keep_attributes = facts.attributes.is_none();
    Ok(Some((
        DeviceFacts {
            hardware_id: facts.hardware_id,
            firmware_version: facts.firmware_version,
            security_version: facts.security_version,
            region: facts.region,
            slots: facts.slots,
            tags: facts.tags,
            attributes: facts.attributes.unwrap_or_default(),
        },
        keep_attributes,
    )))
}

/// Tags are a set: order and repeats carry no meaning.
fn normalize_tags(tags: &mut Vec<String>) {
    tags.sort_unstable();
    tags.dedup();
}

fn validate_report_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_REPORT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "report id must be 1-{MAX_REPORT_ID_LEN} characters of A-Z a-z 0-9 . _ : - (e.g. a random UUID)"
        )))
    }
}

fn same_report(a: &Report, b: &Report) -> bool {
    a.device_id == b.device_id
        && a.assignment == b.assignment
        && a.status == b.status
        && a.progress == b.progress
        && a.details == b.details
}

fn report_answer(status: StatusCode, id: &str, created: i64, duplicate: bool) -> Response {
    json_response(
        status,
        &ReportAnswer {
            id: id.to_owned(),
            created,
            duplicate,
        },
    )
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` matches).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_uses_weak_comparison_and_lists() {
        let mut headers = HeaderMap::new();
        assert!(!if_none_match(&headers, "\"abc\""));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", W/\"abc\""),
        );
        assert!(if_none_match(&headers, "\"abc\""));
        assert!(!if_none_match(&headers, "\"abd\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&headers, "\"anything\""));
    }

    #[test]
    fn poll_body_forms() {
        assert_eq!(parse_poll_facts(b"").unwrap(), None);
        assert_eq!(parse_poll_facts(b" {} ").unwrap(), None);
        let (facts, keep) = parse_poll_facts(
            br#"{"hardware_id": "board-a", "firmware_version": "1.0.0", "security_version": 2}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(facts.hardware_id, "board-a");
        assert!(keep);
        let (_, keep) = parse_poll_facts(
            br#"{"hardware_id": "b", "firmware_version": "1", "security_version": 1, "attributes": {}}"#,
        )
        .unwrap()
        .unwrap();
        assert!(!keep);
        assert_eq!(parse_poll_facts(b"[1]").unwrap_err().status, 422);
        assert_eq!(
            parse_poll_facts(b"{\"hardware_id\": ").unwrap_err().status,
            400
        );
        assert_eq!(
            parse_poll_facts(br#"{"hardware_id": "b"}"#)
                .unwrap_err()
                .status,
            422
        );
    }

    #[test]
    fn report_ids() {
        assert!(validate_report_id("0b7c6f1e-2f7a-4c55-9d0e-8a1f3c2b4d5e").is_ok());
        assert!(validate_report_id("").is_err());
        assert!(validate_report_id("a b").is_err());
        assert!(validate_report_id(&"x".repeat(MAX_REPORT_ID_LEN + 1)).is_err());
    }

    #[test]
    fn statuses_index_their_metric() {
        for (i, status) in ReportStatus::ALL.iter().enumerate() {
            assert_eq!(*status as usize, i);
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
