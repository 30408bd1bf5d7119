//! Reading and writing the bootloader environments on the device: the GRUB environment block
//! and the U-Boot environment, in the formats of [`rampart_boot::grubenv`] and
//! [`rampart_boot::ubootenv`], interoperating with `grub-editenv` and libubootenv's
//! `fw_printenv`/`fw_setenv`.
//!
//! Every write goes through the [`Disk`] passed in (one write step per store), so the
//! power-loss tests can cut power in the middle of it. What survives a cut:
//!
//! * GRUB: the whole block is replaced atomically ([`Disk::replace_file`]): the old or the new
//!   block, never a mix.
//! * U-Boot, redundant (two lines in `fw_env.config`): the copy that is *not* current is
//!   overwritten in place with the next flags value, exactly as `fw_setenv` does, so a torn
//!   write leaves a copy with a bad CRC and the previous copy stays current.
//! * U-Boot, single copy: the only copy is overwritten in place, and a torn write destroys it
//!   (U-Boot then boots with its built-in default environment). Use the redundant layout on any
//!   device that must survive power loss; [`UbootEnv::is_redundant`] tells which one is set up.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Seek as _, SeekFrom};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_boot::grubenv::{self, GrubEnvError};
use rampart_boot::ubootenv::{self, EnvDevice, FlagScheme, FwEnvConfig, UbootEnvError};

use crate::disk::{Disk, DiskError};

/// The lock file libubootenv's `fw_printenv`/`fw_setenv` take (`flock`, exclusive) around every
/// read and write; taking it too keeps the agent and the tools from interleaving.
pub const UBOOT_LOCK_FILE: &str = "/var/lock/fw_printenv.lock";

/// How long to wait for another holder of the lock file before giving up.
const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// A bootloader environment: the variables, read and written as a whole.
pub trait EnvStore {
    /// Reads the current variables.
    fn load(&self) -> Result<BTreeMap<String, String>, EnvError>;
    /// Replaces all variables with `vars`, durably, writing through `disk`.
    fn store(&mut self, disk: &Disk, vars: &BTreeMap<String, String>) -> Result<(), EnvError>;
    /// Names the environment in messages.
    fn describe(&self) -> String;
}

/// Why a bootloader environment could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// Reading a file or device (or taking the lock) failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The GRUB environment block is damaged.
    #[error("{path} is not a usable GRUB environment block: {source}")]
    CorruptGrubEnv {
        path: String,
        #[source]
        source: GrubEnvError,
    },
    /// No copy of the U-Boot environment has a valid CRC (or the single copy does not).
    #[error(
        "{what}: {source}; U-Boot boots with its built-in default environment until a complete environment is written (by the agent, or with fw_setenv)"
    )]
    NoValidCopy {
        what: String,
        #[source]
        source: UbootEnvError,
    },
    /// The current U-Boot copy has a valid CRC but unreadable contents.
    #[error(
        "{what}: the current copy is damaged: {source}; rewrite the environment with fw_setenv or restore it from a backup"
    )]
    CorruptUbootEnv {
        what: String,
        #[source]
        source: UbootEnvError,
    },
    /// `fw_env.config` is malformed.
    #[error(
        "{path}: {source}; fix the file (DEVICE OFFSET ENV_SIZE [SECTOR_SIZE [SECTORS]] per copy)"
    )]
    BadConfig {
        path: String,
        #[source]
        source: UbootEnvError,
    },
    /// `fw_env.config` names a device this agent cannot write safely.
    #[error("{device}: {reason}")]
    UnsupportedDevice { device: String, reason: String },
    /// The variables do not fit in the environment.
    #[error(
        "{what}: the variables need {needed} bytes but the environment holds {capacity}; remove or shorten variables"
    )]
    TooLarge {
        what: String,
        needed: usize,
        capacity: usize,
    },
    /// A variable name or value the bootloader could not read back.
    #[error("{what}: {reason}")]
    InvalidVariable { what: String, reason: String },
    /// Writing failed (or a simulated power cut).
    #[error(transparent)]
    Disk(#[from] DiskError),
}

impl EnvError {
    fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> EnvError {
        let path = path.display().to_string();
        move |source| EnvError::Io { op, path, source }
    }
}

/// The GRUB environment block file (usually `/boot/grub/grubenv`).
#[derive(Debug, Clone)]
pub struct GrubEnvFile {
    path: PathBuf,
}

