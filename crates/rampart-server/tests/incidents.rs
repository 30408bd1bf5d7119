//! Incidents (issue 16, docs/decisions/0030) on embedded SQLite and PostgreSQL: recording
//! findings (one open incident per cause, devices join once, the playbook's actions in the
//! outbox), concurrency between servers sharing a database, and the operator API's refusals.

mod common;

use std::sync::Arc;

use common::*;
use rampart_db::Db;
use rampart_incident::finding::Finding;
use rampart_incident::model::{Cause, Detector, Severity};
use rampart_incident::playbook::Playbooks;
use rampart_server::audit::AuditWriter;
use rampart_server::incidents::{IncidentStore, Recorded};
use serde_json::json;

fn finding(detector: Detector, key: &str, device: Option<&str>, severity: Severity) -> Finding {
    Finding {
        cause: Cause {
            detector,
            key: key.into(),
        },
        severity,
        title: format!("{} on {key}", detector.as_str()),
        device_id: device.map(str::to_string),
        release: Some("fw-1.0.0.bin".into()),
        first_signal_at: 1_000,
        detail: json!({"reason": "quote signature does not verify"}),
    }
}

fn store(db: &Db) -> IncidentStore {
    IncidentStore::new(
        db.clone(),
        AuditWriter::new(db.clone()),
        Playbooks::default(),
    )
}

/// (action, device, state, required role) of an incident's actions, sorted.
async fn actions(db: &Db, incident: &str) -> Vec<(String, String, String, String)> {
    let mut v: Vec<_> = db
        .incident_actions(incident)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.action, a.device_id, a.state, a.required_role))
        .collect();
    v.sort();
    v
}

fn row(action: &str, device: &str, state: &str, role: &str) -> (String, String, String, String) {
    (action.into(), device.into(), state.into(), role.into())
}

async fn findings_of_one_cause_open_one_incident_and_each_device_joins_once(
    backend: Backend,
    name: &str,
) {
    let fx = Fixture::new(backend, name).await;
    let store = store(&fx.db);
    let first = store
        .record_finding(&finding(
            Detector::AttestationFailed,
            "board-a",
            Some("dev-1"),
            Severity::High,
        ))
        .await
        .unwrap();
    assert!(first.opened && !first.joined, "{first:?}");
    let second = store
        .record_finding(&finding(
            Detector::AttestationFailed,
            "board-a",
            Some("dev-2"),
            Severity::Critical,
        ))
        .await
        .unwrap();
    assert_eq!(
        second,
        Recorded {
            incident_id: first.incident_id.clone(),
            opened: false,
            joined: true
        }
    );
    // The same device again, and a finding with no device: nothing changes.
    for again in [
        finding(
            Detector::AttestationFailed,
            "board-a",
            Some("dev-1"),
            Severity::High,
        ),
        finding(Detector::AttestationFailed, "board-a", None, Severity::High),
    ] {
        let r = store.record_finding(&again).await.unwrap();
        assert!(!r.opened && !r.joined, "{r:?}");
        assert_eq!(r.incident_id, first.incident_id);
    }
    // Another cause is another incident.
    let other = store
        .record_finding(&finding(
            Detector::AttestationFailed,
            "board-b",
            Some("dev-1"),
            Severity::High,
        ))
        .await
        .unwrap();
    assert!(other.opened && other.incident_id != first.incident_id);

    let incident = fx.db.incident(&first.incident_id).await.unwrap().unwrap();
    assert_eq!(incident.state, "detected");
    assert_eq!(
        incident.severity, "critical",
        "a joining finding raises the severity"
    );
    assert_eq!(
        incident.open_cause.as_deref(),
        Some("attestation_failed:board-a")
    );
    assert_eq!(incident.first_signal_at, 1_000);
    let devices: Vec<_> = fx
        .db
        .incident_devices(&first.incident_id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.device_id)
        .collect();
    assert_eq!(devices.len(), 2);
    assert!(devices.contains(&"dev-1".into()) && devices.contains(&"dev-2".into()));

    // The built-in playbook: quarantine, evidence at once per device; re-image held for an
    // operator; one alert for the whole incident.
    assert_eq!(
        actions(&fx.db, &first.incident_id).await,
        vec![
            row("alert", "", "approved", ""),
            row("collect_evidence", "dev-1", "approved", ""),
            row("collect_evidence", "dev-2", "approved", ""),
            row("quarantine", "dev-1", "approved", ""),
            row("quarantine", "dev-2", "approved", ""),
            row("reimage", "dev-1", "pending_approval", "operator"),
            row("reimage", "dev-2", "pending_approval", "operator"),
        ]
    );

    // Every change is a timeline entry and an audit record with the same sequence number.
    let timeline = fx.db.incident_timeline(&first.incident_id).await.unwrap();
    let kinds: Vec<_> = timeline.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["opened", "device_joined"]);
    assert_eq!(timeline[1].device_id, "dev-2");
    assert_eq!(timeline[0].actor, "detector:attestation_failed");
    for entry in &timeline {
        let line = fx.db.audit_lines(entry.audit_seq, 1).await.unwrap();
        assert_eq!(line[0].seq, entry.audit_seq);
        assert!(line[0].line.contains("incident.") && line[0].line.contains(&first.incident_id));
    }
}

