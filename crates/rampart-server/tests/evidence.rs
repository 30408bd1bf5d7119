//! Forensic evidence (issue 16, decision 0034) through the real server: the `collect_evidence`
//! executor opens a request, the device's poll answer names it, the device uploads a signed
//! bundle in resumable chunks, the server checks it (this device, request, incident and nonce,
//! the signature with the certificate presented on the connection) and stores it
//! content-addressed with its hash in the timeline, the audit chain and the transparency log;
//! the chain-of-custody export verifies offline and a tampered one does not. On both backends.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::ops::Ops;
use common::{Backend, unix_now, wait_until};
use rampart_incident::agent_log::ChainHead;
use rampart_incident::evidence::{Bundle, DeviceSignature, Manifest, SignatureAlgorithm};
use rampart_log::note::NoteSigner;
use rampart_pki::IssuedCert;
use rampart_server::audit_anchor::{AuditAnchorConfig, AuditLogTarget};
use rampart_server::evidence::EvidenceConfig;
use serde_json::{Value, json};

const CHUNK: u64 = 1024;
const MAX_BUNDLE: u64 = 16 * 1024;

/// The DER inside a PEM document.
fn pem_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// A device: its certificate (and key), for its connections and its bundles' signatures.
struct TestDevice {
    cert: IssuedCert,
}

impl TestDevice {
    fn new(ops: &Ops, id: &str) -> Self {
        Self {
            cert: ops.fx.ca.issue_device(id, 30).unwrap(),
        }
    }

    fn tls(&self, ops: &Ops) -> Arc<rustls::ClientConfig> {
        ops.fx.client(&self.cert)
    }

    fn certificate(&self) -> Vec<u8> {
        pem_der(&self.cert.cert_pem)
    }

    /// A bundle answering `request` (as the manifest names it), signed with this device's key.
    fn bundle(&self, device_id: &str, request: &str, incident: &str, nonce: &str) -> Vec<u8> {
        self.bundle_with(
            device_id,
            request,
            incident,
            nonce,
            b"journal excerpt".to_vec(),
        )
    }

    fn bundle_with(
        &self,
        device_id: &str,
        request: &str,
        incident: &str,
        nonce: &str,
        content: Vec<u8>,
    ) -> Vec<u8> {
        let items = vec![
            ("journal.txt".to_string(), content),
            ("state/boot.json".to_string(), b"{\"slot\":\"a\"}".to_vec()),
        ];
        let manifest = Manifest::new(
            device_id,
            request,
            incident,
            nonce,
            unix_now(),
            "test-agent",
            &items,
            ChainHead {
                seq: 0,
                hash: "0".repeat(64),
            },
        );
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            &pem_der(&self.cert.key_pem),
            &ring::rand::SystemRandom::new(),
        )
        .unwrap();
        let signature = key
            .sign(
                &ring::rand::SystemRandom::new(),
                &manifest.signing_message(),
            )
            .unwrap();
        Bundle {
            manifest,
            items,
            signature: DeviceSignature::new(
                SignatureAlgorithm::EcdsaP256Sha256,
                signature.as_ref(),
            ),
            certificate: self.certificate(),
            quote: None,
        }
        .to_bytes()
    }
}

/// A transparency log served in-process (no witnesses), and the policy that trusts it.
struct Log {
    url: String,
    policy: rampart_log::policy::WitnessPolicy,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
}

async fn start_log() -> Log {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::from_seed("log.test/evidence", [7; 32]).unwrap();
    let verifier = signer.verifier();
    let mut config = rampart_tlog::service::LogConfig::new(dir.path().join("log"), signer);
    config.publish_interval = Duration::from_millis(100);
    let (handle, _thread) = rampart_tlog::service::start(config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, rampart_tlog::service::router(handle))
            .await
            .unwrap();
    });
    let policy =
        rampart_log::policy::WitnessPolicy::new(verifier, "log.test/evidence", vec![], 0).unwrap();
    Log {
        url,
        policy,
        _dir: dir,
        _server: server,
    }
}

struct Ctx {
    ops: Ops,
    audit_key: Arc<NoteSigner>,
    evidence_dir: tempfile::TempDir,
    log: Option<Log>,
}

