//! Every rule on a virtual clock: the times are plain numbers.

// Settings are built by changing one field of the defaults, as an operator's file does.
#![allow(clippy::field_reassign_with_default)]

use serde_json::json;

use super::*;
use crate::model::Severity;

fn detectors() -> Detectors {
    Detectors::new(DetectorConfig::default()).unwrap()
}

fn keys(found: &[Finding]) -> Vec<(String, Option<String>)> {
    found
        .iter()
        .map(|f| (f.cause.dedupe_key(), f.device_id.clone()))
        .collect()
}

fn failed(device: &str, release: &str, at: i64) -> Signal {
    Signal::AttestationFailed {
        device_id: device.into(),
        release: release.into(),
        check: "pcr_mismatch".into(),
        reason: "PCR 13 differs".into(),
        at,
    }
}

#[test]
fn failing_attestations_of_one_release_share_one_cause_and_each_device_is_found_once() {
    let mut d = detectors();
    let a = d.observe(&failed("d1", "fw-2.img", 100), None, 101);
    let b = d.observe(&failed("d2", "fw-2.img", 102), None, 103);
    let again = d.observe(&failed("d1", "fw-2.img", 104), None, 105);
    assert_eq!(
        keys(&a),
        [(
            "attestation_failed:release:fw-2.img".into(),
            Some("d1".into())
        )]
    );
    assert_eq!(b[0].cause, a[0].cause);
    assert!(again.is_empty(), "one finding per device and cause");
    assert_eq!(a[0].first_signal_at, 100);
    assert_eq!(a[0].severity, Severity::High);
    // Without a release, the failed check's class is the cause.
    let c = d.observe(&failed("d3", "", 106), None, 106);
    assert_eq!(c[0].cause.key, "check:pcr_mismatch");
}

#[test]
fn a_device_is_found_again_after_the_repeat_window() {
    let mut d = detectors();
    assert_eq!(d.observe(&failed("d1", "r", 0), None, 0).len(), 1);
    assert!(d.observe(&failed("d1", "r", 599), None, 599).is_empty());
    assert_eq!(d.observe(&failed("d1", "r", 600), None, 600).len(), 1);
}

#[test]
fn verification_failures_are_one_cause_per_release() {
    let mut d = detectors();
    let sig = |dev: &str, rel: &str| Signal::VerificationFailed {
        device_id: dev.into(),
        release: rel.into(),
        reason: "hash_mismatch".into(),
        at: 5,
    };
    let a = d.observe(&sig("d1", "fw-3.img"), None, 6);
    let b = d.observe(&sig("d2", "fw-3.img"), None, 6);
    let c = d.observe(&sig("d3", "fw-4.img"), None, 6);
    assert_eq!(a[0].cause, b[0].cause);
    assert_ne!(a[0].cause, c[0].cause);
    assert_eq!(a[0].cause.dedupe_key(), "verification_failed:fw-3.img");
    assert_eq!(a[0].release.as_deref(), Some("fw-3.img"));
}

fn stale(device: &str, hw: &str, since: i64) -> Signal {
    Signal::AttestationStale {
        device_id: device.into(),
        hardware_id: hw.into(),
        stale_since: since,
    }
}

#[test]
fn stale_attestation_needs_the_grace_and_the_count_per_hardware() {
    let mut config = DetectorConfig::default();
    config.attestation_stale = StaleConfig {
        grace_secs: 100,
        threshold: 3,
        window_secs: 1000,
    };
    let mut d = Detectors::new(config).unwrap();
    // Inside the grace: nothing counts yet.
    assert!(d.observe(&stale("d1", "hw-a", 0), None, 50).is_empty());
    assert!(d.observe(&stale("d1", "hw-a", 0), None, 100).is_empty());
    assert!(d.observe(&stale("d2", "hw-a", 10), None, 110).is_empty());
    // Another hardware's devices do not add up.
    assert!(d.observe(&stale("x1", "hw-b", 10), None, 120).is_empty());
    let burst = d.observe(&stale("d3", "hw-a", 20), None, 130);
    assert_eq!(
        keys(&burst),
        [
            ("attestation_stale:hw-a".into(), Some("d1".into())),
            ("attestation_stale:hw-a".into(), Some("d2".into())),
            ("attestation_stale:hw-a".into(), Some("d3".into())),
        ]
    );
    assert_eq!(burst[0].first_signal_at, 0);
    // While the burst lasts, a further stale device of that hardware joins at once.
    let join = d.observe(&stale("d4", "hw-a", 30), None, 140);
    assert_eq!(
        keys(&join),
        [("attestation_stale:hw-a".into(), Some("d4".into()))]
    );
    // Reading the same stale devices again finds nothing new.
    assert!(d.observe(&stale("d1", "hw-a", 0), None, 150).is_empty());
}

