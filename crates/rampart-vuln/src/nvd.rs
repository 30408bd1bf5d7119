//! NVD CVE API 2.0 documents (an API response page, or a data feed of the same shape:
//! `{"vulnerabilities":[{"cve":{...}}]}`), parsed with every limit first, into
//! [`NvdAdvisory`] records, and a [`CpeIndex`] that matches firmware components by CPE.
//!
//! NVD records are kept apart from OSV's `Advisory`: they carry CPE criteria, not packages
//! with ranges, and no aliases (the CVE id is the identity). Matches are matching's [`Match`],
//! so one report holds both.
//!
//! A configuration's `AND` of a vulnerable application and a non-vulnerable platform (a
//! router's firmware on given hardware) is matched by its vulnerable criteria alone: the fleet
//! knows its hardware by Rampart's hardware ids, not CPEs, so the platform condition cannot be
//! checked and a possible match is reported rather than dropped.
//!
//! Components are identified by their CPE; those without one but with a known firmware name
//! ([`FIRMWARE_NAMES`]) and no package ecosystem (no purl, or a `generic` one, as Yocto writes
//! them) get that name's vendor and product. Components of a package ecosystem without a CPE
//! are OSV's to match and are skipped here.

use std::collections::{BTreeSet, HashMap};
use std::str::FromStr;
use std::sync::Arc;

use serde::Deserialize;

use crate::component::{Component, Ecosystem};
use crate::cpe::{
    CandidateVersion, CpeCriterion, CpeName, CpeValue, FirmwareVersion, VersionBounds,
};
use crate::matching::{ComponentRef, Match, Unidentified, UnorderedVersion};
use crate::severity::{self, Severity};

/// The largest document accepted. An API page of 2,000 CVEs (the API's largest page) is a few
/// megabytes; a yearly data feed is larger and must be split.
pub const MAX_NVD_BYTES: usize = 64 * 1024 * 1024;
/// The deepest nesting accepted. NVD's structure is 8 deep (document, vulnerabilities, item,
/// cve, configurations, configuration, nodes, node, cpeMatch, match); the rest is room.
pub const MAX_JSON_DEPTH: usize = 32;
/// At most this many CVEs per document.
pub const MAX_VULNERABILITIES: usize = 20_000;
/// At most this many configurations per CVE.
pub const MAX_CONFIGURATIONS: usize = 1_000;
/// At most this many nodes per configuration.
pub const MAX_NODES: usize = 1_000;
/// At most this many CPE match criteria per CVE, over all its nodes (the kernel's and
/// network vendors' largest records list a few thousand).
pub const MAX_CRITERIA_PER_CVE: usize = 50_000;
/// At most this many CVSS metrics of each version per CVE.
pub const MAX_METRICS: usize = 100;
/// The longest id, date, status, criterion, bound or vector kept.
pub const MAX_FIELD_LEN: usize = 512;

/// Why an NVD document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NvdError {
    #[error(
        "NVD document of {size} bytes is larger than the {limit}-byte limit: import the API's pages (at most 2,000 CVEs each) one by one"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "NVD document nests JSON arrays and objects more than {limit} deep: this is not an NVD CVE API 2.0 document"
    )]
    TooDeep { limit: usize },
    #[error("not an NVD CVE API 2.0 document: {0}")]
    Json(String),
    #[error("NVD document has {count} {what}, more than the limit of {limit}: split it")]
    TooMany {
        what: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("NVD record {id}: {problem}")]
    Invalid { id: String, problem: String },
}

/// One CPE match criterion as NVD gives it (parsed into a [`CpeCriterion`] when indexed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvdCriterion {
    /// `false` for a platform the vulnerable part must run on (not itself affected).
    pub vulnerable: bool,
    pub criteria: String,
    pub bounds: VersionBounds,
}

/// A CVSS vector NVD lists, with who scored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvdCvss {
    pub vector: String,
    /// `Primary` (NVD's own score) or `Secondary` (the CNA's).
    pub primary: bool,
    pub source: Option<String>,
}

/// One CVE record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NvdAdvisory {
    pub id: String,
    pub published: Option<String>,
    pub last_modified: Option<String>,
    /// `Analyzed`, `Modified`, `Awaiting Analysis`, `Rejected`, ...
    pub status: Option<String>,
    /// CVSS v4.0 vectors first, then v3.1, then v3.0; primary before secondary in each.
    pub cvss: Vec<NvdCvss>,
    /// Every criterion of every configuration, in order.
    pub criteria: Vec<NvdCriterion>,
}

