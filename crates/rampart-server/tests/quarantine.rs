//! Quarantine (issue 16, decision 0031) on the native device API, the operator routes and the
//! quarantine executor, against embedded SQLite and PostgreSQL (PostgreSQL from
//! RAMPART_TEST_POSTGRES_URL; these tests fail without it). The DDI side is in tests/ddi.rs, the
//! campaign side in tests/campaigns.rs.

mod common;

use std::time::Duration;

use common::delivery::{FIRMWARE, Fixture};
use common::ops::Ops;
use common::{Backend, unix_now};
use rampart_core::metadata::{Metadata, Root};
use rampart_db::{AuditLine, NewQuarantine};
use rampart_protocol::{QuarantineState, SignedQuarantine};
use serde_json::{Value, json};

on_both_backends!(
    a_quarantined_device_gets_no_assignment_natively,
    only_an_operator_releases_a_device,
    an_executor_error_leaves_the_device_quarantined_never_free,
    a_quarantined_device_may_still_be_reimaged_and_nothing_else,
);

/// The next audit line of the fixture's chain, for a change the test writes itself.
async fn audit_line(fx: &Fixture, action: &str, subject: &str) -> AuditLine {
    let last = fx.db.last_audit().await.unwrap().map(|l| {
        rampart_audit::parse_jsonl(l.line.as_bytes())
            .unwrap()
            .remove(0)
    });
    let mut chain = rampart_audit::AuditChain::resume(last.as_ref()).unwrap();
    let record = chain
        .append(unix_now(), "token:test", action, subject, json!({}))
        .unwrap();
    AuditLine {
        seq: record.seq,
        line: rampart_audit::to_json_line(&record),
    }
}

