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
    /// Seconds between the risk watch's passes (advisory exposure and `risk.advisory` alerts)
    /// when no advisory import wakes it; an import that changed the feed runs one at once.
    #[arg(long, default_value_t = rampart_server::risk_watch::DEFAULT_INTERVAL.as_secs())]
    risk_watch_interval: u64,
    /// Address of the management API (HTTPS with --cert/--key, bearer tokens from
    /// `rampart token create`).
    #[arg(long)]
    management_listen: Option<SocketAddr>,
    /// The image repository directory to host (from `rampart repo init`); its releases are what
    /// operators assign.
    #[arg(long)]
    repo: Option<PathBuf>,
    /// Where the artifacts of --repo are read from: s3://BUCKET or s3://BUCKET/PREFIX (objects
    /// PREFIX/targets/<path>, uploaded with `rampart repo upload-artifacts`; endpoint, region and
    /// credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
    /// Default: the targets/ directory of --repo. Metadata always comes from --repo.
    #[arg(long, requires = "repo")]
    artifacts: Option<String>,
    /// The director root (`rampart director init` writes DIR/root.json); with --director-key,
    /// the server signs each device's director targets metadata. Needs --repo.
    #[arg(long, requires_all = ["director_key", "repo"])]
    director_root: Option<PathBuf>,
    /// The director's online key (file:PATH, passphrase from RAMPART_KEY_PASSPHRASE, or
    /// pkcs11:token=..;object=..).
    #[arg(long, requires = "director_root")]
    director_key: Option<String>,
    /// Days each signed director targets metadata stays valid.
    #[arg(long, default_value_t = 7)]
    director_expiry_days: u32,
    /// A timestamp key of --repo (file:PATH, passphrase from RAMPART_KEY_PASSPHRASE, or
    /// pkcs11:token=..;object=..; repeat up to the role's threshold): the server renews the
    /// timestamp before it expires, so updates never stop for want of a `rampart repo publish`.
    #[arg(long = "timestamp-key", requires = "repo")]
    timestamp_keys: Vec<String>,
    /// A snapshot key of --repo (as --timestamp-key): the server renews the snapshot too.
    #[arg(long = "snapshot-key", requires = "timestamp_keys")]
    snapshot_keys: Vec<String>,
    /// Renew the timestamp (and snapshot) once less than this fraction of its validity is left.
    #[arg(long, default_value_t = rampart_server::renewal::DEFAULT_RENEW_WHEN_REMAINING)]
    renew_when_remaining: f64,
    /// Seconds between looks at the metadata's expiries (renewals, metrics, warnings).
    #[arg(long, default_value_t = rampart_server::renewal::DEFAULT_METADATA_CHECK_INTERVAL.as_secs())]
    metadata_check_secs: u64,
    /// Warn this many days before an offline role (root, targets, delegated roles, the
    /// director root) expires: a person with its offline keys must sign a new version.
    #[arg(long, default_value_t = rampart_server::renewal::DEFAULT_OFFLINE_WARNING.as_secs() / 86_400)]
    expiry_warning_days: u64,
    /// Address of the hawkBit DDI API (HTTPS with --cert/--key) for SWUpdate, RAUC and other
    /// hawkBit clients; tenants and tokens come from `rampart ddi`.
    #[arg(long)]
    ddi_listen: Option<SocketAddr>,
    /// Let webhooks reach this internal network (CIDR such as 10.20.0.0/16, or one address;
    /// repeatable). Without it, webhook URLs leading to loopback, private, link-local (cloud
    /// metadata) and other internal addresses are refused.
    #[arg(long = "webhook-allow", value_name = "CIDR")]
    webhook_allow: Vec<rampart_server::webhooks::IpNetwork>,
    /// Send incident alerts to this syslog receiver as RFC 5424 messages: udp://HOST:PORT (one
    /// datagram each) or tcp://HOST:PORT (octet-counted frames, retried with backoff while the
    /// receiver is down). Alerts also go to every webhook subscribed to `incident.alert`.
    #[arg(long, value_name = "udp://HOST:PORT|tcp://HOST:PORT")]
    syslog: Option<rampart_server::alerts::SyslogTarget>,
    /// The syslog facility of incident alerts (kern, user, daemon, auth, authpriv, audit,
    /// alert, local0 ... local7).
    #[arg(long, default_value = "auth", value_parser = parse_facility)]
    syslog_facility: u8,
    /// Seconds within which repeats of one incident's alert are held and sent as one update.
    #[arg(long, default_value_t = rampart_server::alerts::DEFAULT_DEDUPE_WINDOW.as_secs())]
    alert_dedupe_window: u64,
    /// An alert sink counts as failing after this many failed attempts of one alert in a row
    /// (or an alert waiting over --alert-failing-after-secs); the server then raises an
    /// alert_delivery_failing incident and alerts through the other sink.
    #[arg(long, default_value_t = rampart_server::alerts::DEFAULT_FAILING_AFTER_ATTEMPTS)]
    alert_failing_after_attempts: u32,
    /// Seconds an alert may wait undelivered before its sink counts as failing.
    #[arg(long, default_value_t = rampart_server::alerts::DEFAULT_FAILING_AFTER.as_secs())]
    alert_failing_after_secs: u64,
    /// The key webhook secrets are sealed with in the database: a file of 32 random bytes,
    /// created (mode 0600) if missing. Default with SQLite: NAME.secrets.key next to NAME.db;
    /// required with PostgreSQL.
    #[arg(long, value_name = "FILE")]
    secrets_key: Option<PathBuf>,
    /// A listener's connection caps, LISTENER=MAX[/PER_SOURCE] with LISTENER one of device, ddi,
    /// management, metrics (repeatable), e.g. `device=8192/512`. Defaults: device and ddi
    /// 4096/256, management 256/32, metrics 64/16, lowered to fit the open-file limit; caps
    /// given here that do not fit refuse to start.
    #[arg(long = "connection-cap", value_name = "LISTENER=MAX[/PER_SOURCE]", value_parser = parse_connection_cap)]
    connection_caps: Vec<(String, rampart_server::connections::ListenerCaps)>,
    /// Seconds a client has to send a whole request head; also how long a kept-alive
    /// connection may wait idle for its next request.
    #[arg(long, default_value_t = rampart_server::connections::DEFAULT_HEADER_TIMEOUT.as_secs())]
    header_timeout: u64,
    /// The audit key (an Ed25519 signed-note key) that signs heads of the audit log, created
    /// (mode 0600) on first use. Default: PATH.audit-key next to a sqlite://PATH database; with
    /// PostgreSQL no heads are signed unless it is given. Its verifier key is printed at start
    /// (and by `rampart log vkey FILE`) for `rampart audit verify --anchor-key`.
    #[arg(long)]
    audit_key: Option<PathBuf>,
    /// Seconds between signed audit heads (one is signed only when records were added).
    #[arg(long, default_value_t = rampart_server::audit_anchor::DEFAULT_ANCHOR_INTERVAL.as_secs())]
    audit_anchor_interval: u64,
    /// A transparency log (`rampart log serve`) every signed audit head is appended to, so its
    /// witnesses vouch for it. Needs --audit-log-policy.
    #[arg(long, requires = "audit_log_policy")]
    audit_log_url: Option<String>,
    /// The witness policy of --audit-log-url (log key, witnesses, quorum).
    #[arg(long, requires = "audit_log_url")]
    audit_log_policy: Option<PathBuf>,
    /// Remote attestation: devices enrol a TPM attestation key and answer the poll's requests
    /// for quotes; the inventory shows each attested, failed (with the reason) or stale.
    /// Implied by every other attestation option.
    #[arg(long)]
    attestation: bool,
    /// Fleet-wide policy: no assignment, director metadata or artifact for a device without a
    /// fresh passing attestation (campaigns hold such devices).
    #[arg(long)]
    require_attestation: bool,
    /// Seconds a passing quote keeps a device attested.
    #[arg(long, default_value_t = rampart_server::attestation::DEFAULT_FRESHNESS.as_secs())]
    attestation_freshness: u64,
    /// The SHA-256 PCRs every quote must cover, e.g. 0,2,13 (must include --agent-pcr;
    /// default: the agent PCR alone).
    #[arg(long, value_delimiter = ',', value_name = "PCR,...")]
    attestation_pcrs: Vec<u8>,
    /// The PCR the device agent measures the booted image and its release claim into.
    #[arg(long, default_value_t = rampart_server::attestation::DEFAULT_AGENT_PCR)]
    agent_pcr: u8,
    /// PEM file of the TPM makers' EK root (and intermediate) certificates: a device whose EK
    /// certificate chains to one enrols without an operator approving its EK.
    #[arg(long, value_name = "FILE")]
    ek_roots: Option<PathBuf>,
    #[command(flatten)]
    evidence: crate::commands::incident_export::EvidenceArgs,
    /// Incident response settings (TOML): `[playbooks.DETECTOR.LEVEL]` tables (`now = [...]`,
    /// `approve = [{action, role}]`) replacing the built-in playbooks of the detectors they
    /// name, and the `[detectors]` table. Playbooks an admin stores through the API take
    /// precedence.
    #[arg(long, value_name = "FILE")]
    incident_config: Option<PathBuf>,
}

