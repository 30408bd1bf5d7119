//! `rampart server`: the update server (device API over mutual TLS, management API, DDI API,
//! metrics), configured by a TOML file, the environment and flags (`settings`: the one
//! definition of every setting, its parsing, layering and checks; `build`: the files they name
//! and the [`rampart_server::ServerConfig`] built from them), and `rampart server check-config`.

mod build;
pub mod settings;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

pub use build::{Built, Mode};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerArgs {
    #[command(subcommand)]
    action: Option<ServerAction>,
    #[command(flatten)]
    settings: SettingsArgs,
}

#[derive(Subcommand)]
enum ServerAction {
    /// Check a configuration without starting: the file, the environment and the flags are
    /// layered and checked as `rampart server` would, every file they name is read (no key
    /// is decrypted, nothing is created); prints the effective settings (the database password
    /// hidden), or every problem found and exits non-zero.
    CheckConfig(SettingsArgs),
}

/// The configuration file and the settings given as flags or environment variables.
#[derive(Args)]
pub struct SettingsArgs {
    /// The configuration file (TOML, sections as in examples/server/*.toml). A flag or
    /// environment variable beats the file, which beats the default.
    #[arg(long, env = "RAMPART_SERVER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: settings::Settings,
}

impl SettingsArgs {
    /// The settings checked and built into the server's configuration.
    pub fn build(
        &self,
        mode: Mode,
    ) -> Result<(settings::Resolved, Built), settings::SettingsError> {
        let resolved = build::load(self.config.as_deref(), &self.flags)?;
        let built = build::build(&resolved, mode)?;
        Ok((resolved, built))
    }
}

/// `rampart server check-config`: the effective settings, or every problem.
fn check_config(args: &SettingsArgs) -> anyhow::Result<()> {
    let (resolved, built) = args.build(Mode::Check)?;
    print!("{}", resolved.render_redacted()?);
    println!(
        "
# configuration OK"
    );
    for what in &built.not_checked {
        println!("# not checked: {what}");
    }
    Ok(())
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    match args.action {
        Some(ServerAction::CheckConfig(settings)) => check_config(&settings),
        None => serve(&args.settings),
    }
}

/// Runs until SIGINT or SIGTERM, then drains in-flight requests.
fn serve(args: &SettingsArgs) -> anyhow::Result<()> {
    let (_, built) = args.build(Mode::Start)?;
    let config = built.config;
    let artifacts = match (&config.artifact_store, &config.image_repo) {
        (Some(store), _) => Some(store.to_string()),
        (None, Some(repo)) => Some(repo.join("targets").display().to_string()),
        (None, None) => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let audit_key = config
            .audit_anchor
            .as_ref()
            .map(|a| a.key.verifier_key_string());
        let renewal = match (
            config.image_repo.is_some(),
            config.metadata.timestamp_keys.is_empty(),
            config.metadata.snapshot_keys.is_empty(),
        ) {
            (false, _, _) => None,
            (true, false, false) => Some("the server renews the repository's timestamp and snapshot"),
            (true, false, true) => Some(
                "the server renews the repository's timestamp; re-sign the snapshot (`rampart repo publish`) within its validity",
            ),
            (true, true, _) => Some(
                "the repository's timestamp is not renewed by the server (no timestamp key: `timestamp_keys` under [repository] or --timestamp-key): run `rampart repo publish` daily",
            ),
        };
        let attestation = config.attestation.as_ref().map(|a| {
            format!(
                "remote attestation on: quotes over {}, fresh for {} s, {} EK root certificate(s); {}",
                a.selection_text(),
                a.freshness.as_secs(),
                a.ek_roots.len(),
                if a.require {
                    "updates only for attested devices"
                } else {
                    "updates not gated on it (`require = true` under [attestation] or --require-attestation gates them)"
                }
            )
        });
        let server = rampart_server::Server::bind(config).await?;
        if let Some(attestation) = attestation {
            println!("{attestation}");
        }
        if let Some(renewal) = renewal {
            println!("{renewal}");
        }
        match audit_key {
            Some(key) => println!("audit heads signed with key {key}"),
            None => println!(
                "audit heads are not signed (no audit key: `key` under [audit] or --audit-key): `rampart audit verify` cannot detect a rewritten history"
            ),
        }
        // Tests and scripts read these lines to find the bound ports.
        println!("device API listening on {}", server.local_addr());
        if let Some(addr) = server.metrics_addr() {
            println!("metrics listening on http://{addr}/metrics");
        }
        if let Some(addr) = server.ddi_addr() {
            println!("DDI API listening on https://{addr}/");
        }
        if let Some(addr) = server.management_addr() {
            println!("management API listening on https://{addr}/api/v1/");
        }
        rampart_server::log::info(
            "server started",
            serde_json::json!({
                "device_api": server.local_addr().to_string(),
                "management_api": server.management_addr().map(|a| a.to_string()),
                "ddi_api": server.ddi_addr().map(|a| a.to_string()),
                "metrics": server.metrics_addr().map(|a| a.to_string()),
                "artifacts": artifacts,
            }),
        );
        server.serve(shutdown_signal()).await?;
        rampart_server::log::info("server stopped", serde_json::Value::Null);
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    () = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => ctrl_c.await,
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await;
}
