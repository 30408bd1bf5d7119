//! `rampart server`: the update server (device API over mutual TLS, metrics).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rampart_server::{DEFAULT_POLL_INTERVAL_SECS, ServerConfig};

#[derive(Args)]
pub struct ServerArgs {
    /// Database: sqlite://PATH (embedded, the default) or postgres://USER:PASSWORD@HOST/DB.
    #[arg(long, env = "RAMPART_DB", default_value = "sqlite://rampart-server.db")]
    db: String,
    /// Address of the device API (mutual TLS).
    #[arg(long, default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// The server's TLS certificate chain (PEM), e.g. from `rampart ca server-cert`.
    #[arg(long)]
    cert: PathBuf,
    /// The server's private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Manufacturer CA certificate(s) device certificates must chain to (PEM).
    #[arg(long)]
    client_ca: PathBuf,
    /// Certificate revocation list(s) (PEM) of the client CAs; every client CA needs one.
    #[arg(long = "crl", required = true)]
    crls: Vec<PathBuf>,
    /// Plain-HTTP address serving GET /metrics (Prometheus); keep it on loopback or an ops network.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Poll interval told to devices, seconds.
    #[arg(long, default_value_t = DEFAULT_POLL_INTERVAL_SECS)]
    poll_interval: u64,
    /// Last-seen times are written to the database at least this often, milliseconds.
    #[arg(long, default_value_t = 1000)]
    last_seen_flush_ms: u64,
}

fn read(path: &Path, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

/// Builds the server configuration from the command line.
pub fn config(args: &ServerArgs) -> anyhow::Result<ServerConfig> {
    let crls = args
        .crls
        .iter()
        .map(|p| read(p, "CRL"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tls = rampart_pki::server_config(
        &read(&args.cert, "server certificate")?,
        &read(&args.key, "server key")?,
        &read(&args.client_ca, "client CA certificate")?,
        &crls,
    )
    .context("building the mutual-TLS configuration")?;
    let mut config = ServerConfig::new(args.db.clone(), tls, args.listen);
    config.metrics_listen = args.metrics_listen;
    config.poll_interval_secs = args.poll_interval;
    config.last_seen_flush_interval = Duration::from_millis(args.last_seen_flush_ms.max(1));
    Ok(config)
}

/// Runs until SIGINT or SIGTERM, then drains in-flight requests.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let server = rampart_server::Server::bind(config).await?;
        // Tests and scripts read these lines to find the bound ports.
        println!("device API listening on {}", server.local_addr());
        if let Some(addr) = server.metrics_addr() {
            println!("metrics listening on http://{addr}/metrics");
        }
        server.serve(shutdown_signal()).await?;
        eprintln!("rampart server: stopped");
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
