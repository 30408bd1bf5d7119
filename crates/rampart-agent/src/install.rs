//! Installing a verified release into the inactive slot: the checks, the `Installing` record,
//! the stream (resumable from the last checkpoint), the final check, and activation or (for a
//! download-only assignment) staging.
//!
//! A re-image ([`Release::reimage`]) writes the release even over the same release (the running
//! image is suspect), and after its commit ([`crate::startup`]) the next install of the same
//! release is the mirror: the same stream, checks and checkpoints into the other slot, which is
//! marked good only once it verifies ([`Installed::Reimaged`]).
//!
//! The stream is step-wise: [`Device::begin_write`] opens it, [`Device::pump`] moves up to a
//! byte budget from the source into the slot, and reports when the image is in and verified.
//! The agent pumps with no budget (the whole image in one call); the fleet simulator pumps a
//! slow link's share per tick and serves other devices in between.

use std::io::Read;
use std::time::{Duration, Instant};

use rampart_boot::ab::{Slot, SlotHealth};
use rampart_boot::flow::{AgentState, LastResult, Phase, Reason, Release, SlotContent};
use rampart_protocol::ReportStatus;
use rampart_tuf_client::fetch::MinRate;

use crate::device::{Device, Installed, Progress, Staged, queue};
use crate::platform::{Platform, boot_refusal};
use crate::source::{Fetch, Refusal, Verified};

/// Where a release's bytes come from.
pub trait ImageSource {
    /// Opens the image from byte `offset` on. Returns the reader and the offset it really
    /// starts at (0 when the source sends the whole image after all).
    fn open_at(
        &mut self,
        v: &Verified,
        offset: u64,
    ) -> Result<(Box<dyn Read + Send>, u64), Refusal>;
    /// The minimum transfer rate a download must keep.
    fn min_rate(&self) -> MinRate;
}

impl ImageSource for Fetch {
    fn open_at(
        &mut self,
        v: &Verified,
        offset: u64,
    ) -> Result<(Box<dyn Read + Send>, u64), Refusal> {
        self.open(&v.url, offset, &v.release)
    }

    fn min_rate(&self) -> MinRate {
        self.min_rate
    }
}

/// How writing a release into the inactive slot begins.
pub enum Begin<W> {
    /// The booted slot already runs this release.
    AlreadyRunning,
    /// The inactive slot already holds it: verified into it by a download-only assignment, and
    /// re-verified now.
    Staged { slot: Slot },
    /// The stream is open; [`Device::pump`] moves it.
    Streaming(Box<StreamInstall<W>>),
}

/// A release being streamed into the inactive slot.
pub struct StreamInstall<W> {
    pub slot: Slot,
    pub verified: Verified,
    /// The checkpoint this stream resumed from (0 for a fresh one).
    pub resumed_from: u64,
    written: u64,
    fetched: u64,
    began: Instant,
    min_rate: MinRate,
    next_checkpoint: u64,
    last_checkpoint: Instant,
    reader: Box<dyn Read + Send>,
    writer: Option<W>,
    buf: Vec<u8>,
}

impl<W> StreamInstall<W> {
    /// Bytes of the image in the slot so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Bytes read from the source by this stream.
    pub fn fetched(&self) -> u64 {
        self.fetched
    }
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

fn same_release(c: &SlotContent, release: &Release) -> bool {
    c.target == release.target && Some(c.sha256.as_str()) == release.sha256()
}

impl<P: Platform> Device<P> {
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
            match self.write_inactive(state, v, &mut fetch.clone(), progress)? {
                Written::AlreadyRunning => return Ok(Installed::AlreadyRunning),
                Written::InSlot {
                    slot,
                    resumed_from,
                    from_staged,
                } => (slot, resumed_from, from_staged),
            };
        if matches!(&state.phase, Phase::Mirroring { slot: s, .. } if *s == slot) {
            return self.finish_mirror(state, slot, v);
        }
        self.activate(state, slot, &v.release)?;
        Ok(Installed::Activated {
            slot,
            resumed_from,
            from_staged,
        })
    }

    /// The release is verified in `slot`: record it as activated and make the bootloader try
    /// it at the next boot.
    pub fn activate(
        &mut self,
        state: &mut AgentState,
        slot: Slot,
        release: &Release,
    ) -> Result<(), Refusal> {
        let boot_id = self.boot_id()?;
        state.phase = Phase::Activated {
            slot,
            release: release.clone(),
            boot_id,
            activations: 1,
        };
        state.slots.insert(slot, SlotContent::from(release));
        self.save(state)?;
        self.platform
            .bootloader()
            .set_primary(&self.disk, slot)
            .map_err(boot_refusal)
    }

