//! The same storage tests against embedded SQLite and PostgreSQL. PostgreSQL comes from
//! RAMPART_TEST_POSTGRES_URL (scripts/test.sh starts one); without it these tests fail.

use rampart_db::DomainError;
use rampart_db::StorageError;
use rampart_db::{Db, DbError, DeviceFacts, DeviceFilter, Report};
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
    let sqlite = Db::connect(&format!(
        "sqlite://{}",
        dir.join(format!("{name}.db")).display()
    ))
    .await
    .unwrap();
    let postgres_url = fresh_postgres(&format!("rampart_{name}_{}", std::process::id())).await;
    let postgres = Db::connect(&postgres_url).await.unwrap();
    vec![sqlite, postgres]
}

fn facts(hw: &str, version: &str, sv: u64, tags: &[&str]) -> DeviceFacts {
    DeviceFacts {
        hardware_id: hw.into(),
        firmware_version: version.into(),
        security_version: sv,
        region: "eu".into(),
        slots: serde_json::json!({"a": "good", "b": "inactive"})
            .as_object()
            .unwrap()
            .clone(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        attributes: serde_json::json!({"site": "plant-7"})
            .as_object()
            .unwrap()
            .clone(),
        boot_id: String::new(),
        slot_versions: None,
    }
}

#[test]
fn inventory_filters_counts_and_reports_work_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in backends(dir.path(), "inventory").await {
            let b = db.backend();
            assert!(db.register_if_new("dev-1", 100).await.unwrap(), "{b:?}");
            assert!(
                !db.register_if_new("dev-1", 101).await.unwrap(),
                "{b:?}: second contact is not new"
            );
            db.upsert_device(
                "dev-1",
                &facts("board-a", "1.0.0", 1, &["canary", "line-3"]),
                110,
            )
            .await
            .unwrap();
            db.upsert_device("dev-2", &facts("board-a", "1.1.0", 2, &["line-3"]), 120)
                .await
                .unwrap();
            db.upsert_device("dev-3", &facts("board-b", "1.1.0", 2, &[]), 130)
                .await
                .unwrap();
            let d1 = db.device("dev-1").await.unwrap().unwrap();
            assert_eq!(d1.first_seen, 100, "{b:?}");
            assert_eq!(d1.facts.tags, vec!["canary", "line-3"], "{b:?}");
            assert_eq!(d1.facts.slots["a"], "good");
            let all = db
                .list_devices(&DeviceFilter::default(), 100, 0)
                .await
                .unwrap();
            assert_eq!(
                all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
                ["dev-1", "dev-2", "dev-3"],
                "{b:?}"
            );
            let f = DeviceFilter {
                tag: Some("line-3".into()),
                hardware_id: Some("board-a".into()),
                ..Default::default()
            };
            assert_eq!(db.list_devices(&f, 100, 0).await.unwrap().len(), 2, "{b:?}");
            let f = DeviceFilter {
                firmware_version: Some("1.1.0".into()),
                min_security_version: Some(2),
                ..Default::default()
            };
            assert_eq!(db.list_devices(&f, 100, 0).await.unwrap().len(), 2, "{b:?}");
            let f = DeviceFilter {
                attribute: Some(("site".into(), "plant-7".into())),
                ..Default::default()
            };
            assert_eq!(
                db.list_devices(&f, 2, 1)
                    .await
                    .unwrap()
                    .iter()
                    .map(|d| d.id.clone())
                    .collect::<Vec<_>>(),
                ["dev-2", "dev-3"],
                "{b:?}: paging"
            );
            // Paging done by the database (no JSON filter), and a typed security-version bound.
            let page = |limit, offset| {
                let db = db.clone();
                async move {
                    db.list_devices(&DeviceFilter::default(), limit, offset)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|d| d.id)
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(page(1, 1).await, ["dev-2"], "{b:?}: SQL paging");
            assert!(page(10, 3).await.is_empty(), "{b:?}");
            let f = DeviceFilter {
                min_security_version: Some(10),
                ..Default::default()
            };
            assert!(
                db.list_devices(&f, 10, 0).await.unwrap().is_empty(),
                "{b:?}"
            );
            // Revoked or not.
            db.set_revoked("dev-2", true).await.unwrap();
            let ids = |revoked| {
                let db = db.clone();
                async move {
                    let f = DeviceFilter {
                        revoked: Some(revoked),
                        ..Default::default()
                    };
                    db.list_devices(&f, 10, 0)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|d| d.id)
                        .collect::<Vec<_>>()
                }
            };
            assert_eq!(ids(true).await, ["dev-2"], "{b:?}");
            assert_eq!(ids(false).await, ["dev-1", "dev-3"], "{b:?}");
            db.set_revoked("dev-2", false).await.unwrap();
            assert_eq!(
                db.version_counts().await.unwrap(),
                vec![("1.0.0".to_string(), 1), ("1.1.0".to_string(), 2)],
                "{b:?}"
            );

            // Last-seen updates are batched and never go backwards.
            db.touch_last_seen(&[("dev-1".into(), 500), ("dev-2".into(), 50)])
                .await
                .unwrap();
            assert_eq!(db.device("dev-1").await.unwrap().unwrap().last_seen, 500);
            assert_eq!(db.device("dev-2").await.unwrap().unwrap().last_seen, 120);

            let r = Report {
                id: "r-1".into(),
                device_id: "dev-1".into(),
                assignment: "a-1".into(),
                status: "installed".into(),
                progress: 100,
                details: serde_json::json!({"log": "ok"}),
                created: 600,
            };
            db.insert_report(&r).await.unwrap();
            assert_eq!(
                db.reports_of("dev-1").await.unwrap(),
                vec![r.clone()],
                "{b:?}"
            );
            assert!(db.report(&r.device_id, "r-1").await.unwrap().is_some());
            // Bad input: unknown device, duplicate id, oversized fields; nothing half-written.
            let mut bad = r.clone();
            bad.id = "r-2".into();
            bad.device_id = "nobody".into();
            assert!(
                matches!(
                    db.insert_report(&bad).await,
                    Err(DbError::Domain(DomainError::UnknownDevice(_)))
                ),
                "{b:?}"
            );
            assert!(
                db.insert_report(&r).await.is_err(),
                "{b:?}: duplicate report id"
            );
            let mut huge = facts("board-a", "1", 1, &[]);
            huge.attributes
                .insert("x".into(), serde_json::Value::String("y".repeat(20_000)));
            assert!(
                matches!(
                    db.upsert_device("dev-4", &huge, 1).await,
                    Err(DbError::Domain(DomainError::Invalid(_)))
                ),
                "{b:?}"
            );
            assert!(
                db.device("dev-4").await.unwrap().is_none(),
                "{b:?}: nothing half-written"
            );
            let control = facts("board\u{0}a", "1", 1, &[]);
            assert!(db.upsert_device("dev-5", &control, 1).await.is_err());
            db.set_revoked("dev-2", true).await.unwrap();
            assert!(db.device("dev-2").await.unwrap().unwrap().revoked);
            assert!(matches!(
                db.set_revoked("nobody", true).await,
                Err(DbError::Domain(DomainError::UnknownDevice(_)))
            ));
            db.close().await;
        }
    });
}

