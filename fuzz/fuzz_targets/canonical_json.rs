//! Canonical JSON (rampart-core::cjson): the canonical-form check every signed document goes
//! through, and the writer whose bytes signatures cover.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_core::cjson;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let canonical = cjson::is_canonical(data);
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(bytes) = cjson::value_to_canonical_bytes(&value)
        && canonical
    {
        // Input judged canonical is verified as received: writing it again must give it back.
        assert_eq!(
            bytes, data,
            "is_canonical accepted a non-canonical document"
        );
    }
    if let Ok(sorted) = cjson::to_sorted_json_bytes(&value) {
        let again: Value = serde_json::from_slice(&sorted).expect("sorted JSON parses");
        assert_eq!(again, value, "sorted JSON changed the value");
    }
});
