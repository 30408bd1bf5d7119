//! The device API (`/device/v1/...`, JSON over mutual TLS). The caller is
//! the device named by its verified client certificate; there is no other
//! authentication. Every authenticated request registers the device on first
//! contact, refuses a device revoked in the inventory (403), and records its
//! last-seen time in memory (written in batches, see `engines::last_seen`).
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

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_db::{Db, Device, DeviceAssignment, DeviceFacts, Report};
use rampart_protocol::{PollAnswer, UpdateKind};
use serde_json::Value;

use crate::engines::last_seen::LastSeen;
use crate::engines::report_sinks::ReportSinks;
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, BodyLimits, json_bytes_response, parse_json, read_body};
use crate::listen::mtls::PeerIdentity;
use crate::observe::metrics::Metrics;
use crate::state::Shared;

/// Longest report id, in bytes.
pub const MAX_REPORT_ID_LEN: usize = 128;
/// Devices whose last audited failed verification is remembered (then the memory is reset).
pub(super) const MAX_TRACKED_VERIFICATION_AUDITS: usize = 100_000;
/// A device's failed verifications are audited at most once per this many seconds.
pub const VERIFICATION_AUDIT_INTERVAL: i64 = 60;

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
    pub(super) device_locks: Box<[tokio::sync::Mutex<()>]>,
    pub(super) sinks: ReportSinks,
    /// Per device: when its last failed verification was audited, and how many were not since.
    pub(super) verification_audits: std::sync::Mutex<std::collections::HashMap<String, (i64, u64)>>,
    /// Per device: when a certificate's refusal for a token-enrolled row was last audited.
    pub(crate) identity_refusals: crate::listen::auth_failures::OncePerInterval,
    /// How fast each device may send reports.
    pub(super) report_rate: super::report_rate::ReportRate,
    /// The hosted image repository, to learn the version of an assigned target.
    pub(super) image_repo: Option<Arc<crate::delivery::image_repo::HostedRepo>>,
    /// (device, assignment) pairs known to have a result: polls skip them cheaply.
    pub(super) settled: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    /// Target path -> its release version (`None`: not a release), from `image_repo`.
    pub(super) target_versions: std::sync::Mutex<std::collections::HashMap<String, Option<String>>>,
    /// Remote attestation, when enabled.
    pub(super) attestation: Option<Arc<crate::engines::attestation::Attestation>>,
    /// How fast each device may call the attestation routes (each refusal is written to the
    /// audit log and the security events).
    pub(super) attestation_rate: super::report_rate::ReportRate,
    /// Forensic evidence, when the server keeps it.
    pub(super) evidence: Option<Arc<crate::engines::evidence::Evidence>>,
    /// How fast each device may call the evidence routes.
    pub(super) evidence_rate: super::report_rate::ReportRate,
    /// Notes a revoked device's use of the API (the revoked-credential detector's signal).
    pub(super) revoked_use: Arc<crate::engines::detectors::RevokedUse>,
    /// Signs the quarantine instruction a quarantined device's poll answer carries.
    pub(super) instructions: Option<Arc<crate::delivery::instruction::InstructionSigner>>,
}

/// Entries kept in each of the fulfilment caches before they are cleared (bounded memory).
const MAX_FULFILMENT_CACHE: usize = 1_000_000;

