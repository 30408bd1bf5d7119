//! The device examples a new user tries on a workstation, run as documented in
//! docs/device-integration.md: the A/B flow with `rampart-agent simulate-reboot` (GRUB, and
//! U-Boot on the example `fw_env.config`, which `fw_printenv` reads too), and the example custom
//! bootloader script driven by the agent's custom backend.

use std::path::{Path, PathBuf};
use std::process::Command;

use rampart_testkit::cli::{self, ok, s};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/bootloader");
const SLOT_BYTES: usize = 1 << 20;

/// A workstation "device": an image repository with releases 1.0.0 and 2.0.0 for board-a, two
/// slot files, and `agent.toml` with the given `[bootloader]` and `[health]` tables.
struct Workstation {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
}

impl Workstation {
    fn new(bootloader: &str, health: &str) -> Workstation {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let repo = cli::init_repo(&dir);
        for version in ["1.0.0", "2.0.0"] {
            let image = dir.join(format!("fw-{version}.img"));
            std::fs::write(&image, format!("firmware {version}\n").repeat(1000)).unwrap();
            ok(cli::release_add(&repo, &image, "board-a", version));
        }
        for slot in ["slot-a.img", "slot-b.img"] {
            std::fs::write(dir.join(slot), vec![0u8; SLOT_BYTES]).unwrap();
        }
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                r#"state_dir = "dev"
hardware_id = "board-a"
[slots]
A = "slot-a.img"
B = "slot-b.img"
{bootloader}
[boot]
cmdline = "cmdline"
boot_id = "boot_id"
reboot_command = ["echo", "(reboot: now run simulate-reboot)"]
{health}
"#
            ),
        )
        .unwrap();
        Workstation { _tmp: tmp, dir }
    }

    /// `rampart-agent --config agent.toml ARGS` in the device's directory: its output, which
    /// must be a success.
    fn agent(&self, args: &[&str]) -> String {
        let (success, out) = self.try_agent(args);
        assert!(success, "rampart-agent {args:?} failed:\n{out}");
        out
    }

    fn try_agent(&self, args: &[&str]) -> (bool, String) {
        let mut c = Command::new(rampart_testkit::binaries::agent_binary());
        c.arg("--config")
            .arg("agent.toml")
            .args(args)
            .current_dir(&self.dir)
            .env_remove("RAMPART_AGENT_CONFIG")
            .env_remove("RAMPART_AGENT_STATE")
            .env("RAMPART_BOOT_STATE", self.dir.join("ab.env"));
        cli::run(c)
    }

    fn install(&self, version: &str) -> String {
        self.agent(&[
            "install",
            "--from",
            "repo",
            &format!("{version}/fw-{version}.img"),
        ])
    }
}

/// The documented session: power on, provision, install 1.0.0, reboot into it and commit;
/// then 2.0.0 whose kernel never comes up: the bootloader falls back and the agent rolls back.
fn ab_session(w: &Workstation) {
    let on = w.agent(&["simulate-reboot"]);
    assert!(on.contains("booted slot A"), "{on}");
    w.agent(&["init", "repo/metadata/1.root.json"]);
    let out = w.install("1.0.0");
    assert!(
        out.contains("rebooting") && out.contains("(reboot: now run simulate-reboot)"),
        "{out}"
    );
    let on = w.agent(&["simulate-reboot"]);
    assert!(
        on.contains("BOOT_ORDER=B A BOOT_A_LEFT=3 BOOT_B_LEFT=2") && on.contains("booted slot B"),
        "{on}"
    );
    assert_eq!(
        std::fs::read_to_string(w.dir.join("cmdline"))
            .unwrap()
            .trim(),
        "root=/dev/slotB rampart.slot=B"
    );
    let out = w.agent(&["boot"]);
    assert!(out.contains("committed version 1.0.0"), "{out}");

    w.install("2.0.0");
    let on = w.agent(&["simulate-reboot", "--kernel-fails", "A"]);
    assert!(
        on.contains("3 boot attempt(s) failed") && on.contains("booted slot B"),
        "{on}"
    );
    let out = w.agent(&["boot"]);
    assert!(
        out.contains("rolled back from version 2.0.0 (bootloader_fallback)"),
        "{out}"
    );
    let status: serde_json::Value = serde_json::from_str(&w.agent(&["status"])).unwrap();
    assert_eq!(status["state"]["committed"], "B", "{status:#}");
    assert_eq!(
        status["state"]["slots"]["B"]["version"], "1.0.0",
        "{status:#}"
    );
}