/// `LISTENER=MAX[/PER_SOURCE]` of `--connection-cap`.
fn parse_connection_cap(
    text: &str,
) -> Result<(String, rampart_server::connections::ListenerCaps), String> {
    let usage = "expected LISTENER=MAX[/PER_SOURCE], e.g. device=8192/512";
    let (listener, caps) = text.split_once('=').ok_or(usage)?;
    if !["device", "ddi", "management", "metrics"].contains(&listener) {
        return Err(format!(
            "unknown listener {listener:?}: one of device, ddi, management, metrics"
        ));
    }
    let number = |n: &str| {
        n.parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("{n:?} is not a positive number; {usage}"))
    };
    let defaults = rampart_server::connections::ConnectionConfig::default();
    let default_per_source = match listener {
        "device" => defaults.device.max_per_source,
        "ddi" => defaults.ddi.max_per_source,
        "management" => defaults.management.max_per_source,
        _ => defaults.metrics.max_per_source,
    };
    let (max, per_source) = match caps.split_once('/') {
        Some((max, per_source)) => (number(max)?, number(per_source)?),
        None => {
            let max = number(caps)?;
            (max, default_per_source.min(max))
        }
    };
    Ok((
        listener.to_owned(),
        rampart_server::connections::ListenerCaps {
            max_connections: max,
            max_per_source: per_source,
        },
    ))
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
    let cert = read(&args.cert, "server certificate")?;
    let key = read(&args.key, "server key")?;
    let tls = rampart_pki::server_config(
        &cert,
        &key,
        &read(&args.client_ca, "client CA certificate")?,
        &crls,
    )
    .context("building the mutual-TLS configuration")?;
    let mut config = ServerConfig::new(args.db.clone(), tls, args.listen);
    config.audit_anchor = crate::shared::audit_key::audit_anchor_config(
        &args.db,
        args.audit_key.as_deref(),
        args.audit_anchor_interval,
        args.audit_log_url
            .as_deref()
            .zip(args.audit_log_policy.as_deref()),
    )?;
    config.metrics_listen = args.metrics_listen;
    config.poll_interval_secs = args.poll_interval;
    config.last_seen_flush_interval = Duration::from_millis(args.last_seen_flush_ms.max(1));
    if args.risk_watch_interval == 0 {
        anyhow::bail!("--risk-watch-interval must be at least 1 second");
    }
    config.risk_watch.interval = Duration::from_secs(args.risk_watch_interval);
    config.webhooks.allow_networks = args.webhook_allow.clone();
    config.webhooks.secrets_key = secrets_key_path(&args.db, args.secrets_key.as_deref())?;
    config.alerts.syslog = args.syslog.clone();
    config.alerts.facility = args.syslog_facility;
    config.alerts.dedupe_window = Duration::from_secs(args.alert_dedupe_window);
    config.alerts.health.max_failures = args.alert_failing_after_attempts;
    config.alerts.health.max_age = Duration::from_secs(args.alert_failing_after_secs.max(1));
    if args.header_timeout == 0 {
        anyhow::bail!("--header-timeout must be at least 1 second");
    }
    config.connections.header_timeout = Duration::from_secs(args.header_timeout);
    for (listener, caps) in &args.connection_caps {
        // Caps an operator chose are never lowered behind their back.
        config.connections.scale_to_file_limit = false;
        match listener.as_str() {
            "device" => config.connections.device = *caps,
            "ddi" => config.connections.ddi = *caps,
            "management" => config.connections.management = *caps,
            _ => config.connections.metrics = *caps,
        }
    }
    if let Some(addr) = args.management_listen {
        config.management_listen = Some(addr);
        config.management_tls = Some(
            rampart_pki::server_config_without_client_auth(&cert, &key)
                .context("building the management API's TLS configuration")?,
        );
    }
    if let Some(addr) = args.ddi_listen {
        config.ddi_listen = Some(addr);
        config.ddi_tls = Some(
            rampart_pki::server_config_optional_client_auth(
                &cert,
                &key,
                &read(&args.client_ca, "client CA certificate")?,
                &crls,
            )
            .context("building the DDI API's TLS configuration")?,
        );
    }
    if let Some(repo) = &args.repo {
        if !repo.join("metadata/1.root.json").is_file() {
            anyhow::bail!(
                "{} is not an image repository (no metadata/1.root.json); create one with `rampart repo init`",
                repo.display()
            );
        }
        config.image_repo = Some(repo.clone());
    }
    if let Some(url) = &args.artifacts {
        config.artifact_store = Some(rampart_server::ArtifactStore::from_url(url)?);
    }
    if let (Some(root), Some(key)) = (&args.director_root, &args.director_key) {
        let signer = rampart_keys::open_signer(key)
            .with_context(|| format!("opening the director key {key}"))?;
        let mut director =
            rampart_server::DirectorConfig::new(root.clone(), std::sync::Arc::from(signer));
        director.targets_expiry =
            Duration::from_secs(u64::from(args.director_expiry_days.max(1)) * 86_400);
        config.director = Some(director);
    }
    let open_keys = |refs: &[String], role: &str| {
        refs.iter()
            .map(|r| {
                rampart_keys::open_signer(r)
                    .map(std::sync::Arc::from)
                    .with_context(|| format!("opening the {role} key {r}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    };
    config.attestation = attestation_config(args)?;
    config.evidence = args
        .evidence
        .config(config.audit_anchor.as_ref().and_then(|a| a.log.clone()))?;
    if let Some(path) = &args.incident_config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the incident configuration {}", path.display()))?;
        config.incidents = rampart_server::incidents::IncidentConfig::from_toml(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    config.metadata = rampart_server::renewal::MetadataConfig {
        timestamp_keys: open_keys(&args.timestamp_keys, "timestamp")?,
        snapshot_keys: open_keys(&args.snapshot_keys, "snapshot")?,
        renew_when_remaining: args.renew_when_remaining,
        check_interval: Duration::from_secs(args.metadata_check_secs),
        offline_warning: Duration::from_secs(args.expiry_warning_days.saturating_mul(86_400)),
    };
    Ok(config)
}

/// The attestation settings, when any attestation option is given.
fn attestation_config(
    args: &ServerArgs,
) -> anyhow::Result<Option<rampart_server::attestation::AttestationConfig>> {
    let defaults = rampart_server::attestation::AttestationConfig::default();
    let enabled = args.attestation
        || args.require_attestation
        || args.ek_roots.is_some()
        || !args.attestation_pcrs.is_empty()
        || args.agent_pcr != defaults.agent_pcr
        || args.attestation_freshness != defaults.freshness.as_secs();
    if !enabled {
        return Ok(None);
    }
    let ek_roots = match &args.ek_roots {
        None => Vec::new(),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading the EK roots {}", path.display()))?;
            rampart_attest::ekcert::certificates_from_pem(&pem)
                .with_context(|| format!("the EK roots {}", path.display()))?
        }
    };
    let required_pcrs = if args.attestation_pcrs.is_empty() {
        vec![args.agent_pcr]
    } else {
        args.attestation_pcrs.clone()
    };
    Ok(Some(rampart_server::attestation::AttestationConfig {
        freshness: Duration::from_secs(args.attestation_freshness),
        required_pcrs,
        agent_pcr: args.agent_pcr,
        ek_roots,
        require: args.require_attestation,
        ..defaults
    }))
}

/// A syslog facility by name (`auth`, `local0`, ...).
fn parse_facility(name: &str) -> Result<u8, String> {
    rampart_server::alerts::facility_code(name).ok_or_else(|| {
        format!(
            "unknown syslog facility {name:?}; use one of {}",
            rampart_server::alerts::FACILITIES.join(", ")
        )
    })
}

/// The webhook secrets key file: as given; else, with SQLite, the server's default next to the
/// database file (`None` here). A PostgreSQL server has no file of its own to keep it beside,
/// and the key must not live in the database it protects, so there it must be given.
fn secrets_key_path(db: &str, given: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    match given {
        Some(path) => Ok(Some(path.to_path_buf())),
        None if db.starts_with("sqlite:") => Ok(None),
        None => anyhow::bail!(
            "with a PostgreSQL database, give --secrets-key FILE: webhook secrets are sealed in the database with the key in FILE (32 random bytes, created with mode 0600 if missing), which must live outside the database, e.g. /etc/rampart/secrets.key"
        ),
    }
}

/// Runs until SIGINT or SIGTERM, then drains in-flight requests.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = config(&args)?;
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
                "the repository's timestamp is not renewed by the server (no --timestamp-key): run `rampart repo publish` daily",
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
                    "updates not gated on it (--require-attestation gates them)"
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
                "audit heads are not signed (no --audit-key): `rampart audit verify` cannot detect a rewritten history"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_needs_an_explicit_secrets_key() {
        let e = secrets_key_path("postgres://rampart@db/fleet", None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--secrets-key FILE") && e.contains("PostgreSQL"),
            "{e}"
        );
        assert_eq!(
            secrets_key_path("postgres://rampart@db/fleet", Some(Path::new("/etc/r.key"))).unwrap(),
            Some(PathBuf::from("/etc/r.key"))
        );
        // SQLite: the server's default, next to the database file.
        assert_eq!(secrets_key_path("sqlite://r.db", None).unwrap(), None);
    }
}
