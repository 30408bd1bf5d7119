//! What the incident detectors read and keep (issue 16): their cursors (how far each signal
//! source was read, so a restart resumes there), the result reports they judge, passes gone
//! stale, the inventory's versions and slot hashes, engine heartbeats, and a device's
//! hardware-id change written with its security event and audit record. Schema:
//! `migrations/0011_incidents.sql` (heartbeats) and `migrations/0017_detectors.sql`.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::Db;
use crate::attestation::{SecurityEvent, insert_event};
use crate::audit::{AuditLine, insert_audit};
use crate::devices::{DeviceFacts, upsert_device_tx};
use crate::error::DbError;
use crate::sql::check_text;

/// Most rows one signal read returns.
pub const MAX_SIGNAL_READ: i64 = 5_000;

/// Where the reports detector stopped: the last report read, in (created, device, id) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCursor {
    pub created: i64,
    pub device_id: String,
    pub id: String,
}

/// A result report a detector judges, with what it needs around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSignal {
    pub device_id: String,
    pub id: String,
    pub status: String,
    pub created: i64,
    /// The device's stored hardware id.
    pub hardware_id: String,
    /// The release the report is about: its assignment's target, else the report's own
    /// `target` detail ('' when neither names one).
    pub release: String,
    /// The report's reason code (`reason` or `error` detail; '' when none).
    pub reason: String,
}

/// A device whose last passing quote went stale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleAttestation {
    pub device_id: String,
    pub hardware_id: String,
    pub verified_at: i64,
}

/// What a device says it runs: its version and slots (as stored).
#[derive(Debug, Clone, PartialEq)]
pub struct InventoryRow {
    pub device_id: String,
    pub firmware_version: String,
    pub slots: serde_json::Map<String, serde_json::Value>,
}

