//! Webhooks: alerts to operators' systems as signed JSON POSTs.
//!
//! ```text
//! campaign engine ─┐                         ┌─► POST https://ops.example.com/hook  (≤ N in flight,
//! device reports ──┼─► Webhooks::emit ─► webhook_deliveries ─► dispatcher          hard timeout,
//!  (rollback spike)┘     (one transaction)   (the outbox, durable)  ▲    └─ retry with backoff,
//!                                                                   └──── record each attempt
//! ```
//!
//! [`Webhooks::emit`] stores one delivery per subscribed webhook in one transaction and wakes the
//! dispatcher, so an alert survives a restart and the caller never waits for an HTTP exchange.
//! The dispatcher ([`Webhooks::run_dispatcher`]) claims due deliveries with a lease, POSTs each
//! body as `application/json` with
//!
//! * `X-Rampart-Event`: the event name, e.g. `campaign.halted`;
//! * `X-Rampart-Delivery`: the delivery id (the same on every retry: receivers deduplicate on it);
//! * `X-Rampart-Timestamp`: Unix seconds when this attempt was signed;
//! * `X-Rampart-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, keyed with the webhook's
//!   secret, of `timestamp + "." + body` (see [`sign`]). Receivers recompute it, compare in
//!   constant time and reject old timestamps, which stops replays.
//!
//! A 2xx answer settles it; anything else (another status, a refused connection, no answer within
//! the attempt timeout) is retried with exponential backoff and jitter until the maximum number of
//! attempts, then the delivery is `failed`. Redirects are not followed. Of an answer only the
//! status and the body's length are kept, never the body. The body is the envelope
//! `{"event": "...", "delivery": "...", "created": <unix seconds>, "data": {...}}`.
//!
//! Where deliveries may go is the [`AddressPolicy`] (see [`address`](self::address)): internal
//! and special-purpose addresses are refused unless the operator allow-lists them
//! ([`WebhookConfig::allow_networks`]). It is checked when a webhook is created (a clear 422) and
//! again at every attempt, after DNS resolution, by the resolver the HTTP client connects
//! through: the connection goes to exactly the addresses that were checked, so a name that
//! resolves differently later (DNS rebinding) gains nothing.
//!
//! Secrets are stored sealed with the server's secrets key ([`SecretsKey`],
//! [`WebhookConfig::secrets_key`]); see [`secrets`](self::secrets).
//!
//! Operators manage webhooks with the management API: `GET/POST /api/v1/webhooks`,
//! `GET/DELETE /api/v1/webhooks/{id}`, `GET /api/v1/webhooks/{id}/deliveries` (admins and
//! auditors) and `POST /api/v1/webhooks/{id}/test`.

pub mod address;
pub mod secrets;

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rampart_db::{AttemptOutcome, Backend, ClaimedDelivery, Db, DbError, NewWebhook};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::audit::AuditWriteError;
use crate::device_api::unix_now;
use crate::http::{ApiError, json_response, parse_json, read_body};
use crate::management::{ManagementApi, Permission};
use crate::metrics::track_requests;
use rampart_protocol::ReportStatus;

pub use address::{AddressPolicy, DeniedAddress, IpNetwork};
pub use secrets::{SecretsKey, SecretsKeyError};

/// Default hard limit on one attempt: connecting, sending and receiving the answer's head.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default attempts before a delivery is given up as `failed`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
/// Default delay before the first retry; it doubles with every further one.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Default longest delay between two attempts.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(600);
/// Default deliveries in flight at once.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// Default interval at which the dispatcher looks for due retries (new events wake it at once).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default time delivered and failed deliveries are kept for operators to inspect.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);
/// Default rolled-back reports within the window that make a spike.
pub const DEFAULT_SPIKE_THRESHOLD: usize = 10;
/// Default sliding window of the rollback-spike detector.
pub const DEFAULT_SPIKE_WINDOW: Duration = Duration::from_secs(300);

/// Largest spike threshold: the detector keeps this many timestamps.
const MAX_SPIKE_THRESHOLD: usize = 100_000;
/// Device ids named in a rollback-spike alert.
const SPIKE_EXAMPLES: usize = 5;
/// Bytes of an answer's body counted at most when it declares no length (the bytes are
/// discarded as they are counted).
const MAX_REPLY_COUNT: u64 = 64 * 1024;
/// How long creating a webhook waits for its host name to resolve.
const CREATE_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How often settled deliveries older than the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);
/// Largest page of the deliveries listing.
const MAX_DELIVERY_PAGE: i64 = 1000;

/// What a webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookEvent {
    /// A campaign's health gate was breached (`campaign.gate_breach`).
    GateBreach,
    /// A campaign was halted (`campaign.halted`).
    CampaignHalted,
    /// A campaign finished (`campaign.completed`).
    CampaignCompleted,
    /// Many devices rolled back within a short window (`fleet.rollback_spike`).
    RollbackSpike,
    /// A device refused an update whose verification failed (`device.verification_failed`).
    VerificationFailed,
    /// A test delivery requested by an operator (`webhook.test`); sent to one webhook whatever
    /// it subscribes to, and not subscribable.
    Test,
}

impl WebhookEvent {
    /// The events a webhook may subscribe to ([`WebhookEvent::Test`] is not one).
    pub const ALL: [WebhookEvent; 5] = [
        WebhookEvent::GateBreach,
        WebhookEvent::CampaignHalted,
        WebhookEvent::CampaignCompleted,
        WebhookEvent::RollbackSpike,
        WebhookEvent::VerificationFailed,
    ];

