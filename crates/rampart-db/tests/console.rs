//! What the web console stores and reads, on both backends: sessions (expiry, idle limit, the
//! per-token cap, revocation, logout) and the fleet page's queries (counts per column and
//! status, id search, status filters, keyset pages).

mod support;

use rampart_db::{
    ApiToken, AuditLine, ConsoleSession, Db, DeviceFacts, DeviceFilter, DevicePage, NewQuarantine,
    SessionLimits,
};
use support::{fresh_databases, rt};

fn audit(seq: u64) -> AuditLine {
    AuditLine {
        seq,
        line: format!("{{\"seq\":{seq}}}"),
    }
}

const LIMITS: SessionLimits = SessionLimits {
    idle_secs: 600,
    max_per_token: 3,
};

async fn token(db: &Db, id: &str, role: &str, seq: u64) {
    let token = ApiToken {
        id: id.into(),
        role: role.into(),
        name: "t".into(),
        created: 1,
        revoked: false,
    };
    db.create_token(&token, &format!("secret-of-{id}"), &audit(seq))
        .await
        .unwrap();
}

fn session(digest: &str, token: &str, created: i64) -> ConsoleSession {
    ConsoleSession {
        id_sha256: digest.into(),
        token_id: token.into(),
        role: "operator".into(),
        created,
        last_used: created,
        expires: created + 3600,
    }
}

#[test]
fn sessions_expire_idle_out_are_capped_and_die_with_their_token() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in fresh_databases(dir.path(), "rampart", "console_sessions").await {
            let b = db.backend();
            token(&db, "tok-a", "operator", 1).await;
            token(&db, "tok-b", "viewer", 2).await;
            db.create_console_session(&session("s1", "tok-a", 1000), LIMITS, &audit(3))
                .await
                .unwrap();
            let (s, t) = db
                .console_session("s1", 1001, LIMITS)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                (s.token_id.as_str(), t.role.as_str()),
                ("tok-a", "operator")
            );
            assert!(
                db.console_session("nope", 1001, LIMITS)
                    .await
                    .unwrap()
                    .is_none()
            );

            // Idle: unused for the idle limit, it is gone; used in time, it lives on.
            assert!(
                db.console_session("s1", 1000 + 600, LIMITS)
                    .await
                    .unwrap()
                    .is_none(),
                "{b:?}: idle for the whole limit"
            );
            db.touch_console_session("s1", 1500).await.unwrap();
            db.touch_console_session("s1", 1400).await.unwrap();
            let (s, _) = db
                .console_session("s1", 2000, LIMITS)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(s.last_used, 1500, "{b:?}: last use only moves forward");
            // Absolute: however recently used, it ends at `expires`.
            db.touch_console_session("s1", 4599).await.unwrap();
            assert!(
                db.console_session("s1", 4599, LIMITS)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                db.console_session("s1", 4600, LIMITS)
                    .await
                    .unwrap()
                    .is_none(),
                "{b:?}: past its absolute expiry"
            );

            // The cap: a fourth login ends the token's oldest; other tokens are untouched.
            db.create_console_session(&session("b1", "tok-b", 5000), LIMITS, &audit(4))
                .await
                .unwrap();
            let mut seq = 5;
            for (i, digest) in ["a1", "a2", "a3", "a4"].iter().enumerate() {
                let evicted = db
                    .create_console_session(
                        &session(digest, "tok-a", 5000 + i as i64),
                        LIMITS,
                        &audit(seq),
                    )
                    .await
                    .unwrap();
                seq += 1;
                assert_eq!(evicted, u64::from(i == 3), "{b:?}: login {digest}");
            }
            assert_eq!(db.console_session_count("tok-a").await.unwrap(), 3, "{b:?}");
            assert!(
                db.console_session("a1", 5010, LIMITS)
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(
                db.console_session("a4", 5010, LIMITS)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert!(
                db.console_session("b1", 5010, LIMITS)
                    .await
                    .unwrap()
                    .is_some()
            );

            // Logout ends one session; ending it again writes nothing.
            assert!(db.end_console_session("a4", &audit(seq)).await.unwrap());
            assert!(!db.end_console_session("a4", &audit(seq + 1)).await.unwrap());
            assert!(
                db.console_session("a4", 5010, LIMITS)
                    .await
                    .unwrap()
                    .is_none()
            );

            // A revoked token's sessions are refused at once.
            assert!(db.revoke_token("tok-b", &audit(seq + 1)).await.unwrap());
            assert!(
                db.console_session("b1", 5010, LIMITS)
                    .await
                    .unwrap()
                    .is_none(),
                "{b:?}: revoked token"
            );
        }
    });
}