#[test]
fn stale_devices_spread_wider_than_the_window_are_not_a_burst() {
    let mut config = DetectorConfig::default();
    config.attestation_stale = StaleConfig {
        grace_secs: 0,
        threshold: 2,
        window_secs: 100,
    };
    let mut d = Detectors::new(config).unwrap();
    assert!(d.observe(&stale("d1", "hw", 0), None, 0).is_empty());
    assert!(d.observe(&stale("d2", "hw", 150), None, 150).is_empty());
    assert_eq!(d.observe(&stale("d3", "hw", 160), None, 160).len(), 2);
}

fn rolled_back(device: &str, hw: &str, release: &str, at: i64) -> Signal {
    Signal::RolledBack {
        device_id: device.into(),
        hardware_id: hw.into(),
        release: release.into(),
        at,
    }
}

#[test]
fn rollback_spikes_count_per_release_and_hardware() {
    let mut config = DetectorConfig::default();
    config.rollback_spike = SpikeConfig {
        threshold: 3,
        window_secs: 60,
    };
    let mut d = Detectors::new(config).unwrap();
    assert!(
        d.observe(&rolled_back("d1", "hw-a", "fw-2", 0), None, 0)
            .is_empty()
    );
    assert!(
        d.observe(&rolled_back("d2", "hw-a", "fw-2", 10), None, 10)
            .is_empty()
    );
    // Same release on other hardware, and another release on this hardware: separate.
    assert!(
        d.observe(&rolled_back("e1", "hw-b", "fw-2", 11), None, 11)
            .is_empty()
    );
    assert!(
        d.observe(&rolled_back("e2", "hw-a", "fw-3", 12), None, 12)
            .is_empty()
    );
    let spike = d.observe(&rolled_back("d3", "hw-a", "fw-2", 20), None, 20);
    assert_eq!(spike.len(), 3);
    assert!(
        spike
            .iter()
            .all(|f| f.cause.dedupe_key() == "rollback_spike:fw-2@hw-a")
    );
    assert_eq!(spike[0].first_signal_at, 0);
    // While it lasts, further rolled-back devices join.
    let join = d.observe(&rolled_back("d4", "hw-a", "fw-2", 30), None, 30);
    assert_eq!(
        keys(&join),
        [("rollback_spike:fw-2@hw-a".into(), Some("d4".into()))]
    );
    // Rollbacks spread over more than the window are no spike.
    let mut d = Detectors::new(d.config().clone()).unwrap();
    for (i, at) in [0, 61, 122, 183].into_iter().enumerate() {
        let dev = format!("s{i}");
        assert!(
            d.observe(&rolled_back(&dev, "hw", "fw", at), None, at)
                .is_empty()
        );
    }
}

#[test]
fn unknown_versions_and_slot_hashes_are_found_only_against_a_registry() {
    let mut config = DetectorConfig::default();
    config.unknown_firmware.versions = true;
    let mut d = Detectors::new(config.clone()).unwrap();
    let known = KnownReleases {
        versions: ["1.0.0".to_owned()].into(),
        sha256: ["aa".repeat(32)].into(),
    };
    let inv = |version: &str, hash: &str| Signal::Inventory {
        device_id: "d1".into(),
        version: version.into(),
        slot_sha256: vec![("a".into(), hash.into())],
        at: 7,
    };
    assert!(
        d.observe(&inv("1.0.0", &"AA".repeat(32)), Some(&known), 8)
            .is_empty()
    );
    let found = d.observe(&inv("6.6.6", &"bb".repeat(32)), Some(&known), 8);
    assert_eq!(
        keys(&found),
        [
            ("unknown_firmware:version:6.6.6".into(), Some("d1".into())),
            (
                format!("unknown_firmware:sha256:{}", "bb".repeat(32)),
                Some("d1".into())
            ),
        ]
    );
    // No registry: nothing can be judged unknown.
    assert!(detectors().observe(&inv("6.6.6", "cc"), None, 8).is_empty());
    // By default only the image (its hash) is judged, not the version a device claims.
    let found = detectors().observe(&inv("6.6.6", &"bb".repeat(32)), Some(&known), 8);
    assert_eq!(found.len(), 1);
    assert!(found[0].cause.key.starts_with("sha256:"));
}

