//! Forensic evidence as the server and `rampart incident export` read it (rampart-incident):
//! a `rampart-evidence/1` bundle (what parses is written back and must parse to the same
//! bundle) and the agent log it carries (lines parsed, the chain verified from wherever it
//! starts, and checked against an anchor).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_incident::agent_log::{
    ChainStart, KnownAnchor, check_known_anchors, parse_lines, verify_chain,
};
use rampart_incident::evidence::Bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data, 1 << 20) {
        let written = bundle.to_bytes();
        let again = Bundle::parse(&written, u64::MAX).expect("a written bundle parses");
        assert_eq!(again, bundle);
        let _ = bundle.manifest.quote_qualifying_data();
        let _ = bundle.certificate_spki();
    }
    if let Ok(records) = parse_lines(data) {
        let _ = verify_chain(&records, &ChainStart::Anywhere);
        let _ = verify_chain(&records, &ChainStart::Genesis);
        if let Some(first) = records.first() {
            let known = [KnownAnchor {
                seq: first.seq.saturating_add(1),
                prev: first.hash.clone(),
            }];
            let _ = check_known_anchors(&records, &known);
        }
    }
});
