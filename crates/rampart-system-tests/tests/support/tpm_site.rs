//! One site with a real TPM: swtpm (EK certificates from its own CA), the real `rampart-agent`
//! built with its `tpm` feature on a simulated A/B device (slot files, the boot simulator over a
//! GRUB environment), and the real `rampart server` with attestation, over an image repository
//! with two releases (1.0.0 and 2.0.0) and a director. The device's mutual-TLS key is made in
//! the TPM (`rampart-agent tpm provision` writes the CSR, the manufacturer CA certifies it); the
//! device starts committed on 1.0.0 in slot A, slot B blank.

#![allow(dead_code)] // each test file uses its part

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::bootenv::GrubEnvFile;
use rampart_agent::bootsim::BootSim;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, SlotContent};
use rampart_testkit::binaries::agent_binary_with_tpm;
use rampart_testkit::cli::{self, ServerChild, ok, rampart, run, s};

use super::{hosting_server_command, start_server};
use rampart_testkit::http::ManagementClient;
use rampart_testkit::pki::ServerPki;
use rampart_testkit::swtpm::SwTpm;
use serde_json::Value;

pub const HARDWARE: &str = "board-1";
pub const DEVICE: &str = "tpm-dev-1";
pub const SLOT_BYTES: usize = 128 * 1024;
pub const V1: &str = "1.0.0/fw.img";
pub const V2: &str = "2.0.0/fw.img";

pub fn image(version: &str) -> Vec<u8> {
    rampart_testkit::images::release_image(version, 60_000)
}

/// The device: slot files, the boot simulator over a GRUB environment, the agent binary.
pub struct Device {
    pub dir: PathBuf,
    pub agent: PathBuf,
    pub sim: BootSim,
    /// Appended to the agent's configuration (e.g. `[incident]` hooks).
    pub extra_config: String,
}

impl Device {
    pub fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    pub fn agent(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.agent);
        c.arg("--config")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// The configuration, with the TPM at `tcti` (swtpm listens on new ports after each
    /// power cycle).
    pub fn write_config(&self, tcti: &str, server: &str, ca: &Path) {
        let d = self.dir.display();
        std::fs::write(
            self.config(),
            format!(
                r#"state_dir = "{d}/state"
hardware_id = "{HARDWARE}"
[server]
url = "{server}"
ca = "{ca}"
cert = "{d}/{DEVICE}.pem"
key = "tpm:"
[slots]
A = "{d}/slot-A"
B = "{d}/slot-B"
[bootloader]
kind = "grub"
grub_env = "{d}/grubenv"
[boot]
cmdline = "{d}/cmdline"
boot_id = "{d}/boot_id"
reboot_command = ["true"]
[health]
check_server = true
deadline_secs = 20
[tpm]
tcti = "{tcti}"
{extra}"#,
                ca = ca.display(),
                extra = self.extra_config,
            ),
        )
        .unwrap();
    }

    /// Powers the device on through the boot simulator: the slot it runs.
    pub fn power_on(&mut self) -> Slot {
        let dir = self.dir.clone();
        let comes_up = move |slot: Slot| {
            std::fs::read(dir.join(format!("slot-{slot}")))
                .unwrap()
                .starts_with(b"RAMPART-IMAGE ")
        };
        self.sim
            .power_on(&comes_up)
            .unwrap()
            .running
            .expect("a slot boots")
    }

    pub fn run_once(&self) -> (bool, String) {
        run(self.agent(&["run", "--once"]))
    }

    pub fn slot(&self, slot: Slot) -> Vec<u8> {
        std::fs::read(self.dir.join(format!("slot-{slot}"))).unwrap()
    }
}

/// The whole site.
pub struct TpmSite {
    _tmp: tempfile::TempDir,
    pub w: PathBuf,
    pub repo: PathBuf,
    pub director: PathBuf,
    pub pki: ServerPki,
    pub tpm: SwTpm,
    pub server: ServerChild,
    server_args: Vec<String>,
    pub device_url: String,
    pub db: String,
    pub api: ManagementClient,
    pub token: String,
    /// The management API's base URL.
    pub management: String,
    _stderr: cli::StderrOnPanic,
    pub dev: Device,
    pub v1: Vec<u8>,
    pub v2: Vec<u8>,
}

