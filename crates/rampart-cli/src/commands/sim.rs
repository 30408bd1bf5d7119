//! `rampart sim`: a fleet of virtual devices (the agent's verification and boot flow, in-memory
//! slots, injected faults) against a running update server, with a status line every few
//! seconds and a summary at the end. See the `rampart_sim` crate for what is real and what is
//! simulated.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use rampart_sim::{
    Compromise, FaultRule, Fleet, FleetSpec, GameDay, InitialFirmware, LogTrust, Stats, Weights,
    percentile,
};

#[derive(Args)]
pub struct SimArgs {
    /// The server's device API, https://HOST:PORT.
    #[arg(long)]
    server: String,
    /// CA certificate(s) the server's certificate chains to (PEM).
    #[arg(long)]
    server_ca: PathBuf,
    /// Manufacturer CA directory (`rampart ca init`: ca.pem, ca.key) that issues the devices'
    /// certificates.
    #[arg(long)]
    ca: PathBuf,
    /// The director root devices pin (`rampart director init` writes DIR/1.root.json).
    #[arg(long)]
    director_root: PathBuf,
    /// The image repository directory: devices pin its metadata/1.root.json, and
    /// --initial-target is looked up in it.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// The image repository root devices pin (default: REPO/metadata/1.root.json).
    #[arg(long)]
    image_root: Option<PathBuf>,
    /// Provision the devices with this transparency-log witness policy (needs --log-key).
    #[arg(long, requires = "log_key")]
    log_policy: Option<PathBuf>,
    /// The vendor's release verifier key, or a file holding it (with --log-policy).
    #[arg(long, requires = "log_policy")]
    log_key: Option<String>,
    /// Number of devices.
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Hardware ids and their shares, e.g. board-a=70,board-b=30.
    #[arg(long, default_value = "board-a")]
    models: String,
    /// Regions and their shares, e.g. eu=50,us=50.
    #[arg(long)]
    regions: Option<String>,
    /// Tags and the percentage of devices carrying each, e.g. canary=5,beta=20.
    #[arg(long)]
    tags: Option<String>,
    /// Device ids are PREFIX-NNNNN.
    #[arg(long, default_value = "sim")]
    id_prefix: String,
    /// The factory firmware every device starts on, committed in slot A. With --repo and a
    /// target the repository lists, its version, security version, hash and length are used.
    #[arg(long)]
    initial_target: Option<String>,
    /// Version of the factory firmware (when not taken from the repository).
    #[arg(long, default_value = "1.0.0")]
    initial_version: String,
    /// Security version of the factory firmware (when not taken from the repository).
    #[arg(long, default_value_t = 1)]
    initial_security_version: u64,
    /// Health-check failures: RELEASE[:HARDWARE]=PROBABILITY, e.g. fw-3.0.0:board-a=0.9
    /// (RELEASE matches the target or version; repeat for several).
    #[arg(long = "fail", value_name = "RULE")]
    fail: Vec<String>,
    /// Images that never come up (the bootloader falls back): same form as --fail.
    #[arg(long = "no-boot", value_name = "RULE")]
    no_boot: Vec<String>,
    /// Probability that a device loses power once during each release's install and boot flow.
    #[arg(long, default_value = "0")]
    crash_rate: String,
    /// Share of devices on a slow link.
    #[arg(long, default_value = "0")]
    slow_rate: String,
    /// Download rate of slow links, bytes per second.
    #[arg(long, default_value_t = 64 * 1024)]
    slow_bytes_per_sec: u64,
    /// Share of devices that go offline once, for --offline-secs, within the first
    /// --offline-secs of the run.
    #[arg(long, default_value = "0")]
    offline_rate: String,
    /// How long offline devices stay offline, seconds.
    #[arg(long, default_value_t = 60)]
    offline_secs: u64,
    /// Share of devices on a low battery and off mains (they defer `soft` updates).
    #[arg(long, default_value = "0")]
    low_battery_rate: String,
    /// Low-battery devices are plugged in after this many seconds.
    #[arg(long)]
    recharge_after_secs: Option<u64>,
    /// Poll every SECS (with jitter) instead of the interval the server asks for.
    #[arg(long, value_name = "SECS")]
    poll_interval: Option<f64>,
    /// Devices first power on at random times within this many seconds.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    boot_spread: f64,
    /// How long a reboot takes, seconds.
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    reboot_secs: f64,
    /// Longest backoff after failures, seconds.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    max_backoff: f64,
    /// Stop after this many seconds (default: run until interrupted, or --until-version).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Stop once every device has settled on this firmware version (committed, every report
    /// stored by the server, the version told to the server in a poll).
    #[arg(long, value_name = "VERSION")]
    until_version: Option<String>,
    /// Worker threads serving device events.
    #[arg(long, default_value_t = 32)]
    workers: usize,
    /// Seed of every random choice (fleet make-up, faults, jitter).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Directory for the devices' state directories (new or empty; default: a temporary
    /// directory, removed at the end). For thousands of devices use a tmpfs (/dev/shm/NAME):
    /// the agent's code fsyncs every metadata file it keeps.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds between status lines.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    status_every: f64,
    /// Give every device a software TPM: it measures its boots and answers the server's
    /// attestation requests. Their endorsement keys carry no certificate: approve them
    /// (--endorsement-keys writes them).
    #[arg(long)]
    attest: bool,
    /// With --attest: write each device's endorsement key (its TPMT_PUBLIC) to DIR/DEVICE.ek,
    /// for `rampart attest approve-ek DIR/DEVICE.ek --note DEVICE`.
    #[arg(long, requires = "attest", value_name = "DIR")]
    endorsement_keys: Option<PathBuf>,
    /// Game day: compromise COUNT devices SECS into the run (default 0), e.g.
    /// tampered-slot=5@60. KIND: tampered-slot and failing-attestation (need --attest),
    /// forged-report, stolen-key. Repeat for several; the summary gives each compromised
    /// device's time to containment (the signed quarantine reached it) and to recovery (a
    /// re-image of both slots), and the healthy devices told they are quarantined.
    #[arg(long = "compromise", value_name = "KIND=COUNT[@SECS]")]
    compromise: Vec<String>,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn secs(what: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|_| s.is_finite())
        .with_context(|| format!("--{what} {s} is not a number of seconds"))
}

