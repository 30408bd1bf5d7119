//! What the agent's device logic ([`crate::device::Device`]) needs of the device it runs on:
//! the running system (booted slot, boot id), the state directory, the two slots and the
//! bootloader, with every persistent change written through the platform's write layer.
//!
//! [`Local`] is the real device: block devices or files as slots, the state directory on
//! disk, the configured bootloader backend, the kernel's command line and boot id, all
//! written through the [`Disk`]. The fleet simulator implements the same trait in memory
//! (slots that keep a length and a hash state, not bytes), so thousands of devices run the
//! agent's own install and boot flow in one process.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use rampart_attest::device::{TpmDevice, TpmError};
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, Reason, StateError};
use rampart_core::TufError;
use rampart_core::verify::StreamingCheck;

use crate::bootloader::{BootError, Bootloader};
use crate::config::Config;
use crate::disk::{Disk, DiskError};
use crate::source::{Refusal, Verified};

/// The state file, inside the state directory.
pub const STATE_FILE: &str = "agent-state.json";
/// The anti-rollback counter, inside the state directory.
pub const SECURITY_VERSION_FILE: &str = "security-version";
/// Chunks in flight between the slot writer and its hasher.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The device under the agent's flow (see the module documentation).
pub trait Platform: Send {
    /// The persistent-write layer: every write is a step a power cut may strike.
    type Disk: Send;
    /// A slot opened for streaming an image into it, with the check of what was written.
    type Writer: Send;

    /// The bootloader backend, writing through [`Platform::Disk`].
    fn bootloader(&mut self) -> &mut dyn Bootloader<Self::Disk>;

    /// The slot the running kernel came from.
    fn booted_slot(&self, config: &Config) -> Result<Slot, Refusal>;
    /// The kernel's id of this boot (a new one at every boot).
    fn boot_id(&self, config: &Config) -> Result<String, Refusal>;

    /// The stored state; a fresh one when there is none. A corrupt one is refused.
    fn load_state(&self, config: &Config) -> Result<AgentState, Refusal>;
    /// Replaces the stored state atomically.
    fn save_state(
        &mut self,
        disk: &Self::Disk,
        config: &Config,
        state: &AgentState,
    ) -> Result<(), Refusal>;
    /// The anti-rollback counter (0 when never raised). With a TPM it is the TPM's NV counter
    /// (or the state file's, if higher): wiping the state directory does not lower it.
    fn security_version(&mut self, config: &Config) -> Result<u64, Refusal>;
    /// Stores a new anti-rollback counter (with a TPM: raises the NV counter first).
    fn store_security_version(
        &mut self,
        disk: &Self::Disk,
        config: &Config,
        to: u64,
    ) -> Result<(), Refusal>;
    /// Removes what a power cut inside a write may have left in the state directory.
    fn sweep(&self, config: &Config);

    /// The device's TPM, when it has one.
    fn tpm(&mut self) -> Option<&mut dyn TpmDevice>;
    /// The stored measurement log (TCG crypto-agile event log) of boot `boot_id`; `None`
    /// when this boot is not measured yet.
    fn boot_log(&self, config: &Config, boot_id: &str) -> Result<Option<Vec<u8>>, Refusal>;
    /// Stores the measurement log of boot `boot_id`, replacing any earlier boot's.
    fn store_boot_log(
        &mut self,
        disk: &Self::Disk,
        config: &Config,
        boot_id: &str,
        log: &[u8],
    ) -> Result<(), Refusal>;

