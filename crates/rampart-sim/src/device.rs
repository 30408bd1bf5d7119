//! One virtual device: the agent's install and boot flow over in-memory hardware.
//!
//! This mirrors `rampart_agent::device::Device` and `rampart_agent::daemon` step by step (the
//! same decisions from [`rampart_boot::flow::on_start`], the same state changes, saves and
//! bootloader writes in the same order, the same reports with the same JSON shapes and reason
//! codes), with slots and the bootloader environment in memory ([`crate::hw`]) instead of
//! block devices and environment files, a simulated health check, and injected faults.
//!
//! A device's memory is split the way a power cut splits it:
//!
//! * persistent: the agent's state file ([`AgentState`], replaced whole at every save), the
//!   bootloader environment, the slots' synced content, and the state directory on disk (TUF
//!   and director metadata, the anti-rollback counter) that `verify_assigned` keeps;
//! * volatile ([`Running`]): the working copy of the state, the boot id, the open session and
//!   download. A power cut drops all of it and the next power-on starts from the persistent
//!   part, through the bootloader and `on_start`, as a real device would.
//!
//! The device is driven by events ([`VirtualDevice::step`]): power on, an agent pass (reports,
//! poll, verify, install), or the next piece of a slow download. Each returns when the next
//! event is due, so a bounded pool of workers serves any number of devices.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use rampart_agent::source::{Refusal, Verified};
use rampart_boot::ab::{Slot, SlotHealth};
use rampart_boot::flow::{
    AgentState, LastResult, Observed, Phase, Reason, Release, SlotContent, StartupAction, on_start,
};
use rampart_core::TufError;
use rampart_core::verify::StreamingCheck;
use rampart_tuf_client::fetch::MinRate;
use serde_json::json;

use crate::hw::{Bootloader, MemSlot};
use crate::link::{Assignment, Connect, Identity, Session, UpdateKind};
use crate::rng::{Rng, hash_str};
use crate::spec::{FaultRule, Faults, InitialFirmware, Timing};
use crate::stats::{Activity, Counters};

/// Bytes read from the network at a time.
const CHUNK: usize = 64 * 1024;
/// A slow link gets its byte budget in slices of this long.
const SLOW_TICK_MS: u64 = 250;
/// Power-on attempts (each a bootloader pick) before a device counts as bricked.
const MAX_POWER_ON: u32 = 16;
/// Battery level below which a device off mains defers `soft` updates.
pub(crate) const LOW_BATTERY_PCT: u8 = 20;
/// The agent's default poll interval, until the server says otherwise.
const DEFAULT_POLL: Duration = Duration::from_secs(300);

/// A firmware image whose hash the fleet knows: what a slot with that content boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    pub(crate) target: String,
    pub(crate) version: String,
    pub(crate) length: u64,
}

/// What every device of a fleet shares.
pub(crate) struct Shared {
    pub(crate) seed: u64,
    pub(crate) faults: Faults,
    pub(crate) timing: Timing,
    pub(crate) slot_capacity: u64,
    pub(crate) link: Box<dyn Connect>,
    pub(crate) counters: Counters,
    /// Images by SHA-256: the factory image and every release a device verified. A slot boots
    /// only if its content hashes to one of them (with the right length).
    pub(crate) images: RwLock<HashMap<String, Image>>,
    /// The latest error any device met (device id: error), for status output.
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
}

impl Shared {
    fn image(&self, sha256: &str) -> Option<Image> {
        self.images
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(sha256)
            .cloned()
    }

    fn learn(&self, release: &Release) {
        if let Some(sha) = release.sha256() {
            let mut images = self.images.write().unwrap_or_else(|e| e.into_inner());
            images.entry(sha.to_owned()).or_insert_with(|| Image {
                target: release.target.clone(),
                version: release.version.clone(),
                length: release.length,
            });
        }
    }
}

/// What a device is, for the whole run.
pub(crate) struct Profile {
    pub(crate) index: usize,
    pub(crate) identity: Identity,
    pub(crate) hardware_id: String,
    pub(crate) region: String,
    pub(crate) tags: Vec<String>,
    /// Download rate cap (a slow link), bytes per second.
    pub(crate) slow: Option<u64>,
    /// Offline from..until, ms since the fleet started.
    pub(crate) offline: Option<(u64, u64)>,
    pub(crate) battery_pct: u8,
    pub(crate) on_mains: bool,
    /// When the device is plugged in, ms since the fleet started.
    pub(crate) plugged_in_at: Option<u64>,
    pub(crate) state_dir: PathBuf,
}

impl Profile {
    fn offline_until(&self, now: u64) -> Option<u64> {
        self.offline
            .filter(|(from, until)| (*from..*until).contains(&now))
            .map(|(_, until)| until)
    }

    /// Battery level and whether on mains, at `now`.
    fn power(&self, now: u64) -> (u8, bool) {
        let plugged = self.plugged_in_at.is_some_and(|t| now >= t);
        (self.battery_pct, self.on_mains || plugged)
    }

    fn battery_low(&self, now: u64) -> bool {
        let (pct, mains) = self.power(now);
        pct < LOW_BATTERY_PCT && !mains
    }
}

/// Where an injected power cut strikes, once per release and device: every write step of the
/// install and boot flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// `Installing` saved, the slot not yet marked bad.
    InstallingSaved,
    /// The slot marked bad, nothing written yet.
    SlotMarkedBad,
    /// Once at least this many bytes are written (unsynced writes are lost).
    MidStream(u64),
    /// Streamed and verified, `Activated` not yet saved.
    StreamVerified,
    /// `Activated` saved, the bootloader not yet switched.
    ActivatedSaved,
    /// The bootloader switched, before the reboot.
    PrimarySet,
    /// Booted the new slot, during the health check.
    HealthCheck,
    /// The new slot marked good, the commit not yet saved.
    MarkedGood,
    /// `RollingBack` saved, the bootloader not yet changed.
    RollingBackSaved,
    /// The new slot marked bad, the old one not yet primary.
    RollbackMarkedBad,
}

