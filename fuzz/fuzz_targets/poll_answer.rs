//! The native poll answer as the agent parses it (rampart-agent::director).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_agent::director::parse_poll_answer;

/// The device the seeds are addressed to (make-seeds uses the same id).
const DEVICE_ID: &str = "device-0001";

fuzz_target!(|data: &[u8]| {
    let _ = parse_poll_answer(data, DEVICE_ID);
});
