//! The incident store's server side (issue 16, docs/decisions/0030): records what detectors
//! and operators find as incidents (one open incident per cause; devices join it), requests
//! the playbook's actions into the action outbox (each action kind's executor claims them),
//! and moves incidents forward. Every change is one transaction with its timeline entry and
//! audit record, so a restart resumes from the database alone.
//!
//! Concurrency: two findings of one cause at once make one incident. Within a server the
//! audit writer serializes writes; across servers sharing a PostgreSQL database, the loser's
//! insert meets `open_cause`'s unique key and writes nothing, and the finding is recorded
//! again as a join.

use std::sync::{Arc, RwLock};

use rampart_db::{
    Db, DbError, DomainError, Incident, IncidentAction, IncidentDevice, IncidentTarget,
    IncidentWrite, PlannedAction, StoredPlaybooks, TimelineEntry,
};
use rampart_incident::finding::Finding;
use rampart_incident::lifecycle::{Lifecycle, Timings};
use rampart_incident::model::{Action, IncidentState, Role, Severity};
use rampart_incident::playbook::{Plan, Playbooks};
use serde_json::{Value, json};

use crate::helpers::{NoRandomness, new_id, unix_now};
use crate::observe::audit::{AuditWriteError, AuditWriter};
use crate::observe::metrics::Metrics;

/// Attempts to record one finding while other writers keep opening, joining or closing its
/// incident in between (each attempt re-reads what is stored).
const RECORD_ATTEMPTS: usize = 8;
/// Longest incident title, bytes (what a detector's bounded finding fits in).
pub const MAX_TITLE: usize = rampart_incident::finding::MAX_FINDING_TEXT;

/// The current time in Unix seconds; tests give a virtual one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The incident settings of a server (`rampart server --incident-config FILE`).
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentConfig {
    /// The playbooks in force until an operator stores others through the API.
    pub playbooks: Playbooks,
    /// The `[detectors]` table, read by the detectors' engine.
    pub detectors: toml::Table,
    /// How often the engine moves incidents forward on its own (contained, eradicated,
    /// recovered).
    pub progress_interval: std::time::Duration,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            playbooks: Playbooks::default(),
            detectors: toml::Table::new(),
            progress_interval: DEFAULT_PROGRESS_INTERVAL,
        }
    }
}

impl IncidentConfig {
    /// Reads the incident configuration file's text (TOML with `[playbooks.DETECTOR.LEVEL]`
    /// and `[detectors]` tables); the error names the bad key.
    pub fn from_toml(text: &str) -> Result<IncidentConfig, String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            #[serde(default)]
            playbooks: Playbooks,
            #[serde(default)]
            detectors: toml::Table,
        }
        let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
        Ok(IncidentConfig {
            playbooks: file.playbooks,
            detectors: file.detectors,
            ..IncidentConfig::default()
        })
    }
}

/// Why an incident operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    /// The request is wrong (a bad value); the message says what to change.
    #[error("{0}")]
    Invalid(String),
    /// No such incident or action.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the stored state (an action no longer pending, an incident
    /// that kept changing).
    #[error("{0}")]
    Conflict(String),
    /// The caller's role may not do this (e.g. approve an action held for an admin).
    #[error("{0}")]
    Forbidden(String),
    /// Other writers kept changing the cause's incident while this one was recorded.
    #[error(
        "the incident of cause {0:?} kept changing while this finding was recorded; it will be recorded at the detector's next run"
    )]
    Contended(String),
    #[error(transparent)]
    Audit(#[from] AuditWriteError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("the system random number generator failed; incident ids cannot be made")]
    NoRandomness,
}

impl From<NoRandomness> for IncidentError {
    fn from(_: NoRandomness) -> Self {
        IncidentError::NoRandomness
    }
}

/// What recording a finding did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Recorded {
    pub incident_id: String,
    /// The finding opened a new incident.
    pub opened: bool,
    /// The finding's device joined the cause's open incident.
    pub joined: bool,
}

/// The incident store: the database, the audit writer, the playbooks in force and the clock.
pub struct IncidentStore {
    pub(crate) db: Db,
    pub(crate) audit: AuditWriter,
    playbooks: RwLock<Playbooks>,
    clock: Clock,
    metrics: Option<Arc<Metrics>>,
}

