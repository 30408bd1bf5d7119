//! The device I/O shell around [`rampart_boot::flow`]: it observes the boot, runs the decided
//! action against the slots and the bootloader, streams verified releases into the inactive
//! slot, and keeps the state file. Every persistent write goes through [`Disk`].

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::{Duration, Instant};

use rampart_boot::ab::{Slot, SlotHealth};
use rampart_boot::flow::{
    AgentState, LastResult, Observed, PendingReport, Phase, Reason, Release, SlotContent,
    StartupAction, StateError, on_start,
};
use rampart_core::verify::StreamingCheck;

use crate::bootloader::{BootError, Bootloader};
use crate::config::Config;
use crate::disk::{Disk, DiskError};
use crate::source::{Fetch, Refusal, Verified};

/// The state file, inside the state directory.
pub const STATE_FILE: &str = "agent-state.json";
/// The anti-rollback counter, inside the state directory.
pub const SECURITY_VERSION_FILE: &str = "security-version";
/// Bytes read and written at a time while streaming into a slot.
pub const DEFAULT_CHUNK: usize = 1 << 20;
/// Chunks in flight between the writer and the hasher.
const CHUNKS_IN_FLIGHT: usize = 4;

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

/// Where [`Device::write_inactive`] left the release.
enum Written {
    AlreadyRunning,
    InSlot {
        slot: Slot,
        resumed_from: u64,
        from_staged: bool,
    },
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

/// A device: its configuration, slots, bootloader and persistent-write layer.
pub struct Device {
    pub config: Config,
    pub disk: Disk,
    bootloader: Box<dyn Bootloader>,
    /// Chunk size of slot writes (tests use small ones to get many write steps).
    pub chunk: usize,
}

fn boot_refusal(e: BootError) -> Refusal {
    let crashed = e.crashed();
    let mut r = if e.is_corrupt_env() {
        Refusal::new(Reason::BootEnvCorrupt, e)
    } else {
        Refusal::new(Reason::BootloaderFailed, e)
    };
    r.crashed = crashed;
    r
}

fn disk_refusal(e: DiskError) -> Refusal {
    let crashed = matches!(e, DiskError::Crashed { .. });
    let mut r = Refusal::new(Reason::SlotIo, e);
    r.crashed = crashed;
    r
}

impl Device {
    /// A device with the configured bootloader backend.
    pub fn open(config: Config, disk: Disk) -> Result<Device, Refusal> {
        let bootloader =
            crate::bootloader::from_config(&config.bootloader).map_err(boot_refusal)?;
        Ok(Device::with_bootloader(config, disk, bootloader))
    }

    pub fn with_bootloader(config: Config, disk: Disk, bootloader: Box<dyn Bootloader>) -> Device {
        Device {
            config,
            disk,
            bootloader,
            chunk: DEFAULT_CHUNK,
        }
    }

    pub fn state_path(&self) -> PathBuf {
        self.config.state_dir.join(STATE_FILE)
    }