    /// A re-image's mirror is verified in `slot`: only now is it marked good (the fallback),
    /// then both slots are checked afresh and the re-image is reported `installed` with
    /// `details.reimaged` (the slots that hold the release) and their SHA-256. Marked good
    /// before the state says so: a power cut in between re-marks it bad at start and verifies
    /// it again, never the reverse (a state claiming a fallback the bootloader does not have).
    pub fn finish_mirror(
        &mut self,
        state: &mut AgentState,
        slot: Slot,
        v: &Verified,
    ) -> Result<Installed, Refusal> {
        self.platform
            .bootloader()
            .set_health(&self.disk, slot, SlotHealth::Good)
            .map_err(boot_refusal)?;
        let Some(release) = state.finish_mirror(slot) else {
            return Err(Refusal::new(
                Reason::StateCorrupt,
                format!("no re-image was mirroring into slot {slot}"),
            ));
        };
        let mut reimaged = Vec::new();
        let mut sha256 = serde_json::Map::new();
        for s in Slot::BOTH {
            // The mirror was verified as it was written; the running slot is read again.
            if s == slot || self.platform.slot_holds(&self.config, s, v, self.chunk) {
                let name = s.name().to_ascii_lowercase();
                sha256.insert(name.clone(), release.sha256().unwrap_or_default().into());
                reimaged.push(name);
            }
        }
        let slots = self.slot_states(state);
        queue(
            state,
            ReportStatus::Installed,
            &release,
            Reason::Ok,
            serde_json::json!({"slot": slot.other().name(), "slots": slots, "reimaged": reimaged, "sha256": sha256}),
        );
        self.save(state)?;
        Ok(Installed::Reimaged { slots: reimaged })
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
        match self.write_inactive(state, v, &mut fetch.clone(), progress)? {
            Written::AlreadyRunning => Ok(Staged::AlreadyRunning),
            Written::InSlot {
                slot,
                resumed_from,
                from_staged,
            } => self.record_staged(state, slot, v, resumed_from, from_staged),
        }
    }

