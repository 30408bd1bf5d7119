//! Tiles (rampart-log::tiles): tile paths as the log serves them, hash tiles and entry bundles.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use rampart_log::tiles::{
    decode_bundle, decode_bundle_exact, node_from_tile, node_location, parse_index,
    parse_tile_path, tile_hashes,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        let _ = parse_index(path);
        let _ = parse_tile_path(path);
    }
    let _ = tile_hashes(data);
    let _ = decode_bundle(data);
    // The first bytes choose the width an exact bundle must have and the node to compute.
    if let [a, b, c, rest @ ..] = data {
        let _ = decode_bundle_exact(rest, u16::from_be_bytes([*a, *b]));
        let loc = node_location(*c % 8, u64::from(*a) << 8 | u64::from(*b));
        let _ = node_from_tile(rest, &loc);
    }
});
