//! hawkBit DDI request bodies as the server parses them (rampart-ddi): feedback and configData
//! through the lenient parser, then the rules applied to them, and the Authorization header.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_ddi::config_data::ConfigData;
use rampart_ddi::wire::parse_lenient;
use rampart_ddi::{Feedback, apply_config_data, parse_authorization};

fuzz_target!(|data: &[u8]| {
    if let Ok(feedback) = parse_lenient::<Feedback>(data) {
        let _ = feedback.messages();
    }
    if let Ok(request) = parse_lenient::<ConfigData>(data) {
        let current = serde_json::Map::new();
        if let Ok(stored) = apply_config_data(&current, &request) {
            let _ = apply_config_data(&stored, &request);
        }
    }
    if let Ok(header) = std::str::from_utf8(data) {
        let _ = parse_authorization(header);
    }
});
