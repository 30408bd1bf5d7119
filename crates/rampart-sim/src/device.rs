//! One virtual device: the agent's own `Device` (`rampart_agent::device`) on in-memory
//! hardware ([`SimPlatform`]: two slots keeping a length and a hash state, the bootloader
//! environment, the state file), driven by the fleet's events.
//!
//! Every decision and every write of the install and boot flow is the agent's code: the
//! start of a boot (`on_start` and its actions), the checks before an install, the resumable
//! stream into the inactive slot, activation, staging of download-only releases, commit and
//! rollback, with the same reports, JSON shapes and reason codes. What is simulated around it:
//! power (on, off, cut at a planned write step, see [`crate::power`]), the health check (the
//! fault rules decide), the link (sessions with the server, slow links that get a byte budget
//! per tick), and a thin policy of the daemon's pass: poll, the assignment's type (a `soft`
//! one waits while the battery is low and the device is off mains), verification, reports.
//!
//! A device's memory is split the way a power cut splits it:
//!
//! * persistent ([`SimPlatform`]): the state file as the agent last saved it, the bootloader
//!   environment, the slots' synced content, and the state directory on disk (TUF and director
//!   metadata, the anti-rollback counter) that `verify_assigned` keeps;
//! * volatile ([`Running`]): the agent's working copy of its state, the open session and
//!   download. A power cut drops all of it and the next power-on starts from the persistent
//!   part, through the bootloader and the agent's start, as a real device would.
//!
//! The device is driven by events ([`VirtualDevice::step`]): power on, an agent pass (reports,
//! poll, verify, install), or the next piece of a slow download. Each returns when the next
//! event is due, so a bounded pool of workers serves any number of devices.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rampart_agent::device::{Device, HealthCheck, Started};
use rampart_agent::install::StreamInstall;
use rampart_boot::ab::{Slot, SlotHealth};
use rampart_boot::flow::{AgentState, Phase, Release, SlotContent};

use crate::compromise::{Infection, StolenRelease};
use crate::hw::{Bootloader, MemSlot};
use crate::link::{Connect, Identity, Session, UpdateKind};
use crate::platform::{MemWriter, SimPlatform};
use crate::power::{MemDisk, PowerSwitch};
use crate::rng::{Rng, hash_str};
use crate::spec::{FaultRule, Faults, InitialFirmware, Timing};
use crate::stats::{Activity, Counters};

pub(crate) use crate::power::CrashPoint;

mod compromised;
mod evidence;
mod pass;

/// Bytes written into a slot at a time (as a socket delivers them).
const CHUNK: usize = 4 * 1024;
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
    pub(crate) link: Box<dyn Connect>,
    pub(crate) counters: Counters,
    /// Images by SHA-256: the factory image and every release a device verified. A slot boots
    /// only if its content hashes to one of them (with the right length).
    pub(crate) images: RwLock<HashMap<String, Image>>,
    /// The latest error any device met (device id: error), for status output.
    pub(crate) last_error: std::sync::Mutex<Option<String>>,
    /// What `stolen-key` devices run.
    pub(crate) stolen: StolenRelease,
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
    /// Acts on a signed quarantine instruction (runs its simulated containment hook and
    /// acknowledges it); an uncooperative device ignores it (the server enforces it anyway).
    pub(crate) cooperative: bool,
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

/// The injected power cut.
#[derive(Debug)]
pub(crate) struct Crash;

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

/// A download in progress: the agent's stream into the slot.
pub(crate) struct Download {
    stream: Box<StreamInstall<MemWriter>>,
    kind: UpdateKind,
    /// A slow link's bytes are owed since this time (ms since the fleet started).
    owed_since: Option<u64>,
}

/// What is lost at a power cut.
pub(crate) struct Running {
    /// The agent's working copy of its state (saved to [`SimPlatform::persisted`]).
    state: AgentState,
    failures: u32,
    passes: u64,
    interval: Duration,
    session: Option<Box<dyn Session>>,
    download: Option<Download>,
}

