//! Building a fleet (certificates, state directories, profiles) and running it: a time-ordered
//! queue of device events served by a bounded pool of worker threads.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rampart_boot::ab::Slot;
use rampart_boot::flow::LastResult;
use rampart_pki::CertificateAuthority;

use crate::SimError;
use crate::device::{Image, Pending, Profile, Shared, VirtualDevice};
use crate::link::{Connect, Identity, ServerLink};
use crate::rng::Rng;
use crate::spec::FleetSpec;
use crate::stats::{Activity, Counters, Stats};

/// How long an idle worker sleeps at most before looking at the queue again (a push of an
/// earlier event wakes one sooner).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// A device as built: who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub id: String,
    pub hardware_id: String,
    pub region: String,
    pub tags: Vec<String>,
    /// Its state directory (TUF and director metadata, anti-rollback counter).
    pub state_dir: PathBuf,
    /// Downloads at a capped rate.
    pub slow_link: bool,
    /// Goes offline for a while.
    pub goes_offline: bool,
    /// Starts on a low battery, off mains (defers `soft` updates).
    pub low_battery: bool,
}

/// A device's state, from [`FleetHandle::devices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    pub id: String,
    pub hardware_id: String,
    pub region: String,
    pub tags: Vec<String>,
    pub activity: Activity,
    /// The committed slot's firmware version (persisted state).
    pub version: String,
    /// The persisted update phase: `idle`, `installing`, `activated`, `rolling_back`.
    pub phase: &'static str,
    pub committed: Option<Slot>,
    /// The slot it runs (`None` while powered off).
    pub running: Option<Slot>,
    /// The bootloader's primary slot.
    pub primary: Slot,
    /// The anti-rollback counter.
    pub security_version: u64,
    pub last_result: Option<LastResult>,
    /// Queued reports the server has not stored yet.
    pub unsent_reports: usize,
    /// Power-ons so far.
    pub boots: u64,
    /// `Ok` when settled: running the committed slot, nothing in progress, the bootloader and
    /// the slot agreeing with the state, every report stored, and the server told the current
    /// version (a poll since it changed). Otherwise what is not.
    pub settled: Result<(), String>,
    /// The last error (refusal, network, server) the device met, for diagnosis.
    pub last_error: Option<String>,
}

/// Where the state directories are.
enum Root {
    Temp(tempfile::TempDir),
    Given(PathBuf),
}

impl Root {
    fn path(&self) -> &Path {
        match self {
            Root::Temp(t) => t.path(),
            Root::Given(p) => p,
        }
    }
}