/// A quarantined device is told of no assignment and gets the signed instruction (which
/// verifies against the director root the device trusts, and names it); director targets
/// metadata, the image repository and attribute updates answer 403 `quarantined`, while the
/// director root stays readable; its acknowledgement is stored, and changes no quarantine.
async fn a_quarantined_device_gets_no_assignment_natively(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(|_| {}).await;
    let device = fx.device("dev-q").await;
    fx.assign("asg-1", FIRMWARE, &[&device]).await;
    let mut conn = server.connect(&device).await;
    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.json()["assignment"]["target"], FIRMWARE, "{r:?}");
    assert!(r.json().get("quarantine").is_none_or(Value::is_null));

    let since = unix_now();
    let line = audit_line(&fx, "device.quarantined", "dev-q").await;
    let (_, newly) = fx
        .db
        .quarantine_device(
            &NewQuarantine {
                device_id: "dev-q".into(),
                incident_id: String::new(),
                actor: "token:test".into(),
                reason: "forged report".into(),
                since,
            },
            &line,
        )
        .await
        .unwrap();
    assert!(newly);

    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.status, 200, "{r:?}");
    let answer = r.json();
    assert!(answer["assignment"].is_null(), "{answer}");
    let signed: SignedQuarantine = serde_json::from_value(answer["quarantine"].clone()).unwrap();
    let root = std::fs::read(fx.director_dir.join("root.json")).unwrap();
    let root = Metadata::<Root>::from_bytes("director root", &root).unwrap();
    let statement =
        rampart_incident::instruction::verify(&signed, &root, "dev-q", unix_now()).unwrap();
    assert_eq!(
        (statement.state, statement.issued),
        (QuarantineState::Quarantined, since)
    );
    assert!(
        rampart_incident::instruction::verify(&signed, &root, "dev-other", unix_now()).is_err()
    );

    for path in [
        "/device/v1/director/targets.json",
        "/device/v1/repo/metadata/timestamp.json",
    ] {
        let r = conn.get(path, &[]).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "quarantined", "{path}");
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("rampart device release dev-q")
        );
    }
    let r = conn
        .put(
            "/device/v1/attributes",
            &json!({"mode": "merge", "data": {"k": "v"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = conn.get("/device/v1/director/root.json", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");

    // The acknowledgement of the statement it holds is stored; an invented one is refused.
    let ack = |issued: i64, state: &str| json!({"incident": "", "state": state, "issued": issued, "hook": "succeeded", "detail": "network locked down"});
    let r = conn
        .post("/device/v1/quarantine/ack", &ack(since + 7, "quarantined"))
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let r = conn
        .post("/device/v1/quarantine/ack", &ack(since, "quarantined"))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let stored = fx.db.quarantine("dev-q").await.unwrap().unwrap();
    assert_eq!(
        (stored.ack_issued, stored.ack_hook.as_deref()),
        (Some(since), Some("succeeded"))
    );
    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert!(r.json()["assignment"].is_null());
    server.stop().await;
}

/// Only the operator API ends a quarantine: a viewer token is refused, a device acknowledging
/// a `released` statement it was never sent is refused and frees nothing, and the executor
/// has no release path. The operator's release is audited; the device's next poll carries its
/// assignment again, and a second release is a conflict.
async fn only_an_operator_releases_a_device(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-r", "board-a", &[]).await;
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": "fw-1.0.0.bin", "devices": ["dev-r"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/dev-r/quarantine",
            Some(&json!({"reason": "attestation failed"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let since = r.json()["quarantine"]["since"].as_i64().unwrap();
    // Idempotent.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/dev-r/quarantine",
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    let r = ops
        .call(&ops.viewer, "POST", "/api/v1/devices/dev-r/release", None)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let mut dev = ops.server.connect(&ops.fx.device("dev-r")).await;
    for issued in [since, since + 1, unix_now()] {
        let r = dev
            .post(
                "/device/v1/quarantine/ack",
                &json!({"incident": "", "state": "released", "issued": issued, "hook": "succeeded"}),
            )
            .await;
        assert_eq!(r.status, 409, "{r:?}");
    }
    assert!(ops.fx.db.is_quarantined("dev-r").await.unwrap());
    let r = dev.post("/device/v1/poll", &json!({})).await;
    assert!(r.json()["assignment"].is_null(), "{r:?}");

    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/dev-r/release",
            Some(&json!({"reason": "re-imaged"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!ops.fx.db.is_quarantined("dev-r").await.unwrap());
    let released = ops
        .fx
        .db
        .quarantine_release("dev-r")
        .await
        .unwrap()
        .unwrap();
    assert!(released.issued > since);
    let r = dev.post("/device/v1/poll", &json!({})).await;
    assert_eq!(r.json()["assignment"]["target"], "fw-1.0.0.bin", "{r:?}");
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/devices/dev-r/release", None)
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let actions: Vec<String> = ops
        .audit_records()
        .await
        .iter()
        .map(|r| r.action.clone())
        .filter(|a| a.starts_with("device.quar") || a == "device.released")
        .collect();
    assert_eq!(actions, ["device.quarantined", "device.released"]);
}

/// Runs raw SQL on the test's database (the incident engine that opens incidents and queues
/// their actions is another module's).
async fn sql(url: &str, statements: &[String]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s.clone()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

async fn action_state(url: &str, id: &str) -> (String, String) {
    use sqlx::Row;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let row = sqlx::query("SELECT state, detail FROM incident_actions WHERE id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let out = (row.get("state"), row.get("detail"));
    pool.close().await;
    out
}

async fn timeline_kinds(url: &str, incident: &str) -> Vec<String> {
    use sqlx::Row;
    let pool = sqlx::AnyPool::connect(url).await.unwrap();
    let rows =
        sqlx::query("SELECT kind FROM incident_timeline WHERE incident_id = $1 ORDER BY audit_seq")
            .bind(incident)
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.iter().map(|r| r.get("kind")).collect()
}

/// The executor quarantines first: a `revoke_certificate` action whose revocation fails (the
/// device has not made first contact, so there is no inventory row to revoke) finishes
/// `failed`, with a timeline entry, and leaves the device quarantined, so it is refused its
/// assignment from its first poll. A `quarantine` action for a registered device finishes
/// `done` with the incident's `quarantined` entry.
async fn an_executor_error_leaves_the_device_quarantined_never_free(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-known", "board-a", &[]).await;
    let url = ops.fx.db_url.clone();
    let now = unix_now();
    sql(
        &url,
        &[
            format!(
                "INSERT INTO incidents (id, open_cause, cause, detector, severity, state, title, opened_by, first_signal_at, detected_at, updated_at)
                 VALUES ('inc-1', 'operator:x', 'operator:x', 'operator', 'high', 'detected', 'test', 'token:test', {now}, {now}, {now})"
            ),
            format!(
                "INSERT INTO incident_actions (id, incident_id, action, device_id, state, requested_at, detail)
                 VALUES ('act-revoke', 'inc-1', 'revoke_certificate', 'dev-unseen', 'approved', {now}, '{{\"reason\": \"stolen key\"}}')"
            ),
            format!(
                "INSERT INTO incident_actions (id, incident_id, action, device_id, state, requested_at)
                 VALUES ('act-quarantine', 'inc-1', 'quarantine', 'dev-known', 'approved', {now})"
            ),
        ],
    )
    .await;
    let mut states = (String::new(), String::new());
    // Waits on the state, with a bound generous for a busy machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        states = (
            action_state(&url, "act-revoke").await.0,
            action_state(&url, "act-quarantine").await.0,
        );
        if states.0 != "approved" && states.0 != "running" && states.1 == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!((states.0.as_str(), states.1.as_str()), ("failed", "done"));
    let (_, detail) = action_state(&url, "act-revoke").await;
    let detail: Value = serde_json::from_str(&detail).unwrap();
    assert_eq!(detail["reason"], "stolen key", "{detail}");
    assert!(
        detail["outcome"]["error"]
            .as_str()
            .unwrap()
            .contains("the device is quarantined"),
        "{detail}"
    );
    assert!(ops.fx.db.is_quarantined("dev-unseen").await.unwrap());
    assert!(ops.fx.db.is_quarantined("dev-known").await.unwrap());
    let kinds = timeline_kinds(&url, "inc-1").await;
    for kind in ["quarantined", "action_failed", "action_done"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
    }
    // Quarantined from its first contact: no assignment even once one exists.
    ops.device("dev-unseen", "board-a", &[]).await;
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": "fw-1.0.0.bin", "devices": ["dev-unseen"]})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    let mut dev = ops.server.connect(&ops.fx.device("dev-unseen")).await;
    let r = dev.post("/device/v1/poll", &json!({})).await;
    assert!(r.json()["assignment"].is_null(), "{r:?}");
}

/// Quarantine limits a device to the quarantine routes, and a forced re-image is one of them:
/// a re-image assignment reaches the quarantined device (flagged `reimage`), with the director
/// targets, image repository metadata and artifact it needs; an ordinary assignment made
/// before the quarantine does not, and none of those routes answer it.
async fn a_quarantined_device_may_still_be_reimaged_and_nothing_else(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let server = fx.start(|_| {}).await;
    let device = fx.device("dev-x").await;
    fx.assign("asg-plain", FIRMWARE, &[&device]).await;
    let line = audit_line(&fx, "device.quarantined", "dev-x").await;
    fx.db
        .quarantine_device(
            &NewQuarantine {
                device_id: "dev-x".into(),
                incident_id: String::new(),
                actor: "token:test".into(),
                reason: "tampered slot".into(),
                since: unix_now(),
            },
            &line,
        )
        .await
        .unwrap();
    let mut conn = server.connect(&device).await;
    let artifact = format!("/device/v1/repo/targets/{}", fx.artifact_path(FIRMWARE));
    let gated = [
        "/device/v1/director/targets.json",
        "/device/v1/repo/metadata/timestamp.json",
        artifact.as_str(),
    ];
    let r = conn.post("/device/v1/poll", &json!({})).await;
    assert!(r.json()["assignment"].is_null(), "{r:?}");
    for path in gated {
        assert_eq!(conn.get(path, &[]).await.status, 403, "{path}");
    }

    fx.assign_kind("asg-reimage", FIRMWARE, &[&device], true)
        .await;
    let r = conn.post("/device/v1/poll", &json!({})).await;
    let answer = r.json();
    assert_eq!(answer["assignment"]["id"], "asg-reimage", "{answer}");
    assert_eq!(answer["assignment"]["reimage"], true, "{answer}");
    assert!(
        answer["quarantine"].is_object(),
        "still quarantined: {answer}"
    );
    for path in gated {
        assert_eq!(conn.get(path, &[]).await.status, 200, "{path}");
    }
    // Attributes stay refused: the re-image opens the install's routes only.
    let r = conn
        .put(
            "/device/v1/attributes",
            &json!({"mode": "merge", "data": {"k": "v"}}),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    server.stop().await;
}
