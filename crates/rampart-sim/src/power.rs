//! Power cuts: the in-memory write layer the agent's flow writes through on a virtual device
//! ([`MemDisk`], the simulator's counterpart of the agent's `Disk`), and the fault plan that
//! cuts the power at one write step of a release's install and boot flow.
//!
//! A planned [`CrashPoint`] names a step by what it writes (the state saved in a given phase,
//! a slot marked bad or good, the bootloader switched, the image reaching a byte count), so the
//! plan means the same step whatever the order of the writes around it. Once the power is cut,
//! every later write fails as it does on the agent's `Disk`, so the agent's code unwinds
//! without touching the device again; the simulator then powers the device off and on.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::path::Path;

use rampart_agent::disk::DiskError;
use rampart_boot::ab::SlotHealth;
use rampart_boot::flow::Phase;
use rampart_tuf_client::store::{MetadataStore, write_atomic};

use crate::rng::Rng;

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
    pub(crate) fn pick(rng: &mut Rng, length: u64) -> CrashPoint {
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

/// What a write step changes.
pub(crate) enum Write<'a> {
    /// The agent's state file, replaced by one in this phase.
    State(&'a Phase),
    /// A slot marked good or bad in the bootloader environment.
    SlotHealth(SlotHealth),
    /// The bootloader's primary slot switched.
    Primary,
    /// Image bytes written, up to this many in all.
    Image { written: u64 },
    /// The anti-rollback counter.
    SecurityVersion,
    /// The measurement log of the running boot.
    BootLog,
}

/// The phase of the last state saved, as far as the fault plan needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Saved {
    Idle,
    Installing,
    Activated,
    RollingBack,
    Mirroring,
}

