//! C2SP tlog-tiles arithmetic: tile and entry-bundle paths, tile widths for a tree size, where
//! a tree node lives in the tiles, and the entry-bundle encoding.
//!
//! A tile at tile level `L`, index `N` holds the hashes of the tree nodes at tree level `8 * L`
//! with indices `N * 256 ..` (up to 256 of them, each the root of a complete subtree of
//! `256^L` leaves). A tile is full when it holds 256 hashes, partial (`.p/<W>`) otherwise.

use thiserror::Error;

use crate::merkle::{Hash, node_hash};

/// Height of a tile in tree levels.
pub const TILE_HEIGHT: u8 = 8;
/// Number of hashes in a full tile (and of entries in a full bundle).
pub const TILE_WIDTH: u64 = 256;
/// Size of one hash in a tile, in bytes.
pub const HASH_SIZE: usize = 32;
/// Highest tile level a path may name.
pub const MAX_TILE_LEVEL: u8 = 63;
/// Largest entry an entry bundle can hold (u16 length prefix).
pub const MAX_ENTRY_SIZE: usize = u16::MAX as usize;

/// Errors from tile and bundle encoding and decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TileError {
    /// An entry is too large for the u16 length prefix.
    #[error("entry {position} is {len} bytes; entry bundles hold entries of at most 65535 bytes")]
    EntryTooLarge {
        /// Position of the entry in the bundle.
        position: usize,
        /// Its length.
        len: usize,
    },
    /// More than 256 entries (or hashes).
    #[error("{count} items; a tile or entry bundle holds at most 256")]
    TooManyEntries {
        /// The number of items.
        count: usize,
    },
    /// A bundle ends inside a length prefix or an entry.
    #[error("entry bundle truncated at byte {offset}")]
    Truncated {
        /// Offset of the incomplete length prefix or entry.
        offset: usize,
    },
    /// Tile bytes are not a whole number (1 to 256) of 32-byte hashes.
    #[error("tile of {len} bytes is not 1 to 256 hashes of 32 bytes")]
    BadTileLength {
        /// The tile's length in bytes.
        len: usize,
    },
    /// A tile is too narrow to hold the hashes asked for.
    #[error("tile holds {width} hashes; need slots {first}..{end}")]
    TileTooNarrow {
        /// Hashes in the tile.
        width: usize,
        /// First slot needed.
        first: u64,
        /// One past the last slot needed.
        end: u64,
    },
    /// The decoded bundle does not have the expected number of entries.
    #[error("entry bundle holds {got} entries, want {expected}")]
    WrongEntryCount {
        /// The expected width.
        expected: usize,
        /// The number decoded.
        got: usize,
    },
}

/// The `<N>` path component: zero-padded 3-digit groups, all but the last prefixed with `x`
/// (`1234067` -> `x001/x234/067`, `5` -> `005`).
pub fn encode_index(n: u64) -> String {
    let digits = n.to_string();
    let pad = (3 - digits.len() % 3) % 3;
    let padded = format!("{}{digits}", "0".repeat(pad));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .filter_map(|g| std::str::from_utf8(g).ok())
        .collect();
    let mut out = String::with_capacity(padded.len() + 2 * groups.len());
    for (i, group) in groups.iter().enumerate() {
        if i + 1 < groups.len() {
            out.push('x');
            out.push_str(group);
            out.push('/');
        } else {
            out.push_str(group);
        }
    }
    out
}

fn width_suffix(width: Option<u16>) -> String {
    match width {
        None | Some(256) => String::new(),
        Some(w) => format!(".p/{w}"),
    }
}

/// The path of a hash tile: `tile/<L>/<N>` for a full tile (`width` `None` or `Some(256)`),
/// `tile/<L>/<N>.p/<W>` for a partial one.
///
/// Valid inputs are levels 0..=63 and widths 1..=256 (as [`tile_width_for`] returns); other
/// values are written verbatim and give a path [`parse_tile_path`] rejects.
pub fn tile_path(level: u8, index: u64, width: Option<u16>) -> String {
    format!(
        "tile/{level}/{}{}",
        encode_index(index),
        width_suffix(width)
    )
}

