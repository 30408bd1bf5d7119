//! Incident alerts end to end, on embedded SQLite and PostgreSQL: incidents recorded through
//! the real incident store, their playbooks' alert actions executed by the server's alert engine,
//! and the alerts received by real receivers on loopback: an HTTP receiver that checks the
//! webhook signature independently with ring, and UDP and TCP syslog receivers that parse every
//! message strictly as RFC 5424 (TCP frames by RFC 6587 octet counting).

mod common;

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use rampart_db::{Db, PlannedAction, TimelineEntry};
use rampart_incident::alert::{Alert, MAX_ALERT_DEVICES};
use rampart_incident::finding::Finding;
use rampart_incident::model::{Cause, Detector, Severity};
use rampart_incident::playbook::Playbooks;
use rampart_notify::sink_health::HealthPolicy;
use rampart_notify::syslog::{self, MAX_MESSAGE, SyslogMessage, SyslogSeverity};
use rampart_server::Role;
use rampart_server::alerts::{AlertConfig, SyslogTarget};
use rampart_server::audit::AuditWriter;
use rampart_server::incidents::IncidentStore;
use rampart_server::management::create_token;
use rampart_server::webhooks::{IpNetwork, WebhookConfig};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, UdpSocket};

on_both_backends!(
    an_incident_alert_reaches_a_syslog_receiver_as_rfc5424,
    an_incident_alert_reaches_a_tcp_syslog_receiver_in_octet_counted_frames,
    an_incident_alert_reaches_a_webhook_signed_with_its_secret,
    a_syslog_alert_is_retried_until_the_tcp_receiver_comes_back,
    repeats_of_an_alert_within_the_window_become_one_update,
    a_failing_alert_sink_raises_its_own_alert,
    a_failing_webhook_raises_its_alert_through_syslog,
    an_alert_of_a_huge_incident_fits_one_syslog_message,
    alerts_pending_at_a_restart_are_sent_after_it,
    the_only_sink_failing_still_opens_its_incident,
);

const SECRET: &str = "an-alert-webhook-secret-32-bytes";

// ---------------------------------------------------------------------------
// Receivers

/// A request received: its headers and body.
type Request = (HeaderMap, Vec<u8>);

/// An HTTP receiver: records each request's headers and body, answers with `status`.
#[derive(Clone)]
struct HttpReceiver {
    got: Arc<Mutex<Vec<Request>>>,
    status: Arc<Mutex<u16>>,
}

impl HttpReceiver {
    async fn start(status: u16) -> (HttpReceiver, SocketAddr) {
        let receiver = HttpReceiver {
            got: Arc::default(),
            status: Arc::new(Mutex::new(status)),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(
                |State(r): State<HttpReceiver>, headers: HeaderMap, body: Bytes| async move {
                    r.got.lock().unwrap().push((headers, body.to_vec()));
                    StatusCode::from_u16(*r.status.lock().unwrap()).unwrap()
                },
            )
            .with_state(receiver.clone());
        tokio::spawn(axum::serve(listener, app).into_future());
        (receiver, addr)
    }

    /// The `incident.alert` deliveries received, each checked: its signature verifies with the
    /// secret (computed here with ring, not the server's code) and its envelope is complete.
    fn alerts(&self) -> Vec<Alert> {
        let got = self.got.lock().unwrap();
        got.iter()
            .map(|(headers, body)| {
                let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
                assert_eq!(header("x-rampart-event"), "incident.alert");
                let timestamp = header("x-rampart-timestamp");
                let signature = header("x-rampart-signature");
                let tag = hex::decode(signature.strip_prefix("sha256=").unwrap()).unwrap();
                let mut signed = format!("{timestamp}.").into_bytes();
                signed.extend_from_slice(body);
                ring::hmac::verify(
                    &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes()),
                    &signed,
                    &tag,
                )
                .expect("the webhook signature verifies with the secret");
                let envelope: Value = serde_json::from_slice(body).unwrap();
                assert_eq!(envelope["event"], "incident.alert");
                assert_eq!(envelope["delivery"], header("x-rampart-delivery"));
                serde_json::from_value(envelope["data"].clone()).unwrap()
            })
            .collect()
    }
}

