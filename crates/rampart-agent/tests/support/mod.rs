//! A simulated device for whole install / reboot / rollback sequences: an image repository
//! with test releases, file-backed A/B slots, a real bootloader environment (U-Boot redundant
//! copies or a GRUB block) driven by the boot simulator, and the agent library on top.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rampart_agent::bootenv::{EnvStore, GrubEnvFile, UbootEnv};
use rampart_agent::bootsim::BootSim;
use rampart_agent::config::Config;
use rampart_agent::device::{Device, HealthCheck};
use rampart_agent::disk::Disk;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, SlotContent};
use rampart_core::Scheme;
use rampart_keys::Signer;
use rampart_keys::file::{FileSigner, KdfParams};
use rampart_repo::{ExpiryDays, InitOptions, NoProgress, ReleaseRequest, Repository, RoleSigners};

/// Slot capacity of the simulated device.
pub const SLOT_BYTES: usize = 64 * 1024;
/// Length of each test image.
pub const IMAGE_BYTES: usize = 40 * 1024 + 123;
pub const HARDWARE: &str = "sim-board";

/// The test releases: what each image does when booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Image {
    /// Factory image in slot A.
    V1,
    /// A good update.
    V2,
    /// Boots, but its health checks fail.
    Unhealthy,
    /// Its kernel never reaches user space.
    Panics,
}

impl Image {
    pub const ALL: [Image; 4] = [Image::V1, Image::V2, Image::Unhealthy, Image::Panics];

    pub fn target(self) -> &'static str {
        match self {
            Image::V1 => "sim/v1.img",
            Image::V2 => "sim/v2.img",
            Image::Unhealthy => "sim/unhealthy.img",
            Image::Panics => "sim/panics.img",
        }
    }

    fn version(self) -> (&'static str, u64) {
        match self {
            Image::V1 => ("1.0.0", 1),
            Image::V2 => ("2.0.0", 2),
            Image::Unhealthy => ("3.0.0", 3),
            Image::Panics => ("4.0.0", 4),
        }
    }

    pub fn version_string(self) -> &'static str {
        self.version().0
    }

    /// Deterministic, distinct content.
    pub fn bytes(self) -> Vec<u8> {
        let seed = match self {
            Image::V1 => 11u32,
            Image::V2 => 22,
            Image::Unhealthy => 33,
            Image::Panics => 44,
        };
        let mut x = seed.wrapping_mul(2654435761);
        let mut v = format!("RAMPART-SIM-IMAGE {self:?}\n").into_bytes();
        while v.len() < IMAGE_BYTES {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push(x as u8);
        }
        v
    }
}

/// The shared image repository (built once per test binary).
pub struct Repo {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub root: PathBuf,
}

pub fn repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path();
        let key = |name: &str| {
            let (_, bytes) = FileSigner::generate(
                Scheme::Ed25519,
                "pw",
                KdfParams {
                    m_kib: 64,
                    t: 1,
                    p: 1,
                },
            )
            .unwrap();
            let p = work.join(name);
            std::fs::write(&p, bytes).unwrap();
            RoleSigners {
                keys: vec![p.display().to_string()],
                threshold: 1,
            }
        };
        let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
            Ok(Box::new(FileSigner::open(Path::new(r), "pw")?))
        };
        let repo_dir = work.join("repo");
        let opts = InitOptions {
            root: key("root"),
            targets: key("targets"),
            snapshot: key("snap"),
            timestamp: key("ts"),
            expiry_days: ExpiryDays::default(),
        };
        let now = now();
        let repo = Repository::init(&repo_dir, opts, &open, now).unwrap();
        let mut requests = Vec::new();
        for image in Image::ALL {
            let file = work.join(format!("{image:?}.img"));
            std::fs::write(&file, image.bytes()).unwrap();
            let (version, sv) = image.version();
            requests.push(ReleaseRequest {
                image: file,
                target_name: Some(image.target().into()),
                hardware_ids: vec![HARDWARE.into()],
                version: version.into(),
                security_version: sv,
                sbom: None,
                provenance: None,
                role: None,
            });
        }
        let extra = work.join("big.img");
        std::fs::write(&extra, vec![5u8; SLOT_BYTES + 1]).unwrap();
        requests.push(ReleaseRequest {
            image: extra,
            target_name: Some("sim/too-big.img".into()),
            hardware_ids: vec![HARDWARE.into()],
            version: "9.0.0".into(),
            security_version: 9,
            sbom: None,
            provenance: None,
            role: None,
        });
        repo.add_releases(&requests, &open, now, &NoProgress)
            .unwrap();
        repo.publish(&open, now).unwrap();
        let root = repo_dir.join("metadata/1.root.json");
        Repo {
            path: repo_dir,
            root,
            _dir: dir,
        }
    })
}

