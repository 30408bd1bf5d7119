//! A device's certificate signing request as `rampart device provision --csr` reads it
//! (rampart-pki::csr::verify_request): the request's structure, its key, its self-signature and
//! the device id in its subject. A request that verifies names a valid device id and a key the
//! CA can certify.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = rampart_pki::csr::verify_request(data) {
        assert!(rampart_pki::validate_device_id(&request.device_id).is_ok());
        assert!(!request.public_key_spki_der.is_empty());
    }
});
