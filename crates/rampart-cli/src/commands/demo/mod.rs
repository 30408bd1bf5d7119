//! `rampart demo`: the main job. In one fresh directory: signing keys, an image repository,
//! a transparency log with two witnesses, the update server on SQLite, a simulated fleet of
//! devices running the agent's real update flow over mutual TLS, a good release rolled out in
//! waves to every device, and a bad release halted at its canary and rolled back on its own.
//! `--security-tour` runs the demo's other part instead (`tour`): key schemes, root rotation,
//! delegation and the attacks the design defends against. Both parts set up their directory,
//! keys, transparency log and server with the same steps (`setup`, `server`), which
//! `rampart-bench campaign` reuses.

pub mod fleet;
pub mod server;
pub mod setup;
mod tour;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::FileSigner;
use rampart_repo::{ExpiryDays, InitOptions, Repository, RoleSigners};
use serde_json::json;

use fleet::{
    POLL_SECS, STATE_LIMIT, STATE_PAUSE, fleet_rollback_settled, fleet_spec, follow, on_version,
    operator, publish_releases, start_campaign, summary, wait, wait_settled_on,
};
use server::{DemoServer, start_server};
use setup::{PASSPHRASE, Transparency, key, prepare_dir, step};

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
    /// After the demo, leave the server and the log running and print their URLs (the web
    /// console's among them), an operator token and the `export` line for the CLI's API settings
    /// (Ctrl-C stops).
    #[arg(long)]
    keep_running: bool,
    /// Run the security tour instead: key schemes, root rotation, delegation, the attacks the
    /// design defends against, and one device over the update server.
    #[arg(long)]
    security_tour: bool,
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    if a.security_tour {
        return tour::run(a.dir);
    }
    ensure!(
        (10..=100_000).contains(&a.devices),
        "--devices must be between 10 and 100000"
    );
    let started = Instant::now();
    let dir = prepare_dir(a.dir)?;
    println!("Rampart demo in {}", dir.display());
    println!("  {}", setup::keys_note(&dir));
    let now = crate::shared::now_unix();
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
        setup::keys_note(&dir)
    );
    if a.keep_running {
        let ca_pem = std::path::absolute(ca_pem).unwrap_or_else(|_| ca_pem.clone());
        println!(
            "\nStill running (Ctrl-C stops):\n  device API        {}\n  management API    {}/api/v1/  (operator token {token})\n  web console       {}/console/  (log in with the operator token)\n  transparency log  {}",
            process.device_url, process.management_url, process.management_url, tlog.log_url
        );
        println!(
            "The CLI against this server (`rampart campaign list`, `rampart incident list`, ...):\n  {}",
            cli_exports(&process.management_url, &token, &ca_pem)
        );
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        ctrlc_wait(tx);
        let _ = rx.recv();
    }
    Ok(())
}

/// The `export` line that points `rampart`'s API commands at a server: the variables
/// [`crate::shared::api_client::ApiArgs`] reads.
fn cli_exports(api: &str, token: &str, ca: &Path) -> String {
    format!(
        "export RAMPART_API_URL={} RAMPART_API_TOKEN={} RAMPART_API_CA={}",
        shell_word(api),
        shell_word(token),
        shell_word(&ca.display().to_string())
    )
}

/// `word` as one shell word: as it is when it is plain, else single-quoted.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._:-=+@%,".contains(c))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_export_line_quotes_only_what_a_shell_would_split() {
        assert_eq!(
            cli_exports(
                "https://127.0.0.1:8444",
                "rmp_abc-123",
                Path::new("/tmp/demo dir/server/ca.pem")
            ),
            "export RAMPART_API_URL=https://127.0.0.1:8444 RAMPART_API_TOKEN=rmp_abc-123 RAMPART_API_CA='/tmp/demo dir/server/ca.pem'"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
