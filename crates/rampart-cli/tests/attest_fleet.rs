//! `rampart server --require-attestation`, `rampart attest approve-ek` and `rampart attest
//! status` through the binaries: the server started as an operator would, the commands over
//! the management API.

use std::time::Duration;

use rampart_attest::device::TpmDevice as _;
use rampart_testkit::cli::{self, ServerChild, s};

fn rampart(args: &[&str]) -> std::process::Command {
    cli::rampart(args)
}

#[test]
fn approve_ek_and_status_through_the_management_api() {
    let tmp = tempfile::tempdir().unwrap();
    let w = tmp.path();
    let ca = rampart_pki::CertificateAuthority::generate("Attest CLI CA", 30).unwrap();
    let server_cert = ca.issue_server(&["localhost"], 30).unwrap();
    let now = std::time::SystemTime::now();
    let crl = ca
        .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
        .unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = w.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let cert = write("server.pem", server_cert.cert_pem.as_bytes());
    let key = write("server.key", server_cert.key_pem.as_bytes());
    let ca_pem = write("ca.pem", ca.cert_pem().as_bytes());
    let crl_pem = write("crl.pem", crl.as_bytes());
    let db = format!("sqlite://{}", w.join("server.db").display());
    // The secret is the one line on standard output (the note is on standard error).
    let token = |role: &str| {
        let out = rampart(&["token", "create", "--db", &db, "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (admin, viewer) = (token("admin"), token("viewer"));
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
            "--require-attestation",
            "--attestation-freshness",
            "600",
        ],
        &w.join("server.stderr"),
        "management API listening on ",
        Duration::from_secs(60),
    );
    let started = server
        .line_after("remote attestation on: ", Duration::from_secs(5))
        .unwrap();
    assert!(started.contains("quotes over sha256:13"), "{started}");
    assert!(
        started.contains("updates only for attested devices"),
        "{started}"
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

    let ek = rampart_attest::soft::SoftTpm::new([3; 32])
        .endorsement()
        .unwrap();
    let ek_file = write("ek.pub", &ek.public);
    let out = cli::ok(with_api(
        &["attest", "approve-ek", s(&ek_file), "--note", "line 3"],
        &admin,
    ));
    assert!(out.contains("approved EK sha256:"), "{out}");
    let out = cli::ok(with_api(&["attest", "approve-ek", s(&ek_file)], &admin));
    assert!(out.contains("was already approved"), "{out}");
    // Approving is an admin's: a viewer is refused, and so is a file that is no EK.
    let out = cli::fails(with_api(&["attest", "approve-ek", s(&ek_file)], &viewer));
    assert!(out.contains("403"), "{out}");
    let garbage = write("garbage.pub", b"not a TPMT_PUBLIC");
    let out = cli::fails(with_api(&["attest", "approve-ek", s(&garbage)], &admin));
    assert!(out.contains("not an EK's TPMT_PUBLIC"), "{out}");

    let out = cli::ok(with_api(&["attest", "status"], &viewer));
    assert!(
        out.contains("attested 0, failed 0, stale 0 (freshness 600 s, PCRs sha256:13, required fleet-wide: true)"),
        "{out}"
    );
    let out = cli::fails(with_api(&["attest", "status", "dev-nowhere"], &viewer));
    assert!(out.contains("404"), "{out}");
    server.kill();
}
