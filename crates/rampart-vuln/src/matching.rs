//! Advisories indexed by (ecosystem, package name) and matched against components.
//!
//! The index is built once from parsed advisories (withdrawn ones skipped) and keeps every
//! bound pre-parsed, so matching a component is one hash lookup and a few comparisons per
//! advisory of that package: the fleet-wide re-match (100,000 devices, 20 releases of 2,000
//! components) matches each distinct release once against it.
//!
//! A component is affected by an advisory's `affected` entry when its version is in the
//! entry's explicit `versions` list, or inside one of its `ECOSYSTEM`/`SEMVER` ranges under
//! OSV's evaluation rules: events sorted by version, `introduced` opens (`"0"` from the first
//! version), `fixed` and `limit` close at their version, `last_affected` closes after it. `GIT`
//! ranges name commits and resolve only through `versions`, as OSV publishes them.
//!
//! A component's ecosystem comes from its purl type. Components without a purl, or with a
//! `generic` one, are returned as [`Unidentified`]: `nvd::CpeIndex` matches them by CPE
//! (those [`MatchReport::unidentified`] lists). Ecosystems without ordering rules are
//! reported in [`MatchReport::unmatched_ecosystems`]; their `versions` lists still match.
//!
//! Distribution advisories name a release (`Debian:12`, `Alpine:v3.19`): such an entry applies
//! only to components whose purl `distro` qualifier names that release (`debian-12` or
//! `bookworm`; `alpine-3.19`). A component without a `distro` qualifier matches every release
//! (the SBOM did not say which it came from, and a missed advisory costs more than a spare
//! one); one whose `distro` names no release of the ecosystem (`ubuntu-22.04` on a `deb` purl)
//! matches only advisories without a release.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use serde::Serialize;

use crate::component::{Component, Ecosystem};
use crate::osv::{Advisory, Event, RangeKind};
use crate::version::{self, ParsedVersion, VersionError};

/// An advisory found to apply to a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    pub purl: String,
    pub name: String,
    pub version: String,
    /// The advisory's id.
    pub advisory: String,
    pub aliases: Vec<String>,
    /// The `fixed` versions of the ranges that matched (for an ecosystem without ordering
    /// rules, matched through its `versions` list, those of its ranges).
    pub fixed: Vec<String>,
}

/// A component as a report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentRef {
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reference: String,
}

impl From<&Component> for ComponentRef {
    fn from(component: &Component) -> Self {
        ComponentRef {
            name: component.name.clone(),
            version: component.version.clone(),
            purl: component.purl.clone(),
            reference: component.reference.clone(),
        }
    }
}

/// A component whose ecosystem is not known from a purl: matching it needs its CPE or its
/// name (firmware parts: Yocto recipes, busybox, U-Boot, the kernel).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unidentified {
    pub component: ComponentRef,
    pub reason: String,
}

/// A component whose version its ecosystem's rules cannot order: it was checked against the
/// `versions` lists only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnorderedVersion {
    pub component: ComponentRef,
    pub reason: String,
}

/// What matching found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MatchReport {
    /// One per (component purl and version, advisory), sorted by purl then advisory.
    pub matches: Vec<Match>,
    /// Ecosystems without ordering rules among the advisories indexed and the components
    /// given, by OSV name: their ranges were not evaluated, only `versions` lists.
    pub unmatched_ecosystems: Vec<String>,
    /// Components that state no version: nothing can be said of them.
    pub unversioned: Vec<ComponentRef>,
    /// Components with no purl naming an ecosystem (the CPE matcher's input).
    pub unidentified: Vec<Unidentified>,
    /// Components whose version could not be ordered.
    pub unordered_versions: Vec<UnorderedVersion>,
}

/// Something in an advisory the index could not use in full, reported rather than dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexProblem {
    pub advisory: String,
    pub kind: ProblemKind,
    pub problem: String,
}

/// How much an [`IndexProblem`] costs the matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ProblemKind {
    /// A listed version the ecosystem's rules cannot parse (PyPI's pre-PEP 440 releases):
    /// it still matches a component spelled the same.
    ListedVersionAsText,
    /// A range with a bound the rules cannot parse: only the `versions` list is matched, so a
    /// version missing from it is not found.
    RangeNotEvaluated,
    /// An affected entry that names no package: nothing can match it by name.
    NoPackage,
}

/// (ecosystem, normalized package name).
type PackageKey = (Ecosystem, String);

/// The advisory facts every match reports, shared by all of the advisory's entries.
#[derive(Debug)]
struct AdvisoryFacts {
    id: String,
    aliases: Vec<String>,
}

