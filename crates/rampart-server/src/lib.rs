//! The Rampart update server's I/O shell.
//!
//! This first slice serves the **device API** over mutual TLS (see
//! [below](#device-api)) and, on an optional separate plain-HTTP
//! listener meant for operators, **`GET /metrics`** in the Prometheus text
//! format. Storage is [`rampart_db`] (SQLite or PostgreSQL); device identity
//! is [`rampart_pki`].
//!
//! ```text
//!             mutual TLS (rustls)            plain HTTP (loopback / ops network)
//! devices ──► MtlsListener ──► device API    Prometheus ──► GET /metrics
//!                  │               │  │
//!      refused handshakes      Db  LastSeen ──(batches, 1 s / 1,000)──► Db
//! ```
//!
//! # Device API
//!
//! The caller is the device named by its verified client certificate
//! ([`PeerIdentity`]); devices without a certificate, with one from another
//! CA, expired or revoked by CRL never reach the API: they are refused at the
//! handshake and counted. Routes:
//!
//! * `POST /device/v1/poll` — body: the device's facts or `{}`; answers
//!   `{"device_id", "poll_interval_secs", "assignment"}` with an `ETag`
//!   (`If-None-Match` → 304); `assignment` is `{"id", "target",
//!   "director_version"}` or null. Registers the device on first contact.
//! * `POST /device/v1/reports` — `{"id", "status", "assignment"?,
//!   "progress"?, "details"?}`; stored before the 201, an identical repeat is
//!   200.
//! * `PUT /device/v1/attributes` — `{"mode": "merge"|"replace", "data": {...}}`.
//! * With [`ServerConfig::image_repo`]: `GET /device/v1/repo/metadata/{file}`
//!   and `GET /device/v1/repo/targets/{path}` (only the device's assigned
//!   artifacts; `Range`, `ETag`), see [`delivery`](crate::HostedRepo), read from the
//!   repository's `targets/` or, with [`ServerConfig::artifact_store`], an S3-compatible object
//!   store (see [`artifact_store`]); with
//!   [`ServerConfig::director`] also `GET /device/v1/director/{root.json,
//!   N.root.json, targets.json}`, see [`director`].
//!
//! Errors are `{"error": "<code>", "detail": "<explanation>"}` with a 4xx for
//! every client mistake (see [`ApiError`]).
//!
//! # Running
//!
//! [`run`] binds, serves until the shutdown future completes, drains
//! in-flight requests and writes the pending last-seen times. Tests (and
//! callers that need the bound addresses) use [`Server::bind`] with port 0,
//! read [`Server::local_addr`], then [`Server::serve`].

#![forbid(unsafe_code)]

mod ddi;
mod delivery;
mod device;
mod engines;
mod helpers;
mod listen;
mod observe;
mod operator;

// The public paths of the modules before they moved into rooms.
pub use delivery::{artifact_store, director, image_repo};
pub use engines::{audit_anchor, renewal, webhooks};
pub use listen::auth_failures;
pub use observe::{audit, log};
/// The management API's tokens and roles (the API itself is in the operator room).
pub mod management {
    pub use crate::operator::{NewToken, OPENAPI_JSON, Permission, Role, create_token};
}

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use rampart_db::{Db, DbError};
/// Every listener's connection caps (see [`rampart_listen::admission`]).
pub use rampart_listen::admission as connections;
pub use rampart_listen::idle;
use rampart_listen::serve as http_serve;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use artifact_store::{ArtifactStore, ArtifactStoreError};
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

/// Default poll interval told to devices.
pub const DEFAULT_POLL_INTERVAL_SECS: u64 = 300;
/// Default request-body limit of the device API.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time allowed to receive a request body.
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for the metrics listener's open connections.
const METRICS_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
            ddi_listen: None,
            ddi_tls: None,
            audit_anchor: None,
            connections: connections::ConnectionConfig::default(),
            metadata: engines::renewal::MetadataConfig::default(),
        }
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
        } else if self.connections.header_timeout.is_zero() {
            Some("connections.header_timeout must not be zero")
        } else {
            None
        };
        match problem {
            Some(problem) => Err(ServerError::Config(problem.into())),
            None => Ok(()),
        }
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

