//! Advisory-feed zips as `rampart risk import` reads osv.dev's per-ecosystem `all.zip`
//! (rampart-vuln::feed_archive): the input as an archive, walked entry by entry under small
//! limits, each entry handed out within them and parsed as an OSV record (rampart-vuln::osv).
#![no_main]
#![forbid(unsafe_code)]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use rampart_vuln::feed_archive::{FeedArchive, FeedLimits};
use rampart_vuln::osv::parse_advisory;

/// Small enough that the fuzzer reaches every limit within its input size.
const LIMITS: FeedLimits = FeedLimits {
    max_entries: 64,
    max_entry_bytes: 16 * 1024,
    max_total_bytes: 64 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Ok(archive) = FeedArchive::open(Cursor::new(data), LIMITS) else {
        return;
    };
    let declared = archive.json_entries();
    assert!(declared <= LIMITS.max_entries);
    let (mut read, mut total) = (0usize, 0u64);
    // The iterator ends at the first refused entry.
    for entry in archive.flatten() {
        assert!(entry.name.ends_with(".json"), "{}", entry.name);
        assert!(entry.bytes.len() <= LIMITS.max_entry_bytes);
        total += entry.bytes.len() as u64;
        assert!(total <= LIMITS.max_total_bytes);
        read += 1;
        let _ = parse_advisory(&entry.bytes);
    }
    assert!(read <= declared);
});
