//! Web console sessions: the SHA-256 of a browser's session id, the API token it logged in with
//! (and that token's role), and when it ends. Created and ended with their audit records.

use sqlx::Row;

use crate::Db;
use crate::audit::{AuditLine, insert_audit};
use crate::error::DbError;
use crate::sql::check_text;
use crate::tokens::ApiToken;

/// A stored console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Lowercase hex SHA-256 of the session id the browser holds (the id is never stored).
    pub id_sha256: String,
    /// The API token the session logged in with.
    pub token_id: String,
    /// The token's role at login.
    pub role: String,
    pub created: i64,
    pub last_used: i64,
    /// Absolute end, Unix seconds.
    pub expires: i64,
}

/// When sessions end and how many a token may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// A session unused for this many seconds has ended.
    pub idle_secs: i64,
    /// Sessions one token may hold at once; logging in beyond it ends that token's oldest.
    pub max_per_token: i64,
}

impl Db {
    /// Stores a new session with its audit record, in one transaction; ends sessions that have
    /// expired (any token's) and, beyond `limits.max_per_token`, the token's oldest. Returns
    /// how many of the token's sessions the cap ended.
    pub async fn create_console_session(
        &self,
        session: &ConsoleSession,
        limits: SessionLimits,
        audit: &AuditLine,
    ) -> Result<u64, DbError> {
        check_text("session digest", &session.id_sha256)?;
        check_text("token id", &session.token_id)?;
        check_text("role", &session.role)?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires <= $1 OR last_used <= $2")
            .bind(session.created)
            .bind(session.created - limits.idle_secs)
            .execute(&mut *tx)
            .await?;
        // Room for the new session first, so it is never the one the cap ends.
        let evicted = sqlx::query(
            "DELETE FROM console_sessions WHERE token_id = $1 AND id_sha256 NOT IN (
                 SELECT id_sha256 FROM console_sessions WHERE token_id = $1
                 ORDER BY created DESC, id_sha256 LIMIT $2)",
        )
        .bind(&session.token_id)
        .bind(limits.max_per_token.max(1) - 1)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO console_sessions (id_sha256, token_id, role, created, last_used, expires) VALUES ($1, $2, $3, $4, $4, $5)",
        )
        .bind(&session.id_sha256)
        .bind(&session.token_id)
        .bind(&session.role)
        .bind(session.created)
        .bind(session.expires)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(evicted)
    }

    /// The live session whose id hashes to `id_sha256`, with its token: `None` if there is no
    /// such session, it expired, was idle for `limits.idle_secs`, or its token was revoked.
    pub async fn console_session(
        &self,
        id_sha256: &str,
        now: i64,
        limits: SessionLimits,
    ) -> Result<Option<(ConsoleSession, ApiToken)>, DbError> {
        let row = sqlx::query(
            "SELECT s.id_sha256, s.token_id, s.role AS session_role, s.created AS session_created,
                    s.last_used, s.expires, t.role, t.name, t.created, t.revoked
             FROM console_sessions s JOIN api_tokens t ON t.id = s.token_id
             WHERE s.id_sha256 = $1 AND t.revoked = 0 AND s.expires > $2 AND s.last_used > $3",
        )
        .bind(id_sha256)
        .bind(now)
        .bind(now - limits.idle_secs)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let session = ConsoleSession {
            id_sha256: row.try_get("id_sha256")?,
            token_id: row.try_get("token_id")?,
            role: row.try_get("session_role")?,
            created: row.try_get("session_created")?,
            last_used: row.try_get("last_used")?,
            expires: row.try_get("expires")?,
        };
        let token = ApiToken {
            id: session.token_id.clone(),
            role: row.try_get("role")?,
            name: row.try_get("name")?,
            created: row.try_get("created")?,
            revoked: row.try_get::<i64, _>("revoked")? != 0,
        };
        Ok(Some((session, token)))
    }

    /// Notes that a session was used at `now` (only ever forward).
    pub async fn touch_console_session(&self, id_sha256: &str, now: i64) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE console_sessions SET last_used = $2 WHERE id_sha256 = $1 AND last_used < $2",
        )
        .bind(id_sha256)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends a session with its audit record; false (and nothing written) if there was none.
    pub async fn end_console_session(
        &self,
        id_sha256: &str,
        audit: &AuditLine,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let ended = sqlx::query("DELETE FROM console_sessions WHERE id_sha256 = $1")
            .bind(id_sha256)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if ended == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many sessions `token_id` holds (expired ones not yet cleared included).
    pub async fn console_session_count(&self, token_id: &str) -> Result<i64, DbError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM console_sessions WHERE token_id = $1")
                .bind(token_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}