    /// The stored state; a fresh one when there is none. A corrupt file is refused.
    pub fn load_state(&self) -> Result<AgentState, Refusal> {
        let path = self.state_path();
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

    fn save(&self, state: &AgentState) -> Result<(), Refusal> {
        std::fs::create_dir_all(&self.config.state_dir)
            .map_err(|e| disk_refusal(DiskError::io(&self.config.state_dir, e)))?;
        self.disk
            .replace_file(&self.state_path(), &state.to_bytes())
            .map_err(disk_refusal)
    }

    /// The anti-rollback counter (0 when never raised).
    pub fn security_version(&self) -> Result<u64, Refusal> {
        crate::director::installed_security_version(&self.config.state_dir)
            .map_err(|e| Refusal::new(Reason::StateCorrupt, e))
    }

    fn raise_security_version(&self, to: u64) -> Result<(), Refusal> {
        if self.security_version()? >= to {
            return Ok(());
        }
        self.disk
            .replace_file(
                &self.config.state_dir.join(SECURITY_VERSION_FILE),
                format!("{to}\n").as_bytes(),
            )
            .map_err(disk_refusal)
    }

    /// The kernel's id of this boot.
    pub fn boot_id(&self) -> Result<String, Refusal> {
        std::fs::read_to_string(&self.config.boot.boot_id)
            .map(|s| s.trim().to_owned())
            .map_err(|e| {
                Refusal::new(
                    Reason::BootloaderFailed,
                    format!(
                        "reading the boot id {}: {e}",
                        self.config.boot.boot_id.display()
                    ),
                )
            })
    }

    /// The booted slot (configuration override, else the kernel command line's
    /// `rampart.slot=` or `rauc.slot=`), the boot id, and the bootloader's primary slot.
    pub fn observe(&mut self) -> Result<Observed, Refusal> {
        self.observe_with(true)
    }

    /// [`Device::observe`]; the bootloader is asked for its primary slot only when `primary`
    /// (the flow needs it only after an activation), sparing a script run at every start.
    fn observe_with(&mut self, primary: bool) -> Result<Observed, Refusal> {
        let booted = match &self.config.boot.booted_slot {
            Some(s) => Slot::parse(s),
            None => {
                let path = &self.config.boot.cmdline;
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
                    self.config.boot.cmdline.display()
                ),
            )
        })?;
        let boot_id = self.boot_id()?;
        let primary = if primary {
            self.bootloader.primary().map_err(boot_refusal)?
        } else {
            booted
        };
        Ok(Observed {
            booted,
            boot_id,
            primary,
        })
    }

    fn queue(
        state: &mut AgentState,
        status: &str,
        release: &Release,
        reason: Reason,
        details: serde_json::Value,
    ) {
        state.queue_report(
            crate::director::random_id(),
            status,
            release,
            reason,
            details,
        );
    }

