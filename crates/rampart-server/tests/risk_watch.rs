//! The risk watch through the real server (issue 17, decision 0046), on embedded SQLite and
//! PostgreSQL: advisories imported through the management API against releases whose SBOMs pin
//! known-vulnerable PyPI packages; `risk.advisory` webhook alerts received by a real HTTP
//! receiver on loopback with their signatures checked here (HMAC-SHA256 with ring, independent
//! of the server's code); exposure windows through the API; `vulnerable_component` incidents.
//! Every wait is on state, with a generous bound.

mod common;

use std::collections::HashMap;
use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use common::ops::Ops;
use common::risk::*;
use common::*;
use rampart_server::ServerConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;

on_both_backends!(
    a_new_advisory_alerts_once_per_version_and_remediation_closes_its_window,
    a_critical_advisory_opens_an_incident_and_a_withdrawal_stops_counting_it,
    an_nvd_import_wakes_the_watch_before_its_interval,
);

const SECRET: &str = "a-risk-webhook-secret-32-bytes-x";
const PUBLISHED: &str = "2020-01-01T00:00:00Z";
const PUBLISHED_UNIX: i64 = 1_577_836_800;

#[derive(Clone, Debug)]
struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A loopback HTTP receiver answering 200 to everything, recording every request.
#[derive(Clone, Default)]
struct Receiver {
    log: Arc<Mutex<Vec<Received>>>,
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

