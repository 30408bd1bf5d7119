//! Updates keep flowing for days with nobody running `rampart repo publish`: the real
//! `rampart server` holds the timestamp and snapshot keys and renews them before they expire,
//! and the real `rampart-agent` installs a new assignment on each simulated day.
//!
//! Simulated time is libfaketime (installed by scripts/test.sh) with a shared timestamp file:
//! the server, the agent and every CLI call see the same clock, moved a day at a time while the
//! server keeps running (the monotonic clock is left real, so timers behave). The negative
//! control is the same setup without the keys: on day 1 the timestamp has expired and the
//! device cannot update.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::bootenv::GrubEnvFile;
use rampart_agent::bootsim::BootSim;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, SlotContent};
use rampart_testkit::cli;
use rampart_testkit::cli::{ServerChild, ok, rampart, run, s};
use rampart_testkit::http::{BlockingClient, ManagementClient};
use rampart_testkit::pki::ServerPki;
use serde_json::{Value, json};

const HARDWARE: &str = "board-1";
const DEVICE: &str = "dev-1";
const SLOT_BYTES: usize = 256 * 1024;
/// Generous bound on waiting for the server to act on a clock change.
const WAIT: Duration = Duration::from_secs(120);

fn image(version: &str) -> Vec<u8> {
    rampart_testkit::images::release_image(version, 100_000)
}

/// The shared fake clock: every process started through [`Clock::apply`] sees real time plus
/// the offset written in the file (re-read at most once a second).
struct Clock {
    library: PathBuf,
    file: PathBuf,
}

impl Clock {
    fn new(dir: &Path) -> Clock {
        let library = [
            "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
            "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
            "/usr/lib64/faketime/libfaketimeMT.so.1",
            "/usr/lib/faketime/libfaketimeMT.so.1",
            "/usr/local/lib/faketime/libfaketimeMT.so.1",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect(
            "libfaketime is not installed: install the faketime package (scripts/test.sh does)",
        );
        let clock = Clock {
            library,
            file: dir.join("faketime"),
        };
        clock.set_day(0);
        clock
    }

    fn set_day(&self, day: u32) {
        std::fs::write(&self.file, format!("+{day}d\n")).unwrap();
    }

    fn apply<'a>(&self, command: &'a mut Command) -> &'a mut Command {
        command
            .env("LD_PRELOAD", &self.library)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_CACHE_DURATION", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
    }
}

/// An HTTPS client of the management API and a plain one of /metrics.
struct Operator {
    api: ManagementClient,
    metrics: BlockingClient,
}

impl Operator {
    /// The operator of the server whose management API is at `management` (HOST:PORT) and
    /// metrics at `metrics_url`.
    fn new(management: &str, metrics_url: &str, token: &str, ca_pem: &str) -> Operator {
        Operator {
            api: ManagementClient::new(&format!("https://{management}"), token, ca_pem),
            metrics: BlockingClient::new(metrics_url, None),
        }
    }

    fn assign(&self, target: &str) {
        let (status, body) = self.api.call(
            "POST",
            "/api/v1/assignments",
            Some(json!({"target": target, "type": "forced", "devices": [DEVICE]})),
        );
        assert_eq!(status, 201, "assigning {target}: {body}");
    }

    /// The value of one series of /metrics (`name{labels}` as printed), if present.
    fn metric(&self, series: &str) -> Option<f64> {
        let text = self
            .metrics
            .request("GET", "/metrics", &[], b"")
            .ok()?
            .text();
        text.lines()
            .filter_map(|l| l.strip_prefix(series))
            .find_map(|rest| rest.strip_prefix(' ')?.trim().parse().ok())
    }

