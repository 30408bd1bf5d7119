//! The detectors' engine (issue 16): every [`TICK`] it reads the new signals
//! from stored state (`signals`), runs `rampart_incident::detect`'s rules over them and
//! records each finding through the incident store, then checks every engine's heartbeat.
//!
//! Fail closed: a signal source that cannot be read, or a rule that cannot evaluate, is a
//! `detector_failure` finding of its own (never only a log line); an engine whose heartbeat
//! is older than its bound is an `engine_stalled` finding; and this engine is itself watched
//! by a separate task ([`DetectorEngine::watch_detectors`]). A source's cursor moves only
//! after its findings are recorded, so a restart or a failed write reads them again.
//!
//! Signals are written where they happen, each with its audit record (see `signals`):
//! [`record_hardware_change`] (device poll), [`RevokedUse`] (the front doors refusing a
//! revoked certificate or token) and [`record_monitor_alert`] (the log monitor's alert through
//! `POST /api/v1/monitor/alerts`).

mod revoked_use;
mod signals;

use std::sync::Arc;
use std::time::Duration;

use rampart_db::{Db, DbError, DeviceFacts, ReportCursor};
use rampart_incident::detect::{Beat, DetectorConfig, Detectors, KnownReleases, Signal};
use rampart_incident::finding::Finding;
use serde_json::json;
use tokio::sync::Mutex;

pub(crate) use revoked_use::RevokedUse;
pub(crate) use signals::actions;

use super::attestation::security_event;
use super::heartbeat::{Heart, Heartbeats};
use super::incidents::IncidentStore;
use crate::delivery::image_repo::HostedRepo;
use crate::observe::audit::{AuditWriteError, AuditWriter};
use crate::observe::metrics::Metrics;

/// How often the engine reads its signals.
pub const TICK: Duration = Duration::from_secs(1);
/// How often the separate watch task checks this engine's own heartbeat.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);
/// This engine's name in `engine_heartbeats`.
pub const ENGINE: &str = "detectors";

/// The signal sources, by the name their failures and cursors carry.
mod source {
    pub(super) const AUDIT: &str = "audit_log";
    pub(super) const REPORTS: &str = "reports";
    pub(super) const STALE: &str = "attestation_stale";
    pub(super) const INVENTORY: &str = "inventory";
    pub(super) const REGISTRY: &str = "registry";
    pub(super) const HEARTBEATS: &str = "heartbeats";
}

/// Where the cursor-kept sources stand.
struct Cursors {
    audit: u64,
    reports: ReportCursor,
    /// When the inventory was last compared (Unix seconds).
    inventory_at: i64,
    /// Firmware changes from this time on (Unix seconds) are still to be compared: every
    /// round reads them, so a device reporting unknown firmware is caught at that poll; the
    /// whole-inventory sweep stays as the backstop (and covers changes from before a start).
    firmware_changes_from: i64,
}

/// The detectors' engine.
pub(crate) struct DetectorEngine {
    db: Db,
    store: Arc<IncidentStore>,
    rules: Mutex<(Detectors, Cursors)>,
    image_repo: Option<Arc<HostedRepo>>,
    heartbeats: Heartbeats,
    heart: Heart,
    metrics: Arc<Metrics>,
    /// The attestation freshness window, seconds (`None`: attestation is off, nothing goes
    /// stale).
    freshness: Option<i64>,
    started_at: i64,
}