#[test]
fn the_log_monitor_credentials_and_hardware_changes_each_name_their_cause() {
    let mut d = detectors();
    let u = d.observe(
        &Signal::UnknownSignedRelease {
            target: "evil.img".into(),
            sha256: "ff".into(),
            at: 1,
            detail: json!({}),
        },
        None,
        2,
    );
    assert_eq!(
        u[0].cause.dedupe_key(),
        "unknown_signed_release:evil.img:ff"
    );
    assert_eq!(u[0].severity, Severity::Critical);
    assert_eq!(u[0].device_id, None);
    let r = d.observe(
        &Signal::RevokedCredentialUse {
            credential: "token:ci".into(),
            device_id: None,
            at: 1,
            detail: json!({}),
        },
        None,
        2,
    );
    assert_eq!(r[0].cause.dedupe_key(), "revoked_credential_use:token:ci");
    let h = d.observe(
        &Signal::HardwareIdChange {
            device_id: "d1".into(),
            from: "board-a".into(),
            to: "board-b".into(),
            at: 1,
        },
        None,
        2,
    );
    assert_eq!(
        h[0].cause.dedupe_key(),
        "hardware_id_change:board-a->board-b"
    );
}

#[test]
fn a_disabled_detector_finds_nothing_and_its_severity_is_configurable() {
    let mut config = DetectorConfig::default();
    config.disabled = vec![Detector::AttestationFailed];
    config
        .severity
        .insert(Detector::HardwareIdChange, Severity::Critical);
    let mut d = Detectors::new(config).unwrap();
    assert!(d.observe(&failed("d1", "r", 0), None, 0).is_empty());
    let h = d.observe(
        &Signal::HardwareIdChange {
            device_id: "d1".into(),
            from: "a".into(),
            to: "b".into(),
            at: 0,
        },
        None,
        0,
    );
    assert_eq!(h[0].severity, Severity::Critical);
}

#[test]
fn the_fail_closed_detectors_cannot_be_disabled() {
    for detector in DetectorConfig::FAIL_CLOSED {
        let config = DetectorConfig {
            disabled: vec![detector],
            ..DetectorConfig::default()
        };
        let err = config.validate().unwrap_err();
        assert_eq!(err.key, "disabled");
        assert!(err.problem.contains("fails closed"), "{err}");
    }
}

#[test]
fn a_failing_signal_source_is_a_finding_of_its_own() {
    let mut d = detectors();
    let f = d
        .detector_failure("signals:reports", "database is locked", 50)
        .unwrap();
    assert_eq!(f.cause.dedupe_key(), "detector_failure:signals:reports");
    assert_eq!(f.detail["error"], "database is locked");
    assert!(d.detector_failure("signals:reports", "again", 51).is_none());
    // Not recorded (the store failed): forgotten, so the next read finds it again.
    d.forget(&f);
    assert!(d.detector_failure("signals:reports", "again", 52).is_some());
}

