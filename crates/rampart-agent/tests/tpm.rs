//! The agent with a TPM, in process: the software TPM model
//! (`rampart_attest::soft::SoftTpm`) is the device's TPM, over file slots, a real bootloader
//! environment and the boot simulator. The hardware anti-rollback floor holds when the state
//! directory is wiped or replaced, and measured boot extends each boot once, however often the
//! agent restarts in it. The same flow with a real TPM (swtpm) is
//! `crates/rampart-system-tests/tests/attestation.rs`.

mod support;

use std::sync::{Arc, Mutex, MutexGuard};

use rampart_agent::daemon::{Pass, boot, install_from};
use rampart_agent::device::{Device, SECURITY_VERSION_FILE};
use rampart_agent::disk::{CrashPoint, Disk, FaultPlan};
use rampart_agent::measured::Measured;
use rampart_agent::platform::{BOOT_LOG_FILE, Local};
use rampart_agent::source::{Fetch, Refusal};
use rampart_attest::device::{Endorsement, QuoteBytes, TpmDevice, TpmError};
use rampart_attest::eventlog::EventLog;
use rampart_attest::soft::SoftTpm;
use rampart_boot::ab::Slot;
use rampart_boot::flow::{Reason, Release};
use support::{Backend, Image, Rig, hex_sha256};

/// The agent PCR (the default).
const PCR: u8 = 13;

/// One software TPM shared by the agents a test starts one after the other (each power-on
/// and each restart is a new agent; the TPM stays).
#[derive(Clone)]
struct SharedTpm(Arc<Mutex<SoftTpm>>);

impl SharedTpm {
    fn new() -> SharedTpm {
        SharedTpm(Arc::new(Mutex::new(SoftTpm::new([7; 32]))))
    }

    fn lock(&self) -> MutexGuard<'_, SoftTpm> {
        self.0.lock().unwrap()
    }
}

impl TpmDevice for SharedTpm {
    fn endorsement(&mut self) -> Result<Endorsement, TpmError> {
        self.lock().endorsement()
    }
    fn attestation_key(&mut self) -> Result<Vec<u8>, TpmError> {
        self.lock().attestation_key()
    }
    fn activate_credential(&mut self, blob: &[u8], secret: &[u8]) -> Result<Vec<u8>, TpmError> {
        self.lock().activate_credential(blob, secret)
    }
    fn extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError> {
        self.lock().extend(pcr, digest)
    }
    fn quote(&mut self, nonce: &[u8], pcrs: &[u8]) -> Result<QuoteBytes, TpmError> {
        self.lock().quote(nonce, pcrs)
    }
    fn security_floor(&mut self) -> Result<u64, TpmError> {
        self.lock().security_floor()
    }
    fn raise_security_floor(&mut self, to: u64) -> Result<(), TpmError> {
        self.lock().raise_security_floor(to)
    }
}

fn quiet(_: &Release, _: u64) {}

/// The agent of `rig` with `tpm`.
fn agent(rig: &Rig, tpm: &SharedTpm) -> Device {
    agent_on(rig, tpm, Disk::new())
}

/// The agent of `rig` with `tpm`, writing through `disk`.
fn agent_on(rig: &Rig, tpm: &SharedTpm, disk: Disk) -> Device {
    let bootloader = rampart_agent::bootloader::from_config(&rig.config.bootloader).unwrap();
    let platform = Local::with_tpm(bootloader, Box::new(tpm.clone()));
    let mut device = Device::with_platform(rig.config.clone(), disk, platform);
    device.chunk = 8 * 1024;
    device
}

/// A power-on: the TPM resets (PCRs to zeros), the bootloader picks a slot.
fn power_on(rig: &mut Rig, tpm: &SharedTpm) -> Slot {
    tpm.lock().reboot();
    rig.power_on().unwrap()
}

