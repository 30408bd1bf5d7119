//! Power-loss torture and whole update / rollback sequences through the boot simulator.
//!
//! Every persistent write of the install and boot flow is a numbered step of the agent's
//! [`Disk`]. For each scenario (a good update, an update whose health checks fail, an update
//! whose kernel never comes up) and each bootloader environment (U-Boot with redundant copies,
//! GRUB), a power cut is injected at every step and at every point of it (before, torn,
//! after), then at random steps, several times in one sequence. After every power cut the
//! simulated bootloader powers the device on over the real environment files; the run fails
//! if it ever attempts a slot without a complete image or finds nothing to boot (bricked),
//! and must converge: the good update committed, the bad ones rolled back to v1.
//!
//! The steps include the TUF client's writes of the image repository's trusted metadata
//! (timestamp, snapshot, targets), which go through the same `Disk` (issue 14): the torture
//! went from 888 runs and 1,313 power cuts (slot, state and bootloader writes only) to 942
//! runs and 1,372 power cuts, 0 bricked, all converged. The director's writes go through it
//! too; the fleet simulator cuts them against the real server
//! (`rampart-sim/tests/server.rs`, `power_cuts_during_installs_converge_against_the_server`:
//! 31 power cuts before, 71 with the metadata writes).
//!
//! Re-imaging (issue 16) is tortured the same way: a forced re-image of the release the device
//! runs (its image is suspect) and of a newer one, a power cut at every write step of the
//! install, the trial boot, the commit and the mirror into the other slot, then at random.
//! After every power cut no slot the bootloader may boot holds a half-written image, and every
//! run must end with both slots holding the good release, both marked good.

mod support;

use rampart_agent::daemon::{Pass, install_from, reimage_from};
use rampart_agent::disk::{CrashPoint, Disk, FaultPlan};
use rampart_boot::ab::{AbState, Slot, SlotHealth};
use rampart_boot::flow::{AgentState, Phase, Reason};
use rampart_protocol::ReportStatus;
use support::{Backend, Image, Rig, classify};

/// How one sequence ended.
#[derive(Debug)]
enum End {
    Converged {
        steps: u64,
        crashes: u32,
        reason: Option<Reason>,
    },
    Bricked(String),
    Stuck(String),
}

