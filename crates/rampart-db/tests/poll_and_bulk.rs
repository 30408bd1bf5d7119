//! The poll's one-query read (`Db::poll_state`), bulk device import and the storage size, on
//! embedded SQLite and on PostgreSQL (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets;
//! without it these tests fail).

use rampart_db::DomainError;
use rampart_db::{Assignment, AuditLine, Db, DbError, DeviceFacts};
use rampart_testkit::databases::fresh_postgres;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh database on each backend: a new SQLite file, and a new PostgreSQL database.
async fn backends(dir: &std::path::Path, name: &str) -> Vec<Db> {
    backends_with_urls(dir, name)
        .await
        .into_iter()
        .map(|(db, _)| db)
        .collect()
}

/// The databases of [`backends`] and their URLs.
async fn backends_with_urls(dir: &std::path::Path, name: &str) -> Vec<(Db, String)> {
    let sqlite_url = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let sqlite = Db::connect(&sqlite_url).await.unwrap();
    let postgres_url = fresh_postgres(&format!("rampart_pb_{name}_{}", std::process::id())).await;
    let postgres = Db::connect(&postgres_url).await.unwrap();
    vec![(sqlite, sqlite_url), (postgres, postgres_url)]
}

fn facts(i: usize) -> DeviceFacts {
    DeviceFacts {
        hardware_id: format!("board-{}", i % 3),
        firmware_version: "1.0.0".into(),
        security_version: 2,
        region: "eu".into(),
        slots: serde_json::json!({"a": "good"})
            .as_object()
            .unwrap()
            .clone(),
        // Unsorted with a repeat: stored as a set.
        tags: vec!["z".into(), format!("t{}", i % 5), "z".into()],
        attributes: serde_json::json!({"n": i}).as_object().unwrap().clone(),
        boot_id: String::new(),
        slot_versions: None,
    }
}

#[test]
fn bulk_import_is_all_or_nothing_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in backends(dir.path(), "bulk").await {
            let empty = db.storage_bytes().await.unwrap();
            assert!(empty > 0);
            // 1,200 devices span several multi-row statements.
            let devices: Vec<(String, DeviceFacts)> =
                (0..1200).map(|i| (format!("d-{i:04}"), facts(i))).collect();
            db.insert_devices(&devices, 1000).await.unwrap();
            assert_eq!(db.device_count().await.unwrap(), 1200);
            let d = db.device("d-0007").await.unwrap().unwrap();
            let mut want = facts(7);
            want.tags = vec!["t2".into(), "z".into()];
            assert_eq!(d.facts, want);
            assert_eq!((d.first_seen, d.last_seen, d.revoked), (1000, 1000, false));
            assert!(db.storage_bytes().await.unwrap() > empty);

            // One existing id fails the whole batch.
            let again = vec![
                ("new-1".to_string(), facts(1)),
                ("d-0001".to_string(), facts(1)),
            ];
            assert!(db.insert_devices(&again, 1001).await.is_err());
            assert!(db.device("new-1").await.unwrap().is_none());
            assert_eq!(db.device_count().await.unwrap(), 1200);

            // Invalid facts are refused before anything is written.
            let mut bad = facts(2);
            bad.region = "x".repeat(300);
            let err = db
                .insert_devices(&[("new-2".to_string(), bad)], 1002)
                .await
                .unwrap_err();
            assert!(
                matches!(err, DbError::Domain(DomainError::Invalid(_))),
                "{err}"
            );
            db.insert_devices(&[], 1003).await.unwrap();
        }
    });
}

