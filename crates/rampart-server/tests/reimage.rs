//! Forced re-imaging (issue 16) through the real server: the operator route, the native poll
//! answer (`reimage: true`, forced, through a closed maintenance window), and the executor of
//! incident `reimage` actions (the release chosen from the last passing quote, finished when the
//! device reports, failed closed when no known-good release exists).

mod common;

use common::ops::Ops;
use common::*;
use rampart_db::{
    CheckResult, Incident, IncidentDevice, IncidentTarget, IncidentWrite, PlannedAction,
    QuoteCounters, TimelineEntry,
};
use serde_json::{Value, json};

on_both_backends!(
    a_reimage_is_sent_with_reimage_true_and_no_maintenance_window_holds_it_back,
    reimage_requests_are_refused_clearly_and_change_nothing,
    a_quarantined_device_gets_its_reimage_and_nothing_else,
    the_reimage_executor_uses_the_last_attested_release_and_finishes_when_the_device_reports,
);

const FIRMWARE: &str = "fw-1.0.0.bin";

/// A poll answer of `device` (registered with board-a facts).
async fn poll(ops: &Ops, device: &str) -> Value {
    let mut dev = ops.server.connect(&ops.fx.device(device)).await;
    let r = dev
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": "board-a", "firmware_version": "1.0.0", "security_version": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

async fn reimage(ops: &Ops, token: &str, device: &str, body: Option<Value>) -> Response {
    ops.call(
        token,
        "POST",
        &format!("/api/v1/devices/{device}/reimage"),
        body.as_ref(),
    )
    .await
}

async fn a_reimage_is_sent_with_reimage_true_and_no_maintenance_window_holds_it_back(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-r", "board-a", &[]).await;
    ops.closed_window_group("night-only", &["dev-r"]).await;
    // The device claims to run the release already: a re-image is sent anyway.
    let r = reimage(
        &ops,
        &ops.operator,
        "dev-r",
        Some(json!({"release": FIRMWARE})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let body = r.json();
    assert_eq!(body["assignment"]["reimage"], true);
    assert_eq!(body["assignment"]["update_type"], "forced");
    assert_eq!(body["release_chosen"], "requested");
    let answer = poll(&ops, "dev-r").await;
    let assignment = &answer["assignment"];
    assert_eq!(assignment["reimage"], true, "{answer}");
    assert_eq!(assignment["type"], "forced", "{answer}");
    assert_eq!(assignment["target"], FIRMWARE);
    assert_eq!(assignment["id"], body["assignment"]["id"]);
    // Recorded with its audit record.
    let records = ops.audit_records().await;
    let record = records
        .iter()
        .find(|r| r.action == "assignment.reimage")
        .expect("an assignment.reimage audit record");
    assert_eq!(record.details["device"], "dev-r");
    assert_eq!(record.details["target"], FIRMWARE);
    // An ordinary assignment replacing it is no re-image.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": "fw-2.0.0.bin", "devices": ["dev-r"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let answer = poll(&ops, "dev-r").await;
    assert!(answer["assignment"].get("reimage").is_none(), "{answer}");
}

async fn a_quarantined_device_gets_its_reimage_and_nothing_else(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-x", "board-a", &[]).await;
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/devices/dev-x/quarantine",
            Some(&json!({"reason": "tampered slot"})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let r = reimage(
        &ops,
        &ops.operator,
        "dev-x",
        Some(json!({"release": FIRMWARE})),
    )
    .await;
    assert_eq!(r.status, 201, "{r:?}");
    let answer = poll(&ops, "dev-x").await;
    assert_eq!(answer["assignment"]["reimage"], true, "{answer}");
    // Anything else assigned while it is quarantined is refused, and never sent.
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/assignments",
            Some(&json!({"target": "fw-2.0.0.bin", "devices": ["dev-x"]})),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(poll(&ops, "dev-x").await["assignment"]["reimage"], true);
}

async fn reimage_requests_are_refused_clearly_and_change_nothing(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-q", "board-a", &[]).await;
    let release = Some(json!({"release": FIRMWARE}));
    // A viewer may not re-image.
    let r = reimage(&ops, &ops.viewer, "dev-q", release.clone()).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = reimage(&ops, &ops.operator, "nobody", release.clone()).await;
    assert_eq!(r.status, 404, "{r:?}");
    // No release named and no quote ever passed: nothing is guessed.
    let r = reimage(&ops, &ops.operator, "dev-q", None).await;
    assert_eq!(r.status, 422, "{r:?}");
    let message = r.json()["detail"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("--release"), "{message}");
    for (body, why) in [
        (json!({"release": "no-such.bin"}), "no release"),
        (json!({"release": "fw-other.bin"}), "built for"),
    ] {
        let r = reimage(&ops, &ops.operator, "dev-q", Some(body)).await;
        assert_eq!(r.status, 422, "{r:?}");
        assert!(r.json()["detail"].as_str().unwrap().contains(why), "{r:?}");
    }
    for bad in [json!({"release": ""}), json!({"release": FIRMWARE, "x": 1})] {
        let r = reimage(&ops, &ops.operator, "dev-q", Some(bad)).await;
        assert!(matches!(r.status, 400 | 422), "{r:?}");
        assert!(!r.json()["detail"].as_str().unwrap().is_empty());
    }
    let answer = poll(&ops, "dev-q").await;
    assert!(answer["assignment"].is_null(), "{answer}");
    assert!(
        !ops.audit_records()
            .await
            .iter()
            .any(|r| r.action == "assignment.reimage")
    );
}

/// Opens an incident for `device` with an approved `reimage` action of `detail`.
async fn incident_with_reimage(ops: &Ops, id: &str, device: &str, detail: Value) {
    let now = unix_now();
    let write = IncidentWrite {
        target: IncidentTarget::Open(Box::new(Incident {
            id: id.into(),
            open_cause: Some(format!("operator:{id}")),
            cause: format!("operator:{id}"),
            detector: "operator".into(),
            severity: "high".into(),
            state: "detected".into(),
            title: "suspect image".into(),
            detail: json!({}),
            release: String::new(),
            opened_by: "token:test".into(),
            first_signal_at: now,
            detected_at: now,
            acknowledged_at: None,
            acknowledged_by: None,
            contained_at: None,
            eradicated_at: None,
            recovered_at: None,
            closed_at: None,
            updated_at: now,
        })),
        devices: vec![IncidentDevice {
            device_id: device.into(),
            joined_at: now,
            first_signal_at: now,
            reason: "test".into(),
        }],
        actions: vec![PlannedAction {
            id: format!("act-{id}"),
            action: "reimage".into(),
            device_id: device.into(),
            required_role: String::new(),
            detail,
        }],
        at: now,
    };
    let audit = rampart_server::audit::AuditWriter::new(ops.fx.db.clone());
    audit
        .write(
            now,
            "token:test",
            "incident.opened",
            id,
            json!({}),
            |line| {
                let (db, write) = (ops.fx.db.clone(), write.clone());
                let entry = TimelineEntry {
                    audit_seq: line.seq,
                    incident_id: id.into(),
                    at: now,
                    kind: "opened".into(),
                    actor: "token:test".into(),
                    device_id: device.into(),
                    detail: json!({}),
                };
                async move { db.write_incident(&write, &entry, &line).await }
            },
        )
        .await
        .unwrap();
}

async fn action_state(ops: &Ops, id: &str) -> (String, Value) {
    let a = ops.fx.db.incident_action(id).await.unwrap().unwrap();
    (a.state, a.detail)
}

async fn the_reimage_executor_uses_the_last_attested_release_and_finishes_when_the_device_reports(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    ops.device("dev-g", "board-a", &[]).await;
    ops.device("dev-n", "board-a", &[]).await;
    // dev-g's last passing quote proved fw-2.0.0.bin; a failed quote since keeps that release.
    let counters = QuoteCounters {
        reset_count: 1,
        restart_count: 0,
        clock: 10,
    };
    let db = &ops.fx.db;
    let passed = CheckResult::Passed {
        release: "fw-2.0.0.bin".into(),
        counters,
    };
    db.record_attestation("dev-g", unix_now(), &passed, None, None)
        .await
        .unwrap();
    let failed = CheckResult::Failed {
        reason: "PCR 4 differs".into(),
    };
    db.record_attestation("dev-g", unix_now(), &failed, None, None)
        .await
        .unwrap();
    incident_with_reimage(&ops, "inc-g", "dev-g", json!({})).await;
    // dev-n never attested and the action names no release: the action fails, saying why.
    incident_with_reimage(&ops, "inc-n", "dev-n", json!({})).await;

    wait_until("the re-image of dev-g is assigned", || async {
        poll(&ops, "dev-g").await["assignment"]["reimage"] == true
    })
    .await;
    let answer = poll(&ops, "dev-g").await;
    assert_eq!(answer["assignment"]["target"], "fw-2.0.0.bin");
    assert_eq!(answer["assignment"]["id"], "rei-act-inc-g");
    wait_until("the action without a known-good release fails", || async {
        action_state(&ops, "act-inc-n").await.0 == "failed"
    })
    .await;
    let (_, outcome) = action_state(&ops, "act-inc-n").await;
    assert!(
        outcome["error"].as_str().unwrap().contains("attested-good"),
        "{outcome}"
    );
    assert!(poll(&ops, "dev-n").await["assignment"].is_null());
    // Assigned, not done: the device has not re-imaged yet.
    assert_eq!(action_state(&ops, "act-inc-g").await.0, "running");

    // The device reports the re-image installed in both slots: the action is done.
    let mut dev = ops.server.connect(&ops.fx.device("dev-g")).await;
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": "r-1", "assignment": "rei-act-inc-g", "status": "installed",
                    "details": {"reimaged": ["a", "b"], "sha256": {"a": "ab", "b": "ab"}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    wait_until("the re-image action is done", || async {
        action_state(&ops, "act-inc-g").await.0 == "done"
    })
    .await;
    let (_, outcome) = action_state(&ops, "act-inc-g").await;
    assert_eq!(outcome["reimaged"], json!(["a", "b"]));
    assert_eq!(outcome["release"], "fw-2.0.0.bin");
    let timeline = db.incident_timeline("inc-g").await.unwrap();
    assert!(
        timeline.iter().any(|e| e.kind == "reimage_done"),
        "{timeline:?}"
    );
    let timeline = db.incident_timeline("inc-n").await.unwrap();
    assert!(timeline.iter().any(|e| e.kind == "reimage_failed"));
}
