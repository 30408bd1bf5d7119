//! The web console's fleet page at fleet scale (issue 18): `rampart server` (SQLite, or
//! PostgreSQL) with N devices seeded into its database, a console session, and the fleet page
//! requested with each kind of filter; the time of each answer, p50/p95/max per kind.
//!
//! The time is measured in this process around one request on a kept-alive TLS connection over
//! loopback, so it is the server's time plus the loopback round trip and the page's transfer
//! (about 40 KiB): an upper bound of the server time the issue asks for.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::report::{machine, stats};

#[derive(clap::Args)]
pub struct ConsoleFleetArgs {
    /// Devices in the fleet.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Requests of each kind of page (the first of each is a warm-up, not counted).
    #[arg(long, default_value_t = 41)]
    requests: usize,
    /// Directory to build in (new or empty; default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// A PostgreSQL server URL whose user may create databases: the server then runs on a new
    /// database there (dropped at the end) instead of SQLite.
    #[arg(long)]
    postgres_url: Option<String>,
}

const VERSIONS: usize = 20;
const HARDWARE: [&str; 5] = ["board-a", "board-b", "board-c", "gateway-x1", "sensor-s2"];
const REGIONS: [&str; 8] = [
    "eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-east", "sa-east", "af-south",
];
/// Every this many devices one is revoked, and (offset by half) one is quarantined.
const STATUS_EVERY: usize = 500;

fn device_id(d: usize) -> String {
    format!("fleet-dev-{d:06}")
}

/// The pages measured: (what, path and query).
fn pages(devices: usize) -> Vec<(&'static str, String)> {
    let near_end = device_id(devices.saturating_sub(60));
    // A substring of 100 ids from the middle of the fleet (`dev-0421` at 100,000 devices).
    let middle = device_id(devices / 2);
    let search = &middle["fleet-".len()..middle.len() - 2];
    vec![
        ("no filter, first page", "/console/fleet".into()),
        ("version filter", "/console/fleet?version=7.0.0".into()),
        (
            "hardware + region filters",
            "/console/fleet?hardware=board-c&region=ap-south".into(),
        ),
        (
            "status quarantined",
            "/console/fleet?status=quarantined".into(),
        ),
        ("status active", "/console/fleet?status=active".into()),
        (
            "id search (substring)",
            format!("/console/fleet?q={search}"),
        ),
        (
            "id search, no match",
            "/console/fleet?q=no-such-device".into(),
        ),
        (
            "last page (keyset)",
            format!("/console/fleet?after={near_end}"),
        ),
    ]
}

pub fn run(a: ConsoleFleetArgs) -> anyhow::Result<()> {
    use crate::server::on_own_database;
    use rampart_cli::commands::demo::setup::prepare_dir;

    if a.requests < 2 {
        bail!("--requests must be at least 2 (the first of each kind is a warm-up)");
    }
    let backend = if a.postgres_url.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "rampart-bench console-fleet: {} devices, {backend}, {} requests per page kind; {}",
        a.devices,
        a.requests,
        machine()
    );
    let dir = prepare_dir(a.dir.clone())?;
    let (repo_dir, _tlog, _) = crate::campaign::demo_repository(&dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    on_own_database(
        &rt,
        a.postgres_url.as_deref(),
        "rampart_bench_console",
        |db_url| measure(&a, &rt, &dir, &repo_dir, db_url),
    )
}