/// Runs installs of `image` through power cuts at the global write steps in `cuts` (counted
/// over the whole sequence) until the device converges.
fn sequence(backend: Backend, image: Image, cuts: &[(u64, CrashPoint)]) -> End {
    let mut rig = Rig::new(backend);
    let health = rig.health();
    let mut steps_done = 0u64;
    let mut crashes = 0u32;
    let noop = |_: &rampart_boot::flow::Release, _: u64| {};
    for _cycle in 0..40 {
        let running = match rig.power_on() {
            Ok(slot) => slot,
            Err(why) => return End::Bricked(why),
        };
        // The next planned cut that lies in this run (steps are counted per Disk).
        let plan = cuts
            .iter()
            .find(|(step, _)| *step > steps_done)
            .map(|(step, point)| FaultPlan {
                step: step - steps_done,
                point: *point,
                abort: false,
            });
        let disk = match plan {
            Some(p) => Disk::with_fault(p),
            None => Disk::new(),
        };
        let trace = std::env::var_os("RAMPART_TEST_TRACE").is_some();
        if trace {
            let vars = Rig::store(&rig.config).load().unwrap_or_default();
            eprintln!("power-on: running {running}, env {vars:?}, plan {plan:?}");
        }
        let mut device = rig.device(disk);
        let mut state = match device.load_state() {
            Ok(s) => s,
            Err(r) => return End::Stuck(format!("state refused: {r}")),
        };
        let result = install_from(
            &mut device,
            &mut state,
            &repo_dir(),
            image.target(),
            &health,
            &noop,
        );
        steps_done += device.disk.steps();
        if trace {
            eprintln!("  -> {result:?}; steps {:?}", device.disk.journal());
        }
        let done = match result {
            Err(r) if r.crashed => {
                crashes += 1;
                continue;
            }
            Ok(Pass::Reboot) => continue,
            Ok(Pass::UpToDate) => true,
            Ok(other) => return End::Stuck(format!("unexpected pass {other:?}")),
            Err(r)
                if image != Image::V2
                    && matches!(
                        r.reason,
                        Reason::HealthCheckFailed | Reason::BootloaderFallback
                    ) =>
            {
                true
            }
            Err(r) => return End::Stuck(format!("[{}] {}", r.reason.as_str(), r.detail)),
        };
        if done {
            let state = device.load_state().unwrap();
            let expect = if image == Image::V2 {
                Image::V2
            } else {
                Image::V1
            };
            let committed = state.committed.unwrap();
            let holds = classify(&rig.slot_bytes(committed));
            if state.phase != Phase::Idle || holds != Some(expect) || committed != running {
                return End::Stuck(format!(
                    "ended with {:?}, slot {committed} holding {holds:?}, running {running}",
                    state.phase
                ));
            }
            if image != Image::V2 {
                // Power cuts during the trial boot use up its attempts, so an unhealthy
                // release may also end in a bootloader fallback; either way it was rolled back.
                let reason = state.last_result.as_ref().map(|r| r.reason);
                let fine = match image {
                    Image::Unhealthy => matches!(
                        reason,
                        Some(Reason::HealthCheckFailed | Reason::BootloaderFallback)
                    ),
                    _ => reason == Some(Reason::BootloaderFallback),
                };
                if !fine {
                    return End::Stuck(format!("last result {reason:?} after {image:?}"));
                }
            }
            return End::Converged {
                steps: steps_done,
                crashes,
                reason: state.last_result.as_ref().map(|r| r.reason),
            };
        }
    }
    End::Stuck("did not converge within 40 power-ons".into())
}

/// The shared test image repository.
fn repo_dir() -> String {
    support::repo().path.display().to_string()
}

const SCENARIOS: [Image; 3] = [Image::V2, Image::Unhealthy, Image::Panics];
const BACKENDS: [Backend; 2] = [Backend::UbootRedundant, Backend::Grub];

#[test]
fn full_update_and_rollback_sequences_through_the_boot_simulator() {
    for backend in BACKENDS {
        for image in SCENARIOS {
            let want = match image {
                Image::V2 => Reason::Ok,
                Image::Unhealthy => Reason::HealthCheckFailed,
                _ => Reason::BootloaderFallback,
            };
            match sequence(backend, image, &[]) {
                End::Converged {
                    steps,
                    crashes: 0,
                    reason,
                } => {
                    assert!(steps > 5, "{backend:?} {image:?}: only {steps} steps");
                    assert_eq!(reason, Some(want), "{backend:?} {image:?}");
                }
                other => panic!("{backend:?} {image:?}: {other:?}"),
            }
        }
    }
}

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

/// Outcome counts of a batch of sequences.
#[derive(Default)]
struct Tally {
    runs: u32,
    cuts: u32,
    bricked: Vec<String>,
    stuck: Vec<String>,
}

impl Tally {
    fn record(&mut self, what: String, end: End) {
        self.runs += 1;
        match end {
            End::Converged { crashes, .. } => self.cuts += crashes,
            End::Bricked(why) => self.bricked.push(format!("{what}: {why}")),
            End::Stuck(why) => self.stuck.push(format!("{what}: {why}")),
        }
    }
}

/// One sequence of a torture: a backend, an image, and the power cuts.
type Sequence = fn(Backend, Image, &[(u64, CrashPoint)]) -> End;