fn probability(what: &str, s: &str) -> anyhow::Result<f64> {
    rampart_sim::parse_probability(s.trim()).map_err(|e| anyhow::anyhow!("--{what}: {e}"))
}

/// The factory firmware: from the repository when it lists the target, else as given (a
/// synthetic image, identified by a hash of its name).
fn initial_firmware(a: &SimArgs) -> anyhow::Result<InitialFirmware> {
    let target = a
        .initial_target
        .clone()
        .unwrap_or_else(|| format!("factory/{}/fw.img", a.initial_version));
    if let Some(repo) = &a.repo {
        let repository = rampart_repo::Repository::open(repo)
            .with_context(|| format!("opening the image repository {}", repo.display()))?;
        let listed = repository
            .targets_role("targets")
            .context("reading the repository's targets metadata")?
            .targets
            .get(&target)
            .cloned();
        if let Some(info) = listed {
            let release = rampart_core::release::ReleaseInfo::from_custom(info.custom.as_ref())
                .with_context(|| {
                    format!("{target} in the repository carries no release information")
                })?;
            let sha256 = info
                .hashes
                .get("sha256")
                .with_context(|| format!("{target} has no sha256 in the repository"))?
                .to_ascii_lowercase();
            return Ok(InitialFirmware {
                target,
                version: release.version,
                security_version: release.security_version,
                sha256,
                length: info.length,
            });
        }
        if a.initial_target.is_some() {
            bail!(
                "the repository {} lists no target {target:?} in its top-level targets role; give a listed target, or leave --repo out to use a factory image not in the repository",
                repo.display()
            );
        }
    }
    let sha256 = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        format!("rampart-sim factory image {target}").as_bytes(),
    ));
    Ok(InitialFirmware {
        target,
        version: a.initial_version.clone(),
        security_version: a.initial_security_version,
        sha256,
        length: 1 << 20,
    })
}

