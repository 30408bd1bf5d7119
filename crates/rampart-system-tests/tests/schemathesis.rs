//! A bounded schemathesis run (PyPI `schemathesis`, the version pinned in
//! scripts/requirements-schemathesis.txt, installed by scripts/test.sh into
//! target/schemathesis-venv) against a real `rampart server`: the device API over mutual TLS
//! with a device certificate, the hawkBit DDI API with a GatewayToken and a TargetToken, and
//! the management API with an admin bearer token. Each API is run twice: once with generated
//! path values (ids that mostly do not exist, or break the id grammar), once with the ids of
//! real resources seeded first (a device with an assignment, a DDI controller with an open
//! action, a group, a campaign, a webhook; DELETE routes get copies of their own), so the
//! generated requests reach the handlers' own logic; last, the DDI and management APIs without
//! credentials (401, then the source slowed down: 429). The checks: no 5xx, every status and
//! content type is one the OpenAPI document (crates/rampart-server/openapi.json, from
//! scripts/gen-openapi.py) lists for the route, and every JSON body matches the documented
//! schema. Bounded: a fixed seed, a few examples per operation, one worker, and a generous
//! deadline per run after which it is stopped and the test fails
//! (docs/decisions/0024-schemathesis.md).

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_testkit::cli;
use rampart_testkit::cli::{StderrOnPanic, ok, rampart, s};
use rampart_testkit::http::{BlockingClient, mutual_tls_config, tls_config};
use rampart_testkit::pki::ServerPki;
use rustls::ClientConfig;
use serde_json::{Value, json};

mod support;
use support::{hosting_server_command, start_server};

/// The pinned requirement, e.g. `schemathesis==4.32.5`.
const REQUIREMENTS: &str = include_str!("../../../scripts/requirements-schemathesis.txt");
/// What every run checks.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Test cases per operation and phase: small, so the eight runs take a minute or two on a busy
/// two-core machine.
const MAX_EXAMPLES: &str = "12";
/// Generation is reproducible: the same seed gives the same requests.
const SEED: &str = "20261205";
/// A run that has not finished by then is stopped (it normally takes seconds).
const RUN_DEADLINE: Duration = Duration::from_secs(600);
const HARDWARE: &str = "board-a";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's `schemathesis` (or `$RAMPART_SCHEMATHESIS`), at the pinned version (the test fails,
/// never skips, without it).
fn schemathesis() -> PathBuf {
    let pinned = REQUIREMENTS
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("schemathesis=="))
        .expect("scripts/requirements-schemathesis.txt pins schemathesis==VERSION");
    let exe = std::env::var_os("RAMPART_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/schemathesis-venv/bin/schemathesis"));
    let install = "run scripts/test.sh (it installs the pinned version into target/schemathesis-venv), or: \
         python3 -m venv target/schemathesis-venv && \
         target/schemathesis-venv/bin/pip install -r scripts/requirements-schemathesis.txt";
    let out = Command::new(&exe).arg("--version").output();
    let version = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        other => panic!(
            "schemathesis is not installed at {} ({other:?}); {install}",
            exe.display()
        ),
    };
    assert!(
        version.trim().ends_with(&format!("version {pinned}")),
        "{} is {:?}, not the pinned schemathesis {pinned}; {install}",
        exe.display(),
        version.trim()
    );
    exe
}

/// One schemathesis run: its name, and the arguments after `run SCHEMA`.
struct Run {
    name: &'static str,
    config: Option<String>,
    args: Vec<String>,
}

