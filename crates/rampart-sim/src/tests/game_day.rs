//! Game days on the virtual clock: what compromised devices show the server, and the sim's
//! record of their containment and recovery. (Detection by the real server's detectors is the
//! system test's, `rampart-system-tests`' game day.)

use std::collections::{BTreeSet, HashSet};

use rampart_protocol::{QuarantineState, QuarantineStatement, SignedQuarantine};

use super::{Bench, V2, fleet, sha};
use crate::compromise::{CompromiseKind, Infection};
use crate::{FORGED_VERSION, GameDay};

/// A statement as the server's poll answer carries it (the sim only records it; the agent's
/// verification of its signature is the quarantine's own tests).
pub(super) fn quarantine_statement(device: &str) -> SignedQuarantine {
    SignedQuarantine {
        signed: QuarantineStatement {
            kind: "rampart-quarantine".into(),
            device_id: device.into(),
            incident: "inc-game-day".into(),
            state: QuarantineState::Quarantined,
            containment: true,
            issued: 0,
            expires: i64::MAX,
        },
        signatures: Vec::new(),
    }
}

fn game_day(b: &Bench) -> GameDay {
    let mut day = GameDay::default();
    for d in &b.fleet.devices {
        day.add(d);
    }
    day
}

/// Applies every compromise due now, as the fleet's injector does at its time (a device the
/// attacker rebooted powers on after the reboot delay, not at its next poll).
fn strike(b: &mut Bench) {
    let now = b.now;
    for (i, d) in b.fleet.devices.iter_mut().enumerate() {
        if let Some(at) = d.compromise(&b.fleet.shared, now) {
            b.queue.push(std::cmp::Reverse((at, i)));
        }
    }
}

