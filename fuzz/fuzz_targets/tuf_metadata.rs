//! TUF metadata as a client receives it (rampart-core): the four top-level roles, a trust
//! anchor, and the delegation and release rules run over what parses.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_core::TrustedSet;
use rampart_core::delegation::{matching_children, path_matches, role_keys, validate_target_path};
use rampart_core::metadata::{Metadata, Root, Snapshot, Targets, Timestamp};
use rampart_core::release::ReleaseInfo;

fuzz_target!(|data: &[u8]| {
    let _ = Metadata::<Root>::from_bytes("root", data);
    let _ = Metadata::<Timestamp>::from_bytes("timestamp", data);
    let _ = Metadata::<Snapshot>::from_bytes("snapshot", data);
    let _ = TrustedSet::new(data, 0);
    let Ok(md) = Metadata::<Targets>::from_bytes("targets", data) else {
        return;
    };
    let targets = &md.signed;
    for (path, file) in &targets.targets {
        let _ = validate_target_path(path);
        let _ = ReleaseInfo::from_custom(file.custom.as_ref());
        for child in matching_children(targets, path) {
            if let Some(d) = &targets.delegations {
                let _ = role_keys(d, &child.name);
            }
        }
        let patterns = targets
            .delegations
            .iter()
            .flat_map(|d| d.roles.iter().flatten());
        for pattern in patterns.flat_map(|r| r.paths.iter().flatten()) {
            let _ = path_matches(pattern, path);
        }
    }
});