impl CrashPoint {
    fn pick(rng: &mut Rng, length: u64) -> CrashPoint {
        match rng.below(10) {
            0 => CrashPoint::InstallingSaved,
            1 => CrashPoint::SlotMarkedBad,
            2 => CrashPoint::MidStream(1 + rng.below(length.max(1))),
            3 => CrashPoint::StreamVerified,
            4 => CrashPoint::ActivatedSaved,
            5 => CrashPoint::PrimarySet,
            6 => CrashPoint::HealthCheck,
            7 => CrashPoint::MarkedGood,
            8 => CrashPoint::RollingBackSaved,
            _ => CrashPoint::RollbackMarkedBad,
        }
    }
}

/// The injected power cut.
#[derive(Debug)]
pub(crate) struct Crash;

/// Why a flow stopped early.
enum Stop {
    Crash,
    Refused(Refusal),
}

impl From<Crash> for Stop {
    fn from(_: Crash) -> Stop {
        Stop::Crash
    }
}

impl From<Refusal> for Stop {
    fn from(r: Refusal) -> Stop {
        Stop::Refused(r)
    }
}

/// The next event of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    /// Power on (first boot, reboot, after a power cut).
    Boot,
    /// An agent pass: reports, poll, maybe an update.
    Pass,
    /// The next slice of a slow download.
    Stream,
    /// Nothing ever again (bricked).
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Wake {
    pub(crate) pending: Pending,
    pub(crate) at: u64,
}

impl Wake {
    fn boot(at: u64) -> Wake {
        Wake {
            pending: Pending::Boot,
            at,
        }
    }
    fn pass(at: u64) -> Wake {
        Wake {
            pending: Pending::Pass,
            at,
        }
    }
}

/// How an agent pass ended.
enum PassEnd {
    /// Done; whether it succeeded (failures back off).
    Done(bool),
    /// A slow download goes on at this time.
    Stream(u64),
    /// Reboot now.
    Reboot,
}

/// The hash check of a download.
enum Check {
    /// The agent's own length and hash check over every byte of the stream.
    Agent(StreamingCheck),
    /// A resumed stream: the slot's bytes before the resume point are not re-read (the sim
    /// has none); the slot's SHA-256 state covers them, and is checked at the end.
    Slot,
}

/// A download in progress.
struct Download {
    slot: Slot,
    verified: Verified,
    kind: UpdateKind,
    reader: Box<dyn Read + Send>,
    check: Check,
    written: u64,
    fetched: u64,
    began: Instant,
    min_rate: MinRate,
    next_checkpoint: u64,
    last_checkpoint: Instant,
    /// A slow link's bytes are owed since this time (ms since the fleet started).
    owed_since: Option<u64>,
}

/// What is lost at a power cut.
struct Running {
    boot_id: String,
    booted: Slot,
    /// The agent's working copy of its state (saved to [`VirtualDevice::persisted`]).
    state: AgentState,
    failures: u32,
    passes: u64,
    interval: Duration,
    session: Option<Box<dyn Session>>,
    download: Option<Download>,
}

/// The per-device fault plan: one power cut per release at most.
#[derive(Debug, Default)]
struct CrashPlan {
    for_target: Option<String>,
    point: Option<CrashPoint>,
}

/// A virtual device.
pub(crate) struct VirtualDevice {
    pub(crate) profile: Profile,
    // ---- persistent
    persisted: AgentState,
    boot: Bootloader,
    slots: [MemSlot; 2],
    /// Mirrors `<state>/security-version` (which `verify_assigned` reads).
    security_version: u64,
    // ---- simulation control
    crash: CrashPlan,
    boots: u64,
    bricked: bool,
    pub(crate) pending: Pending,
    last_error: Option<String>,
    /// The firmware version the last answered poll told the server.
    told: Option<String>,
    // ---- volatile
    run: Option<Running>,
}

fn slot_index(slot: Slot) -> usize {
    match slot {
        Slot::A => 0,
        Slot::B => 1,
    }
}

fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Installing { .. } => "installing",
        Phase::Activated { .. } => "activated",
        Phase::RollingBack { .. } => "rolling_back",
    }
}

impl VirtualDevice {
    /// A device fresh from the factory: `initial` committed in slot A, slot B blank.
    pub(crate) fn new(profile: Profile, initial: &InitialFirmware, tries: u8) -> VirtualDevice {
        let mut state = AgentState {
            committed: Some(Slot::A),
            ..AgentState::default()
        };
        state.slots.insert(
            Slot::A,
            SlotContent {
                target: initial.target.clone(),
                version: initial.version.clone(),
                security_version: initial.security_version,
                sha256: initial.sha256.to_ascii_lowercase(),
            },
        );
        VirtualDevice {
            profile,
            persisted: state,
            boot: Bootloader::factory(tries),
            slots: [
                MemSlot::flashed(initial.length, &initial.sha256),
                MemSlot::blank(),
            ],
            security_version: initial.security_version,
            crash: CrashPlan::default(),
            boots: 0,
            bricked: false,
            pending: Pending::Boot,
            last_error: None,
            told: None,
            run: None,
        }
    }

    /// Serves the device's pending event at `now` (ms since the fleet started); returns when
    /// the next one is due (`None`: never).
    pub(crate) fn step(&mut self, sh: &Shared, now: u64) -> Option<u64> {
        Counters::inc(&sh.counters.events);
        let outcome = match self.pending {
            Pending::Boot => self.power_on(sh, now),
            Pending::Pass => self.pass(sh, now),
            Pending::Stream => self.stream_slice(sh, now),
            Pending::Never => return None,
        };
        let wake = outcome.unwrap_or_else(|Crash| {
            self.power_loss(sh);
            Wake::boot(now + ms(sh.timing.reboot_delay))
        });
        self.pending = wake.pending;
        (wake.pending != Pending::Never).then_some(wake.at)
    }

    // ---- power ---------------------------------------------------------------------------

    fn power_loss(&mut self, sh: &Shared) {
        Counters::inc(&sh.counters.crashes);
        self.run = None;
        for slot in &mut self.slots {
            slot.power_loss();
        }
    }

    /// Power-on: the bootloader picks a slot; a slot that does not come up is retried (the
    /// watchdog resets the board), counting its attempts down as the bootloader does.
    fn power_on(&mut self, sh: &Shared, now: u64) -> Result<Wake, Crash> {
        self.run = None;
        for _ in 0..MAX_POWER_ON {
            let Some(slot) = self.boot.boot() else { break };
            if self.comes_up(sh, slot) {
                return self.start(sh, slot, now);
            }
            Counters::inc(&sh.counters.failed_boots);
        }
        self.bricked = true;
        self.note(sh, "no slot boots".into());
        Ok(Wake {
            pending: Pending::Never,
            at: now,
        })
    }

