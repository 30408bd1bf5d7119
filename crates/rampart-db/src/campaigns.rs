//! Campaign storage: the campaign (its spec, plan and state machine state as JSON) and one row
//! per targeted device. Every step that changes what devices are told to install (a wave
//! starting, an abort, a fleet rollback) is written in one transaction with the campaign's
//! new state and its audit record, so a server that stops at any instant resumes exactly
//! where the database says it was.

use crate::error::DomainError;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::audit::{AuditLine, insert_audit};
use crate::sql::placeholders;
use crate::{Db, DbError};

/// Statuses in which a campaign holds its devices.
const ACTIVE: &str = "('running', 'awaiting_approval', 'paused')";
/// Outcomes that are final results (see rampart_rollout::report::Outcome).
const RESULTS: &str = "('succeeded', 'failed', 'rolled_back', 'verification_failed')";

/// The suffix of the assignment id a fleet rollback gives devices.
pub const ROLLBACK_SUFFIX: &str = ":rollback";

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    pub id: String,
    pub name: String,
    pub release_target: String,
    /// The operator's request (rampart_rollout::CampaignSpec).
    pub spec: serde_json::Value,
    /// Cumulative device counts per wave (empty before the start).
    pub plan: Vec<u64>,
    /// The rollout state (rampart_rollout::CampaignState).
    pub state: serde_json::Value,
    pub status: String,
    pub created: i64,
    pub created_by: String,
    pub updated: i64,
}

/// One device of a campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignDevice {
    pub device_id: String,
    pub position: i64,
    pub wave: i64,
    pub outcome: String,
    pub reason: String,
    pub previous_assignment: String,
    pub previous_target: String,
    pub assigned_at: Option<i64>,
    pub result_at: Option<i64>,
    pub rollback_outcome: String,
}

/// What the campaign logic needs about a candidate device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub id: String,
    pub hardware_id: String,
    pub region: String,
    pub firmware_version: String,
    pub tags: Vec<String>,
    pub attributes: serde_json::Map<String, serde_json::Value>,
    pub revoked: bool,
}

/// A campaign's new state, saved with whatever the step does to its devices.
#[derive(Debug, Clone)]
pub struct CampaignUpdate<'a> {
    pub id: &'a str,
    pub state: &'a serde_json::Value,
    pub status: &'a str,
    pub now: i64,
    /// Give the release to these devices (they must be waiting or held).
    pub assign: &'a [String],
    /// Mark these (waiting) devices as held back by conditions or windows.
    pub hold: &'a [String],
    /// Point every device that was given the release back (fleet rollback); `Some(target)`
    /// names the release, `None` uses each device's previous one.
    pub rollback: Option<Option<&'a str>>,
    /// Withdraw the release from devices that have not finished (abort).
    pub withdraw_unfinished: bool,
    /// How devices treat the assignment (forced, soft, download_only, timeforced).
    pub update_type: &'a str,
    /// For `timeforced`: when devices assigned in this step are forced (0 otherwise).
    pub forced_at: i64,
    pub audit: Option<&'a AuditLine>,
}

pub(crate) fn campaign_from_row(row: &AnyRow) -> Result<Campaign, DbError> {
    let json = |col: &str| -> Result<serde_json::Value, DbError> {
        serde_json::from_str(&row.try_get::<String, _>(col)?).map_err(|e| {
            DbError::Domain(DomainError::Invalid(format!(
                "stored campaign {col} is not JSON: {e}"
            )))
        })
    };
    Ok(Campaign {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        release_target: row.try_get("release_target")?,
        spec: json("spec")?,
        plan: serde_json::from_value(json("plan")?).map_err(|e| {
            DbError::Domain(DomainError::Invalid(format!("stored campaign plan: {e}")))
        })?,
        state: json("state")?,
        status: row.try_get("status")?,
        created: row.try_get("created")?,
        created_by: row.try_get("created_by")?,
        updated: row.try_get("updated")?,
    })
}

