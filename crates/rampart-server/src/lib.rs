//! The Rampart update server's I/O shell: the native device API over mutual TLS, the hawkBit
//! DDI API, the management API (HTTPS, bearer tokens) and `GET /metrics`, over one database
//! ([`rampart_db`], SQLite or PostgreSQL); device identity is [`rampart_pki`].
//!
//! ```text
//!             mutual TLS (rustls)            plain HTTP (loopback / ops network)
//! devices ──► MtlsListener ──► device API    Prometheus ──► GET /metrics
//!                  │               │  │
//!      refused handshakes      Db  LastSeen ──(batches, 1 s / 1,000)──► Db
//! ```
//!
//! # Rooms
//!
//! The source is split into rooms by concern, from the bottom up:
//!
//! | room | holds |
//! |---|---|
//! | `helpers` | the clock, random ids, SHA-256 digests, the stop signal |
//! | `observe` | structured logs, Prometheus metrics (and their labels), the audit log writer |
//! | `listen` | the mutual-TLS and HTTPS listeners, request limits, the API error document, failed-authentication throttling, refused-connection summaries |
//! | `delivery` | the hosted image repository, the artifact store, the content-addressed evidence store, the director, the signed quarantine instruction, how an artifact is answered (ranges, ETags) |
//! | `engines` | work on the server's own clock or on events, with no HTTP: the campaign engine, the webhook dispatcher, last-seen batching, metadata renewal, audit anchoring, where a stored report goes, remote attestation (the verifier, recording outcomes, the staleness sweep), the quarantine executor, forensic evidence (the `collect_evidence` executor, upload checks, anchoring, the chain-of-custody export), the incident detectors and every engine's heartbeat |
//! | `state` | the handles every front door is built from (database, audit, metrics, last-seen, repository, campaign engine, webhooks, limits) |
//! | `device` | front door: the native device API (poll, reports, attributes, repository and director routes) |
//! | `ddi` | front door: the hawkBit DDI device API |
//! | `operator` | front door: every management route (devices, groups, releases, assignments, campaigns, webhooks, tokens, DDI tenants, audit) |
//! | `console` | the web console on the management listener: HTML pages over `operator`'s authorization, reads and actions (sessions, fleet, device, campaigns) |
//! | `server` | binds the listeners, builds each front door's state from the same handles, serves, shuts down |
//!
//! The rule, checked in CI by `scripts/check-module-graph.py` with the `[rampart-server]`
//! section of `scripts/module-rules.toml`: a room uses only rooms below it; the three front
//! doors (`device`, `ddi`, `operator`) never import each other (what two of them share lives
//! in a room below); engines name no HTTP framework (they answer no request: a front door
//! turns an engine's error into its answer); and no two modules import each other, at any
//! level. Pure logic goes to a pure crate ([`rampart_rollout`] for campaign rules,
//! `rampart_notify` for webhook signatures, backoff and the rollback-spike detector,
//! [`rampart_ddi`] for the DDI protocol, `rampart_protocol` for the native device protocol).
//!
//! # Where to add what
//!
//! * **Quarantine** (hold a device or group out of every rollout): the state in `rampart_db`,
//!   the decision in `engines::campaigns` (and in the poll answer, `device::api`, by reading
//!   the same stored flag), the routes to set and clear it in `operator::devices`; no front
//!   door calls another.
//! * **Attestation** (a device proves what it runs): the evidence's format and verification in
//!   a pure crate, the device route in `device` (and in `ddi` if DDI clients send it), what a
//!   failed attestation triggers (quarantine, a webhook event) in `engines`, the operator's
//!   view in `operator`.
//! * **Delta updates**: producing and hosting the deltas in `delivery` (next to the artifact
//!   store), choosing a delta for a device in the poll answer (`device`) and the DDI
//!   deployment (`ddi::actions`) through one function in `delivery`.
//!
//! # Running
//!
//! [`run`] binds, serves until the shutdown future completes, drains
//! in-flight requests and writes the pending last-seen times. Tests (and
//! callers that need the bound addresses) use [`Server::bind`] with port 0,
//! read [`Server::local_addr`], then [`Server::serve`]. The device API's routes are described
//! in its module, and every route in the OpenAPI document ([`OPENAPI_JSON`]).