fn spec(a: &SimArgs) -> anyhow::Result<FleetSpec> {
    let image_root = match (&a.image_root, &a.repo) {
        (Some(p), _) => read(p)?,
        (None, Some(repo)) => read(&repo.join("metadata/1.root.json"))?,
        (None, None) => bail!(
            "give --repo DIR (the image repository) or --image-root FILE: devices must pin the image repository's root"
        ),
    };
    let mut spec = FleetSpec::new(
        &a.server,
        read(&a.server_ca)?,
        image_root,
        read(&a.director_root)?,
        initial_firmware(a)?,
    );
    if let (Some(policy), Some(key)) = (&a.log_policy, &a.log_key) {
        let key = if Path::new(key).is_file() {
            std::fs::read_to_string(key).with_context(|| format!("reading {key}"))?
        } else {
            key.clone()
        };
        spec.log = Some(LogTrust {
            policy: String::from_utf8(read(policy)?)
                .with_context(|| format!("{} is not text", policy.display()))?,
            release_key: key.trim().to_owned(),
        });
    }
    spec.devices = a.devices;
    spec.id_prefix = a.id_prefix.clone();
    spec.models = a.models.parse::<Weights>().context("--models")?;
    if let Some(r) = &a.regions {
        spec.regions = r.parse::<Weights>().context("--regions")?;
    }
    if let Some(t) = &a.tags {
        spec.tags = rampart_sim::parse_tags(t).context("--tags")?;
    }
    for (flag, rules, into) in [
        ("fail", &a.fail, &mut spec.faults.health),
        ("no-boot", &a.no_boot, &mut spec.faults.no_boot),
    ] {
        for r in rules {
            into.push(
                r.parse::<FaultRule>()
                    .with_context(|| format!("--{flag}"))?,
            );
        }
    }
    let f = &mut spec.faults;
    f.crash_rate = probability("crash-rate", &a.crash_rate)?;
    f.slow_rate = probability("slow-rate", &a.slow_rate)?;
    f.slow_bytes_per_sec = a.slow_bytes_per_sec;
    f.offline_rate = probability("offline-rate", &a.offline_rate)?;
    f.offline_for = Duration::from_secs(a.offline_secs);
    f.low_battery_rate = probability("low-battery-rate", &a.low_battery_rate)?;
    f.recharge_after = a.recharge_after_secs.map(Duration::from_secs);
    let t = &mut spec.timing;
    t.poll_interval = a
        .poll_interval
        .map(|s| secs("poll-interval", s))
        .transpose()?;
    t.boot_spread = secs("boot-spread", a.boot_spread)?;
    t.reboot_delay = secs("reboot-secs", a.reboot_secs)?;
    t.max_backoff = secs("max-backoff", a.max_backoff)?;
    spec.attest = a.attest;
    for c in &a.compromise {
        spec.compromises
            .push(c.parse::<Compromise>().context("--compromise")?);
    }
    spec.workers = a.workers;
    spec.seed = a.seed;
    spec.state_root = a.state_dir.clone();
    spec.validate()?;
    Ok(spec)
}

/// Peak resident memory and CPU seconds (user + system) of this process, from /proc.
fn usage() -> (Option<u64>, Option<f64>) {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    // Fields 14 and 15 of /proc/self/stat (after the parenthesised name) are utime and stime
    // in clock ticks (100 per second on Linux).
    let cpu = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        });
    (hwm, cpu)
}

