//! Bulk import of devices (fleet onboarding, benchmarks) and the database's storage size.

use sqlx::Row;

use crate::sql::{check_text, json_text};
use crate::{Backend, Db, DbError, DeviceFacts};

/// Devices per multi-row `INSERT` (9 parameters each: well under SQLite's 32,766 and
/// PostgreSQL's 65,535 bind parameters per statement).
const DEVICE_ROWS_PER_INSERT: usize = 500;
/// Tag rows per multi-row `INSERT` (2 parameters each).
const TAG_ROWS_PER_INSERT: usize = 2000;

impl Db {
    /// Inserts new devices with their facts and tags, first and last seen at `now`, in one
    /// transaction with multi-row `INSERT`s: all of them or, on any error (invalid facts, a
    /// device id that already exists), none. For importing a fleet; first contact over the
    /// device API registers devices one by one instead.
    pub async fn insert_devices(
        &self,
        devices: &[(String, DeviceFacts)],
        now: i64,
    ) -> Result<(), DbError> {
        let mut rows = Vec::with_capacity(devices.len());
        let mut tags: Vec<(&str, &str)> = Vec::new();
        for (id, facts) in devices {
            check_text("device id", id)?;
            facts.validate()?;
            rows.push((
                id.as_str(),
                facts,
                json_text("slots", &facts.slots)?,
                json_text("attributes", &facts.attributes)?,
            ));
            let mut own: Vec<&str> = facts.tags.iter().map(String::as_str).collect();
            own.sort_unstable();
            own.dedup();
            tags.extend(own.into_iter().map(|t| (id.as_str(), t)));
        }
        let mut tx = self.begin_write().await?;
        for chunk in rows.chunks(DEVICE_ROWS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO devices (id, hardware_id, firmware_version, security_version, region, slots, attributes, first_seen, last_seen) VALUES ",
            );
            for i in 0..chunk.len() {
                let p = i * 8;
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4,
                    p + 5,
                    p + 6,
                    p + 7,
                    p + 8,
                    p + 8
                ));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, facts, slots, attributes) in chunk {
                q = q
                    .bind(*id)
                    .bind(facts.hardware_id.as_str())
                    .bind(facts.firmware_version.as_str())
                    .bind(facts.security_version as i64)
                    .bind(facts.region.as_str())
                    .bind(slots.as_str())
                    .bind(attributes.as_str())
                    .bind(now);
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in tags.chunks(TAG_ROWS_PER_INSERT) {
            let mut sql = String::from("INSERT INTO device_tags (device_id, tag) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (id, tag) in chunk {
                q = q.bind(*id).bind(*tag);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Bytes the database occupies. SQLite: the main file after a checkpoint that empties the
    /// write-ahead log (`page_count * page_size`, free pages included); PostgreSQL:
    /// `pg_database_size` of the current database (tables, indexes, TOAST, dead rows not yet
    /// vacuumed).
    pub async fn storage_bytes(&self) -> Result<u64, DbError> {
        let bytes: i64 = match self.backend {
            Backend::Sqlite => {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                    .execute(&mut *conn)
                    .await?;
                let pages: i64 = sqlx::query("PRAGMA page_count")
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)?;
                let page_size: i64 = sqlx::query("PRAGMA page_size")
                    .fetch_one(&mut *conn)
                    .await?
                    .try_get(0)?;
                pages * page_size
            }
            Backend::Postgres => sqlx::query("SELECT pg_database_size(current_database()) AS n")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        };
        Ok(bytes.max(0) as u64)
    }
}
