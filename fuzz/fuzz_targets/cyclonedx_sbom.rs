//! Release documents (rampart-repo::documents): SBOMs (CycloneDX or SPDX, through
//! rampart-vuln::sbom) and in-toto provenance.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_repo::documents::{validate_provenance, validate_sbom};

/// The image digest the provenance seeds name (make-seeds uses the same one).
const IMAGE_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

fuzz_target!(|data: &[u8]| {
    let _ = validate_sbom(data);
    let _ = validate_provenance(data, IMAGE_SHA256);
});
