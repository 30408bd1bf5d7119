//! The advisory-feed zip reader (rampart_vuln::feed_archive): its limits against bombs and
//! lying headers, and the real Python Packaging Advisory Database (`../shared/vectors/osv-pypi/`,
//! CC BY 4.0) zipped as osv.dev publishes an ecosystem, read back whole.

use std::io::{Cursor, Write};
use std::path::PathBuf;

use rampart_vuln::feed_archive::{FeedArchive, FeedArchiveError, FeedEntry, FeedLimits};
use rampart_vuln::osv::parse_advisory;

fn record(id: &str, pad: usize) -> Vec<u8> {
    serde_json::json!({"id": id, "modified": "2024-01-01T00:00:00Z", "details": "x".repeat(pad)})
        .to_string()
        .into_bytes()
}

fn zip_of(entries: &[(String, Vec<u8>)], method: zip::CompressionMethod) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    for (name, bytes) in entries {
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap().into_inner()
}

fn deflated(entries: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let owned: Vec<(String, Vec<u8>)> = entries
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.clone()))
        .collect();
    zip_of(&owned, zip::CompressionMethod::Deflated)
}

/// `n` small records named `PREFIX-i.json`.
fn numbered(prefix: &str, n: usize, pad: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let id = format!("{prefix}-{i}");
            (format!("{id}.json"), record(&id, pad))
        })
        .collect()
}

fn read_all(zip: Vec<u8>, limits: FeedLimits) -> Result<Vec<FeedEntry>, FeedArchiveError> {
    FeedArchive::open(Cursor::new(zip), limits)?.collect()
}

#[test]
fn zip_entries_that_are_json_are_read_in_order() {
    let zip = deflated(&[
        ("A-1.json", record("A-1", 10)),
        ("README.txt", b"not a record".to_vec()),
        ("nested/", Vec::new()),
        ("B-2.json", record("B-2", 10)),
    ]);
    let archive = FeedArchive::open(Cursor::new(zip), FeedLimits::default()).unwrap();
    assert_eq!(archive.json_entries(), 2);
    let entries: Vec<FeedEntry> = archive.collect::<Result<_, _>>().unwrap();
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["A-1.json", "B-2.json"]);
    assert_eq!(entries[1].bytes, record("B-2", 10));
}

#[test]
fn zip_with_too_many_entries_is_refused_before_reading() {
    // The fifth entry is not even a record: the count alone refuses the archive at open.
    let mut entries = numbered("X", 4, 1);
    entries.push(("notes.txt".to_owned(), b"x".to_vec()));
    let zip = zip_of(&entries, zip::CompressionMethod::Stored);
    let limits = FeedLimits {
        max_entries: 4,
        ..FeedLimits::default()
    };
    let e = FeedArchive::open(Cursor::new(zip.clone()), limits).unwrap_err();
    assert_eq!(
        e,
        FeedArchiveError::TooManyEntries {
            entries: 5,
            limit: 4
        }
    );
    assert!(e.to_string().contains("5 entries"), "{e}");
    let limits = FeedLimits {
        max_entries: 5,
        ..FeedLimits::default()
    };
    assert_eq!(read_all(zip, limits).unwrap().len(), 4);
}

#[test]
fn zip_entry_over_the_record_limit_is_refused() {
    // 4 MiB of spaces deflate to a few KiB.
    let mut bomb = record("BOMB-1", 0);
    bomb.splice(1..1, std::iter::repeat_n(b' ', 4 * 1024 * 1024));
    let zip = deflated(&[("BOMB-1.json", bomb)]);
    assert!(zip.len() < 64 * 1024, "{}", zip.len());
    let e = read_all(zip, FeedLimits::default()).unwrap_err();
    assert!(
        matches!(&e, FeedArchiveError::EntryTooLarge { name, limit } if name == "BOMB-1.json" && *limit == 1024 * 1024),
        "{e:?}"
    );
    assert!(e.to_string().contains("larger than the"), "{e}");
}