    /// Whether `slot` holds a whole known image that boots on this hardware.
    fn comes_up(&self, sh: &Shared, slot: Slot) -> bool {
        let medium = &self.slots[slot_index(slot)];
        let Some(image) = medium.sha256().and_then(|sha| sh.image(&sha)) else {
            return false;
        };
        if image.length != medium.len() {
            return false;
        }
        match FaultRule::first(
            &sh.faults.no_boot,
            &image.target,
            &image.version,
            &self.profile.hardware_id,
        ) {
            Some(p) => !Rng::new(
                sh.seed,
                self.profile.index,
                "no-boot",
                hash_str(&image.target),
            )
            .chance(p),
            None => true,
        }
    }

    /// The agent's start (`Device::start`): observe, decide with `on_start`, act.
    fn start(&mut self, sh: &Shared, booted: Slot, now: u64) -> Result<Wake, Crash> {
        self.boots += 1;
        let boot_id = format!("{}-boot-{}", self.profile.index, self.boots);
        let mut run = Running {
            boot_id: boot_id.clone(),
            booted,
            state: self.persisted.clone(),
            failures: 0,
            passes: 0,
            interval: sh.timing.poll_interval.unwrap_or(DEFAULT_POLL),
            session: None,
            download: None,
        };
        let seen = Observed {
            booted,
            boot_id,
            primary: self.boot.primary(),
        };
        let reboot = match on_start(&run.state, &seen) {
            StartupAction::Idle { confirm } => {
                self.boot.confirm(confirm);
                false
            }
            StartupAction::Adopt { slot } => {
                run.state.committed = Some(slot);
                self.save(&run.state);
                self.boot.confirm(slot);
                false
            }
            StartupAction::UnexpectedSlot { booted, committed } => {
                let detail = format!(
                    "the bootloader booted slot {booted}, not the committed slot {committed}; {booted} is now the committed slot"
                );
                self.adopt_unexpected(&mut run.state, booted, committed, &detail);
                false
            }
            StartupAction::AbandonInstall { slot } => {
                let detail = format!(
                    "the bootloader booted slot {slot} while an update was being written to it; the update was abandoned"
                );
                let release = run.state.release().cloned();
                run.state.phase = Phase::Idle;
                if let Some(r) = &release {
                    run.state.last_result = Some(LastResult {
                        target: r.target.clone(),
                        version: r.version.clone(),
                        reason: Reason::UnexpectedSlot,
                        detail: detail.clone(),
                    });
                    queue(
                        &mut run.state,
                        "failed",
                        r,
                        Reason::UnexpectedSlot,
                        json!({"detail": detail}),
                    );
                }
                let committed = run.state.committed.unwrap_or(slot.other());
                self.adopt_unexpected(&mut run.state, slot, committed, &detail);
                false
            }
            StartupAction::ResumeInstall { .. } => {
                // Resumed by the next install of the same release, after it is verified again.
                self.boot.confirm(run.state.committed.unwrap_or(booted));
                false
            }
            StartupAction::Activate { slot } => {
                if let Phase::Activated {
                    boot_id,
                    activations,
                    ..
                } = &mut run.state.phase
                    && *boot_id != seen.boot_id
                {
                    *activations += 1;
                    *boot_id = seen.boot_id.clone();
                    self.save(&run.state);
                }
                self.boot.set_primary(slot);
                true
            }
            StartupAction::CheckHealth { slot } => self.check_health(sh, &mut run, slot)?,
            StartupAction::Fallback { slot } => {
                if let Phase::Activated { release, .. } = run.state.phase.clone() {
                    self.roll_back(slot)?;
                    let detail = format!(
                        "the bootloader gave up on slot {slot} after its boot attempts and booted slot {booted}"
                    );
                    self.finish_rollback(
                        sh,
                        &mut run.state,
                        slot,
                        booted,
                        &release,
                        Reason::BootloaderFallback,
                        &detail,
                    );
                    Counters::inc(&sh.counters.fallbacks);
                }
                false
            }
            StartupAction::RedoRollback { slot } => {
                self.roll_back(slot)?;
                true
            }
            StartupAction::FinishRollback { slot } => {
                if let Phase::RollingBack {
                    release,
                    reason,
                    detail,
                    ..
                } = run.state.phase.clone()
                {
                    self.finish_rollback(
                        sh,
                        &mut run.state,
                        slot,
                        booted,
                        &release,
                        reason,
                        &detail,
                    );
                    self.boot.confirm(booted);
                }
                false
            }
        };
        if reboot {
            return Ok(Wake::boot(now + ms(sh.timing.reboot_delay)));
        }
        // The daemon goes on with a pass right after the boot flow (reports, then the poll).
        self.run = Some(run);
        Ok(Wake::pass(now))
    }

    /// The simulated health check of the new slot (the fault rules decide, the same way for
    /// every boot of the same device and release).
    fn health(&self, sh: &Shared, release: &Release, slot: Slot) -> Result<(), String> {
        let p = FaultRule::first(
            &sh.faults.health,
            &release.target,
            &release.version,
            &self.profile.hardware_id,
        );
        match p {
            Some(p)
                if Rng::new(
                    sh.seed,
                    self.profile.index,
                    "health",
                    hash_str(&release.target),
                )
                .chance(p) =>
            {
                Err(format!(
                    "health check `app-selftest` failed: the application of version {} in slot {slot} exited with status 1 (simulated fault on {})",
                    release.version, self.profile.hardware_id
                ))
            }
            _ => Ok(()),
        }
    }