    /// The wire name (the `event` field and the `X-Rampart-Event` header).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::GateBreach => "campaign.gate_breach",
            WebhookEvent::CampaignHalted => "campaign.halted",
            WebhookEvent::CampaignCompleted => "campaign.completed",
            WebhookEvent::RollbackSpike => "fleet.rollback_spike",
            WebhookEvent::VerificationFailed => "device.verification_failed",
            WebhookEvent::Test => "webhook.test",
        }
    }

    /// The event with this wire name, [`WebhookEvent::Test`] included.
    pub fn parse(name: &str) -> Option<WebhookEvent> {
        Self::ALL
            .into_iter()
            .chain([WebhookEvent::Test])
            .find(|e| e.as_str() == name)
    }
}

impl std::fmt::Display for WebhookEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rollback-spike detector's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSpikeConfig {
    /// `rolled_back` reports within `window` that make a spike (1 to 100,000).
    pub threshold: usize,
    /// The sliding window (whole seconds, at least 1).
    pub window: Duration,
}

impl Default for RollbackSpikeConfig {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_SPIKE_THRESHOLD,
            window: DEFAULT_SPIKE_WINDOW,
        }
    }
}

/// Webhook delivery settings. [`Default`] gives the production values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// Hard limit on one attempt (connect, send, answer); an endpoint that accepts the
    /// connection and never answers costs at most this.
    pub attempt_timeout: Duration,
    /// Attempts before a delivery is `failed` (at least 1).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled for each further one, with ±20% jitter.
    pub backoff_base: Duration,
    /// Longest delay between two attempts.
    pub backoff_max: Duration,
    /// Deliveries in flight at once (1 to 100).
    pub max_in_flight: usize,
    /// How often the dispatcher looks for due retries; new events wake it at once.
    pub poll_interval: Duration,
    /// Delivered and failed deliveries older than this are deleted.
    pub retention: Duration,
    pub rollback_spike: RollbackSpikeConfig,
    /// Internal networks deliveries may reach after all (`--webhook-allow CIDR`); by default
    /// none: loopback, private, link-local and other special-purpose addresses are refused.
    pub allow_networks: Vec<IpNetwork>,
    /// The file holding the key webhook secrets are sealed with (32 random bytes; created, mode
    /// 0600, if missing). `None`: next to a SQLite database file (`NAME.secrets.key`); with
    /// PostgreSQL there is then no key, and webhooks cannot be created.
    pub secrets_key: Option<PathBuf>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            poll_interval: DEFAULT_POLL_INTERVAL,
            retention: DEFAULT_RETENTION,
            rollback_spike: RollbackSpikeConfig::default(),
            allow_networks: Vec::new(),
            secrets_key: None,
        }
    }
}

impl WebhookConfig {
    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), WebhookError> {
        let problem = if self.attempt_timeout.is_zero() {
            Some("webhooks.attempt_timeout must not be zero")
        } else if self.max_attempts == 0 {
            Some("webhooks.max_attempts must be at least 1")
        } else if self.backoff_base.is_zero() {
            Some("webhooks.backoff_base must not be zero")
        } else if self.backoff_max < self.backoff_base {
            Some("webhooks.backoff_max must be at least webhooks.backoff_base")
        } else if !(1..=rampart_db::MAX_DELIVERY_CLAIM as usize).contains(&self.max_in_flight) {
            Some("webhooks.max_in_flight must be 1 to 100")
        } else if self.poll_interval.is_zero() {
            Some("webhooks.poll_interval must not be zero")
        } else if self.retention.is_zero() {
            Some("webhooks.retention must not be zero")
        } else if !(1..=MAX_SPIKE_THRESHOLD).contains(&self.rollback_spike.threshold) {
            Some("webhooks.rollback_spike.threshold must be 1 to 100000")
        } else if self.rollback_spike.window.as_secs() == 0 {
            Some("webhooks.rollback_spike.window must be at least one second")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(WebhookError::Config(problem.into())),
            None => Ok(()),
        }
    }

    /// How long a claimed delivery stays reserved: the attempt plus ample time to record it. A
    /// server that dies mid-attempt releases it when this runs out.
    fn lease(&self) -> Duration {
        self.attempt_timeout
            .saturating_mul(2)
            .saturating_add(Duration::from_secs(30))
    }
}

/// Why the webhook machinery could not start.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("invalid webhook configuration: {0}")]
    Config(String),
    #[error(transparent)]
    SecretsKey(#[from] SecretsKeyError),
    /// A stored secret does not open with the key given (or there is no key).
    #[error("{0}")]
    Secrets(String),
    #[error("reading or sealing the stored webhook secrets: {0}")]
    Db(#[from] DbError),
}

// ---- rollback-spike detector (pure) -------------------------------------------------------

/// A detected rollback spike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackSpike {
    /// `rolled_back` reports within the window (the threshold, when it fires).
    pub count: usize,
    pub window_secs: u64,
    pub threshold: usize,
    /// A few of the devices (most recent first, without repeats).
    pub example_devices: Vec<String>,
    /// Unix seconds of the oldest and newest report counted.
    pub first: i64,
    pub last: i64,
}

