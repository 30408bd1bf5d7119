//! Supply-chain risk storage (migration 0019, decision 0043) on embedded SQLite and PostgreSQL
//! (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it these tests fail):
//! incremental advisory import (unchanged, replaced, withdrawn), alias lookup, and release
//! components stored per SBOM digest.

mod support;

use rampart_db::{AdvisoryImport, AuditLine, Db, ImportCounts};
use rampart_vuln::component::Component;

fn advisory(id: &str, modified: &str, withdrawn: Option<&str>, aliases: &[&str]) -> AdvisoryImport {
    AdvisoryImport {
        id: id.into(),
        modified: modified.into(),
        withdrawn: withdrawn.map(str::to_owned),
        aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
        record: format!(r#"{{"id":"{id}","modified":"{modified}"}}"#),
    }
}

async fn import(db: &Db, seq: u64, batch: &[AdvisoryImport]) -> ImportCounts {
    let line = AuditLine {
        seq,
        line: format!(r#"{{"seq":{seq}}}"#),
    };
    db.import_advisories(batch, 1_000 + seq as i64, &line)
        .await
        .unwrap()
}

#[test]
fn a_re_import_replaces_changed_advisories_keeps_unchanged_ones_and_withdraws() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "risk", "import").await {
            let first = [
                advisory("PYSEC-1", "2024-01-01T00:00:00Z", None, &["CVE-2024-1"]),
                advisory(
                    "PYSEC-2",
                    "2024-01-01T00:00:00Z",
                    None,
                    &["CVE-2024-2", "GHSA-x"],
                ),
            ];
            assert_eq!(db.advisory_feed_version().await.unwrap(), 0);
            let counts = import(&db, 1, &first).await;
            assert_eq!((counts.added, counts.replaced, counts.unchanged), (2, 0, 0));
            assert_eq!(db.advisory_feed_version().await.unwrap(), 1);
            // The same feed again changes nothing, not even the feed's version (a cached
            // index stays valid).
            let again = import(&db, 2, &first).await;
            assert_eq!((again.added, again.replaced, again.unchanged), (0, 0, 2));
            assert_eq!(db.advisory_feed_version().await.unwrap(), 1);
            // PYSEC-2 withdrawn: replaced, counted withdrawn, out of matching, still readable.
            let withdrawn = import(
                &db,
                3,
                &[advisory(
                    "PYSEC-2",
                    "2024-02-01T00:00:00Z",
                    Some("2024-02-01T00:00:00Z"),
                    &["CVE-2024-2"],
                )],
            )
            .await;
            assert_eq!((withdrawn.replaced, withdrawn.withdrawn), (1, 1));
            assert_eq!(
                db.advisory_feed_version().await.unwrap(),
                2,
                "a withdrawal changes the feed: cached indexes are stale"
            );
            let matching: Vec<String> = db
                .advisories_for_matching()
                .await
                .unwrap()
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            assert_eq!(matching, ["PYSEC-1"]);
            assert_eq!(db.advisory_counts().await.unwrap(), (1, 1));
            let stored = db.advisories_named("PYSEC-2").await.unwrap();
            assert_eq!(stored.len(), 1);
            assert_eq!(stored[0].withdrawn.as_deref(), Some("2024-02-01T00:00:00Z"));
            assert_eq!(stored[0].modified, "2024-02-01T00:00:00Z");
            // Aliases follow the replacement: GHSA-x is gone, CVE-2024-2 still finds it.
            assert!(db.advisories_named("GHSA-x").await.unwrap().is_empty());
            assert_eq!(
                db.advisories_named("CVE-2024-2").await.unwrap()[0].id,
                "PYSEC-2"
            );
            assert_eq!(
                db.advisories_named("CVE-2024-1").await.unwrap()[0].id,
                "PYSEC-1"
            );
            assert!(db.advisories_named("CVE-1999-0").await.unwrap().is_empty());
        }
    });
}

