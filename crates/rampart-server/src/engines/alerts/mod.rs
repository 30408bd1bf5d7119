//! High-priority alerts: the executor of the incident playbooks' `alert` actions and the sinks
//! the alerts go through.
//!
//! ```text
//! incident_actions ──claim──► Alerts ──Db::queue_alert──► alert_deliveries ──► syslog sink (UDP / TCP)
//!  (action = alert)          builds the   (dedupe window:     (the outbox,    └─► webhooks handoff ──►
//!                            alert from    repeats held as     durable)            webhook_deliveries
//!                            the incident  one update)                             (signed, retried)
//! ```
//!
//! Each claimed action becomes one [`Alert`] (the incident's severity, its cause as the dedupe
//! key, its devices, release, evidence hashes and timeline tail, bounded) queued for every sink
//! in one transaction, and the action is finished with an `alert_sent` (or `alert_held`)
//! timeline entry and audit record. Repeats of a key within the dedupe window are held and go
//! out as one update when it ends. The syslog sink sends RFC 5424 messages
//! ([`syslog`](self::syslog)); the webhooks handoff queues the `incident.alert` event for every
//! webhook subscribed to it, which the webhook dispatcher signs and retries. A syslog attempt that
//! fails is retried with exponential backoff and jitter until the alert is older than
//! [`AlertConfig::give_up_after`].
//!
//! Every tick also judges each sink from its outbox ([`rampart_notify::sink_health`]): a sink
//! whose alert failed too many attempts in a row, waited too long or was given up is failing.
//! When a sink starts failing the engine says so in the log and the metrics
//! (`rampart_alert_sink_failing`, beside `rampart_alert_delivery_failures_total`) and sends an
//! `alert_delivery_failing` alert of its own through every OTHER sink, never only through the
//! failing one.

pub mod syslog;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_db::{
    ALERT_SINK_SYSLOG, ALERT_SINK_WEBHOOKS, AlertAttempt, AlertQueued, AuditLine, ClaimedAlert, Db,
    DbError, INCIDENT_ALERT_EVENT, IncidentAction, TimelineEntry,
};
use rampart_incident::alert::{Alert, AlertIncident};
use rampart_incident::finding::Finding;
use rampart_incident::model::{Action, Cause, Detector, IncidentState, Severity};
use rampart_notify::backoff_delay;
use rampart_notify::sink_health::{HealthPolicy, SinkProblem, SinkStats, judge};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::engines::incidents::IncidentStore;
use crate::engines::webhooks::{WebhookEvent, Webhooks, jitter, millis, unix_millis};
use crate::helpers::unix_now;
use crate::observe::audit::{AuditWriteError, AuditWriter};
use crate::observe::metrics::Metrics;

pub use rampart_notify::sink_health::{
    DEFAULT_MAX_AGE as DEFAULT_FAILING_AFTER,
    DEFAULT_MAX_FAILURES as DEFAULT_FAILING_AFTER_ATTEMPTS,
};
pub use rampart_notify::syslog::{FACILITIES, facility_code};
pub use syslog::{SyslogTarget, Transport};

/// Default dedupe window: repeats of one key within it become one update.
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(300);
/// Default syslog facility: `auth` (4), security and authorisation messages.
pub const DEFAULT_FACILITY: u8 = 4;
/// Who the alert engine's timeline entries and audit records name.
const ACTOR: &str = "engine:alerts";
/// Actions claimed per tick.
const CLAIM_BATCH: i64 = 50;
/// Syslog messages sent per tick (each bounded by the attempt timeout).
const SEND_BATCH: i64 = 20;
/// How often settled deliveries past the retention are deleted.
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The alert engine's settings. [`Default`] gives the production values and no syslog sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertConfig {
    /// The syslog receiver (`--syslog`); `None`: alerts go through webhooks only.
    pub syslog: Option<SyslogTarget>,
    /// Syslog facility code, 0 to 23 (`--syslog-facility`).
    pub facility: u8,
    /// HOSTNAME of the syslog messages; `None`: the host's name.
    pub hostname: Option<String>,
    /// Repeats of one dedupe key within this window are held and sent as one update.
    pub dedupe_window: Duration,
    /// When a sink counts as failing.
    pub health: HealthPolicy,
    /// Hard limit on one syslog attempt (connect and write).
    pub attempt_timeout: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A syslog alert still undelivered this long after it was queued is given up.
    pub give_up_after: Duration,
    /// How often the engine looks for actions, held alerts and due retries.
    pub poll_interval: Duration,
    /// Settled deliveries are kept this long.
    pub retention: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            syslog: None,
            facility: DEFAULT_FACILITY,
            hostname: None,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            health: HealthPolicy::default(),
            attempt_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(86_400),
            poll_interval: Duration::from_secs(1),
            retention: Duration::from_secs(30 * 86_400),
        }
    }
}

