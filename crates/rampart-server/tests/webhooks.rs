//! Webhooks end to end, against embedded SQLite and PostgreSQL: the server's management API
//! registers endpoints, events are queued durably and delivered by the dispatcher to real HTTP
//! receivers on loopback (an axum server that answers as scripted, and a socket that accepts and
//! never answers). Signatures are checked here independently with ring.
//!
//! Loopback is an internal address the address policy refuses by default, so these servers
//! allow-list 127.0.0.0/8 (as `rampart server --webhook-allow 127.0.0.0/8` would); the tests of
//! the policy itself run without it.

mod common;

use std::collections::{HashMap, VecDeque};
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use common::*;
use rampart_db::DeliveryStatus;
use rampart_server::audit::AuditWriter;
use rampart_server::management::create_token;
use rampart_server::webhooks::{
    IpNetwork, RollbackSpikeConfig, RollbackSpikeDetector, WebhookConfig, WebhookEvent, Webhooks,
};
use rampart_server::{Role, Server, ServerConfig, ServerError};
use rustls::ClientConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

on_both_backends!(
    deliveries_are_signed_with_the_webhook_secret,
    a_failing_endpoint_is_retried_until_it_answers,
    a_silent_endpoint_is_bounded_and_does_not_hold_up_others,
    deliveries_fail_after_the_maximum_attempts,
    pending_deliveries_are_sent_after_a_restart,
    a_rollback_spike_is_announced_once,
    webhook_api_refuses_bad_input_and_unpermitted_callers,
    internal_addresses_are_refused_at_creation_in_every_spelling,
    deliveries_to_refused_addresses_are_stopped_at_connection_time,
    reply_bodies_are_never_stored_only_status_and_length,
    only_admins_and_auditors_read_deliveries,
    webhook_secrets_are_not_stored_in_clear,
    a_wrong_secrets_key_is_refused_with_a_clear_error,
    secrets_stored_in_clear_are_sealed_when_the_server_starts,
);

const SECRET: &str = "a-webhook-secret-of-32-bytes-xyz";

// ---------------------------------------------------------------------------
// Receivers

#[derive(Debug, Clone)]
struct Received {
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map_or("", String::as_str)
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// An HTTP receiver on loopback: records every request and answers per path with the scripted
/// statuses first, then the path's standing status (200 unless set).
#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
    scripts: Arc<Mutex<HashMap<String, VecDeque<u16>>>>,
    standing: Arc<Mutex<HashMap<String, u16>>>,
}

impl Receiver {
    async fn start() -> (Receiver, SocketAddr) {
        let receiver = Receiver::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(receiver.clone());
        tokio::spawn(axum::serve(listener, app).into_future());
        (receiver, addr)
    }

    fn script(&self, path: &str, first: &[u16], then: u16) {
        self.scripts
            .lock()
            .unwrap()
            .insert(path.to_owned(), first.iter().copied().collect());
        self.standing.lock().unwrap().insert(path.to_owned(), then);
    }

    fn received(&self, path: &str) -> Vec<Received> {
        let log = self.log.lock().unwrap();
        log.iter().filter(|r| r.path == path).cloned().collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    let path = uri.path().to_owned();
    receiver.log.lock().unwrap().push(Received {
        path: path.clone(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    });
    let scripted = receiver
        .scripts
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let status = scripted
        .or_else(|| receiver.standing.lock().unwrap().get(&path).copied())
        .unwrap_or(200);
    (
        StatusCode::from_u16(status).unwrap(),
        "the receiver says no thanks",
    )
}

/// A socket that accepts connections and never reads or answers; counts the connections.
async fn silent_endpoint() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, accepted)
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `timestamp.body` under `secret`,
/// computed here independently of the server's code.
fn signature_verifies(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(hex_tag) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_tag) else {
        return false;
    };
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

// ---------------------------------------------------------------------------
// The server

/// Loopback, where the test receivers listen (`localhost` may resolve to both).
fn loopback() -> Vec<IpNetwork> {
    vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]
}

/// Short timeouts and backoff so retries take milliseconds; the loopback receivers allowed.
fn fast() -> WebhookConfig {
    WebhookConfig {
        attempt_timeout: Duration::from_millis(500),
        max_attempts: 8,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(200),
        max_in_flight: 4,
        poll_interval: Duration::from_millis(25),
        allow_networks: loopback(),
        ..WebhookConfig::default()
    }
}

/// [`fast`] without the allow-list: the default address policy.
fn fast_default_policy() -> WebhookConfig {
    WebhookConfig {
        allow_networks: Vec::new(),
        ..fast()
    }
}

struct Hooked {
    fx: Fixture,
    operator_tls: Arc<ClientConfig>,
    admin: String,
    operator: String,
    viewer: String,
    auditor: String,
}

struct Live {
    management: SocketAddr,
    hooks: Webhooks,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Live {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server shut down in time")
            .unwrap()
            .unwrap();
    }
}

impl Hooked {
    async fn new(backend: Backend, name: &str) -> Hooked {
        let fx = Fixture::new(backend, name).await;
        let audit = AuditWriter::new(fx.db.clone());
        let mut tokens = Vec::new();
        for role in [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor] {
            let t = create_token(&fx.db, &audit, role, "test", "cli:test", unix_now())
                .await
                .unwrap();
            tokens.push(t.secret);
        }
        let operator_tls = fx.operator();
        let [admin, operator, viewer, auditor] = <[String; 4]>::try_from(tokens).unwrap();
        Hooked {
            fx,
            operator_tls,
            admin,
            operator,
            viewer,
            auditor,
        }
    }

