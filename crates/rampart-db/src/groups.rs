//! Device groups and their members.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::Db;
use crate::audit::{AuditLine, insert_audit};
use crate::error::DbError;
use crate::sql::check_text;

/// An operator-managed group of devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub description: String,
    pub created: i64,
    pub members: i64,
}

impl Db {
    /// Creates a group; false if one of that name exists.
    pub async fn create_group(
        &self,
        name: &str,
        description: &str,
        now: i64,
        audit: &AuditLine,
    ) -> Result<bool, DbError> {
        check_text("group name", name)?;
        check_text("group description", description)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO device_groups (name, description, created) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a group (not its devices); false if there is none of that name.
    pub async fn delete_group(&self, name: &str, audit: &AuditLine) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM group_members WHERE group_name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM device_groups WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn group(&self, name: &str) -> Result<Option<Group>, DbError> {
        Ok(self
            .list_groups()
            .await?
            .into_iter()
            .find(|g| g.name == name))
    }

    pub async fn list_groups(&self) -> Result<Vec<Group>, DbError> {
        let rows = sqlx::query(
            "SELECT g.name, g.description, g.created,
                    (SELECT COUNT(*) FROM group_members m WHERE m.group_name = g.name) AS members
             FROM device_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Group {
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    created: r.try_get("created")?,
                    members: r.try_get("members")?,
                })
            })
            .collect()
    }

    /// Adds `add` to and removes `remove` from a group, in one transaction with its audit
    /// record. The group and every added device must exist, else nothing changes.
    pub async fn change_group_members(
        &self,
        group: &str,
        add: &[String],
        remove: &[String],
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 AS one FROM device_groups WHERE name = $1")
            .bind(group)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Err(DbError::UnknownGroup(group.to_string()));
        }
        for id in add {
            if sqlx::query("SELECT 1 AS one FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .is_none()
            {
                return Err(DbError::UnknownDevice(id.clone()));
            }
            sqlx::query(
                "INSERT INTO group_members (group_name, device_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(group)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        for id in remove {
            sqlx::query("DELETE FROM group_members WHERE group_name = $1 AND device_id = $2")
                .bind(group)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Ids of the devices in a group, ordered.
    pub async fn group_device_ids(&self, group: &str) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT device_id FROM group_members WHERE group_name = $1 ORDER BY device_id",
        )
        .bind(group)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("device_id").map_err(DbError::from))
            .collect()
    }

    // ---- assignments -----------------------------------------------------------------------
}
