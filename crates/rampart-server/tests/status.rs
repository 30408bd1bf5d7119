//! `GET /api/v1/status` (the server's version, database, engines' heartbeats and metadata
//! expiry) and `GET /api/v1/devices?status=`, over real TLS, on SQLite and PostgreSQL.

mod common;

use common::ops::Ops;
use common::*;
use serde_json::{Value, json};

on_both_backends!(
    status_shows_engines_database_and_metadata_expiry,
    devices_are_listed_by_revocation_status,
);

async fn status(ops: &Ops, token: &str, query: &str) -> Value {
    let r = ops
        .call(token, "GET", &format!("/api/v1/status{query}"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

async fn status_shows_engines_database_and_metadata_expiry(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let body = status(&ops, &ops.viewer, "").await;
    assert_eq!(body["server"]["version"], env!("CARGO_PKG_VERSION"));
    let expected_backend = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgresql",
    };
    assert_eq!(body["database"]["backend"], expected_backend);
    let engines: Vec<String> = body["engines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["engine"].as_str().unwrap().to_owned())
        .collect();
    for engine in ["campaigns", "detectors", "webhooks", "renewal", "last_seen"] {
        assert!(engines.iter().any(|e| e == engine), "{engine}: {engines:?}");
    }
    // Every engine beats and its beat is written within seconds: all of them `ok`, each with
    // its last beat and bound.
    wait_until("every engine's beat is stored", || async {
        let body = status(&ops, &ops.viewer, "").await;
        body["engines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["state"] == "ok")
    })
    .await;
    let body = status(&ops, &ops.viewer, "").await;
    for e in body["engines"].as_array().unwrap() {
        assert!(e["last_beat"].as_i64().unwrap() >= body["server"]["started_at"].as_i64().unwrap());
        assert!(e["bound_secs"].as_i64().unwrap() > 0, "{e}");
    }
    // The hosted repository's roles, freshly signed: valid, nothing to warn about.
    let roles: Vec<(String, String)> = body["metadata"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["role"].as_str().unwrap().to_owned(),
                r["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for role in ["root", "timestamp", "snapshot", "targets"] {
        assert!(
            roles.contains(&(role.to_owned(), "valid".to_owned())),
            "{role}: {roles:?}"
        );
    }
    assert_eq!(body["metadata"]["repository"], true);
    assert_eq!(body["healthy"], true, "{body}");
    assert_eq!(body["warnings"], json!([]));

    // Asked to warn ten years ahead, the offline roles (root, targets) are expiring; the
    // online ones are judged by their renewal, not by the distance.
    let body = status(&ops, &ops.viewer, "?warn_days=3650").await;
    assert_eq!(body["metadata"]["warn_days"], 3650);
    let state = |role: &str| {
        body["metadata"]["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == role)
            .unwrap()["state"]
            .clone()
    };
    assert_eq!(state("root"), "expiring");
    assert_eq!(state("targets"), "expiring");
    assert_eq!(state("timestamp"), "valid");
    assert_eq!(body["healthy"], false);
    let warnings = body["warnings"].to_string();
    assert!(
        warnings.contains("root metadata version 1 expires in") && warnings.contains("rotate-root"),
        "{warnings}"
    );

    // Bounded, checked input; a token is needed.
    ops.call(&ops.viewer, "GET", "/api/v1/status?warn_days=3651", None)
        .await
        .error(422, "invalid_request");
    ops.call(&ops.viewer, "GET", "/api/v1/status?verbose=1", None)
        .await
        .error(422, "invalid_request");
    ops.call(&ops.viewer, "GET", "/api/v1/status?warn_days=-1", None)
        .await
        .error(422, "invalid_request");
    ops.call("rampart_0000_guess", "GET", "/api/v1/status", None)
        .await
        .error(401, "unauthorized");
    ops.server.stop().await;
}

async fn devices_are_listed_by_revocation_status(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    for id in ["dev-a", "dev-b", "dev-c"] {
        ops.device(id, "board-a", &[]).await;
    }
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/devices/dev-b/revoke", None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let ids = async |query: &str| -> Vec<String> {
        let r = ops
            .call(&ops.viewer, "GET", &format!("/api/v1/devices{query}"), None)
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
        r.json()["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("?status=revoked").await, ["dev-b"]);
    assert_eq!(ids("?status=active").await, ["dev-a", "dev-c"]);
    assert_eq!(ids("?status=active&limit=1&offset=1").await, ["dev-c"]);
    assert_eq!(ids("").await, ["dev-a", "dev-b", "dev-c"]);
    let detail = ops
        .call(&ops.viewer, "GET", "/api/v1/devices?status=gone", None)
        .await
        .error(422, "invalid_request");
    assert!(detail.contains("active or revoked"), "{detail}");
    ops.server.stop().await;
}
