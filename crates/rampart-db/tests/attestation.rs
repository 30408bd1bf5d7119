//! Attestation storage (migration 0010) on embedded SQLite and on PostgreSQL (from
//! RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it these tests fail).

mod support;

use rampart_db::{
    ApprovedEk, AttestationKey, AuditLine, CheckOutcome, CheckResult, Db, EkBasis, NonceClaim,
    PendingEnrolment, QuoteCounters, SecurityEvent,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn audit(seq: u64) -> AuditLine {
    AuditLine {
        seq,
        line: format!("{{\"seq\":{seq}}}"),
    }
}

fn key(device: &str, byte: u8) -> AttestationKey {
    AttestationKey {
        device_id: device.into(),
        ak_public: vec![byte; 90],
        ak_name: [vec![0x00, 0x0b], vec![byte; 32]].concat(),
        ek_digest: "ab".repeat(32),
        ek_basis: EkBasis::Approved,
        enrolled_at: 0,
    }
}

fn event(id: &str, device: &str, at: i64) -> SecurityEvent {
    SecurityEvent {
        id: id.into(),
        kind: "attestation.failed".into(),
        device_id: device.into(),
        detail: serde_json::json!({"reason": "bad signature"}),
        created: at,
    }
}

const PASSED: fn(u32) -> CheckResult = |restart| CheckResult::Passed {
    release: "board-a/fw-1.2.0.img".into(),
    counters: QuoteCounters {
        reset_count: 3,
        restart_count: restart,
        clock: 1_000,
    },
};

async fn databases(dir: &std::path::Path, name: &str) -> Vec<Db> {
    let dbs = support::fresh_databases(dir, "attest", name).await;
    for db in &dbs {
        for device in ["dev-1", "dev-2"] {
            db.register_if_new(device, 1).await.unwrap();
        }
    }
    dbs
}

#[test]
fn enrolment_challenges_are_single_use_per_device_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in databases(dir.path(), "challenges").await {
            let b = db.backend();
            let pending = |id: &str, device: &str, expires_at| PendingEnrolment {
                challenge_id: id.into(),
                key: key(device, 7),
                secret_digest: [9; 32],
                expires_at,
            };
            db.insert_enrolment_challenge(&pending("c1", "dev-1", 100))
                .await
                .unwrap();
            // Another device cannot answer dev-1's challenge.
            assert_eq!(
                db.take_enrolment_challenge("dev-2", "c1", 50)
                    .await
                    .unwrap(),
                None,
                "{b:?}"
            );
            let taken = db
                .take_enrolment_challenge("dev-1", "c1", 50)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(taken.key.ak_public, vec![7; 90], "{b:?}");
            assert_eq!(taken.secret_digest, [9; 32]);
            // Single use.
            assert_eq!(
                db.take_enrolment_challenge("dev-1", "c1", 50)
                    .await
                    .unwrap(),
                None,
                "{b:?}"
            );
            // A newer challenge replaces the older one; an expired one is gone for good.
            db.insert_enrolment_challenge(&pending("c2", "dev-1", 100))
                .await
                .unwrap();
            db.insert_enrolment_challenge(&pending("c3", "dev-1", 100))
                .await
                .unwrap();
            assert_eq!(
                db.take_enrolment_challenge("dev-1", "c2", 50)
                    .await
                    .unwrap(),
                None
            );
            assert_eq!(
                db.take_enrolment_challenge("dev-1", "c3", 100)
                    .await
                    .unwrap(),
                None,
                "{b:?}: expired"
            );
            assert_eq!(
                db.take_enrolment_challenge("dev-1", "c3", 50)
                    .await
                    .unwrap(),
                None,
                "{b:?}: an expired challenge is also used up"
            );
        }
    });
}

