//! Quarantined devices (issue 16): the `device_quarantine` row that makes the server refuse a
//! device everything but the quarantine routes, whether or not the device cooperates, and the
//! released quarantines whose signed `released` statement a device has yet to acknowledge.
//! Schema: `migrations/0011_incidents.sql` and `0012_quarantine_releases.sql`.
//!
//! Failing closed: the row is written first (by an operator or the quarantine executor) and only
//! [`crate::Db::release_device`], which the operator API alone calls, deletes it. Every change is
//! written with its audit record, and, when the quarantine belongs to an incident, its timeline
//! entry, in one transaction.

use serde::{Deserialize, Serialize};
use sqlx::{Any, Row, Transaction};

use crate::audit::{AuditLine, insert_audit};
use crate::error::{DbError, DomainError};
use crate::incidents::{TimelineEntry, insert_timeline};
use crate::sql::check_text;

/// The outcome a quarantined campaign device counts under in `Db::campaign_wave_counts`.
pub const QUARANTINED_OUTCOME: &str = "quarantined";

/// Longest hook outcome detail stored, in bytes (the wire limit of `QuarantineAck.detail`).
pub const MAX_ACK_DETAIL: usize = 4096;

/// A quarantine to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewQuarantine {
    pub device_id: String,
    /// The incident that quarantines it; empty for an operator's direct quarantine.
    pub incident_id: String,
    /// `token:NAME` or `engine:quarantine`.
    pub actor: String,
    pub reason: String,
    /// Unix seconds.
    pub since: i64,
}

/// A quarantined device, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantine {
    pub device_id: String,
    pub incident_id: String,
    pub since: i64,
    pub actor: String,
    pub reason: String,
    /// The `issued` of the statement the device last acknowledged.
    pub ack_issued: Option<i64>,
    /// `succeeded`, `failed` or `not_configured`.
    pub ack_hook: Option<String>,
    pub ack_detail: Option<String>,
    pub ack_at: Option<i64>,
}

/// A released quarantine, kept until the device acknowledges the `released` statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineRelease {
    pub device_id: String,
    pub incident_id: String,
    /// When the quarantine began.
    pub since: i64,
    /// The `released` statement's time (after `since`).
    pub issued: i64,
    pub actor: String,
    pub reason: String,
    pub ack_hook: Option<String>,
    pub ack_detail: Option<String>,
    pub ack_at: Option<i64>,
}

/// What a poll learns of a device's quarantine, in the poll's one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuarantineMark {
    /// Quarantined: the server refuses it all but the quarantine routes.
    Quarantined { incident_id: String, since: i64 },
    /// Released, and the device has not acknowledged the `released` statement yet.
    ReleasePending { incident_id: String, issued: i64 },
}

impl QuarantineMark {
    pub fn is_quarantined(&self) -> bool {
        matches!(self, QuarantineMark::Quarantined { .. })
    }
}

/// A device's acknowledgement of a statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineAckRecord {
    /// True for a `released` statement, false for a `quarantined` one.
    pub released: bool,
    /// The statement's `issued`.
    pub issued: i64,
    /// `succeeded`, `failed` or `not_configured`.
    pub hook: String,
    pub detail: String,
    pub at: i64,
}

const QUARANTINE_COLUMNS: &str =
    "device_id, incident_id, since, actor, reason, ack_issued, ack_hook, ack_detail, ack_at";

fn quarantine_from_row(r: &sqlx::any::AnyRow) -> Result<Quarantine, DbError> {
    Ok(Quarantine {
        device_id: r.try_get("device_id")?,
        incident_id: r.try_get("incident_id")?,
        since: r.try_get("since")?,
        actor: r.try_get("actor")?,
        reason: r.try_get("reason")?,
        ack_issued: r.try_get("ack_issued")?,
        ack_hook: r.try_get("ack_hook")?,
        ack_detail: r.try_get("ack_detail")?,
        ack_at: r.try_get("ack_at")?,
    })
}

