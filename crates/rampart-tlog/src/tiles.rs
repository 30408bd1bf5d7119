//! Reading a tiled log, from a local directory or over HTTP, and computing tree nodes and
//! proofs from its tiles. Used by the store itself, by clients building tlog-proofs and by the
//! monitor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rampart_log::merkle::{self, Hash, ProofGenError};
use rampart_log::tiles::{
    self, TileError, node_from_tile, node_location, tile_path, tile_width_for,
};
use rampart_tuf_client::{FetchError, Fetcher, HttpFetcher};

/// Why tiles could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TileReadError {
    #[error("{path}: not found")]
    NotFound { path: String },
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{path}: {source}")]
    Bad { path: String, source: TileError },
    #[error("node ({level}, {index}) is outside the tree of {size} entries")]
    OutsideTree { level: u8, index: u64, size: u64 },
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

/// Largest file read from a log: a full tile is 8 KiB; a full entry bundle at most 256 entries
/// of at most 64 KiB.
pub const MAX_LOG_FILE: u64 = 256 * (2 + 65_535);

/// Where a log's files come from.
pub trait LogSource {
    /// The bytes of `path` (e.g. `checkpoint`, `tile/0/000.p/5`).
    fn read(&self, path: &str) -> Result<Vec<u8>, TileReadError>;
}

/// A log in a local directory.
pub struct DirSource(pub PathBuf);

impl LogSource for DirSource {
    fn read(&self, path: &str) -> Result<Vec<u8>, TileReadError> {
        use std::io::Read;
        let full = self.0.join(path);
        let f = std::fs::File::open(&full).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => TileReadError::NotFound {
                path: path.to_string(),
            },
            _ => TileReadError::Io {
                path: path.to_string(),
                reason: e.to_string(),
            },
        })?;
        let mut buf = Vec::new();
        f.take(MAX_LOG_FILE + 1)
            .read_to_end(&mut buf)
            .map_err(|e| TileReadError::Io {
                path: path.to_string(),
                reason: e.to_string(),
            })?;
        if buf.len() as u64 > MAX_LOG_FILE {
            return Err(TileReadError::Io {
                path: path.to_string(),
                reason: "file too large".into(),
            });
        }
        Ok(buf)
    }
}

/// A log served over HTTP (any static server or CDN).
pub struct HttpSource {
    base: String,
    fetcher: HttpFetcher,
}

impl HttpSource {
    pub fn new(base_url: &str) -> HttpSource {
        HttpSource {
            base: base_url.trim_end_matches('/').to_string(),
            fetcher: HttpFetcher::default(),
        }
    }
}