/// Two servers (each its own pool and audit writer) on one database record findings of one
/// cause at the same moment: one incident, every device in it once. Fails if the open
/// incident's unique cause or the retry as a join is removed.
async fn two_servers_recording_one_cause_at_once_make_one_incident(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let second_db = Db::connect(&fx.db_url).await.unwrap();
    let stores = [Arc::new(store(&fx.db)), Arc::new(store(&second_db))];
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            let device = format!("dev-{i}");
            store
                .record_finding(&finding(
                    Detector::VerificationFailed,
                    "fw-9.9.9.bin",
                    Some(&device),
                    Severity::High,
                ))
                .await
                .unwrap()
        }));
    }
    let mut recorded = Vec::new();
    for t in tasks {
        recorded.push(t.await.unwrap());
    }
    assert_eq!(
        recorded.iter().filter(|r| r.opened).count(),
        1,
        "{recorded:?}"
    );
    assert_eq!(
        recorded.iter().filter(|r| r.joined).count(),
        15,
        "{recorded:?}"
    );
    let ids: std::collections::BTreeSet<_> = recorded.iter().map(|r| &r.incident_id).collect();
    assert_eq!(ids.len(), 1);
    let incident = recorded[0].incident_id.clone();
    assert_eq!(fx.db.incident_devices(&incident).await.unwrap().len(), 16);
    let alerts = actions(&fx.db, &incident)
        .await
        .into_iter()
        .filter(|a| a.0 == "alert")
        .count();
    assert_eq!(alerts, 1, "one alert per incident");
    assert_eq!(fx.db.incident_timeline(&incident).await.unwrap().len(), 16);
}

/// A finding with a device id too long or a control character in its title is refused
/// before anything is stored.
async fn an_unbounded_finding_is_refused_and_nothing_is_stored(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let store = store(&fx.db);
    let long = "d".repeat(300);
    let mut bad_title = finding(
        Detector::UnknownFirmware,
        "x",
        Some("dev-1"),
        Severity::High,
    );
    bad_title.title = "line\nbreak".into();
    for f in [
        finding(Detector::UnknownFirmware, "x", Some(&long), Severity::High),
        bad_title,
    ] {
        let err = store.record_finding(&f).await.unwrap_err().to_string();
        assert!(err.contains("without control characters"), "{err}");
    }
    assert!(
        fx.db
            .open_incident_for_cause("unknown_firmware:x")
            .await
            .unwrap()
            .is_none()
    );
}

// ---------------------------------------------------------------------------
// The operator API