/// A fresh agent's pass: boot flow, then an offline install of `image`.
fn install(rig: &Rig, tpm: &SharedTpm, image: Image) -> Result<Pass, Refusal> {
    install_on(rig, tpm, image, Disk::new())
}

/// [`install`] writing through `disk`.
fn install_on(rig: &Rig, tpm: &SharedTpm, image: Image, disk: Disk) -> Result<Pass, Refusal> {
    let mut device = agent_on(rig, tpm, disk);
    let mut state = device.load_state().unwrap();
    let repo = support::repo().path.display().to_string();
    install_from(
        &mut device,
        &mut state,
        &repo,
        image.target(),
        &rig.health(),
        &quiet,
    )
}

/// v2 (security version 2) installed, booted, health-checked and committed: the TPM's NV
/// counter holds 2.
fn commit_v2(rig: &mut Rig, tpm: &SharedTpm) {
    assert_eq!(power_on(rig, tpm), Slot::A);
    assert_eq!(install(rig, tpm, Image::V2), Ok(Pass::Reboot));
    assert_eq!(power_on(rig, tpm), Slot::B);
    assert_eq!(install(rig, tpm, Image::V2), Ok(Pass::UpToDate));
    assert_eq!(tpm.lock().security_floor().unwrap(), 2);
}

/// The state directory as a fresh provisioning leaves it (the trusted root only), the agent's
/// state rebuilt from the running slot: what an attacker who wipes it gets.
fn wipe_state_directory(rig: &Rig, tpm: &SharedTpm) {
    let state = &rig.config.state_dir;
    std::fs::remove_dir_all(state).unwrap();
    std::fs::create_dir_all(state.join("metadata")).unwrap();
    std::fs::copy(&support::repo().root, state.join("metadata/root.json")).unwrap();
    agent(rig, tpm).reset_state().unwrap();
    assert!(!state.join(SECURITY_VERSION_FILE).exists());
}

#[test]
fn nv_counter_floor_refuses_a_downgrade_after_the_state_directory_is_wiped() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let tpm = SharedTpm::new();
    commit_v2(&mut rig, &tpm);
    wipe_state_directory(&rig, &tpm);
    let slot_a = rig.slot_bytes(Slot::A);

    assert_eq!(agent(&rig, &tpm).security_version(), Ok(2));
    let refusal = install(&rig, &tpm, Image::V1).unwrap_err();
    assert_eq!(
        refusal.reason,
        Reason::SecurityVersionRollback,
        "{}",
        refusal.detail
    );
    assert!(refusal.detail.contains("security version 1"), "{refusal}");
    assert_eq!(
        rig.slot_bytes(Slot::A),
        slot_a,
        "the inactive slot was written"
    );
    assert_eq!(tpm.lock().security_floor().unwrap(), 2);
}

#[test]
fn tpm_floor_is_checked_again_before_the_slot_is_written() {
    // A verifier that read a wiped state directory's counter (the server path reads the file)
    // passes v1; the install itself refuses it against the TPM's floor.
    let mut rig = Rig::new(Backend::Grub);
    let tpm = SharedTpm::new();
    commit_v2(&mut rig, &tpm);
    wipe_state_directory(&rig, &tpm);
    let slot_a = rig.slot_bytes(Slot::A);

    let mut device = agent(&rig, &tpm);
    let mut state = device.load_state().unwrap();
    let repo =
        rampart_agent::source::repo_url(&support::repo().path.display().to_string()).unwrap();
    let (verified, _, _) = rampart_agent::source::verify_from_repo(
        &device.disk,
        &rig.config.state_dir,
        &repo,
        support::HARDWARE,
        0,
        Image::V1.target(),
        support::now(),
    )
    .expect("the file-based check passes v1 with a wiped counter");
    let refusal = device
        .install(&mut state, &verified, &Fetch::plain(), &quiet)
        .unwrap_err();
    assert_eq!(refusal.reason, Reason::SecurityVersionRollback);
    assert!(refusal.detail.contains("floor 2"), "{refusal}");
    assert_eq!(
        rig.slot_bytes(Slot::A),
        slot_a,
        "the inactive slot was written"
    );
}

