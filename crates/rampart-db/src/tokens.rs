//! API tokens: stored as the SHA-256 of their secret, created and revoked with their audit record.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Db;
use crate::audit::{AuditLine, insert_audit};
use crate::error::DbError;
use crate::sql::check_text;

/// A management API token (its secret is never stored, only its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: String,
    pub role: String,
    pub name: String,
    pub created: i64,
    pub revoked: bool,
}

fn token_from_row(row: &AnyRow) -> Result<ApiToken, DbError> {
    Ok(ApiToken {
        id: row.try_get("id")?,
        role: row.try_get("role")?,
        name: row.try_get("name")?,
        created: row.try_get("created")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
    })
}

impl Db {
    /// Stores a new token (its secret's SHA-256, hex) with its audit record.
    pub async fn create_token(
        &self,
        token: &ApiToken,
        secret_sha256: &str,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("token id", &token.id)?;
        check_text("token name", &token.name)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, secret_sha256, role, name, created) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&token.id)
        .bind(secret_sha256)
        .bind(&token.role)
        .bind(&token.name)
        .bind(token.created)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The unrevoked token whose secret hashes to `secret_sha256`.
    pub async fn token_by_secret(&self, secret_sha256: &str) -> Result<Option<ApiToken>, DbError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE secret_sha256 = $1 AND revoked = 0")
            .bind(secret_sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>, DbError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes a token; false if there is no such unrevoked token.
    pub async fn revoke_token(&self, id: &str, audit: &AuditLine) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = $1 AND revoked = 0")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    // ---- devices (operator side) -------------------------------------------------------------
}
