//! Live counters of a running fleet, and the snapshot [`crate::FleetHandle::stats`] returns.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Event counters, shared by the workers.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) sessions: AtomicU64,
    pub(crate) connect_errors: AtomicU64,
    pub(crate) polls: AtomicU64,
    pub(crate) poll_errors: AtomicU64,
    pub(crate) downloads: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) installs: AtomicU64,
    pub(crate) rollbacks: AtomicU64,
    pub(crate) fallbacks: AtomicU64,
    pub(crate) verification_failures: AtomicU64,
    pub(crate) install_failures: AtomicU64,
    pub(crate) download_errors: AtomicU64,
    pub(crate) downloaded: AtomicU64,
    pub(crate) deferred: AtomicU64,
    pub(crate) refused_rolled_back: AtomicU64,
    pub(crate) crashes: AtomicU64,
    pub(crate) failed_boots: AtomicU64,
    pub(crate) reports_sent: AtomicU64,
    pub(crate) report_errors: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) attested: AtomicU64,
    pub(crate) attestation_failures: AtomicU64,
    pub(crate) evidence_collected: AtomicU64,
    pub(crate) evidence_uploaded: AtomicU64,
    pub(crate) evidence_failures: AtomicU64,
    pub(crate) quarantine_acks: AtomicU64,
    pub(crate) quarantine_ignored: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// What a device is doing, for [`Stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Activity {
    /// Running its committed slot with nothing in progress.
    Idle,
    /// An update in progress: downloading, activated, rebooting, rolling back.
    Busy,
    /// Off the network (an injected offline period).
    Offline,
    /// Powered off (before its first boot, rebooting, or after a crash).
    Off,
    /// No slot boots any more. Never expected: the agent's flow must prevent it.
    Bricked,
}

/// A snapshot of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub elapsed: Duration,
    pub devices: usize,
    /// Devices by the firmware version of their committed slot.
    pub by_version: BTreeMap<String, usize>,
    pub idle: usize,
    pub busy: usize,
    pub offline: usize,
    pub off: usize,
    pub bricked: usize,
    /// Devices settled: running their committed slot with nothing in progress, every result
    /// stored by the server, and the server told their current version (a poll since).
    pub settled: usize,
    /// Device sessions (each a mutual-TLS connection) opened.
    pub sessions: u64,
    /// Polls answered, and polls (or connections) that failed.
    pub polls: u64,
    pub errors: u64,
    /// Downloads started, and artifact bytes received.
    pub downloads: u64,
    pub bytes: u64,
    /// Updates committed after the post-reboot health check.
    pub installs: u64,
    /// Rollbacks finished (health check failed, or the bootloader fell back).
    pub rollbacks: u64,
    /// Of those, bootloader fallbacks.
    pub fallbacks: u64,
    /// Assignments refused by verification (director, image repository, agreement, hardware,
    /// anti-rollback, transparency log).
    pub verification_failures: u64,
    /// Installs refused while streaming (hash mismatch, too long, slot too small...).
    pub install_failures: u64,
    /// Downloads interrupted (network, stall): resumed later.
    pub download_errors: u64,
    /// `download_only` assignments downloaded and verified.
    pub downloaded: u64,
    /// Polls where a `soft` update waited for power.
    pub deferred: u64,
    /// Polls where the assigned release was refused because it was rolled back here.
    pub refused_rolled_back: u64,
    /// Injected power cuts.
    pub crashes: u64,
    /// Boots of a slot that did not come up (the bootloader tried again).
    pub failed_boots: u64,
    pub reports_sent: u64,
    pub report_errors: u64,
    /// Device events served by the workers.
    pub events: u64,
    /// Quotes the server found attested.
    pub attested: u64,
    /// Attestation requests that ended otherwise (failed, stale, or an error).
    pub attestation_failures: u64,
    /// Evidence bundles collected, uploaded to completion, and evidence failures (a bundle
    /// that could not be collected, or an upload given up for the pass).
    pub evidence_collected: u64,
    pub evidence_uploaded: u64,
    pub evidence_failures: u64,
    /// Signed quarantine statements a cooperative device acted on and acknowledged.
    pub quarantine_acks: u64,
    /// Quarantine instructions not acted on (uncooperative devices, or refused ones).
    pub quarantine_ignored: u64,
    /// The latest error a device met (`device: [reason] detail`), for diagnosis.
    pub last_error: Option<String>,
}

