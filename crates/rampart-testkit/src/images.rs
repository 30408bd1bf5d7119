//! Release images for tests: recognisable, distinct per version, and of a chosen size.

/// An image of at least `min_len` bytes for `version`: a header line, then numbered block
/// lines naming the version (so two versions never share a block, and a hexdump says which
/// release a slot holds).
pub fn release_image(version: &str, min_len: usize) -> Vec<u8> {
    let mut v = format!("RAMPART-IMAGE {version}\n").into_bytes();
    let mut i = 0u32;
    while v.len() < min_len {
        v.extend_from_slice(format!("{version} block {i:08}\n").as_bytes());
        i += 1;
    }
    v
}
