//! Forensic evidence on the server's side, with no HTTP (issue 16, decision 0034).
//!
//! * **The executor of `collect_evidence` actions**: each claimed action opens an evidence
//!   request for its device (a random nonce, the size limits) and finishes the action with its
//!   timeline entry; a device or incident at its bundle quota fails the action, saying so.
//! * **The upload**: a device's poll answer names its open request; it uploads the bundle in
//!   chunks at increasing offsets (each written and flushed to the spool before it is counted,
//!   so a resumed upload continues from what the server holds), within the request's size and
//!   the quotas per device and per incident.
//! * **Completion**: the length and hash, then the bundle itself (`rampart_incident::evidence`):
//!   for this device, this request, this incident and nonce, signed by the key of the
//!   certificate the device presented on the connection, and the TPM quote's binding when the
//!   bundle has a quote and the device an attestation key. A bundle that fails any check is
//!   refused (timeline, audit record and security event) and never stored as evidence; one that
//!   passes is stored content-addressed, recorded in the timeline and the audit chain, and
//!   anchored in the transparency log.
//!
//! A request is used once: once stored or refused, nothing more is accepted for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rampart_db::{
    Db, DbError, DomainError, EvidenceBundle, EvidenceQuota, EvidenceRequest, EvidenceState,
    SecurityEvent, TimelineEntry,
};
use rampart_protocol::{EvidenceComplete, EvidenceProgress};
use serde_json::{Value, json};
use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
use tokio::sync::{Mutex, Notify, watch};

use crate::delivery::evidence_store::{EvidenceStore, EvidenceStoreError};
use crate::engines::audit_anchor::AuditLogTarget;
use crate::helpers::{new_id, sha256_hex, unix_now};
use crate::observe::audit::{AuditWriteError, AuditWriter};

/// Default largest bundle a request accepts.
pub const DEFAULT_MAX_BUNDLE_BYTES: u64 = 64 << 20;
/// Default largest chunk one upload request may carry.
pub const DEFAULT_CHUNK_BYTES: u64 = 256 << 10;
/// Largest chunk size that may be configured (a body the listener reads whole).
pub const MAX_CHUNK_BYTES: u64 = 1 << 20;
/// Default quota per device: bytes held (uploads in progress and bundles stored) and bundles.
pub const DEFAULT_DEVICE_BYTES: u64 = 256 << 20;
pub const DEFAULT_DEVICE_BUNDLES: u64 = 16;
/// Default quota per incident.
pub const DEFAULT_INCIDENT_BYTES: u64 = 4 << 30;
pub const DEFAULT_INCIDENT_BUNDLES: u64 = 10_000;
/// Default upload rate per device: evidence calls in a burst, then per second (a chunk is at
/// most 1 MiB, so this bounds one device to about 20 MiB/s: enough for any bundle, too little
/// to crowd out the others).
pub const DEFAULT_UPLOAD_BURST: f64 = 60.0;
pub const DEFAULT_UPLOADS_PER_SECOND: f64 = 20.0;
/// Actions claimed per executor step.
const CLAIM: i64 = 100;
/// How often the executor and the anchorer look for work when not woken.
const TICK: Duration = Duration::from_secs(1);
/// How long one transparency-log call may take before it is retried at a later tick.
const LOG_TIMEOUT: Duration = Duration::from_secs(30);
/// Lock stripes serialising the chunks of one request.
const LOCK_STRIPES: usize = 64;
/// The action this engine executes (`rampart_incident::model::Action`'s wire name).
pub const ACTION: &str = "collect_evidence";

/// Evidence settings of a server (`rampart server --evidence-dir DIR ...`).
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// Where uploads in progress are held (a local directory, created owner-only).
    pub spool: PathBuf,
    /// Where verified bundles are stored.
    pub store: EvidenceStore,
    /// Largest bundle a request accepts.
    pub max_bundle_bytes: u64,
    /// Largest chunk one upload request may carry.
    pub chunk_bytes: u64,
    pub quota: EvidenceQuota,
    /// Evidence calls one device may make in a burst, then per second (429 beyond).
    pub upload_burst: f64,
    pub uploads_per_second: f64,
    /// The transparency log bundles are anchored in, if any.
    pub log: Option<AuditLogTarget>,
}

