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
    /// The device concerned, empty when none.
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
    /// Empty for incident-wide actions (an alert).
    pub device_id: String,
    /// `pending_approval`, `approved`, `running`, `done`, `failed` or `rejected`.
    pub state: String,
    /// The role that must approve it (empty: ran at once).
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
