//! Failed authentication: counted in the metrics, summarised per source in the audit log, and
//! slowed down per source.
//!
//! Every answer of the DDI and management routers passes [`guard`]: a 401 (a wrong
//! `TargetToken`, `GatewayToken` or client certificate, an unknown bearer token) counts as one
//! failure of the connection's source address, by kind. Each source has a budget of
//! [`FailurePolicy::free`] failures that refills by one every [`FailurePolicy::refill_every`] (a
//! misconfigured device failing once a poll never exhausts it). A failure with the budget spent
//! blocks that source for an exponentially growing delay ([`FailurePolicy::base_delay`] doubling
//! up to [`FailurePolicy::max_delay`]), during which its failing requests are answered 429 with
//! `Retry-After` instead of 401. A request with a valid credential is still served: the devices
//! behind a NAT, or the clients behind a proxy, share one address, and a stranger's wrong tokens
//! must not lock them out. (Tokens are 32 random characters, so the delay is not what stops
//! guessing; it keeps failures from being free and makes them visible.) Sources are keyed per API, so failures on the
//! DDI listener never lock an operator out of the management API. The per-source table is
//! bounded ([`FailurePolicy::max_sources`]): beyond it the longest-quiet source is forgotten.
//!
//! The audit log gets one `auth.failed` record per source and summary interval (the interval of
//! refused TLS handshakes, `listen::refusals`), never one per failure, so a
//! flood of wrong tokens cannot flood the log.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, watch};

use crate::observe::audit::AuditWriter;
pub use crate::observe::labels::{Api, FailureKind};
use crate::observe::metrics::Metrics;

/// How failures are slowed down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures a source may have in a burst before it is slowed down.
    pub free: u32,
    /// The budget regains one failure this often.
    pub refill_every: Duration,
    /// The delay after the first failure over budget; each further one doubles it.
    pub base_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// Sources remembered at once (per server).
    pub max_sources: usize,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            free: 20,
            refill_every: Duration::from_secs(3),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            max_sources: 10_000,
        }
    }
}

impl FailurePolicy {
    /// How long a source that has stopped failing takes to regain its whole budget (after which
    /// it may be forgotten).
    fn full_refill(&self) -> Duration {
        self.refill_every.saturating_mul(self.free) + self.max_delay
    }
}

/// Capacity of the queue to the audit summariser; beyond it events are dropped (and counted as
/// dropped audit events), so a flood cannot exhaust memory.
const EVENT_QUEUE: usize = 4096;
/// Sources with their own summary record per interval; the others are summed in one record.
const MAX_SUMMARIZED_SOURCES: usize = 256;

#[derive(Debug, Clone, Copy)]
struct SourceState {
    /// Failures still free, as of `last_failure`.
    budget: f64,
    /// Failures in a row with the budget spent (the delay doubles with each).
    over: u32,
    last_failure: Instant,
    blocked_until: Option<Instant>,
}

/// One failed or refused request, for the audit summary.
#[derive(Debug, Clone)]
pub struct AuthEvent {
    /// Unix seconds.
    pub time: i64,
    pub source: IpAddr,
    pub api: Api,
    /// `None`: refused (429) while slowed down.
    pub kind: Option<FailureKind>,
}

/// The per-source failure table and the counters (see the module documentation).
pub struct AuthFailures {
    metrics: Arc<Metrics>,
    policy: FailurePolicy,
    sources: Mutex<HashMap<(Api, IpAddr), SourceState>>,
    events: mpsc::Sender<AuthEvent>,
}