impl AlertConfig {
    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let problem = if self.facility > 23 {
            "alerts.facility must be 0 to 23 (e.g. auth, local0)"
        } else if self.health.max_failures == 0 {
            "alerts.health.max_failures must be at least 1"
        } else if self.attempt_timeout.is_zero() {
            "alerts.attempt_timeout must not be zero"
        } else if self.backoff_base.is_zero() || self.backoff_max < self.backoff_base {
            "alerts.backoff_base must not be zero and alerts.backoff_max at least it"
        } else if self.poll_interval.is_zero() {
            "alerts.poll_interval must not be zero"
        } else if self.give_up_after.is_zero() || self.retention.is_zero() {
            "alerts.give_up_after and alerts.retention must not be zero"
        } else {
            return Ok(());
        };
        Err(problem.to_owned())
    }
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// The alert engine. Cheap to clone.
#[derive(Clone)]
pub struct Alerts {
    inner: Arc<Inner>,
}

/// What the alert engine works with, shared with the rest of the server.
pub struct AlertHandles {
    pub db: Db,
    pub audit: AuditWriter,
    pub hooks: Webhooks,
    pub metrics: Arc<Metrics>,
    /// Where a failing sink is recorded as an `alert_delivery_failing` incident.
    pub incidents: Arc<IncidentStore>,
}

struct Inner {
    db: Db,
    audit: AuditWriter,
    hooks: Webhooks,
    metrics: Arc<Metrics>,
    incidents: Arc<IncidentStore>,
    config: AlertConfig,
    hostname: Option<String>,
    /// The failing sinks and why, as of the last health check.
    failing: Mutex<BTreeMap<String, SinkProblem>>,
    wake: Notify,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for Alerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerts")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Alerts {
    pub fn new(handles: AlertHandles, config: AlertConfig) -> Alerts {
        let AlertHandles {
            db,
            audit,
            hooks,
            metrics,
            incidents,
        } = handles;
        let hostname = config.hostname.clone().or_else(syslog::local_hostname);
        Alerts {
            inner: Arc::new(Inner {
                db,
                audit,
                hooks,
                metrics,
                incidents,
                config,
                hostname,
                failing: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                rng: ring::rand::SystemRandom::new(),
            }),
        }
    }

    pub fn config(&self) -> &AlertConfig {
        &self.inner.config
    }

    /// The sinks failing at the last health check, with why (`syslog`, `webhook:ID`).
    pub fn failing_sinks(&self) -> Vec<(String, String)> {
        self.failing()
            .iter()
            .map(|(sink, problem)| (sink.clone(), problem.to_string()))
            .collect()
    }

