//! A real TPM end to end: swtpm (started in a temp dir, EK certificates from its own CA), the
//! real `rampart-agent` built with its `tpm` feature, and the real `rampart server` requiring
//! attestation. The device's mutual-TLS key is made in the TPM (`rampart-agent tpm provision`
//! writes the CSR, the manufacturer CA certifies it); the agent enrols its attestation key
//! (EK certificate chain), is attested on the factory release, installs the assigned update,
//! and after the reboot (swtpm power cycle, new boot id) is attested on the new release. The
//! NV counter then refuses a downgrade after the state directory is wiped.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::bootenv::GrubEnvFile;
use rampart_agent::bootsim::BootSim;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, SlotContent};
use rampart_testkit::binaries::agent_binary_with_tpm;
use rampart_testkit::cli::{self, ServerChild, ok, rampart, run, s};
use rampart_testkit::http::ManagementClient;
use rampart_testkit::pki::ServerPki;
use rampart_testkit::swtpm::SwTpm;
use serde_json::{Value, json};

const HARDWARE: &str = "board-1";
const DEVICE: &str = "tpm-dev-1";
const SLOT_BYTES: usize = 128 * 1024;
const V1: &str = "1.0.0/fw.img";
const V2: &str = "2.0.0/fw.img";

fn image(version: &str) -> Vec<u8> {
    rampart_testkit::images::release_image(version, 60_000)
}

/// The device: slot files, the boot simulator over a GRUB environment, the agent binary.
struct Device {
    dir: PathBuf,
    agent: PathBuf,
    sim: BootSim,
}

impl Device {
    fn config(&self) -> PathBuf {
        self.dir.join("agent.toml")
    }

    fn agent(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.agent);
        c.arg("--config")
            .arg(self.config())
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// The configuration, with the TPM at `tcti` (swtpm listens on new ports after each
    /// power cycle).
    fn write_config(&self, tcti: &str, server: &str, ca: &Path) {
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
"#,
                ca = ca.display()
            ),
        )
        .unwrap();
    }

    fn power_on(&mut self) -> Slot {
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

    fn run_once(&self) -> (bool, String) {
        run(self.agent(&["run", "--once"]))
    }
}

/// The device's attestation as the server shows it.
fn attestation(api: &ManagementClient) -> Value {
    api.get(&format!("/api/v1/attestation/devices/{DEVICE}"))["attestation"].clone()
}

/// Runs agent passes until the server shows the device attested on `release`.
fn attested_on(device: &Device, api: &ManagementClient, release: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, out) = device.run_once();
        let view = attestation(api);
        if view["outcome"] == "attested" && view["release"] == release {
            return view;
        }
        assert!(
            Instant::now() < deadline,
            "not attested on {release}: {view}\nlast agent output:\n{out}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_agent_with_a_tpm_held_key_attests_installs_and_is_attested_on_the_new_release() {
    let agent_bin = agent_binary_with_tpm();
    let mut tpm = SwTpm::start();
    let tmp = tempfile::tempdir().unwrap();
    let w = std::fs::canonicalize(tmp.path()).unwrap();

    // ---- The image repository (the factory 1.0.0 is signed too: attestation checks the
    // running release's measurements), the PKI, the director, the server. ----
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
    let pki = ServerPki::write(&w, "Attestation Test CA", 1, "server.key");
    let (director, online) = cli::init_director(&w);
    // The EK certificates chain to swtpm's local CA: its intermediate and root.
    let ek_roots = w.join("ek-roots.pem");
    let mut roots = std::fs::read(tpm.ek_issuer()).unwrap();
    roots.extend(std::fs::read(tpm.ek_root()).unwrap());
    std::fs::write(&ek_roots, roots).unwrap();
    let db = format!("sqlite://{}", w.join("server.db").display());
    let mut args = pki.server_command(&db);
    args.extend(
        [
            "--repo",
            s(&repo),
            "--director-root",
            s(&director.join("root.json")),
            "--director-key",
            &online,
            "--require-attestation",
            "--attestation-freshness",
            "6",
            "--ek-roots",
            s(&ek_roots),
        ]
        .map(String::from),
    );
    let mut command = rampart(&[]);
    command.args(&args);
    let mut server = ServerChild::start_command(
        command,
        &w.join("server.stderr"),
        "device API listening on ",
        Duration::from_secs(60),
    );
    let _stderr = cli::StderrOnPanic(w.join("server.stderr"));
    let device_url = format!("https://{}", server.listening);
    let management = server
        .line_after("management API listening on ", Duration::from_secs(30))
        .expect("the management API listens");
    let token = {
        let out = rampart(&[
            "token", "create", "--db", &db, "--role", "operator", "--name", "op",
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let api = ManagementClient::new(
        management.trim_end_matches("/api/v1/"),
        &token,
        pki.ca.cert_pem(),
    );

    // ---- The device: v1 in slot A (committed), B blank; its TLS key made in the TPM. ----
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

    // ---- Enrolment (EK certificate chain, ActivateCredential) and a first quote, over mutual
    // TLS with the TPM-held key. ----
    let view = attested_on(&dev, &api, V1);
    assert_eq!(view["enrolled"], true, "{view}");

    // ---- The update: installed (attested, so not withheld), reboot, committed. ----
    let (status, v) = api.call(
        "POST",
        "/api/v1/assignments",
        Some(json!({"target": V2, "type": "forced", "devices": [DEVICE]})),
    );
    assert_eq!(status, 201, "{v}");
    let (done, out) = dev.run_once();
    assert!(done && out.contains("rebooting"), "{out}");
    // A reboot: the TPM power-cycles (PCRs reset, NV kept), the bootloader boots B.
    tpm.restart();
    dev.write_config(&tpm.tcti(), &device_url, &pki.ca_pem);
    assert_eq!(dev.power_on(), Slot::B);
    let view = attested_on(&dev, &api, V2);
    assert_eq!(view["outcome"], "attested", "{view}");
    let status = serde_json::from_str::<Value>(&ok(dev.agent(&["status"]))).unwrap();
    assert_eq!(status["security_version"], 2, "{status}");

    // ---- The state directory wiped: the TPM's NV counter still refuses 1.0.0. ----
    let state_dir = d.join("state");
    std::fs::remove_dir_all(&state_dir).unwrap();
    ok(dev.agent(&[
        "init",
        s(&repo.join("metadata/1.root.json")),
        "--director-root",
        s(&director.join("1.root.json")),
    ]));
    ok(dev.agent(&["reset-state"]));
    let status = serde_json::from_str::<Value>(&ok(dev.agent(&["status"]))).unwrap();
    assert_eq!(status["security_version"], 2, "{status}");
    let (installed, out) = run(dev.agent(&["install", "--from", s(&repo), V1, "--no-reboot"]));
    assert!(!installed, "{out}");
    assert!(out.contains("security_version_rollback"), "{out}");
    server.kill();
}