impl AuthFailures {
    /// The tracker, and the receiving end of its audit events (for [`run_recorder`]).
    pub fn new(
        metrics: Arc<Metrics>,
        policy: FailurePolicy,
    ) -> (Arc<AuthFailures>, mpsc::Receiver<AuthEvent>) {
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let tracker = AuthFailures {
            metrics,
            policy,
            sources: Mutex::new(HashMap::new()),
            events,
        };
        (Arc::new(tracker), receiver)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<(Api, IpAddr), SourceState>> {
        self.sources.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `source` must still wait before `api` looks at its credentials again; `None`
    /// if it may try now.
    pub fn blocked_for(&self, api: Api, source: IpAddr, now: Instant) -> Option<Duration> {
        let table = self.table();
        let until = table.get(&(api, source))?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts one failure of `source`; returns the delay it now has to wait, if any.
    pub fn failed(
        &self,
        api: Api,
        source: IpAddr,
        kind: FailureKind,
        now: Instant,
    ) -> Option<Duration> {
        Metrics::inc(&self.metrics.auth_failures[kind as usize]);
        self.note(AuthEvent {
            time: crate::helpers::unix_now(),
            source,
            api,
            kind: Some(kind),
        });
        let policy = self.policy;
        let mut table = self.table();
        if !table.contains_key(&(api, source)) && table.len() >= policy.max_sources {
            forget_one(&mut table, policy, now);
        }
        let state = table.entry((api, source)).or_insert(SourceState {
            budget: f64::from(policy.free),
            over: 0,
            last_failure: now,
            blocked_until: None,
        });
        let refilled = now.duration_since(state.last_failure).as_secs_f64()
            / policy.refill_every.as_secs_f64().max(f64::MIN_POSITIVE);
        state.budget = (state.budget + refilled).min(f64::from(policy.free));
        state.last_failure = now;
        if state.budget >= 1.0 {
            state.budget -= 1.0;
            state.over = 0;
            return None;
        }
        let delay = policy
            .base_delay
            .checked_mul(1u32.checked_shl(state.over.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(policy.max_delay)
            .min(policy.max_delay);
        state.over = state.over.saturating_add(1);
        state.blocked_until = Some(now + delay);
        Some(delay)
    }

    /// Counts one request refused because its source is slowed down.
    fn throttled(&self, api: Api, source: IpAddr) {
        Metrics::inc(&self.metrics.auth_throttled[api as usize]);
        self.note(AuthEvent {
            time: crate::helpers::unix_now(),
            source,
            api,
            kind: None,
        });
    }

    fn note(&self, event: AuthEvent) {
        if self.events.try_send(event).is_err() {
            Metrics::inc(&self.metrics.audit_events_dropped);
        }
    }
}

/// Makes room in a full table: the sources whose budget is whole again go (they are as good as
/// new); if none is, the one quiet the longest.
fn forget_one(
    table: &mut HashMap<(Api, IpAddr), SourceState>,
    policy: FailurePolicy,
    now: Instant,
) {
    table.retain(|_, s| now.duration_since(s.last_failure) < policy.full_refill());
    if table.len() >= policy.max_sources
        && let Some(oldest) = table
            .iter()
            .min_by_key(|(_, s)| s.last_failure)
            .map(|(k, _)| *k)
    {
        table.remove(&oldest);
    }
}

/// The state of [`guard`]: the tracker and which API it guards.
#[derive(Clone)]
pub struct Guard {
    pub failures: Arc<AuthFailures>,
    pub api: Api,
}

/// The source a request is charged to: the TCP peer every listener records, an IPv6 peer by its
/// /64 (one host commonly holds a whole /64, so single addresses would let it start over at
/// will; the listeners' per-source connection caps count the same way).
fn source_of(request: &Request) -> Option<IpAddr> {
    let ip = match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(addr)) => addr.ip(),
        None => request
            .extensions()
            .get::<ConnectInfo<crate::listen::https::DdiPeer>>()?
            .0
            .remote_addr
            .ip(),
    };
    Some(source_key(ip))
}

/// An IPv4 address (also when mapped into IPv6) as is; an IPv6 address as its /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

/// Middleware: answers a slowed-down source 429 at once; counts every 401 (by the
/// [`FailureKind`] the handler attached to its answer, else the API's token kind) as a failure.
pub async fn guard(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let Some(source) = source_of(&request) else {
        return next.run(request).await;
    };
    let blocked = guard
        .failures
        .blocked_for(guard.api, source, Instant::now());
    let response = next.run(request).await;
    let kind = response.extensions().get::<FailureKind>().copied();
    let kind = match (kind, response.status()) {
        (Some(kind), _) => Some(kind),
        (None, StatusCode::UNAUTHORIZED) => Some(match guard.api {
            Api::Ddi => FailureKind::DdiOther,
            Api::Management => FailureKind::ManagementToken,
        }),
        (None, _) => None,
    };
    match (kind, blocked) {
        // A blocked source learns nothing from its failures but when to try again (counted as
        // throttled, as before the block's end nothing more is charged).
        (Some(_), Some(wait)) => {
            guard.failures.throttled(guard.api, source);
            let html = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
            too_many_failures(guard.api, wait, html)
        }
        (Some(kind), None) => {
            guard
                .failures
                .failed(guard.api, source, kind, Instant::now());
            response
        }
        (None, _) => response,
    }
}

/// The 429 answer, in the API's own error format (a page when the refused answer was one: the
/// web console's login).
fn too_many_failures(api: Api, wait: Duration, html: bool) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let message = format!(
        "too many failed authentications from this address; retry in {seconds} s with valid credentials"
    );
    let mut response = match api {
        _ if html => (
            StatusCode::TOO_MANY_REQUESTS,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            // Only the number varies, and it is ours: nothing here needs escaping.
            format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Too many failed logins</title></head><body><h1>Too many failed logins</h1><p>{message}.</p><p><a href=\"/console/login\">Back to the login page</a></p></body></html>"
            ),
        )
            .into_response(),
        Api::Management => crate::listen::http::ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_auth_failures",
            message,
        )
        .into_response(),
        Api::Ddi => crate::listen::http::json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &rampart_ddi::wire::ErrorBody {
                exception_class: "io.rampart.ddi.DdiException".into(),
                error_code: "rampart.too_many_auth_failures".into(),
                message,
            },
        ),
    };
    if html {
        crate::listen::http::html_security_headers(response.headers_mut());
    }
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// What one source did in one summary interval.
#[derive(Debug, Default)]
struct SourceSummary {
    apis: BTreeMap<&'static str, ()>,
    kinds: BTreeMap<&'static str, u64>,
    failures: u64,
    throttled: u64,
    first_seen: i64,
    last_seen: i64,
}

