//! Power-loss torture of the real `rampart-agent` process: random SIGKILLs of
//! `rampart-agent install --from REPO TARGET` while it verifies, streams a 4 MiB release into
//! the inactive slot and activates it, and aborts at random persistent-write steps
//! (`RAMPART_AGENT_CRASH_AT=STEP:POINT`, including torn writes) of the install and boot flow.
//!
//! After every crash the simulated bootloader powers the device on over the real environment
//! files (U-Boot redundant copies or GRUB, alternately); the run is bricked if it attempts a
//! slot without a complete image or finds nothing to boot. The agent binary is then run to
//! completion, power-on after power-on, until it says "up to date"; the run converged when
//! `rampart-agent status` shows the big release committed and idle, the committed slot holds
//! its exact bytes, and the bootloader boots that slot.
//!
//! The generator is seeded with a constant (printed; `RAMPART_TORTURE_SEED` overrides it, and
//! `RAMPART_TORTURE_RUNS` the number of SIGKILL runs) so failures reproduce.

mod support;

use std::io::Read as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rampart_agent::daemon::{Pass, install_from};
use rampart_agent::device::{Device, NoHealthChecks};
use rampart_agent::disk::{CRASH_ENV, CrashPoint, Disk};
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, Phase};
use support::{BIG_SLOT_BYTES, BIG_TARGET, BIG_VERSION, Backend, Image, Rig, big_image, big_repo};

/// SIGKILL runs unless `RAMPART_TORTURE_RUNS` says otherwise.
const SIGKILL_RUNS: u64 = 120;
/// Runs that abort the process at a write step (at least one per step and point).
const ABORT_RUNS: u64 = 60;
/// Seed of the generator unless `RAMPART_TORTURE_SEED` says otherwise.
const SEED: u64 = 0x5167_4b11_0bad_f00d;
/// Agent runs (each after a power-on) a run may take to converge after its crash.
const MAX_RUNS_TO_CONVERGE: usize = 8;

const SIGKILL: i32 = 9;
const SIGABRT: i32 = 6;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

fn seed(offset: u64) -> u64 {
    env_u64("RAMPART_TORTURE_SEED").unwrap_or(SEED) ^ offset
}

fn backend(run: u64) -> Backend {
    if run.is_multiple_of(2) {
        Backend::UbootRedundant
    } else {
        Backend::Grub
    }
}

/// A fresh device for the big release, with its configuration file written.
fn big_rig(backend: Backend) -> (Rig, PathBuf) {
    let rig = Rig::with_slot_bytes(backend, BIG_SLOT_BYTES, big_repo());
    let config = rig.write_config_file();
    (rig, config)
}

/// The images a slot may hold and still boot: the factory v1 and the big release.
fn power_on(rig: &mut Rig) -> Result<Slot, String> {
    let v1 = Image::V1.bytes();
    rig.power_on_with_images(&[&v1, big_image()])
}

/// The agent binary with `args`, never inheriting a crash plan or another configuration.
fn agent(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampart-agent"));
    cmd.arg("--config")
        .arg(config)
        .args(args)
        .env_remove(CRASH_ENV)
        .env_remove("RAMPART_AGENT_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn install_command(config: &Path) -> Command {
    let repo = big_repo().path.display().to_string();
    agent(
        config,
        &["install", "--from", &repo, BIG_TARGET, "--no-reboot"],
    )
}

/// How one agent process ended.
struct Ran {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Ran {
    fn describe(&self) -> String {
        format!(
            "{}; stdout {:?}; stderr {:?}",
            self.status,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }
}

fn finish(mut child: Child) -> Ran {
    let mut stdout = String::new();
    let mut stderr = String::new();
    // The outputs are a few lines: far below a pipe's capacity, so reading them one after
    // the other cannot block the child.
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout).unwrap();
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut stderr).unwrap();
    }
    let status = child.wait().unwrap();
    Ran {
        status,
        stdout,
        stderr,
    }
}

fn run(mut cmd: Command) -> Ran {
    finish(cmd.spawn().unwrap())
}

/// The state file as the (dead) agent left it.
fn state_file(rig: &Rig) -> Option<AgentState> {
    let bytes = std::fs::read(rig.config.state_dir.join("agent-state.json")).ok()?;
    AgentState::parse(&bytes).ok()
}

