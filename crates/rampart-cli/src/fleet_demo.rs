//! `rampart demo`: the main job. In one fresh directory: signing keys, an image repository,
//! a transparency log with two witnesses, the update server on SQLite, a simulated fleet of
//! devices running the agent's real update flow over mutual TLS, a good release rolled out in
//! waves to every device, and a bad release halted at its canary and rolled back on its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::FileSigner;
use rampart_repo::{ExpiryDays, InitOptions, ReleaseRequest, Repository, RoleSigners};
use serde_json::{Value, json};

use crate::api_client::ApiClient;
use crate::demo::{LOG_WAIT, PASSPHRASE, Transparency, key, prepare_dir};
use crate::demo_server::{DemoServer, rampart, run_ok, start_server};

/// `rampart demo` options.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Directory to build everything in (new or empty; default: a new temporary directory,
    /// kept afterwards). Its layout is described in docs/operator-guide.md.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Simulated devices.
    #[arg(long, default_value_t = 1000)]
    devices: usize,
    /// After the demo, leave the server and the log running and print their URLs (Ctrl-C stops).
    #[arg(long)]
    keep_running: bool,
    /// Run the security tour instead: key schemes, root rotation, delegation, the attacks the
    /// design defends against, and one device over the update server.
    #[arg(long)]
    security_tour: bool,
}

const MODELS: [&str; 2] = ["board-a", "board-b"];
/// Seconds between device polls in the demo (real fleets poll every few minutes).
const POLL_SECS: u64 = 2;
/// Image size: small, so a thousand downloads take seconds (and the campaign benchmark measures
/// the engine and the device protocol, not bandwidth).
const IMAGE_BYTES: usize = 64 * 1024;
/// The longest the demo waits for the fleet to reach a state (enrolled, a campaign ended, every
/// device settled). Generous on purpose: the demo waits on state, and a busy machine (a CI
/// runner with every core taken) only makes it slower, never different.
const STATE_LIMIT: Duration = Duration::from_secs(600);
/// How often the demo looks at the server and the fleet while it waits.
const STATE_PAUSE: Duration = Duration::from_millis(250);

