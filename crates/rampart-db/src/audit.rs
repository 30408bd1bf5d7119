//! The stored audit log: records in their stored form, appended in the transaction of the change
//! they record (see `insert_audit`), read back in order.

use sqlx::{Any, Row, Transaction};

use crate::Db;
use crate::error::DbError;

/// An audit record in its stored form: its sequence number and its JSON line
/// (`rampart_audit::to_json_line`). The database only stores it; the server builds the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLine {
    pub seq: u64,
    pub line: String,
}

pub(crate) async fn insert_audit(
    tx: &mut Transaction<'_, Any>,
    audit: &AuditLine,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO audit_log (seq, record) VALUES ($1, $2)")
        .bind(i64::try_from(audit.seq).map_err(|_| DbError::Invalid("audit seq".into()))?)
        .bind(&audit.line)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl Db {
    /// Stores one audit record on its own (device and security events).
    pub async fn append_audit(&self, audit: &AuditLine) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The last stored audit line, to resume the chain after a restart.
    pub async fn last_audit(&self) -> Result<Option<AuditLine>, DbError> {
        let row = sqlx::query("SELECT seq, record FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(AuditLine {
                seq: r.try_get::<i64, _>("seq")?.max(0) as u64,
                line: r.try_get("record")?,
            })
        })
        .transpose()
    }

    /// Audit lines with `seq >= from`, in order, at most `limit`.
    pub async fn audit_lines(&self, from: u64, limit: i64) -> Result<Vec<AuditLine>, DbError> {
        let rows =
            sqlx::query("SELECT seq, record FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2")
                .bind(from.min(i64::MAX as u64) as i64)
                .bind(limit.clamp(1, 100_000))
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditLine {
                    seq: r.try_get::<i64, _>("seq")?.max(0) as u64,
                    line: r.try_get("record")?,
                })
            })
            .collect()
    }

    // ---- tokens ----------------------------------------------------------------------------
}