/// The path of an entry bundle: `tile/entries/<N>` (full) or `tile/entries/<N>.p/<W>`; widths
/// as for [`tile_path`].
pub fn entries_path(index: u64, width: Option<u16>) -> String {
    format!(
        "tile/entries/{}{}",
        encode_index(index),
        width_suffix(width)
    )
}

/// A decimal number with no sign, no leading zeros (except "0" itself), and no overflow.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

fn parse_group(g: &str) -> Option<u64> {
    if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    g.parse().ok()
}

/// Parses the canonical `<N>` form written by [`encode_index`].
pub fn parse_index(s: &str) -> Option<u64> {
    let groups: Vec<&str> = s.split('/').collect();
    // u64::MAX has 20 digits: 7 groups.
    if groups.is_empty() || groups.len() > 7 {
        return None;
    }
    let last = groups.len() - 1;
    let mut n: u64 = 0;
    for (i, g) in groups.iter().enumerate() {
        let digits = if i < last { g.strip_prefix('x')? } else { g };
        let v = parse_group(digits)?;
        // The leading group of a multi-group index must not be zero (canonical form).
        if i == 0 && last > 0 && v == 0 {
            return None;
        }
        n = n.checked_mul(1000)?.checked_add(v)?;
    }
    Some(n)
}

/// Parses a tile or entry-bundle path (without the log's URL prefix), accepting only the
/// canonical form [`tile_path`] / [`entries_path`] produce for valid inputs.
///
/// Returns `(level, index, width)`: `level` is `None` for an entry bundle, `width` is 256 for
/// a full tile. Rejects levels above 63, widths outside 1..=255 in a `.p/` suffix, leading
/// zeros, non-canonical index groups and indices that overflow a u64.
pub fn parse_tile_path(path: &str) -> Option<(Option<u8>, u64, u16)> {
    let rest = path.strip_prefix("tile/")?;
    let (first, rest) = rest.split_once('/')?;
    let level = if first == "entries" {
        None
    } else {
        let l = parse_decimal(first)?;
        if l > u64::from(MAX_TILE_LEVEL) {
            return None;
        }
        Some(u8::try_from(l).ok()?)
    };
    let (index_part, width) = match rest.split_once(".p/") {
        None => (rest, 256u16),
        Some((index_part, w)) => {
            let w = parse_decimal(w)?;
            if !(1..TILE_WIDTH).contains(&w) {
                return None;
            }
            (index_part, u16::try_from(w).ok()?)
        }
    };
    let index = parse_index(index_part)?;
    Some((level, index, width))
}

/// The width of tile `(level, index)` in a tree of `tree_size` leaves: 256 for a full tile,
/// 1..=255 for a partial one, `None` if the tile does not exist. For entry bundles use level 0.
pub fn tile_width_for(level: u8, index: u64, tree_size: u64) -> Option<u16> {
    let shift = u32::from(level) * u32::from(TILE_HEIGHT);
    let count = tree_size.checked_shr(shift).unwrap_or(0);
    let start = index.checked_mul(TILE_WIDTH)?;
    if start >= count {
        return None;
    }
    u16::try_from((count - start).min(TILE_WIDTH)).ok()
}

/// Where a complete tree node lives in the tiles.
///
/// The node `(level, index)` is the root of the `count` consecutive hashes starting at slot
/// `first` of tile `(tile_level, tile_index)` (`count = 2^level_in_tile`); when
/// `level_in_tile == 0` it is the hash in that slot itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeLocation {
    /// Tile level: `level / 8`.
    pub tile_level: u8,
    /// Tile index within the tile level.
    pub tile_index: u64,
    /// Height of the node above the tile's bottom row: `level % 8`.
    pub level_in_tile: u8,
    /// First bottom-row slot covered (0..=255).
    pub first: u64,
    /// Number of bottom-row slots covered (1..=128).
    pub count: u64,
}

impl NodeLocation {
    /// One past the last slot covered: the tile must be at least this wide.
    pub fn end(&self) -> u64 {
        self.first.saturating_add(self.count)
    }
}

