//! Secrets at rest through the binary: key files are owner-only, the webhook flags of
//! `rampart server` are checked, and a PostgreSQL server needs its webhook secrets key named.

use rampart_testkit::cli;
use rampart_testkit::cli::{fails, ok, rampart, s};

#[test]
#[cfg(unix)]
fn key_generate_writes_an_owner_only_key_file() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let path = cli::new_key(dir.path(), "targets");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{path}: {mode:o}");
}

#[test]
fn server_webhook_flags_are_checked_before_anything_starts() {
    let out = fails(rampart(&["server", "--webhook-allow", "10.1.2.3/8"]));
    assert!(out.contains("did you mean 10.0.0.0/8"), "{out}");
    let out = fails(rampart(&["server", "--webhook-allow", "intranet"]));
    assert!(out.contains("CIDR notation"), "{out}");

    // A PostgreSQL server without --secrets-key says what to give (nothing is contacted: the
    // configuration is refused first).
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    ok(rampart(&[
        "ca",
        "init",
        "--dir",
        s(&ca),
        "--name",
        "Test CA",
    ]));
    let server = dir.path().join("server");
    ok(rampart(&[
        "ca",
        "server-cert",
        "--ca",
        s(&ca),
        "--name",
        "127.0.0.1",
        "--out",
        s(&server),
    ]));
    let out = fails(rampart(&[
        "server",
        "--db",
        "postgres://rampart@127.0.0.1:1/nowhere",
        "--listen",
        "127.0.0.1:0",
        "--cert",
        s(&server.join("server.pem")),
        "--key",
        s(&server.join("server.key")),
        "--client-ca",
        s(&ca.join("ca.pem")),
        "--crl",
        s(&ca.join("crl.pem")),
    ]));
    assert!(
        out.contains("--secrets-key FILE") && out.contains("PostgreSQL"),
        "{out}"
    );
}