impl TpmSite {
    /// Builds the site; `server_args` are added to the server's command line (the attestation
    /// flags and anything a test needs), `agent_config` to the agent's configuration.
    pub fn start(server_args: &[String], agent_config: &str) -> TpmSite {
        let agent_bin = agent_binary_with_tpm();
        let tpm = SwTpm::start();
        let tmp = tempfile::tempdir().unwrap();
        let w = std::fs::canonicalize(tmp.path()).unwrap();

        // The image repository (the factory 1.0.0 is signed too: attestation checks the
        // running release's measurements), the PKI, the director.
        let repo = cli::init_repo(&w);
        let (v1, v2) = (image("1.0.0"), image("2.0.0"));
        for (version, bytes) in [("1.0.0", &v1), ("2.0.0", &v2)] {
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
                &version[..1],
            ]));
        }
        let pki = ServerPki::write(&w, "TPM Site CA", 1, "server.key");
        let (director, online) = cli::init_director(&w);
        // The EK certificates chain to swtpm's local CA: its intermediate and root.
        let ek_roots = w.join("ek-roots.pem");
        let mut roots = std::fs::read(tpm.ek_issuer()).unwrap();
        roots.extend(std::fs::read(tpm.ek_root()).unwrap());
        std::fs::write(&ek_roots, roots).unwrap();
        let db = format!("sqlite://{}", w.join("server.db").display());
        let mut args = hosting_server_command(&pki, &db, &repo, &director, &online);
        args.extend(["--ek-roots", s(&ek_roots)].map(String::from));
        args.extend(server_args.iter().cloned());
        let (server, device_url, management) = start_server(&w, &args);
        let token = cli::create_token(&db, "admin", "admin");
        let api = ManagementClient::new(&management, &token, pki.ca.cert_pem());
        let management = management.to_owned();

        // The device: v1 in slot A (committed), B blank; its TLS key made in the TPM.
        let d = w.join("device");
        std::fs::create_dir_all(&d).unwrap();
        let mut a = v1.clone();
        a.resize(SLOT_BYTES, 0);
        std::fs::write(d.join("slot-A"), a).unwrap();
        std::fs::write(d.join("slot-B"), vec![0u8; SLOT_BYTES]).unwrap();
        let mut dev = Device {
            dir: d.clone(),
            agent: agent_bin,
            sim: BootSim::new(
                Box::new(GrubEnvFile::new(d.join("grubenv"))),
                3,
                &d.join("cmdline"),
                &d.join("boot_id"),
            ),
            extra_config: agent_config.to_owned(),
        };
        dev.write_config(&tpm.tcti(), &device_url, &pki.ca_pem);
        let csr = d.join("device.csr");
        let out = ok(dev.agent(&["tpm", "provision", "--device-id", DEVICE, "--csr", s(&csr)]));
        assert!(out.contains("certificate signing request written"), "{out}");
        // The operator's side: the manufacturer CA certifies the key of the device's request.
        let ca_dir = w.join("ca");
        std::fs::create_dir_all(&ca_dir).unwrap();
        std::fs::write(ca_dir.join("ca.pem"), pki.ca.cert_pem()).unwrap();
        rampart_pki::write_private_key_pem(&ca_dir.join("ca.key"), &pki.ca.key_pem()).unwrap();
        let out = ok(rampart(&[
            "device",
            "provision",
            "--ca",
            s(&ca_dir),
            "--csr",
            s(&csr),
            "--out",
            s(&d),
        ]));
        assert!(
            out.contains(&format!("provisioned device {DEVICE}")),
            "{out}"
        );
        ok(dev.agent(&[
            "init",
            s(&repo.join("metadata/1.root.json")),
            "--director-root",
            s(&director.join("1.root.json")),
        ]));
        let mut state = AgentState {
            committed: Some(Slot::A),
            ..AgentState::default()
        };
        state.slots.insert(
            Slot::A,
            SlotContent {
                target: V1.into(),
                version: "1.0.0".into(),
                security_version: 1,
                sha256: hex::encode(ring::digest::digest(&ring::digest::SHA256, &v1)),
                length: v1.len() as u64,
            },
        );
        std::fs::write(d.join("state/agent-state.json"), state.to_bytes()).unwrap();
        assert_eq!(dev.power_on(), Slot::A);
        TpmSite {
            _tmp: tmp,
            w: w.clone(),
            repo,
            director,
            pki,
            tpm,
            server,
            server_args: args,
            device_url,
            db,
            api,
            token,
            management: management.clone(),
            _stderr: cli::StderrOnPanic(w.join("server.stderr")),
            dev,
            v1,
            v2,
        }
    }

    /// Stops the server (SIGKILL: nothing flushed on the way out) and starts it again on the
    /// same database and ports' successors; the management client follows.
    pub fn restart_server(&mut self) {
        self.server.kill();
        let (server, device_url, management) = start_server(&self.w, &self.server_args);
        self.server = server;
        self.device_url = device_url;
        self.api = ManagementClient::new(&management, &self.token, self.pki.ca.cert_pem());
        self.management = management;
        self.rewrite_config();
    }

    /// A reboot: the TPM power-cycles (PCRs reset, NV kept) and the bootloader picks a slot.
    pub fn reboot(&mut self) -> Slot {
        self.tpm.restart();
        self.rewrite_config();
        self.dev.power_on()
    }

    pub fn rewrite_config(&self) {
        self.dev
            .write_config(&self.tpm.tcti(), &self.device_url, &self.pki.ca_pem);
    }

    /// The device's attestation as the server shows it.
    pub fn attestation(&self) -> Value {
        self.api
            .get(&format!("/api/v1/attestation/devices/{DEVICE}"))["attestation"]
            .clone()
    }

    /// Runs agent passes until `done` holds for what the server shows (polled after each
    /// pass), within a generous bound; the last agent output is in the failure message.
    pub fn run_until(&self, what: &str, done: impl Fn(&TpmSite) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (_, out) = self.dev.run_once();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not reached\nlast agent output:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Runs agent passes until the server shows the device attested on `release`.
    pub fn attested_on(&self, release: &str) -> Value {
        self.run_until(&format!("attested on {release}"), |site| {
            let view = site.attestation();
            view["outcome"] == "attested" && view["release"] == release
        });
        self.attestation()
    }
}
