//! OSV advisory records (https://ossf.github.io/osv-schema/), parsed with every limit first:
//! the size before any parsing, the nesting depth before serde sees the bytes, then the counts.
//! Only the fields matching needs are kept; `database_specific`, `ecosystem_specific`,
//! `references` and `credits` are ignored.

use serde::Deserialize;

use crate::component::Ecosystem;

/// The largest advisory accepted. Real OSV records are a few KiB (the largest of the Python
/// Packaging Advisory Database's 2,661 is 15 KiB); those with very long `versions` lists
/// (kernel, distributions) stay well under this.
pub const MAX_ADVISORY_BYTES: usize = 1024 * 1024;
/// The deepest nesting of JSON arrays and objects accepted. OSV's own structure is 6 deep
/// (record, affected, range, events, event); the rest is room for `database_specific`.
pub const MAX_JSON_DEPTH: usize = 32;
/// At most this many `affected` entries per advisory.
pub const MAX_AFFECTED: usize = 1_000;
/// At most this many ranges per `affected` entry.
pub const MAX_RANGES: usize = 100;
/// At most this many events per range.
pub const MAX_EVENTS: usize = 1_000;
/// At most this many explicit versions per `affected` entry.
pub const MAX_VERSIONS: usize = 50_000;
/// At most this many aliases, and severity scores.
pub const MAX_ALIASES: usize = 100;
/// The longest id, alias, package name, version or score kept.
pub const MAX_FIELD_LEN: usize = 512;
/// `details` beyond this many bytes is cut (at a character boundary) and marked: it is
/// prose for people, not something to match on.
pub const MAX_DETAILS_BYTES: usize = 16 * 1024;

/// Why an advisory file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OsvError {
    #[error(
        "advisory of {size} bytes is larger than the {limit}-byte limit: split the feed into one OSV record per file"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "advisory nests JSON arrays and objects more than {limit} deep: this is not an OSV record"
    )]
    TooDeep { limit: usize },
    #[error("advisory is not OSV JSON: {0}")]
    Json(String),
    #[error("advisory has {count} {what}, more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("advisory {id}: {problem}")]
    Invalid { id: String, problem: String },
}

/// One OSV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    pub id: String,
    /// RFC 3339, as the record states it.
    pub modified: String,
    pub published: Option<String>,
    /// When the advisory was withdrawn (RFC 3339); a withdrawn advisory applies to nothing.
    pub withdrawn: Option<String>,
    pub aliases: Vec<String>,
    pub summary: Option<String>,
    /// Cut at [`MAX_DETAILS_BYTES`].
    pub details: Option<String>,
    pub severity: Vec<Severity>,
    pub affected: Vec<Affected>,
}

impl Advisory {
    pub fn is_withdrawn(&self) -> bool {
        self.withdrawn.is_some()
    }
}

/// A severity score as OSV gives it: a type (`CVSS_V3`, `CVSS_V4`, ...) and the vector.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Severity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

/// One affected package of an advisory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Affected {
    /// Absent for advisories that name only a repository (GIT ranges); such an entry names
    /// no package to match.
    pub package: Option<Package>,
    pub ranges: Vec<Range>,
    /// Explicit affected versions (how GIT ranges resolve into releases).
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// OSV's spelling, with any release qualifier (`Debian:12`).
    pub ecosystem_name: String,
    pub ecosystem: Ecosystem,
    /// As the advisory writes it.
    pub name: String,
    /// As the ecosystem compares names ([`Ecosystem::normalize_package_name`]).
    pub normalized_name: String,
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RangeKind {
    /// SemVer 2.0 whatever the ecosystem.
    Semver,
    /// The ecosystem's own ordering.
    Ecosystem,
    /// Commits of a repository: resolved only through the explicit `versions` list.
    Git,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub kind: RangeKind,
    pub repo: Option<String>,
    pub events: Vec<Event>,
}

/// One event of a range, in the order the record gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `"0"` opens the range from the first version.
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

impl Event {
    pub fn version(&self) -> &str {
        match self {
            Event::Introduced(v) | Event::Fixed(v) | Event::LastAffected(v) | Event::Limit(v) => v,
        }
    }
}

// ----- the wire form, as serde reads it -------------------------------------------------------

#[derive(Deserialize)]
struct WireAdvisory {
    id: String,
    modified: String,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    withdrawn: Option<String>,
    #[serde(default)]
    aliases: Option<Vec<String>>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    details: Option<String>,
    #[serde(default)]
    severity: Option<Vec<Severity>>,
    #[serde(default)]
    affected: Option<Vec<WireAffected>>,
}