fn reported_versions(b: &Bench) -> Vec<(String, String)> {
    let st = b.fake.state();
    let mut out: Vec<(String, String)> = st
        .facts
        .iter()
        .map(|(d, f)| {
            (
                d.clone(),
                f["firmware_version"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn compromised_devices_show_the_server_what_they_run_and_a_reimage_of_both_slots_recovers_them() {
    let mut b = fleet(30, |s| {
        s.compromises = vec![
            "forged-report=3@20".parse().unwrap(),
            "stolen-key=3@20".parse().unwrap(),
        ];
    });
    // A tampered slot (which the real server sees through attestation) on one more device.
    let tampered = b
        .fleet
        .devices
        .iter()
        .position(|d| d.infection.is_none())
        .unwrap();
    b.fleet.devices[tampered].infection = Some(Infection::new(
        CompromiseKind::TamperedSlot,
        std::time::Duration::from_secs(20),
    ));
    let victims: BTreeSet<String> = b
        .fleet
        .devices
        .iter()
        .filter(|d| d.infection.is_some())
        .map(|d| d.profile.identity.id.clone())
        .collect();
    assert_eq!(victims.len(), 7);

    b.run_for(20);
    b.assert_all_settled();
    assert_eq!(
        game_day(&b).applied(),
        0,
        "nothing is compromised before its time"
    );
    strike(&mut b);
    // The attacker's reboot does not wait for the agent's next poll (8 to 12 s away): the
    // device powers on after the reboot delay (1 s), and its first poll tells what it runs.
    b.run_for(2);
    let stolen_version = b.fleet.shared.stolen.version.clone();
    let reporting_stolen = reported_versions(&b)
        .iter()
        .filter(|(_, v)| *v == stolen_version)
        .count();
    assert_eq!(reporting_stolen, 3, "{:?}", reported_versions(&b));
    b.run_for(28);

    // What the server is told: forged reports claim a version no release has, stolen-key
    // devices run (and report) the stolen release; everyone else is on 1.0.0.
    let stolen = b.fleet.shared.stolen.clone();
    for (device, version) in reported_versions(&b) {
        let kind = b
            .fleet
            .devices
            .iter()
            .find(|d| d.profile.identity.id == device)
            .and_then(|d| d.infection.as_ref().map(|i| i.kind));
        let want = match kind {
            Some(CompromiseKind::ForgedReport) => FORGED_VERSION,
            Some(CompromiseKind::StolenKey) => stolen.version.as_str(),
            _ => "1.0.0",
        };
        assert_eq!(version, want, "{device} ({kind:?})");
    }
    for d in &b.fleet.devices {
        let status = d.snapshot(b.now);
        let holds = d.slot_sha256(status.committed.unwrap()).unwrap();
        match d.infection.as_ref().map(|i| i.kind) {
            Some(CompromiseKind::StolenKey) => assert_eq!(holds, stolen.sha256),
            // The slot no longer holds what the state file says, yet it boots.
            Some(CompromiseKind::TamperedSlot) => {
                assert_ne!(holds, sha(&b.v1));
                assert_eq!(status.running, status.committed, "the tampered slot boots");
            }
            _ => assert_eq!(holds, sha(&b.v1)),
        }
    }
    let day = game_day(&b);
    assert_eq!(day.applied(), 7);
    assert_eq!((day.contained(), day.recovered()), (0, 0));

    // The server's response: quarantine and a re-image onto 2.0.0 for each victim.
    {
        let mut st = b.fake.state();
        for v in &victims {
            st.quarantined.insert(v.clone());
            st.reimage
                .insert(v.clone(), (format!("reimage-{v}"), V2.to_owned()));
        }
    }
    b.run_for(120);
    b.assert_all_settled();
    let day = game_day(&b);
    assert_eq!(day.contained(), 7, "{day:#?}");
    assert_eq!(day.recovered(), 7, "{day:#?}");
    assert!(day.healthy_quarantined.is_empty(), "{day:#?}");
    for r in &day.compromised {
        let (c, q, rec) = (
            r.compromised.unwrap(),
            r.contained.unwrap(),
            r.recovered.unwrap(),
        );
        assert!(c <= q && q <= rec, "{r:?}");
    }
    let v2 = super::image("2.0.0", super::LEN);
    for d in b
        .fleet
        .devices
        .iter()
        .filter(|d| victims.contains(&d.profile.identity.id))
    {
        for slot in rampart_boot::ab::Slot::BOTH {
            assert_eq!(
                d.slot_sha256(slot).as_deref(),
                Some(sha(&v2).as_str()),
                "{} slot {slot}: no slot keeps the suspect image",
                d.profile.identity.id
            );
        }
    }
    // Reported as re-imaged on both slots, and the recovered devices tell the truth again.
    let reimaged: HashSet<String> = b
        .fake
        .reports("installed")
        .into_iter()
        .filter(|r| r.details["reimaged"] == serde_json::json!(["a", "b"]))
        .map(|r| r.device)
        .collect();
    assert_eq!(reimaged.len(), 7, "{reimaged:?}");
    for (device, version) in reported_versions(&b) {
        let want = if victims.contains(&device) {
            "2.0.0"
        } else {
            "1.0.0"
        };
        assert_eq!(version, want, "{device}");
    }
}

#[test]
fn a_healthy_device_told_it_is_quarantined_counts_as_wrongly_quarantined() {
    let mut b = fleet(10, |s| {
        s.compromises = vec!["forged-report=1@5".parse().unwrap()];
    });
    let healthy = b
        .fleet
        .devices
        .iter()
        .find(|d| d.infection.is_none())
        .map(|d| d.profile.identity.id.clone())
        .unwrap();
    b.run_for(5);
    strike(&mut b);
    b.fake.state().quarantined.insert(healthy.clone());
    b.run_for(30);
    let day = game_day(&b);
    assert_eq!(
        day.healthy_quarantined
            .iter()
            .map(|(d, _)| d.as_str())
            .collect::<Vec<_>>(),
        vec![healthy.as_str()]
    );
    assert_eq!(
        day.contained(),
        0,
        "the compromised device was not quarantined"
    );
}
