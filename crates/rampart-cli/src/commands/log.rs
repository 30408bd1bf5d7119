//! `rampart log ...`: the transparency log (keys, the log service) and its monitor.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_log::note::{NoteSigner, SignerKind, Verifier};
use rampart_tlog::monitor::{MonitorState, monitor_once};
use rampart_tlog::service::{LogConfig, WitnessEndpoint};
use rampart_tlog::tiles::HttpSource;
use ring::rand::SecureRandom;

use crate::shared::signing::{parse_policy_file, read_note_key};

#[derive(Subcommand)]
pub enum LogCommand {
    /// Generate a note signing key (log, release or witness key); prints its verifier key.
    Keygen {
        /// Key name, e.g. the log origin `log.example.com/firmware`.
        #[arg(long)]
        name: String,
        /// Write the private key here (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Make a witness cosigning key (type 0x04) instead of a plain Ed25519 note key.
        #[arg(long)]
        witness: bool,
    },
    /// Print the verifier key of a note signing key file.
    Vkey { key: PathBuf },
    /// Run the log: POST /add, and the C2SP tlog-tiles files (checkpoint, tiles, entries).
    Serve {
        /// Directory holding the log (created if missing).
        #[arg(long)]
        dir: PathBuf,
        /// The log's note key file (its name is the log's origin).
        #[arg(long)]
        key: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: String,
        /// A witness to ask for cosignatures: URL=VERIFIER_KEY (repeat).
        #[arg(long = "witness")]
        witnesses: Vec<String>,
        /// Cosignatures required before a checkpoint is published.
        #[arg(long, default_value_t = 0)]
        quorum: usize,
        /// Longest delay between an append and the checkpoint covering it.
        #[arg(long, default_value_t = 500)]
        publish_interval_ms: u64,
    },
    /// Follow a log: check consistency of every checkpoint and alert on release entries signed
    /// with the release key that the repository does not list. Exits non-zero on any alert.
    Monitor {
        /// The log's base URL.
        #[arg(long)]
        url: String,
        /// Witness policy file (see docs/transparency-log.md).
        #[arg(long)]
        policy: PathBuf,
        /// Verifier key of the vendor's release key.
        #[arg(long)]
        release_key: String,
        /// The image repository whose releases are the registry.
        #[arg(long)]
        repo: PathBuf,
        /// Where the monitor keeps the last verified checkpoint.
        #[arg(long)]
        state: PathBuf,
        /// Check once and exit instead of polling.
        #[arg(long)]
        once: bool,
        #[arg(long, default_value_t = 10)]
        interval_secs: u64,
        /// Also report each alert to the update server's management API (`POST
        /// /api/v1/monitor/alerts`), which opens an incident: its base URL.
        #[arg(long, requires_all = ["token", "ca"])]
        server: Option<String>,
        /// A token of the `monitor` role (`rampart token create --role monitor`).
        #[arg(long, env = "RAMPART_MONITOR_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The CA certificate (PEM) that signed the server's certificate.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

pub(crate) fn serve_forever(router: axum::Router, listen: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        println!("listening on http://{}", listener.local_addr()?);
        // Bounded connections and request heads, as the update server's listeners.
        rampart_listen::serve_small_service(listener, router, std::future::pending()).await;
        Ok(())
    })
}

