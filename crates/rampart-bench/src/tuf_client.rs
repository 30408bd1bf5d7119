//! `rampart-bench tuf-client`: a TUF client refresh and one download from a large repository
//! over loopback HTTP, and python-tuf ngclient in the same run.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_repo::{ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners};
use rampart_tuf_client::{HttpFetcher, Limits, Updater, UpdaterConfig};

use crate::report::{Stats, machine, run_peer, stats};

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

pub fn bench_tuf_client(
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
    let now = rampart_cli::shared::now_unix();
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
    let server = rampart_cli::shared::static_server::StaticServer::start(&repo_dir, "127.0.0.1:0")?;
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
        let mut up = Updater::new(
            config,
            HttpFetcher::default(),
            rampart_cli::shared::now_unix(),
        )?;
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
