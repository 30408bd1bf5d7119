//! SBOMs (rampart-vuln::sbom): CycloneDX and SPDX JSON, and dpkg status text. What parses is
//! written back as CycloneDX and must read back as the same components.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_vuln::sbom::{from_dpkg_status, parse_sbom, to_cyclonedx_json};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_sbom(data).ok();
    let dpkg = std::str::from_utf8(data)
        .ok()
        .and_then(|text| from_dpkg_status(text).ok());
    for sbom in parsed.into_iter().chain(dpkg) {
        let written = to_cyclonedx_json(&sbom);
        let read_back = parse_sbom(&written).expect("a written SBOM reads back");
        assert_eq!(read_back.components, sbom.components);
        assert_eq!(read_back.duplicates, 0);
    }
});
