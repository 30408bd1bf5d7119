//! The web console in a real browser: a real `rampart server` (SQLite, a hosted image
//! repository, a director) with a fleet simulated by `rampart sim`, a device that reports
//! markup in its hardware id, attributes and report message, and a running campaign; then
//! `node console.spec.mjs` (npm `playwright-core`, pinned in `console/package.json`, driving
//! Debian's headless `/usr/bin/chromium`) logs in as a viewer, an operator and an auditor,
//! loads every page (fleet, device, releases, campaigns, incidents, risk, audit), uses the
//! filters, pauses and resumes the campaign, acknowledges an incident and creates a
//! remediation campaign, checks that a viewer has no controls and that the server refuses its
//! forged POSTs, that injected markup (from devices, SBOMs, the advisory feed and an incident
//! title) stays text, and saves a screenshot of each page to `docs/console/` (shown in
//! `docs/console.md`).
//!
//! Without node, the npm packages (`npm ci` in `console/`, which scripts/test.sh runs) or
//! Chromium the test fails and says what to install; it never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rampart_testkit::cli::{self, StderrOnPanic, ok, rampart, s};
use rampart_testkit::http::{BlockingClient, mutual_tls_config, tls_config};
use rampart_testkit::pki::ServerPki;
use serde_json::{Value, json};

mod support;
use support::{hosting_server_command, start_server};

/// Simulated devices.
const DEVICES: usize = 40;
/// The device that reports markup (outside the simulator's `sim-NNNNN` ids).
const MARKUP_DEVICE: &str = "markup-0001";
const HARDWARE_MARKUP: &str = "<script>window.pwned=1</script>";
const ATTRIBUTE_MARKUP: &str = "<img src=x onerror=\"window.pwned=2\">";
const MESSAGE_MARKUP: &str = "<b>bold</b><img src=y onerror=\"window.pwned=3\">";

/// An advisory the test imports (feed-controlled text with markup).
const ADVISORY: &str = "TEST-<script>window.pwned=4</script>";

/// A CycloneDX SBOM pinning `requests` at `version`, with a component named with markup.
fn cyclonedx(version: &str) -> Value {
    let purl = format!("pkg:pypi/requests@{version}");
    json!({"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": [
        {"type": "library", "bom-ref": purl, "name": "requests", "version": version, "purl": purl},
        {"type": "library", "bom-ref": "markup", "name": HARDWARE_MARKUP, "version": "1.0"},
    ]})
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("console")
}

/// Fails (never skips) without node, the pinned npm packages or Debian's Chromium.
fn check_tools() {
    let install = "run scripts/test.sh (it installs Debian's chromium and npm and runs `npm ci` in crates/rampart-system-tests/console), or: apt-get install chromium npm && (cd crates/rampart-system-tests/console && npm ci)";
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        other => panic!("node is not installed ({other:?}); {install}"),
    }
    assert!(
        console_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed in {}; {install}",
        console_dir().display()
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "/usr/bin/chromium is missing; {install}"
    );
}