/// A built fleet, not yet running.
pub struct Fleet {
    pub(crate) devices: Vec<VirtualDevice>,
    pub(crate) boot_at: Vec<u64>,
    pub(crate) shared: Shared,
    workers: usize,
    root: Root,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("devices", &self.devices.len())
            .field("workers", &self.workers)
            .field("state_root", &self.root.path())
            .finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SimError + '_ {
    move |source| SimError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Fleet {
    /// Builds the fleet of `spec`: validates the spec and the trust it provisions, issues every
    /// device a certificate from the manufacturer CA `ca` (in parallel), and provisions each
    /// device's state directory (image root, director root, anti-rollback counter, log policy).
    pub fn build(spec: FleetSpec, ca: &CertificateAuthority) -> Result<Fleet, SimError> {
        spec.validate()?;
        check_trust(&spec)?;
        let identities = issue(&spec, ca)?;
        // The server CA and the device identities are usable by the agent's TLS connector
        // (checked once here, so a bad --server-ca fails now rather than on every device).
        if let Some(first) = identities.first() {
            rampart_agent::tls::device_agent(
                &spec.server_ca_pem,
                first.cert_pem.as_bytes(),
                &rampart_agent::tls::ClientKey::Pem(first.key_pem.as_bytes().to_vec()),
            )
            .map_err(|e| SimError::Tls(e.to_string()))?;
        }
        let link = Box::new(ServerLink {
            url: spec.server_url.clone(),
            server_ca_pem: spec.server_ca_pem.clone(),
        });
        Fleet::assemble(spec, identities, link, true)
    }

    /// A fleet over any link (unit tests use an in-memory server); `provision` writes the
    /// trust anchors into the state directories.
    pub(crate) fn assemble(
        spec: FleetSpec,
        identities: Vec<Identity>,
        link: Box<dyn Connect>,
        provision: bool,
    ) -> Result<Fleet, SimError> {
        spec.validate()?;
        let root = match &spec.state_root {
            Some(dir) => {
                if dir.exists() && std::fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
                    return Err(SimError::Spec(format!(
                        "the state root {} is not empty: give a new or empty directory",
                        dir.display()
                    )));
                }
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                Root::Given(dir.clone())
            }
            None => Root::Temp(
                tempfile::Builder::new()
                    .prefix("rampart-sim-")
                    .tempdir()
                    .map_err(io(Path::new("temporary directory")))?,
            ),
        };
        let mut devices = Vec::with_capacity(identities.len());
        let mut boot_at = Vec::with_capacity(identities.len());
        let f = &spec.faults;
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        for (index, identity) in identities.into_iter().enumerate() {
            let mut rng = Rng::new(spec.seed, index, "profile", 0);
            let hardware_id = spec.models.pick(&mut rng).to_owned();
            let region = spec.regions.pick(&mut rng).to_owned();
            let tags = spec
                .tags
                .iter()
                .filter(|(_, p)| rng.chance(*p))
                .map(|(t, _)| t.clone())
                .collect();
            let slow = rng.chance(f.slow_rate).then_some(f.slow_bytes_per_sec);
            let offline = rng.chance(f.offline_rate).then(|| {
                let from = rng.below(ms(f.offline_for));
                (from, from + ms(f.offline_for))
            });
            let low = rng.chance(f.low_battery_rate);
            let (battery_pct, on_mains, plugged_in_at) = if low {
                (10, false, f.recharge_after.map(ms))
            } else {
                (40 + rng.below(61) as u8, rng.chance(0.5), None)
            };
            boot_at.push(rng.below(ms(spec.timing.boot_spread)));
            let cooperative = !rng.chance(f.uncooperative_rate);
            let state_dir = root.path().join(&identity.id);
            devices.push(VirtualDevice::new(
                Profile {
                    index,
                    identity,
                    hardware_id,
                    region,
                    tags,
                    slow,
                    offline,
                    battery_pct,
                    on_mains,
                    plugged_in_at,
                    state_dir,
                    cooperative,
                },
                &spec.initial,
                spec.tries,
                &spec.timing,
                spec.slot_capacity,
                spec.attest.then(|| soft_tpm(spec.seed, index)),
            ));
        }
        if provision {
            let dirs: Vec<&Path> = devices
                .iter()
                .map(|d| d.profile.state_dir.as_path())
                .collect();
            provision_all(&spec, &dirs)?;
        } else {
            for d in &devices {
                std::fs::create_dir_all(&d.profile.state_dir).map_err(io(&d.profile.state_dir))?;
            }
        }
        for (index, kind, at) in
            crate::compromise::victims(&spec.compromises, devices.len(), spec.seed)?
        {
            devices[index].infection = Some(crate::compromise::Infection::new(kind, at));
        }
        let mut images = HashMap::new();
        images.insert(
            spec.initial.sha256.to_ascii_lowercase(),
            Image {
                target: spec.initial.target.clone(),
                version: spec.initial.version.clone(),
                length: spec.initial.length,
            },
        );
        Ok(Fleet {
            devices,
            boot_at,
            shared: Shared {
                seed: spec.seed,
                faults: spec.faults.clone(),
                timing: spec.timing.clone(),
                link,
                counters: Counters::default(),
                images: RwLock::new(images),
                last_error: Mutex::new(None),
                stolen: spec.stolen.clone().unwrap_or_else(|| {
                    crate::compromise::StolenRelease::made_up(spec.initial.length)
                }),
            },
            workers: spec.workers,
            root,
        })
    }

