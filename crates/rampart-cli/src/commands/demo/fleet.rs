//! The demo's fleet steps (also `rampart-bench campaign`'s): releases published and logged,
//! an operator with a token, the simulated fleet's spec, campaigns started and followed, and
//! waiting on the fleet's state.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use rampart_repo::{ReleaseRequest, Repository};
use serde_json::{Value, json};

use super::server::{DemoServer, rampart, run_ok};
use super::setup::{LOG_WAIT, PASSPHRASE, Transparency};
use crate::shared::api_client::ApiClient;

pub const MODELS: [&str; 2] = ["board-a", "board-b"];
/// Seconds between device polls in the demo (real fleets poll every few minutes).
pub const POLL_SECS: u64 = 2;
/// Image size: small, so a thousand downloads take seconds (and the campaign benchmark measures
/// the engine and the device protocol, not bandwidth).
pub const IMAGE_BYTES: usize = 64 * 1024;
/// The longest the demo waits for the fleet to reach a state (enrolled, a campaign ended, every
/// device settled). Generous on purpose: the demo waits on state, and a busy machine (a CI
/// runner with every core taken) only makes it slower, never different.
pub const STATE_LIMIT: Duration = Duration::from_secs(600);
/// How often the demo looks at the server and the fleet while it waits.
pub const STATE_PAUSE: Duration = Duration::from_millis(250);

/// Devices whose inventory says they run `version`.
pub fn on_version(api: &ApiClient, version: &str) -> anyhow::Result<u64> {
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
pub fn wait_settled_on(
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
pub fn fleet_rollback_settled(campaign: &Value) -> bool {
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
pub fn wait(
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
pub fn start_campaign(api: &ApiClient, spec: Value, indent: &str) -> anyhow::Result<String> {
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
pub fn publish_releases(
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
        &crate::shared::output::BarProgress::default(),
        Some(&logger),
    )?;
    repo.publish(open, now)?;
    Ok(added)
}

/// An operator token for the demo server and a management-API client using it.
pub fn operator(server: &DemoServer, name: &str) -> anyhow::Result<(String, ApiClient)> {
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
pub fn fleet_spec(
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
pub fn follow(api: &ApiClient, id: &str, limit: Duration) -> anyhow::Result<Value> {
    let start = Instant::now();
    let mut shown = String::new();
    loop {
        let r = api.ok("GET", &format!("/api/v1/campaigns/{id}"), None)?;
        let key = format!("{}/{}", r["status"], r["wave"]);
        if key != shown {
            println!("    after {:>5.1} s:", start.elapsed().as_secs_f64());
            for line in crate::commands::campaign::render_status(&r).lines() {
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

pub fn summary(good: &Value, bad: &Value, versions: &Value, stats: &rampart_sim::Stats) {
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
