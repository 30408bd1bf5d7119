//! Reading an OSV advisory feed for `rampart risk import`: every `*.json` file of a directory,
//! or every `*.json` entry of an osv.dev per-ecosystem zip, each checked as an OSV record; and
//! cutting the records into batches the import route takes.
//!
//! A zip is untrusted input and may be a bomb: the entry count is checked before any entry is
//! read, each entry is read through a reader bounded at the record limit (the sizes its headers
//! claim are never trusted, neither for allocation nor for the limit), and the uncompressed
//! bytes of all entries together are bounded.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rampart_vuln::osv::{MAX_ADVISORY_BYTES, parse_advisory};
use serde_json::Value;

/// The import route's limits (`POST /api/v1/risk/advisories`, decision 0043).
pub const ROUTE_MAX_RECORDS: usize = 2_000;
pub const ROUTE_MAX_BODY: usize = 1024 * 1024;
/// `{"advisories":[` ... `]}` around the records.
const BODY_FRAME: usize = 32;

/// Bounds on what a feed may hold.
#[derive(Debug, Clone, Copy)]
pub struct FeedLimits {
    /// Advisory files or zip entries (all of OSV's ecosystems together hold fewer than
    /// 250,000 records).
    pub max_entries: usize,
    /// One record, uncompressed.
    pub max_entry_bytes: usize,
    /// All records together, uncompressed (osv.dev's largest ecosystem zip unpacks to well
    /// under this).
    pub max_total_bytes: u64,
}

impl Default for FeedLimits {
    fn default() -> Self {
        FeedLimits {
            max_entries: 1_000_000,
            max_entry_bytes: MAX_ADVISORY_BYTES,
            max_total_bytes: 8 * 1024 * 1024 * 1024,
        }
    }
}

/// One advisory read from the feed: where it came from, its id, and the record.
#[derive(Debug)]
pub struct FeedRecord {
    pub source: String,
    pub id: String,
    pub record: Value,
    /// The record's length as sent (serialized).
    pub sent_bytes: usize,
}

/// A feed opened for reading, one record at a time.
pub enum Feed {
    Dir {
        paths: Vec<PathBuf>,
        next: usize,
    },
    Zip {
        path: PathBuf,
        archive: Box<zip::ZipArchive<File>>,
        /// Indexes of the `*.json` entries.
        entries: Vec<usize>,
        next: usize,
    },
}

/// Opens a directory or a `.zip` file.
pub fn open_feed(path: &Path, limits: FeedLimits) -> anyhow::Result<(Feed, usize)> {
    if path.is_dir() {
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(path)
            .with_context(|| format!("listing the advisories directory {}", path.display()))?
        {
            let p = entry
                .with_context(|| format!("listing {}", path.display()))?
                .path();
            if p.extension().is_some_and(|e| e == "json") && p.is_file() {
                if paths.len() == limits.max_entries {
                    bail!(
                        "{} holds more than {} advisory files: split the feed",
                        path.display(),
                        limits.max_entries
                    );
                }
                paths.push(p);
            }
        }
        paths.sort();
        let n = paths.len();
        return Ok((Feed::Dir { paths, next: 0 }, n));
    }
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("zip"))
    {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let archive = zip::ZipArchive::new(file).with_context(|| {
            format!(
                "{} is not a readable zip: give osv.dev's per-ecosystem all.zip or a directory",
                path.display()
            )
        })?;
        // The central directory's count, before any entry is read.
        if archive.len() > limits.max_entries {
            bail!(
                "{} has {} entries, more than the {} an advisory feed may hold: is it the right file?",
                path.display(),
                archive.len(),
                limits.max_entries
            );
        }
        let entries: Vec<usize> = (0..archive.len())
            .filter(|&i| {
                archive
                    .name_for_index(i)
                    .and_then(Result::ok)
                    .is_some_and(|name| name.ends_with(".json") && !name.ends_with('/'))
            })
            .collect();
        let n = entries.len();
        return Ok((
            Feed::Zip {
                path: path.to_owned(),
                archive: Box::new(archive),
                entries,
                next: 0,
            },
            n,
        ));
    }
    bail!(
        "{} is neither a directory nor a .zip: give a directory of OSV *.json records or osv.dev's per-ecosystem zip",
        path.display()
    )
}

/// Reads at most `max` bytes from `reader`; more is an error naming `what`.
fn read_bounded(reader: impl Read, max: usize, what: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading {what}"))?;
    if bytes.len() > max {
        bail!(
            "{what} is larger than the {max}-byte limit of one advisory record: is it an OSV record (or a zip bomb)?"
        );
    }
    Ok(bytes)
}

