//! The poll's one-query read (`Db::poll_state`), bulk device import and the storage size, on
//! embedded SQLite and on PostgreSQL (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets;
//! without it these tests fail).

use rampart_db::{Assignment, AuditLine, Db, DbError, DeviceFacts};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A fresh database on each backend: a new SQLite file, and a new PostgreSQL database.
async fn backends(dir: &std::path::Path, name: &str) -> Vec<Db> {
    let sqlite = Db::connect(&format!(
        "sqlite://{}",
        dir.join(format!("{name}.db")).display()
    ))
    .await
    .unwrap();
    let admin = std::env::var("RAMPART_TEST_POSTGRES_URL")
        .expect("RAMPART_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL (scripts/start-postgres.sh)");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .expect("PostgreSQL reachable at RAMPART_TEST_POSTGRES_URL");
    let db_name = format!("rampart_pb_{name}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {db_name}"),
        format!("CREATE DATABASE {db_name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    let (base, _) = admin.rsplit_once('/').unwrap();
    let postgres = Db::connect(&format!("{base}/{db_name}")).await.unwrap();
    vec![sqlite, postgres]
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
            assert!(matches!(err, DbError::Invalid(_)), "{err}");
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