impl Stats {
    pub(crate) fn fill_counters(&mut self, c: &Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.sessions = get(&c.sessions);
        self.polls = get(&c.polls);
        self.errors = get(&c.poll_errors) + get(&c.connect_errors);
        self.downloads = get(&c.downloads);
        self.bytes = get(&c.bytes);
        self.installs = get(&c.installs);
        self.rollbacks = get(&c.rollbacks);
        self.fallbacks = get(&c.fallbacks);
        self.verification_failures = get(&c.verification_failures);
        self.install_failures = get(&c.install_failures);
        self.download_errors = get(&c.download_errors);
        self.downloaded = get(&c.downloaded);
        self.deferred = get(&c.deferred);
        self.refused_rolled_back = get(&c.refused_rolled_back);
        self.crashes = get(&c.crashes);
        self.failed_boots = get(&c.failed_boots);
        self.reports_sent = get(&c.reports_sent);
        self.report_errors = get(&c.report_errors);
        self.events = get(&c.events);
        self.attested = get(&c.attested);
        self.attestation_failures = get(&c.attestation_failures);
        self.evidence_collected = get(&c.evidence_collected);
        self.evidence_uploaded = get(&c.evidence_uploaded);
        self.evidence_failures = get(&c.evidence_failures);
        self.quarantine_acks = get(&c.quarantine_acks);
        self.quarantine_ignored = get(&c.quarantine_ignored);
    }

    /// Devices whose committed firmware is `version`.
    pub fn on_version(&self, version: &str) -> usize {
        self.by_version.get(version).copied().unwrap_or(0)
    }
}

impl fmt::Display for Stats {
    /// One status line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>6.1}s", self.elapsed.as_secs_f64())?;
        let versions: Vec<String> = self
            .by_version
            .iter()
            .map(|(v, n)| format!("{v}:{n}"))
            .collect();
        write!(f, " | versions {}", versions.join(" "))?;
        write!(
            f,
            " | idle {} busy {} off {} offline {} settled {}",
            self.idle, self.busy, self.off, self.offline, self.settled
        )?;
        if self.bricked > 0 {
            write!(f, " BRICKED {}", self.bricked)?;
        }
        write!(
            f,
            " | polls {} errors {} | installed {} rolled back {} verify-failed {} failed {}",
            self.polls,
            self.errors,
            self.installs,
            self.rollbacks,
            self.verification_failures,
            self.install_failures
        )?;
        if self.downloaded > 0 {
            write!(f, " downloaded {}", self.downloaded)?;
        }
        if self.deferred > 0 {
            write!(f, " deferred {}", self.deferred)?;
        }
        if self.attested + self.attestation_failures > 0 {
            write!(
                f,
                " | attested {} not attested {}",
                self.attested, self.attestation_failures
            )?;
        }
        if self.evidence_collected + self.evidence_failures > 0 {
            write!(
                f,
                " | evidence collected {} uploaded {} failed {}",
                self.evidence_collected, self.evidence_uploaded, self.evidence_failures
            )?;
        }
        if self.quarantine_acks + self.quarantine_ignored > 0 {
            write!(
                f,
                " | quarantine acknowledged {} ignored {}",
                self.quarantine_acks, self.quarantine_ignored
            )?;
        }
        write!(
            f,
            " | crashes {} | {:.1} MiB",
            self.crashes,
            self.bytes as f64 / 1048576.0
        )
    }
}
