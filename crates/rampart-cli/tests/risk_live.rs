//! The risk commands as operators run them, against a live `rampart server` process hosting
//! releases with SBOMs and devices that polled as running them:
//! - vendor VEX: `rampart server --vex-signer`, `risk vex sign|import|list|delete`, and a real
//!   PyPI advisory (../shared/vectors/osv-pypi) suppressed in `risk posture` and `risk advisory`,
//!   then back when the document is removed; unsigned and untrusted VEX refused with the
//!   server's reason;
//! - `risk import --nvd` of the firmware NVD fixtures (rampart-vuln/tests/data/nvd-firmware)
//!   counted in `risk posture --by release`, and a re-import that changes nothing;
//! - `risk import --advisories FILE.zip` of real records, then `risk exposure` (table, JSON,
//!   CSV) and `risk advisory` (table, JSON) once the risk watch (`--risk-watch-interval`) saw
//!   the devices.
//!
//! Route-level behaviour on both backends is in rampart-server's tests/risk*.rs; these run the
//! binary on SQLite.

mod common;

use std::path::{Path, PathBuf};

use common::{
    Prepare, Site, add_release, pypi_cyclonedx, real_advisories_of, real_advisory_paths, wait_for,
    write_zip,
};
use rampart_testkit::cli::{self, fails, new_key, ok, s};
use rampart_testkit::pki::ServerPki;
use serde_json::{Value, json};

const NVD_FIRMWARE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rampart-vuln/tests/data/nvd-firmware"
);

/// The vendor's statement on jinja2 2.10 and CVE-2019-10906 (PYSEC-2019-217 in the real feed).
const OPENVEX: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../rampart-vuln/tests/data/vex/jinja2-not-affected.openvex.json"
));

/// jinja2 2.10 is affected by these two real records (fixed in 2.10.1 and 2.11.3); the
/// feed's other jinja2 records were fixed before 2.10.
const JINJA2_210_ADVISORIES: [&str; 2] = ["PYSEC-2019-217", "PYSEC-2021-66"];

fn json_of(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

/// The posture row whose key is `key`.
fn row<'a>(posture: &'a Value, key: &str) -> &'a Value {
    posture["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["key"] == key)
        .unwrap_or_else(|| panic!("no row {key:?} in {posture}"))
}

/// Copies `paths` into a new directory `dir/name`.
fn advisory_dir(dir: &Path, name: &str, paths: &[PathBuf]) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir(&out).unwrap();
    for p in paths {
        std::fs::copy(p, out.join(p.file_name().unwrap())).unwrap();
    }
    out
}

/// A release `fw-jinja.bin` (3.0.0, board-a) whose SBOM pins jinja2 2.10.
fn add_jinja_release(p: &Prepare) {
    let sbom = p.dir.join("fw-jinja.cdx.json");
    std::fs::write(&sbom, pypi_cyclonedx(&[("jinja2", "2.10")])).unwrap();
    add_release(p, "fw-jinja.bin", "3.0.0", "board-a", &sbom);
}

/// `rampart key export-public` of `dir/NAME.key` into `dir/NAME.pub.json`: its path and key id.
fn export_public(dir: &Path, name: &str) -> (PathBuf, String) {
    let exported = ok(cli::rampart(&[
        "key",
        "export-public",
        s(&dir.join(format!("{name}.key"))),
    ]));
    let path = dir.join(format!("{name}.pub.json"));
    std::fs::write(&path, &exported).unwrap();
    let key_id = json_of(&exported)["keyid"].as_str().unwrap().to_owned();
    (path, key_id)
}

