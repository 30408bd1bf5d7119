//! Webhooks: the endpoints operators register, and the outbox of deliveries to them.
//!
//! An event is queued as one `webhook_deliveries` row per subscribed, enabled webhook, all in one
//! transaction, so a queued alert survives a restart and either every subscriber gets it or none
//! does. The dispatcher (in the server) claims due rows with a lease, POSTs them and records each
//! attempt's outcome here; the retry policy (backoff, maximum attempts) is the caller's, this
//! module only stores what it decides. Every input is bounded: URL length and scheme, secret
//! length, the number of webhooks, the event names, body size and the pending rows per webhook.

use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::sql::check_text;
use crate::{AuditLine, Backend, Db, DbError};

/// The events a webhook may subscribe to (their wire names).
pub const WEBHOOK_EVENTS: [&str; 7] = [
    "campaign.gate_breach",
    "campaign.halted",
    "campaign.completed",
    "fleet.rollback_spike",
    "device.verification_failed",
    crate::alerts::INCIDENT_ALERT_EVENT,
    RISK_ADVISORY_EVENT,
];
/// The webhook event of a new advisory affecting devices (queued by the risk watch's pass,
/// `risk_exposure`).
pub const RISK_ADVISORY_EVENT: &str = "risk.advisory";
/// Most webhooks one server keeps (each event fans out to all of them in one transaction).
pub const MAX_WEBHOOKS: i64 = 100;
/// Longest webhook URL, bytes.
pub const MAX_WEBHOOK_URL: usize = 2048;
/// Shortest webhook secret, bytes: an HMAC key much shorter than this is guessable.
pub const MIN_WEBHOOK_SECRET: usize = 16;
/// Longest webhook secret, bytes.
pub const MAX_WEBHOOK_SECRET: usize = 256;
/// Largest delivery body, bytes.
pub const MAX_WEBHOOK_BODY: usize = 64 * 1024;
/// Pending deliveries one webhook may accumulate; beyond, new events for it are dropped (and
/// counted), so an endpoint that is down for days cannot grow the outbox without bound.
pub const MAX_PENDING_PER_WEBHOOK: i64 = 10_000;
/// Most deliveries one claim returns.
pub const MAX_DELIVERY_CLAIM: i64 = 100;
/// Longest stored `last_error`, bytes.
const MAX_ERROR_TEXT: usize = 512;
/// Longest stored (sealed) secret, bytes: a [`MAX_WEBHOOK_SECRET`]-byte secret sealed and
/// hex-encoded with its nonce and tag takes well under this.
const MAX_STORED_SECRET: usize = 2048;
/// Longest secrets-key id, bytes.
const MAX_SECRET_KEY_ID: usize = 64;

/// A webhook secret as stored: sealed by the server with its secrets key, whose id is kept
/// beside it (so a wrong key is named, not guessed). An empty `key_id` marks a secret stored in
/// clear by a server from before secrets were sealed (migration 0008); the server seals those
/// when it starts. This crate never sees a key and never opens a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSecret {
    /// The id of the key that sealed `value`; empty for a legacy secret in clear.
    pub key_id: String,
    /// The sealed secret (the server's encoding).
    pub value: String,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl StoredSecret {
    /// Checks a sealed secret's bounds: a key id of hex digits and a bounded value. A secret in
    /// clear (no key id) is refused: new secrets are always stored sealed.
    pub fn validate(&self) -> Result<(), DbError> {
        if self.key_id.is_empty()
            || self.key_id.len() > MAX_SECRET_KEY_ID
            || !self.key_id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(DbError::Domain(DomainError::Invalid(
                "a webhook secret is stored only sealed, with the hex id of the key that sealed it"
                    .into(),
            )));
        }
        if self.value.is_empty()
            || self.value.len() > MAX_STORED_SECRET
            || self.value.chars().any(char::is_control)
        {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "a sealed webhook secret must be 1 to {MAX_STORED_SECRET} bytes without control characters"
            ))));
        }
        Ok(())
    }
}

/// A registered webhook, as shown to operators: its secret is deliberately not a field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    /// Event names it receives, from [`WEBHOOK_EVENTS`].
    pub events: Vec<String>,
    pub description: String,
    pub created: i64,
    pub enabled: bool,
}

/// A webhook to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewWebhook {
    pub id: String,
    pub url: String,
    /// The HMAC-SHA256 key the deliveries are signed with, sealed by the server.
    pub secret: StoredSecret,
    pub events: Vec<String>,
    pub description: String,
    pub created: i64,
}