    fn failing(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SinkProblem>> {
        // Plain data: a panic elsewhere cannot leave it half-updated.
        self.inner
            .failing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Looks for work at once (an alert action was just approved).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The outbox sinks every alert is queued for.
    fn sinks(&self) -> Vec<String> {
        let mut sinks = Vec::with_capacity(2);
        if self.inner.config.syslog.is_some() {
            sinks.push(ALERT_SINK_SYSLOG.to_owned());
        }
        sinks.push(ALERT_SINK_WEBHOOKS.to_owned());
        sinks
    }

    /// The sinks an alert about failing `sink` can go through: syslog unless it is the one
    /// failing, and the webhooks handoff when an enabled webhook other than the failing one
    /// subscribes to `incident.alert` (the handoff reaches the failing one too, uselessly but
    /// harmlessly).
    async fn other_sinks(&self, sink: &str) -> Result<Vec<String>, DbError> {
        let mut others = Vec::with_capacity(2);
        if self.inner.config.syslog.is_some() && sink != ALERT_SINK_SYSLOG {
            others.push(ALERT_SINK_SYSLOG.to_owned());
        }
        let other_webhook = self.inner.db.list_webhooks().await?.iter().any(|w| {
            w.enabled
                && w.events.iter().any(|e| e == INCIDENT_ALERT_EVENT)
                && sink != format!("webhook:{}", w.id)
        });
        if other_webhook {
            others.push(ALERT_SINK_WEBHOOKS.to_owned());
        }
        Ok(others)
    }

    /// Runs until `stop` turns true: executes alert actions, releases held alerts, sends due
    /// alerts and judges the sinks, every poll interval or when woken.
    pub(crate) async fn run(
        self,
        mut stop: watch::Receiver<bool>,
        heart: crate::engines::heartbeat::Heart,
    ) {
        let mut syslog_sink = self
            .inner
            .config
            .syslog
            .clone()
            .map(|target| syslog::SyslogSink::new(target, self.inner.config.attempt_timeout));
        let mut next_prune = tokio::time::Instant::now();
        let mut failing_reads = false;
        loop {
            if *stop.borrow() {
                break;
            }
            let outcome = self.tick(syslog_sink.as_mut()).await;
            match outcome {
                Ok(()) if failing_reads => {
                    crate::observe::log::info(
                        "the alert engine can read its work again",
                        json!({}),
                    );
                    failing_reads = false;
                }
                Ok(()) => {}
                Err(e) => {
                    if !failing_reads {
                        crate::observe::log::error(
                            "the alert engine could not read or store its work (will retry)",
                            json!({"error": e.to_string()}),
                        );
                    }
                    failing_reads = true;
                }
            }
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + PRUNE_INTERVAL;
                let before = unix_now().saturating_sub(secs(self.inner.config.retention));
                let _ = self.inner.db.prune_alert_deliveries(before).await;
            }
            heart.beat(unix_now());
            tokio::select! {
                _ = stop.changed() => {}
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(self.inner.config.poll_interval) => {}
            }
        }
    }

    /// One round of everything; the first storage error ends it.
    async fn tick(&self, syslog_sink: Option<&mut syslog::SyslogSink>) -> Result<(), DbError> {
        for action in self
            .inner
            .db
            .claim_incident_actions(Action::Alert.as_str(), CLAIM_BATCH)
            .await?
        {
            self.execute(&action).await;
        }
        self.inner.db.release_held_alerts(unix_millis()).await?;
        if let Some(sink) = syslog_sink {
            self.send_syslog(sink).await?;
        }
        self.hand_to_webhooks().await?;
        self.judge_sinks().await
    }

    /// Queues the alert of one claimed action and finishes the action with its timeline entry.
    async fn execute(&self, action: &IncidentAction) {
        let now = unix_now();
        let result = async {
            let Some((incident, severity, cause)) =
                self.inner.db.alert_incident(&action.incident_id).await?
            else {
                return Ok::<_, DbError>(None);
            };
            let alert = Alert {
                id: action.id.clone(),
                dedupe_key: cause,
                severity,
                update: false,
                repeats: 0,
                created: now,
                incident,
            }
            .bounded();
            let queued = self
                .inner
                .db
                .queue_alert(
                    &alert,
                    &self.sinks(),
                    unix_millis(),
                    millis(self.inner.config.dedupe_window),
                )
                .await?;
            Ok(Some((alert, queued)))
        }
        .await;
        let (succeeded, kind, outcome) = match &result {
            Ok(Some((alert, queued))) => {
                let (kind, how) = match queued {
                    AlertQueued::Sent { update: false } => ("alert_sent", json!("sent")),
                    AlertQueued::Sent { update: true } => {
                        ("alert_sent", json!("sent as an update"))
                    }
                    AlertQueued::Held { due_ms, repeats } => (
                        "alert_held",
                        json!(format!(
                            "held until {} (Unix ms) as an update of its key, {repeats} repeats folded in",
                            due_ms
                        )),
                    ),
                    AlertQueued::AlreadyQueued => ("alert_sent", json!("already queued")),
                };
                (
                    true,
                    kind,
                    json!({"alert": alert.id, "dedupe_key": alert.dedupe_key,
                           "severity": alert.severity.as_str(), "queued": how,
                           "sinks": self.sinks()}),
                )
            }
            Ok(None) => (
                false,
                "alert_failed",
                json!({"error": "the incident no longer exists"}),
            ),
            Err(e) => (
                false,
                "alert_failed",
                json!({"error": format!("queueing the alert: {e}")}),
            ),
        };
        let mut detail = match &action.detail {
            Value::Object(map) => Value::Object(map.clone()),
            _ => json!({}),
        };
        if let (Value::Object(detail), Value::Object(outcome)) = (&mut detail, &outcome) {
            detail.extend(outcome.clone());
        }
        let db = self.inner.db.clone();
        let written = self
            .timeline(&action.incident_id, kind, now, outcome, |entry, line| {
                let db = db.clone();
                let detail = detail.clone();
                async move {
                    db.finish_incident_action(&action.id, succeeded, &detail, &entry, &line)
                        .await
                }
            })
            .await;
        if let Err(e) = written {
            crate::observe::log::error(
                "finishing an alert action (it is run again after a restart; its alert is not queued twice)",
                json!({"action": action.id, "incident": action.incident_id, "error": e.to_string()}),
            );
        }
    }

    /// Writes a timeline entry of `incident` (`kind`, by `engine:alerts`) and its audit record
    /// (`incident.KIND`) through `store`, which stores both in one transaction with its change.
    async fn timeline<F, Fut>(
        &self,
        incident: &str,
        kind: &str,
        at: i64,
        detail: Value,
        store: F,
    ) -> Result<(), AuditWriteError>
    where
        F: Fn(TimelineEntry, AuditLine) -> Fut,
        Fut: std::future::Future<Output = Result<(), DbError>>,
    {
        self.inner
            .audit
            .write(
                at,
                ACTOR,
                &format!("incident.{kind}"),
                incident,
                detail.clone(),
                |line| {
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: incident.to_owned(),
                        at,
                        kind: kind.to_owned(),
                        actor: ACTOR.to_owned(),
                        device_id: String::new(),
                        detail: detail.clone(),
                    };
                    store(entry, line)
                },
            )
            .await
    }

