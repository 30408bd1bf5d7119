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
    /// Sustained durable appends per second to the transparency log (acknowledged only after
    /// fsync, integrated into tiles, checkpoints signed and published), and bytes stored per entry.
    LogAppend(LogAppendArgs),
    /// Device-side proof verification time in a tree of 2^20 leaves: the Merkle inclusion proof
    /// alone, and the whole offline check (log signature, witness quorum, release signature).
    LogProof {
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// The update server under polling load: `rampart server` as a child process with N
    /// registered devices, polled over mutual-TLS keep-alive connections from this process;
    /// polls/s, p50/p99 latency, server peak RSS, database bytes per device.
    Server(crate::bench_server::ServerBenchArgs),
    /// A simulated rollout at fleet scale: the real server and the fleet simulator, a good
    /// release in waves (time per wave), a bad one halted at its canary (breach-to-halt time),
    /// the server's CPU and peak RSS.
    Campaign(crate::bench_campaign::CampaignBenchArgs),
}

/// Transparency-log benchmarks.
#[derive(clap::Args)]
pub struct LogAppendArgs {
    /// Concurrent producers (each waits for its entry to be durable before sending the next).
    #[arg(long, default_value_t = 256)]
    producers: usize,
    /// Measurement rounds.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per round.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Entry size in bytes (a release statement with one signature is about 330 bytes).
    #[arg(long, default_value_t = 330)]
    entry_size: usize,
}

pub fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Verify {
            rounds,
            peer_script,
            no_peer,
        } => bench_verify(rounds, (!no_peer).then_some(peer_script)),
        BenchCommand::LogAppend(a) => bench_log_append(a),
        BenchCommand::LogProof { rounds } => bench_log_proof(rounds),
        BenchCommand::Server(a) => crate::bench_server::run(a),
        BenchCommand::Campaign(a) => crate::bench_campaign::run(a),
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

pub(crate) fn machine() -> String {
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

fn dir_bytes(dir: &Path) -> (u64, u64) {
    let mut total = (0u64, 0u64);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                let (b, n) = dir_bytes(&p);
                total = (total.0 + b, total.1 + n);
            } else if let Ok(m) = e.metadata() {
                total = (total.0 + m.len(), total.1 + 1);
            }
        }
    }
    total
}