/// Runs every `runs` entry; returns the names and outputs of the ones that failed.
fn run_all(exe: &Path, schema: &Path, work: &Path, runs: &[Run]) -> Vec<String> {
    let mut failed = Vec::new();
    for run in runs {
        let log = work.join(format!("schemathesis-{}.txt", run.name));
        let mut cmd = Command::new(exe);
        if let Some(config) = &run.config {
            let path = work.join(format!("schemathesis-{}.toml", run.name));
            std::fs::write(&path, config).unwrap();
            cmd.arg("--config-file").arg(path);
        }
        cmd.arg("run")
            .arg(schema)
            .args(["--checks", CHECKS, "--max-examples", MAX_EXAMPLES])
            .args(["--seed", SEED, "--workers", "1", "--no-color"])
            .args(["--continue-on-failure", "--generation-database", "none"])
            .args(["--request-timeout", "30"])
            // Every request carries the run's credential (or none): schemathesis would
            // otherwise also send each operation without it, and those failed authentications
            // get the whole source slowed down (429) for the rest of the run. The runs without
            // credentials cover those answers.
            .args(["--generation-with-security-parameters", "false"])
            .args(&run.args)
            .current_dir(work)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ));
        // Every request and answer of each run, for a developer who wants to see what was sent.
        if let Some(dir) = std::env::var_os("RAMPART_SCHEMATHESIS_HAR_DIR") {
            cmd.args(["--report", "har", "--report-har-path"])
                .arg(Path::new(&dir).join(format!("{}.har", run.name)));
        }
        let mut child = cmd.spawn().expect("schemathesis starts");
        let deadline = Instant::now() + RUN_DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let mut output = String::new();
        std::fs::File::open(&log)
            .unwrap()
            .read_to_string(&mut output)
            .unwrap();
        eprintln!(
            "schemathesis {}: {}",
            run.name,
            output.lines().last().unwrap_or("").trim_matches('=').trim()
        );
        match status {
            Some(s) if s.success() => {}
            Some(s) => failed.push(format!("---- {} ({s}) ----\n{output}", run.name)),
            None => failed.push(format!(
                "---- {} did not finish within {RUN_DEADLINE:?} ----\n{output}",
                run.name
            )),
        }
    }
    failed
}

/// An HTTPS client configuration trusting the test CA, presenting `identity` (certificate,
/// key) if given.
fn agent(ca_pem: &str, identity: Option<(&str, &str)>) -> Arc<ClientConfig> {
    match identity {
        Some((cert, key)) => mutual_tls_config(ca_pem, cert, key),
        None => tls_config(ca_pem),
    }
}

