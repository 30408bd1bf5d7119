//! Helpers shared by the fuzz targets: splitting one fuzzer input into the several inputs a
//! parser takes, the same way in every target so seeds written by `make-seeds` line up.
#![forbid(unsafe_code)]

/// Separates the parts of a multi-part input; a byte no seed's text contains.
pub const PART_SEPARATOR: u8 = 0xff;

/// Splits `data` at the first [`PART_SEPARATOR`] into (first part, rest).
pub fn split_once(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == PART_SEPARATOR) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// Joins parts with [`PART_SEPARATOR`] (what [`split_once`] undoes), for seeds.
pub fn join(first: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(first.len() + 1 + rest.len());
    out.extend_from_slice(first);
    out.push(PART_SEPARATOR);
    out.extend_from_slice(rest);
    out
}