impl EvidenceConfig {
    /// Defaults, with uploads spooled in `dir/incoming` and bundles stored in `dir/bundles`.
    pub fn in_directory(dir: &Path) -> Self {
        Self {
            spool: dir.join("incoming"),
            store: EvidenceStore::Local(dir.join("bundles")),
            max_bundle_bytes: DEFAULT_MAX_BUNDLE_BYTES,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            quota: EvidenceQuota {
                device_bytes: DEFAULT_DEVICE_BYTES,
                device_bundles: DEFAULT_DEVICE_BUNDLES,
                incident_bytes: DEFAULT_INCIDENT_BYTES,
                incident_bundles: DEFAULT_INCIDENT_BUNDLES,
            },
            upload_burst: DEFAULT_UPLOAD_BURST,
            uploads_per_second: DEFAULT_UPLOADS_PER_SECOND,
            log: None,
        }
    }

    /// Checks the limits fit together.
    pub fn validate(&self) -> Result<(), String> {
        if self.chunk_bytes == 0 || self.chunk_bytes > MAX_CHUNK_BYTES {
            return Err(format!(
                "the evidence chunk size must be 1 to {MAX_CHUNK_BYTES} bytes, not {}",
                self.chunk_bytes
            ));
        }
        if self.max_bundle_bytes == 0 || self.max_bundle_bytes > self.quota.device_bytes {
            return Err(format!(
                "the largest evidence bundle ({} bytes) must be at least 1 byte and fit the device quota ({} bytes)",
                self.max_bundle_bytes, self.quota.device_bytes
            ));
        }
        if !(self.upload_burst >= 1.0 && self.uploads_per_second > 0.0) {
            return Err("the evidence upload rate must allow a burst of at least 1 and more than 0 per second".into());
        }
        if self.quota.device_bundles == 0 || self.quota.incident_bundles == 0 {
            return Err("the evidence bundle quotas must be at least 1".into());
        }
        Ok(())
    }
}

/// Why an evidence call failed; the device front door turns each into its answer.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("no evidence request {0:?}")]
    UnknownRequest(String),
    /// The request is another device's: the caller learns nothing more about it.
    #[error("evidence request {0:?} is not for this device")]
    NotYours(String),
    /// The upload is elsewhere than the caller thinks (offset, or length at completion).
    #[error("{detail}")]
    Conflict {
        detail: String,
        progress: EvidenceProgress,
    },
    /// The request was used (stored or refused).
    #[error("{detail}")]
    Closed {
        detail: String,
        progress: EvidenceProgress,
    },
    /// Over the request's size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Over a quota of the device or incident.
    #[error("{0}")]
    Quota(String),
    #[error("{0}")]
    Invalid(String),
    /// The bundle failed a check; it was refused and discarded.
    #[error("the evidence bundle was refused: {0}")]
    Refused(String),
    /// Storage failed; nothing was decided, the caller may retry.
    #[error("{0}")]
    Unavailable(String),
}

fn progress_of(request: &EvidenceRequest) -> EvidenceProgress {
    EvidenceProgress {
        id: request.id.clone(),
        received: request.received,
        complete: request.state == EvidenceState::Stored,
        sha256: (request.state == EvidenceState::Stored).then(|| request.sha256.clone()),
    }
}

fn unavailable(context: &str, e: impl std::fmt::Display) -> EvidenceError {
    crate::observe::log::error(context, json!({"error": e.to_string()}));
    EvidenceError::Unavailable(format!(
        "the server could not {context} (storage unavailable); retry later"
    ))
}

/// Forensic evidence: the executor, the upload and its completion, the anchoring.
pub struct Evidence {
    db: Db,
    audit: AuditWriter,
    pub(crate) config: EvidenceConfig,
    locks: Box<[Mutex<()>]>,
    /// Devices with an open request (loaded once, then kept), so a poll of any other device
    /// costs no query.
    open_devices: Mutex<Option<std::collections::HashSet<String>>>,
    /// Wakes the anchorer when a bundle was stored.
    stored: Notify,
}

impl Evidence {
    pub fn new(db: Db, audit: AuditWriter, config: EvidenceConfig) -> Self {
        Self {
            db,
            audit,
            config,
            locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            open_devices: Mutex::new(None),
            stored: Notify::new(),
        }
    }

    /// Creates the spool directory and checks the store.
    pub async fn check(&self) -> Result<(), EvidenceStoreError> {
        crate::delivery::evidence_store::create_private_dir(&self.config.spool)
            .await
            .map_err(|e| EvidenceStoreError::Write {
                location: self.config.spool.display().to_string(),
                reason: e.to_string(),
            })?;
        self.config.store.check().await
    }

