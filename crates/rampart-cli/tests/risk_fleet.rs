//! `rampart risk import|posture|remediate` through the binaries: a server started as an operator
//! would (hosting an image repository), the real PyPI advisories of ../shared/vectors/osv-pypi
//! imported from a directory and from a zip, a zip bomb refused before anything is sent,
//! posture as JSON and CSV, and remediation refusals reported with the server's reason.
//! (A remediation campaign that runs is tested in rampart-server's tests/risk_remediate.rs and,
//! end to end, in rampart-sim's tests/server.rs.)

mod common;

use common::{PYPI_ADVISORIES, Site, real_advisory_paths, write_zip};
use rampart_testkit::cli::{self, s};

#[test]
fn risk_import_posture_and_remediate_through_the_cli() {
    let site = Site::start();
    let paths = real_advisory_paths();
    let n = paths.len();
    // The feed itself withdraws some of its records.
    let withdrawn = paths
        .iter()
        .filter(|p| {
            let record: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            record.get("withdrawn").is_some()
        })
        .count();
    assert!(withdrawn > 0);

    let small = site.dir.join("small");
    std::fs::create_dir(&small).unwrap();
    for p in &paths[..3] {
        std::fs::copy(p, small.join(p.file_name().unwrap())).unwrap();
    }
    let out = cli::ok(site.risk(&["import", "--advisories", s(&small)]));
    assert!(out.contains("3 added"), "{out}");

    // The directory: every other record added, in several batches (the feed is over 1 MiB),
    // with progress on stderr.
    let out = cli::ok(site.risk(&["import", "--advisories", PYPI_ADVISORIES]));
    assert!(
        out.contains(&format!("{n} advisories imported in "))
            && out.contains(&format!(
                "{} added, 0 changed, 3 unchanged, {withdrawn} withdrawn",
                n - 3
            ))
            && out.contains(&format!(" of {n} records (1 batches")),
        "{out}"
    );

    // The same records as an osv.dev zip: all unchanged, but one changed and one withdrawn.
    let mut entries: Vec<(String, Vec<u8>)> = paths
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    for (i, (_, bytes)) in entries.iter_mut().take(2).enumerate() {
        let mut record: serde_json::Value = serde_json::from_slice(bytes).unwrap();
        record["modified"] = serde_json::json!("2031-01-01T00:00:00Z");
        if i == 1 {
            record["withdrawn"] = serde_json::json!("2031-01-01T00:00:00Z");
        }
        *bytes = record.to_string().into_bytes();
    }
    entries.push(("README.md".into(), b"not a record".to_vec()));
    let zip_path = site.dir.join("PyPI-all.zip");
    write_zip(&zip_path, &entries);
    let out = cli::ok(site.risk(&["import", "--advisories", s(&zip_path)]));
    assert!(
        out.contains(&format!("2 changed, {} unchanged, 1 withdrawn", n - 2)),
        "{out}"
    );

    // A zip bomb: one entry of 8 MiB of spaces (a few KiB deflated; the record limit is 1 MiB).
    // Refused, naming it.
    let mut bomb = b"{\"id\": \"BOMB-1\",".to_vec();
    bomb.extend(std::iter::repeat_n(b' ', 8 * 1024 * 1024));
    bomb.extend(b"\"modified\": \"2024-01-01T00:00:00Z\"}");
    let bomb_path = site.dir.join("bomb.zip");
    write_zip(&bomb_path, &[("BOMB-1.json".into(), bomb)]);
    let out = cli::fails(site.risk(&["import", "--advisories", s(&bomb_path)]));
    assert!(
        out.contains("BOMB-1.json") && out.contains("larger than"),
        "{out}"
    );

    // Posture: JSON for scripts (the API's answer, every row) and CSV with its header.
    let out = cli::ok(site.risk(&["posture", "--by", "hardware", "--json"]));
    let posture: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(posture["by"], "hardware", "{posture}");
    assert_eq!(
        posture["advisories"].as_u64(),
        Some((n - withdrawn - 1) as u64),
        "{posture}"
    );
    let out = cli::ok(site.risk(&["posture", "--csv"]));
    assert_eq!(
        out.lines().next().unwrap(),
        "key,devices,affected_devices,fallback_affected,unknown_release_devices,critical,high,medium,low,unassigned,score,worst"
    );
    let out = cli::ok(site.risk(&["posture", "--by", "release"]));
    assert!(out.starts_with("RELEASE"), "{out}");
    // The fallback column: devices whose inactive slot holds an exposed release.
    assert!(out.lines().next().unwrap().contains(" FALLBACK "), "{out}");
    let out = cli::fails(site.risk(&["posture", "--by", "planet"]));
    assert!(out.contains("planet"), "{out}");

    // Remediation refusals carry the server's reason.
    let out = cli::fails(site.risk(&["remediate", "NOPE-1", "--release", "fw.bin"]));
    assert!(out.contains("404") && out.contains("NOPE-1"), "{out}");
    let first_id = {
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&paths[2]).unwrap()).unwrap();
        record["id"].as_str().unwrap().to_owned()
    };
    let out = cli::fails(site.risk(&["remediate", &first_id, "--release", "fw.bin"]));
    assert!(
        out.contains("422") && out.contains("unknown_release"),
        "{out}"
    );
}