impl RollbackSpike {
    /// The `data` of the `fleet.rollback_spike` event.
    pub fn payload(&self) -> Value {
        json!({
            "count": self.count,
            "window_secs": self.window_secs,
            "threshold": self.threshold,
            "example_devices": self.example_devices,
            "first_report": self.first,
            "last_report": self.last,
        })
    }
}

/// Counts `rolled_back` reports in a sliding window, on a caller-given clock. It fires once when
/// the count reaches the threshold, and again only after the count fell below the threshold.
///
/// It keeps only the newest `threshold` reports: the count reaches the threshold exactly when the
/// oldest of those is still inside the window, so memory stays bounded whatever the report rate.
#[derive(Debug, Clone)]
pub struct RollbackSpikeDetector {
    threshold: usize,
    window_secs: i64,
    /// (Unix seconds, device id) of the newest reports, oldest first; at most `threshold`.
    recent: VecDeque<(i64, String)>,
    /// False from a spike until the count falls below the threshold.
    armed: bool,
}

impl RollbackSpikeDetector {
    pub fn new(config: &RollbackSpikeConfig) -> Self {
        let threshold = config.threshold.clamp(1, MAX_SPIKE_THRESHOLD);
        Self {
            threshold,
            window_secs: i64::try_from(config.window.as_secs().max(1)).unwrap_or(i64::MAX),
            recent: VecDeque::with_capacity(threshold.min(1024)),
            armed: true,
        }
    }

    /// Notes a report with `status` from `device_id` at `now` (Unix seconds); returns the spike
    /// if this report made one.
    pub fn observe(&mut self, status: &str, device_id: &str, now: i64) -> Option<RollbackSpike> {
        if status != ReportStatus::RolledBack.as_str() {
            // Other reports change nothing: the window is re-evaluated at the next rollback.
            return None;
        }
        let horizon = now.saturating_sub(self.window_secs);
        while self.recent.front().is_some_and(|(t, _)| *t <= horizon) {
            self.recent.pop_front();
        }
        if self.recent.len() < self.threshold {
            self.armed = true;
        }
        if self.recent.len() == self.threshold {
            self.recent.pop_front();
        }
        self.recent.push_back((now, device_id.to_owned()));
        if !self.armed || self.recent.len() < self.threshold {
            return None;
        }
        self.armed = false;
        let mut examples: Vec<String> = Vec::new();
        for (_, id) in self.recent.iter().rev() {
            if examples.len() == SPIKE_EXAMPLES {
                break;
            }
            if !examples.contains(id) {
                examples.push(id.clone());
            }
        }
        Some(RollbackSpike {
            count: self.recent.len(),
            window_secs: self.window_secs.unsigned_abs(),
            threshold: self.threshold,
            example_devices: examples,
            first: self.recent.front().map_or(now, |(t, _)| *t),
            last: now,
        })
    }
}

// ---- signing and backoff (pure) -----------------------------------------------------------

/// The `X-Rampart-Signature` value: `sha256=` and the lowercase hex HMAC-SHA256 of
/// `timestamp + "." + body` keyed with `secret`. The timestamp is inside the MAC so a captured
/// delivery cannot be replayed later with a fresh timestamp.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let mut context = ring::hmac::Context::with_key(&key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex::encode(context.sign().as_ref()))
}

/// The delay after failed attempt number `attempt` (1 for the first): `base · 2^(attempt-1)`,
/// at most `max`, scaled by `0.8 + 0.4 · jitter` (`jitter` in `[0, 1]`) so that many deliveries
/// failing together do not retry in lockstep, and never over `max`.
pub fn backoff_delay(attempt: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(32);
    let delay = base.saturating_mul(1u32 << doublings.min(31)).min(max);
    delay.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0)).min(max)
}

// ---- the I/O shell --------------------------------------------------------------------------

/// The server's webhook machinery: emitting events, the rollback-spike detector and the
/// dispatcher. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: WebhookConfig,
    /// Where deliveries may connect (shared with the HTTP client's resolver).
    policy: Arc<AddressPolicy>,
    /// Seals and opens webhook secrets; `None` on PostgreSQL without `secrets_key`.
    secrets: Option<Arc<SecretsKey>>,
    /// Built at the first attempt, not at startup: building it loads the system's CA
    /// certificates, and a host without them must still run the server (only HTTPS webhooks
    /// fail, each attempt saying why).
    client: Mutex<Option<reqwest::Client>>,
    /// New deliveries wake the dispatcher (a permit is kept if it is busy, so none is missed).
    wake: Notify,
    spike: Mutex<RollbackSpikeDetector>,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A key file others can read is refused, as the audit key is: whoever can read it can open