fn step(n: u32, text: &str) {
    println!("\n[{n}] {text}");
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    if a.security_tour {
        return crate::demo::run(a.dir);
    }
    ensure!(
        (10..=100_000).contains(&a.devices),
        "--devices must be between 10 and 100000"
    );
    let started = Instant::now();
    let dir = prepare_dir(a.dir)?;
    println!("Rampart demo in {}", dir.display());
    println!("  {}", crate::demo::keys_note(&dir));
    let now = crate::now_unix();
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(Path::new(r), PASSPHRASE)?))
    };

    step(
        1,
        "Signing keys (encrypted files: Argon2id + XChaCha20-Poly1305)",
    );
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let root = key(&keys, "root", Scheme::Ed25519)?;
    let root_pq = key(&keys, "root-pq", Scheme::MlDsa65)?;
    let targets = key(&keys, "targets", Scheme::EcdsaP256Sha256)?;
    let snapshot = key(&keys, "snapshot", Scheme::Ed25519)?;
    let timestamp = key(&keys, "timestamp", Scheme::Ed25519)?;
    // The server renews snapshot and timestamp with them (`--keep-running` lasts past a day).
    let (snapshot_key, timestamp_key) = (snapshot.clone(), timestamp.clone());

    step(
        2,
        "The image repository (TUF): root needs 2 of 2 (Ed25519 + post-quantum ML-DSA-65)",
    );
    let repo_dir = dir.join("repo");
    let one = |k: String| RoleSigners {
        keys: vec![k],
        threshold: 1,
    };
    let repo = Repository::init(
        &repo_dir,
        InitOptions {
            root: RoleSigners {
                keys: vec![root, root_pq],
                threshold: 2,
            },
            targets: one(targets),
            snapshot: one(snapshot),
            timestamp: one(timestamp),
            expiry_days: ExpiryDays::default(),
        },
        &open,
        now,
    )?;
    println!("    {}", repo_dir.display());

    step(
        3,
        "A transparency log with two witnesses (quorum 2): every release is logged before devices accept it",
    );
    let tlog = Transparency::start(&dir.join("tlog"), 2, 2)?;
    println!(
        "    log {} at {}; witness policy in tlog/policy.txt",
        tlog.client.policy().origin,
        tlog.log_url
    );

    step(
        4,
        "Releasing firmware 1.0.0 (factory), 2.0.0 (good) and 3.0.0 (breaks board-a) for board-a and board-b",
    );
    let added = publish_releases(&repo, &dir.join("images"), &tlog, &open, now)?;
    for r in &added {
        println!(
            "    {} sha256 {}… logged with its tlog-proof",
            r.target_name,
            &r.sha256[..16]
        );
    }

    step(
        5,
        "The update server: manufacturer CA, director, `rampart server` on SQLite (mutual TLS for devices)",
    );
    let poll = POLL_SECS.to_string();
    let server = start_server(
        &dir.join("server"),
        &repo_dir,
        PASSPHRASE,
        &[
            "--poll-interval",
            &poll,
            "--timestamp-key",
            &timestamp_key,
            "--snapshot-key",
            &snapshot_key,
        ],
    )?;
    let DemoServer {
        process,
        ca,
        ca_pem,
        ..
    } = &server;
    println!(
        "    device API {}  management API {}",
        process.device_url, process.management_url
    );
    let (token, api) = operator(&server, "demo")?;

    step(
        6,
        &format!(
            "A simulated fleet of {} devices (70% board-a, 30% board-b) running the agent's update flow",
            a.devices
        ),
    );
    let poll_every = Duration::from_secs(POLL_SECS);
    let mut spec = fleet_spec(&server, &repo_dir, &tlog, &added[0], a.devices, poll_every)?;
    spec.faults.crash_rate = 0.01;
    spec.state_root = Some(dir.join("fleet"));
    let fleet = rampart_sim::Fleet::build(spec, ca).context("building the simulated fleet")?;
    let fleet = fleet.start();
    wait(STATE_LIMIT, STATE_PAUSE, "every device to enrol", || {
        Ok(on_version(&api, "1.0.0")? >= a.devices as u64)
    })?;
    println!(
        "    {} devices enrolled, all on 1.0.0 (device certificates from the manufacturer CA)",
        a.devices
    );

    step(
        7,
        "Campaign 1: 2.0.0 to every device on 1.0.0 — a canary of 1% (at least 10), then 10%, 50%, 100%, health-gated",
    );
    let good = start_campaign(
        &api,
        json!({
            "name": "fleet to 2.0.0",
            "release": "fw-2.0.0.img",
            "targets": {"filter": {"firmware_version": "1.0.0"}},
            "phases": {"canary": {"devices": (a.devices / 100).max(10)}, "waves": [{"percent": 10}, {"percent": 50}]},
            "gate": {"min_success_pct": 95, "max_failure_pct": 5, "min_results": 5, "min_observation_secs": 3},
            "rollback_on_breach": true,
        }),
        "    ",
    )?;
    let good_report = follow(&api, &good, STATE_LIMIT)?;
    ensure!(
        good_report["status"] == "completed",
        "the good release did not complete: {}",
        good_report["state"]
    );
    // The campaign completes once its last wave has its results; stragglers of earlier waves
    // may still be installing. Wait until every device has settled on 2.0.0, then read the
    // campaign's final figures.
    wait_settled_on(&api, &fleet, "2.0.0", a.devices)?;
    let good_report = api.ok("GET", &format!("/api/v1/campaigns/{good}"), None)?;
    println!("    every device runs 2.0.0");

    step(
        8,
        "Campaign 2: 3.0.0 — it fails health checks on board-a; nobody intervenes",
    );
    // The canary's verdict waits for every canary device's result: successes come back before
    // rollbacks (a rollback takes one more reboot), so with fewer results needed, how fast the
    // machine runs could let a canary pass on its first successes.
    let canary = (a.devices / 50).max(10);
    let bad = start_campaign(
        &api,
        json!({
            "name": "fleet to 3.0.0",
            "release": "fw-3.0.0.img",
            "targets": {"filter": {"firmware_version": "2.0.0"}},
            "phases": {"canary": {"devices": canary}, "waves": [{"percent": 20}, {"percent": 100}]},
            "gate": {"min_success_pct": 95, "max_failure_pct": 10, "min_results": canary, "min_observation_secs": 3},
            "on_breach": "pause",
            "rollback_on_breach": true,
        }),
        "    ",
    )?;
    let bad_report = follow(&api, &bad, STATE_LIMIT)?;
    ensure!(
        bad_report["status"] == "paused" && bad_report["wave"] == 0,
        "the bad release was not halted at its canary: {}",
        bad_report["state"]
    );
    // The rollback: every canary device that took 3.0.0 is told 2.0.0 again. Devices still
    // installing 3.0.0 when the gate halted the campaign finish first (and then roll back, on
    // their own or when told), so "nobody on 3.0.0 right now" is not the end: every device
    // must have settled on 2.0.0.
    wait_settled_on(&api, &fleet, "2.0.0", a.devices)?;
    // And each device told 2.0.0 again has its result: those already on it (they rolled back
    // on their own, or never got 3.0.0) are fulfilled at their next poll.
    wait(
        STATE_LIMIT,
        STATE_PAUSE,
        "every fleet-rollback device's result",
        || {
            let r = api.ok("GET", &format!("/api/v1/campaigns/{bad}"), None)?;
            Ok(fleet_rollback_settled(&r))
        },
    )?;
    let bad_report = api.ok("GET", &format!("/api/v1/campaigns/{bad}"), None)?;

    step(9, "Summary");
    let versions = api.ok("GET", "/api/v1/fleet/versions", None)?;
    let stats = fleet.stop();
    summary(&good_report, &bad_report, &versions, &stats);
    let report = json!({
        "devices": a.devices,
        "fleet_versions": versions,
        "campaigns": [good_report, bad_report],
        "simulator": {
            "installs": stats.installs, "rollbacks": stats.rollbacks,
            "crashes": stats.crashes, "bricked": stats.bricked,
            "verification_failures": stats.verification_failures,
            "settled": stats.settled, "busy": stats.busy,
        },
        "elapsed_secs": started.elapsed().as_secs_f64(),
    });
    let report_path = dir.join("report.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report)?)?;
    ensure!(stats.bricked == 0, "{} devices bricked", stats.bricked);
    println!(
        "\nDemo complete in {:.0} s. Everything is in {} (report: report.json); {}",
        started.elapsed().as_secs_f64(),
        dir.display(),
        crate::demo::keys_note(&dir)
    );
    if a.keep_running {
        println!(
            "\nStill running (Ctrl-C stops):\n  device API      {}\n  management API  {}  (token: {token}, CA: {})\n  transparency log {}",
            process.device_url,
            process.management_url,
            ca_pem.display(),
            tlog.log_url
        );
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        ctrlc_wait(tx);
        let _ = rx.recv();
    }
    Ok(())
}