    async fn lock(&self, request_id: &str) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash as _, Hasher as _};
        let mut hasher = std::hash::DefaultHasher::new();
        request_id.hash(&mut hasher);
        self.locks[(hasher.finish() % self.locks.len() as u64) as usize]
            .lock()
            .await
    }

    fn spool_file(&self, request_id: &str) -> PathBuf {
        self.config.spool.join(format!("{request_id}.part"))
    }

    // ---- the executor ---------------------------------------------------------------------

    /// Executes approved `collect_evidence` actions until `stop`, and anchors stored bundles.
    pub(crate) async fn run(
        self: Arc<Self>,
        stop: watch::Receiver<bool>,
        heart: crate::engines::heartbeat::Heart,
    ) {
        let stop = crate::helpers::stopped(stop);
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.stored.notified() => {}
                () = &mut stop => break,
            }
            if let Err(e) = self.execute_actions().await {
                crate::observe::log::error(
                    "executing collect_evidence actions",
                    json!({"error": e.to_string()}),
                );
            }
            self.anchor_pending().await;
            heart.beat(unix_now());
        }
    }

    /// Claims approved `collect_evidence` actions and opens a request for each; returns how
    /// many were executed.
    pub async fn execute_actions(&self) -> Result<usize, DbError> {
        let actions = self.db.claim_incident_actions(ACTION, CLAIM).await?;
        for action in &actions {
            let now = unix_now();
            let (succeeded, outcome, kind) = match self.open_request(action, now).await {
                Ok(request) => (
                    true,
                    json!({"request": request.id, "max_bytes": request.max_bytes}),
                    "evidence_requested",
                ),
                Err(reason) => (false, json!({"error": reason}), "evidence_request_failed"),
            };
            let mut detail = match &action.detail {
                Value::Object(map) => map.clone(),
                _ => serde_json::Map::new(),
            };
            detail.insert("outcome".into(), outcome.clone());
            let detail = Value::Object(detail);
            let (db, action_id) = (self.db.clone(), action.id.clone());
            let (incident, device) = (action.incident_id.clone(), action.device_id.clone());
            let written = self
                .audit
                .write(
                    now,
                    "engine:evidence",
                    &format!("incident.{kind}"),
                    &format!("incident:{incident}"),
                    json!({"incident": incident, "device": device, "action": action_id, "outcome": outcome}),
                    |line| {
                        let entry = TimelineEntry {
                            audit_seq: line.seq,
                            incident_id: incident.clone(),
                            at: now,
                            kind: kind.into(),
                            actor: "engine:evidence".into(),
                            device_id: device.clone(),
                            detail: outcome.clone(),
                        };
                        let (db, id, detail) = (db.clone(), action_id.clone(), detail.clone());
                        async move {
                            db.finish_incident_action(&id, succeeded, &detail, &entry, &line)
                                .await
                        }
                    },
                )
                .await;
            if let Err(e) = written {
                crate::observe::log::error(
                    "finishing a collect_evidence action (retried after a restart)",
                    json!({"action": action.id, "error": e.to_string()}),
                );
            }
        }
        Ok(actions.len())
    }

    /// Opens the request an action asks for (or finds the device's open one for the incident).
    async fn open_request(
        &self,
        action: &rampart_db::IncidentAction,
        now: i64,
    ) -> Result<EvidenceRequest, String> {
        if action.device_id.is_empty() {
            return Err("a collect_evidence action must name a device".into());
        }
        let id = new_id("ev").map_err(|e| e.to_string())?;
        let nonce = random_nonce().map_err(|e| e.to_string())?;
        let request = EvidenceRequest {
            id,
            incident_id: action.incident_id.clone(),
            device_id: action.device_id.clone(),
            action_id: action.id.clone(),
            nonce,
            max_bytes: self.config.max_bundle_bytes,
            chunk_bytes: self.config.chunk_bytes,
            state: EvidenceState::Open,
            received: 0,
            requested_at: now,
            updated_at: now,
            finished_at: None,
            sha256: String::new(),
            reason: String::new(),
        };
        let (request, _) = self
            .db
            .open_evidence_request(&request, &self.config.quota)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(open) = self.open_devices.lock().await.as_mut() {
            open.insert(request.device_id.clone());
        }
        Ok(request)
    }

    // ---- the device's side ----------------------------------------------------------------

    /// The request a device's poll answer carries, if it has an open one.
    pub async fn request_for_poll(
        &self,
        device_id: &str,
    ) -> Result<Option<rampart_protocol::EvidenceRequest>, DbError> {
        {
            let mut open = self.open_devices.lock().await;
            let devices = match open.as_mut() {
                Some(devices) => devices,
                None => open.insert(self.db.devices_with_open_evidence().await?),
            };
            if !devices.contains(device_id) {
                return Ok(None);
            }
        }
        let found = self.db.open_evidence_request_of(device_id).await?;
        if found.is_none()
            && let Some(open) = self.open_devices.lock().await.as_mut()
        {
            open.remove(device_id);
        }
        Ok(found.map(|r| rampart_protocol::EvidenceRequest {
            id: r.id,
            incident: r.incident_id,
            nonce: r.nonce,
            max_bytes: r.max_bytes,
            chunk_bytes: r.chunk_bytes,
        }))
    }

    /// The device's own request (never another device's).
    async fn own_request(
        &self,
        device_id: &str,
        id: &str,
    ) -> Result<EvidenceRequest, EvidenceError> {
        let request = self
            .db
            .evidence_request(id)
            .await
            .map_err(|e| unavailable("read the evidence request", e))?
            .ok_or_else(|| EvidenceError::UnknownRequest(id.to_owned()))?;
        if request.device_id != device_id {
            return Err(EvidenceError::NotYours(id.to_owned()));
        }
        Ok(request)
    }

    /// `GET /device/v1/evidence/{id}`: how far the upload is.
    pub async fn progress(
        &self,
        device_id: &str,
        id: &str,
    ) -> Result<EvidenceProgress, EvidenceError> {
        Ok(progress_of(&self.own_request(device_id, id).await?))
    }

    /// `PUT /device/v1/evidence/{id}?offset=N`: appends a chunk at `offset`, which must be
    /// what the server holds.
    pub async fn append(
        &self,
        device_id: &str,
        id: &str,
        offset: u64,
        chunk: &[u8],
    ) -> Result<EvidenceProgress, EvidenceError> {
        let _guard = self.lock(id).await;
        let request = self.own_request(device_id, id).await?;
        check_open(&request)?;
        if request.received != offset {
            return Err(EvidenceError::Conflict {
                detail: format!(
                    "the upload continues at offset {}, not {offset}: resume from there",
                    request.received
                ),
                progress: progress_of(&request),
            });
        }
        let length = chunk.len() as u64;
        if length > request.chunk_bytes {
            return Err(EvidenceError::TooLarge(format!(
                "a chunk may carry at most {} bytes, not {length}",
                request.chunk_bytes
            )));
        }
        if offset.saturating_add(length) > request.max_bytes {
            return Err(EvidenceError::TooLarge(format!(
                "the bundle would be over this request's limit of {} bytes",
                request.max_bytes
            )));
        }
        if length == 0 {
            return Ok(progress_of(&request));
        }
        // The quotas are read before any byte is written (and again when the chunk is counted),
        // so a device at its quota writes nothing.
        let (device, incident) = self
            .db
            .evidence_usage(&request.device_id, &request.incident_id)
            .await
            .map_err(|e| unavailable("read the evidence quotas", e))?;
        let quota = &self.config.quota;
        if device.bytes + length > quota.device_bytes
            || incident.bytes + length > quota.incident_bytes
        {
            // Worded by the storage layer, which checks the same sums when counting.
            return Err(self
                .count(&request, offset, length)
                .await
                .err()
                .unwrap_or_else(|| EvidenceError::Quota("the evidence quota is reached".into())));
        }
        self.write_chunk(&request.id, offset, chunk)
            .await
            .map_err(|e| unavailable("write the evidence chunk", e))?;
        let request = self.count(&request, offset, length).await?;
        Ok(progress_of(&request))
    }

    /// Counts a written chunk (or, for a chunk over a quota, returns why not).
    async fn count(
        &self,
        request: &EvidenceRequest,
        offset: u64,
        length: u64,
    ) -> Result<EvidenceRequest, EvidenceError> {
        match self
            .db
            .account_evidence_chunk(&request.id, offset, length, &self.config.quota, unix_now())
            .await
        {
            Ok(request) => Ok(request),
            Err(e) => Err(match e.split() {
                Ok(DomainError::Quota(reason)) => EvidenceError::Quota(reason),
                Ok(DomainError::Conflict(detail)) => EvidenceError::Conflict {
                    detail,
                    progress: progress_of(request),
                },
                Ok(other) => EvidenceError::Invalid(other.to_string()),
                Err(e) => unavailable("count the evidence chunk", e),
            }),
        }
    }

    /// Writes `chunk` at `offset` of the request's spool file and flushes it to disk. Bytes past
    /// `offset` (a chunk written but not counted before a crash) are cut first.
    async fn write_chunk(&self, id: &str, offset: u64, chunk: &[u8]) -> std::io::Result<()> {
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.spool_file(id))
            .await?;
        file.set_len(offset).await?;
        file.seek(std::io::SeekFrom::Start(offset)).await?;
        file.write_all(chunk).await?;
        file.sync_data().await
    }

    /// `POST /device/v1/evidence/{id}/complete`: checks and stores the uploaded bundle.
    /// `certificate` is the DER certificate the device presented on this connection.
    pub async fn complete(
        &self,
        device_id: &str,
        certificate: &[u8],
        id: &str,
        done: &EvidenceComplete,
    ) -> Result<EvidenceProgress, EvidenceError> {
        let _guard = self.lock(id).await;
        let request = self.own_request(device_id, id).await?;
        if request.state == EvidenceState::Stored && request.sha256 == done.sha256 {
            // The answer to an earlier completion was lost: the same answer again.
            return Ok(progress_of(&request));
        }
        check_open(&request)?;
        if done.length != request.received {
            return Err(EvidenceError::Conflict {
                detail: format!(
                    "the server holds {} bytes of this bundle, not {}: upload the rest from offset {}",
                    request.received, done.length, request.received
                ),
                progress: progress_of(&request),
            });
        }
        let spool = self.spool_file(id);
        let bytes = match tokio::fs::read(&spool).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && request.received == 0 => {
                Vec::new()
            }
            Err(e) => return Err(unavailable("read the uploaded evidence", e)),
        };
        // The spool may hold bytes of a chunk written but never counted (a crash between
        // the two): only the counted ones are the bundle.
        let bytes = bytes
            .get(..request.received as usize)
            .ok_or_else(|| unavailable("read the uploaded evidence", "the spool file is short"))?;
        let sha256 = sha256_hex(bytes);
        let checked = if !done.sha256.eq_ignore_ascii_case(&sha256) {
            Err(format!(
                "the uploaded bytes hash to {sha256}, not the {} the device announced",
                done.sha256.chars().take(80).collect::<String>()
            ))
        } else {
            self.check_bundle(&request, certificate, bytes).await
        };
        let quote_checked = match checked {
            Ok(quote_checked) => quote_checked,
            Err(reason) => {
                self.refuse(&request, &reason).await?;
                return Err(EvidenceError::Refused(reason));
            }
        };
        tokio::fs::write(&spool, bytes)
            .await
            .map_err(|e| unavailable("trim the uploaded evidence", e))?;
        self.config
            .store
            .put(&sha256, &spool)
            .await
            .map_err(|e| unavailable("store the evidence bundle", e))?;
        let now = unix_now();
        let entry_text = rampart_incident::custody::log_entry(
            &request.incident_id,
            &request.device_id,
            &request.id,
            &sha256,
            request.received,
        );
        let bundle = EvidenceBundle {
            request_id: request.id.clone(),
            incident_id: request.incident_id.clone(),
            device_id: request.device_id.clone(),
            sha256: sha256.clone(),
            length: request.received,
            certificate: certificate.to_vec(),
            quote_checked,
            stored_at: now,
            audit_seq: 0,
            log_entry: entry_text,
            log_index: None,
            log_proof: None,
        };
        let details = json!({
            "incident": request.incident_id,
            "device": request.device_id,
            "request": request.id,
            "sha256": sha256,
            "length": request.received,
            "quote_checked": quote_checked,
            "location": self.config.store.location(&sha256),
        });
        let db = self.db.clone();
        self.audit
            .write(
                now,
                &format!("device:{device_id}"),
                rampart_incident::custody::STORED_ACTION,
                &format!("incident:{}", request.incident_id),
                details.clone(),
                |line| {
                    let bundle = EvidenceBundle {
                        audit_seq: line.seq,
                        ..bundle.clone()
                    };
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: request.incident_id.clone(),
                        at: now,
                        kind: "evidence_stored".into(),
                        actor: format!("device:{device_id}"),
                        device_id: device_id.to_owned(),
                        detail: details.clone(),
                    };
                    let db = db.clone();
                    async move { db.store_evidence(&bundle, &entry, &line).await }
                },
            )
            .await
            .map_err(|e| self.write_failed("record the evidence bundle", e, &request))?;
        let _ = tokio::fs::remove_file(&spool).await;
        self.forget_if_done(device_id).await;
        self.stored.notify_one();
        let mut stored = request;
        stored.state = EvidenceState::Stored;
        stored.sha256 = sha256;
        Ok(progress_of(&stored))
    }

    fn write_failed(
        &self,
        context: &str,
        e: AuditWriteError,
        request: &EvidenceRequest,
    ) -> EvidenceError {
        match e {
            AuditWriteError::Db(db) => match db.split() {
                Ok(DomainError::Conflict(detail)) => EvidenceError::Closed {
                    detail,
                    progress: progress_of(request),
                },
                Ok(other) => EvidenceError::Invalid(other.to_string()),
                Err(storage) => unavailable(context, storage),
            },
            other => unavailable(context, other),
        }
    }

    /// The bundle's own checks (format, identity, request, nonce, signature, quote); returns
    /// whether a quote was checked.
    async fn check_bundle(
        &self,
        request: &EvidenceRequest,
        certificate: &[u8],
        bytes: &[u8],
    ) -> Result<bool, String> {
        let ak = self
            .db
            .attestation_key(&request.device_id)
            .await
            .map_err(|e| format!("the device's attestation key could not be read: {e}"))?;
        rampart_incident::custody::check_upload(
            bytes,
            request.max_bytes,
            &rampart_incident::custody::Expected {
                device_id: &request.device_id,
                request_id: &request.id,
                incident: &request.incident_id,
                nonce: &request.nonce,
            },
            certificate,
            ak.as_ref().map(|k| k.ak_public.as_slice()),
        )
        .map_err(|e| e.to_string())
    }

    /// Refuses a request: timeline entry, audit record and security event in one transaction;
    /// its spooled bytes are discarded.
    async fn refuse(&self, request: &EvidenceRequest, reason: &str) -> Result<(), EvidenceError> {
        let now = unix_now();
        let details = json!({
            "incident": request.incident_id,
            "device": request.device_id,
            "request": request.id,
            "reason": reason,
        });
        let event = SecurityEvent {
            id: new_id("sev").map_err(|e| unavailable("refuse the evidence", e))?,
            kind: "evidence.refused".into(),
            device_id: request.device_id.clone(),
            detail: details.clone(),
            created: now,
        };
        let db = self.db.clone();
        let actor = format!("device:{}", request.device_id);
        self.audit
            .write(
                now,
                &actor,
                "incident.evidence_refused",
                &format!("incident:{}", request.incident_id),
                details.clone(),
                |line| {
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: request.incident_id.clone(),
                        at: now,
                        kind: "evidence_refused".into(),
                        actor: actor.clone(),
                        device_id: request.device_id.clone(),
                        detail: details.clone(),
                    };
                    let (db, event) = (db.clone(), event.clone());
                    let (id, reason) = (request.id.clone(), reason.to_owned());
                    async move {
                        db.refuse_evidence(&id, &reason, now, &entry, &line, Some(&event))
                            .await
                    }
                },
            )
            .await
            .map_err(|e| self.write_failed("refuse the evidence", e, request))?;
        crate::observe::log::warn(
            "evidence bundle refused",
            json!({"device": request.device_id, "request": request.id, "reason": reason}),
        );
        let _ = tokio::fs::remove_file(self.spool_file(&request.id)).await;
        self.forget_if_done(&request.device_id).await;
        Ok(())
    }

    async fn forget_if_done(&self, device_id: &str) {
        if let Ok(None) = self.db.open_evidence_request_of(device_id).await
            && let Some(open) = self.open_devices.lock().await.as_mut()
        {
            open.remove(device_id);
        }
    }

    // ---- anchoring ------------------------------------------------------------------------

    /// Appends stored bundles' entries to the transparency log and records their inclusion
    /// proofs once a witnessed checkpoint covers them; what fails is retried at a later tick.
    pub async fn anchor_pending(&self) {
        let Some(target) = self.config.log.clone() else {
            return;
        };
        let pending = match self.db.unanchored_evidence(100).await {
            Ok(pending) => pending,
            Err(e) => {
                crate::observe::log::error(
                    "reading evidence to anchor",
                    json!({"error": e.to_string()}),
                );
                return;
            }
        };
        for bundle in pending {
            let target = target.clone();
            let (entry, index) = (bundle.log_entry.clone(), bundle.log_index);
            let work = tokio::task::spawn_blocking(move || anchor_entry(&target, &entry, index));
            let result = match tokio::time::timeout(LOG_TIMEOUT * 2, work).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err((index, "the anchoring task failed".to_string())),
                Err(_) => Err((index, "no answer from the transparency log in time".into())),
            };
            let (index, proof, error) = match result {
                Ok((index, proof)) => (Some(index), Some(proof), None),
                Err((index, e)) => (index, None, Some(e)),
            };
            if let Some(index) = index
                && let Err(e) = self
                    .db
                    .set_evidence_anchor(&bundle.request_id, index, proof.as_deref())
                    .await
            {
                crate::observe::log::error(
                    "recording an evidence bundle's transparency-log anchor",
                    json!({"request": bundle.request_id, "error": e.to_string()}),
                );
            }
            if let Some(e) = error {
                crate::observe::log::warn(
                    "anchoring an evidence bundle in the transparency log (retried)",
                    json!({"request": bundle.request_id, "error": e}),
                );
                return;
            }
        }
    }
}

