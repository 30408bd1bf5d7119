//! Checkpoints (rampart-log::checkpoint): the body of a log's signed note.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_log::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(checkpoint) = Checkpoint::parse_body(body) {
        // A parsed checkpoint is valid and writes back to the bytes it came from.
        assert!(checkpoint.validate().is_ok());
        assert_eq!(checkpoint.to_body(), body);
    }
});