/// The stored measurement log of the running boot.
fn stored_log(rig: &Rig) -> EventLog {
    let bytes = std::fs::read(rig.config.state_dir.join(BOOT_LOG_FILE)).unwrap();
    let start = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    EventLog::parse(&bytes[start..]).unwrap()
}

#[test]
fn measured_boot_extends_once_per_boot_and_its_log_replays_to_the_pcr() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let tpm = SharedTpm::new();
    assert_eq!(power_on(&mut rig, &tpm), Slot::A);
    let health = rig.health();
    let start = |rig: &Rig| {
        let mut device = agent(rig, &tpm);
        let mut state = device.load_state().unwrap();
        boot(&mut device, &mut state, &health).unwrap();
        device.measure_boot(&state).unwrap()
    };
    // The boot flow measured the running slot: v1's image digest and its release claim.
    assert_eq!(start(&rig), Measured::Already);
    let log = stored_log(&rig);
    assert_eq!(log.events.len(), 2);
    let v1 = hex_sha256(&Image::V1.bytes());
    assert_eq!(hex::encode(log.events[0].sha256().unwrap()), v1);
    assert!(String::from_utf8_lossy(&log.events[1].data).ends_with(Image::V1.target()));
    let replayed = log.replay_sha256().unwrap()[&u32::from(PCR)];
    assert_eq!(tpm.lock().pcr(PCR), Some(replayed));

    // Restarts in the same boot: nothing more is extended.
    assert_eq!(start(&rig), Measured::Already);
    assert_eq!(tpm.lock().pcr(PCR), Some(replayed));

    // An agent stopped after its extends, before the log was stored: the next one finds the
    // events in the PCR and extends none of them again.
    std::fs::remove_file(rig.config.state_dir.join(BOOT_LOG_FILE)).unwrap();
    let mut device = agent(&rig, &tpm);
    let state = device.load_state().unwrap();
    assert_eq!(
        device.measure_boot(&state),
        Ok(Measured::Extended { extended: 0 })
    );
    assert_eq!(tpm.lock().pcr(PCR), Some(replayed));
    assert_eq!(stored_log(&rig), log);

    // Stopped between the two extends: only the second is extended.
    power_on(&mut rig, &tpm);
    let first = log.events[0].sha256().unwrap();
    tpm.lock().extend(PCR, &first).unwrap();
    let mut device = agent(&rig, &tpm);
    let state = device.load_state().unwrap();
    assert_eq!(
        device.measure_boot(&state),
        Ok(Measured::Extended { extended: 1 })
    );
    assert_eq!(tpm.lock().pcr(PCR), Some(replayed));

    // Another program extends the agent's PCR: refused, naming the PCR.
    power_on(&mut rig, &tpm);
    tpm.lock().extend(PCR, &[0x55; 32]).unwrap();
    let refusal = agent(&rig, &tpm).measure_boot(&state).unwrap_err();
    assert_eq!(refusal.reason, Reason::TpmFailed);
    assert!(refusal.detail.contains("PCR 13"), "{refusal}");
}

/// The running boot's stored log replays to the agent PCR's value.
fn pcr_explained_by_the_log(rig: &Rig, tpm: &SharedTpm) -> Result<(), String> {
    let bytes = std::fs::read(rig.config.state_dir.join(BOOT_LOG_FILE))
        .map_err(|e| format!("no boot log: {e}"))?;
    let boot_id = std::fs::read_to_string(&rig.config.boot.boot_id).unwrap();
    let log = stored_log(rig);
    if !bytes.starts_with(format!("{}\n", boot_id.trim()).as_bytes()) {
        return Err("the stored log is of another boot".into());
    }
    let replayed = log.replay_sha256().unwrap()[&u32::from(PCR)];
    if tpm.lock().pcr(PCR) != Some(replayed) {
        return Err("the PCR holds more or other events than the log".into());
    }
    Ok(())
}