#[derive(Debug, Clone)]
enum Bound {
    /// `introduced: "0"`.
    Zero,
    Version(ParsedVersion),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EventKind {
    Introduced,
    Fixed,
    LastAffected,
    Limit,
}

#[derive(Debug)]
struct IndexedRange {
    /// Sorted by version (`"0"` first), as OSV's evaluation requires.
    events: Vec<(EventKind, Bound)>,
    /// Whether the bounds are SemVer (a `SEMVER` range) or the ecosystem's own.
    semver: bool,
    fixed: Vec<String>,
}

#[derive(Debug)]
struct IndexedEntry {
    advisory: Arc<AdvisoryFacts>,
    /// The distribution release the entry is qualified with (`12` of `Debian:12`, `3.19` of
    /// `Alpine:v3.19`); `None` applies to every release.
    release: Option<String>,
    /// Explicit versions parsed under the ecosystem's rules, sorted, for a binary search.
    versions: Vec<ParsedVersion>,
    /// Explicit versions compared as text: those of an ecosystem without ordering rules, and
    /// any the rules could not parse.
    versions_text: Vec<String>,
    ranges: Vec<IndexedRange>,
    /// Fixed versions of ranges that could not be evaluated (no ordering rules, or a bound
    /// that did not parse): reported when the entry matches through `versions`.
    unevaluated_fixed: Vec<String>,
}

/// Advisories by (ecosystem, normalized package name), pre-parsed for matching.
#[derive(Debug, Default)]
pub struct AdvisoryIndex {
    entries: HashMap<PackageKey, Vec<IndexedEntry>>,
    /// The keys each advisory id is indexed under, to replace or withdraw it.
    keys_by_id: HashMap<String, Vec<PackageKey>>,
    unordered_ecosystems: BTreeSet<String>,
    problems: Vec<IndexProblem>,
    withdrawn: usize,
}

impl AdvisoryIndex {
    pub fn new() -> AdvisoryIndex {
        AdvisoryIndex::default()
    }

    /// Builds an index from advisories; withdrawn ones are skipped.
    pub fn build(advisories: impl IntoIterator<Item = Advisory>) -> AdvisoryIndex {
        let mut index = AdvisoryIndex::new();
        for advisory in advisories {
            index.insert(advisory);
        }
        index
    }

    /// Adds an advisory, replacing any earlier record with the same id (a changed advisory);
    /// a withdrawn one only removes the earlier record.
    pub fn insert(&mut self, advisory: Advisory) {
        self.remove(&advisory.id);
        if advisory.is_withdrawn() {
            self.withdrawn += 1;
            return;
        }
        let facts = Arc::new(AdvisoryFacts {
            id: advisory.id.clone(),
            aliases: advisory.aliases.clone(),
        });
        let mut keys = Vec::new();
        for affected in advisory.affected {
            let Some(package) = affected.package else {
                self.problems.push(IndexProblem {
                    advisory: advisory.id.clone(),
                    kind: ProblemKind::NoPackage,
                    problem: "an affected entry names no package (only a repository): it cannot be matched to components".to_owned(),
                });
                continue;
            };
            let ecosystem = package.ecosystem;
            if !ecosystem.is_known() {
                self.unordered_ecosystems
                    .insert(ecosystem.as_osv().to_owned());
            }
            let mut entry = IndexedEntry {
                advisory: Arc::clone(&facts),
                release: osv_release(&package.ecosystem_name),
                versions: Vec::new(),
                versions_text: Vec::new(),
                ranges: Vec::new(),
                unevaluated_fixed: Vec::new(),
            };
            for listed in affected.versions {
                match ecosystem
                    .is_known()
                    .then(|| version::parse(&ecosystem, &listed))
                {
                    Some(Ok(parsed)) => entry.versions.push(parsed),
                    Some(Err(error)) => {
                        self.problems.push(IndexProblem {
                            advisory: advisory.id.clone(),
                            kind: ProblemKind::ListedVersionAsText,
                            problem: format!("listed version compared as text: {error}"),
                        });
                        entry.versions_text.push(listed.trim().to_owned());
                    }
                    None => entry.versions_text.push(listed.trim().to_owned()),
                }
            }
            entry.versions.sort_by(cmp_parsed);
            for range in affected.ranges {
                let fixed: Vec<String> = range
                    .events
                    .iter()
                    .filter_map(|event| match event {
                        Event::Fixed(v) => Some(v.clone()),
                        _ => None,
                    })
                    .collect();
                let semver = match range.kind {
                    RangeKind::Git => continue,
                    RangeKind::Semver => true,
                    RangeKind::Ecosystem => false,
                };
                if !semver && !ecosystem.is_known() {
                    entry.unevaluated_fixed.extend(fixed);
                    continue;
                }
                match index_range(&ecosystem, semver, &range.events) {
                    Ok(events) => entry.ranges.push(IndexedRange {
                        events,
                        semver,
                        fixed,
                    }),
                    Err(error) => {
                        self.problems.push(IndexProblem {
                            advisory: advisory.id.clone(),
                            kind: ProblemKind::RangeNotEvaluated,
                            problem: format!(
                                "a range of {} was not evaluated, only the versions list: {error}",
                                package.name
                            ),
                        });
                        entry.unevaluated_fixed.extend(fixed);
                    }
                }
            }
            let key = (ecosystem, package.normalized_name);
            self.entries.entry(key.clone()).or_default().push(entry);
            keys.push(key);
        }
        self.keys_by_id.insert(advisory.id, keys);
    }