#[test]
fn poll_state_reads_revocation_and_assignment_together() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in backends(dir.path(), "poll").await {
            assert_eq!(db.poll_state("nobody").await.unwrap(), None);
            db.register_if_new("dev-1", 10).await.unwrap();
            db.register_if_new("dev-2", 10).await.unwrap();
            let state = db.poll_state("dev-1").await.unwrap().unwrap();
            assert!(!state.revoked);
            assert_eq!(state.assignment, None);

            let assignment = Assignment {
                id: "asg-1".into(),
                target: "fw-2.0.0.bin".into(),
                selector: serde_json::json!({"devices": ["dev-1"]}),
                created: 20,
                created_by: "token:test".into(),
                device_count: 1,
                update_type: "forced".into(),
                forced_at: 0,
                reimage: false,
            };
            let audit = |seq| AuditLine {
                seq,
                line: format!("{{\"seq\":{seq}}}"),
            };
            db.create_assignment(&assignment, &["dev-1".to_string()], &audit(1))
                .await
                .unwrap();
            let state = db.poll_state("dev-1").await.unwrap().unwrap();
            let a = state.assignment.expect("assigned");
            assert_eq!(a, db.device_assignment("dev-1").await.unwrap().unwrap());
            assert_eq!(
                (a.assignment_id.as_str(), a.target.as_str()),
                ("asg-1", "fw-2.0.0.bin")
            );
            assert_eq!(
                db.poll_state("dev-2").await.unwrap().unwrap().assignment,
                None
            );

            db.cancel_assignment("asg-1", 30, &audit(2)).await.unwrap();
            let cancelled = db
                .poll_state("dev-1")
                .await
                .unwrap()
                .unwrap()
                .assignment
                .unwrap();
            assert_eq!(cancelled.target, "");
            assert_eq!(cancelled.version, a.version + 1);

            db.set_revoked("dev-1", true).await.unwrap();
            assert!(db.poll_state("dev-1").await.unwrap().unwrap().revoked);
            assert!(!db.poll_state("dev-2").await.unwrap().unwrap().revoked);
            db.set_revoked("dev-1", false).await.unwrap();
            assert!(!db.poll_state("dev-1").await.unwrap().unwrap().revoked);
        }
    });
}

#[test]
fn a_reimage_assignment_reaches_the_poll_read_and_the_next_assignment_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in backends(dir.path(), "reimage").await {
            db.register_if_new("dev-1", 10).await.unwrap();
            let audit = |seq| AuditLine {
                seq,
                line: format!("{{\"seq\":{seq}}}"),
            };
            let mut reimage = Assignment {
                id: "rei-1".into(),
                target: "fw-1.0.0.bin".into(),
                selector: serde_json::json!({"devices": ["dev-1"]}),
                created: 20,
                created_by: "engine:reimage".into(),
                device_count: 1,
                update_type: "soft".into(),
                forced_at: 0,
                reimage: true,
            };
            // A re-image is forced by nature: a soft one is refused, nothing written.
            assert!(matches!(
                db.create_assignment(&reimage, &["dev-1".to_string()], &audit(1))
                    .await,
                Err(rampart_db::DbError::Domain(
                    rampart_db::DomainError::Invalid(_)
                ))
            ));
            assert_eq!(db.assignment("rei-1").await.unwrap(), None);
            reimage.update_type = "forced".into();
            db.create_assignment(&reimage, &["dev-1".to_string()], &audit(1))
                .await
                .unwrap();
            assert_eq!(db.assignment("rei-1").await.unwrap(), Some(reimage.clone()));
            let polled = db.poll_state("dev-1").await.unwrap().unwrap();
            assert!(polled.assignment.unwrap().reimage);
            // An ordinary assignment that replaces it is no re-image.
            let plain = Assignment {
                id: "asg-2".into(),
                reimage: false,
                ..reimage.clone()
            };
            db.create_assignment(&plain, &["dev-1".to_string()], &audit(2))
                .await
                .unwrap();
            let a = db.device_assignment("dev-1").await.unwrap().unwrap();
            assert_eq!((a.assignment_id.as_str(), a.reimage), ("asg-2", false));
        }
    });
}