impl DetectorEngine {
    /// The engine with its cursors: resumed from the database, or, on a first start, from the
    /// current end of each stream (history before the detectors existed is not judged).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        db: Db,
        store: Arc<IncidentStore>,
        config: DetectorConfig,
        image_repo: Option<Arc<HostedRepo>>,
        heartbeats: Heartbeats,
        metrics: Arc<Metrics>,
        freshness: Option<i64>,
        now: i64,
    ) -> Result<Arc<DetectorEngine>, String> {
        let rules = Detectors::new(config).map_err(|e| e.to_string())?;
        let stored = |e: DbError| format!("reading the detectors' cursors: {e}");
        let audit = match db.detector_cursor(source::AUDIT).await.map_err(stored)? {
            Some(text) => text
                .parse()
                .map_err(|_| format!("the stored audit-log cursor {text:?} is not a number"))?,
            None => {
                let next = db
                    .last_audit()
                    .await
                    .map_err(stored)?
                    .map_or(0, |line| line.seq + 1);
                db.save_detector_cursor(source::AUDIT, &next.to_string(), now)
                    .await
                    .map_err(stored)?;
                next
            }
        };
        let reports = match db.detector_cursor(source::REPORTS).await.map_err(stored)? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| format!("the stored reports cursor does not parse: {e}"))?,
            None => {
                let cursor = ReportCursor {
                    created: now.saturating_sub(signals::REPORT_SETTLE_SECS),
                    ..ReportCursor::default()
                };
                let text = serde_json::to_string(&cursor).map_err(|e| e.to_string())?;
                db.save_detector_cursor(source::REPORTS, &text, now)
                    .await
                    .map_err(stored)?;
                cursor
            }
        };
        let heart = heartbeats.register(ENGINE);
        Ok(Arc::new(DetectorEngine {
            db,
            store,
            rules: Mutex::new((
                rules,
                Cursors {
                    audit,
                    reports,
                    inventory_at: i64::MIN,
                    firmware_changes_from: i64::MAX,
                },
            )),
            image_repo,
            heartbeats,
            heart,
            metrics,
            freshness,
            started_at: now,
        }))
    }

    /// Records findings; returns those the store could not record (the rules forget them,
    /// so they are found again).
    async fn record(&self, rules: &mut Detectors, found: Vec<Finding>) -> usize {
        let mut failed = 0;
        for f in found {
            match self.store.record_finding(&f).await {
                Ok(_) => self.metrics.detectors.found(f.cause.detector),
                Err(e) => {
                    failed += 1;
                    rules.forget(&f);
                    crate::observe::log::error(
                        "recording a detector finding (read again at the next round)",
                        json!({"cause": f.cause.dedupe_key(), "device": f.device_id, "error": e.to_string()}),
                    );
                }
            }
        }
        failed
    }

    /// A source that could not be read: its own finding.
    async fn failed(&self, rules: &mut Detectors, source: &str, error: &str, now: i64) {
        crate::observe::log::error(
            "a detector cannot evaluate",
            json!({"source": source, "error": error}),
        );
        let found: Vec<Finding> = rules
            .detector_failure(source, error, now)
            .into_iter()
            .collect();
        self.record(rules, found).await;
    }

    /// Runs the rules over `signals`, records what they find; true when all were recorded.
    async fn judge(
        &self,
        rules: &mut Detectors,
        signals: &[Signal],
        known: Option<&KnownReleases>,
        now: i64,
    ) -> bool {
        let mut found = Vec::new();
        for s in signals {
            found.extend(rules.observe(s, known, now));
        }
        self.record(rules, found).await == 0
    }

    /// One round at `now`: every source, then the heartbeats.
    pub(crate) async fn tick(&self, now: i64) {
        let mut guard = self.rules.lock().await;
        let (rules, cursors) = &mut *guard;

        match signals::audit_signals(&self.db, cursors.audit).await {
            Ok((found, next)) => {
                if self.judge(rules, &found, None, now).await && next != cursors.audit {
                    match self
                        .db
                        .save_detector_cursor(source::AUDIT, &next.to_string(), now)
                        .await
                    {
                        Ok(()) => cursors.audit = next,
                        Err(e) => self.failed(rules, source::AUDIT, &e.to_string(), now).await,
                    }
                }
            }
            Err(e) => self.failed(rules, source::AUDIT, &e, now).await,
        }

        match signals::report_signals(&self.db, &cursors.reports, now).await {
            Ok((found, next)) => {
                if self.judge(rules, &found, None, now).await && next != cursors.reports {
                    let saved = match serde_json::to_string(&next) {
                        Ok(text) => self
                            .db
                            .save_detector_cursor(source::REPORTS, &text, now)
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    match saved {
                        Ok(()) => cursors.reports = next,
                        Err(e) => self.failed(rules, source::REPORTS, &e, now).await,
                    }
                }
            }
            Err(e) => self.failed(rules, source::REPORTS, &e, now).await,
        }

        // The recomputed sources (stale passes, the inventory) are read whole: not every round.
        let inventory_every = i64::try_from(rules.config().inventory_interval_secs).unwrap_or(30);
        let sweep_due = now.saturating_sub(cursors.inventory_at) >= inventory_every;
        if let Some(freshness) = self.freshness.filter(|_| sweep_due) {
            let stale = rules.config().attestation_stale.clone();
            let secs = |s: u64| i64::try_from(s).unwrap_or(i64::MAX);
            match signals::stale_signals(
                &self.db,
                freshness,
                secs(stale.grace_secs),
                secs(stale.window_secs),
                now,
            )
            .await
            {
                Ok(found) => {
                    self.judge(rules, &found, None, now).await;
                }
                Err(e) => self.failed(rules, source::STALE, &e, now).await,
            }
        }

        if !sweep_due && cursors.firmware_changes_from <= now {
            match signals::firmware_change_signals(&self.db, cursors.firmware_changes_from, now)
                .await
            {
                Ok((found, _)) if found.is_empty() => {}
                Ok((found, next)) => {
                    match signals::known_releases(self.image_repo.as_ref(), now).await {
                        Ok(known) => {
                            if self.judge(rules, &found, known.as_ref(), now).await {
                                cursors.firmware_changes_from = next;
                            }
                        }
                        Err(e) => self.failed(rules, source::REGISTRY, &e, now).await,
                    }
                }
                Err(e) => self.failed(rules, source::INVENTORY, &e, now).await,
            }
        }

        if sweep_due {
            match signals::known_releases(self.image_repo.as_ref(), now).await {
                Ok(Some(known)) => match signals::inventory_signals(&self.db, now).await {
                    Ok(found) => {
                        if self.judge(rules, &found, Some(&known), now).await {
                            cursors.inventory_at = now;
                            // The sweep saw every change committed by now; the last
                            // seconds are read again (a change may commit after the read).
                            cursors.firmware_changes_from =
                                now - signals::FIRMWARE_CHANGES_REREAD_SECS;
                        }
                    }
                    Err(e) => self.failed(rules, source::INVENTORY, &e, now).await,
                },
                Ok(None) => {
                    cursors.inventory_at = now;
                    cursors.firmware_changes_from = now - signals::FIRMWARE_CHANGES_REREAD_SECS;
                }
                Err(e) => self.failed(rules, source::REGISTRY, &e, now).await,
            }
        }

        self.watch_engines(rules, now).await;
        drop(guard);
        self.heart.beat(now);
    }

    /// The watchdog: every registered engine's stored beat against its bound.
    async fn watch_engines(&self, rules: &mut Detectors, now: i64) {
        let stored = match self.db.engine_heartbeats().await {
            Ok(stored) => stored,
            Err(e) => {
                self.failed(rules, source::HEARTBEATS, &e.to_string(), now)
                    .await;
                return;
            }
        };
        let beats = self.heartbeats.stored_beats(&stored, self.started_at);
        for beat in &beats {
            let age = now.saturating_sub(beat.beat_at.unwrap_or(self.started_at));
            self.metrics
                .detectors
                .heartbeat_age(&beat.engine, age.max(0).unsigned_abs());
        }
        let found = rules.stalled_engines(&beats, self.started_at, now);
        self.record(rules, found).await;
    }

    /// Runs a round every [`TICK`] until shutdown.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut tick = interval(TICK);
        while next_round(&mut tick, &mut shutdown).await {
            self.tick(crate::helpers::unix_now()).await;
        }
    }

    /// Watches this engine from outside it: if its own beat (in memory, so neither the
    /// database nor the engine's lock is needed) is older than its bound, an `engine_stalled`
    /// finding is recorded by this task.
    pub(crate) async fn watch_detectors(
        self: Arc<Self>,
        config: DetectorConfig,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Ok(mut own) = Detectors::new(config) else {
            return;
        };
        let mut tick = interval(WATCH_INTERVAL);
        while next_round(&mut tick, &mut shutdown).await {
            let now = crate::helpers::unix_now();
            let beat = Beat {
                engine: ENGINE.to_owned(),
                beat_at: self.heart.last(),
            };
            for f in own.stalled_engines(&[beat], self.started_at, now) {
                if let Err(e) = self.store.record_finding(&f).await {
                    own.forget(&f);
                    crate::observe::log::error(
                        "recording that the detectors' engine stalled",
                        json!({"error": e.to_string()}),
                    );
                } else {
                    self.metrics.detectors.found(f.cause.detector);
                }
            }
        }
    }
}

