//! `rampart bench`: the measurements recorded in docs/benchmarks.md. Each prints the median and
//! spread of repeated rounds and, where a peer exists, the peer measured in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_repo::{ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners};
use rampart_tuf_client::{HttpFetcher, Limits, Updater, UpdaterConfig};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Signature verifications per second for each scheme.
    Verify {
        /// Measurement rounds (each about 0.3 s per scheme).
        #[arg(long, default_value_t = 11)]
        rounds: usize,
        /// The pyca/cryptography peer script (what python-tuf verifies with).
        #[arg(long, default_value = "scripts/bench_verify_peer.py")]
        peer_script: PathBuf,
        #[arg(long)]
        no_peer: bool,
    },
    /// TUF client refresh + one target download from a 10,000-target repository with one
    /// delegation, served over loopback HTTP; python-tuf ngclient measured in the same run.
    TufClient {
        #[arg(long, default_value_t = 10_000)]
        targets: usize,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Size of the downloaded target in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        target_size: usize,
        /// The python-tuf driver script; skipped only with --no-peer.
        #[arg(long, default_value = "scripts/bench_ngclient.py")]
        peer_script: PathBuf,
        #[arg(long)]
        no_peer: bool,
    },
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Verify {
            rounds,
            peer_script,
            no_peer,
        } => bench_verify(rounds, (!no_peer).then_some(peer_script)),
        BenchCommand::TufClient {
            targets,
            iterations,
            target_size,
            peer_script,
            no_peer,
        } => bench_tuf_client(
            targets,
            iterations,
            target_size,
            (!no_peer).then_some(peer_script),
        ),
    }
}

/// Median, 10th and 90th percentile, min and max of samples.
pub struct Stats {
    pub median: f64,
    pub p10: f64,
    pub p90: f64,
    pub min: f64,
    pub max: f64,
}

pub fn stats(samples: &[f64]) -> Stats {
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p10: at(0.1),
        p90: at(0.9),
        min: s[0],
        max: s[s.len() - 1],
    }
}

/// Runs a Python peer benchmark script and parses the JSON line it prints last.
fn run_peer(script: &Path, args: &[String]) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running python3 {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "peer benchmark {} failed (install its packages with `pip install -r scripts/requirements-bench.txt`):\n{}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or(""))
        .with_context(|| format!("peer output is not JSON: {text}"))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores")
}

fn bench_verify(rounds: usize, peer: Option<PathBuf>) -> anyhow::Result<()> {
    println!("machine: {}", machine());
    println!(
        "message: 1024 bytes (about a small metadata body); {rounds} rounds of ~0.3 s per scheme"
    );
    println!(
        "{:<22} {:>14} {:>14} {:>14}",
        "scheme", "median ver/s", "min ver/s", "max ver/s"
    );
    let message = vec![0x5au8; 1024];
    for scheme in [Scheme::Ed25519, Scheme::EcdsaP256Sha256, Scheme::MlDsa65] {
        let (signer, _) = FileSigner::generate(
            scheme,
            "bench",
            KdfParams {
                m_kib: 64,
                t: 1,
                p: 1,
            },
        )?;
        let sig = signer.sign(&message)?;
        let key = signer.public_key().clone();
        key.verify(&message, &sig)?;
        let mut per_sec = Vec::new();
        for _ in 0..rounds {
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed().as_secs_f64() < 0.3 {
                for _ in 0..16 {
                    key.verify(std::hint::black_box(&message), &sig)?;
                }
                n += 16;
            }
            per_sec.push(n as f64 / start.elapsed().as_secs_f64());
        }
        let s = stats(&per_sec);
        println!(
            "{:<22} {:>14.0} {:>14.0} {:>14.0}",
            scheme.as_str(),
            s.median,
            s.min,
            s.max
        );
    }
    if let Some(script) = peer {
        let v = run_peer(&script, &["--rounds".into(), rounds.to_string()])?;
        println!("peer, same run: {}", v["library"].as_str().unwrap_or("?"));
        if let Some(results) = v["results"].as_object() {
            for (scheme, r) in results {
                let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
                println!(
                    "{scheme:<22} {:>14.0} {:>14.0} {:>14.0}",
                    f("median"),
                    f("min"),
                    f("max")
                );
            }
        }
    }
    Ok(())
}

fn fast_key(dir: &Path, name: &str, scheme: Scheme) -> anyhow::Result<String> {
    let (_, bytes) = FileSigner::generate(
        scheme,
        "bench-passphrase",
        KdfParams {
            m_kib: 64,
            t: 1,
            p: 1,
        },
    )?;
    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    Ok(path.display().to_string())
}

