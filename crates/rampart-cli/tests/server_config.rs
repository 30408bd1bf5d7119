//! `rampart server --config FILE` and `rampart server check-config`: the example
//! configurations pass with the files they name in place, every class of mistake is reported
//! at once with where it is, a flag beats the environment which beats the file which beats the
//! default, a server runs from a file, and the systemd units verify.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rampart_testkit::cli::{self, ServerChild, fails, ok, rampart, s};
use rampart_testkit::pki::ServerPki;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/server");
const PACKAGING: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../packaging");

/// An example configuration installed under a temporary root: its `/etc/rampart` and
/// `/var/lib/rampart` moved there, and every file it names created as an operator would
/// (`rampart ca`, `repo init`, `director init`, `key generate`).
struct Installed {
    _tmp: tempfile::TempDir,
    etc: PathBuf,
    var: PathBuf,
    config: PathBuf,
}

fn install(example: &str) -> Installed {
    let tmp = tempfile::tempdir().unwrap();
    let etc = tmp.path().join("etc");
    let var = tmp.path().join("var");
    for dir in [etc.join("tls"), etc.join("keys"), var.clone()] {
        std::fs::create_dir_all(dir).unwrap();
    }
    ServerPki::write(&etc.join("tls"), "Example CA", 30, "server.key");
    cli::init_repo(&var);
    let (_, online) = cli::init_director(&var);
    for (from, to) in [
        (var.join("timestamp.key"), etc.join("keys/timestamp.key")),
        (var.join("snapshot.key"), etc.join("keys/snapshot.key")),
        (PathBuf::from(online), etc.join("keys/director-online.key")),
    ] {
        std::fs::rename(from, to).unwrap();
    }
    let text = std::fs::read_to_string(Path::new(EXAMPLES).join(example))
        .unwrap()
        .replace("/etc/rampart", s(&etc))
        .replace("/var/lib/rampart", s(&var));
    let config = etc.join("server.toml");
    std::fs::write(&config, text).unwrap();
    Installed {
        _tmp: tmp,
        etc,
        var,
        config,
    }
}

fn check_config(config: &Path, extra: &[&str]) -> Command {
    let mut c = rampart(&["server", "check-config", "--config", s(config)]);
    c.args(extra);
    c
}

/// The value of `key` in the effective settings check-config prints.
fn shown<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in:\n{out}"))
}

#[test]
fn the_single_node_example_passes_check_config() {
    let site = install("single-node-sqlite.toml");
    let out = ok(check_config(&site.config, &[]));
    assert!(out.contains("# configuration OK"), "{out}");
    assert_eq!(
        shown(&out, "url"),
        format!("\"sqlite://{}/server.db\"", s(&site.var))
    );
    assert_eq!(
        shown(&out, "timestamp_keys"),
        format!("[\"file:{}/keys/timestamp.key\"]", s(&site.etc))
    );
    assert!(
        out.contains("# not checked: the signing keys' passphrases"),
        "{out}"
    );
    // Nothing is created by a check: the audit and secrets keys come at the first start.
    assert!(!site.var.join("server.db.audit-key").exists());
    assert!(!site.var.join("server.secrets.key").exists());
}

#[test]
fn the_postgres_and_s3_example_passes_check_config_and_hides_the_password() {
    let site = install("postgres-s3.toml");
    let mut c = check_config(&site.config, &[]);
    // The password comes from the environment, as the example says, and beats the file.
    c.env(
        "RAMPART_DB",
        "postgres://rampart:s3cr3t-pw@db.internal:5432/rampart?sslmode=require",
    );
    let out = ok(c);
    assert!(out.contains("# configuration OK"), "{out}");
    assert!(!out.contains("s3cr3t-pw"), "{out}");
    assert_eq!(
        shown(&out, "url"),
        "\"postgres://rampart:***@db.internal:5432/rampart?sslmode=require\""
    );
    assert_eq!(shown(&out, "artifacts"), "\"s3://rampart-artifacts/fleet\"");
    assert!(
        out.contains(
            "# not checked: that the object store s3://rampart-artifacts/fleet can be read"
        ),
        "{out}"
    );
    assert!(!site.var.join("secrets.key").exists());
}

#[test]
fn every_class_of_mistake_is_reported_at_once_with_where_it_is() {
    let site = install("single-node-sqlite.toml");
    let text = std::fs::read_to_string(&site.config)
        .unwrap()
        // An unknown key, a value of the wrong type, a bad address, a missing file ...
        .replace(
            "poll_interval_secs = 300",
            "poll_intervall_secs = 300\nlast_seen_flush_ms = \"1s\"",
        )
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"localhost:9090\"")
        .replace("server.key\"", "missing.key\"")
        // ... and a conflict: a director with no repository for it.
        .replace("dir = \"", "# dir = \"");
    std::fs::write(&site.config, text).unwrap();
    let out = fails(check_config(&site.config, &[]));
    let line_of = |needle: &str| {
        std::fs::read_to_string(&site.config)
            .unwrap()
            .lines()
            .position(|l| l.contains(needle))
            .unwrap()
            + 1
    };
    let name = s(&site.config);
    for expected in [
        "the server configuration has 6 problems:".to_owned(),
        format!(
            "device_api.poll_intervall_secs ({name} line {}, column 1): unknown field `poll_intervall_secs`",
            line_of("poll_intervall_secs")
        ),
        format!(
            "device_api.last_seen_flush_ms ({name} line {}, column 22): invalid type: string \"1s\", expected u64",
            line_of("last_seen_flush_ms")
        ),
        format!(
            "metrics.listen ({name} line {}, column 10): invalid socket address syntax",
            line_of("localhost:9090")
        ),
        format!(
            "tls.key ({name} line {}): {}/tls/missing.key does not exist",
            line_of("missing.key"),
            s(&site.etc)
        ),
        format!(
            "director.root ({name} line {}): the director needs the image repository",
            line_of("root = ")
        ),
        format!(
            "repository.timestamp_keys ({name} line {}): renewing needs the repository directory",
            line_of("timestamp_keys")
        ),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    // The server itself refuses the same file, with the same problems, before it binds.
    let mut start = rampart(&["server", "--config", s(&site.config)]);
    start.args(["--listen", "127.0.0.1:0"]);
    let out = fails(start);
    assert!(
        out.contains("the server configuration has 6 problems:"),
        "{out}"
    );
    // A refused configuration creates nothing: no audit key, no secrets key, no database.
    for created in ["server.db.audit-key", "server.secrets.key", "server.db"] {
        assert!(!site.var.join(created).exists(), "{created} was created");
    }
}

