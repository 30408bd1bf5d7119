//! Server counters and a request-latency histogram, rendered in the
//! Prometheus text exposition format (version 0.0.4).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::observe::labels::{
    AnchorFailure, Api, AttestationCheck, ConnectionCounters, FailureKind,
};
use rampart_incident::model::Detector;
use rampart_listen::AdmissionCounters;
use rampart_protocol::ReportStatus;

/// Upper bounds (seconds) of the request-latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Everything the server counts. Counters only go up (until restart).
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connection-level counters, shared with the device listener.
    pub connections: Arc<ConnectionCounters>,
    /// Each listener's admission counters (see [`rampart_listen::admission`]).
    pub listeners: ListenerAdmissions,
    pub(crate) polls: AtomicU64,
    pub(crate) polls_not_modified: AtomicU64,
    pub(crate) devices_registered: AtomicU64,
    pub(crate) reports: [AtomicU64; ReportStatus::ALL.len()],
    pub(crate) reports_duplicate: AtomicU64,
    pub(crate) attribute_updates: AtomicU64,
    pub(crate) last_seen_flushes: AtomicU64,
    pub(crate) last_seen_rows: AtomicU64,
    pub(crate) last_seen_flush_errors: AtomicU64,
    pub(crate) last_seen_pending: AtomicU64,
    pub(crate) internal_errors: AtomicU64,
    pub(crate) assignments_created: AtomicU64,
    pub(crate) audit_events_dropped: AtomicU64,
    /// Signed audit heads (by the audit anchoring engine).
    pub(crate) audit_heads_signed: AtomicU64,
    /// Anchoring attempts that signed nothing, by [`AnchorFailure`].
    pub(crate) audit_anchor_failures: [AtomicU64; AnchorFailure::ALL.len()],
    /// Failed authentications, by [`FailureKind`].
    pub(crate) auth_failures: [AtomicU64; FailureKind::ALL.len()],
    /// Requests refused (429) because their source failed too often, by
    /// [`Api`].
    pub(crate) auth_throttled: [AtomicU64; Api::ALL.len()],
    pub(crate) metadata_renewals: AtomicU64,
    /// Remote attestation (engines::attestation and the device routes).
    pub(crate) attestation: AttestationMetrics,
    /// Incident detectors' findings and engine heartbeat ages (engines::detectors).
    pub(crate) detectors: DetectorMetrics,
    pub(crate) metadata_renewal_failures: AtomicU64,
    /// Incident alert delivery, by sink.
    pub(crate) alerts: AlertMetrics,
    /// Incidents by state and severity, and the response's timings (engines::incidents).
    pub(crate) incidents: IncidentMetrics,
    /// The risk watch's exposure gauges (engines::risk_watch).
    pub(crate) risk: RiskMetrics,
    /// When each watched role's metadata expires (watched by the metadata renewal engine), by role.
    metadata_expiry: Mutex<BTreeMap<String, MetadataExpiry>>,
    http: Mutex<HttpStats>,
}

/// Remote attestation's counters and the fleet's attestation gauges.
#[derive(Debug, Default)]
pub(crate) struct AttestationMetrics {
    pub(crate) enrolments: AtomicU64,
    pub(crate) quotes_passed: AtomicU64,
    /// Refused attestation steps, by [`AttestationCheck`].
    pub(crate) failures: [AtomicU64; AttestationCheck::ALL.len()],
    /// Passing attestations that went stale (noted by the staleness engine).
    pub(crate) stale_transitions: AtomicU64,
    /// Devices attested, failed and stale at the engine's last sweep.
    pub(crate) attested: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) stale: AtomicU64,
    /// Unix time of the engine's last completed sweep (0: none yet).
    pub(crate) last_sweep: AtomicU64,
}