fn measure(
    a: &ConsoleFleetArgs,
    rt: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    repo_dir: &std::path::Path,
    db_url: Option<&str>,
) -> anyhow::Result<()> {
    use rampart_cli::commands::demo::fleet::operator;
    use rampart_cli::commands::demo::server::start_server_on;
    use rampart_cli::commands::demo::setup::PASSPHRASE;

    let server = start_server_on(&dir.join("server"), repo_dir, PASSPHRASE, &[], db_url)?;
    let now = rampart_cli::shared::now_unix();
    let (token, api) = operator(&server, "console-bench")?;

    // The fleet, seeded straight into the server's database (as the other fleet benchmarks do),
    // spread over versions, hardware and regions; some revoked, some quarantined (through the API).
    let started = Instant::now();
    rt.block_on(async {
        let db = rampart_db::Db::connect(&server.db).await?;
        let mut start = 0;
        while start < a.devices {
            let end = (start + 5_000).min(a.devices);
            let chunk: Vec<(String, rampart_db::DeviceFacts)> = (start..end)
                .map(|d| {
                    (
                        device_id(d),
                        rampart_db::DeviceFacts {
                            hardware_id: HARDWARE[d % HARDWARE.len()].into(),
                            firmware_version: format!("{}.0.0", d % VERSIONS),
                            security_version: (d % VERSIONS) as u64,
                            region: REGIONS[(d / 7) % REGIONS.len()].into(),
                            tags: vec![format!("line-{}", d % 10)],
                            ..Default::default()
                        },
                    )
                })
                .collect();
            db.insert_devices(&chunk, now).await?;
            start = end;
        }
        for d in (0..a.devices).step_by(STATUS_EVERY) {
            db.set_revoked(&device_id(d), true).await?;
        }
        db.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    let mut quarantined = 0;
    for d in (STATUS_EVERY / 2..a.devices).step_by(STATUS_EVERY) {
        api.ok(
            "POST",
            &format!("/api/v1/devices/{}/quarantine", device_id(d)),
            Some(serde_json::json!({"reason": "console benchmark"})),
        )?;
        quarantined += 1;
    }
    println!(
        "  seeded {} devices ({} revoked, {quarantined} quarantined) in {:.1} s",
        a.devices,
        a.devices.div_ceil(STATUS_EVERY),
        started.elapsed().as_secs_f64()
    );

    let ca_pem = std::fs::read(&server.ca_pem)?;
    let ca = pem::parse(&ca_pem).context("the demo CA is not PEM")?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(rampart_cli::shared::api_client::tls_trusting(ca.contents()))
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let base = server.process.management_url.trim_end_matches('/');
    let login = agent
        .post(&format!("{base}/console/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .send(format!("token={token}").as_bytes())
        .context("logging in to the console")?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "the console login answered {} without a session cookie",
                login.status()
            )
        })?;

    println!(
        "  {:<28} {:>9} {:>9} {:>9} {:>9}  (ms, one request on a kept-alive connection)",
        "page", "p50", "p95", "max", "rows"
    );
    for (what, path) in pages(a.devices) {
        let url = format!("{base}{path}");
        let mut samples = Vec::with_capacity(a.requests);
        let mut rows = 0;
        for round in 0..a.requests {
            let started = Instant::now();
            let mut answer = agent
                .get(&url)
                .header("cookie", &cookie)
                .call()
                .with_context(|| format!("GET {url}"))?;
            let body = answer
                .body_mut()
                .with_config()
                .limit(16 * 1024 * 1024)
                .read_to_string()?;
            let elapsed = started.elapsed().as_secs_f64() * 1e3;
            if answer.status() != 200 {
                bail!("GET {url} answered {}: {body}", answer.status());
            }
            rows = body.matches("<tr data-device=").count();
            if round > 0 {
                samples.push(elapsed);
            }
        }
        if rows == 0 && !what.contains("no match") {
            bail!("GET {url} listed no device: the seeded fleet should match it");
        }
        let mut sorted = samples.clone();
        sorted.sort_by(|a, b| a.total_cmp(b));
        let p95 = sorted[((sorted.len() - 1) as f64 * 0.95).round() as usize];
        let s = stats(&samples);
        println!(
            "  {what:<28} {:>9.1} {:>9.1} {:>9.1} {:>9}",
            s.median, p95, s.max, rows
        );
    }
    Ok(())
}
