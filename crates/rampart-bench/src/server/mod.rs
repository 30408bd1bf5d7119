//! `rampart-bench server`: the update server under device polling load.
//!
//! Each round starts the real `rampart server` (the `rampart` binary built beside this one) as a child process in
//! a temporary directory, with a fresh CA, server certificate, empty CRL and a database seeded
//! with `--devices` registered devices. This process then opens `--connections` mutual-TLS
//! keep-alive connections over loopback, each authenticated as a different seeded device, and
//! polls (`POST /device/v1/poll`, body `{}`, `If-None-Match` with the last ETag, as a device with
//! nothing new to install does) as fast as the server answers: one request in flight per
//! connection. After a warm-up it measures for `--duration` seconds: polls per second and the
//! client-side latency of each poll; then the server's peak RSS (VmHWM) and, after the server
//! stopped, the database bytes per device (growth over the empty, migrated database).
//!
//! `--api ddi` polls the hawkBit DDI API instead (`GET /DEFAULT/controller/v1/{id}` with each
//! device's `TargetToken`, over TLS without a client certificate, as SWUpdate polls); `--api
//! both` measures native and then DDI polls against the same server, database and connection
//! count in each round, so the two figures come from one run. DDI answers carry no ETag (DDI
//! clients send no If-None-Match), so compare them with native `--no-etag` figures.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use rampart_db::{Db, DeviceFacts};
use rampart_pki::CertificateAuthority;
use tokio_rustls::rustls::ClientConfig;

use crate::report::{machine, stats};
use load::generate_load;
use process::{ServerProcess, peak_rss_kib, server_log_tail};

mod load;
pub(crate) mod process;

/// The goal of issue 4 on a 2-core machine.
const GOAL_POLLS_PER_SEC: f64 = 10_000.0;
const GOAL_P99_MS: f64 = 50.0;
/// Devices per seeding transaction (one progress step).
const SEED_CHUNK: usize = 5_000;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ApiChoice {
    /// The native device API (mutual TLS).
    Native,
    /// The hawkBit DDI API (TargetToken).
    Ddi,
    /// Native, then DDI, against the same server in each round.
    Both,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

/// `rampart-bench server` options.
#[derive(clap::Args)]
pub struct ServerBenchArgs {
    /// Registered devices in the database.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Concurrent keep-alive connections, each a distinct device (one poll in flight each).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per round.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds of load before each measurement.
    #[arg(long, default_value_t = 2)]
    warmup: u64,
    /// Rounds per backend, each with a fresh database and server.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: BackendChoice,
    /// A PostgreSQL server URL whose user may create databases (one is created and dropped per
    /// round); needed for --backend postgres|both.
    #[arg(long, env = "RAMPART_TEST_POSTGRES_URL")]
    postgres_url: Option<String>,
    /// Worker threads of the load generator (it shares the machine with the server).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Never send If-None-Match: every poll gets the full 200 answer instead of a 304.
    #[arg(long)]
    no_etag: bool,
    /// Which device API to poll.
    #[arg(long, value_enum, default_value = "native")]
    api: ApiChoice,
}

/// The APIs `--api` asks for, in measuring order.
fn apis(a: &ApiChoice) -> &'static [ApiChoice] {
    match a {
        ApiChoice::Native => &[ApiChoice::Native],
        ApiChoice::Ddi => &[ApiChoice::Ddi],
        ApiChoice::Both => &[ApiChoice::Native, ApiChoice::Ddi],
    }
}

fn api_name(a: ApiChoice) -> &'static str {
    match a {
        ApiChoice::Native => "native",
        ApiChoice::Ddi => "ddi",
        ApiChoice::Both => "both",
    }
}

