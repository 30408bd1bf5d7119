//! Incidents (issue 16): records opened by a detector or an operator, the devices in them, their
//! timelines (each entry also an audit record, in the same transaction), playbook actions and
//! engine heartbeats. Schema: `migrations/0011_incidents.sql`.
//!
//! Other concerns (quarantine, evidence, re-imaging, alerts) add their timeline entries through
//! [`insert_timeline`] inside their own transactions, so a change and its timeline entry and
//! audit record are written together or not at all.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Transaction};

use crate::audit::{AuditLine, insert_audit};
use crate::error::{DbError, DomainError};
use crate::sql::{check_text, json_text};

/// One entry of an incident's timeline, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEntry {
    /// The sequence number of the entry's audit record (orders the timeline).
    pub audit_seq: u64,
    pub incident_id: String,
    /// Unix seconds.
    pub at: i64,
    /// What happened: `opened`, `device_joined`, `state_changed`, `quarantined`,
    /// `evidence_stored`, `alert_sent`, ... (bounded text).
    pub kind: String,
    /// Who: `detector:NAME`, `engine:NAME`, `token:NAME` or `device:ID`.
    pub actor: String,
    /// The device concerned, empty when none (then left out of the JSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_id: String,
    /// Details (a JSON object, at most 16 KiB).
    pub detail: serde_json::Value,
}

/// Writes a timeline entry and its audit record in the caller's transaction. The entry's
/// `audit_seq` must be the audit line's sequence number.
pub(crate) async fn insert_timeline(
    tx: &mut Transaction<'_, Any>,
    entry: &TimelineEntry,
    audit: &AuditLine,
) -> Result<(), DbError> {
    if entry.audit_seq != audit.seq {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "timeline entry names audit record {} but its audit record is {}",
            entry.audit_seq, audit.seq
        ))));
    }
    check_text("incident id", &entry.incident_id)?;
    check_text("timeline kind", &entry.kind)?;
    check_text("timeline actor", &entry.actor)?;
    check_text("device id", &entry.device_id)?;
    let detail = json_text("timeline detail", &entry.detail)?;
    insert_audit(tx, audit).await?;
    let seq = i64::try_from(entry.audit_seq)
        .map_err(|_| DbError::Domain(DomainError::Invalid("audit seq".into())))?;
    let r = sqlx::query(
        "INSERT INTO incident_timeline (audit_seq, incident_id, at, kind, actor, device_id, detail)
         SELECT $1, id, $3, $4, $5, $6, $7 FROM incidents WHERE id = $2",
    )
    .bind(seq)
    .bind(&entry.incident_id)
    .bind(entry.at)
    .bind(&entry.kind)
    .bind(&entry.actor)
    .bind(&entry.device_id)
    .bind(detail)
    .execute(&mut **tx)
    .await?;
    if r.rows_affected() != 1 {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "no incident {:?}; list incidents with `rampart incident list`",
            entry.incident_id
        ))));
    }
    Ok(())
}