    /// The `risk.advisory` deliveries received, each checked: its signature verifies under
    /// the webhook's secret, and a tampered body does not.
    fn risk_alerts(&self) -> Vec<Value> {
        let log = self.log.lock().unwrap().clone();
        log.iter()
            .filter(|r| {
                r.headers.get("x-rampart-event").map(String::as_str) == Some("risk.advisory")
            })
            .map(|r| {
                let timestamp = &r.headers["x-rampart-timestamp"];
                let signature = &r.headers["x-rampart-signature"];
                assert!(
                    signature_verifies(SECRET, timestamp, &r.body, signature),
                    "{r:?}"
                );
                let mut tampered = r.body.clone();
                tampered.push(b' ');
                assert!(!signature_verifies(SECRET, timestamp, &tampered, signature));
                let body: Value = serde_json::from_slice(&r.body).unwrap();
                assert_eq!(body["event"], "risk.advisory");
                body["data"].clone()
            })
            .collect()
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    receiver.log.lock().unwrap().push(Received {
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    });
    "ok"
}

/// Whether `signature` (`sha256=<hex>`) is the HMAC-SHA256 of `timestamp.body` under `secret`.
fn signature_verifies(secret: &str, timestamp: &str, body: &[u8], signature: &str) -> bool {
    let Some(tag) = signature
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut message = format!("{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::verify(&key, &message, &tag).is_ok()
}

/// Fast webhooks to loopback, a sealed-secrets key beside the test, a pass every second.
fn watching(key: std::path::PathBuf) -> impl FnOnce(&mut ServerConfig) {
    move |config: &mut ServerConfig| {
        config.webhooks.allow_networks =
            vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()];
        config.webhooks.poll_interval = Duration::from_millis(50);
        config.webhooks.backoff_base = Duration::from_millis(50);
        config.webhooks.secrets_key = Some(key);
        config.risk_watch.interval = Duration::from_secs(1);
    }
}

/// An OSV record naming PyPI `packages`, each affected below `fixed`.
fn advisory(id: &str, modified: &str, cvss: &str, packages: &[(&str, &str)]) -> Value {
    let affected: Vec<Value> = packages
        .iter()
        .map(|(name, fixed)| {
            json!({"package": {"ecosystem": "PyPI", "name": name},
                   "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]})
        })
        .collect();
    json!({
        "schema_version": "1.6.0", "id": id, "modified": modified, "published": PUBLISHED,
        "aliases": [format!("CVE-2099-{}", id.len())], "summary": format!("{id} in a pinned package"),
        "severity": [{"type": "CVSS_V3", "score": cvss}],
        "affected": affected,
    })
}

const HIGH: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"; // 7.5
const CRITICAL: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"; // 9.8

async fn subscribe(ops: &Ops, url: &str) {
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/webhooks",
            Some(&json!({"url": url, "secret": SECRET, "events": ["risk.advisory"], "description": "risk"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}

async fn get(ops: &Ops, path: &str) -> Value {
    let r = ops.call(&ops.viewer, "GET", path, None).await;
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.json()
}

async fn exposure_of(ops: &Ops, id: &str) -> Value {
    get(ops, &format!("/api/v1/risk/advisories/{id}")).await["advisories"][0]["exposure"].clone()
}

/// Waits (up to 120 s) until a pass of the running server has seen `open` open exposures.
async fn wait_for_open(ops: &Ops, open: u64) {
    wait_until(
        &format!("the risk watch counts {open} open advisories"),
        || async {
            metric_value(&ops.server.scrape().await, "rampart_risk_advisories_open") == Some(open)
        },
    )
    .await;
}

async fn a_new_advisory_alerts_once_per_version_and_remediation_closes_its_window(
    backend: Backend,
    name: &str,
) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secrets.key");
    let ops = Ops::start_with(backend, name, watching(key.clone())).await;
    add_sbom_releases(&ops).await;
    poll_as(&ops, "dev-1", "board-a", "eu", "3.0.0").await;
    poll_as(&ops, "dev-2", "board-b", "us", "3.0.0").await;
    poll_as(&ops, "dev-3", "board-a", "us", "4.0.0").await;
    let (receiver, addr) = Receiver::start().await;
    subscribe(&ops, &format!("http://{addr}/hook")).await;

    let first = advisory(
        "RAMPART-W-1",
        "2024-01-01T00:00:00Z",
        HIGH,
        &[("requests", "2.20.0")],
    );
    let nothing = advisory(
        "RAMPART-W-NONE",
        "2024-01-01T00:00:00Z",
        HIGH,
        &[("no-such-package", "1.0")],
    );
    import(&ops, &ops.operator, &[first.clone(), nothing]).await;
    wait_until("one risk.advisory alert arrives", || async {
        !receiver.risk_alerts().is_empty()
    })
    .await;
    wait_for_open(&ops, 1).await;
    let alerts = receiver.risk_alerts();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["advisory"], "RAMPART-W-1");
    assert_eq!(alert["affected_count"], 2);
    assert_eq!(alert["devices"], json!(["dev-1", "dev-2"]));
    assert_eq!(alert["truncated"], false);
    assert_eq!(alert["releases"], json!(["fw-vuln.bin"]));
    assert_eq!(alert["fixed"], json!(["2.20.0"]));
    assert_eq!(alert["aliases"], json!(["CVE-2099-11"]));
    assert_eq!(alert["severity"]["rating"], "high");
    // The advisory that affects nothing has no exposure and sent nothing.
    assert_eq!(
        exposure_of(&ops, "RAMPART-W-NONE").await["state"],
        "unaffected"
    );
    let open = get(&ops, "/api/v1/risk/exposure?state=open").await;
    assert_eq!(open["total"], 1, "{open}");
    assert_eq!(open["rows"][0]["advisory"], "RAMPART-W-1");
    assert_eq!(open["rows"][0]["published"], PUBLISHED_UNIX);
    assert_eq!(open["rows"][0]["affected_now"], 2);
    assert_eq!(open["rows"][0]["window_secs"], Value::Null);
    // A high advisory opens no incident.
    assert!(
        ops.fx
            .db
            .open_incident_for_cause("vulnerable_component:RAMPART-W-1")
            .await
            .unwrap()
            .is_none()
    );

    // The same record again, then a restart: the passes that follow send nothing more.
    let again = import(&ops, &ops.operator, std::slice::from_ref(&first)).await;
    assert_eq!(again["unchanged"], 1);
    let ops = ops.restart_with(watching(key.clone())).await;
    wait_for_open(&ops, 1).await;
    // Two more passes after the restart (one a second), then the count is still one.
    let seen = unix_now();
    wait_past(seen + 2).await;
    wait_for_open(&ops, 1).await;
    assert_eq!(receiver.risk_alerts().len(), 1, "a restart must not resend");

    // A changed record that now also affects the clean release's package: alerted again.
    let wider = advisory(
        "RAMPART-W-1",
        "2024-02-01T00:00:00Z",
        HIGH,
        &[("requests", "2.20.0"), ("rampart-test-clean-lib", "2.0.0")],
    );
    let changed = import(&ops, &ops.operator, &[wider]).await;
    assert_eq!(changed["replaced"], 1);
    wait_until("the changed advisory is alerted again", || async {
        receiver.risk_alerts().len() >= 2
    })
    .await;
    let alerts = receiver.risk_alerts();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[1]["affected_count"], 3);
    assert_eq!(alerts[1]["devices"], json!(["dev-1", "dev-2", "dev-3"]));
    assert_eq!(
        alerts[1]["releases"],
        json!(["fw-clean.bin", "fw-vuln.bin"])
    );
    assert_eq!(alerts[1]["modified"], "2024-02-01T00:00:00Z");

    // Every affected device moves to a release the advisory does not affect.
    poll_as(&ops, "dev-1", "board-a", "eu", "1.0.0").await;
    poll_as(&ops, "dev-2", "board-b", "us", "1.0.0").await;
    poll_as(&ops, "dev-3", "board-a", "us", "1.0.0").await;
    wait_until("the exposure is remediated", || async {
        exposure_of(&ops, "RAMPART-W-1").await["state"] == "remediated"
    })
    .await;
    let exposure = exposure_of(&ops, "RAMPART-W-1").await;
    let remediated_at = exposure["remediated_at"].as_i64().unwrap();
    assert_eq!(exposure["published"], PUBLISHED_UNIX);
    assert_eq!(exposure["window_secs"], remediated_at - PUBLISHED_UNIX);
    assert_eq!(exposure["affected_now"], 0);
    assert_eq!(exposure["peak_affected"], 3);
    let remediated = get(&ops, "/api/v1/risk/exposure?state=remediated").await;
    assert_eq!(remediated["rows"][0]["advisory"], "RAMPART-W-1");
    assert_eq!(
        get(&ops, "/api/v1/risk/exposure?state=open").await["total"],
        0
    );
    assert_eq!(
        receiver.risk_alerts().len(),
        2,
        "a remediation sends nothing"
    );
    // Bad queries are refused, after authorization.
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/risk/exposure?state=closed",
            None,
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/risk/exposure?limit=0", None)
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    let r = ops
        .call(
            "not-a-token",
            "GET",
            "/api/v1/risk/exposure?state=closed",
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    ops.server.stop().await;
}

async fn a_critical_advisory_opens_an_incident_and_a_withdrawal_stops_counting_it(
    backend: Backend,
    name: &str,
) {
    let keys = tempfile::tempdir().unwrap();
    let ops = Ops::start_with(backend, name, watching(keys.path().join("secrets.key"))).await;
    add_sbom_releases(&ops).await;
    poll_as(&ops, "dev-c1", "board-a", "eu", "3.0.0").await;
    poll_as(&ops, "dev-c2", "board-b", "eu", "3.0.0").await;
    let (receiver, addr) = Receiver::start().await;
    subscribe(&ops, &format!("http://{addr}/hook")).await;

    // Imported already withdrawn: it affects nothing and never alerts.
    let mut gone = advisory(
        "RAMPART-W-GONE",
        "2024-01-01T00:00:00Z",
        CRITICAL,
        &[("urllib3", "1.26.0")],
    );
    gone["withdrawn"] = json!("2024-01-02T00:00:00Z");
    let critical = advisory(
        "RAMPART-W-CRIT",
        "2024-01-01T00:00:00Z",
        CRITICAL,
        &[("jinja2", "2.11")],
    );
    import(&ops, &ops.operator, &[gone, critical]).await;
    wait_until("the critical advisory's incident is open", || async {
        ops.fx
            .db
            .open_incident_for_cause("vulnerable_component:RAMPART-W-CRIT")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    let incident = ops
        .fx
        .db
        .open_incident_for_cause("vulnerable_component:RAMPART-W-CRIT")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.detector, "vulnerable_component");
    assert_eq!(incident.severity, "critical");
    assert!(
        incident.title.contains("RAMPART-W-CRIT"),
        "{}",
        incident.title
    );
    assert_eq!(incident.detail["advisory"], "RAMPART-W-CRIT");
    assert_eq!(incident.detail["affected_count"], 2);
    wait_until("both devices are in the incident", || async {
        ops.fx
            .db
            .incident_devices(&incident.id)
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    wait_until("the critical alert arrives", || async {
        !receiver.risk_alerts().is_empty()
    })
    .await;
    wait_for_open(&ops, 1).await;
    let alerts = receiver.risk_alerts();
    assert_eq!(
        alerts.len(),
        1,
        "the withdrawn advisory never alerts: {alerts:?}"
    );
    assert_eq!(alerts[0]["advisory"], "RAMPART-W-CRIT");
    assert_eq!(alerts[0]["severity"]["rating"], "critical");
    assert_eq!(
        exposure_of(&ops, "RAMPART-W-GONE").await["state"],
        "unaffected"
    );
    // The playbook alerts and never quarantines: a known flaw is not a compromise.
    let actions = ops.fx.db.incident_actions(&incident.id).await.unwrap();
    assert!(
        actions.iter().all(|a| a.action != "quarantine"),
        "{actions:?}"
    );
    assert!(actions.iter().any(|a| a.action == "alert"), "{actions:?}");

    // The feed withdraws it: it stops counting, and is neither open nor remediated.
    let mut withdrawn = advisory(
        "RAMPART-W-CRIT",
        "2024-03-01T00:00:00Z",
        CRITICAL,
        &[("jinja2", "2.11")],
    );
    withdrawn["withdrawn"] = json!("2024-03-01T00:00:00Z");
    import(&ops, &ops.operator, &[withdrawn]).await;
    wait_until("the withdrawal is seen", || async {
        exposure_of(&ops, "RAMPART-W-CRIT").await["state"] == "withdrawn"
    })
    .await;
    let exposure = exposure_of(&ops, "RAMPART-W-CRIT").await;
    assert_eq!(exposure["affected_now"], 0);
    assert_eq!(exposure["remediated_at"], Value::Null);
    assert_eq!(exposure["window_secs"], Value::Null);
    wait_for_open(&ops, 0).await;
    assert_eq!(
        get(&ops, "/api/v1/risk/exposure?state=open").await["total"],
        0
    );
    assert_eq!(
        get(&ops, "/api/v1/risk/exposure?state=withdrawn").await["total"],
        1
    );
    assert_eq!(receiver.risk_alerts().len(), 1);
    ops.server.stop().await;
}

/// The watch's interval is an hour here: only the wake an import sends makes it pass again
/// within the test's bound. The CVE is in no OSV record: the watch reads it from the NVD
/// records.
async fn an_nvd_import_wakes_the_watch_before_its_interval(backend: Backend, name: &str) {
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("secrets.key");
    let watch = watching(key);
    let ops = Ops::start_with(backend, name, move |config| {
        watch(config);
        config.risk_watch.interval = Duration::from_secs(3600);
    })
    .await;
    add_firmware_image_releases(&ops).await;
    poll_as(&ops, "dev-eu-vuln", "board-y", "eu", "5.0.0").await;
    let (receiver, addr) = Receiver::start().await;
    subscribe(&ops, &format!("http://{addr}/hook")).await;
    // The watch's first pass, at start, saw no advisory at all.
    wait_for_open(&ops, 0).await;
    let busybox: Vec<Value> = nvd_records()
        .into_iter()
        .filter(|r| r["cve"]["id"] == "CVE-2022-28391")
        .collect();
    let counts = import_nvd(&ops, &ops.operator, &busybox).await;
    assert_eq!(counts["added"], 1, "{counts}");
    wait_for_open(&ops, 1).await;
    let exposure = exposure_of(&ops, "CVE-2022-28391").await;
    assert_eq!(exposure["state"], "open", "{exposure}");
    assert_eq!(exposure["affected_now"], 1, "{exposure}");
    // A CVE only NVD describes alerts like an OSV advisory, with NVD's score. NVD names the
    // last affected busybox (versionEndIncluding 1.35.0), not a fixed one: `fixed` is empty.
    wait_until("the CVE's risk.advisory alert arrives", || async {
        !receiver.risk_alerts().is_empty()
    })
    .await;
    let alert = &receiver.risk_alerts()[0];
    assert_eq!(alert["advisory"], "CVE-2022-28391", "{alert}");
    assert_eq!(alert["devices"], json!(["dev-eu-vuln"]), "{alert}");
    assert_eq!(alert["severity"]["rating"], "critical", "{alert}");
    assert_eq!(alert["fixed"], json!([]), "{alert}");
    assert_eq!(alert["published"], "2022-04-03T21:15:00.000", "{alert}");
    assert_eq!(alert["releases"], json!(["fw-yocto-vuln.bin"]), "{alert}");
    // and, critical, opens its incident.
    wait_until("the CVE's incident is open", || async {
        ops.fx
            .db
            .open_incident_for_cause("vulnerable_component:CVE-2022-28391")
            .await
            .unwrap()
            .is_some()
    })
    .await;
    ops.server.stop().await;
}
