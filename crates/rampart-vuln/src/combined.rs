//! One report of what applies to an SBOM's components, from both matchers: OSV advisories
//! matched by purl ([`crate::matching`]) and NVD CVEs matched by CPE, or by a known firmware
//! name when a part has neither purl nor CPE ([`crate::nvd`]).
//!
//! A CVE found both ways on the same component (OSV lists it among an advisory's aliases, or
//! as the advisory's id) is one finding: the OSV advisory stays the finding, the CVE is among
//! its aliases, and the fixed versions of both are kept (docs/decisions/0048-nvd-import-and-cpe-posture.md).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::component::Component;
use crate::matching::Match;
use crate::nvd::firmware_cpe;

/// How a finding's component was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MatchedBy {
    /// By its purl, against OSV advisories.
    Purl,
    /// By the CPE the SBOM gives it, against NVD records.
    Cpe,
    /// By its name, a known firmware part ([`crate::nvd::FIRMWARE_NAMES`]), against NVD records.
    Name,
}

impl MatchedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedBy::Purl => "purl",
            MatchedBy::Cpe => "cpe",
            MatchedBy::Name => "name",
        }
    }
}

/// One finding: an advisory that applies to a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `None` when the component has no purl.
    pub purl: Option<String>,
    /// The CPE the SBOM gives, or for a part matched by name the CPE its name stands for.
    pub cpe: Option<String>,
    pub name: String,
    pub version: String,
    pub advisory: String,
    pub aliases: Vec<String>,
    pub fixed: Vec<String>,
    pub matched_by: MatchedBy,
}

/// The identity both matchers give a component in [`Match::purl`]: its purl, else its CPE,
/// else the CPE its firmware name stands for.
pub fn identity(component: &Component) -> Option<String> {
    if let Some(purl) = &component.purl {
        return Some(purl.trim().to_owned());
    }
    if let Some(cpe) = &component.cpe {
        return Some(cpe.trim().to_owned());
    }
    firmware_cpe(&component.name).map(|name| name.to_formatted_string())
}

/// Merges the OSV matches and the CPE matches of the same `components` into findings, sorted
/// by component then advisory. `components` tells each finding's purl, CPE and how it matched.
pub fn combine(components: &[Component], osv: &[Match], cpe: &[Match]) -> Vec<Finding> {
    // (identity, name) -> the component, first listed wins (duplicates are the same part).
    let mut by_identity: BTreeMap<(String, String), &Component> = BTreeMap::new();
    for component in components {
        if let Some(identity) = identity(component) {
            by_identity
                .entry((identity, component.name.clone()))
                .or_insert(component);
        }
    }
    let lookup = |m: &Match| by_identity.get(&(m.purl.trim().to_owned(), m.name.clone()));

    let mut findings: Vec<Finding> = osv
        .iter()
        .map(|m| Finding {
            purl: Some(m.purl.clone()),
            cpe: lookup(m).and_then(|c| c.cpe.clone()),
            name: m.name.clone(),
            version: m.version.clone(),
            advisory: m.advisory.clone(),
            aliases: m.aliases.clone(),
            fixed: m.fixed.clone(),
            matched_by: MatchedBy::Purl,
        })
        .collect();
    // (component identity, version, CVE id or alias) -> the OSV finding that names it.
    let mut osv_names: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (position, m) in osv.iter().enumerate() {
        for name in std::iter::once(&m.advisory).chain(&m.aliases) {
            osv_names
                .entry((m.purl.trim().to_owned(), m.version.clone(), name.clone()))
                .or_insert(position);
        }
    }
    for m in cpe {
        let key = (
            m.purl.trim().to_owned(),
            m.version.clone(),
            m.advisory.clone(),
        );
        if let Some(&position) = osv_names.get(&key) {
            let finding = &mut findings[position];
            if finding.advisory != m.advisory && !finding.aliases.contains(&m.advisory) {
                finding.aliases.push(m.advisory.clone());
            }
            for version in &m.fixed {
                if !finding.fixed.contains(version) {
                    finding.fixed.push(version.clone());
                }
            }
            continue;
        }
        let component = lookup(m);
        let given_cpe = component.and_then(|c| c.cpe.clone());
        let (cpe, matched_by) = match given_cpe {
            Some(cpe) => (Some(cpe), MatchedBy::Cpe),
            None => (
                firmware_cpe(&m.name).map(|name| name.to_formatted_string()),
                MatchedBy::Name,
            ),
        };
        findings.push(Finding {
            purl: component.and_then(|c| c.purl.clone()),
            cpe,
            name: m.name.clone(),
            version: m.version.clone(),
            advisory: m.advisory.clone(),
            aliases: m.aliases.clone(),
            fixed: m.fixed.clone(),
            matched_by,
        });
    }
    findings.sort_by(|a, b| {
        (&a.name, &a.version, &a.purl, &a.advisory).cmp(&(
            &b.name,
            &b.version,
            &b.purl,
            &b.advisory,
        ))
    });
    findings
}