/// Syslog messages received, each parsed strictly as RFC 5424.
#[derive(Clone, Default)]
struct SyslogReceiver {
    got: Arc<Mutex<Vec<SyslogMessage>>>,
    /// Raw lengths, to check the size bound.
    lengths: Arc<Mutex<Vec<usize>>>,
}

impl SyslogReceiver {
    fn push(&self, raw: &[u8]) {
        self.lengths.lock().unwrap().push(raw.len());
        let message = syslog::parse(raw).unwrap_or_else(|e| {
            panic!(
                "an invalid RFC 5424 message: {e}: {:?}",
                String::from_utf8_lossy(raw)
            )
        });
        self.got.lock().unwrap().push(message);
    }

    fn messages(&self) -> Vec<SyslogMessage> {
        self.got.lock().unwrap().clone()
    }

    /// One datagram per message.
    async fn udp() -> (SyslogReceiver, SocketAddr) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let receiver = SyslogReceiver::default();
        let r = receiver.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = socket.recv(&mut buf).await {
                r.push(&buf[..n]);
            }
        });
        (receiver, addr)
    }

    /// Octet-counted frames on any number of connections; a malformed frame fails the test.
    async fn tcp_on(listener: TcpListener) -> SyslogReceiver {
        let receiver = SyslogReceiver::default();
        let r = receiver.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                        while let Some((message, used)) =
                            syslog::take_octet_counted(&buf, MAX_MESSAGE).unwrap()
                        {
                            r.push(message);
                            buf.drain(..used);
                        }
                    }
                });
            }
        });
        receiver
    }
}

// ---------------------------------------------------------------------------
// The server

fn loopback() -> Vec<IpNetwork> {
    vec!["127.0.0.0/8".parse().unwrap()]
}

/// Alerts on a short clock: polls every 25 ms, retries from 50 ms, a sink fails after 3
/// failed attempts; no dedupe window unless a test sets one.
fn fast(syslog: Option<SyslogTarget>) -> AlertConfig {
    AlertConfig {
        syslog,
        hostname: Some("rampart-test".into()),
        dedupe_window: Duration::ZERO,
        health: HealthPolicy {
            max_failures: 3,
            max_age: Duration::from_secs(3600),
        },
        attempt_timeout: Duration::from_secs(2),
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        poll_interval: Duration::from_millis(25),
        ..AlertConfig::default()
    }
}

struct Alerting {
    fx: Fixture,
    admin: String,
    store: IncidentStore,
    audit: AuditWriter,
    running: Option<Running>,
}

impl Alerting {
    async fn new(backend: Backend, name: &str) -> Alerting {
        let fx = Fixture::new(backend, name).await;
        let audit = AuditWriter::new(fx.db.clone());
        let admin = create_token(&fx.db, &audit, Role::Admin, "test", "cli:test", unix_now())
            .await
            .unwrap()
            .secret;
        let store = IncidentStore::new(fx.db.clone(), audit.clone(), Playbooks::default());
        Alerting {
            fx,
            admin,
            store,
            audit,
            running: None,
        }
    }

    async fn start(&mut self, alerts: AlertConfig) {
        let key = self.fx._dir.path().join("secrets.key");
        let management_tls = self.fx.management_tls();
        let running = self
            .fx
            .start(&[], |config| {
                config.management_listen = Some("127.0.0.1:0".parse().unwrap());
                config.management_tls = Some(management_tls);
                config.webhooks = WebhookConfig {
                    attempt_timeout: Duration::from_secs(2),
                    backoff_base: Duration::from_millis(50),
                    backoff_max: Duration::from_millis(200),
                    poll_interval: Duration::from_millis(25),
                    allow_networks: loopback(),
                    secrets_key: Some(key),
                    ..WebhookConfig::default()
                };
                config.alerts = alerts;
            })
            .await;
        self.running = Some(running);
    }