#[test]
fn the_workstation_ab_flow_with_simulated_reboots_commits_and_rolls_back_on_grub() {
    let w = Workstation::new(
        "[bootloader]\nkind = \"grub\"\ngrub_env = \"grubenv\"",
        "[health]\ncheck_server = false",
    );
    ab_session(&w);
    // The environment is GRUB's own: grub-editenv reads what the simulator and agent wrote.
    let out = Command::new("grub-editenv")
        .arg(w.dir.join("grubenv"))
        .arg("list")
        .output()
        .expect("grub-editenv (package grub-common) runs");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("BOOT_ORDER=B A") && listed.contains("BOOT_A_LEFT=0"),
        "{listed}"
    );
}

#[test]
fn the_example_fw_env_config_serves_fw_printenv_and_the_agent() {
    let w = Workstation::new(
        "[bootloader]\nkind = \"uboot\"\nfw_env_config = \"fw_env.config\"",
        "[health]\ncheck_server = false",
    );
    // The example, its /boot moved into the workstation directory.
    let boot = w.dir.join("boot");
    std::fs::create_dir_all(&boot).unwrap();
    let config = std::fs::read_to_string(Path::new(EXAMPLES).join("fw_env.config"))
        .unwrap()
        .replace("/boot/", &format!("{}/", s(&boot)));
    std::fs::write(w.dir.join("fw_env.config"), config).unwrap();
    // As its comment says: both copies at full size, then a first write.
    for file in ["uboot.env", "uboot-redund.env"] {
        std::fs::write(boot.join(file), vec![0u8; 0x4000]).unwrap();
    }
    let no_defaults = w.dir.join("no-default-env");
    std::fs::write(&no_defaults, "").unwrap();
    let fw = |tool: &str, args: &[&str]| {
        let mut c = Command::new(tool);
        c.arg("-c")
            .arg(w.dir.join("fw_env.config"))
            .arg("-f")
            .arg(&no_defaults)
            .args(args);
        let (success, out) = cli::run(c);
        assert!(
            success,
            "{tool} {args:?} (package libubootenv-tool):\n{out}"
        );
        out
    };
    fw("fw_setenv", &["BOOT_ORDER", "A B"]);
    assert_eq!(fw("fw_printenv", &["BOOT_ORDER"]).trim(), "BOOT_ORDER=A B");
    ab_session(&w);
    // fw_printenv reads what the simulated bootloader and the agent wrote.
    let env = fw("fw_printenv", &[]);
    for line in ["BOOT_ORDER=B A", "BOOT_A_LEFT=0", "BOOT_B_LEFT=3"] {
        assert!(env.lines().any(|l| l == line), "{line} missing in:\n{env}");
    }
}

#[test]
fn the_example_custom_bootloader_script_drives_the_agents_custom_backend() {
    let script = Path::new(EXAMPLES).join("custom-bootloader.sh");
    let w = Workstation::new(
        &format!(
            "[bootloader]\nkind = \"custom\"\nscript = \"{}\"",
            s(&script)
        ),
        // The update is healthy unless the file `unhealthy` exists.
        "[health]\ncheck_server = false\ncommands = [[\"sh\", \"-c\", \"! test -e unhealthy\"]]",
    );
    let state = w.dir.join("ab.env");
    let boot_into = |slot: &str, boot: u32| {
        std::fs::write(w.dir.join("cmdline"), format!("rampart.slot={slot}\n")).unwrap();
        std::fs::write(w.dir.join("boot_id"), format!("boot-{boot}\n")).unwrap();
    };
    boot_into("A", 1);
    w.agent(&["init", "repo/metadata/1.root.json"]);
    let out = w.install("1.0.0");
    assert!(out.contains("rebooting"), "{out}");
    // set-state B bad while it was written, then set-primary B.
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "BOOT_ORDER=B A\nBOOT_A_LEFT=3\nBOOT_B_LEFT=3\n"
    );
    boot_into("B", 2);
    let out = w.agent(&["boot"]);
    assert!(out.contains("committed version 1.0.0"), "{out}");

    // 2.0.0 into A fails its health check after the reboot: the agent marks A bad, makes B
    // primary again through the script and reboots into it, where it reports the rollback.
    w.install("2.0.0");
    boot_into("A", 3);
    std::fs::write(w.dir.join("unhealthy"), "").unwrap();
    let out = w.agent(&["boot"]);
    assert!(out.contains("rebooting"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        "BOOT_ORDER=B A\nBOOT_A_LEFT=0\nBOOT_B_LEFT=3\n"
    );
    boot_into("B", 4);
    let out = w.agent(&["boot"]);
    assert!(
        out.contains("rolled back from version 2.0.0 (health_check_failed)"),
        "{out}"
    );
    let status: serde_json::Value = serde_json::from_str(&w.agent(&["status"])).unwrap();
    assert_eq!(status["state"]["committed"], "B", "{status:#}");
    // The simulator refuses a custom bootloader, saying why.
    let (success, out) = w.try_agent(&["simulate-reboot"]);
    assert!(!success && out.contains("plays GRUB or U-Boot"), "{out}");
}
