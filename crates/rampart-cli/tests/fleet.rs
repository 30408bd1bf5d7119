//! `rampart ca`, `rampart device provision` and `rampart audit` through the binary.

use rampart_testkit::cli;
use rampart_testkit::cli::s;

fn rampart(args: &[&str]) -> (bool, String) {
    cli::run(cli::rampart(args))
}

#[test]
fn ca_provisioning_and_revocation() {
    let w = tempfile::tempdir().unwrap();
    let ca = w.path().join("ca");
    let (ok, out) = rampart(&["ca", "init", "--dir", s(&ca), "--name", "Acme devices"]);
    assert!(ok, "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(ca.join("ca.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    let (ok, out) = rampart(&["ca", "init", "--dir", s(&ca)]);
    assert!(!ok && out.contains("refusing to overwrite"), "{out}");
    let devices = w.path().join("devices");
    let (ok, out) = rampart(&[
        "device",
        "provision",
        "--ca",
        s(&ca),
        "--id",
        "dev-7",
        "--out",
        s(&devices),
    ]);
    assert!(ok, "{out}");
    let serial = out
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_string();
    let pem = std::fs::read_to_string(devices.join("dev-7.pem")).unwrap();
    let der = rustls_der(&pem);
    assert_eq!(
        rampart_pki::device_id_from_cert(&der).as_deref(),
        Some("dev-7")
    );
    let (ok, out) = rampart(&[
        "device",
        "provision",
        "--ca",
        s(&ca),
        "--id",
        "bad id/..",
        "--out",
        s(&devices),
    ]);
    assert!(!ok, "{out}");
    let (ok, out) = rampart(&[
        "ca",
        "server-cert",
        "--ca",
        s(&ca),
        "--name",
        "localhost",
        "--name",
        "127.0.0.1",
        "--out",
        s(&w.path().join("server")),
    ]);
    assert!(ok, "{out}");
    let before = std::fs::read_to_string(ca.join("crl.pem")).unwrap();
    let (ok, out) = rampart(&["ca", "revoke", "--ca", s(&ca), "--serial", &serial]);
    assert!(ok && out.contains("lists 1 certificate"), "{out}");
    assert_ne!(std::fs::read_to_string(ca.join("crl.pem")).unwrap(), before);
    let (ok, out) = rampart(&["ca", "revoke", "--ca", s(&ca), "--serial", &serial]);
    assert!(!ok && out.contains("already revoked"), "{out}");
    // The new CRL makes the server refuse that device: the CRL is valid for this CA.
    let server = w.path().join("server");
    rampart_pki::server_config(
        &std::fs::read_to_string(server.join("server.pem")).unwrap(),
        &std::fs::read_to_string(server.join("server.key")).unwrap(),
        &std::fs::read_to_string(ca.join("ca.pem")).unwrap(),
        &[std::fs::read_to_string(ca.join("crl.pem")).unwrap()],
    )
    .unwrap();
}

fn rustls_der(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[test]
fn audit_verify_detects_every_kind_of_tampering() {
    let w = tempfile::tempdir().unwrap();
    let mut chain = rampart_audit::AuditChain::new();
    let records: Vec<_> = (0..6)
        .map(|i| {
            chain
                .append(
                    1_800_000_000 + i,
                    "token:ops-1",
                    "assignment.created",
                    &format!("dev-{i}"),
                    serde_json::json!({"release": "1.0.0"}),
                )
                .unwrap()
        })
        .collect();
    let lines: Vec<String> = records.iter().map(rampart_audit::to_json_line).collect();
    let write = |name: &str, lines: &[String]| {
        let p = w.path().join(name);
        std::fs::write(
            &p,
            lines
                .iter()
                .map(|l| format!("{}\n", l.trim_end()))
                .collect::<String>(),
        )
        .unwrap();
        p
    };
    let good = write("good.jsonl", &lines);
    let (ok, out) = rampart(&["audit", "verify", s(&good)]);
    assert!(ok && out.contains("ok: 6 records"), "{out}");
    let head = hex::encode(records[5].hash);

    let mut edited = lines.clone();
    edited[2] = edited[2].replace("dev-2", "dev-X");
    let mut removed = lines.clone();
    removed.remove(3);
    let mut reordered = lines.clone();
    reordered.swap(1, 2);
    let mut duplicated = lines.clone();
    duplicated.insert(4, lines[3].clone());
    let cases = [
        ("edited", edited),
        ("removed", removed),
        ("reordered", reordered),
        ("duplicated", duplicated),
    ];
    for (name, tampered) in cases {
        let f = write(&format!("{name}.jsonl"), &tampered);
        let (ok, out) = rampart(&["audit", "verify", s(&f)]);
        assert!(!ok && out.contains("AUDIT LOG TAMPERED"), "{name}: {out}");
    }
    // A removed last record is caught against the published head.
    let truncated = write("truncated.jsonl", &lines[..5]);
    let (ok, _) = rampart(&["audit", "verify", s(&truncated)]);
    assert!(
        ok,
        "without a published head a shorter prefix is a valid chain"
    );
    let (ok, out) = rampart(&[
        "audit",
        "verify",
        s(&truncated),
        "--head",
        &head,
        "--count",
        "6",
    ]);
    assert!(!ok && out.contains("AUDIT LOG TAMPERED"), "{out}");

    let (ok, out) = rampart(&["audit", "export", s(&good), "--format", "csv"]);
    assert!(
        ok && out.lines().count() == 7 && out.contains("assignment.created"),
        "{out}"
    );
}

/// `rampart token` writes audited changes to the server's database, and `rampart audit verify
/// --db` checks the stored chain itself: an edited or deleted row is caught.
#[test]
fn tokens_are_audited_and_the_stored_log_is_verified() {
    let w = tempfile::tempdir().unwrap();
    let db_path = w.path().join("server.db");
    let db = format!("sqlite://{}", db_path.display());
    let mut ids = Vec::new();
    for role in ["admin", "operator", "viewer", "auditor"] {
        let (ok, out) = rampart(&[
            "token", "create", "--db", &db, "--role", role, "--name", "ci",
        ]);
        assert!(ok && out.contains("rampart_"), "{out}");
        let id = out
            .split_whitespace()
            .skip_while(|w| *w != "token")
            .nth(1)
            .unwrap()
            .to_owned();
        ids.push(id);
    }
    let (ok, out) = rampart(&["token", "create", "--db", &db, "--role", "root"]);
    assert!(
        !ok && out.contains("use admin, operator, viewer, auditor or monitor"),
        "{out}"
    );
    let (ok, out) = rampart(&["token", "revoke", "--db", &db, &ids[2]]);
    assert!(ok, "{out}");
    let (ok, out) = rampart(&["token", "list", "--db", &db]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with(&ids[2]) && l.contains("  revoked  "))
            && !out.contains("rampart_"),
        "{out}"
    );

    let (ok, out) = rampart(&["audit", "verify", "--db", &db]);
    assert!(ok && out.contains("ok: 5 records"), "{out}");
    let (ok, out) = rampart(&["audit", "export", "--db", &db, "--format", "csv"]);
    assert!(
        ok && out.lines().count() == 6 && out.contains("token.revoked"),
        "{out}"
    );

    // Tamper with the stored rows (as someone with database access might) and verify again.
    let sql = |statement: &str| {
        let status = std::process::Command::new("python3")
            .args([
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()",
                db_path.to_str().unwrap(),
                statement,
            ])
            .status()
            .expect("python3 runs (scripts/test.sh installs it)");
        assert!(status.success());
    };
    sql("UPDATE audit_log SET record = replace(record, '\"viewer\"', '\"admin\"') WHERE seq = 2");
    let (ok, out) = rampart(&["audit", "verify", "--db", &db]);
    assert!(
        !ok && out.contains("AUDIT LOG TAMPERED"),
        "edited row: {out}"
    );
    sql("UPDATE audit_log SET record = replace(record, '\"admin\"', '\"viewer\"') WHERE seq = 2");
    let (ok, _) = rampart(&["audit", "verify", "--db", &db]);
    assert!(ok, "restored");
    sql("DELETE FROM audit_log WHERE seq = 1");
    let (ok, out) = rampart(&["audit", "verify", "--db", &db]);
    assert!(
        !ok && out.contains("AUDIT LOG TAMPERED"),
        "deleted row: {out}"
    );
}

/// A mistyped `--db` for a command that only reads the database is an error naming the path;
/// it does not create an empty database and report "ok: 0 records" about it.
#[test]
fn a_mistyped_database_path_is_an_error_not_a_new_empty_database() {
    let w = tempfile::tempdir().unwrap();
    let typo = w.path().join("typo.db");
    let url = format!("sqlite://{}", s(&typo));
    for args in [
        vec!["audit", "verify", "--db", url.as_str()],
        vec!["audit", "export", "--db", url.as_str()],
        vec!["token", "list", "--db", url.as_str()],
    ] {
        let out = cli::fails(cli::rampart(&args));
        assert!(out.contains("no database at"), "{args:?}: {out}");
        assert!(out.contains(s(&typo)), "{out}");
        assert!(!typo.exists(), "{args:?} created {}", typo.display());
    }
}

/// A certificate signing request as another implementation makes it (OpenSSL): a new P-256
/// key's own signature, the device id as the subject commonName. Returns the request (PEM) and
/// the key's DER SubjectPublicKeyInfo.
fn device_request(dir: &std::path::Path, device_id: &str) -> (String, Vec<u8>) {
    let (key, csr, spki) = (dir.join("k.pem"), dir.join("r.csr"), dir.join("k.spki"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={device_id}"),
        "-keyout",
        s(&key),
        "-out",
        s(&csr),
    ]);
    openssl(&[
        "pkey",
        "-in",
        s(&key),
        "-pubout",
        "-outform",
        "DER",
        "-out",
        s(&spki),
    ]);
    (
        std::fs::read_to_string(&csr).unwrap(),
        std::fs::read(&spki).unwrap(),
    )
}

/// `rampart device provision --csr`: the CA certifies the key the device kept, for the device the
/// request names; no key file is written, and a request whose signature does not verify, or that
/// names another device than `--id`, gets nothing.
#[test]
fn provision_from_a_device_csr_certifies_the_device_key() {
    let w = tempfile::tempdir().unwrap();
    let ca = w.path().join("ca");
    cli::ok(cli::rampart(&["ca", "init", "--dir", s(&ca)]));
    let devices = w.path().join("devices");
    let (csr_pem, spki) = device_request(w.path(), "tpm-dev-3");
    let csr = w.path().join("tpm-dev-3.csr");
    std::fs::write(&csr, &csr_pem).unwrap();
    let provision = |extra: &[&str]| {
        let mut args = vec![
            "device",
            "provision",
            "--ca",
            s(&ca),
            "--csr",
            s(&csr),
            "--out",
            s(&devices),
        ];
        args.extend_from_slice(extra);
        rampart(&args)
    };

    let (ok, out) = provision(&[]);
    assert!(ok && out.contains("provisioned device tpm-dev-3"), "{out}");
    let der = rustls_der(&std::fs::read_to_string(devices.join("tpm-dev-3.pem")).unwrap());
    assert_eq!(
        rampart_pki::device_id_from_cert(&der).as_deref(),
        Some("tpm-dev-3")
    );
    assert!(
        der.windows(spki.len()).any(|w| w == spki),
        "the certificate certifies the request's key"
    );
    assert!(
        !devices.join("tpm-dev-3.key").exists(),
        "no key leaves the CA"
    );

    let (ok, out) = provision(&["--id", "tpm-dev-4"]);
    assert!(!ok && out.contains("not \"tpm-dev-4\""), "{out}");

    // Another key put into the request after signing: its signature no longer verifies.
    let (_, other_spki) = device_request(w.path(), "tpm-dev-3");
    let mut der = rustls_der(&csr_pem);
    let at = der.windows(spki.len()).position(|w| w == spki).unwrap();
    der[at..at + spki.len()].copy_from_slice(&other_spki);
    std::fs::write(&csr, &der).unwrap();
    std::fs::remove_dir_all(&devices).unwrap();
    let (ok, out) = provision(&[]);
    assert!(!ok && out.contains("does not verify"), "{out}");
    assert!(!devices.join("tpm-dev-3.pem").exists());
}
