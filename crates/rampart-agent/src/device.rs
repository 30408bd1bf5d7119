//! The device I/O shell around [`rampart_boot::flow`]: it observes the boot, runs the decided
//! action against the slots and the bootloader, streams verified releases into the inactive
//! slot, and keeps the state file. Every persistent write goes through the platform's write
//! layer (on a device, the [`crate::disk::Disk`]).
//!
//! [`Device`] is generic over its [`Platform`]: the agent binary runs it on [`Local`] (block
//! devices, files, processes), the fleet simulator on in-memory hardware. The start of a boot
//! is in [`crate::startup`], the install in [`crate::install`].

use std::path::PathBuf;
use std::time::Duration;

use rampart_boot::ab::{Slot, SlotHealth};
use rampart_boot::flow::{AgentState, Observed, PendingReport, Reason, Release};
use rampart_protocol::ReportStatus;

use crate::bootloader::Bootloader;
use crate::config::Config;
use crate::disk::Disk;
use crate::platform::{Local, Platform, boot_refusal};
use crate::source::Refusal;

pub use crate::platform::{
    SECURITY_VERSION_FILE, STATE_FILE, booted_slot_from_cmdline, slot_capacity,
};

/// Bytes read and written at a time while streaming into a slot.
pub const DEFAULT_CHUNK: usize = 1 << 20;

/// Health checks run after booting a new slot.
pub trait HealthCheck {
    /// `Ok` when healthy; otherwise what failed, with its output.
    fn check(&self, deadline: Duration) -> Result<(), String>;
}

/// Health checks that always pass (devices configured without any).
pub struct NoHealthChecks;
impl HealthCheck for NoHealthChecks {
    fn check(&self, _: Duration) -> Result<(), String> {
        Ok(())
    }
}

/// What a start decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// Running a committed slot; updates may be installed. `committed` is set when this
    /// start committed a new release, `rolled_back` when it finished a rollback.
    Ready {
        committed: Option<Box<Release>>,
        rolled_back: Option<Box<(Release, Reason)>>,
    },
    /// The device must reboot now (into a new slot, or back to the old one).
    Reboot,
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installed {
    /// Streamed (or found already staged and re-verified), verified and activated: reboot to
    /// try it. `from_staged`: a download-only assignment had put it into the slot already.
    Activated {
        slot: Slot,
        resumed_from: u64,
        from_staged: bool,
    },
    /// The booted slot already runs this release.
    AlreadyRunning,
    /// A re-image's mirror is verified and marked good: `slots` (lowercase names) hold the
    /// release, and the re-image is reported `installed`.
    Reimaged { slots: Vec<String> },
}

/// What a download-only install ([`Device::stage`]) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staged {
    /// Streamed and verified into the inactive slot, which stays marked bad until an install
    /// activates it; a `downloaded` report is queued.
    Downloaded { slot: Slot, resumed_from: u64 },
    /// The inactive slot already holds exactly this release (re-verified).
    AlreadyStaged { slot: Slot },
    /// The booted slot already runs this release.
    AlreadyRunning,
}

/// Progress of a stream, for reports and output.
pub trait Progress {
    fn progress(&self, release: &Release, written: u64);
}

impl<F: Fn(&Release, u64)> Progress for F {
    fn progress(&self, release: &Release, written: u64) {
        self(release, written)
    }
}

/// A device: its configuration, its platform (slots, bootloader, state directory) and the
/// persistent-write layer.
pub struct Device<P: Platform = Local> {
    pub config: Config,
    pub disk: P::Disk,
    pub platform: P,
    /// Chunk size of slot writes (tests use small ones to get many write steps).
    pub chunk: usize,
}

impl Device<Local> {
    /// A device with the configured bootloader backend.
    pub fn open(config: Config, disk: Disk) -> Result<Device, Refusal> {
        let bootloader =
            crate::bootloader::from_config(&config.bootloader).map_err(boot_refusal)?;
        Ok(Device::with_bootloader(config, disk, bootloader))
    }

    pub fn with_bootloader(config: Config, disk: Disk, bootloader: Box<dyn Bootloader>) -> Device {
        Device::with_platform(config, disk, Local::new(bootloader))
    }

    /// A device with the configured bootloader backend and `tpm` (measured boot,
    /// attestation, the hardware anti-rollback floor).
    pub fn open_with_tpm(
        config: Config,
        disk: Disk,
        tpm: Box<dyn rampart_attest::device::TpmDevice>,
    ) -> Result<Device, Refusal> {
        let bootloader =
            crate::bootloader::from_config(&config.bootloader).map_err(boot_refusal)?;
        Ok(Device::with_platform(
            config,
            disk,
            Local::with_tpm(bootloader, tpm),
        ))
    }