/// `METHOD url` with an Authorization header and a JSON body; the status and parsed body.
fn call(
    agent: &Arc<ClientConfig>,
    method: &str,
    url: &str,
    auth: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let path = url[after_scheme..]
        .find('/')
        .map_or("/", |i| &url[after_scheme + i..]);
    let mut headers = vec![("content-type", "application/json")];
    if !auth.is_empty() {
        headers.push(("authorization", auth));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let r = BlockingClient::new(url, Some(agent.clone()))
        .request(method, path, &headers, body.as_bytes())
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let text = r.text();
    (
        r.status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn created(what: &str, (status, body): (u16, Value)) -> Value {
    assert!(
        (200..300).contains(&status),
        "seeding {what}: {status} {body}"
    );
    body
}

/// The `[[operations]]` entries of a schemathesis config: each fixes path (or query) values for
/// the operations whose name (`METHOD /path`) matches its regular expression. (A name pattern,
/// not separate method and path patterns: schemathesis 4 applies an entry with both to every
/// operation either one matches.)
fn operations(entries: &[(&str, &[(&str, &str)])]) -> String {
    let mut toml = String::new();
    for (name_regex, params) in entries {
        let params: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{} = {}", json!(k), json!(v)))
            .collect();
        toml.push_str(&format!(
            "[[operations]]\ninclude-name-regex = {}\nparameters = {{ {} }}\n",
            json!(name_regex),
            params.join(", ")
        ));
    }
    toml
}

#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_answer_on_any_api() {
    let exe = schemathesis();
    let schema = repo_root().join("crates/rampart-server/openapi.json");
    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();
    let _stderr = StderrOnPanic(w.join("server.stderr"));

    // An image repository with one release, and a director root.
    let repo = cli::init_repo(&w);
    let firmware = w.join("fw.bin");
    std::fs::write(&firmware, b"rampart schemathesis firmware\n".repeat(128)).unwrap();
    ok(rampart(&[
        "release",
        "add",
        s(&firmware),
        "--repo",
        s(&repo),
        "--hw",
        HARDWARE,
        "--version",
        "1.0.0",
        "--security-version",
        "1",
    ]));
    let release = "1.0.0/fw.bin";
    let sha256 = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        &std::fs::read(&firmware).unwrap(),
    ));
    let (director, director_online) = cli::init_director(&w);

    // The CA, the server's certificate for 127.0.0.1 and a device certificate.
    let pki = ServerPki::write(&w, "Schemathesis Test CA", 1, "server.key");
    let (device_pem, device_key) = pki.device(&w, "dev-sch", "dev-sch.key");
    let (ca, ca_pem) = (&pki.ca, pki.ca_pem.clone());
    let read = |path: &Path| std::fs::read_to_string(path).unwrap();
    let (device_cert_pem, device_key_pem) = (read(&device_pem), read(&device_key));

    let db = format!("sqlite://{}", w.join("server.db").display());
    // The director's online key is an encrypted key file: the server reads its passphrase.
    let online_key = format!("file:{director_online}");
    let mut args = hosting_server_command(&pki, &db, &repo, &director, &online_key);
    args.extend(
        [
            "--ddi-listen",
            "127.0.0.1:0",
            // The seeded webhooks' receiver (nothing listens there: deliveries just fail).
            "--webhook-allow",
            "127.0.0.1/32",
        ]
        .map(str::to_owned),
    );
    let (mut server, device_url, management_url) = start_server(&w, &args);
    let ddi_url = server
        .line_after("DDI API listening on ", Duration::from_secs(30))
        .expect("the DDI API listens");
    let ddi_url = ddi_url.trim().trim_end_matches('/').to_owned();
    let token = |role: &str, name: &str| cli::create_token(&db, role, name);
    let admin = format!("Bearer {}", token("admin", "schemathesis"));

    // Seeds real resources, so the runs with fixed ids reach the handlers' logic.
    let ca_text = ca.cert_pem();
    let operator = agent(ca_text, None);
    let api = |method: &str, path: &str, body: Option<Value>| {
        created(
            &format!("{method} {path}"),
            call(
                &operator,
                method,
                &format!("{management_url}{path}"),
                &admin,
                body,
            ),
        )
    };
    let device_agent = agent(ca_text, Some((&device_cert_pem, &device_key_pem)));
    created(
        "the device's first poll",
        call(
            &device_agent,
            "POST",
            &format!("{device_url}/device/v1/poll"),
            "",
            Some(
                json!({"hardware_id": HARDWARE, "firmware_version": "0.9.0", "security_version": 0}),
            ),
        ),
    );
    for group in ["sch-group", "sch-doomed-group"] {
        api("POST", "/api/v1/groups", Some(json!({"name": group})));
        api(
            "POST",
            &format!("/api/v1/groups/{group}/members"),
            Some(json!({"add": ["dev-sch"]})),
        );
    }
    let assignment = api(
        "POST",
        "/api/v1/assignments",
        Some(json!({"target": release, "devices": ["dev-sch"]})),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let campaign = api(
        "POST",
        "/api/v1/campaigns",
        Some(
            json!({"spec": {"name": "schemathesis", "release": release, "targets": {"group": "sch-group"}}}),
        ),
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let doomed_token = api(
        "POST",
        "/api/v1/tokens",
        Some(json!({"role": "viewer", "name": "sch-doomed"})),
    )["token"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let webhook = |description: &str| {
        api(
            "POST",
            "/api/v1/webhooks",
            Some(
                json!({"url": "https://127.0.0.1:9/hook", "secret": "schemathesis-secret-0123",
                "events": ["campaign.halted"], "description": description}),
            ),
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (kept_webhook, doomed_webhook) = (webhook("kept"), webhook("doomed"));
    let gateway = api(
        "POST",
        "/api/v1/ddi/tenants",
        Some(json!({"name": "DEFAULT", "target_token": true, "gateway_token": true})),
    )["gateway_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let target_token = api(
        "POST",
        "/api/v1/ddi/tenants/DEFAULT/devices/ddi-sch/token",
        Some(json!({"hardware_id": HARDWARE})),
    )["target_token"]
        .as_str()
        .unwrap()
        .to_owned();
    api(
        "POST",
        "/api/v1/ddi/tenants/DEFAULT/devices/ddi-doomed/token",
        Some(json!({"hardware_id": HARDWARE})),
    );
    api(
        "POST",
        "/api/v1/assignments",
        Some(json!({"target": release, "devices": ["ddi-sch"]})),
    );
    // The controller's poll opens its action.
    created(
        "the DDI controller's poll",
        call(
            &operator,
            "GET",
            &format!("{ddi_url}/DEFAULT/controller/v1/ddi-sch"),
            &format!("TargetToken {target_token}"),
            None,
        ),
    );
    let actions = api("GET", "/api/v1/ddi/devices/ddi-sch/actions", None);
    let action = &actions["actions"][0];
    let (action_id, module_id) = (
        action["id"]
            .as_i64()
            .expect("an open DDI action")
            .to_string(),
        action["module_id"].as_i64().unwrap().to_string(),
    );

    let tls = |url: &str| {
        vec![
            "--url".to_owned(),
            url.to_owned(),
            "--tls-verify".into(),
            s(&ca_pem).to_owned(),
        ]
    };
    let with = |mut base: Vec<String>, more: &[&str]| {
        base.extend(more.iter().map(|s| s.to_string()));
        base
    };
    let device_args = with(
        tls(&device_url),
        &[
            "--include-path-regex",
            "^/device/",
            "--request-cert",
            s(&device_pem),
            "--request-cert-key",
            s(&device_key),
        ],
    );
    let target_path = format!("1.0.0/{sha256}.fw.bin");
    let gateway_auth = format!("Authorization: GatewayToken {gateway}");
    let target_auth = format!("Authorization: TargetToken {target_token}");
    let admin_auth = |run: &str| {
        format!(
            "Authorization: Bearer {}",
            token("admin", &format!("schemathesis-{run}"))
        )
    };
    // DELETE routes get resources of their own, so the others' stay for the whole run.
    let management_ids: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            r"^(GET|POST) /api/v1/devices/\{id\}",
            vec![("path.id", "dev-sch")],
        ),
        (
            r"^(GET|POST|PUT) /api/v1/ddi/",
            vec![("path.name", "DEFAULT"), ("path.id", "ddi-sch")],
        ),
        (
            r"^(GET|POST|PUT) /api/v1/groups/\{name\}",
            vec![("path.name", "sch-group")],
        ),
        (
            r"^DELETE /api/v1/groups/\{name\}",
            vec![("path.name", "sch-doomed-group")],
        ),
        (
            r"^(GET|POST) /api/v1/assignments/\{id\}",
            vec![("path.id", &assignment)],
        ),
        (
            r"^(GET|POST) /api/v1/campaigns/\{id\}",
            vec![("path.id", &campaign)],
        ),
        (
            r"^DELETE /api/v1/tokens/\{id\}",
            vec![("path.id", &doomed_token)],
        ),
        (r"^GET /api/v1/reports$", vec![("query.device", "dev-sch")]),
        (
            r"^(GET|POST) /api/v1/webhooks/\{id\}",
            vec![("path.id", &kept_webhook)],
        ),
        (
            r"^DELETE /api/v1/webhooks/\{id\}",
            vec![("path.id", &doomed_webhook)],
        ),
        (
            r"^DELETE /api/v1/ddi/devices/\{id\}",
            vec![("path.id", "ddi-doomed")],
        ),
    ];
    let management_ids: Vec<(&str, &[(&str, &str)])> = management_ids
        .iter()
        .map(|(name, values)| (*name, values.as_slice()))
        .collect();
    // The runs with real ids come first: a run's last phase (stateful: calls chained by the
    // links schemathesis infers, e.g. a listing's ids into DELETE) may delete or revoke what was
    // seeded. Each management run has an admin token of its own for the same reason.
    let runs = [
        Run {
            name: "device-real-ids",
            config: Some(operations(&[
                (
                    r"^GET /device/v1/director/",
                    &[("path.file", "targets.json")],
                ),
                (
                    r"^GET /device/v1/repo/metadata/",
                    &[("path.file", "timestamp.json")],
                ),
                (
                    r"^GET /device/v1/repo/targets/",
                    &[("path.path", &target_path)],
                ),
            ])),
            args: device_args.clone(),
        },
        Run {
            name: "device-generated-ids",
            config: None,
            args: device_args,
        },
        Run {
            name: "ddi-real-ids",
            config: Some(format!(
                "[parameters]\n\"path.tenant\" = \"DEFAULT\"\n\"path.controllerId\" = \"ddi-sch\"\n\
                 \"path.actionId\" = \"{action_id}\"\n\"path.moduleId\" = \"{module_id}\"\n\
                 \"path.fileName\" = \"fw.bin\"\n"
            )),
            args: with(
                tls(&ddi_url),
                &[
                    "--include-path-regex",
                    "^/\\{tenant\\}/",
                    "-H",
                    &target_auth,
                ],
            ),
        },
        Run {
            name: "ddi-generated-ids",
            config: Some("[parameters]\n\"path.tenant\" = \"DEFAULT\"\n".into()),
            args: with(
                tls(&ddi_url),
                &[
                    "--include-path-regex",
                    "^/\\{tenant\\}/",
                    "-H",
                    &gateway_auth,
                ],
            ),
        },
        Run {
            name: "management-real-ids",
            config: Some(operations(&management_ids)),
            args: with(
                tls(&management_url),
                &[
                    "--include-path-regex",
                    "^/api/",
                    "-H",
                    &admin_auth("real-ids"),
                ],
            ),
        },
        Run {
            name: "management-generated-ids",
            config: None,
            args: with(
                tls(&management_url),
                &[
                    "--include-path-regex",
                    "^/api/",
                    "-H",
                    &admin_auth("generated-ids"),
                ],
            ),
        },
        // Last: their failed authentications slow the source down (429), as they should.
        Run {
            name: "ddi-without-credentials",
            config: Some("[parameters]\n\"path.tenant\" = \"DEFAULT\"\n".into()),
            args: with(tls(&ddi_url), &["--include-path-regex", "^/\\{tenant\\}/"]),
        },
        Run {
            name: "management-without-credentials",
            config: None,
            args: with(tls(&management_url), &["--include-path-regex", "^/api/"]),
        },
    ];
    let failed = run_all(&exe, &schema, &w, &runs);
    server.kill();
    assert!(
        failed.is_empty(),
        "schemathesis found answers the OpenAPI document does not list, or server errors \
         (fix the handler, or document the answer in scripts/gen-openapi.py and regenerate \
         crates/rampart-server/openapi.json):\n{}",
        failed.join("\n")
    );
}

/// The served document is generated, never edited by hand: the checked-in
/// crates/rampart-server/openapi.json is exactly what scripts/gen-openapi.py prints.
#[test]
fn openapi_json_is_what_gen_openapi_prints() {
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/gen-openapi.py"))
        .output()
        .expect("python3 runs scripts/gen-openapi.py");
    assert!(
        out.status.success(),
        "scripts/gen-openapi.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).unwrap();
    assert!(
        generated == rampart_server::OPENAPI_JSON,
        "crates/rampart-server/openapi.json is not what scripts/gen-openapi.py prints; \
         edit the script and run: python3 scripts/gen-openapi.py > crates/rampart-server/openapi.json"
    );
}