impl GrubEnvFile {
    /// The block at `path` (it need not exist yet).
    pub fn new(path: impl AsRef<Path>) -> GrubEnvFile {
        GrubEnvFile {
            path: path.as_ref().to_path_buf(),
        }
    }

    /// The path of the block.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EnvStore for GrubEnvFile {
    /// A missing file reads as no variables: the agent treats that as the factory default, and
    /// GRUB's `load_env` likewise sets nothing. A damaged one is an error, never guessed at.
    fn load(&self) -> Result<BTreeMap<String, String>, EnvError> {
        let block = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(EnvError::io("read", &self.path)(e)),
        };
        grubenv::parse(&block).map_err(|source| EnvError::CorruptGrubEnv {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// Replaces the whole block atomically (write, fsync, rename), so a power cut leaves the
    /// old or the new block. GRUB's `save_env` finds the file's sectors anew at each boot, so a
    /// renamed-in file is as good as the original.
    fn store(&mut self, disk: &Disk, vars: &BTreeMap<String, String>) -> Result<(), EnvError> {
        let what = self.describe();
        let block = grubenv::serialize(vars).map_err(|e| match e {
            GrubEnvError::TooLarge { needed } => EnvError::TooLarge {
                what,
                needed,
                capacity: grubenv::BLOCK_SIZE,
            },
            other => EnvError::InvalidVariable {
                what,
                reason: other.to_string(),
            },
        })?;
        disk.replace_file(&self.path, &block)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("GRUB environment block {}", self.path.display())
    }
}

/// The U-Boot environment described by a `fw_env.config`, on files or block devices.
///
/// Files and block devices are what libubootenv treats as plain devices (incremental flags,
/// written in place). Raw MTD (`/dev/mtd*`, which needs erase ioctls) and UBI volumes
/// (`/dev/ubi*`, which need a volume-update ioctl) are refused rather than written wrongly.
#[derive(Debug, Clone)]
pub struct UbootEnv {
    config: FwEnvConfig,
    /// Where the configuration came from, for messages.
    source: String,
    lock: Option<PathBuf>,
}

impl UbootEnv {
    /// The environment `config` describes; `source` names it in messages. Takes libubootenv's
    /// lock file ([`UBOOT_LOCK_FILE`]) around reads and writes.
    pub fn new(config: FwEnvConfig, source: impl Into<String>) -> Result<UbootEnv, EnvError> {
        for dev in &config.devices {
            check_device(dev)?;
        }
        Ok(UbootEnv {
            config,
            source: source.into(),
            lock: Some(PathBuf::from(UBOOT_LOCK_FILE)),
        })
    }

    /// Reads and parses a `fw_env.config` (usually `/etc/fw_env.config`).
    pub fn from_config_file(path: impl AsRef<Path>) -> Result<UbootEnv, EnvError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(EnvError::io("read", path))?;
        let config = ubootenv::parse_config(&text).map_err(|source| EnvError::BadConfig {
            path: path.display().to_string(),
            source,
        })?;
        UbootEnv::new(config, path.display().to_string())
    }

    /// Uses `lock` instead of [`UBOOT_LOCK_FILE`] (`None`: no locking). Only for tests and
    /// setups where no libubootenv tool shares the environment.
    pub fn with_lock_file(mut self, lock: Option<PathBuf>) -> UbootEnv {
        self.lock = lock;
        self
    }

    /// Whether the environment has two copies. Only then does a power cut during a store keep
    /// the previous environment; a single copy can be destroyed by one.
    pub fn is_redundant(&self) -> bool {
        self.config.is_redundant()
    }

    /// The parsed `fw_env.config`.
    pub fn config(&self) -> &FwEnvConfig {
        &self.config
    }

    /// Takes the lock file, waiting up to [`LOCK_TIMEOUT`] for another holder (a running
    /// `fw_setenv`). As in libubootenv, a lock file that cannot be created (read-only `/var`)
    /// means no locking rather than no environment. Released when the returned file is dropped.
    fn lock(&self) -> Result<Option<File>, EnvError> {
        let Some(path) = &self.lock else {
            return Ok(None);
        };
        let Ok(file) = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        else {
            return Ok(None);
        };
        let deadline = Instant::now() + LOCK_TIMEOUT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Some(file)),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(EnvError::Io {
                        op: "lock",
                        path: path.display().to_string(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "held by another process (fw_setenv?) for over {} s",
                                LOCK_TIMEOUT.as_secs()
                            ),
                        ),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(EnvError::io("lock", path)(e));
                }
            }
        }
    }

    /// Reads copy `index` (shorter than `env_size` if the device ends early).
    fn read_copy(&self, index: usize) -> Result<Vec<u8>, EnvError> {
        let dev = &self.config.devices[index];
        let path = Path::new(&dev.device);
        let file =
            File::open(path).map_err(EnvError::io("open U-Boot environment device", path))?;
        let offset = resolve_offset(&file, dev)?;
        let mut buf = vec![0; dev.env_size];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(EnvError::io("read U-Boot environment device", path)(e)),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Writes one whole copy in place through `disk`, synced.
    fn write_copy(&self, disk: &Disk, index: usize, block: &[u8]) -> Result<(), EnvError> {
        let dev = &self.config.devices[index];
        let path = Path::new(&dev.device);
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(EnvError::io(
                "open for writing U-Boot environment device",
                path,
            ))?;
        let offset = resolve_offset(&file, dev)?;
        disk.write_at(&file, path, offset, block, true)?;
        Ok(())
    }

    fn too_large_or_invalid(&self, e: UbootEnvError) -> EnvError {
        let what = self.describe();
        match e {
            UbootEnvError::TooLarge {
                needed, available, ..
            } => EnvError::TooLarge {
                what,
                needed,
                capacity: available,
            },
            other => EnvError::InvalidVariable {
                what,
                reason: other.to_string(),
            },
        }
    }
}