/// A virtual device.
pub(crate) struct VirtualDevice {
    pub(crate) profile: Profile,
    /// The agent's device on the simulated hardware (persistent), with its write layer.
    agent: Device<SimPlatform>,
    power: Arc<PowerSwitch>,
    // ---- simulation control
    boots: u64,
    bricked: bool,
    pub(crate) pending: Pending,
    last_error: Option<String>,
    /// The firmware version the last answered poll told the server.
    told: Option<String>,
    /// The agent log and the evidence bundles waiting for upload (the state directory's).
    evidence: evidence::DeviceEvidence,
    /// The compromise planned for this device (game days), and what happened next.
    pub(crate) infection: Option<Infection>,
    /// The first poll answer carrying a signed `quarantined` statement (ms since the start).
    pub(crate) quarantined: Option<u64>,
    /// When this device's queued event is due (ms since the start): the fleet's queue may
    /// also hold an entry it replaced (a compromise that reboots the device at once), which
    /// is skipped because its time is not this one.
    pub(crate) due: u64,
    // ---- volatile
    run: Option<Running>,
}

fn phase_name(phase: &Phase) -> &'static str {
    match phase {
        Phase::Idle => "idle",
        Phase::Installing { .. } => "installing",
        Phase::Activated { .. } => "activated",
        Phase::RollingBack { .. } => "rolling_back",
        Phase::Mirroring { .. } => "mirroring",
    }
}

/// The agent's configuration of a virtual device: its state directory and hardware id, and
/// the checkpoints of the fleet's timing. The slot, boot and bootloader settings are not read
/// (the platform is in memory).
fn agent_config(profile: &Profile, timing: &Timing) -> rampart_agent::config::Config {
    use rampart_agent::config::{
        BootloaderConfig, BootloaderKind, Config, InstallConfig, SlotsConfig,
    };
    Config {
        state_dir: profile.state_dir.clone(),
        hardware_id: profile.hardware_id.clone(),
        server: None,
        slots: SlotsConfig {
            a: PathBuf::new(),
            b: PathBuf::new(),
        },
        bootloader: BootloaderConfig {
            kind: BootloaderKind::Custom,
            grub_env: None,
            fw_env_config: None,
            script: None,
            tries: rampart_boot::ab::DEFAULT_TRIES,
        },
        boot: Default::default(),
        health: Default::default(),
        install: InstallConfig {
            checkpoint_bytes: timing.checkpoint_bytes,
            checkpoint_secs: timing.checkpoint_every.as_secs(),
            ..Default::default()
        },
        tpm: None,
        incident: Default::default(),
        evidence: Default::default(),
    }
}

/// The simulated health check of a new slot: the fault rules' verdict, decided before the
/// boot; the planned power cut may strike while it runs.
struct SimHealth {
    verdict: Result<(), String>,
    power: Arc<PowerSwitch>,
}

impl HealthCheck for SimHealth {
    fn check(&self, _: Duration) -> Result<(), String> {
        if self.power.health_check() {
            return Err("the power was cut during the health check".into());
        }
        self.verdict.clone()
    }
}