impl AttestationMetrics {
    fn render(&self, out: &mut String) {
        counter(
            out,
            "rampart_attestation_enrolments_total",
            "Attestation keys enrolled (credential activated).",
            &[("", load(&self.enrolments))],
        );
        counter(
            out,
            "rampart_attestation_quotes_passed_total",
            "Quotes verified, with measurements matching the release the device runs.",
            &[("", load(&self.quotes_passed))],
        );
        let labels: Vec<(String, u64)> = AttestationCheck::ALL
            .iter()
            .map(|&c| {
                (
                    format!("check=\"{}\"", c.as_str()),
                    load(&self.failures[c as usize]),
                )
            })
            .collect();
        let labels: Vec<(&str, u64)> = labels.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            out,
            "rampart_attestation_failures_total",
            "Refused attestation steps, by the check that refused them.",
            &labels,
        );
        counter(
            out,
            "rampart_attestation_stale_total",
            "Passing attestations that went stale (no fresh quote within the freshness window).",
            &[("", load(&self.stale_transitions))],
        );
        gauge_series(
            out,
            "rampart_attestation_devices",
            "Devices by attestation state at the staleness engine's last sweep (never attested counts as stale).",
            &[
                ("state=\"attested\"", load(&self.attested)),
                ("state=\"failed\"", load(&self.failed)),
                ("state=\"stale\"", load(&self.stale)),
            ],
        );
        gauge(
            out,
            "rampart_attestation_last_sweep_timestamp_seconds",
            "When the attestation staleness engine last completed a sweep (0: never); alert when it falls behind.",
            load(&self.last_sweep),
        );
    }
}

/// The incident detectors' findings, by detector, and each engine's heartbeat age.
#[derive(Debug, Default)]
pub(crate) struct DetectorMetrics {
    findings: [AtomicU64; Detector::ALL.len()],
    /// Engine -> age of its last heartbeat at the watchdog's last round, seconds.
    heartbeat_ages: Mutex<BTreeMap<String, u64>>,
}

impl DetectorMetrics {
    /// Counts a finding recorded for `detector`.
    pub(crate) fn found(&self, detector: Detector) {
        if let Some(i) = Detector::ALL.iter().position(|d| *d == detector) {
            Metrics::inc(&self.findings[i]);
        }
    }

    /// Sets the age of `engine`'s last heartbeat.
    pub(crate) fn heartbeat_age(&self, engine: &str, secs: u64) {
        self.heartbeat_ages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(engine.to_owned(), secs);
    }

    fn render(&self, out: &mut String) {
        let labels: Vec<(String, u64)> = Detector::ALL
            .iter()
            .zip(&self.findings)
            .map(|(d, n)| (format!("detector=\"{}\"", d.as_str()), load(n)))
            .collect();
        let labels: Vec<(&str, u64)> = labels.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            out,
            "rampart_detector_findings_total",
            "Findings the incident detectors recorded (an incident opened or a device joined one), by detector.",
            &labels,
        );
        let ages: Vec<(String, u64)> = self
            .heartbeat_ages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(engine, age)| (format!("engine=\"{}\"", escape_label(engine)), *age))
            .collect();
        let ages: Vec<(&str, u64)> = ages.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        gauge_series(
            out,
            "rampart_engine_heartbeat_age_seconds",
            "Age of each engine's last heartbeat at the detectors' last round; an engine past its bound is an engine_stalled incident.",
            &ages,
        );
    }
}

/// Incident alert delivery by sink (`syslog`, `webhook:ID`): failed attempts, and whether the
/// sink is failing now (engines::alerts judges it).
#[derive(Debug, Default)]
pub(crate) struct AlertMetrics {
    /// Sink -> (failed attempts, failing now).
    sinks: Mutex<BTreeMap<String, (u64, bool)>>,
}

impl AlertMetrics {
    fn sinks(&self) -> MutexGuard<'_, BTreeMap<String, (u64, bool)>> {
        self.sinks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn render(&self, out: &mut String) {
        let sinks = self.sinks();
        let series = |value: &dyn Fn(&(u64, bool)) -> u64| -> Vec<(String, u64)> {
            sinks
                .iter()
                .map(|(sink, v)| (format!("sink=\"{}\"", escape_label(sink)), value(v)))
                .collect()
        };
        let failures = series(&|v| v.0);
        let failing = series(&|v| u64::from(v.1));
        counter(
            out,
            "rampart_alert_delivery_failures_total",
            "Failed incident-alert delivery attempts, by sink (syslog, webhook:ID).",
            &borrowed(&failures),
        );
        gauge_series(
            out,
            "rampart_alert_sink_failing",
            "1 while an alert sink keeps failing (too many failed attempts in a row, an alert waiting too long, or given up).",
            &borrowed(&failing),
        );
    }
}

impl Metrics {
    /// Counts a failed alert delivery attempt through `sink`.
    pub(crate) fn alert_delivery_failed(&self, sink: &str) {
        self.alerts.sinks().entry(sink.to_owned()).or_default().0 += 1;
    }

    /// Notes whether `sink` is failing now.
    pub(crate) fn set_alert_sink_failing(&self, sink: &str, failing: bool) {
        self.alerts.sinks().entry(sink.to_owned()).or_default().1 = failing;
    }
}

