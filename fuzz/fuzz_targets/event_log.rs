//! TCG crypto-agile event logs (rampart-attest::eventlog) as the server reads them from
//! devices, then the golden-measurement check over them (rampart-attest::measure).
#![no_main]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use rampart_attest::eventlog::EventLog;
use rampart_attest::measure::{GoldenMeasurements, check_measurements};

fuzz_target!(|data: &[u8]| {
    if let Ok(log) = EventLog::parse(data) {
        // What parses is written back to the same bytes' meaning.
        assert_eq!(EventLog::parse(&log.encode()).as_ref(), Ok(&log));
        if let Ok(replayed) = log.replay_sha256() {
            // The quote a TPM that measured exactly this log would give: the check may refuse
            // the events, but must not panic and must agree with the replay.
            let quoted: BTreeMap<u8, [u8; 32]> =
                replayed.iter().map(|(pcr, v)| (*pcr as u8, *v)).collect();
            let golden = GoldenMeasurements {
                target_path: "firmware/a.bin".into(),
                image_sha256: [0; 32],
                firmware_pcrs: BTreeMap::new(),
            };
            let _ = check_measurements(&log, &quoted, &golden, 13);
        }
    }
});
