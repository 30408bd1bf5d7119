//! The device API over real mutual TLS on loopback, against embedded SQLite
//! and PostgreSQL. PostgreSQL comes from RAMPART_TEST_POSTGRES_URL
//! (scripts/test.sh starts one); without it the PostgreSQL tests fail.
//!
//! The client is a minimal HTTP/1.1 client over a tokio-rustls stream
//! configured with `rampart_pki::client_config`, so every request goes
//! through the same handshake a device does.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use rampart_db::{Db, DeviceFilter};
use rampart_pki::CertificateAuthority;
use rampart_server::ReportStatus;
use rustls::ClientConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

on_both_backends!(
    first_poll_registers_and_stores_facts,
    poll_etag_answers_304_when_unchanged,
    reports_are_stored_before_201_and_idempotent,
    attributes_merge_and_replace,
    refused_handshakes_are_counted,
    revoked_device_gets_403,
    bad_input_gets_json_errors,
    last_seen_is_flushed_in_time_batches,
    last_seen_batch_size_and_shutdown_flush,
);

fn facts(version: &str, attributes: Option<Value>) -> Value {
    let mut facts = json!({
        "hardware_id": "board-a",
        "firmware_version": version,
        "security_version": 3,
        "region": "eu-west",
        "slots": {"a": "good", "b": "inactive"},
        "tags": ["line-3", "canary", "line-3"],
    });
    if let Some(attributes) = attributes {
        facts["attributes"] = attributes;
    }
    facts
}

const POLL: &str = "/device/v1/poll";
const REPORTS: &str = "/device/v1/reports";
const ATTRIBUTES: &str = "/device/v1/attributes";

// ---------------------------------------------------------------------------
// Scenarios

async fn first_poll_registers_and_stores_facts(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(&[], |c| c.poll_interval_secs = 120).await;
    let mut dev = server.connect(&fx.device("dev-1")).await;
    assert!(fx.db.device("dev-1").await.unwrap().is_none());

    // First contact, no facts: registered, answered.
    let before = unix_now();
    let r = dev.post(POLL, &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.json(),
        json!({"device_id": "dev-1", "poll_interval_secs": 120, "assignment": null})
    );
    assert!(r.header("etag").unwrap().starts_with('"'));
    let inventory = fx
        .db
        .list_devices(&DeviceFilter::default(), 100, 0)
        .await
        .unwrap();
    assert_eq!(
        inventory.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["dev-1"],
        "{backend:?}: the first poll registers the device"
    );
    assert!(inventory[0].first_seen >= before);
    assert!(!inventory[0].revoked);

    // Facts are stored (tags as a set).
    let r = dev
        .post(POLL, &facts("1.4.0", Some(json!({"site": "plant-7"}))))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let stored = fx.db.device("dev-1").await.unwrap().unwrap();
    assert_eq!(stored.facts.hardware_id, "board-a");
    assert_eq!(stored.facts.firmware_version, "1.4.0");
    assert_eq!(stored.facts.security_version, 3);
    assert_eq!(stored.facts.region, "eu-west");
    assert_eq!(stored.facts.slots["a"], "good");
    let mut tags = stored.facts.tags.clone();
    tags.sort();
    assert_eq!(tags, ["canary", "line-3"]);
    assert_eq!(stored.facts.attributes["site"], "plant-7");
    assert_eq!(
        fx.db.version_counts().await.unwrap(),
        [("1.4.0".to_owned(), 1)]
    );

    // New facts replace the old; an empty body is a poll without facts.
    let r = dev.post(POLL, &facts("1.5.0", None)).await;
    assert_eq!(r.status, 200);
    let r = dev.send("POST", POLL, &[], b"").await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let stored = fx.db.device("dev-1").await.unwrap().unwrap();
    assert_eq!(stored.facts.firmware_version, "1.5.0");
    assert_eq!(
        stored.facts.attributes["site"], "plant-7",
        "facts without an attributes key keep the stored attributes"
    );

    // A second device is a second registration.
    let mut dev2 = server.connect(&fx.device("dev-2")).await;
    assert_eq!(dev2.post(POLL, &json!({})).await.status, 200);
    assert_eq!(fx.db.device_count().await.unwrap(), 2);
    assert_eq!(
        server
            .metric("rampart_server_devices_registered_total")
            .await,
        2
    );
    assert_eq!(server.metric("rampart_server_polls_total").await, 5);
    assert_eq!(server.metrics.polls(), 5);
    server.stop().await;
}