#[test]
fn zip_entry_of_exactly_the_record_limit_is_read() {
    let mut exact = record("EXACT-1", 0);
    let limit = exact.len() + 100;
    exact.splice(1..1, std::iter::repeat_n(b' ', 100));
    let limits = FeedLimits {
        max_entry_bytes: limit,
        ..FeedLimits::default()
    };
    let entries = read_all(deflated(&[("EXACT-1.json", exact.clone())]), limits).unwrap();
    assert_eq!(entries[0].bytes, exact);
    exact.push(b' ');
    let e = read_all(deflated(&[("EXACT-1.json", exact)]), limits).unwrap_err();
    assert!(matches!(e, FeedArchiveError::EntryTooLarge { .. }), "{e:?}");
}

/// The headers claim a tiny entry; the data inflates far past the limit. The bounded read
/// stops at the limit whatever the headers say.
#[test]
fn zip_entry_lying_about_its_size_is_read_bounded() {
    let mut big = record("LIAR-1", 0);
    big.splice(1..1, std::iter::repeat_n(b' ', 2 * 1024 * 1024));
    let real_size = u32::try_from(big.len()).unwrap();
    let mut zip = deflated(&[("LIAR-1.json", big)]);
    // Rewrite every uncompressed-size field holding the real size (local header and central
    // directory) to 100 bytes.
    let needle = real_size.to_le_bytes();
    let mut patched = 0;
    for i in 0..zip.len() - 4 {
        if zip[i..i + 4] == needle {
            zip[i..i + 4].copy_from_slice(&100u32.to_le_bytes());
            patched += 1;
        }
    }
    assert!(patched >= 2, "{patched}");
    let limits = FeedLimits {
        max_entry_bytes: 1024 * 1024,
        ..FeedLimits::default()
    };
    // Refused either way: never read as a 100-byte record, never read past the limit.
    let e = read_all(zip, limits).unwrap_err();
    assert!(
        matches!(&e, FeedArchiveError::EntryTooLarge { name, .. } | FeedArchiveError::UnreadableEntry { name, .. } if name == "LIAR-1.json"),
        "{e:?}"
    );
}

#[test]
fn feed_over_the_total_uncompressed_bytes_is_refused() {
    let entries = numbered("T", 4, 1000);
    let one = entries[0].1.len() as u64;
    let zip = zip_of(&entries, zip::CompressionMethod::Deflated);
    let limits = FeedLimits {
        max_total_bytes: 3000,
        ..FeedLimits::default()
    };
    assert!(3 * one > 3000 && 2 * one <= 3000, "{one}");
    let mut archive = FeedArchive::open(Cursor::new(zip.clone()), limits).unwrap();
    archive.next_entry().unwrap().unwrap();
    archive.next_entry().unwrap().unwrap();
    assert_eq!(archive.total_bytes(), 2 * one);
    let e = archive.next_entry().unwrap_err();
    assert!(
        matches!(&e, FeedArchiveError::TotalTooLarge { name, limit: 3000 } if name == "T-2.json"),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("unpacks to more than 3000 bytes"),
        "{e}"
    );
    assert_eq!(read_all(zip, FeedLimits::default()).unwrap().len(), 4);
}

#[test]
fn bytes_that_are_not_a_zip_are_refused_with_what_to_give() {
    for bytes in [
        Vec::new(),
        b"{\"id\":\"A-1\"}".to_vec(),
        vec![0x50, 0x4b, 0x05, 0x06],
    ] {
        let e = FeedArchive::open(Cursor::new(bytes), FeedLimits::default()).unwrap_err();
        assert!(matches!(e, FeedArchiveError::NotAZip { .. }), "{e:?}");
        assert!(e.to_string().contains("all.zip"), "{e}");
    }
}

/// After an error the iterator ends: a damaged archive is not read on past it.
#[test]
fn iteration_stops_at_the_first_refused_entry() {
    let mut big = record("BIG-1", 0);
    big.splice(1..1, std::iter::repeat_n(b' ', 4096));
    let zip = deflated(&[
        ("A-1.json", record("A-1", 1)),
        ("BIG-1.json", big),
        ("C-1.json", record("C-1", 1)),
    ]);
    let limits = FeedLimits {
        max_entry_bytes: 1024,
        ..FeedLimits::default()
    };
    let items: Vec<_> = FeedArchive::open(Cursor::new(zip), limits)
        .unwrap()
        .collect();
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items[0].is_ok());
    assert!(matches!(
        items[1],
        Err(FeedArchiveError::EntryTooLarge { .. })
    ));
}

