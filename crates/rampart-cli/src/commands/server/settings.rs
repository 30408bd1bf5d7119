//! `rampart server`'s settings: one definition ([`Settings`]) serves the TOML file, the flags
//! and the environment, so the three can never drift apart. Each field is a TOML key in its
//! section, a flag (its clap id is the dotted key, e.g. `device_api.poll_interval_secs`) and a
//! `RAMPART_SERVER_*` variable ([`env_var`]).
//!
//! This module and its children are pure: text in, settings and problems out. `file` parses a
//! file's text (every unknown key and wrong type reported with its line), `layers` puts flag
//! or environment over file over default ([`resolve`]) and remembers where each value came
//! from, and `checks` checks values and combinations ([`validate`]); every problem is
//! reported, each saying what to change. Reading the files the settings name is the caller's
//! (`super::build`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Args;
use serde::{Deserialize, Serialize};

mod checks;
mod file;
mod layers;

pub use checks::{
    attestation_config, evidence_config, is_postgres, parse_connection_cap, validate,
};
pub use file::{FileLayer, parse_file};
pub use layers::{Resolved, env_var, flag_of, redact_url, resolve};

/// Largest configuration file read, in bytes: a real one is a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The database URL used when none is given.
pub const DEFAULT_DB_URL: &str = "sqlite://rampart-server.db";

/// The listeners whose connections `connections.caps` may bound.
pub const CAP_LISTENERS: [&str; 4] = ["device", "ddi", "management", "metrics"];

/// Every server setting, by section. A field left `None` is not set by this layer.
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub database: Database,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub tls: Tls,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub device_api: DeviceApi,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub management_api: ManagementApi,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub ddi_api: DdiApi,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub metrics: Metrics,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub connections: Connections,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub repository: Repository,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub director: Director,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub webhooks: Webhooks,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub alerts: Alerts,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub audit: Audit,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub attestation: Attestation,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub evidence: Evidence,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub incidents: Incidents,
    #[command(flatten)]
    #[serde(default, skip_serializing_if = "is_unset")]
    pub risk: Risk,
}

/// `[database]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[database]")]
pub struct Database {
    /// Database: sqlite://PATH (embedded, the default: sqlite://rampart-server.db) or
    /// postgres://USER:PASSWORD@HOST/DB.
    // RAMPART_DB, not RAMPART_SERVER_DB: the variable predates the configuration file.
    #[arg(
        id = "database.url",
        long = "db",
        env = "RAMPART_DB",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub url: Option<String>,
    /// The key webhook secrets are sealed with in the database: a file of 32 random bytes,
    /// created (mode 0600) if missing. Default with SQLite: NAME.secrets.key next to NAME.db;
    /// required with PostgreSQL.
    #[arg(
        id = "database.secrets_key",
        long = "secrets-key",
        env = "RAMPART_SERVER_SECRETS_KEY",
        value_name = "FILE"
    )]
    pub secrets_key: Option<PathBuf>,
}

/// `[tls]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[tls]")]
pub struct Tls {
    /// The server's TLS certificate chain (PEM), e.g. from `rampart ca server-cert`. Required.
    #[arg(
        id = "tls.cert",
        long = "cert",
        env = "RAMPART_SERVER_CERT",
        value_name = "FILE"
    )]
    pub cert: Option<PathBuf>,
    /// The server's private key (PEM). Required.
    #[arg(
        id = "tls.key",
        long = "key",
        env = "RAMPART_SERVER_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// Manufacturer CA certificate(s) device certificates must chain to (PEM). Required.
    #[arg(
        id = "tls.client_ca",
        long = "client-ca",
        env = "RAMPART_SERVER_CLIENT_CA",
        value_name = "FILE"
    )]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation list(s) (PEM) of the client CAs; every client CA needs one.
    /// Required (repeatable; comma-separated in the environment).
    #[arg(
        id = "tls.crls",
        long = "crl",
        env = "RAMPART_SERVER_CRL",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub crls: Option<Vec<PathBuf>>,
}