/// A round timer that waits out a late round instead of bursting to catch up.
fn interval(period: Duration) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Waits for the next round; false once the server is stopping.
async fn next_round(
    tick: &mut tokio::time::Interval,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        _ = tick.tick() => {}
        _ = shutdown.changed() => return false,
    }
    !*shutdown.borrow()
}

/// Stores a device's facts whose hardware id differs from the stored one (`from`), with the
/// security event and audit record the hardware-id detector reads, in one transaction.
pub(crate) async fn record_hardware_change(
    db: &Db,
    audit: &AuditWriter,
    device_id: &str,
    facts: &DeviceFacts,
    from: &str,
    now: i64,
) -> Result<(), AuditWriteError> {
    let details = json!({"from": from, "to": facts.hardware_id});
    let event = security_event(
        "device.hardware_id_changed",
        device_id,
        details.clone(),
        now,
    )?;
    audit
        .write(
            now,
            &format!("device:{device_id}"),
            actions::HARDWARE_ID_CHANGED,
            device_id,
            details,
            |line| {
                let (db, event, facts) = (db.clone(), event.clone(), facts.clone());
                let device_id = device_id.to_owned();
                async move {
                    db.upsert_device_with_event(&device_id, &facts, now, &event, &line)
                        .await
                }
            },
        )
        .await
}