    /// `StartupAction::CheckHealth`: commit, or decide the rollback. Returns whether to reboot.
    fn check_health(&mut self, sh: &Shared, run: &mut Running, slot: Slot) -> Result<bool, Crash> {
        let Phase::Activated { release, .. } = run.state.phase.clone() else {
            return Ok(false);
        };
        self.crash_at(CrashPoint::HealthCheck)?;
        match self.health(sh, &release, slot) {
            Ok(()) => {
                self.boot.set_health(slot, SlotHealth::Good);
                self.crash_at(CrashPoint::MarkedGood)?;
                self.raise_security_version(sh, release.security_version);
                run.state.phase = Phase::Idle;
                run.state.committed = Some(slot);
                run.state.slots.insert(slot, SlotContent::from(&release));
                run.state.last_result = Some(LastResult {
                    target: release.target.clone(),
                    version: release.version.clone(),
                    reason: Reason::Ok,
                    detail: format!("committed in slot {slot}"),
                });
                let slots = self.slot_states(&run.state);
                queue(
                    &mut run.state,
                    "installed",
                    &release,
                    Reason::Ok,
                    json!({"slot": slot.name(), "slots": slots}),
                );
                self.save(&run.state);
                Counters::inc(&sh.counters.installs);
                Ok(false)
            }
            Err(why) => {
                run.state.phase = Phase::RollingBack {
                    slot,
                    release,
                    reason: Reason::HealthCheckFailed,
                    detail: why,
                };
                self.save(&run.state);
                self.crash_at(CrashPoint::RollingBackSaved)?;
                self.roll_back(slot)?;
                Ok(true)
            }
        }
    }

    /// Marks `bad` bad and makes the other slot primary (idempotent).
    fn roll_back(&mut self, bad: Slot) -> Result<(), Crash> {
        self.boot.set_health(bad, SlotHealth::Bad);
        self.crash_at(CrashPoint::RollbackMarkedBad)?;
        self.boot.set_primary(bad.other());
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_rollback(
        &mut self,
        sh: &Shared,
        state: &mut AgentState,
        bad: Slot,
        running: Slot,
        release: &Release,
        reason: Reason,
        detail: &str,
    ) {
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
        queue(
            state,
            "rolled_back",
            release,
            reason,
            json!({"detail": detail, "bad_slot": bad.name(), "running_slot": running.name(), "slots": slots, "logs": detail}),
        );
        self.save(state);
        Counters::inc(&sh.counters.rollbacks);
    }

    fn adopt_unexpected(
        &mut self,
        state: &mut AgentState,
        booted: Slot,
        committed: Slot,
        detail: &str,
    ) {
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
        queue(
            state,
            "failed",
            &release,
            Reason::UnexpectedSlot,
            json!({"detail": detail, "previous_slot": committed.name()}),
        );
        self.save(state);
        self.boot.confirm(booted);
    }

    // ---- persistent writes ---------------------------------------------------------------

    /// Replaces the state file (atomically, as the agent's `Disk::replace_file`).
    fn save(&mut self, state: &AgentState) {
        self.persisted = state.clone();
    }

    fn raise_security_version(&mut self, sh: &Shared, to: u64) {
        if self.security_version >= to {
            return;
        }
        self.security_version = to;
        // `verify_assigned` reads the anti-rollback counter from the state directory.
        let path = self
            .profile
            .state_dir
            .join(rampart_agent::device::SECURITY_VERSION_FILE);
        if let Err(e) = std::fs::write(&path, format!("{to}\n")) {
            self.note(sh, format!("{}: {e}", path.display()));
        }
    }

    /// Records an error: the device's last, and the fleet's latest.
    fn note(&mut self, sh: &Shared, error: String) {
        let mut latest = sh.last_error.lock().unwrap_or_else(|e| e.into_inner());
        *latest = Some(format!("{}: {error}", self.profile.identity.id));
        drop(latest);
        self.last_error = Some(error);
    }

    /// Hits the planned power cut if this is its point.
    fn crash_at(&mut self, point: CrashPoint) -> Result<(), Crash> {
        if self.crash.point == Some(point) {
            self.crash.point = None;
            return Err(Crash);
        }
        Ok(())
    }

    /// Plans a power cut at `point` during the install of `target` (tests).
    #[cfg(test)]
    pub(crate) fn force_crash(&mut self, target: &str, point: CrashPoint) {
        self.crash.for_target = Some(target.to_owned());
        self.crash.point = Some(point);
    }

    /// Plans the power cut for `release`, once per release.
    fn plan_crash(&mut self, sh: &Shared, release: &Release) {
        if self.crash.for_target.as_deref() == Some(release.target.as_str()) {
            return;
        }
        self.crash.for_target = Some(release.target.clone());
        let mut rng = Rng::new(
            sh.seed,
            self.profile.index,
            "crash",
            hash_str(&release.target),
        );
        self.crash.point = rng
            .chance(sh.faults.crash_rate)
            .then(|| CrashPoint::pick(&mut rng, release.length));
    }

    fn slot_states(&self, state: &AgentState) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for slot in Slot::BOTH {
            let health = match self.boot.health(slot) {
                SlotHealth::Good => "good",
                SlotHealth::Bad => "bad",
            };
            out.insert(
                slot.name().into(),
                json!({
                    "bootloader": health,
                    "committed": state.committed == Some(slot),
                    "content": state.slots.get(&slot),
                }),
            );
        }
        serde_json::Value::Object(out)
    }

    // ---- agent passes --------------------------------------------------------------------

    fn pass(&mut self, sh: &Shared, now: u64) -> Result<Wake, Crash> {
        let Some(mut run) = self.run.take() else {
            return Ok(Wake::boot(now));
        };
        if let Some(until) = self.profile.offline_until(now) {
            self.run = Some(run);
            return Ok(Wake::pass(until));
        }
        let end = self.update_pass(sh, &mut run, now)?;
        Ok(self.settle(sh, run, end, now))
    }

    fn stream_slice(&mut self, sh: &Shared, now: u64) -> Result<Wake, Crash> {
        let Some(mut run) = self.run.take() else {
            return Ok(Wake::boot(now));
        };
        if let Some(until) = self.profile.offline_until(now) {
            // The network went away under the download: retried (resumed) later.
            run.download = None;
            run.session = None;
            Counters::inc(&sh.counters.download_errors);
            self.run = Some(run);
            return Ok(Wake::pass(until));
        }
        let end = self.drive(sh, &mut run, now)?;
        Ok(self.settle(sh, run, end, now))
    }

    /// After a pass (or a slice of one): the next event.
    fn settle(&mut self, sh: &Shared, mut run: Running, end: PassEnd, now: u64) -> Wake {
        match end {
            PassEnd::Reboot => Wake::boot(now + ms(sh.timing.reboot_delay)),
            PassEnd::Stream(at) => {
                self.run = Some(run);
                Wake {
                    pending: Pending::Stream,
                    at,
                }
            }
            PassEnd::Done(ok) => {
                // The session ends with the pass: its connection closes.
                run.session = None;
                run.download = None;
                let delay = self.next_delay(sh, &mut run, ok);
                self.run = Some(run);
                Wake::pass(now + ms(delay))
            }
        }
    }