    /// Sends the due syslog alerts, one at a time, and records each attempt.
    async fn send_syslog(&self, sink: &mut syslog::SyslogSink) -> Result<(), DbError> {
        let config = &self.inner.config;
        let lease = millis(config.attempt_timeout.saturating_mul(2)) + 30_000;
        // One at a time, in order; a failure ends the round, so a receiver that is down costs
        // one attempt per round, not one per waiting alert.
        for _ in 0..SEND_BATCH {
            let now_ms = unix_millis();
            let Some(claimed) = self
                .inner
                .db
                .claim_alert_deliveries(ALERT_SINK_SYSLOG, now_ms, now_ms + lease, 1)
                .await?
                .pop()
            else {
                break;
            };
            let (outcome, failed) = match self.syslog_attempt(sink, &claimed).await {
                Ok(()) => (AlertAttempt::Delivered { at: unix_now() }, false),
                Err(error) => {
                    self.inner.metrics.alert_delivery_failed(ALERT_SINK_SYSLOG);
                    (self.after_failure(&claimed, error), true)
                }
            };
            self.inner
                .db
                .record_alert_attempt(&claimed.id, &outcome)
                .await?;
            if failed {
                break;
            }
        }
        Ok(())
    }

    /// What a failed syslog attempt leads to: a retry after the backoff, or giving the alert up
    /// once it is older than [`AlertConfig::give_up_after`].
    fn after_failure(&self, claimed: &ClaimedAlert, error: String) -> AlertAttempt {
        let config = &self.inner.config;
        if unix_now().saturating_sub(claimed.created) >= secs(config.give_up_after) {
            crate::observe::log::warn(
                "a syslog alert was given up",
                json!({"alert": claimed.alert_id, "attempts": claimed.attempts, "error": error}),
            );
            return AlertAttempt::GaveUp {
                at: unix_now(),
                error,
            };
        }
        let delay = backoff_delay(
            claimed.attempts,
            config.backoff_base,
            config.backoff_max,
            jitter(&self.inner.rng),
        );
        AlertAttempt::Retry {
            next_attempt_ms: unix_millis().saturating_add(millis(delay)),
            error,
        }
    }