impl std::fmt::Debug for NewWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewWebhook")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("description", &self.description)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Checks a webhook URL's bounds: at most [`MAX_WEBHOOK_URL`] bytes, `http://` or `https://`,
/// something after the scheme, no spaces or control characters. (The server parses it fully.)
pub fn check_webhook_url(url: &str) -> Result<(), DbError> {
    if url.len() > MAX_WEBHOOK_URL {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "the webhook url is {} bytes; at most {MAX_WEBHOOK_URL} are accepted",
            url.len()
        ))));
    }
    // The scheme is case-insensitive; `get` cannot split a multi-byte character.
    let after = |scheme: &str| {
        url.get(..scheme.len())
            .filter(|prefix| prefix.eq_ignore_ascii_case(scheme))
            .and_then(|_| url.get(scheme.len()..))
    };
    let Some(rest) = after("https://").or_else(|| after("http://")) else {
        return Err(DbError::Domain(DomainError::Invalid(
            "the webhook url must start with https:// (or http://)".into(),
        )));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(DbError::Domain(DomainError::Invalid(
            "the webhook url has no host, e.g. https://alerts.example.com/rampart".into(),
        )));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(DbError::Domain(DomainError::Invalid(
            "the webhook url must not contain spaces or control characters (percent-encode them)"
                .into(),
        )));
    }
    Ok(())
}

/// Checks a webhook secret's length ([`MIN_WEBHOOK_SECRET`]..=[`MAX_WEBHOOK_SECRET`] bytes) and
/// characters (no control characters). The message never repeats the secret.
pub fn check_webhook_secret(secret: &str) -> Result<(), DbError> {
    if !(MIN_WEBHOOK_SECRET..=MAX_WEBHOOK_SECRET).contains(&secret.len()) {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "the webhook secret is {} bytes; use {MIN_WEBHOOK_SECRET} to {MAX_WEBHOOK_SECRET} (e.g. 32 random bytes, hex-encoded)",
            secret.len()
        ))));
    }
    if secret.chars().any(char::is_control) {
        return Err(DbError::Domain(DomainError::Invalid(
            "the webhook secret must not contain control characters".into(),
        )));
    }
    Ok(())
}

/// Checks a subscription list: 1 or more names from [`WEBHOOK_EVENTS`]; returns it without
/// repeats, in the given order.
pub fn check_webhook_events(events: &[String]) -> Result<Vec<String>, DbError> {
    if events.is_empty() {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "a webhook needs at least one event, from: {}",
            WEBHOOK_EVENTS.join(", ")
        ))));
    }
    let mut out: Vec<String> = Vec::new();
    for event in events {
        if !WEBHOOK_EVENTS.contains(&event.as_str()) {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "unknown event {event:?}; the known events are {}",
                WEBHOOK_EVENTS.join(", ")
            ))));
        }
        if !out.contains(event) {
            out.push(event.clone());
        }
    }
    Ok(out)
}

impl NewWebhook {
    /// Checks every bound; see the `check_webhook_*` functions.
    pub fn validate(&self) -> Result<(), DbError> {
        check_text("webhook id", &self.id)?;
        if self.id.is_empty() {
            return Err(DbError::Domain(DomainError::Invalid(
                "the webhook id must not be empty".into(),
            )));
        }
        check_webhook_url(&self.url)?;
        self.secret.validate()?;
        check_webhook_events(&self.events)?;
        check_text("webhook description", &self.description)?;
        Ok(())
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not yet sent, or to be retried.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up after the maximum number of attempts.
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<Self, DbError> {
        match s {
            "pending" => Ok(DeliveryStatus::Pending),
            "delivered" => Ok(DeliveryStatus::Delivered),
            "failed" => Ok(DeliveryStatus::Failed),
            other => Err(DbError::Domain(DomainError::Invalid(format!(
                "stored delivery status {other:?} is not pending, delivered or failed"
            )))),
        }
    }
}

/// One queued event for one webhook, as shown to operators (without its body).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub id: String,
    pub webhook_id: String,
    pub event: String,
    /// Attempts started so far.
    pub attempts: u32,
    /// When it is due next (Unix milliseconds); while an attempt runs, the end of its lease.
    pub next_attempt_ms: i64,
    pub status: DeliveryStatus,
    /// Why the last attempt failed ("" if it did not).
    pub last_error: String,
    /// The HTTP status of the last answer, if there was one.
    pub last_status_code: Option<u16>,
    /// The length of the last answer's body in bytes (as declared, or as counted up to a
    /// bound), if there was an answer. The body itself is never stored.
    pub last_reply_bytes: Option<u64>,
    pub created: i64,
    /// When it was delivered (Unix seconds).
    pub delivered: Option<i64>,
}

/// A delivery the dispatcher has claimed: everything one attempt needs.
#[derive(Clone)]
pub struct ClaimedDelivery {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    /// The webhook's sealed secret; the server opens it to sign.
    pub secret: StoredSecret,
    pub event: String,
    pub body: String,
    /// Attempts including this one (1 for the first).
    pub attempts: u32,
}

