//! A client for the public tuf-conformance suite (CLI protocol in its CLIENT-CLI.md).
//! Exit status: 0 on success, 1 on any failure.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rampart_tuf_client::{HttpFetcher, Limits, Updater, UpdaterConfig};

#[derive(Parser)]
#[command(about = "Rampart's TUF client, speaking the tuf-conformance CLI protocol")]
struct Cli {
    #[arg(long, global = true)]
    metadata_dir: Option<PathBuf>,
    #[arg(long, global = true)]
    metadata_url: Option<String>,
    #[arg(long, global = true)]
    target_name: Vec<String>,
    #[arg(long, global = true)]
    target_dir: Option<PathBuf>,
    #[arg(long, global = true)]
    target_base_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store TRUSTED_ROOT as the initial trusted root.
    Init { trusted_root: PathBuf },
    /// Update top-level metadata.
    Refresh,
    /// Update metadata, then download and verify each --target-name.
    Download,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let metadata_dir = cli.metadata_dir.context("--metadata-dir is required")?;
    if let Command::Init { trusted_root } = &cli.command {
        std::fs::create_dir_all(&metadata_dir)?;
        let bytes = std::fs::read(trusted_root)
            .with_context(|| format!("reading {}", trusted_root.display()))?;
        rampart_tuf_client::store::write_atomic(&metadata_dir.join("root.json"), &bytes)?;
        return Ok(());
    }
    let metadata_url = cli.metadata_url.context("--metadata-url is required")?;
    let config = UpdaterConfig {
        metadata_url: metadata_url.trim_end_matches('/').to_string(),
        metadata_dir,
        target_base_url: cli
            .target_base_url
            .map(|u| u.trim_end_matches('/').to_string()),
        limits: Limits::default(),
    };
    let mut updater = Updater::new(config, HttpFetcher::default(), now_unix())?;
    updater.refresh()?;
    if let Command::Download = cli.command {
        let target_dir = cli.target_dir.context("--target-dir is required")?;
        std::fs::create_dir_all(&target_dir)?;
        for name in &cli.target_name {
            let Some(info) = updater.get_targetinfo(name)? else {
                bail!("target {name:?} not found in trusted metadata");
            };
            if Updater::<HttpFetcher>::find_cached_target(&target_dir, name, &info).is_none() {
                updater.download_target(name, &info, &target_dir)?;
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(1);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tuf-conformance-client: {e:#}");
            ExitCode::from(1)
        }
    }
}