#[derive(Debug, Default)]
struct Pending {
    sources: BTreeMap<IpAddr, SourceSummary>,
    /// Events of sources beyond [`MAX_SUMMARIZED_SOURCES`]: (sources, failures, throttled).
    others: (BTreeMap<IpAddr, ()>, u64, u64),
}

impl Pending {
    fn note(&mut self, e: AuthEvent) {
        let known = self.sources.contains_key(&e.source);
        if !known && self.sources.len() >= MAX_SUMMARIZED_SOURCES {
            // Bounded too: only the count of distinct other sources is kept beyond 4096.
            if self.others.0.len() < 4096 {
                self.others.0.insert(e.source, ());
            }
            match e.kind {
                Some(_) => self.others.1 += 1,
                None => self.others.2 += 1,
            }
            return;
        }
        let s = self.sources.entry(e.source).or_default();
        if s.first_seen == 0 {
            s.first_seen = e.time;
        }
        s.last_seen = e.time;
        s.apis.insert(e.api.as_str(), ());
        match e.kind {
            Some(kind) => {
                s.failures += 1;
                *s.kinds.entry(kind.as_str()).or_default() += 1;
            }
            None => s.throttled += 1,
        }
    }
}

/// Summarises failed authentications into `auth.failed` audit records, one per source and
/// interval, until `stop`; then records what is left.
pub async fn run_recorder(
    writer: AuditWriter,
    mut events: mpsc::Receiver<AuthEvent>,
    summary_interval: Duration,
    stop: watch::Receiver<bool>,
) {
    let stop = crate::helpers::stopped(stop);
    tokio::pin!(stop);
    let mut pending = Pending::default();
    let mut tick = tokio::time::interval(summary_interval);
    tick.tick().await;
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(e) => pending.note(e),
                None => break,
            },
            _ = tick.tick() => flush(&writer, &mut pending).await,
            () = &mut stop => break,
        }
    }
    while let Ok(e) = events.try_recv() {
        pending.note(e);
    }
    flush(&writer, &mut pending).await;
}

async fn flush(writer: &AuditWriter, pending: &mut Pending) {
    let Pending { sources, others } = std::mem::take(pending);
    let mut records: Vec<(String, serde_json::Value)> = sources
        .into_iter()
        .map(|(source, s)| {
            (
                source.to_string(),
                serde_json::json!({
                    "apis": s.apis.keys().collect::<Vec<_>>(),
                    "failures": s.failures,
                    "by_kind": s.kinds,
                    "throttled": s.throttled,
                    "first_seen": s.first_seen,
                    "last_seen": s.last_seen,
                }),
            )
        })
        .collect();
    if !others.0.is_empty() {
        records.push((
            String::new(),
            serde_json::json!({
                "other_sources": others.0.len(),
                "failures": others.1,
                "throttled": others.2,
                "note": format!("sources beyond the first {MAX_SUMMARIZED_SOURCES} of this interval, summed"),
            }),
        ));
    }
    for (subject, details) in records {
        if let Err(e) = writer
            .record(
                crate::helpers::unix_now(),
                "system",
                "auth.failed",
                &subject,
                details,
            )
            .await
        {
            crate::observe::log::error(
                "recording failed authentications in the audit log",
                serde_json::json!({"error": e.to_string()}),
            );
        }
    }
}

