//! Signed audit heads: the server's anchors of the audit log (see `rampart_audit::AuditHead`).
//! The database only stores the signed notes; signing and checking them is the caller's.

use crate::error::DomainError;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Db, DbError};

/// A stored signed audit head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditHead {
    /// Records the head covers.
    pub tree_size: u64,
    /// When it was signed, unix seconds.
    pub signed_at: i64,
    /// The signed note (`rampart_audit::AuditHead::sign`), UTF-8.
    pub note: String,
    /// Its entry in the transparency log, once appended there.
    pub log_index: Option<u64>,
}

fn head_from_row(row: &AnyRow) -> Result<StoredAuditHead, DbError> {
    Ok(StoredAuditHead {
        tree_size: row.try_get::<i64, _>("tree_size")?.max(0) as u64,
        signed_at: row.try_get("signed_at")?,
        note: row.try_get("note")?,
        log_index: row
            .try_get::<Option<i64>, _>("log_index")?
            .map(|i| i.max(0) as u64),
    })
}

fn size_param(size: u64) -> Result<i64, DbError> {
    i64::try_from(size)
        .map_err(|_| DbError::Domain(DomainError::Invalid(format!("audit head size {size}"))))
}

impl Db {
    /// Stores a signed head. A head over the same number of records already stored (signed
    /// concurrently, e.g. by a second server on one database) is kept and `false` returned.
    pub async fn insert_audit_head(&self, head: &StoredAuditHead) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO audit_heads (tree_size, signed_at, note, log_index) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(size_param(head.tree_size)?)
        .bind(head.signed_at)
        .bind(&head.note)
        .bind(head.log_index.map(size_param).transpose()?)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Records where the head over `tree_size` records was appended in the transparency log.
    pub async fn set_audit_head_log_index(
        &self,
        tree_size: u64,
        log_index: u64,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE audit_heads SET log_index = $1 WHERE tree_size = $2")
            .bind(size_param(log_index)?)
            .bind(size_param(tree_size)?)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The stored head covering the most records.
    pub async fn latest_audit_head(&self) -> Result<Option<StoredAuditHead>, DbError> {
        sqlx::query(
            "SELECT tree_size, signed_at, note, log_index FROM audit_heads ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(head_from_row)
        .transpose()
    }

    /// Every stored head, smallest first (at most `limit`, the newest ones if there are more).
    pub async fn audit_heads(&self, limit: i64) -> Result<Vec<StoredAuditHead>, DbError> {
        let rows = sqlx::query(
            "SELECT tree_size, signed_at, note, log_index FROM audit_heads ORDER BY tree_size DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 1_000_000))
        .fetch_all(&self.pool)
        .await?;
        let mut heads = rows
            .iter()
            .map(head_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        heads.reverse();
        Ok(heads)
    }
}
