//! Audit anchoring from the operator's side (issue 13 item 5): `rampart server` creates its
//! audit key (mode 0600) next to a SQLite database, prints its verifier key and signs heads as
//! records arrive (also records written by other processes); `rampart audit head` keeps a copy
//! off the server; `rampart audit verify --anchor-key` then detects a history rewritten with
//! recomputed hashes or cut short, naming the record, where the plain chain check passes.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

mod support;

use rampart_testkit::cli::{ServerChild, fails, ok, rampart, s};
use support::log_site::LogSite;

fn start_server(w: &Path, db: &str, extra: &[&str]) -> ServerChild {
    let ca = rampart_pki::CertificateAuthority::generate("Audit Test CA", 30).unwrap();
    let server_cert = ca.issue_server(&["127.0.0.1"], 30).unwrap();
    let now = SystemTime::now();
    let crl = ca
        .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
        .unwrap();
    std::fs::write(w.join("ca.pem"), ca.cert_pem()).unwrap();
    std::fs::write(w.join("crl.pem"), &crl).unwrap();
    std::fs::write(w.join("server.pem"), &server_cert.cert_pem).unwrap();
    rampart_pki::write_private_key_pem(&w.join("server.key"), &server_cert.key_pem).unwrap();
    ServerChild::start(
        &[
            "server",
            "--db",
            db,
            "--listen",
            "127.0.0.1:0",
            "--cert",
            s(&w.join("server.pem")),
            "--key",
            s(&w.join("server.key")),
            "--client-ca",
            s(&w.join("ca.pem")),
            "--crl",
            s(&w.join("crl.pem")),
            "--audit-anchor-interval",
            "1",
        ]
        .iter()
        .chain(extra)
        .collect::<Vec<_>>(),
        &w.join("server.stderr"),
        "device API listening on ",
        Duration::from_secs(60),
    )
}

/// The attacker: rewrites the stored log from record `from` with recomputed hashes, or cuts
/// it to `keep` records, and deletes the heads stored beside it.
fn tamper(db: &str, rewrite_from: Option<u64>, keep: Option<u64>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(db).await.unwrap();
            if let Some(from) = rewrite_from {
                let jsonl = ok(rampart(&[
                    "audit", "export", "--db", db, "--format", "jsonl",
                ]));
                let records = rampart_audit::parse_jsonl(jsonl.as_bytes()).unwrap();
                let from = from as usize;
                let mut chain =
                    rampart_audit::AuditChain::resume(from.checked_sub(1).map(|i| &records[i]))
                        .unwrap();
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
            }
            if let Some(keep) = keep {
                sqlx::query("DELETE FROM audit_log WHERE seq >= $1")
                    .bind(keep as i64)
                    .execute(&pool)
                    .await
                    .unwrap();
            }
            sqlx::query("DELETE FROM audit_heads")
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        });
}

#[test]
fn audit_verify_detects_a_rewritten_or_truncated_history_against_signed_heads() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let db = format!("sqlite://{}", w.join("server.db").display());
    let mut server = start_server(w, &db, &[]);
    let key = server
        .line_after("audit heads signed with key ", Duration::from_secs(10))
        .expect("the server prints its audit key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(w.join("server.db.audit-key"))
            .expect("the audit key is created next to the database")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(
        ok(rampart(&["log", "vkey", s(&w.join("server.db.audit-key"))])).trim(),
        key
    );

    // Records written by another process are anchored by the running server.
    for name in ["ops-1", "ops-2", "ops-3"] {
        ok(rampart(&[
            "token", "create", "--db", &db, "--role", "viewer", "--name", name,
        ]));
    }
    let count = rampart_audit::parse_jsonl(
        ok(rampart(&[
            "audit", "export", "--db", &db, "--format", "jsonl",
        ]))
        .as_bytes(),
    )
    .unwrap()
    .len() as u64;
    assert!(count >= 3);
    let deadline = Instant::now() + Duration::from_secs(60);
    let head_file = w.join("head.note");
    loop {
        let out = rampart(&["audit", "head", "--db", &db, "--out", s(&head_file)])
            .output()
            .unwrap();
        let covered = out.status.success()
            && std::fs::read_to_string(&head_file)
                .unwrap()
                .contains(&format!("\nsize {count}\n"));
        if covered {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no head over {count} records was signed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill();

    let verified = ok(rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        &key,
    ]));
    assert!(
        verified.contains(&format!("the newest covering {count} records")),
        "{verified}"
    );

    // An export is checked against the off-box head the same way.
    let export = w.join("audit.jsonl");
    std::fs::write(
        &export,
        ok(rampart(&[
            "audit", "export", "--db", &db, "--format", "jsonl",
        ])),
    )
    .unwrap();
    ok(rampart(&[
        "audit",
        "verify",
        s(&export),
        "--anchor-key",
        &key,
        "--head",
        s(&head_file),
    ]));

    // A head that the audit key did not sign is refused.
    let other_key = w.join("other.key");
    let other = ok(rampart(&[
        "log",
        "keygen",
        "--name",
        "rampart-audit",
        "--out",
        s(&other_key),
    ]));
    let out = fails(rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        other.trim(),
    ]));
    assert!(out.contains("audit head signature refused"), "{out}");

    // Rewritten with recomputed hashes, stored heads deleted: the chain alone still passes,
    // the off-box head does not.
    tamper(&db, Some(1), None);
    ok(rampart(&["audit", "verify", "--db", &db]));
    let out = fails(rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        &key,
    ]));
    assert!(
        out.contains("no signed audit head to check against"),
        "{out}"
    );
    let out = fails(rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        &key,
        "--head",
        s(&head_file),
    ]));
    let last = count - 1;
    assert!(
        out.contains(&format!(
            "record {last} of {count} does not match the anchored head"
        )),
        "{out}"
    );

    let exported = ok(rampart(&[
        "audit", "export", "--db", &db, "--format", "jsonl",
    ]));
    std::fs::write(&export, exported).unwrap();
    let out = fails(rampart(&[
        "audit",
        "verify",
        s(&export),
        "--anchor-key",
        &key,
        "--head",
        s(&head_file),
    ]));
    assert!(out.contains("does not match the anchored head"), "{out}");

    // Cut short: named as a truncation, with the records missing.
    tamper(&db, None, Some(count - 1));
    ok(rampart(&["audit", "verify", "--db", &db]));
    let out = fails(rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        &key,
        "--head",
        s(&head_file),
    ]));
    assert!(
        out.contains("history truncated: the anchored head (signed at ")
            && out.contains(&format!(
                "covers {count} records, the log has {last}; records {last} to {last} are missing"
            )),
        "{out}"
    );
}