/// `[device_api]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[device_api]")]
pub struct DeviceApi {
    /// Address of the device API (mutual TLS). Default 0.0.0.0:8443.
    #[arg(
        id = "device_api.listen",
        long = "listen",
        env = "RAMPART_SERVER_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<SocketAddr>,
    /// Poll interval told to devices, seconds. Default 300.
    #[arg(
        id = "device_api.poll_interval_secs",
        long = "poll-interval",
        env = "RAMPART_SERVER_POLL_INTERVAL",
        value_name = "SECS"
    )]
    pub poll_interval_secs: Option<u64>,
    /// Last-seen times are written to the database at least this often, milliseconds.
    /// Default 1000.
    #[arg(
        id = "device_api.last_seen_flush_ms",
        long = "last-seen-flush-ms",
        env = "RAMPART_SERVER_LAST_SEEN_FLUSH_MS",
        value_name = "MS"
    )]
    pub last_seen_flush_ms: Option<u64>,
}

/// `[management_api]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[management_api]")]
pub struct ManagementApi {
    /// Address of the management API (HTTPS with the [tls] certificate, bearer tokens from
    /// `rampart token create`). Default: off.
    #[arg(
        id = "management_api.listen",
        long = "management-listen",
        env = "RAMPART_SERVER_MANAGEMENT_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<SocketAddr>,
}

/// `[ddi_api]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[ddi_api]")]
pub struct DdiApi {
    /// Address of the hawkBit DDI API (HTTPS with the [tls] certificate) for SWUpdate, RAUC and
    /// other hawkBit clients; tenants and tokens come from `rampart ddi`. Default: off.
    #[arg(
        id = "ddi_api.listen",
        long = "ddi-listen",
        env = "RAMPART_SERVER_DDI_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<SocketAddr>,
}

/// `[metrics]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[metrics]")]
pub struct Metrics {
    /// Plain-HTTP address serving GET /metrics (Prometheus); keep it on loopback or an ops
    /// network. Default: off.
    #[arg(
        id = "metrics.listen",
        long = "metrics-listen",
        env = "RAMPART_SERVER_METRICS_LISTEN",
        value_name = "ADDR"
    )]
    pub listen: Option<SocketAddr>,
}

/// `[connections]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[connections]")]
pub struct Connections {
    /// Seconds a client has to send a whole request head; also how long a kept-alive
    /// connection may wait idle for its next request. Default 10.
    #[arg(
        id = "connections.header_timeout_secs",
        long = "header-timeout",
        env = "RAMPART_SERVER_HEADER_TIMEOUT",
        value_name = "SECS"
    )]
    pub header_timeout_secs: Option<u64>,
    /// A listener's connection caps, LISTENER=MAX[/PER_SOURCE] with LISTENER one of device,
    /// ddi, management, metrics (repeatable), e.g. `device=8192/512`. Defaults: device and ddi
    /// 4096/256, management 256/32, metrics 64/16, lowered to fit the open-file limit; caps
    /// given here that do not fit refuse to start.
    #[arg(
        id = "connections.caps",
        long = "connection-cap",
        env = "RAMPART_SERVER_CONNECTION_CAP",
        value_delimiter = ',',
        value_name = "LISTENER=MAX[/PER_SOURCE]"
    )]
    pub caps: Option<Vec<String>>,
}