#[test]
fn a_vendor_signed_vex_imported_through_the_cli_suppresses_a_real_advisory_until_deleted() {
    let mut vendor_key_id = String::new();
    let site = Site::start_with(|p| {
        add_jinja_release(p);
        new_key(p.dir, "vendor");
        let (public, key_id) = export_public(p.dir, "vendor");
        vendor_key_id = key_id;
        vec!["--vex-signer".into(), s(&public).to_owned()]
    });
    let dir = &site.dir;
    site.poll_as("dev-1", "board-a", "eu", "3.0.0");

    let jinja2 = real_advisories_of("jinja2");
    let out = ok(site.risk(&[
        "import",
        "--advisories",
        s(&advisory_dir(dir, "jinja2", &jinja2)),
    ]));
    assert!(
        out.contains(&format!("{} added, 0 changed, 0 unchanged", jinja2.len())),
        "{out}"
    );

    let posture = || json_of(&ok(site.risk(&["posture", "--by", "release", "--json"])));
    let affecting = |id: &str| {
        let answer = json_of(&ok(site.risk(&["advisory", id, "--json"])));
        answer["advisories"][0].clone()
    };
    let before = posture();
    let release = row(&before, "fw-jinja.bin");
    assert_eq!(release["affected_devices"], 1, "{before}");
    // Neither real record carries a CVSS vector: both are unassigned.
    assert_eq!(release["counts"]["unassigned"], 2, "{before}");
    assert_eq!(affecting("PYSEC-2019-217")["affected_count"], 1);

    // Unsigned: refused by the server (the CLI passes its reason on), nothing stored.
    let bare = dir.join("vendor.openvex.json");
    std::fs::write(&bare, OPENVEX).unwrap();
    let out = fails(site.risk(&["vex", "import", s(&bare)]));
    assert!(
        out.contains("422") && out.contains("unsigned_vex") && out.contains("not signed"),
        "{out}"
    );
    // Signed, but by a key the server was not told to trust.
    let stranger_key = new_key(dir, "stranger");
    let by_stranger = dir.join("stranger.openvex.dsse.json");
    ok(cli::rampart(&[
        "risk",
        "vex",
        "sign",
        "--vex",
        s(&bare),
        "--key",
        &stranger_key,
        "--out",
        s(&by_stranger),
    ]));
    let out = fails(site.risk(&["vex", "import", s(&by_stranger)]));
    assert!(
        out.contains("422") && out.contains("untrusted_vex_signer"),
        "{out}"
    );
    let listed = json_of(&ok(site.risk(&["vex", "list", "--json"])));
    assert_eq!(listed["total"], 0, "{listed}");

    // Signed by the vendor: imported, once.
    let envelope = dir.join("vendor.openvex.dsse.json");
    let out = ok(cli::rampart(&[
        "risk",
        "vex",
        "sign",
        "--vex",
        s(&bare),
        "--key",
        s(&dir.join("vendor.key")),
        "--out",
        s(&envelope),
    ]));
    assert!(
        out.contains(&format!("signed by key {vendor_key_id}")),
        "{out}"
    );
    // The document's id is the SHA-256 of the signed VEX document.
    let id = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        OPENVEX.as_bytes(),
    ));
    let out = ok(site.risk(&["vex", "import", s(&envelope)]));
    assert_eq!(
        out.trim(),
        format!("VEX {id} imported: 1 statement(s), OpenVex format, signed by key {vendor_key_id}")
    );
    let out = ok(site.risk(&["vex", "import", s(&envelope)]));
    assert!(
        out.contains(&format!("VEX {id} was already imported")),
        "{out}"
    );

    let table = ok(site.risk(&["vex", "list"]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].ends_with("SIGNER"),
        "{table}"
    );
    let document = lines
        .iter()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed:\n{table}"));
    let cells: Vec<&str> = document.split_whitespace().collect();
    assert_eq!(cells[1..3], ["OpenVex", "1"], "{table}");
    assert_eq!(cells.last(), Some(&vendor_key_id.as_str()), "{table}");
    assert_eq!(lines.last(), Some(&"1 of 1 VEX document(s)"), "{table}");
    let listed = json_of(&ok(site.risk(&["vex", "list", "--json"])));
    assert_eq!(listed["total"], 1, "{listed}");
    let stored = &listed["documents"][0];
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["format"], "OpenVex");
    assert_eq!(stored["statements"], 1);
    assert_eq!(stored["signer_key_id"], vendor_key_id.as_str());

    // The release keeps the advisory the statement does not name; the suppressed one is kept
    // aside with the vendor's justification.
    let after = posture();
    let release = row(&after, "fw-jinja.bin");
    assert_eq!(release["affected_devices"], 1, "{after}");
    assert_eq!(release["counts"]["unassigned"], 1, "{after}");
    let suppressed = affecting("PYSEC-2019-217");
    assert_eq!(suppressed["affected_count"], 0, "{suppressed}");
    assert_eq!(
        suppressed["suppressed"][0]["vex"]["justification"], "vulnerable_code_not_in_execute_path",
        "{suppressed}"
    );
    assert_eq!(affecting("PYSEC-2021-66")["affected_count"], 1);

    // Removed: its statement suppresses nothing any more.
    let out = fails(site.risk(&["vex", "delete", "not-an-id"]));
    assert!(out.contains("64 hex digits"), "{out}");
    let out = ok(site.risk(&["vex", "delete", &id]));
    assert_eq!(out.trim(), format!("VEX {id} removed"));
    let table = ok(site.risk(&["vex", "list"]));
    assert_eq!(
        table.lines().last(),
        Some("0 of 0 VEX document(s)"),
        "{table}"
    );
    let again = posture();
    assert_eq!(
        row(&again, "fw-jinja.bin")["counts"]["unassigned"],
        2,
        "{again}"
    );
    assert_eq!(affecting("PYSEC-2019-217")["affected_count"], 1);
}