#[test]
fn an_oversized_import_is_refused_before_anything_is_written() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "risk", "oversized").await {
            let batch: Vec<AdvisoryImport> = (0..=rampart_db::MAX_ADVISORIES_PER_IMPORT)
                .map(|i| advisory(&format!("X-{i}"), "2024-01-01T00:00:00Z", None, &[]))
                .collect();
            let line = AuditLine {
                seq: 1,
                line: "{}".into(),
            };
            let err = db.import_advisories(&batch, 1, &line).await.unwrap_err();
            assert!(err.to_string().contains("smaller batches"), "{err}");
            assert_eq!(db.advisory_counts().await.unwrap(), (0, 0));
        }
    });
}

#[test]
fn release_components_are_kept_per_sbom_digest() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "risk", "components").await {
            let components = vec![
                Component {
                    reference: "pkg:pypi/requests@2.19.0".into(),
                    name: "requests".into(),
                    version: "2.19.0".into(),
                    purl: Some("pkg:pypi/requests@2.19.0".into()),
                    cpe: None,
                    group: None,
                },
                Component {
                    reference: "busybox".into(),
                    name: "busybox".into(),
                    version: "1.36.1".into(),
                    purl: None,
                    cpe: Some("cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*".into()),
                    group: Some("core".into()),
                },
            ];
            assert_eq!(db.release_components("fw.bin", "aa").await.unwrap(), None);
            db.store_release_components("fw.bin", "aa", &components, 5)
                .await
                .unwrap();
            assert_eq!(
                db.release_components("fw.bin", "aa").await.unwrap(),
                Some(components.clone())
            );
            // Another SBOM digest for the target: not indexed until stored again.
            assert_eq!(db.release_components("fw.bin", "bb").await.unwrap(), None);
            db.store_release_components("fw.bin", "bb", &components[..1], 6)
                .await
                .unwrap();
            assert_eq!(
                db.release_components("fw.bin", "bb").await.unwrap(),
                Some(components[..1].to_vec())
            );
            assert_eq!(db.release_components("fw.bin", "aa").await.unwrap(), None);
            // Two assessments indexing one release at once (the risk watch and a posture
            // request): both succeed and the components are stored once.
            let many: Vec<Component> = (0..200)
                .map(|i| Component {
                    reference: format!("c{i}"),
                    name: format!("c{i}"),
                    ..components[0].clone()
                })
                .collect();
            for round in 0..5 {
                let target = format!("fw-{round}.bin");
                let (a, b, c) = tokio::join!(
                    db.store_release_components(&target, "cc", &many, 7),
                    db.store_release_components(&target, "cc", &many, 7),
                    db.store_release_components(&target, "cc", &many, 7),
                );
                a.unwrap();
                b.unwrap();
                c.unwrap();
                assert_eq!(
                    db.release_components(&target, "cc").await.unwrap(),
                    Some(many.clone())
                );
            }
        }
    });
}

#[test]
fn risk_devices_are_read_in_keyset_pages_with_their_own_tags() {
    support::rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        for db in support::fresh_databases(dir.path(), "risk", "devices").await {
            for i in 0..25 {
                let facts = rampart_db::DeviceFacts {
                    hardware_id: format!("board-{}", i % 2),
                    firmware_version: "1.0.0".into(),
                    region: if i % 3 == 0 { "eu" } else { "us" }.into(),
                    tags: (0..i % 4).map(|t| format!("t{t}")).collect(),
                    ..Default::default()
                };
                db.upsert_device(&format!("dev-{i:02}"), &facts, 1)
                    .await
                    .unwrap();
            }
            // Pages of 10: every device once, in order, each with exactly its tags.
            let mut all = Vec::new();
            let mut after = String::new();
            loop {
                let page = db.risk_devices_after(&after, 10).await.unwrap();
                let Some(last) = page.last() else { break };
                after = last.id.clone();
                all.extend(page);
            }
            assert_eq!(all.len(), 25);
            for (i, d) in all.iter().enumerate() {
                assert_eq!(d.id, format!("dev-{i:02}"));
                let want: Vec<String> = (0..i % 4).map(|t| format!("t{t}")).collect();
                assert_eq!(d.tags, want, "{}", d.id);
                assert_eq!(d.region, if i % 3 == 0 { "eu" } else { "us" });
            }
            db.close().await;
        }
    });
}
