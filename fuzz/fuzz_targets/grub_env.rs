//! GRUB environment blocks (rampart-boot::grubenv), as the agent reads them from disk.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_boot::grubenv;

fuzz_target!(|data: &[u8]| {
    if let Ok(vars) = grubenv::parse(data) {
        // What the agent read it can write back, and reading that gives the same variables.
        if let Ok(block) = grubenv::serialize(&vars) {
            assert_eq!(grubenv::parse(&block).as_ref(), Ok(&vars));
        }
    }
});