impl Feed {
    /// The next record, or `None` at the end; `total` counts the uncompressed bytes read.
    pub fn next_record(
        &mut self,
        limits: FeedLimits,
        total: &mut u64,
    ) -> anyhow::Result<Option<FeedRecord>> {
        let (source, bytes) = match self {
            Feed::Dir { paths, next } => {
                let Some(path) = paths.get(*next) else {
                    return Ok(None);
                };
                *next += 1;
                let source = path.display().to_string();
                let file =
                    File::open(path).with_context(|| format!("opening advisory {source}"))?;
                let bytes = read_bounded(file, limits.max_entry_bytes, &source)?;
                (source, bytes)
            }
            Feed::Zip {
                path,
                archive,
                entries,
                next,
            } => {
                let Some(&index) = entries.get(*next) else {
                    return Ok(None);
                };
                *next += 1;
                let entry = archive
                    .by_index(index)
                    .with_context(|| format!("{}: entry {index}", path.display()))?;
                let name = entry
                    .name()
                    .map(|n| n.into_owned())
                    .unwrap_or_else(|_| format!("entry {index}"));
                let source = format!("{}:{name}", path.display());
                let bytes = read_bounded(entry, limits.max_entry_bytes, &source)?;
                (source, bytes)
            }
        };
        *total += bytes.len() as u64;
        if *total > limits.max_total_bytes {
            bail!(
                "the feed unpacks to more than {} bytes: is it the right file (or a zip bomb)?",
                limits.max_total_bytes
            );
        }
        let advisory = parse_advisory(&bytes)
            .with_context(|| format!("advisory {source}: fix or remove it and run again"))?;
        let record: Value = serde_json::from_slice(&bytes)
            .with_context(|| format!("advisory {source} is not JSON"))?;
        let sent_bytes = record.to_string().len();
        if sent_bytes + BODY_FRAME > ROUTE_MAX_BODY {
            bail!(
                "advisory {source} is {sent_bytes} bytes, too large for one import request ({ROUTE_MAX_BODY} bytes); leave it out"
            );
        }
        Ok(Some(FeedRecord {
            source,
            id: advisory.id,
            record,
            sent_bytes,
        }))
    }
}

/// Records gathered into one import request within the route's limits.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Value>,
    ids: std::collections::HashSet<String>,
    bytes: usize,
}

impl Batch {
    /// Whether `record` still fits (count, body size, and its id not yet in the batch: the
    /// route refuses an id given twice in one body).
    pub fn fits(&self, record: &FeedRecord) -> bool {
        self.records.len() < ROUTE_MAX_RECORDS
            && BODY_FRAME + self.bytes + self.records.len() + record.sent_bytes <= ROUTE_MAX_BODY
            && !self.ids.contains(&record.id)
    }

