//! One device certificate once stored 10,792 reports in 15 s: a device's stored reports are
//! bounded. Past the quota its oldest progress reports are deleted, its results never are, and
//! when results alone fill the quota further reports are refused (`DomainError::Quota`). On
//! embedded SQLite and on PostgreSQL (RAMPART_TEST_POSTGRES_URL, set by scripts/test.sh).

mod support;

use rampart_db::DomainError;
use rampart_db::{
    DbError, DeviceFacts, PROGRESS_REPORTS_KEPT, REPORT_QUOTA_CHECK_EVERY, REPORTS_PER_DEVICE,
    Report,
};

fn report(id: String, status: &str, created: i64) -> Report {
    Report {
        id,
        device_id: "dev-noisy".into(),
        assignment: "asg-1".into(),
        status: status.into(),
        progress: 50,
        details: serde_json::json!({}),
        created,
    }
}

#[test]
fn a_devices_reports_are_bounded_progress_is_compacted_and_results_are_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for db in support::fresh_databases(dir.path(), "rq", "quota").await {
            let facts = DeviceFacts {
                hardware_id: "board-a".into(),
                firmware_version: "1.0.0".into(),
                ..DeviceFacts::default()
            };
            db.insert_devices(&[("dev-noisy".to_string(), facts)], 1)
                .await
                .unwrap();
            // A few results first, then a flood of progress reports well past the quota.
            let results = 10;
            for i in 0..results {
                db.insert_report(&report(format!("result-{i}"), "installed", 10))
                    .await
                    .unwrap();
            }
            let flood = REPORTS_PER_DEVICE + 2 * REPORT_QUOTA_CHECK_EVERY;
            for i in 0..flood {
                db.insert_report(&report(format!("progress-{i:05}"), "downloading", 20 + i))
                    .await
                    .unwrap();
            }
            let stored = db.reports_of("dev-noisy").await.unwrap();
            assert!(
                (stored.len() as i64) <= REPORTS_PER_DEVICE + REPORT_QUOTA_CHECK_EVERY,
                "{} reports stored, quota {REPORTS_PER_DEVICE}",
                stored.len()
            );
            // Every result is still there, and so are the newest progress reports.
            let kept_results = stored.iter().filter(|r| r.status == "installed").count();
            assert_eq!(kept_results, results as usize);
            let newest = format!("progress-{:05}", flood - 1);
            assert!(stored.iter().any(|r| r.id == newest));
            let progress = stored.len() - kept_results;
            assert!(progress as i64 >= PROGRESS_REPORTS_KEPT);

            // Results alone past the quota: refused, not dropped (the device keeps them queued).
            let mut refused = None;
            for i in 0..(REPORTS_PER_DEVICE + 2 * REPORT_QUOTA_CHECK_EVERY) {
                match db
                    .insert_report(&report(format!("final-{i:05}"), "failed", 100_000 + i))
                    .await
                {
                    Ok(()) => {}
                    Err(DbError::Domain(DomainError::Quota(message))) => {
                        refused = Some((i, message));
                        break;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            let (at, message) = refused.expect("results past the quota are refused");
            assert!(message.contains("quota"), "{message}");
            let stored = db.reports_of("dev-noisy").await.unwrap();
            assert!((stored.len() as i64) <= REPORTS_PER_DEVICE + REPORT_QUOTA_CHECK_EVERY);
            // No result was deleted to make room: all earlier results are still stored.
            let finals = stored.iter().filter(|r| r.status == "failed").count() as i64;
            assert_eq!(finals, at);
            assert_eq!(
                stored.iter().filter(|r| r.status == "installed").count(),
                results as usize
            );
            db.close().await;
        }
    });
}