/// Appends `entry` (unless it already has `index`), waits for a witnessed checkpoint covering
/// it and returns its index and tlog-proof, checked against the log's policy.
fn anchor_entry(
    target: &AuditLogTarget,
    entry: &str,
    index: Option<u64>,
) -> Result<(u64, String), (Option<u64>, String)> {
    let client = rampart_tlog::client::LogClient::new(&target.url, target.policy.clone());
    let index = match index {
        Some(index) => index,
        None => client
            .add(entry.as_bytes())
            .map_err(|e| (None, e.to_string()))?,
    };
    let failed = |e: String| (Some(index), e);
    let (note, checkpoint) = client
        .wait_for(index, LOG_TIMEOUT)
        .map_err(|e| failed(e.to_string()))?;
    let proof = client
        .prove(index, note, &checkpoint, None)
        .map_err(|e| failed(e.to_string()))?;
    target
        .policy
        .verify_proof(&rampart_log::merkle::leaf_hash(entry.as_bytes()), &proof)
        .map_err(|e| failed(format!("the log's proof does not verify: {e}")))?;
    String::from_utf8(proof.to_bytes())
        .map(|text| (index, text))
        .map_err(|_| failed("the tlog-proof is not UTF-8".into()))
}

fn check_open(request: &EvidenceRequest) -> Result<(), EvidenceError> {
    match request.state {
        EvidenceState::Open => Ok(()),
        EvidenceState::Stored => Err(EvidenceError::Closed {
            detail: format!(
                "evidence request {} is complete: a request is used once",
                request.id
            ),
            progress: progress_of(request),
        }),
        EvidenceState::Refused => Err(EvidenceError::Closed {
            detail: format!(
                "evidence request {} was refused ({}): a request is used once; the server asks again if it needs to",
                request.id, request.reason
            ),
            progress: progress_of(request),
        }),
    }
}

