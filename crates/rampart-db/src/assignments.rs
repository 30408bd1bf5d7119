//! Assignments: which release each device is told to install, stored with their audit record
//! in one transaction (so no action is recorded without having happened, or happens without
//! being recorded), and each device's current assignment.

use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::{AuditLine, insert_audit};
use crate::sql::placeholders;
use crate::sql::{check_text, json_text};
use crate::{Db, DbError};

/// An operator's decision to install `target` on a set of devices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub id: String,
    /// The image-repository target path of the release.
    pub target: String,
    /// How the devices were chosen (as given to the API).
    pub selector: serde_json::Value,
    pub created: i64,
    pub created_by: String,
    pub device_count: i64,
    /// How the devices treat it: `forced`, `soft`, `download_only` or `timeforced`.
    #[serde(default = "forced")]
    pub update_type: String,
    /// For `timeforced`: the Unix time from which it is forced (0 otherwise).
    #[serde(default)]
    pub forced_at: i64,
    /// A forced re-image (incident response): the devices write the release into both slots,
    /// even over the same release; soft checks and maintenance windows do not defer it.
    /// Always of type `forced`.
    #[serde(default)]
    pub reimage: bool,
}

fn forced() -> String {
    "forced".into()
}

/// The assignment types a device understands.
pub const UPDATE_TYPES: [&str; 4] = ["forced", "soft", "download_only", "timeforced"];

/// What one device is currently told to install (an empty `target`: nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAssignment {
    pub device_id: String,
    pub assignment_id: String,
    pub target: String,
    /// Version of the device's director metadata; grows with every change.
    pub version: i64,
    pub updated: i64,
    /// How the device treats it: `forced`, `soft`, `download_only` or `timeforced`.
    pub update_type: String,
    /// For `timeforced`: the Unix time from which it is forced (0 otherwise).
    #[serde(default)]
    pub forced_at: i64,
    /// The assignment is a forced re-image ([`Assignment::reimage`]).
    #[serde(default)]
    pub reimage: bool,
}

/// Largest number of devices one assignment may name.
pub const MAX_ASSIGNMENT_DEVICES: usize = 1_000_000;

fn assignment_from_row(row: &AnyRow) -> Result<Assignment, DbError> {
    Ok(Assignment {
        id: row.try_get("id")?,
        target: row.try_get("target")?,
        selector: serde_json::from_str(&row.try_get::<String, _>("selector")?).unwrap_or_default(),
        created: row.try_get("created")?,
        created_by: row.try_get("created_by")?,
        device_count: row.try_get("device_count")?,
        update_type: row.try_get("update_type")?,
        forced_at: row.try_get("forced_at")?,
        reimage: row.try_get::<i64, _>("reimage")? != 0,
    })
}

impl Db {
    // ---- audit log -------------------------------------------------------------------------