/// Whether a crash left an install in the middle: the state says installing, or slot B was
/// written only in part.
fn mid_install(rig: &Rig) -> bool {
    let installing = matches!(
        state_file(rig).map(|s| s.phase),
        Some(Phase::Installing { .. })
    );
    let b = rig.slot_bytes(Slot::B);
    let untouched = b.iter().all(|&x| x == 0xEE);
    installing || (!untouched && !b.starts_with(big_image()))
}

/// How one run ended after its crash.
enum End {
    Converged,
    Bricked(String),
    Stuck(String),
}

/// Powers on and runs the agent to completion until it says "up to date", then checks the
/// device converged on the big release.
fn converge(rig: &mut Rig, config: &Path) -> End {
    let mut last = String::new();
    for _ in 0..MAX_RUNS_TO_CONVERGE {
        if let Err(why) = power_on(rig) {
            return End::Bricked(why);
        }
        let ran = run(install_command(config));
        if !ran.status.success() {
            return End::Stuck(format!("the agent failed: {}", ran.describe()));
        }
        match ran.stdout.trim() {
            "rebooting" => last = ran.stdout,
            "up to date" => return converged(rig, config),
            other => {
                return End::Stuck(format!("unexpected output {other:?}: {}", ran.describe()));
            }
        }
    }
    End::Stuck(format!(
        "not up to date after {MAX_RUNS_TO_CONVERGE} power-ons (last output {last:?})"
    ))
}

/// Whether the device converged on the big release (`status`, slot bytes, a power-on).
fn converged(rig: &mut Rig, config: &Path) -> End {
    let ran = run(agent(config, &["status"]));
    if !ran.status.success() {
        return End::Stuck(format!("status failed: {}", ran.describe()));
    }
    let view: serde_json::Value = match serde_json::from_str(&ran.stdout) {
        Ok(v) => v,
        Err(e) => return End::Stuck(format!("status is not JSON ({e}): {}", ran.stdout)),
    };
    let state: AgentState = match serde_json::from_value(view["state"].clone()) {
        Ok(s) => s,
        Err(e) => return End::Stuck(format!("status has no agent state ({e}): {view}")),
    };
    let Some(committed) = state.committed else {
        return End::Stuck(format!("nothing committed: {view}"));
    };
    let content = state.slots.get(&committed);
    if state.phase != Phase::Idle
        || content.map(|c| (c.target.as_str(), c.version.as_str()))
            != Some((BIG_TARGET, BIG_VERSION))
        || view["security_version"] != 2
    {
        return End::Stuck(format!("status after up to date: {view}"));
    }
    let bytes = rig.slot_bytes(committed);
    if !bytes.starts_with(big_image()) {
        return End::Stuck(format!(
            "the committed slot {committed} does not hold the release's bytes"
        ));
    }
    match power_on(rig) {
        Ok(slot) if slot == committed => End::Converged,
        Ok(slot) => End::Stuck(format!(
            "the bootloader boots slot {slot}, not the committed slot {committed}"
        )),
        Err(why) => End::Bricked(format!("after converging: {why}")),
    }
}

/// Outcome counts of a batch of runs.
#[derive(Default)]
struct Tally {
    runs: u64,
    crashed: u64,
    mid_install: u64,
    /// SIGKILL runs: kills before the install started streaming, after it, and too late
    /// (the process had exited).
    before_install: u64,
    after_install: u64,
    missed: u64,
    bricked: Vec<String>,
    stuck: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: String, end: End) {
        self.runs += 1;
        match end {
            End::Converged => {}
            End::Bricked(why) => self.bricked.push(format!("{what}: {why}")),
            End::Stuck(why) => self.stuck.push(format!("{what}: {why}")),
        }
    }

    fn check(&self) {
        assert!(
            self.bricked.is_empty(),
            "bricked runs:\n{}",
            self.bricked.join("\n")
        );
        assert!(
            self.stuck.is_empty(),
            "runs that did not converge:\n{}",
            self.stuck.join("\n")
        );
    }
}