#[test]
fn nvd_firmware_records_imported_through_the_cli_count_in_the_release_posture() {
    let firmware = Path::new(NVD_FIRMWARE);
    let site = Site::start_with(|p| {
        add_release(
            p,
            "fw-yocto.bin",
            "1.0.0",
            "board-y",
            &firmware.join("yocto-image-vulnerable.cdx.json"),
        );
        add_release(
            p,
            "fw-yocto-fixed.bin",
            "2.0.0",
            "board-y",
            &firmware.join("yocto-image-fixed.cdx.json"),
        );
        Vec::new()
    });
    site.poll_as("dev-y1", "board-y", "eu", "1.0.0");
    site.poll_as("dev-y2", "board-y", "eu", "2.0.0");
    let nvd = firmware.join("nvd");
    let records: usize = std::fs::read_dir(&nvd)
        .unwrap()
        .map(|e| {
            let document: Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            document["vulnerabilities"].as_array().unwrap().len()
        })
        .sum();

    let out = ok(site.risk(&["import", "--nvd", s(&nvd)]));
    assert!(
        out.contains(&format!("{records} NVD records imported in 1 batch(es)"))
            && out.contains(&format!("{records} added, 0 changed, 0 unchanged")),
        "{out}"
    );

    let posture = json_of(&ok(site.risk(&["posture", "--by", "release", "--json"])));
    let vulnerable = row(&posture, "fw-yocto.bin");
    assert_eq!(vulnerable["affected_devices"], 1, "{posture}");
    // busybox CVE-2022-28391 and U-Boot CVE-2022-30790 (critical), the kernel's CVE-2022-0847
    // (high; two kernel parts, one CVE: one finding), scored by their NVD CVSS.
    assert_eq!(
        vulnerable["counts"],
        json!({"critical": 2, "high": 1, "medium": 0, "low": 0, "none": 0, "unassigned": 0}),
        "{posture}"
    );
    assert_eq!(vulnerable["score"], 25, "{posture}");
    assert_eq!(
        vulnerable["worst"],
        json!({"id": "CVE-2022-28391", "rating": "critical", "score": 9.8}),
        "{posture}"
    );
    let fixed = row(&posture, "fw-yocto-fixed.bin");
    assert_eq!(fixed["affected_devices"], 0, "{posture}");

    let advisories_of = |target: &str| {
        posture["releases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["target"] == target)
            .unwrap_or_else(|| panic!("no release {target} in {posture}"))["advisories"]
            .clone()
    };
    assert_eq!(advisories_of("fw-yocto.bin"), 3, "{posture}");
    assert_eq!(advisories_of("fw-yocto-fixed.bin"), 0, "{posture}");

    // A CVE only NVD describes, by its id: from NVD, on the device running the release.
    let table = ok(site.risk(&["advisory", "CVE-2022-28391"]));
    assert!(
        table.contains("  from nvd  severity critical 9.8"),
        "{table}"
    );
    assert!(table.contains("    dev-y1  fw-yocto.bin\n"), "{table}");
    assert!(!table.contains("dev-y2"), "{table}");
    // and remediated with the fixed build.
    let out = ok(site.risk(&[
        "remediate",
        "CVE-2022-28391",
        "--release",
        "fw-yocto-fixed.bin",
    ]));
    assert!(
        out.contains("fw-yocto-fixed.bin to 1 device(s) affected by CVE-2022-28391"),
        "{out}"
    );

    // The same documents again change nothing.
    let out = ok(site.risk(&["import", "--nvd", s(&nvd)]));
    assert!(
        out.contains(&format!(
            "0 added, 0 changed, {records} unchanged, 0 withdrawn"
        )),
        "{out}"
    );
}

#[test]
fn exposure_and_advisory_show_what_the_risk_watch_saw_after_a_zip_import() {
    let site = Site::start_with(|p| {
        add_jinja_release(p);
        let sbom = p.dir.join("fw-clean.cdx.json");
        std::fs::write(
            &sbom,
            pypi_cyclonedx(&[("rampart-test-clean-lib", "1.0.0")]),
        )
        .unwrap();
        add_release(p, "fw-clean.bin", "4.0.0", "board-a", &sbom);
        vec!["--risk-watch-interval".into(), "1".into()]
    });

    // osv.dev's zip of real records: jinja2's, one the feed withdrew, and a file that is no
    // record.
    let mut paths = real_advisories_of("jinja2");
    let withdrawn = real_advisory_paths()
        .into_iter()
        .find(|p| {
            let record: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            record.get("withdrawn").is_some()
        })
        .expect("the real feed withdraws records");
    paths.push(withdrawn);
    let mut entries: Vec<(String, Vec<u8>)> = paths
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(p).unwrap(),
            )
        })
        .collect();
    entries.push(("README.md".into(), b"not a record".to_vec()));
    let zip = site.dir.join("PyPI.zip");
    write_zip(&zip, &entries);
    let n = paths.len();
    let out = ok(site.risk(&["import", "--advisories", s(&zip)]));
    assert!(
        out.contains(&format!(
            "{n} advisories imported in 1 batch(es): {n} added, 0 changed, 0 unchanged, 1 withdrawn"
        )),
        "{out}"
    );

    // No device has polled: nothing is exposed.
    let table = ok(site.risk(&["exposure"]));
    assert!(
        table.contains("(no advisory has affected a device)"),
        "{table}"
    );

    // Devices poll after the import: only the watch's own passes (every second) see them.
    site.poll_as("dev-1", "board-a", "eu", "3.0.0");
    site.poll_as("dev-2", "board-a", "us", "3.0.0");
    site.poll_as("dev-3", "board-a", "us", "4.0.0");
    let exposure = wait_for("the risk watch opens the jinja2 exposures", || {
        let answer = json_of(&ok(site.risk(&["exposure", "--json"])));
        let rows = answer["rows"].as_array().unwrap();
        (rows.len() == 2 && rows.iter().all(|r| r["affected_now"] == 2)).then_some(answer)
    });
    let rows = exposure["rows"].as_array().unwrap();
    let mut advisories: Vec<&str> = rows
        .iter()
        .map(|r| r["advisory"].as_str().unwrap())
        .collect();
    advisories.sort();
    assert_eq!(advisories, JINJA2_210_ADVISORIES, "{exposure}");
    let pysec_2019_217 = rows
        .iter()
        .find(|r| r["advisory"] == "PYSEC-2019-217")
        .unwrap();
    assert_eq!(pysec_2019_217["state"], "open", "{exposure}");
    assert_eq!(pysec_2019_217["peak_affected"], 2, "{exposure}");
    // 2019-04-07T00:29:00Z, the record's `published`.
    assert_eq!(pysec_2019_217["published"], 1_554_596_940, "{exposure}");
    assert_eq!(pysec_2019_217["remediated_at"], Value::Null, "{exposure}");
    let first_affected_at = pysec_2019_217["first_affected_at"].as_i64().unwrap();

    let table = ok(site.risk(&["exposure"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ADVISORY", "STATE", "AFFECTED", "PEAK", "OPEN", "FOR", "WINDOW"
        ],
        "{table}"
    );
    let line = table
        .lines()
        .find(|l| l.starts_with("PYSEC-2019-217"))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells[..4], ["PYSEC-2019-217", "open", "2", "2"], "{table}");
    assert_eq!(
        cells.last(),
        Some(&"-"),
        "an open window has no length: {table}"
    );

    let csv = ok(site.risk(&["exposure", "--csv"]));
    assert_eq!(
        csv.lines().next().unwrap(),
        "advisory,state,affected_now,peak_affected,published,first_affected_at,remediated_at,window_secs"
    );
    assert!(
        csv.lines()
            .any(|l| l == format!("PYSEC-2019-217,open,2,2,1554596940,{first_affected_at},,")),
        "{csv}"
    );
    let out = json_of(&ok(site.risk(&[
        "exposure",
        "--state",
        "remediated",
        "--json",
    ])));
    assert_eq!(out, json!({"state": "remediated", "rows": []}));

    // One advisory, found by its CVE alias: its devices and its exposure.
    let answer = json_of(&ok(site.risk(&["advisory", "CVE-2019-10906", "--json"])));
    let advisory = &answer["advisories"][0];
    assert_eq!(advisory["id"], "PYSEC-2019-217", "{answer}");
    assert_eq!(advisory["affected_count"], 2, "{answer}");
    let devices: Vec<&str> = advisory["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["dev-1", "dev-2"], "{answer}");
    assert_eq!(advisory["exposure"]["state"], "open", "{answer}");
    assert_eq!(advisory["exposure"]["peak_affected"], 2, "{answer}");
    assert_eq!(
        advisory["exposure"]["first_affected_at"], first_affected_at,
        "{answer}"
    );
    let table = ok(site.risk(&["advisory", "PYSEC-2019-217"]));
    assert!(table.starts_with("PYSEC-2019-217  "), "{table}");
    assert!(table.contains("\n  from osv  severity "), "{table}");
    assert!(
        table.contains("affects 2 device(s) now (peak 2); exposure open, window -"),
        "{table}"
    );
    assert!(table.contains("    dev-1  fw-jinja.bin\n"), "{table}");
    assert!(table.contains("    dev-2  fw-jinja.bin\n"), "{table}");
    assert!(!table.contains("dev-3"), "{table}");
}

#[test]
fn a_zero_risk_watch_interval_is_refused_with_what_to_give() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = ServerPki::write(tmp.path(), "Risk watch CA", 1, "server.key");
    let db = format!("sqlite://{}", tmp.path().join("server.db").display());
    let mut args = pki.server_command(&db);
    args.extend(["--risk-watch-interval".to_owned(), "0".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = fails(cli::rampart(&args));
    assert!(
        out.contains(
            "risk.watch_interval_secs (--risk-watch-interval or RAMPART_SERVER_RISK_WATCH_INTERVAL): must be at least 1"
        ),
        "{out}"
    );
}