impl VirtualDevice {
    /// A device fresh from the factory: `initial` committed in slot A, slot B blank.
    pub(crate) fn new(
        profile: Profile,
        initial: &InitialFirmware,
        tries: u8,
        timing: &Timing,
        slot_capacity: u64,
        tpm: Option<rampart_attest::soft::SoftTpm>,
    ) -> VirtualDevice {
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
                length: initial.length,
            },
        );
        let platform = SimPlatform {
            boot: Bootloader::factory(tries),
            slots: [
                MemSlot::flashed(initial.length, &initial.sha256),
                MemSlot::blank(),
            ],
            persisted: state,
            security_version: initial.security_version,
            capacity: slot_capacity,
            booted: Slot::A,
            boot_id: String::new(),
            tpm,
            boot_log: None,
        };
        let power = PowerSwitch::new();
        let disk = MemDisk {
            power: power.clone(),
        };
        let mut agent = Device::with_platform(agent_config(&profile, timing), disk, platform);
        agent.chunk = CHUNK;
        VirtualDevice {
            profile,
            agent,
            power,
            boots: 0,
            bricked: false,
            pending: Pending::Boot,
            last_error: None,
            told: None,
            evidence: Default::default(),
            infection: None,
            quarantined: None,
            due: 0,
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
        self.note_recovery(now);
        self.pending = wake.pending;
        (wake.pending != Pending::Never).then_some(wake.at)
    }

    // ---- power ---------------------------------------------------------------------------

    fn power_loss(&mut self, sh: &Shared) {
        Counters::inc(&sh.counters.crashes);
        self.run = None;
        self.agent.platform.power_loss();
        self.power.restore();
    }

    /// The planned power cut struck: the device is dead until powered on again.
    fn crashed(&self) -> Result<(), Crash> {
        if self.power.is_cut() {
            return Err(Crash);
        }
        Ok(())
    }

    /// Power-on: the bootloader picks a slot; a slot that does not come up is retried (the
    /// watchdog resets the board), counting its attempts down as the bootloader does.
    fn power_on(&mut self, sh: &Shared, now: u64) -> Result<Wake, Crash> {
        self.run = None;
        for _ in 0..MAX_POWER_ON {
            let Some(slot) = self.agent.platform.boot.boot() else {
                break;
            };
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
        let medium = self.agent.platform.medium(slot);
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

    /// The agent's start of a boot (`Device::start`), then a pass right after it (reports,
    /// then the poll), as the daemon does.
    fn start(&mut self, sh: &Shared, booted: Slot, now: u64) -> Result<Wake, Crash> {
        self.boots += 1;
        self.agent.platform.booted = booted;
        self.agent.platform.boot_id = format!("{}-boot-{}", self.profile.index, self.boots);
        // A power-on resets the TPM: its PCRs start from zeros, to be measured again.
        if let Some(tpm) = &mut self.agent.platform.tpm {
            tpm.reboot();
        }
        let mut state = self.agent.platform.persisted.clone();
        let verdict = match &state.phase {
            Phase::Activated { slot, release, .. } => self.health(sh, release, *slot),
            _ => Ok(()),
        };
        let health = SimHealth {
            verdict,
            power: self.power.clone(),
        };
        let started = self.agent.start(&mut state, &health);
        self.crashed()?;
        match started {
            Ok(Started::Reboot) => return Ok(Wake::boot(now + ms(sh.timing.reboot_delay))),
            Ok(Started::Ready {
                committed,
                rolled_back,
            }) => {
                // The agent measures each boot into the TPM (devices of an attesting fleet): the
                // slot's real bytes, whatever the state file claims; a compromise that extends
                // the PCR behind the log's back does so again.
                let measured = self.agent.measure_boot(&state);
                self.crashed()?;
                self.rogue_measurement();
                if let Err(r) = measured {
                    self.note(
                        sh,
                        format!("measured boot: [{}] {}", r.reason.as_str(), r.detail),
                    );
                }
                if committed.is_some() {
                    Counters::inc(&sh.counters.installs);
                }
                if let Some(r) = rolled_back {
                    Counters::inc(&sh.counters.rollbacks);
                    if r.1 == rampart_boot::flow::Reason::BootloaderFallback {
                        Counters::inc(&sh.counters.fallbacks);
                    }
                }
            }
            Err(r) => self.note(sh, format!("[{}] {}", r.reason.as_str(), r.detail)),
        }
        self.run = Some(Running {
            state,
            failures: 0,
            passes: 0,
            interval: sh.timing.poll_interval.unwrap_or(DEFAULT_POLL),
            session: None,
            download: None,
        });
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

    /// The TPM's endorsement key (TPMT_PUBLIC), for a device that has a TPM.
    pub(crate) fn endorsement_key(
        &mut self,
    ) -> Option<Result<Vec<u8>, rampart_attest::device::TpmError>> {
        use rampart_attest::device::TpmDevice as _;
        let tpm = self.agent.platform.tpm.as_mut()?;
        Some(tpm.endorsement().map(|e| e.public))
    }

    /// Records an error: the device's last, and the fleet's latest.
    fn note(&mut self, sh: &Shared, error: String) {
        let mut latest = sh.last_error.lock().unwrap_or_else(|e| e.into_inner());
        *latest = Some(format!("{}: {error}", self.profile.identity.id));
        drop(latest);
        self.last_error = Some(error);
    }

    /// Plans a power cut at `point` during the install of `target` (tests).
    #[cfg(test)]
    pub(crate) fn force_crash(&mut self, target: &str, point: CrashPoint) {
        self.power.force(target, point);
    }

    /// Plans the power cut among the trusted-metadata writes of verifying `target` (at one of
    /// the first five: director targets and version, and the image repository's timestamp,
    /// snapshot and targets), once per release.
    fn plan_metadata_cut(&mut self, sh: &Shared, target: &str) {
        let (seed, index, rate) = (sh.seed, self.profile.index, sh.faults.crash_rate);
        self.power.plan_metadata_for(target, || {
            let mut rng = Rng::new(seed, index, "metadata-cut", hash_str(target));
            rng.chance(rate)
                .then(|| (1 + rng.below(5) as u32, rng.chance(0.5)))
        });
    }

    /// Plans a power cut at the `write`th trusted-metadata write of verifying `target`, before
    /// or `after` it (tests).
    #[cfg(test)]
    pub(crate) fn force_metadata_cut(&mut self, target: &str, write: u32, after: bool) {
        self.power
            .plan_metadata_for(target, || Some((write, after)));
    }

    /// Plans the power cut for `release`, once per release.
    fn plan_crash(&mut self, sh: &Shared, release: &Release) {
        let (seed, index, rate) = (sh.seed, self.profile.index, sh.faults.crash_rate);
        self.power.plan_for(&release.target, || {
            let mut rng = Rng::new(seed, index, "crash", hash_str(&release.target));
            rng.chance(rate)
                .then(|| CrashPoint::pick(&mut rng, release.length))
        });
    }

    // ---- observation ---------------------------------------------------------------------

    /// The committed firmware version, as persisted.
    pub(crate) fn version(&self) -> &str {
        self.agent
            .platform
            .persisted
            .committed
            .and_then(|s| self.agent.platform.persisted.slots.get(&s))
            .map_or("unknown", |c| c.version.as_str())
    }

    pub(crate) fn activity(&self, now: u64) -> Activity {
        if self.bricked {
            Activity::Bricked
        } else if self.run.is_none() {
            Activity::Off
        } else if self.profile.offline_until(now).is_some() {
            Activity::Offline
        } else if self.agent.platform.persisted.phase != Phase::Idle
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
        let state = &self.agent.platform.persisted;
        if state.phase != Phase::Idle {
            return Err(format!(
                "an update is in progress (phase {})",
                phase_name(&state.phase)
            ));
        }
        let committed = state.committed.ok_or("no committed slot")?;
        self.run.as_ref().ok_or("powered off")?;
        let booted = self.agent.platform.booted;
        if booted != committed {
            return Err(format!(
                "runs slot {booted} but slot {committed} is committed"
            ));
        }
        // The next power-on must boot the committed slot. (Its being first in the boot order is
        // not required: after a power cut between marking the new slot bad and making the old
        // one primary, the agent finishes the rollback with the bad slot still first in the
        // order, with no attempts left, so the bootloader skips it.)
        let next = self.agent.platform.boot.clone().boot();
        if next != Some(committed) {
            return Err(format!(
                "the next power-on boots {next:?}, not the committed slot {committed}"
            ));
        }
        if self.agent.platform.boot.health(committed) != SlotHealth::Good {
            return Err(format!("the committed slot {committed} is marked bad"));
        }
        let content = state
            .slots
            .get(&committed)
            .ok_or("the committed slot's content is unknown")?;
        let medium = self.agent.platform.medium(committed);
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
            phase: phase_name(&self.agent.platform.persisted.phase),
            committed: self.agent.platform.persisted.committed,
            running: self.run.as_ref().map(|_| self.agent.platform.booted),
            primary: self.agent.platform.boot.primary(),
            security_version: self.agent.platform.security_version,
            last_result: self.agent.platform.persisted.last_result.clone(),
            unsent_reports: self.agent.platform.persisted.outbox.len(),
            boots: self.boots,
            settled: self.settled(),
            last_error: self.last_error.clone(),
        }
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