/// `[repository]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[repository]")]
pub struct Repository {
    /// The image repository directory to host (from `rampart repo init`); its releases are
    /// what operators assign.
    #[arg(
        id = "repository.dir",
        long = "repo",
        env = "RAMPART_SERVER_REPO",
        value_name = "DIR"
    )]
    pub dir: Option<PathBuf>,
    /// Where the repository's artifacts are read from: s3://BUCKET or s3://BUCKET/PREFIX
    /// (objects PREFIX/targets/<path>, uploaded with `rampart repo upload-artifacts`; endpoint,
    /// region and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY). Default: the repository's targets/ directory. Metadata always
    /// comes from the repository directory.
    #[arg(
        id = "repository.artifacts",
        long = "artifacts",
        env = "RAMPART_SERVER_ARTIFACTS",
        value_name = "URL"
    )]
    pub artifacts: Option<String>,
    /// A timestamp key of the repository (file:PATH, passphrase from RAMPART_KEY_PASSPHRASE,
    /// or pkcs11:token=..;object=..; repeat up to the role's threshold): the server renews the
    /// timestamp before it expires, so updates never stop for want of a `rampart repo publish`.
    #[arg(
        id = "repository.timestamp_keys",
        long = "timestamp-key",
        env = "RAMPART_SERVER_TIMESTAMP_KEY",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    pub timestamp_keys: Option<Vec<String>>,
    /// A snapshot key of the repository (as --timestamp-key): the server renews the snapshot
    /// too.
    #[arg(
        id = "repository.snapshot_keys",
        long = "snapshot-key",
        env = "RAMPART_SERVER_SNAPSHOT_KEY",
        value_delimiter = ',',
        value_name = "KEY"
    )]
    pub snapshot_keys: Option<Vec<String>>,
    /// Renew the timestamp (and snapshot) once less than this fraction of its validity is
    /// left. Default 0.5.
    #[arg(
        id = "repository.renew_when_remaining",
        long = "renew-when-remaining",
        env = "RAMPART_SERVER_RENEW_WHEN_REMAINING",
        value_name = "FRACTION"
    )]
    pub renew_when_remaining: Option<f64>,
    /// Seconds between looks at the metadata's expiries (renewals, metrics, warnings).
    /// Default 60.
    #[arg(
        id = "repository.metadata_check_secs",
        long = "metadata-check-secs",
        env = "RAMPART_SERVER_METADATA_CHECK_SECS",
        value_name = "SECS"
    )]
    pub metadata_check_secs: Option<u64>,
    /// Warn this many days before an offline role (root, targets, delegated roles, the
    /// director root) expires: a person with its offline keys must sign a new version.
    /// Default 21.
    #[arg(
        id = "repository.expiry_warning_days",
        long = "expiry-warning-days",
        env = "RAMPART_SERVER_EXPIRY_WARNING_DAYS",
        value_name = "DAYS"
    )]
    pub expiry_warning_days: Option<u64>,
}

/// `[director]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[director]")]
pub struct Director {
    /// The director root (`rampart director init` writes DIR/root.json); with the director
    /// key, the server signs each device's director targets metadata. Needs the repository.
    #[arg(
        id = "director.root",
        long = "director-root",
        env = "RAMPART_SERVER_DIRECTOR_ROOT",
        value_name = "FILE"
    )]
    pub root: Option<PathBuf>,
    /// The director's online key (file:PATH, passphrase from RAMPART_KEY_PASSPHRASE, or
    /// pkcs11:token=..;object=..).
    #[arg(
        id = "director.key",
        long = "director-key",
        env = "RAMPART_SERVER_DIRECTOR_KEY",
        value_name = "KEY"
    )]
    pub key: Option<String>,
    /// Days each signed director targets metadata stays valid. Default 7.
    #[arg(
        id = "director.expiry_days",
        long = "director-expiry-days",
        env = "RAMPART_SERVER_DIRECTOR_EXPIRY_DAYS",
        value_name = "DAYS"
    )]
    pub expiry_days: Option<u32>,
}

/// `[webhooks]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[webhooks]")]
pub struct Webhooks {
    /// Let webhooks reach this internal network (CIDR such as 10.20.0.0/16, or one address;
    /// repeatable). Without it, webhook URLs leading to loopback, private, link-local (cloud
    /// metadata) and other internal addresses are refused.
    #[arg(
        id = "webhooks.allow",
        long = "webhook-allow",
        env = "RAMPART_SERVER_WEBHOOK_ALLOW",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub allow: Option<Vec<String>>,
}