    /// The daemon's delay before the next pass: the poll interval, or exponential backoff
    /// after failures, with ±20 % jitter (`rampart_agent::daemon::next_delay`).
    fn next_delay(&self, sh: &Shared, run: &mut Running, ok: bool) -> Duration {
        let max = sh.timing.max_backoff;
        let interval = if ok {
            run.failures = 0;
            run.interval
        } else {
            run.failures += 1;
            rampart_agent::daemon::next_delay(run.interval, run.failures, max, 0.5)
        };
        run.passes += 1;
        let jitter = Rng::new(sh.seed, self.profile.index, "jitter", run.passes).unit();
        rampart_agent::daemon::next_delay(interval, 0, max.max(interval), jitter)
    }

    /// One pass of `rampart_agent::daemon`: queued reports, poll, and the update it assigns.
    fn update_pass(&mut self, sh: &Shared, run: &mut Running, now: u64) -> Result<PassEnd, Crash> {
        let mut session = match sh.link.connect(&self.profile.identity) {
            Ok(s) => s,
            Err(e) => {
                Counters::inc(&sh.counters.connect_errors);
                self.note(sh, e);
                return Ok(PassEnd::Done(false));
            }
        };
        Counters::inc(&sh.counters.sessions);
        self.flush(sh, &mut run.state, session.as_mut());
        let facts = self.facts(&run.state, now);
        let poll = match session.poll(&facts) {
            Ok(p) => p,
            Err(e) => {
                Counters::inc(&sh.counters.poll_errors);
                self.note(sh, e);
                return Ok(PassEnd::Done(false));
            }
        };
        Counters::inc(&sh.counters.polls);
        self.told = facts["firmware_version"].as_str().map(str::to_owned);
        if sh.timing.poll_interval.is_none()
            && let Some(secs) = poll.interval_secs
        {
            run.interval = Duration::from_secs(secs.max(1));
        }
        let Some(assignment) = poll.assignment else {
            self.abandon_install(&mut run.state);
            return Ok(PassEnd::Done(true));
        };
        let running = run.state.committed.and_then(|s| run.state.slots.get(&s));
        if running.is_some_and(|c| c.target == assignment.target) {
            // As the daemon: an interrupted install of another release is no longer wanted.
            self.abandon_install(&mut run.state);
            return Ok(PassEnd::Done(true));
        }
        // Refused before it is verified or reported as downloading (as the daemon does).
        if let Some(last) = run.state.rolled_back(&assignment.target) {
            Counters::inc(&sh.counters.refused_rolled_back);
            self.last_error = Some(Refusal::rolled_back(last).detail);
            return Ok(PassEnd::Done(false));
        }
        match assignment.kind {
            UpdateKind::Soft if self.profile.battery_low(now) => {
                Counters::inc(&sh.counters.deferred);
                return Ok(PassEnd::Done(true));
            }
            UpdateKind::DownloadOnly if self.downloaded(&run.state, &assignment) => {
                return Ok(PassEnd::Done(true));
            }
            _ => {}
        }
        let verified = match session.verify(
            &self.profile.state_dir,
            &self.profile.hardware_id,
            &assignment,
            rampart_agent::daemon::now_unix(),
        ) {
            Ok(Some(v)) => v,
            Ok(None) => {
                self.abandon_install(&mut run.state);
                return Ok(PassEnd::Done(true));
            }
            Err(e) => {
                if e.verification {
                    Counters::inc(&sh.counters.verification_failures);
                    report(
                        sh,
                        session.as_mut(),
                        Some(&assignment.id),
                        "verification_failed",
                        None,
                        json!({"target": assignment.target, "reason": e.reason.as_str(), "error": e.message}),
                    );
                }
                self.note(sh, format!("[{}] {}", e.reason.as_str(), e.message));
                return Ok(PassEnd::Done(false));
            }
        };
        // The signed image is a real firmware image: a slot holding exactly it boots.
        sh.learn(&verified.release);
        report(
            sh,
            session.as_mut(),
            Some(&assignment.id),
            "downloading",
            None,
            json!({"target": verified.release.target, "version": verified.release.version}),
        );
        run.session = Some(session);
        match self.begin_install(sh, run, verified, assignment.kind) {
            Ok(Begin::AlreadyRunning) => Ok(PassEnd::Done(true)),
            Ok(Begin::Staged { slot, verified }) => self.activate(sh, run, slot, &verified),
            Ok(Begin::Streaming) => self.drive(sh, run, now),
            Err(Stop::Crash) => Err(Crash),
            Err(Stop::Refused(r)) => {
                self.note(sh, format!("[{}] {}", r.reason.as_str(), r.detail));
                Ok(PassEnd::Done(false))
            }
        }
    }

    /// Whether a `download_only` assignment is already downloaded into the inactive slot.
    fn downloaded(&self, state: &AgentState, assignment: &Assignment) -> bool {
        let Some(inactive) = state.committed.map(Slot::other) else {
            return false;
        };
        // Reported for this assignment, as the agent's daemon checks: a release that was
        // already there for an earlier reason is downloaded (and reported) again.
        state.phase == Phase::Idle
            && state.downloaded_for.as_deref() == Some(assignment.id.as_str())
            && state
                .slots
                .get(&inactive)
                .is_some_and(|c| c.target == assignment.target)
    }

    /// Gives up an interrupted install (nothing, or something else, is assigned now).
    fn abandon_install(&mut self, state: &mut AgentState) {
        if matches!(state.phase, Phase::Installing { .. }) {
            state.phase = Phase::Idle;
            self.save(state);
        }
    }

