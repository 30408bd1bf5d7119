//! Interoperability of the event-log encoder with tpm2-tools' `tpm2_eventlog`: the log the
//! agent writes is read by the reference tool, which replays it to the same PCR values.

use std::collections::BTreeMap;
use std::process::Command;

use rampart_attest::eventlog::{
    ALG_SHA1, ALG_SHA256, AlgorithmSize, EV_IPL, Event, EventDigest, EventLog,
};
use rampart_attest::measure::{append_boot_events, boot_log};

/// The SHA-256 PCR values `tpm2_eventlog` prints for `log` (its `pcrs: sha256:` section).
fn tpm2_eventlog_sha256_pcrs(log: &EventLog) -> BTreeMap<u32, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary_bios_measurements");
    std::fs::write(&path, log.encode()).unwrap();
    let out = Command::new("tpm2_eventlog").arg(&path).output().expect(
        "tpm2_eventlog (Debian package tpm2-tools) must be installed; scripts/test.sh installs it",
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "tpm2_eventlog refused the log: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut pcrs = BTreeMap::new();
    let mut in_sha256 = false;
    for line in stdout.lines() {
        let trimmed = line.trim();
        if trimmed.ends_with(':') && line.starts_with("  ") && !line.starts_with("    ") {
            in_sha256 = trimmed == "sha256:";
            continue;
        }
        if let Some((pcr, value)) = trimmed.split_once(" : 0x").filter(|_| in_sha256) {
            pcrs.insert(pcr.trim().parse().unwrap(), value.to_string());
        }
    }
    assert!(
        !pcrs.is_empty(),
        "tpm2_eventlog printed no SHA-256 PCRs:\n{stdout}"
    );
    pcrs
}

fn ours(log: &EventLog) -> BTreeMap<u32, String> {
    log.replay_sha256()
        .unwrap()
        .into_iter()
        .map(|(pcr, v)| (pcr, hex::encode(v)))
        .collect()
}

#[test]
fn tpm2_eventlog_reads_the_agent_log_with_the_same_pcr_values() {
    let mut log = boot_log(13, [0xab; 32], "firmware/v2.bin");
    // A second boot's worth in another PCR, so more than one PCR is compared.
    append_boot_events(&mut log, 9, [0x01; 32], "firmware/v3.bin");
    assert_eq!(tpm2_eventlog_sha256_pcrs(&log), ours(&log));
}

#[test]
fn tpm2_eventlog_reads_a_two_bank_log_with_the_same_sha256_values() {
    let mut log = EventLog::new_sha256();
    log.algorithms.insert(
        0,
        AlgorithmSize {
            algorithm: ALG_SHA1,
            digest_size: 20,
        },
    );
    for (i, pcr) in [0u32, 4, 4, 7].into_iter().enumerate() {
        log.events.push(Event {
            pcr,
            event_type: EV_IPL,
            digests: vec![
                EventDigest {
                    algorithm: ALG_SHA1,
                    value: vec![i as u8; 20],
                },
                EventDigest {
                    algorithm: ALG_SHA256,
                    value: vec![i as u8 + 0x40; 32],
                },
            ],
            data: format!("event {i}\0").into_bytes(),
        });
    }
    assert_eq!(EventLog::parse(&log.encode()).unwrap(), log);
    assert_eq!(tpm2_eventlog_sha256_pcrs(&log), ours(&log));
}
