//! How the benchmarks summarise samples and describe the machine, and their Python peers.

use std::path::Path;

use anyhow::{Context, bail};

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
pub fn run_peer(script: &Path, args: &[String]) -> anyhow::Result<serde_json::Value> {
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

pub fn machine() -> String {
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