/// `[alerts]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[alerts]")]
pub struct Alerts {
    /// Send incident alerts to this syslog receiver as RFC 5424 messages: udp://HOST:PORT (one
    /// datagram each) or tcp://HOST:PORT (octet-counted frames, retried with backoff while the
    /// receiver is down). Alerts also go to every webhook subscribed to `incident.alert`.
    #[arg(
        id = "alerts.syslog",
        long = "syslog",
        env = "RAMPART_SERVER_SYSLOG",
        value_name = "udp://HOST:PORT|tcp://HOST:PORT"
    )]
    pub syslog: Option<String>,
    /// The syslog facility of incident alerts (kern, user, daemon, auth, authpriv, audit,
    /// alert, local0 ... local7). Default auth.
    #[arg(
        id = "alerts.syslog_facility",
        long = "syslog-facility",
        env = "RAMPART_SERVER_SYSLOG_FACILITY",
        value_name = "NAME"
    )]
    pub syslog_facility: Option<String>,
    /// Seconds within which repeats of one incident's alert are held and sent as one update.
    /// Default 300.
    #[arg(
        id = "alerts.dedupe_window_secs",
        long = "alert-dedupe-window",
        env = "RAMPART_SERVER_ALERT_DEDUPE_WINDOW",
        value_name = "SECS"
    )]
    pub dedupe_window_secs: Option<u64>,
    /// An alert sink counts as failing after this many failed attempts of one alert in a row
    /// (or an alert waiting over --alert-failing-after-secs); the server then raises an
    /// alert_delivery_failing incident and alerts through the other sink.
    #[arg(
        id = "alerts.failing_after_attempts",
        long = "alert-failing-after-attempts",
        env = "RAMPART_SERVER_ALERT_FAILING_AFTER_ATTEMPTS",
        value_name = "N"
    )]
    pub failing_after_attempts: Option<u32>,
    /// Seconds an alert may wait undelivered before its sink counts as failing.
    #[arg(
        id = "alerts.failing_after_secs",
        long = "alert-failing-after-secs",
        env = "RAMPART_SERVER_ALERT_FAILING_AFTER_SECS",
        value_name = "SECS"
    )]
    pub failing_after_secs: Option<u64>,
}

/// `[audit]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[audit]")]
pub struct Audit {
    /// The audit key (an Ed25519 signed-note key) that signs heads of the audit log, created
    /// (mode 0600) on first use. Default: PATH.audit-key next to a sqlite://PATH database;
    /// with PostgreSQL no heads are signed unless it is given. Its verifier key is printed at
    /// start (and by `rampart log vkey FILE`) for `rampart audit verify --anchor-key`.
    #[arg(
        id = "audit.key",
        long = "audit-key",
        env = "RAMPART_SERVER_AUDIT_KEY",
        value_name = "FILE"
    )]
    pub key: Option<PathBuf>,
    /// Seconds between signed audit heads (one is signed only when records were added).
    /// Default 300.
    #[arg(
        id = "audit.anchor_interval_secs",
        long = "audit-anchor-interval",
        env = "RAMPART_SERVER_AUDIT_ANCHOR_INTERVAL",
        value_name = "SECS"
    )]
    pub anchor_interval_secs: Option<u64>,
    /// A transparency log (`rampart log serve`) every signed audit head is appended to, so its
    /// witnesses vouch for it. Needs --audit-log-policy.
    #[arg(
        id = "audit.log_url",
        long = "audit-log-url",
        env = "RAMPART_SERVER_AUDIT_LOG_URL",
        value_name = "URL"
    )]
    pub log_url: Option<String>,
    /// The witness policy of --audit-log-url (log key, witnesses, quorum).
    #[arg(
        id = "audit.log_policy",
        long = "audit-log-policy",
        env = "RAMPART_SERVER_AUDIT_LOG_POLICY",
        value_name = "FILE"
    )]
    pub log_policy: Option<PathBuf>,
}

/// `[attestation]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[attestation]")]
pub struct Attestation {
    /// Remote attestation: devices enrol a TPM attestation key and answer the poll's requests
    /// for quotes; the inventory shows each attested, failed (with the reason) or stale.
    /// Implied by every other attestation setting.
    #[arg(
        id = "attestation.enabled",
        long = "attestation",
        env = "RAMPART_SERVER_ATTESTATION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub enabled: Option<bool>,
    /// Fleet-wide policy: no assignment, director metadata or artifact for a device without a
    /// fresh passing attestation (campaigns hold such devices).
    #[arg(
        id = "attestation.require",
        long = "require-attestation",
        env = "RAMPART_SERVER_REQUIRE_ATTESTATION",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub require: Option<bool>,
    /// Seconds a passing quote keeps a device attested. Default 3600.
    #[arg(
        id = "attestation.freshness_secs",
        long = "attestation-freshness",
        env = "RAMPART_SERVER_ATTESTATION_FRESHNESS",
        value_name = "SECS"
    )]
    pub freshness_secs: Option<u64>,
    /// The SHA-256 PCRs every quote must cover, e.g. 0,2,13 (must include the agent PCR;
    /// default: the agent PCR alone).
    #[arg(
        id = "attestation.pcrs",
        long = "attestation-pcrs",
        env = "RAMPART_SERVER_ATTESTATION_PCRS",
        value_delimiter = ',',
        value_name = "PCR,..."
    )]
    pub pcrs: Option<Vec<u8>>,
    /// The PCR the device agent measures the booted image and its release claim into.
    /// Default 13.
    #[arg(
        id = "attestation.agent_pcr",
        long = "agent-pcr",
        env = "RAMPART_SERVER_AGENT_PCR",
        value_name = "PCR"
    )]
    pub agent_pcr: Option<u8>,
    /// PEM file of the TPM makers' EK root (and intermediate) certificates: a device whose EK
    /// certificate chains to one enrols without an operator approving its EK.
    #[arg(
        id = "attestation.ek_roots",
        long = "ek-roots",
        env = "RAMPART_SERVER_EK_ROOTS",
        value_name = "FILE"
    )]
    pub ek_roots: Option<PathBuf>,
}

