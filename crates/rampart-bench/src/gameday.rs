//! `rampart-bench gameday`: incident response at fleet scale (issue 16's game days). It builds
//! the demo's repository and PKI, starts a real `rampart server` (SQLite, child process) with
//! remote attestation and an incident configuration whose playbooks quarantine and re-image a
//! compromised device at once, and runs a simulated fleet (every device with a software TPM)
//! until every device is enrolled and attested on 1.0.0. Then it strikes: `--per-kind` devices
//! each get a tampered slot, a failing attestation, forged reports and stolen-key firmware
//! (`rampart_sim::compromise`), all at the same moment, and it waits until every compromised
//! device is recovered.
//!
//! Per compromised device it measures, from the moment of the compromise:
//! * **detect**: the server's incident names the device (the device's `joined_at` in
//!   `GET /api/v1/incidents/{id}`; whole seconds);
//! * **contain (server)**: the device's quarantine row (`since` in `GET /api/v1/quarantine`;
//!   whole seconds): from then on the server gives it nothing but the quarantine routes;
//! * **contain (device)**: the first poll answer carrying the signed `quarantined` statement;
//! * **recover**: a re-image completed on both slots (the agent's Mirroring phase);
//!
//! and counts the healthy devices quarantined (by the server's list, and by the statements the
//! devices got). Goal: quarantine within one poll interval at p95, 100 % recovered, 0 healthy
//! devices quarantined.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use rampart_cli::commands::demo::fleet::{fleet_spec, on_version, operator, wait};
use rampart_cli::commands::demo::server::start_server;
use rampart_cli::commands::demo::setup::{PASSPHRASE, prepare_dir};
use rampart_cli::shared::api_client::ApiClient;
use rampart_sim::{Compromise, CompromiseKind, GameDay, percentile};

use crate::attest_fleet::approve_endorsement_keys;
use crate::campaign::{demo_repository, progress};

/// The game day's playbooks: every compromise signal quarantines, re-images and alerts at once
/// (the built-in playbooks hold the re-image for an operator's approval). Evidence collection
/// is left out: the simulated devices do not upload bundles, and the figures are about
/// detection, containment and recovery.
const INCIDENT_CONFIG: &str = r#"
[detectors.unknown_firmware]
versions = true

[playbooks.attestation_failed.default]
now = ["quarantine", "reimage", "alert"]

[playbooks.unknown_firmware.default]
now = ["quarantine", "reimage", "alert"]

[playbooks.unknown_signed_release.default]
now = ["quarantine", "reimage", "alert"]
"#;

/// Planned far beyond any run: the harness strikes by hand once the fleet is enrolled.
const STRIKE_BY_HAND: Duration = Duration::from_secs(6 * 86_400);

/// How often the harness reads the server's incidents and quarantines.
const READ_EVERY: Duration = Duration::from_secs(1);