    /// Removes an advisory by id; whether it was indexed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(keys) = self.keys_by_id.remove(id) else {
            return false;
        };
        for key in keys {
            if let Some(entries) = self.entries.get_mut(&key) {
                entries.retain(|entry| entry.advisory.id != id);
                if entries.is_empty() {
                    self.entries.remove(&key);
                }
            }
        }
        true
    }

    /// How many advisories are indexed.
    pub fn len(&self) -> usize {
        self.keys_by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys_by_id.is_empty()
    }

    /// How many withdrawn advisories were skipped.
    pub fn withdrawn_skipped(&self) -> usize {
        self.withdrawn
    }

    /// What the index could not use in full.
    pub fn problems(&self) -> &[IndexProblem] {
        &self.problems
    }

    /// Matches components against the index.
    pub fn match_components(&self, components: &[Component]) -> MatchReport {
        let mut report = MatchReport::default();
        let mut unmatched: BTreeSet<String> = self.unordered_ecosystems.clone();
        let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
        for component in components {
            let (ecosystem, name, purl, distro) = match identify(component) {
                Ok(identity) => identity,
                Err(reason) => {
                    report.unidentified.push(Unidentified {
                        component: component.into(),
                        reason,
                    });
                    continue;
                }
            };
            let version = component_version(component);
            if version.is_empty() {
                report.unversioned.push(component.into());
                continue;
            }
            if !ecosystem.is_known() {
                unmatched.insert(ecosystem.as_osv().to_owned());
            }
            let Some(entries) = self.entries.get(&(ecosystem.clone(), name)) else {
                continue;
            };
            let mut candidate = CandidateVersion::new(&ecosystem, &version);
            if let Some(Err(error)) = &candidate.own {
                report.unordered_versions.push(UnorderedVersion {
                    component: component.into(),
                    reason: error.to_string(),
                });
            }
            let mut by_advisory: Vec<(&Arc<AdvisoryFacts>, Vec<String>)> = Vec::new();
            for entry in entries {
                if !release_applies(entry.release.as_deref(), &ecosystem, distro.as_deref()) {
                    continue;
                }
                let Some(fixed) = entry_affects(entry, &mut candidate) else {
                    continue;
                };
                match by_advisory
                    .iter_mut()
                    .find(|(facts, _)| Arc::ptr_eq(facts, &entry.advisory))
                {
                    Some((_, all_fixed)) => {
                        for version in fixed {
                            if !all_fixed.contains(&version) {
                                all_fixed.push(version);
                            }
                        }
                    }
                    None => by_advisory.push((&entry.advisory, fixed)),
                }
            }
            for (facts, fixed) in by_advisory {
                // The same package and version listed twice in an SBOM is reported once.
                if !seen.insert((purl.clone(), version.clone(), facts.id.clone())) {
                    continue;
                }
                report.matches.push(Match {
                    purl: purl.clone(),
                    name: component.name.clone(),
                    version: version.clone(),
                    advisory: facts.id.clone(),
                    aliases: facts.aliases.clone(),
                    fixed,
                });
            }
        }
        report
            .matches
            .sort_by(|a, b| (&a.purl, &a.advisory).cmp(&(&b.purl, &b.advisory)));
        report.unmatched_ecosystems = unmatched.into_iter().collect();
        report
    }
}

fn cmp_parsed(a: &ParsedVersion, b: &ParsedVersion) -> Ordering {
    a.cmp_same(b).unwrap_or(Ordering::Equal)
}