/// `[evidence]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[evidence]")]
pub struct Evidence {
    /// Keep forensic evidence: uploads in progress in DIR/incoming, verified bundles in
    /// DIR/bundles (content-addressed) unless --evidence-store is given. Bundles are anchored
    /// in --audit-log-url's transparency log when one is given.
    #[arg(
        id = "evidence.dir",
        long = "evidence-dir",
        env = "RAMPART_SERVER_EVIDENCE_DIR",
        value_name = "DIR"
    )]
    pub dir: Option<PathBuf>,
    /// Store verified bundles in an S3-compatible object store instead (s3://BUCKET[/PREFIX],
    /// objects PREFIX/evidence/<sha256>; endpoint and credentials from the AWS_* variables).
    #[arg(
        id = "evidence.store",
        long = "evidence-store",
        env = "RAMPART_SERVER_EVIDENCE_STORE",
        value_name = "URL"
    )]
    pub store: Option<String>,
    /// Largest evidence bundle one request accepts, in bytes.
    #[arg(
        id = "evidence.max_bundle_bytes",
        long = "evidence-max-bytes",
        env = "RAMPART_SERVER_EVIDENCE_MAX_BYTES",
        value_name = "BYTES"
    )]
    pub max_bundle_bytes: Option<u64>,
    /// Largest chunk one upload request may carry, in bytes (at most 1 MiB).
    #[arg(
        id = "evidence.chunk_bytes",
        long = "evidence-chunk-bytes",
        env = "RAMPART_SERVER_EVIDENCE_CHUNK_BYTES",
        value_name = "BYTES"
    )]
    pub chunk_bytes: Option<u64>,
    /// Bytes of evidence one device may hold (uploads in progress and bundles stored).
    #[arg(
        id = "evidence.device_bytes",
        long = "evidence-device-bytes",
        env = "RAMPART_SERVER_EVIDENCE_DEVICE_BYTES",
        value_name = "BYTES"
    )]
    pub device_bytes: Option<u64>,
    /// Evidence bundles one device may hold.
    #[arg(
        id = "evidence.device_bundles",
        long = "evidence-device-bundles",
        env = "RAMPART_SERVER_EVIDENCE_DEVICE_BUNDLES",
        value_name = "N"
    )]
    pub device_bundles: Option<u64>,
    /// Bytes of evidence one incident may hold.
    #[arg(
        id = "evidence.incident_bytes",
        long = "evidence-incident-bytes",
        env = "RAMPART_SERVER_EVIDENCE_INCIDENT_BYTES",
        value_name = "BYTES"
    )]
    pub incident_bytes: Option<u64>,
    /// Evidence bundles one incident may hold.
    #[arg(
        id = "evidence.incident_bundles",
        long = "evidence-incident-bundles",
        env = "RAMPART_SERVER_EVIDENCE_INCIDENT_BUNDLES",
        value_name = "N"
    )]
    pub incident_bundles: Option<u64>,
}

/// `[incidents]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[incidents]")]
pub struct Incidents {
    /// Incident response settings (TOML): `[playbooks.DETECTOR.LEVEL]` tables (`now = [...]`,
    /// `approve = [{action, role}]`) replacing the built-in playbooks of the detectors they
    /// name, and the `[detectors]` table. Playbooks an admin stores through the API take
    /// precedence.
    #[arg(
        id = "incidents.config",
        long = "incident-config",
        env = "RAMPART_SERVER_INCIDENT_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
}