use common::ops::Ops;
use std::time::Duration;

fn fast_progress(config: &mut rampart_server::ServerConfig) {
    config.incidents.progress_interval = Duration::from_millis(100);
}

/// The database as a quarantine executor would write it (the quarantine engineer's code
/// writes these rows; here the engine's reaction to them is under test).
async fn quarantine_rows(fx: &Fixture, incident: &str, devices: &[&str]) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&fx.db_url).await.unwrap();
    for d in devices {
        sqlx::query(
            "INSERT INTO device_quarantine (device_id, incident_id, since, actor, reason) VALUES ($1, $2, 1, 'test', 'test')
             ON CONFLICT DO NOTHING",
        )
        .bind(*d)
        .bind(incident)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
}

async fn decide(ops: &Ops, token: &str, action: &str, how: &str) -> Response {
    ops.call(
        token,
        "POST",
        &format!("/api/v1/incident-actions/{action}/{how}"),
        None,
    )
    .await
}

async fn show(ops: &Ops, id: &str) -> serde_json::Value {
    let r = ops
        .call(&ops.viewer, "GET", &format!("/api/v1/incidents/{id}"), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()
}

async fn operators_open_ack_act_on_and_close_an_incident(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/incidents",
            Some(&json!({"severity": "high", "title": "suspicious boot on two gateways", "devices": ["dev-1", "dev-2", "dev-1"]})),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["detector"], "operator");
    assert_eq!(r.json()["devices"].as_array().unwrap().len(), 2);

    let ack = format!("/api/v1/incidents/{id}/ack");
    let r = ops.call(&ops.operator, "POST", &ack, None).await;
    assert_eq!(r.json()["newly_acknowledged"], true);
    let r = ops.call(&ops.admin, "POST", &ack, None).await;
    assert_eq!(r.json()["newly_acknowledged"], false);

    for (path, body) in [
        ("contain", None),
        ("collect", None),
        ("reimage", Some(json!({"release": "fw-1.0.0.bin"}))),
    ] {
        let r = ops
            .call(
                &ops.operator,
                "POST",
                &format!("/api/v1/incidents/{id}/{path}"),
                body.as_ref(),
            )
            .await;
        assert_eq!(r.status, 202, "{path}: {r:?}");
        assert_eq!(r.json()["requested"].as_array().unwrap().len(), 2, "{path}");
    }

    let view = show(&ops, &id).await;
    let reimage: Vec<_> = view["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "reimage")
        .collect();
    assert_eq!(reimage.len(), 2);
    assert_eq!(reimage[0]["detail"]["release"], "fw-1.0.0.bin");
    assert_eq!(
        reimage[0].get("required_role"),
        None,
        "an operator's request runs at once (no role to wait for)"
    );

    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/incidents/{id}/state"),
            Some(&json!({"state": "eradicated", "note": "images replaced"})),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "eradicated");
    assert!(r.json()["timings"]["to_eradicate"].is_i64());
    assert!(
        r.json()["timings"]["to_contain"].is_null(),
        "a skipped state keeps no time"
    );

    let listed = ops
        .call(
            &ops.viewer,
            "GET",
            "/api/v1/incidents?state=eradicated&device=dev-2",
            None,
        )
        .await;
    assert_eq!(listed.status, 200, "{listed:?}");
    assert_eq!(listed.json()["incidents"][0]["id"], id.as_str());
    let none = ops
        .call(&ops.viewer, "GET", "/api/v1/incidents?device=dev-9", None)
        .await;
    assert_eq!(none.json()["incidents"].as_array().unwrap().len(), 0);

    let r = ops
        .call(
            &ops.operator,
            "POST",
            &format!("/api/v1/incidents/{id}/close"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["state"], "closed");
    assert!(r.json()["open_cause"].is_null());

    let view = show(&ops, &id).await;
    // The operators' entries (the executors add theirs as they run the actions).
    let kinds: Vec<_> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"].as_str().unwrap().starts_with("token:"))
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        [
            "opened",
            "acknowledged",
            "actions_requested",
            "actions_requested",
            "actions_requested",
            "state_changed",
            "state_changed"
        ]
    );
    // Every timeline entry is a record of the verified chain. The operators' are
    // about the incident; an executor that already ran an action (on a busy machine it may
    // have) records it under the action's id, naming the incident in its details.
    let records = ops.audit_records().await;
    for entry in view["timeline"].as_array().unwrap() {
        let seq = entry["audit_seq"].as_u64().unwrap();
        let record = records
            .iter()
            .find(|r| r.seq == seq)
            .unwrap_or_else(|| panic!("no audit record {seq} for {entry}"));
        if entry["actor"].as_str().unwrap().starts_with("token:") {
            assert_eq!(record.subject, format!("incident:{id}"), "{entry}");
        } else {
            let names_it = record.subject == format!("incident:{id}")
                || record.subject == id
                || record.details["incident"] == id.as_str();
            assert!(names_it, "{entry}: {record:?}");
        }
    }
    ops.server.stop().await;
}