/// every webhook secret in the database.
fn refuse_if_readable_by_others(path: &std::path::Path) -> Result<(), WebhookError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            return Err(WebhookError::Config(format!(
                "the webhook secrets key {} may be read by other users (mode {:o}): run `chmod 600 {}`",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Checks at start that every stored secret opens with `key` (named by `key_path` in errors),
/// and seals the ones an older server stored in clear. Without a key, any stored webhook is an
/// error: its deliveries could not be signed.
async fn seal_stored_secrets(
    db: &Db,
    key: Option<(&SecretsKey, &str)>,
) -> Result<(), WebhookError> {
    let stored = db.webhook_secrets().await?;
    let Some((key, key_path)) = key else {
        if stored.is_empty() {
            return Ok(());
        }
        return Err(WebhookError::Secrets(format!(
            "{} webhooks are stored, but the server has no webhook secrets key to open their secrets with: give the key file with `rampart server --secrets-key FILE`",
            stored.len()
        )));
    };
    let mut sealed_now = 0usize;
    for (id, secret) in &stored {
        if secret.key_id.is_empty() {
            let sealed = key.seal(id, &secret.value)?;
            // Another server may have sealed it meanwhile: then what it stored is checked below
            // at the next start, and opened at each delivery.
            if db.replace_webhook_secret(id, secret, &sealed).await? {
                sealed_now += 1;
            }
            continue;
        }
        key.open(id, secret).map_err(|e| {
            WebhookError::Secrets(format!(
                "the webhook secrets key {key_path} (key {}) does not open the stored secrets: {e}",
                key.id()
            ))
        })?;
    }
    if sealed_now > 0 {
        crate::log::info(
            "sealed webhook secrets stored in clear by an older server",
            json!({"webhooks": sealed_now, "key_id": key.id()}),
        );
    }
    Ok(())
}

/// The HTTP client's resolver: resolves a webhook's host name and hands the connector only
/// addresses the policy allows, so the connection goes where the check looked. A name with any
/// refused address is refused as a whole.
struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

/// A host name whose addresses the policy refuses.
#[derive(Debug, thiserror::Error)]
#[error("{name} resolves to {denied}")]
struct RefusedName {
    name: String,
    denied: DeniedAddress,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addresses.iter().map(SocketAddr::ip).collect();
            policy
                .check_all(&ips)
                .map_err(|denied| RefusedName { name, denied })?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl Webhooks {
    /// Checks `config`, loads (or creates) the secrets key and checks that every stored secret
    /// opens with it; secrets still stored in clear (by a server from before they were sealed)
    /// are sealed now. `db_url` is the database's URL, for the default key path. Nothing is
    /// sent until [`Webhooks::run_dispatcher`] runs.
    pub async fn open(
        db: Db,
        db_url: &str,
        config: WebhookConfig,
    ) -> Result<Webhooks, WebhookError> {
        config.validate()?;
        let key_path = config
            .secrets_key
            .clone()
            .or_else(|| secrets::default_key_path(db_url));
        let secrets = match key_path {
            Some(path) => {
                let (key, created) = SecretsKey::load_or_create(&path)?;
                if created {
                    crate::log::info(
                        "created the webhook secrets key (keep it with the database's backups, apart from them)",
                        json!({"path": path.display().to_string(), "key_id": key.id()}),
                    );
                }
                refuse_if_readable_by_others(&path)?;
                Some((Arc::new(key), path.display().to_string()))
            }
            // Only a database that lives in memory has neither a file nor a server to keep a
            // key beside: its secrets die with it, and so may its key.
            None if db.backend() == Backend::Sqlite => Some((
                Arc::new(SecretsKey::ephemeral()?),
                "(in memory, with the in-memory database)".to_owned(),
            )),
            None => None,
        };
        seal_stored_secrets(&db, secrets.as_ref().map(|(k, p)| (k.as_ref(), p.as_str()))).await?;
        let policy = Arc::new(AddressPolicy::new(&config.allow_networks));
        let spike = Mutex::new(RollbackSpikeDetector::new(&config.rollback_spike));
        Ok(Webhooks {
            inner: Arc::new(Inner {
                db,
                config,
                policy,
                secrets: secrets.map(|(key, _)| key),
                client: Mutex::new(None),
                wake: Notify::new(),
                spike,
                rng: ring::rand::SystemRandom::new(),
            }),
        })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.inner.config
    }

    /// Queues `event` with `payload` as its `data` for every enabled webhook subscribed to it,
    /// durably and in one transaction, and wakes the dispatcher; returns how many deliveries were
    /// queued. Returns once stored: no HTTP exchange happens on the caller's time.
    /// [`WebhookEvent::Test`] cannot be emitted (use the API's test endpoint).
    pub async fn emit(&self, event: WebhookEvent, payload: Value) -> Result<usize, DbError> {
        let created = unix_now();
        let mut make = |_: &str| self.delivery(event, created, &payload);
        let done = self
            .inner
            .db
            .enqueue_webhook_event(event.as_str(), created, unix_millis(), &mut make)
            .await?;
        if done.dropped > 0 {
            crate::log::warn(
                "webhook deliveries dropped: their webhooks have too many pending deliveries",
                json!({"event": event.as_str(), "dropped": done.dropped,
                       "pending_limit": rampart_db::MAX_PENDING_PER_WEBHOOK}),
            );
        }
        if done.queued > 0 {
            self.inner.wake.notify_one();
        }
        Ok(done.queued)
    }

    /// Queues a `webhook.test` delivery to one webhook; its delivery id, or `None` if there is no
    /// such webhook.
    pub async fn send_test(&self, webhook_id: &str) -> Result<Option<String>, DbError> {
        let created = unix_now();
        let payload = json!({
            "webhook": webhook_id,
            "message": "a test delivery requested through the Rampart management API",
        });
        let mut make = |_: &str| self.delivery(WebhookEvent::Test, created, &payload);
        let id = self
            .inner
            .db
            .enqueue_webhook_delivery(
                webhook_id,
                WebhookEvent::Test.as_str(),
                created,
                unix_millis(),
                &mut make,
            )
            .await?;
        if id.is_some() {
            self.inner.wake.notify_one();
        }
        Ok(id)
    }

    /// A new delivery's id and envelope. Ids start with the creation time in milliseconds (fixed
    /// width hex) so they sort in creation order, then random bytes so they never collide.
    fn delivery(
        &self,
        event: WebhookEvent,
        created: i64,
        data: &Value,
    ) -> Result<(String, String), DbError> {
        use ring::rand::SecureRandom as _;
        let mut random = [0u8; 6];
        self.inner.rng.fill(&mut random).map_err(|_| {
            DbError::Invalid(
                "the system random generator failed; no delivery id could be made".into(),
            )
        })?;
        let id = format!("dlv-{:012x}{}", unix_millis().max(0), hex::encode(random));
        let body = json!({
            "event": event.as_str(),
            "delivery": id,
            "created": created,
            "data": data,
        })
        .to_string();
        Ok((id, body))
    }

    /// Feeds the rollback-spike detector one device report (every report, any status). Cheap and
    /// synchronous: a report that completes a spike queues one `fleet.rollback_spike` event on a
    /// spawned task, so the report handler never waits on storage or the network for it.
    pub fn observe_report(&self, status: &str, device_id: &str, now: i64) {
        if status != ReportStatus::RolledBack.as_str() {
            return;
        }
        let spike = self
            .inner
            .spike
            .lock()
            // The detector holds plain data; a panic elsewhere cannot leave it half-updated.
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .observe(status, device_id, now);
        let Some(spike) = spike else { return };
        crate::log::warn("rollback spike", spike.payload());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            crate::log::error(
                "a rollback spike could not be queued: no async runtime",
                spike.payload(),
            );
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            if let Err(e) = this
                .emit(WebhookEvent::RollbackSpike, spike.payload())
                .await
            {
                crate::log::error(
                    "queueing the fleet.rollback_spike webhook event",
                    json!({"error": e.to_string()}),
                );
            }
        });
    }

    /// Delivers due deliveries until `shutdown` completes: at most `max_in_flight` at once, new
    /// events at once, retries when due. On shutdown it claims nothing more and waits for the
    /// attempts in flight (each bounded by the attempt timeout) so their outcome is recorded;
    /// whatever is still pending is sent by the next start.
    pub async fn run_dispatcher(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let config = self.inner.config.clone();
        let mut in_flight: JoinSet<()> = JoinSet::new();
        let mut claims_failing = false;
        let mut next_prune = Instant::now();
        loop {
            let free = config.max_in_flight.saturating_sub(in_flight.len());
            if free > 0 {
                let now = unix_millis();
                let lease_until = now.saturating_add(millis(config.lease()));
                match self
                    .inner
                    .db
                    .claim_webhook_deliveries(now, lease_until, free as i64)
                    .await
                {
                    Ok(claimed) => {
                        if claims_failing {
                            crate::log::info("webhook deliveries can be read again", json!({}));
                            claims_failing = false;
                        }
                        for delivery in claimed {
                            in_flight.spawn(self.clone().deliver(delivery));
                        }
                    }
                    Err(e) => {
                        // Logged once per outage, not once per poll.
                        if !claims_failing {
                            crate::log::error(
                                "reading due webhook deliveries (will retry)",
                                json!({"error": e.to_string()}),
                            );
                        }
                        claims_failing = true;
                    }
                }
            }
            if Instant::now() >= next_prune {
                next_prune = Instant::now() + PRUNE_INTERVAL;
                self.prune().await;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = self.inner.wake.notified() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        }
        let grace = config.attempt_timeout + Duration::from_secs(2);
        let drained = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            // Their leases run out and the next start retries them.
            in_flight.abort_all();
        }
    }

    async fn prune(&self) {
        let retention = i64::try_from(self.inner.config.retention.as_secs()).unwrap_or(i64::MAX);
        if let Err(e) = self
            .inner
            .db
            .prune_webhook_deliveries(unix_now().saturating_sub(retention))
            .await
        {
            crate::log::warn(
                "deleting old webhook deliveries (will retry)",
                json!({"error": e.to_string()}),
            );
        }
    }

    /// One attempt of a claimed delivery, and its outcome recorded.
    async fn deliver(self, delivery: ClaimedDelivery) {
        let config = &self.inner.config;
        let outcome = match self.attempt(&delivery).await {
            Ok((status_code, reply_bytes)) => AttemptOutcome::Delivered {
                status_code,
                reply_bytes,
                at: unix_now(),
            },
            Err(failure) if delivery.attempts >= config.max_attempts => {
                crate::log::warn(
                    "a webhook delivery failed for good",
                    json!({"webhook": delivery.webhook_id, "delivery": delivery.id,
                           "event": delivery.event, "attempts": delivery.attempts,
                           "error": failure.message}),
                );
                AttemptOutcome::Failed {
                    status_code: failure.status_code,
                    reply_bytes: failure.reply_bytes,
                    error: failure.message,
                }
            }
            Err(failure) => {
                let delay = backoff_delay(
                    delivery.attempts,
                    config.backoff_base,
                    config.backoff_max,
                    self.jitter(),
                );
                AttemptOutcome::Retry {
                    next_attempt_ms: unix_millis().saturating_add(millis(delay)),
                    status_code: failure.status_code,
                    reply_bytes: failure.reply_bytes,
                    error: failure.message,
                }
            }
        };
        if let Err(e) = self
            .inner
            .db
            .record_webhook_attempt(&delivery.id, &outcome)
            .await
        {
            crate::log::error(
                "recording a webhook attempt (the delivery is retried when its lease runs out)",
                json!({"delivery": delivery.id, "error": e.to_string()}),
            );
        }
    }

    fn jitter(&self) -> f64 {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 2];
        match self.inner.rng.fill(&mut bytes) {
            Ok(()) => f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
            Err(_) => 0.5,
        }
    }

    /// The HTTP client: rustls with ring (installed as the process default if none is, as for
    /// the artifact store), no redirects, no proxy, the attempt timeout on every request.
    fn client(&self) -> Result<reqwest::Client, AttemptFailure> {
        let mut slot = self
            .inner
            .client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = slot.as_ref() {
            return Ok(client.clone());
        }
        let config = &self.inner.config;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            // Every name is resolved through the address policy; literal addresses are checked
            // in `attempt` (the connector does not resolve them).
            .dns_resolver(Arc::new(PolicyResolver {
                policy: self.inner.policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            // Deliveries go straight to the registered URL: a proxy taken from the environment
            // would change where signed alerts go without the operator seeing it.
            .no_proxy()
            .connect_timeout(config.attempt_timeout)
            .timeout(config.attempt_timeout)
            .pool_max_idle_per_host(config.max_in_flight)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("rampart-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AttemptFailure {
                status_code: None,
                reply_bytes: None,
                message: format!(
                    "the server cannot build its HTTP client ({}); install the system's CA certificates (e.g. the ca-certificates package)",
                    error_chain(&e)
                ),
            })?;
        *slot = Some(client.clone());
        Ok(client)
    }

    /// POSTs the delivery once: `Ok((status, reply length))` for a 2xx answer.
    async fn attempt(&self, d: &ClaimedDelivery) -> Result<(u16, Option<u64>), AttemptFailure> {
        let failed = |message: String| AttemptFailure {
            status_code: None,
            reply_bytes: None,
            message,
        };
        let key = self.inner.secrets.as_ref().ok_or_else(|| {
            failed(
                "the server has no webhook secrets key to sign with; restart it with --secrets-key FILE"
                    .into(),
            )
        })?;
        let secret = key
            .open(&d.webhook_id, &d.secret)
            .map_err(|e| failed(e.to_string()))?;
        let url = reqwest::Url::parse(&d.url)
            .map_err(|e| failed(format!("the stored webhook url does not parse: {e}")))?;
        // A literal address is not resolved, so the resolver never sees it: judged here (the
        // same parse reqwest connects with, so odd spellings are already normalised).
        if let Some(ip) = address::literal_address(&url) {
            self.inner
                .policy
                .check(ip)
                .map_err(|denied| failed(format!("refused: {denied}")))?;
        }
        let timeout = self.inner.config.attempt_timeout;
        let deadline = Instant::now() + timeout;
        let timestamp = unix_now();
        let request = self
            .client()?
            .post(url)
            .header(header::CONTENT_TYPE, "application/json")
            .header("X-Rampart-Event", &d.event)
            .header("X-Rampart-Delivery", &d.id)
            .header("X-Rampart-Timestamp", timestamp.to_string())
            .header(
                "X-Rampart-Signature",
                sign(secret.as_bytes(), timestamp, d.body.as_bytes()),
            )
            .body(d.body.clone());
        let timed_out = || {
            failed(format!(
                "no answer within {:.1} s (the attempt timeout)",
                timeout.as_secs_f64()
            ))
        };
        // The client has the same timeout; this outer one also bounds DNS resolution and
        // anything else on the way, whatever the client does.
        let mut response = match tokio::time::timeout_at(deadline, request.send()).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(e)) if e.is_timeout() => return Err(timed_out()),
            Ok(Err(e)) => {
                let e = e.without_url();
                let what = if e.is_connect() {
                    "could not connect"
                } else {
                    "the request failed"
                };
                return Err(failed(format!("{what}: {}", error_chain(&e))));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        // The answer's length: as declared, else counted (and discarded) up to a bound within
        // what is left of the attempt's time. Its content is never kept: a receiver's answer
        // (an internal error page, say) is not for readers of the deliveries.
        let reply_bytes = match response.content_length() {
            Some(declared) => declared,
            None => {
                let mut counted = 0u64;
                let _ = tokio::time::timeout_at(deadline, async {
                    while counted < MAX_REPLY_COUNT {
                        match response.chunk().await {
                            Ok(Some(chunk)) => counted += chunk.len() as u64,
                            Ok(None) | Err(_) => break,
                        }
                    }
                })
                .await;
                counted.min(MAX_REPLY_COUNT)
            }
        };
        if status.is_success() {
            return Ok((status.as_u16(), Some(reply_bytes)));
        }
        let mut message = format!(
            "the endpoint answered HTTP {} ({reply_bytes} bytes, not stored)",
            status.as_u16()
        );
        if status.is_redirection() {
            message.push_str("; redirects are not followed: register the final URL");
        }
        Err(AttemptFailure {
            status_code: Some(status.as_u16()),
            reply_bytes: Some(reply_bytes),
            message,
        })
    }
}

#[derive(Debug)]
struct AttemptFailure {
    status_code: Option<u16>,
    reply_bytes: Option<u64>,
    message: String,
}

/// An error and its sources, "outer: inner: innermost" (reqwest's own text is generic).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

// ---- management API -------------------------------------------------------------------------

/// State of the webhook routes: the management API's (tokens, audit, limits) and the webhooks.
pub(crate) struct WebhookApi {
    management: Arc<ManagementApi>,
    webhooks: Webhooks,
}

impl WebhookApi {
    /// The caller's actor name (`token:<id>`) if its bearer token grants `need`. The same rules
    /// and answers as the rest of the management API (401 without a known token, 403 without
    /// the permission).
    async fn authorize(&self, headers: &HeaderMap, need: Permission) -> Result<String, ApiError> {
        Ok(self.management.authorize(headers, need).await?.actor())
    }
}

fn unknown_webhook(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_webhook",
        format!("no webhook {id:?}; list them with GET /api/v1/webhooks"),
    )
}

fn audit_error(context: &str, e: AuditWriteError) -> ApiError {
    match e {
        AuditWriteError::Db(e) => ApiError::from_db(context, e),
        AuditWriteError::Record(m) => ApiError::invalid(m),
        AuditWriteError::BrokenChain(m) => {
            crate::log::error("the stored audit log does not verify", json!({"error": m}));
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_log_broken",
                "the stored audit log does not verify, so no change is accepted; an auditor must run `rampart audit verify --db URL`",
            )
        }
    }
}

/// Checks a webhook URL fully: the storage bounds, then a real parse; http or https with a host
/// and no credentials (receivers authenticate deliveries by their signature, and a password in
/// the URL would be shown to every reader of the listing). Returns the parsed URL.
fn check_url(url: &str) -> Result<reqwest::Url, ApiError> {
    rampart_db::check_webhook_url(url).map_err(|e| ApiError::invalid(e.to_string()))?;
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ApiError::invalid(format!(
            "the webhook url does not parse ({e}); give e.g. https://alerts.example.com/rampart"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid(
            "the webhook url must start with https:// (or http://)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "the webhook url has no host, e.g. https://alerts.example.com/rampart",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::invalid(
            "the webhook url must not contain credentials (user:password@); receivers check the X-Rampart-Signature instead",
        ));
    }
    Ok(parsed)
}

/// Checks where a new webhook would deliver: its literal address, or every address its host
/// name resolves to now, against the address policy; a refusal is a 422 that names the address
/// and the `--webhook-allow` flag. A name that does not resolve (yet) is accepted: every
/// delivery resolves it again and is refused then if it leads somewhere refused.
async fn check_destination(policy: &AddressPolicy, url: &reqwest::Url) -> Result<(), ApiError> {
    if let Some(ip) = address::literal_address(url) {
        return policy
            .check(ip)
            .map_err(|denied| ApiError::invalid(format!("the webhook url leads to {denied}")));
    }
    let Some(name) = url.host_str() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved = tokio::time::timeout(
        CREATE_RESOLVE_TIMEOUT,
        tokio::net::lookup_host((name, port)),
    )
    .await;
    let Ok(Ok(addresses)) = resolved else {
        return Ok(());
    };
    let ips: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
    policy.check_all(&ips).map_err(|denied| {
        ApiError::invalid(format!(
            "the webhook url's host {name} resolves to {denied}"
        ))
    })
}

async fn list_webhooks(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let webhooks = api
        .management
        .db
        .list_webhooks()
        .await
        .map_err(|e| ApiError::from_db("listing webhooks", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"webhooks": webhooks}),
    ))
}

