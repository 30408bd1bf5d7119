use std::path::{Path, PathBuf};

use clap::Parser;

use super::*;

/// The flags as `rampart server` parses them (no environment: the tests share one).
#[derive(Parser)]
struct Flags {
    #[command(flatten)]
    settings: Settings,
}

fn flags(args: &[&str]) -> Settings {
    Flags::try_parse_from(std::iter::once("server").chain(args.iter().copied()))
        .unwrap()
        .settings
}

const GOOD: &str = r#"
[database]
url = "sqlite:///var/lib/rampart/server.db"

[tls]
cert = "/etc/rampart/server.pem"
key = "/etc/rampart/server.key"
client_ca = "/etc/rampart/ca.pem"
crls = ["/etc/rampart/crl.pem"]

[device_api]
listen = "0.0.0.0:8443"
poll_interval_secs = 60

[management_api]
listen = "127.0.0.1:8444"
"#;

fn keys(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

fn resolved(file: &str, args: &[&str]) -> Resolved {
    resolve(Some(parse_file("server.toml", file).unwrap()), &flags(args)).unwrap()
}

#[test]
fn a_good_file_parses_into_its_sections() {
    let layer = parse_file("server.toml", GOOD).unwrap();
    assert!(layer.problems.is_empty(), "{:?}", layer.problems);
    let s = &layer.settings;
    assert_eq!(s.device_api.poll_interval_secs, Some(60));
    assert_eq!(
        s.management_api.listen,
        Some("127.0.0.1:8444".parse().unwrap())
    );
    assert_eq!(
        s.tls.crls.as_deref(),
        Some(&[PathBuf::from("/etc/rampart/crl.pem")][..])
    );
    assert!(validate(&resolved(GOOD, &[])).is_empty());
}

#[test]
fn every_unknown_key_and_wrong_type_is_reported_with_its_line_and_the_rest_still_counts() {
    let text = format!(
        "{GOOD}\n[metrics]\nlisten = \"127.0.0.1:9090\"\nlistne = \"x\"\n\n[director]\nexpiry_days = \"seven\"\n\n[direktor]\nroot = \"r.json\"\n"
    );
    let layer = parse_file("server.toml", &text).unwrap();
    let line_of = |needle: &str| text.lines().position(|l| l.starts_with(needle)).unwrap() + 1;
    let found: Vec<(&str, Option<&str>)> = layer
        .problems
        .iter()
        .map(|p| (p.key.as_str(), p.origin.as_deref()))
        .collect();
    let listne = format!("server.toml line {}, column 1", line_of("listne"));
    let expiry = format!("server.toml line {}, column 15", line_of("expiry_days"));
    let direktor = format!("server.toml line {}, column 2", line_of("[direktor]"));
    assert_eq!(
        found,
        vec![
            ("metrics.listne", Some(listne.as_str())),
            ("director.expiry_days", Some(expiry.as_str())),
            ("direktor", Some(direktor.as_str())),
        ]
    );
    assert!(
        layer.problems[0]
            .message
            .contains("unknown field `listne`, expected `listen` in [metrics]"),
        "{}",
        layer.problems[0].message
    );
    assert!(
        layer.problems[1]
            .message
            .contains("invalid type: string \"seven\""),
        "{}",
        layer.problems[1].message
    );
    assert!(
        layer.problems[2].message.contains("where only sections go"),
        "{}",
        layer.problems[2].message
    );
    // The keys around the mistakes still count.
    assert_eq!(
        layer.settings.metrics.listen,
        Some("127.0.0.1:9090".parse().unwrap())
    );
    assert_eq!(layer.settings.device_api.poll_interval_secs, Some(60));
    // And validation reports them with its own.
    let r = resolve(Some(layer), &Settings::default()).unwrap();
    assert_eq!(
        keys(&validate(&r)),
        ["metrics.listne", "director.expiry_days", "direktor"]
    );
}

#[test]
fn text_that_is_not_toml_is_refused_with_its_line() {
    let Err(SettingsError::Problems(problems)) =
        parse_file("server.toml", "[tls]\ncert = /etc/server.pem\n")
    else {
        panic!("not refused")
    };
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].origin.as_deref(),
        Some("server.toml line 2, column 8")
    );
    assert!(
        problems[0].message.starts_with("not valid TOML"),
        "{}",
        problems[0].message
    );
}

