//! The quarantine executor (issue 16, decision 0031): the one executor of the incident-action
//! outbox's `quarantine` and `revoke_certificate` actions. It claims approved actions, and for
//! each writes the device's quarantine row FIRST (audited, with the incident's timeline entry),
//! then, for `revoke_certificate`, revokes the device in the inventory (the device API and DDI
//! refuse a revoked device), then finishes the action with its outcome and timeline entry.
//!
//! Failing closed: nothing here ever removes a quarantine (only an operator's release does,
//! `operator::quarantine`); an error after the row is written finishes the action `failed` and
//! leaves the device quarantined. An action whose quarantine could not be stored because the
//! database failed stays claimed and is retried at the next step.

use std::sync::Arc;
use std::time::Duration;

use rampart_db::{Db, DbError, IncidentAction, NewQuarantine, Quarantine, TimelineEntry};
use rampart_incident::model::Action;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::observe::audit::{AuditWriteError, AuditWriter};

/// Who the executor's changes are recorded as.
pub const ENGINE_ACTOR: &str = "engine:quarantine";
/// How often the executor looks for approved actions.
pub const STEP_INTERVAL: Duration = Duration::from_secs(1);
/// Actions claimed per kind and step.
const CLAIM_BATCH: i64 = 200;

/// The detail of a 403 `quarantined` answer, on every front door.
pub fn refusal(device_id: &str, q: &Quarantine) -> String {
    let by = if q.incident_id.is_empty() {
        format!("by {}", q.actor)
    } else {
        format!("by incident {}", q.incident_id)
    };
    format!(
        "device {device_id:?} is quarantined ({by}, since {}): it gets no updates and may use only the poll, quarantine acknowledgement, evidence and re-imaging routes until an operator releases it (`rampart device release {device_id}`)",
        q.since
    )
}

/// Runs the `quarantine` and `revoke_certificate` actions of the incident-action outbox.
pub struct QuarantineExecutor {
    db: Db,
    audit: AuditWriter,
    /// Claimed actions whose quarantine could not be stored (the database failed): retried.
    retry: Mutex<Vec<IncidentAction>>,
}

/// How one action went.
struct Outcome {
    succeeded: bool,
    detail: Value,
}

impl QuarantineExecutor {
    pub fn new(db: Db, audit: AuditWriter) -> Arc<Self> {
        Arc::new(Self {
            db,
            audit,
            retry: Mutex::new(Vec::new()),
        })
    }

