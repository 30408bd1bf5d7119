//! The server itself: binds every listener with its caps, builds each room's state from the
//! same handles (one database pool, audit writer, metrics, last-seen batcher, campaign engine,
//! webhook dispatcher), serves, and shuts down in order.

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
use rampart_db::Db;
use rampart_listen::serve as http_serve;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::delivery::artifact_store::ArtifactStore;
use crate::listen::http::ApiError;
use crate::listen::mtls::{MtlsListener, MtlsStream, RefusedConnection};
use crate::observe::metrics::Metrics;
use crate::{
    ServerConfig, ServerError, connections, console, ddi, delivery, device, engines, helpers,
    listen, observe, operator, state,
};

/// How long shutdown waits for the metrics listener's open connections.
const METRICS_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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
    /// The web console's settings (it is served on the management listener).
    console_config: console::ConsoleConfig,
    audit: observe::audit::AuditWriter,
    audit_anchor: Option<Arc<engines::audit_anchor::AuditAnchor>>,
    refusals: tokio::sync::mpsc::Receiver<RefusedConnection>,
    refusal_summary_interval: Duration,
    /// Failed authentications on the DDI and management APIs, and their audit events.
    auth_failures: Arc<listen::auth_failures::AuthFailures>,
    auth_events: tokio::sync::mpsc::Receiver<listen::auth_failures::AuthEvent>,
    hooks: engines::webhooks::Webhooks,
    campaigns: Arc<engines::campaigns::Campaigns>,
    ddi: Option<(listen::https::OperatorListener, Arc<ddi::DdiApi>)>,
    ddi_addr: Option<SocketAddr>,
    header_timeout: Duration,
    /// Renews the online metadata and watches every role's expiry (with a repository or a
    /// director).
    metadata_watch: Option<engines::renewal::MetadataWatch>,
    /// The attestation staleness engine, when attestation is enabled.
    attestation: Option<Arc<engines::attestation::Attestation>>,
    /// The evidence executor and anchorer, when the server keeps evidence.
    evidence: Option<Arc<engines::evidence::Evidence>>,
    /// The incident store and its automatic-progress interval.
    incidents: (Arc<engines::incidents::IncidentStore>, Duration),
    /// Every engine's heartbeat, written together; the detectors' watchdog reads them.
    heartbeats: engines::heartbeat::Heartbeats,
    /// The incident detectors (with the watchdog) and their settings.
    detectors: (
        Arc<engines::detectors::DetectorEngine>,
        rampart_incident::detect::DetectorConfig,
    ),
    /// The incident alerts' executor and sinks.
    alerts: engines::alerts::Alerts,
    /// The executor of incident `reimage` actions.
    reimager: engines::reimage::Reimager,
    /// Advisory exposure and alerts (issue 17).
    risk_watch: Arc<engines::risk_watch::RiskWatch>,
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
        let audit = observe::audit::AuditWriter::new(db.clone());
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
        let (auth_failures, auth_events) = listen::auth_failures::AuthFailures::new(
            metrics.clone(),
            listen::auth_failures::FailurePolicy::default(),
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
        let attestation = config.attestation.clone().map(|settings| {
            Arc::new(engines::attestation::Attestation::new(
                db.clone(),
                audit.clone(),
                metrics.clone(),
                settings,
            ))
        });
        let reimager =
            engines::reimage::Reimager::new(db.clone(), audit.clone(), image_repo.clone());
        let evidence = match config.evidence.clone() {
            Some(settings) => {
                let engine = engines::evidence::Evidence::new(db.clone(), audit.clone(), settings);
                engine
                    .check()
                    .await
                    .map_err(|e| ServerError::Config(e.to_string()))?;
                Some(Arc::new(engine))
            }
            None => None,
        };
        let campaigns = engines::campaigns::Campaigns::new(
            db.clone(),
            audit.clone(),
            hooks.clone(),
            attestation.clone(),
        );
        let incidents = Arc::new(
            engines::incidents::IncidentStore::new(
                db.clone(),
                audit.clone(),
                config.incidents.playbooks.clone(),
            )
            .with_metrics(metrics.clone()),
        );
        // Before any executor claims actions: those a stopped server left running go back to
        // approved, and stored playbooks are put in force.
        incidents
            .resume()
            .await
            .map_err(|e| ServerError::Config(format!("resuming incidents: {e}")))?;
        hooks.count_alert_failures_in(metrics.clone());
        let alerts = engines::alerts::Alerts::new(
            engines::alerts::AlertHandles {
                db: db.clone(),
                audit: audit.clone(),
                hooks: hooks.clone(),
                metrics: metrics.clone(),
                incidents: incidents.clone(),
            },
            config.alerts.clone(),
        );
        let detector_config =
            engines::detectors::detector_config(&config).map_err(ServerError::Config)?;
        let heartbeats = engines::heartbeat::Heartbeats::default();
        // The watchdog and the status route count engines that have not beaten from here.
        let started_at = helpers::unix_now();
        let detectors = engines::detectors::DetectorEngine::start(
            db.clone(),
            incidents.clone(),
            detector_config.clone(),
            image_repo.clone(),
            heartbeats.clone(),
            metrics.clone(),
            config.attestation.as_ref().map(|a| a.freshness_secs()),
            started_at,
        )
        .await
        .map_err(ServerError::Config)?;
        let advisories = Arc::new(engines::risk::AdvisoryCache::default());
        let risk_watch = Arc::new(engines::risk_watch::RiskWatch::new(
            db.clone(),
            image_repo.clone(),
            advisories.clone(),
            hooks.clone(),
            incidents.clone(),
            detector_config.enabled(rampart_incident::model::Detector::VulnerableComponent),
            metrics.clone(),
            config.risk_watch,
        ));
        let shared = state::Shared {
            db: db.clone(),
            audit: audit.clone(),
            metrics: metrics.clone(),
            last_seen: last_seen.clone(),
            image_repo: image_repo.clone(),
            campaigns: campaigns.clone(),
            hooks: hooks.clone(),
            body_limits: listen::http::BodyLimits {
                max_bytes: config.max_body_bytes,
                read_timeout: config.body_read_timeout,
            },
            poll_interval_secs: config.poll_interval_secs,
            attestation: attestation.clone(),
            evidence: evidence.clone(),
            incidents: incidents.clone(),
            revoked_use: Arc::new(engines::detectors::RevokedUse::new(
                db.clone(),
                audit.clone(),
            )),
            instructions: config.director.as_ref().map(|d| {
                Arc::new(delivery::instruction::InstructionSigner::new(
                    d.signer.clone(),
                    i64::try_from(d.targets_expiry.as_secs()).unwrap_or(i64::MAX),
                ))
            }),
            advisories,
            risk_watch: risk_watch.clone(),
        };
        let api = Arc::new(device::api::DeviceApi::new(&shared));
        let delivery = device::routes(&config, api.clone(), image_repo.clone())?;
        let (ddi, ddi_addr) = match (config.ddi_listen, &config.ddi_tls) {
            (Some(addr), Some(tls)) => {
                let (listener, local) = bind(addr).await?;
                let artifacts = config.image_repo.as_ref().map(|dir| {
                    config
                        .artifact_store
                        .clone()
                        .unwrap_or_else(|| ArtifactStore::Local(dir.join("targets")))
                });
                let api = Arc::new(ddi::DdiApi::new(
                    &shared,
                    artifacts,
                    local,
                    auth_failures.clone(),
                ));
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
                let status = operator::StatusSources {
                    heartbeats: heartbeats.clone(),
                    detectors: detector_config.clone(),
                    started_at,
                    expiry: metadata_watch
                        .as_ref()
                        .map(|w| (w.warning_policy(), w.director_root())),
                };
                let mut management =
                    operator::ManagementApi::new(&shared, audit_anchor.clone(), status);
                management.vex_signers = config.vex_signers.clone().into();
                let api = Arc::new(management);
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
            console_config: console::ConsoleConfig {
                max_live_streams: live_stream_cap(caps.management.max_connections),
                ..config.console
            },
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
            attestation,
            evidence,
            incidents: (incidents, config.incidents.progress_interval),
            heartbeats,
            detectors: (detectors, detector_config),
            alerts,
            reimager,
            risk_watch,
        })
    }

    /// The incident alert engine ([`engines::alerts::Alerts::failing_sinks`]).
    pub fn alerts(&self) -> engines::alerts::Alerts {
        self.alerts.clone()
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
            console_config,
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
            attestation,
            evidence,
            incidents,
            heartbeats,
            detectors: (detectors, detector_config),
            alerts,
            reimager,
            risk_watch,
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
            heartbeats.register("last_seen"),
        ));

        let metrics_server = metrics_listener.map(|listener| {
            tokio::spawn(http_serve::serve(
                listener,
                metrics_router(
                    metrics,
                    Arc::new(operator::indicators::IndicatorGauges::new(db.clone())),
                ),
                operators,
                |_, peer| peer,
                helpers::stopped(stop_rx.clone()),
            ))
        });

        let anchorer = audit_anchor.map(|anchor| {
            tokio::spawn(anchor.run(stop_rx.clone(), heartbeats.register("audit_anchor")))
        });
        let auth_failure_recorder = tokio::spawn(listen::auth_failures::run_recorder(
            audit.clone(),
            auth_events,
            refusal_summary_interval,
            stop_rx.clone(),
        ));
        let quarantine_executor = tokio::spawn(
            engines::quarantine::QuarantineExecutor::new(db.clone(), audit.clone())
                .run(stop_rx.clone(), heartbeats.register("quarantine")),
        );
        let refusal_recorder = tokio::spawn(listen::refusals::run_refusal_recorder(
            audit,
            refusals,
            refusal_summary_interval,
            stop_rx.clone(),
        ));
        let evidence_engine = evidence.map(|engine| {
            tokio::spawn(engine.run(stop_rx.clone(), heartbeats.register("evidence")))
        });
        let incident_engine = tokio::spawn(incidents.0.run(
            incidents.1,
            stop_rx.clone(),
            heartbeats.register("incidents"),
        ));
        let campaign_engine =
            tokio::spawn(campaigns.run(stop_rx.clone(), heartbeats.register("campaigns")));
        let attestation_engine = attestation.map(|engine| {
            tokio::spawn(engine.run(stop_rx.clone(), heartbeats.register("attestation")))
        });
        let metadata_watcher = metadata_watch
            .map(|watch| tokio::spawn(watch.run(stop_rx.clone(), heartbeats.register("renewal"))));
        let alert_engine = tokio::spawn(alerts.run(stop_rx.clone(), heartbeats.register("alerts")));
        let reimage_engine =
            tokio::spawn(reimager.run(stop_rx.clone(), heartbeats.register("reimage")));
        let hooks_grace = hooks.config().attempt_timeout + METRICS_SHUTDOWN_GRACE;
        let dispatcher = tokio::spawn(hooks.clone().run_dispatcher(
            helpers::stopped(stop_rx.clone()),
            heartbeats.register("webhooks"),
        ));
        let risk_watch_engine = tokio::spawn(risk_watch.run(
            stop_rx.clone(),
            heartbeats.register(engines::risk_watch::ENGINE),
        ));
        // Registered last: by now every engine above is registered, so the watchdog expects
        // each from its first round.
        let detector_engine = tokio::spawn(detectors.clone().run(stop_rx.clone()));
        let detector_watch =
            tokio::spawn(detectors.watch_detectors(detector_config, stop_rx.clone()));
        let heartbeat_flusher = tokio::spawn(heartbeats.run_flusher(db.clone(), stop_rx.clone()));
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
                .merge(console::router(api.clone(), console_config))
                .merge(operator::ddi_tenants::router(api.clone()))
                .merge(operator::evidence::router(api.clone()))
                .merge(operator::incidents::router(api.clone()))
                .merge(operator::webhooks::router(api, hooks))
                // Unknown bearer tokens are counted, audited and slowed down per source.
                .layer(axum::middleware::from_fn_with_state(
                    listen::auth_failures::Guard {
                        failures: auth_failures,
                        api: listen::auth_failures::Api::Management,
                    },
                    listen::auth_failures::guard,
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
            device::router(api, delivery).layer(axum::middleware::map_response(|r| {
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
        // Each automatic move is one transaction: stopping mid-pass loses nothing.
        incident_engine.abort();
        // Each finding is one transaction and each cursor moves after its findings: a round
        // stopped mid-way is read again after the next start.
        detector_engine.abort();
        detector_watch.abort();
        let _ = tokio::time::timeout(METRICS_SHUTDOWN_GRACE, heartbeat_flusher).await;
        // Every alert step is one transaction; an attempt cut short is retried after its lease.
        alert_engine.abort();
        // Each change is one transaction; an action claimed and not finished is requeued at
        // the next start.
        quarantine_executor.abort();
        // Each re-image is one transaction, and its action is finished in another: an action
        // cut in between is requeued at the next start and finds its assignment made.
        reimage_engine.abort();
        // A pass's records and alerts are one transaction: a pass cut short is decided again
        // after the next start, and alerts nothing twice.
        risk_watch_engine.abort();
        // Each stale note is one transaction; "attested" never depended on this engine.
        if let Some(engine) = attestation_engine {
            engine.abort();
        }
        // Each action and each anchor is its own transaction; what was running is requeued at
        // the next start.
        if let Some(engine) = evidence_engine {
            engine.abort();
        }
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
fn metrics_router(
    metrics: Arc<Metrics>,
    indicators: Arc<operator::indicators::IndicatorGauges>,
) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "this listener serves GET /metrics only",
            )
        })
        .with_state((metrics, indicators))
}

/// The server's counters and gauges, then the indicators' gauges (computed from stored events,
/// cached briefly: `operator::indicators`).
async fn render_metrics(
    State((metrics, indicators)): State<(Arc<Metrics>, Arc<operator::indicators::IndicatorGauges>)>,
) -> impl IntoResponse {
    let mut text = metrics.render();
    text.push_str(&indicators.render(helpers::unix_now()).await);
    (
        [(header::CONTENT_TYPE, observe::metrics::CONTENT_TYPE)],
        text,
    )
}

/// The console's live streams on a management listener of `max_connections`: half of them, so
/// that however many streams are open, the API and the console's pages keep the other half.
fn live_stream_cap(max_connections: usize) -> u32 {
    u32::try_from(max_connections / 2)
        .unwrap_or(u32::MAX)
        .max(1)
}