#[test]
fn a_flag_beats_the_file_which_beats_the_default() {
    let file_only = resolved(GOOD, &[]);
    assert_eq!(file_only.effective.device_api.poll_interval_secs, Some(60));
    assert_eq!(
        file_only.origin("device_api.poll_interval_secs").as_deref(),
        Some("server.toml line 13")
    );
    let flag = resolved(GOOD, &["--poll-interval", "5"]);
    assert_eq!(flag.effective.device_api.poll_interval_secs, Some(5));
    assert_eq!(
        flag.origin("device_api.poll_interval_secs").as_deref(),
        Some("--poll-interval or RAMPART_SERVER_POLL_INTERVAL")
    );
    // Not in the file, not a flag: the default.
    assert_eq!(flag.effective.device_api.last_seen_flush_ms, Some(1000));
    assert_eq!(flag.origin("device_api.last_seen_flush_ms"), None);
    assert_eq!(
        flag.effective.alerts.syslog_facility.as_deref(),
        Some("auth")
    );
    // A list given as flags replaces the file's list.
    let crls = resolved(GOOD, &["--crl", "/a.pem", "--crl", "/b.pem"]);
    assert_eq!(
        crls.effective.tls.crls,
        Some(vec![PathBuf::from("/a.pem"), PathBuf::from("/b.pem")])
    );
    // Without a file, flags alone.
    let alone = resolve(None, &flags(&["--listen", "127.0.0.1:9443"])).unwrap();
    assert_eq!(
        alone.effective.device_api.listen,
        Some("127.0.0.1:9443".parse().unwrap())
    );
    assert_eq!(
        alone.effective.database.url.as_deref(),
        Some(DEFAULT_DB_URL)
    );
}

#[test]
fn every_flag_is_a_key_of_its_section_with_its_environment_variable() {
    let command = Settings::augment_args(clap::Command::new("server"));
    let mut seen = 0;
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let long = arg.get_long().unwrap();
        assert_eq!(
            arg.get_env().and_then(|e| e.to_str()),
            Some(env_var(long).as_str()),
            "{id}"
        );
        assert_eq!(flag_of(id), Some(format!("--{long}")));
        // The key exists in its section: a value of some type may be wrong, the key never is.
        let (section, key) = id.split_once('.').unwrap();
        let layer = parse_file("t.toml", &format!("[{section}]\n{key} = {{}}\n")).unwrap();
        assert!(
            layer
                .problems
                .iter()
                .all(|p| p.key == id && !p.message.contains("unknown field")),
            "{id}: {:?}",
            layer.problems
        );
        seen += 1;
    }
    // Every setting the flags gave before the file existed, and no more.
    assert_eq!(seen, 51);
}

#[test]
fn each_class_of_mistake_is_found_and_all_at_once() {
    let file = r#"
[database]
url = "postgres://rampart:hunter2@db/fleet"

[device_api]
listen = "0.0.0.0:8443"
poll_interval_secs = 0

[metrics]
listen = "0.0.0.0:8443"

[repository]
artifacts = "https://bucket"
snapshot_keys = ["file:snapshot.key"]
renew_when_remaining = 1.5

[director]
root = "director/root.json"

[webhooks]
allow = ["10.1.2.3/8"]

[alerts]
syslog = "tls://siem:6514"
syslog_facility = "local9"

[audit]
log_url = "https://log.example"

[attestation]
pcrs = [0, 2]

[evidence]
store = "s3://evidence"

[connections]
caps = ["device=0"]
"#;
    let problems = validate(&resolved(file, &[]));
    assert_eq!(
        keys(&problems),
        [
            "tls.cert",
            "tls.key",
            "tls.client_ca",
            "tls.crls",
            "database.secrets_key",
            "device_api.poll_interval_secs",
            "repository.renew_when_remaining",
            "metrics.listen",
            "connections.caps",
            "repository.artifacts",
            "repository.artifacts",
            "repository.snapshot_keys",
            "director.key",
            "director.root",
            "webhooks.allow",
            "alerts.syslog",
            "alerts.syslog_facility",
            "audit.log_policy",
            "audit.key",
            "attestation",
            "evidence.store",
        ],
        "{problems:#?}"
    );
    let text = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.to_string())
            .unwrap()
    };
    assert_eq!(
        text("tls.cert"),
        "tls.cert: required but not set: set `cert` under [tls] or give --cert"
    );
    assert!(
        text("metrics.listen").starts_with(
            "metrics.listen (server.toml line 10): 0.0.0.0:8443 is also device_api.listen"
        ),
        "{}",
        text("metrics.listen")
    );
    assert!(text("webhooks.allow").contains("did you mean 10.0.0.0/8"));
    assert!(text("attestation").contains("must include the agent PCR 13"));
    // The password never shows in a message.
    assert!(problems.iter().all(|p| !p.to_string().contains("hunter2")));
}

