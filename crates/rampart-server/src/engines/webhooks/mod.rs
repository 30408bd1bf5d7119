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
//! Operators manage webhooks with the management API (`operator::webhooks`). The pure parts
//! (signatures, backoff, the spike detector) are [`rampart_notify`].

pub mod address;
mod config;
pub mod secrets;

use rampart_db::DomainError;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_db::{AttemptOutcome, Backend, ClaimedDelivery, Db, DbError};
use reqwest::header;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::helpers::unix_now;

pub use address::{AddressPolicy, DeniedAddress, IpNetwork};
pub use config::*;
use rampart_notify::ROLLED_BACK;
pub use rampart_notify::{
    DEFAULT_SPIKE_THRESHOLD, DEFAULT_SPIKE_WINDOW, RollbackSpike, RollbackSpikeConfig,
    RollbackSpikeDetector, backoff_delay, sign,
};
pub use secrets::{SecretsKey, SecretsKeyError};

/// Bytes of an answer's body counted at most when it declares no length (the bytes are
/// discarded as they are counted).
const MAX_REPLY_COUNT: u64 = 64 * 1024;
/// How often settled deliveries older than the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

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
    /// Where failed `incident.alert` attempts are counted (set by the server).
    alert_metrics: std::sync::OnceLock<Arc<crate::observe::metrics::Metrics>>,
    spike: Mutex<RollbackSpikeDetector>,
    rng: ring::rand::SystemRandom,
}

impl Webhooks {
    /// Where deliveries may connect.
    pub(crate) fn policy(&self) -> &AddressPolicy {
        &self.inner.policy
    }

    /// Counts failed `incident.alert` attempts in `metrics`
    /// (`rampart_alert_delivery_failures_total{sink="webhook:ID"}`).
    pub(crate) fn count_alert_failures_in(&self, metrics: Arc<crate::observe::metrics::Metrics>) {
        let _ = self.inner.alert_metrics.set(metrics);
    }

    /// The key webhook secrets are sealed with (`None` on PostgreSQL without one).
    pub(crate) fn secrets_key(&self) -> Option<&Arc<SecretsKey>> {
        self.inner.secrets.as_ref()
    }
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn unix_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) fn millis(d: Duration) -> i64 {
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
        crate::observe::log::info(
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
                    crate::observe::log::info(
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
                alert_metrics: std::sync::OnceLock::new(),
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
            crate::observe::log::warn(
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

    /// Wakes the dispatcher (after events were queued in another transaction, as the risk
    /// watch queues its alerts with their exposure records).
    pub(crate) fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// A new delivery's id and envelope. Ids start with the creation time in milliseconds (fixed
    /// width hex) so they sort in creation order, then random bytes so they never collide.
    pub(crate) fn delivery(
        &self,
        event: WebhookEvent,
        created: i64,
        data: &Value,
    ) -> Result<(String, String), DbError> {
        use ring::rand::SecureRandom as _;
        let mut random = [0u8; 6];
        self.inner.rng.fill(&mut random).map_err(|_| {
            DbError::Domain(DomainError::Invalid(
                "the system random generator failed; no delivery id could be made".into(),
            ))
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
        if status != ROLLED_BACK {
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
        crate::observe::log::warn("rollback spike", spike.payload());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            crate::observe::log::error(
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
                crate::observe::log::error(
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
    pub(crate) async fn run_dispatcher(
        self,
        shutdown: impl Future<Output = ()> + Send,
        heart: crate::engines::heartbeat::Heart,
    ) {
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
                            crate::observe::log::info(
                                "webhook deliveries can be read again",
                                json!({}),
                            );
                            claims_failing = false;
                        }
                        for delivery in claimed {
                            in_flight.spawn(self.clone().deliver(delivery));
                        }
                    }
                    Err(e) => {
                        // Logged once per outage, not once per poll.
                        if !claims_failing {
                            crate::observe::log::error(
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
            heart.beat(crate::helpers::unix_now());
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
            crate::observe::log::warn(
                "deleting old webhook deliveries (will retry)",
                json!({"error": e.to_string()}),
            );
        }
    }

    /// One attempt of a claimed delivery, and its outcome recorded.
    async fn deliver(self, delivery: ClaimedDelivery) {
        let config = &self.inner.config;
        let attempt = self.attempt(&delivery).await;
        if attempt.is_err()
            && delivery.event == WebhookEvent::IncidentAlert.as_str()
            && let Some(metrics) = self.inner.alert_metrics.get()
        {
            metrics.alert_delivery_failed(&format!("webhook:{}", delivery.webhook_id));
        }
        let outcome = match attempt {
            Ok((status_code, reply_bytes)) => AttemptOutcome::Delivered {
                status_code,
                reply_bytes,
                at: unix_now(),
            },
            Err(failure) if delivery.attempts >= config.max_attempts => {
                crate::observe::log::warn(
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
            crate::observe::log::error(
                "recording a webhook attempt (the delivery is retried when its lease runs out)",
                json!({"delivery": delivery.id, "error": e.to_string()}),
            );
        }
    }

    fn jitter(&self) -> f64 {
        jitter(&self.inner.rng)
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

/// A random fraction in `[0, 1]` for [`backoff_delay`]; 0.5 if the system generator fails.
pub(crate) fn jitter(rng: &ring::rand::SystemRandom) -> f64 {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 2];
    match rng.fill(&mut bytes) {
        Ok(()) => f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX),
        Err(_) => 0.5,
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