#![forbid(unsafe_code)]

mod console;
mod ddi;
mod delivery;
mod device;
mod engines;
mod helpers;
mod listen;
mod observe;
mod operator;
mod server;
mod state;

// The public paths of the modules before they moved into rooms.
pub use delivery::{artifact_store, director, evidence_store, image_repo};
pub use engines::{
    alerts, attestation, audit_anchor, evidence, incidents, renewal, risk_watch, webhooks,
};
pub use listen::auth_failures;
pub use observe::{audit, log};
/// The management API's tokens and roles (the API itself is in the operator room).
pub mod management {
    pub use crate::operator::{NewToken, OPENAPI_JSON, Permission, Role, create_token};
}

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rampart_db::DbError;
/// Every listener's connection caps (see [`rampart_listen::admission`]).
pub use rampart_listen::admission as connections;
pub use rampart_listen::idle;

pub use artifact_store::{ArtifactStore, ArtifactStoreError};
pub use console::ConsoleConfig;
pub use delivery::director::{DEFAULT_DIRECTOR_TARGETS_EXPIRY, DirectorConfig};
pub use delivery::image_repo::{HostedRepo, HostedRepoError};
pub use device::api::{MAX_REPORT_ID_LEN, ReportStatus};
pub use engines::last_seen::{DEFAULT_BATCH_SIZE, DEFAULT_FLUSH_INTERVAL};
pub use listen::http::ApiError;
pub use listen::mtls::{
    ConnectionCounters, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_IDLE_TIMEOUT, MAX_PENDING_HANDSHAKES,
    MtlsListener, MtlsStream, PeerIdentity, RefusedConnection,
};
pub use observe::metrics::{LATENCY_BUCKETS, Metrics};
pub use operator::{OPENAPI_JSON, Permission, Role};
pub use server::{Server, run};