/// Locates the complete node `(level, index)` (merkle addressing) in the tiles.
pub fn node_location(level: u8, index: u64) -> NodeLocation {
    let tile_level = level / TILE_HEIGHT;
    let level_in_tile = level % TILE_HEIGHT;
    let shift_down = u32::from(TILE_HEIGHT - level_in_tile);
    // Bottom-row index of the node's first descendant is index << level_in_tile; written so
    // that nothing overflows.
    let tile_index = index >> shift_down;
    let in_tile = index & ((1u64 << shift_down) - 1);
    NodeLocation {
        tile_level,
        tile_index,
        level_in_tile,
        first: in_tile << level_in_tile,
        count: 1u64 << level_in_tile,
    }
}

/// Splits tile bytes into hashes (1 to 256 of them).
pub fn tile_hashes(tile: &[u8]) -> Result<Vec<Hash>, TileError> {
    let (chunks, rest) = tile.as_chunks::<HASH_SIZE>();
    if !rest.is_empty() || chunks.is_empty() || chunks.len() as u64 > TILE_WIDTH {
        return Err(TileError::BadTileLength { len: tile.len() });
    }
    Ok(chunks.to_vec())
}

/// Computes the node at `loc` from the tile it lives in (`tile`: the tile's raw bytes, full or
/// partial): hashes the covered bottom-row hashes into their subtree root.
pub fn node_from_tile(tile: &[u8], loc: &NodeLocation) -> Result<Hash, TileError> {
    let (chunks, rest) = tile.as_chunks::<HASH_SIZE>();
    if !rest.is_empty() || chunks.is_empty() || chunks.len() as u64 > TILE_WIDTH {
        return Err(TileError::BadTileLength { len: tile.len() });
    }
    let narrow = || TileError::TileTooNarrow {
        width: chunks.len(),
        first: loc.first,
        end: loc.end(),
    };
    let first = usize::try_from(loc.first).map_err(|_| narrow())?;
    let end = usize::try_from(loc.end()).map_err(|_| narrow())?;
    if !loc.count.is_power_of_two() || !loc.first.is_multiple_of(loc.count) {
        return Err(narrow());
    }
    let mut row: Vec<Hash> = chunks.get(first..end).ok_or_else(narrow)?.to_vec();
    while row.len() > 1 {
        row = row
            .chunks_exact(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    row.pop().ok_or_else(narrow)
}

/// Encodes an entry bundle: each entry prefixed by its big-endian u16 length. At most 256
/// entries of at most 65535 bytes each.
pub fn encode_bundle(entries: &[&[u8]]) -> Result<Vec<u8>, TileError> {
    if entries.len() as u64 > TILE_WIDTH {
        return Err(TileError::TooManyEntries {
            count: entries.len(),
        });
    }
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.len() + 2).sum());
    for (position, entry) in entries.iter().enumerate() {
        let len = u16::try_from(entry.len()).map_err(|_| TileError::EntryTooLarge {
            position,
            len: entry.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(entry);
    }
    Ok(out)
}

/// Decodes an entry bundle into its entries (borrowing from `bytes`). Rejects a truncated
/// length prefix or entry and more than 256 entries.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, TileError> {
    let mut entries = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        if entries.len() as u64 == TILE_WIDTH {
            return Err(TileError::TooManyEntries {
                count: entries.len() + 1,
            });
        }
        let Some((len_bytes, after)) = rest.split_first_chunk::<2>() else {
            return Err(TileError::Truncated { offset });
        };
        let len = usize::from(u16::from_be_bytes(*len_bytes));
        let Some((entry, after)) = after.split_at_checked(len) else {
            return Err(TileError::Truncated { offset });
        };
        entries.push(entry);
        rest = after;
    }
    Ok(entries)
}

