//! TPM 2.0 structures as the update server reads them from devices (rampart-attest::wire):
//! TPMS_ATTEST (a quote's message), TPMT_SIGNATURE, TPMT_PUBLIC and TPM2B_PUBLIC (attestation
//! and endorsement keys), and the SubjectPublicKeyInfo an AK is exported as. Each parser keeps
//! every field, so what parses must encode back to exactly the input.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_attest::spki;
use rampart_attest::wire::{Attest, Public, Signature};

fuzz_target!(|data: &[u8]| {
    if let Ok(attest) = Attest::parse(data) {
        assert_eq!(attest.to_bytes(), data, "TPMS_ATTEST re-encodes differently");
    }
    if let Ok(signature) = Signature::parse(data) {
        assert_eq!(signature.to_bytes(), data, "TPMT_SIGNATURE re-encodes differently");
    }
    if let Ok(public) = Public::parse(data) {
        assert_eq!(public.to_bytes(), data, "TPMT_PUBLIC re-encodes differently");
        let _ = public.name();
        let _ = public.check_attestation_key();
        let der = public.to_spki_der();
        assert_eq!(spki::from_der(&der).as_ref(), Ok(&public.spki_key()));
    }
    if let Ok(public) = Public::parse_sized(data) {
        assert_eq!(public.to_sized_bytes(), data, "TPM2B_PUBLIC re-encodes differently");
    }
    if let Ok(key) = spki::from_der(data) {
        assert_eq!(spki::from_der(&key.to_der()), Ok(key), "SPKI does not round-trip");
    }
});