#[test]
fn audit_heads_are_appended_to_the_transparency_log_and_checked_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let logs = LogSite::start(w, "log.example/audit");
    let (log, policy) = (&logs.log, &logs.policy);

    let db = format!("sqlite://{}", w.join("server.db").display());
    let mut server = start_server(
        w,
        &db,
        &[
            "--audit-log-url",
            &log.listening,
            "--audit-log-policy",
            s(policy),
        ],
    );
    let key = server
        .line_after("audit heads signed with key ", Duration::from_secs(10))
        .expect("the server prints its audit key");
    for name in ["ops-1", "ops-2"] {
        ok(rampart(&[
            "token", "create", "--db", &db, "--role", "viewer", "--name", name,
        ]));
    }
    let count = rampart_audit::parse_jsonl(
        ok(rampart(&[
            "audit", "export", "--db", &db, "--format", "jsonl",
        ]))
        .as_bytes(),
    )
    .unwrap()
    .len();
    // Wait (on state) for a witnessed head over every record in the log.
    let verify_from_log = || {
        rampart(&[
            "audit",
            "verify",
            "--db",
            &db,
            "--anchor-key",
            &key,
            "--log-url",
            &log.listening,
            "--log-policy",
            s(policy),
        ])
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = verify_from_log().output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success()
            && !stdout.contains("(0 from the transparency log)")
            && stdout.contains(&format!("the newest covering {count} records"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no head over {count} records reached the log: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill();

    // The attacker rewrites the log and deletes every head in the database: the heads the
    // transparency log holds still give it away.
    tamper(&db, Some(0), None);
    let out = fails(rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        &key,
    ]));
    assert!(
        out.contains("no signed audit head to check against"),
        "{out}"
    );
    let out = fails(verify_from_log());
    assert!(out.contains("does not match the anchored head"), "{out}");
    drop(logs);
}

/// The heads stored with the log can be deleted with it: records written long after the newest
/// signed head mean newer heads are missing, and `audit verify` says so; without off-box heads
/// it warns that stored heads alone cannot prove the history was not cut.
#[test]
fn a_long_unsigned_tail_after_the_newest_head_fails_verification() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let db = format!("sqlite://{}", w.join("server.db").display());
    let mut server = start_server(w, &db, &[]);
    let key = server
        .line_after("audit heads signed with key ", Duration::from_secs(10))
        .expect("the server prints its audit key");
    ok(rampart(&[
        "token", "create", "--db", &db, "--role", "viewer", "--name", "ops-1",
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !rampart(&["audit", "head", "--db", &db])
        .output()
        .unwrap()
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no head was signed");
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill();
    // Records written after the newest head, later than the allowed unsigned tail (1 s here).
    std::thread::sleep(Duration::from_secs(2));
    ok(rampart(&[
        "token", "create", "--db", &db, "--role", "viewer", "--name", "ops-2",
    ]));
    let out = rampart(&[
        "audit",
        "verify",
        "--db",
        &db,
        "--anchor-key",
        &key,
        "--max-unanchored-secs",
        "1",
    ])
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("newer heads were removed"), "{stderr}");
    // Within the default allowance it verifies, with a warning that stored heads alone do not
    // prove the history was not cut.
    let out = rampart(&["audit", "verify", "--db", &db, "--anchor-key", &key])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("Keep heads off the server"), "{stderr}");
}