    /// How many bytes `slot` holds.
    fn slot_capacity(&self, config: &Config, slot: Slot) -> Result<u64, Refusal>;
    /// Names `slot`'s medium in messages.
    fn describe_slot(&self, config: &Config, slot: Slot) -> String;
    /// SHA-256 and length of everything `slot` holds, read now (forensic evidence: what is
    /// really in the slot, not what the state file says); `Err` says why it could not be read.
    fn hash_slot(&self, config: &Config, slot: Slot) -> Result<([u8; 32], u64), String>;
    /// SHA-256 of the first `length` bytes `slot` holds, read now (measured boot: the image
    /// as it is, not as the state file says); `Err` when they cannot be read.
    fn hash_slot_image(&self, config: &Config, slot: Slot, length: u64)
    -> Result<[u8; 32], String>;
    /// Whether `slot` holds exactly the release (its first `length` bytes match the signed
    /// hashes); any read error counts as no.
    fn slot_holds(&self, config: &Config, slot: Slot, v: &Verified, chunk: usize) -> bool;
    /// Whether an interrupted write of `v` into `slot` can go on from `offset` (a device
    /// re-reads what the slot holds; a medium that keeps only a hash state may not have it).
    fn can_resume(&mut self, slot: Slot, v: &Verified, offset: u64) -> bool;
    /// Opens `slot` for writing `v` from `resume_from` on (the bytes before it are in the slot
    /// and count towards the check).
    fn open_slot(
        &mut self,
        config: &Config,
        slot: Slot,
        v: &Verified,
        resume_from: u64,
        chunk: usize,
    ) -> Result<Self::Writer, Refusal>;
    /// The source sends the image from byte 0 after all: the check starts over.
    fn restart_slot(&mut self, writer: &mut Self::Writer, v: &Verified) -> Result<(), Refusal>;
    /// Writes `chunk` at `offset` (unsynced) and hands back a buffer for the next chunk.
    fn write_slot(
        &mut self,
        disk: &Self::Disk,
        writer: &mut Self::Writer,
        offset: u64,
        chunk: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal>;
    /// Makes what was written durable (a resume checkpoint).
    fn sync_slot(&mut self, disk: &Self::Disk, writer: &mut Self::Writer) -> Result<(), Refusal>;
    /// Syncs the slot and checks what it now holds against the signed length and hashes.
    fn finish_slot(
        &mut self,
        disk: &Self::Disk,
        writer: Self::Writer,
        v: &Verified,
    ) -> Result<(), Refusal>;
}

/// A bootloader failure as a refusal (a power cut stays a power cut).
pub fn boot_refusal(e: BootError) -> Refusal {
    let crashed = e.crashed();
    let mut r = if e.is_corrupt_env() {
        Refusal::new(Reason::BootEnvCorrupt, e)
    } else {
        Refusal::new(Reason::BootloaderFailed, e)
    };
    r.crashed = crashed;
    r
}

/// A TPM failure as a refusal, saying what to check.
pub fn tpm_refusal(e: TpmError) -> Refusal {
    Refusal::new(
        Reason::TpmFailed,
        format!(
            "{e}; check that the TPM is reachable through the configured tpm.tcti and not held by another program"
        ),
    )
}

/// A failed persistent write as a refusal (a power cut stays a power cut).
pub fn disk_refusal(e: DiskError) -> Refusal {
    let crashed = matches!(e, DiskError::Crashed { .. });
    let mut r = Refusal::new(Reason::SlotIo, e);
    r.crashed = crashed;
    r
}

/// The refusal of an image whose final check failed: a short one is truncated (retried), any
/// other mismatch is refused and the slot is never booted.
pub fn check_refusal(e: TufError, slot: Slot) -> Refusal {
    match e {
        TufError::LengthMismatch { .. } => Refusal::new(Reason::Truncated, e),
        other => Refusal::new(
            Reason::HashMismatch,
            format!("{other}; slot {slot} stays marked bad and is never booted"),
        ),
    }
}

/// A new check of `v` (length and every signed hash).
pub fn new_check(v: &Verified) -> Result<StreamingCheck, Refusal> {
    StreamingCheck::new(&v.release.target, v.release.length, &v.info.hashes)
        .map_err(|e| Refusal::new(Reason::MetadataInvalid, e))
}

/// The measurement log of the running boot, inside the state directory.
pub const BOOT_LOG_FILE: &str = "boot-measurements";
/// The largest measurement log read (a boot has two events).
const MAX_BOOT_LOG_BYTES: u64 = 64 * 1024;

/// The real device: slots, state directory, kernel files and bootloader as configured, and
/// the TPM when it has one.
pub struct Local {
    bootloader: Box<dyn Bootloader>,
    tpm: Option<Box<dyn TpmDevice>>,
}

impl Local {
    pub fn new(bootloader: Box<dyn Bootloader>) -> Local {
        Local {
            bootloader,
            tpm: None,
        }
    }

    /// A device whose TPM is `tpm` (measured boot, attestation, the anti-rollback floor).
    pub fn with_tpm(bootloader: Box<dyn Bootloader>, tpm: Box<dyn TpmDevice>) -> Local {
        Local {
            bootloader,
            tpm: Some(tpm),
        }
    }