/// When a clean install process streams: the first and last time its state file said
/// installing, and when it exited (from its start).
struct Timing {
    streaming: Option<(Duration, Duration)>,
    exited: Duration,
}

/// Runs one clean install on a fresh device, watching its state file.
fn measure(backend: Backend) -> Timing {
    let (mut rig, config) = big_rig(backend);
    power_on(&mut rig).unwrap();
    let started = Instant::now();
    let mut child = install_command(&config).spawn().unwrap();
    let mut streaming: Option<(Duration, Duration)> = None;
    let exited = loop {
        if child.try_wait().unwrap().is_some() {
            break started.elapsed();
        }
        if let Some(Phase::Installing { .. }) = state_file(&rig).map(|s| s.phase) {
            let now = started.elapsed();
            streaming = Some(streaming.map_or((now, now), |(a, _)| (a, now)));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let ran = finish(child);
    assert!(
        ran.status.success() && ran.stdout.trim() == "rebooting",
        "a clean install: {}",
        ran.describe()
    );
    Timing { streaming, exited }
}

/// The agent binary streams in chunks of this size ([`rampart_agent::device::DEFAULT_CHUNK`]),
/// with a checkpoint in the state file after each (the rig's `checkpoint_bytes` is smaller).
const CHUNK: u64 = rampart_agent::device::DEFAULT_CHUNK as u64;
/// Checkpoints of the big release: after 0, 1, 2, 3 and 4 chunks.
const CHECKPOINTS: u64 = support::BIG_IMAGE_BYTES as u64 / CHUNK + 1;

/// The last few clean installs measured.
#[derive(Default)]
struct Calibration(Vec<Timing>);

impl Calibration {
    fn add(&mut self, t: Timing) {
        self.0.push(t);
        if self.0.len() > 3 {
            self.0.remove(0);
        }
    }

    /// The median time a clean install process takes, and the median time it takes to
    /// stream one chunk.
    fn estimate(&self) -> (Duration, Duration) {
        let median = |mut v: Vec<Duration>| {
            v.sort();
            v.get(v.len() / 2)
                .copied()
                .unwrap_or(Duration::from_millis(20))
        };
        let exited = median(self.0.iter().map(|t| t.exited).collect());
        let per_chunk = median(
            self.0
                .iter()
                .filter_map(|t| t.streaming)
                .map(|(from, to)| (to - from) / (CHECKPOINTS as u32 - 1))
                .collect(),
        );
        (exited, per_chunk.max(Duration::from_micros(100)))
    }
}

/// When to SIGKILL an install process.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This long after it was started.
    After(Duration),
    /// `then` after its state file first records at least `written` bytes streamed.
    Streaming { written: u64, then: Duration },
}

impl Kill {
    /// Waits until it is time to kill `child` (or it exited).
    fn wait(self, rig: &Rig, child: &mut Child) {
        match self {
            Kill::After(delay) => std::thread::sleep(delay),
            Kill::Streaming { written, then } => {
                loop {
                    if child.try_wait().unwrap().is_some() {
                        return;
                    }
                    match state_file(rig).map(|s| s.phase) {
                        Some(Phase::Installing { written: w, .. }) if w >= written => break,
                        Some(Phase::Activated { .. }) => break,
                        _ => {}
                    }
                    std::thread::sleep(Duration::from_micros(100));
                }
                std::thread::sleep(then);
            }
        }
    }
}

/// SIGKILLs of the install process at random instants, half of them while it streams.
#[test]
fn random_sigkills_of_the_agent_process_never_brick_and_converge() {
    let runs = env_u64("RAMPART_TORTURE_RUNS").unwrap_or(SIGKILL_RUNS);
    let seed = seed(0);
    eprintln!("sigkill torture: seed {seed:#x}, {runs} runs");
    let began = Instant::now();

    // Calibration: how long a clean install process takes, and how long it takes to stream
    // one chunk. The first process of the test binary starts cold: warm up before measuring.
    // The machine's load changes (other builds), so it is measured again every few runs.
    measure(Backend::UbootRedundant);
    let mut calibration = Calibration::default();
    for i in 0..3 {
        calibration.add(measure(backend(i)));
    }
    let (exited, per_chunk) = calibration.estimate();
    eprintln!(
        "sigkill torture: a clean install process exits after {exited:?}, streaming a chunk every {per_chunk:?}"
    );

    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for i in 0..runs {
        if i % 4 == 3 {
            calibration.add(measure(backend(i)));
        }
        let (exited, per_chunk) = calibration.estimate();
        let backend = backend(i);
        let (mut rig, config) = big_rig(backend);
        // Half the kills anywhere in the process's life, half while it streams: once the
        // state file records a random checkpoint, within the next chunk.
        let kill = if rng.below(2) == 0 {
            Kill::After(Duration::from_micros(
                rng.below(exited.as_micros() as u64 + 1),
            ))
        } else {
            let checkpoint = rng.below(CHECKPOINTS);
            // After the last checkpoint only the tail of the release and the activation
            // remain: a shorter wait lands in them rather than after the process exited.
            let within = if checkpoint == CHECKPOINTS - 1 {
                per_chunk / 2
            } else {
                per_chunk
            };
            Kill::Streaming {
                written: checkpoint * CHUNK,
                then: Duration::from_micros(rng.below(within.as_micros() as u64 + 1)),
            }
        };
        let what = format!("run {i} ({backend:?}, {kill:?})");
        if let Err(why) = power_on(&mut rig) {
            tally.record(what, End::Bricked(format!("before the install: {why}")));
            continue;
        }
        let mut child = install_command(&config).spawn().unwrap();
        kill.wait(&rig, &mut child);
        let _ = child.kill();
        let ran = finish(child);
        if ran.status.signal() == Some(SIGKILL) {
            tally.crashed += 1;
            if mid_install(&rig) {
                tally.mid_install += 1;
            } else if rig.slot_bytes(Slot::B).starts_with(big_image()) {
                tally.after_install += 1;
            } else {
                tally.before_install += 1;
            }
        } else if ran.status.success() && ran.stdout.trim() == "rebooting" {
            tally.missed += 1;
        } else {
            tally.record(
                what,
                End::Stuck(format!("the install failed: {}", ran.describe())),
            );
            continue;
        }
        let end = converge(&mut rig, &config);
        tally.record(what, end);
    }
    support::report_summary(
        "sigkill",
        &format!(
            "sigkill torture (real process, SIGKILL at random): {} runs, {} killed mid-install, {} bricked, {} not converged",
            tally.runs,
            tally.mid_install,
            tally.bricked.len(),
            tally.stuck.len(),
        ),
    );
    eprintln!(
        "sigkill torture: {} kills before streaming, {} mid-install, {} after it, {} too late (the install had finished); {:.1} s, seed {seed:#x}",
        tally.before_install,
        tally.mid_install,
        tally.after_install,
        tally.missed,
        began.elapsed().as_secs_f64()
    );
    tally.check();
    assert!(tally.runs >= 100 || runs < 100, "only {} runs", tally.runs);
    assert!(
        tally.mid_install * 5 >= tally.runs,
        "only {} of {} kills landed mid-install: the timing calibration is off",
        tally.mid_install,
        tally.runs
    );
}

/// Write steps of each agent process of a clean install sequence (the install and activation,
/// then the start in the new slot that commits it), counted in-process with the binary's
/// chunk size.
fn steps_per_process(backend: Backend) -> Vec<u64> {
    let (mut rig, _) = big_rig(backend);
    let repo = big_repo().path.display().to_string();
    let noop = |_: &rampart_boot::flow::Release, _: u64| {};
    let mut steps = Vec::new();
    for expect in [Pass::Reboot, Pass::UpToDate] {
        power_on(&mut rig).unwrap();
        let mut device = Device::open(rig.config.clone(), Disk::new()).unwrap();
        let mut state = device.load_state().unwrap();
        let pass = install_from(
            &mut device,
            &mut state,
            &repo,
            BIG_TARGET,
            &NoHealthChecks,
            &noop,
        )
        .unwrap();
        assert_eq!(pass, expect);
        if std::env::var_os("RAMPART_TEST_TRACE").is_some() {
            eprintln!("{backend:?} {expect:?}: {:#?}", device.disk.journal());
        }
        steps.push(device.disk.steps());
    }
    steps
}

/// `RAMPART_AGENT_CRASH_AT` makes the real process abort at a write step (before it, after
/// it, or with half its bytes written): every step of the install process and of the commit
/// process at every point, then random ones.
#[test]
fn aborts_at_random_write_steps_of_the_real_process_never_brick() {
    let seed = seed(0xab);
    let began = Instant::now();
    let steps = [
        steps_per_process(Backend::UbootRedundant),
        steps_per_process(Backend::Grub),
    ];
    eprintln!(
        "abort torture: seed {seed:#x}; write steps per process (install, commit): U-Boot {:?}, GRUB {:?}",
        steps[0], steps[1]
    );
    // Every write step of both processes at every point once (the backends alternating),
    // then random steps and points up to ABORT_RUNS.
    let mut plans: Vec<(usize, u64, CrashPoint)> = Vec::new();
    for (process, (uboot, grub)) in steps[0].iter().zip(&steps[1]).enumerate() {
        for step in 1..=*uboot.min(grub) {
            for point in CrashPoint::ALL {
                plans.push((process, step, point));
            }
        }
    }
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let mut torn = 0;
    for i in 0..ABORT_RUNS.max(plans.len() as u64) {
        let backend = backend(i);
        let (process, step, point) = plans.get(i as usize).copied().unwrap_or_else(|| {
            // Mostly the install process (most of the steps), sometimes the one that commits.
            let process = if rng.below(3) == 0 { 1 } else { 0 };
            let step = 1 + rng.below(steps[(i % 2) as usize][process]);
            (process, step, CrashPoint::ALL[rng.below(3) as usize])
        });
        let spelled = match point {
            CrashPoint::Before => "before",
            CrashPoint::Torn => "torn",
            CrashPoint::After => "after",
        };
        let plan = format!("{step}:{spelled}");
        let what = format!("run {i} ({backend:?}, process {process}, {CRASH_ENV}={plan})");
        let (mut rig, config) = big_rig(backend);
        // For the commit process, the install process runs clean first.
        let installed = if process == 1 {
            install_clean(&mut rig, &config)
        } else {
            Ok(())
        };
        let end = match installed {
            Err(end) => end,
            Ok(()) => {
                let (end, aborted) = converge_with_abort(&mut rig, &config, plan, &mut tally);
                if aborted && point == CrashPoint::Torn {
                    torn += 1;
                }
                end
            }
        };
        tally.record(what, end);
    }
    support::report_summary(
        "abort",
        &format!(
            "abort torture (real process, abort at every write step + random): {} runs, {} aborted ({} torn writes, {} mid-install), {} bricked, {} not converged ({:.1} s, seed {seed:#x})",
            tally.runs,
            tally.crashed,
            torn,
            tally.mid_install,
            tally.bricked.len(),
            tally.stuck.len(),
            began.elapsed().as_secs_f64()
        ),
    );
    tally.check();
    assert_eq!(
        tally.crashed, tally.runs,
        "every run's planned step exists, so every run must abort"
    );
}

/// The clean install process (power-on, install, "rebooting").
fn install_clean(rig: &mut Rig, config: &Path) -> Result<(), End> {
    power_on(rig).map_err(End::Bricked)?;
    let ran = run(install_command(config));
    if ran.status.success() && ran.stdout.trim() == "rebooting" {
        Ok(())
    } else {
        Err(End::Stuck(format!(
            "the install failed: {}",
            ran.describe()
        )))
    }
}

/// Powers on, runs the agent with the crash plan (it aborts), then converges.
fn converge_with_abort(
    rig: &mut Rig,
    config: &Path,
    plan: String,
    tally: &mut Tally,
) -> (End, bool) {
    if let Err(why) = power_on(rig) {
        return (End::Bricked(why), false);
    }
    let mut cmd = install_command(config);
    cmd.env(CRASH_ENV, &plan);
    let ran = run(cmd);
    let aborted = ran.status.signal() == Some(SIGABRT) && ran.stderr.contains(CRASH_ENV);
    if !aborted {
        return (
            End::Stuck(format!("the agent did not abort: {}", ran.describe())),
            false,
        );
    }
    tally.crashed += 1;
    if mid_install(rig) {
        tally.mid_install += 1;
    }
    (converge(rig, config), true)
}