/// The log monitor's alert: a release signed with our key that the registry does not know.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MonitorAlert {
    /// The release's target path, as the log's statement names it.
    pub(crate) target: String,
    /// Its version.
    #[serde(default)]
    pub(crate) version: String,
    /// Lowercase hex SHA-256 of the image.
    pub(crate) sha256: String,
    /// The log entry's index.
    pub(crate) index: u64,
    /// The log's origin line (which log).
    #[serde(default)]
    pub(crate) log: String,
}

impl MonitorAlert {
    /// Checks sizes and shapes; `Err` says what is wrong.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.target.is_empty()
            || self.target.len() > 256
            || self.target.chars().any(char::is_control)
        {
            return Err("target must be 1 to 256 characters without control characters".into());
        }
        if self.version.len() > 128 || self.version.chars().any(char::is_control) {
            return Err("version must be at most 128 characters without control characters".into());
        }
        if self.log.len() > 256 || self.log.chars().any(char::is_control) {
            return Err("log must be at most 256 characters without control characters".into());
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("sha256 must be 64 hexadecimal digits".into());
        }
        Ok(())
    }
}

/// Records the log monitor's alert as a security event with its audit record (the detectors
/// read it from the audit log).
pub(crate) async fn record_monitor_alert(
    db: &Db,
    audit: &AuditWriter,
    actor: &str,
    alert: &MonitorAlert,
    now: i64,
) -> Result<(), AuditWriteError> {
    let mut details = serde_json::to_value(alert)
        .map_err(|e| AuditWriteError::Record(format!("monitor alert: {e}")))?;
    details["sha256"] = json!(alert.sha256.to_ascii_lowercase());
    let event = security_event("monitor.unknown_release", "", details.clone(), now)?;
    audit
        .write(
            now,
            actor,
            actions::MONITOR_UNKNOWN_RELEASE,
            &alert.target,
            details,
            |line| {
                let (db, event) = (db.clone(), event.clone());
                async move { db.insert_security_event(&event, &line).await }
            },
        )
        .await
}