    pub fn push(&mut self, record: FeedRecord) {
        self.bytes += record.sent_bytes;
        self.ids.insert(record.id);
        self.records.push(record.record);
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn record(id: &str, pad: usize) -> String {
        serde_json::json!({"id": id, "modified": "2024-01-01T00:00:00Z", "details": "x".repeat(pad)})
            .to_string()
    }

    fn write_zip(path: &Path, entries: &[(&str, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in entries {
            zip.start_file(*name, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }

    fn read_all(path: &Path, limits: FeedLimits) -> anyhow::Result<Vec<FeedRecord>> {
        let (mut feed, _) = open_feed(path, limits)?;
        let mut total = 0;
        let mut out = Vec::new();
        while let Some(r) = feed.next_record(limits, &mut total)? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn zip_entries_that_are_json_are_read_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("all.zip");
        write_zip(
            &path,
            &[
                ("A-1.json", record("A-1", 10).into_bytes()),
                ("README.txt", b"not a record".to_vec()),
                ("B-2.json", record("B-2", 10).into_bytes()),
            ],
        );
        let records = read_all(&path, FeedLimits::default()).unwrap();
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["A-1", "B-2"]);
    }

    #[test]
    fn zip_with_too_many_entries_is_refused_before_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("many.zip");
        let entries: Vec<(String, Vec<u8>)> = (0..5)
            .map(|i| {
                (
                    format!("X-{i}.json"),
                    record(&format!("X-{i}"), 1).into_bytes(),
                )
            })
            .collect();
        let refs: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        write_zip(&path, &refs);
        let limits = FeedLimits {
            max_entries: 4,
            ..FeedLimits::default()
        };
        let e = open_feed(&path, limits).err().unwrap().to_string();
        assert!(e.contains("5 entries"), "{e}");
    }

    #[test]
    fn zip_entry_over_the_record_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bomb.zip");
        // 4 MiB of spaces deflate to a few KiB.
        let mut bomb = record("BOMB-1", 0).into_bytes();
        bomb.splice(1..1, std::iter::repeat_n(b' ', 4 * 1024 * 1024));
        write_zip(&path, &[("BOMB-1.json", bomb)]);
        assert!(std::fs::metadata(&path).unwrap().len() < 64 * 1024);
        let e = format!("{:#}", read_all(&path, FeedLimits::default()).unwrap_err());
        assert!(e.contains("larger than the"), "{e}");
    }

    /// The headers claim a tiny entry; the data inflates far past the limit. The bounded read
    /// stops at the limit whatever the headers say.
    #[test]
    fn zip_entry_lying_about_its_size_is_read_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liar.zip");
        let mut big = record("LIAR-1", 0).into_bytes();
        big.splice(1..1, std::iter::repeat_n(b' ', 2 * 1024 * 1024));
        let real_size = big.len() as u32;
        write_zip(&path, &[("LIAR-1.json", big)]);
        // Rewrite every uncompressed-size field holding the real size (local header and
        // central directory) to 100 bytes.
        let mut bytes = std::fs::read(&path).unwrap();
        let needle = real_size.to_le_bytes();
        let mut patched = 0;
        for i in 0..bytes.len() - 4 {
            if bytes[i..i + 4] == needle {
                bytes[i..i + 4].copy_from_slice(&100u32.to_le_bytes());
                patched += 1;
            }
        }
        assert!(patched >= 2, "{patched}");
        std::fs::write(&path, &bytes).unwrap();
        let limits = FeedLimits {
            max_entry_bytes: 1024 * 1024,
            ..FeedLimits::default()
        };
        // Refused either way: never read as a 100-byte record, never read past the limit.
        let e = format!("{:#}", read_all(&path, limits).unwrap_err());
        assert!(e.contains("larger than the") || e.contains("LIAR-1"), "{e}");
    }

    #[test]
    fn feed_over_the_total_uncompressed_bytes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("total.zip");
        let entries: Vec<(String, Vec<u8>)> = (0..4)
            .map(|i| {
                (
                    format!("T-{i}.json"),
                    record(&format!("T-{i}"), 1000).into_bytes(),
                )
            })
            .collect();
        let refs: Vec<(&str, Vec<u8>)> = entries
            .iter()
            .map(|(n, b)| (n.as_str(), b.clone()))
            .collect();
        write_zip(&path, &refs);
        let limits = FeedLimits {
            max_total_bytes: 3000,
            ..FeedLimits::default()
        };
        let e = format!("{:#}", read_all(&path, limits).unwrap_err());
        assert!(e.contains("unpacks to more than 3000 bytes"), "{e}");
        assert!(read_all(&path, FeedLimits::default()).is_ok());
    }

    #[test]
    fn a_file_that_is_not_osv_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("good.json"), record("G-1", 1)).unwrap();
        std::fs::write(dir.path().join("bad.json"), b"{\"id\": 3}").unwrap();
        let e = format!(
            "{:#}",
            read_all(dir.path(), FeedLimits::default()).unwrap_err()
        );
        assert!(e.contains("bad.json"), "{e}");
    }

    #[test]
    fn batches_keep_to_the_route_limits_and_send_each_id_once() {
        let rec = |id: &str, pad: usize| {
            let record: Value = serde_json::from_str(&record(id, pad)).unwrap();
            let sent_bytes = record.to_string().len();
            FeedRecord {
                source: id.into(),
                id: id.into(),
                record,
                sent_bytes,
            }
        };
        let mut batch = Batch::default();
        for i in 0..ROUTE_MAX_RECORDS {
            let r = rec(&format!("N-{i}"), 1);
            assert!(batch.fits(&r));
            batch.push(r);
        }
        assert!(!batch.fits(&rec("N-last", 1)), "the record count");
        let mut batch = Batch::default();
        batch.push(rec("BIG-1", 600 * 1024));
        assert!(!batch.fits(&rec("BIG-2", 600 * 1024)), "the body size");
        assert!(batch.fits(&rec("SMALL-1", 1000)));
        assert!(!batch.fits(&rec("BIG-1", 1)), "an id twice");
        let body = serde_json::json!({"advisories": batch.records}).to_string();
        assert!(body.len() <= ROUTE_MAX_BODY);
    }
}
