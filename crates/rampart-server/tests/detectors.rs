//! The incident detectors end to end (issue 16): a real server, real device polls, reports,
//! refusals and the monitor's alert, and the incidents they open; and the defenses that make
//! detection fail closed (a signal source that cannot be read, a stalled engine).

mod common;

use std::time::Duration;

use common::ops::Ops;
use common::*;
use rampart_db::{CheckResult, QuoteCounters};
use rampart_server::Role;
use rampart_server::management::create_token;
use serde_json::{Value, json};

/// Thresholds low enough for a test: two rollbacks make a spike, one stale device a burst,
/// and the inventory is compared every second.
const DETECTORS: &str = r#"
[detectors]
inventory_interval_secs = 1
[detectors.unknown_firmware]
versions = true
[detectors.rollback_spike]
threshold = 2
window_secs = 600
[detectors.attestation_stale]
grace_secs = 0
threshold = 1
window_secs = 3600
"#;

fn incident_config(text: &str) -> rampart_server::incidents::IncidentConfig {
    rampart_server::incidents::IncidentConfig::from_toml(text).unwrap()
}

/// Waits until the open incident of `cause` holds `device` (or exists, for `None`).
async fn wait_for_incident(ops: &Ops, cause: &str, device: Option<&str>) {
    wait_until(&format!("{cause} holds {device:?}"), || async {
        let Some(incident) = ops.fx.db.open_incident_for_cause(cause).await.unwrap() else {
            return false;
        };
        match device {
            None => true,
            Some(d) => ops
                .fx
                .db
                .incident_has_device(&incident.id, d)
                .await
                .unwrap(),
        }
    })
    .await;
}

async fn poll(ops: &Ops, id: &str, hardware: &str, version: &str) -> Response {
    let mut dev = ops.server.connect(&ops.fx.device(id)).await;
    dev.post(
        "/device/v1/poll",
        &json!({"hardware_id": hardware, "firmware_version": version, "security_version": 1}),
    )
    .await
}

