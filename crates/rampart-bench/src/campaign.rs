//! `rampart-bench campaign`: a simulated rollout at fleet scale (issue 6). Set up like
//! `rampart demo` (keys, image repository, transparency log, the real `rampart server` as a
//! child process, the fleet simulator over mutual TLS), then:
//!
//! 1. a good release in waves (canary 1 %, 10 %, 50 %, 100 %) to every device: the time each
//!    wave took from its start to its gate passing, and the server's CPU seconds in it;
//! 2. a bad release that fails health checks on 90 % of board-a: the time from the first
//!    report that breaches the canary's gate being visible in the management API to the
//!    campaign being halted, by polling the campaign every 20 ms (the server stores times in
//!    whole seconds, too coarse for a figure expected in milliseconds).
//!
//! The server's CPU seconds (utime + stime from /proc/PID/stat) and peak RSS (VmHWM) are
//! sampled throughout. No peer is measured: no comparable open-source campaign engine runs
//! in the same harness.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::FileSigner;
use rampart_repo::{ExpiryDays, InitOptions, Repository, RoleSigners};
use serde_json::{Value, json};

use rampart_cli::commands::demo::fleet::{
    fleet_spec, on_version, operator, publish_releases, start_campaign, wait,
};
use rampart_cli::commands::demo::server::{DemoServer, start_server};
use rampart_cli::commands::demo::setup::{PASSPHRASE, Transparency, key, prepare_dir};

/// `rampart-bench campaign` options.
#[derive(clap::Args)]
pub struct CampaignBenchArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Seconds between device polls (the server's `--poll-interval`; devices follow it).
    #[arg(long, default_value_t = 60)]
    poll_interval: u64,
    /// Simulator worker threads (0: the simulator's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Wave sizes after the canary, in percent of the targets (the last should be 100).
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    waves: Vec<u32>,
    /// Canary size in percent of the targets (at least 10 devices).
    #[arg(long, default_value_t = 1.0)]
    canary_percent: f64,
    /// Directory to build in (new or empty; default: a new temporary directory). The fleet's
    /// state needs roughly 60 KB per device: put it on a disk with room.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// How often the bad campaign is polled: the resolution of the breach-to-halt figure.
/// Pause between inventory checks while waiting on the fleet: each answer costs the server
/// real CPU at this scale.
const INVENTORY_PAUSE: Duration = Duration::from_millis(500);
const FAST_POLL: Duration = Duration::from_millis(20);

/// CPU seconds and resident memory of the server process.
pub(crate) struct Probe {
    pub(crate) pid: String,
}

impl Probe {
    /// utime + stime, seconds (the same reading as `bench server`).
    pub(crate) fn cpu_secs(&self) -> f64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return f64::NAN;
        };
        // Fields after the command name, which may contain spaces, in parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return f64::NAN;
        };
        let f: Vec<f64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .filter_map(|v| v.parse().ok())
            .collect();
        // USER_HZ is 100 on every Linux architecture that matters here.
        if f.len() == 2 {
            (f[0] + f[1]) / 100.0
        } else {
            f64::NAN
        }
    }

    /// Peak resident set size so far, MiB.
    pub(crate) fn peak_rss_mib(&self) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|k| k.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    }
}

struct WaveRow {
    name: String,
    devices: u64,
    secs: f64,
    server_secs: Option<i64>,
    cpu: f64,
}