impl Db {
    /// A detector source's stored cursor (`None`: never read).
    pub async fn detector_cursor(&self, source: &str) -> Result<Option<String>, DbError> {
        let row = sqlx::query("SELECT position FROM detector_cursors WHERE source = $1")
            .bind(source)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("position")).transpose()?)
    }

    /// Stores a detector source's cursor.
    pub async fn save_detector_cursor(
        &self,
        source: &str,
        position: &str,
        now: i64,
    ) -> Result<(), DbError> {
        check_text("detector source", source)?;
        sqlx::query(
            "INSERT INTO detector_cursors (source, position, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (source) DO UPDATE SET position = $2, updated_at = $3",
        )
        .bind(source)
        .bind(position)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Reports with one of `statuses` after `after` and created at or before `until`, in
    /// (created, device, id) order, at most `limit`.
    pub async fn signal_reports(
        &self,
        statuses: &[&str],
        after: &ReportCursor,
        until: i64,
        limit: i64,
    ) -> Result<Vec<ReportSignal>, DbError> {
        let mut rows = Vec::new();
        // One indexed range per status, merged: the index leads with the status.
        for status in statuses {
            let found = sqlx::query(
                "SELECT r.device_id, r.id, r.status, r.created, r.details,
                        COALESCE(d.hardware_id, '') AS hardware_id, COALESCE(a.target, '') AS target
                 FROM reports r
                 LEFT JOIN devices d ON d.id = r.device_id
                 LEFT JOIN assignments a ON a.id = r.assignment
                 WHERE r.status = $1 AND r.created <= $2
                   AND (r.created > $3 OR (r.created = $3 AND (r.device_id > $4 OR (r.device_id = $4 AND r.id > $5))))
                 ORDER BY r.created, r.device_id, r.id LIMIT $6",
            )
            .bind(*status)
            .bind(until)
            .bind(after.created)
            .bind(&after.device_id)
            .bind(&after.id)
            .bind(limit.clamp(1, MAX_SIGNAL_READ))
            .fetch_all(&self.pool)
            .await?;
            for r in &found {
                let details: serde_json::Value =
                    serde_json::from_str(&r.try_get::<String, _>("details")?).unwrap_or_default();
                let text = |k: &str| details.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                let target: String = r.try_get("target")?;
                rows.push(ReportSignal {
                    device_id: r.try_get("device_id")?,
                    id: r.try_get("id")?,
                    status: r.try_get("status")?,
                    created: r.try_get("created")?,
                    hardware_id: r.try_get("hardware_id")?,
                    release: if target.is_empty() {
                        text("target").unwrap_or_default()
                    } else {
                        target
                    },
                    reason: text("reason").or_else(|| text("error")).unwrap_or_default(),
                });
            }
        }
        rows.sort_by(|a, b| {
            (a.created, &a.device_id, &a.id).cmp(&(b.created, &b.device_id, &b.id))
        });
        rows.truncate(usize::try_from(limit.clamp(1, MAX_SIGNAL_READ)).unwrap_or(0));
        Ok(rows)
    }

    /// Passing quotes verified within `[from, to]` and not renewed since (the device's last
    /// outcome is still that pass), oldest first, at most `limit`.
    pub async fn stale_attestations_between(
        &self,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<StaleAttestation>, DbError> {
        let rows = sqlx::query(
            "SELECT s.device_id, s.verified_at, COALESCE(d.hardware_id, '') AS hardware_id
             FROM attestation_states s LEFT JOIN devices d ON d.id = s.device_id
             WHERE s.outcome = 'passed' AND s.verified_at >= $1 AND s.verified_at <= $2
             ORDER BY s.verified_at, s.device_id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(limit.clamp(1, MAX_SIGNAL_READ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StaleAttestation {
                    device_id: r.try_get("device_id")?,
                    hardware_id: r.try_get("hardware_id")?,
                    verified_at: r.try_get("verified_at")?,
                })
            })
            .collect()
    }

    /// One page of the inventory's versions and slots, devices after `after_id` by id.
    pub async fn inventory_page(
        &self,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<InventoryRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, firmware_version, slots FROM devices WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit.clamp(1, MAX_SIGNAL_READ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(InventoryRow {
                    device_id: r.try_get("id")?,
                    firmware_version: r.try_get("firmware_version")?,
                    slots: serde_json::from_str(&r.try_get::<String, _>("slots")?)
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// The devices whose reported firmware (version or slots) changed at or after `since`
    /// (Unix seconds), oldest change first, at most `limit`; each with the time of its change.
    pub async fn firmware_changed_since(
        &self,
        since: i64,
        limit: i64,
    ) -> Result<Vec<(InventoryRow, i64)>, DbError> {
        let rows = sqlx::query(
            "SELECT id, firmware_version, slots, firmware_changed_at FROM devices
             WHERE firmware_changed_at >= $1 ORDER BY firmware_changed_at, id LIMIT $2",
        )
        .bind(since)
        .bind(limit.clamp(1, MAX_SIGNAL_READ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    InventoryRow {
                        device_id: r.try_get("id")?,
                        firmware_version: r.try_get("firmware_version")?,
                        slots: serde_json::from_str(&r.try_get::<String, _>("slots")?)
                            .unwrap_or_default(),
                    },
                    r.try_get("firmware_changed_at")?,
                ))
            })
            .collect()
    }

    /// Writes engines' heartbeats (engine, Unix seconds) in one transaction; a beat never
    /// moves back.
    pub async fn beat_engines(&self, beats: &[(String, i64)]) -> Result<(), DbError> {
        if beats.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (engine, at) in beats {
            check_text("engine", engine)?;
            sqlx::query(
                "INSERT INTO engine_heartbeats (engine, beat_at) VALUES ($1, $2)
                 ON CONFLICT (engine) DO UPDATE SET beat_at = $2 WHERE engine_heartbeats.beat_at < $2",
            )
            .bind(engine)
            .bind(*at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every engine's last heartbeat.
    pub async fn engine_heartbeats(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query("SELECT engine, beat_at FROM engine_heartbeats ORDER BY engine")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("engine")?, r.try_get("beat_at")?)))
            .collect()
    }

    /// Stores a device's facts whose hardware id differs from the stored one, together with
    /// the security event and audit record of the change, in one transaction: the new id is
    /// never stored without the event the hardware-id detector reads.
    pub async fn upsert_device_with_event(
        &self,
        id: &str,
        facts: &DeviceFacts,
        now: i64,
        event: &SecurityEvent,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("device id", id)?;
        facts.validate()?;
        let mut tx = self.begin_write().await?;
        upsert_device_tx(&mut tx, id, facts, now).await?;
        insert_event(&mut tx, event).await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Whether a revoked API token has this secret hash (asked only after authentication
    /// failed, to tell a revoked token's use from an unknown one).
    pub async fn revoked_token_by_secret(
        &self,
        secret_sha256: &str,
    ) -> Result<Option<String>, DbError> {
        let row =
            sqlx::query("SELECT id FROM api_tokens WHERE secret_sha256 = $1 AND revoked <> 0")
                .bind(secret_sha256)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }
}
