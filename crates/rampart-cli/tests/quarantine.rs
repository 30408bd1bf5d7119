//! `rampart device quarantine|quarantined|release` through the binaries (decision 0031): the
//! server started as an operator would, the commands over the management API.

use std::time::Duration;

use rampart_testkit::cli::{self, ServerChild, s};

fn rampart(args: &[&str]) -> std::process::Command {
    cli::rampart(args)
}

#[test]
fn quarantine_and_release_through_the_management_api() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let ca = rampart_pki::CertificateAuthority::generate("Quarantine CLI CA", 30).unwrap();
    let server_cert = ca.issue_server(&["localhost"], 30).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = w.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cert = write("server.pem", server_cert.cert_pem.as_bytes());
    let key = write("server.key", server_cert.key_pem.as_bytes());
    let ca_pem = write("ca.pem", ca.cert_pem().as_bytes());
    let now = std::time::SystemTime::now();
    let crl = ca
        .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
        .unwrap();
    let crl_pem = write("crl.pem", crl.as_bytes());
    let db = format!("sqlite://{}", w.join("server.db").display());
    let token = |role: &str| {
        let out = rampart(&["token", "create", "--db", &db, "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (operator, viewer) = (token("operator"), token("viewer"));
    // A device that made first contact (the operator route quarantines registered devices).
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let db = rampart_db::Db::connect(&db).await.unwrap();
            db.register_if_new("dev-7", 1_700_000_000).await.unwrap();
            db.close().await;
        });
    let mut server = ServerChild::start(
        &[
            "server",
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--cert",
            s(&cert),
            "--key",
            s(&key),
            "--client-ca",
            s(&ca_pem),
            "--crl",
            s(&crl_pem),
            "--management-listen",
            "127.0.0.1:0",
        ],
        &w.join("server.stderr"),
        "management API listening on ",
        Duration::from_secs(60),
    );
    let port = server
        .listening
        .trim_end_matches("/api/v1/")
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let api = format!("https://localhost:{port}");
    let with_api = |args: &[&str], token: &str| {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--api", &api, "--token", token, "--ca", s(&ca_pem)]);
        rampart(&all)
    };

    let out = cli::fails(with_api(&["device", "quarantine", "dev-7"], &viewer));
    assert!(out.contains("403"), "{out}");
    let out = cli::fails(with_api(
        &["device", "quarantine", "dev-unknown"],
        &operator,
    ));
    assert!(out.contains("404"), "{out}");
    let out = cli::ok(with_api(
        &["device", "quarantine", "dev-7", "--reason", "forged report"],
        &operator,
    ));
    assert!(out.contains("quarantined dev-7"), "{out}");
    let out = cli::ok(with_api(&["device", "quarantine", "dev-7"], &operator));
    assert!(out.contains("was already quarantined"), "{out}");
    let out = cli::ok(with_api(&["device", "quarantined"], &viewer));
    assert!(
        out.contains("dev-7") && out.contains("forged report") && out.contains("not acknowledged"),
        "{out}"
    );
    let out = cli::fails(with_api(&["device", "release", "dev-7"], &viewer));
    assert!(out.contains("403"), "{out}");
    let out = cli::ok(with_api(
        &["device", "release", "dev-7", "--reason", "re-imaged"],
        &operator,
    ));
    assert!(out.contains("released dev-7"), "{out}");
    let out = cli::fails(with_api(&["device", "release", "dev-7"], &operator));
    assert!(
        out.contains("409") && out.contains("not quarantined"),
        "{out}"
    );
    let out = cli::ok(with_api(&["device", "quarantined"], &viewer));
    assert!(!out.contains("dev-7"), "{out}");
    server.kill();
}