fn index_range(
    ecosystem: &Ecosystem,
    semver: bool,
    events: &[Event],
) -> Result<Vec<(EventKind, Bound)>, VersionError> {
    let mut indexed = Vec::with_capacity(events.len());
    for event in events {
        let kind = match event {
            Event::Introduced(_) => EventKind::Introduced,
            Event::Fixed(_) => EventKind::Fixed,
            Event::LastAffected(_) => EventKind::LastAffected,
            Event::Limit(_) => EventKind::Limit,
        };
        let text = event.version().trim();
        let bound = if kind == EventKind::Introduced && text == "0" {
            Bound::Zero
        } else if semver {
            Bound::Version(version::parse_semver_range_bound(text)?)
        } else {
            Bound::Version(version::parse(ecosystem, text)?)
        };
        indexed.push((kind, bound));
    }
    indexed.sort_by(|(_, a), (_, b)| match (a, b) {
        (Bound::Zero, Bound::Zero) => Ordering::Equal,
        (Bound::Zero, _) => Ordering::Less,
        (_, Bound::Zero) => Ordering::Greater,
        (Bound::Version(a), Bound::Version(b)) => cmp_parsed(a, b),
    });
    Ok(indexed)
}

/// A component's version, parsed at most once per scheme it is compared under.
struct CandidateVersion<'a> {
    text: &'a str,
    /// Under the ecosystem's rules (`None` for an ecosystem without them).
    own: Option<Result<ParsedVersion, VersionError>>,
    semver: Option<Option<ParsedVersion>>,
}

impl<'a> CandidateVersion<'a> {
    fn new(ecosystem: &'a Ecosystem, text: &'a str) -> Self {
        CandidateVersion {
            text,
            own: ecosystem
                .is_known()
                .then(|| version::parse(ecosystem, text)),
            semver: None,
        }
    }

    fn own(&self) -> Option<&ParsedVersion> {
        self.own.as_ref().and_then(|parsed| parsed.as_ref().ok())
    }

    fn semver(&mut self) -> Option<&ParsedVersion> {
        if self.semver.is_none() {
            // A SEMVER range applies SemVer whatever the ecosystem: the text read as SemVer,
            // if it is one.
            self.semver = Some(version::parse_semver_range_bound(self.text).ok());
        }
        self.semver.as_ref().and_then(Option::as_ref)
    }
}

/// Whether the entry applies to the version; if so, the fixed versions to report.
fn entry_affects(
    entry: &IndexedEntry,
    candidate: &mut CandidateVersion<'_>,
) -> Option<Vec<String>> {
    let mut fixed = Vec::new();
    let mut in_range = false;
    for range in &entry.ranges {
        let parsed = if range.semver {
            candidate.semver()
        } else {
            candidate.own()
        };
        let Some(parsed) = parsed else { continue };
        if range_includes(range, parsed) {
            in_range = true;
            for version in &range.fixed {
                if !fixed.contains(version) {
                    fixed.push(version.clone());
                }
            }
        }
    }
    if in_range {
        return Some(fixed);
    }
    let listed = match candidate.own() {
        Some(parsed) => entry
            .versions
            .binary_search_by(|listed| cmp_parsed(listed, parsed))
            .is_ok(),
        None => false,
    } || entry
        .versions_text
        .iter()
        .any(|listed| listed == candidate.text.trim());
    listed.then(|| entry.unevaluated_fixed.clone())
}

/// OSV's evaluation of one range: walk the sorted events, opening at an `introduced` at or
/// below the version and closing at a `fixed`/`limit` at or below it or a `last_affected`
/// below it.
fn range_includes(range: &IndexedRange, version: &ParsedVersion) -> bool {
    let mut affected = false;
    for (kind, bound) in &range.events {
        let ordering = match bound {
            Bound::Zero => Ordering::Greater,
            Bound::Version(bound) => match version.cmp_same(bound) {
                Some(ordering) => ordering,
                None => return false,
            },
        };
        match kind {
            EventKind::Introduced if ordering != Ordering::Less => affected = true,
            EventKind::Fixed | EventKind::Limit if ordering != Ordering::Less => affected = false,
            EventKind::LastAffected if ordering == Ordering::Greater => affected = false,
            _ => {}
        }
    }
    affected
}

/// The version a component is matched at: the SBOM's `version`, else its purl's.
fn component_version(component: &Component) -> String {
    let stated = component.version.trim();
    if !stated.is_empty() {
        return stated.to_owned();
    }
    component
        .purl
        .as_deref()
        .and_then(|purl| packageurl::PackageUrl::from_str(purl).ok())
        .and_then(|purl| purl.version().map(str::to_owned))
        .unwrap_or_default()
}

