//! A boot simulator for tests: it plays the bootloader at power-on over the real environment
//! files (GRUB block or U-Boot copies, through [`crate::bootenv`]), choosing the slot and
//! decrementing its counter exactly as the boot scripts in `docs/device-integration.md` do,
//! then "starts the kernel": it writes the command line (`rampart.slot=X`) and a fresh boot
//! id where the agent reads them. Whole reboot sequences thus run in tests.

use std::path::{Path, PathBuf};

use rampart_boot::ab::{AbState, Slot};

use crate::bootenv::EnvStore;
use crate::disk::Disk;

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
                std::fs::write(&self.boot_id, format!("sim-boot-{}\n", self.boots))?;
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