/// Every step and point, then `random` random multi-cut sequences, for one backend and each
/// of `images`.
fn torture(backend: Backend, seed: u64, images: &[Image], random: u32, run: Sequence) -> Tally {
    let mut tally = Tally::default();
    let mut rng = Rng(seed);
    for &image in images {
        let End::Converged { steps, .. } = run(backend, image, &[]) else {
            panic!("{backend:?} {image:?} does not converge without power cuts");
        };
        for step in 1..=steps {
            for point in CrashPoint::ALL {
                let end = run(backend, image, &[(step, point)]);
                tally.record(
                    format!("{backend:?} {image:?} cut at step {step} {point:?}"),
                    end,
                );
            }
        }
        for _ in 0..random {
            let n = 1 + rng.below(3);
            let mut cuts: Vec<(u64, CrashPoint)> = (0..n)
                .map(|_| {
                    (
                        1 + rng.below(steps + 4),
                        CrashPoint::ALL[rng.below(3) as usize],
                    )
                })
                .collect();
            cuts.sort_by_key(|c| c.0);
            cuts.dedup_by_key(|c| c.0);
            let end = run(backend, image, &cuts);
            tally.record(format!("{backend:?} {image:?} cuts {cuts:?}"), end);
        }
    }
    tally
}

/// Runs a torture on both backends in parallel, writes its summary line (`what`, then the
/// counts) to target/tmp/torture/`name`.txt, and fails on any bricked or stuck run.
fn torture_both_backends(
    name: &str,
    what: &str,
    seed: u64,
    images: &[Image],
    random: u32,
    run: Sequence,
) -> Tally {
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = BACKENDS
            .iter()
            .enumerate()
            .map(|(i, b)| s.spawn(move || torture(*b, seed + i as u64, images, random, run)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all = Tally::default();
    for t in tallies {
        all.runs += t.runs;
        all.cuts += t.cuts;
        all.bricked.extend(t.bricked);
        all.stuck.extend(t.stuck);
    }
    support::report_summary(
        name,
        &format!(
            "{what}: {} runs, {} power cuts, {} bricked, {} not converged",
            all.runs,
            all.cuts,
            all.bricked.len(),
            all.stuck.len()
        ),
    );
    assert!(
        all.bricked.is_empty(),
        "bricked runs:\n{}",
        all.bricked.join("\n")
    );
    assert!(
        all.stuck.is_empty(),
        "runs that did not converge:\n{}",
        all.stuck.join("\n")
    );
    all
}

#[test]
fn power_cut_at_every_write_step_and_at_random_never_bricks_and_converges() {
    let all = torture_both_backends(
        "power_loss",
        "power-loss torture (in-process, every write step x before/torn/after + random)",
        0x5eed_1234_abcd_ef01,
        &SCENARIOS,
        100,
        sequence,
    );
    assert!(all.runs >= 800, "only {} runs", all.runs);
}

#[test]
fn the_running_slot_is_never_written() {
    // The slot the device runs from keeps its exact bytes through an update and a rollback.
    for image in [Image::V2, Image::Unhealthy] {
        let mut rig = Rig::new(Backend::UbootRedundant);
        let before = rig.slot_bytes(Slot::A);
        rig.power_on().unwrap();
        let health = rig.health();
        let mut device = rig.device(Disk::new());
        let mut state = device.load_state().unwrap();
        let pass = install_from(
            &mut device,
            &mut state,
            &repo_dir(),
            image.target(),
            &health,
            &|_: &rampart_boot::flow::Release, _: u64| {},
        )
        .unwrap();
        assert_eq!(pass, Pass::Reboot);
        assert_eq!(rig.slot_bytes(Slot::A), before);
    }
}

/// A power cut while the TUF client stores trusted metadata must be one the torture injects:
/// the image repository's metadata is written through the agent's `Disk`, as write steps.
#[test]
fn trusted_metadata_writes_are_power_cut_steps() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    rig.power_on().unwrap();
    let health = rig.health();
    let mut device = rig.device(Disk::new());
    let mut state = device.load_state().unwrap();
    install_from(
        &mut device,
        &mut state,
        &repo_dir(),
        Image::V2.target(),
        &health,
        &|_: &rampart_boot::flow::Release, _: u64| {},
    )
    .unwrap();
    let journal = device.disk.journal();
    for role in ["timestamp", "snapshot", "targets"] {
        let file = format!("metadata/{role}.json");
        assert!(
            journal
                .iter()
                .any(|step| step.starts_with("replace ") && step.ends_with(&file)),
            "{file} is not a write step: {journal:#?}"
        );
    }
}

/// Whether the re-image of `image` is complete: its `installed` report, naming both slots, is
/// queued (the offline re-image never sends it).
fn reimage_reported(state: &AgentState) -> bool {
    state.outbox.iter().any(|r| {
        r.status == ReportStatus::Installed
            && r.details["reimaged"] == serde_json::json!(["a", "b"])
    })
}

/// A slot the bootloader may boot must hold a whole image (or the factory filler of slot B the
/// agent never touched): a half-written slot marked good is a device one power cut from dead.
fn bootable_slots_hold_whole_images(rig: &Rig) -> Result<(), String> {
    let vars = Rig::store(&rig.config).load().map_err(|e| e.to_string())?;
    let ab = AbState::from_vars(&vars, 3).map_err(|e| e.to_string())?;
    for slot in Slot::BOTH {
        let bytes = rig.slot_bytes(slot);
        let pristine = slot == Slot::B && bytes.iter().all(|b| *b == 0xEE);
        if ab.health(slot) == SlotHealth::Good && classify(&bytes).is_none() && !pristine {
            return Err(format!(
                "slot {slot} is marked good but holds no whole image"
            ));
        }
    }
    Ok(())
}

/// Re-images the device (factory: v1 in slot A) to `image` through power cuts at the global
/// write steps in `cuts`, running the offline re-image at every power-on until it reports.
fn reimage_sequence(backend: Backend, image: Image, cuts: &[(u64, CrashPoint)]) -> End {
    let mut rig = Rig::new(backend);
    let health = rig.health();
    let mut steps_done = 0u64;
    let mut crashes = 0u32;
    for _cycle in 0..40 {
        let running = match rig.power_on() {
            Ok(slot) => slot,
            Err(why) => return End::Bricked(why),
        };
        if let Err(why) = bootable_slots_hold_whole_images(&rig) {
            return End::Bricked(why);
        }
        let disk = match cuts.iter().find(|(step, _)| *step > steps_done) {
            Some((step, point)) => Disk::with_fault(FaultPlan {
                step: step - steps_done,
                point: *point,
                abort: false,
            }),
            None => Disk::new(),
        };
        let mut device = rig.device(disk);
        let mut state = match device.load_state() {
            Ok(s) => s,
            Err(r) => return End::Stuck(format!("state refused: {r}")),
        };
        if reimage_reported(&state) {
            let committed = state.committed.unwrap_or(running);
            let vars = Rig::store(&rig.config).load().unwrap_or_default();
            let ab = AbState::from_vars(&vars, 3).unwrap();
            for slot in Slot::BOTH {
                let holds = classify(&rig.slot_bytes(slot));
                if holds != Some(image) || ab.health(slot) != SlotHealth::Good {
                    return End::Stuck(format!(
                        "re-imaged, but slot {slot} holds {holds:?} and is {:?}",
                        ab.health(slot)
                    ));
                }
            }
            if state.phase != Phase::Idle || committed != running {
                return End::Stuck(format!(
                    "re-imaged, but {:?}, committed {committed}, running {running}",
                    state.phase
                ));
            }
            return End::Converged {
                steps: steps_done,
                crashes,
                reason: state.last_result.as_ref().map(|r| r.reason),
            };
        }
        let result = reimage_from(
            &mut device,
            &mut state,
            &repo_dir(),
            image.target(),
            &health,
            &|_: &rampart_boot::flow::Release, _: u64| {},
        );
        steps_done += device.disk.steps();
        match result {
            Err(r) if r.crashed => crashes += 1,
            Ok(Pass::Reboot | Pass::Reimaged { .. }) => {}
            Ok(other) => return End::Stuck(format!("unexpected pass {other:?}")),
            Err(r) => return End::Stuck(format!("[{}] {}", r.reason.as_str(), r.detail)),
        }
        if let Err(why) = bootable_slots_hold_whole_images(&rig) {
            return End::Bricked(why);
        }
    }
    End::Stuck("did not converge within 40 power-ons".into())
}

/// The release the device runs (v1, now suspect) and a newer one.
const REIMAGES: [Image; 2] = [Image::V1, Image::V2];

#[test]
fn a_reimage_rewrites_both_slots_even_with_the_same_release_and_raises_the_floor() {
    for image in REIMAGES {
        let End::Converged { steps, crashes, .. } =
            reimage_sequence(Backend::UbootRedundant, image, &[])
        else {
            panic!("{image:?}: the re-image does not converge without power cuts");
        };
        assert_eq!(crashes, 0);
        assert!(steps > 10, "{image:?}: only {steps} write steps");
    }
    // Re-imaging the release the device runs: slot B is written, then slot A too, although
    // the state says it holds v1 already (its bytes are suspect).
    let mut rig = Rig::new(Backend::Grub);
    let health = rig.health();
    let slot_a = rig.config.slots.path(Slot::A).display().to_string();
    for expect in ["reboot", "reimaged"] {
        rig.power_on().unwrap();
        let mut device = rig.device(Disk::new());
        let mut state = device.load_state().unwrap();
        let pass = reimage_from(
            &mut device,
            &mut state,
            &repo_dir(),
            Image::V1.target(),
            &health,
            &|_: &rampart_boot::flow::Release, _: u64| {},
        )
        .unwrap();
        let wrote_a = device
            .disk
            .journal()
            .iter()
            .filter(|step| step.starts_with("write ") && step.ends_with(&slot_a))
            .map(|step| step.split(' ').nth(1).unwrap().parse::<usize>().unwrap())
            .sum::<usize>();
        if expect == "reboot" {
            assert_eq!(pass, Pass::Reboot);
            assert_eq!(wrote_a, 0, "the running slot is never written");
        } else {
            assert_eq!(
                pass,
                Pass::Reimaged {
                    version: "1.0.0".into()
                }
            );
            assert_eq!(wrote_a, support::IMAGE_BYTES, "slot A was not rewritten");
        }
    }
    assert_eq!(classify(&rig.slot_bytes(Slot::A)), Some(Image::V1));
    assert_eq!(classify(&rig.slot_bytes(Slot::B)), Some(Image::V1));
    // A re-image to a newer release raises the anti-rollback floor at its commit, as every
    // commit does: the suspect release can no longer be installed.
    let mut rig = Rig::new(Backend::UbootRedundant);
    let health = rig.health();
    for _ in 0..2 {
        rig.power_on().unwrap();
        let mut device = rig.device(Disk::new());
        let mut state = device.load_state().unwrap();
        reimage_from(
            &mut device,
            &mut state,
            &repo_dir(),
            Image::V2.target(),
            &health,
            &|_: &rampart_boot::flow::Release, _: u64| {},
        )
        .unwrap();
    }
    assert_eq!(rig.device(Disk::new()).security_version().unwrap(), 2);
    assert_eq!(classify(&rig.slot_bytes(Slot::A)), Some(Image::V2));
    assert_eq!(classify(&rig.slot_bytes(Slot::B)), Some(Image::V2));
}

#[test]
fn reimage_leaves_both_slots_on_the_good_release_after_any_power_cut() {
    let all = torture_both_backends(
        "reimage",
        "re-imaging torture (in-process, install + trial boot + commit + mirror into the other slot, every write step x before/torn/after + random; converged = both slots on the good release, both good)",
        0x0dd_ba11_5eed,
        &REIMAGES,
        50,
        reimage_sequence,
    );
    assert!(all.runs >= 400, "only {} runs", all.runs);
}