    /// `Device::install` up to the stream: the checks, `Installing` saved, the slot marked bad,
    /// the download opened (from the resume point).
    fn begin_install(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        v: Verified,
        kind: UpdateKind,
    ) -> Result<Begin, Stop> {
        let running = match (&run.state.phase, run.state.committed) {
            (Phase::Idle | Phase::Installing { .. }, Some(c)) => c,
            (Phase::Idle | Phase::Installing { .. }, None) => {
                return Err(Refusal::new(
                    Reason::StateCorrupt,
                    "the running slot is not known yet; the boot flow (start) must run first",
                )
                .into());
            }
            (phase, _) => {
                return Err(Refusal::new(
                    Reason::BootloaderFailed,
                    format!("an update is already waiting for a reboot ({phase:?}); reboot first"),
                )
                .into());
            }
        };
        if run.state.slots.get(&running).is_some_and(|c| {
            c.target == v.release.target && Some(c.sha256.as_str()) == v.release.sha256()
        }) {
            return Ok(Begin::AlreadyRunning);
        }
        if let Some(last) = run.state.rolled_back(&v.release.target) {
            return Err(Refusal::rolled_back(last).into());
        }
        let slot = running.other();
        if v.release.length > sh.slot_capacity {
            return Err(Refusal::new(
                Reason::SlotTooSmall,
                format!(
                    "{} is {} bytes but slot {slot} holds only {}; the running slot was not touched",
                    v.release.target, v.release.length, sh.slot_capacity
                ),
            )
            .into());
        }
        // Downloaded and verified earlier by a `download_only` assignment, and still intact in
        // the slot: activate it without downloading it again.
        if kind != UpdateKind::DownloadOnly && self.staged(&run.state, slot, &v.release) {
            return Ok(Begin::Staged {
                slot,
                verified: Box::new(v),
            });
        }
        let mut resume_from = match &run.state.phase {
            Phase::Installing {
                slot: s,
                release,
                written,
            } if *s == slot && *release == v.release => *written,
            _ => 0,
        };
        // Resuming needs the slot's hash state at the resume point, which covers SHA-256 only.
        if resume_from > 0
            && (v.info.hashes.keys().any(|a| a != "sha256")
                || !self.slots[slot_index(slot)].rewind(resume_from))
        {
            resume_from = 0;
        }
        self.plan_crash(sh, &v.release);
        if resume_from == 0 {
            run.state.phase = Phase::Installing {
                slot,
                release: v.release.clone(),
                written: 0,
            };
            run.state.slots.remove(&slot);
            self.save(&run.state);
            self.crash_at(CrashPoint::InstallingSaved)?;
        }
        // Never let the bootloader pick a slot that is being overwritten.
        self.boot.set_health(slot, SlotHealth::Bad);
        self.crash_at(CrashPoint::SlotMarkedBad)?;

        let Some(session) = run.session.as_mut() else {
            return Err(Refusal::new(Reason::DownloadFailed, "no session").into());
        };
        let (reader, start) = session.open(&v, resume_from)?;
        let check = if start == 0 {
            Check::Agent(
                StreamingCheck::new(&v.release.target, v.release.length, &v.info.hashes)
                    .map_err(|e| Refusal::new(Reason::MetadataInvalid, e))?,
            )
        } else {
            Check::Slot
        };
        Counters::inc(&sh.counters.downloads);
        let min_rate = session.min_rate();
        run.download = Some(Download {
            slot,
            kind,
            reader,
            check,
            written: start,
            fetched: 0,
            began: Instant::now(),
            min_rate,
            next_checkpoint: start + sh.timing.checkpoint_bytes,
            last_checkpoint: Instant::now(),
            owed_since: None,
            verified: v,
        });
        Ok(Begin::Streaming)
    }

    /// Whether `slot` holds `release`, downloaded and verified earlier, intact.
    fn staged(&self, state: &AgentState, slot: Slot, release: &Release) -> bool {
        let medium = &self.slots[slot_index(slot)];
        state.phase == Phase::Idle
            && state.slots.get(&slot).is_some_and(|c| {
                c.target == release.target && Some(c.sha256.as_str()) == release.sha256()
            })
            && medium.len() == release.length
            && medium.sha256().as_deref() == release.sha256()
    }

    /// Streams what the link allows now (everything, unless the link is slow), then finishes.
    fn drive(&mut self, sh: &Shared, run: &mut Running, now: u64) -> Result<PassEnd, Crash> {
        let Some(mut d) = run.download.take() else {
            return Ok(PassEnd::Done(false));
        };
        // A slow link delivers its rate over the time since the last slice: when the workers
        // are busy and the slice runs late, it reads what the link brought in meanwhile, so
        // the simulated rate holds whatever the scheduling delay (capped at 10 s worth).
        let budget = match self.profile.slow {
            Some(rate) => {
                let since = d.owed_since.unwrap_or(now.saturating_sub(SLOW_TICK_MS));
                d.owed_since = Some(now);
                let ms = now.saturating_sub(since).clamp(SLOW_TICK_MS, 10_000);
                (rate.saturating_mul(ms) / 1000).max(1)
            }
            None => u64::MAX,
        };
        match self.stream(sh, run, &mut d, budget) {
            Ok(false) => {
                run.download = Some(d);
                Ok(PassEnd::Stream(now + SLOW_TICK_MS))
            }
            Ok(true) => self.finish_install(sh, run, d),
            Err(Stop::Crash) => Err(Crash),
            Err(Stop::Refused(r)) => Ok(self.install_refused(sh, run, &d, r)),
        }
    }

