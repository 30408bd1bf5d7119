//! What each slot holds (migration 0023, decision 0049) on embedded SQLite and PostgreSQL
//! (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it these tests fail):
//! stored with the facts, read by the device and risk reads, cleared when a poll no longer
//! says, absent for a device registered without facts (hawkBit first contact), bounded.

mod support;

use std::collections::BTreeMap;

use rampart_db::{DbError, DeviceFacts, DomainError};

fn facts(running: &str, versions: Option<&[(&str, &str)]>) -> DeviceFacts {
    DeviceFacts {
        hardware_id: "board-a".into(),
        firmware_version: running.into(),
        slots: serde_json::json!({"a": "good", "b": "active"})
            .as_object()
            .unwrap()
            .clone(),
        slot_versions: versions.map(|v| {
            v.iter()
                .map(|(s, v)| ((*s).to_owned(), (*v).to_owned()))
                .collect()
        }),
        ..Default::default()
    }
}

#[test]
fn slot_versions_are_stored_with_the_facts_and_read_by_risk() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "slots", "store").await {
            let told = facts("2.0.0", Some(&[("a", "1.0.0"), ("b", "2.0.0")]));
            db.upsert_device("dev-1", &told, 1).await.unwrap();
            let stored = db.device("dev-1").await.unwrap().unwrap();
            assert_eq!(stored.facts.slot_versions, told.slot_versions);
            let page = db.risk_devices_after("", 10).await.unwrap();
            assert_eq!(page[0].slot_versions, told.slot_versions);
            assert_eq!(page[0].slots["b"], "active");

            // A poll that no longer says (an agent downgraded to one that does not report
            // them): not said any more, rather than a stale answer kept.
            db.upsert_device("dev-1", &facts("2.0.0", None), 2)
                .await
                .unwrap();
            let page = db.risk_devices_after("", 10).await.unwrap();
            assert_eq!(page[0].slot_versions, None);
            // `{}`: said, no version known.
            db.upsert_device("dev-1", &facts("2.0.0", Some(&[])), 3)
                .await
                .unwrap();
            let page = db.risk_devices_after("", 10).await.unwrap();
            assert_eq!(page[0].slot_versions, Some(BTreeMap::new()));

            // A device known without facts (a hawkBit client's first contact): not said.
            assert!(db.register_if_new("hawkbit-1", 4).await.unwrap());
            let page = db.risk_devices_after("dev-1", 10).await.unwrap();
            assert_eq!(page[0].id, "hawkbit-1");
            assert_eq!(page[0].slot_versions, None);
            db.close().await;
        }
    });
}

#[test]
fn storage_refuses_slot_versions_out_of_bounds() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "slots", "bounds").await {
            let nine: Vec<(String, String)> = (0..9)
                .map(|i| (format!("s{i}"), format!("1.0.{i}")))
                .collect();
            let nine: Vec<(&str, &str)> =
                nine.iter().map(|(s, v)| (s.as_str(), v.as_str())).collect();
            let long = "9".repeat(rampart_protocol::MAX_SLOT_VERSION_LEN + 1);
            for bad in [
                facts("1", Some(&nine)),
                facts("1", Some(&[("a", long.as_str())])),
                facts("1", Some(&[("a", "")])),
                facts("1", Some(&[("a\n", "1.0")])),
            ] {
                match db.upsert_device("dev-bad", &bad, 1).await {
                    Err(DbError::Domain(DomainError::Invalid(m))) => {
                        assert!(m.contains("slot"), "{m}")
                    }
                    other => panic!("expected a refusal, got {other:?}"),
                }
            }
            assert!(db.device("dev-bad").await.unwrap().is_none());
            db.close().await;
        }
    });
}
