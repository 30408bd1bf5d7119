//! `rampart-bench attest-fleet`: the cost of remote attestation at fleet scale. Two runs over the
//! same repository, one after the other in the same process, each with its own `rampart server`
//! (SQLite, child process) and a fresh simulated fleet: **plain** (no attestation) and
//! **attested** (`--require-attestation`: every device has a software TPM, measures its boots,
//! enrols its attestation key and sends quotes the server verifies; assignments are withheld
//! until a device is attested; a quote stays fresh for two poll intervals, so devices quote
//! about once per poll). In each: every device enrols on 1.0.0 (attested: and is attested),
//! then 2.0.0 is assigned to the whole fleet; the figure is the time from the assignment to
//! every device reporting 2.0.0, and the server's CPU seconds in that time.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use base64::Engine as _;
use serde_json::{Value, json};

use rampart_cli::commands::demo::fleet::{fleet_spec, on_version, operator, wait};
use rampart_cli::commands::demo::server::{rampart, run_ok, start_server};
use rampart_cli::commands::demo::setup::{PASSPHRASE, prepare_dir};
use rampart_cli::shared::api_client::ApiClient;

use crate::campaign::{Probe, demo_repository, progress};

/// `rampart-bench attest-fleet` options.
#[derive(clap::Args)]
pub struct AttestFleetArgs {
    /// Simulated devices per run.
    #[arg(long, default_value_t = 10_000)]
    devices: usize,
    /// Seconds between device polls (the server's `--poll-interval`).
    #[arg(long, default_value_t = 30)]
    poll_interval: u64,
    /// How long a passing quote keeps a device attested, seconds (the server re-asks after
    /// half of it); default: twice the poll interval, so every device quotes about once per
    /// poll during the update, including after its reboot into 2.0.0.
    #[arg(long)]
    attestation_freshness: Option<u64>,
    /// Directory to build in (new or empty; default: a new temporary directory; ~60 KB per
    /// device and run).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// What one run measured.
struct Run {
    name: &'static str,
    update_secs: f64,
    server_cpu_secs: f64,
    server_rss_mib: f64,
    stats: rampart_sim::Stats,
}

pub fn run(a: AttestFleetArgs) -> anyhow::Result<()> {
    ensure!(
        (10..=200_000).contains(&a.devices),
        "--devices must be between 10 and 200000"
    );
    let dir = prepare_dir(a.dir)?;
    println!(
        "rampart-bench attest-fleet: {} devices per run, poll interval {} s, in {}",
        a.devices,
        a.poll_interval,
        dir.display()
    );
    let (repo_dir, tlog, added) = demo_repository(&dir)?;
    let mut runs = Vec::new();
    for (name, attest) in [("plain", false), ("attested", true)] {
        let base = dir.join(name);
        let poll = a.poll_interval.to_string();
        let freshness = a
            .attestation_freshness
            .unwrap_or(2 * a.poll_interval)
            .to_string();
        let mut args = vec!["--poll-interval", poll.as_str()];
        if attest {
            args.extend([
                "--require-attestation",
                "--attestation-freshness",
                &freshness,
            ]);
        }
        let server = start_server(&base.join("server"), &repo_dir, PASSPHRASE, &args)?;
        let probe = Probe {
            pid: server.process.child.id().to_string(),
        };
        let (_, api) = operator(&server, name)?;
        let poll_every = Duration::from_secs(a.poll_interval);
        let mut spec = fleet_spec(&server, &repo_dir, &tlog, &added[0], a.devices, poll_every)?;
        spec.attest = attest;
        spec.state_root = Some(base.join("fleet"));
        let mut fleet = rampart_sim::Fleet::build(spec, &server.ca)?;
        if attest {
            approve_endorsement_keys(&server, &mut fleet)?;
        }
        let fleet = fleet.start();
        let limit = poll_every * 4 + Duration::from_secs(a.devices as u64 / 50 + 120);
        wait(
            limit,
            Duration::from_millis(500),
            "every device to enrol",
            || {
                let n = on_version(&api, "1.0.0")?;
                let attested = if attest {
                    api.ok("GET", "/api/v1/attestation/status", None)?["attested"]
                        .as_u64()
                        .unwrap_or(0)
                } else {
                    n
                };
                progress(&format!(
                    "  {name}: enrolled {n}/{}, attested {attested}",
                    a.devices
                ));
                Ok(n >= a.devices as u64 && attested >= a.devices as u64)
            },
        )?;
        println!();
        let cpu0 = probe.cpu_secs();
        let t = Instant::now();
        for hw in ["board-a", "board-b"] {
            api.ok(
                "POST",
                "/api/v1/assignments",
                Some(json!({"target": "fw-2.0.0.img", "hardware_id": hw})),
            )?;
        }
        wait(
            limit,
            Duration::from_millis(500),
            "every device on 2.0.0",
            || {
                let n = on_version(&api, "2.0.0")?;
                progress(&format!("  {name}: on 2.0.0 {n}/{}", a.devices));
                Ok(n >= a.devices as u64)
            },
        )?;
        let run = Run {
            name,
            update_secs: t.elapsed().as_secs_f64(),
            server_cpu_secs: probe.cpu_secs() - cpu0,
            server_rss_mib: probe.peak_rss_mib(),
            stats: fleet.stop(),
        };
        println!(
            "\n  {name}: every device on 2.0.0 {:.1} s after the assignment; server CPU {:.1} s; {}",
            run.update_secs, run.server_cpu_secs, run.stats
        );
        ensure!(
            run.stats.bricked == 0,
            "{} devices bricked",
            run.stats.bricked
        );
        runs.push(run);
    }
    let (plain, attested) = (&runs[0], &runs[1]);
    let time_ratio = attested.update_secs / plain.update_secs;
    let cpu_ratio = attested.server_cpu_secs / plain.server_cpu_secs;
    println!(
        "attested vs plain: time {time_ratio:.2}x, server CPU {cpu_ratio:.2}x (goal: at most 1.2x each: {})",
        if time_ratio <= 1.2 && cpu_ratio <= 1.2 {
            "met"
        } else {
            "NOT met"
        }
    );
    let report = json!({
        "devices": a.devices,
        "poll_interval": a.poll_interval,
        "machine": crate::report::machine(),
        "runs": runs.iter().map(|r| json!({
            "name": r.name,
            "update_secs": r.update_secs,
            "server_cpu_secs": r.server_cpu_secs,
            "server_peak_rss_mib": r.server_rss_mib,
            "polls": r.stats.polls,
            "attested": r.stats.attested,
            "attestation_failures": r.stats.attestation_failures,
        })).collect::<Vec<Value>>(),
        "time_ratio": time_ratio,
        "server_cpu_ratio": cpu_ratio,
    });
    let out = dir.join("bench-attest-fleet.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report)?)?;
    println!("report: {}", out.display());
    Ok(())
}

/// Approves every simulated TPM's endorsement key (they carry no EK certificate) through the
/// management API, as an admin, from a few threads.
pub(crate) fn approve_endorsement_keys(
    server: &rampart_cli::commands::demo::server::DemoServer,
    fleet: &mut rampart_sim::Fleet,
) -> anyhow::Result<()> {
    let token = run_ok(
        {
            let mut c = rampart(PASSPHRASE)?;
            c.args([
                "token",
                "create",
                "--db",
                &server.db,
                "--role",
                "admin",
                "--name",
                "bench-admin",
            ]);
            c
        },
        "rampart token create --role admin",
    )?;
    let admin =
        ApiClient::from_ca_file(&server.process.management_url, token.trim(), &server.ca_pem)?;
    let eks = fleet.endorsement_keys()?;
    let t = Instant::now();
    let chunks: Vec<&[(String, Vec<u8>)]> = eks.chunks(eks.len().div_ceil(8).max(1)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                let admin = &admin;
                scope.spawn(move || -> anyhow::Result<()> {
                    for (id, ek) in chunk {
                        let ek_public = base64::engine::general_purpose::STANDARD.encode(ek);
                        admin
                            .ok(
                                "POST",
                                "/api/v1/attestation/approved-eks",
                                Some(json!({"ek_public": ek_public, "note": id})),
                            )
                            .with_context(|| format!("approving the EK of {id}"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| anyhow::anyhow!("a thread panicked"))?)
    })?;
    println!(
        "  approved {} endorsement keys in {:.1} s",
        eks.len(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
