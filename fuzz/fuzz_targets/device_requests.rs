//! The native device API's request bodies as the server reads them (rampart-protocol): the
//! facts of a poll, a report, an attribute update, and report status spellings.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_protocol::{AttributesUpdate, DeviceFacts, ReportRequest, ReportStatus};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// Parses `data` as `T` and, when it parses, checks that writing it gives a body that parses to
/// the same value (the agent writes these bodies with the same types).
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    if let Ok(value) = serde_json::from_slice::<T>(data) {
        let written = serde_json::to_vec(&value).expect("a request serializes");
        let read: T = serde_json::from_slice(&written).expect("a written request parses");
        assert_eq!(read, value);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<DeviceFacts>(data);
    round_trip::<ReportRequest>(data);
    round_trip::<AttributesUpdate>(data);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(status) = text.parse::<ReportStatus>()
    {
        assert_eq!(status.as_str().parse::<ReportStatus>().ok(), Some(status));
    }
});