impl std::fmt::Debug for ClaimedDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaimedDelivery")
            .field("id", &self.id)
            .field("webhook_id", &self.webhook_id)
            .field("url", &self.url)
            .field("event", &self.event)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to, as decided by the dispatcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// 2xx: done.
    Delivered {
        status_code: u16,
        reply_bytes: Option<u64>,
        at: i64,
    },
    /// Failed; try again at `next_attempt_ms` (Unix milliseconds).
    Retry {
        next_attempt_ms: i64,
        status_code: Option<u16>,
        reply_bytes: Option<u64>,
        error: String,
    },
    /// Failed for the last time.
    Failed {
        status_code: Option<u16>,
        reply_bytes: Option<u64>,
        error: String,
    },
}

/// What queueing an event did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    /// Deliveries stored.
    pub queued: usize,
    /// Subscribed webhooks skipped because they already had [`MAX_PENDING_PER_WEBHOOK`] pending.
    pub dropped: usize,
}

/// A delivery to store: its id and its body (the signed JSON), given the webhook id.
pub type DeliveryMaker<'a> = dyn FnMut(&str) -> Result<(String, String), DbError> + Send + 'a;

fn webhook_from_row(row: &AnyRow) -> Result<Webhook, DbError> {
    Ok(Webhook {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: serde_json::from_str(&row.try_get::<String, _>("events")?).unwrap_or_default(),
        description: row.try_get("description")?,
        created: row.try_get("created")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
    })
}

fn delivery_from_row(row: &AnyRow) -> Result<WebhookDelivery, DbError> {
    let code = row.try_get::<i64, _>("last_status_code")?;
    let reply_bytes = row.try_get::<i64, _>("last_reply_bytes")?;
    let delivered = row.try_get::<i64, _>("delivered")?;
    Ok(WebhookDelivery {
        id: row.try_get("id")?,
        webhook_id: row.try_get("webhook_id")?,
        event: row.try_get("event")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?.max(0)).unwrap_or(u32::MAX),
        next_attempt_ms: row.try_get("next_attempt")?,
        status: DeliveryStatus::parse(&row.try_get::<String, _>("status")?)?,
        last_error: row.try_get("last_error")?,
        last_status_code: u16::try_from(code).ok().filter(|c| *c != 0),
        last_reply_bytes: u64::try_from(reply_bytes).ok(),
        created: row.try_get("created")?,
        delivered: (delivered != 0).then_some(delivered),
    })
}

/// An error text bounded to [`MAX_ERROR_TEXT`] bytes without control characters.
fn error_text(error: &str) -> String {
    crate::sql::bounded_text(error, MAX_ERROR_TEXT)
}

fn check_body(body: &str) -> Result<(), DbError> {
    if body.len() > MAX_WEBHOOK_BODY {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "the webhook payload is {} bytes; at most {MAX_WEBHOOK_BODY} are sent, so send less data",
            body.len()
        ))));
    }
    Ok(())
}