/// Default poll interval told to devices.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 300;
/// Default request-body limit of the device API.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time allowed to receive a request body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Server configuration. [`ServerConfig::new`] fills in the defaults.
#[derive(Clone)]
pub struct ServerConfig {
    /// `sqlite://PATH` or `postgres://...` (see [`rampart_db::Db::connect`]).
    pub db_url: String,
    /// The mutual-TLS configuration, normally from
    /// [`rampart_pki::server_config`]. To apply a new CRL, build a new one
    /// and restart (hot swapping is future work).
    pub tls: Arc<rustls::ServerConfig>,
    /// Address of the device API (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Poll interval told to devices, seconds (at least 1).
    pub poll_interval_secs: u64,
    /// Address of the plain-HTTP operator listener serving `GET /metrics`;
    /// `None` disables it. Bind it to loopback or an internal network.
    pub metrics_listen: Option<SocketAddr>,
    /// Deadline for a client to complete the TLS handshake.
    pub handshake_timeout: Duration,
    /// An established device connection with no I/O for this long is closed.
    pub idle_timeout: Duration,
    /// Largest accepted request body (413 beyond).
    pub max_body_bytes: usize,
    /// Time allowed to receive a request body (408 beyond).
    pub body_read_timeout: Duration,
    /// Last-seen times are written at least this often.
    pub last_seen_flush_interval: Duration,
    /// Last-seen times are written as soon as this many devices are pending,
    /// in transactions of at most this many rows.
    pub last_seen_batch_size: usize,
    /// Address of the management API (HTTPS, bearer tokens); `None` disables it.
    pub management_listen: Option<SocketAddr>,
    /// TLS configuration of the management API, normally from
    /// [`rampart_pki::server_config_without_client_auth`]; required with
    /// `management_listen`.
    pub management_tls: Option<Arc<rustls::ServerConfig>>,
    /// The image repository directory the server hosts (releases operators assign).
    pub image_repo: Option<std::path::PathBuf>,
    /// Where the artifacts of `image_repo` are read from; `None` is its `targets/` directory.
    /// Needs `image_repo` (the metadata always comes from there, verified). Checked when the
    /// server binds: an object store's bucket must be reachable.
    pub artifact_store: Option<ArtifactStore>,
    /// The Uptane-style director (per-device targets metadata signed with its online key);
    /// needs `image_repo`. With `image_repo` alone, devices get the repository and their
    /// assigned artifacts but no director metadata.
    pub director: Option<DirectorConfig>,
    /// Refused device connections are summarised in the audit log this often.
    pub refusal_summary_interval: Duration,
    /// Webhook delivery: timeouts, retries, concurrency, the rollback-spike detector.
    pub webhooks: engines::webhooks::WebhookConfig,
    /// Incident alerts: the syslog sink, the dedupe window, when a sink counts as failing.
    pub alerts: engines::alerts::AlertConfig,
    /// Address of the hawkBit DDI API (HTTPS; devices authenticate with tokens or a device
    /// certificate); `None` disables it.
    pub ddi_listen: Option<SocketAddr>,
    /// TLS configuration of the DDI API, normally from
    /// [`rampart_pki::server_config_optional_client_auth`]; required with `ddi_listen`.
    pub ddi_tls: Option<Arc<rustls::ServerConfig>>,
    /// Signed audit heads (the audit key, interval, transparency log); `None` signs none.
    pub audit_anchor: Option<engines::audit_anchor::AuditAnchorConfig>,
    /// Every listener's connection caps and the request-head deadline (see [`connections`]).
    pub connections: connections::ConnectionConfig,
    /// Automatic renewal of `image_repo`'s timestamp and snapshot with their online keys, and
    /// expiry warnings for every role (see [`renewal`]).
    pub metadata: engines::renewal::MetadataConfig,
    /// Remote attestation (AK enrolment, quotes, the staleness engine, the policy); `None`
    /// disables it: the poll answer asks for no quote and the attestation routes answer 404.
    pub attestation: Option<engines::attestation::AttestationConfig>,
    /// Forensic evidence (the upload spool, the store, limits and quotas, the transparency log
    /// bundles are anchored in); `None`: the evidence routes answer 404 and `collect_evidence`
    /// actions wait.
    pub evidence: Option<engines::evidence::EvidenceConfig>,
    /// Incident response: the playbooks and the detectors' settings (`--incident-config`).
    pub incidents: engines::incidents::IncidentConfig,
    /// The risk watch: how often it re-assesses the fleet when no import wakes it.
    pub risk_watch: engines::risk_watch::RiskWatchConfig,
    /// The vendor public keys VEX documents must be signed by to be imported (`--vex-signer`);
    /// empty: the VEX import route refuses, saying how to configure it.
    pub vex_signers: Vec<rampart_core::keys::Key>,
    /// The web console on the management listener: session lifetime, idle limit, sessions
    /// per token.
    pub console: ConsoleConfig,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("db_url", &redact_url(&self.db_url))
            .field("listen", &self.listen)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("metrics_listen", &self.metrics_listen)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("body_read_timeout", &self.body_read_timeout)
            .field("last_seen_flush_interval", &self.last_seen_flush_interval)
            .field("last_seen_batch_size", &self.last_seen_batch_size)
            .field("management_listen", &self.management_listen)
            .field("image_repo", &self.image_repo)
            .field("artifact_store", &self.artifact_store)
            .field("director", &self.director)
            .field("metadata", &self.metadata)
            .field("attestation", &self.attestation)
            .finish_non_exhaustive()
    }
}