impl crate::Db {
    /// Appends one timeline entry to an incident with its audit record, in one transaction.
    pub async fn append_incident_timeline(
        &self,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// A playbook action as stored: what to do, to which device, and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentAction {
    pub id: String,
    pub incident_id: String,
    /// `rampart_incident::model::Action`'s wire name (`quarantine`, `reimage`, ...).
    pub action: String,
    /// Empty for incident-wide actions (an alert); left out of the JSON then.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_id: String,
    /// `pending_approval`, `approved`, `running`, `done`, `failed` or `rejected`.
    pub state: String,
    /// The role that must approve it (empty: ran at once; left out of the JSON then).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub required_role: String,
    pub requested_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    /// Parameters (e.g. `{"release": "fw-1.2.0.img"}` for a re-image) and, once finished, the
    /// outcome.
    pub detail: serde_json::Value,
}

fn action_from_row(r: &sqlx::any::AnyRow) -> Result<IncidentAction, DbError> {
    use sqlx::Row;
    let detail: String = r.try_get("detail")?;
    Ok(IncidentAction {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        action: r.try_get("action")?,
        device_id: r.try_get("device_id")?,
        state: r.try_get("state")?,
        required_role: r.try_get("required_role")?,
        requested_at: r.try_get("requested_at")?,
        decided_at: r.try_get("decided_at")?,
        decided_by: r.try_get("decided_by")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}

/// Most actions one claim returns.
pub const MAX_ACTION_CLAIM: i64 = 500;

impl crate::Db {
    /// Claims up to `limit` approved actions of one kind for its executor: they move to
    /// `running` in one transaction, so two executors never run the same one. An executor that
    /// dies leaves them `running`; [`Db::requeue_running_actions`] at start puts them back.
    pub async fn claim_incident_actions(
        &self,
        action: &str,
        limit: i64,
    ) -> Result<Vec<IncidentAction>, DbError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, incident_id, action, device_id, state, required_role, requested_at, decided_at, decided_by, detail
             FROM incident_actions WHERE action = $1 AND state = 'approved' ORDER BY requested_at, id LIMIT $2",
        )
        .bind(action)
        .bind(limit.clamp(1, MAX_ACTION_CLAIM))
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut a = action_from_row(r)?;
            sqlx::query("UPDATE incident_actions SET state = 'running' WHERE id = $1")
                .bind(&a.id)
                .execute(&mut *tx)
                .await?;
            a.state = "running".into();
            claimed.push(a);
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Actions of one kind an executor claimed and has not finished yet (a re-image runs until
    /// its device reports), oldest first, at most `limit`.
    pub async fn running_incident_actions(
        &self,
        action: &str,
        limit: i64,
    ) -> Result<Vec<IncidentAction>, DbError> {
        let rows = sqlx::query(
            "SELECT id, incident_id, action, device_id, state, required_role, requested_at, decided_at, decided_by, detail
             FROM incident_actions WHERE action = $1 AND state = 'running' ORDER BY requested_at, id LIMIT $2",
        )
        .bind(action)
        .bind(limit.clamp(1, MAX_ACTION_CLAIM))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// Puts actions an executor claimed but never finished (the server stopped) back to
    /// `approved`, so a restarted server resumes them.
    pub async fn requeue_running_actions(&self) -> Result<u64, DbError> {
        let r =
            sqlx::query("UPDATE incident_actions SET state = 'approved' WHERE state = 'running'")
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected())
    }

    /// Finishes a running action (`done` or `failed`; `detail` becomes `outcome`, so keep the
    /// parameters in it)
    /// together with its timeline entry and audit record, in one transaction.
    pub async fn finish_incident_action(
        &self,
        id: &str,
        succeeded: bool,
        outcome: &serde_json::Value,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let outcome = json_text("action outcome", outcome)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE incident_actions SET state = $2, detail = $3 WHERE id = $1 AND state = 'running'",
        )
        .bind(id)
        .bind(if succeeded { "done" } else { "failed" })
        .bind(outcome)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(DbError::Domain(DomainError::Conflict(format!(
                "incident action {id} is not running"
            ))));
        }
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Incident records: open or join, read, move forward, act.

/// Most incidents one list page returns.
pub const MAX_INCIDENT_PAGE: i64 = 500;
/// Most timeline entries one read returns (the newest are kept when there are more).
pub const MAX_TIMELINE_READ: i64 = 1_000;
/// Most devices one incident read returns.
pub const MAX_INCIDENT_DEVICES_READ: i64 = 10_000;

/// An incident as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// The dedupe key while the incident is open (`None` once closed).
    pub open_cause: Option<String>,
    /// The dedupe key, `detector:key`.
    pub cause: String,
    pub detector: String,
    pub severity: String,
    pub state: String,
    pub title: String,
    pub detail: serde_json::Value,
    /// The release involved, empty when none (then left out of the JSON).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub release: String,
    /// `detector:NAME` or `token:NAME`.
    pub opened_by: String,
    pub first_signal_at: i64,
    pub detected_at: i64,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    pub contained_at: Option<i64>,
    pub eradicated_at: Option<i64>,
    pub recovered_at: Option<i64>,
    pub closed_at: Option<i64>,
    pub updated_at: i64,
}

pub(crate) const INCIDENT_COLUMNS: &str = "i.id, i.open_cause, i.cause, i.detector, i.severity, i.state, i.title, i.detail, i.release, i.opened_by, i.first_signal_at, i.detected_at, i.acknowledged_at, i.acknowledged_by, i.contained_at, i.eradicated_at, i.recovered_at, i.closed_at, i.updated_at";

pub(crate) fn incident_from_row(r: &sqlx::any::AnyRow) -> Result<Incident, DbError> {
    use sqlx::Row;
    let detail: String = r.try_get("detail")?;
    Ok(Incident {
        id: r.try_get("id")?,
        open_cause: r.try_get("open_cause")?,
        cause: r.try_get("cause")?,
        detector: r.try_get("detector")?,
        severity: r.try_get("severity")?,
        state: r.try_get("state")?,
        title: r.try_get("title")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
        release: r.try_get("release")?,
        opened_by: r.try_get("opened_by")?,
        first_signal_at: r.try_get("first_signal_at")?,
        detected_at: r.try_get("detected_at")?,
        acknowledged_at: r.try_get("acknowledged_at")?,
        acknowledged_by: r.try_get("acknowledged_by")?,
        contained_at: r.try_get("contained_at")?,
        eradicated_at: r.try_get("eradicated_at")?,
        recovered_at: r.try_get("recovered_at")?,
        closed_at: r.try_get("closed_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A device in an incident.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncidentDevice {
    pub device_id: String,
    pub joined_at: i64,
    /// When the earliest evidence about this device happened.
    pub first_signal_at: i64,
    /// Why it is in the incident (bounded text).
    pub reason: String,
}

/// An action to request: the server makes its id and picks its state from the playbook.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedAction {
    pub id: String,
    pub action: String,
    /// Empty for incident-wide actions.
    pub device_id: String,
    /// Empty: approved at once; else the role that must approve it (`pending_approval`).
    pub required_role: String,
    pub detail: serde_json::Value,
}

/// What recording a finding writes: a new incident or a join of the open one, the devices it
/// brings, and the playbook's actions. Every part is written in one transaction with one
/// timeline entry and its audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentWrite {
    pub target: IncidentTarget,
    pub devices: Vec<IncidentDevice>,
    /// Inserted unless the incident already has one of the same action for the same device
    /// (so an incident's alert is requested once, however many devices join).
    pub actions: Vec<PlannedAction>,
    pub at: i64,
}

/// Open a new incident, or join an open one (raising its severity to at least `severity`).
#[derive(Debug, Clone, PartialEq)]
pub enum IncidentTarget {
    Open(Box<Incident>),
    Join {
        incident_id: String,
        severity: String,
    },
}

/// The severities in order, as SQL ranks them.
const SEVERITY_RANK: &str =
    "CASE severity WHEN 'low' THEN 0 WHEN 'medium' THEN 1 WHEN 'high' THEN 2 ELSE 3 END";

fn severity_rank(s: &str) -> i64 {
    match s {
        "low" => 0,
        "medium" => 1,
        "high" => 2,
        _ => 3,
    }
}

fn conflict(msg: impl Into<String>) -> DbError {
    DbError::Domain(DomainError::Conflict(msg.into()))
}

fn unknown_incident(id: &str) -> DbError {
    DbError::Domain(DomainError::Invalid(format!(
        "no incident {id:?}; list incidents with `rampart incident list`"
    )))
}

/// Inserts actions; with `once`, skips one whose (action, device) the incident already has in
/// any state, else only one still pending, approved or running. Returns the ids inserted.
async fn insert_actions(
    tx: &mut Transaction<'_, Any>,
    incident_id: &str,
    actions: &[PlannedAction],
    at: i64,
    once: bool,
) -> Result<Vec<String>, DbError> {
    let existing = if once {
        ""
    } else {
        " AND state IN ('pending_approval', 'approved', 'running')"
    };
    let sql = format!(
        "INSERT INTO incident_actions (id, incident_id, action, device_id, state, required_role, requested_at, detail)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8
         WHERE NOT EXISTS (SELECT 1 FROM incident_actions WHERE incident_id = $2 AND action = $3 AND device_id = $4{existing})"
    );
    let mut inserted = Vec::new();
    for a in actions {
        check_text("action id", &a.id)?;
        check_text("action", &a.action)?;
        check_text("device id", &a.device_id)?;
        check_text("required role", &a.required_role)?;
        let detail = json_text("action detail", &a.detail)?;
        let state = if a.required_role.is_empty() {
            "approved"
        } else {
            "pending_approval"
        };
        let r = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(&a.id)
            .bind(incident_id)
            .bind(&a.action)
            .bind(&a.device_id)
            .bind(state)
            .bind(&a.required_role)
            .bind(at)
            .bind(detail)
            .execute(&mut **tx)
            .await?;
        if r.rows_affected() == 1 {
            inserted.push(a.id.clone());
        }
    }
    Ok(inserted)
}

impl crate::Db {
    /// Records what a detector (or an operator) found: opens the incident or joins the open
    /// one, adds the devices and requests the actions, with `entry` and its audit record, in
    /// one transaction.
    ///
    /// `DomainError::Conflict` means another writer got there first (the cause's incident was
    /// opened, the device joined, or the incident closed in between) and nothing was written:
    /// read again and decide again. Two servers recording one cause at once so make one
    /// incident: the loser's insert meets `open_cause`'s unique key and does nothing.
    pub async fn write_incident(
        &self,
        write: &IncidentWrite,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let incident_id = match &write.target {
            IncidentTarget::Open(i) => {
                for (what, v) in [
                    ("incident id", &i.id),
                    ("cause", &i.cause),
                    ("detector", &i.detector),
                    ("severity", &i.severity),
                    ("state", &i.state),
                    ("title", &i.title),
                    ("release", &i.release),
                    ("opened by", &i.opened_by),
                ] {
                    check_text(what, v)?;
                }
                let detail = json_text("incident detail", &i.detail)?;
                let r = sqlx::query(
                    "INSERT INTO incidents (id, open_cause, cause, detector, severity, state, title, detail, release, opened_by, first_signal_at, detected_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT DO NOTHING",
                )
                .bind(&i.id)
                .bind(&i.open_cause)
                .bind(&i.cause)
                .bind(&i.detector)
                .bind(&i.severity)
                .bind(&i.state)
                .bind(&i.title)
                .bind(detail)
                .bind(&i.release)
                .bind(&i.opened_by)
                .bind(i.first_signal_at)
                .bind(i.detected_at)
                .bind(write.at)
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Err(conflict(format!(
                        "an incident for cause {:?} is already open",
                        i.cause
                    )));
                }
                i.id.clone()
            }
            IncidentTarget::Join {
                incident_id,
                severity,
            } => {
                let r = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE incidents SET updated_at = $2,
                       severity = CASE WHEN {SEVERITY_RANK} < $4 THEN $3 ELSE severity END
                     WHERE id = $1 AND open_cause IS NOT NULL"
                )))
                .bind(incident_id)
                .bind(write.at)
                .bind(severity)
                .bind(severity_rank(severity))
                .execute(&mut *tx)
                .await?;
                if r.rows_affected() != 1 {
                    return Err(conflict(format!("incident {incident_id} is not open")));
                }
                incident_id.clone()
            }
        };
        for d in &write.devices {
            check_text("device id", &d.device_id)?;
            check_text("reason", &d.reason)?;
            let r = sqlx::query(
                "INSERT INTO incident_devices (incident_id, device_id, joined_at, first_signal_at, reason)
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&incident_id)
            .bind(&d.device_id)
            .bind(d.joined_at)
            .bind(d.first_signal_at)
            .bind(&d.reason)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() != 1 {
                return Err(conflict(format!(
                    "device {} is already in incident {incident_id}",
                    d.device_id
                )));
            }
        }
        insert_actions(&mut tx, &incident_id, &write.actions, write.at, true).await?;
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The open incident of a cause (its dedupe key), if any.
    pub async fn open_incident_for_cause(&self, cause: &str) -> Result<Option<Incident>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.open_cause = $1"
        )))
        .bind(cause)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Whether a device is in an incident.
    pub async fn incident_has_device(
        &self,
        incident_id: &str,
        device_id: &str,
    ) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM incident_devices WHERE incident_id = $1 AND device_id = $2",
        )
        .bind(incident_id)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    /// One incident.
    pub async fn incident(&self, id: &str) -> Result<Option<Incident>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE i.id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(incident_from_row).transpose()
    }

    /// Incidents matching `filter`, newest first, one bounded page.
    pub async fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, DbError> {
        let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents i WHERE 1 = 1");
        let mut binds: Vec<&str> = Vec::new();
        for (column, value) in [
            ("i.state", &filter.state),
            ("i.severity", &filter.severity),
            ("i.detector", &filter.detector),
        ] {
            if let Some(v) = value {
                binds.push(v);
                sql.push_str(&format!(" AND {column} = ${}", binds.len()));
            }
        }
        if let Some(device) = &filter.device_id {
            binds.push(device);
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM incident_devices d WHERE d.incident_id = i.id AND d.device_id = ${})",
                binds.len()
            ));
        }
        sql.push_str(&format!(
            " ORDER BY i.detected_at DESC, i.id DESC LIMIT ${} OFFSET ${}",
            binds.len() + 1,
            binds.len() + 2
        ));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q
            .bind(filter.limit.clamp(1, MAX_INCIDENT_PAGE))
            .bind(filter.offset.max(0))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(incident_from_row).collect()
    }

    /// The devices of an incident, in the order they joined (at most
    /// [`MAX_INCIDENT_DEVICES_READ`]).
    pub async fn incident_devices(
        &self,
        incident_id: &str,
    ) -> Result<Vec<IncidentDevice>, DbError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT device_id, joined_at, first_signal_at, reason FROM incident_devices
             WHERE incident_id = $1 ORDER BY joined_at, device_id LIMIT $2",
        )
        .bind(incident_id)
        .bind(MAX_INCIDENT_DEVICES_READ)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IncidentDevice {
                    device_id: r.try_get("device_id")?,
                    joined_at: r.try_get("joined_at")?,
                    first_signal_at: r.try_get("first_signal_at")?,
                    reason: r.try_get("reason")?,
                })
            })
            .collect()
    }

    /// An incident's timeline in order (the newest [`MAX_TIMELINE_READ`] entries).
    pub async fn incident_timeline(
        &self,
        incident_id: &str,
    ) -> Result<Vec<TimelineEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT audit_seq, incident_id, at, kind, actor, device_id, detail FROM incident_timeline
             WHERE incident_id = $1 ORDER BY audit_seq DESC LIMIT $2",
        )
        .bind(incident_id)
        .bind(MAX_TIMELINE_READ)
        .fetch_all(&self.pool)
        .await?;
        let mut entries = rows
            .iter()
            .map(timeline_from_row)
            .collect::<Result<Vec<_>, DbError>>()?;
        entries.reverse();
        Ok(entries)
    }

    /// An incident's actions, oldest first.
    pub async fn incident_actions(
        &self,
        incident_id: &str,
    ) -> Result<Vec<IncidentAction>, DbError> {
        let rows = sqlx::query(
            "SELECT id, incident_id, action, device_id, state, required_role, requested_at, decided_at, decided_by, detail
             FROM incident_actions WHERE incident_id = $1 ORDER BY requested_at, id LIMIT $2",
        )
        .bind(incident_id)
        .bind(MAX_INCIDENT_DEVICES_READ)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(action_from_row).collect()
    }

    /// One action.
    pub async fn incident_action(&self, id: &str) -> Result<Option<IncidentAction>, DbError> {
        let row = sqlx::query(
            "SELECT id, incident_id, action, device_id, state, required_role, requested_at, decided_at, decided_by, detail
             FROM incident_actions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(action_from_row).transpose()
    }

    /// Writes an incident's progress if it is still in `expected_state`: its new state, and
    /// the times and acknowledgement `updated` sets that were not set yet (a time, once set,
    /// is kept: moves only go forward, and two writers cannot erase each other's times).
    /// Closing clears `open_cause`, so the cause may open a new incident. With the timeline
    /// entry and audit record. `Conflict`: it moved meanwhile (read it again).
    pub async fn update_incident(
        &self,
        updated: &Incident,
        expected_state: &str,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("state", &updated.state)?;
        if let Some(by) = &updated.acknowledged_by {
            check_text("acknowledged by", by)?;
        }
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE incidents SET state = $3,
               open_cause = CASE WHEN $3 = 'closed' THEN NULL ELSE open_cause END,
               acknowledged_at = COALESCE(acknowledged_at, $4),
               acknowledged_by = COALESCE(acknowledged_by, $5),
               contained_at = COALESCE(contained_at, $6),
               eradicated_at = COALESCE(eradicated_at, $7),
               recovered_at = COALESCE(recovered_at, $8),
               closed_at = COALESCE(closed_at, $9),
               updated_at = $10
             WHERE id = $1 AND state = $2",
        )
        .bind(&updated.id)
        .bind(expected_state)
        .bind(&updated.state)
        .bind(updated.acknowledged_at)
        .bind(&updated.acknowledged_by)
        .bind(updated.contained_at)
        .bind(updated.eradicated_at)
        .bind(updated.recovered_at)
        .bind(updated.closed_at)
        .bind(updated.updated_at)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            drop(tx);
            return Err(match self.incident(&updated.id).await? {
                None => unknown_incident(&updated.id),
                Some(_) => conflict(format!(
                    "incident {} changed meanwhile (no longer {expected_state}); read it again",
                    updated.id
                )),
            });
        }
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The playbooks operators stored through the API (JSON), with who stored them and when;
    /// `None` until one is stored.
    pub async fn stored_playbooks(&self) -> Result<Option<StoredPlaybooks>, DbError> {
        use sqlx::Row;
        let row = sqlx::query(
            "SELECT body, updated_at, updated_by FROM incident_playbooks WHERE name = 'playbooks'",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            let body: String = r.try_get("body")?;
            Ok(StoredPlaybooks {
                body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                updated_at: r.try_get("updated_at")?,
                updated_by: r.try_get("updated_by")?,
            })
        })
        .transpose()
    }

    /// Stores the playbooks (replacing the stored ones) with their audit record.
    pub async fn store_playbooks(
        &self,
        playbooks: &StoredPlaybooks,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("updated by", &playbooks.updated_by)?;
        let body = serde_json::to_string(&playbooks.body)
            .map_err(|e| DbError::Domain(DomainError::Invalid(format!("playbooks: {e}"))))?;
        if body.len() > MAX_PLAYBOOKS_BYTES {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "the playbooks are over {MAX_PLAYBOOKS_BYTES} bytes as JSON"
            ))));
        }
        let mut tx = self.begin_write().await?;
        insert_audit(&mut tx, audit).await?;
        sqlx::query(
            "INSERT INTO incident_playbooks (name, body, updated_at, updated_by) VALUES ('playbooks', $1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
        )
        .bind(body)
        .bind(playbooks.updated_at)
        .bind(&playbooks.updated_by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Requests actions of an incident (an operator's contain, re-image or collect), skipping
    /// a device that already has one of them pending, approved or running; with the timeline
    /// entry and audit record. Returns the ids requested.
    pub async fn request_incident_actions(
        &self,
        incident_id: &str,
        actions: &[PlannedAction],
        at: i64,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<Vec<String>, DbError> {
        let mut tx = self.begin_write().await?;
        let inserted = insert_actions(&mut tx, incident_id, actions, at, false).await?;
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Approves (`approved`) or rejects (`rejected`) an action pending approval, with the
    /// timeline entry and audit record. `Conflict`: it is not pending approval.
    pub async fn decide_incident_action(
        &self,
        id: &str,
        approve: bool,
        by: &str,
        at: i64,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("decided by", by)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE incident_actions SET state = $2, decided_at = $3, decided_by = $4
             WHERE id = $1 AND state = 'pending_approval'",
        )
        .bind(id)
        .bind(if approve { "approved" } else { "rejected" })
        .bind(at)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(conflict(format!(
                "incident action {id} is not pending approval"
            )));
        }
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Open incidents (not yet `recovered`) that have devices, with how many of their devices
    /// are quarantined, re-imaged (a `reimage` action done) and re-imaged and released: what the
    /// engine's automatic progress decides on. At most `limit`, oldest first.
    pub async fn incident_progress(&self, limit: i64) -> Result<Vec<IncidentProgress>, DbError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT i.id,
               (SELECT COUNT(*) FROM incident_devices d WHERE d.incident_id = i.id) AS devices,
               (SELECT COUNT(*) FROM incident_devices d WHERE d.incident_id = i.id
                  AND EXISTS (SELECT 1 FROM device_quarantine q WHERE q.device_id = d.device_id)) AS quarantined,
               (SELECT COUNT(*) FROM incident_devices d WHERE d.incident_id = i.id
                  AND EXISTS (SELECT 1 FROM incident_actions a WHERE a.incident_id = i.id
                    AND a.device_id = d.device_id AND a.action = 'reimage' AND a.state = 'done')) AS reimaged,
               (SELECT COUNT(*) FROM incident_devices d WHERE d.incident_id = i.id
                  AND NOT EXISTS (SELECT 1 FROM device_quarantine q WHERE q.device_id = d.device_id)
                  AND EXISTS (SELECT 1 FROM incident_actions a WHERE a.incident_id = i.id
                    AND a.device_id = d.device_id AND a.action = 'reimage' AND a.state = 'done')) AS recovered
             FROM incidents i
             WHERE i.state IN ('detected', 'contained', 'eradicated')
               AND EXISTS (SELECT 1 FROM incident_devices d WHERE d.incident_id = i.id)
             ORDER BY i.detected_at, i.id LIMIT $1",
        )
        .bind(limit.clamp(1, MAX_INCIDENT_PAGE))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IncidentProgress {
                    incident_id: r.try_get("id")?,
                    devices: r.try_get("devices")?,
                    quarantined: r.try_get("quarantined")?,
                    reimaged: r.try_get("reimaged")?,
                    reimaged_and_released: r.try_get("recovered")?,
                })
            })
            .collect()
    }

    /// How many incidents are in each (state, severity).
    pub async fn incident_counts(&self) -> Result<Vec<(String, String, i64)>, DbError> {
        use sqlx::Row;
        let rows = sqlx::query(
            "SELECT state, severity, COUNT(*) AS n FROM incidents GROUP BY state, severity",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("state")?, r.try_get("severity")?, r.try_get("n")?)))
            .collect()
    }
}

