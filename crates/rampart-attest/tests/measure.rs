//! The verifier's check of a device's event log against its quoted PCRs and the golden
//! measurements of its release: one test per way it must fail closed, and the positive control.

use std::collections::BTreeMap;

use rampart_attest::eventlog::{
    ALG_SHA1, AlgorithmSize, EV_IPL, EV_NO_ACTION, EventLog, EventLogError, extend_sha256,
};
use rampart_attest::measure::{
    GoldenError, GoldenMeasurements, MeasurementError, boot_log, check_measurements,
    firmware_pcrs_json, release_claim_data,
};

const PCR: u8 = 13;
const IMAGE: [u8; 32] = [0x5a; 32];
const TARGET: &str = "firmware/widget-2.0.bin";

fn golden() -> GoldenMeasurements {
    GoldenMeasurements {
        target_path: TARGET.to_string(),
        image_sha256: IMAGE,
        firmware_pcrs: BTreeMap::new(),
    }
}

/// What a TPM that measured exactly `log` quotes for `pcrs`.
fn quoted_for(log: &EventLog, pcrs: &[u8]) -> BTreeMap<u8, [u8; 32]> {
    let replayed = log.replay_sha256().unwrap();
    pcrs.iter()
        .map(|&p| (p, replayed.get(&u32::from(p)).copied().unwrap_or([0; 32])))
        .collect()
}

fn check(log: &EventLog) -> Result<(), MeasurementError> {
    check_measurements(log, &quoted_for(log, &[PCR]), &golden(), PCR)
}

#[test]
fn the_agents_boot_log_for_the_release_passes() {
    check(&boot_log(PCR, IMAGE, TARGET)).unwrap();
}