fn bench_log_append(a: LogAppendArgs) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let work = tempfile::tempdir()?;
    let signer = rampart_log::note::NoteSigner::from_seed("bench.example/log", [5; 32])?;
    let mut config = rampart_tlog::service::LogConfig::new(work.path().join("log"), signer);
    config.publish_interval = std::time::Duration::from_millis(500);
    let (handle, _thread) = rampart_tlog::service::start(config)?;
    println!("machine: {}", machine());
    println!(
        "{} producers, {}-byte entries, {} rounds of {} s; each append acknowledged after fsync; checkpoint signed and published every 500 ms; no witnesses",
        a.producers, a.entry_size, a.rounds, a.seconds
    );
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for t in 0..a.producers {
        let (h, stop, count, size) = (handle.clone(), stop.clone(), count.clone(), a.entry_size);
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut e = format!("producer {t} entry {n} ").into_bytes();
                e.resize(size, b'.');
                if h.add(e).is_err() {
                    return;
                }
                n += 1;
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    std::thread::sleep(std::time::Duration::from_secs(1)); // warm-up
    let mut rates = Vec::new();
    for _ in 0..a.rounds {
        let (c0, t0) = (count.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(std::time::Duration::from_secs(a.seconds));
        rates.push((count.load(Ordering::Relaxed) - c0) as f64 / t0.elapsed().as_secs_f64());
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let checkpoint = handle.publish()?;
    let note = rampart_log::note::Note::parse(&checkpoint)?;
    let size = rampart_log::checkpoint::Checkpoint::parse_body(&note.text)?.size;
    let st = stats(&rates);
    println!(
        "appends/s: median {:.0}, min {:.0}, max {:.0}",
        st.median, st.min, st.max
    );
    let (bytes, files) = dir_bytes(&work.path().join("log"));
    let (tile_bytes, _) = dir_bytes(&work.path().join("log/tile"));
    let (entry_bytes, _) = dir_bytes(&work.path().join("log/tile/entries"));
    println!(
        "stored: {size} entries in {bytes} bytes ({files} files): {:.1} bytes per entry in total, {:.1} of them hash tiles, {:.1} entry bundles ({} bytes of entry data per entry)",
        bytes as f64 / size as f64,
        (tile_bytes - entry_bytes) as f64 / size as f64,
        entry_bytes as f64 / size as f64,
        a.entry_size
    );
    Ok(())
}

fn bench_log_proof(rounds: usize) -> anyhow::Result<()> {
    use rampart_log::merkle::{Hash, inclusion_proof, leaf_hash, node_hash, verify_inclusion};
    use rampart_log::note::NoteSigner;
    use rampart_log::statement::{ReleaseStatement, verify_logged_release};
    const LEVELS: usize = 20;
    println!("machine: {}", machine());
    eprintln!("building a tree of 2^20 leaves ...");
    let statement = ReleaseStatement {
        target: "board-a/2.0.0/fw.img".into(),
        version: "2.0.0".into(),
        security_version: 4,
        hardware_ids: vec!["board-a".into()],
        sha256: [7; 32],
        sbom_sha256: Some([8; 32]),
    };
    let release_key = NoteSigner::from_seed("vendor.example/releases", [1; 32])?;
    let sig = release_key.sign(&statement.to_text()?)?;
    let (_, leaf) = statement.entry(std::slice::from_ref(&sig))?;
    let index = 777_777usize;
    // levels[l][i] = node (l, i); complete tree of 2^20 leaves.
    let mut levels: Vec<Vec<Hash>> = vec![
        (0..1u32 << LEVELS)
            .map(|i| {
                if i as usize == index {
                    leaf
                } else {
                    leaf_hash(&i.to_be_bytes())
                }
            })
            .collect(),
    ];
    for l in 0..LEVELS {
        let next = levels[l]
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
        levels.push(next);
    }
    let size = 1u64 << LEVELS;
    let root = levels[LEVELS][0];
    let proof = inclusion_proof(index as u64, size, &mut |l: u8,
                                                          i: u64|
     -> Result<Hash, ()> {
        Ok(levels[l as usize][i as usize])
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let log = NoteSigner::from_seed("log.example/fw", [2; 32])?;
    let witnesses: Vec<NoteSigner> = (0..3u8)
        .map(|i| NoteSigner::cosigner_from_seed(&format!("w{i}.example"), [10 + i; 32]))
        .collect::<Result<_, _>>()?;
    let cp = rampart_log::checkpoint::Checkpoint::new("log.example/fw", size, root);
    let mut note = rampart_log::cosignature::sign_checkpoint(&log, &cp)?;
    for w in witnesses.iter().take(2) {
        note.signatures.push(rampart_log::cosignature::cosign(
            w,
            &cp.to_body(),
            1_800_000_000,
        )?);
    }
    let tlog_proof = rampart_log::proof::TlogProof {
        extra: Some(sig.to_line().into_bytes()),
        index: index as u64,
        hashes: proof.clone(),
        checkpoint: note,
    }
    .to_bytes();
    let policy = rampart_log::policy::WitnessPolicy::new(
        log.verifier(),
        "log.example/fw",
        witnesses.iter().map(NoteSigner::verifier).collect(),
        2,
    )?;
    let key = release_key.verifier();
    verify_inclusion(&leaf, index as u64, size, &proof, &root)?;
    verify_logged_release(&statement, &tlog_proof, &policy, &key)?;
    let time = |iters: u32, f: &dyn Fn()| -> Vec<f64> {
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..iters {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(iters)
            })
            .collect()
    };
    let merkle = stats(&time(20_000, &|| {
        verify_inclusion(
            std::hint::black_box(&leaf),
            index as u64,
            size,
            &proof,
            &root,
        )
        .expect("verifies");
    }));
    let full = stats(&time(500, &|| {
        verify_logged_release(&statement, std::hint::black_box(&tlog_proof), &policy, &key)
            .expect("verifies");
    }));
    println!(
        "tree of 2^20 leaves, proof of {} hashes, {rounds} rounds",
        proof.len()
    );
    println!(
        "Merkle inclusion proof:   median {:.2} us, min {:.2}, max {:.2}",
        merkle.median, merkle.min, merkle.max
    );
    println!(
        "whole offline check (parse proof, log signature, 2-of-3 witness cosignatures, release signature, inclusion): median {:.1} us, min {:.1}, max {:.1}",
        full.median, full.min, full.max
    );
    Ok(())
}
