//! Vendor-signed VEX (rampart-vuln::signed_vex): the input as an envelope handed over (never
//! accepted: no trusted key signed it), as a bare or enveloped document read unchecked, and as
//! the payload a trusted vendor signed under each VEX payload type: accepted only as a VEX
//! document of the format its payload type names, its statements those `parse_vex` reads.
#![no_main]
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rampart_core::keys::{Key, Scheme};
use rampart_vuln::provenance::Envelope;
use rampart_vuln::signed_vex::{
    CYCLONEDX_VEX_PAYLOAD_TYPE, OPENVEX_PAYLOAD_TYPE, payload_type, prepare_for_signing,
    read_vex_unverified, verify_signed_vex,
};
use rampart_vuln::vex::parse_vex;
use ring::signature::{Ed25519KeyPair, KeyPair};

struct Vendor {
    pair: Ed25519KeyPair,
    key: Key,
}

fn vendor() -> &'static Vendor {
    static V: OnceLock<Vendor> = OnceLock::new();
    V.get_or_init(|| {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[9; 32]).expect("fixed seed");
        let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref())
            .expect("ed25519 key");
        Vendor { pair, key }
    })
}

fuzz_target!(|data: &[u8]| {
    let v = vendor();
    let trusted = std::slice::from_ref(&v.key);
    // Handed over as it is: nothing the trusted key did not sign is accepted.
    assert!(verify_signed_vex(data, trusted).is_err());
    let _ = read_vex_unverified(data);
    let _ = prepare_for_signing(data);

    // As the payload the trusted vendor signed, under each VEX payload type.
    for signed_as in [CYCLONEDX_VEX_PAYLOAD_TYPE, OPENVEX_PAYLOAD_TYPE] {
        let envelope = Envelope::sign(signed_as, data, &v.key.key_id(), |m| {
            Ok::<_, ()>(v.pair.sign(m).as_ref().to_vec())
        })
        .expect("signing cannot fail");
        if let Ok(document) = verify_signed_vex(envelope.to_line().as_bytes(), trusted) {
            assert_eq!(payload_type(document.format), signed_as);
            assert_eq!(document.payload, data);
            assert_eq!(Some(document.statements), parse_vex(data).ok());
        }
    }
});
