//! The alert outbox and dedupe window (migration 0015) on embedded SQLite and on PostgreSQL
//! (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it these tests fail),
//! on a virtual clock: every time is an argument.

mod support;

use rampart_db::{
    ALERT_SINK_SYSLOG, ALERT_SINK_WEBHOOKS, AlertAttempt, AlertQueued, ClaimedAlert, Db,
};
use rampart_incident::alert::{Alert, AlertIncident};
use rampart_incident::model::{Detector, IncidentState, Severity};

fn alert(id: &str, key: &str) -> Alert {
    Alert {
        id: id.into(),
        dedupe_key: key.into(),
        severity: Severity::High,
        update: false,
        repeats: 0,
        created: 100,
        incident: AlertIncident {
            id: format!("inc-{id}"),
            title: "suspect firmware".into(),
            detector: Detector::UnknownFirmware,
            state: IncidentState::Detected,
            release: String::new(),
            detected_at: 100,
            devices: vec!["dev-1".into()],
            device_count: 1,
            evidence: Vec::new(),
            evidence_count: 0,
            timeline: Vec::new(),
            timeline_count: 0,
        },
    }
}

fn sinks(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

async fn claim(db: &Db, sink: &str, now_ms: i64) -> Vec<ClaimedAlert> {
    db.claim_alert_deliveries(sink, now_ms, now_ms + 60_000, 10)
        .await
        .unwrap()
}

const WINDOW: i64 = 5_000;

#[test]
fn alerts_within_the_window_are_held_and_go_out_once_as_an_update_with_their_repeats() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "alerts", "window").await {
            let key = "unknown_firmware:fw-9";
            let queued = |id: &str, s: &[&str], now| {
                let db = db.clone();
                let a = alert(id, key);
                let s = sinks(s);
                async move { db.queue_alert(&a, &s, now, WINDOW).await.unwrap() }
            };
            assert_eq!(
                queued("a1", &[ALERT_SINK_SYSLOG], 0).await,
                AlertQueued::Sent { update: false }
            );
            assert_eq!(
                queued("a2", &[ALERT_SINK_SYSLOG], 1_000).await,
                AlertQueued::Held {
                    due_ms: 5_000,
                    repeats: 0
                }
            );
            assert_eq!(
                queued("a3", &[ALERT_SINK_WEBHOOKS], 2_000).await,
                AlertQueued::Held {
                    due_ms: 5_000,
                    repeats: 1
                }
            );
            // Another key is not held by this one's window.
            let other = alert("b1", "unknown_firmware:fw-10");
            assert_eq!(
                db.queue_alert(&other, &sinks(&[ALERT_SINK_SYSLOG]), 2_000, WINDOW)
                    .await
                    .unwrap(),
                AlertQueued::Sent { update: false }
            );
            assert!(db.release_held_alerts(4_999).await.unwrap().is_empty());
            assert_eq!(db.release_held_alerts(5_000).await.unwrap(), ["a3"]);
            assert!(db.release_held_alerts(9_000).await.unwrap().is_empty());
            // The update goes to the sinks of every alert it folds in.
            let syslog = claim(&db, ALERT_SINK_SYSLOG, 5_000).await;
            let ids: Vec<&str> = syslog.iter().map(|c| c.alert_id.as_str()).collect();
            assert_eq!(ids, ["a1", "b1", "a3"]);
            let update: Alert = serde_json::from_str(&syslog[2].body).unwrap();
            assert!(update.update);
            assert_eq!(update.repeats, 1);
            let webhooks = claim(&db, ALERT_SINK_WEBHOOKS, 5_000).await;
            assert_eq!(webhooks.len(), 1);
            assert_eq!(webhooks[0].alert_id, "a3");
            // After the window an alert of the key goes out at once, as an update.
            assert_eq!(
                queued("a4", &[ALERT_SINK_SYSLOG], 10_001).await,
                AlertQueued::Sent { update: true }
            );
        }
    });
}

#[test]
fn an_alert_queued_again_after_a_restart_is_not_sent_twice() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "alerts", "again").await {
            let a = alert("a1", "operator:case");
            let s = sinks(&[ALERT_SINK_SYSLOG]);
            assert!(matches!(
                db.queue_alert(&a, &s, 0, WINDOW).await.unwrap(),
                AlertQueued::Sent { .. }
            ));
            assert_eq!(
                db.queue_alert(&a, &s, 10, WINDOW).await.unwrap(),
                AlertQueued::AlreadyQueued
            );
            let held = alert("a2", "operator:case");
            assert!(matches!(
                db.queue_alert(&held, &s, 20, WINDOW).await.unwrap(),
                AlertQueued::Held { .. }
            ));
            assert_eq!(
                db.queue_alert(&held, &s, 30, WINDOW).await.unwrap(),
                AlertQueued::AlreadyQueued
            );
            assert_eq!(claim(&db, ALERT_SINK_SYSLOG, 40).await.len(), 1);
        }
    });
}

#[test]
fn attempts_are_leased_recorded_and_judged_per_sink() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "alerts", "attempts").await {
            let s = sinks(&[ALERT_SINK_SYSLOG]);
            db.queue_alert(&alert("a1", "k:1"), &s, 0, WINDOW)
                .await
                .unwrap();
            let first = claim(&db, ALERT_SINK_SYSLOG, 0).await;
            assert_eq!(first[0].attempts, 1);
            // Leased: not claimed again while the attempt runs.
            assert!(claim(&db, ALERT_SINK_SYSLOG, 1).await.is_empty());
            let retry = AlertAttempt::Retry {
                next_attempt_ms: 500,
                error: "could not connect:\nrefused".into(),
            };
            assert!(db.record_alert_attempt(&first[0].id, &retry).await.unwrap());
            let stats = db.alert_sink_stats(ALERT_SINK_SYSLOG).await.unwrap();
            assert_eq!(stats.oldest_pending, Some(100));
            assert_eq!(stats.failed_attempts, 1);
            assert_eq!(stats.last_given_up, None);
            let second = claim(&db, ALERT_SINK_SYSLOG, 500).await;
            assert_eq!(second[0].attempts, 2);
            let gave_up = AlertAttempt::GaveUp {
                at: 900,
                error: "too old".into(),
            };
            assert!(
                db.record_alert_attempt(&second[0].id, &gave_up)
                    .await
                    .unwrap()
            );
            // Settled: a late record changes nothing.
            assert!(
                !db.record_alert_attempt(&second[0].id, &retry)
                    .await
                    .unwrap()
            );
            let stats = db.alert_sink_stats(ALERT_SINK_SYSLOG).await.unwrap();
            assert_eq!(
                (
                    stats.oldest_pending,
                    stats.last_given_up,
                    stats.last_delivered
                ),
                (None, Some(900), None)
            );
            assert_eq!(
                db.alert_deliveries("a1").await.unwrap(),
                [("syslog".to_owned(), "failed".to_owned(), 2)]
            );
            assert_eq!(db.prune_alert_deliveries(101).await.unwrap(), 1);
        }
    });
}