/// A figure of the summary: its name, how to read it from a round, its decimals.
type Figure = (&'static str, fn(&Round) -> f64, usize);

/// The figures of one round.
struct Round {
    seed_secs: f64,
    polls_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    rss_mib: f64,
    bytes_per_device: f64,
    server_cpu: f64,
    client_cpu: f64,
}

pub fn run(a: ServerBenchArgs) -> anyhow::Result<()> {
    if a.devices == 0 || a.connections == 0 || a.rounds == 0 || a.duration == 0 {
        bail!("--devices, --connections, --rounds and --duration must be at least 1");
    }
    if a.connections > a.devices {
        bail!(
            "--connections ({}) must not exceed --devices ({}): each connection is a distinct registered device",
            a.connections,
            a.devices
        );
    }
    let backends: &[BackendChoice] = match a.backend {
        BackendChoice::Sqlite => &[BackendChoice::Sqlite],
        BackendChoice::Postgres => &[BackendChoice::Postgres],
        BackendChoice::Both => &[BackendChoice::Sqlite, BackendChoice::Postgres],
    };
    let postgres_url = if backends.contains(&BackendChoice::Postgres) {
        Some(a.postgres_url.clone().context(
            "--backend postgres needs a PostgreSQL server: pass --postgres-url postgres://USER@HOST:PORT/DB (a user that may create databases) or set RAMPART_TEST_POSTGRES_URL (scripts/start-postgres.sh starts a throwaway one)",
        )?)
    } else {
        None
    };

    let work = tempfile::tempdir()?;
    let pki = Pki::create(work.path(), a.devices, a.connections)?;
    println!("machine: {}", machine());
    println!(
        "server: `rampart server` child process, mutual TLS (rustls, ring) on 127.0.0.1, {} registered devices",
        a.devices
    );
    if a.api != ApiChoice::Native {
        println!(
            "DDI load: the same number of keep-alive TLS connections without client certificates, each a distinct device with its own TargetToken, GET /DEFAULT/controller/v1/{{id}} (no ETag: DDI clients send none)"
        );
    }
    println!(
        "native load: this process, {} keep-alive mutual-TLS connections (each a distinct device), one poll in flight each, POST /device/v1/poll {{}}{}; {} client threads; {} s warm-up, {} s measured; {} round(s) per backend",
        a.connections,
        if a.no_etag {
            ""
        } else {
            " with If-None-Match (304 once the ETag is known)"
        },
        a.client_threads,
        a.warmup,
        a.duration,
        a.rounds
    );

    let mut results: Vec<(String, Vec<Round>)> = Vec::new();
    for &backend in backends {
        let backend_label = backend_name(backend);
        for r in 1..=a.rounds {
            let measured = run_round(&a, backend, postgres_url.as_deref(), &pki, work.path(), r)
                .with_context(|| format!("{backend_label} round {r}"))?;
            for (api, round) in measured {
                let name = if a.api == ApiChoice::Native {
                    backend_label.to_string()
                } else {
                    format!("{backend_label}/{}", api_name(api))
                };
                println!(
                    "{name} round {r}/{}: seeded in {:.1} s; {:.0} polls/s, p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms, server peak RSS {:.1} MiB, {:.0} DB bytes/device, server CPU {:.2} cores, client CPU {:.2} cores",
                    a.rounds,
                    round.seed_secs,
                    round.polls_per_sec,
                    round.p50_ms,
                    round.p99_ms,
                    round.max_ms,
                    round.rss_mib,
                    round.bytes_per_device,
                    round.server_cpu,
                    round.client_cpu
                );
                match results.iter_mut().find(|(n, _)| *n == name) {
                    Some((_, rounds)) => rounds.push(round),
                    None => results.push((name, vec![round])),
                }
            }
        }
    }

    println!();
    println!(
        "{:<16} {:<24} {:>12} {:>12} {:>12}",
        "backend", "figure", "median", "min", "max"
    );
    let figures: [Figure; 8] = [
        ("polls/s", |r| r.polls_per_sec, 0),
        ("p50 latency ms", |r| r.p50_ms, 2),
        ("p99 latency ms", |r| r.p99_ms, 2),
        ("max latency ms", |r| r.max_ms, 1),
        ("server peak RSS MiB", |r| r.rss_mib, 1),
        ("DB bytes/device", |r| r.bytes_per_device, 0),
        ("server CPU cores", |r| r.server_cpu, 2),
        ("client CPU cores", |r| r.client_cpu, 2),
    ];
    for (name, rounds) in &results {
        for (figure, get, decimals) in &figures {
            let values: Vec<f64> = rounds.iter().map(get).collect();
            let s = stats(&values);
            println!(
                "{name:<16} {figure:<24} {:>12.d$} {:>12.d$} {:>12.d$}",
                s.median,
                s.min,
                s.max,
                d = *decimals
            );
        }
    }
    println!();
    if a.api == ApiChoice::Both {
        for &backend in backends {
            let label = backend_name(backend);
            let median = |api: &str| {
                results
                    .iter()
                    .find(|(n, _)| *n == format!("{label}/{api}"))
                    .map(|(_, rounds)| {
                        stats(&rounds.iter().map(|r| r.polls_per_sec).collect::<Vec<_>>()).median
                    })
                    .unwrap_or(f64::NAN)
            };
            println!(
                "{label}: DDI polls/s are {:.2} x native polls/s (medians, same server and load)",
                median("ddi") / median("native")
            );
        }
    }
    for (name, rounds) in &results {
        let polls = stats(&rounds.iter().map(|r| r.polls_per_sec).collect::<Vec<_>>()).median;
        let p99 = stats(&rounds.iter().map(|r| r.p99_ms).collect::<Vec<_>>()).median;
        let met = polls >= GOAL_POLLS_PER_SEC && p99 < GOAL_P99_MS;
        println!(
            "goal ({name}, medians): at least {GOAL_POLLS_PER_SEC:.0} polls/s with p99 under {GOAL_P99_MS:.0} ms: {}",
            if met { "met" } else { "NOT met" }
        );
    }
    Ok(())
}

fn backend_name(b: BackendChoice) -> &'static str {
    match b {
        BackendChoice::Sqlite => "sqlite",
        BackendChoice::Postgres => "postgres",
        BackendChoice::Both => "both",
    }
}