#[test]
fn reports_within_one_second_keep_their_order_and_each_device_has_one_last_status() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for (db, url) in backends_with_urls(dir.path(), "order").await {
            let ids: Vec<String> = (0..3).map(|i| format!("dev-{i}")).collect();
            for id in &ids {
                db.register_if_new(id, 10).await.unwrap();
            }
            let assignment = Assignment {
                id: "asg-1".into(),
                target: "fw-2.0.0.bin".into(),
                selector: serde_json::json!({"group": "all"}),
                created: 20,
                created_by: "token:test".into(),
                device_count: 3,
                update_type: "download_only".into(),
                forced_at: 0,
                reimage: false,
            };
            let audit = AuditLine {
                seq: 1,
                line: "{\"seq\":1}".into(),
            };
            db.create_assignment(&assignment, &ids, &audit)
                .await
                .unwrap();
            let stored = db.device_assignment("dev-2").await.unwrap().unwrap();
            assert_eq!(stored.update_type, "download_only");

            // Every report in the same second, with ids that sort against arrival order: the
            // listing follows arrival, not the ids.
            let report = |device: &str, id: &str, status: &str| rampart_db::Report {
                id: id.into(),
                device_id: device.into(),
                assignment: "asg-1".into(),
                status: status.into(),
                progress: 0,
                details: serde_json::json!({}),
                created: 30,
            };
            for (id, status) in [("z", "downloading"), ("m", "rebooting"), ("a", "installed")] {
                db.insert_report(&report("dev-0", id, status))
                    .await
                    .unwrap();
            }
            for (id, status) in [("a", "downloading"), ("b", "failed")] {
                db.insert_report(&report("dev-1", id, status))
                    .await
                    .unwrap();
            }
            db.insert_report(&report("dev-2", "q", "downloading"))
                .await
                .unwrap();
            let newest: Vec<String> = db
                .recent_reports("dev-0", 10)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.status)
                .collect();
            assert_eq!(newest, ["installed", "rebooting", "downloading"]);
            let oldest: Vec<String> = db
                .reports_of("dev-0")
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id)
                .collect();
            assert_eq!(oldest, ["z", "m", "a"]);
            // Each device counted once, under the status it reported last.
            assert_eq!(
                db.assignment_status_counts("asg-1").await.unwrap(),
                [
                    ("downloading".to_string(), 1),
                    ("failed".to_string(), 1),
                    ("installed".to_string(), 1)
                ]
            );

            // A bulk assignment naming one unknown device writes nothing.
            let mut more = assignment.clone();
            more.id = "asg-2".into();
            let mut named = ids.clone();
            named.push("ghost".into());
            let err = db
                .create_assignment(
                    &more,
                    &named,
                    &AuditLine {
                        seq: 2,
                        line: "{\"seq\":2}".into(),
                    },
                )
                .await
                .unwrap_err();
            assert!(
                matches!(err, DbError::Domain(DomainError::UnknownDevice(ref d)) if d == "ghost"),
                "{err}"
            );
            assert_eq!(
                db.device_assignment("dev-0")
                    .await
                    .unwrap()
                    .unwrap()
                    .assignment_id,
                "asg-1"
            );

            // Reports arriving at once from one device each get their own number: after 16
            // concurrent reports in one second, the listing and the last status are one order.
            let mut tasks = Vec::new();
            for i in 0..16 {
                let db = db.clone();
                tasks.push(tokio::spawn(async move {
                    db.insert_report(&rampart_db::Report {
                        id: format!("burst-{i:02}"),
                        device_id: "dev-2".into(),
                        assignment: "asg-1".into(),
                        status: if i % 2 == 0 {
                            "installing"
                        } else {
                            "downloading"
                        }
                        .into(),
                        progress: 0,
                        details: serde_json::json!({}),
                        created: 40,
                    })
                    .await
                }));
            }
            for t in tasks {
                t.await.unwrap().unwrap();
            }
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            let row = sqlx::query(
                "SELECT COUNT(*) AS n, COUNT(DISTINCT seq) AS distinct_seq FROM reports WHERE device_id = 'dev-2'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            use sqlx::Row as _;
            let (n, distinct): (i64, i64) =
                (row.try_get("n").unwrap(), row.try_get("distinct_seq").unwrap());
            assert_eq!((n, distinct), (17, 17), "every report has its own number");
            pool.close().await;
        }
    });
}