#[derive(Deserialize)]
struct WireAffected {
    #[serde(default)]
    package: Option<WirePackage>,
    #[serde(default)]
    ranges: Option<Vec<WireRange>>,
    #[serde(default)]
    versions: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct WirePackage {
    ecosystem: String,
    name: String,
    #[serde(default)]
    purl: Option<String>,
}

#[derive(Deserialize)]
struct WireRange {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    repo: Option<String>,
    events: Vec<WireEvent>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    #[serde(default)]
    introduced: Option<String>,
    #[serde(default)]
    fixed: Option<String>,
    #[serde(default)]
    last_affected: Option<String>,
    #[serde(default)]
    limit: Option<String>,
}

/// Parses one OSV record. Limits come first: size, then nesting depth, then (after serde has
/// read a bounded document) the counts and field lengths.
pub fn parse_advisory(bytes: &[u8]) -> Result<Advisory, OsvError> {
    if bytes.len() > MAX_ADVISORY_BYTES {
        return Err(OsvError::TooLarge {
            size: bytes.len(),
            limit: MAX_ADVISORY_BYTES,
        });
    }
    crate::json_limits::check_depth(bytes, MAX_JSON_DEPTH).map_err(|_| OsvError::TooDeep {
        limit: MAX_JSON_DEPTH,
    })?;
    let wire: WireAdvisory =
        serde_json::from_slice(bytes).map_err(|error| OsvError::Json(error.to_string()))?;
    let id = wire.id;
    let invalid = |problem: String| OsvError::Invalid {
        id: bounded_for_message(&id),
        problem,
    };
    check_field("id", &id).map_err(&invalid)?;
    if id.is_empty() {
        return Err(invalid("the id is empty".to_owned()));
    }
    let aliases = wire.aliases.unwrap_or_default();
    check_count("aliases", aliases.len(), MAX_ALIASES)?;
    for alias in &aliases {
        check_field("alias", alias).map_err(&invalid)?;
    }
    let severity = wire.severity.unwrap_or_default();
    check_count("severity scores", severity.len(), MAX_ALIASES)?;
    for score in &severity {
        check_field("severity score", &score.score).map_err(&invalid)?;
    }
    let wire_affected = wire.affected.unwrap_or_default();
    check_count("affected entries", wire_affected.len(), MAX_AFFECTED)?;
    let mut affected = Vec::with_capacity(wire_affected.len());
    for (affected_index, entry) in wire_affected.into_iter().enumerate() {
        let where_ = format!("affected[{affected_index}]");
        let package = match entry.package {
            Some(package) => {
                check_field("package name", &package.name).map_err(&invalid)?;
                check_field("ecosystem", &package.ecosystem).map_err(&invalid)?;
                if package.name.trim().is_empty() || package.ecosystem.trim().is_empty() {
                    return Err(invalid(format!(
                        "{where_}: the package needs an ecosystem and a name"
                    )));
                }
                let ecosystem = Ecosystem::from_osv(&package.ecosystem);
                Some(Package {
                    normalized_name: ecosystem.normalize_package_name(&package.name),
                    ecosystem,
                    ecosystem_name: package.ecosystem,
                    name: package.name,
                    purl: package.purl,
                })
            }
            None => None,
        };
        let versions = entry.versions.unwrap_or_default();
        check_count(
            "versions in one affected entry",
            versions.len(),
            MAX_VERSIONS,
        )?;
        for version in &versions {
            check_field("version", version).map_err(&invalid)?;
        }
        let wire_ranges = entry.ranges.unwrap_or_default();
        check_count(
            "ranges in one affected entry",
            wire_ranges.len(),
            MAX_RANGES,
        )?;
        let mut ranges = Vec::with_capacity(wire_ranges.len());
        for (range_index, range) in wire_ranges.into_iter().enumerate() {
            let where_ = format!("{where_}.ranges[{range_index}]");
            let kind = match range.kind.as_str() {
                "SEMVER" => RangeKind::Semver,
                "ECOSYSTEM" => RangeKind::Ecosystem,
                "GIT" => RangeKind::Git,
                other => {
                    return Err(invalid(format!(
                        "{where_}: range type `{}` is not SEMVER, ECOSYSTEM or GIT",
                        bounded_for_message(other)
                    )));
                }
            };
            check_count("events in one range", range.events.len(), MAX_EVENTS)?;
            let mut events = Vec::with_capacity(range.events.len());
            for (event_index, event) in range.events.into_iter().enumerate() {
                let event = match (
                    event.introduced,
                    event.fixed,
                    event.last_affected,
                    event.limit,
                ) {
                    (Some(v), None, None, None) => Event::Introduced(v),
                    (None, Some(v), None, None) => Event::Fixed(v),
                    (None, None, Some(v), None) => Event::LastAffected(v),
                    (None, None, None, Some(v)) => Event::Limit(v),
                    _ => {
                        return Err(invalid(format!(
                            "{where_}.events[{event_index}] must have exactly one of introduced, fixed, last_affected, limit"
                        )));
                    }
                };
                check_field("event version", event.version()).map_err(&invalid)?;
                if event.version().trim().is_empty() {
                    return Err(invalid(format!(
                        "{where_}.events[{event_index}] has an empty version"
                    )));
                }
                if matches!(event, Event::Limit(_)) && kind != RangeKind::Git {
                    return Err(invalid(format!(
                        "{where_}.events[{event_index}]: `limit` is only for GIT ranges"
                    )));
                }
                events.push(event);
            }
            if !events.iter().any(|e| matches!(e, Event::Introduced(_))) {
                return Err(invalid(format!(
                    "{where_} has no `introduced` event: OSV requires one"
                )));
            }
            ranges.push(Range {
                kind,
                repo: range.repo,
                events,
            });
        }
        affected.push(Affected {
            package,
            ranges,
            versions,
        });
    }
    Ok(Advisory {
        id,
        modified: wire.modified,
        published: wire.published,
        withdrawn: wire.withdrawn,
        aliases,
        summary: wire.summary,
        details: wire.details.map(cut_details),
        severity,
        affected,
    })
}

fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), OsvError> {
    if count > limit {
        return Err(OsvError::TooMany { what, count, limit });
    }
    Ok(())
}

fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_LEN {
        return Err(format!(
            "a {what} of {} bytes is longer than the {MAX_FIELD_LEN}-byte limit",
            value.len()
        ));
    }
    Ok(())
}

/// Text from the record placed in an error message, cut so that a hostile record cannot make
/// the message huge.
fn bounded_for_message(text: &str) -> String {
    cut_at_char_boundary(text, 80).to_owned()
}

fn cut_details(details: String) -> String {
    if details.len() <= MAX_DETAILS_BYTES {
        return details;
    }
    let mut cut = cut_at_char_boundary(&details, MAX_DETAILS_BYTES).to_owned();
    cut.push_str(" [cut]");
    cut
}

fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{
        "id": "PYSEC-2099-1", "modified": "2099-01-02T00:00:00Z", "published": "2099-01-01T00:00:00Z",
        "aliases": ["CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"],
        "details": "Something bad.",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": "Some_Package.Name", "purl": "pkg:pypi/some-package-name"},
            "ranges": [
                {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2"}]},
                {"type": "GIT", "repo": "https://example.invalid/repo", "events": [{"introduced": "abc"}, {"limit": "def"}]}
            ],
            "versions": ["1.0", "1.1"],
            "database_specific": {"deep": {"er": [1, 2, {"x": null}]}},
            "ecosystem_specific": {"anything": true}
        }],
        "references": [{"type": "WEB", "url": "https://example.invalid"}]
    }"#;

    #[test]
    fn parses_a_record_and_normalizes_the_package_name() {
        let advisory = parse_advisory(RECORD.as_bytes()).unwrap();
        assert_eq!(advisory.id, "PYSEC-2099-1");
        assert!(!advisory.is_withdrawn());
        assert_eq!(advisory.aliases, ["CVE-2099-0001", "GHSA-xxxx-yyyy-zzzz"]);
        assert_eq!(advisory.severity[0].kind, "CVSS_V3");
        let affected = &advisory.affected[0];
        let package = affected.package.as_ref().unwrap();
        assert_eq!(package.ecosystem, Ecosystem::PyPI);
        assert_eq!(package.normalized_name, "some-package-name");
        assert_eq!(affected.ranges[0].kind, RangeKind::Ecosystem);
        assert_eq!(
            affected.ranges[0].events,
            [Event::Introduced("0".into()), Event::Fixed("1.2".into())]
        );
        assert_eq!(affected.ranges[1].kind, RangeKind::Git);
        assert_eq!(affected.versions, ["1.0", "1.1"]);
    }

    #[test]
    fn a_withdrawn_advisory_is_flagged() {
        let withdrawn = RECORD.replacen(
            r#""modified""#,
            r#""withdrawn": "2099-02-01T00:00:00Z", "modified""#,
            1,
        );
        let advisory = parse_advisory(withdrawn.as_bytes()).unwrap();
        assert!(advisory.is_withdrawn());
    }

    #[test]
    fn oversized_advisory_is_refused_before_parsing() {
        // Garbage past the limit: refused for its size, not for its content.
        let bytes = vec![b'x'; MAX_ADVISORY_BYTES + 1];
        assert_eq!(
            parse_advisory(&bytes),
            Err(OsvError::TooLarge {
                size: MAX_ADVISORY_BYTES + 1,
                limit: MAX_ADVISORY_BYTES
            })
        );
    }

    #[test]
    fn deeply_nested_advisory_is_refused_before_parsing() {
        let deep = format!(
            r#"{{"id":"X","modified":"m","database_specific":{}{}}}"#,
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert_eq!(
            parse_advisory(deep.as_bytes()),
            Err(OsvError::TooDeep {
                limit: MAX_JSON_DEPTH
            })
        );
        // Brackets inside strings do not count.
        let in_string = format!(
            r#"{{"id":"X","modified":"m","details":"{}"}}"#,
            "[".repeat(MAX_JSON_DEPTH * 2)
        );
        assert!(parse_advisory(in_string.as_bytes()).is_ok());
    }

    #[test]
    fn garbage_is_a_clear_json_error() {
        for garbage in [&b"not json"[..], b"", b"{\"id\": 5}", b"[]", b"\xff\xfe"] {
            let error = parse_advisory(garbage).unwrap_err();
            assert!(matches!(error, OsvError::Json(_)), "{error:?}");
            assert!(error.to_string().starts_with("advisory is not OSV JSON"));
        }
    }

    #[test]
    fn too_many_versions_are_refused() {
        let versions: Vec<String> = (0..=MAX_VERSIONS).map(|i| format!("\"{i}\"")).collect();
        let record = format!(
            r#"{{"id":"X","modified":"m","affected":[{{"package":{{"ecosystem":"PyPI","name":"a"}},"versions":[{}]}}]}}"#,
            versions.join(",")
        );
        assert!(record.len() < MAX_ADVISORY_BYTES);
        assert_eq!(
            parse_advisory(record.as_bytes()),
            Err(OsvError::TooMany {
                what: "versions in one affected entry",
                count: MAX_VERSIONS + 1,
                limit: MAX_VERSIONS
            })
        );
    }

    #[test]
    fn too_many_events_are_refused() {
        let events: Vec<&str> = (0..=MAX_EVENTS).map(|_| r#"{"introduced":"0"}"#).collect();
        let record = format!(
            r#"{{"id":"X","modified":"m","affected":[{{"package":{{"ecosystem":"PyPI","name":"a"}},"ranges":[{{"type":"ECOSYSTEM","events":[{}]}}]}}]}}"#,
            events.join(",")
        );
        assert!(matches!(
            parse_advisory(record.as_bytes()),
            Err(OsvError::TooMany {
                what: "events in one range",
                ..
            })
        ));
    }

    #[test]
    fn malformed_events_and_ranges_are_refused_with_their_place() {
        let cases = [
            (
                r#"[{"type":"ECOSYSTEM","events":[{"introduced":"0","fixed":"1"}]}]"#,
                "exactly one",
            ),
            (
                r#"[{"type":"ECOSYSTEM","events":[{"fixed":"1"}]}]"#,
                "no `introduced`",
            ),
            (
                r#"[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"limit":"1"}]}]"#,
                "only for GIT",
            ),
            (
                r#"[{"type":"WEIRD","events":[{"introduced":"0"}]}]"#,
                "not SEMVER, ECOSYSTEM or GIT",
            ),
            (
                r#"[{"type":"ECOSYSTEM","events":[{"introduced":""}]}]"#,
                "empty version",
            ),
        ];
        for (ranges, expected) in cases {
            let record = format!(
                r#"{{"id":"X-1","modified":"m","affected":[{{"package":{{"ecosystem":"PyPI","name":"a"}},"ranges":{ranges}}}]}}"#
            );
            let error = parse_advisory(record.as_bytes()).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("X-1") && message.contains("affected[0].ranges[0]"));
        }
    }

    #[test]
    fn long_details_are_cut_and_long_fields_refused() {
        let details = "é".repeat(MAX_DETAILS_BYTES);
        let record = format!(r#"{{"id":"X","modified":"m","details":"{details}"}}"#);
        let advisory = parse_advisory(record.as_bytes()).unwrap();
        let kept = advisory.details.unwrap();
        assert!(kept.len() <= MAX_DETAILS_BYTES + " [cut]".len());
        assert!(kept.ends_with(" [cut]"));

        let alias = "A".repeat(MAX_FIELD_LEN + 1);
        let record = format!(r#"{{"id":"X","modified":"m","aliases":["{alias}"]}}"#);
        assert!(matches!(
            parse_advisory(record.as_bytes()),
            Err(OsvError::Invalid { .. })
        ));
    }

    #[test]
    fn every_real_pypi_advisory_parses() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/osv-pypi"
        );
        let mut parsed = 0;
        let mut withdrawn = 0;
        for entry in std::fs::read_dir(dir).expect("the shared OSV vectors next to the repo") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let advisory = parse_advisory(&bytes)
                .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
            parsed += 1;
            withdrawn += usize::from(advisory.is_withdrawn());
        }
        assert_eq!(parsed, 2661);
        assert_eq!(withdrawn, 10);
    }
}
