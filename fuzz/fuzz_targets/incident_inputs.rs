//! Incident-response inputs from outside the server (rampart-incident, rampart-notify): a
//! chain-of-custody export as `rampart incident verify-export` reads it (with no trusted keys it
//! must be refused, never accepted or panicking), playbooks and detector thresholds as the
//! configuration file and `PUT /api/v1/playbooks` give them (what parses is written back and
//! parses the same), and an RFC 5424 syslog message as a receiver reads it (what parses is
//! written back and parses the same).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_incident::custody::verify_export;
use rampart_incident::detect::DetectorConfig;
use rampart_incident::playbook::Playbooks;

fuzz_target!(|data: &[u8]| {
    assert!(
        verify_export(data, &[], None).is_err(),
        "an export verified with no trusted audit key"
    );
    if let Ok(playbooks) = serde_json::from_slice::<Playbooks>(data) {
        let written = serde_json::to_vec(&playbooks).expect("playbooks serialize");
        let again: Playbooks = serde_json::from_slice(&written).expect("written playbooks parse");
        assert_eq!(again, playbooks);
    }
    if let Ok(config) = serde_json::from_slice::<DetectorConfig>(data) {
        let _ = config.validate();
    }
    if let Ok(message) = rampart_notify::syslog::parse(data) {
        if let Ok(written) = message.to_bytes(usize::MAX) {
            let again = rampart_notify::syslog::parse(&written).expect("a written message parses");
            assert_eq!(again, message);
        }
    }
});