/// A scratch directory, in memory when the machine has /dev/shm: the power cuts here are
/// simulated at the agent's write steps, so real fsyncs would only make the runs slow.
pub fn scratch() -> tempfile::TempDir {
    match std::fs::metadata("/dev/shm") {
        Ok(m) if m.is_dir() => tempfile::tempdir_in("/dev/shm").unwrap(),
        _ => tempfile::tempdir().unwrap(),
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Which bootloader environment the simulated device has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    UbootRedundant,
    Grub,
}

/// Which full image a slot holds, if any.
pub fn classify(slot: &[u8]) -> Option<Image> {
    Image::ALL
        .into_iter()
        .find(|i| slot.len() >= IMAGE_BYTES && slot[..IMAGE_BYTES] == i.bytes()[..])
}

/// One simulated device.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub config: Config,
    pub sim: BootSim,
    /// Boot attempts on a slot that did not hold a complete image: must stay empty.
    pub violations: Arc<Mutex<Vec<String>>>,
}

impl Rig {
    pub fn new(backend: Backend) -> Rig {
        let dir = scratch();
        let d = dir.path();
        let mut a = Image::V1.bytes();
        a.resize(SLOT_BYTES, 0);
        std::fs::write(d.join("slot-a"), a).unwrap();
        std::fs::write(d.join("slot-b"), vec![0xEE; SLOT_BYTES]).unwrap();
        let bootloader = match backend {
            Backend::UbootRedundant => {
                std::fs::write(d.join("env-1"), vec![0xFF; 0x2000]).unwrap();
                std::fs::write(d.join("env-2"), vec![0xFF; 0x2000]).unwrap();
                std::fs::write(
                    d.join("fw_env.config"),
                    format!(
                        "{} 0x0 0x2000 0x2000\n{} 0x0 0x2000 0x2000\n",
                        d.join("env-1").display(),
                        d.join("env-2").display()
                    ),
                )
                .unwrap();
                format!(
                    "kind = \"uboot\"\nfw_env_config = \"{}\"",
                    d.join("fw_env.config").display()
                )
            }
            Backend::Grub => format!(
                "kind = \"grub\"\ngrub_env = \"{}\"",
                d.join("grubenv").display()
            ),
        };
        let text = format!(
            r#"
state_dir = "{d}/state"
hardware_id = "{HARDWARE}"
[slots]
A = "{d}/slot-a"
B = "{d}/slot-b"
[bootloader]
{bootloader}
tries = 3
[boot]
cmdline = "{d}/cmdline"
boot_id = "{d}/boot_id"
reboot_command = ["true"]
[health]
check_server = false
deadline_secs = 5
[install]
checkpoint_bytes = 16384
checkpoint_secs = 0
"#,
            d = d.display()
        );
        let config = Config::parse(&text).unwrap();
        std::fs::create_dir_all(d.join("state/metadata")).unwrap();
        std::fs::copy(&repo().root, d.join("state/metadata/root.json")).unwrap();
        // The factory state: slot A committed, holding v1.
        let mut state = AgentState {
            committed: Some(Slot::A),
            ..AgentState::default()
        };
        let v1 = Image::V1.bytes();
        state.slots.insert(
            Slot::A,
            SlotContent {
                target: Image::V1.target().into(),
                version: "1.0.0".into(),
                security_version: 1,
                sha256: hex_sha256(&v1),
                length: v1.len() as u64,
            },
        );
        std::fs::write(d.join("state/agent-state.json"), state.to_bytes()).unwrap();
        let sim = BootSim::new(
            Rig::store(&config),
            3,
            &d.join("cmdline"),
            &d.join("boot_id"),
        );
        Rig {
            dir,
            backend,
            config,
            sim,
            violations: Arc::default(),
        }
    }