async fn poll_etag_answers_304_when_unchanged(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(&[], |_| {}).await;
    let mut dev = server.connect(&fx.device("dev-1")).await;

    let first = dev.post(POLL, &json!({})).await;
    assert_eq!(first.status, 200);
    let etag = first.header("etag").unwrap().to_owned();
    assert_eq!(first.header("cache-control"), Some("no-cache"));

    // Unchanged: 304, no body, same tag (also after sending facts).
    for body in [json!({}), facts("1.0.0", None)] {
        let r = dev
            .send(
                "POST",
                POLL,
                &[("If-None-Match", &etag)],
                body.to_string().as_bytes(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 304, "{r:?}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.as_str()));
    }
    // Weak form and lists match too.
    let weak = format!("\"nope\", W/{etag}");
    let r = dev
        .send("POST", POLL, &[("If-None-Match", &weak)], b"{}")
        .await
        .unwrap();
    assert_eq!(r.status, 304);
    // A stale tag gets the full answer.
    let r = dev
        .send("POST", POLL, &[("If-None-Match", "\"stale\"")], b"{}")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.json()["device_id"], "dev-1");
    // The facts sent with a 304 poll were still stored.
    assert_eq!(
        fx.db
            .device("dev-1")
            .await
            .unwrap()
            .unwrap()
            .facts
            .firmware_version,
        "1.0.0"
    );
    // Another device's answer differs, so does its tag.
    let mut dev2 = server.connect(&fx.device("dev-2")).await;
    let other = dev2.post(POLL, &json!({})).await;
    assert_ne!(other.header("etag"), Some(etag.as_str()));

    assert_eq!(server.metric("rampart_server_polls_total").await, 6);
    assert_eq!(
        server
            .metric("rampart_server_polls_not_modified_total")
            .await,
        3
    );
    server.stop().await;
}

async fn reports_are_stored_before_201_and_idempotent(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(&[], |_| {}).await;
    let mut dev = server.connect(&fx.device("dev-1")).await;
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);

    let report = json!({
        "id": "0b7c6f1e-2f7a-4c55-9d0e-8a1f3c2b4d5e",
        "assignment": "rollout-7",
        "status": "installing",
        "progress": 40,
        "details": {"step": "write", "bytes": 1048576},
    });
    let r = dev.post(REPORTS, &report).await;
    assert_eq!(r.status, 201, "{r:?}");
    let answer = r.json();
    assert_eq!(answer["id"], report["id"]);
    assert_eq!(answer["duplicate"], false);
    // The 201 came after the commit: the report is readable right away.
    let stored = fx.db.reports_of("dev-1").await.unwrap();
    assert_eq!(stored.len(), 1, "{backend:?}");
    assert_eq!(stored[0].id, "0b7c6f1e-2f7a-4c55-9d0e-8a1f3c2b4d5e");
    assert_eq!(stored[0].assignment, "rollout-7");
    assert_eq!(stored[0].status, "installing");
    assert_eq!(stored[0].progress, 40);
    assert_eq!(
        stored[0].details,
        json!({"step": "write", "bytes": 1048576})
    );
    assert_eq!(Some(stored[0].created), answer["created"].as_i64());

    // The device retries (its 201 was lost): 200, nothing stored twice.
    let r = dev.post(REPORTS, &report).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["duplicate"], true);
    assert_eq!(r.json()["created"], answer["created"]);
    assert_eq!(fx.db.reports_of("dev-1").await.unwrap().len(), 1);

    // The same id for a different report is a conflict, not a silent success.
    let mut changed = report.clone();
    changed["status"] = json!("installed");
    changed["progress"] = json!(100);
    let detail = dev
        .post(REPORTS, &changed)
        .await
        .error(409, "report_id_conflict");
    assert!(detail.contains("new id"), "{detail}");
    // Report ids are per device: another device may use the same id, and its
    // report is its own (one device cannot block or overwrite another's).
    let mut dev2 = server.connect(&fx.device("dev-2")).await;
    let r = dev2.post(REPORTS, &report).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(fx.db.reports_of("dev-1").await.unwrap().len(), 1);
    assert_eq!(fx.db.reports_of("dev-2").await.unwrap().len(), 1);

    // A report can be a device's first contact; minimal form.
    let r = dev2
        .post(REPORTS, &json!({"id": "r-2", "status": "failed"}))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let stored = fx.db.reports_of("dev-2").await.unwrap();
    assert_eq!(stored.len(), 2);
    let minimal = stored.iter().find(|r| r.id == "r-2").unwrap();
    assert_eq!(minimal.details, json!({}));
    assert_eq!(minimal.progress, 0);

    // Invalid reports: 422 with a useful detail, nothing stored.
    let cases = [
        (
            json!({"id": "r-3", "status": "exploded"}),
            "unknown variant",
        ),
        (
            json!({"id": "r-3", "status": "installing", "progress": 101}),
            "between 0 and 100",
        ),
        (
            json!({"id": "r-3", "status": "installing", "progress": -1}),
            "expected",
        ),
        (json!({"status": "installing"}), "missing field `id`"),
        (
            json!({"id": "has space", "status": "installing"}),
            "report id",
        ),
        (json!({"id": "", "status": "installing"}), "report id"),
        (
            json!({"id": "r-3", "status": "installing", "details": [1]}),
            "details",
        ),
        (
            json!({"id": "r-3", "status": "installing", "extra": 1}),
            "unknown field",
        ),
        (
            json!({"id": "r-3", "status": "installing", "assignment": "x".repeat(300)}),
            "assignment",
        ),
        (json!(["not", "an", "object"]), "expected"),
    ];
    for (body, expected) in cases {
        let detail = dev.post(REPORTS, &body).await.error(422, "invalid_request");
        assert!(detail.contains(expected), "{body}: {detail}");
    }
    assert_eq!(fx.db.reports_of("dev-1").await.unwrap().len(), 1);

    assert_eq!(
        server
            .metric("rampart_server_reports_total{status=\"installing\"}")
            .await,
        2
    );
    assert_eq!(server.metrics.reports(ReportStatus::Failed), 1);
    assert_eq!(
        server
            .metric("rampart_server_reports_duplicate_total")
            .await,
        1
    );
    server.stop().await;
}