    pub fn state_path(&self) -> PathBuf {
        self.config.state_dir.join(STATE_FILE)
    }
}

impl<P: Platform> Device<P> {
    /// A device on `platform`, writing through `disk`.
    pub fn with_platform(config: Config, disk: P::Disk, platform: P) -> Device<P> {
        Device {
            config,
            disk,
            platform,
            chunk: DEFAULT_CHUNK,
        }
    }

    /// The stored state; a fresh one when there is none. A corrupt file is refused.
    pub fn load_state(&self) -> Result<AgentState, Refusal> {
        self.platform.load_state(&self.config)
    }

    pub(crate) fn save(&mut self, state: &AgentState) -> Result<(), Refusal> {
        self.platform.save_state(&self.disk, &self.config, state)
    }

    /// The anti-rollback counter (0 when never raised; with a TPM, its NV counter).
    pub fn security_version(&mut self) -> Result<u64, Refusal> {
        self.platform.security_version(&self.config)
    }

    pub(crate) fn raise_security_version(&mut self, to: u64) -> Result<(), Refusal> {
        if self.security_version()? >= to {
            return Ok(());
        }
        self.platform
            .store_security_version(&self.disk, &self.config, to)
    }

    /// The kernel's id of this boot.
    pub fn boot_id(&self) -> Result<String, Refusal> {
        self.platform.boot_id(&self.config)
    }

    /// The booted slot (configuration override, else the kernel command line's
    /// `rampart.slot=` or `rauc.slot=`), the boot id, and the bootloader's primary slot.
    pub fn observe(&mut self) -> Result<Observed, Refusal> {
        self.observe_with(true)
    }

    /// [`Device::observe`]; the bootloader is asked for its primary slot only when `primary`
    /// (the flow needs it only after an activation), sparing a script run at every start.
    pub(crate) fn observe_with(&mut self, primary: bool) -> Result<Observed, Refusal> {
        let booted = self.platform.booted_slot(&self.config)?;
        let boot_id = self.boot_id()?;
        let primary = if primary {
            self.platform.bootloader().primary().map_err(boot_refusal)?
        } else {
            booted
        };
        Ok(Observed {
            booted,
            boot_id,
            primary,
        })
    }

    pub(crate) fn slot_states(&mut self, state: &AgentState) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for slot in Slot::BOTH {
            let health = match self.platform.bootloader().health(slot) {
                Ok(SlotHealth::Good) => "good",
                Ok(SlotHealth::Bad) => "bad",
                Err(_) => "unknown",
            };
            out.insert(
                slot.name().into(),
                serde_json::json!({
                    "bootloader": health,
                    "committed": state.committed == Some(slot),
                    "content": state.slots.get(&slot),
                }),
            );
        }
        serde_json::Value::Object(out)
    }

    /// Sends queued reports through `send` (which returns whether the server stored one),
    /// dropping those it stored.
    pub fn flush_reports(
        &mut self,
        state: &mut AgentState,
        send: &mut dyn FnMut(&PendingReport) -> bool,
    ) -> Result<(), Refusal> {
        let before = state.outbox.len();
        state.outbox.retain(|r| !send(r));
        if state.outbox.len() != before {
            self.save(state)?;
        }
        Ok(())
    }

    /// The bootloader's view of both slots and what the state says they hold.
    pub fn describe_slots(&mut self, state: &AgentState) -> serde_json::Value {
        self.slot_states(state)
    }

    /// Rebuilds the state from the running slot (`reset-state`): idle, the booted slot
    /// committed, contents unknown.
    pub fn reset_state(&mut self) -> Result<AgentState, Refusal> {
        let seen = self.observe()?;
        let state = AgentState {
            committed: Some(seen.booted),
            ..AgentState::default()
        };
        self.save(&state)?;
        Ok(state)
    }
}

/// Queues a report in the state's outbox, under a fresh id.
pub(crate) fn queue(
    state: &mut AgentState,
    status: ReportStatus,
    release: &Release,
    reason: Reason,
    details: serde_json::Value,
) {
    state.queue_report(
        crate::server_client::random_id(),
        status,
        release,
        reason,
        details,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booted_slot_comes_from_the_command_line() {
        assert_eq!(
            booted_slot_from_cmdline("root=/dev/sda2 rampart.slot=B quiet"),
            Some(Slot::B)
        );
        assert_eq!(booted_slot_from_cmdline("rauc.slot=A"), Some(Slot::A));
        assert_eq!(booted_slot_from_cmdline("root=/dev/sda2"), None);
        assert_eq!(booted_slot_from_cmdline("rampart.slot=C"), None);
    }
}