impl Db {
    /// Stores a new webhook with its audit record, in one transaction. Fails with
    /// [`DomainError::Invalid`] on any bound (see [`NewWebhook::validate`]) and when
    /// [`MAX_WEBHOOKS`] exist already.
    pub async fn create_webhook(
        &self,
        new: &NewWebhook,
        audit: &AuditLine,
    ) -> Result<Webhook, DbError> {
        new.validate()?;
        let events = check_webhook_events(&new.events)?;
        let events_json = serde_json::to_string(&events)
            .map_err(|e| DbError::Domain(DomainError::Invalid(format!("webhook events: {e}"))))?;
        let mut tx = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            // Two concurrent creations must not both see 99 and make 101; SQLite's write
            // transaction already serialises them. Readers are not blocked.
            sqlx::query("LOCK TABLE webhooks IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await?;
        }
        let count: i64 = sqlx::query("SELECT COUNT(*) AS n FROM webhooks")
            .fetch_one(&mut *tx)
            .await?
            .try_get("n")?;
        if count >= MAX_WEBHOOKS {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "there are already {count} webhooks, the most this server keeps; delete one first"
            ))));
        }
        sqlx::query(
            "INSERT INTO webhooks (id, url, secret, secret_key_id, events, description, created, enabled)
             VALUES ($1, $2, $3, $7, $4, $5, $6, 1)",
        )
        .bind(&new.id)
        .bind(&new.url)
        .bind(&new.secret.value)
        .bind(&events_json)
        .bind(&new.description)
        .bind(new.created)
        .bind(&new.secret.key_id)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(Webhook {
            id: new.id.clone(),
            url: new.url.clone(),
            events,
            description: new.description.clone(),
            created: new.created,
            enabled: true,
        })
    }

    /// Deletes a webhook and its deliveries (pending ones are not sent) with its audit record;
    /// false (and nothing written) if there is no such webhook.
    pub async fn delete_webhook(&self, id: &str, audit: &AuditLine) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let r = sqlx::query("DELETE FROM webhooks WHERE id = $1")
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

    /// Every webhook, oldest first (at most [`MAX_WEBHOOKS`]).
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, DbError> {
        let rows = sqlx::query(
            "SELECT id, url, events, description, created, enabled FROM webhooks ORDER BY created, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Every webhook's id and stored secret, oldest first: what the server checks (and seals,
    /// for secrets still in clear) when it starts.
    pub async fn webhook_secrets(&self) -> Result<Vec<(String, StoredSecret)>, DbError> {
        let rows =
            sqlx::query("SELECT id, secret, secret_key_id FROM webhooks ORDER BY created, id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id")?,
                    StoredSecret {
                        key_id: row.try_get("secret_key_id")?,
                        value: row.try_get("secret")?,
                    },
                ))
            })
            .collect()
    }

    /// Replaces a webhook's stored secret with `sealed` if it is still `current` (another server
    /// may have sealed it first); true if replaced.
    pub async fn replace_webhook_secret(
        &self,
        id: &str,
        current: &StoredSecret,
        sealed: &StoredSecret,
    ) -> Result<bool, DbError> {
        sealed.validate()?;
        let r = sqlx::query(
            "UPDATE webhooks SET secret = $2, secret_key_id = $3
             WHERE id = $1 AND secret = $4 AND secret_key_id = $5",
        )
        .bind(id)
        .bind(&sealed.value)
        .bind(&sealed.key_id)
        .bind(&current.value)
        .bind(&current.key_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>, DbError> {
        let row = sqlx::query(
            "SELECT id, url, events, description, created, enabled FROM webhooks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(webhook_from_row).transpose()
    }

    /// Queues `event` for every enabled webhook subscribed to it, in one transaction: `make`
    /// gives each delivery's id and body (it is called with the webhook id). Deliveries are due
    /// at `due_ms` (Unix milliseconds); `created` is Unix seconds. A webhook that already has
    /// [`MAX_PENDING_PER_WEBHOOK`] pending deliveries is skipped and counted in
    /// [`Enqueued::dropped`].
    pub async fn enqueue_webhook_event(
        &self,
        event: &str,
        created: i64,
        due_ms: i64,
        make: &mut DeliveryMaker<'_>,
    ) -> Result<Enqueued, DbError> {
        if !WEBHOOK_EVENTS.contains(&event) {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "unknown webhook event {event:?}; the known events are {}",
                WEBHOOK_EVENTS.join(", ")
            ))));
        }
        let mut tx = self.begin_write().await?;
        let done = enqueue_event_in(&mut tx, event, created, due_ms, make).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Queues one delivery of `event` (any name, e.g. a test ping) to one webhook, whatever it
    /// subscribes to; `None` if there is no such webhook. Fails with [`DomainError::Invalid`] when
    /// it already has [`MAX_PENDING_PER_WEBHOOK`] pending deliveries.
    pub async fn enqueue_webhook_delivery(
        &self,
        webhook_id: &str,
        event: &str,
        created: i64,
        due_ms: i64,
        make: &mut DeliveryMaker<'_>,
    ) -> Result<Option<String>, DbError> {
        check_text("webhook event", event)?;
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 AS one FROM webhooks WHERE id = $1")
            .bind(webhook_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Ok(None);
        }
        let pending: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(webhook_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if pending >= MAX_PENDING_PER_WEBHOOK {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "webhook {webhook_id:?} already has {pending} pending deliveries; fix its endpoint and wait for them to drain"
            ))));
        }
        let (id, body) = make(webhook_id)?;
        insert_delivery(&mut tx, &id, webhook_id, event, &body, created, due_ms).await?;
        tx.commit().await?;
        Ok(Some(id))
    }

    /// Claims up to `limit` (at most [`MAX_DELIVERY_CLAIM`]) pending deliveries due at `now_ms`
    /// for enabled webhooks, oldest due first: each one's attempt count is raised and its due
    /// time moved to `lease_until_ms`, so neither this nor another server claims it again while
    /// the attempt runs, and a crashed server's claim runs out. Safe with several servers on one
    /// PostgreSQL: a row is only taken if nobody changed it since it was read.
    pub async fn claim_webhook_deliveries(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedDelivery>, DbError> {
        // Read outside a write transaction: an idle dispatcher polls, and on SQLite a write
        // transaction per poll would take the write lock from device reports for nothing.
        let due = sqlx::query(
            "SELECT d.id AS id, d.webhook_id AS webhook_id, d.event AS event, d.body AS body,
                    d.attempts AS attempts, d.next_attempt AS next_attempt, w.url AS url, w.secret AS secret,
                    w.secret_key_id AS secret_key_id
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.status = 'pending' AND d.next_attempt <= $1 AND w.enabled = 1
             ORDER BY d.next_attempt, d.id LIMIT $2",
        )
        .bind(now_ms)
        .bind(limit.clamp(1, MAX_DELIVERY_CLAIM))
        .fetch_all(&self.pool)
        .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let mut claimed = Vec::with_capacity(due.len());
        let mut tx = self.begin_write().await?;
        for row in &due {
            let id: String = row.try_get("id")?;
            let seen_due: i64 = row.try_get("next_attempt")?;
            let r = sqlx::query(
                "UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt = $2
                 WHERE id = $1 AND status = 'pending' AND next_attempt = $3",
            )
            .bind(&id)
            .bind(lease_until_ms)
            .bind(seen_due)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() != 1 {
                continue; // another dispatcher took it
            }
            let attempts = row.try_get::<i64, _>("attempts")?.max(0).saturating_add(1);
            claimed.push(ClaimedDelivery {
                id,
                webhook_id: row.try_get("webhook_id")?,
                url: row.try_get("url")?,
                secret: StoredSecret {
                    key_id: row.try_get("secret_key_id")?,
                    value: row.try_get("secret")?,
                },
                event: row.try_get("event")?,
                body: row.try_get("body")?,
                attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records how a claimed delivery's attempt ended; false if it is no longer pending (its
    /// webhook was deleted meanwhile, or it was already settled).
    pub async fn record_webhook_attempt(
        &self,
        delivery_id: &str,
        outcome: &AttemptOutcome,
    ) -> Result<bool, DbError> {
        let code = |c: &Option<u16>| c.map_or(0, i64::from);
        // -1: no answer, so no length (0 is an empty answer).
        let length = |b: &Option<u64>| b.map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX));
        let (status, next_ms, status_code, reply_bytes, error, delivered) = match outcome {
            AttemptOutcome::Delivered {
                status_code,
                reply_bytes,
                at,
            } => (
                DeliveryStatus::Delivered,
                None,
                i64::from(*status_code),
                length(reply_bytes),
                String::new(),
                *at,
            ),
            AttemptOutcome::Retry {
                next_attempt_ms,
                status_code,
                reply_bytes,
                error,
            } => (
                DeliveryStatus::Pending,
                Some(*next_attempt_ms),
                code(status_code),
                length(reply_bytes),
                error_text(error),
                0,
            ),
            AttemptOutcome::Failed {
                status_code,
                reply_bytes,
                error,
            } => (
                DeliveryStatus::Failed,
                None,
                code(status_code),
                length(reply_bytes),
                error_text(error),
                0,
            ),
        };
        // A settled delivery keeps its lease time as `next_attempt`: it is never due again.
        let r = sqlx::query(
            "UPDATE webhook_deliveries
             SET status = $2, next_attempt = CASE WHEN $3 >= 0 THEN $3 ELSE next_attempt END,
                 last_status_code = $4, last_error = $5, delivered = $6, last_reply_bytes = $7
             WHERE id = $1 AND status = 'pending'",
        )
        .bind(delivery_id)
        .bind(status.as_str())
        .bind(next_ms.unwrap_or(-1))
        .bind(status_code)
        .bind(error)
        .bind(delivered)
        .bind(reply_bytes)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// A webhook's deliveries, newest first, at most `limit` (1 to 1,000); `None` if there is
    /// no such webhook. "Newest" is by creation second, then by id descending (the server's
    /// delivery ids start with their creation time, so that is creation order).
    pub async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Option<Vec<WebhookDelivery>>, DbError> {
        if self.webhook(webhook_id).await?.is_none() {
            return Ok(None);
        }
        let rows = sqlx::query(
            "SELECT * FROM webhook_deliveries WHERE webhook_id = $1
             ORDER BY created DESC, id DESC LIMIT $2",
        )
        .bind(webhook_id)
        .bind(limit.clamp(1, 1000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(delivery_from_row)
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// One delivery, by id.
    pub async fn webhook_delivery(&self, id: &str) -> Result<Option<WebhookDelivery>, DbError> {
        let row = sqlx::query("SELECT * FROM webhook_deliveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(delivery_from_row).transpose()
    }

    /// Deletes settled (delivered or failed) deliveries created before `before` (Unix seconds);
    /// returns how many. Pending ones are kept whatever their age.
    pub async fn prune_webhook_deliveries(&self, before: i64) -> Result<u64, DbError> {
        let r = sqlx::query(
            "DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created < $1",
        )
        .bind(before)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }
}

async fn insert_delivery(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    webhook_id: &str,
    event: &str,
    body: &str,
    created: i64,
    due_ms: i64,
) -> Result<(), DbError> {
    check_text("delivery id", id)?;
    check_body(body)?;
    sqlx::query(
        "INSERT INTO webhook_deliveries (id, webhook_id, event, body, attempts, next_attempt, status, created)
         VALUES ($1, $2, $3, $4, 0, $5, 'pending', $6)",
    )
    .bind(id)
    .bind(webhook_id)
    .bind(event)
    .bind(body)
    .bind(due_ms)
    .bind(created)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Queues `event` for every enabled webhook subscribed to it inside the caller's transaction,
/// so an event can be queued together with the state change it announces (the risk watch's
/// alert with its exposure record): both are stored, or neither is.
pub(crate) async fn enqueue_event_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    event: &str,
    created: i64,
    due_ms: i64,
    make: &mut DeliveryMaker<'_>,
) -> Result<Enqueued, DbError> {
    let hooks = sqlx::query("SELECT id, events FROM webhooks WHERE enabled = 1 ORDER BY id")
        .fetch_all(&mut **tx)
        .await?;
    let mut subscribed = Vec::new();
    for row in &hooks {
        let events: Vec<String> =
            serde_json::from_str(&row.try_get::<String, _>("events")?).unwrap_or_default();
        if events.iter().any(|e| e == event) {
            subscribed.push(row.try_get::<String, _>("id")?);
        }
    }
    let mut done = Enqueued::default();
    if subscribed.is_empty() {
        return Ok(done);
    }
    let pending = sqlx::query(
            "SELECT webhook_id, COUNT(*) AS n FROM webhook_deliveries WHERE status = 'pending' GROUP BY webhook_id",
        )
        .fetch_all(&mut **tx)
        .await?;
    let mut full = Vec::new();
    for row in &pending {
        if row.try_get::<i64, _>("n")? >= MAX_PENDING_PER_WEBHOOK {
            full.push(row.try_get::<String, _>("webhook_id")?);
        }
    }
    for webhook_id in &subscribed {
        if full.contains(webhook_id) {
            done.dropped += 1;
            continue;
        }
        let (id, body) = make(webhook_id)?;
        insert_delivery(tx, &id, webhook_id, event, &body, created, due_ms).await?;
        done.queued += 1;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_with_helpful_messages() {
        assert!(check_webhook_url("https://alerts.example.com/hook").is_ok());
        assert!(check_webhook_url("HTTP://10.0.0.1:8080/x").is_ok());
        for bad in [
            "ftp://example.com/",
            "example.com",
            "https://",
            "https:///path",
            "https://a b",
            "https://a\nb",
            "httpé://x",
            "ééééé",
        ] {
            assert!(
                matches!(
                    check_webhook_url(bad),
                    Err(DbError::Domain(DomainError::Invalid(_)))
                ),
                "{bad:?}"
            );
        }
        let long = format!("https://e.com/{}", "a".repeat(MAX_WEBHOOK_URL));
        let Err(DbError::Domain(DomainError::Invalid(m))) = check_webhook_url(&long) else {
            panic!("a long url passed")
        };
        assert!(m.contains("2048"), "{m}");

        let Err(DbError::Domain(DomainError::Invalid(m))) = check_webhook_secret("short") else {
            panic!("a short secret passed")
        };
        assert!(m.contains("16") && !m.contains("short"), "{m}");
        assert!(check_webhook_secret(&"s".repeat(16)).is_ok());
        assert!(check_webhook_secret(&"s".repeat(257)).is_err());

        assert!(check_webhook_events(&[]).is_err());
        let Err(DbError::Domain(DomainError::Invalid(m))) =
            check_webhook_events(&["campaign.nope".into()])
        else {
            panic!("an unknown event passed")
        };
        assert!(m.contains("campaign.nope") && m.contains("fleet.rollback_spike"));
        assert_eq!(
            check_webhook_events(&["campaign.halted".into(), "campaign.halted".into()]).unwrap(),
            vec!["campaign.halted".to_owned()]
        );
        assert_eq!(error_text(&"é".repeat(400)).len(), 512);
        assert_eq!(error_text("a\r\nb"), "a  b");
    }

    /// A fresh SQLite file and a fresh PostgreSQL database (from RAMPART_TEST_POSTGRES_URL, as
    /// the crate's other storage tests; without it this test fails).
    async fn backends(dir: &std::path::Path) -> Vec<Db> {
        let sqlite = Db::connect(&format!("sqlite://{}", dir.join("hooks.db").display()))
            .await
            .unwrap();
        let admin = std::env::var("RAMPART_TEST_POSTGRES_URL").expect(
            "RAMPART_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL",
        );
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&admin).await.unwrap();
        let name = format!("rampart_hooks_unit_{}", std::process::id());
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        let (base, _) = admin.rsplit_once('/').unwrap();
        let postgres = Db::connect(&format!("{base}/{name}")).await.unwrap();
        vec![sqlite, postgres]
    }

    fn audit(seq: u64) -> AuditLine {
        AuditLine {
            seq,
            line: format!("{{\"seq\":{seq}}}"),
        }
    }

    fn hook(id: &str, events: &[&str]) -> NewWebhook {
        NewWebhook {
            id: id.into(),
            url: format!("https://hooks.example.com/{id}"),
            secret: StoredSecret {
                key_id: "00ff00ff00ff00ff".into(),
                value: "sealed-0123456789abcdef".into(),
            },
            events: events.iter().map(|e| e.to_string()).collect(),
            description: format!("hook {id}"),
            created: 100,
        }
    }

    #[test]
    fn outbox_lifecycle_on_both_backends() {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            for db in backends(dir.path()).await {
                let b = db.backend();
                let a = db
                    .create_webhook(
                        &hook("wh-a", &["campaign.halted", "fleet.rollback_spike"]),
                        &audit(1),
                    )
                    .await
                    .unwrap();
                assert_eq!(a.events, ["campaign.halted", "fleet.rollback_spike"]);
                db.create_webhook(&hook("wh-b", &["campaign.halted"]), &audit(2))
                    .await
                    .unwrap();
                // The same id twice is a database error, and writes nothing.
                assert!(
                    db.create_webhook(&hook("wh-b", &["campaign.halted"]), &audit(3))
                        .await
                        .is_err()
                );
                let listed = db.list_webhooks().await.unwrap();
                assert_eq!(listed.len(), 2, "{b:?}");
                assert_eq!(listed[0], a);
                // The secret is never part of what is read back.
                assert!(!format!("{listed:?}").contains("secret"), "{b:?}");
                // Sealed secrets: listed for the server's start-up check, replaced only if
                // unchanged, never stored without a key id.
                let secrets = db.webhook_secrets().await.unwrap();
                assert_eq!(secrets.len(), 2);
                assert_eq!(secrets[0].1, hook("wh-a", &["campaign.halted"]).secret);
                assert!(!format!("{secrets:?}").contains("sealed-0123"), "{b:?}");
                let resealed = StoredSecret {
                    key_id: "11ee11ee11ee11ee".into(),
                    value: "sealed-again".into(),
                };
                assert!(
                    db.replace_webhook_secret("wh-a", &secrets[0].1, &resealed)
                        .await
                        .unwrap()
                );
                assert!(
                    !db.replace_webhook_secret("wh-a", &secrets[0].1, &resealed)
                        .await
                        .unwrap(),
                    "{b:?}: replaced although it had changed"
                );
                assert!(
                    db.replace_webhook_secret("wh-a", &resealed, &secrets[0].1)
                        .await
                        .unwrap()
                );
                let mut clear = hook("wh-clear", &["campaign.halted"]);
                clear.secret.key_id.clear();
                assert!(matches!(
                    db.create_webhook(&clear, &audit(3)).await,
                    Err(DbError::Domain(DomainError::Invalid(_)))
                ));

                // One event fans out to both subscribers in one transaction.
                let mut n = 0;
                let mut make = |webhook: &str| {
                    n += 1;
                    Ok((format!("dlv-{n}"), format!("{{\"to\":\"{webhook}\"}}")))
                };
                let q = db
                    .enqueue_webhook_event("campaign.halted", 200, 1_000, &mut make)
                    .await
                    .unwrap();
                assert_eq!(
                    q,
                    Enqueued {
                        queued: 2,
                        dropped: 0
                    },
                    "{b:?}"
                );
                let q = db
                    .enqueue_webhook_event("campaign.completed", 200, 1_000, &mut make)
                    .await
                    .unwrap();
                assert_eq!(q.queued, 0, "nobody subscribes");
                assert!(matches!(
                    db.enqueue_webhook_event("webhook.nope", 200, 1_000, &mut make)
                        .await,
                    Err(DbError::Domain(DomainError::Invalid(_)))
                ));
                // A failing maker leaves nothing behind.
                let mut failing = |_: &str| Err(DbError::Domain(DomainError::Invalid("no".into())));
                assert!(
                    db.enqueue_webhook_event("campaign.halted", 200, 1_000, &mut failing)
                        .await
                        .is_err()
                );
                assert_eq!(
                    db.webhook_deliveries("wh-a", 10)
                        .await
                        .unwrap()
                        .unwrap()
                        .len(),
                    1
                );
                // An oversized body is refused.
                let mut huge =
                    |_: &str| Ok(("dlv-huge".to_owned(), "x".repeat(MAX_WEBHOOK_BODY + 1)));
                assert!(matches!(
                    db.enqueue_webhook_event("campaign.halted", 200, 1_000, &mut huge)
                        .await,
                    Err(DbError::Domain(DomainError::Invalid(_)))
                ));

                // Nothing is due before its time; claims are exclusive and leased.
                assert!(
                    db.claim_webhook_deliveries(999, 5_000, 10)
                        .await
                        .unwrap()
                        .is_empty()
                );
                let (first, second) = tokio::join!(
                    db.claim_webhook_deliveries(1_000, 5_000, 10),
                    db.claim_webhook_deliveries(1_000, 5_000, 10)
                );
                let mut claimed = first.unwrap();
                claimed.extend(second.unwrap());
                assert_eq!(claimed.len(), 2, "{b:?}: each delivery claimed once");
                assert!(claimed.iter().all(|c| c.attempts == 1
                    && c.secret.key_id == "00ff00ff00ff00ff"
                    && c.secret.value == "sealed-0123456789abcdef"));
                assert!(!format!("{claimed:?}").contains("0123456789abcdef"));
                assert!(
                    db.claim_webhook_deliveries(4_999, 6_000, 10)
                        .await
                        .unwrap()
                        .is_empty()
                );

                let to_a = claimed.iter().find(|c| c.webhook_id == "wh-a").unwrap();
                let to_b = claimed.iter().find(|c| c.webhook_id == "wh-b").unwrap();
                assert!(
                    db.record_webhook_attempt(
                        &to_a.id,
                        &AttemptOutcome::Retry {
                            next_attempt_ms: 7_000,
                            status_code: Some(500),
                            reply_bytes: Some(12),
                            error: "HTTP 500\nboom".into(),
                        }
                    )
                    .await
                    .unwrap()
                );
                assert!(
                    db.record_webhook_attempt(
                        &to_b.id,
                        &AttemptOutcome::Delivered {
                            status_code: 204,
                            reply_bytes: Some(0),
                            at: 300
                        }
                    )
                    .await
                    .unwrap()
                );
                // Settled deliveries cannot be settled again.
                assert!(
                    !db.record_webhook_attempt(
                        &to_b.id,
                        &AttemptOutcome::Failed {
                            status_code: None,
                            reply_bytes: None,
                            error: "x".into()
                        }
                    )
                    .await
                    .unwrap()
                );
                let d = db.webhook_delivery(&to_a.id).await.unwrap().unwrap();
                assert_eq!(
                    (d.status, d.attempts, d.next_attempt_ms),
                    (DeliveryStatus::Pending, 1, 7_000)
                );
                assert_eq!(
                    (
                        d.last_status_code,
                        d.last_reply_bytes,
                        d.last_error.as_str()
                    ),
                    (Some(500), Some(12), "HTTP 500 boom")
                );
                let d = db.webhook_delivery(&to_b.id).await.unwrap().unwrap();
                assert_eq!(
                    (
                        d.status,
                        d.delivered,
                        d.last_status_code,
                        d.last_reply_bytes
                    ),
                    (DeliveryStatus::Delivered, Some(300), Some(204), Some(0))
                );

                // The retry is claimed again at its time, then given up.
                let again = db.claim_webhook_deliveries(7_000, 9_000, 10).await.unwrap();
                assert_eq!(again.len(), 1);
                assert_eq!(again[0].attempts, 2);
                db.record_webhook_attempt(
                    &again[0].id,
                    &AttemptOutcome::Failed {
                        status_code: None,
                        reply_bytes: None,
                        error: "timed out".into(),
                    },
                )
                .await
                .unwrap();
                let d = db.webhook_delivery(&to_a.id).await.unwrap().unwrap();
                assert_eq!(
                    (d.status, d.last_status_code, d.last_reply_bytes),
                    (DeliveryStatus::Failed, None, None)
                );
                assert!(
                    db.claim_webhook_deliveries(i64::MAX, i64::MAX, 10)
                        .await
                        .unwrap()
                        .is_empty()
                );

                // A test delivery to one webhook, whatever it subscribes to.
                let mut ping = |_: &str| Ok(("dlv-ping".to_owned(), "{}".to_owned()));
                assert_eq!(
                    db.enqueue_webhook_delivery("wh-b", "webhook.test", 400, 2_000, &mut ping)
                        .await
                        .unwrap()
                        .as_deref(),
                    Some("dlv-ping")
                );
                assert_eq!(
                    db.enqueue_webhook_delivery("wh-x", "webhook.test", 400, 2_000, &mut ping)
                        .await
                        .unwrap(),
                    None
                );
                let listed = db.webhook_deliveries("wh-b", 10).await.unwrap().unwrap();
                assert_eq!(listed[0].id, "dlv-ping", "{b:?}: newest first");
                assert_eq!(db.webhook_deliveries("wh-x", 10).await.unwrap(), None);

                // Pruning keeps pending deliveries.
                assert_eq!(db.prune_webhook_deliveries(1_000).await.unwrap(), 2);
                assert_eq!(
                    db.webhook_deliveries("wh-b", 10)
                        .await
                        .unwrap()
                        .unwrap()
                        .len(),
                    1
                );

                // Deleting a webhook deletes its deliveries; an unknown id writes nothing.
                assert!(db.delete_webhook("wh-b", &audit(3)).await.unwrap());
                assert!(!db.delete_webhook("wh-b", &audit(4)).await.unwrap());
                assert_eq!(db.webhook_delivery("dlv-ping").await.unwrap(), None);
                assert_eq!(db.last_audit().await.unwrap().unwrap().seq, 3);

                // At most MAX_WEBHOOKS.
                for i in 0..MAX_WEBHOOKS - 1 {
                    db.create_webhook(
                        &hook(&format!("wh-{i}"), &["campaign.halted"]),
                        &audit(10 + i as u64),
                    )
                    .await
                    .unwrap();
                }
                let Err(DbError::Domain(DomainError::Invalid(m))) = db
                    .create_webhook(&hook("wh-over", &["campaign.halted"]), &audit(1_000))
                    .await
                else {
                    panic!("{b:?}: a webhook over the limit was stored")
                };
                assert!(m.contains("delete one"), "{m}");
                db.close().await;
            }
        });
    }
}
