//! The risk watch (issue 17, decision 0046): each pass assesses the fleet against the stored
//! advisories (`engines::risk::assess_with`, through the shared [`AdvisoryCache`]), keeps each
//! advisory's exposure record (`rampart_vuln::exposure`: first affected, remediated, withdrawn,
//! the window) and raises the `risk.advisory` webhook alert once per version of an advisory that
//! newly affects devices; a critical one also opens a `vulnerable_component` incident through
//! the incident store.
//!
//! A pass runs at once when an advisory import changed the feed ([`RiskWatch::wake`]), else
//! every [`RiskWatchConfig::interval`]: devices move between releases between imports, and the
//! remediation time is what the pass sees. The records and their alerts are written in one
//! transaction per pass (`Db::save_exposure_pass`), so an alert is queued exactly when its
//! record says so; a restart reads the records back and alerts nothing twice.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use rampart_db::{Db, DbError, ExposureChange, ExposureRecord, MAX_WATCHED_ADVISORIES};
use rampart_incident::finding::Finding;
use rampart_incident::model::{Cause, Detector, Severity};
use rampart_vuln::exposure::{Exposure, Observation, observe, parse_published};
use rampart_vuln::nvd::{NvdAdvisory, parse_nvd_item};
use rampart_vuln::osv::{Advisory, Event, parse_advisory};
use rampart_vuln::posture::AdvisorySeverity;
use rampart_vuln::severity::Rating;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::heartbeat::Heart;
use super::incidents::IncidentStore;
use super::risk::{AdvisoryCache, RiskError, assess_with};
use super::webhooks::{WebhookEvent, Webhooks};
use crate::delivery::image_repo::HostedRepo;
use crate::observe::metrics::Metrics;

/// Default time between passes when no import wakes the watch.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
/// How often the engine beats while it waits for its next pass.
const BEAT_INTERVAL: Duration = Duration::from_secs(20);
/// This engine's name in `engine_heartbeats`.
pub const ENGINE: &str = "risk_watch";
/// Most device ids one alert lists (the count is always whole; `truncated` says when cut).
pub const MAX_ALERT_DEVICES: usize = 1_000;
/// Bytes of device ids one alert lists at most: the whole delivery stays well under the
/// webhook outbox's body limit (`rampart_db::MAX_WEBHOOK_BODY`, 64 KiB) whatever the ids' length.
const MAX_ALERT_DEVICE_BYTES: usize = 32 * 1024;
/// Most release targets, aliases and fixed versions one alert lists, and the longest each
/// (bytes): with the device list and the summary, a delivery stays under 64 KiB.
const MAX_ALERT_LIST: usize = 32;
const MAX_ALERT_ITEM: usize = 128;
/// Longest summary an alert carries, bytes.
const MAX_ALERT_SUMMARY: usize = 1_024;
/// Most devices a critical advisory's incident is given (one finding each).
pub const MAX_INCIDENT_DEVICES: usize = 100;

/// The watch's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskWatchConfig {
    /// Time between passes when no import wakes the watch (at least 1 s).
    pub interval: Duration,
}