/// Another writer got there first: the incident was opened, joined, moved or closed in
/// between (`Conflict`), or another server kept taking the audit log's next sequence number
/// (a unique violation the audit writer stopped retrying). Either way, read again and retry.
fn is_race(e: &AuditWriteError) -> bool {
    match e {
        AuditWriteError::Db(DbError::Domain(DomainError::Conflict(_))) => true,
        AuditWriteError::Db(DbError::Storage(rampart_db::StorageError::Sql(
            sqlx::Error::Database(db),
        ))) => db.is_unique_violation(),
        _ => false,
    }
}

/// A short pause before retrying after a race, longer each attempt, so competing servers
/// do not keep colliding in step.
async fn back_off(attempt: usize) {
    tokio::time::sleep(std::time::Duration::from_millis(5 * (attempt as u64 + 1))).await;
}

impl IncidentStore {
    /// A store on the system clock.
    pub fn new(db: Db, audit: AuditWriter, playbooks: Playbooks) -> IncidentStore {
        IncidentStore::with_clock(db, audit, playbooks, Arc::new(unix_now))
    }

    /// A store on a given clock (tests run it on a virtual one).
    pub fn with_clock(
        db: Db,
        audit: AuditWriter,
        playbooks: Playbooks,
        clock: Clock,
    ) -> IncidentStore {
        IncidentStore {
            db,
            audit,
            playbooks: RwLock::new(playbooks),
            clock,
            metrics: None,
        }
    }

    /// Counts incidents and observes the response's timings in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> IncidentStore {
        self.metrics = Some(metrics);
        self
    }

    fn observe(&self, phase: &'static str, seconds: i64) {
        if let Some(m) = &self.metrics {
            m.incidents.observe(phase, seconds);
        }
    }

    /// The current time on the store's clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The playbooks in force.
    pub fn playbooks(&self) -> Playbooks {
        self.playbooks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn plan(&self, detector: rampart_incident::model::Detector, severity: Severity) -> Plan {
        self.playbooks
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .plan(detector, severity)
    }

    /// Records a detector's finding: opens the incident of its cause, or joins the open one
    /// (a device joins once; a finding without a device, or of a device already in, changes
    /// nothing). The incident, the device, the playbook's actions (run at once: `approved`;
    /// held for a role: `pending_approval`; the alert once per incident), the timeline entry
    /// and the audit record are written in one transaction.
    pub async fn record_finding(&self, f: &Finding) -> Result<Recorded, IncidentError> {
        check_finding(f)?;
        let cause = f.cause.dedupe_key();
        let actor = format!("detector:{}", f.cause.detector.as_str());
        for attempt in 0..RECORD_ATTEMPTS {
            let now = self.now();
            let devices: Vec<IncidentDevice> = f
                .device_id
                .iter()
                .map(|d| IncidentDevice {
                    device_id: d.clone(),
                    joined_at: now,
                    first_signal_at: f.first_signal_at,
                    reason: f.title.clone(),
                })
                .collect();
            let (target, severity, kind, recorded) =
                match self.db.open_incident_for_cause(&cause).await? {
                    None => {
                        let id = new_id("inc")?;
                        let incident = new_incident(&id, f, &actor, now);
                        let recorded = Recorded {
                            incident_id: id,
                            opened: true,
                            joined: false,
                        };
                        (
                            IncidentTarget::Open(Box::new(incident)),
                            f.severity,
                            "opened",
                            recorded,
                        )
                    }
                    Some(open) => {
                        let unchanged = Recorded {
                            incident_id: open.id.clone(),
                            opened: false,
                            joined: false,
                        };
                        let Some(device) = &f.device_id else {
                            return Ok(unchanged);
                        };
                        if self.db.incident_has_device(&open.id, device).await? {
                            return Ok(unchanged);
                        }
                        let severity = Severity::parse(&open.severity)
                            .map_or(f.severity, |s| s.max(f.severity));
                        let target = IncidentTarget::Join {
                            incident_id: open.id.clone(),
                            severity: severity.as_str().into(),
                        };
                        let recorded = Recorded {
                            incident_id: open.id,
                            opened: false,
                            joined: true,
                        };
                        (target, severity, "device_joined", recorded)
                    }
                };
            let plan = self.plan(f.cause.detector, severity);
            let write = IncidentWrite {
                target,
                actions: planned_actions(&plan, &devices)?,
                devices,
                at: now,
            };
            let detail = json!({
                "cause": cause,
                "severity": severity.as_str(),
                "title": f.title,
                "release": f.release,
                "first_signal_at": f.first_signal_at,
                "finding": f.detail,
            });
            let result = self
                .write_with_timeline(
                    &recorded.incident_id,
                    now,
                    &actor,
                    kind,
                    f.device_id.as_deref().unwrap_or(""),
                    detail,
                    |db, entry, line| {
                        let write = write.clone();
                        async move { db.write_incident(&write, &entry, &line).await }
                    },
                )
                .await;
            match result {
                Ok(()) => {
                    if recorded.opened {
                        self.observe("detect", now - f.first_signal_at.min(now));
                    }
                    return Ok(recorded);
                }
                // Another writer opened, joined or closed it in between: read again.
                Err(e) if is_race(&e) => back_off(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IncidentError::Contended(cause))
    }

    /// Runs `change` with a timeline entry of `kind` and its audit record
    /// (`incident.KIND` on `incident:ID`), both made here so every incident change is recorded
    /// alike.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn write_with_timeline<T, F, Fut>(
        &self,
        incident_id: &str,
        at: i64,
        actor: &str,
        kind: &str,
        device_id: &str,
        detail: Value,
        change: F,
    ) -> Result<T, AuditWriteError>
    where
        F: Fn(Db, TimelineEntry, rampart_db::AuditLine) -> Fut,
        Fut: std::future::Future<Output = Result<T, DbError>>,
    {
        let mut audit_detail = detail.clone();
        if let Some(map) = audit_detail.as_object_mut()
            && !device_id.is_empty()
        {
            map.insert("device_id".into(), device_id.into());
        }
        self.audit
            .write(
                at,
                actor,
                &format!("incident.{kind}"),
                &format!("incident:{incident_id}"),
                audit_detail,
                |line| {
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: incident_id.to_string(),
                        at,
                        kind: kind.to_string(),
                        actor: actor.to_string(),
                        device_id: device_id.to_string(),
                        detail: detail.clone(),
                    };
                    change(self.db.clone(), entry, line)
                },
            )
            .await
    }
}