async fn unknown_incidents_are_404_and_bad_states_422(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/incidents",
            Some(&json!({"severity": "low", "title": "t", "devices": ["dev-1"]})),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap().to_string();
    let call = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let ops = &ops;
        async move { ops.call(&ops.operator, method, &path, body.as_ref()).await }
    };
    for (method, path, body) in [
        (
            "GET",
            "/api/v1/incidents/inc-0000000000000000".to_string(),
            None,
        ),
        (
            "POST",
            "/api/v1/incidents/inc-0000000000000000/ack".to_string(),
            None,
        ),
        (
            "POST",
            "/api/v1/incidents/inc-0000000000000000/contain".to_string(),
            None,
        ),
        (
            "POST",
            format!("/api/v1/incidents/{}/close", "x".repeat(300)),
            None,
        ),
        (
            "POST",
            "/api/v1/incidents/..%2F..%2Fetc/close".to_string(),
            None,
        ),
        (
            "POST",
            "/api/v1/incident-actions/act-0000000000000000/approve".to_string(),
            None,
        ),
    ] {
        let r = call(method, path.clone(), body).await;
        assert_eq!(r.status, 404, "{method} {path}: {r:?}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .starts_with("unknown_incident"),
            "{r:?}"
        );
    }
    for (path, body, says) in [
        (
            format!("/api/v1/incidents/{id}/state"),
            json!({"state": "bogus"}),
            "state \"bogus\" is unknown",
        ),
        (
            format!("/api/v1/incidents/{id}/state"),
            json!({"state": "detected"}),
            "moves forward only",
        ),
        (
            format!("/api/v1/incidents/{id}/reimage"),
            json!({"release": "fw-9.9.9.bin"}),
            "no target",
        ),
        (
            "/api/v1/incidents".to_string(),
            json!({"severity": "urgent", "title": "t"}),
            "severity",
        ),
        (
            "/api/v1/incidents".to_string(),
            json!({"severity": "low", "title": "two\nlines"}),
            "control characters",
        ),
    ] {
        let r = call("POST", path.clone(), Some(body)).await;
        assert_eq!(r.status, 422, "{path}: {r:?}");
        assert!(
            r.json()["detail"].as_str().unwrap().contains(says),
            "{path}: {r:?}"
        );
    }
    for query in [
        "state=bogus",
        "severity=urgent",
        "detector=nope",
        "limit=0",
        "limit=501",
        "offset=-1",
    ] {
        let r = ops
            .call(
                &ops.viewer,
                "GET",
                &format!("/api/v1/incidents?{query}"),
                None,
            )
            .await;
        assert_eq!(r.status, 422, "{query}: {r:?}");
    }
    // Closed: no move, no acknowledgement, no action any more.
    assert_eq!(
        call("POST", format!("/api/v1/incidents/{id}/close"), None)
            .await
            .status,
        200
    );
    for path in ["close", "ack", "contain"] {
        let r = call("POST", format!("/api/v1/incidents/{id}/{path}"), None).await;
        assert_eq!(r.status, 422, "{path}: {r:?}");
    }
    ops.server.stop().await;
}