#[test]
fn an_engine_past_its_bound_is_stalled_and_one_that_never_beat_counts_from_the_start() {
    let mut config = DetectorConfig::default();
    config.heartbeat.bound_secs = 30;
    config.heartbeat.bounds.insert("audit_anchor".into(), 600);
    let mut d = Detectors::new(config).unwrap();
    let beats = [
        Beat {
            engine: "campaigns".into(),
            beat_at: Some(100),
        },
        Beat {
            engine: "webhooks".into(),
            beat_at: Some(60),
        },
        Beat {
            engine: "audit_anchor".into(),
            beat_at: Some(0),
        },
        Beat {
            engine: "renewal".into(),
            beat_at: None,
        },
    ];
    let found = d.stalled_engines(&beats, 100, 120);
    assert_eq!(
        keys(&found),
        [("engine_stalled:webhooks".into(), None)],
        "webhooks is 60 s old (bound 30); audit_anchor has 600; renewal counts from 100"
    );
    assert_eq!(found[0].first_signal_at, 90);
    let later = d.stalled_engines(&beats, 100, 200);
    assert_eq!(
        keys(&later),
        [
            ("engine_stalled:campaigns".into(), None),
            ("engine_stalled:renewal".into(), None),
        ],
        "webhooks was found already; campaigns and renewal are now past 30 s"
    );
}

#[test]
fn the_detectors_table_reads_from_toml_and_bad_values_name_their_key() {
    let config: DetectorConfig = toml::from_str(
        r#"
        disabled = ["unknown_firmware"]
        repeat_after_secs = 60
        [severity]
        rollback_spike = "high"
        [attestation_stale]
        threshold = 2
        [rollback_spike]
        threshold = 4
        window_secs = 120
        [heartbeat]
        bound_secs = 20
        bounds = { audit_anchor = 900 }
        "#,
    )
    .unwrap();
    config.validate().unwrap();
    assert!(!config.enabled(Detector::UnknownFirmware));
    assert_eq!(config.severity_of(Detector::RollbackSpike), Severity::High);
    assert_eq!(
        config.attestation_stale.grace_secs, 900,
        "defaults fill the rest"
    );
    assert_eq!(config.heartbeat_bound("audit_anchor"), 900);
    assert_eq!(config.heartbeat_bound("campaigns"), 20);
    // An engine that never beat counts from the start; one past its bound is stalled.
    let never = Beat {
        engine: "campaigns".into(),
        beat_at: None,
    };
    let health = config.engine_health(&never, 1_000, 1_020);
    assert_eq!(
        (health.last, health.age_secs, health.bound_secs),
        (1_000, 20, 20)
    );
    assert!(!health.stalled, "at its bound, not past it");
    assert!(config.engine_health(&never, 1_000, 1_021).stalled);
    let anchor = Beat {
        engine: "audit_anchor".into(),
        beat_at: Some(2_000),
    };
    assert!(!config.engine_health(&anchor, 1_000, 2_900).stalled);
    assert!(config.engine_health(&anchor, 1_000, 2_901).stalled);

    let bad = DetectorConfig {
        rollback_spike: SpikeConfig {
            threshold: 0,
            window_secs: 60,
        },
        ..DetectorConfig::default()
    };
    assert_eq!(bad.validate().unwrap_err().key, "rollback_spike.threshold");
    let mut bad = DetectorConfig::default();
    bad.heartbeat.bounds.insert("campaigns".into(), 1);
    assert_eq!(
        bad.validate().unwrap_err().key,
        "heartbeat.bounds.campaigns"
    );
    assert!(toml::from_str::<DetectorConfig>("thresold = 3").is_err());
}

#[test]
fn long_signal_values_are_cut_in_cause_keys() {
    let mut d = detectors();
    let f = d.observe(&failed("d1", &"é".repeat(300), 0), None, 0);
    assert!(f[0].cause.key.len() <= MAX_KEY_TEXT + "release:".len());
}

#[test]
fn a_monitor_alert_with_a_huge_or_control_character_target_still_gives_a_storable_finding() {
    // Regression: a 200-byte target made a 266-byte title that the store refused, and the
    // detector read the same alert again every round.
    let mut d = detectors();
    for target in ["0".repeat(10_000), "fw\n\u{1b}[31m.bin".into()] {
        let f = d.observe(
            &Signal::UnknownSignedRelease {
                target: target.clone(),
                sha256: "0".repeat(64),
                at: 0,
                detail: json!({}),
            },
            None,
            0,
        );
        assert_eq!(f.len(), 1);
        for text in [&f[0].title, &f[0].cause.key] {
            assert!(text.len() <= crate::finding::MAX_FINDING_TEXT, "{text:?}");
            assert!(!text.chars().any(char::is_control), "{text:?}");
        }
    }
}