/// `rampart-bench gameday` options.
#[derive(clap::Args)]
pub struct GameDayArgs {
    /// Simulated devices.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Devices compromised per kind (tampered-slot, failing-attestation, forged-report,
    /// stolen-key).
    #[arg(long, default_value_t = 25)]
    per_kind: usize,
    /// Seconds between device polls (the server's `--poll-interval`).
    #[arg(long, default_value_t = 30)]
    poll_interval: u64,
    /// Directory to build in (new or empty; default: a new temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// What the server says about each compromised device, Unix seconds.
#[derive(Default)]
struct ServerView {
    /// The first time an incident named the device.
    detected: HashMap<String, i64>,
    /// The device's quarantine row.
    quarantined: HashMap<String, i64>,
    /// Incidents by detector.
    incidents: BTreeMap<String, usize>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Reads every incident (with its devices) and the quarantine list.
fn read_server(api: &ApiClient) -> anyhow::Result<ServerView> {
    let mut view = ServerView::default();
    let mut offset = 0;
    loop {
        let page = api.ok(
            "GET",
            &format!("/api/v1/incidents?limit=500&offset={offset}"),
            None,
        )?;
        let incidents = page["incidents"].as_array().cloned().unwrap_or_default();
        for i in &incidents {
            let id = i["id"].as_str().context("an incident without an id")?;
            *view
                .incidents
                .entry(i["detector"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
            let full = api.ok("GET", &format!("/api/v1/incidents/{id}"), None)?;
            for d in full["devices"].as_array().into_iter().flatten() {
                if let (Some(device), Some(at)) = (d["device_id"].as_str(), d["joined_at"].as_i64())
                {
                    let first = view.detected.entry(device.to_owned()).or_insert(at);
                    *first = (*first).min(at);
                }
            }
        }
        if incidents.len() < 500 {
            break;
        }
        offset += incidents.len();
    }
    let quarantined = api.ok("GET", "/api/v1/quarantine?limit=1000", None)?;
    for q in quarantined["devices"].as_array().into_iter().flatten() {
        if let (Some(device), Some(since)) = (q["device_id"].as_str(), q["since"].as_i64()) {
            view.quarantined.insert(device.to_owned(), since);
        }
    }
    Ok(view)
}

/// p50, p95 and max of `secs`, as JSON and as text.
fn summary(secs: &[f64]) -> (Value, String) {
    let durations: Vec<Duration> = secs
        .iter()
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
        .collect();
    let p = |q| percentile(&durations, q).map(|d| d.as_secs_f64());
    let text = |v: Option<f64>| v.map_or("-".to_owned(), |s| format!("{s:.1} s"));
    (
        json!({"n": secs.len(), "p50": p(50.0), "p95": p(95.0), "max": p(100.0)}),
        format!(
            "n {} p50 {} p95 {} max {}",
            secs.len(),
            text(p(50.0)),
            text(p(95.0)),
            text(p(100.0))
        ),
    )
}

pub fn run(a: GameDayArgs) -> anyhow::Result<()> {
    ensure!(
        (10..=200_000).contains(&a.devices),
        "--devices must be between 10 and 200000"
    );
    ensure!(
        a.per_kind >= 1 && a.per_kind * CompromiseKind::ALL.len() <= a.devices / 2,
        "--per-kind must be at least 1, and the compromised devices at most half the fleet"
    );
    ensure!(a.poll_interval >= 1, "--poll-interval must be at least 1");
    let dir = prepare_dir(a.dir)?;
    println!(
        "rampart-bench gameday: {} devices, {} compromised per kind, poll interval {} s, in {}",
        a.devices,
        a.per_kind,
        a.poll_interval,
        dir.display()
    );
    let (repo_dir, tlog, added) = demo_repository(&dir)?;
    let config = dir.join("incidents.toml");
    std::fs::write(&config, INCIDENT_CONFIG)?;
    let poll = a.poll_interval.to_string();
    // A quote at every poll: the server asks again once half the window has passed (0.75 of
    // an interval), and the agent's jittered polls come 0.8 to 1.2 intervals apart, so a
    // healthy device is never stale and a failing one is caught at its next poll.
    let freshness = (3 * a.poll_interval).div_ceil(2).to_string();
    let config_arg = config.display().to_string();
    let server = start_server(
        &dir.join("server"),
        &repo_dir,
        PASSPHRASE,
        &[
            "--poll-interval",
            &poll,
            "--attestation",
            "--attestation-freshness",
            &freshness,
            "--incident-config",
            &config_arg,
        ],
    )?;
    let (_, api) = operator(&server, "gameday")?;
    let poll_every = Duration::from_secs(a.poll_interval);
    let mut spec = fleet_spec(&server, &repo_dir, &tlog, &added[0], a.devices, poll_every)?;
    spec.attest = true;
    spec.state_root = Some(dir.join("fleet"));
    spec.compromises = CompromiseKind::ALL
        .into_iter()
        .map(|kind| Compromise {
            kind,
            count: a.per_kind,
            at: STRIKE_BY_HAND,
        })
        .collect();
    let mut fleet = rampart_sim::Fleet::build(spec, &server.ca)?;
    approve_endorsement_keys(&server, &mut fleet)?;
    let fleet = fleet.start();
    let limit = poll_every * 6 + Duration::from_secs(a.devices as u64 / 50 + 120);
    wait(
        limit,
        Duration::from_millis(500),
        "every device to enrol and be attested",
        || {
            let n = on_version(&api, "1.0.0")?;
            let attested = api.ok("GET", "/api/v1/attestation/status", None)?["attested"]
                .as_u64()
                .unwrap_or(0);
            progress(&format!(
                "  enrolled {n}/{}, attested {attested}",
                a.devices
            ));
            Ok(n >= a.devices as u64 && attested >= a.devices as u64)
        },
    )?;
    println!();
    let before = read_server(&api)?;
    ensure!(
        before.detected.is_empty() && before.quarantined.is_empty(),
        "before any compromise the server already names devices in incidents ({:?}) or quarantines {} device(s): a detector fires on healthy devices",
        before.incidents,
        before.quarantined.len()
    );

    let struck = fleet.strike_now();
    let started = unix(fleet.started_at());
    println!(
        "  struck at {:.1} s: {} devices compromised",
        struck.as_secs_f64(),
        fleet.game_day().applied()
    );
    let compromised = fleet.game_day().compromised.len();
    let t = Instant::now();
    let mut view = ServerView::default();
    let mut day = GameDay::default();
    let recover_limit = poll_every * 20 + Duration::from_secs(a.devices as u64 / 50 + 300);
    while t.elapsed() < recover_limit {
        std::thread::sleep(READ_EVERY);
        view = read_server(&api)?;
        day = fleet.game_day();
        let detected = day
            .compromised
            .iter()
            .filter(|r| view.detected.contains_key(&r.device))
            .count();
        progress(&format!(
            "  detected {detected}, quarantined {}, contained {}, recovered {} of {compromised}",
            view.quarantined.len(),
            day.contained(),
            day.recovered()
        ));
        if day.recovered() == compromised && detected == compromised {
            break;
        }
    }
    println!();
    let stats = fleet.stop();

    let victims: HashSet<&str> = day.compromised.iter().map(|r| r.device.as_str()).collect();
    let since_compromise = |at: i64, r: &rampart_sim::CompromiseRecord| {
        r.compromised
            .map(|c| at as f64 - (started + c.as_secs_f64()))
    };
    let mut per_kind = BTreeMap::new();
    let mut all: [Vec<f64>; 4] = Default::default();
    for kind in CompromiseKind::ALL {
        let mut series: [Vec<f64>; 4] = Default::default();
        for r in day.compromised.iter().filter(|r| r.kind == kind) {
            let c = r.compromised.unwrap_or_default();
            let values = [
                view.detected
                    .get(&r.device)
                    .and_then(|at| since_compromise(*at, r)),
                view.quarantined
                    .get(&r.device)
                    .and_then(|at| since_compromise(*at, r)),
                r.contained.map(|d| d.saturating_sub(c).as_secs_f64()),
                r.recovered.map(|d| d.saturating_sub(c).as_secs_f64()),
            ];
            for (i, v) in values.into_iter().enumerate() {
                if let Some(v) = v {
                    series[i].push(v.max(0.0));
                    all[i].push(v.max(0.0));
                }
            }
        }
        per_kind.insert(kind.as_str(), series);
    }
    let healthy_quarantined: Vec<&String> = view
        .quarantined
        .keys()
        .filter(|d| !victims.contains(d.as_str()))
        .collect();
    let names = ["detect", "contain_server", "contain_device", "recover"];
    let mut report_kinds = serde_json::Map::new();
    for (kind, series) in &per_kind {
        let mut m = serde_json::Map::new();
        for (name, s) in names.iter().zip(series) {
            let (j, text) = summary(s);
            println!("  {kind:<20} {name:<15} {text}");
            m.insert((*name).to_owned(), j);
        }
        report_kinds.insert((*kind).to_owned(), Value::Object(m));
    }
    let mut totals = serde_json::Map::new();
    for (name, s) in names.iter().zip(&all) {
        let (j, text) = summary(s);
        println!("  {:<20} {name:<15} {text}", "all");
        totals.insert((*name).to_owned(), j);
    }
    let contain_p95 = percentile(
        &all[1]
            .iter()
            .map(|s| Duration::from_secs_f64(*s))
            .collect::<Vec<_>>(),
        95.0,
    );
    let goals = [
        (
            "quarantine within one poll interval at p95",
            contain_p95.is_some_and(|p| p <= poll_every) && all[1].len() == compromised,
        ),
        (
            "100 % of compromised devices recovered",
            day.recovered() == compromised,
        ),
        (
            "0 healthy devices quarantined",
            healthy_quarantined.is_empty() && day.healthy_quarantined.is_empty(),
        ),
    ];
    for (goal, met) in goals {
        println!("  goal: {goal}: {}", if met { "met" } else { "NOT met" });
    }
    println!(
        "  recovered {}/{compromised}; healthy devices quarantined: {} by the server, {} told so; incidents {:?}; {stats}",
        day.recovered(),
        healthy_quarantined.len(),
        day.healthy_quarantined.len(),
        view.incidents
    );
    let report = json!({
        "devices": a.devices,
        "per_kind": a.per_kind,
        "compromised": compromised,
        "poll_interval": a.poll_interval,
        "machine": crate::report::machine(),
        "kinds": report_kinds,
        "all": totals,
        "recovered": day.recovered(),
        "healthy_quarantined_server": healthy_quarantined,
        "healthy_quarantined_device": day.healthy_quarantined.iter().map(|(d, _)| d).collect::<Vec<_>>(),
        "incidents": view.incidents,
        "goals": goals.iter().map(|(g, met)| json!({"goal": g, "met": met})).collect::<Vec<_>>(),
        "bricked": stats.bricked,
    });
    let out = dir.join("bench-gameday.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", out.display());
    ensure!(stats.bricked == 0, "{} devices bricked", stats.bricked);
    Ok(())
}
