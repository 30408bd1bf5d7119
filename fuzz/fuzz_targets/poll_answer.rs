//! The native poll answer as the agent parses it (rampart-agent::server_client over
//! rampart-protocol's wire types), and the error document it reads from a refusal.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_agent::server_client::parse_poll_answer;
use rampart_protocol::{ErrorDocument, PollAnswer};

/// The device the seeds are addressed to (make-seeds uses the same id).
const DEVICE_ID: &str = "device-0001";

fuzz_target!(|data: &[u8]| {
    let _ = parse_poll_answer(data, DEVICE_ID);
    if let Ok(answer) = serde_json::from_slice::<PollAnswer>(data) {
        // What the server writes is what the agent reads.
        let written = serde_json::to_vec(&answer).expect("a poll answer serializes");
        let read: PollAnswer = serde_json::from_slice(&written).expect("a written answer parses");
        assert_eq!(read, answer);
    }
    let _ = serde_json::from_slice::<ErrorDocument>(data);
});