/// Hides the password of a `postgres://user:password@host/...` URL.
fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{host}")
            }
            _ => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl ServerConfig {
    /// A configuration with the default limits, poll interval and batching,
    /// and no metrics listener.
    pub fn new(
        db_url: impl Into<String>,
        tls: Arc<rustls::ServerConfig>,
        listen: SocketAddr,
    ) -> Self {
        Self {
            db_url: db_url.into(),
            tls,
            listen,
            poll_interval_secs: DEFAULT_POLL_INTERVAL_SECS,
            metrics_listen: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            last_seen_flush_interval: DEFAULT_FLUSH_INTERVAL,
            last_seen_batch_size: DEFAULT_BATCH_SIZE,
            management_listen: None,
            management_tls: None,
            image_repo: None,
            artifact_store: None,
            director: None,
            refusal_summary_interval: listen::refusals::REFUSAL_SUMMARY_INTERVAL,
            webhooks: engines::webhooks::WebhookConfig::default(),
            alerts: engines::alerts::AlertConfig::default(),
            ddi_listen: None,
            ddi_tls: None,
            audit_anchor: None,
            connections: connections::ConnectionConfig::default(),
            metadata: engines::renewal::MetadataConfig::default(),
            attestation: None,
            evidence: None,
            incidents: engines::incidents::IncidentConfig::default(),
            risk_watch: engines::risk_watch::RiskWatchConfig::default(),
            vex_signers: Vec::new(),
            console: ConsoleConfig::default(),
        }
    }

    /// Checks the settings without binding or opening anything: what [`Server::bind`] refuses
    /// before it opens the database, the detectors' settings included (`rampart server
    /// check-config` runs it).
    pub fn check(&self) -> Result<(), ServerError> {
        self.validate()?;
        engines::detectors::detector_config(self).map_err(ServerError::Config)?;
        Ok(())
    }

    fn validate(&self) -> Result<(), ServerError> {
        let problem = if self.poll_interval_secs == 0 {
            Some("poll_interval_secs must be at least 1")
        } else if self.handshake_timeout.is_zero() {
            Some("handshake_timeout must not be zero")
        } else if self.idle_timeout.is_zero() {
            Some("idle_timeout must not be zero")
        } else if self.body_read_timeout.is_zero() {
            Some("body_read_timeout must not be zero")
        } else if self.max_body_bytes == 0 {
            Some("max_body_bytes must not be zero")
        } else if self.last_seen_flush_interval.is_zero() {
            Some("last_seen_flush_interval must not be zero")
        } else if self.last_seen_batch_size == 0 {
            Some("last_seen_batch_size must not be zero")
        } else if self.management_listen.is_some() && self.management_tls.is_none() {
            Some("management_listen needs management_tls (the management API is HTTPS only)")
        } else if self.artifact_store.is_some() && self.image_repo.is_none() {
            Some(
                "artifact_store needs image_repo: the artifacts' metadata comes from the image repository (`rampart server --repo DIR --artifacts URL`)",
            )
        } else if self.ddi_listen.is_some() && self.ddi_tls.is_none() {
            Some("ddi_listen needs ddi_tls (the DDI API is HTTPS only)")
        } else if self.refusal_summary_interval.is_zero() {
            Some("refusal_summary_interval must not be zero")
        } else if self
            .audit_anchor
            .as_ref()
            .is_some_and(|a| a.interval.is_zero())
        {
            Some("audit_anchor.interval must not be zero")
        } else if self.risk_watch.interval < Duration::from_secs(1) {
            Some("risk_watch.interval must be at least 1 second")
        } else if self.connections.header_timeout.is_zero() {
            Some("connections.header_timeout must not be zero")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(ServerError::Config(problem.into()));
        }
        if let Some(attestation) = &self.attestation {
            attestation.validate().map_err(ServerError::Config)?;
        }
        if let Some(evidence) = &self.evidence {
            evidence.validate().map_err(ServerError::Config)?;
        }
        self.alerts.validate().map_err(ServerError::Config)?;
        self.console.validate().map_err(ServerError::Config)?;
        Ok(())
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("invalid server configuration: {0}")]
    Config(String),
    #[error("opening the database: {0}")]
    Db(#[from] DbError),
    #[error(transparent)]
    ArtifactStore(#[from] ArtifactStoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(
            redact_url("postgres://rampart:s3cret@db:5432/fleet"),
            "postgres://rampart:***@db:5432/fleet"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            redact_url("sqlite:///var/lib/r.db"),
            "sqlite:///var/lib/r.db"
        );
    }
}