fn campaign_device_from_row(r: &AnyRow) -> Result<CampaignDevice, DbError> {
    Ok(CampaignDevice {
        device_id: r.try_get("device_id")?,
        position: r.try_get("position")?,
        wave: r.try_get("wave")?,
        outcome: r.try_get("outcome")?,
        reason: r.try_get("reason")?,
        previous_assignment: r.try_get("previous_assignment")?,
        previous_target: r.try_get("previous_target")?,
        assigned_at: r.try_get("assigned_at")?,
        result_at: r.try_get("result_at")?,
        rollback_outcome: r.try_get("rollback_outcome")?,
    })
}

impl Db {
    /// Stores a new (draft) campaign with its audit record.
    pub async fn create_campaign(&self, c: &Campaign, audit: &AuditLine) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO campaigns (id, name, release_target, spec, plan, state, status, created, created_by, updated)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&c.id)
        .bind(&c.name)
        .bind(&c.release_target)
        .bind(c.spec.to_string())
        .bind(serde_json::to_string(&c.plan).unwrap_or_else(|_| "[]".into()))
        .bind(c.state.to_string())
        .bind(&c.status)
        .bind(c.created)
        .bind(&c.created_by)
        .bind(c.updated)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn campaign(&self, id: &str) -> Result<Option<Campaign>, DbError> {
        let row = sqlx::query("SELECT * FROM campaigns WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(campaign_from_row).transpose()
    }

    /// Campaigns, newest first.
    pub async fn list_campaigns(&self, limit: i64) -> Result<Vec<Campaign>, DbError> {
        let rows = sqlx::query("SELECT * FROM campaigns ORDER BY created DESC, id LIMIT $1")
            .bind(limit.clamp(1, 10_000))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// Campaigns that are running, awaiting approval or paused.
    pub async fn active_campaigns(&self) -> Result<Vec<Campaign>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM campaigns WHERE status IN {ACTIVE} ORDER BY created, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// Every registered device with what campaign selection and policies look at; with
    /// `group`, only its members.
    pub async fn device_infos(&self, group: Option<&str>) -> Result<Vec<DeviceInfo>, DbError> {
        let (devices_sql, tags_sql) = match group {
            None => (
                "SELECT id, hardware_id, region, firmware_version, attributes, revoked FROM devices".to_string(),
                "SELECT device_id, tag FROM device_tags".to_string(),
            ),
            Some(_) => (
                "SELECT d.id AS id, d.hardware_id AS hardware_id, d.region AS region, d.firmware_version AS firmware_version,
                        d.attributes AS attributes, d.revoked AS revoked
                 FROM devices d JOIN group_members g ON g.device_id = d.id WHERE g.group_name = $1".to_string(),
                "SELECT t.device_id AS device_id, t.tag AS tag FROM device_tags t
                 JOIN group_members g ON g.device_id = t.device_id WHERE g.group_name = $1".to_string(),
            ),
        };
        if let Some(g) = group
            && self.group(g).await?.is_none()
        {
            return Err(DbError::Domain(DomainError::UnknownGroup(g.to_string())));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(devices_sql.as_str()));
        let mut t = sqlx::query(sqlx::AssertSqlSafe(tags_sql.as_str()));
        if let Some(g) = group {
            q = q.bind(g);
            t = t.bind(g);
        }
        let mut tags: HashMap<String, Vec<String>> = HashMap::new();
        for r in t.fetch_all(&self.pool).await? {
            tags.entry(r.try_get("device_id")?)
                .or_default()
                .push(r.try_get("tag")?);
        }
        q.fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                Ok(DeviceInfo {
                    tags: tags.remove(&id).unwrap_or_default(),
                    id,
                    hardware_id: r.try_get("hardware_id")?,
                    region: r.try_get("region")?,
                    firmware_version: r.try_get("firmware_version")?,
                    attributes: serde_json::from_str(&r.try_get::<String, _>("attributes")?)
                        .unwrap_or_default(),
                    revoked: r.try_get::<i64, _>("revoked")? != 0,
                })
            })
            .collect()
    }

    /// Starts a campaign: stores its devices (id, position, wave) and its state, refusing if
    /// any of them is held by another active campaign (nothing is written then).
    pub async fn start_campaign(
        &self,
        id: &str,
        devices: &[(String, i64, i64)],
        plan: &[u64],
        update: &CampaignUpdate<'_>,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        for chunk in devices.chunks(200) {
            let mut sql = String::from(
                "INSERT INTO campaign_devices (campaign_id, device_id, position, wave) VALUES ",
            );
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push_str(", ");
                }
                let b = i * 4;
                sql.push_str(&format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4));
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()));
            for (device, position, wave) in chunk {
                q = q.bind(id).bind(device).bind(*position).bind(*wave);
            }
            q.execute(&mut *tx).await?;
        }
        let conflict = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT o.campaign_id AS other, COUNT(*) AS n, MIN(o.device_id) AS example
             FROM campaign_devices m
             JOIN campaign_devices o ON o.device_id = m.device_id AND o.campaign_id <> m.campaign_id
             JOIN campaigns c ON c.id = o.campaign_id
             WHERE m.campaign_id = $1 AND c.status IN {ACTIVE}
             GROUP BY o.campaign_id ORDER BY o.campaign_id LIMIT 1"
        )))
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(r) = conflict {
            let other: String = r.try_get("other")?;
            let n: i64 = r.try_get("n")?;
            let example: String = r.try_get("example")?;
            tx.rollback().await?;
            return Err(DbError::Domain(DomainError::Conflict(format!(
                "{n} of this campaign's devices (e.g. {example:?}) are in active campaign {other:?}; a device follows one campaign at a time: finish, abort or narrow one of them"
            ))));
        }
        sqlx::query("UPDATE campaigns SET plan = $2 WHERE id = $1")
            .bind(id)
            .bind(serde_json::to_string(plan).unwrap_or_else(|_| "[]".into()))
            .execute(&mut *tx)
            .await?;
        apply_update(&mut tx, update).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Saves a campaign step (see [`CampaignUpdate`]) in one transaction.
    pub async fn update_campaign(&self, update: &CampaignUpdate<'_>) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        apply_update(&mut tx, update).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Devices of a wave per outcome; a device quarantined now counts under
    /// [`QUARANTINED_OUTCOME`] whatever it reported, so the gate counts it neither as a success
    /// nor as a failure (read at the time, so a released device counts again).
    pub async fn campaign_wave_counts(
        &self,
        id: &str,
        wave: i64,
    ) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT CASE WHEN q.device_id IS NULL THEN cd.outcome ELSE 'quarantined' END AS outcome, COUNT(*) AS n
             FROM campaign_devices cd LEFT JOIN device_quarantine q ON q.device_id = cd.device_id
             WHERE cd.campaign_id = $1 AND cd.wave = $2 GROUP BY 1",
        )
        .bind(id)
        .bind(wave)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("outcome")?, r.try_get("n")?)))
            .collect()
    }

    /// Devices of waves up to `wave` still waiting or held, with their attributes and the
    /// maintenance windows of their groups (JSON texts), at most `limit`. Quarantined devices
    /// are left out: they stay waiting, never given the release while quarantined.
    pub async fn campaign_pending(
        &self,
        id: &str,
        wave: i64,
        limit: i64,
    ) -> Result<
        Vec<(
            String,
            serde_json::Map<String, serde_json::Value>,
            Vec<String>,
        )>,
        DbError,
    > {
        let rows = sqlx::query(
            "SELECT cd.device_id AS device_id, d.attributes AS attributes
             FROM campaign_devices cd JOIN devices d ON d.id = cd.device_id
             WHERE cd.campaign_id = $1 AND cd.wave <= $2 AND cd.outcome IN ('waiting', 'held')
               AND NOT EXISTS (SELECT 1 FROM device_quarantine q WHERE q.device_id = cd.device_id)
             ORDER BY cd.position LIMIT $3",
        )
        .bind(id)
        .bind(wave)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let windows = sqlx::query(
            "SELECT cd.device_id AS device_id, g.maintenance_window AS window
             FROM campaign_devices cd
             JOIN group_members gm ON gm.device_id = cd.device_id
             JOIN device_groups g ON g.name = gm.group_name
             WHERE cd.campaign_id = $1 AND cd.wave <= $2 AND cd.outcome IN ('waiting', 'held')
               AND g.maintenance_window <> ''",
        )
        .bind(id)
        .bind(wave)
        .fetch_all(&self.pool)
        .await?;
        let mut by_device: HashMap<String, Vec<String>> = HashMap::new();
        for r in windows {
            by_device
                .entry(r.try_get("device_id")?)
                .or_default()
                .push(r.try_get("window")?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("device_id")?;
                let attributes = serde_json::from_str(&r.try_get::<String, _>("attributes")?)
                    .unwrap_or_default();
                let windows = by_device.remove(&id).unwrap_or_default();
                Ok((id, attributes, windows))
            })
            .collect()
    }

    /// Every device of a campaign, in its order.
    pub async fn campaign_devices(&self, id: &str) -> Result<Vec<CampaignDevice>, DbError> {
        let rows =
            sqlx::query("SELECT * FROM campaign_devices WHERE campaign_id = $1 ORDER BY position")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(campaign_device_from_row).collect()
    }

    /// Records what a device reported about a campaign's assignment (or its rollback
    /// assignment). A final result is not replaced by a later progress report. Returns whether
    /// a campaign device changed.
    pub async fn record_campaign_outcome(
        &self,
        device_id: &str,
        assignment: &str,
        outcome: &str,
        is_result: bool,
        reason: &str,
        now: i64,
    ) -> Result<bool, DbError> {
        let r = if let Some(campaign) = assignment.strip_suffix(ROLLBACK_SUFFIX) {
            sqlx::query(
                "UPDATE campaign_devices SET rollback_outcome = $3 WHERE campaign_id = $1 AND device_id = $2",
            )
            .bind(campaign)
            .bind(device_id)
            .bind(outcome)
            .execute(&self.pool)
            .await?
        } else {
            let guard = if is_result {
                String::new()
            } else {
                format!(" AND outcome NOT IN {RESULTS}")
            };
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE campaign_devices SET outcome = $3, reason = $4,
                     result_at = CASE WHEN $5 = 1 THEN $6 ELSE result_at END
                 WHERE campaign_id = $1 AND device_id = $2 AND outcome NOT IN ('waiting', 'held'){guard}"
            )))
            .bind(assignment)
            .bind(device_id)
            .bind(outcome)
            .bind(reason)
            .bind(i64::from(is_result))
            .bind(now)
            .execute(&self.pool)
            .await?
        };
        Ok(r.rows_affected() > 0)
    }

    /// Sets (or clears, with `None`) a group's maintenance window (JSON text).
    pub async fn set_group_window(
        &self,
        group: &str,
        window: Option<&str>,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE device_groups SET maintenance_window = $2 WHERE name = $1")
            .bind(group)
            .bind(window.unwrap_or(""))
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DbError::Domain(DomainError::UnknownGroup(
                group.to_string(),
            )));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A group's maintenance window (JSON text), if it has one.
    pub async fn group_window(&self, group: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT maintenance_window FROM device_groups WHERE name = $1")
            .bind(group)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| DbError::Domain(DomainError::UnknownGroup(group.to_string())))?;
        let w: String = row.try_get("maintenance_window")?;
        Ok((!w.is_empty()).then_some(w))
    }
}