/// Playbook roles are enforced: a viewer acts on nothing, an operator may not approve an
/// action held for an admin nor store playbooks; an admin may do all.
async fn roles_without_the_permission_are_refused_403(backend: Backend, name: &str) {
    let ops = Ops::start(backend, name).await;
    let playbooks = json!({"unknown_firmware": {"default": {"now": ["alert"], "approve": [
        {"action": "quarantine", "role": "admin"}, {"action": "reimage", "role": "operator"}]}}});
    let r = ops
        .call(&ops.operator, "PUT", "/api/v1/playbooks", Some(&playbooks))
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = ops
        .call(&ops.admin, "PUT", "/api/v1/playbooks", Some(&playbooks))
        .await;
    assert_eq!(r.status, 200, "{r:?}");

    // The server's own store records the finding with the stored playbooks in force: the
    // test's store reads them from the database the way a restarted server does.
    let store = store(&ops.fx.db);
    store.resume().await.unwrap();
    let rec = store
        .record_finding(&finding(
            Detector::UnknownFirmware,
            "sha256:bad",
            Some("dev-1"),
            Severity::High,
        ))
        .await
        .unwrap();
    let view = show(&ops, &rec.incident_id).await;
    let held = |action: &str| {
        view["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["action"] == action)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (quarantine, reimage) = (held("quarantine"), held("reimage"));
    assert_eq!(
        decide(&ops, &ops.viewer, &reimage, "approve").await.status,
        403
    );
    let r = decide(&ops, &ops.operator, &quarantine, "approve").await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(
        r.json()["detail"].as_str().unwrap().contains("an admin"),
        "{r:?}"
    );
    assert_eq!(
        decide(&ops, &ops.operator, &reimage, "reject").await.json()["state"],
        "rejected"
    );
    let r = decide(&ops, &ops.admin, &quarantine, "approve").await;
    assert_eq!(r.json()["state"], "approved", "{r:?}");
    assert_eq!(
        decide(&ops, &ops.admin, &quarantine, "approve")
            .await
            .status,
        409
    );

    for (method, path) in [
        ("POST", format!("/api/v1/incidents/{}/ack", rec.incident_id)),
        (
            "POST",
            format!("/api/v1/incidents/{}/contain", rec.incident_id),
        ),
        ("POST", "/api/v1/incidents".to_string()),
    ] {
        let r = ops.call(&ops.viewer, method, &path, Some(&json!({}))).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    ops.server.stop().await;
}

/// Playbooks an admin stores are validated (the error names the bad key), audited, and in
/// force again after a restart.
async fn stored_playbooks_are_validated_audited_and_kept_across_restarts(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let bad = json!({"rollback_spike": {"default": {"now": ["alert", "quarantine_all"]}}});
    let r = ops
        .call(&ops.admin, "PUT", "/api/v1/playbooks", Some(&bad))
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(
        r.text().contains("playbooks.rollback_spike.default"),
        "{r:?}"
    );
    let good = json!({"rollback_spike": {"default": {"now": ["alert", "collect_evidence"]}}});
    let r = ops
        .call(&ops.admin, "PUT", "/api/v1/playbooks", Some(&good))
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        ops.audit_records()
            .await
            .iter()
            .any(|r| r.action == "incident.playbooks_set")
    );
    let ops = ops.restart().await;
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/playbooks", None)
        .await;
    assert_eq!(
        r.json()["rollback_spike"]["default"]["now"],
        json!(["alert", "collect_evidence"])
    );
    // Detectors not named keep the built-in playbook.
    assert_eq!(
        r.json()["attestation_failed"]["default"]["now"],
        json!(["quarantine", "collect_evidence", "alert"])
    );
    ops.server.stop().await;
}

/// A store whose playbook requests no device action at once (the alert, and re-imaging
/// held for an operator), so the server's executors leave the tests' devices alone.
fn store_without_device_actions(db: &Db) -> IncidentStore {
    let playbooks: Playbooks = serde_json::from_value(json!({"attestation_failed": {"default":
        {"now": ["alert"], "approve": [{"action": "reimage", "role": "operator"}]}}}))
    .unwrap();
    IncidentStore::new(db.clone(), AuditWriter::new(db.clone()), playbooks)
}

async fn two_device_incident(store: &IncidentStore) -> String {
    let mut id = String::new();
    for d in ["dev-1", "dev-2"] {
        id = store
            .record_finding(&finding(
                Detector::AttestationFailed,
                "board-a",
                Some(d),
                Severity::High,
            ))
            .await
            .unwrap()
            .incident_id;
    }
    id
}

/// Finishes a claimed action as its executor would, with its timeline entry and audit record.
async fn finish(db: &Db, action: &rampart_db::IncidentAction) {
    let audit = AuditWriter::new(db.clone());
    let now = unix_now();
    let subject = format!("incident:{}", action.incident_id);
    audit
        .write(
            now,
            "engine:test",
            "incident.action_done",
            &subject,
            json!({}),
            |line| {
                let (db, a) = (db.clone(), action.clone());
                async move {
                    let entry = rampart_db::TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: a.incident_id.clone(),
                        at: now,
                        kind: "action_done".into(),
                        actor: "engine:test".into(),
                        device_id: a.device_id.clone(),
                        detail: json!({}),
                    };
                    db.finish_incident_action(&a.id, true, &a.detail, &entry, &line)
                        .await
                }
            },
        )
        .await
        .unwrap();
}

/// Actions a stopped server had claimed are approved again at start; the store moves the
/// incident as its devices go: contained once every device is quarantined, eradicated once
/// each is re-imaged, recovered once each is also released.
async fn running_actions_are_requeued_at_start_and_progress_follows_the_devices(
    backend: Backend,
    name: &str,
) {
    let fx = Fixture::new(backend, name).await;
    let store = store_without_device_actions(&fx.db);
    let id = two_device_incident(&store).await;
    // Asked twice while the first ones are still approved: no second action per device.
    for want in [2, 0] {
        let requested = store
            .request(
                &id,
                rampart_incident::model::Action::CollectEvidence,
                "token:test",
                json!({}),
            )
            .await
            .unwrap();
        assert_eq!(requested.len(), want);
    }
    for a in fx.db.incident_actions(&id).await.unwrap() {
        if a.action == "reimage" {
            store
                .decide(
                    &a.id,
                    true,
                    "token:test",
                    Some(rampart_incident::model::Role::Operator),
                )
                .await
                .unwrap();
        }
    }
    // An executor claims them, and the server stops before finishing.
    assert_eq!(
        fx.db
            .claim_incident_actions("reimage", 10)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        fx.db
            .claim_incident_actions("reimage", 10)
            .await
            .unwrap()
            .len(),
        0
    );
    assert_eq!(store.resume().await.unwrap(), 2, "both requeued at start");
    let claimed = fx.db.claim_incident_actions("reimage", 10).await.unwrap();
    assert_eq!(claimed.len(), 2, "and claimable again");

    let state = async |fx: &Fixture| fx.db.incident(&id).await.unwrap().unwrap().state;
    quarantine_rows(&fx, &id, &["dev-1"]).await;
    store.progress_once().await.unwrap();
    assert_eq!(state(&fx).await, "detected", "one device is still free");
    quarantine_rows(&fx, &id, &["dev-2"]).await;
    assert_eq!(store.progress_once().await.unwrap(), 1);
    assert_eq!(state(&fx).await, "contained");
    finish(&fx.db, &claimed[0]).await;
    store.progress_once().await.unwrap();
    assert_eq!(
        state(&fx).await,
        "contained",
        "one device is not re-imaged yet"
    );
    finish(&fx.db, &claimed[1]).await;
    store.progress_once().await.unwrap();
    assert_eq!(state(&fx).await, "eradicated");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&fx.db_url).await.unwrap();
    sqlx::query("DELETE FROM device_quarantine")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    store.progress_once().await.unwrap();
    let incident = fx.db.incident(&id).await.unwrap().unwrap();
    assert_eq!(incident.state, "recovered");
    let timings = rampart_server::incidents::lifecycle_of(&incident).timings();
    assert!(timings.to_recover.unwrap() >= timings.to_contain.unwrap());
    assert_eq!(timings.to_detect, incident.detected_at - 1_000);
    let kinds: Vec<_> = fx
        .db
        .incident_timeline(&id)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.actor == "engine:incidents")
        .map(|e| e.detail["state"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, ["contained", "eradicated", "recovered"]);
}