/// Which incidents to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IncidentFilter {
    pub state: Option<String>,
    pub severity: Option<String>,
    pub detector: Option<String>,
    pub device_id: Option<String>,
    /// At most [`MAX_INCIDENT_PAGE`].
    pub limit: i64,
    pub offset: i64,
}

/// Where an open incident's devices stand (see [`crate::Db::incident_progress`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentProgress {
    pub incident_id: String,
    pub devices: i64,
    pub quarantined: i64,
    pub reimaged: i64,
    pub reimaged_and_released: i64,
}

/// Longest stored playbooks document, bytes of JSON.
pub const MAX_PLAYBOOKS_BYTES: usize = 64 * 1024;

/// Playbooks stored through the management API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlaybooks {
    /// `rampart_incident::playbook::Playbooks` as JSON.
    pub body: serde_json::Value,
    pub updated_at: i64,
    pub updated_by: String,
}

/// A stored timeline entry, as `incident_timeline` rows read it.
pub(crate) fn timeline_from_row(r: &sqlx::any::AnyRow) -> Result<TimelineEntry, DbError> {
    use sqlx::Row;
    let seq: i64 = r.try_get("audit_seq")?;
    let detail: String = r.try_get("detail")?;
    Ok(TimelineEntry {
        audit_seq: u64::try_from(seq).unwrap_or(0),
        incident_id: r.try_get("incident_id")?,
        at: r.try_get("at")?,
        kind: r.try_get("kind")?,
        actor: r.try_get("actor")?,
        device_id: r.try_get("device_id")?,
        detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
    })
}