async fn stored_quarantine(
    tx: &mut Transaction<'_, Any>,
    device_id: &str,
) -> Result<Option<Quarantine>, DbError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {QUARANTINE_COLUMNS} FROM device_quarantine WHERE device_id = $1"
    )))
    .bind(device_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(quarantine_from_row).transpose()
}

/// The change's record: a timeline entry (and its audit record) when the quarantine belongs to
/// a stored incident, else the audit record alone. A missing incident never undoes a
/// quarantine: the row matters more than its timeline (fail closed).
async fn record_change(
    tx: &mut Transaction<'_, Any>,
    entry: TimelineEntry,
    audit: &AuditLine,
) -> Result<(), DbError> {
    let incident_known = !entry.incident_id.is_empty()
        && sqlx::query("SELECT id FROM incidents WHERE id = $1")
            .bind(&entry.incident_id)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
    if incident_known {
        insert_timeline(tx, &entry, audit).await
    } else {
        insert_audit(tx, audit).await
    }
}

impl crate::Db {
    /// Quarantines a device, with its audit record and, for an incident's quarantine, its
    /// timeline entry, in one transaction. The device need not have made first contact yet (an
    /// incident may name it before; it is quarantined from its first request); the operator API
    /// checks the inventory itself. Idempotent: a device
    /// already quarantined keeps its first quarantine and nothing is written; the answer says
    /// whether this call quarantined it. A pending `released` statement is withdrawn.
    pub async fn quarantine_device(
        &self,
        new: &NewQuarantine,
        audit: &AuditLine,
    ) -> Result<(Quarantine, bool), DbError> {
        check_text("device id", &new.device_id)?;
        check_text("incident id", &new.incident_id)?;
        check_text("actor", &new.actor)?;
        check_text("quarantine reason", &new.reason)?;
        let mut tx = self.begin_write().await?;
        if let Some(existing) = stored_quarantine(&mut tx, &new.device_id).await? {
            tx.rollback().await?;
            return Ok((existing, false));
        }
        sqlx::query(
            "INSERT INTO device_quarantine (device_id, incident_id, since, actor, reason)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&new.device_id)
        .bind(&new.incident_id)
        .bind(new.since)
        .bind(&new.actor)
        .bind(&new.reason)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM device_quarantine_releases WHERE device_id = $1")
            .bind(&new.device_id)
            .execute(&mut *tx)
            .await?;
        record_change(
            &mut tx,
            TimelineEntry {
                audit_seq: audit.seq,
                incident_id: new.incident_id.clone(),
                at: new.since,
                kind: "quarantined".into(),
                actor: new.actor.clone(),
                device_id: new.device_id.clone(),
                detail: serde_json::json!({"reason": new.reason}),
            },
            audit,
        )
        .await?;
        let stored = stored_quarantine(&mut tx, &new.device_id)
            .await?
            .ok_or_else(|| DbError::Domain(DomainError::UnknownDevice(new.device_id.clone())))?;
        tx.commit().await?;
        Ok((stored, true))
    }

    /// Releases a quarantined device: the one way the quarantine row goes (the operator API
    /// calls it; no engine does). Keeps a released quarantine so the device's next polls carry
    /// a signed `released` statement until it acknowledges one. Audited, with a timeline entry
    /// for an incident's quarantine, in one transaction.
    pub async fn release_device(
        &self,
        device_id: &str,
        actor: &str,
        reason: &str,
        now: i64,
        audit: &AuditLine,
    ) -> Result<QuarantineRelease, DbError> {
        check_text("device id", device_id)?;
        check_text("actor", actor)?;
        check_text("release reason", reason)?;
        let mut tx = self.begin_write().await?;
        let Some(quarantine) = stored_quarantine(&mut tx, device_id).await? else {
            return Err(DbError::Domain(DomainError::Conflict(format!(
                "device {device_id:?} is not quarantined; list quarantined devices with `rampart device quarantined`"
            ))));
        };
        sqlx::query("DELETE FROM device_quarantine WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        let release = QuarantineRelease {
            device_id: device_id.to_owned(),
            incident_id: quarantine.incident_id.clone(),
            since: quarantine.since,
            // Newer than the quarantine statement, so a device that acted on it acts on this.
            issued: now.max(quarantine.since + 1),
            actor: actor.to_owned(),
            reason: reason.to_owned(),
            ack_hook: None,
            ack_detail: None,
            ack_at: None,
        };
        sqlx::query("DELETE FROM device_quarantine_releases WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO device_quarantine_releases (device_id, incident_id, since, issued, actor, reason)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&release.device_id)
        .bind(&release.incident_id)
        .bind(release.since)
        .bind(release.issued)
        .bind(&release.actor)
        .bind(&release.reason)
        .execute(&mut *tx)
        .await?;
        record_change(
            &mut tx,
            TimelineEntry {
                audit_seq: audit.seq,
                incident_id: quarantine.incident_id.clone(),
                at: now,
                kind: "released".into(),
                actor: actor.to_owned(),
                device_id: device_id.to_owned(),
                detail: serde_json::json!({"reason": reason, "quarantined_since": quarantine.since}),
            },
            audit,
        )
        .await?;
        tx.commit().await?;
        Ok(release)
    }

    /// Stores a device's acknowledgement of the statement it acted on, with its audit record
    /// (and timeline entry for an incident's quarantine). An acknowledgement changes no
    /// quarantine: a device can never release itself. Fails with a conflict when the device
    /// holds no such statement (stale or invented `issued`).
    pub async fn record_quarantine_ack(
        &self,
        device_id: &str,
        ack: &QuarantineAckRecord,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("hook outcome", &ack.hook)?;
        if ack.detail.len() > MAX_ACK_DETAIL {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "the hook detail must be at most {MAX_ACK_DETAIL} bytes"
            ))));
        }
        let (table, issued_column) = if ack.released {
            ("device_quarantine_releases", "issued")
        } else {
            ("device_quarantine", "since")
        };
        let mut tx = self.begin_write().await?;
        let incident = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT incident_id FROM {table} WHERE device_id = $1 AND {issued_column} = $2"
        )))
        .bind(device_id)
        .bind(ack.issued)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(incident) = incident else {
            return Err(DbError::Domain(DomainError::Conflict(format!(
                "device {device_id:?} holds no {} statement issued at {}; acknowledge the statement of the latest poll answer",
                if ack.released {
                    "released"
                } else {
                    "quarantined"
                },
                ack.issued
            ))));
        };
        let incident_id: String = incident.try_get("incident_id")?;
        let issued_set = if ack.released {
            ""
        } else {
            "ack_issued = $2, "
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET {issued_set}ack_hook = $3, ack_detail = $4, ack_at = $5
             WHERE device_id = $1 AND {issued_column} = $2"
        )))
        .bind(device_id)
        .bind(ack.issued)
        .bind(&ack.hook)
        .bind(&ack.detail)
        .bind(ack.at)
        .execute(&mut *tx)
        .await?;
        let kind = if ack.released {
            "release_acknowledged"
        } else {
            "quarantine_acknowledged"
        };
        record_change(
            &mut tx,
            TimelineEntry {
                audit_seq: audit.seq,
                incident_id: incident_id.clone(),
                at: ack.at,
                kind: kind.into(),
                actor: format!("device:{device_id}"),
                device_id: device_id.to_owned(),
                detail: serde_json::json!({
                    "issued": ack.issued,
                    "hook": ack.hook,
                    "detail": ack.detail,
                }),
            },
            audit,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A device's quarantine, if it is quarantined.
    pub async fn quarantine(&self, device_id: &str) -> Result<Option<Quarantine>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {QUARANTINE_COLUMNS} FROM device_quarantine WHERE device_id = $1"
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(quarantine_from_row).transpose()
    }

    /// Whether a device is quarantined (one primary-key read).
    pub async fn is_quarantined(&self, device_id: &str) -> Result<bool, DbError> {
        Ok(
            sqlx::query("SELECT device_id FROM device_quarantine WHERE device_id = $1")
                .bind(device_id)
                .fetch_optional(&self.pool)
                .await?
                .is_some(),
        )
    }

    /// The quarantines of those of `device_ids` that are quarantined (read by primary key in
    /// chunks: a selection of 100,000 devices costs 200 reads, not a scan of every quarantine).
    pub async fn quarantined_among(
        &self,
        device_ids: &[String],
    ) -> Result<Vec<Quarantine>, DbError> {
        let mut found = Vec::new();
        for chunk in device_ids.chunks(500) {
            let query = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {QUARANTINE_COLUMNS} FROM device_quarantine WHERE device_id IN ({}) ORDER BY since, device_id",
                crate::sql::placeholders(1, chunk.len())
            )));
            let rows = chunk
                .iter()
                .fold(query, |q, id| q.bind(id))
                .fetch_all(&self.pool)
                .await?;
            for row in &rows {
                found.push(quarantine_from_row(row)?);
            }
        }
        Ok(found)
    }

    /// Quarantined devices, oldest first, at most `limit`.
    pub async fn quarantined_devices(&self, limit: i64) -> Result<Vec<Quarantine>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {QUARANTINE_COLUMNS} FROM device_quarantine ORDER BY since, device_id LIMIT $1"
        )))
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(quarantine_from_row).collect()
    }

    /// A device's released quarantine, kept until it acknowledged the `released` statement
    /// (and after, until its next quarantine).
    pub async fn quarantine_release(
        &self,
        device_id: &str,
    ) -> Result<Option<QuarantineRelease>, DbError> {
        let row = sqlx::query(
            "SELECT device_id, incident_id, since, issued, actor, reason, ack_hook, ack_detail, ack_at
             FROM device_quarantine_releases WHERE device_id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(QuarantineRelease {
                device_id: r.try_get("device_id")?,
                incident_id: r.try_get("incident_id")?,
                since: r.try_get("since")?,
                issued: r.try_get("issued")?,
                actor: r.try_get("actor")?,
                reason: r.try_get("reason")?,
                ack_hook: r.try_get("ack_hook")?,
                ack_detail: r.try_get("ack_detail")?,
                ack_at: r.try_get("ack_at")?,
            })
        })
        .transpose()
    }
}