    /// Whether the server says `sink` is failing (`rampart_alert_sink_failing`).
    async fn failing(&self, sink: &str) -> bool {
        let text = self.running().scrape().await;
        metric_value(
            &text,
            &format!("rampart_alert_sink_failing{{sink=\"{sink}\"}}"),
        ) == Some(1)
    }

    fn running(&self) -> &Running {
        self.running.as_ref().unwrap()
    }

    /// Registers a webhook for `incident.alert` through the management API; returns its id.
    async fn subscribe(&self, receiver: SocketAddr) -> String {
        let mut conn = self.running().connect_management(&self.fx.operator()).await;
        let body = json!({"url": format!("http://{receiver}/alerts"), "secret": SECRET,
                          "events": ["incident.alert"], "description": "on-call"})
        .to_string();
        let auth = format!("Bearer {}", self.admin);
        let r = conn
            .send(
                "POST",
                "/api/v1/webhooks",
                &[("Authorization", &auth)],
                body.as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{r:?}");
        r.json()["id"].as_str().unwrap().to_owned()
    }

    /// Records an operator finding of `key` for `device`; returns the incident id.
    async fn incident(&self, key: &str, device: &str) -> String {
        self.store
            .record_finding(&Finding {
                cause: Cause {
                    detector: Detector::Operator,
                    key: key.into(),
                },
                severity: Severity::Critical,
                title: format!("suspect firmware on {device}"),
                device_id: Some(device.into()),
                release: Some("fw-1.2.0.bin".into()),
                first_signal_at: unix_now() - 5,
                detail: json!({}),
            })
            .await
            .unwrap()
            .incident_id
    }

    /// Requests one more alert of an incident, as an operator's re-alert would.
    async fn request_alert(&self, incident: &str, id: &str) {
        let db = self.fx.db.clone();
        let now = unix_now();
        self.audit
            .write(
                now,
                "token:test",
                "incident.alert_requested",
                incident,
                json!({}),
                |line| {
                    let db = db.clone();
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: incident.into(),
                        at: now,
                        kind: "alert_requested".into(),
                        actor: "token:test".into(),
                        device_id: String::new(),
                        detail: json!({}),
                    };
                    let action = PlannedAction {
                        id: id.into(),
                        action: "alert".into(),
                        device_id: String::new(),
                        required_role: String::new(),
                        detail: json!({}),
                    };
                    async move {
                        db.request_incident_actions(incident, &[action], now, &entry, &line)
                            .await
                    }
                },
            )
            .await
            .unwrap();
    }

    async fn stop(mut self) {
        self.stop_server().await;
    }

    async fn stop_server(&mut self) {
        self.running.take().unwrap().stop().await;
    }
}

/// Waits until every alert action of `incident` is finished; returns their states.
async fn alert_actions_done(db: &Db, incident: &str) -> Vec<String> {
    let states = || async {
        db.incident_actions(incident)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.action == "alert")
            .map(|a| a.state)
            .collect::<Vec<_>>()
    };
    wait_until("the alert actions finish", || async {
        let states = states().await;
        !states.is_empty() && states.iter().all(|s| s == "done" || s == "failed")
    })
    .await;
    states().await
}

/// A free loopback TCP port with nothing listening on it (yet).
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn target(url: String) -> SyslogTarget {
    url.parse().unwrap()
}

/// Checks the message of an incident's first alert: header, structured data and the alert in MSG.
fn check_alert_message(m: &SyslogMessage, incident: &str, device: &str) {
    // Facility auth (4), severity alert (1) for a critical incident.
    assert_eq!((m.facility, m.severity), (4, SyslogSeverity::Alert));
    assert!(m.timestamp.as_deref().unwrap().ends_with('Z'));
    assert_eq!(m.hostname.as_deref(), Some("rampart-test"));
    assert_eq!(m.app_name.as_deref(), Some("rampart"));
    assert_eq!(m.msgid.as_deref(), Some("incident.alert"));
    let sd = |name| m.param("incident@32473", name).unwrap();
    assert_eq!(sd("id"), incident);
    assert_eq!(sd("severity"), "critical");
    assert_eq!(sd("dedupe"), "operator:case-1");
    assert_eq!(sd("detector"), "operator");
    assert_eq!(sd("devices"), "1");
    let alert: Alert = serde_json::from_str(&m.msg).expect("MSG is the alert's JSON");
    assert_eq!(alert.incident.id, incident);
    assert_eq!(alert.incident.devices, [device]);
    assert_eq!(alert.incident.release, "fw-1.2.0.bin");
    assert!(
        alert.incident.timeline.iter().any(|t| t.kind == "opened"),
        "{:?}",
        alert.incident.timeline
    );
}