    fn state_path(config: &Config) -> PathBuf {
        config.state_dir.join(STATE_FILE)
    }
}

/// A slot file or block device being written: the hasher runs on its own thread beside the
/// writer, so with two cores hashing and writing overlap.
pub struct SlotFile {
    file: File,
    path: PathBuf,
    slot: Slot,
    /// The check, until the hasher takes it at the first write.
    check: Option<StreamingCheck>,
    hasher: Option<Hasher>,
    chunk: usize,
}

struct Hasher {
    to_hash: SyncSender<Vec<u8>>,
    hashed: Receiver<Vec<u8>>,
    thread: JoinHandle<Result<StreamingCheck, TufError>>,
}

impl Hasher {
    fn spawn(mut check: StreamingCheck, chunk: usize) -> Hasher {
        let (to_hash, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (back, hashed) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
        for _ in 0..CHUNKS_IN_FLIGHT {
            let _ = back.send(vec![0u8; chunk]);
        }
        let thread = std::thread::spawn(move || {
            let mut failed = None;
            for chunk in rx {
                if failed.is_none()
                    && let Err(e) = check.update(&chunk)
                {
                    failed = Some(e);
                }
                let _ = back.send(chunk);
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(check),
            }
        });
        Hasher {
            to_hash,
            hashed,
            thread,
        }
    }

    /// Stops the hasher and returns its check; a failed update (data beyond the signed
    /// length) is refused as too long.
    fn join(self) -> Result<StreamingCheck, Refusal> {
        drop(self.to_hash);
        self.thread
            .join()
            .map_err(|_| Refusal::new(Reason::SlotIo, "the hashing thread panicked"))?
            .map_err(|e| Refusal::new(Reason::TooLong, e))
    }
}

fn slot_io(slot: Slot, path: &Path) -> impl Fn(std::io::Error) -> Refusal + '_ {
    move |e| {
        Refusal::new(
            Reason::SlotIo,
            format!("slot {slot} ({}): {e}", path.display()),
        )
    }
}

impl Platform for Local {
    type Disk = Disk;
    type Writer = SlotFile;

    fn bootloader(&mut self) -> &mut dyn Bootloader<Disk> {
        &mut *self.bootloader
    }

    /// The configuration's override, else the kernel command line's `rampart.slot=` (or
    /// `rauc.slot=`).
    fn booted_slot(&self, config: &Config) -> Result<Slot, Refusal> {
        match &config.boot.booted_slot {
            Some(s) => Slot::parse(s),
            None => {
                let path = &config.boot.cmdline;
                let cmdline = std::fs::read_to_string(path).map_err(|e| {
                    Refusal::new(
                        Reason::BootloaderFailed,
                        format!("reading the kernel command line {}: {e}", path.display()),
                    )
                })?;
                booted_slot_from_cmdline(&cmdline)
            }
        }
        .ok_or_else(|| {
            Refusal::new(
                Reason::BootloaderFailed,
                format!(
                    "cannot tell which slot is running: {} has no rampart.slot=A|B (or rauc.slot=); have the bootloader pass it, or set boot.booted_slot",
                    config.boot.cmdline.display()
                ),
            )
        })
    }