#[test]
fn a_log_that_does_not_replay_to_the_quote_is_refused() {
    let log = boot_log(PCR, IMAGE, TARGET);
    let mut quoted = quoted_for(&log, &[PCR]);
    quoted.insert(PCR, [0x11; 32]);
    let err = check_measurements(&log, &quoted, &golden(), PCR).unwrap_err();
    assert!(
        matches!(err, MeasurementError::LogDoesNotReplay { pcr: PCR, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("does not replay to the quoted PCR value"),
        "{err}"
    );
}

#[test]
fn a_quoted_pcr_the_log_never_touched_must_be_zero() {
    let log = boot_log(PCR, IMAGE, TARGET);
    let mut quoted = quoted_for(&log, &[0, PCR]);
    quoted.insert(0, [0x22; 32]);
    let err = check_measurements(&log, &quoted, &golden(), PCR).unwrap_err();
    assert!(
        matches!(err, MeasurementError::LogDoesNotReplay { pcr: 0, .. }),
        "{err}"
    );
}

#[test]
fn an_image_event_whose_digest_is_not_the_releases_is_refused() {
    let log = boot_log(PCR, [0x66; 32], TARGET);
    let err = check(&log).unwrap_err();
    assert_eq!(
        err,
        MeasurementError::ImageMismatch {
            pcr: PCR,
            target_path: TARGET.into(),
            expected: hex::encode(IMAGE),
            found: hex::encode([0x66; 32]),
        }
    );
}

#[test]
fn a_release_claim_for_another_target_is_refused() {
    let log = boot_log(PCR, IMAGE, "firmware/widget-1.0.bin");
    let err = check(&log).unwrap_err();
    assert!(
        matches!(&err, MeasurementError::ReleaseClaimMismatch { found, .. } if found == "firmware/widget-1.0.bin"),
        "{err}"
    );
}

#[test]
fn a_release_claim_whose_digest_is_not_its_data_is_refused() {
    let mut log = boot_log(PCR, IMAGE, TARGET);
    log.events[1].digests[0].value = release_claim_data("firmware/other.bin")[..32].to_vec();
    let err = check(&log).unwrap_err();
    assert!(
        matches!(err, MeasurementError::ClaimDigestMismatch { .. }),
        "{err}"
    );
}

#[test]
fn an_event_in_the_agent_pcr_that_is_not_ours_is_refused() {
    // Something else extended the agent PCR before the agent's events.
    let mut log = EventLog::new_sha256();
    log.push_sha256(
        u32::from(PCR),
        EV_IPL,
        [9; 32],
        b"grub_cmd linux /vmlinuz".to_vec(),
    );
    log.events.extend(boot_log(PCR, IMAGE, TARGET).events);
    let err = check(&log).unwrap_err();
    assert!(
        matches!(err, MeasurementError::ForeignEvent { index: 1, .. }),
        "{err}"
    );

    // Or replaced the image event with its own of the same digest.
    let mut log = boot_log(PCR, IMAGE, TARGET);
    log.events[0].data = b"not rampart".to_vec();
    let err = check(&log).unwrap_err();
    assert!(
        matches!(err, MeasurementError::ForeignEvent { index: 1, .. }),
        "{err}"
    );
}

#[test]
fn a_second_boots_events_in_the_agent_pcr_are_refused() {
    let mut log = boot_log(PCR, IMAGE, TARGET);
    log.events.extend(boot_log(PCR, IMAGE, TARGET).events);
    let err = check(&log).unwrap_err();
    assert_eq!(err, MeasurementError::EventCount { pcr: PCR, found: 4 });
}

#[test]
fn a_log_without_the_agent_pcr_in_the_quote_is_refused() {
    let log = boot_log(PCR, IMAGE, TARGET);
    let err = check_measurements(&log, &quoted_for(&log, &[0]), &golden(), PCR).unwrap_err();
    assert!(
        matches!(err, MeasurementError::PcrNotQuoted { pcr: PCR, .. }),
        "{err}"
    );
}

#[test]
fn a_firmware_pcr_other_than_the_golden_value_is_refused() {
    let mut log = boot_log(PCR, IMAGE, TARGET);
    log.push_sha256(0, EV_IPL, [3; 32], b"firmware".to_vec());
    let mut golden = golden();
    golden
        .firmware_pcrs
        .insert(0, extend_sha256(&[0; 32], &[3; 32]));
    check_measurements(&log, &quoted_for(&log, &[0, PCR]), &golden, PCR).unwrap();

    golden.firmware_pcrs.insert(0, [0x44; 32]);
    let err = check_measurements(&log, &quoted_for(&log, &[0, PCR]), &golden, PCR).unwrap_err();
    assert!(
        matches!(err, MeasurementError::FirmwarePcrMismatch { pcr: 0, .. }),
        "{err}"
    );
    // A golden PCR the quote does not cover is not assumed good.
    let err = check_measurements(&log, &quoted_for(&log, &[PCR]), &golden, PCR).unwrap_err();
    assert!(
        matches!(err, MeasurementError::PcrNotQuoted { pcr: 0, .. }),
        "{err}"
    );
}

#[test]
fn an_extended_event_without_a_sha256_digest_is_refused() {
    let mut log = boot_log(PCR, IMAGE, TARGET);
    log.algorithms.push(AlgorithmSize {
        algorithm: ALG_SHA1,
        digest_size: 20,
    });
    log.events[0].digests[0].algorithm = ALG_SHA1;
    log.events[0].digests[0].value.truncate(20);
    let err = log.replay_sha256().unwrap_err();
    assert!(
        matches!(err, EventLogError::Invalid { event: 1, .. }),
        "{err}"
    );
}

#[test]
fn garbage_and_truncated_logs_are_refused() {
    let bytes = boot_log(PCR, IMAGE, TARGET).encode();
    assert!(matches!(
        EventLog::parse(&bytes[..bytes.len() - 1]),
        Err(EventLogError::Truncated { .. })
    ));
    assert!(matches!(
        EventLog::parse(&[]),
        Err(EventLogError::Truncated { .. })
    ));
    assert!(matches!(
        EventLog::parse(&[0xff; 200]),
        Err(EventLogError::NotCryptoAgile(_))
    ));
    assert!(matches!(
        EventLog::parse(&vec![0; rampart_attest::eventlog::MAX_LOG_BYTES + 1]),
        Err(EventLogError::TooLarge { .. })
    ));
    // A legacy SHA-1 log (first event not EV_NO_ACTION) is not crypto-agile.
    let mut legacy = bytes.clone();
    legacy[4] = 1;
    assert!(matches!(
        EventLog::parse(&legacy),
        Err(EventLogError::NotCryptoAgile(_))
    ));
    // A PCR index out of range, a digest count above the header's, a huge event size.
    let header = EventLog::new_sha256().encode().len();
    for (offset, value, what) in [
        (0, 24u32, "pcr"),
        (8, 2, "digest count"),
        (12 + 2 + 32, u32::MAX, "size"),
    ] {
        let mut bad = bytes.clone();
        bad[header + offset..header + offset + 4].copy_from_slice(&value.to_le_bytes());
        assert!(EventLog::parse(&bad).is_err(), "{what}");
    }
    // An event type the log format carries but the agent PCR must not hold.
    let mut log = boot_log(PCR, IMAGE, TARGET);
    log.events[1].event_type = EV_NO_ACTION;
    assert!(check(&log).is_err());
}

#[test]
fn golden_measurements_are_read_from_the_signed_target() {
    let pcrs = BTreeMap::from([(0u8, [1u8; 32]), (7, [2; 32])]);
    let custom = serde_json::json!({
        "rampart": { "version": "2.0.0" },
        "attestation": { "firmware_pcrs": firmware_pcrs_json(&pcrs) }
    });
    let golden =
        GoldenMeasurements::from_target(TARGET, &hex::encode(IMAGE), Some(&custom)).unwrap();
    assert_eq!(golden.image_sha256, IMAGE);
    assert_eq!(golden.firmware_pcrs, pcrs);
    // Without the field, no firmware PCR is pinned.
    let golden = GoldenMeasurements::from_target(TARGET, &hex::encode(IMAGE), None).unwrap();
    assert_eq!(golden, self::golden());
}

#[test]
fn malformed_golden_firmware_pcrs_are_refused() {
    let image = hex::encode(IMAGE);
    for bad in [
        serde_json::json!({ "24": hex::encode([0; 32]) }),
        serde_json::json!({ "07": hex::encode([0; 32]) }),
        serde_json::json!({ "x": hex::encode([0; 32]) }),
        serde_json::json!({ "0": "zz" }),
        serde_json::json!({ "0": hex::encode([0; 20]) }),
        serde_json::json!({ "0": 5 }),
        serde_json::json!(["0"]),
    ] {
        let custom = serde_json::json!({ "attestation": { "firmware_pcrs": bad } });
        let err = GoldenMeasurements::from_target(TARGET, &image, Some(&custom)).unwrap_err();
        assert!(
            matches!(err, GoldenError::BadFirmwarePcrs(_)),
            "{bad}: {err}"
        );
    }
    assert!(matches!(
        GoldenMeasurements::from_target(TARGET, "abc", None),
        Err(GoldenError::BadImageHash(_))
    ));
}