impl Default for RiskWatchConfig {
    fn default() -> Self {
        RiskWatchConfig {
            interval: DEFAULT_INTERVAL,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub watched: usize,
    pub written: u64,
    pub alerts: u64,
    pub incidents: usize,
    pub open: u64,
    pub exposed_devices: u64,
}

/// The risk watch.
pub struct RiskWatch {
    db: Db,
    repo: Option<Arc<HostedRepo>>,
    cache: Arc<AdvisoryCache>,
    hooks: Webhooks,
    incidents: Arc<IncidentStore>,
    /// Whether `vulnerable_component` findings are recorded (the detectors' configuration may
    /// disable it).
    incidents_enabled: bool,
    metrics: Arc<Metrics>,
    config: RiskWatchConfig,
    wake: Notify,
}

/// One advisory as the pass sees it.
#[derive(Default)]
struct Seen {
    /// How many devices run one of `releases`.
    devices: usize,
    releases: BTreeSet<String>,
}

/// The first `n` devices (in the assessment's order) that run one of `releases`: a merge of
/// the releases' device lists, each already in that order.
fn first_devices(
    releases: &BTreeSet<String>,
    by_release: &BTreeMap<&str, Vec<usize>>,
    devices: &[rampart_vuln::posture::DeviceRun],
    n: usize,
) -> Vec<String> {
    let lists: Vec<&[usize]> = releases
        .iter()
        .filter_map(|r| by_release.get(r.as_str()).map(Vec::as_slice))
        .collect();
    let mut at = vec![0usize; lists.len()];
    let mut out = Vec::new();
    while out.len() < n {
        let next = lists
            .iter()
            .zip(&at)
            .enumerate()
            .filter_map(|(i, (list, &pos))| list.get(pos).map(|&d| (d, i)))
            .min();
        let Some((device, list)) = next else { break };
        at[list] += 1;
        out.push(devices[device].device_id.clone());
    }
    out
}

impl RiskWatch {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        db: Db,
        repo: Option<Arc<HostedRepo>>,
        cache: Arc<AdvisoryCache>,
        hooks: Webhooks,
        incidents: Arc<IncidentStore>,
        incidents_enabled: bool,
        metrics: Arc<Metrics>,
        config: RiskWatchConfig,
    ) -> RiskWatch {
        RiskWatch {
            db,
            repo,
            cache,
            hooks,
            incidents,
            incidents_enabled,
            metrics,
            config,
            wake: Notify::new(),
        }
    }

    /// Runs a pass now (an import changed the feed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        heart: Heart,
    ) {
        loop {
            if let Err(e) = self.pass(crate::helpers::unix_now()).await {
                crate::observe::log::error(
                    "the risk watch's pass failed; the next pass decides again",
                    json!({"error": e.to_string()}),
                );
            }
            heart.beat(crate::helpers::unix_now());
            // Waits for the interval or an import, beating meanwhile: a long interval is not a
            // stalled engine.
            let next = tokio::time::Instant::now() + self.config.interval;
            loop {
                let beat_at = (tokio::time::Instant::now() + BEAT_INTERVAL).min(next);
                tokio::select! {
                    _ = tokio::time::sleep_until(beat_at) => {}
                    _ = self.wake.notified() => break,
                    _ = shutdown.changed() => break,
                }
                heart.beat(crate::helpers::unix_now());
                if tokio::time::Instant::now() >= next {
                    break;
                }
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// One pass at `now`: assess, decide every record, store them with their alerts, then open
    /// the critical ones' incidents.
    pub async fn pass(&self, now: i64) -> Result<PassSummary, RiskError> {
        let Some(repo) = &self.repo else {
            // No hosted repository: no release, so nothing any advisory could affect.
            return Ok(PassSummary::default());
        };
        let feed = self.cache.feed(&self.db).await?;
        let assessment = assess_with(&self.db, repo, &feed, now).await?;
        // The devices running each exposed release (indexes into the assessment, in its
        // order), then the releases each advisory reaches. Devices are counted per release,
        // never listed per advisory: with thousands of advisories over a 100,000-device fleet,
        // a list per advisory would hold tens of millions of ids.
        let mut exposed_devices = 0u64;
        let mut by_release: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (index, device) in assessment.devices.iter().enumerate() {
            let Some(release) = device.release.as_deref() else {
                continue;
            };
            if assessment
                .exposure
                .get(release)
                .is_some_and(|ids| !ids.is_empty())
            {
                exposed_devices += 1;
                by_release.entry(release).or_default().push(index);
            }
        }
        let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
        for (release, devices) in &by_release {
            for id in &assessment.exposure[*release] {
                let entry = seen.entry(id.clone()).or_default();
                entry.devices += devices.len();
                entry.releases.insert((*release).to_owned());
            }
        }
        let (records, more) = self.db.exposure_records().await?;
        if more {
            crate::observe::log::warn(
                "more advisories have exposure records than one pass watches; the first ones by id are kept up to date",
                json!({"watched": MAX_WATCHED_ADVISORIES}),
            );
        }
        let records: BTreeMap<String, ExposureRecord> = records
            .into_iter()
            .map(|r| (r.advisory_id.clone(), r))
            .collect();
        // Every advisory with devices now or a record: at most the bound, in id order.
        let ids: Vec<String> = seen
            .keys()
            .chain(records.keys())
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .take(MAX_WATCHED_ADVISORIES)
            .collect();
        let stored = self.stored_advisories(&ids).await?;
        let no_releases = BTreeSet::new();
        let mut changes = Vec::new();
        let mut alerts: Vec<(Value, Option<Finding>, Vec<String>)> = Vec::new();
        let mut open = 0u64;
        for id in &ids {
            let Some(described) = stored.get(id) else {
                // No longer stored (never happens today: imports never delete): leave it.
                continue;
            };
            let now_seen = seen.get(id);
            let observation = Observation {
                modified: &described.modified,
                published: parse_published(described.published.as_deref()),
                withdrawn: described.withdrawn,
                affected: if described.withdrawn {
                    0
                } else {
                    now_seen.map_or(0, |s| s.devices as u64)
                },
                releases: now_seen.map_or(&no_releases, |s| &s.releases),
            };
            let previous = records.get(id).map(|r| &r.exposure);
            let step = observe(previous, &observation, now);
            let Some(next) = step.next else { continue };
            if next.affected_now > 0 && next.withdrawn_at.is_none() {
                open += 1;
            }
            if previous == Some(&next) {
                continue;
            }
            if step.alert {
                // The assessment's severity: an OSV advisory without a score takes the one
                // NVD gives its CVE alias (decision 0048).
                let severity = assessment
                    .severities
                    .get(id)
                    .copied()
                    .filter(|s| s.rating.is_some())
                    .unwrap_or(described.severity);
                let reach = now_seen.map_or_else(Reach::default, |s| Reach {
                    count: s.devices,
                    first: first_devices(
                        &s.releases,
                        &by_release,
                        &assessment.devices,
                        MAX_ALERT_DEVICES.max(MAX_INCIDENT_DEVICES),
                    ),
                });
                let payload = alert_payload(id, described, severity, &reach, &next);
                let finding = (self.incidents_enabled && severity.rating == Some(Rating::Critical))
                    .then(|| critical_finding(id, described, severity, &reach, now));
                let joining = reach
                    .first
                    .iter()
                    .skip(1)
                    .take(MAX_INCIDENT_DEVICES.saturating_sub(1))
                    .cloned()
                    .collect();
                alerts.push((payload, finding, joining));
            }
            changes.push((
                ExposureChange {
                    advisory_id: id.clone(),
                    exposure: next,
                    decided_from: previous.cloned(),
                    alert: step.alert,
                },
                step.alert.then(|| alerts.len() - 1),
            ));
        }
        // Incidents first: a finding recorded twice joins the same open incident (its cause
        // is the advisory), while one lost between the records' commit and a crash would never
        // be recorded (the record says it was alerted). An advisory whose incident could not
        // be recorded keeps its record unchanged this pass, so the next pass tries both again.
        let mut incidents = 0;
        let mut unrecorded = BTreeSet::new();
        for (index, (_, finding, joining)) in alerts.iter().enumerate() {
            let Some(finding) = finding else { continue };
            if self.record_incident(finding, joining).await {
                incidents += 1;
            } else {
                unrecorded.insert(index);
            }
        }
        changes.retain(|(_, alert)| alert.is_none_or(|i| !unrecorded.contains(&i)));
        let payloads: Vec<Option<&Value>> = changes
            .iter()
            .map(|(_, a)| a.map(|i| &alerts[i].0))
            .collect();
        let hooks = self.hooks.clone();
        let created = now;
        let mut make = |index: usize, _webhook: &str| {
            let payload = payloads[index].cloned().unwrap_or(Value::Null);
            hooks.delivery(WebhookEvent::RiskAdvisory, created, &payload)
        };
        let changes: Vec<ExposureChange> = changes.into_iter().map(|(c, _)| c).collect();
        let saved = self
            .db
            .save_exposure_pass(&changes, now, super::webhooks::unix_millis(), &mut make)
            .await?;
        if saved.deliveries.queued > 0 {
            self.hooks.wake();
        }
        if saved.deliveries.dropped > 0 {
            crate::observe::log::warn(
                "risk.advisory deliveries dropped: their webhooks have too many pending deliveries",
                json!({"dropped": saved.deliveries.dropped}),
            );
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.metrics.risk.advisories_open.store(open, Relaxed);
        self.metrics
            .risk
            .exposed_devices
            .store(exposed_devices, Relaxed);
        Ok(PassSummary {
            watched: ids.len(),
            written: saved.written,
            alerts: saved.alerts,
            incidents,
            open,
            exposed_devices,
        })
    }

    /// The stored advisories among `ids`: `(modified, withdrawn, parsed record)` by id.
    /// What the watch needs of each of `ids`: the stored OSV advisory of that id, else the
    /// stored NVD record (a CVE that matched firmware parts by CPE or name, decision 0048).
    async fn stored_advisories(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, Described>, DbError> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(rampart_db::MAX_ADVISORY_READ) {
            for stored in self.db.advisories_by_id(chunk).await? {
                let described = Described::of_osv(
                    stored.modified,
                    stored.withdrawn.is_some(),
                    parse_advisory(stored.record.as_bytes()).ok(),
                );
                out.insert(stored.id, described);
            }
            let rest: Vec<String> = chunk
                .iter()
                .filter(|id| !out.contains_key(*id))
                .cloned()
                .collect();
            for stored in self.db.nvd_advisories_by_id(&rest).await? {
                let withdrawn = stored.is_rejected();
                let described = Described::of_nvd(
                    stored.last_modified,
                    withdrawn,
                    parse_nvd_item(stored.record.as_bytes()).ok(),
                );
                out.insert(stored.id, described);
            }
        }
        Ok(out)
    }

    /// Opens (or joins) the advisory's incident with its first devices; false when the
    /// incident could not be opened (logged; the pass leaves the advisory for the next one).
    async fn record_incident(&self, finding: &Finding, joining: &[String]) -> bool {
        let record = |f: Finding| async move {
            if let Err(e) = self.incidents.record_finding(&f).await {
                crate::observe::log::error(
                    "recording a vulnerable_component finding",
                    json!({"cause": f.cause.dedupe_key(), "device": f.device_id, "error": e.to_string()}),
                );
                return false;
            }
            self.metrics.detectors.found(Detector::VulnerableComponent);
            true
        };
        if !record(finding.clone()).await {
            return false;
        }
        for device in joining {
            let mut join = finding.clone();
            join.device_id = Some(device.clone());
            // A device that could not join is logged; the incident names the advisory and
            // carries the first devices in its detail either way.
            record(join.bounded()).await;
        }
        true
    }
}

/// The fixed versions an advisory names, in record order, each once.
/// An advisory as the watch reports it, from whichever feed holds it.
#[derive(Debug)]
struct Described {
    modified: String,
    withdrawn: bool,
    published: Option<String>,
    aliases: Vec<String>,
    summary: Option<String>,
    fixed: Vec<String>,
    severity: AdvisorySeverity,
}

impl Described {
    /// An OSV advisory; `advisory` is `None` when its stored record no longer parses (it is
    /// still watched, unscored).
    fn of_osv(modified: String, withdrawn: bool, advisory: Option<Advisory>) -> Described {
        Described {
            modified,
            withdrawn,
            severity: advisory
                .as_ref()
                .map_or(AdvisorySeverity::UNASSIGNED, AdvisorySeverity::of),
            fixed: advisory.as_ref().map(fixed_versions).unwrap_or_default(),
            published: advisory.as_ref().and_then(|a| a.published.clone()),
            aliases: advisory
                .as_ref()
                .map(|a| a.aliases.clone())
                .unwrap_or_default(),
            summary: advisory.and_then(|a| a.summary),
        }
    }

    /// An NVD record: no aliases or summary (the parser keeps neither); the first versions
    /// without the flaw are its vulnerable criteria's `versionEndExcluding`.
    fn of_nvd(modified: String, withdrawn: bool, advisory: Option<NvdAdvisory>) -> Described {
        let mut fixed: Vec<String> = Vec::new();
        for criterion in advisory.iter().flat_map(|a| &a.criteria) {
            if let Some(v) = criterion
                .bounds
                .end_excluding
                .as_deref()
                .filter(|_| criterion.vulnerable)
            {
                let v = cut(v, MAX_ALERT_ITEM);
                if !fixed.contains(&v) {
                    fixed.push(v);
                }
            }
        }
        fixed.truncate(MAX_ALERT_LIST);
        Described {
            modified,
            withdrawn,
            severity: advisory
                .as_ref()
                .map_or(AdvisorySeverity::UNASSIGNED, super::risk_cpe::severity_of),
            published: advisory.and_then(|a| a.published),
            aliases: Vec::new(),
            summary: None,
            fixed,
        }
    }
}

fn fixed_versions(advisory: &Advisory) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for affected in &advisory.affected {
        for range in &affected.ranges {
            for event in &range.events {
                if let Event::Fixed(v) = event {
                    let v = cut(v, MAX_ALERT_ITEM);
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
            }
        }
    }
    out.truncate(MAX_ALERT_LIST);
    out
}

fn cut(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The devices an advisory reaches: how many, and the first of them (enough for an alert's
/// and an incident's lists).
#[derive(Debug, Default)]
struct Reach {
    count: usize,
    first: Vec<String>,
}

/// The devices an alert lists (of the first `devices` of `count`): at most
/// [`MAX_ALERT_DEVICES`] and [`MAX_ALERT_DEVICE_BYTES`]; whether some were left out.
fn bounded_devices(devices: &[String], count: usize) -> (Vec<&str>, bool) {
    let mut listed = Vec::new();
    let mut bytes = 0;
    for d in devices.iter().take(MAX_ALERT_DEVICES) {
        bytes += d.len() + 3;
        if bytes > MAX_ALERT_DEVICE_BYTES {
            break;
        }
        listed.push(d.as_str());
    }
    let truncated = listed.len() < count;
    (listed, truncated)
}

/// The `risk.advisory` event's data.
fn alert_payload(
    id: &str,
    advisory: &Described,
    severity: AdvisorySeverity,
    reach: &Reach,
    exposure: &Exposure,
) -> Value {
    let (listed, truncated) = bounded_devices(&reach.first, reach.count);
    let aliases: Vec<String> = advisory
        .aliases
        .iter()
        .take(MAX_ALERT_LIST)
        .map(|s| cut(s, MAX_ALERT_ITEM))
        .collect();
    json!({
        "advisory": cut(id, 256),
        "modified": exposure.alerted_modified,
        "aliases": aliases,
        "severity": severity,
        "summary": advisory.summary.as_deref().map(|s| cut(s, MAX_ALERT_SUMMARY)),
        "published": advisory.published.as_deref().map(|s| cut(s, 64)),
        "affected_count": reach.count,
        "devices": listed,
        "truncated": truncated,
        "releases": exposure.alerted_releases.iter().take(MAX_ALERT_LIST).map(|r| cut(r, MAX_ALERT_ITEM)).collect::<Vec<_>>(),
        "fixed": advisory.fixed,
    })
}

/// The finding that opens a critical advisory's incident: the advisory is the cause, so every
/// later finding of it joins the same open incident.
fn critical_finding(
    id: &str,
    advisory: &Described,
    severity: AdvisorySeverity,
    reach: &Reach,
    now: i64,
) -> Finding {
    let first = &reach.first[..reach.first.len().min(MAX_INCIDENT_DEVICES)];
    let (listed, truncated) = bounded_devices(first, reach.count);
    let title = match advisory.summary.as_deref() {
        Some(summary) => format!("{id} affects {} device(s): {summary}", reach.count),
        None => format!("{id} affects {} device(s)", reach.count),
    };
    Finding {
        cause: Cause {
            detector: Detector::VulnerableComponent,
            key: id.to_owned(),
        },
        severity: Severity::Critical,
        title,
        device_id: reach.first.first().cloned(),
        release: None,
        first_signal_at: parse_published(advisory.published.as_deref())
            .unwrap_or(now)
            .min(now),
        detail: json!({
            "advisory": id,
            "aliases": advisory.aliases.iter().take(MAX_ALERT_LIST).cloned().collect::<Vec<_>>(),
            // The audit log takes no fractions: the score as text.
            "score": severity.score.map(|s| format!("{s:.1}")),
            "affected_count": reach.count,
            "devices": listed,
            "truncated": truncated,
        }),
    }
    .bounded()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nvd_record_alerts_with_its_score_and_the_versions_its_criteria_fix() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../rampart-vuln/tests/data/nvd-firmware/nvd/nvd-busybox.json"
        );
        let document: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        let record = document["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["cve"]["id"] == "CVE-2022-48174")
            .unwrap()
            .to_string();
        let parsed = parse_nvd_item(record.as_bytes()).unwrap();
        let described = Described::of_nvd("m".into(), false, Some(parsed));
        // versionEndExcluding: the first busybox without the flaw.
        assert_eq!(described.fixed, ["1.35.0"]);
        assert_eq!(described.severity.rating, Some(Rating::Critical));
        assert!(described.published.is_some());
        // A record that no longer parses is still watched, unscored.
        let unread = Described::of_nvd("m".into(), true, None);
        assert!(unread.fixed.is_empty() && unread.withdrawn);
        assert_eq!(unread.severity, AdvisorySeverity::UNASSIGNED);
    }

    #[test]
    fn an_advisorys_first_devices_merge_its_releases_lists_in_fleet_order() {
        let device = |id: &str, release: &str| rampart_vuln::posture::DeviceRun {
            device_id: id.into(),
            release: Some(release.into()),
            hardware_id: "hw".into(),
            region: "eu".into(),
            tags: Vec::new(),
            fallback_releases: Vec::new(),
        };
        let devices = vec![
            device("d0", "r1"),
            device("d1", "r2"),
            device("d2", "r1"),
            device("d3", "r3"),
            device("d4", "r2"),
        ];
        let by_release: BTreeMap<&str, Vec<usize>> =
            BTreeMap::from([("r1", vec![0, 2]), ("r2", vec![1, 4]), ("r3", vec![3])]);
        let releases: BTreeSet<String> = ["r1".to_owned(), "r2".to_owned()].into();
        assert_eq!(
            first_devices(&releases, &by_release, &devices, 10),
            ["d0", "d1", "d2", "d4"]
        );
        assert_eq!(
            first_devices(&releases, &by_release, &devices, 3),
            ["d0", "d1", "d2"]
        );
        let unknown: BTreeSet<String> = ["r9".to_owned()].into();
        assert!(first_devices(&unknown, &by_release, &devices, 3).is_empty());
    }

    #[test]
    fn alert_device_lists_are_bounded_by_count_and_bytes() {
        let many: Vec<String> = (0..5_000).map(|i| format!("dev-{i:05}")).collect();
        let (listed, truncated) = bounded_devices(&many, many.len());
        assert_eq!(listed.len(), MAX_ALERT_DEVICES);
        assert!(truncated);
        let long: Vec<String> = (0..500)
            .map(|i| format!("{i}-{}", "x".repeat(200)))
            .collect();
        let (listed, truncated) = bounded_devices(&long, long.len());
        assert!(truncated);
        assert!(listed.iter().map(|d| d.len() + 3).sum::<usize>() <= MAX_ALERT_DEVICE_BYTES);
        let few = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(bounded_devices(&few, 2), (vec!["a", "b"], false));
        // Only the first devices are given: the count says more were reached.
        assert_eq!(bounded_devices(&few, 3), (vec!["a", "b"], true));
    }

    #[test]
    fn an_alert_of_the_largest_fleet_fits_the_webhook_body_limit() {
        let long = |prefix: &str, i: usize| format!("{prefix}{i}-{}", "z".repeat(5_000));
        let advisory = Advisory {
            id: "A".repeat(1_000),
            modified: "2024-01-01T00:00:00Z".into(),
            published: Some("x".repeat(5_000)),
            withdrawn: None,
            aliases: (0..1_000).map(|i| long("CVE-", i)).collect(),
            summary: Some("s".repeat(100_000)),
            details: None,
            severity: Vec::new(),
            affected: vec![rampart_vuln::osv::Affected {
                package: None,
                ranges: vec![rampart_vuln::osv::Range {
                    kind: rampart_vuln::osv::RangeKind::Ecosystem,
                    repo: None,
                    events: (0..1_000).map(|i| Event::Fixed(long("", i))).collect(),
                }],
                versions: Vec::new(),
            }],
        };
        let reach = Reach {
            count: 100_000,
            first: (0..MAX_ALERT_DEVICES)
                .map(|i| format!("{i}-{}", "d".repeat(120)))
                .collect(),
        };
        let exposure = Exposure {
            alerted_modified: Some("2024-01-01T00:00:00Z".into()),
            alerted_releases: (0..1_000)
                .map(|i| format!("release-{i}-{}", "r".repeat(200)))
                .collect(),
            ..Exposure::default()
        };
        let id = advisory.id.clone();
        let described = Described::of_osv(advisory.modified.clone(), false, Some(advisory));
        let payload = alert_payload(
            &id,
            &described,
            AdvisorySeverity::UNASSIGNED,
            &reach,
            &exposure,
        );
        let body = payload.to_string();
        assert!(
            body.len() < rampart_db::MAX_WEBHOOK_BODY - 1_024,
            "{}",
            body.len()
        );
        assert_eq!(payload["affected_count"], 100_000);
        assert_eq!(payload["truncated"], true);
    }
}
