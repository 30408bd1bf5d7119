//! Signed notes (rampart-log::note): notes, signature lines, verifier and signer keys, and
//! verification against the C2SP example key.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_log::note::{Note, NoteSignature, NoteSigner, Verifier, parse_signature_lines};

/// The verifier key of the C2SP signed-note example (../shared/vectors/signed-note).
const EXAMPLE_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";

fuzz_target!(|data: &[u8]| {
    let _ = parse_signature_lines(data);
    if let Ok(note) = Note::parse(data) {
        let verifier = Verifier::parse(EXAMPLE_VKEY).expect("example key parses");
        let _ = note.verify(std::slice::from_ref(&verifier));
        // What parses is written back unchanged.
        assert_eq!(Note::parse(&note.to_bytes()).as_ref(), Ok(&note));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let _ = NoteSignature::parse_line(line);
        if let Ok(v) = Verifier::parse(line) {
            assert_eq!(Verifier::parse(&v.to_vkey_string()).ok().as_ref(), Some(&v));
        }
        let _ = NoteSigner::parse_signer_key(line);
    }
});