/// The CA, the server's certificate and CRL on disk, and the client configurations of the
/// polling devices.
struct Pki {
    ca_path: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    crl_path: PathBuf,
    /// (device id, client configuration) per connection.
    clients: Vec<(String, Arc<ClientConfig>)>,
    /// TLS without a client certificate, for DDI connections.
    token_client: Arc<ClientConfig>,
    admin_token_file: PathBuf,
}

fn device_id(i: usize) -> String {
    format!("bench-{i:07}")
}

impl Pki {
    fn create(dir: &Path, devices: usize, connections: usize) -> anyhow::Result<Pki> {
        let ca = CertificateAuthority::generate("Rampart bench CA", 30)?;
        let server = ca.issue_server(&["localhost", "127.0.0.1"], 30)?;
        let now = std::time::SystemTime::now();
        let crl = ca.crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)?;
        let pki = Pki {
            ca_path: dir.join("ca.pem"),
            cert_path: dir.join("server.pem"),
            key_path: dir.join("server.key"),
            crl_path: dir.join("crl.pem"),
            clients: Vec::with_capacity(connections),
            token_client: rampart_pki::client_config_without_identity(ca.cert_pem())?,
            admin_token_file: dir.join("admin.token"),
        };
        std::fs::write(&pki.ca_path, ca.cert_pem())?;
        std::fs::write(&pki.cert_path, &server.cert_pem)?;
        rampart_pki::write_private_key_pem(&pki.key_path, &server.key_pem)?;
        std::fs::write(&pki.crl_path, crl)?;
        let mut pki = pki;
        for k in 0..connections {
            // Spread over the fleet: device k * devices / connections.
            let id = device_id(k * devices / connections);
            let issued = ca.issue_device(&id, 30)?;
            let config =
                rampart_pki::client_config(ca.cert_pem(), &issued.cert_pem, &issued.key_pem)?;
            pki.clients.push((id, config));
        }
        Ok(pki)
    }
}

/// What the seeded devices say about themselves (a few hardware types, versions, regions; one
/// tag and one attribute each).
fn seeded_facts(i: usize) -> DeviceFacts {
    let map = |v: serde_json::Value| v.as_object().cloned().unwrap_or_default();
    DeviceFacts {
        hardware_id: ["board-a", "board-b", "board-c", "board-d"][i % 4].into(),
        firmware_version: ["2.3.1", "2.4.0", "2.4.1"][i % 3].into(),
        security_version: 4,
        region: ["eu-west", "us-east", "ap-south"][i % 3].into(),
        slots: map(serde_json::json!({"a": "good", "b": "inactive"})),
        tags: vec![format!("line-{}", i % 50)],
        attributes: map(serde_json::json!({"site": format!("plant-{}", i % 200)})),
        boot_id: String::new(),
        slot_versions: None,
    }
}

/// A database for one round, dropped (PostgreSQL) with the work directory otherwise.
enum RoundDb {
    Sqlite(String),
    Postgres {
        admin: String,
        name: String,
        url: String,
    },
}

impl RoundDb {
    fn url(&self) -> &str {
        match self {
            RoundDb::Sqlite(url) => url,
            RoundDb::Postgres { url, .. } => url,
        }
    }
}