    /// Stores an assignment and points each of `device_ids` at its target (raising each one's
    /// director version), in one transaction with its audit record. Every device must exist.
    pub async fn create_assignment(
        &self,
        assignment: &Assignment,
        device_ids: &[String],
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("assignment id", &assignment.id)?;
        if assignment.target.is_empty() || assignment.target.len() > 1024 {
            return Err(DbError::Domain(DomainError::Invalid(
                "assignment target must be 1 to 1024 bytes".into(),
            )));
        }
        if device_ids.len() > MAX_ASSIGNMENT_DEVICES {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "an assignment may name at most {MAX_ASSIGNMENT_DEVICES} devices"
            ))));
        }
        if !UPDATE_TYPES.contains(&assignment.update_type.as_str()) {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "assignment type {:?} is not one of forced, soft, download_only, timeforced",
                assignment.update_type
            ))));
        }
        if assignment.reimage && assignment.update_type != "forced" {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "a re-image is always forced, not {:?}",
                assignment.update_type
            ))));
        }
        let selector = json_text("selector", &assignment.selector)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO assignments (id, target, selector, created, created_by, device_count, update_type, forced_at, reimage) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&assignment.id)
        .bind(&assignment.target)
        .bind(selector)
        .bind(assignment.created)
        .bind(&assignment.created_by)
        .bind(device_ids.len() as i64)
        .bind(&assignment.update_type)
        .bind(assignment.forced_at)
        .bind(i64::from(assignment.reimage))
        .execute(&mut *tx)
        .await?;
        // In chunks (bind-parameter limits), two statements per chunk: one statement per device
        // took 38 s for 3,000 devices under a fleet's polling load.
        for chunk in device_ids.chunks(500) {
            let list = placeholders(1, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM devices WHERE id IN ({list})"
            )));
            for id in chunk {
                q = q.bind(id);
            }
            let found: std::collections::HashSet<String> = q
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|r| r.try_get::<String, _>("id"))
                .collect::<Result<_, _>>()?;
            if let Some(missing) = chunk.iter().find(|id| !found.contains(*id)) {
                return Err(DbError::Domain(DomainError::UnknownDevice(missing.clone())));
            }
            let list = placeholders(7, chunk.len());
            let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO device_assignments (device_id, assignment_id, target, version, updated, update_type, forced_at, reimage)
                 SELECT id, $1, $2, 1, $3, $4, $5, $6 FROM devices WHERE id IN ({list})
                 ON CONFLICT (device_id) DO UPDATE SET assignment_id = excluded.assignment_id,
                     target = excluded.target, version = device_assignments.version + 1,
                     updated = excluded.updated, update_type = excluded.update_type,
                     forced_at = excluded.forced_at, reimage = excluded.reimage"
            )))
            .bind(&assignment.id)
            .bind(&assignment.target)
            .bind(assignment.created)
            .bind(&assignment.update_type)
            .bind(assignment.forced_at)
            .bind(i64::from(assignment.reimage));
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *tx).await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Tells the devices of an assignment that still point at it to install nothing; returns
    /// how many changed.
    pub async fn cancel_assignment(
        &self,
        assignment_id: &str,
        now: i64,
        audit: &AuditLine,
    ) -> Result<u64, DbError> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 AS one FROM assignments WHERE id = $1")
            .bind(assignment_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Err(DbError::Domain(DomainError::UnknownAssignment(
                assignment_id.to_string(),
            )));
        }
        let r = sqlx::query(
            "UPDATE device_assignments SET assignment_id = '', target = '', version = version + 1, updated = $2, reimage = 0
             WHERE assignment_id = $1",
        )
        .bind(assignment_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    pub async fn assignment(&self, id: &str) -> Result<Option<Assignment>, DbError> {
        let row = sqlx::query("SELECT * FROM assignments WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(assignment_from_row).transpose()
    }

    /// Assignments, newest first.
    pub async fn list_assignments(&self, limit: i64) -> Result<Vec<Assignment>, DbError> {
        let rows = sqlx::query("SELECT * FROM assignments ORDER BY created DESC, id LIMIT $1")
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(assignment_from_row).collect()
    }

    /// What `device_id` is currently told to install, if it was ever assigned anything.
    pub async fn device_assignment(
        &self,
        device_id: &str,
    ) -> Result<Option<DeviceAssignment>, DbError> {
        let row = sqlx::query("SELECT * FROM device_assignments WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(DeviceAssignment {
                device_id: r.try_get("device_id")?,
                assignment_id: r.try_get("assignment_id")?,
                target: r.try_get("target")?,
                version: r.try_get("version")?,
                updated: r.try_get("updated")?,
                update_type: r.try_get("update_type")?,
                forced_at: r.try_get("forced_at")?,
                reimage: r.try_get::<i64, _>("reimage")? != 0,
            })
        })
        .transpose()
    }

    /// Per status, how many devices of an assignment last reported it.
    pub async fn assignment_status_counts(
        &self,
        assignment_id: &str,
    ) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM reports r WHERE assignment = $1 AND NOT EXISTS (
                 SELECT 1 FROM reports later WHERE later.device_id = r.device_id AND later.assignment = r.assignment
                     AND (later.created > r.created
                          OR (later.created = r.created AND later.seq > r.seq)
                          OR (later.created = r.created AND later.seq = r.seq AND later.id > r.id)))
             GROUP BY status ORDER BY status",
        )
        .bind(assignment_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }
}
