//! Matching against the real Python Packaging Advisory Database (2,661 OSV records in
//! `../shared/vectors/osv-pypi/`, CC BY 4.0). The expected answers are computed here, from the
//! records' explicit `versions` lists, by a deliberately simple evaluator that shares no code
//! with the matcher.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rampart_vuln::component::Component;
use rampart_vuln::matching::AdvisoryIndex;
use rampart_vuln::osv::parse_advisory;

fn vectors() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/osv-pypi"
    ))
}

fn advisory_files() -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(vectors())
        .expect("the shared OSV vectors beside the repository (../shared/vectors/osv-pypi)")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    assert_eq!(files.len(), 2661, "the vector set changed");
    files
}

fn real_index() -> AdvisoryIndex {
    AdvisoryIndex::build(
        advisory_files()
            .iter()
            .map(|(path, bytes)| parse_advisory(bytes).unwrap_or_else(|e| panic!("{path:?}: {e}"))),
    )
}

/// The simple evaluator's name rule: lowercase, `_` and `.` as `-`.
fn simple_name(name: &str) -> String {
    name.to_lowercase().replace(['_', '.'], "-")
}

/// The simple evaluator's version rule: plain release numbers lose trailing `.0`s
/// (`2.2.0` is `2.2`); anything else is compared as written.
fn simple_version(version: &str) -> String {
    let version = version.trim();
    if version
        .split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
    {
        let mut parts: Vec<&str> = version.split('.').collect();
        while parts.len() > 1 && parts.last().is_some_and(|p| p.bytes().all(|b| b == b'0')) {
            parts.pop();
        }
        return parts.join(".");
    }
    version.to_owned()
}

/// Advisory ids whose `versions` lists name the pin, read straight from the JSON.
fn expected_by_versions_lists(name: &str, version: &str) -> BTreeSet<String> {
    let mut expected = BTreeSet::new();
    for (path, bytes) in advisory_files() {
        let record: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if record.get("withdrawn").is_some() {
            continue;
        }
        for affected in record["affected"].as_array().unwrap() {
            if simple_name(affected["package"]["name"].as_str().unwrap()) != simple_name(name) {
                continue;
            }
            let has_ordered_range = affected["ranges"]
                .as_array()
                .is_some_and(|ranges| ranges.iter().any(|r| r["type"] != "GIT"));
            let versions = affected["versions"].as_array();
            // The simple evaluator is only valid where the record lists its versions.
            assert!(
                versions.is_some_and(|v| !v.is_empty()) || !has_ordered_range,
                "{path:?} has a range but no versions list: the simple evaluator cannot judge it"
            );
            if versions
                .into_iter()
                .flatten()
                .any(|listed| simple_version(listed.as_str().unwrap()) == simple_version(version))
            {
                expected.insert(record["id"].as_str().unwrap().to_owned());
            }
        }
    }
    expected
}

fn pin(name: &str, version: &str) -> Component {
    Component {
        reference: format!("{name}@{version}"),
        name: name.to_owned(),
        version: version.to_owned(),
        purl: Some(format!("pkg:pypi/{}@{version}", name.to_lowercase())),
        cpe: None,
        group: None,
    }
}

const VULNERABLE_PINS: [(&str, &str); 6] = [
    ("requests", "2.19.0"),
    ("urllib3", "1.24.1"),
    ("jinja2", "2.10"),
    ("PyYAML", "5.3"),
    ("Django", "2.2.0"),
    ("Pillow", "8.0.0"),
];

/// The same packages at versions fixed for every advisory in this snapshot of the database
/// (2024-10-10).
const FIXED_PINS: [(&str, &str); 6] = [
    ("requests", "2.32.3"),
    ("urllib3", "2.2.3"),
    ("jinja2", "3.1.4"),
    ("PyYAML", "6.0.2"),
    ("Django", "5.1.2"),
    ("Pillow", "11.0.0"),
];