#[test]
fn an_attestation_setting_turns_attestation_on_unless_it_is_turned_off() {
    let implied = resolved(GOOD, &["--require-attestation"]);
    assert_eq!(implied.effective.attestation.enabled, Some(true));
    assert!(attestation_config(&implied.effective).unwrap().require);
    assert!(attestation_config(&resolved(GOOD, &[]).effective).is_none());
    let conflicting = resolved(
        &format!("{GOOD}\n[attestation]\nenabled = false\n"),
        &["--require-attestation"],
    );
    assert_eq!(keys(&validate(&conflicting)), ["attestation.enabled"]);
    // A flag turns off what the file turned on.
    let off = resolved(
        &format!("{GOOD}\n[attestation]\nenabled = true\n"),
        &["--attestation=false"],
    );
    assert!(attestation_config(&off.effective).is_none());
}

#[test]
fn relative_paths_in_a_file_are_relative_to_its_directory() {
    let mut layer = parse_file(
        "server.toml",
        r#"
[database]
url = "sqlite://state/server.db?mode=rwc"
[tls]
cert = "tls/server.pem"
key = "/abs/server.key"
crls = ["crl.pem"]
[repository]
timestamp_keys = ["file:keys/ts.key", "keys/ts2.key", "pkcs11:token=t;object=o"]
"#,
    )
    .unwrap();
    layer
        .settings
        .resolve_paths_against(Path::new("/etc/rampart"));
    let s = &layer.settings;
    assert_eq!(
        s.database.url.as_deref(),
        Some("sqlite:///etc/rampart/state/server.db?mode=rwc")
    );
    assert_eq!(
        s.tls.cert.as_deref(),
        Some(Path::new("/etc/rampart/tls/server.pem"))
    );
    assert_eq!(s.tls.key.as_deref(), Some(Path::new("/abs/server.key")));
    assert_eq!(
        s.tls.crls,
        Some(vec![PathBuf::from("/etc/rampart/crl.pem")])
    );
    assert_eq!(
        s.repository.timestamp_keys.as_deref().unwrap(),
        [
            "file:/etc/rampart/keys/ts.key",
            "file:/etc/rampart/keys/ts2.key",
            "pkcs11:token=t;object=o"
        ]
    );
}

#[test]
fn the_rendered_settings_hide_the_password_and_read_back_the_same() {
    let r = resolved(
        &GOOD.replace(
            "sqlite:///var/lib/rampart/server.db",
            "postgres://rampart:hunter2@db/fleet?sslmode=require&password=hunter3",
        ),
        &["--secrets-key", "/etc/rampart/secrets.key"],
    );
    let shown = r.render_redacted().unwrap();
    assert!(!shown.contains("hunter"), "{shown}");
    assert!(
        shown.contains("url = \"postgres://rampart:***@db/fleet?sslmode=require&password=***\""),
        "{shown}"
    );
    // Everything else reads back as it was: the output is a configuration file.
    let back = parse_file("shown.toml", &shown).unwrap();
    assert!(back.problems.is_empty(), "{:?}", back.problems);
    let mut expected = r.effective.clone();
    expected.database.url = back.settings.database.url.clone();
    assert_eq!(back.settings, expected);
    assert_eq!(redact_url("sqlite:///var/x.db"), "sqlite:///var/x.db");
    assert_eq!(
        redact_url("postgres://u@db/x"),
        "postgres://u@db/x",
        "no password, nothing hidden"
    );
}

#[test]
fn connection_caps_name_a_listener_and_positive_numbers() {
    let (listener, caps) = parse_connection_cap("device=8192/512").unwrap();
    assert_eq!(
        (listener.as_str(), caps.max_connections, caps.max_per_source),
        ("device", 8192, 512)
    );
    assert_eq!(
        parse_connection_cap("metrics=8").unwrap().1.max_per_source,
        8
    );
    assert!(
        parse_connection_cap("admin=5")
            .unwrap_err()
            .contains("unknown listener")
    );
    assert!(
        parse_connection_cap("device=0")
            .unwrap_err()
            .contains("not a positive number")
    );
}

/// The operator guide's table of settings, as the program defines them.
fn settings_table() -> String {
    let defaults = Settings::defaults().to_table().unwrap();
    let command = Settings::augment_args(clap::Command::new("server"));
    let mut table =
        String::from("| Key | Flag | Environment | Default |\n| --- | --- | --- | --- |\n");
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let (section, key) = id.split_once('.').unwrap();
        let default = defaults
            .get(section)
            .and_then(|s| s.get(key))
            .map_or("(unset)".to_owned(), |v| format!("`{v}`"));
        table.push_str(&format!(
            "| `[{section}]` `{key}` | `--{}` | `{}` | {default} |\n",
            arg.get_long().unwrap(),
            arg.get_env().unwrap().to_str().unwrap(),
        ));
    }
    table
}

#[test]
fn the_operator_guide_lists_every_setting_with_its_flag_variable_and_default() {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operator-guide.md"
    ))
    .unwrap();
    let table = settings_table();
    assert!(
        guide.contains(&table),
        "docs/operator-guide.md's table of server settings differs from the program's; it is:\n{table}"
    );
}