/// Kills and reaps the simulator when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    // A bound for a busy machine, never a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(180);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_console_works_in_a_real_browser_against_a_simulated_fleet() {
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path();
    let _stderr = StderrOnPanic(w.join("server.stderr"));

    // A repository with the factory release and the next one, for both boards.
    // 1.0.0's SBOM pins a vulnerable `requests` (and names a component with markup); 2.0.0's
    // pins the fixed one.
    let repo = cli::init_repo(w);
    for (version, requests) in [("1.0.0", "2.19.0"), ("2.0.0", "2.31.0")] {
        let image = w.join(format!("fw-{version}.img"));
        std::fs::write(&image, format!("firmware {version}\n").repeat(512)).unwrap();
        let sbom = w.join(format!("fw-{version}.cdx.json"));
        std::fs::write(&sbom, cyclonedx(requests).to_string()).unwrap();
        ok(rampart(&[
            "release",
            "add",
            s(&image),
            "--repo",
            s(&repo),
            "--hw",
            "board-a",
            "--hw",
            "board-b",
            "--version",
            version,
            "--security-version",
            "1",
            "--sbom",
            s(&sbom),
        ]));
    }
    let (director, director_online) = cli::init_director(w);
    // The manufacturer CA (its key too: the simulator issues its devices' certificates).
    let pki = ServerPki::write(w, "Console Test CA", 1, "server.key");
    rampart_pki::write_private_key_pem(&w.join("ca.key"), &pki.ca.key_pem()).unwrap();
    let db = format!("sqlite://{}", w.join("server.db").display());
    let online_key = format!("file:{director_online}");
    let args = hosting_server_command(&pki, &db, &repo, &director, &online_key);
    let (mut server, device_url, base) = start_server(w, &args);
    let token = |role: &str| cli::create_token(&db, role, role);
    let (viewer, operator, auditor) = (token("viewer"), token("operator"), token("auditor"));
    let ca_pem = pki.ca.cert_pem().to_owned();
    let api = BlockingClient::new(&base, Some(tls_config(&ca_pem)))
        .with_header("Authorization", &format!("Bearer {operator}"));

    // The simulated fleet: 60 % board-a, 40 % board-b, in two regions, polling every second.
    let sim_log = std::fs::File::create(w.join("sim.log")).unwrap();
    let devices = DEVICES.to_string();
    let sim = rampart(&[
        "sim",
        "--server",
        &device_url,
        "--server-ca",
        s(&pki.ca_pem),
        "--ca",
        s(w),
        "--director-root",
        s(&director.join("1.root.json")),
        "--repo",
        s(&repo),
        "--initial-target",
        "1.0.0/fw-1.0.0.img",
        "--devices",
        &devices,
        "--models",
        "board-a=60,board-b=40",
        "--regions",
        "eu=50,us=50",
        "--poll-interval",
        "1",
        "--boot-spread",
        "2",
        "--state-dir",
        s(&w.join("sim")),
    ])
    .stdout(sim_log.try_clone().unwrap())
    .stderr(sim_log)
    .spawn()
    .expect("rampart sim starts");
    let _sim = Killed(sim);
    wait_until("every simulated device has polled", || {
        let r = api.get("/api/v1/fleet/versions");
        r.status == 200 && r.json()["devices"].as_u64() == Some(DEVICES as u64)
    });

    // A device whose hardware id, attributes and report message are markup.
    let (cert, key) = pki.device(w, MARKUP_DEVICE, "markup.key");
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    let device = BlockingClient::new(
        &device_url,
        Some(mutual_tls_config(&ca_pem, &read(cert), &read(key))),
    );
    let poll = json!({"hardware_id": HARDWARE_MARKUP, "firmware_version": "1.0.0",
        "security_version": 1, "region": "eu", "slots": {"a": "good", "b": "inactive"},
        "attributes": {ATTRIBUTE_MARKUP: HARDWARE_MARKUP}});
    let r = device.post("/device/v1/poll", poll.to_string().as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    let report = json!({"id": "markup-report-1", "status": "failed",
        "details": {"message": MESSAGE_MARKUP, "reason": "health_check_failed"}});
    let r = device.post("/device/v1/reports", report.to_string().as_bytes());
    assert_eq!(r.status, 201, "{}", r.text());

    // A campaign that stays running: its canary is watched for an hour before the gate passes.
    let spec = json!({
        "name": "fleet to 2.0.0",
        "release": "2.0.0/fw-2.0.0.img",
        "targets": {"filter": {"hardware_id": "board-a"}},
        "phases": {"canary": {"devices": 3}, "waves": [{"percent": 50}]},
        "gate": {"min_success_pct": 90, "max_failure_pct": 20, "min_results": 2,
                 "min_observation_secs": 3600},
    });
    let r = api.post(
        "/api/v1/campaigns",
        json!({"spec": spec, "start": true}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let campaign = r.json()["id"].as_str().unwrap().to_owned();
    wait_until("the canary has installed", || {
        let r: Value = api.get(&format!("/api/v1/campaigns/{campaign}")).json();
        r["figures"]["waves"][0]["succeeded"].as_u64() >= Some(1)
    });

    // An advisory (its id holds markup) on the `requests` 1.0.0 pins, fixed in 2.20.0.
    let advisory = json!({"id": ADVISORY, "modified": "2024-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "requests"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2.20.0"}]}]}]});
    let r = api.post(
        "/api/v1/risk/advisories",
        json!({"advisories": [advisory]}).to_string().as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // An incident (its title holds markup) on the markup device.
    let r = api.post(
        "/api/v1/incidents",
        json!({"severity": "high", "title": format!("unexpected firmware {HARDWARE_MARKUP}"),
               "devices": [MARKUP_DEVICE]})
        .to_string()
        .as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let incident = r.json()["id"].as_str().unwrap().to_owned();

    // The browser test.
    let screenshots = repo_root().join("docs/console");
    let config = w.join("console-test.json");
    std::fs::write(
        &config,
        json!({
            "base": base,
            "viewer": viewer,
            "operator": operator,
            "auditor": auditor,
            "campaign": campaign,
            "incident": incident,
            "release": "1.0.0/fw-1.0.0.img",
            "fixRelease": "2.0.0/fw-2.0.0.img",
            "advisory": ADVISORY,
            "devices": DEVICES,
            "markupDevice": MARKUP_DEVICE,
            "markup": {"hardware": HARDWARE_MARKUP, "attribute": ATTRIBUTE_MARKUP,
                       "message": format!("health_check_failed: {MESSAGE_MARKUP}")},
            "screenshots": screenshots,
        })
        .to_string(),
    )
    .unwrap();
    let out = Command::new("node")
        .arg("console.spec.mjs")
        .arg(&config)
        .current_dir(console_dir())
        .stdin(Stdio::null())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}\nserver:\n{}",
        cli::tail(&w.join("server.stderr"))
    );
    assert!(stdout.contains("every check passed"), "{stdout}");
    for page in [
        "login",
        "fleet",
        "fleet-filtered",
        "device",
        "campaigns",
        "campaign",
        "releases",
        "release",
        "incidents",
        "incident",
        "risk",
        "remediation",
        "audit",
        "indicators",
    ] {
        let shot = screenshots.join(format!("{page}.png"));
        let bytes = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", shot.display());
    }
    server.kill();
}