/// Advisories with an open exposure and the devices exposed, at the risk watch's last pass.
#[derive(Debug, Default)]
pub(crate) struct RiskMetrics {
    pub(crate) advisories_open: AtomicU64,
    pub(crate) exposed_devices: AtomicU64,
}

impl RiskMetrics {
    fn render(&self, out: &mut String) {
        gauge(
            out,
            "rampart_risk_advisories_open",
            "Advisories affecting devices now (exposure open), at the risk watch's last pass.",
            load(&self.advisories_open),
        );
        gauge(
            out,
            "rampart_risk_exposed_devices",
            "Devices running a release at least one advisory affects, at the risk watch's last pass.",
            load(&self.exposed_devices),
        );
    }
}

/// Upper bounds (seconds) of the incident timing histogram: a poll interval to a day.
pub const INCIDENT_TIMING_BUCKETS: [u64; 12] =
    [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14_400, 86_400];

/// The incident response's phases the timing histogram has.
pub(crate) const INCIDENT_PHASES: [&str; 3] = ["detect", "contain", "recover"];

/// Incidents by (state, severity) at the incident engine's last pass, and how long detection,
/// containment and recovery took (engines::incidents observes them as they happen).
#[derive(Debug, Default)]
pub(crate) struct IncidentMetrics {
    counts: Mutex<BTreeMap<(String, String), u64>>,
    timings: Mutex<BTreeMap<&'static str, PhaseTimings>>,
}

/// One phase's histogram: counts per bucket of [`INCIDENT_TIMING_BUCKETS`] (then +Inf), sum
/// and count.
type PhaseTimings = ([u64; INCIDENT_TIMING_BUCKETS.len() + 1], u64, u64);

impl IncidentMetrics {
    /// Replaces the counts by (state, severity).
    pub(crate) fn set_counts(&self, counts: &[(String, String, i64)]) {
        let mut map = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        map.clear();
        for (state, severity, n) in counts {
            map.insert(
                (state.clone(), severity.clone()),
                u64::try_from(*n).unwrap_or(0),
            );
        }
    }

    /// Observes one phase's duration (one of [`INCIDENT_PHASES`]).
    pub(crate) fn observe(&self, phase: &'static str, seconds: i64) {
        let seconds = u64::try_from(seconds).unwrap_or(0);
        let mut timings = self
            .timings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = timings.entry(phase).or_default();
        let index = INCIDENT_TIMING_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(INCIDENT_TIMING_BUCKETS.len());
        entry.0[index] += 1;
        entry.1 += seconds;
        entry.2 += 1;
    }

    fn render(&self, out: &mut String) {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Every (state, severity) pair, so a series reads 0 rather than vanishing.
        let mut series = Vec::new();
        for state in ["detected", "contained", "eradicated", "recovered", "closed"] {
            for severity in ["low", "medium", "high", "critical"] {
                let n = counts
                    .get(&(state.to_string(), severity.to_string()))
                    .copied()
                    .unwrap_or(0);
                series.push((format!("state=\"{state}\",severity=\"{severity}\""), n));
            }
        }
        drop(counts);
        gauge_series(
            out,
            "rampart_incidents",
            "Incidents by state and severity at the incident engine's last pass.",
            &borrowed(&series),
        );
        let name = "rampart_incident_response_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds to detect (first signal to detection), contain and recover (from detection), by phase.\n# TYPE {name} histogram"
        );
        let timings = self
            .timings
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for phase in INCIDENT_PHASES {
            let (buckets, sum, count) = timings.get(phase).copied().unwrap_or_default();
            let mut cumulative = 0;
            for (bound, n) in INCIDENT_TIMING_BUCKETS.iter().zip(buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{phase=\"{phase}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{phase=\"{phase}\",le=\"+Inf\"}} {count}"
            );
            let _ = writeln!(out, "{name}_sum{{phase=\"{phase}\"}} {sum}");
            let _ = writeln!(out, "{name}_count{{phase=\"{phase}\"}} {count}");
        }
    }
}

/// One role's expiry as the metrics know it.
#[derive(Debug, Clone, Copy)]
enum MetadataExpiry {
    /// Expires at this Unix time.
    At(i64),
    /// Re-signed on demand: always at least this many seconds left.
    AtLeast(i64),
}

/// The admission counters of the four listeners.
#[derive(Debug, Default)]
pub struct ListenerAdmissions {
    pub device: Arc<AdmissionCounters>,
    pub ddi: Arc<AdmissionCounters>,
    pub management: Arc<AdmissionCounters>,
    pub metrics: Arc<AdmissionCounters>,
}