#[test]
fn power_cuts_and_agent_restarts_at_every_write_step_never_extend_the_pcr_twice() {
    // A cut at write step `step` of the agent's run number `run` (0: install and activate v2;
    // 1: commit it after the reboot), followed either by a power cut (TPM reset, new boot) or
    // by the agent restarting in the same boot; then runs without cuts until v2 is committed.
    // After every run that ends, the PCR is exactly what the stored log of this boot says.
    let mut sequences = 0;
    for run in 0..2 {
        for step in 1.. {
            let mut reached = false;
            for restart_only in [false, true] {
                let mut rig = Rig::new(Backend::UbootRedundant);
                let tpm = SharedTpm::new();
                power_on(&mut rig, &tpm);
                let mut converged = false;
                for runs in 0..30 {
                    let disk = if runs == run {
                        Disk::with_fault(FaultPlan {
                            step,
                            point: CrashPoint::Torn,
                            abort: false,
                        })
                    } else {
                        Disk::new()
                    };
                    let result = install_on(&rig, &tpm, Image::V2, disk);
                    match result {
                        Err(r) if r.crashed => {
                            reached = true;
                            if !restart_only {
                                power_on(&mut rig, &tpm);
                            }
                        }
                        Ok(Pass::Reboot) => {
                            pcr_explained_by_the_log(&rig, &tpm)
                                .unwrap_or_else(|e| panic!("run {run} step {step}: {e}"));
                            power_on(&mut rig, &tpm);
                        }
                        Ok(Pass::UpToDate) => {
                            pcr_explained_by_the_log(&rig, &tpm)
                                .unwrap_or_else(|e| panic!("run {run} step {step}: {e}"));
                            converged = true;
                            break;
                        }
                        other => panic!("run {run} step {step}: {other:?}"),
                    }
                }
                assert!(converged, "run {run} step {step}: did not converge");
                assert_eq!(tpm.lock().security_floor().unwrap(), 2);
                sequences += 1;
            }
            if !reached {
                break;
            }
        }
    }
    eprintln!("{sequences} sequences");
    assert!(sequences > 20, "only {sequences} sequences");
}

/// Measured boot measures the slot as it is: an image changed behind the agent's back (its
/// state file still names the release) is extended with its real digest, so quotes of that boot
/// fail the golden check instead of vouching for the release the state claims.
#[test]
fn a_slot_changed_behind_the_agents_back_is_measured_as_it_is() {
    let mut rig = Rig::new(Backend::UbootRedundant);
    let tpm = SharedTpm::new();
    assert_eq!(power_on(&mut rig, &tpm), Slot::A);
    let health = rig.health();
    let mut device = agent(&rig, &tpm);
    let mut state = device.load_state().unwrap();
    boot(&mut device, &mut state, &health).unwrap();
    let v1 = hex_sha256(&Image::V1.bytes());
    assert_eq!(
        hex::encode(stored_log(&rig).events[0].sha256().unwrap()),
        v1
    );

    // The running slot's image is changed (it still boots), then the device restarts.
    let path = rig.config.slots.path(Slot::A).to_owned();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let image_length = Image::V1.bytes().len();
    tpm.lock().reboot();
    assert_eq!(
        rig.power_on_with_images(&[&bytes[..image_length]]).unwrap(),
        Slot::A
    );
    let mut device = agent(&rig, &tpm);
    let mut state = device.load_state().unwrap();
    boot(&mut device, &mut state, &health).unwrap();
    let tampered = hex_sha256(&bytes[..image_length]);
    let log = stored_log(&rig);
    assert_eq!(hex::encode(log.events[0].sha256().unwrap()), tampered);
    assert_ne!(tampered, v1);
    // The release claim still names what the state says, so the server sees the mismatch.
    assert!(String::from_utf8_lossy(&log.events[1].data).ends_with(Image::V1.target()));
}