fn ctrlc_wait(tx: std::sync::mpsc::Sender<()>) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(rt) = runtime {
            rt.block_on(async {
                let _ = tokio::signal::ctrl_c().await;
            });
        }
        let _ = tx.send(());
    });
}

/// Devices whose inventory says they run `version`.
pub(crate) fn on_version(api: &ApiClient, version: &str) -> anyhow::Result<u64> {
    let v = api.ok("GET", "/api/v1/fleet/versions", None)?;
    Ok(v["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["firmware_version"] == version)
        .and_then(|v| v["devices"].as_u64())
        .unwrap_or(0))
}

/// Waits until every one of the fleet's `devices` devices has settled on `version`: each runs
/// its committed slot with nothing in progress (no download, install or rollback), every
/// result it produced is stored by the server and it has told the server its version in a
/// poll since; and the server's inventory agrees. Waits on that state, for at most
/// [`STATE_LIMIT`] (a bound for a stuck fleet, not a schedule).
fn wait_settled_on(
    api: &ApiClient,
    fleet: &rampart_sim::FleetHandle,
    version: &str,
    devices: usize,
) -> anyhow::Result<()> {
    let waited = wait(
        STATE_LIMIT,
        STATE_PAUSE,
        &format!("every device to settle on {version}"),
        || {
            Ok(fleet_settled_on(&fleet.stats(), version, devices)
                && on_version(api, version)? == devices as u64)
        },
    );
    if let Err(e) = waited {
        let on_server =
            on_version(api, version).map_or_else(|e| format!("? ({e:#})"), |n| n.to_string());
        bail!(
            "{e:#}. The fleet now: {}; the server counts {on_server} device(s) on {version}. server/server.log and the devices' state in fleet/ show what is stuck",
            fleet.stats()
        );
    }
    Ok(())
}

/// Whether every device of a campaign's fleet rollback has a result (installed, failed,
/// rolled back...), none still assigned or in progress.
fn fleet_rollback_settled(campaign: &Value) -> bool {
    const RESULTS: [&str; 5] = [
        "installed",
        "failed",
        "rolled_back",
        "verification_failed",
        "cancelled",
    ];
    campaign["fleet_rollback"]["by_status"]
        .as_object()
        .is_some_and(|by| by.keys().all(|status| RESULTS.contains(&status.as_str())))
}

/// Whether the fleet's snapshot shows all `devices` settled and idle on `version`.
fn fleet_settled_on(s: &rampart_sim::Stats, version: &str, devices: usize) -> bool {
    s.on_version(version) == devices && s.settled == devices && s.idle == devices
}

/// Calls `done` every `pause` until it says yes, for at most `limit`.
pub(crate) fn wait(
    limit: Duration,
    pause: Duration,
    what: &str,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if done()? {
            return Ok(());
        }
        std::thread::sleep(pause);
    }
    bail!("timed out after {} s waiting for {what}", limit.as_secs())
}