    fn wait_for_metric(&self, series: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let value = self.metric(series);
            if let Some(v) = value.filter(|v| ok(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: {series} is {value:?} after {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What follows `https://` up to the next `/` (the server prints its URLs).
fn host_port(url: &str) -> String {
    let rest = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .to_owned();
    rest.split('/').next().unwrap_or_default().to_owned()
}

/// The device: slot files, the boot simulator and the agent binary under the fake clock.
struct Device {
    dir: PathBuf,
    agent: PathBuf,
    config: PathBuf,
    sim: BootSim,
}

impl Device {
    fn agent(&self, clock: &Clock, args: &[&str]) -> Command {
        let mut c = Command::new(&self.agent);
        c.arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::null());
        clock.apply(&mut c);
        c
    }

    fn power_on(&mut self) -> Slot {
        let dir = self.dir.clone();
        let comes_up = |slot: Slot| {
            std::fs::read(dir.join(format!("slot-{slot}")))
                .unwrap()
                .starts_with(b"RAMPART-IMAGE ")
        };
        let on = self.sim.power_on(&comes_up).expect("power on");
        on.running.expect("a slot boots")
    }

    /// One day's update: poll, install into the inactive slot, reboot into it, commit.
    fn install(&mut self, clock: &Clock, version: &str) {
        let (success, out) = run(self.agent(clock, &["run", "--once"]));
        assert!(
            success && out.contains("rebooting"),
            "installing {version}: {out}"
        );
        self.power_on();
        let (success, out) = run(self.agent(clock, &["run", "--once"]));
        assert!(
            success && out.contains(&format!("committed version {version}")),
            "committing {version}: {out}"
        );
    }
}

#[test]
fn devices_keep_updating_across_simulated_days_with_automatic_renewal() {
    let agent_bin = rampart_testkit::binaries::agent_binary();
    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();
    let clock = Clock::new(&w);

    // ---- Day 0: a repository with five releases, published once (timestamp valid one day,
    // snapshot seven), a director, certificates and a CRL valid for the whole period. ----
    let repo = cli::init_repo(&w);
    let versions = ["2.0.0", "3.0.0", "4.0.0", "5.0.0", "6.0.0"];
    for (i, version) in versions.iter().enumerate() {
        let img = w.join(format!("fw-{version}.img"));
        std::fs::write(&img, image(version)).unwrap();
        ok(rampart(&[
            "release",
            "add",
            s(&img),
            "--repo",
            s(&repo),
            "--name",
            &format!("{version}/fw.img"),
            "--hw",
            HARDWARE,
            "--version",
            version,
            "--security-version",
            &(i + 2).to_string(),
        ]));
    }
    let pki = ServerPki::write(&w, "Renewal Test CA", 30, "server-tls.key");
    let (device_pem, device_key) = pki.device(&w, DEVICE, "dev-1-tls.key");
    let (ca, ca_pem) = (&pki.ca, pki.ca_pem.clone());
    let (director, online) = cli::init_director(&w);

    let db = format!("sqlite://{}", w.join("server.db").display());
    let stderr_log = w.join("server.stderr");
    let _stderr_on_panic = cli::StderrOnPanic(stderr_log.clone());
    // Without renewal keys the device's metadata expires on purpose and it reports
    // `verification_failed`; incident response would quarantine it (the built-in playbook) and
    // this test is about renewal, so that detector only alerts here.
    let incident_config = w.join("incidents.toml");
    std::fs::write(
        &incident_config,
        "[playbooks.verification_failed.default]\nnow = [\"alert\"]\n",
    )
    .unwrap();
    let start_server = |renewal_keys: bool| {
        let mut command = rampart(&[]);
        command.args(pki.server_command(&db));
        command.args([
            "--incident-config",
            s(&incident_config),
            "--metrics-listen",
            "127.0.0.1:0",
            "--repo",
            s(&repo),
            "--director-root",
            s(&director.join("root.json")),
            "--director-key",
            &online,
            "--metadata-check-secs",
            "1",
        ]);
        if renewal_keys {
            command.args([
                "--timestamp-key",
                s(&w.join("timestamp.key")),
                "--snapshot-key",
                s(&w.join("snapshot.key")),
            ]);
        }
        clock.apply(&mut command);
        let mut server = ServerChild::start_command(
            command,
            &stderr_log,
            "device API listening on ",
            Duration::from_secs(60),
        );
        let metrics = server
            .line_after("metrics listening on ", Duration::from_secs(60))
            .expect("the metrics listener");
        let management = server
            .line_after("management API listening on ", Duration::from_secs(60))
            .expect("the management listener");
        (server, metrics, host_port(&management))
    };

    // The negative control first: a server without the renewal keys.
    let (mut server, metrics_url, management) = start_server(false);
    let created = rampart(&["token", "create", "--db", &db, "--role", "operator"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    let token = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    let mut operator = Operator::new(&management, &metrics_url, &token, ca.cert_pem());

    // The device: slot A holds 1.0.0 (committed), slot B is blank.
    let d = w.join("device");
    std::fs::create_dir_all(&d).unwrap();
    let v1 = image("1.0.0");
    let mut a = v1.clone();
    a.resize(SLOT_BYTES, 0);
    std::fs::write(d.join("slot-A"), a).unwrap();
    std::fs::write(d.join("slot-B"), vec![0u8; SLOT_BYTES]).unwrap();
    let config = d.join("agent.toml");
    let device_url = format!("https://{}", host_port(&server.listening));
    let agent_config = |url: &str| {
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
check_server = true
deadline_secs = 20
"#,
            d = d.display(),
            ca = ca_pem.display(),
            cert = device_pem.display(),
            key = device_key.display(),
        )
    };
    std::fs::write(&config, agent_config(&device_url)).unwrap();
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
    ok(dev.agent(
        &clock,
        &[
            "init",
            s(&repo.join("metadata/1.root.json")),
            "--director-root",
            s(&director.join("1.root.json")),
        ],
    ));
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
            sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &v1)),
            length: v1.len() as u64,
        },
    );
    std::fs::write(d.join("state/agent-state.json"), state.to_bytes()).unwrap();
    assert_eq!(dev.power_on(), Slot::A);
    // The first poll enrols the device.
    let (success, out) = run(dev.agent(&clock, &["run", "--once"]));
    assert!(success && out.contains("up to date"), "{out}");

    // Day 0: the first release installs; the metrics show every role's expiry.
    operator.assign("2.0.0/fw.img");
    dev.install(&clock, "2.0.0");
    for role in ["root", "targets", "snapshot", "director_root"] {
        operator.wait_for_metric(
            &format!("rampart_metadata_expiry_seconds{{role=\"{role}\"}}"),
            &format!("{role}'s expiry is published"),
            |left| left > 86_400.0,
        );
    }

    // Day 1 without the keys: the timestamp expired, the device cannot update.
    clock.set_day(1);
    operator.wait_for_metric(
        "rampart_metadata_expiry_seconds{role=\"timestamp\"}",
        "the expired timestamp shows as negative",
        |left| left < 0.0,
    );
    operator.assign("3.0.0/fw.img");
    let (success, out) = run(dev.agent(&clock, &["run", "--once"]));
    assert!(
        !success && !out.contains("rebooting") && out.contains("timestamp metadata expired"),
        "without renewal the device must not update on day 1: {out}"
    );
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&stderr_log)
        .unwrap_or_default()
        .lines()
        .any(|l| {
            l.contains(r#""level":"warn""#)
                && l.contains("timestamp metadata version")
                && l.contains("has expired")
        })
    {
        assert!(
            Instant::now() < deadline,
            "the expired timestamp is warned about: {}",
            cli::tail(&stderr_log)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    server.kill();

    // The same day with the keys: the server renews at once and keeps renewing, and the
    // device takes a new release every day.
    let (server, metrics_url, management) = start_server(true);
    operator = Operator::new(&management, &metrics_url, &token, ca.cert_pem());
    std::fs::write(
        &dev.config,
        agent_config(&format!("https://{}", host_port(&server.listening))),
    )
    .unwrap();
    let mut renewals = operator.wait_for_metric(
        "rampart_metadata_renewals_total",
        "the server renews the expired timestamp at start",
        |n| n >= 1.0,
    );
    dev.install(&clock, "3.0.0");
    for (day, version) in [(2, "4.0.0"), (3, "5.0.0"), (4, "6.0.0")] {
        clock.set_day(day);
        renewals = operator.wait_for_metric(
            "rampart_metadata_renewals_total",
            &format!("the server renews on day {day}"),
            |n| n > renewals,
        );
        operator.wait_for_metric(
            "rampart_metadata_expiry_seconds{role=\"timestamp\"}",
            &format!("the timestamp is fresh on day {day}"),
            |left| left > 43_200.0,
        );
        operator.assign(&format!("{version}/fw.img"));
        dev.install(&clock, version);
    }
    // By day 4 the seven-day snapshot was past its half-life and was renewed too.
    operator.wait_for_metric(
        "rampart_metadata_expiry_seconds{role=\"snapshot\"}",
        "the snapshot is renewed past its half-life",
        |left| left > 3.5 * 86_400.0,
    );
    drop(server);

    // Every renewal is in the audit log, which still verifies.
    let audit = ok(rampart(&[
        "audit", "export", "--db", &db, "--format", "jsonl",
    ]));
    let renewed: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|r| r["action"] == "repository.renewed")
        .collect();
    assert!(renewed.len() >= 4, "{audit}");
    assert!(
        renewed.iter().any(|r| r["subject"] == "snapshot,timestamp"),
        "{renewed:#?}"
    );
    ok(rampart(&["audit", "verify", "--db", &db]));
}