async fn get_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let webhook = api
        .management
        .db
        .webhook(&id)
        .await
        .map_err(|e| ApiError::from_db("reading a webhook", e))?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(json_response(StatusCode::OK, &webhook))
}

async fn create_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        url: String,
        secret: String,
        events: Vec<String>,
        #[serde(default)]
        description: String,
    }
    let actor = api.authorize(&headers, Permission::Admin).await?;
    let bytes = read_body(&headers, body, api.management.body_limits).await?;
    let r: Request = parse_json(
        &bytes,
        r#"{"url": "https://...", "secret": "<16 to 256 bytes>", "events": ["campaign.halted", ...], "description": "..."}"#,
    )?;
    let url = check_url(&r.url)?;
    rampart_db::check_webhook_secret(&r.secret).map_err(|e| ApiError::invalid(e.to_string()))?;
    if r.events.iter().any(|e| e == WebhookEvent::Test.as_str()) {
        return Err(ApiError::invalid(
            "webhook.test cannot be subscribed to; every webhook receives the test deliveries asked with POST /api/v1/webhooks/{id}/test",
        ));
    }
    let events = rampart_db::check_webhook_events(&r.events)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if r.description.len() > 256 || r.description.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "the description must be at most 256 bytes without control characters",
        ));
    }
    check_destination(&api.webhooks.inner.policy, &url).await?;
    let key = api.webhooks.inner.secrets.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets_key_missing",
            "this server has no webhook secrets key, so it cannot store a webhook's secret; restart it with `rampart server --secrets-key FILE`",
        )
    })?;
    let now = unix_now();
    let id = crate::management::new_id("whk")?;
    let secret = key.seal(&id, &r.secret).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets_key_failed",
            format!("{e}; try again"),
        )
    })?;
    let new = NewWebhook {
        id,
        url: r.url,
        secret,
        events,
        description: r.description,
        created: now,
    };
    // The record names the endpoint and the subscriptions, never the secret.
    let details = json!({"url": new.url, "events": new.events, "description": new.description});
    let webhook = api
        .management
        .audit
        .write(now, &actor, "webhook.created", &new.id, details, |line| {
            let (db, new) = (api.management.db.clone(), new.clone());
            async move { db.create_webhook(&new, &line).await }
        })
        .await
        .map_err(|e| audit_error("creating a webhook", e))?;
    Ok(json_response(StatusCode::CREATED, &webhook))
}

