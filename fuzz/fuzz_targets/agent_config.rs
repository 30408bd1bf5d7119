//! The agent's configuration file (rampart-agent::config).
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_agent::config::Config;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Config::parse(text);
    }
});