    /// A fresh handle on the device's environment.
    pub fn store(config: &Config) -> Box<dyn EnvStore + Send> {
        match config.bootloader.kind {
            rampart_agent::config::BootloaderKind::Grub => Box::new(GrubEnvFile::new(
                config.bootloader.grub_env.as_ref().unwrap(),
            )),
            _ => Box::new(
                UbootEnv::from_config_file(config.bootloader.fw_env_config.as_ref().unwrap())
                    .unwrap(),
            ),
        }
    }

    pub fn slot_bytes(&self, slot: Slot) -> Vec<u8> {
        std::fs::read(self.config.slots.path(slot)).unwrap()
    }

    /// Powers on through the simulated bootloader; `None` means bricked (nothing bootable, or
    /// a boot attempt on a slot without a complete image).
    pub fn power_on(&mut self) -> Result<Slot, String> {
        let paths = (
            self.config.slots.path(Slot::A).to_path_buf(),
            self.config.slots.path(Slot::B).to_path_buf(),
        );
        let violations = self.violations.clone();
        let comes_up = move |slot: Slot| {
            let path = if slot == Slot::A { &paths.0 } else { &paths.1 };
            let bytes = std::fs::read(path).unwrap();
            match classify(&bytes) {
                None => {
                    violations.lock().unwrap().push(format!(
                        "the bootloader tried slot {slot}, which holds no complete image"
                    ));
                    false
                }
                Some(Image::Panics) => false,
                Some(_) => true,
            }
        };
        let on = self.sim.power_on(&comes_up).map_err(|e| e.to_string())?;
        if let Some(v) = self.violations.lock().unwrap().first() {
            return Err(v.clone());
        }
        on.running
            .ok_or_else(|| "no bootable slot left".to_string())
    }

    /// The agent on this device, with `disk`.
    pub fn device(&self, disk: Disk) -> Device {
        let mut d = Device::open(self.config.clone(), disk).unwrap();
        d.chunk = 8 * 1024;
        d
    }

    /// Health checks of the simulated system: fail when the running slot holds the unhealthy
    /// image.
    pub fn health(&self) -> SimHealth {
        SimHealth {
            cmdline: self.dir.path().join("cmdline"),
            slots: [
                self.config.slots.path(Slot::A).to_path_buf(),
                self.config.slots.path(Slot::B).to_path_buf(),
            ],
        }
    }
}

pub struct SimHealth {
    cmdline: PathBuf,
    slots: [PathBuf; 2],
}

impl HealthCheck for SimHealth {
    fn check(&self, _: Duration) -> Result<(), String> {
        let cmdline = std::fs::read_to_string(&self.cmdline).unwrap();
        let slot = rampart_agent::device::booted_slot_from_cmdline(&cmdline).unwrap();
        let bytes = std::fs::read(&self.slots[if slot == Slot::A { 0 } else { 1 }]).unwrap();
        match classify(&bytes) {
            Some(Image::Unhealthy) => Err("the application exited with status 1".into()),
            Some(_) => Ok(()),
            None => Err("no image".into()),
        }
    }
}