impl ListenerAdmissions {
    fn each(&self) -> [(&'static str, &AdmissionCounters); 4] {
        [
            ("listener=\"device\"", &self.device),
            ("listener=\"ddi\"", &self.ddi),
            ("listener=\"management\"", &self.management),
            ("listener=\"metrics\"", &self.metrics),
        ]
    }
}

#[derive(Debug, Default)]
struct HttpStats {
    /// Latency per route template.
    latency: BTreeMap<String, Histogram>,
    /// Responses per (route template, status code).
    responses: BTreeMap<(String, u16), u64>,
}

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Non-cumulative counts per bucket of [`LATENCY_BUCKETS`], then +Inf.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let index = LATENCY_BUCKETS
            .iter()
            .position(|&bound| seconds <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Metrics {
    /// Device polls answered (200 or 304).
    pub fn polls(&self) -> u64 {
        load(&self.polls)
    }

    /// Connections refused at the TLS layer, whatever the reason.
    pub fn refused_connections(&self) -> u64 {
        self.connections.refused()
    }

    /// Last-seen batches written to the database (one transaction each).
    pub fn last_seen_flushes(&self) -> u64 {
        load(&self.last_seen_flushes)
    }

    /// Device rows updated by last-seen batches.
    pub fn last_seen_rows_flushed(&self) -> u64 {
        load(&self.last_seen_rows)
    }

    /// Reports stored with the given status (repeats not included).
    pub fn reports(&self, status: ReportStatus) -> u64 {
        load(&self.reports[status as usize])
    }

    /// Records that `role`'s metadata expires at `unix` (seconds).
    pub(crate) fn set_metadata_expires_at(&self, role: &str, unix: i64) {
        self.metadata_expiry()
            .insert(role.to_owned(), MetadataExpiry::At(unix));
    }

    /// Records that `role`'s metadata is re-signed on demand and always has at least `secs` left.
    pub(crate) fn set_metadata_least_left(&self, role: &str, secs: i64) {
        self.metadata_expiry()
            .insert(role.to_owned(), MetadataExpiry::AtLeast(secs));
    }

    fn metadata_expiry(&self) -> MutexGuard<'_, BTreeMap<String, MetadataExpiry>> {
        self.metadata_expiry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn render_metadata(&self, out: &mut String) {
        counter(
            out,
            "rampart_metadata_renewals_total",
            "Automatic renewals of the image repository's timestamp (and snapshot).",
            &[("", load(&self.metadata_renewals))],
        );
        counter(
            out,
            "rampart_metadata_renewal_failures_total",
            "Automatic renewals that failed (retried at the next check).",
            &[("", load(&self.metadata_renewal_failures))],
        );
        let expiries = self.metadata_expiry().clone();
        if expiries.is_empty() {
            return;
        }
        let name = "rampart_metadata_expiry_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Seconds until each role's metadata expires (negative: expired), by role.\n# TYPE {name} gauge"
        );
        let now = crate::helpers::unix_now();
        for (role, expiry) in expiries {
            let left = match expiry {
                MetadataExpiry::At(unix) => unix.saturating_sub(now),
                MetadataExpiry::AtLeast(secs) => secs,
            };
            let _ = writeln!(out, "{name}{{role=\"{}\"}} {left}", escape_label(&role));
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn http(&self) -> MutexGuard<'_, HttpStats> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // in a way that matters for counters; keep serving.
        self.http
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records one answered request.
    pub fn observe_request(&self, route: &str, status: u16, elapsed: Duration) {
        let mut http = self.http();
        match http.latency.get_mut(route) {
            Some(histogram) => histogram.observe(elapsed.as_secs_f64()),
            None => {
                let mut histogram = Histogram::default();
                histogram.observe(elapsed.as_secs_f64());
                http.latency.insert(route.to_owned(), histogram);
            }
        }
        *http
            .responses
            .entry((route.to_owned(), status))
            .or_insert(0) += 1;
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let c = &self.connections;
        counter(
            &mut out,
            "rampart_server_connections_accepted_total",
            "Connections that completed the mutual-TLS handshake with a device identity.",
            &[("", load(&c.accepted))],
        );
        counter(
            &mut out,
            "rampart_server_connections_refused_total",
            "Connections refused at the TLS layer, by reason.",
            &[
                ("reason=\"handshake_failed\"", load(&c.handshake_failed)),
                ("reason=\"handshake_timeout\"", load(&c.handshake_timeout)),
                ("reason=\"no_device_identity\"", load(&c.no_device_identity)),
                ("reason=\"source_cap\"", load(&c.source_cap)),
            ],
        );
        let open: Vec<(&str, u64)> = self
            .listeners
            .each()
            .iter()
            .map(|(label, c)| (*label, load(&c.open)))
            .collect();
        gauge_series(
            &mut out,
            "rampart_server_connections_open",
            "Connections open now (handshakes in progress included), by listener.",
            &open,
        );
        let refused: Vec<(&str, u64)> = self
            .listeners
            .each()
            .iter()
            .map(|(label, c)| (*label, load(&c.refused_per_source)))
            .collect();
        counter(
            &mut out,
            "rampart_server_connections_source_cap_total",
            "Connections closed at once because their source held its per-source cap, by listener.",
            &refused,
        );
        let shed: Vec<(&str, u64)> = self
            .listeners
            .each()
            .iter()
            .map(|(label, c)| (*label, load(&c.shed)))
            .collect();
        counter(
            &mut out,
            "rampart_server_connections_shed_total",
            "Connections without a request head yet closed to make room at a full listener, by listener.",
            &shed,
        );
        counter(
            &mut out,
            "rampart_server_accept_errors_total",
            "accept(2) failures other than per-connection ones (the listener backs off 1 s).",
            &[("", load(&c.accept_errors))],
        );
        counter(
            &mut out,
            "rampart_server_polls_total",
            "Device polls answered, including 304 Not Modified.",
            &[("", self.polls())],
        );
        counter(
            &mut out,
            "rampart_server_polls_not_modified_total",
            "Device polls answered 304 Not Modified.",
            &[("", load(&self.polls_not_modified))],
        );
        counter(
            &mut out,
            "rampart_server_devices_registered_total",
            "Devices registered on first contact.",
            &[("", load(&self.devices_registered))],
        );
        let reports: Vec<(String, u64)> = ReportStatus::ALL
            .iter()
            .map(|&s| (format!("status=\"{}\"", s.as_str()), self.reports(s)))
            .collect();
        let reports: Vec<(&str, u64)> = reports.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            &mut out,
            "rampart_server_reports_total",
            "Device reports stored, by status.",
            &reports,
        );
        counter(
            &mut out,
            "rampart_server_reports_duplicate_total",
            "Repeated reports (same id, same device) answered 200 without storing again.",
            &[("", load(&self.reports_duplicate))],
        );
        counter(
            &mut out,
            "rampart_server_attribute_updates_total",
            "Device attribute updates that changed the stored attributes.",
            &[("", load(&self.attribute_updates))],
        );
        counter(
            &mut out,
            "rampart_server_last_seen_flushes_total",
            "Last-seen batches written (one database transaction each).",
            &[("", self.last_seen_flushes())],
        );
        counter(
            &mut out,
            "rampart_server_last_seen_rows_flushed_total",
            "Device last-seen times written by the batches.",
            &[("", self.last_seen_rows_flushed())],
        );
        counter(
            &mut out,
            "rampart_server_last_seen_flush_errors_total",
            "Last-seen batches that failed (kept in memory and retried).",
            &[("", load(&self.last_seen_flush_errors))],
        );
        gauge(
            &mut out,
            "rampart_server_last_seen_pending",
            "Devices whose last-seen time waits for the next batch.",
            load(&self.last_seen_pending),
        );
        counter(
            &mut out,
            "rampart_server_assignments_created_total",
            "Assignments created through the management API.",
            &[("", load(&self.assignments_created))],
        );
        let failures: Vec<(String, u64)> = FailureKind::ALL
            .iter()
            .map(|&k| {
                (
                    format!("kind=\"{}\"", k.as_str()),
                    load(&self.auth_failures[k as usize]),
                )
            })
            .collect();
        let failures: Vec<(&str, u64)> = failures.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            &mut out,
            "rampart_server_auth_failures_total",
            "Failed authentications (wrong DDI token or certificate, unknown bearer token, a certificate for a token-enrolled device, a console login with an unknown token), by kind.",
            &failures,
        );
        let throttled: Vec<(String, u64)> = Api::ALL
            .iter()
            .map(|&a| {
                (
                    format!("api=\"{}\"", a.as_str()),
                    load(&self.auth_throttled[a as usize]),
                )
            })
            .collect();
        let throttled: Vec<(&str, u64)> = throttled.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        counter(
            &mut out,
            "rampart_server_auth_throttled_total",
            "Requests answered 429 because their source failed to authenticate too often, by API.",
            &throttled,
        );
        counter(
            &mut out,
            "rampart_server_audit_events_dropped_total",
            "Security events not queued for the audit log because the queue was full.",
            &[("", load(&self.audit_events_dropped))],
        );
        counter(
            &mut out,
            "rampart_audit_heads_signed_total",
            "Heads of the audit log signed with the audit key.",
            &[("", load(&self.audit_heads_signed))],
        );
        let anchor_failures: Vec<(&str, u64)> = AnchorFailure::ALL
            .iter()
            .map(|f| (f.label(), load(&self.audit_anchor_failures[*f as usize])))
            .collect();
        counter(
            &mut out,
            "rampart_audit_anchor_failures_total",
            "Audit anchoring that failed, by reason: tampered (the log no longer extends the last signed head; nothing is signed), storage, transparency_log (the append is retried).",
            &anchor_failures,
        );
        counter(
            &mut out,
            "rampart_server_internal_errors_total",
            "Requests that failed on the server side (storage unavailable, internal errors).",
            &[("", load(&self.internal_errors))],
        );
        self.render_metadata(&mut out);
        self.attestation.render(&mut out);
        self.detectors.render(&mut out);
        self.alerts.render(&mut out);
        self.incidents.render(&mut out);
        self.risk.render(&mut out);

        let http = self.http();
        let name = "rampart_server_http_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer API requests, by route.\n# TYPE {name} histogram"
        );
        for (route, histogram) in &http.latency {
            let route = escape_label(route);
            let mut cumulative = 0;
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "{name}_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "{name}_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "{name}_sum{{route=\"{route}\"}} {}", histogram.sum);
            let _ = writeln!(out, "{name}_count{{route=\"{route}\"}} {}", histogram.count);
        }
        let name = "rampart_server_http_responses_total";
        let _ = writeln!(
            out,
            "# HELP {name} API responses, by route and status code.\n# TYPE {name} counter"
        );
        for ((route, code), n) in &http.responses {
            let _ = writeln!(
                out,
                "{name}{{route=\"{}\",code=\"{code}\"}} {n}",
                escape_label(route)
            );
        }
        out
    }
}

