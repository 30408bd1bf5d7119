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
    Db, DbError, DomainError, Incident, IncidentDevice, IncidentTarget, IncidentWrite,
    PlannedAction, TimelineEntry,
};
use rampart_incident::finding::Finding;
use rampart_incident::model::{Action, IncidentState, Severity};
use rampart_incident::playbook::{Plan, Playbooks};
use serde_json::{Value, json};

use crate::helpers::{NoRandomness, new_id, unix_now};
use crate::observe::audit::{AuditWriteError, AuditWriter};

/// Attempts to record one finding while other writers keep opening, joining or closing its
/// incident in between (each attempt re-reads what is stored).
const RECORD_ATTEMPTS: usize = 8;
/// Longest incident title, bytes.
pub const MAX_TITLE: usize = 256;

/// The current time in Unix seconds; tests give a virtual one.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The incident settings of a server (`rampart server --incident-config FILE`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentConfig {
    /// The playbooks in force until an operator stores others through the API.
    pub playbooks: Playbooks,
    /// The `[detectors]` table, read by the detectors' engine.
    pub detectors: toml::Table,
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
    /// The request conflicts with the stored state (e.g. moving an incident backwards).
    #[error("{0}")]
    Conflict(String),
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
}

fn is_race(e: &AuditWriteError) -> bool {
    matches!(
        e,
        AuditWriteError::Db(DbError::Domain(DomainError::Conflict(_)))
    )
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
        for _ in 0..RECORD_ATTEMPTS {
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
                        let incident = Incident {
                            id: id.clone(),
                            open_cause: Some(cause.clone()),
                            cause: cause.clone(),
                            detector: f.cause.detector.as_str().into(),
                            severity: f.severity.as_str().into(),
                            state: IncidentState::Detected.as_str().into(),
                            title: f.title.clone(),
                            detail: f.detail.clone(),
                            release: f.release.clone().unwrap_or_default(),
                            opened_by: actor.clone(),
                            first_signal_at: f.first_signal_at.min(now),
                            detected_at: now,
                            acknowledged_at: None,
                            acknowledged_by: None,
                            contained_at: None,
                            eradicated_at: None,
                            recovered_at: None,
                            closed_at: None,
                            updated_at: now,
                        };
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
                Ok(()) => return Ok(recorded),
                // Another writer opened, joined or closed it in between: read again.
                Err(e) if is_race(&e) => continue,
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
