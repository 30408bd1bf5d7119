//! tlog-proof (rampart-log::proof): the inclusion proof a release carries, its checkpoint, and
//! the release statement (rampart-log::statement) it proves.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_log::proof::TlogProof;
use rampart_log::statement::ReleaseStatement;

fuzz_target!(|data: &[u8]| {
    if let Ok(proof) = TlogProof::parse(data) {
        let _ = proof.checkpoint_body();
        // What parses is written back to bytes that parse to the same proof.
        assert_eq!(TlogProof::parse(&proof.to_bytes()).as_ref(), Ok(&proof));
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(statement) = ReleaseStatement::parse_text(text)
    {
        let _ = statement.to_text();
    }
});
