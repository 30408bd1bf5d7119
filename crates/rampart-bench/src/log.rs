//! `rampart-bench log-append` and `log-proof`: the transparency log's durable appends and a
//! device's proof verification.

use std::path::Path;
use std::time::Instant;

use crate::report::{machine, stats};

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

pub fn bench_log_append(a: LogAppendArgs) -> anyhow::Result<()> {
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

pub fn bench_log_proof(rounds: usize) -> anyhow::Result<()> {
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