/// A restart mid-incident resumes where it was: the incident, its devices and held actions
/// are in the database, and the restarted server's engine moves it on.
async fn a_restart_mid_incident_resumes_where_it_was(backend: Backend, name: &str) {
    let ops = Ops::start_with(backend, name, fast_progress).await;
    let store = store_without_device_actions(&ops.fx.db);
    let id = two_device_incident(&store).await;
    quarantine_rows(&ops.fx, &id, &["dev-1"]).await;
    let before = show(&ops, &id).await;
    assert_eq!(before["state"], "detected");
    let ops = ops.restart().await;
    let after = show(&ops, &id).await;
    assert_eq!(after["devices"], before["devices"]);
    // The alert engine may send the incident's alert on either side of the restart (a busy
    // machine decides which), so the timeline read after it is the one read before, followed
    // only by the alert engine's entries.
    let before_timeline = before["timeline"].as_array().unwrap();
    let after_timeline = after["timeline"].as_array().unwrap();
    assert!(
        after_timeline.len() >= before_timeline.len(),
        "the restart lost entries"
    );
    assert_eq!(
        &after_timeline[..before_timeline.len()],
        &before_timeline[..],
        "the restart kept the timeline"
    );
    for extra in &after_timeline[before_timeline.len()..] {
        assert_eq!(
            extra["actor"], "engine:alerts",
            "only the alert was added: {extra}"
        );
    }
    let held = |v: &serde_json::Value| {
        v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "pending_approval")
            .count()
    };
    assert_eq!(held(&after), 2, "re-imaging still waits for an operator");
    quarantine_rows(&ops.fx, &id, &["dev-2"]).await;
    wait_until("the restarted server contains the incident", || async {
        show(&ops, &id).await["state"] == "contained"
    })
    .await;
    // The metrics: the containment this server saw, and the incident counted by state.
    assert_eq!(
        ops.server
            .metric("rampart_incident_response_seconds_count{phase=\"contain\"}")
            .await,
        1
    );
    wait_until("the gauge counts the contained incident", || async {
        ops.server
            .metric("rampart_incidents{state=\"contained\",severity=\"high\"}")
            .await
            == 1
    })
    .await;
    ops.server.stop().await;
}

on_both_backends!(
    findings_of_one_cause_open_one_incident_and_each_device_joins_once,
    two_servers_recording_one_cause_at_once_make_one_incident,
    an_unbounded_finding_is_refused_and_nothing_is_stored,
    operators_open_ack_act_on_and_close_an_incident,
    unknown_incidents_are_404_and_bad_states_422,
    roles_without_the_permission_are_refused_403,
    stored_playbooks_are_validated_audited_and_kept_across_restarts,
    running_actions_are_requeued_at_start_and_progress_follows_the_devices,
    a_restart_mid_incident_resumes_where_it_was,
);