/// An incident with everything the operator's view shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentView {
    #[serde(flatten)]
    pub incident: Incident,
    pub timings: Timings,
    pub devices: Vec<IncidentDevice>,
    pub timeline: Vec<TimelineEntry>,
    pub actions: Vec<IncidentAction>,
}

/// An incident an operator opens.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorIncident {
    pub severity: Severity,
    pub title: String,
    #[serde(default)]
    pub devices: Vec<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default = "empty_object")]
    pub detail: Value,
}

fn empty_object() -> Value {
    json!({})
}

/// Most devices an operator names when opening an incident.
pub const MAX_OPERATOR_DEVICES: usize = 1_000;
/// Attempts of a move or acknowledgement while others move the same incident.
const MOVE_ATTEMPTS: usize = 4;

/// An incident's lifecycle as the pure core sees it.
pub fn lifecycle_of(i: &Incident) -> Lifecycle {
    Lifecycle {
        // An unreadable stored state is treated as still detected: it can only move forward
        // from there, never be skipped.
        state: IncidentState::parse(&i.state).unwrap_or(IncidentState::Detected),
        first_signal_at: i.first_signal_at,
        detected_at: i.detected_at,
        acknowledged_at: i.acknowledged_at,
        contained_at: i.contained_at,
        eradicated_at: i.eradicated_at,
        recovered_at: i.recovered_at,
        closed_at: i.closed_at,
    }
}

fn with_lifecycle(i: &Incident, l: &Lifecycle, at: i64) -> Incident {
    Incident {
        state: l.state.as_str().into(),
        acknowledged_at: l.acknowledged_at,
        contained_at: l.contained_at,
        eradicated_at: l.eradicated_at,
        recovered_at: l.recovered_at,
        closed_at: l.closed_at,
        updated_at: at,
        ..i.clone()
    }
}