impl LogSource for HttpSource {
    fn read(&self, path: &str) -> Result<Vec<u8>, TileReadError> {
        match self
            .fetcher
            .fetch(&format!("{}/{path}", self.base), MAX_LOG_FILE)
        {
            Ok(b) => Ok(b),
            Err(e) if e.is_not_found() => Err(TileReadError::NotFound {
                path: path.to_string(),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// A view of the tree of `size` entries, reading (and caching) tiles from a source.
pub struct TreeReader<'a> {
    source: &'a dyn LogSource,
    size: u64,
    cache: HashMap<(u8, u64), Vec<u8>>,
}

impl<'a> TreeReader<'a> {
    pub fn new(source: &'a dyn LogSource, size: u64) -> TreeReader<'a> {
        TreeReader {
            source,
            size,
            cache: HashMap::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The bytes of tile (`level`, `index`) as of this tree size. A partial tile may since have
    /// been replaced by the full one; its first hashes are the same, so the full one serves.
    fn tile(&mut self, level: u8, index: u64) -> Result<&[u8], TileReadError> {
        if !self.cache.contains_key(&(level, index)) {
            let width =
                tile_width_for(level, index, self.size).ok_or(TileReadError::OutsideTree {
                    level: level.saturating_mul(8),
                    index,
                    size: self.size,
                })?;
            let partial = (u64::from(width) < tiles::TILE_WIDTH).then_some(width);
            let bytes = match self.source.read(&tile_path(level, index, partial)) {
                Err(TileReadError::NotFound { .. }) if partial.is_some() => {
                    let mut full = self.source.read(&tile_path(level, index, None))?;
                    full.truncate(usize::from(width) * tiles::HASH_SIZE);
                    full
                }
                other => other?,
            };
            if bytes.len() != usize::from(width) * tiles::HASH_SIZE {
                return Err(TileReadError::Bad {
                    path: tile_path(level, index, partial),
                    source: TileError::BadTileLength { len: bytes.len() },
                });
            }
            self.cache.insert((level, index), bytes);
        }
        Ok(&self.cache[&(level, index)])
    }

    /// The complete node (`level`, `index`): the root of leaves index*2^level .. +2^level.
    pub fn node(&mut self, level: u8, index: u64) -> Result<Hash, TileReadError> {
        let outside = TileReadError::OutsideTree {
            level,
            index,
            size: self.size,
        };
        let end = index
            .checked_add(1)
            .and_then(|i| i.checked_shl(u32::from(level)))
            .ok_or(outside)?;
        if end > self.size || level >= 64 {
            return Err(TileReadError::OutsideTree {
                level,
                index,
                size: self.size,
            });
        }
        let loc = node_location(level, index);
        let path = tile_path(loc.tile_level, loc.tile_index, None);
        let tile = self.tile(loc.tile_level, loc.tile_index)?;
        node_from_tile(tile, &loc).map_err(|source| TileReadError::Bad { path, source })
    }

    /// The root of the whole tree.
    pub fn root(&mut self) -> Result<Hash, TileReadError> {
        let size = self.size;
        merkle::root_from_nodes(size, &mut |l, i| self.node(l, i)).map_err(unwrap_gen)
    }

    /// Inclusion proof of entry `index` in this tree.
    pub fn inclusion_proof(&mut self, index: u64) -> Result<Vec<Hash>, TileReadError> {
        let size = self.size;
        merkle::inclusion_proof(index, size, &mut |l, i| self.node(l, i)).map_err(unwrap_gen)
    }

    /// Consistency proof from the tree of `old_size` entries to this one.
    pub fn consistency_proof(&mut self, old_size: u64) -> Result<Vec<Hash>, TileReadError> {
        let size = self.size;
        merkle::consistency_proof(old_size, size, &mut |l, i| self.node(l, i)).map_err(unwrap_gen)
    }

    /// The entries of bundle `index` as of this tree size.
    pub fn entries(&mut self, index: u64) -> Result<Vec<Vec<u8>>, TileReadError> {
        let count = self
            .size
            .saturating_sub(index.saturating_mul(tiles::TILE_WIDTH))
            .min(tiles::TILE_WIDTH);
        if count == 0 {
            return Err(TileReadError::OutsideTree {
                level: 0,
                index,
                size: self.size,
            });
        }
        let partial = (count < tiles::TILE_WIDTH).then_some(count as u16);
        let path = tiles::entries_path(index, partial);
        let bytes = match self.source.read(&path) {
            Err(TileReadError::NotFound { .. }) if partial.is_some() => {
                self.source.read(&tiles::entries_path(index, None))?
            }
            other => other?,
        };
        let all = tiles::decode_bundle(&bytes).map_err(|source| TileReadError::Bad {
            path: path.clone(),
            source,
        })?;
        if (all.len() as u64) < count {
            return Err(TileReadError::Bad {
                path,
                source: TileError::BadTileLength { len: bytes.len() },
            });
        }
        Ok(all
            .into_iter()
            .take(count as usize)
            .map(<[u8]>::to_vec)
            .collect())
    }
}

fn unwrap_gen(e: ProofGenError<TileReadError>) -> TileReadError {
    match e {
        ProofGenError::Node { source, .. } => source,
        other => TileReadError::Io {
            path: String::new(),
            reason: other.to_string(),
        },
    }
}

/// Convenience for local directories.
pub fn dir_source(dir: &Path) -> DirSource {
    DirSource(dir.to_path_buf())
}