async fn apply_update(
    tx: &mut Transaction<'_, Any>,
    u: &CampaignUpdate<'_>,
) -> Result<(), DbError> {
    let updated =
        sqlx::query("UPDATE campaigns SET state = $2, status = $3, updated = $4 WHERE id = $1")
            .bind(u.id)
            .bind(u.state.to_string())
            .bind(u.status)
            .bind(u.now)
            .execute(&mut **tx)
            .await?;
    if updated.rows_affected() == 0 {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "unknown campaign {:?}",
            u.id
        ))));
    }
    let release: String = sqlx::query("SELECT release_target FROM campaigns WHERE id = $1")
        .bind(u.id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("release_target")?;
    for chunk in u.assign.chunks(500) {
        let list = placeholders(3, chunk.len());
        // What each device was told before, for aborts and rollbacks.
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE campaign_devices SET outcome = 'assigned', assigned_at = $2,
                 previous_assignment = COALESCE((SELECT a.assignment_id FROM device_assignments a WHERE a.device_id = campaign_devices.device_id), ''),
                 previous_target = COALESCE((SELECT a.target FROM device_assignments a WHERE a.device_id = campaign_devices.device_id), '')
             WHERE campaign_id = $1 AND outcome IN ('waiting', 'held') AND device_id IN ({list})"
        )))
        .bind(u.id)
        .bind(u.now);
        for d in chunk {
            q = q.bind(d);
        }
        q.execute(&mut **tx).await?;
        let list = placeholders(6, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO device_assignments (device_id, assignment_id, target, version, updated, update_type, forced_at)
             SELECT device_id, campaign_id, $2, 1, $3, $4, $5 FROM campaign_devices
             WHERE campaign_id = $1 AND assigned_at = $3 AND outcome = 'assigned' AND device_id IN ({list})
             ON CONFLICT (device_id) DO UPDATE SET assignment_id = excluded.assignment_id,
                 target = excluded.target, version = device_assignments.version + 1,
                 updated = excluded.updated, update_type = excluded.update_type,
                 forced_at = excluded.forced_at, reimage = 0"
        )))
        .bind(u.id)
        .bind(&release)
        .bind(u.now)
        .bind(u.update_type)
        .bind(u.forced_at);
        for d in chunk {
            q = q.bind(d);
        }
        q.execute(&mut **tx).await?;
    }
    for chunk in u.hold.chunks(500) {
        let list = placeholders(2, chunk.len());
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE campaign_devices SET outcome = 'held' WHERE campaign_id = $1 AND outcome = 'waiting' AND device_id IN ({list})"
        )))
        .bind(u.id);
        for d in chunk {
            q = q.bind(d);
        }
        q.execute(&mut **tx).await?;
    }
    if u.withdraw_unfinished {
        // Back to what they were told before; only devices still pointing at this campaign.
        sqlx::query(
            "UPDATE device_assignments SET
                 assignment_id = (SELECT cd.previous_assignment FROM campaign_devices cd WHERE cd.campaign_id = $1 AND cd.device_id = device_assignments.device_id),
                 target = (SELECT cd.previous_target FROM campaign_devices cd WHERE cd.campaign_id = $1 AND cd.device_id = device_assignments.device_id),
                 version = version + 1, updated = $2, update_type = 'forced', forced_at = 0, reimage = 0
             WHERE assignment_id = $1 AND device_id IN
                 (SELECT device_id FROM campaign_devices WHERE campaign_id = $1 AND outcome IN ('assigned', 'in_progress'))",
        )
        .bind(u.id)
        .bind(u.now)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE campaign_devices SET outcome = 'cancelled' WHERE campaign_id = $1 AND outcome IN ('assigned', 'in_progress')",
        )
        .bind(u.id)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(target) = u.rollback {
        let rollback_id = format!("{}{ROLLBACK_SUFFIX}", u.id);
        // Every device that was given the release and still points at it.
        let target_sql = match target {
            Some(_) => "$4",
            None => {
                "(SELECT cd.previous_target FROM campaign_devices cd WHERE cd.campaign_id = $1 AND cd.device_id = device_assignments.device_id)"
            }
        };
        let sql = format!(
            "UPDATE device_assignments SET assignment_id = $3, target = {target_sql},
                 version = version + 1, updated = $2, update_type = 'forced', forced_at = 0, reimage = 0
             WHERE assignment_id = $1"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(u.id)
            .bind(u.now)
            .bind(&rollback_id);
        if let Some(t) = target {
            q = q.bind(t);
        }
        q.execute(&mut **tx).await?;
        // Devices whose previous release is unknown are told to install nothing.
        sqlx::query(
            "UPDATE device_assignments SET assignment_id = '' WHERE assignment_id = $1 AND target = ''",
        )
        .bind(&rollback_id)
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "UPDATE campaign_devices SET rollback_outcome = 'assigned'
             WHERE campaign_id = $1 AND outcome NOT IN ('waiting', 'held', 'cancelled')",
        )
        .bind(u.id)
        .execute(&mut **tx)
        .await?;
    }
    if let Some(audit) = u.audit {
        insert_audit(tx, audit).await?;
    }
    Ok(())
}