impl IncidentStore {
    fn not_found(id: &str) -> IncidentError {
        IncidentError::NotFound(format!(
            "no incident {id:?}; list incidents with `rampart incident list`"
        ))
    }

    /// One incident, or `NotFound`.
    pub async fn incident(&self, id: &str) -> Result<Incident, IncidentError> {
        self.db
            .incident(id)
            .await?
            .ok_or_else(|| Self::not_found(id))
    }

    /// An incident with its devices, timeline, actions and timings.
    pub async fn view(&self, id: &str) -> Result<IncidentView, IncidentError> {
        let incident = self.incident(id).await?;
        Ok(IncidentView {
            timings: lifecycle_of(&incident).timings(),
            devices: self.db.incident_devices(id).await?,
            timeline: self.db.incident_timeline(id).await?,
            actions: self.db.incident_actions(id).await?,
            incident,
        })
    }

    /// Opens an incident for an operator: its own cause (`operator:ID`), the named devices,
    /// and the operator playbook's actions.
    pub async fn open_by_operator(
        &self,
        actor: &str,
        request: &OperatorIncident,
    ) -> Result<String, IncidentError> {
        if request.devices.len() > MAX_OPERATOR_DEVICES {
            return Err(IncidentError::Invalid(format!(
                "an incident is opened with at most {MAX_OPERATOR_DEVICES} devices; more join it through its detectors"
            )));
        }
        let mut devices = request.devices.clone();
        devices.sort();
        devices.dedup();
        let id = new_id("inc")?;
        let now = self.now();
        let probe = Finding {
            cause: rampart_incident::model::Cause {
                detector: rampart_incident::model::Detector::Operator,
                key: id.clone(),
            },
            severity: request.severity,
            title: request.title.clone(),
            device_id: None,
            release: request.release.clone(),
            first_signal_at: now,
            detail: request.detail.clone(),
        };
        check_finding(&probe)?;
        for d in &devices {
            check_text_field("device id", d)?;
        }
        let listed: Vec<IncidentDevice> = devices
            .iter()
            .map(|d| IncidentDevice {
                device_id: d.clone(),
                joined_at: now,
                first_signal_at: now,
                reason: format!("named by {actor}"),
            })
            .collect();
        let incident = new_incident(&id, &probe, actor, now);
        let plan = self.plan(probe.cause.detector, request.severity);
        let write = IncidentWrite {
            target: IncidentTarget::Open(Box::new(incident)),
            actions: planned_actions(&plan, &listed)?,
            devices: listed,
            at: now,
        };
        let detail = json!({
            "severity": request.severity.as_str(),
            "title": request.title,
            "devices": devices.len(),
            "release": request.release,
        });
        self.write_with_timeline(&id, now, actor, "opened", "", detail, |db, entry, line| {
            let write = write.clone();
            async move { db.write_incident(&write, &entry, &line).await }
        })
        .await?;
        Ok(id)
    }

    /// Moves an incident forward to `to` (skipping states is allowed, going back is not).
    pub async fn move_to(
        &self,
        id: &str,
        to: IncidentState,
        actor: &str,
        note: &str,
    ) -> Result<Incident, IncidentError> {
        check_text_field("note", note)?;
        let (incident, _) = self
            .change(id, actor, |l, now| {
                l.move_to(to, now)
                    .map_err(|e| IncidentError::Invalid(e.to_string()))?;
                Ok(Some((
                    "state_changed",
                    json!({"state": to.as_str(), "note": note}),
                )))
            })
            .await?;
        Ok(incident)
    }

    /// Acknowledges an incident (the first acknowledgement is kept; later ones change
    /// nothing). `Ok(false)`: it was already acknowledged.
    pub async fn acknowledge(&self, id: &str, actor: &str) -> Result<bool, IncidentError> {
        let (_, acknowledged) = self
            .change(id, actor, |l, now| {
                Ok(l.acknowledge(now)
                    .map_err(|e| IncidentError::Invalid(e.to_string()))?
                    .then(|| ("acknowledged", json!({}))))
            })
            .await?;
        Ok(acknowledged)
    }

