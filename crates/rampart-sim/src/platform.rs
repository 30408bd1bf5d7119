//! The platform a virtual device runs the agent's own `Device` on: two in-memory slots, the
//! in-memory bootloader environment, the state file kept as the agent's state, and the boot
//! the simulator powered on. Everything here survives a power cut except what was not synced
//! to a slot; every change is a write step of the device's [`MemDisk`].

use rampart_agent::bootloader::Bootloader as AgentBootloader;
use rampart_agent::config::Config;
use rampart_agent::platform::{Platform, check_refusal, disk_refusal, new_check, tpm_refusal};
use rampart_agent::source::{Refusal, Verified};
use rampart_attest::device::TpmDevice;
use rampart_attest::soft::SoftTpm;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, Reason};
use rampart_core::TufError;
use rampart_core::verify::StreamingCheck;

use crate::hw::{Bootloader, MemSlot};
use crate::power::{MemDisk, Write};

/// The persistent hardware of a virtual device, and the boot it runs.
pub(crate) struct SimPlatform {
    pub(crate) boot: Bootloader,
    pub(crate) slots: [MemSlot; 2],
    /// The state file, as the agent last saved it.
    pub(crate) persisted: AgentState,
    /// Mirrors `<state>/security-version` (which `verify_assigned` reads).
    pub(crate) security_version: u64,
    pub(crate) capacity: u64,
    /// The running boot: the slot the bootloader picked, and its boot id.
    pub(crate) booted: Slot,
    pub(crate) boot_id: String,
    /// The device's TPM, for fleets that attest.
    pub(crate) tpm: Option<SoftTpm>,
    /// The measurement log of a boot (boot id, log), as the agent stored it.
    pub(crate) boot_log: Option<(String, Vec<u8>)>,
}