#[test]
fn reopening_runs_migrations_once_and_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let path = format!("sqlite://{}", dir.path().join("reopen.db").display());
        let db = Db::connect(&path).await.unwrap();
        db.upsert_device("dev-1", &facts("board-a", "1.0.0", 1, &[]), 1)
            .await
            .unwrap();
        db.close().await;
        let db = Db::connect(&path).await.unwrap();
        assert_eq!(db.device_count().await.unwrap(), 1);
        assert!(matches!(
            Db::connect("mysql://x").await,
            Err(DbError::Storage(StorageError::UnsupportedUrl(_)))
        ));
    });
}

#[test]
fn a_firmware_change_is_stamped_and_a_repeat_poll_is_not() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in backends(dir.path(), "firmware_changes").await {
            let ids = |rows: Vec<(rampart_db::InventoryRow, i64)>| {
                rows.into_iter()
                    .map(|(r, at)| (r.device_id, r.firmware_version, at))
                    .collect::<Vec<_>>()
            };
            db.upsert_device("fc-1", &facts("board-a", "1.0.0", 1, &[]), 100)
                .await
                .unwrap();
            db.upsert_device("fc-2", &facts("board-a", "1.0.0", 1, &[]), 100)
                .await
                .unwrap();
            // The same facts again: not a change.
            db.upsert_device("fc-1", &facts("board-a", "1.0.0", 1, &[]), 150)
                .await
                .unwrap();
            assert_eq!(
                ids(db.firmware_changed_since(101, 100).await.unwrap()),
                vec![]
            );
            // Another version, then other slot states: changes, stamped with their time.
            db.upsert_device("fc-1", &facts("board-a", "6.6.6", 1, &[]), 200)
                .await
                .unwrap();
            let mut slots_changed = facts("board-a", "1.0.0", 1, &[]);
            slots_changed.slots = serde_json::json!({"a": "bad", "b": "active"})
                .as_object()
                .unwrap()
                .clone();
            slots_changed.boot_id = "boot-2".into();
            db.upsert_device("fc-2", &slots_changed, 210).await.unwrap();
            assert_eq!(
                ids(db.firmware_changed_since(101, 100).await.unwrap()),
                vec![
                    ("fc-1".into(), "6.6.6".into(), 200),
                    ("fc-2".into(), "1.0.0".into(), 210)
                ]
            );
            assert_eq!(
                db.device("fc-2").await.unwrap().unwrap().facts.boot_id,
                "boot-2"
            );
            db.close().await;
        }
    });
}
