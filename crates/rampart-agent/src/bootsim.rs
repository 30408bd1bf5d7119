//! A boot simulator for tests: it plays the bootloader at power-on over the real environment
//! files (GRUB block or U-Boot copies, through [`crate::bootenv`]), choosing the slot and
//! decrementing its counter exactly as the boot scripts in `docs/device-integration.md` do,
//! then "starts the kernel": it writes the command line (`rampart.slot=X`) and a fresh boot
//! id where the agent reads them. Whole reboot sequences thus run in tests, and on a
//! workstation through `rampart-agent simulate-reboot` ([`from_config`]).

use std::path::{Path, PathBuf};

use rampart_boot::ab::{AbState, Slot};

use crate::bootenv::EnvStore;
use crate::config::{BootloaderKind, Config};
use crate::disk::Disk;

/// The boot id the simulator writes for its `n`th boot.
fn sim_boot_id(n: u64) -> String {
    format!("sim-boot-{n}")
}

/// Boots attempted in one power-on at most before the simulator declares the device dead.
const MAX_BOOTS_PER_POWER_ON: u32 = 32;

/// What a power-on did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerOn {
    /// The slot whose kernel came up, or `None`: no slot left to boot (a bricked device).
    pub running: Option<Slot>,
    /// Boot attempts that failed before it (kernels that did not come up).
    pub failed_attempts: u32,
    /// Whether the environment was unreadable and the bootloader's built-in default was used.
    pub used_default_env: bool,
}

/// The simulated bootloader and kernel.
pub struct BootSim {
    store: Box<dyn EnvStore + Send>,
    tries: u8,
    cmdline: PathBuf,
    boot_id: PathBuf,
    boots: u64,
}

impl BootSim {
    /// A simulator over `store`, writing the command line and boot id to those files.
    pub fn new(store: Box<dyn EnvStore + Send>, tries: u8, cmdline: &Path, boot_id: &Path) -> Self {
        BootSim {
            store,
            tries,
            cmdline: cmdline.to_path_buf(),
            boot_id: boot_id.to_path_buf(),
            boots: 0,
        }
    }

    /// Boots so far.
    pub fn boots(&self) -> u64 {
        self.boots
    }

    /// Continues the boot count of an earlier simulator on the same files (its boot id), so
    /// that each power-on of a new process still gives the kernel a new boot id.
    pub fn continuing_boot_count(mut self) -> Self {
        self.boots = std::fs::read_to_string(&self.boot_id)
            .ok()
            .and_then(|id| id.trim().strip_prefix("sim-boot-")?.parse().ok())
            .unwrap_or(0);
        self
    }

    /// The bootloader environment's variables now.
    pub fn environment(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        self.store.load().map_err(|e| e.to_string())
    }

    /// Powers on: the bootloader picks a slot and decrements its counter (saving the
    /// environment, as `saveenv`/`save_env` do); `comes_up(slot)` says whether that slot's
    /// kernel reaches user space; if not, the watchdog resets and the bootloader tries again.
    pub fn power_on(&mut self, comes_up: &dyn Fn(Slot) -> bool) -> std::io::Result<PowerOn> {
        let disk = Disk::new();
        let mut failed_attempts = 0;
        let mut used_default_env = false;
        for _ in 0..MAX_BOOTS_PER_POWER_ON {
            self.boots += 1;
            let mut vars = match self.store.load() {
                Ok(v) => v,
                Err(_) => {
                    used_default_env = true;
                    Default::default()
                }
            };
            let mut ab = AbState::from_vars(&vars, self.tries).unwrap_or_else(|_| {
                used_default_env = true;
                AbState::factory(self.tries)
            });
            let Some(slot) = ab.boot() else {
                return Ok(PowerOn {
                    running: None,
                    failed_attempts,
                    used_default_env,
                });
            };
            ab.to_vars(&mut vars);
            self.store
                .store(&disk, &vars)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            if comes_up(slot) {
                std::fs::write(
                    &self.cmdline,
                    format!("root=/dev/slot{slot} rampart.slot={slot}\n"),
                )?;
                std::fs::write(&self.boot_id, format!("{}\n", sim_boot_id(self.boots)))?;
                return Ok(PowerOn {
                    running: Some(slot),
                    failed_attempts,
                    used_default_env,
                });
            }
            failed_attempts += 1;
        }
        Ok(PowerOn {
            running: None,
            failed_attempts,
            used_default_env,
        })
    }
}

/// The simulator for a configured device (`rampart-agent simulate-reboot`): its GRUB or U-Boot
/// environment, and `boot.cmdline` and `boot.boot_id` as the files the "kernel" writes. The
/// configuration must let the agent learn the booted slot from that command line: no fixed
/// `boot.booted_slot`, and files of its own rather than the running kernel's `/proc` ones.
pub fn from_config(config: &Config) -> Result<BootSim, String> {
    let b = &config.boot;
    if b.booted_slot.is_some() {
        return Err(
            "remove boot.booted_slot from the configuration: with it the agent ignores the command line the simulated boot writes".into(),
        );
    }
    for (key, path) in [("boot.cmdline", &b.cmdline), ("boot.boot_id", &b.boot_id)] {
        if path.starts_with("/proc") || path.starts_with("/sys") {
            return Err(format!(
                "{key} is the running kernel's {}: point it at a file (e.g. {key} = \"{}\") for the simulated kernel to write",
                path.display(),
                if key == "boot.cmdline" {
                    "cmdline"
                } else {
                    "boot_id"
                }
            ));
        }
    }
    let missing = |key: &str| format!("the configuration lacks bootloader.{key}");
    let store: Box<dyn EnvStore + Send> = match config.bootloader.kind {
        BootloaderKind::Grub => Box::new(crate::bootenv::GrubEnvFile::new(
            config
                .bootloader
                .grub_env
                .as_ref()
                .ok_or_else(|| missing("grub_env"))?,
        )),
        BootloaderKind::Uboot => {
            let path = config
                .bootloader
                .fw_env_config
                .as_ref()
                .ok_or_else(|| missing("fw_env_config"))?;
            Box::new(
                crate::bootenv::UbootEnv::from_config_file(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            )
        }
        BootloaderKind::Custom => {
            return Err(
                "the boot simulator plays GRUB or U-Boot over their environment; a custom bootloader script has no environment it could read: try the flow with kind = \"grub\" or \"uboot\"".into(),
            );
        }
    };
    Ok(
        BootSim::new(store, config.bootloader.tries, &b.cmdline, &b.boot_id)
            .continuing_boot_count(),
    )
}