#[test]
fn nonces_are_reused_until_used_or_expiring_then_refused() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in databases(dir.path(), "nonces").await {
            let b = db.backend();
            let first = db
                .pending_nonce("dev-1", 100, 600, 60, || "aa01".into())
                .await
                .unwrap();
            assert_eq!(first.expires_at, 700);
            // The same nonce while it has time left (the poll answer's ETag holds).
            let again = db
                .pending_nonce("dev-1", 200, 600, 60, || "aa02".into())
                .await
                .unwrap();
            assert_eq!(again, first, "{b:?}");
            // Another device's nonce is unknown to this one.
            assert_eq!(
                db.claim_nonce("dev-2", "aa01", 200).await.unwrap(),
                NonceClaim::Unknown
            );
            assert_eq!(
                db.claim_nonce("dev-1", "aa01", 200).await.unwrap(),
                NonceClaim::Claimed,
                "{b:?}"
            );
            assert_eq!(
                db.claim_nonce("dev-1", "aa01", 201).await.unwrap(),
                NonceClaim::AlreadyUsed,
                "{b:?}: a nonce is single use"
            );
            // Used: the next poll gets a new one.
            let second = db
                .pending_nonce("dev-1", 210, 600, 60, || "aa03".into())
                .await
                .unwrap();
            assert_eq!(second.nonce, "aa03", "{b:?}");
            // Close to its expiry, it is replaced; once expired, it is refused.
            let third = db
                .pending_nonce("dev-1", 760, 600, 60, || "aa04".into())
                .await
                .unwrap();
            assert_eq!(third.nonce, "aa04", "{b:?}");
            assert_eq!(
                db.claim_nonce("dev-1", "aa03", 810).await.unwrap(),
                NonceClaim::Expired,
                "{b:?}"
            );
            assert_eq!(
                db.claim_nonce("dev-1", "ffff", 300).await.unwrap(),
                NonceClaim::Unknown
            );
        }
    });
}

#[test]
fn attested_is_computed_at_read_time_and_expires_without_any_writer() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in databases(dir.path(), "state").await {
            let b = db.backend();
            db.enrol_attestation_key(&key("dev-1", 1), &audit(1))
                .await
                .unwrap();
            assert_eq!(
                db.attestation_key("dev-1")
                    .await
                    .unwrap()
                    .unwrap()
                    .ak_public,
                vec![1; 90]
            );
            assert_eq!(db.attestation_state("dev-1").await.unwrap(), None);
            db.record_attestation("dev-1", 1_000, &PASSED(5), None, None)
                .await
                .unwrap();
            let state = db.attestation_state("dev-1").await.unwrap().unwrap();
            assert_eq!(state.outcome, CheckOutcome::Passed);
            assert_eq!(state.counters.unwrap().restart_count, 5);
            // Nothing is written after the pass: it is attested within the window only.
            assert!(state.attested(1_000 + 299, 300), "{b:?}");
            assert!(
                !state.attested(1_000 + 300, 300),
                "{b:?}: stale by time alone"
            );
            let ids = vec!["dev-1".to_string(), "dev-2".to_string()];
            assert_eq!(db.attested_among(&ids, 1_299, 300).await.unwrap().len(), 1);
            assert!(
                db.attested_among(&ids, 1_300, 300)
                    .await
                    .unwrap()
                    .is_empty(),
                "{b:?}"
            );
            assert_eq!(db.attestation_counts(1_299, 300).await.unwrap(), (1, 0, 1));
            assert_eq!(db.attestation_counts(1_300, 300).await.unwrap(), (0, 0, 2));

            // Stale passes are found once, and noted once.
            let stale = db.newly_stale_attestations(1_300, 300, 10).await.unwrap();
            assert_eq!(stale.len(), 1, "{b:?}");
            assert!(
                db.note_stale_attestation(
                    "dev-1",
                    1_000,
                    1_300,
                    &audit(2),
                    &event("e1", "dev-1", 1_300)
                )
                .await
                .unwrap()
            );
            assert!(
                !db.note_stale_attestation(
                    "dev-1",
                    1_000,
                    1_301,
                    &audit(3),
                    &event("e2", "dev-1", 1_301)
                )
                .await
                .unwrap(),
                "{b:?}: noted once"
            );
            assert!(
                db.newly_stale_attestations(1_400, 300, 10)
                    .await
                    .unwrap()
                    .is_empty()
            );

            // A failure keeps the last pass's counters but is never attested.
            db.record_attestation(
                "dev-1",
                1_310,
                &CheckResult::Failed {
                    reason: "bad\nsignature".into(),
                },
                Some(&audit(3)),
                Some(&event("e3", "dev-1", 1_310)),
            )
            .await
            .unwrap();
            let failed = db.attestation_state("dev-1").await.unwrap().unwrap();
            assert_eq!(failed.outcome, CheckOutcome::Failed);
            assert_eq!(
                failed.reason, "bad signature",
                "{b:?}: no control characters"
            );
            assert_eq!(failed.counters.unwrap().restart_count, 5);
            assert!(!failed.attested(1_310, 300));
            assert_eq!(db.attestation_counts(1_310, 300).await.unwrap(), (0, 1, 1));
            let events = db.security_events(0, Some("dev-1"), 10).await.unwrap();
            assert_eq!(
                events.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
                ["e1", "e3"],
                "{b:?}"
            );
            assert!(
                db.security_events(0, Some("dev-2"), 10)
                    .await
                    .unwrap()
                    .is_empty()
            );

            // A new AK starts afresh: no state, no counters of the old key.
            db.enrol_attestation_key(&key("dev-1", 2), &audit(4))
                .await
                .unwrap();
            assert_eq!(db.attestation_state("dev-1").await.unwrap(), None, "{b:?}");
            assert_eq!(db.last_audit().await.unwrap().unwrap().seq, 4);
        }
    });
}