impl NvdAdvisory {
    /// A `Rejected` CVE is withdrawn: it applies to nothing.
    pub fn is_withdrawn(&self) -> bool {
        self.status.as_deref() == Some("Rejected")
    }

    /// The severity of the first vector that scores (the newest CVSS version, NVD's own score
    /// before the CNA's).
    pub fn severity(&self) -> Option<Severity> {
        self.cvss
            .iter()
            .find_map(|cvss| severity::score_vector(&cvss.vector).ok())
    }
}

// ----- the wire form, as serde reads it -------------------------------------------------------

#[derive(Deserialize)]
struct WireDocument {
    vulnerabilities: Vec<WireItem>,
}

#[derive(Deserialize)]
struct WireItem {
    cve: WireCve,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCve {
    id: String,
    #[serde(default)]
    published: Option<String>,
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default)]
    vuln_status: Option<String>,
    #[serde(default)]
    metrics: Option<WireMetrics>,
    #[serde(default)]
    configurations: Option<Vec<WireConfiguration>>,
}

#[derive(Deserialize)]
struct WireMetrics {
    #[serde(default, rename = "cvssMetricV40")]
    v40: Option<Vec<WireMetric>>,
    #[serde(default, rename = "cvssMetricV31")]
    v31: Option<Vec<WireMetric>>,
    #[serde(default, rename = "cvssMetricV30")]
    v30: Option<Vec<WireMetric>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMetric {
    #[serde(default)]
    source: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    cvss_data: WireCvssData,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCvssData {
    vector_string: String,
}

#[derive(Deserialize)]
struct WireConfiguration {
    nodes: Vec<WireNode>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireNode {
    #[serde(default)]
    cpe_match: Option<Vec<WireCpeMatch>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCpeMatch {
    vulnerable: bool,
    criteria: String,
    #[serde(default)]
    version_start_including: Option<String>,
    #[serde(default)]
    version_start_excluding: Option<String>,
    #[serde(default)]
    version_end_including: Option<String>,
    #[serde(default)]
    version_end_excluding: Option<String>,
}

/// Parses an NVD CVE API 2.0 document. Limits come first: size, then nesting depth, then
/// (after serde has read a bounded document) the counts and field lengths.
pub fn parse_nvd_document(bytes: &[u8]) -> Result<Vec<NvdAdvisory>, NvdError> {
    if bytes.len() > MAX_NVD_BYTES {
        return Err(NvdError::TooLarge {
            size: bytes.len(),
            limit: MAX_NVD_BYTES,
        });
    }
    crate::json_limits::check_depth(bytes, MAX_JSON_DEPTH).map_err(|_| NvdError::TooDeep {
        limit: MAX_JSON_DEPTH,
    })?;
    let document: WireDocument =
        serde_json::from_slice(bytes).map_err(|error| NvdError::Json(error.to_string()))?;
    check_count(
        "vulnerabilities",
        document.vulnerabilities.len(),
        MAX_VULNERABILITIES,
    )?;
    document
        .vulnerabilities
        .into_iter()
        .map(|item| convert(item.cve))
        .collect()
}

/// Parses one item of a document's `vulnerabilities` (`{"cve":{...}}`), as the server stores
/// each record: the same limits as a whole document, first.
pub fn parse_nvd_item(bytes: &[u8]) -> Result<NvdAdvisory, NvdError> {
    if bytes.len() > MAX_NVD_BYTES {
        return Err(NvdError::TooLarge {
            size: bytes.len(),
            limit: MAX_NVD_BYTES,
        });
    }
    crate::json_limits::check_depth(bytes, MAX_JSON_DEPTH).map_err(|_| NvdError::TooDeep {
        limit: MAX_JSON_DEPTH,
    })?;
    let item: WireItem =
        serde_json::from_slice(bytes).map_err(|error| NvdError::Json(error.to_string()))?;
    convert(item.cve)
}

fn convert(cve: WireCve) -> Result<NvdAdvisory, NvdError> {
    let id = cve.id;
    let invalid = |problem: String| NvdError::Invalid {
        id: bounded_for_message(&id),
        problem,
    };
    check_field("id", &id).map_err(&invalid)?;
    if id.trim().is_empty() {
        return Err(invalid("the id is empty".to_owned()));
    }
    for (what, field) in [
        ("published", &cve.published),
        ("lastModified", &cve.last_modified),
        ("vulnStatus", &cve.vuln_status),
    ] {
        if let Some(field) = field {
            check_field(what, field).map_err(&invalid)?;
        }
    }
    let mut cvss = Vec::new();
    if let Some(metrics) = cve.metrics {
        for (what, metrics) in [
            ("CVSS v4.0 metrics", metrics.v40),
            ("CVSS v3.1 metrics", metrics.v31),
            ("CVSS v3.0 metrics", metrics.v30),
        ] {
            let metrics = metrics.unwrap_or_default();
            check_count(what, metrics.len(), MAX_METRICS)?;
            let mut of_version: Vec<NvdCvss> = Vec::with_capacity(metrics.len());
            for metric in metrics {
                check_field("vectorString", &metric.cvss_data.vector_string).map_err(&invalid)?;
                if let Some(source) = &metric.source {
                    check_field("source", source).map_err(&invalid)?;
                }
                of_version.push(NvdCvss {
                    vector: metric.cvss_data.vector_string,
                    primary: metric.kind.as_deref() == Some("Primary"),
                    source: metric.source,
                });
            }
            // Stable: NVD's order within primary and within secondary is kept.
            of_version.sort_by_key(|cvss| !cvss.primary);
            cvss.extend(of_version);
        }
    }
    let configurations = cve.configurations.unwrap_or_default();
    check_count(
        "configurations in one CVE",
        configurations.len(),
        MAX_CONFIGURATIONS,
    )?;
    let mut criteria = Vec::new();
    for configuration in configurations {
        check_count(
            "nodes in one configuration",
            configuration.nodes.len(),
            MAX_NODES,
        )?;
        for node in configuration.nodes {
            let matches = node.cpe_match.unwrap_or_default();
            check_count(
                "CPE match criteria in one CVE",
                criteria.len().saturating_add(matches.len()),
                MAX_CRITERIA_PER_CVE,
            )?;
            for wire in matches {
                check_field("criteria", &wire.criteria).map_err(&invalid)?;
                for bound in [
                    &wire.version_start_including,
                    &wire.version_start_excluding,
                    &wire.version_end_including,
                    &wire.version_end_excluding,
                ]
                .into_iter()
                .flatten()
                {
                    check_field("version bound", bound).map_err(&invalid)?;
                }
                criteria.push(NvdCriterion {
                    vulnerable: wire.vulnerable,
                    criteria: wire.criteria,
                    bounds: VersionBounds {
                        start_including: wire.version_start_including,
                        start_excluding: wire.version_start_excluding,
                        end_including: wire.version_end_including,
                        end_excluding: wire.version_end_excluding,
                    },
                });
            }
        }
    }
    Ok(NvdAdvisory {
        id,
        published: cve.published,
        last_modified: cve.last_modified,
        status: cve.vuln_status,
        cvss,
        criteria,
    })
}

fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), NvdError> {
    if count > limit {
        return Err(NvdError::TooMany { what, count, limit });
    }
    Ok(())
}

fn check_field(what: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_FIELD_LEN {
        return Err(format!(
            "the {what} is {} bytes, longer than the {MAX_FIELD_LEN}-byte limit",
            value.len()
        ));
    }
    Ok(())
}

fn bounded_for_message(text: &str) -> String {
    if text.len() <= 80 {
        return text.to_owned();
    }
    let mut end = 80;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

// ----- firmware names ---------------------------------------------------------------------------

/// Firmware component names (as Yocto recipes and SBOM tools without CPEs write them) and the
/// (part, vendor, product) NVD files them under. Explicit, not guessed: a wrong vendor would
/// match another project's CVEs (docs/decisions/0045-cpe-and-nvd-matching.md).
pub const FIRMWARE_NAMES: [(&str, &str, &str, &str); 11] = [
    ("busybox", "a", "busybox", "busybox"),
    ("u-boot", "a", "denx", "u-boot"),
    ("uboot", "a", "denx", "u-boot"),
    ("linux", "o", "linux", "linux_kernel"),
    ("kernel", "o", "linux", "linux_kernel"),
    ("linux-kernel", "o", "linux", "linux_kernel"),
    ("linux-yocto", "o", "linux", "linux_kernel"),
    ("openssl", "a", "openssl", "openssl"),
    ("glibc", "a", "gnu", "glibc"),
    ("zlib", "a", "zlib", "zlib"),
    ("dropbear", "a", "dropbear_ssh_project", "dropbear_ssh"),
];

/// The CPE name NVD files a firmware component name under, if the name is in
/// [`FIRMWARE_NAMES`] (compared case-insensitively).
pub fn firmware_cpe(name: &str) -> Option<CpeName> {
    let name = name.trim().to_ascii_lowercase();
    FIRMWARE_NAMES
        .iter()
        .find(|(known, ..)| *known == name)
        .map(|(_, part, vendor, product)| CpeName::product(part, vendor, product))
}

// ----- the index ------------------------------------------------------------------------------

/// A criterion NVD gave that the index could not use, reported rather than dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpeIndexProblem {
    pub advisory: String,
    pub criteria: String,
    pub problem: String,
}

#[derive(Debug)]
struct IndexedCriterion {
    advisory: Arc<str>,
    criterion: CpeCriterion,
    /// `versionEndExcluding`: the first version without the flaw.
    fixed: Option<String>,
}

/// (vendor, product), lowercased.
type ProductKey = (String, String);

/// What CPE matching found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpeMatchReport {
    /// One per (component, advisory), sorted by purl then advisory. A component without a purl
    /// is named in `purl` by its CPE (given, or derived from its name).
    pub matches: Vec<Match>,
    /// Components neither a CPE nor a known firmware name identifies (and not of a package
    /// ecosystem, whose components OSV matches).
    pub unidentified: Vec<Unidentified>,
    /// Components that state no version.
    pub unversioned: Vec<ComponentRef>,
    /// Components whose version the firmware rule cannot order: matched by equal text and
    /// every-version criteria only.
    pub unordered_versions: Vec<UnorderedVersion>,
}

/// NVD advisories' vulnerable criteria by (vendor, product).
#[derive(Debug, Default)]
pub struct CpeIndex {
    criteria: HashMap<ProductKey, Vec<IndexedCriterion>>,
    keys_by_id: HashMap<String, Vec<ProductKey>>,
    problems: Vec<CpeIndexProblem>,
    withdrawn: usize,
}

impl CpeIndex {
    pub fn new() -> CpeIndex {
        CpeIndex::default()
    }

    /// Builds an index; withdrawn (`Rejected`) CVEs are skipped.
    pub fn build(advisories: impl IntoIterator<Item = NvdAdvisory>) -> CpeIndex {
        let mut index = CpeIndex::new();
        for advisory in advisories {
            index.insert(advisory);
        }
        index
    }

    /// Adds a CVE, replacing an earlier record with the same id; a `Rejected` one only removes
    /// the earlier record.
    pub fn insert(&mut self, advisory: NvdAdvisory) {
        self.remove(&advisory.id);
        if advisory.is_withdrawn() {
            self.withdrawn += 1;
            return;
        }
        let id: Arc<str> = Arc::from(advisory.id.as_str());
        let mut keys = Vec::new();
        for nvd in advisory.criteria.into_iter().filter(|nvd| nvd.vulnerable) {
            let criterion = match CpeCriterion::new(&nvd.criteria, &nvd.bounds) {
                Ok(criterion) => criterion,
                Err(error) => {
                    self.problems.push(CpeIndexProblem {
                        advisory: advisory.id.clone(),
                        criteria: nvd.criteria,
                        problem: format!("criterion not matched: {error}"),
                    });
                    continue;
                }
            };
            let (Some(vendor), Some(product)) = (
                criterion.name.vendor.value(),
                criterion.name.product.value(),
            ) else {
                self.problems.push(CpeIndexProblem {
                    advisory: advisory.id.clone(),
                    criteria: nvd.criteria,
                    problem:
                        "criterion names no vendor and product: it cannot be matched to a component"
                            .to_owned(),
                });
                continue;
            };
            let key = (vendor.to_owned(), product.to_owned());
            self.criteria
                .entry(key.clone())
                .or_default()
                .push(IndexedCriterion {
                    advisory: Arc::clone(&id),
                    criterion,
                    fixed: nvd.bounds.end_excluding,
                });
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        self.keys_by_id.insert(advisory.id, keys);
    }

    /// Removes a CVE by id; whether it was indexed.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(keys) = self.keys_by_id.remove(id) else {
            return false;
        };
        for key in keys {
            if let Some(criteria) = self.criteria.get_mut(&key) {
                criteria.retain(|indexed| &*indexed.advisory != id);
                if criteria.is_empty() {
                    self.criteria.remove(&key);
                }
            }
        }
        true
    }

    /// How many CVEs are indexed.
    pub fn len(&self) -> usize {
        self.keys_by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys_by_id.is_empty()
    }

    /// How many withdrawn CVEs were skipped.
    pub fn withdrawn_skipped(&self) -> usize {
        self.withdrawn
    }

    /// The criteria that could not be used.
    pub fn problems(&self) -> &[CpeIndexProblem] {
        &self.problems
    }

    /// Matches components by CPE (see the module documentation for which components).
    pub fn match_cpe_components(&self, components: &[Component]) -> CpeMatchReport {
        let mut report = CpeMatchReport::default();
        let mut seen: BTreeSet<(String, String, String)> = BTreeSet::new();
        for component in components {
            let name = match cpe_identity(component) {
                Identity::Cpe(name) => name,
                Identity::PackageEcosystem => continue,
                Identity::Unknown(reason) => {
                    report.unidentified.push(Unidentified {
                        component: component.into(),
                        reason,
                    });
                    continue;
                }
            };
            // The CPE's own version when it states one, else the SBOM's.
            let version_text = match &name.version {
                CpeValue::Value(version) => version.clone(),
                CpeValue::NotApplicable => "-".to_owned(),
                CpeValue::Any => component_version(component),
            };
            if version_text.is_empty() {
                report.unversioned.push(component.into());
                continue;
            }
            let (Some(vendor), Some(product)) = (name.vendor.value(), name.product.value()) else {
                continue;
            };
            let Some(criteria) = self.criteria.get(&(vendor.to_owned(), product.to_owned())) else {
                continue;
            };
            let parsed = FirmwareVersion::parse(&version_text);
            let candidate = if name.version == CpeValue::NotApplicable {
                None
            } else {
                Some(match &parsed {
                    Ok(parsed) => CandidateVersion::Ordered(parsed, &version_text),
                    Err(error) => {
                        report.unordered_versions.push(UnorderedVersion {
                            component: component.into(),
                            reason: error.to_string(),
                        });
                        CandidateVersion::Text(&version_text)
                    }
                })
            };
            let identity = match &component.purl {
                Some(purl) => purl.clone(),
                None => match &component.cpe {
                    Some(cpe) => cpe.trim().to_owned(),
                    None => name.to_formatted_string(),
                },
            };
            let mut found: Vec<(&str, Vec<String>)> = Vec::new();
            for indexed in criteria {
                if !indexed.criterion.matches(&name, candidate) {
                    continue;
                }
                let fixed = indexed.fixed.iter().cloned();
                match found
                    .iter_mut()
                    .find(|(advisory, _)| *advisory == &*indexed.advisory)
                {
                    Some((_, all_fixed)) => {
                        for version in fixed {
                            if !all_fixed.contains(&version) {
                                all_fixed.push(version);
                            }
                        }
                    }
                    None => found.push((&indexed.advisory, fixed.collect())),
                }
            }
            for (advisory, fixed) in found {
                if !seen.insert((identity.clone(), version_text.clone(), advisory.to_owned())) {
                    continue;
                }
                report.matches.push(Match {
                    purl: identity.clone(),
                    name: component.name.clone(),
                    version: version_text.clone(),
                    advisory: advisory.to_owned(),
                    aliases: Vec::new(),
                    fixed,
                });
            }
        }
        report
            .matches
            .sort_by(|a, b| (&a.purl, &a.advisory).cmp(&(&b.purl, &b.advisory)));
        report
    }
}

enum Identity {
    Cpe(Box<CpeName>),
    /// A component of a package ecosystem without a CPE: OSV's to match.
    PackageEcosystem,
    Unknown(String),
}

fn cpe_identity(component: &Component) -> Identity {
    if let Some(cpe) = &component.cpe {
        return match CpeName::parse(cpe) {
            Ok(name) if name.vendor.value().is_some() && name.product.value().is_some() => {
                Identity::Cpe(Box::new(name))
            }
            Ok(_) => Identity::Unknown(format!(
                "the CPE `{}` names no vendor and product: give both",
                bounded_for_message(cpe)
            )),
            Err(error) => Identity::Unknown(format!("the component's CPE is not usable: {error}")),
        };
    }
    let purl = component
        .purl
        .as_deref()
        .filter(|purl| purl.len() <= MAX_FIELD_LEN * 4)
        .and_then(|purl| packageurl::PackageUrl::from_str(purl.trim()).ok());
    let name = match &purl {
        Some(purl) if Ecosystem::from_purl_type(purl.ty()).is_some() => {
            return Identity::PackageEcosystem;
        }
        Some(purl) => purl.name().to_owned(),
        None => component.name.clone(),
    };
    match firmware_cpe(&name) {
        Some(name) => Identity::Cpe(Box::new(name)),
        None => Identity::Unknown(format!(
            "no CPE, and `{}` is not a firmware name Rampart knows ({}): give the component a CPE in the SBOM",
            bounded_for_message(&name),
            FIRMWARE_NAMES
                .iter()
                .map(|(name, ..)| *name)
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The SBOM's `version`, else its purl's.
fn component_version(component: &Component) -> String {
    let stated = component.version.trim();
    if !stated.is_empty() {
        return stated.to_owned();
    }
    component
        .purl
        .as_deref()
        .and_then(|purl| packageurl::PackageUrl::from_str(purl.trim()).ok())
        .and_then(|purl| purl.version().map(str::to_owned))
        .unwrap_or_default()
}