    async fn syslog_attempt(
        &self,
        sink: &mut syslog::SyslogSink,
        claimed: &ClaimedAlert,
    ) -> Result<(), String> {
        let alert: Alert = serde_json::from_str(&claimed.body)
            .map_err(|e| format!("the stored alert does not parse: {e}"))?;
        let message = syslog::message(
            &alert,
            self.inner.config.facility,
            self.inner.hostname.as_deref(),
            unix_millis(),
        )
        .map_err(|e| e.to_string())?;
        sink.send(&message).await
    }

    /// Hands the due alerts of the `webhooks` sink to the webhook outbox as `incident.alert`
    /// events (durable there; the dispatcher signs, sends and retries them).
    async fn hand_to_webhooks(&self) -> Result<(), DbError> {
        let now_ms = unix_millis();
        let due = self
            .inner
            .db
            .claim_alert_deliveries(ALERT_SINK_WEBHOOKS, now_ms, now_ms + 60_000, SEND_BATCH)
            .await?;
        for claimed in due {
            let payload: Value = serde_json::from_str(&claimed.body).unwrap_or(Value::Null);
            let outcome = match self
                .inner
                .hooks
                .emit(WebhookEvent::IncidentAlert, payload)
                .await
            {
                Ok(_) => AlertAttempt::Delivered { at: unix_now() },
                Err(e) => AlertAttempt::Retry {
                    next_attempt_ms: unix_millis() + millis(self.inner.config.backoff_base),
                    error: format!("queueing the incident.alert webhook event: {e}"),
                },
            };
            self.inner
                .db
                .record_alert_attempt(&claimed.id, &outcome)
                .await?;
        }
        Ok(())
    }

    /// Judges every sink; a sink that starts failing raises its own alert through the others.
    async fn judge_sinks(&self) -> Result<(), DbError> {
        let now = unix_now();
        let mut stats = self.inner.db.webhook_alert_stats().await?;
        if self.inner.config.syslog.is_some() {
            stats.push(self.inner.db.alert_sink_stats(ALERT_SINK_SYSLOG).await?);
        }
        let mut newly_failing = Vec::new();
        {
            let mut failing = self.failing();
            for s in &stats {
                let judged = judge(
                    &SinkStats {
                        oldest_pending: s.oldest_pending,
                        failed_attempts: s.failed_attempts,
                        last_delivered: s.last_delivered,
                        last_given_up: s.last_given_up,
                    },
                    &self.inner.config.health,
                    now,
                );
                match (judged, failing.contains_key(&s.sink)) {
                    (Some(problem), false) => {
                        failing.insert(s.sink.clone(), problem);
                        let since = s.oldest_pending.or(s.last_given_up).unwrap_or(now);
                        newly_failing.push((s.sink.clone(), problem, since));
                    }
                    (Some(problem), true) => {
                        failing.insert(s.sink.clone(), problem);
                    }
                    (None, true) => {
                        failing.remove(&s.sink);
                        crate::observe::log::info(
                            "an alert sink delivers again",
                            json!({"sink": s.sink}),
                        );
                    }
                    (None, false) => {}
                }
                self.inner
                    .metrics
                    .set_alert_sink_failing(&s.sink, failing.contains_key(&s.sink));
            }
        }
        for (sink, problem, since) in newly_failing {
            self.raise_sink_failing(&sink, problem, since).await?;
        }
        Ok(())
    }

