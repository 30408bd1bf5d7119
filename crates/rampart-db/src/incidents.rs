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