/// Refuses devices libubootenv writes with ioctls (erase, volume update) that a plain write
/// cannot replace.
fn check_device(dev: &EnvDevice) -> Result<(), EnvError> {
    let named = Path::new(&dev.device);
    let resolved = std::fs::canonicalize(named).unwrap_or_else(|_| named.to_path_buf());
    for p in [named, resolved.as_path()] {
        let s = p.to_string_lossy();
        let kind = if s.starts_with("/dev/mtd") {
            "raw MTD flash (needs erase-before-write)"
        } else if s.starts_with("/dev/ubi") {
            "a UBI volume (needs a volume update ioctl)"
        } else {
            continue;
        };
        return Err(EnvError::UnsupportedDevice {
            device: dev.device.clone(),
            reason: format!(
                "the agent writes U-Boot environments on files and block devices only, not on {kind}; use the custom bootloader backend with a fw_setenv script for this device"
            ),
        });
    }
    Ok(())
}

/// The byte offset of a copy: negative offsets count back from the end of the device, as in
/// libubootenv.
fn resolve_offset(file: &File, dev: &EnvDevice) -> Result<u64, EnvError> {
    if let Ok(offset) = u64::try_from(dev.offset) {
        return Ok(offset);
    }
    let path = Path::new(&dev.device);
    let size = (&*file)
        .seek(SeekFrom::End(0))
        .map_err(EnvError::io("find the size of", path))?;
    size.checked_sub(dev.offset.unsigned_abs())
        .ok_or_else(|| EnvError::Io {
            op: "locate the environment in",
            path: dev.device.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "offset {} is before the start of the device ({size} bytes)",
                    dev.offset
                ),
            ),
        })
}

impl EnvStore for UbootEnv {
    /// Reads the current copy: for a redundant environment, both copies are read and the
    /// current one chosen by CRC and flags as libubootenv and U-Boot choose it; a copy with a
    /// bad CRC (a torn write) is ignored.
    fn load(&self) -> Result<BTreeMap<String, String>, EnvError> {
        let _lock = self.lock()?;
        let env_size = self.config.env_size();
        let redundant = self.is_redundant();
        let what = self.describe();
        let first = ubootenv::parse_copy(&self.read_copy(0)?, env_size, redundant);
        let chosen = if redundant {
            let second = ubootenv::parse_copy(&self.read_copy(1)?, env_size, true);
            ubootenv::select([first, second], FlagScheme::Incremental).map(|s| s.copy)
        } else {
            first
        };
        match chosen {
            Ok(copy) => Ok(copy.vars),
            Err(source @ UbootEnvError::Undecodable { .. }) => {
                Err(EnvError::CorruptUbootEnv { what, source })
            }
            Err(source) => Err(EnvError::NoValidCopy { what, source }),
        }
    }