// ---------------------------------------------------------------------------
// Scenarios

async fn an_incident_alert_reaches_a_syslog_receiver_as_rfc5424(backend: Backend, name: &str) {
    let (receiver, addr) = SyslogReceiver::udp().await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(Some(target(format!("udp://{addr}"))))).await;
    let incident = t.incident("case-1", "dev-1").await;
    wait_until("the syslog receiver has the alert", || async {
        !receiver.messages().is_empty()
    })
    .await;
    check_alert_message(&receiver.messages()[0], &incident, "dev-1");
    assert_eq!(alert_actions_done(&t.fx.db, &incident).await, ["done"]);
    let timeline = t.fx.db.incident_timeline(&incident).await.unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == "alert_sent"),
        "{timeline:?}"
    );
    t.stop().await;
}

async fn an_incident_alert_reaches_a_tcp_syslog_receiver_in_octet_counted_frames(
    backend: Backend,
    name: &str,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let receiver = SyslogReceiver::tcp_on(listener).await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(Some(target(format!("tcp://{addr}"))))).await;
    let first = t.incident("case-1", "dev-1").await;
    let second = t.incident("case-2", "dev-2").await;
    wait_until("both alerts arrive over one stream", || async {
        receiver.messages().len() == 2
    })
    .await;
    // Both incidents' actions were requested in the same second: either may go first.
    let messages = receiver.messages();
    let of = |incident: &str| {
        messages
            .iter()
            .find(|m| m.param("incident@32473", "id") == Some(incident))
            .unwrap_or_else(|| panic!("no alert of {incident}: {messages:?}"))
    };
    check_alert_message(of(&first), &first, "dev-1");
    assert_eq!(
        of(&second).param("incident@32473", "dedupe"),
        Some("operator:case-2")
    );
    t.stop().await;
}

async fn an_incident_alert_reaches_a_webhook_signed_with_its_secret(backend: Backend, name: &str) {
    let (receiver, addr) = HttpReceiver::start(200).await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(None)).await;
    t.subscribe(addr).await;
    let incident = t.incident("case-1", "dev-1").await;
    wait_until("the webhook receives the alert", || async {
        !receiver.got.lock().unwrap().is_empty()
    })
    .await;
    let alerts = receiver.alerts();
    assert_eq!(alerts.len(), 1);
    let alert = &alerts[0];
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.dedupe_key, "operator:case-1");
    assert!(!alert.update);
    assert_eq!(alert.incident.id, incident);
    assert_eq!(alert.incident.detector, Detector::Operator);
    assert_eq!(alert.incident.devices, ["dev-1"]);
    assert_eq!(alert.incident.device_count, 1);
    t.stop().await;
}

async fn a_syslog_alert_is_retried_until_the_tcp_receiver_comes_back(backend: Backend, name: &str) {
    let addr = closed_port().await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(Some(target(format!("tcp://{addr}"))))).await;
    let incident = t.incident("case-1", "dev-1").await;
    let alert_id = t.fx.db.incident_actions(&incident).await.unwrap()[0]
        .id
        .clone();
    wait_until("the refused alert has been retried", || async {
        let deliveries = t.fx.db.alert_deliveries(&alert_id).await.unwrap();
        deliveries.iter().any(|(sink, status, attempts)| {
            sink == "syslog" && status == "pending" && *attempts >= 2
        })
    })
    .await;
    // The receiver comes back on the same address.
    let receiver = SyslogReceiver::tcp_on(TcpListener::bind(addr).await.unwrap()).await;
    wait_until("the retried alert arrives", || async {
        !receiver.messages().is_empty()
    })
    .await;
    check_alert_message(&receiver.messages()[0], &incident, "dev-1");
    wait_until("the delivery is recorded", || async {
        t.fx.db
            .alert_deliveries(&alert_id)
            .await
            .unwrap()
            .iter()
            .any(|(sink, status, _)| sink == "syslog" && status == "delivered")
    })
    .await;
    assert!(
        t.running()
            .metric("rampart_alert_delivery_failures_total{sink=\"syslog\"}")
            .await
            >= 2
    );
    t.stop().await;
}

