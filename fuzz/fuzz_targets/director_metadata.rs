//! Director metadata as a device receives it (rampart-core::director): a director root (pinned
//! or a rotation) and the device's director targets.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_core::director::{DirectorTargets, DirectorTrust, check_director_root};
use rampart_core::metadata::Metadata;

fuzz_target!(|data: &[u8]| {
    let _ = check_director_root(data, "00");
    let _ = DirectorTrust::new(data);
    if let Ok(md) = Metadata::<DirectorTargets>::from_bytes("director targets", data) {
        let _ = md.signed.device_id();
    }
});