async fn attributes_merge_and_replace(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(&[], |_| {}).await;
    let mut dev = server.connect(&fx.device("dev-1")).await;
    let r = dev
        .post(POLL, &facts("1.0.0", Some(json!({"site": "plant-7"}))))
        .await;
    assert_eq!(r.status, 200);
    let attributes = |db: Db| async move {
        Value::Object(db.device("dev-1").await.unwrap().unwrap().facts.attributes)
    };

    // Merge adds and overwrites top-level keys.
    let r = dev
        .put(
            ATTRIBUTES,
            &json!({"mode": "merge", "data": {"room": "b12", "rack": 3, "site": "plant-8"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let expected = json!({"site": "plant-8", "room": "b12", "rack": 3});
    assert_eq!(
        r.json(),
        json!({"device_id": "dev-1", "attributes": expected})
    );
    assert_eq!(attributes(fx.db.clone()).await, expected, "{backend:?}");

    // Merge with null removes a key.
    let r = dev
        .put(
            ATTRIBUTES,
            &json!({"mode": "merge", "data": {"rack": null}}),
        )
        .await;
    assert_eq!(
        r.json()["attributes"],
        json!({"site": "plant-8", "room": "b12"})
    );
    assert_eq!(
        attributes(fx.db.clone()).await,
        json!({"site": "plant-8", "room": "b12"})
    );

    // Polled facts without attributes keep them.
    assert_eq!(dev.post(POLL, &facts("1.1.0", None)).await.status, 200);
    assert_eq!(
        attributes(fx.db.clone()).await,
        json!({"site": "plant-8", "room": "b12"})
    );

    // Replace makes data the whole set; other facts are untouched.
    let r = dev
        .put(
            ATTRIBUTES,
            &json!({"mode": "replace", "data": {"only": ["this"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(attributes(fx.db.clone()).await, json!({"only": ["this"]}));
    let stored = fx.db.device("dev-1").await.unwrap().unwrap();
    assert_eq!(stored.facts.firmware_version, "1.1.0");
    assert_eq!(stored.facts.hardware_id, "board-a");
    let r = dev
        .put(ATTRIBUTES, &json!({"mode": "replace", "data": {}}))
        .await;
    assert_eq!(r.json()["attributes"], json!({}));
    assert_eq!(attributes(fx.db.clone()).await, json!({}));

    // Attribute updates work before any poll (first contact) as well.
    let mut dev2 = server.connect(&fx.device("dev-2")).await;
    let r = dev2
        .put(ATTRIBUTES, &json!({"mode": "merge", "data": {"k": "v"}}))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        fx.db
            .device("dev-2")
            .await
            .unwrap()
            .unwrap()
            .facts
            .attributes["k"],
        "v"
    );

    // Invalid requests.
    for (body, expected) in [
        (json!({"mode": "patch", "data": {}}), "unknown variant"),
        (json!({"mode": "merge", "data": [1]}), "expected"),
        (json!({"mode": "merge"}), "missing field `data`"),
        (
            json!({"mode": "merge", "data": {"big": "x".repeat(20_000)}}),
            "attributes",
        ),
    ] {
        let detail = dev
            .put(ATTRIBUTES, &body)
            .await
            .error(422, "invalid_request");
        assert!(detail.contains(expected), "{body}: {detail}");
    }
    assert_eq!(attributes(fx.db.clone()).await, json!({}));
    assert_eq!(
        server
            .metric("rampart_server_attribute_updates_total")
            .await,
        5
    );
    server.stop().await;
}

/// A client the server must refuse: the handshake fails, or the first
/// request gets no HTTP answer (with TLS 1.3 the server verifies the client
/// certificate after the client considers the handshake done).
async fn assert_refused(addr: SocketAddr, config: &Arc<ClientConfig>, what: &str) {
    let attempt = async {
        let tls = match tls_connect(addr, config).await {
            Ok(tls) => tls,
            Err(_) => return None,
        };
        Conn::new(tls).send("POST", POLL, &[], b"{}").await.ok()
    };
    let answer = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server neither answered nor closed"));
    assert!(answer.is_none(), "{what}: got an HTTP answer {answer:?}");
}

async fn refused_handshakes_are_counted(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let now = SystemTime::now();
    let day = Duration::from_secs(86_400);
    let revoked = fx.ca.issue_device("dev-revoked", 30).unwrap();
    let crl = fx
        .ca
        .crl(&[(revoked.serial.as_str(), now)], now, now + day, 1)
        .unwrap();
    let server = fx
        .start(&[crl], |c| {
            c.handshake_timeout = Duration::from_millis(500);
            c.idle_timeout = Duration::from_millis(700);
        })
        .await;
    let refused = "rampart_server_connections_refused_total{reason=\"handshake_failed\"}";
    assert_eq!(server.metric(refused).await, 0);

    // No client certificate.
    let anonymous = rampart_pki::client_config_without_identity(fx.ca.cert_pem()).unwrap();
    assert_refused(server.addr, &anonymous, "no client certificate").await;
    // A certificate from another CA (same device id).
    let other_ca = CertificateAuthority::generate("Someone Else's CA", 30).unwrap();
    let foreign = other_ca.issue_device("dev-1", 30).unwrap();
    let foreign =
        rampart_pki::client_config(fx.ca.cert_pem(), &foreign.cert_pem, &foreign.key_pem).unwrap();
    assert_refused(server.addr, &foreign, "certificate from another CA").await;
    // A certificate revoked by the CRL.
    assert_refused(server.addr, &fx.client(&revoked), "revoked serial").await;
    // An expired certificate.
    let expired = fx
        .ca
        .issue_device_with_validity("dev-old", now - 30 * day, now - day)
        .unwrap();
    assert_refused(server.addr, &fx.client(&expired), "expired certificate").await;
    // Not TLS at all.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"POST /device/v1/poll HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut sink))
        .await
        .expect("plain-text client disconnected");
    assert!(!sink.starts_with(b"HTTP/"), "plain HTTP got an HTTP answer");

    wait_until("five handshake failures are counted", || async {
        server.metric(refused).await == 5
    })
    .await;

    // A client that never starts the handshake is cut off at the deadline.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut byte))
        .await
        .expect("silent client cut off by the handshake timeout");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    wait_until("the handshake timeout is counted", || async {
        server
            .metric("rampart_server_connections_refused_total{reason=\"handshake_timeout\"}")
            .await
            == 1
    })
    .await;
    assert_eq!(server.metrics.refused_connections(), 6);

    // The accept loop survived all of that: a valid device is served.
    let mut dev = server.connect(&fx.device("dev-1")).await;
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    assert_eq!(
        server
            .metric("rampart_server_connections_accepted_total")
            .await,
        1
    );
    // An established connection that stays idle is closed; reconnecting works.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        dev.send("POST", POLL, &[], b"{}").await.is_err(),
        "idle connection still open"
    );
    let mut again = server.connect(&fx.device("dev-1")).await;
    assert_eq!(again.post(POLL, &json!({})).await.status, 200);

    // None of the refused clients reached the inventory.
    let ids: Vec<String> = fx
        .db
        .list_devices(&DeviceFilter::default(), 100, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids, ["dev-1"], "{backend:?}");
    assert_eq!(
        server
            .metric("rampart_server_connections_accepted_total")
            .await,
        2
    );
    assert_eq!(server.metrics.refused_connections(), 6);
    server.stop().await;
}

async fn revoked_device_gets_403(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(&[], |_| {}).await;
    let mut dev = server.connect(&fx.device("dev-1")).await;
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    fx.db.set_revoked("dev-1", true).await.unwrap();

    // Same TLS connection, same certificate: the inventory now says no.
    let detail = dev
        .post(POLL, &json!({}))
        .await
        .error(403, "device_revoked");
    assert!(detail.contains("revoked"), "{detail}");
    dev.post(REPORTS, &json!({"id": "r-1", "status": "installed"}))
        .await
        .error(403, "device_revoked");
    dev.put(ATTRIBUTES, &json!({"mode": "merge", "data": {"a": 1}}))
        .await
        .error(403, "device_revoked");
    // Even a malformed body: revocation is decided first.
    dev.send("POST", REPORTS, &[], b"{not json")
        .await
        .unwrap()
        .error(403, "device_revoked");
    assert!(fx.db.reports_of("dev-1").await.unwrap().is_empty());
    assert!(
        fx.db
            .device("dev-1")
            .await
            .unwrap()
            .unwrap()
            .facts
            .attributes
            .is_empty()
    );

    // Other devices are unaffected; lifting the revocation restores access.
    let mut dev2 = server.connect(&fx.device("dev-2")).await;
    assert_eq!(dev2.post(POLL, &json!({})).await.status, 200);
    fx.db.set_revoked("dev-1", false).await.unwrap();
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    assert_eq!(
        server
            .metric("rampart_server_http_responses_total{route=\"/device/v1/poll\",code=\"403\"}")
            .await,
        1
    );
    server.stop().await;
}

async fn bad_input_gets_json_errors(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx
        .start(&[], |c| c.body_read_timeout = Duration::from_millis(500))
        .await;
    let mut dev = server.connect(&fx.device("dev-1")).await;

    // Over the 64 KiB limit: 413, and the connection stays usable.
    let big = json!({"pad": "x".repeat(100 * 1024)}).to_string();
    for path in [POLL, REPORTS] {
        let detail = dev
            .send("POST", path, &[], big.as_bytes())
            .await
            .unwrap()
            .error(413, "payload_too_large");
        assert!(detail.contains("65536"), "{detail}");
    }
    dev.send("PUT", ATTRIBUTES, &[], big.as_bytes())
        .await
        .unwrap()
        .error(413, "payload_too_large");
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    // A declared length far over the limit is refused without reading it.
    let mut huge = server.connect(&fx.device("dev-1")).await;
    huge.send("POST", POLL, &[("Content-Length", "50000000")], b"{}")
        .await
        .unwrap()
        .error(413, "payload_too_large");

    // Malformed JSON: 400.
    for (method, path, body) in [
        ("POST", POLL, &b"{\"hardware_id\": "[..]),
        ("POST", POLL, b"{'single': 'quotes'}"),
        ("POST", REPORTS, b"not json"),
        ("POST", REPORTS, b""),
        ("PUT", ATTRIBUTES, b"{\"mode\": \"merge\", \"data\": {}"),
    ] {
        let detail = dev
            .send(method, path, &[], body)
            .await
            .unwrap()
            .error(400, "malformed_json");
        assert!(
            detail.contains("not valid JSON") || detail.contains("empty"),
            "{detail}"
        );
    }
    // Well-formed JSON of the wrong shape: 422.
    for body in [
        json!([1, 2]),
        json!({"hardware_id": "only"}),
        json!({"hardware_id": 7, "firmware_version": "1", "security_version": 1}),
    ] {
        dev.post(POLL, &body).await.error(422, "invalid_request");
    }
    // Facts over the storage limits: 422, not a storage error.
    let mut long = facts("1.0.0", None);
    long["hardware_id"] = json!("h".repeat(300));
    let detail = dev.post(POLL, &long).await.error(422, "invalid_request");
    assert!(detail.contains("hardware_id"), "{detail}");
    // Not JSON at all: 415.
    dev.send("POST", POLL, &[("Content-Type", "text/plain")], b"hello")
        .await
        .unwrap()
        .error(415, "unsupported_media_type");
    // Unknown endpoint, wrong method: 404, 405.
    dev.send("GET", "/device/v1/nothing", &[], b"")
        .await
        .unwrap()
        .error(404, "not_found");
    dev.send("GET", POLL, &[], b"")
        .await
        .unwrap()
        .error(405, "method_not_allowed");
    dev.send("DELETE", ATTRIBUTES, &[], b"")
        .await
        .unwrap()
        .error(405, "method_not_allowed");

    // A body that never finishes arriving: 408.
    let mut slow = server.connect(&fx.device("dev-1")).await;
    slow.send("POST", REPORTS, &[("Content-Length", "100")], b"{\"id\":")
        .await
        .unwrap()
        .error(408, "request_timeout");

    // Nothing above was a server error.
    let text = server.scrape().await;
    assert!(!text.contains("code=\"5"), "{text}");
    assert_eq!(
        metric_value(&text, "rampart_server_internal_errors_total"),
        Some(0)
    );
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    server.stop().await;
}

async fn last_seen_is_flushed_in_time_batches(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(&[], |_| {}).await; // default: every 1 s
    let mut dev = server.connect(&fx.device("dev-1")).await;
    assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    let registered = fx.db.device("dev-1").await.unwrap().unwrap().last_seen;
    wait_past(registered).await;

    let flushes_before = server.metrics.last_seen_flushes();
    let rows_before = server.metrics.last_seen_rows_flushed();
    let started = Instant::now();
    const POLLS: u64 = 60;
    for _ in 0..POLLS {
        assert_eq!(dev.post(POLL, &json!({})).await.status, 200);
    }
    let polling = started.elapsed();

    wait_until("the batch reaches the database", || async {
        fx.db.device("dev-1").await.unwrap().unwrap().last_seen > registered
    })
    .await;
    let flushed_within = started.elapsed();
    assert!(
        flushed_within < polling + Duration::from_secs(3),
        "{backend:?}: last-seen written {flushed_within:?} after the polls started"
    );
    let flushes = server.metrics.last_seen_flushes() - flushes_before;
    let rows = server.metrics.last_seen_rows_flushed() - rows_before;
    // One write per interval at most, one row per batch for one device:
    // far fewer than one write per poll.
    assert!(flushes >= 1);
    assert!(rows <= flushes, "{rows} rows in {flushes} batches");
    assert!(
        flushes <= flushed_within.as_secs() + 2,
        "{flushes} last-seen writes for {POLLS} polls in {flushed_within:?}"
    );
    assert_eq!(
        server
            .metric("rampart_server_last_seen_flushes_total")
            .await,
        server.metrics.last_seen_flushes()
    );
    server.stop().await;
}

async fn last_seen_batch_size_and_shutdown_flush(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    // Time never triggers a write here; only the batch size and shutdown do.
    let server = fx
        .start(&[], |c| {
            c.last_seen_flush_interval = Duration::from_secs(3600);
            c.last_seen_batch_size = 3;
        })
        .await;
    let devices = [fx.device("dev-1"), fx.device("dev-2"), fx.device("dev-3")];
    let mut conns = Vec::new();
    for config in &devices {
        conns.push(server.connect(config).await);
    }

    for conn in &mut conns[..2] {
        assert_eq!(conn.post(POLL, &json!({})).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        server.metrics.last_seen_flushes(),
        0,
        "two pending < batch of 3"
    );
    assert_eq!(server.metric("rampart_server_last_seen_pending").await, 2);

    assert_eq!(conns[2].post(POLL, &json!({})).await.status, 200);
    wait_until("the full batch is written", || async {
        server.metrics.last_seen_flushes() == 1
    })
    .await;
    assert_eq!(server.metrics.last_seen_rows_flushed(), 3);
    assert_eq!(server.metric("rampart_server_last_seen_pending").await, 0);

    // A later poll stays in memory: the database is not written per poll.
    let before = fx.db.device("dev-1").await.unwrap().unwrap().last_seen;
    wait_past(before).await;
    for _ in 0..5 {
        assert_eq!(conns[0].post(POLL, &json!({})).await.status, 200);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.metrics.last_seen_flushes(), 1);
    assert_eq!(
        fx.db.device("dev-1").await.unwrap().unwrap().last_seen,
        before,
        "{backend:?}: a poll wrote last-seen directly"
    );

    // Shutdown writes what is pending.
    let metrics = server.metrics.clone();
    drop(conns);
    server.stop().await;
    assert_eq!(metrics.last_seen_flushes(), 2);
    assert_eq!(metrics.last_seen_rows_flushed(), 4);
    let after = fx.db.device("dev-1").await.unwrap().unwrap().last_seen;
    assert!(
        after > before,
        "{backend:?}: shutdown flushed ({after} > {before})"
    );
}
