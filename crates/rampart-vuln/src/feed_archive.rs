//! The advisory-feed archive: osv.dev's per-ecosystem zip (`all.zip`), walked entry by entry
//! within limits. It hands out the `*.json` entries' names and bytes in archive order; what they
//! hold is the OSV reader's business (`crate::osv::parse_advisory`).
//!
//! A zip is untrusted input and may be a bomb: the entry count (from the central directory) is
//! checked before any entry is read, each entry is read through a reader bounded at the record
//! limit (the sizes its headers claim are never trusted, neither for allocation nor for the
//! limit), and the uncompressed bytes of all entries together are bounded.
//!
//! No file system: the archive is any `Read + Seek` (a `File` the CLI opens, or bytes in a
//! `std::io::Cursor`).

use std::io::{Read, Seek};

use crate::osv::MAX_ADVISORY_BYTES;

/// Entries an advisory feed may hold: all of OSV's ecosystems together hold fewer than 250,000
/// records.
pub const MAX_FEED_ENTRIES: usize = 1_000_000;
/// All records together, uncompressed: osv.dev's largest ecosystem zip unpacks to well under
/// this.
pub const MAX_FEED_TOTAL_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// Bounds on what a feed may hold (a zip, or a directory the CLI reads with the same limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedLimits {
    /// Advisory files or zip entries (every entry of a zip counts, `*.json` or not).
    pub max_entries: usize,
    /// One record, uncompressed.
    pub max_entry_bytes: usize,
    /// All records together, uncompressed.
    pub max_total_bytes: u64,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            max_entries: MAX_FEED_ENTRIES,
            max_entry_bytes: MAX_ADVISORY_BYTES,
            max_total_bytes: MAX_FEED_TOTAL_BYTES,
        }
    }
}

/// Why a feed archive, or one of its entries, was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedArchiveError {
    #[error(
        "not a readable zip archive ({reason}): give osv.dev's per-ecosystem all.zip or a directory of OSV records"
    )]
    NotAZip { reason: String },
    #[error(
        "the archive has {entries} entries, more than the {limit} an advisory feed may hold: is it the right file?"
    )]
    TooManyEntries { entries: usize, limit: usize },
    #[error(
        "entry {name} cannot be read ({reason}): the archive is damaged or uses a compression or encryption a feed does not; download it again"
    )]
    UnreadableEntry { name: String, reason: String },
    #[error(
        "entry {name} is larger than the {limit}-byte limit of one advisory record: is it an OSV record (or a zip bomb)?"
    )]
    EntryTooLarge { name: String, limit: usize },
    #[error(
        "the feed unpacks to more than {limit} bytes (at entry {name}): is it the right file (or a zip bomb)?"
    )]
    TotalTooLarge { name: String, limit: u64 },
}

/// One `*.json` entry of the archive: its name as the archive spells it, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// An advisory-feed zip opened for reading, one `*.json` entry at a time, in archive order.
/// As an iterator it stops after the first error (the rest of a damaged or hostile archive is
/// not worth reading).
pub struct FeedArchive<R: Read + Seek> {
    archive: zip::ZipArchive<R>,
    limits: FeedLimits,
    /// Indexes of the `*.json` entries, in archive order.
    json_entries: Vec<usize>,
    next: usize,
    total_bytes: u64,
}

impl<R: Read + Seek> std::fmt::Debug for FeedArchive<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedArchive")
            .field("limits", &self.limits)
            .field("json_entries", &self.json_entries.len())
            .field("next", &self.next)
            .field("total_bytes", &self.total_bytes)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek> FeedArchive<R> {
    /// Reads the central directory and checks the entry count before any entry is read.
    pub fn open(reader: R, limits: FeedLimits) -> Result<Self, FeedArchiveError> {
        let archive = zip::ZipArchive::new(reader).map_err(|e| FeedArchiveError::NotAZip {
            reason: e.to_string(),
        })?;
        if archive.len() > limits.max_entries {
            return Err(FeedArchiveError::TooManyEntries {
                entries: archive.len(),
                limit: limits.max_entries,
            });
        }
        // Names that do not decode are not `*.json` records: left out like any other file.
        let json_entries = (0..archive.len())
            .filter(|&i| {
                archive
                    .name_for_index(i)
                    .and_then(Result::ok)
                    .is_some_and(|name| is_record_name(&name))
            })
            .collect();
        Ok(FeedArchive {
            archive,
            limits,
            json_entries,
            next: 0,
            total_bytes: 0,
        })
    }

    /// How many `*.json` entries the archive holds (what a progress line counts to).
    pub fn json_entries(&self) -> usize {
        self.json_entries.len()
    }

    /// The uncompressed bytes read so far.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The next `*.json` entry, or `None` after the last.
    pub fn next_entry(&mut self) -> Result<Option<FeedEntry>, FeedArchiveError> {
        let Some(&index) = self.json_entries.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        let fallback_name = || format!("#{index}");
        let unreadable =
            |name: String, reason: String| FeedArchiveError::UnreadableEntry { name, reason };
        let entry = self
            .archive
            .by_index(index)
            .map_err(|e| unreadable(fallback_name(), e.to_string()))?;
        let name = entry
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| fallback_name());
        // One byte over the limit tells "too large" from "exactly the limit"; the header's
        // claimed size plays no part.
        let limit = self.limits.max_entry_bytes;
        let mut bytes = Vec::new();
        entry
            .take(limit as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| unreadable(name.clone(), e.to_string()))?;
        if bytes.len() > limit {
            return Err(FeedArchiveError::EntryTooLarge { name, limit });
        }
        self.total_bytes += bytes.len() as u64;
        if self.total_bytes > self.limits.max_total_bytes {
            return Err(FeedArchiveError::TotalTooLarge {
                name,
                limit: self.limits.max_total_bytes,
            });
        }
        Ok(Some(FeedEntry { name, bytes }))
    }
}

impl<R: Read + Seek> Iterator for FeedArchive<R> {
    type Item = Result<FeedEntry, FeedArchiveError>;

    fn next(&mut self) -> Option<Self::Item> {
        let item = self.next_entry().transpose();
        if matches!(item, Some(Err(_))) {
            self.next = self.json_entries.len();
        }
        item
    }
}

/// Whether an entry name is an advisory record: a `*.json` file (a directory's name ends in
/// `/`).
fn is_record_name(name: &str) -> bool {
    name.ends_with(".json")
}