impl DeviceApi {
    /// The device API's state, from the handles every front door shares.
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            report_rate: super::report_rate::ReportRate::default(),
            attestation: shared.attestation.clone(),
            attestation_rate: super::report_rate::ReportRate::new(
                super::report_rate::ATTESTATION_BURST,
                super::report_rate::ATTESTATION_PER_SECOND,
            ),
            evidence: shared.evidence.clone(),
            evidence_rate: shared.evidence.as_ref().map_or_else(
                super::report_rate::ReportRate::default,
                |e| {
                    super::report_rate::ReportRate::new(
                        e.config.upload_burst,
                        e.config.uploads_per_second,
                    )
                },
            ),
            image_repo: shared.image_repo.clone(),
            revoked_use: shared.revoked_use.clone(),
            instructions: shared.instructions.clone(),
            settled: Default::default(),
            target_versions: Default::default(),
            sinks: shared.report_sinks(),
            db: shared.db.clone(),
            metrics: shared.metrics.clone(),
            last_seen: shared.last_seen.clone(),
            poll_interval_secs: shared.poll_interval_secs,
            body_limits: shared.body_limits,
            audit: shared.audit.clone(),
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
    pub(super) async fn lock_device(&self, device_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
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
            self.revoked_use
                .note(&format!("device:{id}"), Some(id), "device", now)
                .await;
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

    pub(super) async fn stored_device(&self, id: &str) -> Result<Device, ApiError> {
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
        if !stored.hardware_id.is_empty() && facts.hardware_id != stored.hardware_id {
            // Real hardware does not change its id: stored with the security event the
            // hardware-id detector reads, in one transaction.
            crate::engines::detectors::record_hardware_change(
                &self.db,
                &self.audit,
                id,
                &facts,
                &stored.hardware_id,
                now,
            )
            .await
            .map_err(|e| match e {
                crate::observe::audit::AuditWriteError::Db(e) => {
                    ApiError::from_db("storing device facts", e)
                }
                other => {
                    crate::observe::log::error(
                        "recording a device's hardware-id change",
                        serde_json::json!({"device": id, "error": other.to_string()}),
                    );
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage_unavailable",
                        "the server could not record this poll; retry later",
                    )
                }
            })?;
        } else if facts != stored {
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
        let mut boot_id = None;
        if let Some((facts, keep_attributes)) = parse_poll_facts(&bytes)? {
            running = Some(facts.firmware_version.clone());
            boot_id = Some(facts.boot_id.clone()).filter(|b| !b.is_empty());
            self.store_facts(&device.id, facts, keep_attributes, now)
                .await?;
        }
        if let (Some(assignment), Some(running)) = (&device.assignment, running) {
            self.fulfil_if_running(&device.id, assignment, &running, now)
                .await;
        }
        Metrics::inc(&self.metrics.polls);
        let (attestation, attested) = self
            .attestation_request(&device.id, boot_id.as_deref(), now)
            .await?;
        let evidence = match &self.evidence {
            Some(engine) => engine
                .request_for_poll(&device.id)
                .await
                .map_err(|e| ApiError::from_db("reading a device's evidence request", e))?,
            None => None,
        };

        // Read with the revocation flag above; the ETag changes with every change of the
        // assignment.
        // A time-forced assignment is soft until its time, then forced: the answer (and its
        // ETag) changes then, so the device learns it on its next poll.
        // Under the fleet-wide policy an unattested device is told of no assignment (its poll
        // answer asks for a quote instead).
        // A quarantined device is told of no assignment, whatever it is assigned (a
        // campaign's rollback may still point it somewhere): see super::quarantine.
        let quarantined = device
            .quarantine
            .as_ref()
            .is_some_and(|q| q.is_quarantined());
        let instruction = self.instruction(&device.id, device.quarantine.as_ref(), now);
        let assignment = match device
            .assignment
            .filter(|a| !a.target.is_empty() && attested && may_receive(quarantined, a))
        {
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
                // A re-image is forced, whatever deferred the assignment before.
                let kind = if a.reimage {
                    UpdateKind::Forced
                } else {
                    UpdateKind::parse(Some(effective)).map_err(unreadable)?
                };
                Some(rampart_protocol::Assignment {
                    kind,
                    director_version: u64::try_from(a.version)
                        .map_err(|_| unreadable(format!("version {}", a.version)))?,
                    id: a.assignment_id,
                    target: a.target,
                    reimage: a.reimage,
                })
            }
        };
        let answer = serde_json::to_vec(&PollAnswer {
            device_id: device.id.clone(),
            poll_interval_secs: Some(self.poll_interval_secs),
            assignment,
            attestation,
            quarantine: instruction,
            evidence,
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
}

pub(super) async fn poll(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    api.poll(&peer, &headers, body).await
}

pub(super) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub(super) fn remember(
    settled: &std::sync::Mutex<std::collections::HashSet<(String, String)>>,
    key: (String, String),
) {
    let mut settled = lock(settled);
    if settled.len() >= MAX_FULFILMENT_CACHE {
        settled.clear();
    }
    settled.insert(key);
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
            boot_id: facts.boot_id,
            slot_versions: facts.slot_versions,
        },
        keep_attributes,
    )))
}

/// Whether a device may be told of an assignment: not while it is quarantined (decision 0031),
/// except a re-image, which is how a quarantined device is remedied (decision 0032).
fn may_receive(quarantined: bool, assignment: &DeviceAssignment) -> bool {
    !quarantined || assignment.reimage
}

/// Tags are a set: order and repeats carry no meaning.
fn normalize_tags(tags: &mut Vec<String>) {
    tags.sort_unstable();
    tags.dedup();
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

pub(super) fn validate_report_id(id: &str) -> Result<(), ApiError> {
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
    fn statuses_index_their_metric() {
        for (i, status) in ReportStatus::ALL.iter().enumerate() {
            assert_eq!(*status as usize, i);
            let json = serde_json::to_string(status).unwrap();
            assert_eq!(json, format!("\"{}\"", status.as_str()));
        }
    }
}
