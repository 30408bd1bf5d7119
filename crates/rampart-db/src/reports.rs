//! Device reports: storing them (with the per-device quota), reading them back.

use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Db;
use crate::audit::{AuditLine, insert_audit};
use crate::error::DbError;
use crate::sql::{check_text, json_text};

/// A status, progress or result report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub device_id: String,
    pub assignment: String,
    pub status: String,
    pub progress: u64,
    pub details: serde_json::Value,
    pub created: i64,
}

impl Db {
    /// Stores a report durably; the device must exist. Returns once committed.
    pub async fn insert_report(&self, r: &Report) -> Result<(), DbError> {
        self.insert_report_audited(r, None).await
    }

    /// Stores a report and, if given, its audit record, in one transaction.
    pub async fn insert_report_audited(
        &self,
        r: &Report,
        audit: Option<&AuditLine>,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        insert_report_tx(&mut tx, r).await?;
        if let Some(audit) = audit {
            insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn reports_of(&self, device_id: &str) -> Result<Vec<Report>, DbError> {
        let rows =
            sqlx::query("SELECT * FROM reports WHERE device_id = $1 ORDER BY created, seq, id")
                .bind(device_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(report_from_row).collect()
    }

    /// A device's newest reports, newest first, at most `limit` (1 to 10,000).
    pub async fn recent_reports(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<Report>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM reports WHERE device_id = $1 ORDER BY created DESC, seq DESC, id DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(report_from_row).collect()
    }

    /// Whether the device has reported a result (not progress) for `assignment`.
    pub async fn has_result_for(&self, device_id: &str, assignment: &str) -> Result<bool, DbError> {
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 AS found FROM reports WHERE device_id = $1 AND assignment = $2 AND status NOT IN {PROGRESS_STATUSES} LIMIT 1"
        )))
        .bind(device_id)
        .bind(assignment)
        .fetch_optional(&self.pool)
        .await?;
        // The first result is enough; counting a device's reports is not needed.
        Ok(found.is_some())
    }

    /// The device's latest result (not progress) for `assignment`, if any: how a re-image
    /// ended (its executor waits for it).
    pub async fn last_result_for(
        &self,
        device_id: &str,
        assignment: &str,
    ) -> Result<Option<Report>, DbError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM reports WHERE device_id = $1 AND assignment = $2 AND status NOT IN {PROGRESS_STATUSES}
             ORDER BY created DESC, seq DESC, id DESC LIMIT 1"
        )))
        .bind(device_id)
        .bind(assignment)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(report_from_row).transpose()
    }

    /// One report of a device, by its id.
    pub async fn report(&self, device_id: &str, id: &str) -> Result<Option<Report>, DbError> {
        let row = sqlx::query("SELECT * FROM reports WHERE device_id = $1 AND id = $2")
            .bind(device_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(report_from_row).transpose()
    }
}

/// Stores a report inside `tx`: the device must exist; the per-device sequence keeps arrival
/// order within a second.
pub(crate) async fn insert_report_tx(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &Report,
) -> Result<(), DbError> {
    check_text("report id", &r.id)?;
    check_text("status", &r.status)?;
    check_text("assignment", &r.assignment)?;
    let details = json_text("details", &r.details)?;
    // The device's next report number; also proves the device exists.
    let Some(row) = sqlx::query(
        "UPDATE devices SET report_seq = report_seq + 1 WHERE id = $1 RETURNING report_seq",
    )
    .bind(&r.device_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Err(DbError::Domain(DomainError::UnknownDevice(
            r.device_id.clone(),
        )));
    };
    let seq: i64 = row.try_get("report_seq")?;
    sqlx::query("INSERT INTO reports (id, device_id, assignment, status, progress, details, created, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&r.id)
        .bind(&r.device_id)
        .bind(&r.assignment)
        .bind(&r.status)
        .bind(r.progress.min(i64::MAX as u64) as i64)
        .bind(details)
        .bind(r.created)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    if seq % REPORT_QUOTA_CHECK_EVERY == 0 {
        enforce_report_quota(tx, &r.device_id).await?;
    }
    Ok(())
}

/// Reports one device may keep stored. Past it, the device's oldest progress reports are
/// deleted (see [`PROGRESS_REPORTS_KEPT`]); results (`installed`, `failed`, `rolled_back`, ...)
/// never are: when results alone fill the quota, new reports are refused with
/// [`DomainError::Quota`] (the device keeps them queued and an operator can look at why a device
/// reports so much).
pub const REPORTS_PER_DEVICE: i64 = 5_000;
/// The newest progress reports of a device kept when its reports are compacted.
pub const PROGRESS_REPORTS_KEPT: i64 = 100;
/// The quota is checked on every this-many-th report of a device (counting is not free), so a
/// device may briefly hold up to this many reports over it.
pub const REPORT_QUOTA_CHECK_EVERY: i64 = 64;
/// Statuses that say how far a device got, as opposed to results; compaction may delete them.
const PROGRESS_STATUSES: &str = "('downloading', 'installing', 'rebooting')";

async fn device_report_count(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    device_id: &str,
) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM reports WHERE device_id = $1")
        .bind(device_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get("n")?)
}

async fn enforce_report_quota(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    device_id: &str,
) -> Result<(), DbError> {
    if device_report_count(tx, device_id).await? <= REPORTS_PER_DEVICE {
        return Ok(());
    }
    // Every progress report older than the newest PROGRESS_REPORTS_KEPT goes.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM reports WHERE device_id = $1 AND status IN {PROGRESS_STATUSES} AND seq <= \
         (SELECT seq FROM reports WHERE device_id = $1 AND status IN {PROGRESS_STATUSES} \
          ORDER BY seq DESC LIMIT 1 OFFSET $2)"
    )))
    .bind(device_id)
    .bind(PROGRESS_REPORTS_KEPT)
    .execute(&mut **tx)
    .await?;
    if device_report_count(tx, device_id).await? > REPORTS_PER_DEVICE {
        return Err(DbError::Domain(DomainError::Quota(format!(
            "device {device_id:?} already has {REPORTS_PER_DEVICE} stored results, its quota: further reports are refused (the device keeps them queued); an operator should find out why it reports so much"
        ))));
    }
    Ok(())
}

fn report_from_row(r: &AnyRow) -> Result<Report, DbError> {
    Ok(Report {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        assignment: r.try_get("assignment")?,
        status: r.try_get("status")?,
        progress: r.try_get::<i64, _>("progress")?.max(0) as u64,
        details: serde_json::from_str(&r.try_get::<String, _>("details")?).unwrap_or_default(),
        created: r.try_get("created")?,
    })
}