async fn delete_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = api.authorize(&headers, Permission::Admin).await?;
    let deleted = api
        .management
        .audit
        .write(
            unix_now(),
            &actor,
            "webhook.deleted",
            &id,
            json!({}),
            |line| {
                let (db, id) = (api.management.db.clone(), id.clone());
                async move { db.delete_webhook(&id, &line).await }
            },
        )
        .await
        .map_err(|e| audit_error("deleting a webhook", e))?;
    if !deleted {
        return Err(unknown_webhook(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    /// Newest first, at most this many (default 100, at most 1000).
    limit: Option<i64>,
}

async fn list_deliveries(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // Deliveries show what endpoints answered (status, length, errors): admins and auditors
    // only, not every reader of the fleet.
    api.authorize(&headers, Permission::Audit).await?;
    let Query(q) = query.map_err(|_| {
        ApiError::invalid("the only query parameter is limit, a number from 1 to 1000")
    })?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_DELIVERY_PAGE);
    let deliveries = api
        .management
        .db
        .webhook_deliveries(&id, limit)
        .await
        .map_err(|e| ApiError::from_db("listing webhook deliveries", e))?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"webhook": id, "deliveries": deliveries}),
    ))
}

async fn test_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Admin).await?;
    let delivery = api
        .webhooks
        .send_test(&id)
        .await
        .map_err(|e| ApiError::from_db("queueing a test delivery", e))?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"webhook": id, "delivery": delivery, "event": WebhookEvent::Test.as_str()}),
    ))
}

