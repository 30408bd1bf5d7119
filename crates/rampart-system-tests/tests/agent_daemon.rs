//! The device daemon (`rampart-agent run --once`) against the real `rampart server` (SQLite),
//! through simulated reboots: a good release is installed into the inactive slot, booted,
//! health-checked and committed; a bad one is installed, fails its health check, and is rolled
//! back; every step is checked through the management API. Both sides are the real binaries;
//! the bootloader is the boot simulator over a GRUB environment file in this process.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rampart_agent::bootenv::GrubEnvFile;
use rampart_agent::bootsim::BootSim;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, SlotContent};
use rampart_testkit::binaries::agent_binary;
use rampart_testkit::cli;
use rampart_testkit::cli::{ok, rampart, run, s};
use rampart_testkit::http::ManagementClient;
use rampart_testkit::pki::ServerPki;
use serde_json::{Value, json};

mod support;
use support::hosting_server_command;

const HARDWARE: &str = "board-1";
const DEVICE: &str = "dev-1";
/// Capacity of each (file-backed) slot.
const SLOT_BYTES: usize = 256 * 1024;

/// A firmware image: a header naming its version (the bad one also carries the marker its
/// health check trips on), then filler, deterministic and distinct per version.
fn image(version: &str, bad: bool) -> Vec<u8> {
    let mut v = format!("RAMPART-IMAGE {version}\n").into_bytes();
    if bad {
        v.extend_from_slice(b"BAD-IMAGE: the application crashes at start\n");
    }
    let mut i = 0u32;
    while v.len() < 120_000 {
        v.extend_from_slice(format!("{version} block {i:08}\n").as_bytes());
        i += 1;
    }
    v
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// The `rampart server` child with both listeners; SIGKILLed and reaped when dropped.
struct Server {
    child: std::process::Child,
    device_url: String,
    /// The management API's base, `https://HOST:PORT`.
    management_url: String,
    /// The management API's URL as the server prints it (`https://HOST:PORT/api/v1/`).
    printed_management_url: String,
    log: PathBuf,
}

impl Server {
    fn start(args: &[String], log: &Path) -> Server {
        let mut child = rampart(&[])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("the rampart binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads both listening lines, then drains stdout until the process dies.
        std::thread::spawn(move || {
            let (mut device, mut sent) = (None, false);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("device API listening on ") {
                    device = Some(format!("https://{}", addr.trim()));
                } else if let Some(url) = line.strip_prefix("management API listening on ")
                    && !sent
                {
                    let _ = tx.send((device.clone(), url.trim().to_owned()));
                    sent = true;
                }
            }
        });
        let mut server = Server {
            child,
            device_url: String::new(),
            management_url: String::new(),
            printed_management_url: String::new(),
            log: log.to_path_buf(),
        };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok((Some(device), printed)) => {
                server.device_url = device;
                server.management_url = printed.trim_end_matches("/api/v1/").to_owned();
                server.printed_management_url = printed;
                server
            }
            other => {
                let _ = server.child.kill();
                let status = server.child.wait();
                panic!(
                    "rampart server did not start ({other:?}; exit status {status:?}); its stderr:\n{}",
                    cli::tail(log)
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- stderr of rampart server (tail) ----\n{}",
                cli::tail(&self.log)
            );
        }
    }
}

/// An operator's HTTPS client for the management API.
struct Operator {
    api: ManagementClient,
}

impl Operator {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api.call(method, path, body)
    }

    fn get(&self, path: &str) -> Value {
        let (status, v) = self.call("GET", path, None);
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    fn assign(&self, target: &str) -> String {
        self.assign_as(target, "forced")
    }

    fn assign_as(&self, target: &str, kind: &str) -> String {
        let (status, v) = self.call(
            "POST",
            "/api/v1/assignments",
            Some(json!({"target": target, "type": kind, "devices": [DEVICE]})),
        );
        assert_eq!(status, 201, "assigning {target}: {v}");
        v["id"].as_str().expect("an assignment id").to_owned()
    }

    /// The device's reports, newest first.
    fn reports(&self) -> Vec<Value> {
        self.get(&format!("/api/v1/reports?device={DEVICE}"))["reports"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// The simulated device: its files, the boot simulator, and the agent binary with its config.
struct Device {
    dir: PathBuf,
    agent: PathBuf,
    config: PathBuf,
    sim: BootSim,
}

impl Device {
    fn slot(&self, slot: Slot) -> PathBuf {
        self.dir.join(format!("slot-{slot}"))
    }

    /// Powers on: the simulated bootloader picks a slot over the GRUB environment and writes the
    /// command line and a fresh boot id. A slot without a complete image never comes up (and
    /// fails the test: the agent must never let the bootloader try one).
    fn power_on(&mut self) -> Slot {
        let paths = [self.slot(Slot::A), self.slot(Slot::B)];
        let tried_empty = std::cell::Cell::new(None);
        let comes_up = |slot: Slot| {
            let bytes = std::fs::read(&paths[usize::from(slot == Slot::B)]).unwrap();
            let up = bytes.starts_with(b"RAMPART-IMAGE ");
            if !up {
                tried_empty.set(Some(slot));
            }
            up
        };
        let on = self.sim.power_on(&comes_up).expect("power on");
        assert_eq!(
            tried_empty.get(),
            None,
            "the bootloader tried a slot without an image"
        );
        on.running.expect("a slot boots")
    }

    fn agent(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.agent);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// `rampart-agent run --once`: success and output.
    fn run_once(&self) -> (bool, String) {
        run(self.agent(&["run", "--once"]))
    }

    fn status(&self) -> Value {
        serde_json::from_str(&ok(self.agent(&["status"]))).expect("status prints JSON")
    }

    fn slot_holds(&self, slot: Slot, image: &[u8]) -> bool {
        std::fs::read(self.slot(slot)).unwrap().starts_with(image)
    }
}

/// The server side of a test: the PKI (CA, server and device certificates), the director,
/// and `rampart server` on SQLite serving `repo`, with an operator client.
struct Backend {
    ca_pem: PathBuf,
    device_pem: PathBuf,
    device_key: PathBuf,
    director: PathBuf,
    db: String,
    server: Server,
    operator: Operator,
}

impl Backend {
    fn start(w: &Path, repo: &Path) -> Backend {
        let pki = ServerPki::write(w, "Daemon Test CA", 1, "server.key");
        let (device_pem, device_key) = pki.device(w, DEVICE, "dev-1-tls.key");
        let (ca, ca_pem) = (&pki.ca, pki.ca_pem.clone());
        let (director, online) = cli::init_director(w);

        let db = format!("sqlite://{}", w.join("server.db").display());
        let args = hosting_server_command(&pki, &db, repo, &director, &online);
        let server = Server::start(&args, &w.join("server.stderr"));

        let token = token(&db, "operator");
        let operator = Operator {
            api: ManagementClient::new(&server.management_url, &token, ca.cert_pem()),
        };
        Backend {
            ca_pem,
            device_pem,
            device_key,
            director,
            db,
            server,
            operator,
        }
    }
}

/// A new management-API token with `role`. The secret is standard output's only line
/// (standard error describes the token).
fn token(db: &str, role: &str) -> String {
    rampart_testkit::cli::create_token(db, role, role)
}

#[test]
fn daemon_updates_commits_and_rolls_back_through_the_server() {
    let agent_bin = agent_binary();
    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();

    // ---- 1. The image repository (good v2, bad v3), the PKI, the director, the server. ----
    let repo = cli::init_repo(&w);
    let (v1, v2, v3, v4, v5) = (
        image("1.0.0", false),
        image("2.0.0", false),
        image("3.0.0", true),
        image("4.0.0", false),
        image("5.0.0", false),
    );
    for (version, sv, bytes) in [
        ("2.0.0", "2", &v2),
        ("3.0.0", "3", &v3),
        ("4.0.0", "4", &v4),
        ("5.0.0", "5", &v5),
    ] {
        let dir = w.join(format!("release-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("fw.img"), bytes).unwrap();
        ok(rampart(&[
            "release",
            "add",
            s(&dir.join("fw.img")),
            "--repo",
            s(&repo),
            "--hw",
            HARDWARE,
            "--version",
            version,
            "--security-version",
            sv,
        ]));
    }
    let (good, bad, newer, unreachable) = (
        "2.0.0/fw.img",
        "3.0.0/fw.img",
        "4.0.0/fw.img",
        "5.0.0/fw.img",
    );

    let Backend {
        ca_pem,
        device_pem,
        device_key,
        director,
        db,
        server,
        operator,
    } = Backend::start(&w, &repo);

    // ---- 2. The device: slot A holds v1 (committed), slot B is blank; a GRUB environment. ----
    let d = w.join("device");
    std::fs::create_dir_all(&d).unwrap();
    let mut a = v1.clone();
    a.resize(SLOT_BYTES, 0);
    std::fs::write(d.join("slot-A"), a).unwrap();
    std::fs::write(d.join("slot-B"), vec![0u8; SLOT_BYTES]).unwrap();
    // The application's health check: it "crashes" when the running slot holds the bad image.
    std::fs::write(
        d.join("health.sh"),
        format!(
            "slot=$(sed -n 's/.*rampart\\.slot=\\([AB]\\).*/\\1/p' '{cmdline}')\n\
             if grep -q BAD-IMAGE '{d}/slot-'\"$slot\"; then\n  \
             echo \"application in slot $slot exited with status 1\" >&2\n  exit 1\nfi\n",
            cmdline = d.join("cmdline").display(),
            d = d.display()
        ),
    )
    .unwrap();
    let config = d.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"state_dir = "{d}/state"
hardware_id = "{HARDWARE}"
[server]
url = "{url}"
ca = "{ca}"
cert = "{cert}"
key = "{key}"
[slots]
A = "{d}/slot-A"
B = "{d}/slot-B"
[bootloader]
kind = "grub"
grub_env = "{d}/grubenv"
tries = 3
[boot]
cmdline = "{d}/cmdline"
boot_id = "{d}/boot_id"
reboot_command = ["true"]
[health]
commands = [["/bin/sh", "{d}/health.sh"]]
check_server = true
deadline_secs = 20
[install]
soft_check = ["/bin/sh", "-c", "test -e '{d}/on-mains'"]
"#,
            d = d.display(),
            url = server.device_url,
            ca = ca_pem.display(),
            cert = device_pem.display(),
            key = device_key.display(),
        ),
    )
    .unwrap();
    let mut dev = Device {
        dir: d.clone(),
        agent: agent_bin,
        config,
        sim: BootSim::new(
            Box::new(GrubEnvFile::new(d.join("grubenv"))),
            3,
            &d.join("cmdline"),
            &d.join("boot_id"),
        ),
    };
    let out = ok(dev.agent(&[
        "init",
        s(&repo.join("metadata/1.root.json")),
        "--director-root",
        s(&director.join("1.root.json")),
    ]));
    assert!(out.contains("director root pinned"), "{out}");
    // The factory state: slot A committed, holding v1.
    let mut state = AgentState {
        committed: Some(Slot::A),
        ..AgentState::default()
    };
    state.slots.insert(
        Slot::A,
        SlotContent {
            target: "1.0.0/fw.img".into(),
            version: "1.0.0".into(),
            security_version: 1,
            sha256: sha256_hex(&v1),
            length: v1.len() as u64,
        },
    );
    std::fs::write(d.join("state/agent-state.json"), state.to_bytes()).unwrap();

    // First start: nothing assigned; the poll enrols the device with its facts.
    assert_eq!(dev.power_on(), Slot::A);
    let (success, out) = dev.run_once();
    assert!(success && out.contains("up to date"), "{out}");
    let device = operator.get(&format!("/api/v1/devices/{DEVICE}"));
    assert_eq!(device["device"]["firmware_version"], "1.0.0", "{device}");
    assert_eq!(device["device"]["hardware_id"], HARDWARE, "{device}");
    assert_eq!(device["update_status"], "unassigned", "{device}");

    // ---- 3. The good release: installed into B, booted, health-checked, committed. ----
    let assignment_v2 = operator.assign(good);
    let (success, out) = dev.run_once();
    assert!(success && out.contains("rebooting"), "{out}");
    assert!(dev.slot_holds(Slot::B, &v2), "slot B holds v2");
    assert!(dev.slot_holds(Slot::A, &v1), "slot A is untouched");
    let status = dev.status();
    assert_eq!(status["state"]["phase"]["phase"], "activated", "{status}");
    assert_eq!(status["state"]["phase"]["slot"], "B", "{status}");

    assert_eq!(dev.power_on(), Slot::B, "the bootloader tries the new slot");
    let (success, out) = dev.run_once();
    assert!(
        success && out.contains("committed version 2.0.0") && out.contains("up to date"),
        "{out}"
    );
    let status = dev.status();
    assert_eq!(status["state"]["committed"], "B", "{status}");
    assert_eq!(status["state"]["phase"]["phase"], "idle", "{status}");
    assert_eq!(
        status["state"]["slots"]["B"]["version"], "2.0.0",
        "{status}"
    );
    assert_eq!(status["state"]["outbox"], json!([]), "{status}");
    assert_eq!(status["security_version"], 2, "{status}");
    assert_eq!(status["slots"]["B"]["bootloader"], "good", "{status}");

    let reports = operator.reports();
    let latest = &reports[0];
    assert_eq!(latest["status"], "installed", "{reports:#?}");
    assert_eq!(latest["assignment"], assignment_v2.as_str(), "{latest}");
    assert_eq!(latest["details"]["reason"], "ok", "{latest}");
    assert_eq!(latest["details"]["version"], "2.0.0", "{latest}");
    assert_eq!(latest["details"]["slot"], "B", "{latest}");
    for earlier in ["rebooting", "downloading"] {
        assert!(
            reports
                .iter()
                .any(|r| r["status"] == earlier && r["assignment"] == assignment_v2.as_str()),
            "no {earlier} report: {reports:#?}"
        );
    }
    let device = operator.get(&format!("/api/v1/devices/{DEVICE}"));
    assert_eq!(device["device"]["firmware_version"], "2.0.0", "{device}");
    assert_eq!(device["device"]["security_version"], 2, "{device}");
    assert_eq!(device["update_status"], "up_to_date", "{device}");
    // Slot facts in the inventory's format, so `slot=b=active` filters find the device.
    assert_eq!(
        device["device"]["slots"],
        json!({"a": "good", "b": "active"}),
        "{device}"
    );
    let progress = operator.get(&format!("/api/v1/assignments/{assignment_v2}"));
    assert_eq!(
        progress["devices_by_last_status"]["installed"], 1,
        "{progress}"
    );
    let versions = operator.get("/api/v1/fleet/versions");
    assert_eq!(
        versions["versions"],
        json!([{"firmware_version": "2.0.0", "devices": 1}]),
        "{versions}"
    );

    // Rebooting again changes nothing.
    assert_eq!(dev.power_on(), Slot::B);
    let (success, out) = dev.run_once();
    assert!(success && out.trim() == "up to date", "{out}");

    // ---- 4. The bad release: installed into A, fails its health check, rolled back. ----
    let assignment_v3 = operator.assign(bad);
    let (success, out) = dev.run_once();
    assert!(success && out.contains("rebooting"), "{out}");
    assert!(
        dev.slot_holds(Slot::A, &v3),
        "v3 goes into the inactive slot A"
    );
    assert!(dev.slot_holds(Slot::B, &v2), "slot B is untouched");

    assert_eq!(dev.power_on(), Slot::A, "the bootloader tries v3");
    let (success, out) = dev.run_once();
    assert!(success && out.contains("rebooting"), "{out}");
    let status = dev.status();
    assert_eq!(
        status["state"]["phase"]["phase"], "rolling_back",
        "{status}"
    );
    assert_eq!(status["slots"]["A"]["bootloader"], "bad", "{status}");

    assert_eq!(dev.power_on(), Slot::B, "the rollback boots v2 again");
    let (success, out) = dev.run_once();
    assert!(
        out.contains("rolled back from version 3.0.0 (health_check_failed)"),
        "{out}"
    );
    // The release is still assigned; the agent refuses to install it again (exit status 1).
    let refusal = "[health_check_failed] 3.0.0/fw.img was rolled back on this device";
    assert!(!success && out.contains(refusal), "{out}");
    assert_eq!(out.matches(refusal).count(), 1, "printed once: {out}");

    let reports = operator.reports();
    let latest = &reports[0];
    assert_eq!(latest["status"], "rolled_back", "{reports:#?}");
    assert_eq!(latest["assignment"], assignment_v3.as_str(), "{latest}");
    assert_eq!(
        latest["details"]["reason"], "health_check_failed",
        "{latest}"
    );
    assert_eq!(latest["details"]["version"], "3.0.0", "{latest}");
    assert_eq!(latest["details"]["bad_slot"], "A", "{latest}");
    assert_eq!(latest["details"]["running_slot"], "B", "{latest}");
    let detail = latest["details"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("application in slot A exited with status 1"),
        "the health check's output is in the report: {latest}"
    );
    let device = operator.get(&format!("/api/v1/devices/{DEVICE}"));
    assert_eq!(device["device"]["firmware_version"], "2.0.0", "{device}");
    assert_eq!(device["device"]["security_version"], 2, "{device}");
    assert_eq!(device["update_status"], "failed", "{device}");
    assert_eq!(
        device["device"]["slots"],
        json!({"a": "bad", "b": "active"}),
        "{device}"
    );
    let progress = operator.get(&format!("/api/v1/assignments/{assignment_v3}"));
    assert_eq!(
        progress["devices_by_last_status"]["rolled_back"], 1,
        "{progress}"
    );
    assert!(
        progress["devices_by_last_status"]
            .get("installed")
            .is_none(),
        "{progress}"
    );

    // Still on v2, and another pass does not install v3 again, nor report anything new.
    let status = dev.status();
    assert_eq!(status["state"]["committed"], "B", "{status}");
    assert_eq!(status["state"]["phase"]["phase"], "idle", "{status}");
    assert_eq!(
        status["state"]["slots"]["B"]["version"], "2.0.0",
        "{status}"
    );
    assert_eq!(
        status["state"]["last_result"]["reason"],
        "health_check_failed"
    );
    assert_eq!(status["security_version"], 2, "{status}");
    let reports_before = reports.len();
    let (success, out) = dev.run_once();
    assert!(!success && out.contains(refusal), "{out}");
    assert!(!out.contains("rebooting"), "{out}");
    assert_eq!(dev.status()["state"]["phase"]["phase"], "idle");
    assert_eq!(
        operator.reports().len(),
        reports_before,
        "a refused pass sends no report"
    );
    assert_eq!(
        dev.power_on(),
        Slot::B,
        "the bad slot is never booted again"
    );
    let (success, out) = dev.run_once();
    assert!(!success && out.contains(refusal), "{out}");
    assert!(dev.slot_holds(Slot::B, &v2));

    // ---- 5. Download only, then soft: v4 is verified into A and never booted; a soft
    // assignment waits for the device's own check, then activates the staged slot as it is. ----
    let assignment_dl = operator.assign_as(newer, "download_only");
    let (success, out) = dev.run_once();
    assert!(
        success && out.contains("downloaded version 4.0.0 into the inactive slot"),
        "{out}"
    );
    assert!(dev.slot_holds(Slot::A, &v4), "v4 is staged in slot A");
    let slot_a = dev.slot(Slot::A);
    let modified = move || std::fs::metadata(&slot_a).unwrap().modified().unwrap();
    let staged_at = modified();
    let status = dev.status();
    assert_eq!(status["state"]["committed"], "B", "{status}");
    assert_eq!(status["state"]["phase"]["phase"], "idle", "{status}");
    assert_eq!(status["slots"]["A"]["bootloader"], "bad", "{status}");
    let reports = operator.reports();
    assert_eq!(reports[0]["status"], "downloaded", "{reports:#?}");
    assert_eq!(reports[0]["assignment"], assignment_dl.as_str());
    assert_eq!(dev.power_on(), Slot::B, "a staged slot is never booted");
    let (success, out) = dev.run_once();
    assert!(success && out.trim() == "up to date", "{out}");
    assert_eq!(
        operator.reports().len(),
        reports.len(),
        "an already staged release is not downloaded or reported again"
    );

    let assignment_soft = operator.assign_as(newer, "soft");
    let (success, out) = dev.run_once();
    assert!(
        success && out.contains("soft update deferred: soft-update check"),
        "{out}"
    );
    assert_eq!(dev.status()["state"]["phase"]["phase"], "idle");
    std::fs::write(d.join("on-mains"), b"").unwrap();
    let (success, out) = dev.run_once();
    assert!(success && out.contains("rebooting"), "{out}");
    assert_eq!(
        modified(),
        staged_at,
        "the staged slot is activated as it is, not written again"
    );
    assert_eq!(dev.power_on(), Slot::A);
    let (success, out) = dev.run_once();
    assert!(success && out.contains("committed version 4.0.0"), "{out}");
    let reports = operator.reports();
    assert_eq!(reports[0]["status"], "installed", "{reports:#?}");
    assert_eq!(reports[0]["assignment"], assignment_soft.as_str());

    // ---- 6. An install cut off mid-download, then the release the device runs is assigned
    // again (as a fleet rollback does): the unfinished install is abandoned at the next poll,
    // the device is idle, not "installing" a release nobody wants. ----
    let targets = repo.join("targets/5.0.0");
    let hidden = w.join("hidden-5.0.0");
    std::fs::rename(&targets, &hidden).unwrap();
    operator.assign(unreachable);
    let (success, out) = dev.run_once();
    assert!(!success && out.contains("[download_failed]"), "{out}");
    assert_eq!(
        dev.status()["state"]["phase"]["phase"],
        "installing",
        "kept to resume"
    );
    operator.assign(newer);
    let (success, out) = dev.run_once();
    assert!(success && out.contains("up to date"), "{out}");
    let status = dev.status();
    assert_eq!(status["state"]["phase"]["phase"], "idle", "{status}");
    assert_eq!(status["state"]["committed"], "A", "{status}");
    std::fs::rename(&hidden, &targets).unwrap();

    // ---- 7. A revoked device: the server refuses its poll, and the agent says so with the
    // refusal's own reason code (not a download failure), once. ----
    let (status, revoked) = operator.call(
        "POST",
        &format!("/api/v1/devices/{DEVICE}/revoke"),
        Some(json!({"reason": "lost in transit"})),
    );
    assert_eq!(status, 200, "{revoked}");
    let (success, out) = dev.run_once();
    assert!(!success, "{out}");
    assert!(
        out.contains("[poll_refused]") && out.contains("device_revoked"),
        "{out}"
    );
    assert!(!out.contains("download_failed"), "{out}");
    assert_eq!(out.matches("error:").count(), 1, "printed once: {out}");

    drop(server);
    // Every step was audited; the chain verifies.
    let out = ok(rampart(&["audit", "verify", "--db", &db]));
    assert!(!out.trim().is_empty(), "{out}");
}

/// The CLI takes the management URL as the server prints it (`https://HOST:PORT/api/v1/`)
/// as well as the bare base; errors name the whole URL; plain `http://` against the TLS
/// listener is told to use HTTPS; a refusal names the role with its article.
#[test]
fn the_cli_takes_the_printed_management_url_and_explains_plain_http() {
    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();
    let repo = cli::init_repo(&w);
    let backend = Backend::start(&w, &repo);
    let (printed, base) = (
        backend.server.printed_management_url.as_str(),
        backend.server.management_url.as_str(),
    );
    assert!(
        printed.starts_with("https://") && printed.ends_with("/api/v1/"),
        "{printed}"
    );
    let operator = token(&backend.db, "operator");
    let campaign = |url: &str, token: &str, args: &[&str]| {
        let mut c = rampart(&["campaign"]);
        c.args(args)
            .args(["--api", url, "--token", token, "--ca", s(&backend.ca_pem)]);
        run(c)
    };
    for url in [printed, base, &format!("{base}/")] {
        let (success, out) = campaign(url, &operator, &["list"]);
        assert!(success && out.contains("release"), "{url}: {out}");
    }

    // A refused request names the URL it asked (no doubled /api/v1 hidden behind a 404).
    let (success, out) = campaign(printed, &operator, &["status", "c-missing"]);
    assert!(!success, "{out}");
    assert!(
        out.contains(&format!("{base}/api/v1/campaigns/c-missing: 404")),
        "{out}"
    );

    // Plain HTTP against the TLS listener.
    let plain = printed.replacen("https://", "http://", 1);
    let (success, out) = campaign(&plain, &operator, &["list"]);
    assert!(!success, "{out}");
    assert!(
        out.contains(&format!("this is an HTTPS endpoint: use {base}")),
        "{out}"
    );
    assert!(!out.contains("invalid HTTP version"), "{out}");

    // Roles in sentences take their article.
    let auditor = token(&backend.db, "auditor");
    let (success, out) = campaign(base, &auditor, &["do", "start", "c-missing"]);
    assert!(!success, "{out}");
    assert!(out.contains("an auditor token may not do this"), "{out}");
}
