//! Witness cosignatures (rampart-log::cosignature): a cosignature line checked against a
//! checkpoint body. Input: checkpoint body, 0xff, signature lines.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_fuzz::split_once;
use rampart_log::cosignature::verify_cosignature;
use rampart_log::note::{NoteSignature, NoteSigner};
use std::sync::LazyLock;

/// The witness the seeds are cosigned by (make-seeds uses the same name and seed).
static WITNESS: LazyLock<NoteSigner> = LazyLock::new(|| {
    NoteSigner::cosigner_from_seed("witness.example", [7; 32]).expect("witness key")
});

fuzz_target!(|data: &[u8]| {
    let (body, lines) = split_once(data);
    let (Ok(body), Ok(lines)) = (std::str::from_utf8(body), std::str::from_utf8(lines)) else {
        return;
    };
    let verifier = WITNESS.verifier();
    for line in lines.lines() {
        if let Ok(sig) = NoteSignature::parse_line(line) {
            let _ = verify_cosignature(&verifier, body, &sig);
        }
    }
});
