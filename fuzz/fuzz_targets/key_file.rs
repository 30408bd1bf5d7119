//! Key files and key references (rampart-keys): the passphrase-encrypted key file, public keys
//! as TUF writes them, and PKCS#11 key references.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_core::Key;
use rampart_keys::file::FileSigner;
use rampart_keys::pkcs11::TokenKeyRef;
use serde_json::Value;

/// The passphrase the seeds are sealed with (make-seeds uses the same one).
const PASSPHRASE: &str = "fuzz";

/// Argon2 work the harness lets through: the file format allows up to 1 GiB and 16 passes on
/// purpose (an operator's choice for their own key), which is bounded but too slow to fuzz.
fn cheap_kdf(data: &[u8]) -> bool {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return true;
    };
    let param = |name: &str| {
        v.pointer(&format!("/kdf_params/{name}"))
            .and_then(Value::as_u64)
    };
    param("m_kib").is_none_or(|m| m <= 64) && param("t").is_none_or(|t| t <= 1)
}

fuzz_target!(|data: &[u8]| {
    if cheap_kdf(data) {
        let _ = FileSigner::from_file_bytes(data, PASSPHRASE, "fuzz.key");
    }
    if let Ok(key) = serde_json::from_slice::<Key>(data) {
        let _ = key.key_id();
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = TokenKeyRef::parse(text);
    }
});