pub fn run(a: CampaignBenchArgs) -> anyhow::Result<()> {
    ensure!(
        (10..=1_000_000).contains(&a.devices),
        "--devices must be between 10 and 1000000"
    );
    ensure!(
        a.poll_interval >= 1,
        "--poll-interval must be at least 1 second"
    );
    ensure!(
        a.waves.last() == Some(&100) && a.waves.windows(2).all(|w| w[0] < w[1]),
        "--waves must be increasing percentages ending in 100, e.g. 10,50,100"
    );
    let started = Instant::now();
    let dir = prepare_dir(a.dir)?;
    println!(
        "rampart-bench campaign: {} devices, poll interval {} s, in {}",
        a.devices,
        a.poll_interval,
        dir.display()
    );
    let (repo_dir, tlog, added) = demo_repository(&dir)?;

    let poll = a.poll_interval.to_string();
    let server = start_server(
        &dir.join("server"),
        &repo_dir,
        PASSPHRASE,
        &["--poll-interval", &poll],
    )?;
    let DemoServer { process, ca, .. } = &server;
    let probe = Probe {
        pid: process.child.id().to_string(),
    };
    let (_, api) = operator(&server, "bench")?;
    println!(
        "server pid {} at {} (setup {:.1} s)",
        probe.pid,
        process.device_url,
        started.elapsed().as_secs_f64()
    );

    let poll_every = Duration::from_secs(a.poll_interval);
    let mut spec = fleet_spec(&server, &repo_dir, &tlog, &added[0], a.devices, poll_every)?;
    if a.workers > 0 {
        spec.workers = a.workers;
    }
    spec.state_root = Some(dir.join("fleet"));
    let t = Instant::now();
    println!("building {} simulated devices…", a.devices);
    let fleet = rampart_sim::Fleet::build(spec, ca)
        .context("building the simulated fleet (check free space for --dir: ~60 KB per device)")?;
    println!("  built in {:.1} s", t.elapsed().as_secs_f64());
    let fleet = fleet.start();
    // Enrolment takes one boot spread plus the handshakes the server can do.
    let enrol_limit = poll_every * 3 + Duration::from_secs(a.devices as u64 / 100 + 60);
    let t = Instant::now();
    wait_fleet(enrol_limit, "every device to enrol", || {
        let n = on_version(&api, "1.0.0")?;
        progress(&format!("  enrolled {n}/{}", a.devices));
        Ok(n >= a.devices as u64)
    })?;
    println!(
        "\n  enrolled in {:.1} s; server CPU {:.1} s, peak RSS {:.0} MiB so far",
        t.elapsed().as_secs_f64(),
        probe.cpu_secs(),
        probe.peak_rss_mib()
    );

    // The good campaign: gate passes on 5 results after 5 s of observation; every wave then
    // needs its devices to poll (one interval at most), install, reboot and report.
    let canary = ((a.devices as f64 * a.canary_percent / 100.0).round() as usize).max(10);
    let waves: Vec<Value> = a.waves[..a.waves.len() - 1]
        .iter()
        .map(|p| json!({"percent": p}))
        .collect();
    let good = start_campaign(
        &api,
        json!({
            "name": "bench to 2.0.0",
            "release": "fw-2.0.0.img",
            "targets": {"filter": {"firmware_version": "1.0.0"}},
            "phases": {"canary": {"devices": canary}, "waves": waves},
            "gate": {"min_success_pct": 95, "max_failure_pct": 5, "min_results": 5, "min_observation_secs": 5},
            "rollback_on_breach": true,
        }),
        "",
    )?;
    let cpu0 = probe.cpu_secs();
    let good_start = Instant::now();
    let wave_limit = poll_every * 4 + Duration::from_secs(a.devices as u64 / 200 + 120);
    let mut rows = Vec::new();
    let mut wave = 0usize;
    let mut wave_t = Instant::now();
    let mut wave_cpu = cpu0;
    let mut wave_server_start: Option<i64> = None;
    let good_final = loop {
        let r = api.ok("GET", &format!("/api/v1/campaigns/{good}"), None)?;
        let status = r["status"].as_str().unwrap_or("").to_owned();
        let now_wave = r["state"]["wave"].as_u64().unwrap_or(0) as usize;
        if wave_server_start.is_none() {
            wave_server_start = r["state"]["wave_started"].as_i64();
        }
        if now_wave != wave || status == "completed" {
            let cpu = probe.cpu_secs();
            let next_start = r["state"]["wave_started"].as_i64();
            let end_server = if status == "completed" {
                r["state"]["finished"].as_i64()
            } else {
                next_start
            };
            let w = &r["figures"]["waves"][wave];
            rows.push(WaveRow {
                name: w["name"].as_str().unwrap_or("?").to_owned(),
                devices: w["devices"].as_u64().unwrap_or(0),
                secs: wave_t.elapsed().as_secs_f64(),
                server_secs: wave_server_start.zip(end_server).map(|(s, e)| e - s),
                cpu: cpu - wave_cpu,
            });
            println!(
                "\n  wave {wave} ({}, {} devices) passed its gate after {:.1} s",
                rows.last().map_or("", |r| r.name.as_str()),
                rows.last().map_or(0, |r| r.devices),
                wave_t.elapsed().as_secs_f64()
            );
            wave = now_wave;
            wave_t = Instant::now();
            wave_cpu = cpu;
            wave_server_start = next_start;
        }
        match status.as_str() {
            "completed" => break r,
            "paused" | "aborted" => bail!(
                "the good campaign stopped ({status}) — the fleet or server is overloaded; see {}: {}",
                dir.join("server").display(),
                r["state"]
            ),
            _ => {}
        }
        ensure!(
            wave_t.elapsed() < wave_limit,
            "wave {wave} did not pass its gate within {} s: try a longer --poll-interval or fewer --devices; state {}",
            wave_limit.as_secs(),
            r["state"]
        );
        let done = r["figures"]["total"]["succeeded"].as_u64().unwrap_or(0);
        progress(&format!(
            "  wave {wave}: {done} succeeded, {:.0} s",
            good_start.elapsed().as_secs_f64()
        ));
        // Not faster: at fleet scale the campaign's figures take the server noticeable CPU to
        // compute, and polling them continuously slowed the rollout being measured.
        std::thread::sleep(Duration::from_secs(2));
    };
    let good_secs = good_start.elapsed().as_secs_f64();
    let good_cpu = probe.cpu_secs() - cpu0;

    // Wait for every device to run (and report) 2.0.0 so the bad campaign targets them all.
    wait_fleet(wave_limit, "every device to report 2.0.0", || {
        Ok(on_version(&api, "2.0.0")? >= a.devices as u64)
    })?;

    // The bad campaign: max 10 % failures over at least 5 canary results.
    let bad_canary = ((a.devices as f64 * a.canary_percent / 100.0).round() as usize).max(10);
    let bad = start_campaign(
        &api,
        json!({
            "name": "bench to 3.0.0",
            "release": "fw-3.0.0.img",
            "targets": {"filter": {"firmware_version": "2.0.0"}},
            "phases": {"canary": {"devices": bad_canary}, "waves": [{"percent": 100}]},
            "gate": {"min_success_pct": 95, "max_failure_pct": 10, "min_results": 5, "min_observation_secs": 5},
            "on_breach": "pause",
            "rollback_on_breach": true,
        }),
        "",
    )?;
    let bad_start = Instant::now();
    // (seconds since bad_start, results in the canary) for every poll.
    let mut seen: Vec<(f64, u64)> = Vec::new();
    let (halted_at, bad_final) = loop {
        let r = api.ok("GET", &format!("/api/v1/campaigns/{bad}"), None)?;
        let t = bad_start.elapsed().as_secs_f64();
        let w = &r["figures"]["waves"][0];
        let results = w["succeeded"].as_u64().unwrap_or(0) + w["failed"].as_u64().unwrap_or(0);
        seen.push((t, results));
        match r["status"].as_str() {
            Some("paused" | "aborted") => break (t, r),
            Some("completed") => bail!("the bad release was not halted: {}", r["state"]),
            _ => {}
        }
        ensure!(
            bad_start.elapsed() < wave_limit,
            "the bad campaign was not halted within {} s: {}",
            wave_limit.as_secs(),
            r["state"]
        );
        std::thread::sleep(FAST_POLL);
    };
    let breach = &bad_final["state"]["halt"]["breach"];
    let breach_results =
        breach["failed"].as_u64().unwrap_or(0) + breach["succeeded"].as_u64().unwrap_or(0);
    // The breaching report is the one that brought the canary to the breach's result count:
    // the first poll that shows that count is the earliest this process could see it stored.
    let breach_seen = seen
        .iter()
        .find(|(_, n)| *n >= breach_results)
        .map_or(halted_at, |(t, _)| *t);
    let breach_to_halt_ms = (halted_at - breach_seen) * 1000.0;
    // Upper bound: the breaching report was stored after the last poll that did not show it.
    let before = seen
        .iter()
        .rev()
        .find(|(t, n)| *n < breach_results && *t < breach_seen)
        .map_or(0.0, |(t, _)| *t);
    let breach_to_halt_max_ms = (halted_at - before) * 1000.0;
    let polls_between = seen
        .iter()
        .filter(|(t, _)| *t >= breach_seen && *t < halted_at)
        .count();
    let poll_period_ms = if seen.len() > 1 {
        seen.last().map_or(0.0, |l| l.0) * 1000.0 / (seen.len() - 1) as f64
    } else {
        f64::NAN
    };
    wait_fleet(wave_limit, "the fleet rollback to finish", || {
        Ok(on_version(&api, "3.0.0")? == 0)
    })?;
    let cpu_total = probe.cpu_secs();
    let rss = probe.peak_rss_mib();
    let stats = fleet.stop();

    println!("\n\nrampart-bench campaign — {}", crate::report::machine());
    println!(
        "{} devices, poll interval {} s, SQLite, one `rampart server` process; no peer (none runs campaigns in this harness)\n",
        a.devices, a.poll_interval
    );
    println!(
        "{:<10} {:>8} {:>12} {:>12} {:>14}",
        "wave", "devices", "start→gate", "server (s)", "server CPU s"
    );
    for r in &rows {
        println!(
            "{:<10} {:>8} {:>10.1} s {:>12} {:>14.1}",
            r.name,
            r.devices,
            r.secs,
            r.server_secs.map_or("-".into(), |s| s.to_string()),
            r.cpu
        );
    }
    println!(
        "good campaign: {:.1} s, server CPU {:.1} s ({:.0} % of one core)",
        good_secs,
        good_cpu,
        good_cpu / good_secs * 100.0
    );
    println!(
        "bad campaign: halted at its canary ({}) {:.1} s after start; breach→halt {:.0} ms seen, at most {:.0} ms ({} poll(s) in between, polling every {:.0} ms; goal: within one poll interval = {} s: {})",
        bad_final["state"]["halt"]["reason"].as_str().unwrap_or(""),
        halted_at,
        breach_to_halt_ms,
        breach_to_halt_max_ms,
        polls_between,
        poll_period_ms,
        a.poll_interval,
        if breach_to_halt_max_ms < a.poll_interval as f64 * 1000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    println!(
        "server: {:.1} CPU s over the whole run ({:.0} s), peak RSS (VmHWM) {:.0} MiB",
        cpu_total,
        started.elapsed().as_secs_f64(),
        rss
    );
    println!(
        "simulator: {} sessions, {} polls, {} errors, {} installs, {} rollbacks, {} bricked",
        stats.sessions, stats.polls, stats.errors, stats.installs, stats.rollbacks, stats.bricked
    );
    let report = json!({
        "devices": a.devices,
        "poll_interval": a.poll_interval,
        "machine": crate::report::machine(),
        "waves": rows.iter().map(|r| json!({"name": r.name, "devices": r.devices, "secs": r.secs, "server_secs": r.server_secs, "server_cpu_secs": r.cpu})).collect::<Vec<_>>(),
        "good_campaign_secs": good_secs,
        "breach_to_halt_ms": breach_to_halt_ms,
        "breach_to_halt_max_ms": breach_to_halt_max_ms,
        "bad_campaign_polls": seen,
        "fast_poll_ms": poll_period_ms,
        "server_cpu_secs": cpu_total,
        "server_peak_rss_mib": rss,
        "elapsed_secs": started.elapsed().as_secs_f64(),
        "campaigns": [good_final, bad_final],
    });
    std::fs::write(
        dir.join("bench-campaign.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("report: {}", dir.join("bench-campaign.json").display());
    ensure!(stats.bricked == 0, "{} devices bricked", stats.bricked);
    Ok(())
}

/// The demo's world for a fleet benchmark in `dir`: encrypted keys (one Ed25519 root key
/// instead of the demo's Ed25519 + ML-DSA-65 pair: every device keeps the root metadata, and an
/// ML-DSA signature and key add ~5 KB per device to its state), a TUF image repository with
/// releases 1.0.0, 2.0.0 and 3.0.0, and a transparency log with two witnesses.
pub(crate) fn demo_repository(
    dir: &Path,
) -> anyhow::Result<(PathBuf, Transparency, Vec<rampart_repo::AddedRelease>)> {
    let now = rampart_cli::shared::now_unix();
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(Path::new(r), PASSPHRASE)?))
    };
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let root = key(&keys, "root", Scheme::Ed25519)?;
    let targets = key(&keys, "targets", Scheme::Ed25519)?;
    let snapshot = key(&keys, "snapshot", Scheme::Ed25519)?;
    let timestamp = key(&keys, "timestamp", Scheme::Ed25519)?;
    let repo_dir = dir.join("repo");
    let one = |k: String| RoleSigners {
        keys: vec![k],
        threshold: 1,
    };
    let repo = Repository::init(
        &repo_dir,
        InitOptions {
            root: one(root),
            targets: one(targets),
            snapshot: one(snapshot),
            timestamp: one(timestamp),
            expiry_days: ExpiryDays::default(),
        },
        &open,
        now,
    )?;
    let tlog = Transparency::start(&dir.join("tlog"), 2, 2)?;
    let added = publish_releases(&repo, &dir.join("images"), &tlog, &open, now)?;
    Ok((repo_dir, tlog, added))
}

pub(crate) fn progress(line: &str) {
    use std::io::Write;
    print!("\r{line:<60}");
    let _ = std::io::stdout().flush();
}

/// [`wait`] for the fleet, with the hint that fits this benchmark when it times out.
fn wait_fleet(
    limit: Duration,
    what: &str,
    done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    wait(limit, INVENTORY_PAUSE, what, done)
        .context("try fewer --devices or a longer --poll-interval")
}