/// Creates and starts a campaign; prints its id and plan after `indent`.
pub(crate) fn start_campaign(api: &ApiClient, spec: Value, indent: &str) -> anyhow::Result<String> {
    let r = api.ok(
        "POST",
        "/api/v1/campaigns",
        Some(json!({"spec": spec, "start": true})),
    )?;
    let id = r["id"].as_str().context("campaign id")?.to_owned();
    println!(
        "{indent}campaign {id}: {} targets in waves {}",
        r["started"]["targets"], r["plan"]
    );
    Ok(id)
}

/// Firmware 1.0.0 (the factory image), 2.0.0 and 3.0.0 for every model, logged in `tlog` and
/// published in `repo`; images are written to `images`.
pub(crate) fn publish_releases(
    repo: &Repository,
    images: &Path,
    tlog: &Transparency,
    open: rampart_repo::KeyOpener,
    now: i64,
) -> anyhow::Result<Vec<rampart_repo::AddedRelease>> {
    std::fs::create_dir_all(images)?;
    let mut requests = Vec::new();
    for (i, version) in ["1.0.0", "2.0.0", "3.0.0"].iter().enumerate() {
        let image = images.join(format!("fw-{version}.img"));
        let data: Vec<u8> = (0..IMAGE_BYTES)
            .map(|b| (b as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        std::fs::write(&image, data)?;
        requests.push(ReleaseRequest {
            image,
            target_name: Some(format!("fw-{version}.img")),
            hardware_ids: MODELS.iter().map(|m| m.to_string()).collect(),
            version: version.to_string(),
            // One security version: a fleet rollback to 2.0.0 stays allowed.
            security_version: 1,
            sbom: None,
            provenance: None,
            role: None,
        });
    }
    let logger = |st: &rampart_log::statement::ReleaseStatement| {
        tlog.client
            .log_release(st, &tlog.release_key, LOG_WAIT)
            .map_err(|e| e.to_string())
    };
    let added = repo.add_releases_logged(
        &requests,
        open,
        now,
        &crate::BarProgress::default(),
        Some(&logger),
    )?;
    repo.publish(open, now)?;
    Ok(added)
}

/// An operator token for the demo server and a management-API client using it.
pub(crate) fn operator(server: &DemoServer, name: &str) -> anyhow::Result<(String, ApiClient)> {
    let token = run_ok(
        {
            let mut c = rampart(PASSPHRASE)?;
            c.args([
                "token", "create", "--db", &server.db, "--role", "operator", "--name", name,
            ]);
            c
        },
        "rampart token create",
    )?
    .trim()
    .to_owned();
    let api = ApiClient::from_ca_file(&server.process.management_url, &token, &server.ca_pem)?;
    Ok((token, api))
}

/// The simulated fleet of the demo and the campaign benchmark: `devices` devices, 70 % board-a
/// and 30 % board-b in two regions, committed on `factory`, provisioned with the log policy,
/// 3.0.0 failing its health check on 90 % of board-a, polling every `poll` (first boots spread
/// over one interval, as a real fleet's polls are).
pub(crate) fn fleet_spec(
    server: &DemoServer,
    repo_dir: &Path,
    tlog: &Transparency,
    factory: &rampart_repo::AddedRelease,
    devices: usize,
    poll: Duration,
) -> anyhow::Result<rampart_sim::FleetSpec> {
    let mut spec = rampart_sim::FleetSpec::new(
        &server.process.device_url,
        std::fs::read(&server.ca_pem)?,
        std::fs::read(repo_dir.join("metadata/1.root.json"))?,
        std::fs::read(server.director.join("1.root.json"))?,
        rampart_sim::InitialFirmware {
            target: factory.target_name.clone(),
            version: "1.0.0".into(),
            security_version: 1,
            sha256: factory.sha256.clone(),
            length: IMAGE_BYTES as u64,
        },
    );
    spec.devices = devices;
    spec.id_prefix = "dev".into();
    spec.models = rampart_sim::Weights(vec![("board-a".into(), 70), ("board-b".into(), 30)]);
    spec.regions = rampart_sim::Weights(vec![("eu".into(), 60), ("us".into(), 40)]);
    spec.log = Some(rampart_sim::LogTrust {
        policy: tlog.client.policy().to_text(),
        release_key: tlog.release_key.verifier_key_string(),
    });
    // 3.0.0 boots but fails its health check on 90 % of board-a devices.
    spec.faults.health = vec!["3.0.0:board-a=0.9".parse()?];
    spec.timing.poll_interval = Some(poll);
    spec.timing.boot_spread = poll;
    spec.timing.reboot_delay = Duration::from_millis(500);
    Ok(spec)
}

/// Prints the campaign's bars whenever its wave or status changes, until it ends or pauses.
fn follow(api: &ApiClient, id: &str, limit: Duration) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut shown = String::new();
    loop {
        let r = api.ok("GET", &format!("/api/v1/campaigns/{id}"), None)?;
        let key = format!("{}/{}", r["status"], r["wave"]);
        if key != shown {
            println!("    after {:>5.1} s:", start.elapsed().as_secs_f64());
            for line in crate::campaign::render_status(&r).lines() {
                println!("      {line}");
            }
            shown = key;
        }
        if matches!(
            r["status"].as_str(),
            Some("completed" | "aborted" | "paused")
        ) {
            return Ok(r);
        }
        ensure!(
            start.elapsed() < limit,
            "campaign {id} did not finish within {} s: {}",
            limit.as_secs(),
            r["state"]
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn summary(good: &Value, bad: &Value, versions: &Value, stats: &rampart_sim::Stats) {
    println!(
        "\n    {:<18} {:<10} {:>7} {:>7} {:>7} {:>9} {:>10} {:>10}",
        "campaign", "status", "targets", "ok", "failed", "rolledbk", "50% after", "100% after"
    );
    for c in [good, bad] {
        let t = &c["figures"]["total"];
        let after = |i: usize| {
            c["figures"]["time_to"][i]["seconds"]
                .as_i64()
                .map_or("-".to_string(), |s| format!("{s} s"))
        };
        println!(
            "    {:<18} {:<10} {:>7} {:>7} {:>7} {:>9} {:>10} {:>10}",
            c["name"].as_str().unwrap_or(""),
            c["status"].as_str().unwrap_or(""),
            t["devices"].as_u64().unwrap_or(0),
            t["succeeded"].as_u64().unwrap_or(0),
            t["failed"].as_u64().unwrap_or(0),
            t["rolled_back"].as_u64().unwrap_or(0),
            after(0),
            after(3)
        );
    }
    if let Some(halt) = bad["state"]["halt"].as_object() {
        println!(
            "\n    {} halted automatically at its canary: {}",
            bad["name"].as_str().unwrap_or(""),
            halt.get("reason").and_then(Value::as_str).unwrap_or("")
        );
    }
    if let Some(rb) = bad["fleet_rollback"].as_object() {
        println!(
            "    fleet rollback: {} canary device(s) told 2.0.0 again ({})",
            rb.get("devices").cloned().unwrap_or_default(),
            rb.get("by_status").cloned().unwrap_or_default()
        );
    }
    let on: Vec<String> = versions["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            format!(
                "{} on {}",
                v["devices"],
                v["firmware_version"].as_str().unwrap_or("")
            )
        })
        .collect();
    println!("    fleet now: {}", on.join(", "));
    println!(
        "    devices: {} installs, {} automatic rollbacks, {} power cuts survived, {} bricked",
        stats.installs, stats.rollbacks, stats.crashes, stats.bricked
    );
}
