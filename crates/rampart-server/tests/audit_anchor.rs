//! Signed audit heads (issue 13 item 5): a history rewritten with recomputed hashes, or cut
//! short, in the database is detected against a head signed with the server's audit key, and
//! the server refuses to sign over it; a head not signed by the audit key is refused. Every
//! scenario runs on SQLite and PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ops::Ops;
use common::{Backend, Fixture};
use rampart_audit::{AuditChain, AuditError, AuditRecord};
use rampart_log::note::{NoteSigner, Verifier};
use rampart_server::audit::AuditWriter;
use rampart_server::audit_anchor::{
    AnchorCheckError, AnchorError, AuditAnchor, AuditAnchorConfig, verify_stored_log,
};
use serde_json::json;

fn audit_key(seed: u8) -> Arc<NoteSigner> {
    Arc::new(NoteSigner::from_seed("rampart-audit", [seed; 32]).unwrap())
}

fn anchor_config(key: Arc<NoteSigner>) -> AuditAnchorConfig {
    AuditAnchorConfig {
        key,
        interval: Duration::from_secs(3600),
        log: None,
    }
}

/// A database with `n` audit records and a head signed over them; returns the head's note
/// (the operator's off-box copy) and the audit key's verifier.
async fn anchored_log(fx: &Fixture, n: u64) -> (AuditAnchor, Vec<u8>, Verifier) {
    let writer = AuditWriter::new(fx.db.clone());
    for i in 0..n {
        writer
            .record(
                1_767_225_600 + i as i64,
                "system",
                "test.event",
                &format!("dev-{i}"),
                json!({"i": i}),
            )
            .await
            .unwrap();
    }
    let key = audit_key(7);
    let verifier = key.verifier();
    let metrics = Arc::new(rampart_server::Metrics::default());
    let anchor =
        AuditAnchor::new(fx.db.clone(), writer, anchor_config(key)).with_metrics(metrics.clone());
    let head = anchor
        .anchor()
        .await
        .unwrap()
        .expect("a head over the records");
    assert_eq!(head.head.size, n);
    assert_eq!(
        common::metric_value(&metrics.render(), "rampart_audit_heads_signed_total"),
        Some(1)
    );
    (anchor, head.note.into_bytes(), verifier)
}

/// The attacker's access: the database itself, not the server.
async fn raw_pool(fx: &Fixture) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let url = if fx.db_url.starts_with("sqlite:") {
        format!("{}?mode=rw", fx.db_url)
    } else {
        fx.db_url.clone()
    };
    sqlx::AnyPool::connect(&url).await.unwrap()
}

async fn stored_records(fx: &Fixture) -> Vec<AuditRecord> {
    let lines = fx.db.audit_lines(0, 100_000).await.unwrap();
    let jsonl: String = lines.iter().map(|l| format!("{}\n", l.line)).collect();
    rampart_audit::parse_jsonl(jsonl.as_bytes()).unwrap()
}

