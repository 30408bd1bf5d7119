//! CPE and firmware-name matching in the risk assessment (issue 17, decision 0048): the stored
//! NVD records (`Db::nvd_advisories_for_matching`) parsed into a `rampart_vuln::nvd::CpeIndex`
//! kept in the advisory cache's `ParsedFeed`, and each release's components matched by CPE
//! (those with one) and by name (firmware parts with neither purl nor CPE). A CVE that an OSV
//! match of the same release already names (as its id or an alias) is that OSV advisory: it is
//! counted once, and lends its NVD severity to an OSV advisory that has none.

use std::collections::{BTreeMap, BTreeSet};

use rampart_vuln::combined::osv_names;
use rampart_vuln::component::Component;
use rampart_vuln::matching::Match;
use rampart_vuln::nvd::{CpeIndex, NvdAdvisory, parse_nvd_item};
use rampart_vuln::posture::AdvisorySeverity;
use rampart_vuln::suppression::{SourcedVex, SuppressedMatch};

/// The stored NVD records, parsed.
#[derive(Debug, Default)]
pub struct NvdFeed {
    pub index: CpeIndex,
    /// Each indexed CVE's severity from its CVSS vectors (NVD's own score first).
    pub severities: BTreeMap<String, AdvisorySeverity>,
    /// Stored records that no longer parse (skipped; re-import them).
    pub unreadable: Vec<String>,
}

/// A CVE's severity from its CVSS vectors; unassigned when none scores.
pub(crate) fn severity_of(advisory: &NvdAdvisory) -> AdvisorySeverity {
    advisory
        .severity()
        .map(|s| AdvisorySeverity {
            rating: Some(s.rating),
            score: Some(s.score),
        })
        .unwrap_or(AdvisorySeverity::UNASSIGNED)
}

/// Parses the stored NVD records in matching (`Db::nvd_advisories_for_matching`: rejected
/// ones are not read), blocking: the caller runs it off the async workers.
pub fn parse_nvd_feed(records: Vec<(String, String)>) -> NvdFeed {
    let mut feed = NvdFeed::default();
    for (id, record) in records {
        match parse_nvd_item(record.as_bytes()) {
            Ok(advisory) => {
                feed.severities
                    .insert(advisory.id.clone(), severity_of(&advisory));
                feed.index.insert(advisory);
            }
            Err(_) => feed.unreadable.push(id),
        }
    }
    feed
}

/// What one release's CPE matching adds to the assessment.
pub struct ReleaseCpeFindings<'a> {
    pub target: &'a str,
    /// The release's advisory ids (OSV's so far): NVD's are added.
    pub ids: &'a mut BTreeSet<String>,
    /// Each advisory's (release, component name, version).
    pub matched_components: &'a mut BTreeMap<String, Vec<(String, String, String)>>,
    pub severities: &'a mut BTreeMap<String, AdvisorySeverity>,
    /// The stored vendor VEX: a CVE a statement says does not affect a firmware part (named
    /// by CPE or bom-ref) is not counted, and lands in `suppressed` with its justification.
    pub vex: &'a SourcedVex,
    /// The release's suppressed matches (OSV's so far): the CPE ones are added.
    pub suppressed: &'a mut Vec<SuppressedMatch>,
}

/// Matches `components` by CPE and firmware name and adds the CVEs that no OSV match of the
/// release (`osv`) already names.
pub fn add_cpe_matches(
    feed: &NvdFeed,
    components: &[Component],
    osv: &[Match],
    out: ReleaseCpeFindings<'_>,
) {
    if feed.index.is_empty() {
        return;
    }
    let named_by_osv = osv_names(osv);
    // An OSV advisory without a score takes the score NVD gives one of its CVE aliases.
    for m in osv {
        if out
            .severities
            .get(&m.advisory)
            .is_some_and(|s| s.rating.is_some())
        {
            continue;
        }
        if let Some(severity) = m
            .aliases
            .iter()
            .filter_map(|alias| feed.severities.get(alias))
            .find(|s| s.rating.is_some())
        {
            out.severities.insert(m.advisory.clone(), *severity);
        }
    }
    let report = feed.index.match_cpe_components(components);
    let unnamed: Vec<Match> = report
        .matches
        .into_iter()
        .filter(|m| !named_by_osv.contains(&m.advisory))
        .collect();
    let (kept, suppressed) = out.vex.split(unnamed, components);
    out.suppressed.extend(suppressed);
    for m in kept {
        out.ids.insert(m.advisory.clone());
        let severity = feed
            .severities
            .get(&m.advisory)
            .copied()
            .unwrap_or(AdvisorySeverity::UNASSIGNED);
        out.severities.entry(m.advisory.clone()).or_insert(severity);
        out.matched_components.entry(m.advisory).or_default().push((
            out.target.to_owned(),
            m.name,
            m.version,
        ));
    }
}