    /// Steps every [`STEP_INTERVAL`] until `shutdown` turns true.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
        loop {
            if let Err(e) = self.step(crate::helpers::unix_now()).await {
                crate::observe::log::error(
                    "the quarantine executor's step failed; it retries",
                    json!({"error": e.to_string()}),
                );
            }
            heart.beat(crate::helpers::unix_now());
            tokio::select! {
                _ = tokio::time::sleep(STEP_INTERVAL) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// Runs the actions held for a retry, then claims and runs approved ones. Returns how
    /// many actions were finished.
    pub async fn step(&self, now: i64) -> Result<usize, DbError> {
        let mut actions = std::mem::take(&mut *self.retry.lock().await);
        for kind in [Action::Quarantine, Action::RevokeCertificate] {
            actions.extend(
                self.db
                    .claim_incident_actions(kind.as_str(), CLAIM_BATCH)
                    .await?,
            );
        }
        let mut finished = 0;
        for action in actions {
            match self.execute(&action, now).await {
                Some(outcome) => {
                    self.finish(&action, outcome, now).await;
                    finished += 1;
                }
                None => self.retry.lock().await.push(action),
            }
        }
        Ok(finished)
    }

    /// Quarantines first, then revokes when asked. `None`: the quarantine could not be
    /// stored for a reason worth a retry (storage).
    async fn execute(&self, action: &IncidentAction, now: i64) -> Option<Outcome> {
        let failed = |detail: String| {
            Some(Outcome {
                succeeded: false,
                detail: json!({"error": detail}),
            })
        };
        if action.device_id.is_empty() {
            return failed(format!(
                "a {} action names one device; this one names none",
                action.action
            ));
        }
        let device = action.device_id.as_str();
        let reason = action
            .detail
            .get("reason")
            .and_then(Value::as_str)
            .map(|r| r.chars().filter(|c| !c.is_control()).take(200).collect())
            .unwrap_or_else(|| format!("incident {} ({})", action.incident_id, action.action));
        let newly = match self
            .quarantine(device, &action.incident_id, &reason, now)
            .await
        {
            Ok(newly) => newly,
            Err(AuditWriteError::Db(DbError::Storage(e))) => {
                crate::observe::log::error(
                    "storing a quarantine failed; retried at the next step",
                    json!({"device": device, "action": action.id, "error": e.to_string()}),
                );
                return None;
            }
            Err(e) => return failed(format!("quarantining {device:?}: {e}")),
        };
        let mut detail = json!({"device": device, "newly_quarantined": newly});
        if action.action == Action::RevokeCertificate.as_str() {
            // The quarantine row is already written: a failed revocation leaves the device
            // quarantined (and the action failed).
            if let Err(e) = self.revoke(device, &action.incident_id, now).await {
                detail["error"] = json!(format!(
                    "the device is quarantined, but revoking its certificate failed: {e}"
                ));
                return Some(Outcome {
                    succeeded: false,
                    detail,
                });
            }
            detail["revoked"] = json!(true);
        }
        Some(Outcome {
            succeeded: true,
            detail,
        })
    }

    /// Writes the quarantine row (audited; the incident's timeline entry). True if this call
    /// quarantined the device.
    async fn quarantine(
        &self,
        device: &str,
        incident: &str,
        reason: &str,
        now: i64,
    ) -> Result<bool, AuditWriteError> {
        let new = NewQuarantine {
            device_id: device.to_owned(),
            incident_id: incident.to_owned(),
            actor: ENGINE_ACTOR.into(),
            reason: reason.to_owned(),
            since: now,
        };
        self.audit
            .write(
                now,
                ENGINE_ACTOR,
                "device.quarantined",
                device,
                json!({"incident": incident, "reason": reason}),
                |line| {
                    let (db, new) = (self.db.clone(), new.clone());
                    async move { db.quarantine_device(&new, &line).await }
                },
            )
            .await
            .map(|(_, newly)| newly)
    }

    async fn revoke(&self, device: &str, incident: &str, now: i64) -> Result<(), AuditWriteError> {
        self.audit
            .write(
                now,
                ENGINE_ACTOR,
                "device.revoked",
                device,
                json!({"reason": format!("incident {incident}")}),
                |line| {
                    let db = self.db.clone();
                    let device = device.to_owned();
                    async move { db.set_revoked_audited(&device, true, &line).await }
                },
            )
            .await
    }

    /// Finishes the action with its timeline entry; an error is logged (the action stays
    /// `running` and is requeued when the server restarts).
    async fn finish(&self, action: &IncidentAction, outcome: Outcome, now: i64) {
        // The outcome replaces `detail`, so the parameters are kept in it.
        let mut detail = action.detail.clone();
        if !detail.is_object() {
            detail = json!({});
        }
        detail["outcome"] = outcome.detail.clone();
        let kind = if outcome.succeeded {
            "action_done"
        } else {
            "action_failed"
        };
        let result = self
            .audit
            .write(
                now,
                ENGINE_ACTOR,
                &format!("incident.{kind}"),
                &action.incident_id,
                json!({"action": action.action, "id": action.id, "device": action.device_id, "outcome": outcome.detail}),
                |line| {
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: action.incident_id.clone(),
                        at: now,
                        kind: kind.into(),
                        actor: ENGINE_ACTOR.into(),
                        device_id: action.device_id.clone(),
                        detail: json!({"action": action.action, "id": action.id, "outcome": outcome.detail}),
                    };
                    let (db, detail) = (self.db.clone(), detail.clone());
                    async move {
                        db.finish_incident_action(&action.id, outcome.succeeded, &detail, &entry, &line)
                            .await
                    }
                },
            )
            .await;
        if let Err(e) = result {
            crate::observe::log::error(
                "finishing a quarantine action failed",
                json!({"action": action.id, "error": e.to_string()}),
            );
        }
    }
}
