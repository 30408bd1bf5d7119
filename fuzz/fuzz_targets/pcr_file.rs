//! PCR values and selections as the update server and `rampart attest check-quote` read them
//! (rampart-attest::pcr): tpm2-tools' PCR file (`tpm2_quote -o`) and its selection text
//! (`sha256:0,1,16`). What parses is written back and must read the same again.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_attest::pcr::{PcrSelection, PcrValues};
use rampart_attest::wire::HashAlg;

fuzz_target!(|data: &[u8]| {
    if let Ok(values) = PcrValues::parse_file(data) {
        let written = values.to_file();
        assert_eq!(PcrValues::parse_file(&written).as_ref(), Ok(&values));
        let _ = values.digest_for(values.selection(), HashAlg::Sha256);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(selection) = PcrSelection::parse(text)
    {
        let again = PcrSelection::parse(&selection.to_string()).expect("printed selection parses");
        assert!(again.same_pcrs(&selection));
        assert!(PcrSelection::from_wire(&selection.to_wire()).is_ok_and(|s| s.same_pcrs(&selection)));
    }
});