pub fn run(a: SimArgs) -> anyhow::Result<()> {
    let spec = spec(&a)?;
    let ca_dir = &a.ca;
    let ca = rampart_pki::CertificateAuthority::load(
        &String::from_utf8(read(&ca_dir.join("ca.pem"))?).context("ca.pem is not text")?,
        &String::from_utf8(read(&ca_dir.join("ca.key"))?).context("ca.key is not text")?,
    )
    .with_context(|| format!("loading the manufacturer CA from {}", ca_dir.display()))?;
    let devices = spec.devices;
    let initial = spec.initial.version.clone();
    let began = Instant::now();
    let game_day = !spec.compromises.is_empty();
    let mut fleet = Fleet::build(spec, &ca)?;
    let built = began.elapsed();
    if let Some(path) = &a.endorsement_keys {
        write_endorsement_keys(&mut fleet, path)?;
    }
    let mut per_model = std::collections::BTreeMap::<String, usize>::new();
    for d in fleet.devices() {
        *per_model.entry(d.hardware_id).or_default() += 1;
    }
    println!(
        "built {devices} devices in {:.1} s ({:.0} certificates/s), state in {}; hardware {}; all on {initial}",
        built.as_secs_f64(),
        devices as f64 / built.as_secs_f64().max(1e-6),
        fleet.state_root().display(),
        per_model
            .iter()
            .map(|(m, n)| format!("{m}:{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    );

    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let flag = Arc::clone(&interrupted);
        std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            if rt.block_on(tokio::signal::ctrl_c()).is_ok() {
                flag.store(true, Ordering::Relaxed);
            }
        });
    }

    let handle = fleet.start();
    let started = Instant::now();
    let duration = a.duration.map(|s| secs("duration", s)).transpose()?;
    let every = secs("status-every", a.status_every)?.max(Duration::from_millis(100));
    let mut next_status = started + every;
    let mut first_download: Option<Duration> = None;
    let mut reached: Option<Duration> = None;
    let mut last_error: Option<String> = None;
    let (stats, day): (Stats, Option<GameDay>) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = Instant::now();
        let s = handle.stats();
        if first_download.is_none() && s.downloads > 0 {
            first_download = Some(s.elapsed);
        }
        // Done when the server knows it too: every result stored, every device's version told.
        let done = a
            .until_version
            .as_deref()
            .is_some_and(|v| s.on_version(v) == devices && s.settled == devices);
        if done && reached.is_none() {
            reached = Some(s.elapsed);
        }
        if now >= next_status || done {
            println!("{s}");
            if s.last_error != last_error {
                if let Some(e) = &s.last_error {
                    println!("        latest error: {e}");
                }
                last_error = s.last_error.clone();
            }
            next_status = now + every;
        }
        if done
            || interrupted.load(Ordering::Relaxed)
            || duration.is_some_and(|d| started.elapsed() >= d)
        {
            let day = game_day.then(|| handle.game_day());
            break (handle.stop(), day);
        }
    };
    let (hwm, cpu) = usage();
    println!("---- summary ----");
    println!("{stats}");
    if let Some(v) = &a.until_version {
        match (reached, first_download) {
            (Some(t), Some(d)) => println!(
                "every device on {v} after {:.1} s ({:.1} s after the first download started)",
                t.as_secs_f64(),
                (t - d.min(t)).as_secs_f64()
            ),
            (Some(t), None) => println!("every device on {v} after {:.1} s", t.as_secs_f64()),
            (None, _) => println!(
                "not every device reached {v}: {} of {devices}",
                stats.on_version(v)
            ),
        }
    }
    println!(
        "devices {devices}, wall {:.1} s (+{:.1} s to build), {} events, {} sessions, {} polls, {:.1} MiB downloaded",
        stats.elapsed.as_secs_f64(),
        built.as_secs_f64(),
        stats.events,
        stats.sessions,
        stats.polls,
        stats.bytes as f64 / 1048576.0
    );
    println!(
        "installed {} · rolled back {} ({} bootloader fallbacks) · verification failures {} · install failures {} · downloaded (download_only) {} · deferred {} · power cuts {} · poll/connect errors {} · interrupted downloads {} · reports stored {} (failed attempts {})",
        stats.installs,
        stats.rollbacks,
        stats.fallbacks,
        stats.verification_failures,
        stats.install_failures,
        stats.downloaded,
        stats.deferred,
        stats.crashes,
        stats.errors,
        stats.download_errors,
        stats.reports_sent,
        stats.report_errors
    );
    if let (Some(kib), Some(cpu)) = (hwm, cpu) {
        println!(
            "sim process: peak RSS {:.1} MiB, CPU {:.1} s ({:.0} % of one core over the run)",
            kib as f64 / 1024.0,
            cpu,
            100.0 * cpu / (built + stats.elapsed).as_secs_f64().max(1e-6)
        );
    }
    if let Some(day) = &day {
        print_game_day(day);
    }
    if stats.bricked > 0 {
        bail!(
            "{} device(s) ended with no bootable slot: the update flow must never do that",
            stats.bricked
        );
    }
    if let Some(v) = &a.until_version
        && reached.is_none()
    {
        bail!(
            "{} of {devices} devices reached {v} and settled",
            stats.on_version(v).min(stats.settled)
        );
    }
    Ok(())
}

/// Writes each device's endorsement key to `dir/DEVICE.ek`.
fn write_endorsement_keys(fleet: &mut Fleet, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let keys = fleet.endorsement_keys()?;
    for (device, ek) in &keys {
        let path = dir.join(format!("{device}.ek"));
        std::fs::write(&path, ek).with_context(|| format!("writing {}", path.display()))?;
    }
    println!(
        "{} endorsement keys written to {}/DEVICE.ek: approve them (rampart attest approve-ek)",
        keys.len(),
        dir.display()
    );
    Ok(())
}

/// The game day's summary: per measure, how many devices and the p50/p95 times.
fn print_game_day(day: &GameDay) {
    let total = day.compromised.len();
    let line = |what: &str, n: usize, times: &[Duration]| {
        let p = |q| {
            percentile(times, q).map_or("-".to_owned(), |d| format!("{:.1} s", d.as_secs_f64()))
        };
        println!(
            "  {what}: {n}/{total} (p50 {}, p95 {}, max {})",
            p(50.0),
            p(95.0),
            p(100.0)
        );
    };
    println!("---- game day ----");
    println!("  compromised: {}/{total}", day.applied());
    line(
        "contained (signed quarantine received)",
        day.contained(),
        &day.times_to_contain(),
    );
    line(
        "recovered (re-imaged on both slots)",
        day.recovered(),
        &day.times_to_recover(),
    );
    println!(
        "  healthy devices told they are quarantined: {}{}",
        day.healthy_quarantined.len(),
        day.healthy_quarantined
            .iter()
            .take(10)
            .map(|(d, _)| format!(" {d}"))
            .collect::<String>()
    );
    for r in day.compromised.iter().filter(|r| r.recovered.is_none()) {
        println!(
            "  not recovered: {} ({}) compromised {} contained {}",
            r.device,
            r.kind,
            r.compromised
                .map_or("not yet".into(), |d| format!("at {:.1} s", d.as_secs_f64())),
            r.contained
                .map_or("no".into(), |d| format!("at {:.1} s", d.as_secs_f64()))
        );
    }
}