/// 32 random bytes, hex.
fn random_nonce() -> Result<String, crate::helpers::NoRandomness> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| crate::helpers::NoRandomness)?;
    Ok(hex::encode(bytes))
}

// ---- the chain-of-custody export ----------------------------------------------------------

/// Largest sum of bundle sizes one export carries.
pub const MAX_EXPORT_BUNDLE_BYTES: u64 = 1 << 30;
/// Audit records read per query while exporting.
const EXPORT_PAGE: i64 = 10_000;

/// Why an incident cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("no incident {0:?}; list incidents with `rampart incident list`")]
    UnknownIncident(String),
    #[error(
        "this server signs no audit heads, so an export could not be verified: start it with --audit-key FILE"
    )]
    NoAuditKey,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
}

impl Evidence {
    /// The chain-of-custody export of an incident (see `rampart_incident::custody`): its
    /// bundles with what vouches for each, its timeline, and the audit records from its first
    /// entry up to a head signed now by `anchor`.
    pub async fn export(
        &self,
        incident_id: &str,
        anchor: Option<&crate::engines::audit_anchor::AuditAnchor>,
        now: i64,
    ) -> Result<rampart_incident::custody::Export, ExportError> {
        use base64::Engine as _;
        use rampart_incident::custody::{EXPORT_FORMAT, Export, ExportedEntry, ExportedEvidence};
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let storage = |context: &str, e: String| {
            crate::observe::log::error(context, json!({"incident": incident_id, "error": e}));
            ExportError::Unavailable(format!(
                "the server could not {context}; retry later (the server log says why)"
            ))
        };
        let anchor = anchor.ok_or(ExportError::NoAuditKey)?;
        if self
            .db
            .incident(incident_id)
            .await
            .map_err(|e| storage("read the incident", e.to_string()))?
            .is_none()
        {
            return Err(ExportError::UnknownIncident(incident_id.to_owned()));
        }
        let bundles = self
            .db
            .evidence_bundles_of_incident(incident_id, rampart_db::MAX_EVIDENCE_LIST)
            .await
            .map_err(|e| storage("read the incident's evidence", e.to_string()))?;
        let total: u64 = bundles.iter().map(|b| b.length).sum();
        if total > MAX_EXPORT_BUNDLE_BYTES {
            return Err(ExportError::TooLarge(format!(
                "the incident's bundles hold {total} bytes, over the {MAX_EXPORT_BUNDLE_BYTES} one export carries; download them one by one with GET /api/v1/evidence/{{id}}/bundle"
            )));
        }
        let mut evidence = Vec::with_capacity(bundles.len());
        for bundle in &bundles {
            let bytes = self
                .config
                .store
                .read(&bundle.sha256, bundle.length)
                .await
                .map_err(|e| storage("read an evidence bundle", e.to_string()))?
                .ok_or_else(|| {
                    storage(
                        "find an evidence bundle in the store",
                        format!("{} is missing", self.config.store.location(&bundle.sha256)),
                    )
                })?;
            let request = self
                .db
                .evidence_request(&bundle.request_id)
                .await
                .map_err(|e| storage("read an evidence request", e.to_string()))?
                .ok_or_else(|| storage("read an evidence request", "it vanished".into()))?;
            let ak = self
                .db
                .attestation_key(&bundle.device_id)
                .await
                .map_err(|e| storage("read an attestation key", e.to_string()))?;
            evidence.push(ExportedEvidence {
                request_id: bundle.request_id.clone(),
                device_id: bundle.device_id.clone(),
                nonce: request.nonce,
                sha256: bundle.sha256.clone(),
                length: bundle.length,
                stored_at: bundle.stored_at,
                audit_seq: bundle.audit_seq,
                bundle: b64(&bytes),
                certificate: b64(&bundle.certificate),
                attestation_key: ak
                    .filter(|k| k.enrolled_at <= bundle.stored_at)
                    .map(|k| b64(&k.ak_public)),
                log_entry: bundle.log_entry.clone(),
                log_proof: bundle.log_proof.clone(),
            });
        }
        let timeline = self
            .db
            .incident_timeline_entries(incident_id, 100_000)
            .await
            .map_err(|e| storage("read the incident's timeline", e.to_string()))?;
        let head = anchor
            .anchor()
            .await
            .map_err(|e| storage("sign an audit head", e.to_string()))?
            .ok_or_else(|| storage("sign an audit head", "the audit log is empty".into()))?;
        let first = timeline
            .iter()
            .map(|e| e.audit_seq)
            .chain(evidence.iter().map(|e| e.audit_seq))
            .min()
            .unwrap_or(head.head.size.saturating_sub(1));
        let mut audit_records = Vec::new();
        let mut from = first;
        while from < head.head.size {
            let lines = self
                .db
                .audit_lines(from, EXPORT_PAGE)
                .await
                .map_err(|e| storage("read the audit log", e.to_string()))?;
            let Some(last) = lines.last() else { break };
            from = last.seq + 1;
            audit_records.extend(
                lines
                    .into_iter()
                    .take_while(|l| l.seq < head.head.size)
                    .map(|l| l.line),
            );
            if audit_records.len() > rampart_incident::custody::MAX_EXPORT_RECORDS {
                return Err(ExportError::TooLarge(format!(
                    "the incident spans more than {} audit records",
                    rampart_incident::custody::MAX_EXPORT_RECORDS
                )));
            }
        }
        Ok(Export {
            format: EXPORT_FORMAT.into(),
            incident: incident_id.to_owned(),
            exported_at: now,
            evidence,
            timeline: timeline
                .into_iter()
                .map(|e| ExportedEntry {
                    audit_seq: e.audit_seq,
                    at: e.at,
                    kind: e.kind,
                    actor: e.actor,
                    device_id: e.device_id,
                    detail: e.detail,
                })
                .collect(),
            audit_records,
            audit_head: head.note,
        })
    }

    /// The stored bundle of a request and its bytes (`None`: no stored bundle).
    pub async fn bundle(
        &self,
        request_id: &str,
    ) -> Result<Option<(EvidenceBundle, Vec<u8>)>, ExportError> {
        let unavailable = |e: String| {
            crate::observe::log::error("reading an evidence bundle", json!({"error": e}));
            ExportError::Unavailable("the server could not read the evidence; retry later".into())
        };
        let Some(bundle) = self
            .db
            .evidence_bundle(request_id)
            .await
            .map_err(|e| unavailable(e.to_string()))?
        else {
            return Ok(None);
        };
        let bytes = self
            .config
            .store
            .read(&bundle.sha256, bundle.length)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| unavailable(format!("{} is missing", bundle.sha256)))?;
        Ok(Some((bundle, bytes)))
    }
}
