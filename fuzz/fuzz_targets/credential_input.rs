//! The inputs of AK enrolment's credential step (rampart-attest::credential): an endorsement
//! key's TPMT_PUBLIC as devices send it (read by MakeCredential), and a credential blob and
//! encrypted secret as the software TPM model activates them.
//! Input (binary parts, so lengths rather than separators): u16 big-endian length, TPMT_PUBLIC,
//! u16 length, credential blob, then the encrypted secret.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::{Mutex, OnceLock};

use libfuzzer_sys::fuzz_target;
use rampart_attest::credential::{EkPublic, make_credential};
use rampart_attest::device::TpmDevice;
use rampart_attest::soft::SoftTpm;

/// The model whose EK and AK the seed's credential was made for (fuzz/examples/make_seeds.rs),
/// so mutations of it reach past the integrity check; its keys are derived once.
fn model() -> &'static Mutex<(SoftTpm, Vec<u8>)> {
    static MODEL: OnceLock<Mutex<(SoftTpm, Vec<u8>)>> = OnceLock::new();
    MODEL.get_or_init(|| {
        let mut tpm = SoftTpm::new([1; 32]);
        let name = tpm.attestation_key_name();
        Mutex::new((tpm, name))
    })
}

/// A u16-length-prefixed part and what follows it (as much as there is).
fn part(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(u16::from_be_bytes(*len)).min(rest.len()))
}

fuzz_target!(|data: &[u8]| {
    let (public, rest) = part(data);
    let (blob, secret) = part(rest);
    let mut guard = model().lock().unwrap_or_else(|e| e.into_inner());
    let (tpm, name) = &mut *guard;
    if EkPublic::parse(public).is_ok() {
        // A key that parses either takes a credential or is refused with an error.
        let _ = make_credential(public, name, b"challenge", &[7; 32]);
    }
    let _ = tpm.activate_credential(blob, secret);
});