async fn rampart_audit_rewrite(fx: &Fixture, from: usize) {
    let records = stored_records(fx).await;
    let mut chain = AuditChain::resume(from.checked_sub(1).map(|i| &records[i])).unwrap();
    let pool = raw_pool(fx).await;
    for (i, r) in records[from..].iter().enumerate() {
        let subject = if i == 0 {
            "covered-up"
        } else {
            r.subject.as_str()
        };
        let forged = chain
            .append(r.time, &r.actor, &r.action, subject, r.details.clone())
            .unwrap();
        sqlx::query("UPDATE audit_log SET record = $1 WHERE seq = $2")
            .bind(rampart_audit::to_json_line(&forged))
            .bind(forged.seq as i64)
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
}

async fn rewritten_audit_history_is_detected(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let (anchor, off_box, key) = anchored_log(&fx, 40).await;
    rampart_audit_rewrite(&fx, 17).await;
    // Also the stored heads go: only the off-box copy is left.
    let pool = raw_pool(&fx).await;
    sqlx::query("DELETE FROM audit_heads")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let records = stored_records(&fx).await;
    assert!(
        rampart_audit::verify(&records).is_ok(),
        "the unkeyed chain alone cannot tell"
    );
    let err = verify_stored_log(
        &fx.db,
        std::slice::from_ref(&key),
        &[("off-box".into(), off_box)],
    )
    .await
    .unwrap_err();
    let AnchorCheckError::Chain(AuditError::AnchorMismatch {
        seq: 39, count: 40, ..
    }) = &err
    else {
        panic!("{err:?}");
    };
    assert!(
        err.to_string()
            .starts_with("record 39 of 40 does not match the anchored head"),
        "{err}"
    );

    // The running server refuses to sign over the rewritten history...
    let refused = anchor.anchor().await.unwrap_err();
    assert!(matches!(refused, AnchorError::Tampered(_)), "{refused}");
    assert!(fx.db.latest_audit_head().await.unwrap().is_none());
}

async fn truncated_audit_history_is_detected(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let (anchor, off_box, key) = anchored_log(&fx, 40).await;
    let metrics = Arc::new(rampart_server::Metrics::default());
    let anchor = anchor.with_metrics(metrics.clone());
    let pool = raw_pool(&fx).await;
    sqlx::query("DELETE FROM audit_log WHERE seq >= 35")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    assert!(rampart_audit::verify(&stored_records(&fx).await).is_ok());
    // Against the head stored in the database, and against the off-box copy alone.
    for given in [vec![], vec![("off-box".to_string(), off_box)]] {
        let err = verify_stored_log(&fx.db, std::slice::from_ref(&key), &given)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                AnchorCheckError::Chain(AuditError::AnchorTruncated {
                    anchored: 40,
                    found: 35,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("covers 40 records, the log has 35; records 35 to 39 are missing"),
            "{err}"
        );
    }
    let refused = anchor.anchor().await.unwrap_err();
    assert!(matches!(refused, AnchorError::Tampered(_)), "{refused}");
    // Operators alert on it.
    let scraped = metrics.render();
    assert_eq!(
        common::metric_value(
            &scraped,
            "rampart_audit_anchor_failures_total{reason=\"tampered\"}"
        ),
        Some(1),
        "{scraped}"
    );

    // After a restart (no head in memory), the stored head is the history to extend.
    let restarted = AuditAnchor::new(
        fx.db.clone(),
        AuditWriter::new(fx.db.clone()),
        anchor_config(audit_key(7)),
    );
    let refused = restarted.anchor().await.unwrap_err();
    assert!(matches!(refused, AnchorError::Tampered(_)), "{refused}");
}

async fn forged_audit_head_signature_is_refused(backend: Backend, name: &str) {
    let fx = Fixture::new(backend, name).await;
    let (_anchor, _off_box, key) = anchored_log(&fx, 10).await;
    assert_eq!(
        verify_stored_log(&fx.db, std::slice::from_ref(&key), &[])
            .await
            .unwrap()
            .chain
            .count,
        10
    );
    // Truncate, and store a head over the shorter log signed with a key of the attacker's.
    let pool = raw_pool(&fx).await;
    sqlx::query("DELETE FROM audit_log WHERE seq >= 6")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_heads")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let records = stored_records(&fx).await;
    let forged_head = rampart_audit::AuditHead {
        size: 6,
        hash: records[5].hash,
        time: 1_767_300_000,
    };
    let forged = forged_head.sign(&audit_key(8)).unwrap();
    fx.db
        .insert_audit_head(&rampart_db::StoredAuditHead {
            tree_size: 6,
            signed_at: forged_head.time,
            note: String::from_utf8(forged.clone()).unwrap(),
            log_index: None,
        })
        .await
        .unwrap();
    let err = verify_stored_log(&fx.db, std::slice::from_ref(&key), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            AnchorCheckError::Head {
                error: AuditError::HeadSignature { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("the stored audit head over 6 records: audit head signature refused"),
        "{err}"
    );
    // The same forgery handed in as an "off-box copy" is refused too.
    let pool = raw_pool(&fx).await;
    sqlx::query("DELETE FROM audit_heads")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let err = verify_stored_log(
        &fx.db,
        std::slice::from_ref(&key),
        &[("copy".into(), forged)],
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AnchorCheckError::Head { .. }), "{err:?}");
    // And with no genuine head at all, there is nothing to vouch for the log.
    let err = verify_stored_log(&fx.db, std::slice::from_ref(&key), &[])
        .await
        .unwrap_err();
    assert!(matches!(err, AnchorCheckError::NoHead), "{err:?}");
}

/// The management API: an admin or auditor signs a head on demand (the request itself is
/// audited and covered), anyone else is refused; GET returns the newest head.
async fn audit_heads_are_signed_on_demand_and_served(backend: Backend, name: &str) {
    let key = audit_key(9);
    let verifier = key.verifier();
    let ops = Ops::start_with(backend, name, |c| {
        c.audit_anchor = Some(anchor_config(key.clone()));
    })
    .await;
    let r = ops
        .call(&ops.operator, "POST", "/api/v1/audit/anchor", None)
        .await;
    r.error(403, "forbidden");
    let r = ops
        .call(&ops.auditor, "POST", "/api/v1/audit/anchor", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.json();
    assert_eq!(body["public_key"], verifier.to_vkey_string());
    let head =
        rampart_audit::verify_signed_head(body["note"].as_str().unwrap().as_bytes(), &verifier)
            .unwrap();
    let records = ops.audit_records().await;
    let requested = records
        .iter()
        .find(|r| r.action == "audit.anchor_requested")
        .expect("the request is audited");
    assert!(requested.actor.starts_with("token:"));
    assert!(head.size > requested.seq, "the head covers the request");
    assert_eq!(records[(head.size - 1) as usize].hash, head.hash);

    let r = ops
        .call(&ops.auditor, "GET", "/api/v1/audit/head", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["size"], head.size);
    let r = ops
        .call(&ops.viewer, "GET", "/api/v1/audit/head", None)
        .await;
    r.error(403, "forbidden");

    // A head someone slipped into the database under another key is neither served nor
    // extended: the server keeps to the heads its own key signed.
    let forged = rampart_audit::AuditHead {
        size: 10_000,
        hash: [7; 32],
        time: 1_767_300_000,
    };
    ops.fx
        .db
        .insert_audit_head(&rampart_db::StoredAuditHead {
            tree_size: forged.size,
            signed_at: forged.time,
            note: String::from_utf8(forged.sign(&audit_key(8)).unwrap()).unwrap(),
            log_index: None,
        })
        .await
        .unwrap();
    let r = ops
        .call(&ops.auditor, "GET", "/api/v1/audit/head", None)
        .await;
    assert_eq!(r.json()["size"], head.size, "{r:?}");
    let r = ops
        .call(&ops.admin, "POST", "/api/v1/audit/anchor", None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let again =
        rampart_audit::verify_signed_head(r.json()["note"].as_str().unwrap().as_bytes(), &verifier)
            .unwrap();
    assert!(again.size > head.size && again.size < 10_000, "{again:?}");
    ops.server.stop().await;
}

on_both_backends!(
    rewritten_audit_history_is_detected,
    truncated_audit_history_is_detected,
    forged_audit_head_signature_is_refused,
    audit_heads_are_signed_on_demand_and_served,
);