    /// Reads the incident, applies `step` to its lifecycle and writes the result with a
    /// timeline entry (when `step` says what happened), retrying when another writer moved it
    /// in between. Returns the incident as stored after, and whether this call changed it.
    async fn change<F>(
        &self,
        id: &str,
        actor: &str,
        step: F,
    ) -> Result<(Incident, bool), IncidentError>
    where
        F: Fn(&mut Lifecycle, i64) -> Result<Option<(&'static str, Value)>, IncidentError>,
    {
        for attempt in 0..MOVE_ATTEMPTS {
            let current = self.incident(id).await?;
            let now = self.now();
            let mut lifecycle = lifecycle_of(&current);
            let Some((kind, detail)) = step(&mut lifecycle, now)? else {
                return Ok((current, false));
            };
            let mut updated = with_lifecycle(&current, &lifecycle, now);
            if kind == "acknowledged" {
                updated.acknowledged_by = Some(actor.into());
            }
            let expected = current.state.clone();
            let result = self
                .write_with_timeline(id, now, actor, kind, "", detail, |db, entry, line| {
                    let (updated, expected) = (updated.clone(), expected.clone());
                    async move { db.update_incident(&updated, &expected, &entry, &line).await }
                })
                .await;
            match result {
                Ok(()) => {
                    let after = self.incident(id).await?;
                    if current.contained_at.is_none() && after.contained_at.is_some() {
                        self.observe("contain", lifecycle.timings().to_contain.unwrap_or(0));
                    }
                    if current.recovered_at.is_none() && after.recovered_at.is_some() {
                        self.observe("recover", lifecycle.timings().to_recover.unwrap_or(0));
                    }
                    return Ok((after, true));
                }
                Err(e) if is_race(&e) => back_off(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(IncidentError::Conflict(format!(
            "incident {id} keeps changing; read it again and retry"
        )))
    }

    /// Requests `action` for every device of an incident (an operator's contain, re-image or
    /// collect): approved at once, since an operator asked. A device that already has one
    /// pending, approved or running gets no second. Returns the ids requested.
    pub async fn request(
        &self,
        id: &str,
        action: Action,
        actor: &str,
        detail: Value,
    ) -> Result<Vec<String>, IncidentError> {
        let incident = self.incident(id).await?;
        if incident.state == IncidentState::Closed.as_str() {
            return Err(IncidentError::Invalid(format!(
                "incident {id} is closed; open a new one to act on its devices"
            )));
        }
        let devices = self.db.incident_devices(id).await?;
        if devices.is_empty() && action != Action::Alert {
            return Err(IncidentError::Invalid(format!(
                "incident {id} has no devices to {}",
                action.as_str()
            )));
        }
        let plan = Plan {
            now: vec![action],
            approve: vec![],
        };
        let mut actions = planned_actions(&plan, &devices)?;
        for a in &mut actions {
            a.detail = detail.clone();
        }
        let now = self.now();
        let timeline_detail =
            json!({"action": action.as_str(), "devices": devices.len(), "parameters": detail});
        let requested = self
            .write_with_timeline(
                id,
                now,
                actor,
                "actions_requested",
                "",
                timeline_detail,
                |db, entry, line| {
                    let actions = actions.clone();
                    let id = id.to_string();
                    async move {
                        db.request_incident_actions(&id, &actions, now, &entry, &line)
                            .await
                    }
                },
            )
            .await?;
        Ok(requested)
    }

    /// Approves or rejects an action held for approval. `role` is the caller's role in the
    /// playbook's terms (`None`: a role that approves nothing); the held action's required
    /// role decides ([`Role::may_approve`]).
    pub async fn decide(
        &self,
        action_id: &str,
        approve: bool,
        actor: &str,
        role: Option<Role>,
    ) -> Result<IncidentAction, IncidentError> {
        let action = self.db.incident_action(action_id).await?.ok_or_else(|| {
            IncidentError::NotFound(format!(
                "no incident action {action_id:?}; see the incident's actions with `rampart incident show ID`"
            ))
        })?;
        if action.state != "pending_approval" {
            return Err(IncidentError::Conflict(format!(
                "incident action {action_id} is {}, not pending approval",
                action.state
            )));
        }
        let required = Role::parse(&action.required_role).unwrap_or(Role::Admin);
        if !role.is_some_and(|r| r.may_approve(required)) {
            return Err(IncidentError::Forbidden(format!(
                "this {} action is held for approval by {} token (or an admin)",
                action.action,
                if required == Role::Admin {
                    "an admin"
                } else {
                    "an operator"
                }
            )));
        }
        let now = self.now();
        let kind = if approve {
            "action_approved"
        } else {
            "action_rejected"
        };
        let detail = json!({"action_id": action.id, "action": action.action});
        self.write_with_timeline(
            &action.incident_id,
            now,
            actor,
            kind,
            &action.device_id,
            detail,
            |db, entry, line| async move {
                db.decide_incident_action(action_id, approve, actor, now, &entry, &line)
                    .await
            },
        )
        .await?;
        self.db
            .incident_action(action_id)
            .await?
            .ok_or_else(|| IncidentError::NotFound(format!("no incident action {action_id:?}")))
    }

    /// Stores new playbooks (audited) and puts them in force.
    pub async fn set_playbooks(
        &self,
        playbooks: Playbooks,
        actor: &str,
    ) -> Result<(), IncidentError> {
        let body = serde_json::to_value(&playbooks)
            .map_err(|e| IncidentError::Invalid(format!("playbooks: {e}")))?;
        let now = self.now();
        let stored = StoredPlaybooks {
            body: body.clone(),
            updated_at: now,
            updated_by: actor.into(),
        };
        self.audit
            .write(
                now,
                actor,
                "incident.playbooks_set",
                "playbooks",
                json!({"playbooks": body}),
                |line| {
                    let (db, stored) = (self.db.clone(), stored.clone());
                    async move { db.store_playbooks(&stored, &line).await }
                },
            )
            .await?;
        *self
            .playbooks
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = playbooks;
        Ok(())
    }

    /// At start, before any executor runs: puts actions a stopped server left running back
    /// to approved, and puts the stored playbooks (if an operator stored some) in force.
    /// Returns the actions requeued.
    pub async fn resume(&self) -> Result<u64, IncidentError> {
        let requeued = self.db.requeue_running_actions().await?;
        if let Some(stored) = self.db.stored_playbooks().await? {
            let playbooks: Playbooks = serde_json::from_value(stored.body).map_err(|e| {
                IncidentError::Invalid(format!(
                    "the playbooks stored by {} no longer load ({e}); store valid ones with `rampart incident playbooks --set FILE`",
                    stored.updated_by
                ))
            })?;
            *self
                .playbooks
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = playbooks;
        }
        Ok(requeued)
    }

    /// One pass of automatic progress: an incident whose devices are all quarantined is
    /// contained; all re-imaged (a `reimage` action done), eradicated; all re-imaged and
    /// released, recovered. Returns the moves made.
    pub async fn progress_once(&self) -> Result<usize, IncidentError> {
        if let Some(m) = &self.metrics {
            m.incidents.set_counts(&self.db.incident_counts().await?);
        }
        let mut moves = 0;
        for p in self.db.incident_progress(PROGRESS_BATCH).await? {
            let incident = match self.db.incident(&p.incident_id).await? {
                Some(i) => i,
                None => continue,
            };
            let state = lifecycle_of(&incident).state;
            let target = if p.reimaged_and_released == p.devices {
                IncidentState::Recovered
            } else if p.reimaged == p.devices {
                IncidentState::Eradicated
            } else if p.quarantined == p.devices {
                IncidentState::Contained
            } else {
                continue;
            };
            if !state.may_move_to(target) {
                continue;
            }
            let detail = json!({
                "devices": p.devices,
                "quarantined": p.quarantined,
                "reimaged": p.reimaged,
                "released": p.reimaged_and_released,
            });
            let result = self
                .change(&p.incident_id, ENGINE_ACTOR, |l, now| {
                    if !l.state.may_move_to(target) {
                        return Ok(None);
                    }
                    l.move_to(target, now)
                        .map_err(|e| IncidentError::Invalid(e.to_string()))?;
                    let mut detail = detail.clone();
                    detail["state"] = target.as_str().into();
                    Ok(Some(("state_changed", detail)))
                })
                .await;
            match result {
                Ok((_, moved)) => moves += usize::from(moved),
                // Closed or moved by an operator meanwhile: the next pass sees it.
                Err(IncidentError::Invalid(_) | IncidentError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(moves)
    }

    /// The engine: automatic progress every `interval` until `stop`.
    pub(crate) async fn run(
        self: Arc<Self>,
        interval: std::time::Duration,
        stop: tokio::sync::watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
        let stopped = crate::helpers::stopped(stop);
        tokio::pin!(stopped);
        loop {
            if let Err(e) = self.progress_once().await {
                crate::observe::log::error(
                    "incident progress failed; retrying at the next pass",
                    json!({"error": e.to_string()}),
                );
            }
            heart.beat(crate::helpers::unix_now());
            tokio::select! {
                () = &mut stopped => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}

/// Who the engine's automatic moves are by.
pub const ENGINE_ACTOR: &str = "engine:incidents";
/// Incidents the engine looks at per pass (oldest first; the rest at the next pass).
const PROGRESS_BATCH: i64 = 500;
/// Default interval of the automatic progress.
pub const DEFAULT_PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

fn check_text_field(what: &str, v: &str) -> Result<(), IncidentError> {
    if v.len() > MAX_TITLE || v.chars().any(char::is_control) {
        return Err(IncidentError::Invalid(format!(
            "{what} must be at most {MAX_TITLE} bytes without control characters"
        )));
    }
    Ok(())
}

/// The actions of `plan` for `devices`: each device action once per device, incident-wide
/// actions (the alert) once, with no device.
fn planned_actions(
    plan: &Plan,
    devices: &[IncidentDevice],
) -> Result<Vec<PlannedAction>, NoRandomness> {
    let mut actions = Vec::new();
    for (action, role) in plan.actions() {
        let role = role.map(|r| r.as_str().to_string()).unwrap_or_default();
        let targets: Vec<&str> = if action == Action::Alert {
            vec![""]
        } else {
            devices.iter().map(|d| d.device_id.as_str()).collect()
        };
        for device_id in targets {
            actions.push(PlannedAction {
                id: new_id("act")?,
                action: action.as_str().into(),
                device_id: device_id.into(),
                required_role: role.clone(),
                detail: json!({"requested_by": "playbook"}),
            });
        }
    }
    Ok(actions)
}

/// A new incident (detected at `now`) of a finding's cause.
fn new_incident(id: &str, f: &Finding, opened_by: &str, now: i64) -> Incident {
    let cause = f.cause.dedupe_key();
    Incident {
        id: id.into(),
        open_cause: Some(cause.clone()),
        cause,
        detector: f.cause.detector.as_str().into(),
        severity: f.severity.as_str().into(),
        state: IncidentState::Detected.as_str().into(),
        title: f.title.clone(),
        detail: f.detail.clone(),
        release: f.release.clone().unwrap_or_default(),
        opened_by: opened_by.into(),
        first_signal_at: f.first_signal_at.min(now),
        detected_at: now,
        acknowledged_at: None,
        acknowledged_by: None,
        contained_at: None,
        eradicated_at: None,
        recovered_at: None,
        closed_at: None,
        updated_at: now,
    }
}

/// Bounds a finding before anything is stored.
fn check_finding(f: &Finding) -> Result<(), IncidentError> {
    let text = |what: &str, v: &str, allow_empty: bool| {
        if (!allow_empty && v.is_empty()) || v.len() > MAX_TITLE || v.chars().any(char::is_control)
        {
            Err(IncidentError::Invalid(format!(
                "a finding's {what} must be 1 to {MAX_TITLE} bytes without control characters"
            )))
        } else {
            Ok(())
        }
    };
    text("title", &f.title, false)?;
    text("cause key", &f.cause.key, true)?;
    if let Some(d) = &f.device_id {
        text("device id", d, false)?;
    }
    if let Some(r) = &f.release {
        text("release", r, false)?;
    }
    if !f.detail.is_object() {
        return Err(IncidentError::Invalid(
            "a finding's detail must be a JSON object".into(),
        ));
    }
    Ok(())
}