async fn start(backend: Backend, name: &str, tweak: impl FnOnce(&mut EvidenceConfig)) -> Ctx {
    start_with_log(backend, name, false, tweak).await
}

async fn start_with_log(
    backend: Backend,
    name: &str,
    with_log: bool,
    tweak: impl FnOnce(&mut EvidenceConfig),
) -> Ctx {
    let evidence_dir = tempfile::tempdir().unwrap();
    let audit_key = Arc::new(NoteSigner::from_seed("rampart-audit", [3; 32]).unwrap());
    let log = if with_log {
        Some(start_log().await)
    } else {
        None
    };
    let target = log.as_ref().map(|l| AuditLogTarget {
        url: l.url.clone(),
        policy: l.policy.clone(),
    });
    let mut evidence = EvidenceConfig::in_directory(evidence_dir.path());
    evidence.chunk_bytes = CHUNK;
    evidence.max_bundle_bytes = MAX_BUNDLE;
    evidence.log = target.clone();
    tweak(&mut evidence);
    let key = audit_key.clone();
    let ops = Ops::start_with(backend, name, move |config| {
        config.evidence = Some(evidence);
        config.audit_anchor = Some(AuditAnchorConfig {
            key,
            interval: Duration::from_secs(3600),
            log: target,
        });
    })
    .await;
    Ctx {
        ops,
        audit_key,
        evidence_dir,
        log,
    }
}

impl Ctx {
    async fn sql(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::AnyPool::connect(&self.ops.fx.db_url).await.unwrap()
    }