/// The component's (ecosystem, normalized name) from its purl, the purl as given, and its
/// `distro` qualifier.
fn identify(component: &Component) -> Result<(Ecosystem, String, String, Option<String>), String> {
    let Some(purl_text) = component.purl.as_deref().map(str::trim) else {
        return Err("no purl: its ecosystem is unknown (match it by CPE or firmware name against NVD records)".to_owned());
    };
    if purl_text.len() > crate::osv::MAX_FIELD_LEN * 4 {
        return Err(format!("a purl of {} bytes is too long", purl_text.len()));
    }
    let purl = packageurl::PackageUrl::from_str(purl_text)
        .map_err(|error| format!("the purl `{purl_text}` is not valid: {error}"))?;
    let Some(ecosystem) = Ecosystem::from_purl_type(purl.ty()) else {
        return Err(format!(
            "a `{}` purl names no ecosystem (match it by CPE or firmware name against NVD records)",
            purl.ty()
        ));
    };
    // A package built from a local path (cargo-cyclonedx writes a workspace or path
    // dependency as `download_url=file://...`) is not the registry's package of that name: a
    // registry advisory for the name says nothing about it, and matching it would blame the
    // vendor's own code for someone else's flaw.
    if let Some(url) = purl.qualifiers().get("download_url")
        && url.trim_start().to_ascii_lowercase().starts_with("file:")
    {
        return Err(format!(
            "built from a local path ({url}), not {}'s package of that name: no registry advisory applies",
            ecosystem.as_osv()
        ));
    }
    let name = match (&ecosystem, purl.namespace()) {
        (Ecosystem::Maven, Some(group)) => format!("{group}:{}", purl.name()),
        (Ecosystem::Go | Ecosystem::Npm, Some(namespace)) => {
            format!("{namespace}/{}", purl.name())
        }
        // Distribution advisories name source packages; SBOM tools put a binary package's
        // source in the `upstream` qualifier.
        (Ecosystem::Debian | Ecosystem::Alpine, _) => purl
            .qualifiers()
            .get("upstream")
            .map(|upstream| {
                upstream
                    .split(['@', ' ', '('])
                    .next()
                    .unwrap_or_default()
                    .to_owned()
            })
            .filter(|source| !source.is_empty())
            .unwrap_or_else(|| purl.name().to_owned()),
        _ => purl.name().to_owned(),
    };
    let normalized = ecosystem.normalize_package_name(&name);
    let distro = purl
        .qualifiers()
        .get("distro")
        .map(|distro| distro.to_string());
    Ok((ecosystem, normalized, purl_text.to_owned(), distro))
}

/// The release an OSV ecosystem name is qualified with, as [`distro_release`] spells it:
/// `Debian:12` -> `12`, `Alpine:v3.19` -> `3.19`; `None` for an unqualified name.
fn osv_release(ecosystem_name: &str) -> Option<String> {
    let (_, release) = ecosystem_name.split_once(':')?;
    let release = release.trim();
    let release = release.strip_prefix('v').unwrap_or(release);
    (!release.is_empty()).then(|| release.to_owned())
}

/// Debian's codenames, for `distro=bookworm` (the spelling Debian's own tools write).
const DEBIAN_CODENAMES: [(&str, &str); 7] = [
    ("stretch", "9"),
    ("buster", "10"),
    ("bullseye", "11"),
    ("bookworm", "12"),
    ("trixie", "13"),
    ("forky", "14"),
    ("duke", "15"),
];

/// The release a purl `distro` qualifier names, spelled as [`osv_release`] spells it:
/// `debian-12` (or `debian-12.5`) and `bookworm` -> `12`; `alpine-3.19` (or `alpine-3.19.1`)
/// -> `3.19`. `None` when it names no release of the ecosystem.
fn distro_release(ecosystem: &Ecosystem, distro: &str) -> Option<String> {
    let distro = distro.trim().to_ascii_lowercase();
    match ecosystem {
        Ecosystem::Debian => {
            if let Some((_, number)) = DEBIAN_CODENAMES.iter().find(|(name, _)| *name == distro) {
                return Some((*number).to_owned());
            }
            let major = distro.strip_prefix("debian-")?.split('.').next()?;
            (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit()))
                .then(|| major.to_owned())
        }
        Ecosystem::Alpine => {
            let version = distro.strip_prefix("alpine-")?;
            let version = version.strip_prefix('v').unwrap_or(version);
            let mut parts = version.split('.');
            let (major, minor) = (parts.next()?, parts.next()?);
            [major, minor]
                .iter()
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| format!("{major}.{minor}"))
        }
        _ => None,
    }
}