impl Saved {
    fn of(phase: &Phase) -> Saved {
        match phase {
            Phase::Idle => Saved::Idle,
            Phase::Installing { .. } => Saved::Installing,
            Phase::Activated { .. } => Saved::Activated,
            Phase::RollingBack { .. } => Saved::RollingBack,
            Phase::Mirroring { .. } => Saved::Mirroring,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Before,
    After,
}

impl CrashPoint {
    /// Whether this point is `write`, given the phase of the last saved state, and whether the
    /// cut comes before or after it.
    fn strikes(self, write: &Write, saved: Saved) -> Option<When> {
        use CrashPoint as P;
        let after = |hit: bool| hit.then_some(When::After);
        match (self, write) {
            (P::InstallingSaved, Write::State(Phase::Installing { written, .. })) => {
                after(*written == 0)
            }
            (P::SlotMarkedBad, Write::SlotHealth(SlotHealth::Bad)) => {
                after(saved == Saved::Installing)
            }
            (P::MidStream(at), Write::Image { written }) => after(*written >= at),
            (P::StreamVerified, Write::State(Phase::Activated { .. })) => {
                (saved != Saved::Activated).then_some(When::Before)
            }
            (P::ActivatedSaved, Write::State(Phase::Activated { .. })) => {
                after(saved != Saved::Activated)
            }
            (P::PrimarySet, Write::Primary) => after(saved == Saved::Activated),
            (P::MarkedGood, Write::SlotHealth(SlotHealth::Good)) => {
                after(saved == Saved::Activated)
            }
            (P::RollingBackSaved, Write::State(Phase::RollingBack { .. })) => after(true),
            (P::RollbackMarkedBad, Write::SlotHealth(SlotHealth::Bad)) => {
                after(matches!(saved, Saved::RollingBack | Saved::Activated))
            }
            _ => None,
        }
    }
}

/// The fault plan of one device: one power cut per release at most in the install and boot
/// flow, and one while the trusted metadata for an assigned release is stored.
#[derive(Debug)]
struct Plan {
    for_target: Option<String>,
    point: Option<CrashPoint>,
    saved: Saved,
    metadata_for: Option<String>,
    /// The metadata write (counted from 1) the cut strikes, and whether after it.
    metadata_cut: Option<(u32, When)>,
    metadata_writes: u32,
}

/// One device's power: the fault plan, and whether the power is cut. Shared by its write
/// layer and its simulated health check.
#[derive(Debug)]
pub(crate) struct PowerSwitch {
    plan: Mutex<Plan>,
    cut: AtomicBool,
    steps: AtomicU64,
}

impl PowerSwitch {
    pub(crate) fn new() -> Arc<PowerSwitch> {
        Arc::new(PowerSwitch {
            plan: Mutex::new(Plan {
                for_target: None,
                point: None,
                saved: Saved::Idle,
                metadata_for: None,
                metadata_cut: None,
                metadata_writes: 0,
            }),
            cut: AtomicBool::new(false),
            steps: AtomicU64::new(0),
        })
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the power was cut (the device must be powered off and on).
    pub(crate) fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }

    /// Powered on again after a cut.
    pub(crate) fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// The health check runs: cuts the power if that is the planned point.
    pub(crate) fn health_check(&self) -> bool {
        let mut plan = self.plan();
        if plan.point == Some(CrashPoint::HealthCheck) {
            plan.point = None;
            self.cut.store(true, Ordering::SeqCst);
        }
        self.is_cut()
    }

    /// Plans the power cut for the release `target`, once per release: `pick` decides it.
    pub(crate) fn plan_for(&self, target: &str, pick: impl FnOnce() -> Option<CrashPoint>) {
        let mut plan = self.plan();
        if plan.for_target.as_deref() == Some(target) {
            return;
        }
        plan.for_target = Some(target.to_owned());
        plan.point = pick();
    }

    /// Plans the power cut among the metadata writes of verifying `target`, once per release:
    /// `pick` gives the write (counted from 1) and whether the cut comes after it.
    pub(crate) fn plan_metadata_for(
        &self,
        target: &str,
        pick: impl FnOnce() -> Option<(u32, bool)>,
    ) {
        let mut plan = self.plan();
        if plan.metadata_for.as_deref() == Some(target) {
            return;
        }
        plan.metadata_for = Some(target.to_owned());
        plan.metadata_writes = 0;
        plan.metadata_cut =
            pick().map(|(n, after)| (n, if after { When::After } else { When::Before }));
    }

    /// Plans a power cut at `point` during the install of `target` (tests).
    #[cfg(test)]
    pub(crate) fn force(&self, target: &str, point: CrashPoint) {
        let mut plan = self.plan();
        plan.for_target = Some(target.to_owned());
        plan.point = Some(point);
    }
}

/// The write layer of a virtual device (see the module documentation).
pub(crate) struct MemDisk {
    pub(crate) power: Arc<PowerSwitch>,
}

impl MemDisk {
    fn dead(&self, what: &str) -> DiskError {
        DiskError::Crashed {
            step: self.power.steps.load(Ordering::SeqCst),
            what: what.to_owned(),
        }
    }

    /// Fails once the power is cut.
    pub(crate) fn alive(&self, what: &str) -> Result<(), DiskError> {
        if self.power.is_cut() {
            return Err(self.dead(what));
        }
        Ok(())
    }

    /// Runs one write step: `change` makes it, unless the planned power cut strikes before
    /// it; a cut planned after it lets it happen and then fails.
    pub(crate) fn step<T>(&self, write: Write, change: impl FnOnce() -> T) -> Result<T, DiskError> {
        let what = match write {
            Write::State(_) => "state",
            Write::SlotHealth(_) => "slot health",
            Write::Primary => "primary slot",
            Write::Image { .. } => "image",
            Write::SecurityVersion => "security version",
            Write::BootLog => "boot measurement log",
        };
        self.alive(what)?;
        self.power.steps.fetch_add(1, Ordering::SeqCst);
        let mut plan = self.power.plan();
        let when = plan.point.and_then(|p| p.strikes(&write, plan.saved));
        if when.is_some() {
            plan.point = None;
        }
        if when == Some(When::Before) {
            self.power.cut.store(true, Ordering::SeqCst);
            return Err(self.dead(what));
        }
        let out = change();
        if let Write::State(phase) = write {
            plan.saved = Saved::of(phase);
        }
        if when == Some(When::After) {
            self.power.cut.store(true, Ordering::SeqCst);
            return Err(self.dead(what));
        }
        Ok(out)
    }
}

/// The trusted metadata `verify_assigned` keeps (real files in the device's state directory,
/// each replaced whole and atomically), where the fault plan may cut the power before or after
/// one of the writes.
pub(crate) struct MetadataFiles {
    pub(crate) power: Arc<PowerSwitch>,
}

impl MetadataStore for MetadataFiles {
    fn replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let cut = || std::io::Error::other("simulated power cut while storing trusted metadata");
        if self.power.is_cut() {
            return Err(cut());
        }
        let when = {
            let mut plan = self.power.plan();
            plan.metadata_writes += 1;
            let n = plan.metadata_writes;
            match plan.metadata_cut {
                Some((at, when)) if at == n => {
                    plan.metadata_cut = None;
                    Some(when)
                }
                _ => None,
            }
        };
        if when == Some(When::Before) {
            self.power.cut.store(true, Ordering::SeqCst);
            return Err(cut());
        }
        write_atomic(path, bytes)?;
        if when == Some(When::After) {
            self.power.cut.store(true, Ordering::SeqCst);
            return Err(cut());
        }
        Ok(())
    }

    fn to_box(&self) -> Box<dyn MetadataStore> {
        Box::new(MetadataFiles {
            power: self.power.clone(),
        })
    }
}