/// Remembers, per key, when something was last audited, so a repeated event is audited at most
/// once per interval (with the number of repeats not audited in between). Bounded: the memory
/// is reset when it holds `max` keys.
#[derive(Debug)]
pub struct OncePerInterval {
    interval_secs: i64,
    max: usize,
    seen: Mutex<HashMap<String, (i64, u64)>>,
}

impl OncePerInterval {
    pub fn new(interval_secs: i64, max: usize) -> Self {
        OncePerInterval {
            interval_secs,
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(repeats not audited since the last time)` if `key` is due to be audited at `now`.
    pub fn due(&self, key: &str, now: i64) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= self.max && !seen.contains_key(key) {
            seen.clear();
        }
        let entry = seen.entry(key.to_owned()).or_insert((i64::MIN, 0));
        if now.saturating_sub(entry.0) < self.interval_secs {
            entry.1 += 1;
            return None;
        }
        entry.0 = now;
        Some(std::mem::take(&mut entry.1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker(policy: FailurePolicy) -> Arc<AuthFailures> {
        AuthFailures::new(Arc::new(Metrics::default()), policy).0
    }

    #[test]
    fn failures_beyond_the_budget_are_delayed_exponentially_per_source() {
        let policy = FailurePolicy {
            free: 3,
            refill_every: Duration::from_secs(100),
            ..FailurePolicy::default()
        };
        let t = tracker(policy);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap());
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(
                t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, now),
                None
            );
        }
        assert_eq!(t.blocked_for(Api::Ddi, a, now), None);
        assert_eq!(
            t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, now),
            Some(Duration::from_secs(1))
        );
        assert!(t.blocked_for(Api::Ddi, a, now).is_some());
        assert_eq!(
            t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, now),
            Some(Duration::from_secs(2))
        );
        for _ in 0..40 {
            t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, now);
        }
        assert_eq!(t.blocked_for(Api::Ddi, a, now), Some(policy.max_delay));
        // Another source, and the same source on another API, are not affected.
        assert_eq!(t.blocked_for(Api::Ddi, b, now), None);
        assert_eq!(t.blocked_for(Api::Management, a, now), None);
        // A quiet source regains its budget: one failure per refill period, then all of it.
        let later = now + policy.refill_every;
        assert_eq!(t.blocked_for(Api::Ddi, a, later), None);
        assert_eq!(
            t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, later),
            None
        );
        assert!(
            t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, later)
                .is_some()
        );
        let much_later = later + policy.full_refill();
        for _ in 0..3 {
            assert_eq!(
                t.failed(Api::Ddi, a, FailureKind::DdiTargetToken, much_later),
                None
            );
        }
        // A device failing once a refill period (a wrong token, polled) is never delayed.
        let c: IpAddr = "127.0.0.3".parse().unwrap();
        for i in 0..100u32 {
            let at = now + policy.refill_every * i;
            assert_eq!(t.failed(Api::Ddi, c, FailureKind::DdiTargetToken, at), None);
        }
        assert_eq!(
            t.metrics.auth_failures[FailureKind::DdiTargetToken as usize]
                .load(std::sync::atomic::Ordering::Relaxed),
            3 + 2 + 40 + 2 + 3 + 100
        );
    }

    #[test]
    fn an_ipv6_host_is_charged_by_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn the_source_table_is_bounded() {
        let t = tracker(FailurePolicy {
            max_sources: 100,
            ..FailurePolicy::default()
        });
        let now = Instant::now();
        for i in 0..1000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            t.failed(Api::Management, ip, FailureKind::ManagementToken, now);
        }
        assert!(t.table().len() <= 100);
    }

    #[test]
    fn summaries_are_bounded_per_interval() {
        let mut p = Pending::default();
        for i in 0..1000u32 {
            p.note(AuthEvent {
                time: 1,
                source: IpAddr::from(std::net::Ipv4Addr::from(i)),
                api: Api::Ddi,
                kind: Some(FailureKind::DdiGatewayToken),
            });
        }
        assert_eq!(p.sources.len(), MAX_SUMMARIZED_SOURCES);
        assert_eq!(p.others.1, 1000 - MAX_SUMMARIZED_SOURCES as u64);
    }
}