#[test]
fn approved_eks_are_kept_once_with_their_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in databases(dir.path(), "eks").await {
            let b = db.backend();
            let ek = ApprovedEk {
                ek_digest: "cd".repeat(32),
                ek_public: "00230b".into(),
                approved_at: 5,
                approved_by: "ops".into(),
                note: "line 3 batch".into(),
            };
            assert!(db.approve_ek(&ek, &audit(1)).await.unwrap(), "{b:?}");
            assert!(!db.approve_ek(&ek, &audit(2)).await.unwrap(), "{b:?}");
            assert_eq!(db.approved_ek(&"cd".repeat(32)).await.unwrap(), Some(ek));
            assert_eq!(db.approved_ek(&"ce".repeat(32)).await.unwrap(), None);
            assert_eq!(db.last_audit().await.unwrap().unwrap().seq, 1, "{b:?}");
            let bad = ApprovedEk {
                ek_digest: "not hex".into(),
                ek_public: "00".into(),
                approved_at: 5,
                approved_by: "ops".into(),
                note: String::new(),
            };
            assert!(db.approve_ek(&bad, &audit(2)).await.is_err());
        }
    });
}

#[test]
fn deleting_a_device_drops_its_attestation_key_so_a_new_row_inherits_none() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        for db in databases(dir.path(), "delete").await {
            let b = db.backend();
            db.enrol_attestation_key(&key("dev-1", 1), &audit(1))
                .await
                .unwrap();
            db.record_attestation("dev-1", 10, &PASSED(1), None, None)
                .await
                .unwrap();
            db.pending_nonce("dev-1", 10, 600, 60, || "bb01".into())
                .await
                .unwrap();
            db.delete_device("dev-1", &audit(2)).await.unwrap();
            db.register_if_new("dev-1", 20).await.unwrap();
            assert_eq!(db.attestation_key("dev-1").await.unwrap(), None, "{b:?}");
            assert_eq!(db.attestation_state("dev-1").await.unwrap(), None, "{b:?}");
            assert_eq!(
                db.claim_nonce("dev-1", "bb01", 20).await.unwrap(),
                NonceClaim::Unknown
            );
        }
    });
}
