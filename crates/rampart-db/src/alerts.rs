//! High-priority alerts: the alert outbox every sink is fed from, each dedupe key's window, and
//! the incident data an alert carries. Schema: `migrations/0015_alerts.sql`.
//!
//! [`Db::queue_alert`] decides, in one transaction with what it stores, whether an alert goes
//! out now (one `alert_deliveries` row per sink) or waits for the end of its key's dedupe window
//! (held in `alert_keys`, replaced by newer alerts of the key and counted); [`Db::release_held_alerts`]
//! sends what waited as one update. Sinks claim their due rows with a lease and record each
//! attempt; the retry policy is the server's, this module only stores what it decides.

use rampart_incident::alert::{
    Alert, AlertIncident, AlertTimelineEntry, Dedupe, EvidenceHash, MAX_ALERT_DEVICES,
    MAX_ALERT_EVIDENCE, MAX_ALERT_TIMELINE, dedupe,
};
use rampart_incident::model::{Detector, IncidentState, Severity};
use sqlx::Row;

use crate::error::DomainError;
use crate::sql::check_text;
use crate::{Db, DbError};

/// The syslog sink's name in the outbox.
pub const ALERT_SINK_SYSLOG: &str = "syslog";
/// The handoff to the signed-webhook outbox.
pub const ALERT_SINK_WEBHOOKS: &str = "webhooks";
/// The webhook event alerts travel as.
pub const INCIDENT_ALERT_EVENT: &str = "incident.alert";
/// Largest stored alert, bytes (alerts are bounded far below this).
pub const MAX_ALERT_BODY: usize = 64 * 1024;
/// Pending alerts one sink may accumulate; beyond, new ones for it are refused with an error
/// (the alert engine logs it and the sink is failing anyway).
pub const MAX_PENDING_PER_SINK: i64 = 10_000;
/// Most alerts one claim returns.
const MAX_ALERT_CLAIM: i64 = 100;
/// Longest stored `last_error`, bytes.
const MAX_ERROR_TEXT: usize = 512;

/// What [`Db::queue_alert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertQueued {
    /// Queued for its sinks now (`update`: its key went out before).
    Sent { update: bool },
    /// Held until the key's window ends (Unix milliseconds), with `repeats` alerts folded in.
    Held { due_ms: i64, repeats: u32 },
    /// This alert id was queued before (an executor that stopped half-way runs it again).
    AlreadyQueued,
}

/// A claimed alert delivery: everything one attempt needs.
#[derive(Debug, Clone)]
pub struct ClaimedAlert {
    pub id: String,
    pub alert_id: String,
    pub sink: String,
    /// The alert's JSON.
    pub body: String,
    /// Attempts including this one.
    pub attempts: u32,
    /// Unix seconds.
    pub created: i64,
}

/// How one attempt ended, as the sink decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertAttempt {
    Delivered { at: i64 },
    Retry { next_attempt_ms: i64, error: String },
    GaveUp { at: i64, error: String },
}

/// What a sink's outbox holds, for judging whether it keeps failing (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertSinkStats {
    /// The sink: `syslog`, or `webhook:ID` for one webhook's `incident.alert` deliveries.
    pub sink: String,
    pub oldest_pending: Option<i64>,
    /// Failed attempts of the undelivered alert that failed most (a pending delivery's
    /// attempts all failed, but for one in flight).
    pub failed_attempts: u32,
    pub last_delivered: Option<i64>,
    pub last_given_up: Option<i64>,
}

fn invalid(message: String) -> DbError {
    DbError::Domain(DomainError::Invalid(message))
}

fn alert_json(alert: &Alert) -> Result<String, DbError> {
    let body = serde_json::to_string(alert)
        .map_err(|e| invalid(format!("the alert does not serialise: {e}")))?;
    if body.len() > MAX_ALERT_BODY {
        return Err(invalid(format!(
            "the alert is {} bytes; at most {MAX_ALERT_BODY} are stored (bound it with Alert::bounded)",
            body.len()
        )));
    }
    Ok(body)
}