/// `[risk]`
#[derive(Args, Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
#[command(next_help_heading = "[risk]")]
pub struct Risk {
    /// Seconds between the risk watch's passes (advisory exposure and `risk.advisory` alerts)
    /// when no advisory import wakes it; an import that changed the feed runs one at once.
    /// Default 30.
    #[arg(
        id = "risk.watch_interval_secs",
        long = "risk-watch-interval",
        env = "RAMPART_SERVER_RISK_WATCH_INTERVAL",
        value_name = "SECS"
    )]
    pub watch_interval_secs: Option<u64>,
    /// A vendor public key VEX documents must be signed by to be imported (POST
    /// /api/v1/risk/vex): the JSON `rampart key export-public` prints. Repeatable; without
    /// one the server imports no VEX.
    #[arg(
        id = "risk.vex_signers",
        long = "vex-signer",
        env = "RAMPART_SERVER_VEX_SIGNER",
        value_delimiter = ',',
        value_name = "PUBKEY"
    )]
    pub vex_signers: Option<Vec<PathBuf>>,
}

/// A section with nothing set is left out of a rendered configuration (not a bare header).
fn is_unset<T: Default + PartialEq>(section: &T) -> bool {
    *section == T::default()
}

impl Settings {
    /// The built-in defaults: what applies where neither the file, the environment nor a flag
    /// says otherwise. Settings that are off unless given (the optional listeners, the
    /// repository, the director, ...) stay unset.
    pub fn defaults() -> Settings {
        use rampart_server::{alerts, attestation, audit_anchor, connections, evidence};
        use rampart_server::{renewal, risk_watch};
        Settings {
            database: Database {
                url: Some(DEFAULT_DB_URL.to_owned()),
                secrets_key: None,
            },
            device_api: DeviceApi {
                listen: Some(SocketAddr::from(([0, 0, 0, 0], 8443))),
                poll_interval_secs: Some(rampart_server::DEFAULT_POLL_INTERVAL_SECS),
                last_seen_flush_ms: Some(rampart_server::DEFAULT_FLUSH_INTERVAL.as_millis() as u64),
            },
            connections: Connections {
                header_timeout_secs: Some(connections::DEFAULT_HEADER_TIMEOUT.as_secs()),
                caps: None,
            },
            repository: Repository {
                renew_when_remaining: Some(renewal::DEFAULT_RENEW_WHEN_REMAINING),
                metadata_check_secs: Some(renewal::DEFAULT_METADATA_CHECK_INTERVAL.as_secs()),
                expiry_warning_days: Some(renewal::DEFAULT_OFFLINE_WARNING.as_secs() / 86_400),
                ..Repository::default()
            },
            director: Director {
                expiry_days: Some(
                    (rampart_server::DEFAULT_DIRECTOR_TARGETS_EXPIRY.as_secs() / 86_400) as u32,
                ),
                ..Director::default()
            },
            alerts: Alerts {
                syslog: None,
                syslog_facility: Some("auth".to_owned()),
                dedupe_window_secs: Some(alerts::DEFAULT_DEDUPE_WINDOW.as_secs()),
                failing_after_attempts: Some(alerts::DEFAULT_FAILING_AFTER_ATTEMPTS),
                failing_after_secs: Some(alerts::DEFAULT_FAILING_AFTER.as_secs()),
            },
            audit: Audit {
                anchor_interval_secs: Some(audit_anchor::DEFAULT_ANCHOR_INTERVAL.as_secs()),
                ..Audit::default()
            },
            attestation: Attestation {
                enabled: Some(false),
                require: Some(false),
                freshness_secs: Some(attestation::DEFAULT_FRESHNESS.as_secs()),
                pcrs: None,
                agent_pcr: Some(attestation::DEFAULT_AGENT_PCR),
                ek_roots: None,
            },
            evidence: Evidence {
                dir: None,
                store: None,
                max_bundle_bytes: Some(evidence::DEFAULT_MAX_BUNDLE_BYTES),
                chunk_bytes: Some(evidence::DEFAULT_CHUNK_BYTES),
                device_bytes: Some(evidence::DEFAULT_DEVICE_BYTES),
                device_bundles: Some(evidence::DEFAULT_DEVICE_BUNDLES),
                incident_bytes: Some(evidence::DEFAULT_INCIDENT_BYTES),
                incident_bundles: Some(evidence::DEFAULT_INCIDENT_BUNDLES),
            },
            risk: Risk {
                watch_interval_secs: Some(risk_watch::DEFAULT_INTERVAL.as_secs()),
                vex_signers: None,
            },
            ..Settings::default()
        }
    }