#[test]
fn a_missing_or_oversized_file_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let out = fails(check_config(&missing, &[]));
    assert!(
        out.contains("cannot read the configuration file") && out.contains("does not exist"),
        "{out}"
    );
    let huge = dir.path().join("huge.toml");
    std::fs::write(&huge, format!("# {}\n", "x".repeat(2 << 20))).unwrap();
    let out = fails(check_config(&huge, &[]));
    assert!(out.contains("is larger than 1048576 bytes"), "{out}");
}

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let site = install("single-node-sqlite.toml");
    let poll = |env: Option<&str>, flag: Option<&str>, config: bool| {
        let mut c = if config {
            check_config(&site.config, &[])
        } else {
            // Without a file: the required settings from flags.
            let tls = site.etc.join("tls");
            let mut c = rampart(&["server", "check-config"]);
            c.args(["--cert", s(&tls.join("server.pem"))])
                .args(["--key", s(&tls.join("server.key"))])
                .args(["--client-ca", s(&tls.join("ca.pem"))])
                .args(["--crl", s(&tls.join("crl.pem"))])
                .args(["--db", &format!("sqlite://{}/flags.db", s(&site.var))]);
            c
        };
        if let Some(env) = env {
            c.env("RAMPART_SERVER_POLL_INTERVAL", env);
        }
        if let Some(flag) = flag {
            c.args(["--poll-interval", flag]);
        }
        shown(&ok(c), "poll_interval_secs").to_owned()
    };
    assert_eq!(poll(None, None, true), "300", "the file");
    assert_eq!(
        poll(Some("30"), None, true),
        "30",
        "the environment over the file"
    );
    assert_eq!(poll(Some("30"), Some("5"), true), "5", "a flag over both");
    assert_eq!(poll(None, None, false), "300", "the default");
    std::fs::write(
        &site.config,
        std::fs::read_to_string(&site.config)
            .unwrap()
            .replace("poll_interval_secs = 300", "poll_interval_secs = 60"),
    )
    .unwrap();
    assert_eq!(poll(None, None, true), "60", "the file over the default");
    // The configuration file itself may come from the environment.
    let mut c = rampart(&["server", "check-config"]);
    c.env("RAMPART_SERVER_CONFIG", &site.config);
    assert_eq!(shown(&ok(c), "poll_interval_secs"), "60");
}

#[test]
fn a_server_runs_from_the_example_configuration() {
    let site = install("single-node-sqlite.toml");
    // The example's fixed ports may be taken on a test machine: flags move the listeners.
    let mut command = rampart(&[
        "server",
        "--config",
        s(&site.config),
        "--listen",
        "127.0.0.1:0",
        "--management-listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "127.0.0.1:0",
    ]);
    command.current_dir(site.var.as_path());
    let mut server = ServerChild::start_command(
        command,
        &site.var.join("server.log"),
        "management API listening on ",
        Duration::from_secs(120),
    );
    // The file's keys were opened (renewal) and its database created where it says.
    assert!(
        server
            .line_after(
                "the server renews the repository's timestamp and snapshot",
                Duration::from_secs(5)
            )
            .is_some()
    );
    assert!(site.var.join("server.db").exists());
    assert!(site.var.join("server.db.audit-key").exists());
    server.kill();
}

/// `systemd-analyze verify` on a unit with its binary path pointed at the built one: no
/// warning at all (an unknown or misspelt directive is only a warning to systemd).
fn verify_unit(unit: &str, installed_binary: &str, built: &Path) {
    let analyze = Command::new("systemd-analyze").arg("--version").output();
    assert!(
        analyze.is_ok_and(|o| o.status.success()),
        "systemd-analyze is missing: install the systemd package (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(Path::new(PACKAGING).join(unit))
        .unwrap()
        .replace(&format!("{installed_binary} "), &format!("{} ", s(built)));
    assert!(
        text.contains(s(built)),
        "{unit} does not run {installed_binary}"
    );
    let path = dir.path().join(unit);
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && said.trim().is_empty(),
        "{unit}:\n{said}"
    );
}

#[test]
fn the_systemd_units_verify_and_the_server_unit_is_hardened() {
    verify_unit(
        "rampart-server.service",
        "/usr/bin/rampart",
        &rampart_testkit::binaries::rampart_binary(),
    );
    verify_unit(
        "rampart-agent.service",
        "/usr/bin/rampart-agent",
        &rampart_testkit::binaries::agent_binary(),
    );
    let unit =
        std::fs::read_to_string(Path::new(PACKAGING).join("rampart-server.service")).unwrap();
    for directive in [
        "ExecStart=/usr/bin/rampart server --config /etc/rampart/server.toml",
        "User=rampart",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/rampart",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "LockPersonality=yes",
    ] {
        assert!(unit.contains(directive), "{directive:?} missing");
    }
}