    /// The devices, in order.
    pub fn devices(&self) -> Vec<DeviceInfo> {
        self.devices
            .iter()
            .map(|d| {
                let p = &d.profile;
                DeviceInfo {
                    id: p.identity.id.clone(),
                    hardware_id: p.hardware_id.clone(),
                    region: p.region.clone(),
                    tags: p.tags.clone(),
                    state_dir: p.state_dir.clone(),
                    slow_link: p.slow.is_some(),
                    goes_offline: p.offline.is_some(),
                    low_battery: p.battery_pct < crate::device::LOW_BATTERY_PCT && !p.on_mains,
                }
            })
            .collect()
    }

    /// The directory holding the devices' state directories.
    pub fn state_root(&self) -> &Path {
        self.root.path()
    }

    /// Each attesting device's endorsement key (its TPMT_PUBLIC), by device id: their TPMs
    /// carry no EK certificate, so the operator approves these keys
    /// (`POST /api/v1/attestation/approved-eks`, `rampart attest approve-ek`).
    pub fn endorsement_keys(&mut self) -> Result<Vec<(String, Vec<u8>)>, SimError> {
        let mut out = Vec::new();
        for d in &mut self.devices {
            if let Some(ek) = d.endorsement_key() {
                let ek =
                    ek.map_err(|e| SimError::Spec(format!("{}: {e}", d.profile.identity.id)))?;
                out.push((d.profile.identity.id.clone(), ek));
            }
        }
        Ok(out)
    }

    /// Powers the devices on (each at its time within the boot spread) and starts the workers.
    pub fn start(self) -> FleetHandle {
        let versions: Vec<Mutex<Summary>> = self
            .devices
            .iter()
            .map(|d| {
                Mutex::new(Summary {
                    version: d.version().to_owned(),
                    activity: Activity::Off,
                    settled: false,
                })
            })
            .collect();
        let mut devices = self.devices;
        for (device, at) in devices.iter_mut().zip(&self.boot_at) {
            device.due = *at;
        }
        let queue = Queues {
            continuations: self
                .boot_at
                .iter()
                .enumerate()
                .map(|(i, at)| Reverse((*at, i)))
                .collect(),
            passes: BinaryHeap::new(),
        };
        // Game days: each compromise strikes at its time, whatever the device is doing.
        let mut plan: Vec<(u64, usize)> = devices
            .iter()
            .enumerate()
            .filter_map(|(i, d)| d.infection.as_ref().map(|inf| (inf.at, i)))
            .collect();
        plan.sort_unstable();
        let inner = Arc::new(Inner {
            shared: self.shared,
            cells: devices.into_iter().map(Mutex::new).collect(),
            summaries: versions,
            queue: Mutex::new(queue),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            start: Instant::now(),
            started_at: std::time::SystemTime::now(),
        });
        let mut workers: Vec<JoinHandle<()>> = (0..self.workers)
            .map(|n| {
                let inner = Arc::clone(&inner);
                std::thread::Builder::new()
                    .name(format!("rampart-sim-{n}"))
                    .spawn(move || inner.work())
            })
            .filter_map(Result::ok)
            .collect();
        if !plan.is_empty() {
            let inner = Arc::clone(&inner);
            workers.extend(
                std::thread::Builder::new()
                    .name("rampart-sim-compromise".into())
                    .spawn(move || inner.inject(plan))
                    .ok(),
            );
        }
        FleetHandle {
            inner,
            workers,
            root: Some(self.root),
        }
    }
}