fn error_text(error: &str) -> String {
    crate::sql::bounded_text(error, MAX_ERROR_TEXT)
}

fn positive(v: Option<i64>) -> Option<i64> {
    v.filter(|v| *v > 0)
}

async fn insert_deliveries(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    alert: &Alert,
    body: &str,
    sinks: &[String],
    now_ms: i64,
) -> Result<(), DbError> {
    for sink in sinks {
        check_text("alert sink", sink)?;
        let pending: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM alert_deliveries WHERE sink = $1 AND status = 'pending'",
        )
        .bind(sink)
        .fetch_one(&mut **tx)
        .await?
        .try_get("n")?;
        if pending >= MAX_PENDING_PER_SINK {
            return Err(invalid(format!(
                "the alert sink {sink} has {pending} undelivered alerts; fix the sink (see `rampart_alert_delivery_failures_total`) before more are queued"
            )));
        }
        sqlx::query(
            "INSERT INTO alert_deliveries (id, alert_id, sink, dedupe_key, severity, body, next_attempt, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(format!("{}/{sink}", alert.id))
        .bind(&alert.id)
        .bind(sink)
        .bind(&alert.dedupe_key)
        .bind(alert.severity.as_str())
        .bind(body)
        .bind(now_ms)
        .bind(alert.created)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Db {
    /// Queues `alert` for `sinks` through its key's dedupe window (`window_ms`), in one
    /// transaction: sent now if the key has not gone out within the window (as an update if it
    /// went out before), else held until the window ends, replacing an alert already held for
    /// the key (the count of folded repeats goes up, the sinks are merged).
    pub async fn queue_alert(
        &self,
        alert: &Alert,
        sinks: &[String],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<AlertQueued, DbError> {
        check_text("alert id", &alert.id)?;
        check_text("alert dedupe key", &alert.dedupe_key)?;
        let mut tx = self.begin_write().await?;
        let seen = sqlx::query(
            "SELECT 1 AS seen FROM alert_deliveries WHERE alert_id = $1
             UNION ALL SELECT 1 AS seen FROM alert_keys WHERE held_id = $1",
        )
        .bind(&alert.id)
        .fetch_optional(&mut *tx)
        .await?;
        if seen.is_some() {
            return Ok(AlertQueued::AlreadyQueued);
        }
        let key = sqlx::query(
            "SELECT last_sent_ms, held_id, held_repeats, held_sinks FROM alert_keys WHERE dedupe_key = $1",
        )
        .bind(&alert.dedupe_key)
        .fetch_optional(&mut *tx)
        .await?;
        let last_sent: Option<i64> = key
            .as_ref()
            .map(|r| r.try_get("last_sent_ms"))
            .transpose()?;
        let outcome = match dedupe(last_sent, now_ms, window_ms) {
            Dedupe::SendNow { update } => {
                let mut alert = alert.clone();
                alert.update = update;
                let body = alert_json(&alert)?;
                insert_deliveries(&mut tx, &alert, &body, sinks, now_ms).await?;
                sqlx::query(
                    "INSERT INTO alert_keys (dedupe_key, last_sent_ms) VALUES ($1, $2)
                     ON CONFLICT (dedupe_key) DO UPDATE SET last_sent_ms = $2",
                )
                .bind(&alert.dedupe_key)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                AlertQueued::Sent { update }
            }
            Dedupe::HoldUntil(due_ms) => {
                // `key` exists: only a key sent before is held.
                let (held_id, repeats, held_sinks): (String, i64, String) = match &key {
                    Some(r) => (
                        r.try_get("held_id")?,
                        r.try_get("held_repeats")?,
                        r.try_get("held_sinks")?,
                    ),
                    None => (String::new(), 0, "[]".into()),
                };
                let mut merged: Vec<String> = serde_json::from_str(&held_sinks).unwrap_or_default();
                for sink in sinks {
                    if !merged.contains(sink) {
                        merged.push(sink.clone());
                    }
                }
                // The held alert stands for itself and every alert it replaced.
                let repeats = if held_id.is_empty() { 0 } else { repeats + 1 };
                sqlx::query(
                    "UPDATE alert_keys SET held_id = $2, held_alert = $3, held_repeats = $4, held_sinks = $5, due_ms = $6
                     WHERE dedupe_key = $1",
                )
                .bind(&alert.dedupe_key)
                .bind(&alert.id)
                .bind(alert_json(alert)?)
                .bind(repeats)
                .bind(serde_json::to_string(&merged).unwrap_or_else(|_| "[]".into()))
                .bind(due_ms)
                .execute(&mut *tx)
                .await?;
                AlertQueued::Held {
                    due_ms,
                    repeats: u32::try_from(repeats).unwrap_or(u32::MAX),
                }
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// Sends every held alert whose window has ended as one update (with the count of alerts
    /// it stands for), in one transaction each; returns the ids sent.
    pub async fn release_held_alerts(&self, now_ms: i64) -> Result<Vec<String>, DbError> {
        let due = sqlx::query(
            "SELECT dedupe_key FROM alert_keys WHERE held_id <> '' AND due_ms <= $1 ORDER BY due_ms LIMIT 100",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        let mut sent = Vec::with_capacity(due.len());
        for row in &due {
            let key: String = row.try_get("dedupe_key")?;
            let mut tx = self.begin_write().await?;
            let Some(held) = sqlx::query(
                "SELECT held_id, held_alert, held_repeats, held_sinks FROM alert_keys
                 WHERE dedupe_key = $1 AND held_id <> '' AND due_ms <= $2",
            )
            .bind(&key)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?
            else {
                continue; // another server sent it
            };
            let text: String = held.try_get("held_alert")?;
            let mut alert: Alert = serde_json::from_str(&text)
                .map_err(|e| invalid(format!("the held alert of {key:?} does not parse: {e}")))?;
            alert.update = true;
            alert.repeats = u32::try_from(held.try_get::<i64, _>("held_repeats")?).unwrap_or(0);
            let sinks: Vec<String> =
                serde_json::from_str(&held.try_get::<String, _>("held_sinks")?).unwrap_or_default();
            insert_deliveries(&mut tx, &alert, &alert_json(&alert)?, &sinks, now_ms).await?;
            sqlx::query(
                "UPDATE alert_keys SET last_sent_ms = $2, held_id = '', held_alert = '', held_repeats = 0, held_sinks = '[]', due_ms = 0
                 WHERE dedupe_key = $1",
            )
            .bind(&key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            sent.push(alert.id);
        }
        Ok(sent)
    }

    /// Claims up to `limit` due pending alerts of `sink`, oldest due first: each one's attempt
    /// count goes up and its due time moves to `lease_until_ms`, so no one claims it again while
    /// the attempt runs, and a crashed server's claim runs out.
    pub async fn claim_alert_deliveries(
        &self,
        sink: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedAlert>, DbError> {
        let due = sqlx::query(
            "SELECT id, alert_id, sink, body, attempts, next_attempt, created FROM alert_deliveries
             WHERE sink = $1 AND status = 'pending' AND next_attempt <= $2
             ORDER BY next_attempt, id LIMIT $3",
        )
        .bind(sink)
        .bind(now_ms)
        .bind(limit.clamp(1, MAX_ALERT_CLAIM))
        .fetch_all(&self.pool)
        .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = Vec::with_capacity(due.len());
        let mut tx = self.begin_write().await?;
        for row in &due {
            let id: String = row.try_get("id")?;
            let r = sqlx::query(
                "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt = $2
                 WHERE id = $1 AND status = 'pending' AND next_attempt = $3",
            )
            .bind(&id)
            .bind(lease_until_ms)
            .bind(row.try_get::<i64, _>("next_attempt")?)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() != 1 {
                continue; // another server took it
            }
            let attempts = row.try_get::<i64, _>("attempts")?.max(0).saturating_add(1);
            claimed.push(ClaimedAlert {
                id,
                alert_id: row.try_get("alert_id")?,
                sink: row.try_get("sink")?,
                body: row.try_get("body")?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                created: row.try_get("created")?,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records how a claimed alert's attempt ended; false if it was no longer pending.
    pub async fn record_alert_attempt(
        &self,
        id: &str,
        outcome: &AlertAttempt,
    ) -> Result<bool, DbError> {
        let (status, next_ms, error, settled) = match outcome {
            AlertAttempt::Delivered { at } => ("delivered", -1, String::new(), *at),
            AlertAttempt::Retry {
                next_attempt_ms,
                error,
            } => ("pending", *next_attempt_ms, error_text(error), 0),
            AlertAttempt::GaveUp { at, error } => ("failed", -1, error_text(error), *at),
        };
        let r = sqlx::query(
            "UPDATE alert_deliveries
             SET status = $2, next_attempt = CASE WHEN $3 >= 0 THEN $3 ELSE next_attempt END,
                 last_error = $4, settled = $5
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(status)
        .bind(next_ms)
        .bind(error)
        .bind(settled)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// What the outbox holds about `sink` (see [`AlertSinkStats`]).
    pub async fn alert_sink_stats(&self, sink: &str) -> Result<AlertSinkStats, DbError> {
        let row = sqlx::query(
            "SELECT
               (SELECT MIN(created) FROM alert_deliveries WHERE sink = $1 AND status = 'pending') AS oldest,
               (SELECT MAX(attempts) FROM alert_deliveries WHERE sink = $1 AND status = 'pending') AS attempts,
               (SELECT MAX(settled) FROM alert_deliveries WHERE sink = $1 AND status = 'delivered') AS delivered,
               (SELECT MAX(settled) FROM alert_deliveries WHERE sink = $1 AND status = 'failed') AS given_up",
        )
        .bind(sink)
        .fetch_one(&self.pool)
        .await?;
        Ok(AlertSinkStats {
            sink: sink.to_owned(),
            oldest_pending: row.try_get("oldest")?,
            failed_attempts: u32::try_from(row.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0))
                .unwrap_or(u32::MAX),
            last_delivered: positive(row.try_get("delivered")?),
            last_given_up: positive(row.try_get("given_up")?),
        })
    }

    /// The same for each enabled webhook's `incident.alert` deliveries (sink `webhook:ID`); a
    /// failed delivery counts as given up when it was created (the table keeps no settle time
    /// for failures). A disabled webhook is not judged: its deliveries wait on purpose.
    pub async fn webhook_alert_stats(&self) -> Result<Vec<AlertSinkStats>, DbError> {
        let rows = sqlx::query(
            "SELECT d.webhook_id AS webhook_id,
               MIN(CASE WHEN d.status = 'pending' THEN d.created END) AS oldest,
               MAX(CASE WHEN d.status = 'pending' THEN d.attempts END) AS attempts,
               MAX(CASE WHEN d.status = 'delivered' THEN d.delivered END) AS delivered,
               MAX(CASE WHEN d.status = 'failed' THEN d.created END) AS given_up
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.event = $1 AND w.enabled = 1
             GROUP BY d.webhook_id ORDER BY d.webhook_id",
        )
        .bind(INCIDENT_ALERT_EVENT)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AlertSinkStats {
                    sink: format!("webhook:{}", row.try_get::<String, _>("webhook_id")?),
                    oldest_pending: row.try_get("oldest")?,
                    failed_attempts: u32::try_from(
                        row.try_get::<Option<i64>, _>("attempts")?.unwrap_or(0),
                    )
                    .unwrap_or(u32::MAX),
                    last_delivered: positive(row.try_get("delivered")?),
                    last_given_up: positive(row.try_get("given_up")?),
                })
            })
            .collect()
    }

    /// Deletes settled alert deliveries created before `before` (Unix seconds).
    pub async fn prune_alert_deliveries(&self, before: i64) -> Result<u64, DbError> {
        let r =
            sqlx::query("DELETE FROM alert_deliveries WHERE status <> 'pending' AND created < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected())
    }

    /// The alert deliveries of one alert, as `(sink, status, attempts)`.
    pub async fn alert_deliveries(
        &self,
        alert_id: &str,
    ) -> Result<Vec<(String, String, u32)>, DbError> {
        let rows = sqlx::query(
            "SELECT sink, status, attempts FROM alert_deliveries WHERE alert_id = $1 ORDER BY sink",
        )
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("sink")?,
                    r.try_get("status")?,
                    u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(0),
                ))
            })
            .collect()
    }

    /// An incident as an alert carries it, with its severity and cause (the alert's dedupe
    /// key): bounded lists of devices, evidence hashes (from its `evidence_stored` timeline
    /// entries' `sha256`) and the newest timeline entries, each with its full count. `None` if
    /// there is no such incident.
    pub async fn alert_incident(
        &self,
        incident_id: &str,
    ) -> Result<Option<(AlertIncident, Severity, String)>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT id, title, detector, state, severity, cause, release, detected_at FROM incidents WHERE id = $1",
        )
        .bind(incident_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let stored = |what: &str, value: String| {
            invalid(format!(
                "incident {incident_id} has an unknown stored {what} {value:?}"
            ))
        };
        let detector: String = row.try_get("detector")?;
        let detector = Detector::parse(&detector).ok_or_else(|| stored("detector", detector))?;
        let state: String = row.try_get("state")?;
        let state = IncidentState::parse(&state).ok_or_else(|| stored("state", state))?;
        let severity: String = row.try_get("severity")?;
        let severity = Severity::parse(&severity).ok_or_else(|| stored("severity", severity))?;
        let count = |sql: &'static str| async move {
            let n: i64 = sqlx::query(sql)
                .bind(incident_id)
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
            Ok::<u64, DbError>(u64::try_from(n).unwrap_or(0))
        };
        let devices = sqlx::query(
            "SELECT device_id FROM incident_devices WHERE incident_id = $1
             ORDER BY joined_at, device_id LIMIT $2",
        )
        .bind(incident_id)
        .bind(MAX_ALERT_DEVICES as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get("device_id"))
        .collect::<Result<Vec<String>, _>>()?;
        let evidence = sqlx::query(
            "SELECT device_id, detail FROM incident_timeline WHERE incident_id = $1 AND kind = 'evidence_stored'
             ORDER BY audit_seq DESC LIMIT $2",
        )
        .bind(incident_id)
        .bind(MAX_ALERT_EVIDENCE as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let detail: String = r.try_get("detail")?;
            let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
            Ok(EvidenceHash {
                device_id: r.try_get("device_id")?,
                sha256: detail["sha256"].as_str().unwrap_or_default().to_owned(),
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
        let mut timeline = sqlx::query(
            "SELECT audit_seq, at, kind, actor, device_id FROM incident_timeline WHERE incident_id = $1
             ORDER BY audit_seq DESC LIMIT $2",
        )
        .bind(incident_id)
        .bind(MAX_ALERT_TIMELINE as i64)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(AlertTimelineEntry {
                audit_seq: u64::try_from(r.try_get::<i64, _>("audit_seq")?).unwrap_or(0),
                at: r.try_get("at")?,
                kind: r.try_get("kind")?,
                actor: r.try_get("actor")?,
                device_id: r.try_get("device_id")?,
            })
        })
        .collect::<Result<Vec<_>, DbError>>()?;
        timeline.reverse();
        let incident = AlertIncident {
            id: row.try_get("id")?,
            title: row.try_get("title")?,
            detector,
            state,
            release: row.try_get("release")?,
            detected_at: row.try_get("detected_at")?,
            devices,
            device_count: count(
                "SELECT COUNT(*) AS n FROM incident_devices WHERE incident_id = $1",
            )
            .await?,
            evidence,
            evidence_count: count(
                "SELECT COUNT(*) AS n FROM incident_timeline WHERE incident_id = $1 AND kind = 'evidence_stored'",
            )
            .await?,
            timeline,
            timeline_count: count(
                "SELECT COUNT(*) AS n FROM incident_timeline WHERE incident_id = $1",
            )
            .await?,
        };
        Ok(Some((incident, severity, row.try_get("cause")?)))
    }
}
