//! `rampart-bench verify`: signature verifications per second for each scheme, and the
//! pyca/cryptography peer in the same run.

use std::path::PathBuf;
use std::time::Instant;

use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};

use crate::report::{machine, run_peer, stats};

pub fn bench_verify(rounds: usize, peer: Option<PathBuf>) -> anyhow::Result<()> {
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