    fn boot_id(&self, config: &Config) -> Result<String, Refusal> {
        std::fs::read_to_string(&config.boot.boot_id)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                Refusal::new(
                    Reason::BootloaderFailed,
                    format!("reading the boot id {}: {e}", config.boot.boot_id.display()),
                )
            })
    }

    fn load_state(&self, config: &Config) -> Result<AgentState, Refusal> {
        let path = Local::state_path(config);
        match std::fs::read(&path) {
            Ok(bytes) => AgentState::parse(&bytes).map_err(|e: StateError| {
                Refusal::new(Reason::StateCorrupt, format!("{}: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AgentState::default()),
            Err(e) => Err(Refusal::new(
                Reason::StateCorrupt,
                format!("reading {}: {e}", path.display()),
            )),
        }
    }

    fn save_state(
        &mut self,
        disk: &Disk,
        config: &Config,
        state: &AgentState,
    ) -> Result<(), Refusal> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| disk_refusal(DiskError::io(&config.state_dir, e)))?;
        disk.replace_file(&Local::state_path(config), &state.to_bytes())
            .map_err(disk_refusal)
    }

    fn security_version(&mut self, config: &Config) -> Result<u64, Refusal> {
        let file = crate::director::installed_security_version(&config.state_dir)
            .map_err(|e| Refusal::new(Reason::StateCorrupt, e))?;
        match &mut self.tpm {
            Some(tpm) => Ok(file.max(tpm.security_floor().map_err(tpm_refusal)?)),
            None => Ok(file),
        }
    }

    fn store_security_version(
        &mut self,
        disk: &Disk,
        config: &Config,
        to: u64,
    ) -> Result<(), Refusal> {
        // The TPM first: a power cut before the file is written leaves the higher floor in
        // the TPM, which wins.
        if let Some(tpm) = &mut self.tpm {
            tpm.raise_security_floor(to).map_err(tpm_refusal)?;
        }
        disk.replace_file(
            &config.state_dir.join(SECURITY_VERSION_FILE),
            format!("{to}\n").as_bytes(),
        )
        .map_err(disk_refusal)
    }

    /// The state file and counters, and the trusted metadata of the image repository and the
    /// director (written through the [`Disk`] too).
    fn sweep(&self, config: &Config) {
        Disk::sweep(&config.state_dir);
        Disk::sweep(&config.state_dir.join("metadata"));
        Disk::sweep(&config.state_dir.join(crate::director::DIRECTOR_DIR));
    }

    fn tpm(&mut self) -> Option<&mut dyn TpmDevice> {
        self.tpm.as_deref_mut().map(|t| t as &mut dyn TpmDevice)
    }

    /// The file holds the boot id on its first line, then the log.
    fn boot_log(&self, config: &Config, boot_id: &str) -> Result<Option<Vec<u8>>, Refusal> {
        let path = config.state_dir.join(BOOT_LOG_FILE);
        let bytes = match read_bounded(&path, MAX_BOOT_LOG_BYTES) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Refusal::new(
                    Reason::StateCorrupt,
                    format!("reading {}: {e}", path.display()),
                ));
            }
        };
        Ok(split_boot_log(&bytes)
            .filter(|(id, _)| *id == boot_id)
            .map(|(_, log)| log.to_vec()))
    }

    fn store_boot_log(
        &mut self,
        disk: &Disk,
        config: &Config,
        boot_id: &str,
        log: &[u8],
    ) -> Result<(), Refusal> {
        let mut bytes = format!("{boot_id}\n").into_bytes();
        bytes.extend_from_slice(log);
        disk.replace_file(&config.state_dir.join(BOOT_LOG_FILE), &bytes)
            .map_err(disk_refusal)
    }

    /// A block device's or file's size.
    fn slot_capacity(&self, config: &Config, slot: Slot) -> Result<u64, Refusal> {
        slot_capacity(config.slots.path(slot))
    }

    fn describe_slot(&self, config: &Config, slot: Slot) -> String {
        config.slots.path(slot).display().to_string()
    }

    fn hash_slot_image(
        &self,
        config: &Config,
        slot: Slot,
        length: u64,
    ) -> Result<[u8; 32], String> {
        use std::io::Read as _;
        let path = config.slots.path(slot);
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut reader = file.take(length);
        let mut buf = vec![0u8; 1 << 20];
        let mut read = 0u64;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            digest.update(&buf[..n]);
            read += n as u64;
        }
        if read != length {
            return Err(format!(
                "{} holds {read} bytes, fewer than the image's {length}",
                path.display()
            ));
        }
        Ok(digest
            .finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes"))
    }

    fn hash_slot(&self, config: &Config, slot: Slot) -> Result<([u8; 32], u64), String> {
        use std::io::Read as _;
        let path = config.slots.path(slot);
        let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut length = 0u64;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("{}: {e}", path.display())),
            };
            digest.update(&buf[..n]);
            length += n as u64;
        }
        let hash = digest.finish();
        Ok((
            hash.as_ref().try_into().expect("SHA-256 is 32 bytes"),
            length,
        ))
    }

    fn slot_holds(&self, config: &Config, slot: Slot, v: &Verified, chunk: usize) -> bool {
        let Ok(mut check) = new_check(v) else {
            return false;
        };
        let Ok(file) = File::open(config.slots.path(slot)) else {
            return false;
        };
        let mut buf = vec![0u8; chunk];
        let mut at = 0u64;
        while at < v.release.length {
            let n = (v.release.length - at).min(buf.len() as u64) as usize;
            if file.read_exact_at(&mut buf[..n], at).is_err() || check.update(&buf[..n]).is_err() {
                return false;
            }
            at += n as u64;
        }
        check.finish().is_ok()
    }

    /// Always: the bytes before the resume point are re-read from the slot and hashed.
    fn can_resume(&mut self, _: Slot, _: &Verified, _: u64) -> bool {
        true
    }

    fn open_slot(
        &mut self,
        config: &Config,
        slot: Slot,
        v: &Verified,
        resume_from: u64,
        chunk: usize,
    ) -> Result<SlotFile, Refusal> {
        let path = config.slots.path(slot).to_path_buf();
        let mut check = new_check(v)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(slot_io(slot, &path))?;
        // Resuming: hash what the slot already holds (it was fsynced at the checkpoint).
        let mut buf = vec![0u8; chunk];
        let mut at = 0u64;
        while at < resume_from {
            let n = (resume_from - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at)
                .map_err(slot_io(slot, &path))?;
            check
                .update(&buf[..n])
                .map_err(|e| Refusal::new(Reason::HashMismatch, e))?;
            at += n as u64;
        }
        Ok(SlotFile {
            file,
            path,
            slot,
            check: Some(check),
            hasher: None,
            chunk,
        })
    }

    fn restart_slot(&mut self, writer: &mut SlotFile, v: &Verified) -> Result<(), Refusal> {
        writer.check = Some(new_check(v)?);
        Ok(())
    }

    fn write_slot(
        &mut self,
        disk: &Disk,
        w: &mut SlotFile,
        offset: u64,
        chunk: Vec<u8>,
    ) -> Result<Vec<u8>, Refusal> {
        disk.write_at(&w.file, &w.path, offset, &chunk, false)
            .map_err(disk_refusal)?;
        if w.hasher.is_none()
            && let Some(check) = w.check.take()
        {
            w.hasher = Some(Hasher::spawn(check, w.chunk));
        }
        let Some(hasher) = w.hasher.as_mut() else {
            return Err(Refusal::new(Reason::SlotIo, "the slot's hasher is gone"));
        };
        if hasher.to_hash.send(chunk).is_err() {
            // The hasher stopped: the data was refused.
            return match w.hasher.take().map(Hasher::join) {
                Some(Err(refusal)) => Err(refusal),
                _ => Err(Refusal::new(Reason::SlotIo, "the hashing thread stopped")),
            };
        }
        Ok(hasher.hashed.recv().unwrap_or_else(|_| vec![0u8; w.chunk]))
    }

    fn sync_slot(&mut self, disk: &Disk, w: &mut SlotFile) -> Result<(), Refusal> {
        disk.sync(&w.file, &w.path).map_err(disk_refusal)
    }

    fn finish_slot(&mut self, disk: &Disk, mut w: SlotFile, _: &Verified) -> Result<(), Refusal> {
        let check = match w.hasher.take() {
            Some(hasher) => hasher.join()?,
            None => w
                .check
                .take()
                .ok_or_else(|| Refusal::new(Reason::SlotIo, "the slot's check is gone"))?,
        };
        disk.sync(&w.file, &w.path).map_err(disk_refusal)?;
        check.finish().map_err(|e| check_refusal(e, w.slot))
    }
}

/// Reads at most `limit` bytes of `path` (a longer file is an error).
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(file, limit + 1), &mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!(
            "larger than {limit} bytes; it is not the agent's"
        )));
    }
    Ok(bytes)
}

/// The boot id line and the log of a stored measurement log.
fn split_boot_log(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let end = bytes.iter().position(|b| *b == b'\n')?;
    let id = std::str::from_utf8(&bytes[..end]).ok()?;
    Some((id, &bytes[end + 1..]))
}

/// The slot named by `rampart.slot=` (or RAUC's `rauc.slot=`) on a kernel command line.
pub fn booted_slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    cmdline.split_whitespace().find_map(|arg| {
        arg.strip_prefix("rampart.slot=")
            .or_else(|| arg.strip_prefix("rauc.slot="))
            .and_then(Slot::parse)
    })
}

/// Capacity of a slot (a block device's or file's size).
pub fn slot_capacity(path: &Path) -> Result<u64, Refusal> {
    let mut f = File::open(path).map_err(|e| {
        Refusal::new(
            Reason::SlotIo,
            format!("opening slot {}: {e}", path.display()),
        )
    })?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0))
        .map_err(|e| Refusal::new(Reason::SlotIo, format!("slot {}: {e}", path.display())))
}