/// Checks the trust anchors once, before thousands of devices are provisioned with them.
fn check_trust(spec: &FleetSpec) -> Result<(), SimError> {
    rampart_core::TrustedSet::new(&spec.image_root, rampart_agent::daemon::now_unix())
        .map_err(|e| SimError::Trust(format!("the image repository root does not verify: {e}")))?;
    rampart_core::director::DirectorTrust::new(&spec.director_root)
        .map_err(|e| SimError::Trust(format!("the director root does not verify: {e}")))?;
    if let Some(log) = &spec.log {
        log.policy
            .parse::<rampart_log::policy::WitnessPolicy>()
            .map_err(|e| SimError::Trust(format!("the log policy is malformed: {e}")))?;
        rampart_log::note::Verifier::parse(log.release_key.trim())
            .map_err(|e| SimError::Trust(format!("the release key is not a verifier key: {e}")))?;
    }
    Ok(())
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Issues every device's certificate from the CA, spread over the cores.
fn issue(spec: &FleetSpec, ca: &CertificateAuthority) -> Result<Vec<Identity>, SimError> {
    let n = spec.devices;
    let per = n.div_ceil(threads());
    std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..n)
            .step_by(per.max(1))
            .map(|from| {
                scope.spawn(move || {
                    (from..(from + per).min(n))
                        .map(|i| {
                            let id = spec.device_id(i);
                            let cert = ca.issue_device(&id, spec.cert_validity_days).map_err(
                                |source| SimError::Certificate {
                                    device: id.clone(),
                                    source,
                                },
                            )?;
                            Ok(Identity {
                                id,
                                cert_pem: cert.cert_pem,
                                key_pem: cert.key_pem,
                            })
                        })
                        .collect::<Result<Vec<_>, SimError>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(n);
        for job in jobs {
            let part = job
                .join()
                .map_err(|_| SimError::Spec("a certificate thread panicked".into()))??;
            out.extend(part);
        }
        Ok(out)
    })
}

/// Writes each device's trust anchors, as `rampart-agent init` does: the image root as
/// `metadata/root.json`, the director root, the anti-rollback counter, the log policy.
fn provision_all(spec: &FleetSpec, dirs: &[&Path]) -> Result<(), SimError> {
    let per = dirs.len().div_ceil(threads()).max(1);
    let security = format!("{}\n", spec.initial.security_version);
    let log = spec.log.as_ref().map(|l| {
        (
            format!("{}\n", l.policy.trim_end()),
            format!("{}\n", l.release_key.trim()),
        )
    });
    std::thread::scope(|scope| {
        let jobs: Vec<_> = dirs
            .chunks(per)
            .map(|chunk| {
                let (security, log) = (&security, &log);
                scope.spawn(move || -> Result<(), SimError> {
                    for dir in chunk {
                        let metadata = dir.join("metadata");
                        let director = dir.join(rampart_agent::director::DIRECTOR_DIR);
                        for sub in [&metadata, &director] {
                            std::fs::create_dir_all(sub).map_err(io(sub))?;
                        }
                        let files = [
                            (metadata.join("root.json"), spec.image_root.as_slice()),
                            (
                                director.join(rampart_agent::director::DIRECTOR_ROOT),
                                spec.director_root.as_slice(),
                            ),
                            (
                                dir.join(rampart_agent::device::SECURITY_VERSION_FILE),
                                security.as_bytes(),
                            ),
                        ];
                        for (path, bytes) in files {
                            std::fs::write(&path, bytes).map_err(io(&path))?;
                        }
                        if let Some((policy, key)) = log {
                            for (name, text) in [
                                (rampart_agent::LOG_POLICY, policy),
                                (rampart_agent::RELEASE_KEY, key),
                            ] {
                                let path = dir.join(name);
                                std::fs::write(&path, text).map_err(io(&path))?;
                            }
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for job in jobs {
            job.join()
                .map_err(|_| SimError::Spec("a provisioning thread panicked".into()))??;
        }
        Ok(())
    })
}

/// What [`FleetHandle::stats`] reads without locking a device.
struct Summary {
    version: String,
    activity: Activity,
    settled: bool,
}

/// Device events by due time (ms since the start); each device is in one of them at most
/// once. Continuations (power-ons, slices of slow downloads) are served before agent passes
/// that are due as well: when the workers cannot keep up, new passes wait, but what is in
/// flight goes on (a boot or a slow link does not wait behind other devices' polls, which would
/// stretch its time and, for a download, trip the agent's minimum-rate rule).
struct Queues {
    continuations: BinaryHeap<Reverse<(u64, usize)>>,
    passes: BinaryHeap<Reverse<(u64, usize)>>,
}

impl Queues {
    fn earliest(&self) -> Option<u64> {
        let due = |h: &BinaryHeap<Reverse<(u64, usize)>>| h.peek().map(|Reverse((at, _))| *at);
        match (due(&self.continuations), due(&self.passes)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pop_due(&mut self, now: u64) -> Option<(u64, usize)> {
        for heap in [&mut self.continuations, &mut self.passes] {
            if heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
                return heap.pop().map(|Reverse(entry)| entry);
            }
        }
        None
    }

    fn push(&mut self, at: u64, index: usize, pass: bool) {
        let heap = if pass {
            &mut self.passes
        } else {
            &mut self.continuations
        };
        heap.push(Reverse((at, index)));
    }
}

struct Inner {
    shared: Shared,
    cells: Vec<Mutex<VirtualDevice>>,
    summaries: Vec<Mutex<Summary>>,
    queue: Mutex<Queues>,
    wake: Condvar,
    stop: AtomicBool,
    start: Instant,
    /// The wall-clock time of `start` (the game day compares device times with the server's).
    started_at: std::time::SystemTime,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking worker must not take the whole fleet down with it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Inner {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The next due event (its time, the device), waiting for it; `None` when stopping.
    fn next_due(&self) -> Option<(u64, usize)> {
        let mut queue = lock(&self.queue);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let now = self.now();
            if let Some(due) = queue.pop_due(now) {
                return Some(due);
            }
            let wait = queue.earliest().map_or(IDLE_WAIT, |due| {
                Duration::from_millis(due.saturating_sub(now)).min(IDLE_WAIT)
            });
            queue = self
                .wake
                .wait_timeout(queue, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn work(&self) {
        while let Some((due, index)) = self.next_due() {
            let (next, now, pass) = {
                let mut device = lock(&self.cells[index]);
                if device.due != due {
                    // Replaced (a compromise rebooted the device meanwhile).
                    continue;
                }
                let next = device.step(&self.shared, self.now());
                if let Some(at) = next {
                    device.due = at;
                }
                let pass = device.pending == Pending::Pass;
                let now = self.now();
                let mut summary = lock(&self.summaries[index]);
                if summary.version != device.version() {
                    summary.version = device.version().to_owned();
                }
                summary.activity = device.activity(now);
                summary.settled = device.settled().is_ok();
                (next, now, pass)
            };
            if let Some(at) = next {
                let mut queue = lock(&self.queue);
                // Idle workers sleep until the earliest event: wake one if this is earlier.
                let earliest = queue.earliest().is_none_or(|due| at < due);
                queue.push(at, index, pass);
                drop(queue);
                if earliest || at <= now {
                    self.wake.notify_one();
                }
            }
        }
    }

    /// Applies each planned compromise (`plan`: (ms since the start, device index), in time
    /// order) at its time, until stopped.
    fn inject(&self, plan: Vec<(u64, usize)>) {
        for (at, index) in plan {
            loop {
                if self.stop.load(Ordering::Relaxed) {
                    return;
                }
                let now = self.now();
                if now >= at {
                    break;
                }
                std::thread::sleep(Duration::from_millis((at - now).min(50)));
            }
            let now = self.now();
            let wake = lock(&self.cells[index]).compromise(&self.shared, now);
            if let Some(at) = wake {
                self.wake_at(at, index);
            }
        }
    }

    /// Queues `index`'s event (its `due` already set to `at`) as a continuation, replacing the
    /// one queued before (skipped when popped: its time is no longer the device's).
    fn wake_at(&self, at: u64, index: usize) {
        lock(&self.queue).push(at, index, false);
        self.wake.notify_one();
    }

    fn stats(&self) -> Stats {
        let mut s = Stats {
            elapsed: self.start.elapsed(),
            devices: self.cells.len(),
            ..Stats::default()
        };
        for summary in &self.summaries {
            let summary = lock(summary);
            match s.by_version.get_mut(summary.version.as_str()) {
                Some(n) => *n += 1,
                None => {
                    s.by_version.insert(summary.version.clone(), 1);
                }
            }
            if summary.settled {
                s.settled += 1;
            }
            match summary.activity {
                Activity::Idle => s.idle += 1,
                Activity::Busy => s.busy += 1,
                Activity::Offline => s.offline += 1,
                Activity::Off => s.off += 1,
                Activity::Bricked => s.bricked += 1,
            }
        }
        s.fill_counters(&self.shared.counters);
        s.last_error = lock(&self.shared.last_error).clone();
        s
    }
}

/// A running fleet. Dropping it stops the workers (as [`FleetHandle::stop`]) and removes a
/// temporary state root.
pub struct FleetHandle {
    inner: Arc<Inner>,
    workers: Vec<JoinHandle<()>>,
    root: Option<Root>,
}

impl std::fmt::Debug for FleetHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetHandle")
            .field("devices", &self.inner.cells.len())
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl FleetHandle {
    /// Live counters and the fleet's make-up now.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Every device's state (locks each device in turn: a device in the middle of an event is
    /// waited for).
    pub fn devices(&self) -> Vec<DeviceStatus> {
        let now = self.inner.now();
        self.inner
            .cells
            .iter()
            .map(|cell| lock(cell).snapshot(now))
            .collect()
    }

    /// One device's state, by id.
    pub fn device(&self, id: &str) -> Option<DeviceStatus> {
        let now = self.inner.now();
        self.inner.cells.iter().find_map(|cell| {
            let device = lock(cell);
            (device.profile.identity.id == id).then(|| device.snapshot(now))
        })
    }

    /// Waits until `done` holds for the stats (checked every 50 ms), at most `timeout`:
    /// `Ok` with the stats that satisfied it, `Err` with the last ones (timed out).
    pub fn wait_until(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Stats) -> bool,
    ) -> Result<Stats, Box<Stats>> {
        let deadline = Instant::now() + timeout;
        loop {
            let stats = self.stats();
            if done(&stats) {
                return Ok(stats);
            }
            if Instant::now() >= deadline {
                return Err(Box::new(stats));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The game day so far: each compromised device's times, and the healthy devices that
    /// got a quarantine statement (locks each device in turn).
    pub fn game_day(&self) -> crate::GameDay {
        let mut day = crate::GameDay::default();
        for cell in &self.inner.cells {
            day.add(&lock(cell));
        }
        day
    }

    /// Applies every planned compromise not applied yet at once, whatever its planned time
    /// (a game-day harness strikes once the fleet is enrolled); returns the time since the
    /// start it struck at.
    pub fn strike_now(&self) -> Duration {
        let now = self.inner.now();
        for (index, cell) in self.inner.cells.iter().enumerate() {
            let wake = lock(cell).compromise_now(&self.inner.shared, now);
            if let Some(at) = wake {
                self.inner.wake_at(at, index);
            }
        }
        Duration::from_millis(now)
    }

    /// When the fleet started, on the wall clock: the game day's times (since the start) are
    /// compared with the server's timestamps through it.
    pub fn started_at(&self) -> std::time::SystemTime {
        self.inner.started_at
    }

    /// The directory holding the devices' state directories.
    pub fn state_root(&self) -> Option<&Path> {
        self.root.as_ref().map(Root::path)
    }

    /// Stops the workers (each finishes the event it is serving) and returns the final stats.
    pub fn stop(mut self) -> Stats {
        self.halt();
        self.stats()
    }

    fn halt(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
        // Under the queue's lock, so no worker is between its stop check and its wait.
        drop(lock(&self.inner.queue));
        self.inner.wake.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for FleetHandle {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Device `index`'s software TPM: its keys derive from the fleet's seed, so a rebuilt fleet
/// has the same TPMs (and the server's enrolments stay valid).
fn soft_tpm(seed: u64, index: usize) -> rampart_attest::soft::SoftTpm {
    let mut material = b"rampart-sim soft TPM".to_vec();
    material.extend_from_slice(&seed.to_le_bytes());
    material.extend_from_slice(&(index as u64).to_le_bytes());
    let digest = ring::digest::digest(&ring::digest::SHA256, &material);
    let mut tpm_seed = [0u8; 32];
    tpm_seed.copy_from_slice(digest.as_ref());
    rampart_attest::soft::SoftTpm::new(tpm_seed)
}