    /// An open incident with an approved `collect_evidence` action for each device.
    async fn incident(&self, id: &str, devices: &[&str]) {
        let pool = self.sql().await;
        let now = unix_now();
        sqlx::query(
            "INSERT INTO incidents (id, open_cause, cause, detector, severity, state, title, opened_by, first_signal_at, detected_at, updated_at)
             VALUES ($1, $1, $1, 'operator', 'high', 'detected', 'evidence test', 'token:test', $2, $2, $2)",
        )
        .bind(id)
        .bind(now)
        .execute(&pool)
        .await
        .unwrap();
        for device in devices {
            sqlx::query(
                "INSERT INTO incident_actions (id, incident_id, action, device_id, state, requested_at)
                 VALUES ($1, $2, 'collect_evidence', $3, 'approved', $4)",
            )
            .bind(format!("act-{id}-{device}"))
            .bind(id)
            .bind(*device)
            .bind(now)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }

    /// Polls as the device until its answer carries an evidence request (for `incident`).
    async fn request(&self, device: &TestDevice, incident: &str) -> Value {
        let tls = device.tls(&self.ops);
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let mut conn = self.ops.server.connect(&tls).await;
            let r = conn.post("/device/v1/poll", &json!({})).await;
            assert_eq!(r.status, 200, "{r:?}");
            let evidence = r.json()["evidence"].clone();
            if evidence["incident"] == incident {
                return evidence;
            }
            if std::time::Instant::now() >= deadline {
                let requests = self
                    .ops
                    .fx
                    .db
                    .evidence_requests_of_incident(incident, 100)
                    .await
                    .unwrap();
                let pool = self.sql().await;
                let actions: Vec<(String, String)> =
                    sqlx::query_as("SELECT id, state FROM incident_actions")
                        .fetch_all(&pool)
                        .await
                        .unwrap();
                panic!(
                    "timed out waiting for the evidence request of {incident}: the last poll answered {r:?}; requests: {requests:?}; actions: {actions:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The id of the device's request for `incident`, once the executor opened it.
    async fn request_id(&self, device: &str, incident: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let found = self
                .ops
                .fx
                .db
                .evidence_requests_of_incident(incident, 100)
                .await
                .unwrap();
            if let Some(r) = found.into_iter().find(|r| r.device_id == device) {
                return r.id;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the evidence request of {device} in {incident}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn put(
        &self,
        device: &TestDevice,
        id: &str,
        offset: u64,
        chunk: &[u8],
    ) -> common::Response {
        let mut conn = self.ops.server.connect(&device.tls(&self.ops)).await;
        conn.send(
            "PUT",
            &format!("/device/v1/evidence/{id}?offset={offset}"),
            &[("Content-Type", "application/octet-stream")],
            chunk,
        )
        .await
        .unwrap()
    }

    /// Uploads `bytes` from offset 0 in chunks; returns the last answer.
    async fn upload(&self, device: &TestDevice, id: &str, bytes: &[u8]) -> common::Response {
        let mut last = None;
        for (i, chunk) in bytes.chunks(CHUNK as usize).enumerate() {
            let r = self.put(device, id, i as u64 * CHUNK, chunk).await;
            assert_eq!(r.status, 200, "{r:?}");
            last = Some(r);
        }
        last.expect("a non-empty bundle")
    }

    async fn complete(&self, device: &TestDevice, id: &str, bytes: &[u8]) -> common::Response {
        let mut conn = self.ops.server.connect(&device.tls(&self.ops)).await;
        conn.post(
            &format!("/device/v1/evidence/{id}/complete"),
            &json!({"length": bytes.len(), "sha256": sha256(bytes)}),
        )
        .await
    }

    async fn timeline_kinds(&self, incident: &str) -> Vec<(String, Value)> {
        self.ops
            .fx
            .db
            .incident_timeline_entries(incident, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.kind, e.detail))
            .collect()
    }

    fn stored_files(&self) -> Vec<String> {
        std::fs::read_dir(self.evidence_dir.path().join("bundles"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect()
    }
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn field<'a>(request: &'a Value, name: &str) -> &'a str {
    request[name].as_str().unwrap()
}

async fn an_evidence_bundle_uploads_in_resumable_chunks_and_is_stored_with_its_hash_recorded(
    backend: Backend,
    name: &str,
) {
    let ctx = start(backend, name, |_| {}).await;
    let dev = TestDevice::new(&ctx.ops, "dev-ev-1");
    ctx.incident("inc-1", &["dev-ev-1"]).await;
    let request = ctx.request(&dev, "inc-1").await;
    assert_eq!(request["chunk_bytes"], CHUNK);
    assert_eq!(request["max_bytes"], MAX_BUNDLE);
    let id = field(&request, "id");
    let bundle = dev.bundle_with(
        "dev-ev-1",
        id,
        "inc-1",
        field(&request, "nonce"),
        vec![b'x'; 3000],
    );
    assert!(bundle.len() as u64 > 2 * CHUNK);

    // The first chunk, then a chunk at the wrong offset: 409 with where to resume.
    let r = ctx.put(&dev, id, 0, &bundle[..CHUNK as usize]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["received"], CHUNK);
    let r = ctx.put(&dev, id, 5, &bundle[..10]).await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"], "offset_mismatch");
    assert_eq!(r.json()["received"], CHUNK);
    // The same chunk again (a retry whose answer was lost) is also refused: it is at offset 0.
    let r = ctx.put(&dev, id, 0, &bundle[..CHUNK as usize]).await;
    assert_eq!(r.status, 409, "{r:?}");
    // Progress says where to resume, and the rest goes on from there.
    let mut conn = ctx.ops.server.connect(&dev.tls(&ctx.ops)).await;
    let r = conn.get(&format!("/device/v1/evidence/{id}"), &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["received"], CHUNK);
    assert_eq!(r.json()["complete"], false);
    for (i, chunk) in bundle.chunks(CHUNK as usize).enumerate().skip(1) {
        let r = ctx.put(&dev, id, i as u64 * CHUNK, chunk).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A completion announcing fewer bytes than were sent is a conflict, not a refusal.
    let mut conn = ctx.ops.server.connect(&dev.tls(&ctx.ops)).await;
    let r = conn
        .post(
            &format!("/device/v1/evidence/{id}/complete"),
            &json!({"length": 10, "sha256": sha256(&bundle)}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = ctx.complete(&dev, id, &bundle).await;
    assert_eq!(r.status, 200, "{r:?}");
    let answer = r.json();
    assert_eq!(answer["complete"], true);
    assert_eq!(answer["sha256"], sha256(&bundle));

    // Stored under its hash; recorded in the timeline and the audit chain.
    assert_eq!(ctx.stored_files(), vec![sha256(&bundle)]);
    assert_eq!(
        std::fs::read(
            ctx.evidence_dir
                .path()
                .join("bundles")
                .join(sha256(&bundle))
        )
        .unwrap(),
        bundle
    );
    let kinds = ctx.timeline_kinds("inc-1").await;
    let stored = kinds
        .iter()
        .find(|(k, _)| k == "evidence_stored")
        .expect("an evidence_stored timeline entry");
    assert_eq!(stored.1["sha256"], sha256(&bundle));
    assert!(kinds.iter().any(|(k, _)| k == "evidence_requested"));
    let records = ctx.ops.audit_records().await;
    assert!(
        records
            .iter()
            .any(|r| r.action == "incident.evidence_stored"
                && r.details["sha256"] == sha256(&bundle))
    );

    // The poll answer no longer asks; the action is done.
    let mut conn = ctx.ops.server.connect(&dev.tls(&ctx.ops)).await;
    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert!(r.json()["evidence"].is_null(), "{r:?}");
    ctx.ops.server.stop().await;
}

async fn an_evidence_request_is_used_once(backend: Backend, name: &str) {
    let ctx = start(backend, name, |_| {}).await;
    let dev = TestDevice::new(&ctx.ops, "dev-once");
    ctx.incident("inc-once", &["dev-once"]).await;
    let request = ctx.request(&dev, "inc-once").await;
    let id = field(&request, "id");
    let bundle = dev.bundle("dev-once", id, "inc-once", field(&request, "nonce"));
    ctx.upload(&dev, id, &bundle).await;
    assert_eq!(ctx.complete(&dev, id, &bundle).await.status, 200);
    // The same completion again (its answer was lost): the same answer, nothing new stored.
    let r = ctx.complete(&dev, id, &bundle).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Nothing more is accepted for it.
    let r = ctx.put(&dev, id, bundle.len() as u64, b"more").await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"], "evidence_request_closed");
    let other = dev.bundle_with(
        "dev-once",
        id,
        "inc-once",
        field(&request, "nonce"),
        b"other".to_vec(),
    );
    let r = ctx.complete(&dev, id, &other).await;
    assert_eq!(r.status, 409, "{r:?}");
    let stored = ctx
        .ops
        .fx
        .db
        .evidence_bundles_of_incident("inc-once", 10)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    ctx.ops.server.stop().await;
}

/// Uploads `bundle` to the request and completes it; returns the completion's answer.
async fn upload_and_complete(
    ctx: &Ctx,
    dev: &TestDevice,
    id: &str,
    bundle: &[u8],
) -> common::Response {
    ctx.upload(dev, id, bundle).await;
    ctx.complete(dev, id, bundle).await
}

async fn assert_refused(ctx: &Ctx, incident: &str, r: &common::Response, because: &str) {
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["error"], "evidence_refused", "{r:?}");
    let detail = r.json()["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains(because), "{detail}");
    let kinds = ctx.timeline_kinds(incident).await;
    let refused = kinds
        .iter()
        .find(|(k, _)| k == "evidence_refused")
        .expect("an evidence_refused timeline entry");
    assert!(refused.1["reason"].as_str().unwrap().contains(because));
    let events = ctx.ops.fx.db.security_events(0, None, 100).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == "evidence.refused"),
        "{events:?}"
    );
    assert!(
        ctx.stored_files().is_empty(),
        "a refused bundle is never stored"
    );
}

async fn a_bundle_for_another_device_is_refused(backend: Backend, name: &str) {
    let ctx = start(backend, name, |_| {}).await;
    let a = TestDevice::new(&ctx.ops, "dev-a");
    let b = TestDevice::new(&ctx.ops, "dev-b");
    ctx.incident("inc-a", &["dev-a"]).await;
    let request = ctx.request(&a, "inc-a").await;
    let id = field(&request, "id");
    // Another device cannot even see or touch the request.
    let r = ctx.put(&b, id, 0, b"x").await;
    assert_eq!(r.status, 404, "{r:?}");
    let mut conn = ctx.ops.server.connect(&b.tls(&ctx.ops)).await;
    let r = conn.get(&format!("/device/v1/evidence/{id}"), &[]).await;
    assert_eq!(r.status, 404, "{r:?}");
    // A bundle device B collected and signed, uploaded over A's connection: refused.
    let bundle = b.bundle("dev-b", id, "inc-a", field(&request, "nonce"));
    let r = upload_and_complete(&ctx, &a, id, &bundle).await;
    assert_refused(&ctx, "inc-a", &r, "device_id").await;
    // And the request is used: a genuine bundle afterwards is not accepted.
    let genuine = a.bundle("dev-a", id, "inc-a", field(&request, "nonce"));
    let r = ctx.put(&a, id, 0, &genuine[..CHUNK as usize]).await;
    assert_eq!(r.status, 409, "{r:?}");
    ctx.ops.server.stop().await;
}

/// The device `dev-r` answers its request in incident `inc-r` with the bundle `make` builds
/// (given the context, the device and the request); it must be refused `because`.
async fn refused_upload(
    backend: Backend,
    name: &str,
    because: &str,
    make: impl FnOnce(&Ctx, &TestDevice, &str, &str) -> Vec<u8>,
) {
    let ctx = start(backend, name, |_| {}).await;
    let dev = TestDevice::new(&ctx.ops, "dev-r");
    ctx.incident("inc-r", &["dev-r"]).await;
    let request = ctx.request(&dev, "inc-r").await;
    let id = field(&request, "id");
    let bundle = make(&ctx, &dev, id, field(&request, "nonce"));
    let r = upload_and_complete(&ctx, &dev, id, &bundle).await;
    assert_refused(&ctx, "inc-r", &r, because).await;
    ctx.ops.server.stop().await;
}

async fn a_bundle_signed_by_another_devices_key_is_refused(backend: Backend, name: &str) {
    // Names the device and its request, but another device signed it (with its certificate).
    refused_upload(backend, name, "another certificate", |ctx, _, id, nonce| {
        TestDevice::new(&ctx.ops, "dev-other").bundle("dev-r", id, "inc-r", nonce)
    })
    .await;
}

async fn a_bundle_for_another_incident_is_refused(backend: Backend, name: &str) {
    refused_upload(backend, name, "incident", |_, dev, id, nonce| {
        dev.bundle("dev-r", id, "inc-other", nonce)
    })
    .await;
}

async fn a_bundle_replayed_from_another_request_is_refused(backend: Backend, name: &str) {
    // Collected for an earlier request: another nonce.
    refused_upload(backend, name, "nonce", |_, dev, id, _| {
        dev.bundle("dev-r", id, "inc-r", &"ab".repeat(32))
    })
    .await;
}

async fn a_truncated_or_malformed_bundle_is_refused(backend: Backend, name: &str) {
    refused_upload(backend, name, "ends early", |_, dev, id, nonce| {
        let bundle = dev.bundle("dev-r", id, "inc-r", nonce);
        bundle[..bundle.len() / 2].to_vec()
    })
    .await;
}

async fn a_bundle_whose_bytes_do_not_match_the_announced_hash_is_refused(
    backend: Backend,
    name: &str,
) {
    let ctx = start(backend, name, |_| {}).await;
    let dev = TestDevice::new(&ctx.ops, "dev-hash");
    ctx.incident("inc-h", &["dev-hash"]).await;
    let request = ctx.request(&dev, "inc-h").await;
    let id = field(&request, "id");
    let bundle = dev.bundle("dev-hash", id, "inc-h", field(&request, "nonce"));
    ctx.upload(&dev, id, &bundle).await;
    let mut conn = ctx.ops.server.connect(&dev.tls(&ctx.ops)).await;
    let r = conn
        .post(
            &format!("/device/v1/evidence/{id}/complete"),
            &json!({"length": bundle.len(), "sha256": "0".repeat(64)}),
        )
        .await;
    assert_refused(&ctx, "inc-h", &r, "hash to").await;
    ctx.ops.server.stop().await;
}

async fn bad_upload_requests_get_bounded_clear_errors(backend: Backend, name: &str) {
    let ctx = start(backend, name, |_| {}).await;
    let dev = TestDevice::new(&ctx.ops, "dev-bad");
    ctx.incident("inc-bad", &["dev-bad"]).await;
    let request = ctx.request(&dev, "inc-bad").await;
    let id = field(&request, "id");
    let tls = dev.tls(&ctx.ops);
    let mut conn = ctx.ops.server.connect(&tls).await;
    // No offset.
    let r = conn
        .send(
            "PUT",
            &format!("/device/v1/evidence/{id}"),
            &[("Content-Type", "application/octet-stream")],
            b"x",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 422, "{r:?}");
    // A chunk over chunk_bytes.
    let r = ctx.put(&dev, id, 0, &vec![0u8; CHUNK as usize + 1]).await;
    assert_eq!(r.status, 413, "{r:?}");
    // Not octet-stream.
    let r = conn
        .send(
            "PUT",
            &format!("/device/v1/evidence/{id}?offset=0"),
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415, "{r:?}");
    // Unknown and malformed ids.
    for bad in ["ev-0000000000000000", "..%2F..%2Fetc", &"a".repeat(300)] {
        let r = conn.get(&format!("/device/v1/evidence/{bad}"), &[]).await;
        assert_eq!(r.status, 404, "{bad}: {r:?}");
    }
    // A malformed completion.
    let r = conn
        .send(
            "POST",
            &format!("/device/v1/evidence/{id}/complete"),
            &[],
            b"{\"length\": ",
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    let r = conn
        .post(
            &format!("/device/v1/evidence/{id}/complete"),
            &json!({"length": 0, "sha256": "nothex"}),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    // None of it disturbed the upload: it still starts at 0.
    let r = conn.get(&format!("/device/v1/evidence/{id}"), &[]).await;
    assert_eq!(r.json()["received"], 0);
    ctx.ops.server.stop().await;
}

async fn an_upload_flood_gets_413_after_the_quota_and_other_devices_still_upload(
    backend: Backend,
    name: &str,
) {
    // A device may hold 6 KiB; each bundle up to 4 KiB; 30 calls, then (practically) none.
    let ctx = start(backend, name, |c| {
        c.max_bundle_bytes = 4 * 1024;
        c.quota.device_bytes = 6 * 1024;
        c.upload_burst = 30.0;
        c.uploads_per_second = 0.001;
    })
    .await;
    let flooder = TestDevice::new(&ctx.ops, "dev-flood");
    let other = TestDevice::new(&ctx.ops, "dev-calm");
    ctx.incident("inc-f1", &["dev-flood", "dev-calm"]).await;
    ctx.incident("inc-f2", &["dev-flood"]).await;
    // (The poll answer names one of its two requests; both are the flooder's to upload to.)
    let first = ctx.request_id("dev-flood", "inc-f1").await;
    // The first request's limit: 4 chunks, then 413.
    for i in 0..4u64 {
        let r = ctx
            .put(&flooder, &first, i * CHUNK, &[1u8; CHUNK as usize])
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = ctx.put(&flooder, &first, 4 * CHUNK, &[1u8; 1]).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["error"], "payload_too_large");
    // Its second request (another incident) fills the device quota, then 413 quota.
    let second = ctx.request_id("dev-flood", "inc-f2").await;
    let mut refused = None;
    for i in 0..4u64 {
        let r = ctx
            .put(&flooder, &second, i * CHUNK, &[2u8; CHUNK as usize])
            .await;
        if r.status != 200 {
            refused = Some((i, r));
            break;
        }
    }
    let (at, r) = refused.expect("the device quota stops the flood");
    assert_eq!(
        at, 2,
        "6 KiB = 4 chunks of the first request and 2 of the second"
    );
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["error"], "evidence_quota_exceeded");
    assert!(r.json()["detail"].as_str().unwrap().contains("device"));
    // Hammering on: 429 once its rate is used up, every answer bounded (no 5xx).
    let mut throttled = false;
    for _ in 0..100 {
        let r = ctx
            .put(&flooder, &second, 2 * CHUNK, &[2u8; CHUNK as usize])
            .await;
        assert!(r.status == 413 || r.status == 429, "{r:?}");
        if r.status == 429 {
            assert_eq!(r.json()["error"], "too_many_evidence_requests");
            throttled = true;
            break;
        }
    }
    assert!(throttled, "a flood is throttled");
    // Nothing else is disturbed: another device uploads and completes its bundle.
    let calm = ctx.request(&other, "inc-f1").await;
    let id = field(&calm, "id");
    let bundle = other.bundle("dev-calm", id, "inc-f1", field(&calm, "nonce"));
    let r = upload_and_complete(&ctx, &other, id, &bundle).await;
    assert_eq!(r.status, 200, "{r:?}");
    ctx.ops.server.stop().await;
}

/// An incident with one stored, anchored bundle, exported through the management API.
async fn exported(backend: Backend, name: &str) -> (Ctx, Vec<u8>) {
    let ctx = start_with_log(backend, name, true, |_| {}).await;
    let dev = TestDevice::new(&ctx.ops, "dev-exp");
    ctx.incident("inc-exp", &["dev-exp"]).await;
    let request = ctx.request(&dev, "inc-exp").await;
    let id = field(&request, "id").to_owned();
    let bundle = dev.bundle("dev-exp", &id, "inc-exp", field(&request, "nonce"));
    assert_eq!(
        upload_and_complete(&ctx, &dev, &id, &bundle).await.status,
        200
    );
    wait_until("the bundle is anchored in the transparency log", || async {
        ctx.ops
            .fx
            .db
            .evidence_bundle(&id)
            .await
            .unwrap()
            .is_some_and(|b| b.log_proof.is_some())
    })
    .await;
    // Content is for auditors; a viewer may list but not export.
    let r = ctx
        .ops
        .call(
            &ctx.ops.viewer,
            "GET",
            "/api/v1/incidents/inc-exp/export",
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = ctx
        .ops
        .call(
            &ctx.ops.viewer,
            "GET",
            "/api/v1/incidents/inc-exp/evidence",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["bundles"][0]["anchored"], true);
    let r = ctx
        .ops
        .call(
            &ctx.ops.auditor,
            "GET",
            &format!("/api/v1/evidence/{id}/bundle"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, bundle);
    let r = ctx
        .ops
        .call(
            &ctx.ops.auditor,
            "GET",
            "/api/v1/incidents/inc-exp/export",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    (ctx, r.body)
}

fn verify(ctx: &Ctx, export: &[u8]) -> Result<rampart_incident::custody::VerifiedExport, String> {
    rampart_incident::custody::verify_export(
        export,
        &[ctx.audit_key.verifier()],
        ctx.log.as_ref().map(|l| &l.policy),
    )
    .map_err(|e| e.to_string())
}

async fn an_exported_evidence_bundle_verifies_offline(backend: Backend, name: &str) {
    let (ctx, export) = exported(backend, name).await;
    let verified = verify(&ctx, &export).unwrap();
    assert_eq!(verified.incident, "inc-exp");
    assert_eq!(verified.bundles.len(), 1);
    assert!(verified.log_checked);
    // The device certificate it was uploaded with chains to the manufacturer CA.
    let (_, certificate, _) = &verified.certificates[0];
    assert_eq!(
        rampart_pki::device_id_from_cert(certificate).as_deref(),
        Some("dev-exp")
    );
    // With another audit key, or another log key, it does not verify.
    let stranger = NoteSigner::from_seed("rampart-audit", [9; 32]).unwrap();
    let e = rampart_incident::custody::verify_export(&export, &[stranger.verifier()], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("audit head"), "{e}");
    let other_log = NoteSigner::from_seed("log.test/evidence", [8; 32]).unwrap();
    let policy = rampart_log::policy::WitnessPolicy::new(
        other_log.verifier(),
        "log.test/evidence",
        vec![],
        0,
    )
    .unwrap();
    let e = rampart_incident::custody::verify_export(
        &export,
        &[ctx.audit_key.verifier()],
        Some(&policy),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("transparency-log"), "{e}");
    ctx.ops.server.stop().await;
}

/// Edits the export's JSON with `change` and returns the verifier's complaint.
fn tampered(ctx: &Ctx, export: &[u8], change: impl FnOnce(&mut Value)) -> String {
    let mut doc: Value = serde_json::from_slice(export).unwrap();
    change(&mut doc);
    verify(ctx, &serde_json::to_vec(&doc).unwrap()).expect_err("a tampered export must not verify")
}

async fn a_tampered_export_fails_verification(backend: Backend, name: &str) {
    let (ctx, export) = exported(backend, name).await;
    let b64 = base64::engine::general_purpose::STANDARD;
    // The bundle's bytes changed (one item's content).
    let e = tampered(&ctx, &export, |doc| {
        let bundle = b64
            .decode(doc["evidence"][0]["bundle"].as_str().unwrap())
            .unwrap();
        let text = String::from_utf8(bundle).unwrap();
        let changed = text.replacen(
            &b64.encode(b"journal excerpt"),
            &b64.encode(b"nothing to see!"),
            1,
        );
        assert_ne!(changed, text);
        doc["evidence"][0]["bundle"] = json!(b64.encode(changed));
    });
    assert!(e.contains("the bundle was changed"), "{e}");
    // The bundle and its recorded hash both changed: the audit record still says the original.
    let e = tampered(&ctx, &export, |doc| {
        let other = b"{}".to_vec();
        doc["evidence"][0]["bundle"] = json!(b64.encode(&other));
        doc["evidence"][0]["sha256"] = json!(sha256(&other));
        doc["evidence"][0]["length"] = json!(other.len());
    });
    assert!(e.contains("audit record"), "{e}");
    // An audit record edited (the recorded hash rewritten).
    let e = tampered(&ctx, &export, |doc| {
        let records = doc["audit_records"].as_array_mut().unwrap();
        let i = records
            .iter()
            .position(|r| r.as_str().unwrap().contains("incident.evidence_stored"))
            .unwrap();
        let line = records[i]
            .as_str()
            .unwrap()
            .replace("\"sha256\":\"", "\"sha256\":\"0");
        records[i] = json!(line);
    });
    assert!(e.contains("audit record"), "{e}");
    // An audit record removed from the middle of the segment.
    let e = tampered(&ctx, &export, |doc| {
        doc["audit_records"].as_array_mut().unwrap().remove(1);
    });
    assert!(e.contains("audit record"), "{e}");
    // The segment cut short of the signed head.
    let e = tampered(&ctx, &export, |doc| {
        doc["audit_records"].as_array_mut().unwrap().pop();
    });
    assert!(e.contains("audit head"), "{e}");
    // Another device's request named for the bundle.
    let e = tampered(&ctx, &export, |doc| {
        doc["evidence"][0]["nonce"] = json!("cd".repeat(32));
    });
    assert!(e.contains("nonce"), "{e}");
    // A timeline entry rewritten.
    let e = tampered(&ctx, &export, |doc| {
        doc["timeline"][0]["actor"] = json!("token:someone-else");
    });
    assert!(e.contains("timeline entry"), "{e}");
    // The transparency-log proof moved to another entry's place.
    let e = tampered(&ctx, &export, |doc| {
        let proof = doc["evidence"][0]["log_proof"].as_str().unwrap().to_owned();
        let index_line = proof
            .lines()
            .find(|l| l.starts_with("index "))
            .unwrap()
            .to_owned();
        let index: u64 = index_line["index ".len()..].parse().unwrap();
        doc["evidence"][0]["log_proof"] =
            json!(proof.replacen(&index_line, &format!("index {}", index + 1), 1));
    });
    assert!(e.contains("transparency-log inclusion"), "{e}");
    // The transparency-log entry of another bundle.
    let e = tampered(&ctx, &export, |doc| {
        let entry = doc["evidence"][0]["log_entry"]
            .as_str()
            .unwrap()
            .replace("sha256 ", "sha256 0");
        doc["evidence"][0]["log_entry"] = json!(entry);
    });
    assert!(e.contains("transparency-log entry"), "{e}");
    ctx.ops.server.stop().await;
}

on_both_backends!(
    an_evidence_bundle_uploads_in_resumable_chunks_and_is_stored_with_its_hash_recorded,
    an_evidence_request_is_used_once,
    a_bundle_for_another_device_is_refused,
    a_bundle_signed_by_another_devices_key_is_refused,
    a_bundle_for_another_incident_is_refused,
    a_bundle_replayed_from_another_request_is_refused,
    a_bundle_whose_bytes_do_not_match_the_announced_hash_is_refused,
    a_truncated_or_malformed_bundle_is_refused,
    bad_upload_requests_get_bounded_clear_errors,
    an_upload_flood_gets_413_after_the_quota_and_other_devices_still_upload,
    an_exported_evidence_bundle_verifies_offline,
    a_tampered_export_fails_verification,
);