/// Every advisory id and alias the OSV matches name: a CVE among them is already counted.
pub fn osv_names(osv: &[Match]) -> BTreeSet<String> {
    osv.iter()
        .flat_map(|m| std::iter::once(&m.advisory).chain(&m.aliases))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn osv_match(purl: &str, name: &str, version: &str, id: &str, aliases: &[&str]) -> Match {
        Match {
            purl: purl.to_owned(),
            name: name.to_owned(),
            version: version.to_owned(),
            advisory: id.to_owned(),
            aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            fixed: vec!["1.24.2".to_owned()],
        }
    }

    #[test]
    fn a_cve_found_through_an_osv_alias_and_by_cpe_on_one_component_is_one_finding() {
        let component = Component {
            name: "urllib3".to_owned(),
            version: "1.24.1".to_owned(),
            purl: Some("pkg:pypi/urllib3@1.24.1".to_owned()),
            cpe: Some("cpe:2.3:a:python:urllib3:1.24.1:*:*:*:*:*:*:*".to_owned()),
            ..Component::default()
        };
        let osv = [osv_match(
            "pkg:pypi/urllib3@1.24.1",
            "urllib3",
            "1.24.1",
            "PYSEC-2019-133",
            &["CVE-2019-11324"],
        )];
        let mut nvd = osv_match(
            "pkg:pypi/urllib3@1.24.1",
            "urllib3",
            "1.24.1",
            "CVE-2019-11324",
            &[],
        );
        nvd.fixed = vec!["1.24.2".to_owned(), "1.25".to_owned()];
        let findings = combine(&[component], &osv, &[nvd.clone()]);
        assert_eq!(findings.len(), 1, "{findings:?}");
        assert_eq!(findings[0].advisory, "PYSEC-2019-133");
        assert_eq!(findings[0].matched_by, MatchedBy::Purl);
        assert_eq!(findings[0].fixed, ["1.24.2", "1.25"]);
        assert!(findings[0].cpe.is_some());
        // Another component's CVE of the same id is its own finding.
        nvd.purl = "pkg:pypi/urllib3@1.24.0".to_owned();
        nvd.version = "1.24.0".to_owned();
        assert_eq!(combine(&[], &osv, &[nvd]).len(), 2);
    }

    #[test]
    fn a_part_without_purl_or_cpe_is_found_by_name_with_the_cpe_it_stands_for() {
        let busybox = Component {
            name: "busybox".to_owned(),
            version: "1.35.0".to_owned(),
            ..Component::default()
        };
        let cpe_form = firmware_cpe("busybox").unwrap().to_formatted_string();
        let nvd = osv_match(&cpe_form, "busybox", "1.35.0", "CVE-2022-28391", &[]);
        let findings = combine(&[busybox], &[], &[nvd]);
        assert_eq!(findings[0].matched_by, MatchedBy::Name);
        assert_eq!(findings[0].purl, None);
        assert_eq!(findings[0].cpe.as_deref(), Some(cpe_form.as_str()));
    }
}
