//! Reading an OSV advisory feed for `rampart risk import`: every `*.json` file of a directory,
//! or every `*.json` entry of an osv.dev per-ecosystem zip, each checked as an OSV record; and
//! cutting the records into batches the import route takes.
//!
//! A zip is untrusted input and may be a bomb: rampart-vuln's `feed_archive` walks it within
//! the limits (entry count, each entry's bytes whatever its headers claim, the total). A
//! directory is read here within the same limits.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rampart_vuln::feed_archive::FeedArchive;
pub use rampart_vuln::feed_archive::FeedLimits;
use rampart_vuln::osv::parse_advisory;
use serde_json::Value;

/// The import route's limits (`POST /api/v1/risk/advisories`, decision 0043).
pub const ROUTE_MAX_RECORDS: usize = 2_000;
pub const ROUTE_MAX_BODY: usize = 1024 * 1024;
/// `{"advisories":[` ... `]}` around the records.
const BODY_FRAME: usize = 32;

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
        archive: Box<FeedArchive<File>>,
    },
}

/// Opens a directory or a `.zip` file; also returns how many records it holds.
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
        let archive =
            FeedArchive::open(file, limits).with_context(|| path.display().to_string())?;
        let n = archive.json_entries();
        return Ok((
            Feed::Zip {
                path: path.to_owned(),
                archive: Box::new(archive),
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
            "{what} is larger than the {max}-byte limit of one advisory record: is it an OSV record?"
        );
    }
    Ok(bytes)
}

impl Feed {
    /// The next record, or `None` at the end; `total` counts the bytes of a directory's files
    /// (a zip counts and bounds its own).
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
                *total += bytes.len() as u64;
                if *total > limits.max_total_bytes {
                    bail!(
                        "the advisory files together are more than {} bytes: split the feed",
                        limits.max_total_bytes
                    );
                }
                (source, bytes)
            }
            Feed::Zip { path, archive } => {
                let Some(entry) = archive
                    .next_entry()
                    .with_context(|| path.display().to_string())?
                else {
                    return Ok(None);
                };
                (format!("{}:{}", path.display(), entry.name), entry.bytes)
            }
        };
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

    /// The zip walk itself (limits, bombs, lying headers) is tested in rampart-vuln's
    /// feed_archive tests; here: records come out named by archive and entry, non-records left
    /// out, and the archive's refusals name the file.
    #[test]
    fn zip_feed_records_are_named_by_archive_and_entry() {
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
        let (_, expected) = open_feed(&path, FeedLimits::default()).unwrap();
        assert_eq!(expected, 2);
        let records = read_all(&path, FeedLimits::default()).unwrap();
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["A-1", "B-2"]);
        assert_eq!(records[1].source, format!("{}:B-2.json", path.display()));

        let limits = FeedLimits {
            max_entry_bytes: 20,
            ..FeedLimits::default()
        };
        let e = format!("{:#}", read_all(&path, limits).unwrap_err());
        assert!(
            e.contains("all.zip") && e.contains("A-1.json") && e.contains("larger than the"),
            "{e}"
        );

        let not_zip = dir.path().join("not.zip");
        std::fs::write(&not_zip, b"{}").unwrap();
        let e = format!(
            "{:#}",
            open_feed(&not_zip, FeedLimits::default()).err().unwrap()
        );
        assert!(e.contains("not.zip") && e.contains("all.zip"), "{e}");
    }

    #[test]
    fn directory_with_too_many_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..3 {
            std::fs::write(
                dir.path().join(format!("D-{i}.json")),
                record(&format!("D-{i}"), 1),
            )
            .unwrap();
        }
        let limits = FeedLimits {
            max_entries: 2,
            ..FeedLimits::default()
        };
        let e = open_feed(dir.path(), limits).err().unwrap().to_string();
        assert!(e.contains("more than 2 advisory files"), "{e}");
        let limits = FeedLimits {
            max_entries: 3,
            ..FeedLimits::default()
        };
        assert_eq!(read_all(dir.path(), limits).unwrap().len(), 3);
    }

    #[test]
    fn directory_file_over_the_record_limit_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = record("BIG-1", 500);
        std::fs::write(dir.path().join("BIG-1.json"), &big).unwrap();
        let limits = FeedLimits {
            max_entry_bytes: big.len() - 1,
            ..FeedLimits::default()
        };
        let e = format!("{:#}", read_all(dir.path(), limits).unwrap_err());
        assert!(
            e.contains("BIG-1.json") && e.contains("larger than the"),
            "{e}"
        );
        let limits = FeedLimits {
            max_entry_bytes: big.len(),
            ..FeedLimits::default()
        };
        assert_eq!(read_all(dir.path(), limits).unwrap().len(), 1);
    }

    #[test]
    fn directory_over_the_total_bytes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..4 {
            std::fs::write(
                dir.path().join(format!("T-{i}.json")),
                record(&format!("T-{i}"), 1000),
            )
            .unwrap();
        }
        let limits = FeedLimits {
            max_total_bytes: 3000,
            ..FeedLimits::default()
        };
        let e = format!("{:#}", read_all(dir.path(), limits).unwrap_err());
        assert!(e.contains("more than 3000 bytes"), "{e}");
        assert_eq!(
            read_all(dir.path(), FeedLimits::default()).unwrap().len(),
            4
        );
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