    /// Records the `alert_delivery_failing` incident of `sink` and sends its alert at once
    /// through every other sink (the playbook's own alert of the incident follows through all
    /// sinks as an update of the same key).
    async fn raise_sink_failing(
        &self,
        sink: &str,
        problem: SinkProblem,
        since: i64,
    ) -> Result<(), DbError> {
        crate::observe::log::error(
            "alert delivery keeps failing",
            json!({"sink": sink, "problem": problem.to_string()}),
        );
        let now = unix_now();
        let title = format!("alert delivery through {sink} keeps failing: {problem}");
        let finding = Finding {
            cause: Cause {
                detector: Detector::AlertDeliveryFailing,
                key: sink.to_owned(),
            },
            severity: Severity::High,
            title: title.clone(),
            device_id: None,
            release: None,
            first_signal_at: since.min(now),
            detail: json!({"sink": sink, "problem": problem.to_string()}),
        };
        // Recorded or not, the alert goes out: a failing incident store must not silence it.
        let recorded = match self.inner.incidents.record_finding(&finding).await {
            Ok(recorded) => self.inner.db.alert_incident(&recorded.incident_id).await?,
            Err(e) => {
                crate::observe::log::error(
                    "recording the failing alert sink as an incident (its alert is sent anyway)",
                    json!({"sink": sink, "error": e.to_string()}),
                );
                None
            }
        };
        let others = self.other_sinks(sink).await?;
        if others.is_empty() {
            crate::observe::log::error(
                "no other alert sink to report a failing sink through: configure both --syslog and an incident.alert webhook",
                json!({"sink": sink}),
            );
            return Ok(());
        }
        let (incident, severity, dedupe_key) = recorded.unwrap_or_else(|| {
            (
                AlertIncident {
                    id: String::new(),
                    title,
                    detector: Detector::AlertDeliveryFailing,
                    state: IncidentState::Detected,
                    release: String::new(),
                    detected_at: now,
                    devices: Vec::new(),
                    device_count: 0,
                    evidence: Vec::new(),
                    evidence_count: 0,
                    timeline: Vec::new(),
                    timeline_count: 0,
                },
                Severity::High,
                finding.cause.dedupe_key(),
            )
        });
        let alert = Alert {
            id: format!("sink-failing-{:x}-{}", unix_millis(), incident.id),
            dedupe_key,
            severity,
            update: false,
            repeats: 0,
            created: now,
            incident,
        }
        .bounded();
        let queued = self
            .inner
            .db
            .queue_alert(
                &alert,
                &others,
                unix_millis(),
                millis(self.inner.config.dedupe_window),
            )
            .await?;
        // Sent at once, not at the next tick.
        self.inner.wake.notify_one();
        if !alert.incident.id.is_empty() {
            let detail = json!({"alert": alert.id, "sinks": others,
                                "queued": format!("{queued:?}"),
                                "why": format!("{sink} is left out: it is the failing sink")});
            let db = self.inner.db.clone();
            let incident_id = alert.incident.id.clone();
            let written = self
                .timeline(&incident_id, "alert_sent", now, detail, |entry, line| {
                    let db = db.clone();
                    async move { db.append_incident_timeline(&entry, &line).await }
                })
                .await;
            if let Err(e) = written {
                crate::observe::log::error(
                    "noting the failing sink's alert in its incident's timeline (the alert is queued)",
                    json!({"incident": incident_id, "error": e.to_string()}),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_config_problems_are_named() {
        assert_eq!(AlertConfig::default().validate(), Ok(()));
        let problem = |c: AlertConfig| c.validate().unwrap_err();
        assert!(
            problem(AlertConfig {
                facility: 24,
                ..AlertConfig::default()
            })
            .contains("facility")
        );
        assert!(
            problem(AlertConfig {
                health: HealthPolicy {
                    max_failures: 0,
                    ..HealthPolicy::default()
                },
                ..AlertConfig::default()
            })
            .contains("max_failures")
        );
        assert!(
            problem(AlertConfig {
                backoff_max: Duration::from_millis(1),
                ..AlertConfig::default()
            })
            .contains("backoff_max")
        );
    }
}