/// A bound, not yet serving, server.
pub struct Server {
    db: Db,
    device_listener: MtlsListener,
    metrics_listener: Option<rampart_listen::PlainListener>,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    last_seen: Arc<engines::last_seen::LastSeen>,
    api: Arc<device::api::DeviceApi>,
    /// The image-repository and director routes (empty without `image_repo`).
    delivery: Router,
    flush_interval: Duration,
    management: Option<(
        listen::https::OperatorListener,
        Arc<operator::ManagementApi>,
    )>,
    management_addr: Option<SocketAddr>,
    audit: audit::AuditWriter,
    audit_anchor: Option<Arc<engines::audit_anchor::AuditAnchor>>,
    refusals: tokio::sync::mpsc::Receiver<RefusedConnection>,
    refusal_summary_interval: Duration,
    /// Failed authentications on the DDI and management APIs, and their audit events.
    auth_failures: Arc<auth_failures::AuthFailures>,
    auth_events: tokio::sync::mpsc::Receiver<auth_failures::AuthEvent>,
    hooks: engines::webhooks::Webhooks,
    campaigns: Arc<engines::campaigns::Campaigns>,
    ddi: Option<(listen::https::OperatorListener, Arc<ddi::DdiApi>)>,
    ddi_addr: Option<SocketAddr>,
    header_timeout: Duration,
    /// Renews the online metadata and watches every role's expiry (with a repository or a
    /// director).
    metadata_watch: Option<engines::renewal::MetadataWatch>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens (and migrates) the database and binds the listeners.
    pub async fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        config.validate()?;
        // Every listener's connections must fit in the open-file limit, or a flood of idle
        // connections on one listener would starve the others (and the database) of files.
        let file_limit = connections::raise_file_limit().map_err(|e| {
            ServerError::Config(format!("reading the open-file limit (RLIMIT_NOFILE): {e}"))
        })?;
        let caps = config
            .connections
            .fit(
                connections::EnabledListeners {
                    ddi: config.ddi_listen.is_some(),
                    management: config.management_listen.is_some(),
                    metrics: config.metrics_listen.is_some(),
                },
                file_limit,
            )
            .map_err(|e| ServerError::Config(e.to_string()))?;
        if caps != config.connections {
            eprintln!(
                "rampart server: the open-file limit is {file_limit}: connection caps lowered to device {}, DDI {} (raise the limit with `ulimit -n` or LimitNOFILE= to serve more)",
                caps.device.max_connections, caps.ddi.max_connections
            );
        }
        if let Some(store) = &config.artifact_store {
            store.check().await?;
        }
        let db = Db::connect(&config.db_url).await?;
        let bind = |addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| ServerError::Bind { addr, source })?;
            Ok::<_, ServerError>((listener, local))
        };
        let (tcp, local_addr) = bind(config.listen).await?;
        let (metrics_listener, metrics_addr) = match config.metrics_listen {
            Some(addr) => {
                let (listener, local) = bind(addr).await?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };

        let metrics = Arc::new(Metrics::default());
        let audit = audit::AuditWriter::new(db.clone());
        let audit_anchor = config.audit_anchor.clone().map(|anchor| {
            Arc::new(
                engines::audit_anchor::AuditAnchor::new(db.clone(), audit.clone(), anchor)
                    .with_metrics(metrics.clone()),
            )
        });
        let hooks =
            engines::webhooks::Webhooks::open(db.clone(), &config.db_url, config.webhooks.clone())
                .await
                .map_err(|e| ServerError::Config(e.to_string()))?;
        let (refusal_tx, refusals) = tokio::sync::mpsc::channel(listen::refusals::REFUSAL_QUEUE);
        let (auth_failures, auth_events) = auth_failures::AuthFailures::new(
            metrics.clone(),
            auth_failures::FailurePolicy::default(),
        );
        let admission = |caps, counters: &Arc<connections::AdmissionCounters>| {
            connections::Admission::new(caps, counters.clone())
        };
        let device_listener = MtlsListener::new(
            tcp,
            config.tls.clone(),
            metrics.connections.clone(),
            admission(caps.device, &metrics.listeners.device),
        )
        .with_timeouts(config.handshake_timeout, config.idle_timeout)
        .with_refusal_sink(refusal_tx);
        let metrics_listener = metrics_listener.map(|tcp| {
            rampart_listen::PlainListener::new(
                tcp,
                config.idle_timeout,
                admission(caps.metrics, &metrics.listeners.metrics),
            )
        });
        // One verified view of the image repository, shared by devices and operators.
        let image_repo = config
            .image_repo
            .as_ref()
            .map(|dir| Arc::new(delivery::image_repo::HostedRepo::new(dir)));
        let metadata_watch = engines::renewal::MetadataWatch::new(
            &config,
            image_repo.clone(),
            metrics.clone(),
            audit.clone(),
        )?;
        let last_seen = Arc::new(engines::last_seen::LastSeen::new(
            config.last_seen_batch_size,
            metrics.clone(),
        ));
        let campaigns =
            engines::campaigns::Campaigns::new(db.clone(), audit.clone(), hooks.clone());
        let api = Arc::new(
            device::api::DeviceApi::new(
                db.clone(),
                metrics.clone(),
                last_seen.clone(),
                config.poll_interval_secs,
                listen::http::BodyLimits {
                    max_bytes: config.max_body_bytes,
                    read_timeout: config.body_read_timeout,
                },
                audit.clone(),
                engines::report_sinks::ReportSinks {
                    campaigns: campaigns.clone(),
                    hooks: hooks.clone(),
                },
            )
            .with_image_repo(image_repo.clone()),
        );
        let delivery = device::routes(&config, api.clone(), image_repo.clone())?;
        let (ddi, ddi_addr) = match (config.ddi_listen, &config.ddi_tls) {
            (Some(addr), Some(tls)) => {
                let (listener, local) = bind(addr).await?;
                let api = Arc::new(ddi::DdiApi {
                    db: db.clone(),
                    audit: audit.clone(),
                    metrics: metrics.clone(),
                    last_seen: last_seen.clone(),
                    poll_interval_secs: config.poll_interval_secs,
                    body_limits: listen::http::BodyLimits {
                        max_bytes: config.max_body_bytes,
                        read_timeout: config.body_read_timeout,
                    },
                    repo: image_repo.clone(),
                    artifacts: config.image_repo.as_ref().map(|dir| {
                        config
                            .artifact_store
                            .clone()
                            .unwrap_or_else(|| ArtifactStore::Local(dir.join("targets")))
                    }),
                    sinks: engines::report_sinks::ReportSinks {
                        campaigns: campaigns.clone(),
                        hooks: hooks.clone(),
                    },
                    local_addr: local,
                    module_lock: Arc::new(tokio::sync::Mutex::new(())),
                    auth_failures: auth_failures.clone(),
                });
                let listener = listen::https::OperatorListener::new(
                    listener,
                    tls.clone(),
                    config.handshake_timeout,
                    config.idle_timeout,
                    admission(caps.ddi, &metrics.listeners.ddi),
                );
                (Some((listener, api)), Some(local))
            }
            _ => (None, None),
        };
        let (management, management_addr) = match (config.management_listen, &config.management_tls)
        {
            (Some(addr), Some(tls)) => {
                let (listener, local) = bind(addr).await?;
                let api = Arc::new(operator::ManagementApi {
                    db: db.clone(),
                    audit: audit.clone(),
                    metrics: metrics.clone(),
                    image_repo: image_repo.clone(),
                    campaigns: campaigns.clone(),
                    audit_anchor: audit_anchor.clone(),
                    body_limits: listen::http::BodyLimits {
                        max_bytes: config.max_body_bytes,
                        read_timeout: config.body_read_timeout,
                    },
                });
                let listener = listen::https::OperatorListener::new(
                    listener,
                    tls.clone(),
                    config.handshake_timeout,
                    config.idle_timeout,
                    admission(caps.management, &metrics.listeners.management),
                );
                (Some((listener, api)), Some(local))
            }
            _ => (None, None),
        };
        Ok(Server {
            db,
            device_listener,
            metrics_listener,
            local_addr,
            metrics_addr,
            metrics,
            last_seen,
            api,
            delivery,
            flush_interval: config.last_seen_flush_interval,
            management,
            management_addr,
            audit,
            audit_anchor,
            refusals,
            refusal_summary_interval: config.refusal_summary_interval,
            hooks,
            campaigns,
            ddi,
            ddi_addr,
            header_timeout: caps.header_timeout,
            auth_failures,
            auth_events,
            metadata_watch,
        })
    }

    /// The bound address of the hawkBit DDI API, if configured.
    pub fn ddi_addr(&self) -> Option<SocketAddr> {
        self.ddi_addr
    }

    /// The webhook machinery: [`engines::webhooks::Webhooks::emit`] queues an event for operators'
    /// endpoints, [`engines::webhooks::Webhooks::observe_report`] feeds the rollback-spike detector.
    pub fn webhooks(&self) -> engines::webhooks::Webhooks {
        self.hooks.clone()
    }

    /// The bound address of the management API, if configured.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.management_addr
    }

    /// The bound address of the device API.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the metrics listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The server's counters (live while and after it serves).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Serves until `shutdown` completes; then stops accepting, lets
    /// in-flight requests finish, writes the pending last-seen times and
    /// closes the database.
    ///
    /// If this future is dropped instead, the last-seen flusher still makes
    /// a final write in the background.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Server {
            db,
            device_listener,
            metrics_listener,
            metrics,
            last_seen,
            api,
            delivery,
            flush_interval,
            management,
            audit,
            audit_anchor,
            refusals,
            refusal_summary_interval,
            hooks,
            campaigns,
            ddi,
            header_timeout,
            auth_failures,
            auth_events,
            metadata_watch,
            ..
        } = self;
        let operators = http_serve::HttpOptions {
            header_timeout,
            shutdown_grace: Some(METRICS_SHUTDOWN_GRACE),
        };

        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown => { let _ = stop_tx.send(true); }
                () = stop_tx.closed() => {}
            }
        });

        let (flusher_stop_tx, flusher_stop_rx) = watch::channel(false);
        let flusher = tokio::spawn(engines::last_seen::run_flusher(
            last_seen,
            db.clone(),
            flush_interval,
            flusher_stop_rx,
        ));

        let metrics_server = metrics_listener.map(|listener| {
            tokio::spawn(http_serve::serve(
                listener,
                metrics_router(metrics),
                operators,
                |_, peer| peer,
                helpers::stopped(stop_rx.clone()),
            ))
        });

        let anchorer = audit_anchor.map(|anchor| tokio::spawn(anchor.run(stop_rx.clone())));
        let auth_failure_recorder = tokio::spawn(auth_failures::run_recorder(
            audit.clone(),
            auth_events,
            refusal_summary_interval,
            stop_rx.clone(),
        ));
        let refusal_recorder = tokio::spawn(listen::refusals::run_refusal_recorder(
            audit,
            refusals,
            refusal_summary_interval,
            stop_rx.clone(),
        ));
        let campaign_engine = tokio::spawn(campaigns.run(stop_rx.clone()));
        let metadata_watcher = metadata_watch.map(|watch| tokio::spawn(watch.run(stop_rx.clone())));
        let hooks_grace = hooks.config().attempt_timeout + METRICS_SHUTDOWN_GRACE;
        let dispatcher = tokio::spawn(
            hooks
                .clone()
                .run_dispatcher(helpers::stopped(stop_rx.clone())),
        );
        let ddi_server = ddi.map(|(listener, api)| {
            tokio::spawn(http_serve::serve(
                listener,
                ddi::router(api).layer(axum::middleware::map_response(|r| {
                    listen::http::framework_rejections_in(listen::http::ErrorFormat::Ddi, r)
                })),
                operators,
                |io: &listen::https::OperatorStream, peer| listen::https::DdiPeer {
                    remote_addr: peer,
                    certificate_device: io.attached().certificate_device.clone(),
                },
                helpers::stopped(stop_rx.clone()),
            ))
        });
        let management_server = management.map(|(listener, api)| {
            let router = operator::router(api.clone())
                .merge(operator::ddi_tenants::router(api.clone()))
                .merge(operator::webhooks::router(api, hooks))
                // Unknown bearer tokens are counted, audited and slowed down per source.
                .layer(axum::middleware::from_fn_with_state(
                    auth_failures::Guard {
                        failures: auth_failures,
                        api: auth_failures::Api::Management,
                    },
                    auth_failures::guard,
                ))
                .layer(axum::middleware::map_response(|r| {
                    listen::http::framework_rejections_in(listen::http::ErrorFormat::Api, r)
                }));
            tokio::spawn(http_serve::serve(
                listener,
                router,
                operators,
                |_, peer| peer,
                helpers::stopped(stop_rx.clone()),
            ))
        });

        // Devices' requests in flight (an artifact download may be long) all finish.
        http_serve::serve(
            device_listener,
            device::api::router(api, delivery).layer(axum::middleware::map_response(|r| {
                listen::http::framework_rejections_in(listen::http::ErrorFormat::Api, r)
            })),
            http_serve::HttpOptions {
                header_timeout,
                shutdown_grace: None,
            },
            |io: &MtlsStream, _| io.attached().peer().clone(),
            helpers::stopped(stop_rx),
        )
        .await;

        // No request is in flight any more: write the last batch.
        let _ = flusher_stop_tx.send(true);
        let _ = flusher.await;
        for mut task in metrics_server
            .into_iter()
            .chain(management_server)
            .chain(ddi_server)
        {
            if tokio::time::timeout(METRICS_SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
        let _ = tokio::time::timeout(METRICS_SHUTDOWN_GRACE, refusal_recorder).await;
        let _ = tokio::time::timeout(METRICS_SHUTDOWN_GRACE, auth_failure_recorder).await;
        // The anchorer signs a last head at shutdown, so a restart never leaves records unanchored
        // for a whole interval.
        if let Some(anchorer) = anchorer {
            let _ = tokio::time::timeout(METRICS_SHUTDOWN_GRACE, anchorer).await;
        }
        // A step in progress is one transaction: stopping it mid-way loses nothing.
        campaign_engine.abort();
        // A renewal in progress finishes on its blocking thread (each file is written whole).
        if let Some(watcher) = metadata_watcher {
            watcher.abort();
        }
        // The dispatcher lets its attempts in flight finish (each bounded by the attempt
        // timeout) and records them; what is still pending is sent after the next start.
        let _ = tokio::time::timeout(hooks_grace, dispatcher).await;
        db.close().await;
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes (see [`Server::serve`]).
pub async fn run(
    config: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::bind(config).await?.serve(shutdown).await
}

/// The operator listener: `GET /metrics`.
fn metrics_router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "this listener serves GET /metrics only",
            )
        })
        .with_state(metrics)
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, observe::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
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
