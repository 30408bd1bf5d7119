//! Download-only assignments on the device: a release verified into the inactive slot stays
//! there, never booted, until an install activates it; the activation re-verifies the slot's
//! bytes and downloads nothing, and a slot damaged since staging is written afresh, never
//! activated as it is.

mod support;

use rampart_agent::daemon::boot;
use rampart_agent::device::{Device, Installed, Staged};
use rampart_agent::disk::Disk;
use rampart_agent::source::{Fetch, Verified, repo_url, verify_from_repo};
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, Phase, Reason, Release};
use support::{Backend, Image, Rig, classify};

fn quiet(_: &Release, _: u64) {}

/// Boots the factory device (slot A, v1) and verifies v2 from the shared repository.
fn factory_device_with_v2_verified(rig: &mut Rig) -> (Device, AgentState, Verified) {
    assert_eq!(rig.power_on(), Ok(Slot::A));
    let mut device = rig.device(Disk::new());
    let mut state = device.load_state().unwrap();
    boot(&mut device, &mut state, &rig.health()).unwrap();
    let base = repo_url(&support::repo().path.display().to_string()).unwrap();
    let (verified, _, _) = verify_from_repo(
        &device.disk,
        &rig.config.state_dir,
        &base,
        support::HARDWARE,
        1,
        Image::V2.target(),
        support::now(),
    )
    .unwrap();
    (device, state, verified)
}

/// The same verified release, but its bytes can no longer be fetched from anywhere.
fn unreachable(v: &Verified) -> Verified {
    Verified {
        url: "http://127.0.0.1:9/gone/v2.img".into(),
        ..v.clone()
    }
}

fn slot_b(rig: &Rig) -> Option<Image> {
    classify(&rig.slot_bytes(Slot::B))
}

#[test]
fn a_staged_release_is_never_booted_and_activates_without_a_download() {
    let mut rig = Rig::new(Backend::Grub);
    let (mut device, mut state, v2) = factory_device_with_v2_verified(&mut rig);

    let staged = device
        .stage(&mut state, &v2, &Fetch::plain(), &quiet)
        .unwrap();
    assert_eq!(
        staged,
        Staged::Downloaded {
            slot: Slot::B,
            resumed_from: 0
        }
    );
    assert_eq!(slot_b(&rig), Some(Image::V2));
    assert_eq!(state.phase, Phase::Idle);
    assert_eq!(state.committed, Some(Slot::A));
    assert_eq!(device.staged_target(&state), Some(Image::V2.target()));
    let report = state.outbox.last().expect("a downloaded report is queued");
    assert_eq!(report.status, "downloaded");
    assert_eq!(report.details["slot"], "B", "{:?}", report.details);
    // Persisted, not only in memory.
    assert_eq!(
        device.load_state().unwrap().slots.get(&Slot::B),
        state.slots.get(&Slot::B)
    );

    // Power cycles keep running v1: the staged slot is never tried.
    for _ in 0..3 {
        assert_eq!(rig.power_on(), Ok(Slot::A), "the staged slot was booted");
    }
    // Staging again is a no-op.
    assert_eq!(
        device
            .stage(&mut state, &unreachable(&v2), &Fetch::plain(), &quiet)
            .unwrap(),
        Staged::AlreadyStaged { slot: Slot::B }
    );

    // The install re-verifies the slot and activates it; its bytes are nowhere to be fetched,
    // so succeeding proves nothing was downloaded.
    let installed = device
        .install(&mut state, &unreachable(&v2), &Fetch::plain(), &quiet)
        .unwrap();
    assert_eq!(
        installed,
        Installed::Activated {
            slot: Slot::B,
            resumed_from: 0,
            from_staged: true
        }
    );
    assert_eq!(rig.power_on(), Ok(Slot::B), "the activated slot boots");
    let mut device = rig.device(Disk::new());
    let mut state = device.load_state().unwrap();
    boot(&mut device, &mut state, &rig.health()).unwrap();
    assert_eq!(state.committed, Some(Slot::B));
    assert_eq!(state.slots[&Slot::B].version, "2.0.0");
}

#[test]
fn a_staged_slot_damaged_since_is_downloaded_again_never_activated_as_it_is() {
    let mut rig = Rig::new(Backend::Grub);
    let (mut device, mut state, v2) = factory_device_with_v2_verified(&mut rig);
    device
        .stage(&mut state, &v2, &Fetch::plain(), &quiet)
        .unwrap();

    // One flipped bit in the staged image (bad flash, tampering).
    let path = rig.config.slots.path(Slot::B).to_path_buf();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[1000] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    // With nowhere to download from, the install fails and nothing is activated.
    let refused = device
        .install(&mut state, &unreachable(&v2), &Fetch::plain(), &quiet)
        .unwrap_err();
    assert_eq!(refused.reason, Reason::DownloadFailed, "{refused:?}");
    assert_eq!(rig.power_on(), Ok(Slot::A), "the damaged slot was booted");

    // With the repository reachable, the slot is written afresh and then activated.
    let mut device = rig.device(Disk::new());
    let mut state = device.load_state().unwrap();
    boot(&mut device, &mut state, &rig.health()).unwrap();
    let installed = device
        .install(&mut state, &v2, &Fetch::plain(), &quiet)
        .unwrap();
    assert!(
        matches!(
            installed,
            Installed::Activated {
                slot: Slot::B,
                from_staged: false,
                ..
            }
        ),
        "{installed:?}"
    );
    assert_eq!(slot_b(&rig), Some(Image::V2));
    assert_eq!(rig.power_on(), Ok(Slot::B));
}

fn for_assignment(v: &Verified, id: &str) -> Verified {
    let mut v = v.clone();
    v.release.assignment = Some(id.into());
    v
}

fn downloaded_reports(state: &AgentState) -> usize {
    state
        .outbox
        .iter()
        .filter(|r| r.status == "downloaded")
        .count()
}

#[test]
fn a_staged_release_is_reported_once_per_download_only_assignment() {
    let mut rig = Rig::new(Backend::Grub);
    let (mut device, mut state, v2) = factory_device_with_v2_verified(&mut rig);
    let first = for_assignment(&v2, "asg-1");
    assert!(matches!(
        device
            .stage(&mut state, &first, &Fetch::plain(), &quiet)
            .unwrap(),
        Staged::Downloaded { .. }
    ));
    assert_eq!(downloaded_reports(&state), 1);
    assert_eq!(state.downloaded_for.as_deref(), Some("asg-1"));
    // The same assignment again: nothing new to say.
    assert_eq!(
        device
            .stage(&mut state, &unreachable(&first), &Fetch::plain(), &quiet)
            .unwrap(),
        Staged::AlreadyStaged { slot: Slot::B }
    );
    assert_eq!(downloaded_reports(&state), 1);
    // A new download-only assignment of the release already there (a new campaign, say) is
    // answered from the slot, re-verified, and reported, so that campaign sees the device.
    let second = for_assignment(&unreachable(&v2), "asg-2");
    assert_eq!(
        device
            .stage(&mut state, &second, &Fetch::plain(), &quiet)
            .unwrap(),
        Staged::AlreadyStaged { slot: Slot::B }
    );
    assert_eq!(downloaded_reports(&state), 2);
    let last = state.outbox.last().unwrap();
    assert_eq!(last.assignment.as_deref(), Some("asg-2"));
    assert_eq!(
        device.load_state().unwrap().downloaded_for.as_deref(),
        Some("asg-2")
    );
}