    /// `Device::stream`: up to `budget` bytes into the slot, checkpoints, and the final check.
    /// `Ok(true)` once the whole image is in the slot and verified.
    fn stream(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        d: &mut Download,
        budget: u64,
    ) -> Result<bool, Stop> {
        let release = d.verified.release.clone();
        let length = release.length;
        let what = release.target.as_str();
        let slot = d.slot;
        let mut buf = vec![0u8; CHUNK];
        let mut left = budget;
        loop {
            if d.written >= length {
                // Anything beyond the signed length is refused (an endless download).
                let mut probe = [0u8; 1];
                match d.reader.read(&mut probe) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        return Err(Refusal::new(
                            Reason::TooLong,
                            format!("{what}: the source sends more than the signed {length} bytes"),
                        )
                        .into());
                    }
                }
            }
            if left == 0 {
                return Ok(false);
            }
            let elapsed = d.began.elapsed();
            if elapsed > d.min_rate.grace
                && (d.fetched as f64) < d.min_rate.bytes_per_second as f64 * elapsed.as_secs_f64()
            {
                return Err(Refusal::new(
                    Reason::DownloadStalled,
                    format!(
                        "{what}: {} bytes in {} s is below the minimum rate",
                        d.fetched,
                        elapsed.as_secs()
                    ),
                )
                .into());
            }
            let want = (length - d.written).min(CHUNK as u64).min(left) as usize;
            let n = match d.reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(Refusal::new(
                        Reason::Truncated,
                        format!(
                            "{what}: the download ended at byte {} of {length}",
                            d.written
                        ),
                    )
                    .into());
                }
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(Refusal::new(
                        Reason::Truncated,
                        format!(
                            "{what}: the download ended at byte {} of {length} ({e})",
                            d.written
                        ),
                    )
                    .into());
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(
                        Refusal::new(Reason::DownloadStalled, format!("{what}: {e}")).into(),
                    );
                }
                Err(e) => {
                    return Err(Refusal::new(Reason::DownloadFailed, format!("{what}: {e}")).into());
                }
            };
            d.fetched += n as u64;
            left = left.saturating_sub(n as u64);
            Counters::add(&sh.counters.bytes, n as u64);
            let chunk = &buf[..n];
            self.slots[slot_index(slot)]
                .write(d.written, chunk)
                .map_err(|e| Refusal::new(Reason::SlotIo, format!("slot {slot}: {e}")))?;
            if let Check::Agent(check) = &mut d.check {
                check
                    .update(chunk)
                    .map_err(|e| Refusal::new(Reason::TooLong, e))?;
            }
            d.written += n as u64;
            if let Some(CrashPoint::MidStream(at)) = self.crash.point
                && d.written >= at
            {
                self.crash.point = None;
                return Err(Stop::Crash);
            }
            if d.written >= d.next_checkpoint
                && d.written < length
                && d.last_checkpoint.elapsed() >= sh.timing.checkpoint_every
            {
                d.last_checkpoint = Instant::now();
                self.slots[slot_index(slot)].checkpoint();
                if let Phase::Installing { written: w, .. } = &mut run.state.phase {
                    *w = d.written;
                }
                self.save(&run.state);
                d.next_checkpoint = d.written + sh.timing.checkpoint_bytes;
                self.progress(sh, run, &release, d.written);
            }
        }
        let medium = &mut self.slots[slot_index(slot)];
        medium.sync();
        let verdict = match std::mem::replace(&mut d.check, Check::Slot) {
            Check::Agent(check) => check.finish(),
            Check::Slot => {
                if medium.len() != length {
                    Err(TufError::LengthMismatch {
                        what: what.to_owned(),
                        expected: length,
                        found: medium.len(),
                    })
                } else if medium.sha256().as_deref() != release.sha256() {
                    Err(TufError::HashMismatch {
                        what: what.to_owned(),
                        algorithm: "sha256".into(),
                    })
                } else {
                    Ok(())
                }
            }
        };
        verdict.map_err(|e| match e {
            TufError::LengthMismatch { .. } => Refusal::new(Reason::Truncated, e),
            other => Refusal::new(
                Reason::HashMismatch,
                format!("{other}; slot {slot} stays marked bad and is never booted"),
            ),
        })?;
        self.progress(sh, run, &release, d.written);
        Ok(true)
    }

    /// A progress report (best effort), as the daemon's progress callback.
    fn progress(&self, sh: &Shared, run: &mut Running, release: &Release, written: u64) {
        let pct = (written.saturating_mul(100) / release.length.max(1)).min(100) as u8;
        if let Some(session) = run.session.as_mut() {
            report(
                sh,
                session.as_mut(),
                release.assignment.as_deref(),
                "downloading",
                Some(pct),
                json!({"target": release.target, "written": written}),
            );
        }
    }

    /// A refusal while streaming: a retryable one (network) keeps the install for resuming, any
    /// other ends it with a `failed` report (`Device::install`).
    fn install_refused(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        d: &Download,
        refusal: Refusal,
    ) -> PassEnd {
        self.note(
            sh,
            format!("[{}] {}", refusal.reason.as_str(), refusal.detail),
        );
        if refusal.is_retryable() {
            Counters::inc(&sh.counters.download_errors);
        } else {
            let release = &d.verified.release;
            run.state.phase = Phase::Idle;
            run.state.last_result = Some(LastResult {
                target: release.target.clone(),
                version: release.version.clone(),
                reason: refusal.reason,
                detail: refusal.detail.clone(),
            });
            queue(
                &mut run.state,
                "failed",
                release,
                refusal.reason,
                json!({"detail": refusal.detail}),
            );
            self.save(&run.state);
            Counters::inc(&sh.counters.install_failures);
        }
        if let Some(mut session) = run.session.take() {
            self.flush(sh, &mut run.state, session.as_mut());
        }
        PassEnd::Done(false)
    }

    /// The image is in the slot and verified: activate it, or (download only) stop there.
    fn finish_install(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        d: Download,
    ) -> Result<PassEnd, Crash> {
        let release = &d.verified.release;
        if d.kind == UpdateKind::DownloadOnly {
            // Verified in the inactive slot, which stays marked bad: the bootloader never picks
            // it until an install activates it.
            run.state.phase = Phase::Idle;
            run.state.slots.insert(d.slot, SlotContent::from(release));
            run.state.downloaded_for = release.assignment.clone();
            let slots = self.slot_states(&run.state);
            queue(
                &mut run.state,
                "downloaded",
                release,
                Reason::Ok,
                json!({"slot": d.slot.name(), "slots": slots}),
            );
            self.save(&run.state);
            Counters::inc(&sh.counters.downloaded);
            if let Some(mut session) = run.session.take() {
                self.flush(sh, &mut run.state, session.as_mut());
            }
            return Ok(PassEnd::Done(true));
        }
        self.activate(sh, run, d.slot, &d.verified)
    }

    /// `Device::install`'s activation, then the daemon's flush, `rebooting` report and reboot.
    fn activate(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        slot: Slot,
        v: &Verified,
    ) -> Result<PassEnd, Crash> {
        self.crash_at(CrashPoint::StreamVerified)?;
        run.state.phase = Phase::Activated {
            slot,
            release: v.release.clone(),
            boot_id: run.boot_id.clone(),
            activations: 1,
        };
        run.state.slots.insert(slot, SlotContent::from(&v.release));
        self.save(&run.state);
        self.crash_at(CrashPoint::ActivatedSaved)?;
        self.boot.set_primary(slot);
        self.crash_at(CrashPoint::PrimarySet)?;
        if let Some(mut session) = run.session.take() {
            self.flush(sh, &mut run.state, session.as_mut());
            report(
                sh,
                session.as_mut(),
                v.release.assignment.as_deref(),
                "rebooting",
                None,
                json!({"target": v.release.target, "slot": slot.name()}),
            );
        }
        Ok(PassEnd::Reboot)
    }

    /// Sends queued reports, keeping those the server did not store (`daemon::flush`).
    fn flush(&mut self, sh: &Shared, state: &mut AgentState, session: &mut dyn Session) {
        if state.outbox.is_empty() {
            return;
        }
        let before = state.outbox.len();
        let mut error = None;
        state.outbox.retain(|r| {
            match session.report(
                &r.id,
                &r.status,
                r.assignment.as_deref(),
                None,
                r.details.clone(),
            ) {
                Ok(()) => {
                    Counters::inc(&sh.counters.reports_sent);
                    false
                }
                Err(e) => {
                    Counters::inc(&sh.counters.report_errors);
                    error = Some(e);
                    true
                }
            }
        });
        if let Some(e) = error {
            self.note(sh, e);
        }
        if state.outbox.len() != before {
            self.save(state);
        }
    }

    /// The facts a poll tells the server (`daemon::facts`, plus region, tags and the
    /// simulated condition attributes).
    fn facts(&self, state: &AgentState, now: u64) -> serde_json::Value {
        let running = state.committed.and_then(|s| state.slots.get(&s));
        let mut slots = serde_json::Map::new();
        for slot in Slot::BOTH {
            let value = if state.committed == Some(slot) {
                "active"
            } else {
                match self.boot.health(slot) {
                    SlotHealth::Good => "good",
                    SlotHealth::Bad => "bad",
                }
            };
            slots.insert(slot.name().to_ascii_lowercase(), value.into());
        }
        let (battery, mains) = self.profile.power(now);
        json!({
            "hardware_id": self.profile.hardware_id,
            "firmware_version": running.map_or("unknown", |c| c.version.as_str()),
            "security_version": self.security_version,
            "slots": slots,
            "region": self.profile.region,
            "tags": self.profile.tags,
            "attributes": {"battery_pct": battery, "on_mains": mains},
        })
    }

    // ---- observation ---------------------------------------------------------------------

    /// The committed firmware version, as persisted.
    pub(crate) fn version(&self) -> &str {
        self.persisted
            .committed
            .and_then(|s| self.persisted.slots.get(&s))
            .map_or("unknown", |c| c.version.as_str())
    }

    pub(crate) fn activity(&self, now: u64) -> Activity {
        if self.bricked {
            Activity::Bricked
        } else if self.run.is_none() {
            Activity::Off
        } else if self.profile.offline_until(now).is_some() {
            Activity::Offline
        } else if self.persisted.phase != Phase::Idle
            || self.run.as_ref().is_some_and(|r| r.download.is_some())
        {
            Activity::Busy
        } else {
            Activity::Idle
        }
    }

    /// Whether the device has settled in a consistent state: running its committed slot with
    /// nothing in progress, the bootloader agreeing, the slot holding what the state says.
    pub(crate) fn settled(&self) -> Result<(), String> {
        if self.bricked {
            return Err("bricked: no slot boots".into());
        }
        let state = &self.persisted;
        if state.phase != Phase::Idle {
            return Err(format!(
                "an update is in progress (phase {})",
                phase_name(&state.phase)
            ));
        }
        let committed = state.committed.ok_or("no committed slot")?;
        let run = self.run.as_ref().ok_or("powered off")?;
        if run.booted != committed {
            return Err(format!(
                "runs slot {} but slot {committed} is committed",
                run.booted
            ));
        }
        // The next power-on must boot the committed slot. (Its being first in the boot order is
        // not required: after a power cut between marking the new slot bad and making the old
        // one primary, the agent finishes the rollback with the bad slot still first in the
        // order, with no attempts left, so the bootloader skips it.)
        let next = self.boot.clone().boot();
        if next != Some(committed) {
            return Err(format!(
                "the next power-on boots {next:?}, not the committed slot {committed}"
            ));
        }
        if self.boot.health(committed) != SlotHealth::Good {
            return Err(format!("the committed slot {committed} is marked bad"));
        }
        let content = state
            .slots
            .get(&committed)
            .ok_or("the committed slot's content is unknown")?;
        let medium = &self.slots[slot_index(committed)];
        if medium.sha256().as_deref() != Some(content.sha256.as_str()) {
            return Err(format!(
                "slot {committed} does not hold {} (sha256 {})",
                content.target, content.sha256
            ));
        }
        if !state.outbox.is_empty() {
            return Err(format!(
                "{} report(s) not stored by the server yet",
                state.outbox.len()
            ));
        }
        if self.told.as_deref() != Some(content.version.as_str()) {
            return Err(format!(
                "the server has not been told it runs {} yet (no poll since)",
                content.version
            ));
        }
        Ok(())
    }

    pub(crate) fn snapshot(&self, now: u64) -> crate::DeviceStatus {
        crate::DeviceStatus {
            id: self.profile.identity.id.clone(),
            hardware_id: self.profile.hardware_id.clone(),
            region: self.profile.region.clone(),
            tags: self.profile.tags.clone(),
            activity: self.activity(now),
            version: self.version().to_owned(),
            phase: phase_name(&self.persisted.phase),
            committed: self.persisted.committed,
            running: self.run.as_ref().map(|r| r.booted),
            primary: self.boot.primary(),
            security_version: self.security_version,
            last_result: self.persisted.last_result.clone(),
            unsent_reports: self.persisted.outbox.len(),
            boots: self.boots,
            settled: self.settled(),
            last_error: self.last_error.clone(),
        }
    }
}

/// What `begin_install` set up.
enum Begin {
    AlreadyRunning,
    Staged { slot: Slot, verified: Box<Verified> },
    Streaming,
}

/// Queues a report in the state's outbox (`Device::queue`: the same JSON shape).
fn queue(
    state: &mut AgentState,
    status: &str,
    release: &Release,
    reason: Reason,
    details: serde_json::Value,
) {
    state.queue_report(
        rampart_agent::director::random_id(),
        status,
        release,
        reason,
        details,
    );
}

/// A best-effort report (not queued), as `ServerClient::report` sends them.
fn report(
    sh: &Shared,
    session: &mut dyn Session,
    assignment: Option<&str>,
    status: &str,
    progress: Option<u8>,
    details: serde_json::Value,
) {
    let id = rampart_agent::director::random_id();
    match session.report(&id, status, assignment, progress, details) {
        Ok(()) => Counters::inc(&sh.counters.reports_sent),
        Err(_) => Counters::inc(&sh.counters.report_errors),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