/// Runs `measure` on a database of its own: with `admin` (a PostgreSQL server URL whose user
/// may create databases) a new database `<prefix>_<pid>`, dropped afterwards, whose URL
/// `measure` gets; without, `None` (the server then makes a new SQLite file). A failed drop is
/// reported only when the measurement itself succeeded.
pub(crate) fn on_own_database<T>(
    rt: &tokio::runtime::Runtime,
    admin: Option<&str>,
    prefix: &str,
    measure: impl FnOnce(Option<&str>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let Some(admin) = admin else {
        return measure(None);
    };
    let name = format!("{prefix}_{}", std::process::id());
    rt.block_on(postgres_admin(
        admin,
        format!("DROP DATABASE IF EXISTS {name}"),
    ))?;
    rt.block_on(postgres_admin(admin, format!("CREATE DATABASE {name}")))?;
    let measured = measure(Some(&database_url(admin, &name)?));
    let dropped = rt.block_on(postgres_admin(
        admin,
        format!("DROP DATABASE IF EXISTS {name}"),
    ));
    match (measured, dropped) {
        (Ok(_), Err(e)) => Err(e),
        (measured, _) => measured,
    }
}

pub(crate) async fn postgres_admin(admin: &str, sql: String) -> anyhow::Result<()> {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(admin)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", redact(admin)))?;
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&pool)
        .await
        .with_context(|| format!("{sql} on {}", redact(admin)))?;
    pool.close().await;
    Ok(())
}

pub(crate) fn redact(url: &str) -> String {
    match url.split_once("://").and_then(|(s, rest)| {
        let (userinfo, host) = rest.split_once('@')?;
        let user = userinfo.split(':').next()?;
        Some(format!("{s}://{user}@{host}"))
    }) {
        Some(u) => u,
        None => url.to_string(),
    }
}

/// The URL of database `name` on the server of `admin` (query parameters kept).
pub(crate) fn database_url(admin: &str, name: &str) -> anyhow::Result<String> {
    let (path, query) = match admin.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (admin, None),
    };
    let scheme_end = path.find("://").map_or(0, |i| i + 3);
    let base = match path[scheme_end..].find('/') {
        Some(i) => &path[..scheme_end + i],
        None => path,
    };
    if base.len() <= scheme_end {
        bail!("not a PostgreSQL URL: {}", redact(admin));
    }
    Ok(match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    })
}

fn run_round(
    a: &ServerBenchArgs,
    backend: BackendChoice,
    postgres_url: Option<&str>,
    pki: &Pki,
    work: &Path,
    round: usize,
) -> anyhow::Result<Vec<(ApiChoice, Round)>> {
    let name = backend_name(backend);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.client_threads.max(1))
        .enable_all()
        .build()?;
    let db = match backend {
        BackendChoice::Postgres => {
            let admin = postgres_url.context("no PostgreSQL URL")?.to_string();
            let db_name = format!("rampart_bench_{}_{round}", std::process::id());
            rt.block_on(postgres_admin(
                &admin,
                format!("DROP DATABASE IF EXISTS {db_name}"),
            ))?;
            rt.block_on(postgres_admin(&admin, format!("CREATE DATABASE {db_name}")))?;
            RoundDb::Postgres {
                url: database_url(&admin, &db_name)?,
                admin,
                name: db_name,
            }
        }
        _ => RoundDb::Sqlite(format!(
            "sqlite://{}",
            work.join(format!("{name}-round-{round}.db")).display()
        )),
    };
    let result = round_on(a, &rt, &db, pki, work, name, round);
    if let RoundDb::Postgres {
        admin, name: db, ..
    } = &db
    {
        let dropped = rt.block_on(postgres_admin(
            admin,
            format!("DROP DATABASE IF EXISTS {db}"),
        ));
        if let (Ok(_), Err(e)) = (&result, dropped) {
            return Err(e);
        }
    }
    result
}

