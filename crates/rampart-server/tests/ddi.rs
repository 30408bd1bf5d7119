//! The hawkBit DDI API end to end, against embedded SQLite and PostgreSQL: every endpoint and
//! authentication mode, the error cases (unknown tenant or controller, wrong token, feedback for
//! a closed action, malformed or oversized JSON), cancellation, action types and maintenance
//! windows, and DDI feedback counting toward a campaign's gate. Digests are checked here with
//! independent implementations (ring for SHA-1/SHA-256, md-5 for MD5).

mod common;

use std::time::Duration;

use common::ops::Ops;
use common::*;
use rustls::ClientConfig;
use serde_json::{Value, json};
use std::sync::Arc;

on_both_backends!(
    a_device_is_offered_a_deployment_downloads_it_and_reports,
    every_authentication_mode_and_its_refusals,
    bad_requests_are_refused_and_change_nothing,
    a_withdrawn_assignment_is_cancelled_through_the_handshake,
    action_types_and_maintenance_windows_set_the_modes,
    ddi_feedback_counts_toward_campaign_gates,
    a_tampered_artifact_is_never_offered,
    time_forced_assignments_turn_forced_at_their_time,
    concurrent_polls_open_one_action,
    concurrent_config_data_merges_lose_nothing,
    a_gateway_token_never_claims_a_device_before_its_certificate,
    a_token_never_acts_for_a_certificate_identity,
    failed_authentication_is_audited_counted_and_slowed_per_source,
    ddi_installs_count_in_fleet_versions_and_device_status,
    one_input_grammar_for_ids_json_and_queries,
    the_fleet_wide_attestation_policy_offers_ddi_devices_no_deployment,
    a_quarantined_device_gets_no_assignment_over_ddi,
    a_reimage_is_a_forced_ddi_action_through_a_closed_window_even_over_the_installed_release,
);

const FIRMWARE: &str = "fw-1.0.0.bin";

/// A DDI client: the DDI listener, TLS with or without a device certificate.
struct Ddi {
    addr: std::net::SocketAddr,
    tls: Arc<ClientConfig>,
    auth: Option<String>,
}

impl Ddi {
    async fn send(&self, method: &str, path: &str, body: &[u8]) -> Response {
        let mut conn = Conn::new(tls_connect(self.addr, &self.tls).await.unwrap());
        let mut headers = vec![];
        if let Some(a) = &self.auth {
            headers.push(("Authorization", a.as_str()));
        }
        conn.send(method, path, &headers, body).await.unwrap()
    }

    async fn get(&self, path: &str) -> Response {
        self.send("GET", path, b"").await
    }

    async fn post(&self, path: &str, body: &Value) -> Response {
        self.send("POST", path, body.to_string().as_bytes()).await
    }