    /// Makes the file's relative paths relative to `dir` (the file's directory), so a
    /// configuration means the same whatever directory the server starts in. Key references
    /// (`file:PATH` or a bare path; `pkcs11:` ones name no file) and a `sqlite://PATH` database
    /// are paths too.
    pub fn resolve_paths_against(&mut self, dir: &Path) {
        let path = |p: &mut Option<PathBuf>| {
            if let Some(p) = p.as_mut().filter(|p| p.is_relative()) {
                *p = dir.join(&*p);
            }
        };
        let paths = |ps: &mut Option<Vec<PathBuf>>| {
            for p in ps.iter_mut().flatten().filter(|p| p.is_relative()) {
                *p = dir.join(&*p);
            }
        };
        let key = |k: &mut String| {
            if k.starts_with("pkcs11:") {
                return;
            }
            let file = Path::new(k.strip_prefix("file:").unwrap_or(k));
            if file.is_relative() {
                *k = format!("file:{}", dir.join(file).display());
            }
        };
        if let Some(url) = self.database.url.as_mut() {
            *url = sqlite_url_against(url, dir);
        }
        path(&mut self.database.secrets_key);
        path(&mut self.tls.cert);
        path(&mut self.tls.key);
        path(&mut self.tls.client_ca);
        paths(&mut self.tls.crls);
        path(&mut self.repository.dir);
        self.repository
            .timestamp_keys
            .iter_mut()
            .flatten()
            .chain(self.repository.snapshot_keys.iter_mut().flatten())
            .chain(self.director.key.iter_mut())
            .for_each(key);
        path(&mut self.director.root);
        path(&mut self.audit.key);
        path(&mut self.audit.log_policy);
        path(&mut self.attestation.ek_roots);
        path(&mut self.evidence.dir);
        path(&mut self.incidents.config);
        paths(&mut self.risk.vex_signers);
    }

    fn to_table(&self) -> Result<toml::Table, SettingsError> {
        toml::Table::try_from(self).map_err(|e| SettingsError::Internal(e.to_string()))
    }

    fn from_table(table: toml::Table) -> Result<Settings, SettingsError> {
        table
            .try_into()
            .map_err(|e: toml::de::Error| SettingsError::Internal(e.message().to_owned()))
    }
}

/// A `sqlite://PATH` URL with a relative PATH made relative to `dir`; any other URL as it is.
fn sqlite_url_against(url: &str, dir: &Path) -> String {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return url.to_owned();
    };
    let (path, query) = match rest.split_once('?') {
        Some((path, query)) => (path, format!("?{query}")),
        None => (rest, String::new()),
    };
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return url.to_owned();
    }
    format!("sqlite://{}{query}", dir.join(path).display())
}

/// Why settings could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The configuration has problems; each says what to change.
    #[error("{}", Problems(.0))]
    Problems(Vec<Problem>),
    /// Settings that parsed could not be layered (a bug, not a configuration mistake).
    #[error("layering the server settings failed: {0} (please report this)")]
    Internal(String),
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The dotted key (`tls.cert`), or empty for the file as a whole.
    pub key: String,
    /// Where the value came from (`server.toml line 4`, `--cert`), when known.
    pub origin: Option<String>,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.is_empty(), &self.origin) {
            (true, None) => write!(f, "{}", self.message),
            (true, Some(origin)) => write!(f, "{origin}: {}", self.message),
            (false, None) => write!(f, "{}: {}", self.key, self.message),
            (false, Some(origin)) => write!(f, "{} ({origin}): {}", self.key, self.message),
        }
    }
}

/// Problems shown one a line.
struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        write!(
            f,
            "the server configuration has {n} problem{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for problem in self.0 {
            write!(f, "\n  - {problem}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
