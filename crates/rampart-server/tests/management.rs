//! The management API over real TLS on loopback (bearer tokens and roles), with devices on the
//! mutual-TLS device API, against embedded SQLite and PostgreSQL. The server hosts a real image
//! repository built with rampart-repo.

mod common;

use std::time::Duration;

use common::ops::Ops;
use common::*;
use rampart_server::OPENAPI_JSON;
use serde_json::{Value, json};

on_both_backends!(
    tokens_and_roles_guard_every_endpoint,
    fleet_groups_releases_and_assignments,
    revocation_and_security_events_are_audited,
    management_bad_input_gets_json_errors,
    every_documented_route_exists,
    idle_management_connections_are_closed,
);

async fn tokens_and_roles_guard_every_endpoint(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;

    // No token, a malformed header, an unknown token: 401 with a challenge.
    let mut conn = ops.conn().await;
    let r = conn.send("GET", "/api/v1/devices", &[], b"").await.unwrap();
    let detail = r.error(401, "unauthorized");
    assert!(detail.contains("rampart token create"), "{detail}");
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"rampart\"")
    );
    let r = conn
        .send(
            "GET",
            "/api/v1/devices",
            &[("Authorization", "Basic abc")],
            b"",
        )
        .await
        .unwrap();
    r.error(401, "unauthorized");
    let r = ops
        .call("rampart_0000_guess", "GET", "/api/v1/devices", None)
        .await;
    r.error(401, "unauthorized");

    // What each role may do: (token, method, path, body, allowed).
    let group = json!({"name": "g-roles"});
    // Allowed for [admin, operator, viewer, auditor].
    type Case<'a> = (&'a str, &'a str, &'a str, Option<Value>, [bool; 4]);
    let cases: Vec<Case> = vec![
        (
            "read devices",
            "GET",
            "/api/v1/devices",
            None,
            [true, true, true, true],
        ),
        (
            "read releases",
            "GET",
            "/api/v1/releases",
            None,
            [true, true, true, true],
        ),
        (
            "export audit",
            "GET",
            "/api/v1/audit",
            None,
            [true, false, false, true],
        ),
        (
            "list tokens",
            "GET",
            "/api/v1/tokens",
            None,
            [true, false, false, false],
        ),
        (
            "create group",
            "POST",
            "/api/v1/groups",
            Some(group),
            [true, true, false, false],
        ),
    ];
    let tokens = [&ops.admin, &ops.operator, &ops.viewer, &ops.auditor];
    for (what, method, path, body, allowed) in &cases {
        // Viewers and auditors first, so the create succeeds for the first permitted caller.
        for i in [2, 3, 1, 0] {
            let r = ops.call(tokens[i], method, path, body.as_ref()).await;
            if allowed[i] {
                assert!(
                    r.status < 400 || r.status == 409,
                    "{what}: role {i} should be allowed: {r:?}"
                );
            } else {
                let detail = r.error(403, "forbidden");
                assert!(detail.contains("may not"), "{detail}");
            }
        }
    }

    // Admins create and revoke tokens over the API; a revoked token is refused at once.
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/tokens",
            Some(&json!({"role": "viewer", "name": "dash"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let created = r.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ops.call(&secret, "GET", "/api/v1/devices", None)
            .await
            .status,
        200
    );
    let listed = ops
        .call(&ops.admin, "GET", "/api/v1/tokens", None)
        .await
        .json();
    assert!(
        !listed.to_string().contains(&secret),
        "listings never show secrets"
    );
    let r = ops
        .call(&ops.admin, "DELETE", &format!("/api/v1/tokens/{id}"), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    ops.call(&secret, "GET", "/api/v1/devices", None)
        .await
        .error(401, "unauthorized");
    ops.call(&ops.admin, "DELETE", &format!("/api/v1/tokens/{id}"), None)
        .await
        .error(404, "unknown_token");
    let r = ops
        .call(
            &ops.admin,
            "POST",
            "/api/v1/tokens",
            Some(&json!({"role": "root"})),
        )
        .await;
    assert!(r.error(422, "invalid_request").contains("unknown role"));

    let actions: Vec<String> = ops
        .audit_records()
        .await
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert_eq!(actions.iter().filter(|a| *a == "token.created").count(), 5);
    assert!(actions.contains(&"token.revoked".to_owned()));
    assert!(actions.contains(&"group.created".to_owned()));
    ops.server.stop().await;
}

async fn fleet_groups_releases_and_assignments(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-a1", "board-a", &["canary"]).await;
    ops.device("dev-a2", "board-a", &[]).await;
    ops.device("dev-z1", "board-z", &["canary"]).await;

    // Inventory: filters and per-version counts.
    let ids = |v: Value| -> Vec<String> {
        v["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/devices?hardware_id=board-a",
            None,
        )
        .await;
    assert_eq!(ids(r.json()), ["dev-a1", "dev-a2"]);
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/devices?tag=canary", None)
        .await;
    assert_eq!(ids(r.json()), ["dev-a1", "dev-z1"]);
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/devices?slot=b=bad", None)
        .await;
    assert_eq!(ids(r.json()), ["dev-z1"]);
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/devices?region=eu&min_security_version=1&attribute=none=x",
            None,
        )
        .await;
    assert!(ids(r.json()).is_empty());
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/fleet/versions", None)
        .await
        .json();
    assert_eq!(r["devices"], 3);
    assert_eq!(
        r["versions"][0],
        json!({"firmware_version": "0.9.0", "devices": 3})
    );

    // Groups: members must exist; all or nothing.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/groups",
            Some(&json!({"name": "line-3", "description": "plant 3"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    ops.call(
        &ops.operator,
        "POST",
        "/api/v1/groups",
        Some(&json!({"name": "line-3"})),
    )
    .await
    .error(409, "group_exists");
    ops.call(
        &ops.operator,
        "POST",
        "/api/v1/groups/line-3/members",
        Some(&json!({"add": ["dev-a1", "nobody"]})),
    )
    .await
    .error(404, "unknown_device");
    assert!(
        ops.fx
            .db
            .group_device_ids("line-3")
            .await
            .unwrap()
            .is_empty()
    );
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/groups/line-3/members",
            Some(&json!({"add": ["dev-a1", "dev-a2", "dev-z1"], "remove": ["dev-z1"]})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["devices"], json!(["dev-a1", "dev-a2"]));
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/devices?group=line-3", None)
        .await;
    assert_eq!(ids(r.json()), ["dev-a1", "dev-a2"]);

    // Releases come from the verified image repository.
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/releases", None)
        .await
        .json();
    let targets: Vec<&str> = r["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["target"].as_str().unwrap())
        .collect();
    assert!(
        targets.contains(&"fw-1.0.0.bin") && targets.contains(&"fw-other.bin"),
        "{r}"
    );

    // Assignments: unknown release, unknown group, incompatible hardware are refused.
    let assign = async |body: Value| {
        ops.call(&ops.operator, "POST", "/api/v1/assignments", Some(&body))
            .await
    };
    assign(json!({"target": "fw-9.bin", "group": "line-3"}))
        .await
        .error(422, "unknown_release");
    assign(json!({"target": "fw-1.0.0.bin", "group": "nope"}))
        .await
        .error(404, "unknown_group");
    assign(json!({"target": "fw-1.0.0.bin"}))
        .await
        .error(422, "invalid_request");
    let detail = assign(json!({"target": "fw-1.0.0.bin", "tag": "canary"}))
        .await
        .error(422, "incompatible_hardware");
    assert!(detail.contains("dev-z1"), "{detail}");
    assert!(
        ops.fx
            .db
            .device_assignment("dev-z1")
            .await
            .unwrap()
            .is_none()
    );

    let detail = assign(json!({"target": "fw-1.0.0.bin", "group": "line-3", "type": "eventually"}))
        .await
        .error(422, "invalid_request");
    assert!(detail.contains("forced, soft, download_only"), "{detail}");

    let r = assign(json!({"target": "fw-1.0.0.bin", "group": "line-3", "type": "soft"})).await;
    assert_eq!(r.status, 201, "{r:?}");
    let assignment = r.json();
    let id = assignment["id"].as_str().unwrap().to_owned();
    assert_eq!(assignment["device_count"], 2);
    assert_eq!(assignment["update_type"], "soft", "{assignment}");
    let stored = ops
        .fx
        .db
        .device_assignment("dev-a1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stored.target.as_str(),
            stored.version,
            stored.update_type.as_str()
        ),
        ("fw-1.0.0.bin", 1, "soft")
    );

    // Reports feed the assignment's status and the device's patch status.
    let mut dev = ops.server.connect(&ops.fx.device("dev-a1")).await;
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": "r1", "status": "installed", "assignment": id}),
        )
        .await;
    assert_eq!(r.status, 201);
    let r = ops
        .call(
            &ops.viewer,
            "GET",
            &format!("/api/v1/assignments/{id}"),
            None,
        )
        .await
        .json();
    assert_eq!(r["devices_by_last_status"], json!({"installed": 1}));
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/devices/dev-a1", None)
        .await
        .json();
    assert_eq!(r["update_status"], "up_to_date");
    assert_eq!(r["assignment"]["target"], "fw-1.0.0.bin");
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/devices/dev-a2", None)
        .await
        .json();
    assert_eq!(r["update_status"], "pending");
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/reports?device=dev-a1", None)
        .await
        .json();
    assert_eq!(r["reports"][0]["status"], "installed");
    ops.call(&ops.viewer, "GET", "/api/v1/reports?device=ghost", None)
        .await
        .error(404, "unknown_device");

    // Cancelling raises each device's director version and clears its target.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/assignments/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(r.json()["devices_cancelled"], 2);
    let stored = ops
        .fx
        .db
        .device_assignment("dev-a1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.target.as_str(), stored.version), ("", 2));
    let listed = ops
        .call(&ops.viewer, "GET", "/api/v1/assignments", None)
        .await
        .json();
    assert_eq!(listed["assignments"].as_array().unwrap().len(), 1);

    let actions: Vec<String> = ops
        .audit_records()
        .await
        .into_iter()
        .map(|r| r.action)
        .collect();
    for expected in [
        "device.enrolled",
        "group.created",
        "group.members_changed",
        "assignment.created",
        "assignment.cancelled",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}"
        );
    }
    // Refused changes leave no record.
    assert_eq!(
        actions
            .iter()
            .filter(|a| *a == "assignment.created")
            .count(),
        1
    );
    ops.server.stop().await;
}

async fn revocation_and_security_events_are_audited(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-1", "board-a", &[]).await;
    let device_tls = ops.fx.device("dev-1");

    // A connection without a client certificate is refused and summarised in the audit log.
    let anonymous = rampart_pki::client_config_without_identity(ops.fx.ca.cert_pem()).unwrap();
    let mut conn = ops.server.connect(&anonymous).await;
    assert!(
        conn.send("POST", "/device/v1/poll", &[], b"{}")
            .await
            .is_err()
    );

    // A device reporting a failed verification is a security event.
    let mut dev = ops.server.connect(&device_tls).await;
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": "v1", "status": "verification_failed", "details": {"reason": "director and image repository disagree"}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    // A device repeating failures within the interval cannot flood the audit log: its reports
    // are stored, the next record counts them. A retry of a stored report is not re-audited.
    for id in ["v2", "v3"] {
        let r = dev
            .post(
                "/device/v1/reports",
                &json!({"id": id, "status": "verification_failed", "details": {"reason": "x".repeat(10_000)}}),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": "v1", "status": "verification_failed", "details": {"reason": "director and image repository disagree"}}),
        )
        .await;
    assert_eq!((r.status, &r.json()["duplicate"]), (200, &json!(true)));
    assert_eq!(ops.fx.db.reports_of("dev-1").await.unwrap().len(), 3);

    // Operators may revoke, only admins reinstate; a revoked device is refused.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/dev-1/revoke",
            Some(&json!({"reason": "stolen"})),
        )
        .await;
    assert_eq!(r.json()["revoked"], true);
    let mut dev = ops.server.connect(&device_tls).await;
    dev.post("/device/v1/poll", &json!({}))
        .await
        .error(403, "device_revoked");
    ops.call(
        &ops.operator,
        "POST",
        "/api/v1/devices/dev-1/reinstate",
        None,
    )
    .await
    .error(403, "forbidden");
    ops.call(&ops.operator, "POST", "/api/v1/devices/ghost/revoke", None)
        .await
        .error(404, "unknown_device");
    let r = ops
        .call(&ops.admin, "POST", "/api/v1/devices/dev-1/reinstate", None)
        .await;
    assert_eq!(r.json()["revoked"], false);
    assert_eq!(dev.post("/device/v1/poll", &json!({})).await.status, 200);

    wait_until("the refusal summary is recorded", || async {
        ops.audit_records()
            .await
            .iter()
            .any(|r| r.action == "certificate.refused")
    })
    .await;
    let records = ops.audit_records().await;
    let find = |action: &str| {
        records
            .iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("{action} recorded"))
    };
    assert_eq!(find("device.enrolled").subject, "dev-1");
    assert_eq!(find("device.verification_failed").actor, "device:dev-1");
    let failures: Vec<_> = records
        .iter()
        .filter(|r| r.action == "device.verification_failed")
        .collect();
    assert_eq!(failures.len(), 1, "one record per device per interval");
    assert_eq!(
        failures[0].details["reason"],
        "director and image repository disagree"
    );
    assert_eq!(failures[0].details["report"], "v1");
    let revoked = find("device.revoked");
    assert_eq!(revoked.details["reason"], "stolen");
    assert!(revoked.actor.starts_with("token:"));
    assert_eq!(find("device.reinstated").subject, "dev-1");
    let refused = find("certificate.refused");
    assert_eq!(refused.details["count"], 1);
    assert!(
        refused.details["reason"]
            .as_str()
            .unwrap()
            .starts_with("tls:")
    );

    // CSV and JSON exports carry the same records.
    let csv = ops
        .call(&ops.auditor, "GET", "/api/v1/audit?format=csv", None)
        .await;
    assert_eq!(csv.header("content-type"), Some("text/csv"));
    assert_eq!(
        String::from_utf8(csv.body).unwrap().lines().count(),
        records.len() + 1
    );
    let json = ops
        .call(&ops.auditor, "GET", "/api/v1/audit?format=json", None)
        .await
        .json();
    assert_eq!(json.as_array().unwrap().len(), records.len());
    ops.server.stop().await;
}

async fn management_bad_input_gets_json_errors(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let auth = format!("Bearer {}", ops.admin);
    let mut conn = ops.conn().await;
    let mut send = async |method: &str, path: &str, body: &[u8]| {
        conn.send(method, path, &[("Authorization", &auth)], body)
            .await
            .unwrap()
    };
    send("POST", "/api/v1/groups", b"{\"name\": ")
        .await
        .error(400, "malformed_json");
    send("POST", "/api/v1/groups", b"")
        .await
        .error(400, "malformed_json");
    send(
        "POST",
        "/api/v1/groups",
        br#"{"name": "x", "colour": "red"}"#,
    )
    .await
    .error(422, "invalid_request");
    send("POST", "/api/v1/groups", br#"{"name": "../etc"}"#)
        .await
        .error(422, "invalid_request");
    let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    send("POST", "/api/v1/groups", big.as_bytes())
        .await
        .error(413, "payload_too_large");
    send("GET", "/api/v1/devices?limit=abc", b"")
        .await
        .error(422, "invalid_request");
    // Out-of-range pages are said, not rounded silently.
    for query in ["limit=0", "limit=-1", "limit=1001", "offset=-1"] {
        let detail = send("GET", &format!("/api/v1/devices?{query}"), b"")
            .await
            .error(422, "invalid_request");
        assert!(
            detail.contains("limit") || detail.contains("offset"),
            "{detail}"
        );
    }
    send("GET", "/api/v1/devices?attribute=novalue", b"")
        .await
        .error(422, "invalid_request");
    send("GET", "/api/v1/audit?format=xml", b"")
        .await
        .error(422, "invalid_request");
    send("GET", "/api/v1/nothing", b"")
        .await
        .error(404, "not_found");
    send("PUT", "/api/v1/devices", b"")
        .await
        .error(405, "method_not_allowed");
    // A path the framework cannot decode is answered in the API's error format too.
    let detail = send("GET", "/api/v1/devices/%FF%FE", b"")
        .await
        .error(400, "invalid_request");
    assert!(!detail.is_empty());
    send("GET", "/api/v1/devices/ghost", b"")
        .await
        .error(404, "unknown_device");
    send("GET", "/api/v1/assignments/ghost", b"")
        .await
        .error(404, "unknown_assignment");
    send("POST", "/api/v1/assignments/ghost/cancel", b"")
        .await
        .error(404, "unknown_assignment");
    send("DELETE", "/api/v1/groups/ghost", b"")
        .await
        .error(404, "unknown_group");
    send(
        "POST",
        "/api/v1/assignments",
        br#"{"target": "fw-1.0.0.bin", "devices": ["ghost"]}"#,
    )
    .await
    .error(404, "unknown_device");
    // Nothing half-written: none of the refused requests left a group, assignment or record.
    assert!(ops.fx.db.list_groups().await.unwrap().is_empty());
    assert!(ops.fx.db.list_assignments(10).await.unwrap().is_empty());
    let actions: Vec<String> = ops
        .audit_records()
        .await
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert!(actions.iter().all(|a| a == "token.created"), "{actions:?}");
    ops.server.stop().await;
}

async fn every_documented_route_exists(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let served = ops
        .call(&ops.viewer, "GET", "/api/v1/openapi.json", None)
        .await;
    assert_eq!(served.status, 200);
    assert_eq!(served.body, OPENAPI_JSON.as_bytes());
    let doc: Value = serde_json::from_str(OPENAPI_JSON).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let device_tls = ops.fx.device("dev-doc");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{file}", "x")
                .replace("{path}", "x")
                .replace("{tenant}", "DEFAULT")
                .replace("{controllerId}", "x")
                .replace("{actionId}", "1")
                .replace("{moduleId}", "1")
                .replace("{fileName}", "x");
            let r = if path.starts_with("/{tenant}/") {
                // The DDI listener: unauthenticated requests to routed paths get 401.
                let mut ddi = Conn::new(
                    tls_connect(ops.server.ddi_addr.unwrap(), &ops.operator_tls)
                        .await
                        .unwrap(),
                );
                let r = ddi
                    .send(&method.to_uppercase(), &concrete, &[], b"")
                    .await
                    .unwrap();
                let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                assert!(
                    body["errorCode"] != "rampart.not_found" && r.status != 405,
                    "{method} {path} is documented but not served: {r:?}"
                );
                checked += 1;
                continue;
            } else if path.starts_with("/device/") {
                let mut dev = ops.server.connect(&device_tls).await;
                dev.send(&method.to_uppercase(), &concrete, &[], b"")
                    .await
                    .unwrap()
            } else {
                ops.call(&ops.admin, &method.to_uppercase(), &concrete, None)
                    .await
            };
            // The fallbacks answer 404 "not_found" / 405: a documented route must be routed.
            let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
            assert!(
                !(r.status == 404 && body["error"] == "not_found") && r.status != 405,
                "{method} {path} is documented but not served: {r:?}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
    ops.server.stop().await;
}

async fn idle_management_connections_are_closed(backend: Backend, name: &str) {
    let ops = Ops::start_with(backend, name, |config| {
        config.idle_timeout = Duration::from_millis(500);
    })
    .await;
    // A client that completes the handshake and then sends nothing holds no connection for long.
    let mut idle = ops.conn().await;
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(10), idle.read_response()).await;
    assert!(
        matches!(answer, Ok(Err(_))),
        "the idle connection was not closed: {answer:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // Working connections are unaffected.
    let r = ops.call(&ops.viewer, "GET", "/api/v1/devices", None).await;
    assert_eq!(r.status, 200);
    ops.server.stop().await;
}