    fn slot_states(&mut self, state: &AgentState) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for slot in Slot::BOTH {
            let health = match self.bootloader.health(slot) {
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

    /// Runs the start-of-boot flow (see [`rampart_boot::flow::on_start`]).
    pub fn start(
        &mut self,
        state: &mut AgentState,
        health: &dyn HealthCheck,
    ) -> Result<Started, Refusal> {
        let seen = self.observe_with(matches!(state.phase, Phase::Activated { .. }))?;
        Disk::sweep(&self.config.state_dir);
        let ready = Started::Ready {
            committed: None,
            rolled_back: None,
        };
        match on_start(state, &seen) {
            StartupAction::Idle { confirm } => {
                self.bootloader
                    .confirm(&self.disk, confirm)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::Adopt { slot } => {
                state.committed = Some(slot);
                self.save(state)?;
                self.bootloader
                    .confirm(&self.disk, slot)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::UnexpectedSlot { booted, committed } => {
                let detail = format!(
                    "the bootloader booted slot {booted}, not the committed slot {committed}; {booted} is now the committed slot"
                );
                self.adopt_unexpected(state, booted, committed, &detail)?;
                Ok(ready)
            }
            StartupAction::AbandonInstall { slot } => {
                let detail = format!(
                    "the bootloader booted slot {slot} while an update was being written to it; the update was abandoned"
                );
                let release = state.release().cloned();
                state.phase = Phase::Idle;
                if let Some(r) = &release {
                    state.last_result = Some(LastResult {
                        target: r.target.clone(),
                        version: r.version.clone(),
                        reason: Reason::UnexpectedSlot,
                        detail: detail.clone(),
                    });
                    Self::queue(
                        state,
                        "failed",
                        r,
                        Reason::UnexpectedSlot,
                        serde_json::json!({"detail": detail}),
                    );
                }
                let committed = state.committed.unwrap_or(slot.other());
                self.adopt_unexpected(state, slot, committed, &detail)?;
                Ok(ready)
            }
            StartupAction::ResumeInstall { .. } => {
                // Resumed by the next install of the same release (the source is re-verified
                // first); meanwhile the committed slot runs as before.
                let committed = state.committed.unwrap_or(seen.booted);
                self.bootloader
                    .confirm(&self.disk, committed)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::Activate { slot } => {
                if let Phase::Activated {
                    boot_id,
                    activations,
                    ..
                } = &mut state.phase
                    && *boot_id != seen.boot_id
                {
                    *activations += 1;
                    *boot_id = seen.boot_id.clone();
                    self.save(state)?;
                }
                self.bootloader
                    .set_primary(&self.disk, slot)
                    .map_err(boot_refusal)?;
                Ok(Started::Reboot)
            }
            StartupAction::CheckHealth { slot } => {
                let Phase::Activated { release, .. } = state.phase.clone() else {
                    unreachable!("on_start only checks health in the Activated phase")
                };
                let deadline = Duration::from_secs(self.config.health.deadline_secs);
                match health.check(deadline) {
                    Ok(()) => {
                        self.bootloader
                            .set_health(&self.disk, slot, SlotHealth::Good)
                            .map_err(boot_refusal)?;
                        self.raise_security_version(release.security_version)?;
                        state.phase = Phase::Idle;
                        state.committed = Some(slot);
                        state.slots.insert(slot, SlotContent::from(&release));
                        state.last_result = Some(LastResult {
                            target: release.target.clone(),
                            version: release.version.clone(),
                            reason: Reason::Ok,
                            detail: format!("committed in slot {slot}"),
                        });
                        let slots = self.slot_states(state);
                        Self::queue(
                            state,
                            "installed",
                            &release,
                            Reason::Ok,
                            serde_json::json!({"slot": slot.name(), "slots": slots}),
                        );
                        self.save(state)?;
                        Ok(Started::Ready {
                            committed: Some(Box::new(release)),
                            rolled_back: None,
                        })
                    }
                    Err(why) => {
                        state.phase = Phase::RollingBack {
                            slot,
                            release,
                            reason: Reason::HealthCheckFailed,
                            detail: why,
                        };
                        self.save(state)?;
                        self.roll_back(slot)?;
                        Ok(Started::Reboot)
                    }
                }
            }
            StartupAction::Fallback { slot } => {
                let Phase::Activated { release, .. } = state.phase.clone() else {
                    unreachable!("on_start only detects fallbacks in the Activated phase")
                };
                self.roll_back(slot)?;
                let detail = format!(
                    "the bootloader gave up on slot {slot} after its boot attempts and booted slot {}",
                    seen.booted
                );
                self.finish_rollback(
                    state,
                    slot,
                    seen.booted,
                    &release,
                    Reason::BootloaderFallback,
                    &detail,
                )?;
                Ok(Started::Ready {
                    committed: None,
                    rolled_back: Some(Box::new((release, Reason::BootloaderFallback))),
                })
            }
            StartupAction::RedoRollback { slot } => {
                self.roll_back(slot)?;
                Ok(Started::Reboot)
            }
            StartupAction::FinishRollback { slot } => {
                let Phase::RollingBack {
                    release,
                    reason,
                    detail,
                    ..
                } = state.phase.clone()
                else {
                    unreachable!("on_start only finishes rollbacks in the RollingBack phase")
                };
                self.finish_rollback(state, slot, seen.booted, &release, reason, &detail)?;
                self.bootloader
                    .confirm(&self.disk, seen.booted)
                    .map_err(boot_refusal)?;
                Ok(Started::Ready {
                    committed: None,
                    rolled_back: Some(Box::new((release, reason))),
                })
            }
        }
    }

    fn adopt_unexpected(
        &mut self,
        state: &mut AgentState,
        booted: Slot,
        committed: Slot,
        detail: &str,
    ) -> Result<(), Refusal> {
        state.committed = Some(booted);
        let content = state.slots.get(&booted).cloned();
        let release = Release {
            target: content
                .as_ref()
                .map(|c| c.target.clone())
                .unwrap_or_default(),
            version: content
                .as_ref()
                .map(|c| c.version.clone())
                .unwrap_or_default(),
            security_version: content.as_ref().map_or(0, |c| c.security_version),
            length: 0,
            hashes: Default::default(),
            assignment: None,
        };
        Self::queue(
            state,
            "failed",
            &release,
            Reason::UnexpectedSlot,
            serde_json::json!({"detail": detail, "previous_slot": committed.name()}),
        );
        self.save(state)?;
        self.bootloader
            .confirm(&self.disk, booted)
            .map_err(boot_refusal)
    }

    /// Marks `bad` bad and makes the other slot primary (idempotent).
    fn roll_back(&mut self, bad: Slot) -> Result<(), Refusal> {
        self.bootloader
            .set_health(&self.disk, bad, SlotHealth::Bad)
            .map_err(boot_refusal)?;
        self.bootloader
            .set_primary(&self.disk, bad.other())
            .map_err(boot_refusal)
    }

    fn finish_rollback(
        &mut self,
        state: &mut AgentState,
        bad: Slot,
        running: Slot,
        release: &Release,
        reason: Reason,
        detail: &str,
    ) -> Result<(), Refusal> {
        state.phase = Phase::Idle;
        state.committed = Some(running);
        state.slots.remove(&bad);
        state.last_result = Some(LastResult {
            target: release.target.clone(),
            version: release.version.clone(),
            reason,
            detail: detail.to_owned(),
        });
        let slots = self.slot_states(state);
        Self::queue(
            state,
            "rolled_back",
            release,
            reason,
            serde_json::json!({"detail": detail, "bad_slot": bad.name(), "running_slot": running.name(), "slots": slots, "logs": detail}),
        );
        self.save(state)
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

    /// Streams the verified release into the inactive slot and activates it (see the
    /// module documentation of [`rampart_boot::flow`]). A failure that may pass on retry
    /// (network) keeps the partial install for resuming; a refusal ends it. A slot that a
    /// download-only assignment filled with exactly this release is re-verified and activated
    /// without downloading it again.
    pub fn install(
        &mut self,
        state: &mut AgentState,
        v: &Verified,
        fetch: &Fetch,
        progress: &dyn Progress,
    ) -> Result<Installed, Refusal> {
        let (slot, resumed_from, from_staged) =
            match self.write_inactive(state, v, fetch, progress)? {
                Written::AlreadyRunning => return Ok(Installed::AlreadyRunning),
                Written::InSlot {
                    slot,
                    resumed_from,
                    from_staged,
                } => (slot, resumed_from, from_staged),
            };
        // Verified: activate.
        let boot_id = self.boot_id()?;
        state.phase = Phase::Activated {
            slot,
            release: v.release.clone(),
            boot_id,
            activations: 1,
        };
        state.slots.insert(slot, SlotContent::from(&v.release));
        self.save(state)?;
        self.bootloader
            .set_primary(&self.disk, slot)
            .map_err(boot_refusal)?;
        Ok(Installed::Activated {
            slot,
            resumed_from,
            from_staged,
        })
    }

    /// A download-only install: streams and verifies the release into the inactive slot like
    /// [`Device::install`], then stops. The slot stays marked bad, so the bootloader never
    /// picks it until an install activates it; the state records what it holds.
    pub fn stage(
        &mut self,
        state: &mut AgentState,
        v: &Verified,
        fetch: &Fetch,
        progress: &dyn Progress,
    ) -> Result<Staged, Refusal> {
        let (slot, resumed_from, from_staged) =
            match self.write_inactive(state, v, fetch, progress)? {
                Written::AlreadyRunning => return Ok(Staged::AlreadyRunning),
                Written::InSlot {
                    slot,
                    resumed_from,
                    from_staged,
                } => (slot, resumed_from, from_staged),
            };
        if from_staged && state.downloaded_for == v.release.assignment {
            return Ok(Staged::AlreadyStaged { slot });
        }
        // Newly written, or already there (re-verified) for a new assignment: report it once.
        state.phase = Phase::Idle;
        state.slots.insert(slot, SlotContent::from(&v.release));
        state.downloaded_for = v.release.assignment.clone();
        let slots = self.slot_states(state);
        Self::queue(
            state,
            "downloaded",
            &v.release,
            Reason::Ok,
            serde_json::json!({"slot": slot.name(), "slots": slots}),
        );
        self.save(state)?;
        Ok(if from_staged {
            Staged::AlreadyStaged { slot }
        } else {
            Staged::Downloaded { slot, resumed_from }
        })
    }

    /// The target the inactive slot holds, verified into it and not touched since (from the
    /// state alone; [`Device::install`] and [`Device::stage`] re-verify the bytes).
    pub fn staged_target<'a>(&self, state: &'a AgentState) -> Option<&'a str> {
        let inactive = state.committed?.other();
        (state.phase == Phase::Idle)
            .then(|| state.slots.get(&inactive))
            .flatten()
            .map(|c| c.target.as_str())
    }

    /// Whether the slot file holds exactly the release: its first `length` bytes match the
    /// signed hashes. Any read error counts as no (the install then writes it afresh).
    fn slot_holds(&self, path: &Path, v: &Verified) -> bool {
        let Ok(mut check) =
            StreamingCheck::new(&v.release.target, v.release.length, &v.info.hashes)
        else {
            return false;
        };
        let Ok(file) = File::open(path) else {
            return false;
        };
        let mut buf = vec![0u8; self.chunk];
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

    /// The part of an install up to a verified image in the inactive slot.
    fn write_inactive(
        &mut self,
        state: &mut AgentState,
        v: &Verified,
        fetch: &Fetch,
        progress: &dyn Progress,
    ) -> Result<Written, Refusal> {
        let running = match (&state.phase, state.committed) {
            (Phase::Idle | Phase::Installing { .. }, Some(c)) => c,
            (Phase::Idle | Phase::Installing { .. }, None) => {
                return Err(Refusal::new(
                    Reason::StateCorrupt,
                    "the running slot is not known yet; the boot flow (start) must run first",
                ));
            }
            (phase, _) => {
                return Err(Refusal::new(
                    Reason::BootloaderFailed,
                    format!("an update is already waiting for a reboot ({phase:?}); reboot first"),
                ));
            }
        };
        if state.slots.get(&running).is_some_and(|c| {
            c.target == v.release.target && Some(c.sha256.as_str()) == v.release.sha256()
        }) {
            return Ok(Written::AlreadyRunning);
        }
        if let Some(last) = state.rolled_back(&v.release.target) {
            // Retrying would loop install → reboot → rollback for as long as it stays assigned.
            return Err(Refusal::rolled_back(last));
        }
        let slot = running.other();
        let path = self.config.slots.path(slot).to_path_buf();
        let capacity = Self::slot_capacity(&path)?;
        if v.release.length > capacity {
            return Err(Refusal::new(
                Reason::SlotTooSmall,
                format!(
                    "{} is {} bytes but slot {slot} ({}) holds only {capacity}; the running slot was not touched",
                    v.release.target,
                    v.release.length,
                    path.display()
                ),
            ));
        }
        // Put there and verified by a download-only install, and still intact.
        if state.phase == Phase::Idle
            && state.slots.get(&slot).is_some_and(|c| {
                c.target == v.release.target && Some(c.sha256.as_str()) == v.release.sha256()
            })
            && self.slot_holds(&path, v)
        {
            progress.progress(&v.release, v.release.length);
            return Ok(Written::InSlot {
                slot,
                resumed_from: 0,
                from_staged: true,
            });
        }
        let resume_from = match &state.phase {
            Phase::Installing {
                slot: s,
                release,
                written,
            } if *s == slot && *release == v.release => *written,
            _ => 0,
        };
        if resume_from == 0 {
            state.phase = Phase::Installing {
                slot,
                release: v.release.clone(),
                written: 0,
            };
            state.slots.remove(&slot);
            self.save(state)?;
        }
        // Never let the bootloader pick a slot that is being overwritten.
        self.bootloader
            .set_health(&self.disk, slot, SlotHealth::Bad)
            .map_err(boot_refusal)?;

        match self.stream(state, slot, &path, v, fetch, resume_from, progress) {
            Ok(()) => {}
            Err(refusal) if refusal.is_retryable() || refusal.crashed => return Err(refusal),
            Err(refusal) => {
                state.phase = Phase::Idle;
                state.last_result = Some(LastResult {
                    target: v.release.target.clone(),
                    version: v.release.version.clone(),
                    reason: refusal.reason,
                    detail: refusal.detail.clone(),
                });
                Self::queue(
                    state,
                    "failed",
                    &v.release,
                    refusal.reason,
                    serde_json::json!({"detail": refusal.detail}),
                );
                self.save(state)?;
                return Err(refusal);
            }
        }

        Ok(Written::InSlot {
            slot,
            resumed_from: resume_from,
            from_staged: false,
        })
    }

    /// Gives up an interrupted install (the release is no longer assigned).
    pub fn abandon_install(&mut self, state: &mut AgentState) -> Result<(), Refusal> {
        if matches!(state.phase, Phase::Installing { .. }) {
            state.phase = Phase::Idle;
            self.save(state)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn stream(
        &mut self,
        state: &mut AgentState,
        slot: Slot,
        path: &Path,
        v: &Verified,
        fetch: &Fetch,
        resume_from: u64,
        progress: &dyn Progress,
    ) -> Result<(), Refusal> {
        let release = &v.release;
        let length = release.length;
        let what = release.target.as_str();
        let hashes = &v.info.hashes;
        let mut check = StreamingCheck::new(what, length, hashes)
            .map_err(|e| Refusal::new(Reason::MetadataInvalid, e))?;
        let slot_io = |e: std::io::Error| {
            Refusal::new(
                Reason::SlotIo,
                format!("slot {slot} ({}): {e}", path.display()),
            )
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(slot_io)?;

        // Resuming: hash what the slot already holds (it was fsynced at the checkpoint).
        let mut buf = vec![0u8; self.chunk];
        let mut at = 0u64;
        while at < resume_from {
            let n = (resume_from - at).min(buf.len() as u64) as usize;
            file.read_exact_at(&mut buf[..n], at).map_err(slot_io)?;
            check
                .update(&buf[..n])
                .map_err(|e| Refusal::new(Reason::HashMismatch, e))?;
            at += n as u64;
        }

        let (mut reader, start) = fetch.open(&v.url, resume_from, release)?;
        if start != resume_from {
            // The source restarted from byte 0.
            check = StreamingCheck::new(what, length, hashes)
                .map_err(|e| Refusal::new(Reason::MetadataInvalid, e))?;
        }
        let mut written = start;
        let checkpoint = self.config.install.checkpoint_bytes;
        let checkpoint_every = Duration::from_secs(self.config.install.checkpoint_secs);
        let mut next_checkpoint = written + checkpoint;
        let mut last_checkpoint = Instant::now();
        let min_rate = fetch.min_rate;
        let began = Instant::now();
        let mut fetched = 0u64;

        // The hasher runs beside the writer: with two cores, hashing and writing overlap.
        let (tx, rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
        let (back_tx, back_rx) = sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT + 1);
        for _ in 0..CHUNKS_IN_FLIGHT {
            let _ = back_tx.send(vec![0u8; self.chunk]);
        }
        let hasher = std::thread::spawn(move || {
            let mut failed = None;
            for chunk in rx {
                if failed.is_none()
                    && let Err(e) = check.update(&chunk)
                {
                    failed = Some(e);
                }
                let _ = back_tx.send(chunk);
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(check),
            }
        });

        let result = (|| -> Result<(), Refusal> {
            loop {
                if written >= length {
                    // Anything beyond the signed length is refused (an endless download).
                    let mut probe = [0u8; 1];
                    match reader.read(&mut probe) {
                        Ok(0) => return Ok(()),
                        Ok(_) => {
                            return Err(Refusal::new(
                                Reason::TooLong,
                                format!(
                                    "{what}: the source sends more than the signed {length} bytes"
                                ),
                            ));
                        }
                        Err(_) => return Ok(()),
                    }
                }
                let mut chunk = back_rx.recv().unwrap_or_else(|_| vec![0u8; self.chunk]);
                let want = (length - written).min(chunk.len() as u64) as usize;
                chunk.resize(want, 0);
                let mut filled = 0;
                while filled < want {
                    let elapsed = began.elapsed();
                    if elapsed > min_rate.grace
                        && (fetched as f64)
                            < min_rate.bytes_per_second as f64 * elapsed.as_secs_f64()
                    {
                        return Err(Refusal::new(
                            Reason::DownloadStalled,
                            format!(
                                "{what}: {fetched} bytes in {} s is below the minimum rate",
                                elapsed.as_secs()
                            ),
                        ));
                    }
                    match reader.read(&mut chunk[filled..want]) {
                        Ok(0) => {
                            return Err(Refusal::new(
                                Reason::Truncated,
                                format!(
                                    "{what}: the download ended at byte {} of {length}",
                                    written + filled as u64
                                ),
                            ));
                        }
                        Ok(n) => {
                            filled += n;
                            fetched += n as u64;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        // The connection closed before its announced length (HTTP).
                        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                            return Err(Refusal::new(
                                Reason::Truncated,
                                format!(
                                    "{what}: the download ended at byte {} of {length} ({e})",
                                    written + filled as u64
                                ),
                            ));
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                            return Err(Refusal::new(
                                Reason::DownloadStalled,
                                format!("{what}: {e}"),
                            ));
                        }
                        Err(e) => {
                            return Err(Refusal::new(
                                Reason::DownloadFailed,
                                format!("{what}: {e}"),
                            ));
                        }
                    }
                }
                self.disk
                    .write_at(&file, path, written, &chunk[..want], false)
                    .map_err(disk_refusal)?;
                written += want as u64;
                if tx.send(chunk).is_err() {
                    // The hasher stopped: the data was refused.
                    return Ok(());
                }
                if written >= next_checkpoint
                    && written < length
                    && last_checkpoint.elapsed() >= checkpoint_every
                {
                    last_checkpoint = Instant::now();
                    self.disk.sync(&file, path).map_err(disk_refusal)?;
                    if let Phase::Installing { written: w, .. } = &mut state.phase {
                        *w = written;
                    }
                    self.save(state)?;
                    next_checkpoint = written + checkpoint;
                    progress.progress(release, written);
                }
            }
        })();
        drop(tx);
        let hashed = hasher
            .join()
            .map_err(|_| Refusal::new(Reason::SlotIo, "the hashing thread panicked"))?;
        result?;
        let check = hashed.map_err(|e| Refusal::new(Reason::TooLong, e))?;
        self.disk.sync(&file, path).map_err(disk_refusal)?;
        check.finish().map_err(|e| match e {
            rampart_core::TufError::LengthMismatch { .. } => Refusal::new(Reason::Truncated, e),
            other => Refusal::new(
                Reason::HashMismatch,
                format!("{other}; slot {slot} stays marked bad and is never booted"),
            ),
        })?;
        progress.progress(release, written);
        Ok(())
    }

    /// Sends queued reports through `send` (which returns whether the server stored one),
    /// dropping those it stored.
    pub fn flush_reports(
        &self,
        state: &mut AgentState,
        send: &dyn Fn(&PendingReport) -> bool,
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

/// The slot named by `rampart.slot=` (or RAUC's `rauc.slot=`) on a kernel command line.
pub fn booted_slot_from_cmdline(cmdline: &str) -> Option<Slot> {
    cmdline.split_whitespace().find_map(|arg| {
        arg.strip_prefix("rampart.slot=")
            .or_else(|| arg.strip_prefix("rauc.slot="))
            .and_then(Slot::parse)
    })
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