#[test]
fn known_vulnerable_pins_find_every_advisory_and_fixed_pins_none() {
    let index = real_index();
    let components: Vec<Component> = VULNERABLE_PINS
        .iter()
        .chain(&FIXED_PINS)
        .map(|(name, version)| pin(name, version))
        .collect();
    let report = index.match_components(&components);
    assert!(report.unmatched_ecosystems.is_empty());
    assert!(report.unidentified.is_empty() && report.unversioned.is_empty());

    let mut total = 0;
    for (name, version) in VULNERABLE_PINS {
        let expected = expected_by_versions_lists(name, version);
        assert!(
            !expected.is_empty(),
            "{name} {version} is a known-vulnerable pin"
        );
        let found: BTreeSet<String> = report
            .matches
            .iter()
            .filter(|m| m.name == name && m.version == version)
            .map(|m| m.advisory.clone())
            .collect();
        assert_eq!(found, expected, "{name} {version}");
        total += expected.len();
    }
    for (name, version) in FIXED_PINS {
        assert!(
            expected_by_versions_lists(name, version).is_empty(),
            "{name} {version} should be a fixed pin"
        );
        let flagged: Vec<_> = report
            .matches
            .iter()
            .filter(|m| m.version == version)
            .collect();
        assert!(
            flagged.is_empty(),
            "fixed {name} {version} flagged: {flagged:?}"
        );
    }
    assert_eq!(report.matches.len(), total);
    // Spot checks of well-known ones, with their aliases and fixed versions.
    let requests = report
        .matches
        .iter()
        .find(|m| m.advisory == "PYSEC-2018-28")
        .expect("CVE-2018-18074 in requests 2.19.0");
    assert_eq!(requests.aliases, ["CVE-2018-18074", "GHSA-x84v-xcm2-53pg"]);
    assert_eq!(requests.fixed, ["2.20.0"]);
}

#[test]
fn every_listed_version_of_every_live_real_advisory_matches_it() {
    let index = real_index();
    let advisories: Vec<_> = advisory_files()
        .iter()
        .map(|(_, bytes)| parse_advisory(bytes).unwrap())
        .filter(|advisory| !advisory.is_withdrawn())
        .collect();
    // Each distinct (package, version) once: one SBOM of every listed release.
    let mut pins = BTreeSet::new();
    for advisory in &advisories {
        for affected in &advisory.affected {
            let package = affected.package.as_ref().unwrap();
            for version in &affected.versions {
                pins.insert((package.normalized_name.clone(), version.clone()));
            }
        }
    }
    let components: Vec<Component> = pins.iter().map(|(name, v)| pin(name, v)).collect();
    let report = index.match_components(&components);
    let matched: BTreeSet<(&str, &str, &str)> = report
        .matches
        .iter()
        .map(|m| (m.advisory.as_str(), m.name.as_str(), m.version.as_str()))
        .collect();
    let mut checked = 0;
    for advisory in &advisories {
        for affected in &advisory.affected {
            let package = affected.package.as_ref().unwrap();
            for version in &affected.versions {
                assert!(
                    matched.contains(&(
                        advisory.id.as_str(),
                        package.normalized_name.as_str(),
                        version.as_str()
                    )),
                    "{} {} {version} is listed but not matched",
                    advisory.id,
                    package.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 100_000, "{checked}");
}

#[test]
fn withdrawn_real_advisories_match_nothing() {
    let mut withdrawn = 0;
    let index = real_index();
    for (_, bytes) in advisory_files() {
        let advisory = parse_advisory(&bytes).unwrap();
        if !advisory.is_withdrawn() {
            continue;
        }
        withdrawn += 1;
        for affected in &advisory.affected {
            let package = affected.package.as_ref().unwrap();
            let components: Vec<Component> = affected
                .versions
                .iter()
                .map(|v| pin(&package.name, v))
                .collect();
            let report = index.match_components(&components);
            assert!(
                report.matches.iter().all(|m| m.advisory != advisory.id),
                "withdrawn {} matched",
                advisory.id
            );
        }
    }
    assert_eq!(withdrawn, 10);
    assert_eq!(index.withdrawn_skipped(), 10);
    assert_eq!(index.len(), 2651);
}
