//! The durable log store.
//!
//! Layout of a log directory (everything but `log.wal` and `log.state` is the C2SP tlog-tiles
//! layout, servable by any static web server):
//!
//! * `log.wal`: write-ahead file of sequenced entries not yet in tiles. Each record is
//!   `u32 BE length || entry || first 4 bytes of the entry's leaf hash`.
//! * `log.state`: `integrated <size>\nwal-offset <bytes>\n`, written atomically after the tiles
//!   for that size are durable.
//! * `checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`.
//!
//! Crash safety: an entry is acknowledged only after its WAL record is fsynced. Tiles are
//! derived data, rewritten from the WAL after a crash; a torn WAL tail (never acknowledged) is
//! truncated. A checkpoint is published only for a size whose tiles and state are durable, so
//! every published checkpoint stays consistent with the store after any crash.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rampart_log::merkle::{CompactRange, Hash, leaf_hash};
use rampart_log::tiles::{self, MAX_ENTRY_SIZE, TILE_WIDTH, entries_path, tile_path};

use crate::tiles::{DirSource, TileReadError, TreeReader};

const WAL: &str = "log.wal";
const STATE: &str = "log.state";
const CHECKPOINT: &str = "checkpoint";

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("entry of {size} bytes is over the {MAX_ENTRY_SIZE}-byte limit")]
    EntryTooLarge { size: usize },
    #[error("reading tiles: {0}")]
    Tiles(#[from] TileReadError),
    #[error("the log is full")]
    Full,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A log on local disk.
pub struct LogStore {
    dir: PathBuf,
    wal: std::fs::File,
    wal_len: u64,
    integrated_offset: u64,
    range: CompactRange,
    /// Sequenced, durable, not yet integrated: (entry, leaf hash).
    pending: Vec<(Vec<u8>, Hash)>,
    /// Bottom-row hashes of the rightmost, partial tile at each tile level.
    rows: Vec<Vec<Hash>>,
    /// Entries of the rightmost, partial entry bundle.
    bundle: Vec<Vec<u8>>,
}

/// Writes a file durably via a temporary file and rename; the directory is synced later.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().expect("log paths have a parent");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io(dir))?;
    tmp.write_all(bytes).map_err(io(path))?;
    tmp.as_file().sync_data().map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io(path))?;
    }
    tmp.persist(path).map_err(|e| StoreError::Io {
        path: path.display().to_string(),
        source: e.error,
    })?;
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