/// Label series with owned labels, as the families take them.
fn borrowed(series: &[(String, u64)]) -> Vec<(&str, u64)> {
    series.iter().map(|(l, v)| (l.as_str(), *v)).collect()
}

fn counter(out: &mut String, name: &str, help: &str, series: &[(&str, u64)]) {
    family(out, name, help, "counter", series);
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    family(out, name, help, "gauge", &[("", value)]);
}

fn gauge_series(out: &mut String, name: &str, help: &str, series: &[(&str, u64)]) {
    family(out, name, help, "gauge", series);
}

/// One metric family in the text format: its help, its type, then a line per series.
fn family(out: &mut String, name: &str, help: &str, kind: &str, series: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in series {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {value}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware: times every request and counts its response by route template.
pub(crate) async fn track_requests(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    metrics.observe_request(&route, status, started.elapsed());
    if crate::observe::log::enabled(crate::observe::log::Level::Debug) {
        crate::observe::log::debug(
            "request",
            serde_json::json!({"method": method.as_str(), "route": route, "status": status,
                               "micros": started.elapsed().as_micros()}),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_render() {
        let metrics = Metrics::default();
        metrics.observe_request("/a", 200, Duration::from_micros(500));
        metrics.observe_request("/a", 200, Duration::from_millis(30));
        metrics.observe_request("/a", 404, Duration::from_secs(30));
        let text = metrics.render();
        let bucket = |le: &str| {
            let prefix = format!(
                "rampart_server_http_request_duration_seconds_bucket{{route=\"/a\",le=\"{le}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map(|v| v.parse::<u64>().unwrap())
        };
        assert_eq!(bucket("0.001"), Some(1));
        assert_eq!(bucket("0.025"), Some(1));
        assert_eq!(bucket("0.05"), Some(2));
        assert_eq!(bucket("10"), Some(2));
        assert_eq!(bucket("+Inf"), Some(3));
        assert!(
            text.contains("rampart_server_http_request_duration_seconds_count{route=\"/a\"} 3")
        );
        assert!(text.contains("rampart_server_http_responses_total{route=\"/a\",code=\"404\"} 1"));
        assert!(text.contains("rampart_server_reports_total{status=\"installed\"} 0"));
    }
}
