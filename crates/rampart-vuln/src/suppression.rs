//! VEX applied to matching: a match (advisory on a component) that the deciding VEX statement
//! says does not affect the component (not affected, or fixed) moves out of the matches into
//! the suppressed ones, with the statement's status, justification, impact statement and the
//! document it came from. The deciding statement is `vex::VexSet::applies`' (the conflict
//! rule); statements of every document take part in it together.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::combined::identity;
use crate::component::Component;
use crate::matching::Match;
use crate::posture::{DeviceRun, GroupBy};
use crate::vex::{VexSet, VexStatement, VexStatus};

/// What the deciding statement said, as reports show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexVerdict {
    /// `not_affected` or `fixed`.
    pub status: VexStatus,
    pub justification: Option<String>,
    /// The vendor's words (OpenVEX `impact_statement`, CycloneDX `analysis.detail`).
    pub impact_statement: Option<String>,
    /// The document the statement came from (a file name, or a stored document's digest).
    pub source: String,
}

/// A match a VEX statement suppressed: the match's fields, and the statement's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuppressedMatch {
    #[serde(flatten)]
    pub matched: Match,
    pub vex: VexVerdict,
}

/// VEX statements from one or more documents, each statement knowing its document.
#[derive(Debug, Clone, Default)]
pub struct SourcedVex {
    set: VexSet,
    sources: Vec<String>,
}

impl SourcedVex {
    /// The statements of `documents`, given as (source, statements).
    pub fn new(documents: Vec<(String, Vec<VexStatement>)>) -> SourcedVex {
        let mut statements = Vec::new();
        let mut sources = Vec::new();
        for (source, list) in documents {
            sources.extend(std::iter::repeat_n(source, list.len()));
            statements.extend(list);
        }
        SourcedVex {
            set: VexSet::new(statements),
            sources,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// The verdict that suppresses `matched`, if any. The match names its component as both
    /// matchers do (`combined::identity`: the purl, else the CPE, else the CPE a firmware
    /// name stands for); every component of `components` it names must be suppressed by its
    /// deciding statement (a statement about one of two listed copies does not hide the other).
    pub fn suppresses(&self, matched: &Match, components: &[Component]) -> Option<VexVerdict> {
        let ids: Vec<&str> = std::iter::once(matched.advisory.as_str())
            .chain(matched.aliases.iter().map(String::as_str))
            .collect();
        let mut verdict = None;
        let mut any = false;
        for component in components
            .iter()
            .filter(|c| names_matched_component(matched, c))
        {
            any = true;
            let index = self.set.applies_at(&ids, component)?;
            let statement = &self.set.statements()[index];
            if !statement.suppresses() {
                return None;
            }
            verdict.get_or_insert_with(|| VexVerdict {
                status: statement.status,
                justification: statement.justification.clone(),
                impact_statement: statement.detail.clone(),
                source: self.sources[index].clone(),
            });
        }
        if any { verdict } else { None }
    }

    /// Splits `matches` into those that stand and those a statement suppresses.
    pub fn split(
        &self,
        matches: Vec<Match>,
        components: &[Component],
    ) -> (Vec<Match>, Vec<SuppressedMatch>) {
        if self.is_empty() {
            return (matches, Vec::new());
        }
        let mut kept = Vec::with_capacity(matches.len());
        let mut suppressed = Vec::new();
        for matched in matches {
            match self.suppresses(&matched, components) {
                Some(vex) => suppressed.push(SuppressedMatch { matched, vex }),
                None => kept.push(matched),
            }
        }
        (kept, suppressed)
    }
}

/// Whether `matched` is about `component`: the same purl; for a part without one (matched by
/// CPE or firmware name) the same CPE identity, name and version, as two parts can stand for
/// one CPE (`linux` and `linux-yocto`).
fn names_matched_component(matched: &Match, component: &Component) -> bool {
    if component.purl.is_some() {
        return component.purl.as_deref().map(str::trim) == Some(matched.purl.trim());
    }
    identity(component).as_deref() == Some(matched.purl.trim())
        && component.name == matched.name
        && component.version == matched.version
}

/// VEX applied to CPE and firmware-name matches (`nvd::CpeIndex::match_cpe_components`) of
/// the components OSV matches were split for: a CVE an OSV match that VEX suppressed already
/// names on the same component (as its id or an alias) is that finding, suppressed with it;
/// the others are split by their own statements. Answers the CPE matches that stand and
/// those suppressed.
pub fn split_cpe_matches(
    vex: &SourcedVex,
    cpe: Vec<Match>,
    osv_suppressed: &[SuppressedMatch],
    components: &[Component],
) -> (Vec<Match>, Vec<SuppressedMatch>) {
    // (component identity, version, advisory id or alias) -> the OSV verdict.
    let mut named: BTreeMap<(&str, &str, &str), &VexVerdict> = BTreeMap::new();
    for s in osv_suppressed {
        let m = &s.matched;
        for id in std::iter::once(&m.advisory).chain(&m.aliases) {
            named
                .entry((m.purl.trim(), m.version.as_str(), id.as_str()))
                .or_insert(&s.vex);
        }
    }
    let mut kept = Vec::with_capacity(cpe.len());
    let mut suppressed = Vec::new();
    for matched in cpe {
        let key = (
            matched.purl.trim(),
            matched.version.as_str(),
            matched.advisory.as_str(),
        );
        let verdict = match named.get(&key) {
            Some(verdict) => Some((*verdict).clone()),
            None if vex.is_empty() => None,
            None => vex.suppresses(&matched, components),
        };
        match verdict {
            Some(vex) => suppressed.push(SuppressedMatch { matched, vex }),
            None => kept.push(matched),
        }
    }
    (kept, suppressed)
}

/// The keys a device counts under when grouped `by` (as `posture::posture` groups them: a
/// device under each of its distinct tags, untagged devices and devices without a region
/// under "").
pub fn group_keys(by: GroupBy, device: &DeviceRun) -> Vec<&str> {
    match by {
        GroupBy::Device => vec![&device.device_id],
        GroupBy::Release => vec![device.release.as_deref().unwrap_or("")],
        GroupBy::Hardware => vec![&device.hardware_id],
        GroupBy::Region => vec![&device.region],
        GroupBy::Tag if device.tags.is_empty() => vec![""],
        GroupBy::Tag => device
            .tags
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    }
}

/// For each group key, the releases its devices run that have suppressed matches: a posture
/// row's suppressed matches are those of these releases.
pub fn releases_by_group<'a>(
    by: GroupBy,
    devices: &'a [DeviceRun],
    with_suppressions: &BTreeSet<&str>,
) -> BTreeMap<&'a str, BTreeSet<&'a str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for device in devices {
        let Some(release) = device.release.as_deref() else {
            continue;
        };
        if !with_suppressions.contains(release) {
            continue;
        }
        for key in group_keys(by, device) {
            out.entry(key).or_default().insert(release);
        }
    }
    out
}