pub fn run(cmd: LogCommand) -> anyhow::Result<()> {
    match cmd {
        LogCommand::Keygen { name, out, witness } => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite a key", out.display());
            }
            let mut seed = [0u8; 32];
            ring::rand::SystemRandom::new()
                .fill(&mut seed)
                .map_err(|_| anyhow::anyhow!("no randomness"))?;
            let kind = if witness {
                SignerKind::Ed25519Cosignature
            } else {
                SignerKind::Ed25519
            };
            let signer = NoteSigner::new(&name, kind, seed)?;
            rampart_tuf_client::store::write_private(
                &out,
                format!("{}\n", signer.signer_key_string()).as_bytes(),
            )?;
            println!("{}", signer.verifier_key_string());
        }
        LogCommand::Vkey { key } => println!("{}", read_note_key(&key)?.verifier_key_string()),
        LogCommand::Serve {
            dir,
            key,
            listen,
            witnesses,
            quorum,
            publish_interval_ms,
        } => {
            let signer = read_note_key(&key)?;
            let mut config = LogConfig::new(dir, signer);
            for w in witnesses {
                let (url, vkey) = w
                    .split_once('=')
                    .context("--witness takes URL=VERIFIER_KEY")?;
                config.witnesses.push(WitnessEndpoint {
                    url: url.to_string(),
                    verifier: Verifier::parse(vkey)?,
                });
            }
            if quorum > config.witnesses.len() {
                bail!(
                    "--quorum {quorum} is more than the {} witnesses given",
                    config.witnesses.len()
                );
            }
            config.quorum = quorum;
            config.publish_interval = Duration::from_millis(publish_interval_ms);
            let origin = config.signer.name().to_string();
            let (handle, _thread) = rampart_tlog::service::start(config)?;
            println!("log {origin}");
            serve_forever(rampart_tlog::service::router(handle), &listen)?;
        }
        LogCommand::Monitor {
            url,
            policy,
            release_key,
            repo,
            state,
            once,
            interval_secs,
            server,
            token,
            ca,
        } => {
            let reporter = match (&server, &token, &ca) {
                (Some(server), Some(token), Some(ca)) => Some(
                    crate::shared::api_client::ApiClient::from_ca_file(server, token, ca)?,
                ),
                _ => None,
            };
            let policy = parse_policy_file(&policy)?;
            let release_key =
                Verifier::parse(&release_key).context("--release-key is not a verifier key")?;
            let source = HttpSource::new(&url);
            let mut st = match std::fs::read_to_string(&state) {
                Ok(t) => MonitorState::parse(&t)
                    .with_context(|| format!("{} is not a monitor state file", state.display()))?,
                Err(_) => MonitorState::default(),
            };
            loop {
                let registry = Registry::load(&repo)?;
                let alerts = monitor_once(&source, &policy, &release_key, &mut st, &|s| {
                    registry.knows(s)
                })?;
                rampart_tuf_client::store::write_atomic(&state, st.to_text().as_bytes())?;
                if !alerts.is_empty() {
                    for a in &alerts {
                        eprintln!("ALERT: {a}");
                    }
                    if let Some(client) = &reporter {
                        for a in &alerts {
                            client
                                .ok(
                                    "POST",
                                    "/api/v1/monitor/alerts",
                                    Some(serde_json::json!({
                                        "target": a.statement.target,
                                        "version": a.statement.version,
                                        "sha256": hex::encode(a.statement.sha256),
                                        "index": a.index,
                                        "log": url,
                                    })),
                                )
                                .context("reporting the alert to the update server (the alert stands: this command still fails)")?;
                        }
                        eprintln!("reported {} alert(s) to the update server", alerts.len());
                    }
                    bail!(
                        "{} release(s) signed with the release key are missing from the registry",
                        alerts.len()
                    );
                }
                println!(
                    "log consistent at size {}; every release entry is known",
                    st.size
                );
                if once {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_secs(interval_secs));
            }
        }
    }
    Ok(())
}

/// The releases a repository lists, as (target, sha256) pairs.
struct Registry(std::collections::BTreeSet<(String, String)>);

impl Registry {
    fn load(dir: &Path) -> anyhow::Result<Registry> {
        let repo = rampart_repo::Repository::open(dir)?;
        let mut set = std::collections::BTreeSet::new();
        let roles =
            std::iter::once("targets".to_string()).chain(repo.config().delegations.keys().cloned());
        for role in roles {
            for (name, t) in repo.targets_role(&role)?.targets {
                if let Some(h) = t.hashes.get("sha256") {
                    set.insert((name, h.to_ascii_lowercase()));
                }
            }
        }
        Ok(Registry(set))
    }

    fn knows(&self, s: &rampart_log::statement::ReleaseStatement) -> bool {
        self.0.contains(&(s.target.clone(), hex::encode(s.sha256)))
    }
}
