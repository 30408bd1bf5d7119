//! `rampart server --incident-config` and `rampart incident ...` through the binaries: the
//! server started as an operator would, every subcommand over the management API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rampart_testkit::cli::{self, ServerChild, s};

struct Site {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    db: String,
    ca_pem: PathBuf,
    server_args: Vec<String>,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let ca = rampart_pki::CertificateAuthority::generate("Incident CLI CA", 30).unwrap();
        let server_cert = ca.issue_server(&["localhost"], 30).unwrap();
        let now = std::time::SystemTime::now();
        let crl = ca
            .crl::<&str>(&[], now, now + Duration::from_secs(86_400), 1)
            .unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path.display().to_string()
        };
        let db = format!("sqlite://{}", dir.join("server.db").display());
        let server_args = vec![
            "server".into(),
            "--db".into(),
            db.clone(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--cert".into(),
            write("server.pem", &server_cert.cert_pem),
            "--key".into(),
            write("server.key", &server_cert.key_pem),
            "--client-ca".into(),
            write("ca.pem", ca.cert_pem()),
            "--crl".into(),
            write("crl.pem", &crl),
            "--management-listen".into(),
            "127.0.0.1:0".into(),
        ];
        Site {
            ca_pem: dir.join("ca.pem"),
            _tmp: tmp,
            dir,
            db,
            server_args,
        }
    }

    fn token(&self, role: &str) -> String {
        let out = cli::rampart(&["token", "create", "--db", &self.db, "--role", role])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    fn server_command(&self, config: &Path) -> std::process::Command {
        let mut args: Vec<&str> = self.server_args.iter().map(String::as_str).collect();
        args.extend(["--incident-config", s(config)]);
        cli::rampart(&args)
    }
}

#[test]
fn a_bad_incident_config_stops_the_server_naming_the_bad_key() {
    let site = Site::new();
    let config = site.dir.join("incidents.toml");
    std::fs::write(
        &config,
        "[playbooks.rollback_spike.default]\nnow = [\"alert\", \"reboot\"]\n",
    )
    .unwrap();
    let out = cli::fails(site.server_command(&config));
    assert!(
        out.contains("playbooks.rollback_spike.default: unknown action \"reboot\""),
        "{out}"
    );
    std::fs::write(&config, "[playbook.rollback_spike.default]\nnow = []\n").unwrap();
    let out = cli::fails(site.server_command(&config));
    assert!(out.contains("unknown field `playbook`"), "{out}");
}

#[test]
fn incidents_through_the_cli() {
    let site = Site::new();
    let (admin, operator, viewer) = (
        site.token("admin"),
        site.token("operator"),
        site.token("viewer"),
    );
    let config = site.dir.join("incidents.toml");
    std::fs::write(
        &config,
        "[playbooks.operator.default]\nnow = [\"alert\"]\napprove = [{ action = \"reimage\", role = \"admin\" }]\n",
    )
    .unwrap();
    let mut server = ServerChild::start_command(
        site.server_command(&config),
        &site.dir.join("server.stderr"),
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
    let with = |token: &str, args: &[&str]| {
        let mut all: Vec<&str> = vec!["incident"];
        all.extend(args);
        all.extend(["--api", &api, "--token", token, "--ca", s(&site.ca_pem)]);
        cli::rampart(&all)
    };

    // The file's playbook is in force.
    let out = cli::ok(with(&viewer, &["playbooks"]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("operator") && l.contains("reimage by admin")),
        "{out}"
    );

    let out = cli::ok(with(
        &operator,
        &[
            "open",
            "--severity",
            "high",
            "--title",
            "tampered gateway",
            "--device",
            "gw-1",
            "--device",
            "gw-2",
            "--json",
        ],
    ));
    let opened: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = opened["id"].as_str().unwrap().to_string();
    let reimage = opened["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "reimage")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let out = cli::ok(with(&operator, &["ack", &id]));
    assert!(out.contains("acknowledged"), "{out}");
    let out = cli::ok(with(&operator, &["contain", &id]));
    assert!(out.contains("2 quarantine action(s) requested"), "{out}");
    let out = cli::ok(with(&operator, &["collect", &id]));
    assert!(
        out.contains("2 collect_evidence action(s) requested"),
        "{out}"
    );
    // The playbook holds re-imaging for an admin.
    let out = cli::fails(with(&operator, &["approve", &reimage]));
    assert!(out.contains("403"), "{out}");
    let out = cli::ok(with(&admin, &["approve", &reimage]));
    assert!(
        out.contains(": reimage of ") && !out.contains("pending_approval"),
        "{out}"
    );
    let out = cli::ok(with(
        &operator,
        &["state", &id, "contained", "--note", "by hand"],
    ));
    assert!(
        out.contains(": contained (high, tampered gateway)"),
        "{out}"
    );

    let out = cli::ok(with(&viewer, &["list", "--state", "contained"]));
    assert!(out.lines().any(|l| l.starts_with(&id)), "{out}");
    let out = cli::ok(with(&viewer, &["show", &id]));
    for want in [
        "devices (2):",
        "gw-1",
        "quarantine",
        "acknowledged",
        "state_changed",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let out = cli::fails(with(&viewer, &["close", &id]));
    assert!(out.contains("403"), "{out}");
    let out = cli::ok(with(&operator, &["close", &id, "--note", "false positive"]));
    assert!(out.contains(": closed"), "{out}");
    let out = cli::fails(with(&viewer, &["show", "inc-../../x"]));
    assert!(out.contains("404"), "{out}");

    // An admin stores playbooks from a TOML file; a bad one is refused naming the key.
    let playbooks = site.dir.join("playbooks.toml");
    std::fs::write(
        &playbooks,
        "[playbooks.rollback_spike.default]\nnow = [\"alert\", \"collect_evidence\"]\n",
    )
    .unwrap();
    let out = cli::ok(with(&admin, &["playbooks", "--set", s(&playbooks)]));
    assert!(
        out.lines()
            .any(|l| l.starts_with("rollback_spike") && l.contains("alert, collect_evidence")),
        "{out}"
    );
    std::fs::write(&playbooks, "[rollback_spike.default]\nnow = [\"panic\"]\n").unwrap();
    let out = cli::fails(with(&admin, &["playbooks", "--set", s(&playbooks)]));
    assert!(
        out.contains("playbooks.rollback_spike.default: unknown action"),
        "{out}"
    );
    server.kill();
}