fn bench_tuf_client(
    n_targets: usize,
    iterations: usize,
    target_size: usize,
    peer: Option<PathBuf>,
) -> anyhow::Result<()> {
    if n_targets < 2 {
        bail!("--targets must be at least 2");
    }
    let work = tempfile::tempdir()?;
    let keys = work.path().join("keys");
    let images = work.path().join("images");
    std::fs::create_dir_all(&keys)?;
    std::fs::create_dir_all(&images)?;
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(
            Path::new(r),
            "bench-passphrase",
        )?))
    };
    let one = |name: &str| -> anyhow::Result<RoleSigners> {
        Ok(RoleSigners {
            keys: vec![fast_key(&keys, name, Scheme::Ed25519)?],
            threshold: 1,
        })
    };
    let repo_dir = work.path().join("repo");
    let now = crate::now_unix();
    eprintln!("building a repository with {n_targets} targets and one delegation ...");
    let opts = InitOptions {
        root: one("root")?,
        targets: one("targets")?,
        snapshot: one("snapshot")?,
        timestamp: one("timestamp")?,
        expiry_days: ExpiryDays::default(),
    };
    let mut repo = Repository::init(&repo_dir, opts, &open, now)?;
    repo.delegate(
        "fleet",
        vec!["fleet/*".into()],
        one("fleet")?,
        false,
        &open,
        now,
    )?;
    let mut requests = Vec::with_capacity(n_targets);
    for i in 0..n_targets {
        let delegated = i % 2 == 1;
        let img = images.join(format!("fw-{i}.img"));
        let size = if i == n_targets - 1 { target_size } else { 64 };
        let mut data = vec![0u8; size];
        data[..8].copy_from_slice(&(i as u64).to_be_bytes());
        std::fs::write(&img, &data)?;
        requests.push(ReleaseRequest {
            image: img,
            target_name: Some(if delegated {
                format!("fleet/fw-{i}.img")
            } else {
                format!("top/fw-{i}.img")
            }),
            hardware_ids: vec![format!("board-{}", i % 16)],
            version: format!("1.0.{i}"),
            security_version: 1,
            sbom: None,
            provenance: None,
            role: delegated.then(|| "fleet".to_string()),
        });
    }
    let wanted = requests
        .last()
        .and_then(|r| r.target_name.clone())
        .expect("at least one");
    repo.add_releases(&requests, &open, now, &NoProgress)?;
    repo.publish(&open, now)?;
    let server = crate::serve::StaticServer::start(&repo_dir, "127.0.0.1:0")?;
    let base = format!("http://{}", server.addr());
    let root_path = repo_dir.join("metadata/1.root.json");
    let limits = Limits {
        targets_max: 64 << 20,
        snapshot_max: 64 << 20,
        ..Limits::default()
    };
    let md_size = |role: &str| -> anyhow::Result<u64> {
        let v = repo.latest_version(role)?.context("role written")?;
        Ok(std::fs::metadata(repo_dir.join(format!("metadata/{v}.{role}.json")))?.len())
    };
    let (targets_md, fleet_md) = (md_size("targets")?, md_size("fleet")?);
    println!("machine: {}", machine());
    println!(
        "repository: {n_targets} targets ({} in top-level targets, {} in delegated role 'fleet'), targets metadata {targets_md} bytes, fleet metadata {fleet_md} bytes; downloading {wanted} ({target_size} bytes) over http://127.0.0.1",
        n_targets.div_ceil(2),
        n_targets / 2
    );
    let mut samples = Vec::new();
    for i in 0..iterations + 2 {
        let state = tempfile::tempdir()?;
        let tdir = tempfile::tempdir()?;
        std::fs::copy(&root_path, state.path().join("root.json"))?;
        let start = Instant::now();
        let config = UpdaterConfig {
            metadata_url: format!("{base}/metadata"),
            metadata_dir: state.path().to_path_buf(),
            target_base_url: Some(format!("{base}/targets")),
            limits,
        };
        let mut up = Updater::new(config, HttpFetcher::default(), crate::now_unix())?;
        up.refresh()?;
        let info = up
            .get_targetinfo(&wanted)?
            .context("benchmark target not found")?;
        up.download_target(&wanted, &info, tdir.path())?;
        let ms = start.elapsed().as_secs_f64() * 1000.0;
        if i >= 2 {
            samples.push(ms);
        }
    }
    let ours = stats(&samples);
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "client", "median ms", "p10 ms", "p90 ms", "min ms", "max ms"
    );
    let row = |name: &str, s: &Stats| {
        println!(
            "{name:<28} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            s.median, s.p10, s.p90, s.min, s.max
        )
    };
    row("rampart-tuf-client", &ours);
    if let Some(script) = peer {
        let args: Vec<String> = vec![
            "--metadata-url".into(),
            format!("{base}/metadata"),
            "--targets-url".into(),
            format!("{base}/targets"),
            "--root".into(),
            root_path.display().to_string(),
            "--target-name".into(),
            wanted.clone(),
            "--iterations".into(),
            iterations.to_string(),
            "--json".into(),
        ];
        let v = run_peer(&script, &args)?;
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let peer = Stats {
            median: f("median_ms"),
            p10: f("p10_ms"),
            p90: f("p90_ms"),
            min: f("min_ms"),
            max: f("max_ms"),
        };
        row(
            &format!(
                "python-tuf ngclient {}",
                v["tuf_version"].as_str().unwrap_or("")
            ),
            &peer,
        );
        println!(
            "speed-up (median ngclient / median rampart): {:.1}x",
            peer.median / ours.median
        );
    }
    server.stop();
    Ok(())
}