    /// Writes a complete environment in one write step, as `fw_setenv` would: for a redundant
    /// environment the copy that is not current gets the new data and the current copy's flags
    /// plus one (the copies are re-read under the lock first, so a `fw_setenv` in between is
    /// respected); a single copy is overwritten in place.
    fn store(&mut self, disk: &Disk, vars: &BTreeMap<String, String>) -> Result<(), EnvError> {
        let env_size = self.config.env_size();
        if !self.is_redundant() {
            let block = ubootenv::serialize(vars, env_size, None)
                .map_err(|e| self.too_large_or_invalid(e))?;
            let _lock = self.lock()?;
            return self.write_copy(disk, 0, &block);
        }
        // Refuse bad variables before touching anything.
        ubootenv::serialize(vars, env_size, Some(0)).map_err(|e| self.too_large_or_invalid(e))?;
        let _lock = self.lock()?;
        let copies = [self.read_copy(0)?, self.read_copy(1)?];
        let plan =
            ubootenv::write_plan([&copies[0], &copies[1]], env_size, FlagScheme::Incremental);
        let block = ubootenv::serialize(vars, env_size, Some(plan.flags))
            .map_err(|e| self.too_large_or_invalid(e))?;
        self.write_copy(disk, plan.index, &block)
    }

    fn describe(&self) -> String {
        let devices: Vec<String> = self
            .config
            .devices
            .iter()
            .map(|d| format!("{}@{:#x}", d.device, d.offset))
            .collect();
        format!(
            "U-Boot environment ({}: {}, {} of {:#x} bytes)",
            self.source,
            devices.join(" + "),
            if self.is_redundant() {
                "two copies"
            } else {
                "single copy"
            },
            self.config.env_size()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::{CrashPoint, FaultPlan};

    const SIZE: usize = 0x400;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn torn_disk() -> Disk {
        Disk::with_fault(FaultPlan {
            step: 1,
            point: CrashPoint::Torn,
            abort: false,
        })
    }

    /// Values long enough that both halves of a U-Boot copy change on every write (so a torn
    /// write really is a mix of old and new).
    fn big(tag: &str, n: usize) -> BTreeMap<String, String> {
        let unit = format!("{tag}{n}");
        vars(&[
            ("BOOT_ORDER", "A B"),
            ("fill", &unit.repeat(SIZE * 3 / 4 / unit.len())),
        ])
    }

    #[test]
    fn grub_round_trip_and_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = GrubEnvFile::new(dir.path().join("grubenv"));
        assert_eq!(env.load().unwrap(), BTreeMap::new());
        let v = vars(&[
            ("BOOT_ORDER", "B A"),
            ("BOOT_B_LEFT", "2"),
            ("x", "a\\b\nc"),
        ]);
        let disk = Disk::new();
        env.store(&disk, &v).unwrap();
        assert_eq!(disk.steps(), 1);
        assert_eq!(env.load().unwrap(), v);
        let raw = std::fs::read(env.path()).unwrap();
        assert_eq!(raw.len(), grubenv::BLOCK_SIZE);
        assert!(env.describe().contains("grubenv"));
    }

    #[test]
    fn grub_corrupt_block_is_an_error_that_says_how_to_recreate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grubenv");
        std::fs::write(&path, b"garbage").unwrap();
        let err = GrubEnvFile::new(&path).load().unwrap_err();
        assert!(matches!(err, EnvError::CorruptGrubEnv { .. }), "{err}");
        assert!(
            err.to_string().contains("grub-editenv FILE create"),
            "{err}"
        );
    }

