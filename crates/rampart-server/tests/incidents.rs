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

on_both_backends!(
    findings_of_one_cause_open_one_incident_and_each_device_joins_once,
    two_servers_recording_one_cause_at_once_make_one_incident,
    an_unbounded_finding_is_refused_and_nothing_is_stored,
);