    async fn put(&self, path: &str, body: &Value) -> Response {
        self.send("PUT", path, body.to_string().as_bytes()).await
    }
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| {
        panic!(
            "not JSON ({}): {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    })
}

/// The path of an absolute link (`https://host/path` → `/path`).
fn path_of(href: &Value) -> String {
    let href = href.as_str().expect("a link");
    let rest = href.strip_prefix("https://").expect("an https link");
    rest[rest.find('/').unwrap()..].to_owned()
}

fn feedback(execution: &str, finished: &str, details: &[&str]) -> Value {
    json!({"id": 1, "time": "20261121T120000",
        "status": {"execution": execution, "result": {"finished": finished, "progress": {"cnt": 3, "of": 0}},
                   "details": details}})
}

impl Ops {
    fn ddi(&self, auth: Option<String>) -> Ddi {
        Ddi {
            addr: self.server.ddi_addr.expect("the DDI listener"),
            tls: self.operator_tls.clone(),
            auth,
        }
    }

    async fn admin_call(&self, method: &str, path: &str, body: Value) -> Value {
        let r = self.call(&self.admin, method, path, Some(&body)).await;
        assert!(r.status == 200 || r.status == 201, "{method} {path}: {r:?}");
        r.json()
    }

    /// Creates tenant DEFAULT (target tokens on) and issues `device` (board-a) a TargetToken.
    async fn ddi_device(&self, device: &str) -> String {
        let r = self
            .call(
                &self.admin,
                "POST",
                "/api/v1/ddi/tenants",
                Some(&json!({"name": "default"})),
            )
            .await;
        assert!(r.status == 201 || r.status == 409, "{r:?}");
        let t = self
            .admin_call(
                "POST",
                &format!("/api/v1/ddi/tenants/DEFAULT/devices/{device}/token"),
                json!({"hardware_id": "board-a"}),
            )
            .await;
        format!("TargetToken {}", t["target_token"].as_str().unwrap())
    }

    async fn assign(&self, target: &str, devices: &[&str], kind: &str) -> String {
        let r = self
            .call(
                &self.operator,
                "POST",
                "/api/v1/assignments",
                Some(&json!({"target": target, "devices": devices, "type": kind})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        r.json()["id"].as_str().unwrap().to_owned()
    }

    async fn reports_of(&self, device: &str) -> Vec<Value> {
        let r = self
            .call(
                &self.viewer,
                "GET",
                &format!("/api/v1/reports?device={device}"),
                None,
            )
            .await;
        r.json()["reports"].as_array().unwrap().clone()
    }
}

async fn poll(ddi: &Ddi, device: &str) -> Value {
    let r = ddi.get(&format!("/DEFAULT/controller/v1/{device}")).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    json_of(&r)
}

fn hex_digest(alg: &'static ring::digest::Algorithm, data: &[u8]) -> String {
    hex::encode(ring::digest::digest(alg, data))
}

async fn a_device_is_offered_a_deployment_downloads_it_and_reports(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let token = ops.ddi_device("ddi-1").await;
    let ddi = ops.ddi(Some(token));

    // Nothing assigned: the poll says how long to sleep and asks for attributes.
    let p = poll(&ddi, "ddi-1").await;
    assert_eq!(p["config"]["polling"]["sleep"], "00:05:00", "{p}");
    assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    let config_data = path_of(&p["_links"]["configData"]["href"]);

    // configData as SWUpdate sends it (replace, extra fields), then the link goes away.
    let r = ddi
        .put(
            &config_data,
            &json!({"id": "", "time": "20261121T120000", "mode": "replace",
                "status": {"result": {"finished": "success"}, "execution": "closed", "details": [""]},
                "data": {"board": "rampart-ci", "hwRevision": "1.0"}}),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");
    let device = ops
        .call(&ops.viewer, "GET", "/api/v1/devices/ddi-1", None)
        .await
        .json();
    assert_eq!(
        device["device"]["attributes"]["board"], "rampart-ci",
        "{device}"
    );
    let p = poll(&ddi, "ddi-1").await;
    assert!(p.get("_links").is_none(), "{p}");

    // An assignment becomes an action.
    let assignment = ops.assign(FIRMWARE, &["ddi-1"], "forced").await;
    let p = poll(&ddi, "ddi-1").await;
    let href = p["_links"]["deploymentBase"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        href.contains("/DEFAULT/controller/v1/ddi-1/deploymentBase/") && href.contains("?c="),
        "{href}"
    );
    let r = ddi
        .get(&path_of(&p["_links"]["deploymentBase"]["href"]))
        .await;
    assert_eq!(r.status, 200);
    let d = json_of(&r);
    let action = d["id"].as_str().unwrap().to_owned();
    assert_eq!(d["deployment"]["download"], "forced", "{d}");
    assert_eq!(d["deployment"]["update"], "forced", "{d}");
    assert!(d["deployment"].get("maintenanceWindow").is_none(), "{d}");
    let chunk = &d["deployment"]["chunks"][0];
    assert_eq!(chunk["part"], "os");
    assert_eq!(chunk["version"], "1.0.0");
    let artifact = &chunk["artifacts"][0];
    assert_eq!(artifact["filename"], FIRMWARE);
    let bytes = std::fs::read(ops.repo_dir.path().join(FIRMWARE)).unwrap();
    assert_eq!(artifact["size"], bytes.len());
    assert_eq!(
        artifact["hashes"]["sha1"],
        hex_digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &bytes)
    );
    assert_eq!(
        artifact["hashes"]["sha256"],
        hex_digest(&ring::digest::SHA256, &bytes)
    );
    let md5 = hex::encode(<md5::Md5 as md5::Digest>::digest(&bytes));
    assert_eq!(artifact["hashes"]["md5"], md5);

    // Downloads: whole, a range, the MD5SUM file, the module's artifact list.
    let download = path_of(&artifact["_links"]["download"]["href"]);
    assert_eq!(
        download,
        path_of(&artifact["_links"]["download-http"]["href"])
    );
    let r = ddi.get(&download).await;
    assert_eq!((r.status, &r.body), (200, &bytes));
    let mut conn = Conn::new(tls_connect(ddi.addr, &ddi.tls).await.unwrap());
    let auth = ddi.auth.clone().unwrap();
    let r = conn
        .send(
            "GET",
            &download,
            &[("Authorization", &auth), ("Range", "bytes=10-")],
            b"",
        )
        .await
        .unwrap();
    assert_eq!((r.status, &r.body[..]), (206, &bytes[10..]));
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes 10-{}/{}", bytes.len() - 1, bytes.len()).as_str())
    );
    let r = ddi
        .get(&path_of(&artifact["_links"]["md5sum"]["href"]))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        String::from_utf8(r.body).unwrap(),
        format!("{md5}  {FIRMWARE}")
    );
    let list_path = download.rsplit_once('/').unwrap().0.to_owned();
    let list = json_of(&ddi.get(&list_path).await);
    assert_eq!(list[0]["filename"], FIRMWARE, "{list}");
    assert_eq!(ddi.get(&format!("{list_path}/other.bin")).await.status, 404);

    // Feedback: progress, then success; each is a native report of the assignment.
    let fb = format!("/DEFAULT/controller/v1/ddi-1/deploymentBase/{action}/feedback");
    let r = ddi
        .post(
            &fb,
            &feedback(
                "proceeding",
                "none",
                &["Installing Update Chunk Artifacts."],
            ),
        )
        .await;
    assert_eq!((r.status, r.body.len()), (200, 0), "{r:?}");
    let r = ddi
        .post(&fb, &feedback("closed", "success", &["Update Installed."]))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let reports = ops.reports_of("ddi-1").await;
    assert_eq!(reports[0]["status"], "installed", "{reports:#?}");
    assert_eq!(reports[0]["assignment"], assignment.as_str());
    assert_eq!(reports[1]["status"], "installing");
    let progress = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/assignments/{assignment}"),
            None,
        )
        .await
        .json();
    assert_eq!(
        progress["devices_by_last_status"],
        json!({"installed": 1}),
        "{progress}"
    );

    // Closed: feedback is gone (410, no body), the poll offers installedBase and configData.
    let r = ddi.post(&fb, &feedback("proceeding", "none", &[])).await;
    assert_eq!((r.status, r.body.len()), (410, 0));
    let p = poll(&ddi, "ddi-1").await;
    assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    assert!(p["_links"].get("configData").is_some(), "{p}");
    let installed = json_of(
        &ddi.get(&path_of(&p["_links"]["installedBase"]["href"]))
            .await,
    );
    assert_eq!(installed["id"], action.as_str());
    // The installed release stays downloadable; the history holds the device's messages.
    assert_eq!(ddi.get(&download).await.status, 200);
    let with_history = json_of(
        &ddi.get(&format!(
            "/DEFAULT/controller/v1/ddi-1/installedBase/{action}?actionHistory=10"
        ))
        .await,
    );
    assert_eq!(with_history["actionHistory"]["status"], "FINISHED");
    assert_eq!(
        with_history["actionHistory"]["messages"],
        json!(["Update Installed.", "Installing Update Chunk Artifacts."])
    );
    // The audit log still verifies with the DDI records in it.
    let actions: Vec<String> = ops
        .audit_records()
        .await
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert!(
        actions.contains(&"ddi.target_token_issued".to_string()),
        "{actions:?}"
    );
}

async fn every_authentication_mode_and_its_refusals(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let token = ops.ddi_device("ddi-t").await;
    let with = |auth: Option<&str>| ops.ddi(auth.map(str::to_owned));
    let base = "/DEFAULT/controller/v1";

    // TargetToken: the right one works, for its own device only; tenants are case-blind.
    assert_eq!(
        with(Some(&token))
            .get(&format!("{base}/ddi-t"))
            .await
            .status,
        200
    );
    assert_eq!(
        with(Some(&token))
            .get("/default/controller/v1/ddi-t")
            .await
            .status,
        200
    );
    for (auth, path) in [
        (None, format!("{base}/ddi-t")),
        (Some("TargetToken wrong"), format!("{base}/ddi-t")),
        (Some(token.as_str()), format!("{base}/someone-else")),
        (
            Some(token.as_str()),
            "/NOPE/controller/v1/ddi-t".to_string(),
        ),
        (Some("Bearer abc"), format!("{base}/ddi-t")),
    ] {
        let r = with(auth).get(&path).await;
        assert_eq!(r.status, 401, "{auth:?} {path}: {r:?}");
        let e = json_of(&r);
        assert!(!e["message"].as_str().unwrap().is_empty(), "{e}");
    }
    let unknown = json_of(&with(Some(&token)).get("/NOPE/controller/v1/ddi-t").await);
    assert!(
        unknown["message"]
            .as_str()
            .unwrap()
            .contains("unknown tenant"),
        "{unknown}"
    );
    // A TargetToken never registers a device.
    assert!(ops.fx.db.device("someone-else").await.unwrap().is_none());

    // GatewayToken: off until enabled; then any controller id of the tenant, new ones registered.
    let r = with(Some("GatewayToken x"))
        .get(&format!("{base}/gw-1"))
        .await;
    assert_eq!(r.status, 401);
    let t = ops
        .admin_call(
            "PUT",
            "/api/v1/ddi/tenants/DEFAULT",
            json!({"gateway_token": true}),
        )
        .await;
    let gateway = format!("GatewayToken {}", t["gateway_token"].as_str().unwrap());
    assert_eq!(t["tenant"]["gateway_token"], true, "{t}");
    assert!(
        t["tenant"].get("gateway_token_hash").is_none(),
        "the digest is never shown: {t}"
    );
    assert_eq!(
        with(Some(&gateway))
            .get(&format!("{base}/gw-1"))
            .await
            .status,
        200
    );
    assert!(
        ops.fx.db.device("gw-1").await.unwrap().is_some(),
        "registered on its first poll"
    );
    // Other endpoints do not register.
    let r = with(Some(&gateway))
        .put(
            &format!("{base}/gw-2/configData"),
            &json!({"data": {"a": "b"}}),
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    assert!(ops.fx.db.device("gw-2").await.unwrap().is_none());
    // Rotation: the old gateway token stops working.
    let t = ops
        .admin_call(
            "PUT",
            "/api/v1/ddi/tenants/DEFAULT",
            json!({"rotate_gateway_token": true}),
        )
        .await;
    assert_eq!(
        with(Some(&gateway))
            .get(&format!("{base}/gw-1"))
            .await
            .status,
        401
    );
    let gateway = format!("GatewayToken {}", t["gateway_token"].as_str().unwrap());
    assert_eq!(
        with(Some(&gateway))
            .get(&format!("{base}/gw-1"))
            .await
            .status,
        200
    );
    // A device enrolled natively (by its certificate) is not taken over with the gateway
    // token, nor is a revoked one; its own certificate may join it.
    let native = ops.fx.device("nat-1");
    let mut conn = ops.server.connect(&native).await;
    assert_eq!(conn.post("/device/v1/poll", &json!({})).await.status, 200);
    let r = with(Some(&gateway)).get(&format!("{base}/nat-1")).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(
        json_of(&r)["message"]
            .as_str()
            .unwrap()
            .contains("enrolled with its device certificate"),
        "{r:?}"
    );
    let member = |id: &'static str| {
        let db = ops.fx.db.clone();
        async move {
            db.ddi_request_view("DEFAULT", id)
                .await
                .unwrap()
                .unwrap()
                .1
                .and_then(|s| s.tenant)
        }
    };
    assert_eq!(member("nat-1").await, None);
    // Disabling and enabling gateway tokens issues a new one; the old one stays dead.
    ops.admin_call(
        "PUT",
        "/api/v1/ddi/tenants/DEFAULT",
        json!({"gateway_token": false}),
    )
    .await;
    let t = ops
        .admin_call(
            "PUT",
            "/api/v1/ddi/tenants/DEFAULT",
            json!({"gateway_token": true}),
        )
        .await;
    assert_eq!(
        with(Some(&gateway))
            .get(&format!("{base}/gw-1"))
            .await
            .status,
        401
    );
    let gateway = format!(
        "GatewayToken {}",
        t["gateway_token"].as_str().expect("a new token")
    );
    assert_eq!(
        with(Some(&gateway))
            .get(&format!("{base}/gw-1"))
            .await
            .status,
        200
    );
    // TargetTokens can be turned off per tenant.
    ops.admin_call(
        "PUT",
        "/api/v1/ddi/tenants/DEFAULT",
        json!({"target_token": false}),
    )
    .await;
    assert_eq!(
        with(Some(&token))
            .get(&format!("{base}/ddi-t"))
            .await
            .status,
        401
    );
    ops.admin_call(
        "PUT",
        "/api/v1/ddi/tenants/DEFAULT",
        json!({"target_token": true}),
    )
    .await;

    // Device certificates: refused until the tenant accepts them; only for their own id.
    let cert = Ddi {
        addr: ops.server.ddi_addr.unwrap(),
        tls: ops.fx.device("cert-1"),
        auth: None,
    };
    assert_eq!(cert.get(&format!("{base}/cert-1")).await.status, 401);
    ops.admin_call("PUT", "/api/v1/ddi/tenants/DEFAULT", json!({"mtls": true}))
        .await;
    assert_eq!(cert.get(&format!("{base}/cert-1")).await.status, 200);
    assert_eq!(cert.get(&format!("{base}/cert-2")).await.status, 401);
    // A certificate from another CA is refused by TLS itself.
    let stranger = rampart_pki::CertificateAuthority::generate("Other CA", 30).unwrap();
    let foreign = stranger.issue_device("cert-1", 30).unwrap();
    let foreign_tls =
        rampart_pki::client_config(ops.fx.ca.cert_pem(), &foreign.cert_pem, &foreign.key_pem)
            .unwrap();
    let failed = async {
        let mut conn = Conn::new(tls_connect(ops.server.ddi_addr.unwrap(), &foreign_tls).await?);
        conn.send("GET", &format!("{base}/cert-1"), &[], b"").await
    }
    .await;
    assert!(failed.is_err(), "{failed:?}");

    // A device of another tenant is not reachable through this one.
    ops.admin_call("POST", "/api/v1/ddi/tenants", json!({"name": "plant-2"}))
        .await;
    let other = ops
        .admin_call(
            "POST",
            "/api/v1/ddi/tenants/PLANT-2/devices/p2-dev/token",
            json!({}),
        )
        .await;
    let other = format!("TargetToken {}", other["target_token"].as_str().unwrap());
    assert_eq!(
        with(Some(&other))
            .get("/PLANT-2/controller/v1/p2-dev")
            .await
            .status,
        200
    );
    assert_eq!(
        with(Some(&other))
            .get(&format!("{base}/p2-dev"))
            .await
            .status,
        401
    );
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/ddi/tenants/DEFAULT/devices/p2-dev/token",
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");

    // A revoked device that is no tenant's member is refused before it could join.
    let mut conn = ops.server.connect(&ops.fx.device("nat-2")).await;
    assert_eq!(conn.post("/device/v1/poll", &json!({})).await.status, 200);
    ops.call(
        &ops.operator,
        "POST",
        "/api/v1/devices/nat-2/revoke",
        Some(&json!({"reason": "lost"})),
    )
    .await;
    let nat2 = Ddi {
        addr: ops.server.ddi_addr.unwrap(),
        tls: ops.fx.device("nat-2"),
        auth: None,
    };
    assert_eq!(nat2.get(&format!("{base}/nat-2")).await.status, 403);
    assert_eq!(member("nat-2").await, None);
    // Revoked devices are refused (403), whatever the credential.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/ddi-t/revoke",
            Some(&json!({"reason": "stolen"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        with(Some(&token))
            .get(&format!("{base}/ddi-t"))
            .await
            .status,
        403
    );

    // Controller ids with whitespace are refused before anything else.
    assert_eq!(
        with(Some(&gateway))
            .get(&format!("{base}/a%20b"))
            .await
            .status,
        400
    );

    // Only admins manage tenants and tokens; viewers may list.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/ddi/tenants",
            Some(&json!({"name": "x"})),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/ddi/tenants", None)
        .await;
    assert_eq!(r.json()["tenants"].as_array().unwrap().len(), 2);
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/ddi/tenants",
            Some(&json!({"name": "bad name"})),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
}

async fn bad_requests_are_refused_and_change_nothing(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let token = ops.ddi_device("ddi-b").await;
    let other_token = ops.ddi_device("ddi-c").await;
    let ddi = ops.ddi(Some(token));
    ops.assign(FIRMWARE, &["ddi-b", "ddi-c"], "forced").await;
    let p = poll(&ddi, "ddi-b").await;
    let action = json_of(
        &ddi.get(&path_of(&p["_links"]["deploymentBase"]["href"]))
            .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = ops.ddi(Some(other_token));
    let p = poll(&other, "ddi-c").await;
    let other_action = json_of(
        &other
            .get(&path_of(&p["_links"]["deploymentBase"]["href"]))
            .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = "/DEFAULT/controller/v1/ddi-b";
    let fb = format!("{base}/deploymentBase/{action}/feedback");

    let malformed = ddi.send("POST", &fb, b"{\"status\": ").await;
    assert_eq!(malformed.status, 400);
    assert_eq!(
        json_of(&malformed)["errorCode"],
        "hawkbit.server.error.rest.body.notReadable"
    );
    for bad in [
        json!({"status": {"execution": "exploded", "result": {"finished": "none"}}}),
        json!({"status": {"execution": "closed"}}),
        json!({}),
    ] {
        assert_eq!(ddi.post(&fb, &bad).await.status, 400, "{bad}");
    }
    let huge = vec![b' '; 512 * 1024];
    assert_eq!(ddi.send("POST", &fb, &huge).await.status, 413);
    let many: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
    let r = ddi
        .post(&fb, &json!({"status": {"execution": "proceeding", "result": {"finished": "none"}, "details": many}}))
        .await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(
        json_of(&r)["errorCode"],
        "hawkbit.server.error.quota.tooManyEntries"
    );
    // Unknown, foreign and malformed action ids.
    let ok = feedback("proceeding", "none", &[]);
    assert_eq!(
        ddi.post(&format!("{base}/deploymentBase/999999/feedback"), &ok)
            .await
            .status,
        404
    );
    assert_eq!(
        ddi.post(
            &format!("{base}/deploymentBase/{other_action}/feedback"),
            &ok
        )
        .await
        .status,
        404
    );
    assert_eq!(
        ddi.get(&format!("{base}/deploymentBase/{other_action}"))
            .await
            .status,
        404
    );
    assert_eq!(
        ddi.get(&format!("{base}/deploymentBase/abc")).await.status,
        400
    );
    assert_eq!(
        ddi.get(&format!("{base}/deploymentBase/{action}?c=xyz"))
            .await
            .status,
        400
    );
    // Somebody else's module is not downloadable.
    assert_eq!(
        ddi.get(&format!("{base}/softwaremodules/424242/artifacts"))
            .await
            .status,
        404
    );
    // configData: empty, invalid keys, non-string values, bad mode.
    for bad in [
        json!({"data": {}}),
        json!({"data": {"k`": "v"}}),
        json!({"data": {"n": 1}}),
        json!({"mode": "append", "data": {"a": "b"}}),
    ] {
        assert_eq!(
            ddi.put(&format!("{base}/configData"), &bad).await.status,
            400,
            "{bad}"
        );
    }
    // Wrong methods.
    assert_eq!(ddi.send("POST", base, b"{}").await.status, 405);
    assert_eq!(ddi.get(&format!("{base}/configData")).await.status, 405);
    // None of it changed anything: the action is still open with no feedback, no reports.
    let a = ops
        .fx
        .db
        .ddi_action(action.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.state.as_str(), a.statuses), ("open", 0));
    assert!(ops.reports_of("ddi-b").await.is_empty());
    let device = ops.fx.db.device("ddi-b").await.unwrap().unwrap();
    assert!(device.facts.attributes.is_empty(), "{device:?}");
    // And a valid feedback still works afterwards, also the largest one accepted (50 messages
    // of 512 characters, as SWUpdate's error lists can be).
    assert_eq!(ddi.post(&fb, &ok).await.status, 200);
    let long: Vec<String> = (0..50)
        .map(|i| format!("{i:03} {}", "x".repeat(508)))
        .collect();
    let long_refs: Vec<&str> = long.iter().map(String::as_str).collect();
    let r = ddi
        .post(&fb, &feedback("proceeding", "none", &long_refs))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // The per-action quota stops progress, never the result.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&ops.fx.db_url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE ddi_actions SET statuses = 1000 WHERE id = {action}"
    )))
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let r = ddi.post(&fb, &ok).await;
    assert_eq!(r.status, 429, "{r:?}");
    assert_eq!(
        json_of(&r)["errorCode"],
        "hawkbit.server.error.quota.tooManyEntries"
    );
    let r = ddi
        .post(&fb, &feedback("closed", "failure", &long_refs))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let report = &ops.reports_of("ddi-b").await[0];
    assert_eq!(report["status"], "failed", "{report}");
    assert_eq!(report["details"]["ddi"]["messages_total"], 50, "{report}");
}

async fn a_withdrawn_assignment_is_cancelled_through_the_handshake(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = ops.ddi(Some(ops.ddi_device("ddi-x").await));
    let assignment = ops.assign(FIRMWARE, &["ddi-x"], "forced").await;
    let p = poll(&ddi, "ddi-x").await;
    let deployment = path_of(&p["_links"]["deploymentBase"]["href"]);
    let action = json_of(&ddi.get(&deployment).await)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = "/DEFAULT/controller/v1/ddi-x";
    // Cancel feedback before a cancellation: 405.
    let confirm = json!({"id": 1, "time": "20261121T120000", "status": {"result": {"finished": "success"},
        "execution": "closed", "details": ["cancellation acknowledged."]}});
    let r = ddi
        .post(&format!("{base}/cancelAction/{action}/feedback"), &confirm)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(
        json_of(&r)["errorCode"],
        "hawkbit.server.error.action.notCancelable"
    );
    assert_eq!(
        ddi.get(&format!("{base}/cancelAction/{action}"))
            .await
            .status,
        404
    );

    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/assignments/{assignment}/cancel"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let p = poll(&ddi, "ddi-x").await;
    let href = p["_links"]["cancelAction"]["href"].as_str().unwrap();
    assert!(
        !href.contains('?'),
        "SWUpdate appends /feedback to it: {href}"
    );
    assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    let c = json_of(
        &ddi.get(&path_of(&p["_links"]["cancelAction"]["href"]))
            .await,
    );
    assert_eq!(c, json!({"id": action, "cancelAction": {"stopId": action}}));
    assert_eq!(ddi.get(&deployment).await.status, 404);
    // SWUpdate posts to `<cancelAction href>/feedback`.
    let r = ddi
        .post(
            &format!("{}/feedback", path_of(&p["_links"]["cancelAction"]["href"])),
            &confirm,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let a = ops
        .fx
        .db
        .ddi_action(action.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.state, "canceled");
    assert_eq!(ops.reports_of("ddi-x").await[0]["status"], "cancelled");
    let p = poll(&ddi, "ddi-x").await;
    assert!(
        p["_links"].get("cancelAction").is_none() && p["_links"].get("deploymentBase").is_none(),
        "{p}"
    );
    // Deployment feedback for the cancelled action: gone.
    let r = ddi
        .post(
            &format!("{base}/deploymentBase/{action}/feedback"),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 410);

    // A refused cancellation (`rejected`) puts the action back: the device finishes it.
    let again = ops.assign(FIRMWARE, &["ddi-x"], "forced").await;
    let p = poll(&ddi, "ddi-x").await;
    let action2 = json_of(
        &ddi.get(&path_of(&p["_links"]["deploymentBase"]["href"]))
            .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(action2, action);
    ops.call(
        &ops.operator,
        "POST",
        &format!("/api/v1/assignments/{again}/cancel"),
        None,
    )
    .await;
    poll(&ddi, "ddi-x").await;
    let r = ddi
        .post(
            &format!("{base}/cancelAction/{action2}/feedback"),
            &feedback("rejected", "none", &["too late"]),
        )
        .await;
    assert_eq!(r.status, 200);
    // Not cancelled again: the device finishes the action it refused to stop.
    for _ in 0..2 {
        let p = poll(&ddi, "ddi-x").await;
        assert!(p["_links"].get("cancelAction").is_none(), "{p}");
        let d = path_of(&p["_links"]["deploymentBase"]["href"]);
        assert!(d.contains(&format!("/deploymentBase/{action2}?")), "{d}");
    }
    let r = ddi
        .post(
            &format!("{base}/deploymentBase/{action2}/feedback"),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(ops.reports_of("ddi-x").await[0]["status"], "installed");
}

async fn action_types_and_maintenance_windows_set_the_modes(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = ops.ddi(Some(ops.ddi_device("ddi-m").await));
    let modes = |d: &Value| {
        (
            d["deployment"]["download"].as_str().unwrap().to_owned(),
            d["deployment"]["update"].as_str().unwrap().to_owned(),
            d["deployment"]["maintenanceWindow"]
                .as_str()
                .map(str::to_owned),
        )
    };
    let deployment = async |ddi: &Ddi| -> Option<Value> {
        let p = poll(ddi, "ddi-m").await;
        let link = p["_links"].get("deploymentBase")?;
        Some(json_of(&ddi.get(&path_of(&link["href"])).await))
    };
    ops.assign(FIRMWARE, &["ddi-m"], "soft").await;
    let d = deployment(&ddi).await.unwrap();
    assert_eq!(modes(&d), ("attempt".into(), "attempt".into(), None));
    // Download only: `downloaded` closes it, counted as downloaded.
    ops.assign("fw-2.0.0.bin", &["ddi-m"], "download_only")
        .await;
    // The soft action is withdrawn first.
    let p = poll(&ddi, "ddi-m").await;
    let cancel = path_of(&p["_links"]["cancelAction"]["href"]);
    let r = ddi
        .post(
            &format!("{cancel}/feedback"),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 200);
    let d = deployment(&ddi).await.unwrap();
    assert_eq!(modes(&d), ("forced".into(), "skip".into(), None));
    let id = d["id"].as_str().unwrap();
    let fb = format!("/DEFAULT/controller/v1/ddi-m/deploymentBase/{id}/feedback");
    assert_eq!(
        ddi.post(&fb, &feedback("downloaded", "success", &[]))
            .await
            .status,
        200
    );
    assert_eq!(ops.reports_of("ddi-m").await[0]["status"], "downloaded");
    assert_eq!(
        ddi.post(&fb, &feedback("closed", "success", &[]))
            .await
            .status,
        410
    );

    // Maintenance windows: a closed window holds the deployment back, an open one says so.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/groups",
            Some(&json!({"name": "line-9"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/groups/line-9/members",
            Some(&json!({"add": ["ddi-m"]})),
        )
        .await;
    assert!(r.status < 300, "{r:?}");
    let minute = (unix_now() / 60 + 30) % 60;
    let closed =
        json!({"cron": format!("{minute} * * * *"), "duration_secs": 60, "timezone": "UTC"});
    let r = ops
        .call(
            &ops.operator,
            "PUT",
            "/api/v1/groups/line-9/maintenance-window",
            Some(&closed),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    ops.assign(FIRMWARE, &["ddi-m"], "forced").await;
    assert!(
        deployment(&ddi).await.is_none(),
        "held back while the window is closed"
    );
    let open = json!({"cron": "* * * * *", "duration_secs": 120, "timezone": "UTC"});
    ops.call(
        &ops.operator,
        "PUT",
        "/api/v1/groups/line-9/maintenance-window",
        Some(&open),
    )
    .await;
    let p = poll(&ddi, "ddi-m").await;
    let link = path_of(&p["_links"]["deploymentBase"]["href"]);
    let d = json_of(&ddi.get(&link).await);
    assert_eq!(
        modes(&d),
        ("forced".into(), "forced".into(), Some("available".into()))
    );
    // The window closes while the device holds the link: no `update: skip` for it to close.
    ops.call(
        &ops.operator,
        "PUT",
        "/api/v1/groups/line-9/maintenance-window",
        Some(&closed),
    )
    .await;
    let r = ddi.get(&link).await;
    assert_eq!((r.status, r.body.len()), (404, 0), "{r:?}");
}

async fn ddi_feedback_counts_toward_campaign_gates(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let good = ops.ddi(Some(ops.ddi_device("ddi-g").await));
    let bad = ops.ddi(Some(ops.ddi_device("ddi-f").await));
    let spec = json!({"name": "ddi rollout", "release": FIRMWARE,
        "targets": {"devices": ["ddi-g", "ddi-f"]},
        "phases": {"canary": {"devices": 2}},
        "gate": {"min_success_pct": 90, "max_failure_pct": 10, "min_results": 1},
        "on_breach": "pause"});
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/campaigns",
            Some(&json!({"spec": spec, "start": true})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let mut actions = Vec::new();
    for (ddi, device) in [(&good, "ddi-g"), (&bad, "ddi-f")] {
        // The engine assigns within a tick.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let link = loop {
            let p = poll(ddi, device).await;
            if let Some(l) = p["_links"].get("deploymentBase") {
                break l.clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no deployment for {device}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let d = json_of(&ddi.get(&path_of(&link["href"])).await);
        actions.push(d["id"].as_str().unwrap().to_owned());
    }
    let fb = |device: &str, action: &str| {
        format!("/DEFAULT/controller/v1/{device}/deploymentBase/{action}/feedback")
    };
    let r = good
        .post(
            &fb("ddi-g", &actions[0]),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 200);
    let r = bad
        .post(
            &fb("ddi-f", &actions[1]),
            &feedback(
                "closed",
                "failure",
                &["ERROR : HASH mismatch", "No suitable .swu image found"],
            ),
        )
        .await;
    assert_eq!(r.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let c = loop {
        let c = ops
            .call(&ops.viewer, "GET", &format!("/api/v1/campaigns/{id}"), None)
            .await
            .json();
        if c["status"] == "paused" {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gate did not halt: {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(c["state"]["halt"]["by"], "gate", "{c:#}");
    let total = &c["figures"]["total"];
    assert_eq!(
        (total["succeeded"].as_u64(), total["failed"].as_u64()),
        (Some(1), Some(1)),
        "{c:#}"
    );
    assert_eq!(total["failure_reasons"]["install_failed"], 1, "{c:#}");
}

/// Threat: the artifact store is altered (a swapped file in the bucket or directory). DDI
/// clients check SHA-1 or MD5, which the signed TUF metadata does not carry, so the server
/// computes them only from bytes whose SHA-256 and length match the signed metadata: an
/// altered artifact is never described to a DDI client, and the operator is told why.
async fn a_tampered_artifact_is_never_offered(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = ops.ddi(Some(ops.ddi_device("ddi-t").await));
    let targets = ops.repo_dir.path().join("repo/targets");
    let stored = std::fs::read_dir(&targets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".fw-2.0.0.bin"))
        .expect("the stored artifact");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[0] ^= 0xFF;
    std::fs::write(&stored, &bytes).unwrap();
    ops.assign("fw-2.0.0.bin", &["ddi-t"], "forced").await;
    for _ in 0..3 {
        let p = poll(&ddi, "ddi-t").await;
        assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    }
    assert!(
        ops.fx
            .db
            .ddi_module_by_target("fw-2.0.0.bin")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        ops.fx
            .db
            .ddi_actions_of("ddi-t", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Restored, it is offered.
    bytes[0] ^= 0xFF;
    std::fs::write(&stored, &bytes).unwrap();
    let p = poll(&ddi, "ddi-t").await;
    assert!(p["_links"].get("deploymentBase").is_some(), "{p}");
}

/// A time-forced assignment is soft until its time, then forced: for native devices (the poll's
/// `type`) and for DDI devices (`download`/`update` and the link's cache buster).
async fn time_forced_assignments_turn_forced_at_their_time(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = ops.ddi(Some(ops.ddi_device("tf-ddi").await));
    let native_tls = ops.fx.device("tf-native");
    let native_type = async || {
        let mut dev = ops.server.connect(&native_tls).await;
        let r = dev.post("/device/v1/poll", &json!({})).await;
        assert_eq!(r.status, 200, "{r:?}");
        r.json()["assignment"]["type"].clone()
    };
    native_type().await; // registers the native device
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/assignments",
            Some(&json!({"target": FIRMWARE, "devices": ["tf-ddi", "tf-native"], "type": "timeforced"})))
        .await;
    assert_eq!(r.status, 422, "force_after_secs is required: {r:?}");
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/assignments",
            Some(&json!({"target": FIRMWARE, "devices": ["tf-ddi", "tf-native"], "type": "timeforced", "force_after_secs": 3600})))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(native_type().await, "soft");
    let before = poll(&ddi, "tf-ddi").await["_links"]["deploymentBase"]["href"].clone();
    let d = json_of(&ddi.get(&path_of(&before)).await);
    assert_eq!(
        (
            d["deployment"]["download"].as_str(),
            d["deployment"]["update"].as_str()
        ),
        (Some("attempt"), Some("attempt")),
        "{d}"
    );

    // An hour later (the stored force time moved into the past).
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&ops.fx.db_url).await.unwrap();
    for table in ["device_assignments", "ddi_actions"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET forced_at = 1 WHERE forced_at > 0"
        )))
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    assert_eq!(native_type().await, "forced");
    let after = poll(&ddi, "tf-ddi").await["_links"]["deploymentBase"]["href"].clone();
    assert_ne!(
        before, after,
        "the cache buster changes when the action turns forced"
    );
    let d = json_of(&ddi.get(&path_of(&after)).await);
    assert_eq!(
        (
            d["deployment"]["download"].as_str(),
            d["deployment"]["update"].as_str()
        ),
        (Some("forced"), Some("forced")),
        "{d}"
    );
}

/// Polls racing for a new assignment (client retries, gateways) open one action, never two.
async fn concurrent_polls_open_one_action(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = Arc::new(ops.ddi(Some(ops.ddi_device("ddi-r").await)));
    ops.assign(FIRMWARE, &["ddi-r"], "forced").await;
    let mut polls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let ddi = ddi.clone();
        polls.spawn(async move { poll(&ddi, "ddi-r").await });
    }
    let mut links = std::collections::BTreeSet::new();
    while let Some(p) = polls.join_next().await {
        links.insert(p.unwrap()["_links"]["deploymentBase"]["href"].to_string());
    }
    assert_eq!(links.len(), 1, "{links:?}");
    let actions = ops.fx.db.ddi_actions_of("ddi-r", 10).await.unwrap();
    assert_eq!(actions.len(), 1, "{actions:?}");
}

/// Concurrent configData merges (a client retrying, several agents on one device) each keep
/// their keys: the read-modify-write is one transaction.
async fn concurrent_config_data_merges_lose_nothing(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = Arc::new(ops.ddi(Some(ops.ddi_device("ddi-c").await)));
    let mut puts = tokio::task::JoinSet::new();
    for i in 0..12 {
        let ddi = ddi.clone();
        puts.spawn(async move {
            ddi.put(
                "/DEFAULT/controller/v1/ddi-c/configData",
                &json!({"mode": "merge", "data": {format!("key-{i}"): format!("value-{i}")}}),
            )
            .await
            .status
        });
    }
    while let Some(status) = puts.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let device = ops.fx.db.device("ddi-c").await.unwrap().unwrap();
    for i in 0..12 {
        assert_eq!(
            device.facts.attributes[&format!("key-{i}")],
            format!("value-{i}"),
            "{:?}",
            device.facts.attributes
        );
    }
}

/// Opens a TLS connection to `addr` from the local address `from` (another loopback address
/// is another source to the server).
async fn tls_connect_from(
    from: &str,
    addr: std::net::SocketAddr,
    tls: &Arc<ClientConfig>,
) -> Conn<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = socket.connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    Conn::new(
        tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .unwrap(),
    )
}

impl Ops {
    /// Turns gateway tokens on for tenant DEFAULT (created if needed, certificates accepted);
    /// returns the `Authorization` value.
    async fn gateway(&self) -> String {
        let r = self
            .call(
                &self.admin,
                "POST",
                "/api/v1/ddi/tenants",
                Some(&json!({"name": "default", "gateway_token": true, "mtls": true})),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        format!(
            "GatewayToken {}",
            r.json()["gateway_token"].as_str().unwrap()
        )
    }

    async fn audit_actions(&self, action: &str, subject: &str) -> Vec<Value> {
        self.audit_records()
            .await
            .into_iter()
            .filter(|r| r.action == action && r.subject == subject)
            .map(|r| r.details)
            .collect()
    }
}

/// Issue 13 item 2: a gateway-token poll for an id whose device has not enrolled yet creates a
/// row the gateway enrolled; when the real device connects with its certificate it does not
/// adopt that row (409, audited, no enrolment), until an operator deletes the row. Then it
/// enrols afresh, with none of the gateway's forged facts.
async fn a_gateway_token_never_claims_a_device_before_its_certificate(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let gateway = ops.ddi(Some(ops.gateway().await));
    let base = "/DEFAULT/controller/v1/dev-future";
    poll(&gateway, "dev-future").await;
    let r = gateway
        .put(
            &format!("{base}/configData"),
            &json!({"mode": "merge", "data": {"hardware_id": "forged-board"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let enrolment = ops
        .call(&ops.viewer, "GET", "/api/v1/devices/dev-future", None)
        .await
        .json()["enrolment"]
        .clone();
    assert_eq!(
        enrolment,
        json!({"by": "gateway_token", "tenant": "DEFAULT"}),
        "{enrolment}"
    );

    // The real device, with its certificate: refused on every route, and audited.
    let mut real = ops.server.connect(&ops.fx.device("dev-future")).await;
    let r = real.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.status, 409, "{r:?}");
    let e = r.json();
    assert_eq!(e["error"], "enrolled_by_token", "{e}");
    let detail = e["detail"].as_str().unwrap();
    assert!(
        detail.contains("gateway token")
            && detail.contains("DELETE /api/v1/ddi/devices/dev-future"),
        "{detail}"
    );
    let r = real
        .post(
            "/device/v1/reports",
            &json!({"id": "r-1", "status": "installed"}),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let refused = ops
        .audit_actions("device.identity_refused", "dev-future")
        .await;
    assert_eq!(refused.len(), 1, "audited once a minute: {refused:?}");
    assert_eq!(refused[0]["enrolled_by"], "gateway_token");
    assert!(
        ops.audit_actions("device.enrolled", "dev-future")
            .await
            .is_empty()
    );
    assert_eq!(
        ops.server
            .metric("rampart_server_auth_failures_total{kind=\"certificate_enrolment\"}")
            .await,
        2
    );

    // The operator resolves it: only an admin deletes, and the deletion is audited.
    let r = ops
        .call(
            &ops.operator,
            "DELETE",
            "/api/v1/ddi/devices/dev-future",
            None,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = ops
        .call(&ops.admin, "DELETE", "/api/v1/ddi/devices/dev-future", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        ops.audit_actions("device.deleted", "dev-future").await[0]["enrolled_by"],
        "gateway_token"
    );
    let r = real.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        ops.audit_actions("device.enrolled", "dev-future")
            .await
            .len(),
        1
    );
    let d = ops
        .call(&ops.viewer, "GET", "/api/v1/devices/dev-future", None)
        .await
        .json();
    assert_eq!(d["device"]["hardware_id"], "", "{d}");
    assert_eq!(d["enrolment"]["by"], "certificate", "{d}");
    // Now the gateway token is the stranger.
    let r = gateway.get(base).await;
    assert_eq!(r.status, 401, "{r:?}");
}

/// Issue 13 item 2, the other direction: a device enrolled with its certificate (natively, then
/// joined to a DDI tenant with the same certificate) is never acted for by a token: the gateway
/// token gets neither its deployment nor its artifact, and no TargetToken is issued for it.
async fn a_token_never_acts_for_a_certificate_identity(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let gateway = ops.ddi(Some(ops.gateway().await));
    let mut native = ops.server.connect(&ops.fx.device("cert-dev")).await;
    assert_eq!(native.post("/device/v1/poll", &json!({})).await.status, 200);
    ops.assign(FIRMWARE, &["cert-dev"], "forced").await;
    let cert = Ddi {
        addr: ops.server.ddi_addr.unwrap(),
        tls: ops.fx.device("cert-dev"),
        auth: None,
    };
    // Its own certificate joins it to the tenant and sees its deployment.
    let p = poll(&cert, "cert-dev").await;
    let deployment = path_of(&p["_links"]["deploymentBase"]["href"]);
    let d = json_of(&cert.get(&deployment).await);
    let download =
        path_of(&d["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download"]["href"]);
    assert_eq!(cert.get(&download).await.status, 200);

    // The gateway token, although the row is now a member of its tenant: refused everywhere.
    for path in [
        "/DEFAULT/controller/v1/cert-dev".to_owned(),
        deployment.clone(),
        download.clone(),
    ] {
        let r = gateway.get(&path).await;
        assert_eq!(r.status, 401, "{path}: {r:?}");
        assert!(
            json_of(&r)["message"]
                .as_str()
                .unwrap()
                .contains("enrolled with its device certificate"),
            "{r:?}"
        );
    }
    // No TargetToken for it either.
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/ddi/tenants/DEFAULT/devices/cert-dev/token",
            None,
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("enrolled with its device certificate"),
        "{r:?}"
    );
    // Only the operator's explicit binding gives it a token too; it stays the certificate's.
    let t = ops
        .admin_call(
            "POST",
            "/api/v1/ddi/tenants/DEFAULT/devices/cert-dev/token",
            json!({"bind_certificate_device": true}),
        )
        .await;
    let bound = ops.ddi(Some(format!(
        "TargetToken {}",
        t["target_token"].as_str().unwrap()
    )));
    poll(&bound, "cert-dev").await;
    poll(&cert, "cert-dev").await;
    // A gateway-enrolled controller may be handed a TargetToken (the operator names it), and
    // a certificate still never takes it over.
    poll(&gateway, "gw-dev").await;
    let t = ops
        .admin_call(
            "POST",
            "/api/v1/ddi/tenants/DEFAULT/devices/gw-dev/token",
            json!({}),
        )
        .await;
    let target = ops.ddi(Some(format!(
        "TargetToken {}",
        t["target_token"].as_str().unwrap()
    )));
    poll(&target, "gw-dev").await;
    let gw_cert = Ddi {
        addr: ops.server.ddi_addr.unwrap(),
        tls: ops.fx.device("gw-dev"),
        auth: None,
    };
    let r = gw_cert.get("/DEFAULT/controller/v1/gw-dev").await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(
        json_of(&r)["errorCode"],
        "rampart.enrolled_by_token",
        "{r:?}"
    );
}

/// Issue 13 item 8: wrong TargetTokens and bearer tokens are counted, summarised per source in
/// the audit log, and a source that keeps failing is answered 429 for its failures, while valid
/// credentials (from that source or another) are served.
async fn failed_authentication_is_audited_counted_and_slowed_per_source(
    backend: Backend,
    name: &str,
) {
    // Summaries every 2 s: many failures share one record.
    let ops = Ops::start_with(backend, name, |c| {
        c.refusal_summary_interval = Duration::from_secs(2);
    })
    .await;
    let token = ops.ddi_device("ddi-a").await;
    let ddi_addr = ops.server.ddi_addr.unwrap();
    let path = "/DEFAULT/controller/v1/ddi-a";
    let send = async |from: &str, auth: &str| {
        tls_connect_from(from, ddi_addr, &ops.operator_tls)
            .await
            .send("GET", path, &[("Authorization", auth)], b"")
            .await
            .unwrap()
    };
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let r = send("127.0.0.1", "TargetToken wrong-token").await;
        statuses.push(r.status);
        if r.status == 429 {
            assert!(r.header("retry-after").is_some(), "{r:?}");
            assert_eq!(
                json_of(&r)["errorCode"],
                "rampart.too_many_auth_failures",
                "{r:?}"
            );
            break;
        }
        assert_eq!(r.status, 401, "{r:?}");
    }
    assert_eq!(
        statuses.last(),
        Some(&429),
        "never slowed down: {statuses:?}"
    );
    assert!(
        statuses.len() > 20,
        "the first failures are free: {statuses:?}"
    );
    // The failing source keeps getting 429 for wrong tokens, but a valid token from the same
    // address (another device behind the same NAT) is served: a stranger cannot lock it out.
    assert_eq!(
        send("127.0.0.1", "TargetToken wrong-token").await.status,
        429
    );
    assert_eq!(send("127.0.0.1", &token).await.status, 200);
    assert_eq!(send("127.0.0.2", &token).await.status, 200);

    // The management API: its own budget per source.
    let mut management_statuses = Vec::new();
    for _ in 0..40 {
        let r = tls_connect_from(
            "127.0.0.1",
            ops.server.management_addr.unwrap(),
            &ops.operator_tls,
        )
        .await
        .send(
            "GET",
            "/api/v1/devices",
            &[("Authorization", "Bearer rampart_nope")],
            b"",
        )
        .await
        .unwrap();
        management_statuses.push(r.status);
        if r.status == 429 {
            assert_eq!(r.json()["error"], "too_many_auth_failures");
            break;
        }
    }
    assert_eq!(
        management_statuses.last(),
        Some(&429),
        "{management_statuses:?}"
    );
    let admin = format!("Bearer {}", ops.admin);
    let r = tls_connect_from(
        "127.0.0.2",
        ops.server.management_addr.unwrap(),
        &ops.operator_tls,
    )
    .await
    .send("GET", "/api/v1/devices", &[("Authorization", &admin)], b"")
    .await
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");

    // Counted, and summarised per source (not per failure) in the audit log.
    assert!(
        ops.server
            .metric("rampart_server_auth_failures_total{kind=\"ddi_target_token\"}")
            .await
            > 20
    );
    assert!(
        ops.server
            .metric("rampart_server_auth_throttled_total{api=\"ddi\"}")
            .await
            >= 2
    );
    let records = async || {
        let lines = ops.fx.db.audit_lines(0, 100_000).await.unwrap();
        let text: String = lines.iter().map(|l| format!("{}\n", l.line)).collect();
        rampart_audit::parse_jsonl(text.as_bytes())
            .unwrap()
            .into_iter()
            .filter(|r| r.action == "auth.failed")
            .collect::<Vec<_>>()
    };
    wait_until("failed authentications are summarised", async || {
        let r = records().await;
        let ddi: u64 = r
            .iter()
            .filter(|r| r.subject == "127.0.0.1")
            .map(|r| {
                r.details["by_kind"]["ddi_target_token"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        let management: u64 = r
            .iter()
            .filter(|r| r.subject == "127.0.0.1")
            .map(|r| {
                r.details["by_kind"]["management_token"]
                    .as_u64()
                    .unwrap_or(0)
            })
            .sum();
        ddi as usize == statuses.len() - 1 && management as usize == management_statuses.len() - 1
    })
    .await;
    let r = records().await;
    let failures = statuses.len() + management_statuses.len() - 2;
    assert!(
        r.len() < failures,
        "one record per source and interval, not per failure: {} records",
        r.len()
    );
    assert!(r.iter().all(|r| r.subject != "127.0.0.2"));
}

/// Issue 13 item 12: a DDI install sets the device's inventory version (fleet versions and
/// version filters count it), and a device that refused a cancellation and then installed shows
/// that, not `unassigned`.
async fn ddi_installs_count_in_fleet_versions_and_device_status(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let ddi = ops.ddi(Some(ops.ddi_device("ddi-v").await));
    let base = "/DEFAULT/controller/v1/ddi-v";
    let assignment = ops.assign(FIRMWARE, &["ddi-v"], "forced").await;
    let p = poll(&ddi, "ddi-v").await;
    let action = json_of(
        &ddi.get(&path_of(&p["_links"]["deploymentBase"]["href"]))
            .await,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Withdrawn while it installs; the device refuses the cancellation and finishes.
    ops.call(
        &ops.operator,
        "POST",
        &format!("/api/v1/assignments/{assignment}/cancel"),
        None,
    )
    .await;
    poll(&ddi, "ddi-v").await;
    let r = ddi
        .post(
            &format!("{base}/cancelAction/{action}/feedback"),
            &feedback("rejected", "none", &["installing already"]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let r = ddi
        .post(
            &format!("{base}/deploymentBase/{action}/feedback"),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let d = ops
        .call(&ops.viewer, "GET", "/api/v1/devices/ddi-v", None)
        .await
        .json();
    assert_eq!(d["device"]["firmware_version"], "1.0.0", "{d}");
    assert_eq!(d["update_status"], "installed_after_cancel", "{d}");
    let versions = ops
        .call(&ops.viewer, "GET", "/api/v1/fleet/versions", None)
        .await
        .json();
    assert_eq!(
        versions["versions"],
        json!([{"firmware_version": "1.0.0", "devices": 1}]),
        "{versions}"
    );
    let listed = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/devices?firmware_version=1.0.0",
            None,
        )
        .await
        .json();
    assert_eq!(listed["devices"][0]["id"], "ddi-v", "{listed}");
}

/// Issue 13 item 7: one id grammar (DDI controller ids, management paths), one JSON policy
/// (duplicate keys refused on every route, the device poll included), and bad query strings
/// answered in each API's error format.
async fn one_input_grammar_for_ids_json_and_queries(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let gateway = ops.ddi(Some(ops.gateway().await));
    let long = "x".repeat(256);
    for id in [long.as_str(), "..", "a%2Fb", "%3Cscript%3E", "a:b%20c"] {
        let r = gateway.get(&format!("/DEFAULT/controller/v1/{id}")).await;
        assert_eq!(r.status, 400, "{id}: {r:?}");
        assert_eq!(
            json_of(&r)["errorCode"],
            "hawkbit.server.error.repo.constraintViolation",
            "{r:?}"
        );
    }
    assert_eq!(
        poll(&gateway, &"y".repeat(128)).await["config"]["polling"]["sleep"],
        "00:05:00"
    );
    // A path the framework cannot decode gets hawkBit's error document, not plain text.
    let r = gateway.get("/DEFAULT/controller/v1/%FF%FE").await;
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        json_of(&r)["errorCode"]
            .as_str()
            .is_some_and(|c| c.starts_with("rampart.") || c.starts_with("hawkbit.")),
        "{r:?}"
    );
    for path in [
        "/api/v1/devices/%3Cscript%3E",
        "/api/v1/ddi/devices/a%2Fb/actions",
        "/api/v1/reports?device=%3Cscript%3E",
        "/api/v1/devices/..",
    ] {
        let r = ops.call(&ops.viewer, "GET", path, None).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "invalid_device_id", "{r:?}");
    }
    let r = ops
        .call(
            &ops.admin,
            "POST",
            &format!(
                "/api/v1/ddi/tenants/DEFAULT/devices/{}/token",
                "z".repeat(129)
            ),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");

    // Duplicate keys: the native poll (read as free JSON) and DDI bodies.
    let mut native = ops.server.connect(&ops.fx.device("dup-1")).await;
    let r = native
        .send(
            "POST",
            "/device/v1/poll",
            &[("Content-Type", "application/json")],
            br#"{"hardware_id": "board-a", "firmware_version": "1.0.0", "security_version": 1, "firmware_version": "9.9.9"}"#,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    let e = r.json();
    assert_eq!(e["error"], "malformed_json", "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("firmware_version"),
        "{e}"
    );
    poll(&gateway, "dup-ddi").await;
    let r = gateway
        .send(
            "PUT",
            "/DEFAULT/controller/v1/dup-ddi/configData",
            br#"{"mode": "merge", "data": {"a": "1", "a": "2"}}"#,
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");

    // Bad query strings: hawkBit's error document on DDI, {"error","detail"} on management.
    let r = gateway
        .get("/DEFAULT/controller/v1/dup-ddi/deploymentBase/1?actionHistory=many")
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(
        json_of(&r)["errorCode"],
        "hawkbit.server.error.rest.param.invalid",
        "{r:?}"
    );
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/campaigns/c-1/report?bogus=1",
            None,
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.json()["detail"].as_str().unwrap().contains("query"),
        "{r:?}"
    );
}

/// hawkBit clients cannot attest: under `--require-attestation` they are offered no
/// deployment, and its documents and artifacts answer 403.
async fn the_fleet_wide_attestation_policy_offers_ddi_devices_no_deployment(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start_with(backend, name, |c| {
        c.attestation = Some(rampart_server::attestation::AttestationConfig {
            require: true,
            ..Default::default()
        })
    })
    .await;
    let token = ops.ddi_device("ddi-att").await;
    let ddi = ops.ddi(Some(token));
    ops.assign(FIRMWARE, &["ddi-att"], "forced").await;
    let p = poll(&ddi, "ddi-att").await;
    assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    for path in [
        "/DEFAULT/controller/v1/ddi-att/deploymentBase/1",
        "/DEFAULT/controller/v1/ddi-att/softwaremodules/1/artifacts",
    ] {
        let r = ddi.get(path).await;
        assert_eq!(
            r.status,
            403,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(String::from_utf8_lossy(&r.body).contains("attestation"));
    }
}

/// Quarantine (decision 0031) over DDI: no deploymentBase link and no configData link in the
/// poll; the deployment, its artifacts and configData answer 403 naming the quarantine; a new
/// assignment for the device is refused (409, naming `rampart device release`); after the
/// operator's release the deployment is offered again.
async fn a_quarantined_device_gets_no_assignment_over_ddi(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let token = ops.ddi_device("ddi-q").await;
    let ddi = ops.ddi(Some(token));
    ops.assign(FIRMWARE, &["ddi-q"], "forced").await;
    let p = poll(&ddi, "ddi-q").await;
    let deployment = path_of(&p["_links"]["deploymentBase"]["href"]);
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/ddi-q/quarantine",
            Some(&json!({"reason": "forged report"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let p = poll(&ddi, "ddi-q").await;
    assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    assert!(p["_links"].get("configData").is_none(), "{p}");
    for path in [
        deployment.clone(),
        "/DEFAULT/controller/v1/ddi-q/softwaremodules/1/artifacts".into(),
    ] {
        let r = ddi.get(&path).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            body.contains("quarantined") && body.contains("rampart device release"),
            "{body}"
        );
    }
    let r = ddi
        .put(
            "/DEFAULT/controller/v1/ddi-q/configData",
            &json!({"mode": "merge", "data": {"k": "v"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": FIRMWARE, "devices": ["ddi-q"]})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("rampart device release"));
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/devices/ddi-q/release", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let p = poll(&ddi, "ddi-q").await;
    assert!(p["_links"].get("deploymentBase").is_some(), "{p}");
}

/// A re-image over DDI (decision 0032) is a forced action: offered through a closed maintenance
/// window, over the release the device reports installed, and to a quarantined device (its
/// deployment and artifact too).
async fn a_reimage_is_a_forced_ddi_action_through_a_closed_window_even_over_the_installed_release(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let ddi = ops.ddi(Some(ops.ddi_device("ddi-r").await));
    let base = "/DEFAULT/controller/v1/ddi-r";
    // The device installs the release the ordinary way.
    ops.assign(FIRMWARE, &["ddi-r"], "forced").await;
    let p = poll(&ddi, "ddi-r").await;
    let link = path_of(&p["_links"]["deploymentBase"]["href"]);
    let id = json_of(&ddi.get(&link).await)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = ddi
        .post(
            &format!("{base}/deploymentBase/{id}/feedback"),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 200);
    // Its group's window closes; an ordinary assignment is now held back.
    ops.closed_window_group("night", &["ddi-r"]).await;
    ops.assign("fw-2.0.0.bin", &["ddi-r"], "forced").await;
    let p = poll(&ddi, "ddi-r").await;
    assert!(p["_links"].get("deploymentBase").is_none(), "{p}");
    // And it is quarantined: a re-image is the one deployment it still gets.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/ddi-r/quarantine",
            Some(&json!({"reason": "tampered slot"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    // A re-image of the installed release is offered at once, forced, with no window.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/ddi-r/reimage",
            Some(&json!({"release": FIRMWARE})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    // The held action is withdrawn first (the cancellation handshake).
    let p = poll(&ddi, "ddi-r").await;
    let cancel = path_of(&p["_links"]["cancelAction"]["href"]);
    let r = ddi
        .post(
            &format!("{cancel}/feedback"),
            &feedback("closed", "success", &[]),
        )
        .await;
    assert_eq!(r.status, 200);
    let p = poll(&ddi, "ddi-r").await;
    let link = path_of(&p["_links"]["deploymentBase"]["href"]);
    let d = json_of(&ddi.get(&link).await);
    assert_eq!(d["deployment"]["download"], "forced", "{d}");
    assert_eq!(d["deployment"]["update"], "forced", "{d}");
    assert!(d["deployment"].get("maintenanceWindow").is_none(), "{d}");
    assert_eq!(d["deployment"]["chunks"][0]["version"], "1.0.0", "{d}");
    let module =
        d["deployment"]["chunks"][0]["artifacts"][0]["_links"]["download-http"]["href"].clone();
    let r = ddi.get(&path_of(&module)).await;
    assert_eq!(
        r.status, 200,
        "the quarantined device downloads its re-image: {r:?}"
    );
}