    #[test]
    fn grub_torn_store_keeps_the_old_block() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = GrubEnvFile::new(dir.path().join("grubenv"));
        let old = vars(&[("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3")]);
        env.store(&Disk::new(), &old).unwrap();
        let err = env
            .store(&torn_disk(), &vars(&[("BOOT_ORDER", "B A")]))
            .unwrap_err();
        assert!(
            matches!(err, EnvError::Disk(DiskError::Crashed { .. })),
            "{err}"
        );
        assert_eq!(env.load().unwrap(), old);
        Disk::sweep(dir.path());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn grub_refusals_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = GrubEnvFile::new(dir.path().join("grubenv"));
        let disk = Disk::new();
        let err = env
            .store(&disk, &vars(&[("big", &"x".repeat(2000))]))
            .unwrap_err();
        assert!(
            matches!(err, EnvError::TooLarge { capacity: 1024, .. }),
            "{err}"
        );
        let err = env.store(&disk, &vars(&[("a=b", "1")])).unwrap_err();
        assert!(matches!(err, EnvError::InvalidVariable { .. }), "{err}");
        assert_eq!(disk.steps(), 0);
        assert!(!env.path().exists());
    }

    /// Two copies in two zero-filled files, as a fresh device has them.
    fn redundant(dir: &Path) -> UbootEnv {
        for f in ["env0", "env1"] {
            std::fs::write(dir.join(f), vec![0u8; SIZE]).unwrap();
        }
        let text = format!(
            "# two copies\n{}/env0 0 {SIZE:#x}\n{}/env1 0x0 {SIZE:x}\n",
            dir.display(),
            dir.display()
        );
        let config = ubootenv::parse_config(&text).unwrap();
        UbootEnv::new(config, "test")
            .unwrap()
            .with_lock_file(Some(dir.join("lock")))
    }

    fn flags(dir: &Path) -> [u8; 2] {
        ["env0", "env1"].map(|f| std::fs::read(dir.join(f)).unwrap()[4])
    }

    #[test]
    fn uboot_redundant_stores_alternate_copies_like_fw_setenv() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = redundant(dir.path());
        assert!(env.is_redundant());
        let err = env.load().unwrap_err();
        assert!(matches!(err, EnvError::NoValidCopy { .. }), "{err}");
        // Nothing valid: the second copy, flags 1; then alternating with the counter.
        let expected = [(1, [0, 1]), (2, [2, 1]), (3, [2, 3]), (4, [4, 3])];
        for (n, want) in expected {
            let v = big("v", n);
            let disk = Disk::new();
            env.store(&disk, &v).unwrap();
            assert_eq!(disk.steps(), 1);
            assert_eq!(flags(dir.path()), want, "store {n}");
            assert_eq!(env.load().unwrap(), v, "store {n}");
        }
    }

    #[test]
    fn uboot_redundant_torn_store_keeps_the_previous_environment() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = redundant(dir.path());
        for n in 1..=3 {
            env.store(&Disk::new(), &big("old", n)).unwrap();
        }
        // Copy 1 is current (flags 3); the torn write goes to copy 0.
        let before = flags(dir.path());
        let err = env.store(&torn_disk(), &big("new", 4)).unwrap_err();
        assert!(
            matches!(err, EnvError::Disk(DiskError::Crashed { .. })),
            "{err}"
        );
        // Really torn: the new flags reached the copy, but not all of the data.
        let torn = std::fs::read(dir.path().join("env0")).unwrap();
        assert_ne!(torn[4], before[0]);
        assert!(matches!(
            ubootenv::parse_copy(&torn, SIZE, true),
            Err(UbootEnvError::BadCrc { .. })
        ));
        assert_eq!(env.load().unwrap(), big("old", 3));
        // The next store overwrites the torn copy again, and wins.
        env.store(&Disk::new(), &big("new", 5)).unwrap();
        assert_eq!(flags(dir.path()), [4, 3]);
        assert_eq!(env.load().unwrap(), big("new", 5));
    }

    #[test]
    fn uboot_copies_may_share_one_device_at_two_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("mmcblk0");
        std::fs::write(&dev, vec![0xAAu8; 4 * SIZE]).unwrap();
        // Positive and negative (from the end) offsets, as on eMMC boot partitions.
        let text = format!(
            "{d} {SIZE:#x} {SIZE:#x}\n{d} -{:#x} {SIZE:#x}\n",
            2 * SIZE,
            d = dev.display()
        );
        let mut env = UbootEnv::new(ubootenv::parse_config(&text).unwrap(), "test")
            .unwrap()
            .with_lock_file(None);
        for n in 1..=3 {
            env.store(&Disk::new(), &big("v", n)).unwrap();
            assert_eq!(env.load().unwrap(), big("v", n));
        }
        let raw = std::fs::read(&dev).unwrap();
        assert!(raw[..SIZE].iter().all(|&b| b == 0xAA), "before copy 0");
        assert!(raw[3 * SIZE..].iter().all(|&b| b == 0xAA), "after copy 1");
        // Nothing was valid at first, so the counter started from copy 0's raw flags byte
        // plus one, as fw_setenv does: 0xAB (copy 1), 0xAC (copy 0), 0xAD (copy 1).
        assert_eq!((raw[SIZE + 4], raw[2 * SIZE + 4]), (0xAC, 0xAD));
    }

    #[test]
    fn uboot_single_copy_round_trip_and_why_it_is_not_power_safe() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("uboot.env");
        std::fs::write(&file, vec![0u8; SIZE]).unwrap();
        let text = format!("{} 0 {SIZE:#x}\n", file.display());
        let mut env = UbootEnv::new(ubootenv::parse_config(&text).unwrap(), "test")
            .unwrap()
            .with_lock_file(None);
        assert!(!env.is_redundant());
        env.store(&Disk::new(), &big("a", 1)).unwrap();
        assert_eq!(env.load().unwrap(), big("a", 1));
        // No flags byte: the data starts right after the CRC.
        assert_eq!(&std::fs::read(&file).unwrap()[4..15], b"BOOT_ORDER=");
        // A torn in-place write destroys the only copy.
        assert!(env.store(&torn_disk(), &big("b", 2)).is_err());
        let err = env.load().unwrap_err();
        assert!(matches!(err, EnvError::NoValidCopy { .. }), "{err}");
    }

    #[test]
    fn uboot_both_copies_corrupt_is_no_valid_copy_and_a_store_recreates() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = redundant(dir.path());
        env.store(&Disk::new(), &big("v", 1)).unwrap();
        env.store(&Disk::new(), &big("v", 2)).unwrap();
        for f in ["env0", "env1"] {
            let p = dir.path().join(f);
            let mut raw = std::fs::read(&p).unwrap();
            raw[100] ^= 0xFF;
            std::fs::write(&p, raw).unwrap();
        }
        let err = env.load().unwrap_err();
        let EnvError::NoValidCopy { source, .. } = &err else {
            panic!("{err}");
        };
        assert!(matches!(source, UbootEnvError::NoValidCopy { .. }), "{err}");
        assert!(err.to_string().contains("first copy: bad CRC"), "{err}");
        env.store(&Disk::new(), &big("v", 3)).unwrap();
        assert_eq!(env.load().unwrap(), big("v", 3));
    }

    #[test]
    fn uboot_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = redundant(dir.path());
        let disk = Disk::new();
        let err = env
            .store(&disk, &vars(&[("x", &"y".repeat(SIZE))]))
            .unwrap_err();
        assert!(
            matches!(err, EnvError::TooLarge { capacity, .. } if capacity == SIZE - 5),
            "{err}"
        );
        let err = env.store(&disk, &vars(&[("", "y")])).unwrap_err();
        assert!(matches!(err, EnvError::InvalidVariable { .. }), "{err}");
        assert_eq!(disk.steps(), 0);

        let cfg = dir.path().join("fw_env.config");
        std::fs::write(&cfg, "/dev/x 0 0x4000\n/dev/y 0 zz\n").unwrap();
        let err = UbootEnv::from_config_file(&cfg).unwrap_err();
        assert!(matches!(err, EnvError::BadConfig { .. }), "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");

        std::fs::write(&cfg, "/dev/mtd1 0 0x4000 0x10000\n").unwrap();
        let err = UbootEnv::from_config_file(&cfg).unwrap_err();
        assert!(matches!(err, EnvError::UnsupportedDevice { .. }), "{err}");

        let missing = ubootenv::parse_config("/nonexistent/env 0 0x400\n").unwrap();
        let err = UbootEnv::new(missing, "test")
            .unwrap()
            .with_lock_file(None)
            .load()
            .unwrap_err();
        assert!(matches!(err, EnvError::Io { .. }), "{err}");
    }

    #[test]
    fn uboot_short_copy_is_ignored_when_the_other_is_valid() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = redundant(dir.path());
        env.store(&Disk::new(), &big("v", 1)).unwrap();
        // Copy 0 (never written) is truncated.
        std::fs::write(dir.path().join("env0"), b"short").unwrap();
        assert_eq!(env.load().unwrap(), big("v", 1));
        // The next store writes it at full size.
        env.store(&Disk::new(), &big("v", 2)).unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("env0")).unwrap().len(),
            SIZE as u64
        );
        assert_eq!(env.load().unwrap(), big("v", 2));
    }
}