/// The webhook routes, to merge into the management API's router. They have no fallback of their
/// own (the management router's answers unknown paths) and count in the same request metrics.
pub(crate) fn router(management: Arc<ManagementApi>, webhooks: Webhooks) -> Router {
    let metrics = management.metrics.clone();
    let state = Arc::new(WebhookApi {
        management,
        webhooks,
    });
    Router::new()
        .route("/api/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/api/v1/webhooks/{id}",
            get(get_webhook).delete(delete_webhook),
        )
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/api/v1/webhooks/{id}/test", post(test_webhook))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method; webhooks are GET/POST /api/v1/webhooks, GET/DELETE /api/v1/webhooks/{id}, GET .../deliveries and POST .../test",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            track_requests,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_match_the_storage_list() {
        let names: Vec<&str> = WebhookEvent::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(names, rampart_db::WEBHOOK_EVENTS);
        for e in WebhookEvent::ALL.into_iter().chain([WebhookEvent::Test]) {
            assert_eq!(WebhookEvent::parse(e.as_str()), Some(e));
        }
        assert_eq!(WebhookEvent::parse("campaign.nope"), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let base = Duration::from_secs(2);
        let max = Duration::from_secs(600);
        assert_eq!(backoff_delay(1, base, max, 0.5), Duration::from_secs(2));
        assert_eq!(backoff_delay(2, base, max, 0.5), Duration::from_secs(4));
        assert_eq!(backoff_delay(3, base, max, 0.5), Duration::from_secs(8));
        assert_eq!(
            backoff_delay(1, base, max, 0.0),
            Duration::from_millis(1600)
        );
        assert_eq!(
            backoff_delay(1, base, max, 1.0),
            Duration::from_millis(2400)
        );
        assert_eq!(backoff_delay(9, base, max, 0.5), Duration::from_secs(512));
        for attempt in [10, 31, 32, 1000, u32::MAX] {
            assert_eq!(backoff_delay(attempt, base, max, 1.0), max, "{attempt}");
            assert!(backoff_delay(attempt, base, max, 0.0) >= Duration::from_secs(480));
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2 with the message split as "timestamp.body".
        let key = b"Jefe";
        let tag = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key),
            b"1700000000.{\"a\":1}",
        );
        assert_eq!(
            sign(key, 1_700_000_000, b"{\"a\":1}"),
            format!("sha256={}", hex::encode(tag.as_ref()))
        );
        assert_ne!(
            sign(key, 1_700_000_001, b"{\"a\":1}"),
            sign(key, 1_700_000_000, b"{\"a\":1}")
        );
    }

    #[test]
    fn config_problems_are_named() {
        assert!(WebhookConfig::default().validate().is_ok());
        let problem = |c: WebhookConfig| c.validate().unwrap_err().to_string();
        let c = WebhookConfig {
            max_in_flight: 0,
            ..WebhookConfig::default()
        };
        assert!(problem(c).contains("max_in_flight"));
        let c = WebhookConfig {
            rollback_spike: RollbackSpikeConfig {
                threshold: 10,
                window: Duration::from_millis(10),
            },
            ..WebhookConfig::default()
        };
        assert!(problem(c).contains("window"));
        let c = WebhookConfig {
            backoff_max: Duration::from_secs(1),
            ..WebhookConfig::default()
        };
        assert!(problem(c).contains("backoff_max"));
    }
}