/// Decodes an entry bundle that must hold exactly `width` entries (as [`tile_width_for`] gives
/// for level 0).
pub fn decode_bundle_exact(bytes: &[u8], width: u16) -> Result<Vec<&[u8]>, TileError> {
    let entries = decode_bundle(bytes)?;
    if entries.len() != usize::from(width) {
        return Err(TileError::WrongEntryCount {
            expected: usize::from(width),
            got: entries.len(),
        });
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{leaf_hash, root_from_leaf_hashes};

    #[test]
    fn index_encoding_examples() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(5), "005");
        assert_eq!(encode_index(999), "999");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
        for n in [
            0,
            1,
            5,
            999,
            1000,
            1001,
            123456,
            1234067,
            999_999_999,
            u64::MAX - 1,
            u64::MAX,
        ] {
            assert_eq!(parse_index(&encode_index(n)), Some(n), "{n}");
        }
    }

    #[test]
    fn paths() {
        assert_eq!(tile_path(0, 1234067, None), "tile/0/x001/x234/067");
        assert_eq!(tile_path(0, 1234067, Some(256)), "tile/0/x001/x234/067");
        assert_eq!(tile_path(1, 5, Some(17)), "tile/1/005.p/17");
        assert_eq!(
            entries_path(1234067, Some(3)),
            "tile/entries/x001/x234/067.p/3"
        );
        assert_eq!(entries_path(0, None), "tile/entries/000");
        for (level, index, width) in [
            (Some(0u8), 0u64, 256u16),
            (Some(63), 1234067, 1),
            (None, 5, 255),
            (None, u64::MAX, 256),
        ] {
            let w = Some(width);
            let path = match level {
                Some(l) => tile_path(l, index, w),
                None => entries_path(index, w),
            };
            assert_eq!(
                parse_tile_path(&path),
                Some((level, index, width)),
                "{path}"
            );
        }
    }

    #[test]
    fn parse_rejects_garbage() {
        for bad in [
            "",
            "tile",
            "tile/",
            "tile/0",
            "tile/0/",
            "/tile/0/000",
            "tile/0/000/",
            "tile/00/000",
            "tile/01/000",
            "tile/64/000",
            "tile/-1/000",
            "tile/+1/000",
            "tile/256/000",
            "tile/ 1/000",
            "tile/0/5",
            "tile/0/05",
            "tile/0/0005",
            "tile/0/x000/005",
            "tile/0/x001",
            "tile/0/001/000",
            "tile/0/x1/000",
            "tile/0/x001/x234",
            "tile/0/xx01/000",
            "tile/0/+05",
            "tile/0/x018/x446/x744/x073/x709/x551/616",
            "tile/0/x001/x018/x446/x744/x073/x709/x551/615",
            "tile/0/000.p/0",
            "tile/0/000.p/256",
            "tile/0/000.p/300",
            "tile/0/000.p/01",
            "tile/0/000.p/",
            "tile/0/000.p/1/",
            "tile/0/000.p/1.p/1",
            "tile/0/x001.p/5/067",
            "tile/0/000.P/1",
            "tile/entries/",
            "tile/entries/5",
            "tile/entry/000",
            "tile/entries/000.p/256",
            "tiles/0/000",
            "tile/0/٠٠٠",
        ] {
            assert_eq!(parse_tile_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn widths() {
        // C2SP example: a tree of 70,000 leaves.
        assert_eq!(tile_width_for(0, 272, 70_000), Some(256));
        assert_eq!(tile_width_for(0, 273, 70_000), Some(112));
        assert_eq!(tile_width_for(0, 274, 70_000), None);
        assert_eq!(tile_width_for(1, 0, 70_000), Some(256));
        assert_eq!(tile_width_for(1, 1, 70_000), Some(17));
        assert_eq!(tile_width_for(2, 0, 70_000), Some(1));
        assert_eq!(tile_width_for(3, 0, 70_000), None);
        // A tree of 256: one full level-0 tile and a partial level-1 tile of width 1.
        assert_eq!(tile_width_for(0, 0, 256), Some(256));
        assert_eq!(tile_width_for(0, 1, 256), None);
        assert_eq!(tile_width_for(1, 0, 256), Some(1));
        assert_eq!(tile_width_for(0, 0, 0), None);
        assert_eq!(tile_width_for(8, 0, u64::MAX), None);
        assert_eq!(tile_width_for(7, 0, u64::MAX), Some(255));
        assert_eq!(tile_width_for(63, 0, u64::MAX), None);
        assert_eq!(tile_width_for(255, u64::MAX, u64::MAX), None);
        assert_eq!(tile_width_for(0, u64::MAX, u64::MAX), None);
        assert_eq!(tile_width_for(0, u64::MAX / 256, u64::MAX), Some(255));
    }

    #[test]
    fn node_locations() {
        assert_eq!(
            node_location(0, 1234),
            NodeLocation {
                tile_level: 0,
                tile_index: 4,
                level_in_tile: 0,
                first: 210,
                count: 1
            }
        );
        assert_eq!(
            node_location(3, 33),
            NodeLocation {
                tile_level: 0,
                tile_index: 1,
                level_in_tile: 3,
                first: 8,
                count: 8
            }
        );
        assert_eq!(
            node_location(8, 7),
            NodeLocation {
                tile_level: 1,
                tile_index: 0,
                level_in_tile: 0,
                first: 7,
                count: 1
            }
        );
        assert_eq!(
            node_location(15, 3),
            NodeLocation {
                tile_level: 1,
                tile_index: 1,
                level_in_tile: 7,
                first: 128,
                count: 128
            }
        );
        assert_eq!(node_location(63, 1).tile_index, 1 >> 1);
        let l = node_location(0, u64::MAX);
        assert_eq!((l.tile_index, l.first), (u64::MAX >> 8, 255));
        let l = node_location(255, u64::MAX);
        assert_eq!((l.tile_level, l.level_in_tile, l.end()), (31, 7, 256));
    }

    #[test]
    fn node_from_tile_matches_merkle() {
        let leaves: Vec<Hash> = (0..512u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let tile1: Vec<u8> = leaves[256..300].concat(); // partial tile 1 of width 44
        for level in 0..8u8 {
            let span = 1usize << level;
            for index in 0..(300 >> level) as u64 {
                let start = index as usize * span;
                if start < 256 {
                    continue;
                }
                let loc = node_location(level, index);
                assert_eq!(loc.tile_index, 1);
                let got = node_from_tile(&tile1, &loc).expect("node");
                assert_eq!(got, root_from_leaf_hashes(&leaves[start..start + span]));
            }
        }
        // Slots past the partial tile's width are an error, not a panic.
        assert!(node_from_tile(&tile1, &node_location(5, 9)).is_err());
        assert!(node_from_tile(&tile1[..33], &node_location(0, 0)).is_err());
        assert!(node_from_tile(&[], &node_location(0, 0)).is_err());
        assert!(tile_hashes(&vec![0u8; 257 * 32]).is_err());
        assert_eq!(tile_hashes(&tile1).expect("hashes").len(), 44);
        let bogus = NodeLocation {
            tile_level: 0,
            tile_index: 0,
            level_in_tile: 0,
            first: 3,
            count: 2,
        };
        assert!(node_from_tile(&tile1, &bogus).is_err());
        let bogus = NodeLocation {
            first: u64::MAX,
            count: 1,
            ..bogus
        };
        assert!(node_from_tile(&tile1, &bogus).is_err());
    }

    #[test]
    fn bundles() {
        let big = vec![7u8; 65535];
        let entries: Vec<&[u8]> = vec![b"", b"a", b"hello", &big];
        let enc = encode_bundle(&entries).expect("encode");
        assert_eq!(&enc[..3], &[0, 0, 0]);
        assert_eq!(decode_bundle(&enc).expect("decode"), entries);
        assert_eq!(decode_bundle_exact(&enc, 4).expect("exact").len(), 4);
        assert!(decode_bundle_exact(&enc, 5).is_err());
        assert_eq!(decode_bundle(&[]).expect("empty"), Vec::<&[u8]>::new());

        let too_big = vec![0u8; 65536];
        assert_eq!(
            encode_bundle(&[b"x", &too_big]),
            Err(TileError::EntryTooLarge {
                position: 1,
                len: 65536
            })
        );
        let many: Vec<&[u8]> = vec![b"e"; 257];
        assert!(encode_bundle(&many).is_err());
        let full = encode_bundle(&many[..256]).expect("full");
        assert_eq!(decode_bundle(&full).expect("full").len(), 256);
        let mut over = full.clone();
        over.extend_from_slice(&[0, 1, b'e']);
        assert_eq!(
            decode_bundle(&over),
            Err(TileError::TooManyEntries { count: 257 })
        );

        // Truncated length prefix, truncated entry, trailing byte.
        assert_eq!(decode_bundle(&[0]), Err(TileError::Truncated { offset: 0 }));
        assert_eq!(
            decode_bundle(&[0, 5, 1, 2]),
            Err(TileError::Truncated { offset: 0 })
        );
        let mut trailing = enc.clone();
        trailing.push(0);
        assert!(decode_bundle(&trailing).is_err());
        for cut in 1..enc.len().min(20) {
            assert!(decode_bundle(&enc[..enc.len() - cut]).is_err(), "cut {cut}");
        }
    }
}