pub(crate) fn slot_index(slot: Slot) -> usize {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

/// How a slot write is checked.
enum Check {
    /// Streamed from byte 0: the agent's own length and hash check.
    Agent(StreamingCheck),
    /// Resumed: the slot's hash state stands in for re-hashing its bytes (SHA-256 only).
    Slot,
}

/// A slot being written.
pub(crate) struct MemWriter {
    slot: Slot,
    check: Check,
}

impl SimPlatform {
    pub(crate) fn medium(&self, slot: Slot) -> &MemSlot {
        &self.slots[slot_index(slot)]
    }

    /// A power cut: unsynced slot writes are lost.
    pub(crate) fn power_loss(&mut self) {
        for slot in &mut self.slots {
            slot.power_loss();
        }
    }
}

impl Platform for SimPlatform {
    type Disk = MemDisk;
    type Writer = MemWriter;

    fn bootloader(&mut self) -> &mut dyn AgentBootloader<MemDisk> {
        &mut self.boot
    }

    fn booted_slot(&self, _: &Config) -> Result<Slot, Refusal> {
        Ok(self.booted)
    }

    fn boot_id(&self, _: &Config) -> Result<String, Refusal> {
        Ok(self.boot_id.clone())
    }

    fn load_state(&self, _: &Config) -> Result<AgentState, Refusal> {
        Ok(self.persisted.clone())
    }

    fn save_state(
        &mut self,
        disk: &MemDisk,
        _: &Config,
        state: &AgentState,
    ) -> Result<(), Refusal> {
        disk.step(Write::State(&state.phase), || {
            self.persisted = state.clone();
        })
        .map_err(disk_refusal)
    }

    fn security_version(&mut self, _: &Config) -> Result<u64, Refusal> {
        match &mut self.tpm {
            Some(tpm) => Ok(self
                .security_version
                .max(tpm.security_floor().map_err(tpm_refusal)?)),
            None => Ok(self.security_version),
        }
    }

    fn store_security_version(
        &mut self,
        disk: &MemDisk,
        config: &Config,
        to: u64,
    ) -> Result<(), Refusal> {
        // `verify_assigned` reads the anti-rollback counter from the state directory.
        let path = config
            .state_dir
            .join(rampart_agent::device::SECURITY_VERSION_FILE);
        if let Some(tpm) = &mut self.tpm {
            disk.alive("raise the TPM counter").map_err(disk_refusal)?;
            tpm.raise_security_floor(to).map_err(tpm_refusal)?;
        }
        disk.step(Write::SecurityVersion, || {
            self.security_version = to;
            std::fs::write(&path, format!("{to}\n"))
        })
        .map_err(disk_refusal)?
        .map_err(|e| Refusal::new(Reason::StateCorrupt, format!("{}: {e}", path.display())))
    }

    fn sweep(&self, _: &Config) {}

    fn tpm(&mut self) -> Option<&mut dyn TpmDevice> {
        self.tpm.as_mut().map(|t| t as &mut dyn TpmDevice)
    }

    fn boot_log(&self, _: &Config, boot_id: &str) -> Result<Option<Vec<u8>>, Refusal> {
        Ok(self
            .boot_log
            .as_ref()
            .filter(|(id, _)| id == boot_id)
            .map(|(_, log)| log.clone()))
    }

    fn store_boot_log(
        &mut self,
        disk: &MemDisk,
        _: &Config,
        boot_id: &str,
        log: &[u8],
    ) -> Result<(), Refusal> {
        disk.step(Write::BootLog, || {
            self.boot_log = Some((boot_id.to_owned(), log.to_vec()));
        })
        .map_err(disk_refusal)
    }

    fn slot_capacity(&self, _: &Config, _: Slot) -> Result<u64, Refusal> {
        Ok(self.capacity)
    }

    fn describe_slot(&self, _: &Config, _: Slot) -> String {
        "in memory".into()
    }

    fn hash_slot(&self, _: &Config, slot: Slot) -> Result<([u8; 32], u64), String> {
        let medium = self.medium(slot);
        let digest = medium
            .sha256()
            .ok_or("the slot holds no whole image (torn or partly overwritten)")?;
        let digest = hex::decode(&digest)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| format!("the slot's SHA-256 {digest:?} is not 32 bytes"))?;
        Ok((digest, medium.len()))
    }

    fn hash_slot_image(
        &self,
        config: &Config,
        slot: Slot,
        length: u64,
    ) -> Result<[u8; 32], String> {
        // The medium keeps the hash of what was written as a whole: the image is all of it.
        match self.hash_slot(config, slot)? {
            (digest, len) if len == length => Ok(digest),
            (_, len) => Err(format!(
                "the slot holds {len} bytes, not the image's {length}"
            )),
        }
    }

    fn slot_holds(&self, _: &Config, slot: Slot, v: &Verified, _: usize) -> bool {
        let medium = self.medium(slot);
        medium.len() == v.release.length && medium.sha256().as_deref() == v.release.sha256()
    }

    /// Resuming needs the slot's hash state at the resume point, which covers SHA-256 only.
    fn can_resume(&mut self, slot: Slot, v: &Verified, offset: u64) -> bool {
        v.info.hashes.keys().all(|a| a == "sha256") && self.slots[slot_index(slot)].rewind(offset)
    }

    fn open_slot(
        &mut self,
        _: &Config,
        slot: Slot,
        v: &Verified,
        resume_from: u64,
        _: usize,
    ) -> Result<MemWriter, Refusal> {
        let check = if resume_from == 0 {
            Check::Agent(new_check(v)?)
        } else {
            Check::Slot
        };
        Ok(MemWriter { slot, check })
    }

    fn restart_slot(&mut self, writer: &mut MemWriter, v: &Verified) -> Result<(), Refusal> {
        writer.check = Check::Agent(new_check(v)?);
        Ok(())
    }

    fn write_slot(
        &mut self,
        disk: &MemDisk,
        w: &mut MemWriter,
        offset: u64,
        chunk: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        let slot = w.slot;
        let medium = &mut self.slots[slot_index(slot)];
        let written = offset + chunk.len() as u64;
        disk.step(Write::Image { written }, || medium.write(offset, &chunk))
            .map_err(disk_refusal)?
            .map_err(|e| Refusal::new(Reason::SlotIo, format!("slot {slot}: {e}")))?;
        if let Check::Agent(check) = &mut w.check {
            check
                .update(&chunk)
                .map_err(|e| Refusal::new(Reason::TooLong, e))?;
        }
        Ok(chunk)
    }

    fn sync_slot(&mut self, disk: &MemDisk, w: &mut MemWriter) -> Result<(), Refusal> {
        disk.alive("sync").map_err(disk_refusal)?;
        self.slots[slot_index(w.slot)].checkpoint();
        Ok(())
    }

    fn finish_slot(&mut self, disk: &MemDisk, w: MemWriter, v: &Verified) -> Result<(), Refusal> {
        disk.alive("sync").map_err(disk_refusal)?;
        let medium = &mut self.slots[slot_index(w.slot)];
        medium.sync();
        let what = v.release.target.as_str();
        let length = v.release.length;
        let verdict = match w.check {
            Check::Agent(check) => check.finish(),
            Check::Slot if medium.len() != length => Err(TufError::LengthMismatch {
                what: what.to_owned(),
                expected: length,
                found: medium.len(),
            }),
            Check::Slot if medium.sha256().as_deref() != v.release.sha256() => {
                Err(TufError::HashMismatch {
                    what: what.to_owned(),
                    algorithm: "sha256".into(),
                })
            }
            Check::Slot => Ok(()),
        };
        verdict.map_err(|e| check_refusal(e, w.slot))
    }
}