pub fn hex_sha256(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// --- Real-process tests (tests/sigkill.rs): a bigger release, so that a SIGKILL can land
// while it streams, on a device with larger slots, driven through the `rampart-agent` binary.

/// Length of the big test release.
pub const BIG_IMAGE_BYTES: usize = 4 * 1024 * 1024 + 321;
/// Slot capacity of a device for the big release.
pub const BIG_SLOT_BYTES: usize = 5 * 1024 * 1024;
/// Target path of the big release in [`big_repo`].
pub const BIG_TARGET: &str = "sim/big-v2.img";
/// Version of the big release.
pub const BIG_VERSION: &str = "2.1.0";

/// The big release's bytes (deterministic, distinct from every [`Image`]).
pub fn big_image() -> &'static [u8] {
    static BIG: OnceLock<Vec<u8>> = OnceLock::new();
    BIG.get_or_init(|| {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut v = b"RAMPART-SIM-IMAGE BigV2\n".to_vec();
        v.reserve(BIG_IMAGE_BYTES);
        while v.len() < BIG_IMAGE_BYTES {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(BIG_IMAGE_BYTES);
        v
    })
}

/// A second image repository (its own keys and root) with one release, [`BIG_TARGET`]
/// ([`big_image`]), for the same hardware (built once per test binary).
pub fn big_repo() -> &'static Repo {
    static REPO: OnceLock<Repo> = OnceLock::new();
    REPO.get_or_init(|| {
        let dir = scratch();
        let work = dir.path();
        let key = |name: &str| {
            let (_, bytes) = FileSigner::generate(
                Scheme::Ed25519,
                "pw",
                KdfParams {
                    m_kib: 64,
                    t: 1,
                    p: 1,
                },
            )
            .unwrap();
            let p = work.join(name);
            std::fs::write(&p, bytes).unwrap();
            RoleSigners {
                keys: vec![p.display().to_string()],
                threshold: 1,
            }
        };
        let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
            Ok(Box::new(FileSigner::open(Path::new(r), "pw")?))
        };
        let repo_dir = work.join("repo");
        let opts = InitOptions {
            root: key("root"),
            targets: key("targets"),
            snapshot: key("snap"),
            timestamp: key("ts"),
            expiry_days: ExpiryDays::default(),
        };
        let now = now();
        let repo = Repository::init(&repo_dir, opts, &open, now).unwrap();
        let file = work.join("big-v2.img");
        std::fs::write(&file, big_image()).unwrap();
        let request = ReleaseRequest {
            image: file,
            target_name: Some(BIG_TARGET.into()),
            hardware_ids: vec![HARDWARE.into()],
            version: BIG_VERSION.into(),
            security_version: 2,
            sbom: None,
            provenance: None,
            role: None,
        };
        repo.add_releases(&[request], &open, now, &NoProgress)
            .unwrap();
        repo.publish(&open, now).unwrap();
        let root = repo_dir.join("metadata/1.root.json");
        Repo {
            path: repo_dir,
            root,
            _dir: dir,
        }
    })
}

impl Rig {
    /// A device like [`Rig::new`] (slot A committed, holding v1; slot B filled with 0xEE) but
    /// with slots of `slot_bytes` each and `repo`'s trusted root provisioned.
    pub fn with_slot_bytes(backend: Backend, slot_bytes: usize, repo: &Repo) -> Rig {
        let rig = Rig::new(backend);
        let mut a = Image::V1.bytes();
        a.resize(slot_bytes, 0);
        std::fs::write(rig.config.slots.path(Slot::A), a).unwrap();
        std::fs::write(rig.config.slots.path(Slot::B), vec![0xEE; slot_bytes]).unwrap();
        std::fs::copy(&repo.root, rig.config.state_dir.join("metadata/root.json")).unwrap();
        rig
    }

    /// Writes the device's configuration as `agent.toml` in its directory (for the
    /// `rampart-agent` binary's `--config`) and returns its path.
    pub fn write_config_file(&self) -> PathBuf {
        let c = &self.config;
        let q = |p: &Path| format!("\"{}\"", p.display());
        let bootloader = match c.bootloader.kind {
            rampart_agent::config::BootloaderKind::Grub => format!(
                "kind = \"grub\"\ngrub_env = {}",
                q(c.bootloader.grub_env.as_ref().unwrap())
            ),
            _ => format!(
                "kind = \"uboot\"\nfw_env_config = {}",
                q(c.bootloader.fw_env_config.as_ref().unwrap())
            ),
        };
        let reboot: Vec<String> = c
            .boot
            .reboot_command
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect();
        let text = format!(
            "state_dir = {state}\nhardware_id = \"{hw}\"\n[slots]\nA = {a}\nB = {b}\n\
             [bootloader]\n{bootloader}\ntries = {tries}\n\
             [boot]\ncmdline = {cmdline}\nboot_id = {boot_id}\nreboot_command = [{reboot}]\n\
             [health]\ncheck_server = {check}\ndeadline_secs = {deadline}\n\
             [install]\ncheckpoint_bytes = {checkpoint}\ncheckpoint_secs = {checkpoint_secs}\n",
            state = q(&c.state_dir),
            hw = c.hardware_id,
            a = q(c.slots.path(Slot::A)),
            b = q(c.slots.path(Slot::B)),
            tries = c.bootloader.tries,
            cmdline = q(&c.boot.cmdline),
            boot_id = q(&c.boot.boot_id),
            reboot = reboot.join(", "),
            check = c.health.check_server,
            deadline = c.health.deadline_secs,
            checkpoint = c.install.checkpoint_bytes,
            checkpoint_secs = c.install.checkpoint_secs,
        );
        let path = self.dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap();
        path
    }