async fn repeats_of_an_alert_within_the_window_become_one_update(backend: Backend, name: &str) {
    let (receiver, addr) = SyslogReceiver::udp().await;
    let mut t = Alerting::new(backend, name).await;
    t.start(AlertConfig {
        dedupe_window: Duration::from_secs(3),
        ..fast(Some(target(format!("udp://{addr}"))))
    })
    .await;
    let incident = t.incident("case-1", "dev-1").await;
    wait_until("the first alert arrives", || async {
        receiver.messages().len() == 1
    })
    .await;
    // Two more alerts of the same key at once: both are held, the second replaces the first.
    t.request_alert(&incident, "act-again-1").await;
    alert_actions_done(&t.fx.db, &incident).await;
    t.request_alert(&incident, "act-again-2").await;
    alert_actions_done(&t.fx.db, &incident).await;
    let timeline = t.fx.db.incident_timeline(&incident).await.unwrap();
    assert_eq!(
        timeline.iter().filter(|e| e.kind == "alert_held").count(),
        2,
        "{timeline:?}"
    );
    wait_until("the update arrives when the window ends", || async {
        receiver.messages().len() >= 2
    })
    .await;
    let messages = receiver.messages();
    assert_eq!(messages.len(), 2, "one update, not a flood: {messages:?}");
    let update = &messages[1];
    assert_eq!(update.msgid.as_deref(), Some("incident.update"));
    assert_eq!(update.param("incident@32473", "repeats"), Some("1"));
    assert_eq!(update.param("incident@32473", "alert"), Some("act-again-2"));
    let alert: Alert = serde_json::from_str(&update.msg).unwrap();
    assert!(alert.update);
    assert_eq!(alert.dedupe_key, "operator:case-1");
    t.stop().await;
}

async fn a_failing_alert_sink_raises_its_own_alert(backend: Backend, name: &str) {
    let dead = closed_port().await;
    let (webhook, webhook_addr) = HttpReceiver::start(200).await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(Some(target(format!("tcp://{dead}"))))).await;
    t.subscribe(webhook_addr).await;
    t.incident("case-1", "dev-1").await;
    wait_until("the syslog sink is failing", || t.failing("syslog")).await;
    wait_until("the webhook receives the failing-sink alert", || async {
        webhook
            .alerts()
            .iter()
            .any(|a| a.dedupe_key == "alert_delivery_failing:syslog")
    })
    .await;
    let raised = webhook
        .alerts()
        .into_iter()
        .find(|a| a.dedupe_key == "alert_delivery_failing:syslog")
        .unwrap();
    assert_eq!(raised.incident.detector, Detector::AlertDeliveryFailing);
    assert_eq!(raised.severity, Severity::High);
    assert!(raised.incident.title.contains("syslog"), "{raised:?}");
    // It is an incident of its own.
    let incident =
        t.fx.db
            .open_incident_for_cause("alert_delivery_failing:syslog")
            .await
            .unwrap()
            .expect("an alert_delivery_failing incident is open");
    assert_eq!(raised.incident.id, incident.id);
    let timeline = t.fx.db.incident_timeline(&incident.id).await.unwrap();
    assert!(
        timeline
            .iter()
            .any(|e| e.kind == "alert_sent" && e.detail["sinks"] == json!(["webhooks"])),
        "{timeline:?}"
    );
    let running = t.running();
    assert!(
        running
            .metric("rampart_alert_delivery_failures_total{sink=\"syslog\"}")
            .await
            >= 3
    );
    t.stop().await;
}

