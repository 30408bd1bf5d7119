//! `rampart-agent`: the device side. In this release it carries the TUF client: it keeps the
//! device's trusted metadata, checks releases against the device's hardware id and installed
//! security version, and downloads verified images.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rampart_agent::{LOG_POLICY, RELEASE_KEY, check_logged};
use rampart_core::release::ReleaseInfo;
use rampart_log::note::Verifier;
use rampart_log::policy::WitnessPolicy;
use rampart_tuf_client::store::write_atomic;
use rampart_tuf_client::{HttpFetcher, Limits, Updater, UpdaterConfig};

#[derive(Parser)]
#[command(name = "rampart-agent", version, about = "Rampart device agent")]
struct Cli {
    /// Directory holding the device's trusted metadata and state.
    #[arg(
        long,
        env = "RAMPART_AGENT_STATE",
        default_value = "/var/lib/rampart-agent"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the trusted root shipped with the device (factory provisioning), and optionally
    /// the transparency-log policy every release must then satisfy.
    Init {
        trusted_root: PathBuf,
        /// Witness policy file: releases must carry a tlog-proof meeting it.
        #[arg(long, requires = "release_key")]
        log_policy: Option<PathBuf>,
        /// Verifier key of the vendor's release key (signs the logged release statements).
        #[arg(long, requires = "log_policy")]
        release_key: Option<String>,
        /// The update server's director root (`rampart director init`), pinned for `update`.
        #[arg(long)]
        director_root: Option<PathBuf>,
    },
    /// Update through the update server over mutual TLS: poll, verify the director's and the
    /// image repository's metadata and their agreement, and download the assigned release
    /// (resuming a partial download) into --out.
    Update {
        /// The server's device API, e.g. https://updates.example:8443
        #[arg(long, env = "RAMPART_SERVER_URL")]
        server_url: String,
        /// CA certificate(s) the server's certificate must chain to (PEM).
        #[arg(long)]
        server_ca: PathBuf,
        /// This device's certificate (PEM); its device id is this device's identity.
        #[arg(long)]
        cert: PathBuf,
        /// This device's private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// This device's hardware compatibility id.
        #[arg(long, env = "RAMPART_HARDWARE_ID")]
        hardware_id: String,
        /// Where the verified artifact is written (a partial download is kept as <out>.part).
        #[arg(long)]
        out: PathBuf,
    },
    /// Refresh metadata and say whether a release may be installed on this device.
    Check(FetchArgs),
    /// Refresh, verify and download a release into --out (nothing is written unless it verifies).
    Fetch {
        #[command(flatten)]
        args: FetchArgs,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Repository base URL (serving metadata/ and targets/).
    #[arg(long, env = "RAMPART_REPO_URL")]
    repo_url: String,
    /// This device's hardware compatibility id.
    #[arg(long, env = "RAMPART_HARDWARE_ID")]
    hardware_id: String,
    /// Target path of the release.
    target: String,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn verified(
    state: &Path,
    args: &FetchArgs,
) -> anyhow::Result<(
    Updater<HttpFetcher>,
    rampart_core::metadata::TargetFile,
    ReleaseInfo,
)> {
    let base = args.repo_url.trim_end_matches('/');
    let config = UpdaterConfig {
        metadata_url: format!("{base}/metadata"),
        metadata_dir: state.join("metadata"),
        target_base_url: Some(format!("{base}/targets")),
        limits: Limits::default(),
    };
    let mut up = Updater::new(config, HttpFetcher::default(), now_unix())?;
    up.refresh()?;
    let info = up
        .get_targetinfo(&args.target)?
        .with_context(|| format!("{} is not a release in the trusted metadata", args.target))?;
    let release = ReleaseInfo::from_custom(info.custom.as_ref())?;
    release.check_installable(
        &args.hardware_id,
        rampart_agent::director::installed_security_version(state)?,
    )?;
    check_logged(state, &mut up, &args.target, &info, &release)?;
    Ok((up, info, release))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            trusted_root,
            log_policy,
            release_key,
            director_root,
        } => {
            let bytes = std::fs::read(&trusted_root)
                .with_context(|| format!("reading {}", trusted_root.display()))?;
            rampart_core::TrustedSet::new(&bytes, now_unix())
                .context("the trusted root does not verify")?;
            let dir = cli.state_dir.join("metadata");
            std::fs::create_dir_all(&dir)?;
            if dir.join("root.json").exists() {
                bail!(
                    "{} already holds a trusted root; a device's root changes only by rotation",
                    dir.display()
                );
            }
            if let (Some(policy), Some(key)) = (log_policy, release_key) {
                let text = std::fs::read_to_string(&policy)
                    .with_context(|| format!("reading {}", policy.display()))?;
                let parsed: WitnessPolicy = text.parse().context("the log policy is malformed")?;
                Verifier::parse(&key).context("--release-key is not a verifier key")?;
                write_atomic(&cli.state_dir.join(LOG_POLICY), parsed.to_text().as_bytes())?;
                write_atomic(
                    &cli.state_dir.join(RELEASE_KEY),
                    format!("{key}\n").as_bytes(),
                )?;
                println!(
                    "releases must be in the transparency log {} with {} witness cosignature(s)",
                    parsed.origin, parsed.quorum
                );
            }
            if let Some(director_root) = director_root {
                let bytes = std::fs::read(&director_root)
                    .with_context(|| format!("reading {}", director_root.display()))?;
                rampart_agent::director::pin_director_root(&cli.state_dir, &bytes)
                    .context("pinning the director root")?;
                println!("director root pinned");
            }
            write_atomic(&dir.join("root.json"), &bytes)?;
            println!("trusted root installed in {}", dir.display());
        }
        Command::Update {
            server_url,
            server_ca,
            cert,
            key,
            hardware_id,
            out,
        } => {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let tls = rampart_agent::director::DeviceTls {
                server_ca_pem: read(&server_ca)?,
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
            };
            let client = rampart_agent::director::ServerClient::new(&server_url, &tls)?;
            match rampart_agent::director::update(
                &cli.state_dir,
                &client,
                &hardware_id,
                &out,
                now_unix(),
            )? {
                rampart_agent::director::UpdateOutcome::NothingAssigned => {
                    println!("nothing assigned to device {}", client.device_id());
                }
                rampart_agent::director::UpdateOutcome::Downloaded {
                    target,
                    version,
                    director_version,
                    path,
                    resumed_from,
                    already_present,
                } => {
                    let how = if already_present {
                        " (already downloaded)".to_string()
                    } else if resumed_from > 0 {
                        format!(" (resumed from byte {resumed_from})")
                    } else {
                        String::new()
                    };
                    println!(
                        "verified {target} version {version} (director v{director_version}) -> {}{how}",
                        path.display()
                    );
                }
            }
        }
        Command::Check(args) => {
            let (_, info, release) = verified(&cli.state_dir, &args)?;
            println!(
                "installable: {} version {} (security version {}, {} bytes)",
                args.target, release.version, release.security_version, info.length
            );
        }
        Command::Fetch { args, out } => {
            let (up, info, release) = verified(&cli.state_dir, &args)?;
            up.download_target_to(&args.target, &info, &out)
                .with_context(|| format!("downloading {} to {}", args.target, out.display()))?;
            println!(
                "verified {} version {} -> {}",
                args.target,
                release.version,
                out.display()
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