fn round_on(
    a: &ServerBenchArgs,
    rt: &tokio::runtime::Runtime,
    db: &RoundDb,
    pki: &Pki,
    work: &Path,
    name: &str,
    round: usize,
) -> anyhow::Result<Vec<(ApiChoice, Round)>> {
    // Seed: the empty, migrated database is the baseline of the bytes per device.
    let seed_start = Instant::now();
    let baseline = rt.block_on(async {
        let conn = Db::connect(db.url()).await?;
        let baseline = conn.storage_bytes().await?;
        let bar = ProgressBar::new(a.devices as u64);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} devices ({per_sec}, {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(format!("{name} round {round}: seeding"));
        let now = rampart_cli::shared::now_unix();
        let mut start = 0;
        while start < a.devices {
            let end = (start + SEED_CHUNK).min(a.devices);
            let chunk: Vec<(String, DeviceFacts)> = (start..end)
                .map(|i| (device_id(i), seeded_facts(i)))
                .collect();
            conn.insert_devices(&chunk, now).await?;
            bar.inc((end - start) as u64);
            start = end;
        }
        bar.finish_and_clear();
        let count = conn.device_count().await?;
        if count != a.devices as i64 {
            bail!("seeded {count} devices, expected {}", a.devices);
        }
        conn.close().await;
        Ok::<_, anyhow::Error>(baseline)
    })?;
    let seed_secs = seed_start.elapsed().as_secs_f64();

    let log = work.join(format!("server-{name}-{round}.log"));
    let with_ddi = a.api != ApiChoice::Native;
    if with_ddi {
        admin_token(db.url(), &pki.admin_token_file)?;
    }
    let mut server = ServerProcess::start(db.url(), pki, &log, with_ddi)?;
    let mut loads = Vec::new();
    for &api in apis(&a.api) {
        let load = match api {
            ApiChoice::Ddi => rt.block_on(async {
                let tokens = ddi_tokens(pki, &server).await?;
                generate_load(a, pki, &Target::Ddi(server.ddi_addr, tokens), server.pid()).await
            }),
            _ => rt.block_on(generate_load(
                a,
                pki,
                &Target::Native(server.addr),
                server.pid(),
            )),
        };
        match load {
            Ok(load) => loads.push((api, load)),
            Err(e) => {
                let _ = server.stop();
                return Err(e.context(server_log_tail(&log)));
            }
        }
    }
    let rss = peak_rss_kib(server.pid());
    let stopped = server.stop();
    stopped.with_context(|| server_log_tail(&log))?;
    let rss_kib = rss.context("reading the server's VmHWM")?;

    let after = rt.block_on(async {
        let conn = Db::connect(db.url()).await?;
        let count = conn.device_count().await?;
        let bytes = conn.storage_bytes().await?;
        conn.close().await;
        Ok::<_, anyhow::Error>((count, bytes))
    })?;
    if after.0 != a.devices as i64 {
        bail!(
            "the server changed the device count to {} (expected {}): polling devices were not recognised as registered",
            after.0,
            a.devices
        );
    }
    Ok(loads
        .into_iter()
        .map(|(api, load)| {
            (
                api,
                Round {
                    seed_secs,
                    polls_per_sec: load.polls_per_sec,
                    p50_ms: load.p50_ms,
                    p99_ms: load.p99_ms,
                    max_ms: load.max_ms,
                    rss_mib: rss_kib as f64 / 1024.0,
                    bytes_per_device: after.1.saturating_sub(baseline) as f64 / a.devices as f64,
                    server_cpu: load.server_cpu,
                    client_cpu: load.client_cpu,
                },
            )
        })
        .collect())
}

/// Writes an admin token for the management API into `file` (`rampart token create`, straight
/// into the database before the server starts).
fn admin_token(db_url: &str, file: &Path) -> anyhow::Result<()> {
    let exe = rampart_cli::shared::rampart_binary()?;
    let out = Command::new(exe)
        .args([
            "token", "create", "--db", db_url, "--role", "admin", "--name", "bench",
        ])
        .stdin(Stdio::null())
        .output()
        .context("running `rampart token create`")?;
    if !out.status.success() {
        bail!(
            "`rampart token create` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::write(file, String::from_utf8_lossy(&out.stdout).trim())?;
    Ok(())
}

/// Creates tenant DEFAULT and a TargetToken per polling device through the management API;
/// returns `Authorization` values in connection order.
async fn ddi_tokens(pki: &Pki, server: &ServerProcess) -> anyhow::Result<Vec<String>> {
    let token = std::fs::read_to_string(&pki.admin_token_file)?;
    let ca = pem::parse(std::fs::read(&pki.ca_path)?)?;
    let base = format!("https://{}", server.management_addr);
    let ids: Vec<String> = pki.clients.iter().map(|(id, _)| id.clone()).collect();
    tokio::task::spawn_blocking(move || {
        let api = rampart_cli::shared::api_client::ApiClient::new(&base, &token, ca.contents());
        api.ok(
            "POST",
            "/api/v1/ddi/tenants",
            Some(serde_json::json!({"name": "DEFAULT"})),
        )?;
        ids.iter()
            .map(|id| {
                // The devices were registered as certificate devices: the token is bound to
                // them explicitly (decision 0021), so both APIs poll the same rows.
                let r = api.ok(
                    "POST",
                    &format!("/api/v1/ddi/tenants/DEFAULT/devices/{id}/token"),
                    Some(serde_json::json!({"bind_certificate_device": true})),
                )?;
                Ok(format!(
                    "TargetToken {}",
                    r["target_token"].as_str().context("no target token")?
                ))
            })
            .collect()
    })
    .await?
}

/// Where the load goes.
enum Target {
    Native(std::net::SocketAddr),
    /// The DDI listener, and each connection's `Authorization` value.
    Ddi(std::net::SocketAddr, Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_server_and_parameters() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            database_url("postgres://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            database_url("postgres://u@h", "x").unwrap(),
            "postgres://u@h/x"
        );
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u@h/db");
    }
}