async fn a_failing_webhook_raises_its_alert_through_syslog(backend: Backend, name: &str) {
    let (syslog_receiver, syslog_addr) = SyslogReceiver::udp().await;
    let (_webhook, webhook_addr) = HttpReceiver::start(500).await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(Some(target(format!("udp://{syslog_addr}")))))
        .await;
    let webhook = t.subscribe(webhook_addr).await;
    t.incident("case-1", "dev-1").await;
    let failing_key = format!("alert_delivery_failing:webhook:{webhook}");
    wait_until("syslog receives the failing-webhook alert", || async {
        syslog_receiver
            .messages()
            .iter()
            .any(|m| m.param("incident@32473", "dedupe") == Some(failing_key.as_str()))
    })
    .await;
    assert!(t.failing(&format!("webhook:{webhook}")).await);
    assert!(
        t.running()
            .metric(&format!(
                "rampart_alert_delivery_failures_total{{sink=\"webhook:{webhook}\"}}"
            ))
            .await
            >= 3
    );
    t.stop().await;
}

async fn an_alert_of_a_huge_incident_fits_one_syslog_message(backend: Backend, name: &str) {
    let (receiver, addr) = SyslogReceiver::udp().await;
    let mut t = Alerting::new(backend, name).await;
    // The incident gathers its devices before the engine runs.
    let mut incident = String::new();
    for n in 0..120 {
        incident = t
            .incident("case-1", &format!("device-with-a-long-name-{n:04}"))
            .await;
    }
    t.start(fast(Some(target(format!("udp://{addr}"))))).await;
    wait_until("the alert arrives", || async {
        !receiver.messages().is_empty()
    })
    .await;
    let m = &receiver.messages()[0];
    assert!(receiver.lengths.lock().unwrap()[0] <= MAX_MESSAGE);
    assert_eq!(m.param("incident@32473", "id"), Some(incident.as_str()));
    assert_eq!(m.param("incident@32473", "devices"), Some("120"));
    let alert: Alert = serde_json::from_str(&m.msg).expect("the bounded alert fits as JSON");
    assert_eq!(alert.incident.devices.len(), MAX_ALERT_DEVICES);
    assert_eq!(alert.incident.device_count, 120);
    t.stop().await;
}

async fn alerts_pending_at_a_restart_are_sent_after_it(backend: Backend, name: &str) {
    let addr = closed_port().await;
    let config = || fast(Some(target(format!("tcp://{addr}"))));
    let mut t = Alerting::new(backend, name).await;
    t.start(config()).await;
    let incident = t.incident("case-1", "dev-1").await;
    let alert_id = t.fx.db.incident_actions(&incident).await.unwrap()[0]
        .id
        .clone();
    wait_until("the alert waits for its receiver", || async {
        t.fx.db
            .alert_deliveries(&alert_id)
            .await
            .unwrap()
            .iter()
            .any(|(sink, status, attempts)| {
                sink == "syslog" && status == "pending" && *attempts >= 1
            })
    })
    .await;
    t.stop_server().await;
    let receiver = SyslogReceiver::tcp_on(TcpListener::bind(addr).await.unwrap()).await;
    t.start(config()).await;
    wait_until("the restarted server sends the pending alert", || async {
        !receiver.messages().is_empty()
    })
    .await;
    check_alert_message(&receiver.messages()[0], &incident, "dev-1");
    t.stop().await;
}

async fn the_only_sink_failing_still_opens_its_incident(backend: Backend, name: &str) {
    let dead = closed_port().await;
    let mut t = Alerting::new(backend, name).await;
    t.start(fast(Some(target(format!("tcp://{dead}"))))).await;
    t.incident("case-1", "dev-1").await;
    wait_until("the syslog sink is failing", || t.failing("syslog")).await;
    wait_until("the failing sink's incident is open", || async {
        t.fx.db
            .open_incident_for_cause("alert_delivery_failing:syslog")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    t.stop().await;
}