/// Whether an entry qualified with `release` applies to a component with this `distro`
/// qualifier: an unqualified entry, or a component that names no distro, always; otherwise
/// only the same release.
fn release_applies(release: Option<&str>, ecosystem: &Ecosystem, distro: Option<&str>) -> bool {
    match (release, distro) {
        (None, _) | (_, None) => true,
        (Some(release), Some(distro)) => {
            distro_release(ecosystem, distro).as_deref() == Some(release)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::osv::parse_advisory;

    fn advisory(id: &str, ecosystem: &str, name: &str, body: &str) -> Advisory {
        let json = format!(
            r#"{{"id":"{id}","modified":"2024-01-01T00:00:00Z","aliases":["CVE-{id}"],
            "affected":[{{"package":{{"ecosystem":"{ecosystem}","name":"{name}"}},{body}}}]}}"#
        );
        parse_advisory(json.as_bytes()).unwrap()
    }

    fn component(purl: &str, version: &str) -> Component {
        Component {
            reference: String::new(),
            name: purl
                .rsplit('/')
                .next()
                .unwrap()
                .split('@')
                .next()
                .unwrap()
                .to_owned(),
            version: version.to_owned(),
            purl: Some(purl.to_owned()),
            cpe: None,
            group: None,
        }
    }

    fn matched(index: &AdvisoryIndex, purl: &str, version: &str) -> Vec<(String, Vec<String>)> {
        index
            .match_components(&[component(purl, version)])
            .matches
            .into_iter()
            .map(|m| (m.advisory, m.fixed))
            .collect()
    }

    #[test]
    fn ranges_open_at_introduced_and_close_at_fixed_in_any_event_order() {
        // Events out of order, as real records have them.
        let index = AdvisoryIndex::build([advisory(
            "A-1",
            "PyPI",
            "Django",
            r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"2.2"},{"fixed":"2.2.4"},{"introduced":"1.11"},{"fixed":"1.11.23"}]}]"#,
        )]);
        let fixed = vec!["2.2.4".to_owned(), "1.11.23".to_owned()];
        for vulnerable in ["2.2", "2.2.0", "2.2.3", "1.11", "1.11.22", "2.2.4rc1"] {
            assert_eq!(
                matched(&index, "pkg:pypi/django", vulnerable),
                [("A-1".to_owned(), fixed.clone())],
                "{vulnerable}"
            );
        }
        for safe in [
            "2.2.4",
            "2.2.4.post1",
            "1.11.23",
            "1.10.9",
            "2.0",
            "3.0",
            "2.2rc1",
        ] {
            assert!(
                matched(&index, "pkg:pypi/django", safe).is_empty(),
                "{safe}"
            );
        }
    }

    #[test]
    fn last_affected_includes_its_version_and_introduced_zero_opens_from_the_start() {
        let index = AdvisoryIndex::build([advisory(
            "A-2",
            "npm",
            "left-pad",
            r#""ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"last_affected":"1.3.0"}]}]"#,
        )]);
        assert_eq!(matched(&index, "pkg:npm/left-pad", "0.0.1").len(), 1);
        assert_eq!(matched(&index, "pkg:npm/left-pad", "v1.3.0").len(), 1);
        assert!(matched(&index, "pkg:npm/left-pad", "1.3.1").is_empty());
    }

    #[test]
    fn versions_lists_match_with_the_ecosystems_equality_and_git_ranges_only_through_them() {
        let index = AdvisoryIndex::build([advisory(
            "A-3",
            "PyPI",
            "pkg",
            r#""ranges":[{"type":"GIT","repo":"r","events":[{"introduced":"abc"},{"fixed":"def"}]}],"versions":["1.0","2.2"]"#,
        )]);
        assert_eq!(matched(&index, "pkg:pypi/pkg", "2.2.0").len(), 1);
        assert_eq!(matched(&index, "pkg:pypi/pkg", "1.0").len(), 1);
        assert!(matched(&index, "pkg:pypi/pkg", "1.5").is_empty());
    }

    #[test]
    fn withdrawn_advisory_matches_nothing_and_withdrawing_removes_an_indexed_one() {
        let body = r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]"#;
        let live = advisory("A-4", "PyPI", "pkg", body);
        let mut withdrawn = live.clone();
        withdrawn.withdrawn = Some("2024-02-01T00:00:00Z".to_owned());

        let index = AdvisoryIndex::build([withdrawn.clone()]);
        assert!(matched(&index, "pkg:pypi/pkg", "1.0").is_empty());
        assert_eq!(index.withdrawn_skipped(), 1);

        let mut index = AdvisoryIndex::build([live]);
        assert_eq!(matched(&index, "pkg:pypi/pkg", "1.0").len(), 1);
        index.insert(withdrawn);
        assert!(matched(&index, "pkg:pypi/pkg", "1.0").is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn a_changed_advisory_replaces_the_earlier_record() {
        let mut index = AdvisoryIndex::build([advisory(
            "A-5",
            "PyPI",
            "pkg",
            r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.0"}]}]"#,
        )]);
        index.insert(advisory(
            "A-5",
            "PyPI",
            "pkg",
            r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.5"}]}]"#,
        ));
        assert_eq!(index.len(), 1);
        assert!(matched(&index, "pkg:pypi/pkg", "1.7").is_empty());
        assert_eq!(
            matched(&index, "pkg:pypi/pkg", "1.2"),
            [("A-5".to_owned(), vec!["1.5".to_owned()])]
        );
    }

    #[test]
    fn unknown_ecosystem_is_reported_and_its_versions_list_still_matches() {
        let index = AdvisoryIndex::build([advisory(
            "A-6",
            "Hex",
            "plug",
            r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.4.4"}]}],"versions":["1.4.3"]"#,
        )]);
        let report = index.match_components(&[component("pkg:hex/plug@1.4.3", "1.4.3")]);
        assert_eq!(report.unmatched_ecosystems, ["Hex"]);
        assert_eq!(report.matches.len(), 1);
        assert_eq!(report.matches[0].fixed, ["1.4.4"]);
        // Not listed: the range is not guessed at.
        let report = index.match_components(&[component("pkg:hex/plug@1.0.0", "1.0.0")]);
        assert!(report.matches.is_empty());
        assert_eq!(report.unmatched_ecosystems, ["Hex"]);
        // A component of an unordered ecosystem is reported even with no advisory for it.
        let report =
            AdvisoryIndex::new().match_components(&[component("pkg:conan/zlib@1.3", "1.3")]);
        assert_eq!(report.unmatched_ecosystems, ["conan"]);
    }

    #[test]
    fn duplicate_components_are_reported_once() {
        let index = AdvisoryIndex::build([advisory(
            "A-7",
            "PyPI",
            "requests",
            r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.20.0"}]}]"#,
        )]);
        let twice = [
            component("pkg:pypi/requests@2.19.0", "2.19.0"),
            component("pkg:pypi/requests@2.19.0", "2.19.0"),
        ];
        assert_eq!(index.match_components(&twice).matches.len(), 1);
    }

    #[test]
    fn components_without_a_usable_purl_or_version_are_reported_not_dropped() {
        let index = AdvisoryIndex::new();
        let mut no_purl = component("pkg:pypi/x", "1.0");
        no_purl.purl = None;
        let generic = component("pkg:generic/busybox@1.36.1", "1.36.1");
        let bad = component("not a purl", "1.0");
        let unversioned = component("pkg:pypi/requests", "");
        let report = index.match_components(&[no_purl, generic, bad, unversioned]);
        assert_eq!(report.unidentified.len(), 3);
        assert!(report.unidentified[1].reason.contains("`generic`"));
        assert_eq!(report.unversioned.len(), 1);
    }

    #[test]
    fn names_meet_across_spellings_and_namespaces() {
        let index = AdvisoryIndex::build([
            advisory(
                "A-8",
                "PyPI",
                "PyYAML",
                r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"5.4"}]}]"#,
            ),
            advisory(
                "A-9",
                "Maven",
                "org.apache.logging.log4j:log4j-core",
                r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"2.0-beta9"},{"fixed":"2.15.0"}]}]"#,
            ),
            advisory(
                "A-10",
                "Go",
                "github.com/gin-gonic/gin",
                r#""ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.9.1"}]}]"#,
            ),
            advisory(
                "A-11",
                "Debian:12",
                "openssl",
                r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]"#,
            ),
        ]);
        assert_eq!(matched(&index, "pkg:pypi/pyyaml", "5.3").len(), 1);
        assert_eq!(
            matched(
                &index,
                "pkg:maven/org.apache.logging.log4j/log4j-core",
                "2.14.1"
            )
            .len(),
            1
        );
        assert!(
            matched(
                &index,
                "pkg:maven/org.apache.logging.log4j/log4j-core",
                "2.17.1"
            )
            .is_empty()
        );
        assert_eq!(
            matched(&index, "pkg:golang/github.com/gin-gonic/gin", "v1.9.0").len(),
            1
        );
        assert_eq!(
            matched(
                &index,
                "pkg:deb/debian/libssl3?upstream=openssl&distro=debian-12",
                "3.0.11-1~deb12u1"
            )
            .len(),
            1
        );
        assert!(
            matched(
                &index,
                "pkg:deb/debian/libssl3?upstream=openssl",
                "3.0.11-1~deb12u2"
            )
            .is_empty()
        );
    }

    #[test]
    fn release_qualified_advisories_apply_only_to_components_of_that_release() {
        let index = AdvisoryIndex::build([
            advisory(
                "DSA-12",
                "Debian:12",
                "openssl",
                r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"3.0.11-1~deb12u2"}]}]"#,
            ),
            advisory(
                "DSA-11",
                "Debian:11",
                "openssl",
                r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.1.1w-0+deb11u1"}]}]"#,
            ),
            advisory(
                "ALPINE-319",
                "Alpine:v3.19",
                "busybox",
                r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.36.1-r16"}]}]"#,
            ),
        ]);
        let ids = |purl: &str, version: &str| -> Vec<String> {
            matched(&index, purl, version)
                .into_iter()
                .map(|(id, _)| id)
                .collect()
        };
        // Bookworm's package meets Debian 12's advisory only, by number or by codename.
        for distro in ["debian-12", "bookworm", "debian-12.5", "Bookworm"] {
            assert_eq!(
                ids(
                    &format!("pkg:deb/debian/openssl?distro={distro}"),
                    "1.1.1n-0+deb11u5"
                ),
                ["DSA-12"],
                "{distro}"
            );
        }
        assert_eq!(
            ids("pkg:deb/debian/openssl?distro=bullseye", "1.1.1n-0+deb11u5"),
            ["DSA-11"]
        );
        // No distro: every release's advisory applies.
        assert_eq!(
            ids("pkg:deb/debian/openssl", "1.1.1n-0+deb11u5"),
            ["DSA-11", "DSA-12"]
        );
        // A distro that names no Debian release meets no release-qualified advisory.
        assert!(ids("pkg:deb/debian/openssl?distro=ubuntu-22.04", "1.0").is_empty());
        assert_eq!(
            ids("pkg:apk/alpine/busybox?distro=alpine-3.19.1", "1.36.1-r15"),
            ["ALPINE-319"]
        );
        assert!(ids("pkg:apk/alpine/busybox?distro=alpine-3.18", "1.36.1-r15").is_empty());
        assert_eq!(ids("pkg:apk/alpine/busybox", "1.36.1-r15"), ["ALPINE-319"]);
    }

    #[test]
    fn release_spellings_meet_between_osv_and_purl_qualifiers() {
        assert_eq!(osv_release("Debian:12").as_deref(), Some("12"));
        assert_eq!(osv_release("Alpine:v3.19").as_deref(), Some("3.19"));
        assert_eq!(osv_release("Debian"), None);
        assert_eq!(osv_release("Debian:"), None);
        assert_eq!(
            distro_release(&Ecosystem::Debian, "trixie").as_deref(),
            Some("13")
        );
        assert_eq!(distro_release(&Ecosystem::Debian, "debian-"), None);
        assert_eq!(distro_release(&Ecosystem::Debian, "debian-x"), None);
        assert_eq!(distro_release(&Ecosystem::Alpine, "alpine-3"), None);
        assert_eq!(
            distro_release(&Ecosystem::Alpine, "alpine-v3.20").as_deref(),
            Some("3.20")
        );
        assert_eq!(distro_release(&Ecosystem::PyPI, "debian-12"), None);
    }

    #[test]
    fn an_unparsable_bound_is_reported_and_the_versions_list_still_matches() {
        let index = AdvisoryIndex::build([advisory(
            "A-12",
            "PyPI",
            "pkg",
            r#""ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"not a version"}]}],"versions":["1.0"]"#,
        )]);
        assert_eq!(index.problems().len(), 1);
        assert_eq!(index.problems()[0].kind, ProblemKind::RangeNotEvaluated);
        assert!(index.problems()[0].problem.contains("not evaluated"));
        assert_eq!(
            matched(&index, "pkg:pypi/pkg", "1.0"),
            [("A-12".to_owned(), vec!["not a version".to_owned()])]
        );
        assert!(matched(&index, "pkg:pypi/pkg", "0.5").is_empty());
    }
}