    /// The secrets key file the servers of this test share (unless a test gives another).
    fn key_path(&self) -> std::path::PathBuf {
        self.fx._dir.path().join("webhook-secrets.key")
    }

    /// Starts a server on the fixture's database with this webhook configuration (and the
    /// test's secrets key file, unless it names one).
    async fn start(&self, webhooks: WebhookConfig) -> Live {
        self.try_start(webhooks).await.unwrap()
    }

    async fn try_start(&self, mut webhooks: WebhookConfig) -> Result<Live, ServerError> {
        if webhooks.secrets_key.is_none() {
            webhooks.secrets_key = Some(self.key_path());
        }
        let tls = rampart_pki::server_config(
            &self.fx.server_cert.cert_pem,
            &self.fx.server_cert.key_pem,
            self.fx.ca.cert_pem(),
            &[],
        )
        .unwrap();
        let mut config =
            ServerConfig::new(self.fx.db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
        config.management_listen = Some("127.0.0.1:0".parse().unwrap());
        config.management_tls = Some(self.fx.management_tls());
        config.webhooks = webhooks;
        let server = Server::bind(config).await?;
        let hooks = server.webhooks();
        let management = server.management_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Ok(Live {
            management,
            hooks,
            stop,
            task,
        })
    }

    async fn call(
        &self,
        live: &Live,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Response {
        let body = body.map(Value::to_string).unwrap_or_default();
        self.raw(live, token, method, path, body.as_bytes()).await
    }

    async fn raw(
        &self,
        live: &Live,
        token: &str,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> Response {
        let auth = format!("Bearer {token}");
        let mut conn = Conn::new(
            tls_connect(live.management, &self.operator_tls)
                .await
                .unwrap(),
        );
        conn.send(method, path, &[("Authorization", &auth)], body)
            .await
            .unwrap()
    }

    /// Registers a webhook through the API; returns its id.
    async fn create(&self, live: &Live, url: &str, events: &[&str]) -> String {
        let r = self
            .call(
                live,
                &self.admin,
                "POST",
                "/api/v1/webhooks",
                Some(
                    &json!({"url": url, "secret": SECRET, "events": events, "description": "ops"}),
                ),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.json()["id"].as_str().unwrap().to_owned()
    }

    async fn deliveries(&self, webhook: &str) -> Vec<rampart_db::WebhookDelivery> {
        self.fx
            .db
            .webhook_deliveries(webhook, 100)
            .await
            .unwrap()
            .unwrap()
    }

    /// Waits until the webhook's only delivery is settled, and returns it.
    async fn settled(&self, webhook: &str) -> rampart_db::WebhookDelivery {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let list = self.deliveries(webhook).await;
            assert!(list.len() <= 1, "{list:?}");
            if let Some(d) = list.first()
                && d.status != DeliveryStatus::Pending
            {
                return d.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the delivery was not settled: {list:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

// ---------------------------------------------------------------------------
// Scenarios

async fn deliveries_are_signed_with_the_webhook_secret(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast()).await;

    let r = hooked
        .call(
            &live,
            &hooked.admin,
            "POST",
            "/api/v1/webhooks",
            Some(
                &json!({"url": format!("http://{addr}/hook"), "secret": SECRET,
                         "events": ["campaign.halted", "campaign.halted", "fleet.rollback_spike"]}),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let created = r.json();
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("whk-"), "{created}");
    assert_eq!(created["url"], format!("http://{addr}/hook"));
    assert_eq!(
        created["events"],
        json!(["campaign.halted", "fleet.rollback_spike"])
    );
    assert_eq!(created["enabled"], true);
    assert_eq!(created["description"], "");
    assert!(!r.body.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    assert!(created.get("secret").is_none(), "{created}");

    // A test delivery, then a real event; an event nobody subscribes to queues nothing.
    let r = hooked
        .call(
            &live,
            &hooked.admin,
            "POST",
            &format!("/api/v1/webhooks/{id}/test"),
            None,
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    let test_delivery = r.json()["delivery"].as_str().unwrap().to_owned();
    let queued = live
        .hooks
        .emit(
            WebhookEvent::CampaignHalted,
            json!({"campaign": "c-1", "reason": "gate breached"}),
        )
        .await
        .unwrap();
    assert_eq!(queued, 1);
    assert_eq!(
        live.hooks
            .emit(WebhookEvent::CampaignCompleted, json!({}))
            .await
            .unwrap(),
        0
    );
    wait_until("both deliveries arrived", || async {
        receiver.received("/hook").len() >= 2
    })
    .await;
    let got = receiver.received("/hook");
    assert_eq!(got.len(), 2, "{got:?}");

    let now = unix_now();
    for request in &got {
        assert_eq!(request.header("content-type"), "application/json");
        let timestamp = request.header("x-rampart-timestamp");
        let t: i64 = timestamp.parse().unwrap();
        assert!((now - 60..=now + 5).contains(&t), "{t}");
        let signature = request.header("x-rampart-signature");
        assert!(
            signature.starts_with("sha256=") && signature[7..].len() == 64,
            "{signature}"
        );
        assert_eq!(signature, signature.to_ascii_lowercase());
        assert!(signature_verifies(
            SECRET,
            timestamp,
            &request.body,
            signature
        ));
        // Another secret, another timestamp or another body does not verify.
        assert!(!signature_verifies(
            "another-secret-of-enough-length",
            timestamp,
            &request.body,
            signature
        ));
        assert!(!signature_verifies(
            SECRET,
            &(t + 1).to_string(),
            &request.body,
            signature
        ));
        let mut tampered = request.body.clone();
        tampered.push(b' ');
        assert!(!signature_verifies(SECRET, timestamp, &tampered, signature));

        let envelope = request.json();
        assert_eq!(envelope["event"], request.header("x-rampart-event"));
        assert_eq!(envelope["delivery"], request.header("x-rampart-delivery"));
        assert!(envelope["created"].as_i64().unwrap() <= now);
        let keys: Vec<&String> = envelope.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["event", "delivery", "created", "data"]);
    }
    let test = got
        .iter()
        .find(|r| r.header("x-rampart-event") == "webhook.test")
        .unwrap();
    assert_eq!(test.header("x-rampart-delivery"), test_delivery);
    assert_eq!(test.json()["data"]["webhook"], id.as_str());
    let halted = got
        .iter()
        .find(|r| r.header("x-rampart-event") == "campaign.halted")
        .unwrap();
    assert_eq!(
        halted.json()["data"],
        json!({"campaign": "c-1", "reason": "gate breached"})
    );

    // The API shows both delivered, newest first, to auditors (and admins).
    wait_until("both deliveries are recorded", || async {
        hooked
            .deliveries(&id)
            .await
            .iter()
            .all(|d| d.status == DeliveryStatus::Delivered)
    })
    .await;
    let r = hooked
        .call(
            &live,
            &hooked.auditor,
            "GET",
            &format!("/api/v1/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let listed = r.json();
    let deliveries = listed["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{listed}");
    assert_eq!(deliveries[0]["event"], "campaign.halted", "newest first");
    assert_eq!(deliveries[1]["id"], test_delivery.as_str());
    for d in deliveries {
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_status_code"], 200, "{d}");
        // The receiver's "the receiver says no thanks": its length only.
        assert_eq!(d["last_reply_bytes"], 27, "{d}");
        assert!(d.get("body").is_none());
    }

    // Listings and the audit log never show the secret.
    let r = hooked
        .call(&live, &hooked.viewer, "GET", "/api/v1/webhooks", None)
        .await;
    assert_eq!(r.json()["webhooks"][0]["id"], id.as_str());
    assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    let r = hooked
        .call(&live, &hooked.auditor, "GET", "/api/v1/audit", None)
        .await;
    let records = rampart_audit::parse_jsonl(&r.body).unwrap();
    rampart_audit::verify(&records).unwrap();
    let record = records
        .iter()
        .find(|r| r.action == "webhook.created")
        .unwrap();
    assert_eq!(record.subject, id);
    assert!(record.actor.starts_with("token:"));
    assert!(!String::from_utf8_lossy(&r.body).contains(SECRET));
    live.stop().await;
}

async fn a_failing_endpoint_is_retried_until_it_answers(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    receiver.script("/flaky", &[500, 500], 200);
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast()).await;
    let id = hooked
        .create(
            &live,
            &format!("http://{addr}/flaky"),
            &["campaign.completed"],
        )
        .await;
    assert_eq!(
        live.hooks
            .emit(WebhookEvent::CampaignCompleted, json!({"campaign": "c-2"}))
            .await
            .unwrap(),
        1
    );
    let d = hooked.settled(&id).await;
    assert_eq!(d.status, DeliveryStatus::Delivered, "{d:?}");
    assert_eq!(d.attempts, 3, "{d:?}");
    assert_eq!(d.last_status_code, Some(200));
    assert_eq!(d.last_error, "");
    assert!(d.delivered.is_some());
    // Nothing more is sent once delivered; every attempt carried the same delivery id.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got = receiver.received("/flaky");
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|r| r.header("x-rampart-delivery") == d.id));
    assert!(got.iter().all(|r| signature_verifies(
        SECRET,
        r.header("x-rampart-timestamp"),
        &r.body,
        r.header("x-rampart-signature")
    )));
    live.stop().await;
}

async fn a_silent_endpoint_is_bounded_and_does_not_hold_up_others(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    let (silent, accepted) = silent_endpoint().await;
    let hooked = Hooked::new(backend, name).await;
    let config = WebhookConfig {
        attempt_timeout: Duration::from_millis(400),
        max_attempts: 3,
        ..fast()
    };
    let live = hooked.start(config).await;
    let stuck = hooked
        .create(
            &live,
            &format!("http://{silent}/never"),
            &["campaign.gate_breach"],
        )
        .await;
    let fine = hooked
        .create(
            &live,
            &format!("http://{addr}/fine"),
            &["campaign.gate_breach"],
        )
        .await;
    let started = Instant::now();
    assert_eq!(
        live.hooks
            .emit(WebhookEvent::GateBreach, json!({"gate": "failure_rate"}))
            .await
            .unwrap(),
        2
    );
    // The healthy endpoint gets its delivery while the silent one is still being waited for.
    wait_until("the healthy webhook is delivered", || async {
        hooked.deliveries(&fine).await[0].status == DeliveryStatus::Delivered
    })
    .await;
    let stuck_now = hooked.deliveries(&stuck).await;
    assert_eq!(
        stuck_now[0].status,
        DeliveryStatus::Pending,
        "{stuck_now:?}"
    );
    // The management API answers meanwhile.
    let r = hooked
        .call(&live, &hooked.viewer, "GET", "/api/v1/webhooks", None)
        .await;
    assert_eq!(r.status, 200);

    let d = hooked.settled(&stuck).await;
    let elapsed = started.elapsed();
    assert_eq!(d.status, DeliveryStatus::Failed, "{d:?}");
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_status_code, None);
    assert!(d.last_error.contains("no answer within 0.4 s"), "{d:?}");
    // Three bounded attempts: at least 3 × 0.4 s, far less than an unbounded wait.
    assert!(elapsed >= Duration::from_millis(1200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(8), "{elapsed:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        3,
        "one connection per attempt"
    );
    assert_eq!(receiver.received("/fine").len(), 1);
    live.stop().await;
}

async fn deliveries_fail_after_the_maximum_attempts(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    receiver.script("/down", &[], 503);
    let hooked = Hooked::new(backend, name).await;
    let live = hooked
        .start(WebhookConfig {
            max_attempts: 4,
            ..fast()
        })
        .await;
    let id = hooked
        .create(
            &live,
            &format!("http://{addr}/down"),
            &["device.verification_failed"],
        )
        .await;
    live.hooks
        .emit(
            WebhookEvent::VerificationFailed,
            json!({"device": "dev-1", "reason": "bad signature"}),
        )
        .await
        .unwrap();
    let d = hooked.settled(&id).await;
    assert_eq!(d.status, DeliveryStatus::Failed, "{d:?}");
    assert_eq!(d.attempts, 4);
    assert_eq!(d.last_status_code, Some(503));
    assert!(d.last_error.contains("HTTP 503"), "{d:?}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        receiver.received("/down").len(),
        4,
        "no attempt after failing"
    );
    live.stop().await;
}

async fn pending_deliveries_are_sent_after_a_restart(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    receiver.script("/later", &[], 503);
    let hooked = Hooked::new(backend, name).await;
    let config = WebhookConfig {
        max_attempts: 1000,
        ..fast()
    };
    let first = hooked.start(config.clone()).await;
    let id = hooked
        .create(
            &first,
            &format!("http://{addr}/later"),
            &["campaign.halted"],
        )
        .await;
    first
        .hooks
        .emit(WebhookEvent::CampaignHalted, json!({"campaign": "c-3"}))
        .await
        .unwrap();
    wait_until("the endpoint was tried", || async {
        !receiver.received("/later").is_empty()
    })
    .await;
    first.stop().await;
    let before = hooked.deliveries(&id).await;
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].status, DeliveryStatus::Pending, "{before:?}");
    assert!(before[0].attempts >= 1);

    // Also an event queued and never attempted, as if the server had died right after storing
    // it; and the endpoint recovers while no server runs.
    let mut make = |_: &str| {
        Ok((
            "dlv-queued-before-restart".to_owned(),
            json!({"event": "campaign.halted", "delivery": "dlv-queued-before-restart",
                   "created": unix_now(), "data": {}})
            .to_string(),
        ))
    };
    let millis = unix_now() * 1000;
    let queued = hooked
        .fx
        .db
        .enqueue_webhook_event("campaign.halted", unix_now(), millis, &mut make)
        .await
        .unwrap();
    assert_eq!(queued.queued, 1);
    receiver.script("/later", &[], 200);
    let tried = receiver.received("/later").len();

    let second = hooked.start(config).await;
    wait_until(
        "both deliveries are delivered after the restart",
        || async {
            let list = hooked.deliveries(&id).await;
            list.len() == 2 && list.iter().all(|d| d.status == DeliveryStatus::Delivered)
        },
    )
    .await;
    let after: Vec<Received> = receiver.received("/later").split_off(tried);
    let ids: Vec<&str> = after
        .iter()
        .map(|r| r.header("x-rampart-delivery"))
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&before[0].id.as_str()), "{ids:?}");
    assert!(ids.contains(&"dlv-queued-before-restart"), "{ids:?}");
    second.stop().await;
}

async fn a_rollback_spike_is_announced_once(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    let hooked = Hooked::new(backend, name).await;
    let live = hooked
        .start(WebhookConfig {
            rollback_spike: RollbackSpikeConfig {
                threshold: 3,
                window: Duration::from_secs(60),
            },
            ..fast()
        })
        .await;
    let id = hooked
        .create(
            &live,
            &format!("http://{addr}/spike"),
            &["fleet.rollback_spike"],
        )
        .await;
    let now = unix_now();
    live.hooks.observe_report("rolled_back", "dev-1", now);
    live.hooks.observe_report("installed", "dev-9", now);
    live.hooks.observe_report("rolled_back", "dev-2", now);
    assert!(hooked.deliveries(&id).await.is_empty());
    live.hooks.observe_report("rolled_back", "dev-3", now + 1);
    // More rollbacks within the window do not repeat the alert.
    for i in 4..20 {
        live.hooks
            .observe_report("rolled_back", &format!("dev-{i}"), now + 2);
    }
    wait_until("the spike was delivered", || async {
        !receiver.received("/spike").is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = receiver.received("/spike");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].header("x-rampart-event"), "fleet.rollback_spike");
    let data = &got[0].json()["data"];
    assert_eq!(data["count"], 3, "{data}");
    assert_eq!(data["threshold"], 3);
    assert_eq!(data["window_secs"], 60);
    assert_eq!(data["example_devices"], json!(["dev-3", "dev-2", "dev-1"]));
    assert_eq!(hooked.deliveries(&id).await.len(), 1);
    live.stop().await;
}

async fn webhook_api_refuses_bad_input_and_unpermitted_callers(backend: Backend, name: &str) {
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast()).await;
    let good = json!({"url": "https://alerts.example.com/rampart", "secret": SECRET, "events": ["campaign.halted"]});

    // Without a token, and with roles that may not manage webhooks.
    let mut conn = Conn::new(
        tls_connect(live.management, &hooked.operator_tls)
            .await
            .unwrap(),
    );
    let r = conn
        .send("GET", "/api/v1/webhooks", &[], b"")
        .await
        .unwrap();
    r.error(401, "unauthorized");
    for token in [&hooked.operator, &hooked.viewer, &hooked.auditor] {
        let r = hooked
            .call(&live, token, "POST", "/api/v1/webhooks", Some(&good))
            .await;
        assert!(r.error(403, "forbidden").contains("Admin permission"));
    }
    for token in [&hooked.viewer, &hooked.auditor, &hooked.operator] {
        let r = hooked
            .call(&live, token, "GET", "/api/v1/webhooks", None)
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }

    // Bad input: each answer names what was wrong.
    let bad_field = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases: Vec<(Value, &str)> = vec![
        (
            bad_field("url", json!("ftp://alerts.example.com/")),
            "https://",
        ),
        (bad_field("url", json!("alerts.example.com")), "https://"),
        (bad_field("url", json!("https://")), "no host"),
        (bad_field("url", json!("https://exa mple.com/")), "spaces"),
        (bad_field("url", json!("https://[zz/")), "does not parse"),
        (
            bad_field("url", json!("https://user:pw@alerts.example.com/")),
            "credentials",
        ),
        (
            bad_field(
                "url",
                json!(format!("https://alerts.example.com/{}", "a".repeat(3000))),
            ),
            "2048",
        ),
        (bad_field("secret", json!("too-short")), "16 to 256"),
        (bad_field("secret", json!("x".repeat(300))), "16 to 256"),
        (
            bad_field("events", json!(["campaign.halted", "campaign.exploded"])),
            "campaign.exploded",
        ),
        (bad_field("events", json!([])), "at least one event"),
        (
            bad_field("events", json!(["webhook.test"])),
            "cannot be subscribed",
        ),
        (bad_field("events", json!("campaign.halted")), "expected"),
        (
            bad_field("description", json!("d".repeat(300))),
            "description",
        ),
        (json!({"url": "https://a.example.com/"}), "missing field"),
        (bad_field("colour", json!("red")), "unknown field"),
    ];
    for (body, needle) in cases {
        let r = hooked
            .call(
                &live,
                &hooked.admin,
                "POST",
                "/api/v1/webhooks",
                Some(&body),
            )
            .await;
        let detail = r.error(422, "invalid_request");
        assert!(detail.contains(needle), "{body}: {detail}");
        assert!(
            !detail.contains("too-short"),
            "secrets are not echoed: {detail}"
        );
    }
    let r = hooked
        .raw(
            &live,
            &hooked.admin,
            "POST",
            "/api/v1/webhooks",
            b"{\"url\": ",
        )
        .await;
    r.error(400, "malformed_json");
    let r = hooked
        .raw(&live, &hooked.admin, "POST", "/api/v1/webhooks", b"")
        .await;
    r.error(400, "malformed_json");
    let huge = format!(
        "{{\"url\": \"https://a.example.com/\", \"description\": \"{}\"}}",
        "x".repeat(70_000)
    );
    let r = hooked
        .raw(
            &live,
            &hooked.admin,
            "POST",
            "/api/v1/webhooks",
            huge.as_bytes(),
        )
        .await;
    r.error(413, "payload_too_large");
    let r = hooked
        .call(&live, &hooked.admin, "PUT", "/api/v1/webhooks", Some(&good))
        .await;
    r.error(405, "method_not_allowed");

    // Unknown ids are 404 everywhere, whoever asks.
    for (token, method, path) in [
        (&hooked.admin, "DELETE", "/api/v1/webhooks/whk-nope"),
        (&hooked.admin, "POST", "/api/v1/webhooks/whk-nope/test"),
        (&hooked.viewer, "GET", "/api/v1/webhooks/whk-nope"),
        (
            &hooked.auditor,
            "GET",
            "/api/v1/webhooks/whk-nope/deliveries",
        ),
    ] {
        let r = hooked.call(&live, token, method, path, None).await;
        let detail = r.error(404, "unknown_webhook");
        assert!(detail.contains("whk-nope"), "{detail}");
    }
    assert!(hooked.fx.db.list_webhooks().await.unwrap().is_empty());

    // A webhook: only admins delete it or send it tests; bad listing queries are 422.
    let id = hooked
        .create(
            &live,
            "https://alerts.example.com/rampart",
            &["campaign.halted"],
        )
        .await;
    let r = hooked
        .call(
            &live,
            &hooked.viewer,
            "GET",
            &format!("/api/v1/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(r.json()["events"], json!(["campaign.halted"]));
    for (method, path) in [
        ("DELETE", format!("/api/v1/webhooks/{id}")),
        ("POST", format!("/api/v1/webhooks/{id}/test")),
    ] {
        hooked
            .call(&live, &hooked.operator, method, &path, None)
            .await
            .error(403, "forbidden");
    }
    for query in ["limit=lots", "colour=red"] {
        hooked
            .call(
                &live,
                &hooked.auditor,
                "GET",
                &format!("/api/v1/webhooks/{id}/deliveries?{query}"),
                None,
            )
            .await
            .error(422, "invalid_request");
    }
    let r = hooked
        .call(
            &live,
            &hooked.admin,
            "DELETE",
            &format!("/api/v1/webhooks/{id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    hooked
        .call(
            &live,
            &hooked.admin,
            "DELETE",
            &format!("/api/v1/webhooks/{id}"),
            None,
        )
        .await
        .error(404, "unknown_webhook");

    // At most 100 webhooks.
    let mut conn = Conn::new(
        tls_connect(live.management, &hooked.operator_tls)
            .await
            .unwrap(),
    );
    let auth = format!("Bearer {}", hooked.admin);
    for _ in 0..rampart_db::MAX_WEBHOOKS {
        let r = conn
            .send(
                "POST",
                "/api/v1/webhooks",
                &[("Authorization", &auth)],
                good.to_string().as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{r:?}");
    }
    let r = conn
        .send(
            "POST",
            "/api/v1/webhooks",
            &[("Authorization", &auth)],
            good.to_string().as_bytes(),
        )
        .await
        .unwrap();
    assert!(r.error(422, "invalid_request").contains("delete one"));

    // Creations and deletions are audited, in a chain that verifies.
    let r = hooked
        .call(&live, &hooked.auditor, "GET", "/api/v1/audit", None)
        .await;
    let records = rampart_audit::parse_jsonl(&r.body).unwrap();
    rampart_audit::verify(&records).unwrap();
    let count = |action: &str| records.iter().filter(|r| r.action == action).count();
    assert_eq!(count("webhook.created"), 101);
    assert_eq!(count("webhook.deleted"), 1);
    live.stop().await;
}

// ---------------------------------------------------------------------------
// The address policy, reply bodies, who reads deliveries, secrets at rest

/// POSTs a webhook with `url` as the admin; the answer.
async fn create_raw(hooked: &Hooked, live: &Live, url: &str) -> Response {
    hooked
        .call(
            live,
            &hooked.admin,
            "POST",
            "/api/v1/webhooks",
            Some(&json!({"url": url, "secret": SECRET, "events": ["campaign.halted"]})),
        )
        .await
}

async fn internal_addresses_are_refused_at_creation_in_every_spelling(
    backend: Backend,
    name: &str,
) {
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast_default_policy()).await;
    // (url, the address the refusal must name)
    let cases = [
        (
            "http://169.254.169.254/latest/meta-data/",
            "169.254.169.254",
        ),
        ("http://[::ffff:a9fe:a9fe]/", "169.254.169.254"),
        ("http://[::ffff:169.254.169.254]:8080/", "169.254.169.254"),
        ("http://0xa9fea9fe/", "169.254.169.254"),
        ("http://2852039166/", "169.254.169.254"),
        ("http://0251.0376.0251.0376/", "169.254.169.254"),
        ("http://169.254.43518/", "169.254.169.254"),
        ("http://localhost:6379/", "127.0.0.1"),
        ("http://127.0.0.1:8080/hook", "127.0.0.1"),
        ("http://0x7f000001/", "127.0.0.1"),
        ("http://[::1]:9000/", "::1"),
        ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
        ("https://10.0.0.5/", "10.0.0.5"),
        ("https://172.16.3.4/", "172.16.3.4"),
        ("https://192.168.1.1/", "192.168.1.1"),
        ("https://100.64.0.1/", "100.64.0.1"),
        ("https://[fd00::1]/", "fd00::1"),
        ("https://[fe80::1]/", "fe80::1"),
        ("https://192.0.2.10/", "192.0.2.10"),
        ("https://198.18.0.1/", "198.18.0.1"),
        ("http://0.0.0.0:6379/", "0.0.0.0"),
        ("http://224.0.0.1/", "224.0.0.1"),
    ];
    for (url, address) in cases {
        let r = create_raw(&hooked, &live, url).await;
        let detail = r.error(422, "invalid_request");
        assert!(detail.contains(address), "{url}: {detail}");
        assert!(detail.contains("may not reach"), "{url}: {detail}");
        if !["0.0.0.0", "224.0.0.1"].contains(&address) {
            assert!(detail.contains("--webhook-allow"), "{url}: {detail}");
        }
    }
    assert!(hooked.fx.db.list_webhooks().await.unwrap().is_empty());
    // A public address is accepted.
    let r = create_raw(&hooked, &live, "https://93.184.215.14/hook").await;
    assert_eq!(r.status, 201, "{r:?}");
    live.stop().await;

    // The allow-list re-admits exactly what it names.
    let live = hooked
        .start(WebhookConfig {
            allow_networks: loopback(),
            ..fast_default_policy()
        })
        .await;
    for url in [
        "http://localhost:6379/",
        "http://[::ffff:127.0.0.1]/",
        "http://0x7f000001/",
    ] {
        let r = create_raw(&hooked, &live, url).await;
        assert_eq!(r.status, 201, "{url}: {r:?}");
    }
    for url in [
        "http://169.254.169.254/",
        "http://[fd00::1]/",
        "http://10.0.0.5/",
    ] {
        create_raw(&hooked, &live, url)
            .await
            .error(422, "invalid_request");
    }
    live.stop().await;
}

async fn deliveries_to_refused_addresses_are_stopped_at_connection_time(
    backend: Backend,
    name: &str,
) {
    let (receiver, addr) = Receiver::start().await;
    let hooked = Hooked::new(backend, name).await;
    // Registered while loopback was allowed: by literal address and by a name that resolves
    // to it.
    let first = hooked.start(fast()).await;
    let literal = hooked
        .create(
            &first,
            &format!("http://{addr}/literal"),
            &["campaign.halted"],
        )
        .await;
    let named = hooked
        .create(
            &first,
            &format!("http://localhost:{}/named", addr.port()),
            &["campaign.halted"],
        )
        .await;
    first.stop().await;
    // The operator drops the allow-list: every attempt checks again, after resolution, and
    // nothing reaches the receiver.
    let live = hooked
        .start(WebhookConfig {
            max_attempts: 2,
            ..fast_default_policy()
        })
        .await;
    live.hooks
        .emit(WebhookEvent::CampaignHalted, json!({"campaign": "c-9"}))
        .await
        .unwrap();
    let d = hooked.settled(&literal).await;
    assert_eq!(d.status, DeliveryStatus::Failed, "{d:?}");
    assert!(
        d.last_error.contains("refused") && d.last_error.contains("127.0.0.1"),
        "{d:?}"
    );
    let d = hooked.settled(&named).await;
    assert_eq!(d.status, DeliveryStatus::Failed, "{d:?}");
    assert!(
        d.last_error.contains("localhost resolves to")
            && d.last_error.contains("loopback")
            && d.last_error.contains("--webhook-allow"),
        "{d:?}"
    );
    assert!(receiver.received("/literal").is_empty());
    assert!(receiver.received("/named").is_empty());
    live.stop().await;
}

async fn reply_bodies_are_never_stored_only_status_and_length(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    receiver.script("/leaky", &[], 500);
    let hooked = Hooked::new(backend, name).await;
    let live = hooked
        .start(WebhookConfig {
            max_attempts: 2,
            ..fast()
        })
        .await;
    let id = hooked
        .create(&live, &format!("http://{addr}/leaky"), &["campaign.halted"])
        .await;
    live.hooks
        .emit(WebhookEvent::CampaignHalted, json!({}))
        .await
        .unwrap();
    let d = hooked.settled(&id).await;
    assert_eq!(
        (d.status, d.last_status_code, d.last_reply_bytes),
        (DeliveryStatus::Failed, Some(500), Some(27)),
        "{d:?}"
    );
    assert!(!d.last_error.contains("no thanks"), "{d:?}");
    let r = hooked
        .call(
            &live,
            &hooked.auditor,
            "GET",
            &format!("/api/v1/webhooks/{id}/deliveries"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("no thanks"),
        "{r:?}"
    );
    assert_eq!(r.json()["deliveries"][0]["last_reply_bytes"], 27);
    live.stop().await;
}

async fn only_admins_and_auditors_read_deliveries(backend: Backend, name: &str) {
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast()).await;
    let id = hooked
        .create(&live, "http://127.0.0.1:9/hook", &["campaign.halted"])
        .await;
    let path = format!("/api/v1/webhooks/{id}/deliveries");
    for token in [&hooked.viewer, &hooked.operator] {
        let detail = hooked
            .call(&live, token, "GET", &path, None)
            .await
            .error(403, "forbidden")
            .to_owned();
        assert!(detail.contains("Audit permission"), "{detail}");
    }
    for token in [&hooked.admin, &hooked.auditor] {
        let r = hooked.call(&live, token, "GET", &path, None).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    live.stop().await;
}

/// The database's bytes as stored: the SQLite file and its WAL, or every PostgreSQL row of the
/// webhooks table as text.
async fn stored_bytes(hooked: &Hooked) -> Vec<u8> {
    match rampart_db::sqlite_file(&hooked.fx.db_url) {
        Some(file) => {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal"] {
                let mut name = file.clone().into_os_string();
                name.push(suffix);
                if let Ok(b) = std::fs::read(std::path::PathBuf::from(name)) {
                    bytes.extend(b);
                }
            }
            bytes
        }
        None => {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&hooked.fx.db_url).await.unwrap();
            let rows = sqlx::query("SELECT CAST(webhooks AS TEXT) AS row FROM webhooks")
                .fetch_all(&pool)
                .await
                .unwrap();
            pool.close().await;
            use sqlx::Row as _;
            rows.iter()
                .flat_map(|r| r.get::<String, _>("row").into_bytes())
                .collect()
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

async fn webhook_secrets_are_not_stored_in_clear(backend: Backend, name: &str) {
    let hooked = Hooked::new(backend, name).await;
    // SQLite: the server's default key file, next to the database.
    let default_key = rampart_db::sqlite_file(&hooked.fx.db_url)
        .map(|db| db.with_file_name(format!("{name}.secrets.key")));
    let mut config = fast();
    config.secrets_key = default_key.clone();
    let live = hooked.start(config).await;
    let id = hooked
        .create(&live, "http://127.0.0.1:9/sealed", &["campaign.halted"])
        .await;
    live.stop().await;
    let stored = stored_bytes(&hooked).await;
    assert!(contains(&stored, &id), "the check reads the right data");
    assert!(!contains(&stored, SECRET), "the secret is stored in clear");
    // The key file is owner-only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = default_key.unwrap_or_else(|| hooked.key_path());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", key.display());
    }
}

async fn a_wrong_secrets_key_is_refused_with_a_clear_error(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast()).await;
    hooked
        .create(
            &live,
            &format!("http://{addr}/sealed"),
            &["campaign.halted"],
        )
        .await;
    live.stop().await;

    // Another key: the server refuses to start, naming the key file and what to do.
    let other = hooked.fx._dir.path().join("another.key");
    let Err(e) = hooked
        .try_start(WebhookConfig {
            secrets_key: Some(other.clone()),
            ..fast()
        })
        .await
    else {
        panic!("a server started with the wrong secrets key")
    };
    let message = e.to_string();
    assert!(
        message.contains(&other.display().to_string())
            && message.contains("does not open")
            && message.contains("--secrets-key"),
        "{message}"
    );
    // The right key, readable by other users: refused, naming it and the fix.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let key = hooked.key_path();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let Err(e) = hooked.try_start(fast()).await else {
            panic!("a server started with a secrets key others can read")
        };
        let message = e.to_string();
        assert!(
            message.contains("may be read by other users") && message.contains("chmod 600"),
            "{message}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // The right key still works, and signs with the original secret.
    let live = hooked.start(fast()).await;
    live.hooks
        .emit(WebhookEvent::CampaignHalted, json!({}))
        .await
        .unwrap();
    wait_until("the sealed webhook was delivered", || async {
        !receiver.received("/sealed").is_empty()
    })
    .await;
    let got = &receiver.received("/sealed")[0];
    assert!(signature_verifies(
        SECRET,
        got.header("x-rampart-timestamp"),
        &got.body,
        got.header("x-rampart-signature")
    ));
    live.stop().await;
}

async fn secrets_stored_in_clear_are_sealed_when_the_server_starts(backend: Backend, name: &str) {
    let (receiver, addr) = Receiver::start().await;
    let hooked = Hooked::new(backend, name).await;
    let live = hooked.start(fast()).await;
    let id = hooked
        .create(
            &live,
            &format!("http://{addr}/legacy"),
            &["campaign.halted"],
        )
        .await;
    live.stop().await;
    // As a server from before migration 0008 stored it: in clear, with no key id.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&hooked.fx.db_url).await.unwrap();
    sqlx::query("UPDATE webhooks SET secret = $1, secret_key_id = '' WHERE id = $2")
        .bind(SECRET)
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert!(contains(&stored_bytes(&hooked).await, SECRET));

    let live = hooked.start(fast()).await;
    let secrets = hooked.fx.db.webhook_secrets().await.unwrap();
    assert_eq!(secrets.len(), 1);
    assert!(!secrets[0].1.key_id.is_empty(), "{:?}", secrets[0].1);
    assert_ne!(secrets[0].1.value, SECRET);
    live.hooks
        .emit(WebhookEvent::CampaignHalted, json!({}))
        .await
        .unwrap();
    wait_until("the resealed webhook was delivered", || async {
        !receiver.received("/legacy").is_empty()
    })
    .await;
    let got = &receiver.received("/legacy")[0];
    assert!(signature_verifies(
        SECRET,
        got.header("x-rampart-timestamp"),
        &got.body,
        got.header("x-rampart-signature")
    ));
    live.stop().await;
}

// ---------------------------------------------------------------------------
// The rollback-spike detector on a virtual clock

#[test]
fn rollback_spike_detector_fires_once_per_spike() {
    let mut detector = RollbackSpikeDetector::new(&RollbackSpikeConfig {
        threshold: 3,
        window: Duration::from_secs(10),
    });
    assert_eq!(detector.observe("rolled_back", "a", 100), None);
    assert_eq!(detector.observe("installed", "x", 100), None);
    assert_eq!(detector.observe("failed", "x", 101), None);
    assert_eq!(detector.observe("rolled_back", "b", 101), None);
    let spike = detector
        .observe("rolled_back", "c", 102)
        .expect("a spike at the threshold");
    assert_eq!(spike.count, 3);
    assert_eq!(spike.threshold, 3);
    assert_eq!(spike.window_secs, 10);
    assert_eq!((spike.first, spike.last), (100, 102));
    assert_eq!(spike.example_devices, ["c", "b", "a"]);
    let payload = spike.payload();
    assert_eq!(payload["count"], 3);
    assert_eq!(payload["window_secs"], 10);
    assert_eq!(payload["example_devices"], json!(["c", "b", "a"]));

    // Still at or over the threshold: silent, however many more come.
    for t in 103..=110 {
        assert_eq!(detector.observe("rolled_back", "d", t), None, "{t}");
    }
    // Reports at 108, 109, 110 are within the window at 111: still a spike, no new alert.
    assert_eq!(detector.observe("rolled_back", "e", 111), None);
    // A quiet period: everything leaves the window, the count falls below the threshold...
    assert_eq!(detector.observe("rolled_back", "f", 200), None);
    assert_eq!(detector.observe("rolled_back", "g", 205), None);
    // ...so the next spike is announced again.
    let again = detector
        .observe("rolled_back", "f", 209)
        .expect("a second spike");
    assert_eq!(
        again.example_devices,
        ["f", "g"],
        "examples without repeats"
    );
    // Reports that leave the window exactly at its end no longer count.
    let mut d = RollbackSpikeDetector::new(&RollbackSpikeConfig {
        threshold: 2,
        window: Duration::from_secs(10),
    });
    assert_eq!(d.observe("rolled_back", "a", 0), None);
    assert_eq!(d.observe("rolled_back", "b", 10), None);
    assert!(d.observe("rolled_back", "c", 19).is_some());
}

#[test]
fn rollback_spike_detector_memory_is_bounded_under_a_flood() {
    let mut detector = RollbackSpikeDetector::new(&RollbackSpikeConfig {
        threshold: 10,
        window: Duration::from_secs(300),
    });
    let fired = (0..200_000)
        .filter(|i| {
            detector
                .observe(
                    "rolled_back",
                    &format!("dev-{}", i % 1000),
                    1_000 + i / 1000,
                )
                .is_some()
        })
        .count();
    assert_eq!(fired, 1);
    // A clock that jumps backwards does not panic or fire spuriously.
    assert_eq!(detector.observe("rolled_back", "late", 0), None);
}