/// The detectors' settings of a server: the `[detectors]` table of `--incident-config`, with
/// each engine's heartbeat bound raised to fit its own interval (an engine that sleeps for its
/// interval between rounds is not stalled) unless the table sets that engine's bound.
pub(crate) fn detector_config(config: &crate::ServerConfig) -> Result<DetectorConfig, String> {
    let mut detectors: DetectorConfig = toml::Value::Table(config.incidents.detectors.clone())
        .try_into()
        .map_err(|e| format!("--incident-config [detectors]: {e}"))?;
    let mut intervals = vec![
        ("last_seen", config.last_seen_flush_interval),
        ("webhooks", config.webhooks.poll_interval),
        ("renewal", config.metadata.check_interval),
        ("alerts", config.alerts.poll_interval),
        ("incidents", config.incidents.progress_interval),
    ];
    if let Some(anchor) = &config.audit_anchor {
        intervals.push(("audit_anchor", anchor.interval));
    }
    if let Some(attestation) = &config.attestation {
        intervals.push(("attestation", attestation.sweep_interval));
    }
    for (engine, interval) in intervals {
        let fitted = interval.as_secs().saturating_mul(3).saturating_add(10);
        if fitted > detectors.heartbeat.bound_secs {
            detectors
                .heartbeat
                .bounds
                .entry(engine.to_owned())
                .or_insert(fitted.min(rampart_incident::detect::MAX_WINDOW_SECS));
        }
    }
    detectors.validate().map_err(|e| e.to_string())?;
    Ok(detectors)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn engine(
        config: DetectorConfig,
        now: i64,
    ) -> (Arc<DetectorEngine>, Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::connect(&format!("sqlite://{}", dir.path().join("d.db").display()))
            .await
            .unwrap();
        let audit = AuditWriter::new(db.clone());
        let store = Arc::new(IncidentStore::new(
            db.clone(),
            audit,
            rampart_incident::playbook::Playbooks::default(),
        ));
        let engine = DetectorEngine::start(
            db.clone(),
            store,
            config,
            None,
            Heartbeats::default(),
            Arc::new(Metrics::default()),
            None,
            now,
        )
        .await
        .unwrap();
        (engine, db, dir)
    }

    #[tokio::test]
    async fn an_engine_that_stops_beating_is_stalled_on_the_watchdogs_clock() {
        let start = crate::helpers::unix_now();
        let (engine, db, _dir) = engine(DetectorConfig::default(), start).await;
        let campaigns = engine.heartbeats.register("campaigns");
        let webhooks = engine.heartbeats.register("webhooks");
        campaigns.beat(start + 10);
        webhooks.beat(start + 10);
        engine.heartbeats.flush(&db).await.unwrap();
        // Within the 120 s bound: nothing.
        engine.tick(start + 100).await;
        assert!(
            db.open_incident_for_cause("engine_stalled:campaigns")
                .await
                .unwrap()
                .is_none()
        );
        // Webhooks keeps beating, campaigns does not.
        webhooks.beat(start + 150);
        engine.heartbeats.flush(&db).await.unwrap();
        engine.tick(start + 200).await;
        let stalled = db
            .open_incident_for_cause("engine_stalled:campaigns")
            .await
            .unwrap()
            .expect("the stalled engine's incident");
        assert_eq!(stalled.detector, "engine_stalled");
        assert!(
            db.open_incident_for_cause("engine_stalled:webhooks")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn the_detectors_engine_is_watched_from_outside_it() {
        let config = DetectorConfig {
            heartbeat: rampart_incident::detect::HeartbeatConfig {
                bound_secs: 5,
                ..Default::default()
            },
            ..Default::default()
        };
        let (engine, db, _dir) = engine(config.clone(), crate::helpers::unix_now()).await;
        // The engine is stuck: its round holds the lock and never ends.
        let _stuck = engine.rules.lock().await;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let watch = tokio::spawn(engine.clone().watch_detectors(config, stop_rx));
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while db
            .open_incident_for_cause("engine_stalled:detectors")
            .await
            .unwrap()
            .is_none()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no engine_stalled:detectors incident"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        watch.abort();
    }
}