/// The quarantine columns of a poll row that LEFT JOINed `device_quarantine` (as `q_incident`,
/// `q_since`) and the unacknowledged `device_quarantine_releases` row (as `r_incident`,
/// `r_issued`).
pub(crate) fn mark_from_joined_row(
    row: &sqlx::any::AnyRow,
) -> Result<Option<QuarantineMark>, DbError> {
    if let Some(since) = row.try_get::<Option<i64>, _>("q_since")? {
        return Ok(Some(QuarantineMark::Quarantined {
            incident_id: row.try_get("q_incident")?,
            since,
        }));
    }
    if let Some(issued) = row.try_get::<Option<i64>, _>("r_issued")? {
        return Ok(Some(QuarantineMark::ReleasePending {
            incident_id: row.try_get("r_incident")?,
            issued,
        }));
    }
    Ok(None)
}

/// The joins and columns [`mark_from_joined_row`] reads, for a query over `devices d`.
pub(crate) const QUARANTINE_JOIN: &str = "LEFT JOIN device_quarantine q ON q.device_id = d.id
     LEFT JOIN device_quarantine_releases r ON r.device_id = d.id AND r.ack_at IS NULL";
pub(crate) const QUARANTINE_SELECT: &str = "q.incident_id AS q_incident, q.since AS q_since, r.incident_id AS r_incident, r.issued AS r_issued";