    /// A download-only install has the release verified in `slot`: recorded, and reported
    /// `downloaded` once per assignment.
    pub fn record_staged(
        &mut self,
        state: &mut AgentState,
        slot: Slot,
        v: &Verified,
        resumed_from: u64,
        from_staged: bool,
    ) -> Result<Staged, Refusal> {
        if from_staged && state.downloaded_for == v.release.assignment {
            return Ok(Staged::AlreadyStaged { slot });
        }
        // Newly written, or already there (re-verified) for a new assignment: report it once.
        state.phase = Phase::Idle;
        state.slots.insert(slot, SlotContent::from(&v.release));
        state.downloaded_for = v.release.assignment.clone();
        let slots = self.slot_states(state);
        queue(
            state,
            ReportStatus::Downloaded,
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

    /// The part of an install up to a verified image in the inactive slot, in one go.
    fn write_inactive(
        &mut self,
        state: &mut AgentState,
        v: &Verified,
        source: &mut dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<Written, Refusal> {
        match self.begin_write(state, v, source, progress)? {
            Begin::AlreadyRunning => Ok(Written::AlreadyRunning),
            Begin::Staged { slot } => Ok(Written::InSlot {
                slot,
                resumed_from: 0,
                from_staged: true,
            }),
            Begin::Streaming(mut stream) => {
                while !self.pump(state, &mut stream, u64::MAX, progress)? {}
                Ok(Written::InSlot {
                    slot: stream.slot,
                    resumed_from: stream.resumed_from,
                    from_staged: false,
                })
            }
        }
    }

    /// Starts writing `v` into the inactive slot: the checks, `Installing` recorded, the slot
    /// marked bad (never booted while it is being overwritten), and the stream opened from the
    /// last checkpoint of an interrupted install of the same release.
    pub fn begin_write(
        &mut self,
        state: &mut AgentState,
        v: &Verified,
        source: &mut dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<Begin<P::Writer>, Refusal> {
        let running = match (&state.phase, state.committed) {
            (Phase::Idle | Phase::Installing { .. } | Phase::Mirroring { .. }, Some(c)) => c,
            (Phase::Idle | Phase::Installing { .. } | Phase::Mirroring { .. }, None) => {
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
        let mirroring =
            matches!(&state.phase, Phase::Mirroring { release, .. } if *release == v.release);
        // A re-image writes even over the same release: the running image is suspect.
        let reimaging = mirroring || (v.release.reimage && !state.reimage_done(&v.release));
        if !reimaging
            && state
                .slots
                .get(&running)
                .is_some_and(|c| same_release(c, &v.release))
        {
            return Ok(Begin::AlreadyRunning);
        }
        if let Some(last) = state.rolled_back(&v.release.target) {
            // Retrying would loop install → reboot → rollback for as long as it stays assigned.
            return Err(Refusal::rolled_back(last));
        }
        // The verifiers checked the release against the state directory's counter; the
        // platform's floor (a TPM's NV counter) holds even when that directory was wiped or
        // replaced.
        let floor = self.security_version()?;
        if v.release.security_version < floor {
            return Err(Refusal::new(
                Reason::SecurityVersionRollback,
                format!(
                    "{} has security version {}, below this device's anti-rollback floor {floor}; it is never installed (the floor only rises)",
                    v.release.target, v.release.security_version
                ),
            ));
        }
        let slot = running.other();
        let capacity = self.platform.slot_capacity(&self.config, slot)?;
        if v.release.length > capacity {
            return Err(Refusal::new(
                Reason::SlotTooSmall,
                format!(
                    "{} is {} bytes but slot {slot} ({}) holds only {capacity}; the running slot was not touched",
                    v.release.target,
                    v.release.length,
                    self.platform.describe_slot(&self.config, slot)
                ),
            ));
        }
        // Put there and verified by a download-only install, and still intact (never for a
        // re-image: no slot keeps what it held before).
        if !reimaging
            && state.phase == Phase::Idle
            && state
                .slots
                .get(&slot)
                .is_some_and(|c| same_release(c, &v.release))
            && self.platform.slot_holds(&self.config, slot, v, self.chunk)
        {
            progress.progress(&v.release, v.release.length);
            return Ok(Begin::Staged { slot });
        }
        let resume_from = match &state.phase {
            Phase::Installing {
                slot: s,
                release,
                written,
            }
            | Phase::Mirroring {
                slot: s,
                release,
                written,
            } if *s == slot
                && *release == v.release
                && self.platform.can_resume(slot, v, *written) =>
            {
                *written
            }
            _ => 0,
        };
        if resume_from == 0 {
            state.phase = if mirroring {
                Phase::Mirroring {
                    slot,
                    release: v.release.clone(),
                    written: 0,
                }
            } else {
                Phase::Installing {
                    slot,
                    release: v.release.clone(),
                    written: 0,
                }
            };
            state.slots.remove(&slot);
            self.save(state)?;
        }
        // Never let the bootloader pick a slot that is being overwritten.
        self.platform
            .bootloader()
            .set_health(&self.disk, slot, SlotHealth::Bad)
            .map_err(boot_refusal)?;
        match self.open_stream(slot, v, source, resume_from) {
            Ok(stream) => Ok(Begin::Streaming(Box::new(stream))),
            Err(refusal) => Err(self.stream_failed(state, &v.release, refusal)),
        }
    }

    fn open_stream(
        &mut self,
        slot: Slot,
        v: &Verified,
        source: &mut dyn ImageSource,
        resume_from: u64,
    ) -> Result<StreamInstall<P::Writer>, Refusal> {
        let mut writer = self
            .platform
            .open_slot(&self.config, slot, v, resume_from, self.chunk)?;
        let (reader, start) = source.open_at(v, resume_from)?;
        if start != resume_from {
            // The source restarted from byte 0.
            self.platform.restart_slot(&mut writer, v)?;
        }
        Ok(StreamInstall {
            slot,
            verified: v.clone(),
            resumed_from: resume_from,
            written: start,
            fetched: 0,
            began: Instant::now(),
            min_rate: source.min_rate(),
            next_checkpoint: start + self.config.install.checkpoint_bytes,
            last_checkpoint: Instant::now(),
            reader,
            writer: Some(writer),
            buf: Vec::new(),
        })
    }

    /// Moves up to `budget` bytes from the source into the slot, recording a checkpoint now
    /// and then; `Ok(true)` once the whole image is in the slot and verified. A refusal that
    /// retrying cannot fix ends the install (recorded, and a `failed` report queued).
    pub fn pump(
        &mut self,
        state: &mut AgentState,
        stream: &mut StreamInstall<P::Writer>,
        budget: u64,
        progress: &dyn Progress,
    ) -> Result<bool, Refusal> {
        match self.pump_budget(state, stream, budget, progress) {
            Ok(done) => Ok(done),
            Err(refusal) => Err(self.stream_failed(state, &stream.verified.release, refusal)),
        }
    }

    /// A refusal while streaming: a retryable one (network) or a power cut keeps the install
    /// for resuming; any other ends it with a `failed` report.
    fn stream_failed(
        &mut self,
        state: &mut AgentState,
        release: &Release,
        refusal: Refusal,
    ) -> Refusal {
        if refusal.is_retryable() || refusal.crashed {
            return refusal;
        }
        state.phase = Phase::Idle;
        state.last_result = Some(LastResult {
            target: release.target.clone(),
            version: release.version.clone(),
            reason: refusal.reason,
            detail: refusal.detail.clone(),
        });
        queue(
            state,
            ReportStatus::Failed,
            release,
            refusal.reason,
            serde_json::json!({"detail": refusal.detail}),
        );
        match self.save(state) {
            Ok(()) => refusal,
            Err(e) => e,
        }
    }

    fn pump_budget(
        &mut self,
        state: &mut AgentState,
        s: &mut StreamInstall<P::Writer>,
        budget: u64,
        progress: &dyn Progress,
    ) -> Result<bool, Refusal> {
        let length = s.verified.release.length;
        let checkpoint = self.config.install.checkpoint_bytes;
        let checkpoint_every = Duration::from_secs(self.config.install.checkpoint_secs);
        let mut left = budget;
        loop {
            if s.written >= length {
                // Anything beyond the signed length is refused (an endless download).
                let mut probe = [0u8; 1];
                match s.reader.read(&mut probe) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        return Err(Refusal::new(
                            Reason::TooLong,
                            format!(
                                "{}: the source sends more than the signed {length} bytes",
                                s.verified.release.target
                            ),
                        ));
                    }
                }
            }
            if left == 0 {
                return Ok(false);
            }
            let want = (length - s.written).min(self.chunk as u64).min(left) as usize;
            let mut chunk = std::mem::take(&mut s.buf);
            chunk.resize(want, 0);
            fill(s, &mut chunk)?;
            let writer = s
                .writer
                .as_mut()
                .ok_or_else(|| Refusal::new(Reason::SlotIo, "the stream has ended"))?;
            s.buf = self
                .platform
                .write_slot(&self.disk, writer, s.written, chunk)?;
            s.written += want as u64;
            left -= want as u64;
            if s.written >= s.next_checkpoint
                && s.written < length
                && s.last_checkpoint.elapsed() >= checkpoint_every
            {
                s.last_checkpoint = Instant::now();
                self.platform.sync_slot(&self.disk, writer)?;
                if let Phase::Installing { written: w, .. } | Phase::Mirroring { written: w, .. } =
                    &mut state.phase
                {
                    *w = s.written;
                }
                self.save(state)?;
                s.next_checkpoint = s.written + checkpoint;
                progress.progress(&s.verified.release, s.written);
            }
        }
        let writer = s
            .writer
            .take()
            .ok_or_else(|| Refusal::new(Reason::SlotIo, "the stream has ended"))?;
        self.platform.finish_slot(&self.disk, writer, &s.verified)?;
        progress.progress(&s.verified.release, s.written);
        Ok(true)
    }

    /// Gives up an interrupted install (the release is no longer assigned).
    pub fn abandon_install(&mut self, state: &mut AgentState) -> Result<(), Refusal> {
        if matches!(state.phase, Phase::Installing { .. }) {
            state.phase = Phase::Idle;
            self.save(state)?;
        }
        Ok(())
    }
}

/// Reads exactly `chunk.len()` bytes of the image, keeping the minimum rate.
fn fill<W>(s: &mut StreamInstall<W>, chunk: &mut [u8]) -> Result<(), Refusal> {
    let what = s.verified.release.target.as_str();
    let length = s.verified.release.length;
    let mut filled = 0;
    while filled < chunk.len() {
        let elapsed = s.began.elapsed();
        if elapsed > s.min_rate.grace
            && (s.fetched as f64) < s.min_rate.bytes_per_second as f64 * elapsed.as_secs_f64()
        {
            return Err(Refusal::new(
                Reason::DownloadStalled,
                format!(
                    "{what}: {} bytes in {} s is below the minimum rate",
                    s.fetched,
                    elapsed.as_secs()
                ),
            ));
        }
        let at = s.written + filled as u64;
        match s.reader.read(&mut chunk[filled..]) {
            Ok(0) => {
                return Err(Refusal::new(
                    Reason::Truncated,
                    format!("{what}: the download ended at byte {at} of {length}"),
                ));
            }
            Ok(n) => {
                filled += n;
                s.fetched += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The connection closed before its announced length (HTTP).
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Refusal::new(
                    Reason::Truncated,
                    format!("{what}: the download ended at byte {at} of {length} ({e})"),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(Refusal::new(
                    Reason::DownloadStalled,
                    format!("{what}: {e}"),
                ));
            }
            Err(e) => {
                return Err(Refusal::new(Reason::DownloadFailed, format!("{what}: {e}")));
            }
        }
    }
    Ok(())
}