fn facts(hw: &str, version: &str, region: &str) -> DeviceFacts {
    DeviceFacts {
        hardware_id: hw.into(),
        firmware_version: version.into(),
        security_version: 1,
        region: region.into(),
        ..DeviceFacts::default()
    }
}

#[test]
fn fleet_counts_search_status_filters_and_keyset_pages() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in fresh_databases(dir.path(), "rampart", "console_fleet").await {
            let b = db.backend();
            for (id, hw, version, region) in [
                ("dev-001", "board-a", "1.0.0", "eu"),
                ("dev-002", "board-a", "2.0.0", "eu"),
                ("DEV-003", "board-b", "2.0.0", "us"),
                ("dev_04", "board-a", "2.0.0", "us"),
                ("gw-%1", "board-c", "2.0.0", "us"),
            ] {
                db.upsert_device(id, &facts(hw, version, region), 10)
                    .await
                    .unwrap();
            }
            db.set_revoked("dev-002", true).await.unwrap();
            db.quarantine_device(
                &NewQuarantine {
                    device_id: "dev-001".into(),
                    incident_id: String::new(),
                    actor: "token:t".into(),
                    reason: "test".into(),
                    since: 11,
                },
                &audit(1),
            )
            .await
            .unwrap();

            let counts = db.fleet_counts().await.unwrap();
            assert_eq!(counts.devices, 5, "{b:?}");
            assert_eq!(
                counts.versions,
                [("2.0.0".to_owned(), 4), ("1.0.0".to_owned(), 1)],
                "{b:?}: largest first"
            );
            assert_eq!(counts.hardware[0], ("board-a".to_owned(), 3), "{b:?}");
            assert_eq!(counts.regions, [("us".to_owned(), 3), ("eu".to_owned(), 2)]);
            assert_eq!((counts.revoked, counts.quarantined), (1, 1), "{b:?}");

            let ids = |filter: DeviceFilter, page: DevicePage<'static>, limit: i64| {
                let db = db.clone();
                async move {
                    db.list_devices_from(&filter, page, limit)
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|d| d.id)
                        .collect::<Vec<_>>()
                }
            };
            let search = |text: &str| DeviceFilter {
                id_contains: Some(text.into()),
                ..DeviceFilter::default()
            };
            // Case-insensitive, anywhere in the id; `%` and `_` are literal characters.
            let mut found = ids(search("dev-00"), DevicePage::Offset(0), 10).await;
            found.sort();
            assert_eq!(found, ["DEV-003", "dev-001", "dev-002"], "{b:?}");
            assert_eq!(
                ids(search("_"), DevicePage::Offset(0), 10).await,
                ["dev_04"]
            );
            assert_eq!(ids(search("%"), DevicePage::Offset(0), 10).await, ["gw-%1"]);
            let status = |revoked, quarantined| DeviceFilter {
                revoked,
                quarantined,
                ..DeviceFilter::default()
            };
            assert_eq!(
                ids(status(Some(true), None), DevicePage::Offset(0), 10).await,
                ["dev-002"]
            );
            assert_eq!(
                ids(status(None, Some(true)), DevicePage::Offset(0), 10).await,
                ["dev-001"]
            );
            let active = ids(status(Some(false), Some(false)), DevicePage::Offset(0), 10).await;
            assert_eq!(active.len(), 3, "{b:?}: {active:?}");
            assert!(!active.iter().any(|id| id == "dev-001" || id == "dev-002"));

            // Keyset pages walk the whole (filtered) fleet in id order, with no repeats.
            let filter = DeviceFilter {
                region: Some("us".into()),
                ..DeviceFilter::default()
            };
            let all = ids(filter.clone(), DevicePage::Offset(0), 10).await;
            assert_eq!(all.len(), 3, "{b:?}");
            let first = ids(filter.clone(), DevicePage::Offset(0), 2).await;
            let last = first.last().unwrap().clone();
            let last: &'static str = Box::leak(last.into_boxed_str());
            let second = ids(filter, DevicePage::After(last), 2).await;
            assert_eq!([first, second].concat(), all, "{b:?}");
        }
    });
}