/// Every prefix of a feed and every single-byte change of it (what a fuzzer tries first) is an
/// error or entries within the limits: never a panic, never an entry over the limit.
#[test]
fn truncated_and_corrupted_feeds_are_refused_or_read_within_limits() {
    let entries = numbered("M", 3, 40);
    let limits = FeedLimits {
        max_entries: 8,
        max_entry_bytes: 256,
        max_total_bytes: 1024,
    };
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let zip = zip_of(&entries, method);
        let check = |bytes: Vec<u8>| {
            let Ok(archive) = FeedArchive::open(Cursor::new(bytes), limits) else {
                return;
            };
            let mut total = 0;
            for entry in archive.flatten() {
                assert!(entry.bytes.len() <= limits.max_entry_bytes);
                total += entry.bytes.len() as u64;
            }
            assert!(total <= limits.max_total_bytes);
        };
        for len in 0..zip.len() {
            check(zip[..len].to_vec());
        }
        for i in 0..zip.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bytes = zip.clone();
                bytes[i] ^= flip;
                check(bytes);
            }
        }
    }
}

/// osv.dev's per-ecosystem zip holds one `ID.json` per record: the real PyPI database zipped
/// that way reads back record for record, each parsing as the advisory it was.
#[test]
fn the_real_pypi_database_zipped_reads_back_record_for_record() {
    let dir = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/osv-pypi"
    ));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("the shared OSV vectors beside the repository (../shared/vectors/osv-pypi)")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 2661, "the vector set changed");
    let zip = zip_of(&files, zip::CompressionMethod::Deflated);
    let entries = read_all(zip, FeedLimits::default()).unwrap();
    assert_eq!(entries.len(), files.len());
    for ((name, bytes), entry) in files.iter().zip(&entries) {
        assert_eq!(&entry.name, name);
        assert_eq!(&entry.bytes, bytes, "{name}");
        let advisory = parse_advisory(&entry.bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(format!("{}.json", advisory.id), *name);
    }
}

/// Counts the bytes pulled from the archive underneath.
struct CountingReader {
    inner: Cursor<Vec<u8>>,
    read: std::rc::Rc<std::cell::Cell<u64>>,
}

impl std::io::Read for CountingReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.set(self.read.get() + n as u64);
        Ok(n)
    }
}

impl std::io::Seek for CountingReader {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// An oversized entry is read no further than the limit (and a little buffering), not to its
/// end: an 8 MiB entry under a 64 KiB limit costs well under 1 MiB of reading.
#[test]
fn zip_entry_is_read_no_further_than_the_limit() {
    // Incompressible, so the bytes read from the archive follow the bytes inflated.
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let noise: Vec<u8> = (0..8 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'a' + (state % 26) as u8
        })
        .collect();
    for method in [
        zip::CompressionMethod::Stored,
        zip::CompressionMethod::Deflated,
    ] {
        let zip = zip_of(&[("NOISE-1.json".to_owned(), noise.clone())], method);
        let read = std::rc::Rc::new(std::cell::Cell::new(0));
        let reader = CountingReader {
            inner: Cursor::new(zip),
            read: read.clone(),
        };
        let limits = FeedLimits {
            max_entry_bytes: 64 * 1024,
            ..FeedLimits::default()
        };
        let mut archive = FeedArchive::open(reader, limits).unwrap();
        let opened = read.get();
        let e = archive.next_entry().unwrap_err();
        assert!(matches!(e, FeedArchiveError::EntryTooLarge { .. }), "{e:?}");
        let entry_read = read.get() - opened;
        assert!(
            entry_read < 1024 * 1024,
            "{method:?}: read {entry_read} bytes"
        );
    }
}