fn record(entry: &[u8], leaf: &Hash) -> Vec<u8> {
    let mut r = Vec::with_capacity(entry.len() + 8);
    r.extend_from_slice(&(entry.len() as u32).to_be_bytes());
    r.extend_from_slice(entry);
    r.extend_from_slice(&leaf[..4]);
    r
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering from any crash.
    pub fn open(dir: &Path) -> Result<LogStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let state_path = dir.join(STATE);
        let (integrated, mut offset) = match std::fs::read_to_string(&state_path) {
            Ok(s) => parse_state(&s).ok_or_else(|| StoreError::Corrupt {
                path: state_path.display().to_string(),
                reason: "expected `integrated N` and `wal-offset N` lines".into(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (0, 0),
            Err(e) => return Err(io(&state_path)(e)),
        };
        // Rebuild the in-memory right edge from the tiles of the integrated tree.
        let source = DirSource(dir.to_path_buf());
        let mut reader = TreeReader::new(&source, integrated);
        let range = CompactRange::from_nodes(integrated, &mut |l, i| reader.node(l, i)).map_err(
            |e| match e {
                rampart_log::merkle::ProofGenError::Node { source, .. } => {
                    StoreError::Tiles(source)
                }
                other => StoreError::Corrupt {
                    path: dir.display().to_string(),
                    reason: other.to_string(),
                },
            },
        )?;
        let mut rows = Vec::new();
        let mut level = 0u8;
        while level < 8 && (integrated >> (8 * u32::from(level))) > 0 {
            let nodes = integrated >> (8 * u32::from(level));
            let width = nodes % TILE_WIDTH;
            let mut row = Vec::new();
            if width > 0 {
                let n = nodes / TILE_WIDTH;
                for i in 0..width {
                    row.push(reader.node(8 * level, n * TILE_WIDTH + i)?);
                }
            }
            rows.push(row);
            level += 1;
        }
        let bundle = if integrated % TILE_WIDTH > 0 {
            reader.entries(integrated / TILE_WIDTH)?
        } else {
            Vec::new()
        };

        // Replay the write-ahead file past the integrated offset; cut a torn tail.
        let wal_path = dir.join(WAL);
        let mut wal = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&wal_path)
            .map_err(io(&wal_path))?;
        let mut bytes = Vec::new();
        wal.read_to_end(&mut bytes).map_err(io(&wal_path))?;
        if offset > bytes.len() as u64 {
            // The WAL was emptied after everything in it was integrated, and the crash came
            // before the state said so. Record that now, before any new append reuses the WAL:
            // otherwise a later recovery would skip or misread acknowledged records.
            offset = bytes.len() as u64;
            write_file(
                &state_path,
                format!("integrated {integrated}\nwal-offset {offset}\n").as_bytes(),
            )?;
            sync_dir(dir)?;
        }
        let mut pending = Vec::new();
        let mut pos = offset as usize;
        while pos + 4 <= bytes.len() {
            let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4 bytes")) as usize;
            let end = pos + 4 + len + 4;
            if len > MAX_ENTRY_SIZE || end > bytes.len() {
                break;
            }
            let entry = &bytes[pos + 4..pos + 4 + len];
            let leaf = leaf_hash(entry);
            if leaf[..4] != bytes[end - 4..end] {
                break;
            }
            pending.push((entry.to_vec(), leaf));
            pos = end;
        }
        if pos < bytes.len() {
            wal.set_len(pos as u64).map_err(io(&wal_path))?;
            wal.sync_all().map_err(io(&wal_path))?;
        }
        Ok(LogStore {
            dir: dir.to_path_buf(),
            wal,
            wal_len: pos as u64,
            integrated_offset: offset,
            range,
            pending,
            rows,
            bundle,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Entries durably sequenced (integrated or not).
    pub fn sequenced(&self) -> u64 {
        self.range.size() + self.pending.len() as u64
    }

    /// Entries in the tiles: the largest size a checkpoint can be issued for.
    pub fn integrated(&self) -> u64 {
        self.range.size()
    }

    /// Root of the integrated tree.
    pub fn root(&self) -> Hash {
        self.range.root()
    }

    /// Durably sequences `entries`; returns the index of the first. Returns only after the
    /// entries are on stable storage, so an acknowledged entry survives any crash.
    pub fn append(&mut self, entries: &[Vec<u8>]) -> Result<u64, StoreError> {
        let first = self.sequenced();
        if first
            .checked_add(entries.len() as u64)
            .is_none_or(|n| n == u64::MAX)
        {
            return Err(StoreError::Full);
        }
        let mut buf = Vec::new();
        let mut hashed = Vec::with_capacity(entries.len());
        for e in entries {
            if e.len() > MAX_ENTRY_SIZE {
                return Err(StoreError::EntryTooLarge { size: e.len() });
            }
            let leaf = leaf_hash(e);
            buf.extend_from_slice(&record(e, &leaf));
            hashed.push((e.clone(), leaf));
        }
        let wal_path = self.dir.join(WAL);
        let written = self.wal.write_all(&buf).and_then(|()| self.wal.sync_data());
        if let Err(e) = written {
            // Drop a partial record so the next append starts on a record boundary.
            let _ = self.wal.set_len(self.wal_len);
            return Err(io(&wal_path)(e));
        }
        self.wal_len += buf.len() as u64;
        self.pending.extend(hashed);
        Ok(first)
    }

    /// Entries sequenced but not integrated.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Moves every sequenced entry into the tiles and makes them durable. Returns the new tree
    /// size and root.
    pub fn integrate(&mut self) -> Result<(u64, Hash), StoreError> {
        if self.pending.is_empty() {
            return Ok((self.range.size(), self.range.root()));
        }
        let mut stored_nodes: Vec<(u8, u64, Hash)> = Vec::new();
        let mut full_tiles: Vec<(u8, u64, Vec<Hash>)> = Vec::new();
        let mut full_bundles: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
        let mut touched_levels = std::collections::BTreeSet::new();
        let mut bundle_touched = false;
        for (entry, leaf) in std::mem::take(&mut self.pending) {
            let index = self.range.size();
            self.range
                .append(&leaf, &mut |level, i, h| {
                    if level % tiles::TILE_HEIGHT == 0 {
                        stored_nodes.push((level / tiles::TILE_HEIGHT, i, h));
                    }
                })
                .map_err(|_| StoreError::Full)?;
            for (tl, i, h) in stored_nodes.drain(..) {
                let tl_us = usize::from(tl);
                if self.rows.len() <= tl_us {
                    self.rows.resize(tl_us + 1, Vec::new());
                }
                self.rows[tl_us].push(h);
                touched_levels.insert(tl);
                if self.rows[tl_us].len() as u64 == TILE_WIDTH {
                    full_tiles.push((tl, i / TILE_WIDTH, std::mem::take(&mut self.rows[tl_us])));
                }
            }
            self.bundle.push(entry);
            bundle_touched = true;
            if self.bundle.len() as u64 == TILE_WIDTH {
                full_bundles.push((index / TILE_WIDTH, std::mem::take(&mut self.bundle)));
            }
        }
        let size = self.range.size();
        let mut dirs = std::collections::BTreeSet::new();
        let mut put = |rel: String, bytes: &[u8]| -> Result<(), StoreError> {
            let path = self.dir.join(&rel);
            write_file(&path, bytes)?;
            dirs.insert(path.parent().expect("has parent").to_path_buf());
            Ok(())
        };
        for (tl, n, row) in &full_tiles {
            put(tile_path(*tl, *n, None), &row.concat())?;
        }
        for (n, entries) in &full_bundles {
            let refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
            put(
                entries_path(*n, None),
                &tiles::encode_bundle(&refs).map_err(|e| StoreError::Corrupt {
                    path: entries_path(*n, None),
                    reason: e.to_string(),
                })?,
            )?;
        }
        for tl in touched_levels {
            let row = &self.rows[usize::from(tl)];
            if !row.is_empty() {
                let nodes = size >> (8 * u32::from(tl));
                put(
                    tile_path(tl, nodes / TILE_WIDTH, Some(row.len() as u16)),
                    &row.concat(),
                )?;
            }
        }
        if bundle_touched && !self.bundle.is_empty() {
            let refs: Vec<&[u8]> = self.bundle.iter().map(Vec::as_slice).collect();
            let path = entries_path(size / TILE_WIDTH, Some(self.bundle.len() as u16));
            put(
                path.clone(),
                &tiles::encode_bundle(&refs).map_err(|e| StoreError::Corrupt {
                    path,
                    reason: e.to_string(),
                })?,
            )?;
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        // Tiles for `size` are durable: record it, then empty the WAL (all of it is now in tiles).
        self.write_state(size, self.wal_len)?;
        self.wal.set_len(0).map_err(io(&self.dir.join(WAL)))?;
        self.wal.sync_all().map_err(io(&self.dir.join(WAL)))?;
        self.wal_len = 0;
        self.write_state(size, 0)?;
        // Partial tiles superseded by full ones are no longer needed.
        for (tl, n, _) in &full_tiles {
            let _ =
                std::fs::remove_dir_all(self.dir.join(format!("{}.p", tile_path(*tl, *n, None))));
        }
        for (n, _) in &full_bundles {
            let _ = std::fs::remove_dir_all(self.dir.join(format!("{}.p", entries_path(*n, None))));
        }
        Ok((size, self.range.root()))
    }

    fn write_state(&mut self, size: u64, offset: u64) -> Result<(), StoreError> {
        write_file(
            &self.dir.join(STATE),
            format!("integrated {size}\nwal-offset {offset}\n").as_bytes(),
        )?;
        sync_dir(&self.dir)?;
        self.integrated_offset = offset;
        Ok(())
    }

    /// Durably publishes a signed checkpoint note.
    pub fn publish_checkpoint(&self, note: &[u8]) -> Result<(), StoreError> {
        write_file(&self.dir.join(CHECKPOINT), note)?;
        sync_dir(&self.dir)
    }

    /// The last published checkpoint note, if any.
    pub fn checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.dir.join(CHECKPOINT);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// A reader over the integrated tree of `size` entries (at most [`Self::integrated`]).
    pub fn source(&self) -> DirSource {
        DirSource(self.dir.clone())
    }
}

fn parse_state(s: &str) -> Option<(u64, u64)> {
    let mut lines = s.lines();
    let size = lines.next()?.strip_prefix("integrated ")?.parse().ok()?;
    let offset = lines.next()?.strip_prefix("wal-offset ")?.parse().ok()?;
    Some((size, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_log::merkle::{root_from_leaf_hashes, verify_consistency, verify_inclusion};

    fn entry(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    #[test]
    fn appends_integrate_into_tiles_that_reproduce_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        let mut leaves = Vec::new();
        let mut roots = vec![];
        for batch in [1u64, 5, 250, 1, 300, 70_000 - 557] {
            let entries: Vec<Vec<u8>> = (0..batch).map(|k| entry(store.sequenced() + k)).collect();
            leaves.extend(entries.iter().map(|e| leaf_hash(e)));
            store.append(&entries).unwrap();
            let (size, root) = store.integrate().unwrap();
            assert_eq!(size, leaves.len() as u64);
            assert_eq!(root, root_from_leaf_hashes(&leaves));
            roots.push((size, root));
        }
        // Proofs computed from the tiles verify, for old sizes too.
        let source = store.source();
        let size = store.integrated();
        let mut reader = TreeReader::new(&source, size);
        for idx in [0, 1, 255, 256, 65_535, 69_999] {
            let proof = reader.inclusion_proof(idx).unwrap();
            verify_inclusion(&leaves[idx as usize], idx, size, &proof, &store.root()).unwrap();
        }
        for (old, old_root) in &roots[..roots.len() - 1] {
            let proof = reader.consistency_proof(*old).unwrap();
            verify_consistency(*old, size, &proof, old_root, &store.root()).unwrap();
        }
        assert_eq!(reader.entries(3).unwrap()[7], entry(3 * 256 + 7));
        // Reopening recovers the same state.
        drop(store);
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.integrated(), size);
        assert_eq!(store.root(), root_from_leaf_hashes(&leaves));
    }

    #[test]
    fn unintegrated_entries_survive_a_restart_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        store.append(&[entry(0), entry(1)]).unwrap();
        store.integrate().unwrap();
        store.append(&[entry(2), entry(3)]).unwrap();
        drop(store);
        // A crash in the middle of writing a record leaves a partial one behind.
        let mut wal = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(WAL))
            .unwrap();
        wal.write_all(&[0, 0, 0, 9, b'x']).unwrap();
        drop(wal);
        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(store.integrated(), 2);
        assert_eq!(store.sequenced(), 4);
        store.append(&[entry(4)]).unwrap();
        let (size, root) = store.integrate().unwrap();
        assert_eq!(size, 5);
        let leaves: Vec<Hash> = (0..5).map(|i| leaf_hash(&entry(i))).collect();
        assert_eq!(root, root_from_leaf_hashes(&leaves));
    }

    #[test]
    fn oversized_entries_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.append(&[vec![0; MAX_ENTRY_SIZE + 1]]),
            Err(StoreError::EntryTooLarge { .. })
        ));
        assert_eq!(store.sequenced(), 0);
    }
}