    /// Like [`Rig::power_on`], but a slot holds a complete image when it begins with one of
    /// `images` (for releases other than the [`Image`]s); a slot holding [`Image::Panics`]
    /// does not come up.
    pub fn power_on_with_images(&mut self, images: &[&[u8]]) -> Result<Slot, String> {
        let paths = (
            self.config.slots.path(Slot::A).to_path_buf(),
            self.config.slots.path(Slot::B).to_path_buf(),
        );
        let violations = self.violations.clone();
        let panics = Image::Panics.bytes();
        let comes_up = |slot: Slot| {
            let path = if slot == Slot::A { &paths.0 } else { &paths.1 };
            let bytes = std::fs::read(path).unwrap();
            if bytes.starts_with(&panics) {
                return false;
            }
            if images.iter().any(|i| bytes.starts_with(i)) {
                return true;
            }
            violations.lock().unwrap().push(format!(
                "the bootloader tried slot {slot}, which holds no complete image"
            ));
            false
        };
        let on = self.sim.power_on(&comes_up).map_err(|e| e.to_string())?;
        if let Some(v) = self.violations.lock().unwrap().first() {
            return Err(v.clone());
        }
        on.running
            .ok_or_else(|| "no bootable slot left".to_string())
    }
}

/// A private copy of the shared image repository (same keys, same trusted root), for tests
/// that tamper with it or add releases to it.
pub struct RepoCopy {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

/// Copies the shared image repository.
pub fn repo_copy() -> RepoCopy {
    let dir = scratch();
    let path = dir.path().join("repo");
    copy_dir(&repo().path, &path);
    RepoCopy { _dir: dir, path }
}

/// A copy of the shared image repository with one more release, `target` holding `bytes`
/// for `hardware_ids`, signed and published with the shared repository's keys.
pub fn repo_copy_with_release(
    target: &str,
    bytes: &[u8],
    hardware_ids: &[&str],
    version: &str,
    security_version: u64,
) -> RepoCopy {
    let copy = repo_copy();
    let image = copy._dir.path().join("extra.img");
    std::fs::write(&image, bytes).unwrap();
    let open = |r: &str| -> Result<Box<dyn Signer>, rampart_keys::SignError> {
        Ok(Box::new(FileSigner::open(Path::new(r), "pw")?))
    };
    let repo = Repository::open(&copy.path).unwrap();
    let now = now();
    repo.add_releases(
        &[ReleaseRequest {
            image,
            target_name: Some(target.into()),
            hardware_ids: hardware_ids.iter().map(|h| h.to_string()).collect(),
            version: version.into(),
            security_version,
            sbom: None,
            provenance: None,
            role: None,
        }],
        &open,
        now,
        &NoProgress,
    )
    .unwrap();
    repo.publish(&open, now).unwrap();
    copy
}

/// Copies the directory tree `from` to `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Prints a torture test's summary line and keeps it in `target/tmp/torture/NAME.txt`, which
/// `scripts/test.sh` prints after the test run (cargo hides a passing test's output).
pub fn report_summary(name: &str, line: &str) {
    eprintln!("{line}");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("torture");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join(format!("{name}.txt")), format!("{line}\n"));
}
