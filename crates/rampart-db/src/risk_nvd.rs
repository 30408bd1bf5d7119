//! NVD CVE records (issue 17, decision 0048): stored by CVE id with NVD's `lastModified` and
//! `vulnStatus`, for the server's CPE and firmware-name matching. Schema:
//! `migrations/0022_nvd.sql`. The records are parsed and checked by the caller
//! (`rampart_vuln::nvd`) before they are stored; this module keeps them as given.

use sqlx::Row;

use crate::audit::{AuditLine, insert_audit};
use crate::error::{DbError, DomainError};
use crate::risk::ImportCounts;

/// The most NVD records one import call stores (the API's batches are smaller).
pub const MAX_NVD_PER_IMPORT: usize = 10_000;

/// NVD's status of a withdrawn CVE.
const REJECTED: &str = "Rejected";

/// One NVD record to store, already parsed and checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvdImport {
    pub id: String,
    /// NVD's `lastModified` ('' when the record has none).
    pub last_modified: String,
    /// NVD's `vulnStatus` ('' when the record has none); `Rejected` leaves matching.
    pub status: String,
    /// The vulnerability item (`{"cve":{...}}`), as imported.
    pub record: String,
}

/// One stored NVD record, as [`crate::Db::nvd_advisory`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNvd {
    pub id: String,
    pub last_modified: String,
    /// NVD's `vulnStatus`; `Rejected` is out of matching.
    pub status: String,
    pub record: String,
    pub imported_at: i64,
}

impl StoredNvd {
    pub fn is_rejected(&self) -> bool {
        self.status == REJECTED
    }
}

fn stored_nvd(r: &sqlx::any::AnyRow) -> Result<StoredNvd, DbError> {
    Ok(StoredNvd {
        id: r.try_get("id")?,
        last_modified: r.try_get("last_modified")?,
        status: r.try_get("status")?,
        record: r.try_get("record")?,
        imported_at: r.try_get("imported_at")?,
    })
}

impl crate::Db {
    /// The NVD record stored under the CVE id `id`, rejected or not.
    pub async fn nvd_advisory(&self, id: &str) -> Result<Option<StoredNvd>, DbError> {
        let row = sqlx::query(
            "SELECT id, last_modified, status, record, imported_at FROM nvd_advisories WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(stored_nvd).transpose()
    }

    /// The stored NVD records among `ids` (at most [`crate::MAX_ADVISORY_READ`]), rejected
    /// or not, in id order; ids not stored are left out. The risk watch reads the CVEs that
    /// matched firmware parts this way.
    pub async fn nvd_advisories_by_id(&self, ids: &[String]) -> Result<Vec<StoredNvd>, DbError> {
        if ids.len() > crate::MAX_ADVISORY_READ {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "at most {} NVD records are read at once, not {}",
                crate::MAX_ADVISORY_READ,
                ids.len()
            ))));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only numbered placeholders are formatted in; the ids are bound.
        let sql = format!(
            "SELECT id, last_modified, status, record, imported_at FROM nvd_advisories WHERE id IN ({}) ORDER BY id",
            crate::sql::placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(stored_nvd).collect()
    }

    /// Stores a batch of NVD records with its audit record, in one transaction: a new id is
    /// added; a stored one is replaced when its `lastModified` or status differs, else left
    /// unchanged. Any change raises the advisory feed's version, so cached indexes rebuild.
    pub async fn import_nvd_advisories(
        &self,
        batch: &[NvdImport],
        now: i64,
        audit: &AuditLine,
    ) -> Result<ImportCounts, DbError> {
        if batch.len() > MAX_NVD_PER_IMPORT {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "an import stores at most {MAX_NVD_PER_IMPORT} NVD records at once, not {}; send smaller batches",
                batch.len()
            ))));
        }
        let mut counts = ImportCounts::default();
        let mut tx = self.begin_write().await?;
        for record in batch {
            let stored =
                sqlx::query("SELECT last_modified, status FROM nvd_advisories WHERE id = $1")
                    .bind(&record.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            match stored {
                Some(row) => {
                    let last_modified: String = row.try_get("last_modified")?;
                    let status: String = row.try_get("status")?;
                    if last_modified == record.last_modified && status == record.status {
                        counts.unchanged += 1;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE nvd_advisories SET last_modified = $2, status = $3, record = $4,
                         imported_at = $5 WHERE id = $1",
                    )
                    .bind(&record.id)
                    .bind(&record.last_modified)
                    .bind(&record.status)
                    .bind(&record.record)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    counts.replaced += 1;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO nvd_advisories (id, last_modified, status, record, imported_at)
                         VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(&record.id)
                    .bind(&record.last_modified)
                    .bind(&record.status)
                    .bind(&record.record)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    counts.added += 1;
                }
            }
            if record.status == REJECTED {
                counts.withdrawn += 1;
            }
        }
        if counts.added + counts.replaced > 0 {
            sqlx::query("UPDATE advisory_feed SET version = version + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Every NVD record not rejected, as `(id, record)`, in id order: what CPE matching
    /// indexes.
    pub async fn nvd_advisories_for_matching(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows =
            sqlx::query("SELECT id, record FROM nvd_advisories WHERE status <> $1 ORDER BY id")
                .bind(REJECTED)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("record")?)))
            .collect()
    }

    /// How many NVD records are stored: `(in matching, rejected)`.
    pub async fn nvd_advisory_counts(&self) -> Result<(u64, u64), DbError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN status <> $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS active,
                    CAST(COALESCE(SUM(CASE WHEN status = $1 THEN 1 ELSE 0 END), 0) AS BIGINT) AS rejected
             FROM nvd_advisories",
        )
        .bind(REJECTED)
        .fetch_one(&self.pool)
        .await?;
        let active: i64 = row.try_get("active")?;
        let rejected: i64 = row.try_get("rejected")?;
        Ok((active as u64, rejected as u64))
    }
}
