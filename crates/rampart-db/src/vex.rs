//! Vendor-signed VEX documents (issue 17, decision 0047): stored once their signature was
//! verified by the caller (`rampart_vuln::signed_vex`), by the digest of the document. Schema:
//! `migrations/0021_vex.sql`. Every change raises the advisory feed's version in the same
//! transaction: a cached assessment of an older version is stale.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{AuditLine, insert_audit};
use crate::error::{DbError, DomainError};

/// The most VEX documents stored (each import is one document; vendors publish few).
pub const MAX_VEX_DOCUMENTS: i64 = 10_000;
/// The most documents one listing page returns.
pub const MAX_VEX_PAGE: i64 = 1_000;

/// A verified VEX document to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexImport {
    /// Hex SHA-256 of the document.
    pub id: String,
    pub signer_key_id: String,
    /// `CycloneDx` or `OpenVex`.
    pub format: String,
    /// The statements, JSON.
    pub statements: String,
    pub statement_count: i64,
}

/// A stored VEX document, without its statements.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VexDocumentSummary {
    pub id: String,
    pub signer_key_id: String,
    pub format: String,
    pub statements: i64,
    pub imported_at: i64,
}

impl crate::Db {
    /// Stores a verified VEX document with its audit record, in one transaction. Returns
    /// whether it was new (a document already stored is left as it is, and nothing changes).
    pub async fn import_vex_document(
        &self,
        document: &VexImport,
        now: i64,
        audit: &AuditLine,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let stored = sqlx::query("SELECT id FROM vex_documents WHERE id = $1")
            .bind(&document.id)
            .fetch_optional(&mut *tx)
            .await?;
        let created = stored.is_none();
        if created {
            let count: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM vex_documents")
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
            if count >= MAX_VEX_DOCUMENTS {
                return Err(DbError::Domain(DomainError::Conflict(format!(
                    "{MAX_VEX_DOCUMENTS} VEX documents are stored, the most the server keeps; remove superseded ones (`rampart risk vex delete ID`)"
                ))));
            }
            sqlx::query(
                "INSERT INTO vex_documents (id, signer_key_id, format, statements, statement_count, imported_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&document.id)
            .bind(&document.signer_key_id)
            .bind(&document.format)
            .bind(&document.statements)
            .bind(document.statement_count)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE advisory_feed SET version = version + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(created)
    }

    /// Removes a stored VEX document with its audit record; `false` if none had that id.
    pub async fn delete_vex_document(&self, id: &str, audit: &AuditLine) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let removed = sqlx::query("DELETE FROM vex_documents WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        if !removed {
            return Ok(false);
        }
        sqlx::query("UPDATE advisory_feed SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A page of the stored documents, oldest import first, and how many there are.
    pub async fn vex_documents(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<VexDocumentSummary>, i64), DbError> {
        let rows = sqlx::query(
            "SELECT id, signer_key_id, format, statement_count, imported_at FROM vex_documents
             ORDER BY imported_at, id LIMIT $1 OFFSET $2",
        )
        .bind(limit.clamp(1, MAX_VEX_PAGE))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT CAST(COUNT(*) AS BIGINT) AS n FROM vex_documents")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let page = rows
            .iter()
            .map(|r| {
                Ok(VexDocumentSummary {
                    id: r.try_get("id")?,
                    signer_key_id: r.try_get("signer_key_id")?,
                    format: r.try_get("format")?,
                    statements: r.try_get("statement_count")?,
                    imported_at: r.try_get("imported_at")?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok((page, total))
    }

    /// Every stored document's statements, as `(id, statements JSON)`, oldest import first:
    /// what the assessment applies (at most [`MAX_VEX_DOCUMENTS`]).
    pub async fn vex_statements(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT id, statements FROM vex_documents ORDER BY imported_at, id LIMIT $1",
        )
        .bind(MAX_VEX_DOCUMENTS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("statements")?)))
            .collect()
    }
}