async fn report(ops: &Ops, id: &str, report_id: &str, status: &str, details: Value) {
    let mut dev = ops.server.connect(&ops.fx.device(id)).await;
    let r = dev
        .post(
            "/device/v1/reports",
            &json!({"id": report_id, "status": status, "details": details}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
}

async fn every_detector_opens_its_incident(backend: Backend, name: &str) {
    let ops = Ops::start_with(backend, name, |config| {
        config.incidents = incident_config(DETECTORS);
        config.attestation = Some(rampart_server::attestation::AttestationConfig {
            freshness: Duration::from_secs(60),
            ..Default::default()
        });
    })
    .await;

    // A device served an image that failed verification.
    poll(&ops, "vf-1", "board-a", "1.0.0").await;
    report(
        &ops,
        "vf-1",
        "r-vf",
        "verification_failed",
        json!({"target": "fw-2.0.0.bin", "reason": "hash_mismatch"}),
    )
    .await;
    // Two rollbacks of one release on one hardware id.
    for dev in ["rb-1", "rb-2"] {
        poll(&ops, dev, "board-a", "1.0.0").await;
        report(
            &ops,
            dev,
            "r-rb",
            "rolled_back",
            json!({"target": "fw-2.0.0.bin", "reason": "health_check_failed"}),
        )
        .await;
    }
    // A version no release has, and an image (a slot's hash) no release has.
    poll(&ops, "uf-1", "board-a", "6.6.6").await;
    let tampered = "cd".repeat(32);
    let mut dev = ops.server.connect(&ops.fx.device("uf-2")).await;
    let r = dev
        .post(
            "/device/v1/poll",
            &json!({"hardware_id": "board-a", "firmware_version": "1.0.0", "security_version": 1,
                    "slots": {"a": {"state": "active", "sha256": tampered}, "b": "inactive"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // A hardware id that changed.
    poll(&ops, "hw-1", "board-a", "1.0.0").await;
    poll(&ops, "hw-1", "board-b", "1.0.0").await;
    // A revoked device that keeps using its certificate.
    poll(&ops, "rv-1", "board-a", "1.0.0").await;
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/devices/rv-1/revoke", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(poll(&ops, "rv-1", "board-a", "1.0.0").await.status, 403);
    // A revoked management token used again.
    let audit = rampart_server::audit::AuditWriter::new(ops.fx.db.clone());
    let revoked = create_token(
        &ops.fx.db,
        &audit,
        Role::Viewer,
        "old",
        "cli:test",
        unix_now(),
    )
    .await
    .unwrap();
    let r = ops
        .call(
            &ops.admin,
            "DELETE",
            &format!("/api/v1/tokens/{}", revoked.token.id),
            None,
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    let r = ops
        .call(&revoked.secret, "GET", "/api/v1/devices", None)
        .await;
    assert_eq!(r.status, 401, "{r:?}");
    // The log monitor's alert.
    let monitor = create_token(
        &ops.fx.db,
        &audit,
        Role::Monitor,
        "monitor",
        "cli:test",
        unix_now(),
    )
    .await
    .unwrap();
    let evil = "ee".repeat(32);
    let r = ops
        .call(
            &monitor.secret,
            "POST",
            "/api/v1/monitor/alerts",
            Some(&json!({"target": "evil.bin", "version": "6.6.6", "sha256": evil, "index": 7, "log": "log.example"})),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    // A refused attestation-key enrolment.
    let mut dev = ops.server.connect(&ops.fx.device("at-1")).await;
    let r = dev
        .post(
            "/device/v1/attestation/enrol",
            &json!({"ek_public": "AAAA", "ak_public": "AAAA"}),
        )
        .await;
    assert!(r.status >= 400, "{r:?}");
    // A pass that went stale (verified 100 s ago, 60 s freshness).
    poll(&ops, "st-1", "board-s", "1.0.0").await;
    ops.fx
        .db
        .record_attestation(
            "st-1",
            unix_now() - 100,
            &CheckResult::Passed {
                release: "fw-1.0.0.bin".into(),
                counters: QuoteCounters {
                    reset_count: 0,
                    restart_count: 0,
                    clock: 1,
                },
            },
            None,
            None,
        )
        .await
        .unwrap();

    for (cause, device) in [
        ("verification_failed:fw-2.0.0.bin", Some("vf-1")),
        ("rollback_spike:fw-2.0.0.bin@board-a", Some("rb-1")),
        ("rollback_spike:fw-2.0.0.bin@board-a", Some("rb-2")),
        ("unknown_firmware:version:6.6.6", Some("uf-1")),
        (&format!("unknown_firmware:sha256:{tampered}"), Some("uf-2")),
        ("hardware_id_change:board-a->board-b", Some("hw-1")),
        ("revoked_credential_use:device:rv-1", Some("rv-1")),
        (
            &format!("revoked_credential_use:token:{}", revoked.token.id),
            None,
        ),
        (&format!("unknown_signed_release:evil.bin:{evil}"), None),
        ("attestation_stale:board-s", Some("st-1")),
    ] {
        wait_for_incident(&ops, cause, device).await;
    }
    // The enrolment refusal's cause names its check.
    wait_until("the refused enrolment opens an incident", || async {
        let all = ops
            .fx
            .db
            .incidents(&rampart_db::IncidentFilter {
                detector: Some("attestation_failed".into()),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        all.iter()
            .any(|i| i.detector == "attestation_failed" && i.cause.contains("enrolment_refused"))
    })
    .await;
    // Healthy devices are in none of them.
    let incident = ops
        .fx
        .db
        .open_incident_for_cause("verification_failed:fw-2.0.0.bin")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !ops.fx
            .db
            .incident_has_device(&incident.id, "rb-1")
            .await
            .unwrap()
    );
    assert!(
        ops.server
            .metric("rampart_detector_findings_total{detector=\"rollback_spike\"}")
            .await
            >= 2
    );
    ops.server.stop().await;
}

async fn a_detector_that_cannot_read_its_signals_opens_an_incident(backend: Backend, name: &str) {
    let ops = Ops::start_with(backend, name, |config| {
        config.incidents = incident_config(DETECTORS);
    })
    .await;
    // The registry (the hosted repository) becomes unreadable: unknown firmware can no longer
    // be judged. That must be an incident, not a log line.
    let timestamp = ops.repo_dir.path().join("repo/metadata/timestamp.json");
    std::fs::write(&timestamp, b"{ this is not metadata").unwrap();
    wait_for_incident(&ops, "detector_failure:registry", None).await;
    let incident = ops
        .fx
        .db
        .open_incident_for_cause("detector_failure:registry")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(incident.detector, "detector_failure");
    assert!(
        incident.detail.to_string().contains("image repository"),
        "{incident:?}"
    );
    ops.server.stop().await;
}

async fn a_stalled_engine_opens_an_incident(backend: Backend, name: &str) {
    // The attestation sweep runs once a minute, but its heartbeat bound is 5 s: after its
    // first sweep it is, by its bound, stalled.
    let ops = Ops::start_with(backend, name, |config| {
        config.incidents = incident_config(
            "[detectors.heartbeat]\nbound_secs = 120\nbounds = { attestation = 5 }\n",
        );
        config.attestation = Some(rampart_server::attestation::AttestationConfig {
            sweep_interval: Duration::from_secs(600),
            ..Default::default()
        });
    })
    .await;
    wait_for_incident(&ops, "engine_stalled:attestation", None).await;
    // The engines that keep beating are not stalled.
    for engine in ["campaigns", "webhooks", "last_seen", "detectors"] {
        assert!(
            ops.fx
                .db
                .open_incident_for_cause(&format!("engine_stalled:{engine}"))
                .await
                .unwrap()
                .is_none(),
            "{engine} beats"
        );
    }
    let age = ops
        .server
        .metric("rampart_engine_heartbeat_age_seconds{engine=\"attestation\"}")
        .await;
    assert!(age > 5, "{age}");
    ops.server.stop().await;
}

/// A device reports `verification_failed` for fw-2.0.0.bin; returns the incident it joined.
async fn verification_failure(ops: &Ops, device: &str) -> rampart_db::Incident {
    const CAUSE: &str = "verification_failed:fw-2.0.0.bin";
    poll(ops, device, "board-a", "1.0.0").await;
    report(
        ops,
        device,
        "r-1",
        "verification_failed",
        json!({"target": "fw-2.0.0.bin"}),
    )
    .await;
    wait_for_incident(ops, CAUSE, Some(device)).await;
    ops.fx
        .db
        .open_incident_for_cause(CAUSE)
        .await
        .unwrap()
        .unwrap()
}

async fn detection_resumes_after_a_restart_without_reading_twice(backend: Backend, name: &str) {
    let ops = Ops::start_with(backend, name, |config| {
        config.incidents = incident_config(DETECTORS);
    })
    .await;
    let first = verification_failure(&ops, "vf-1").await;
    let ops = ops.restart().await;
    // A report while the detectors restart is read after the restart, into the same incident.
    let again = verification_failure(&ops, "vf-2").await;
    assert_eq!(again.id, first.id);
    let timeline = ops.fx.db.incident_timeline(&first.id).await.unwrap();
    let joined: Vec<&str> = timeline
        .iter()
        .filter(|e| e.kind == "opened" || e.kind == "device_joined")
        .map(|e| e.device_id.as_str())
        .collect();
    assert_eq!(
        joined.iter().filter(|d| **d == "vf-1").count(),
        1,
        "the first report was not read twice: {timeline:?}"
    );
    ops.server.stop().await;
}

async fn the_monitor_route_takes_only_the_monitor_role_and_a_well_formed_alert(
    backend: Backend,
    name: &str,
) {
    let ops = Ops::start(backend, name).await;
    let alert = json!({"target": "evil.bin", "sha256": "ab".repeat(32), "index": 1});
    let r = ops
        .call(
            &ops.operator,
            "POST",
            "/api/v1/monitor/alerts",
            Some(&alert),
        )
        .await;
    assert_eq!(r.status, 403, "an operator token is not the monitor: {r:?}");
    let audit = rampart_server::audit::AuditWriter::new(ops.fx.db.clone());
    let monitor = create_token(
        &ops.fx.db,
        &audit,
        Role::Monitor,
        "m",
        "cli:test",
        unix_now(),
    )
    .await
    .unwrap();
    let r = ops
        .call(&monitor.secret, "GET", "/api/v1/devices", None)
        .await;
    assert_eq!(r.status, 403, "the monitor reads nothing: {r:?}");
    let bad = json!({"target": "evil.bin", "sha256": "not hex", "index": 1});
    let r = ops
        .call(
            &monitor.secret,
            "POST",
            "/api/v1/monitor/alerts",
            Some(&bad),
        )
        .await;
    assert_eq!(r.status, 422, "{r:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("sha256"));
    ops.server.stop().await;
}

async fn a_device_reporting_unknown_firmware_is_caught_at_that_poll_not_at_the_next_sweep(
    backend: Backend,
    name: &str,
) {
    // The whole-inventory sweep runs once an hour: only the read of the devices whose firmware
    // changed can catch this device within the test's bound.
    let ops = Ops::start_with(backend, name, |config| {
        config.incidents = incident_config(
            "[detectors]\ninventory_interval_secs = 3600\n[detectors.unknown_firmware]\nversions = true\n",
        );
    })
    .await;
    poll(&ops, "fc-1", "board-a", "1.0.0").await;
    // The first round (and its sweep) is over once the detectors have beaten.
    wait_until("the detectors' first round", || async {
        ops.fx
            .db
            .engine_heartbeats()
            .await
            .unwrap()
            .iter()
            .any(|(engine, _)| engine == "detectors")
    })
    .await;
    assert!(
        ops.fx
            .db
            .open_incident_for_cause("unknown_firmware:version:6.6.7")
            .await
            .unwrap()
            .is_none()
    );
    poll(&ops, "fc-1", "board-a", "6.6.7").await;
    wait_for_incident(&ops, "unknown_firmware:version:6.6.7", Some("fc-1")).await;
    ops.server.stop().await;
}

on_both_backends!(
    a_device_reporting_unknown_firmware_is_caught_at_that_poll_not_at_the_next_sweep,
    every_detector_opens_its_incident,
    a_detector_that_cannot_read_its_signals_opens_an_incident,
    a_stalled_engine_opens_an_incident,
    detection_resumes_after_a_restart_without_reading_twice,
    the_monitor_route_takes_only_the_monitor_role_and_a_well_formed_alert,
);
