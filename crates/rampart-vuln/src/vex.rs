//! VEX: a vendor's statements that a component is, or is not, affected by a vulnerability.
//! Read from CycloneDX VEX (`vulnerabilities[].analysis`, 1.4 to 1.6) and OpenVEX
//! (`statements[]`, v0.0.x and v0.2.x), over the document's own bytes: a signed envelope is
//! opened first by whoever checks the vendor's signature.
//!
//! When several statements speak about the same vulnerability and component,
//! [`VexSet::applies`] picks one by a stated rule: the most recent statement wins; a statement
//! without a time is older than any with one; between statements of the same time the more
//! severe status wins (affected, then under investigation, then fixed, then not affected), so a
//! conflict never hides a vulnerability.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::component::Component;
use crate::cpe::{CpeName, CpeValue};
use crate::json_limits;

/// Largest VEX document accepted, in bytes.
pub const MAX_VEX_BYTES: usize = 16 * 1024 * 1024;
/// Deepest nesting accepted (real VEX documents nest under 10 levels).
pub const MAX_VEX_DEPTH: usize = 32;
/// Most statements one document may make.
pub const MAX_STATEMENTS: usize = 100_000;
/// Most products (and subcomponents) one statement may name.
pub const MAX_PRODUCTS_PER_STATEMENT: usize = 10_000;
/// Longest identifier (vulnerability id, alias, product, justification) accepted, in bytes.
pub const MAX_ID_BYTES: usize = 4096;
/// Longest free text (CycloneDX `detail`, OpenVEX `impact_statement`) accepted, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// CycloneDX versions with `vulnerabilities` (added in 1.4).
pub const CYCLONEDX_VEX_SPEC_VERSIONS: &[&str] = &["1.4", "1.5", "1.6"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VexFormat {
    CycloneDx,
    OpenVex,
}

/// What a statement says, in OpenVEX's four words (CycloneDX states map onto them:
/// `not_affected` and `false_positive` are not affected, `resolved` and
/// `resolved_with_pedigree` fixed, `exploitable` affected, `in_triage` under investigation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Fixed,
    UnderInvestigation,
    Affected,
}

impl VexStatus {
    /// Rank for the tie rule: higher is more severe and wins between equally recent
    /// statements.
    fn severity_rank(self) -> u8 {
        match self {
            VexStatus::NotAffected => 0,
            VexStatus::Fixed => 1,
            VexStatus::UnderInvestigation => 2,
            VexStatus::Affected => 3,
        }
    }
}

/// One statement: a vulnerability, the products it is about, and what the vendor says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VexStatement {
    pub format: VexFormat,
    /// The vulnerability's id (`CVE-2019-10906`, `GHSA-…`, `PYSEC-…`).
    pub vulnerability: String,
    /// Other ids of the same vulnerability the statement gives.
    pub aliases: Vec<String>,
    /// The products and components it is about: purls, CycloneDX `bom-ref`s or BOM-Links.
    pub products: Vec<String>,
    pub status: VexStatus,
    /// The status as the document spells it (`false_positive`, `resolved`, `not_affected`...).
    pub stated_status: String,
    /// Why it is not affected (`code_not_reachable`, `vulnerable_code_not_present`...), kept
    /// as given.
    pub justification: Option<String>,
    /// The vendor's words: CycloneDX `analysis.detail`, OpenVEX `impact_statement`.
    pub detail: Option<String>,
    /// When it was made, Unix seconds: the statement's own time, else the document's.
    pub timestamp: Option<i64>,
}

impl VexStatement {
    /// Whether this statement takes the vulnerability off the component (not affected, or
    /// fixed in it).
    pub fn suppresses(&self) -> bool {
        matches!(self.status, VexStatus::NotAffected | VexStatus::Fixed)
    }
}

/// Why a VEX document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VexError {
    #[error("the VEX document is {size} bytes, over the {max}-byte limit: split it")]
    TooLarge { size: usize, max: usize },
    #[error(
        "the VEX document nests objects and arrays deeper than {max} levels (at byte {offset}): check that this is the right file"
    )]
    TooDeep { max: usize, offset: usize },
    #[error("the VEX document makes more than {max} statements: split it")]
    TooManyStatements { max: usize },
    #[error("VEX statement {index} names more than {max} products: split it")]
    TooManyProducts { index: usize, max: usize },
    #[error(
        "the {field} of VEX statement {index} is {len} bytes, over the {max}-byte limit: check the document"
    )]
    FieldTooLong {
        field: &'static str,
        index: usize,
        len: usize,
        max: usize,
    },
    #[error("the VEX document is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the document is neither CycloneDX VEX (\"bomFormat\": \"CycloneDX\") nor OpenVEX (\"@context\": \"https://openvex.dev/ns...\"): export it as one of them"
    )]
    UnknownFormat,
    #[error(
        "CycloneDX version {found:?} carries no VEX (supported: 1.4, 1.5, 1.6): export it in a supported version"
    )]
    UnsupportedSpecVersion { found: String },
    #[error("VEX statement {index} is invalid: {reason}")]
    InvalidStatement { index: usize, reason: String },
    #[error("the {format:?} VEX document is malformed: {reason}")]
    Malformed { format: VexFormat, reason: String },
}

/// Reads a CycloneDX VEX or OpenVEX document's statements. CycloneDX vulnerabilities without
/// an `analysis` make no statement and are left out.
pub fn parse_vex(bytes: &[u8]) -> Result<Vec<VexStatement>, VexError> {
    if bytes.len() > MAX_VEX_BYTES {
        return Err(VexError::TooLarge {
            size: bytes.len(),
            max: MAX_VEX_BYTES,
        });
    }
    if let Err(deep) = json_limits::check_depth(bytes, MAX_VEX_DEPTH) {
        return Err(VexError::TooDeep {
            max: deep.max_depth,
            offset: deep.offset,
        });
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            VexError::UnknownFormat
        } else {
            VexError::NotJson(e.to_string())
        }
    })?;
    if probe.bom_format.as_deref() == Some("CycloneDX") {
        let found = probe.spec_version.unwrap_or_default();
        if !CYCLONEDX_VEX_SPEC_VERSIONS.contains(&found.as_str()) {
            return Err(VexError::UnsupportedSpecVersion { found });
        }
        let document: CdxDocument = typed(bytes, VexFormat::CycloneDx)?;
        cyclonedx_statements(document)
    } else if probe
        .context
        .as_deref()
        .is_some_and(|c| c.starts_with("https://openvex.dev/ns"))
    {
        let document: OpenVexDocument = typed(bytes, VexFormat::OpenVex)?;
        openvex_statements(document)
    } else {
        Err(VexError::UnknownFormat)
    }
}

fn typed<T: serde::de::DeserializeOwned>(bytes: &[u8], format: VexFormat) -> Result<T, VexError> {
    serde_json::from_slice(bytes).map_err(|e| VexError::Malformed {
        format,
        reason: e.to_string(),
    })
}

#[derive(Deserialize)]
struct Probe {
    #[serde(rename = "bomFormat")]
    bom_format: Option<String>,
    #[serde(rename = "specVersion")]
    spec_version: Option<String>,
    #[serde(rename = "@context")]
    context: Option<String>,
}

#[derive(Deserialize)]
struct CdxDocument {
    #[serde(default)]
    metadata: Option<CdxMetadata>,
    /// The components a standalone VEX document describes, so its `affects[].ref`s can name
    /// them by `bom-ref` (and through them by purl or CPE).
    #[serde(default)]
    components: Vec<CdxComponent>,
    #[serde(default)]
    vulnerabilities: Vec<CdxVulnerability>,
}

#[derive(Deserialize)]
struct CdxMetadata {
    timestamp: Option<String>,
    component: Option<CdxComponent>,
}

#[derive(Deserialize)]
struct CdxComponent {
    #[serde(rename = "bom-ref")]
    bom_ref: Option<String>,
    purl: Option<String>,
    cpe: Option<String>,
    #[serde(default)]
    components: Vec<CdxComponent>,
}

impl CdxComponent {
    /// Each described component's `bom-ref` -> its purl and CPE (nesting is bounded by the
    /// document's depth limit, checked before parsing).
    fn identities(&self, out: &mut HashMap<String, Vec<String>>) {
        // A `bom-ref` is unique in a valid document; the first wins, so a ref names at most
        // three products whatever the document repeats.
        if let Some(reference) = &self.bom_ref
            && !out.contains_key(reference)
        {
            let ids = self.purl.iter().chain(&self.cpe).cloned().collect();
            out.insert(reference.clone(), ids);
        }
        for sub in &self.components {
            sub.identities(out);
        }
    }
}

/// The products an `affects[].ref` names: the ref itself (a `bom-ref` of the SBOM, or a
/// BOM-Link), and the purl and CPE of the component the VEX document itself describes under
/// that `bom-ref` (or under a BOM-Link's fragment).
fn affected_products(reference: String, described: &HashMap<String, Vec<String>>) -> Vec<String> {
    let local = reference
        .strip_prefix("urn:cdx:")
        .and_then(|link| link.rsplit_once('#'))
        .map_or(reference.as_str(), |(_, fragment)| fragment);
    let mut products: Vec<String> = described.get(local).cloned().unwrap_or_default();
    products.insert(0, reference);
    products
}

#[derive(Deserialize)]
struct CdxVulnerability {
    id: String,
    #[serde(default)]
    references: Vec<CdxReference>,
    analysis: Option<CdxAnalysis>,
    #[serde(default)]
    affects: Vec<CdxAffects>,
    updated: Option<String>,
    published: Option<String>,
}

#[derive(Deserialize)]
struct CdxReference {
    id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CdxAnalysis {
    state: Option<String>,
    justification: Option<String>,
    detail: Option<String>,
    last_updated: Option<String>,
    first_issued: Option<String>,
}

#[derive(Deserialize)]
struct CdxAffects {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Deserialize)]
struct OpenVexDocument {
    timestamp: Option<String>,
    #[serde(default)]
    statements: Vec<OpenVexStatement>,
}

#[derive(Deserialize)]
struct OpenVexStatement {
    vulnerability: OpenVexVulnerability,
    #[serde(default)]
    products: Vec<OpenVexProduct>,
    status: String,
    justification: Option<String>,
    impact_statement: Option<String>,
    timestamp: Option<String>,
    last_updated: Option<String>,
}

/// OpenVEX v0.2 names the vulnerability in an object; v0.0.x by a bare string.
#[derive(Deserialize)]
#[serde(untagged)]
enum OpenVexVulnerability {
    Named {
        name: String,
        #[serde(default)]
        aliases: Vec<String>,
    },
    Bare(String),
}

/// OpenVEX v0.2 products are objects (an `@id`, identifiers, subcomponents); v0.0.x strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OpenVexProduct {
    Described {
        #[serde(rename = "@id")]
        id: Option<String>,
        #[serde(default)]
        identifiers: BTreeMap<String, String>,
        #[serde(default)]
        subcomponents: Vec<OpenVexProduct>,
    },
    Bare(String),
}

impl OpenVexProduct {
    /// Every id the product and its subcomponents give (bounded by the caller's check).
    fn ids(self, out: &mut Vec<String>) {
        match self {
            OpenVexProduct::Bare(id) => out.push(id),
            OpenVexProduct::Described {
                id,
                identifiers,
                subcomponents,
            } => {
                out.extend(id);
                out.extend(identifiers.into_values());
                for sub in subcomponents {
                    sub.ids(out);
                }
            }
        }
    }
}

fn unix_time(index: usize, field: &'static str, text: &str) -> Result<i64, VexError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| VexError::InvalidStatement {
            index,
            reason: format!("{field} {text:?} is not an RFC 3339 time: {e}"),
        })
}

fn first_time(
    index: usize,
    candidates: &[(&'static str, Option<&String>)],
) -> Result<Option<i64>, VexError> {
    for &(field, text) in candidates {
        if let Some(text) = text {
            return unix_time(index, field, text).map(Some);
        }
    }
    Ok(None)
}

/// Checks one statement's sizes, and that it names a vulnerability and only non-empty
/// products (an empty id would match nothing, silently).
fn bounded(statement: &VexStatement, index: usize) -> Result<(), VexError> {
    if statement.vulnerability.is_empty() {
        return Err(VexError::InvalidStatement {
            index,
            reason: "the vulnerability id is empty".into(),
        });
    }
    if statement.products.iter().any(String::is_empty) {
        return Err(VexError::InvalidStatement {
            index,
            reason: "a product id is empty".into(),
        });
    }
    if statement.products.len() + statement.aliases.len() > MAX_PRODUCTS_PER_STATEMENT {
        return Err(VexError::TooManyProducts {
            index,
            max: MAX_PRODUCTS_PER_STATEMENT,
        });
    }
    let ids = std::iter::once(("vulnerability", &statement.vulnerability))
        .chain(statement.aliases.iter().map(|a| ("alias", a)))
        .chain(statement.products.iter().map(|p| ("product", p)))
        .chain(statement.justification.iter().map(|j| ("justification", j)));
    for (field, value) in ids {
        if value.len() > MAX_ID_BYTES {
            return Err(VexError::FieldTooLong {
                field,
                index,
                len: value.len(),
                max: MAX_ID_BYTES,
            });
        }
    }
    if let Some(detail) = &statement.detail
        && detail.len() > MAX_TEXT_BYTES
    {
        return Err(VexError::FieldTooLong {
            field: "detail",
            index,
            len: detail.len(),
            max: MAX_TEXT_BYTES,
        });
    }
    Ok(())
}

fn cyclonedx_statements(document: CdxDocument) -> Result<Vec<VexStatement>, VexError> {
    if document.vulnerabilities.len() > MAX_STATEMENTS {
        return Err(VexError::TooManyStatements {
            max: MAX_STATEMENTS,
        });
    }
    let mut described = HashMap::new();
    for component in document
        .metadata
        .as_ref()
        .and_then(|m| m.component.as_ref())
        .into_iter()
        .chain(&document.components)
    {
        component.identities(&mut described);
    }
    let document_time = document.metadata.and_then(|m| m.timestamp);
    let mut statements = Vec::new();
    for (index, vulnerability) in document.vulnerabilities.into_iter().enumerate() {
        let Some(analysis) = vulnerability.analysis else {
            continue;
        };
        let invalid = |reason: String| VexError::InvalidStatement { index, reason };
        let stated_status = analysis.state.ok_or_else(|| {
            invalid(format!(
                "the analysis of {} has no \"state\"",
                vulnerability.id
            ))
        })?;
        let status = match stated_status.as_str() {
            "not_affected" | "false_positive" => VexStatus::NotAffected,
            "resolved" | "resolved_with_pedigree" => VexStatus::Fixed,
            "exploitable" => VexStatus::Affected,
            "in_triage" => VexStatus::UnderInvestigation,
            other => {
                return Err(invalid(format!(
                    "analysis.state {other:?} is not one of not_affected, false_positive, resolved, resolved_with_pedigree, exploitable, in_triage"
                )));
            }
        };
        let timestamp = first_time(
            index,
            &[
                ("analysis.lastUpdated", analysis.last_updated.as_ref()),
                ("updated", vulnerability.updated.as_ref()),
                ("analysis.firstIssued", analysis.first_issued.as_ref()),
                ("published", vulnerability.published.as_ref()),
                ("metadata.timestamp", document_time.as_ref()),
            ],
        )?;
        let statement = VexStatement {
            format: VexFormat::CycloneDx,
            vulnerability: vulnerability.id,
            aliases: vulnerability.references.into_iter().map(|r| r.id).collect(),
            products: vulnerability
                .affects
                .into_iter()
                .flat_map(|a| affected_products(a.reference, &described))
                .collect(),
            status,
            stated_status,
            justification: analysis.justification,
            detail: analysis.detail,
            timestamp,
        };
        bounded(&statement, index)?;
        statements.push(statement);
    }
    Ok(statements)
}

fn openvex_statements(document: OpenVexDocument) -> Result<Vec<VexStatement>, VexError> {
    if document.statements.len() > MAX_STATEMENTS {
        return Err(VexError::TooManyStatements {
            max: MAX_STATEMENTS,
        });
    }
    let mut statements = Vec::with_capacity(document.statements.len());
    for (index, raw) in document.statements.into_iter().enumerate() {
        let invalid = |reason: String| VexError::InvalidStatement { index, reason };
        let status = match raw.status.as_str() {
            "not_affected" => VexStatus::NotAffected,
            "affected" => VexStatus::Affected,
            "fixed" => VexStatus::Fixed,
            "under_investigation" => VexStatus::UnderInvestigation,
            other => {
                return Err(invalid(format!(
                    "status {other:?} is not one of not_affected, affected, fixed, under_investigation"
                )));
            }
        };
        // OpenVEX requires a reason for every not_affected: without one the claim is unchecked.
        if status == VexStatus::NotAffected
            && raw.justification.is_none()
            && raw.impact_statement.is_none()
        {
            return Err(invalid(
                "a not_affected statement must give a justification or an impact_statement".into(),
            ));
        }
        let (vulnerability, aliases) = match raw.vulnerability {
            OpenVexVulnerability::Named { name, aliases } => (name, aliases),
            OpenVexVulnerability::Bare(name) => (name, Vec::new()),
        };
        let mut products = Vec::new();
        for product in raw.products {
            product.ids(&mut products);
        }
        let timestamp = first_time(
            index,
            &[
                ("last_updated", raw.last_updated.as_ref()),
                ("timestamp", raw.timestamp.as_ref()),
                ("document timestamp", document.timestamp.as_ref()),
            ],
        )?;
        let statement = VexStatement {
            format: VexFormat::OpenVex,
            vulnerability,
            aliases,
            products,
            status,
            stated_status: raw.status,
            justification: raw.justification,
            detail: raw.impact_statement,
            timestamp,
        };
        bounded(&statement, index)?;
        statements.push(statement);
    }
    Ok(statements)
}

/// The part of a purl that names a package version, without qualifiers or subpath
/// (`pkg:deb/debian/libc6@2.36?arch=amd64` -> `pkg:deb/debian/libc6@2.36`).
fn purl_without_qualifiers(purl: &str) -> &str {
    let end = purl.find(['?', '#']).unwrap_or(purl.len());
    &purl[..end]
}

/// The CPE a component stands for in VEX: the one its SBOM gives, else the one its firmware
/// name stands for (`busybox` -> `cpe:2.3:a:busybox:busybox`), with the component's version
/// where the CPE leaves the version open.
fn component_cpe(component: &Component) -> Option<CpeName> {
    let mut cpe = match &component.cpe {
        Some(given) => CpeName::parse(given).ok()?,
        None => crate::nvd::firmware_cpe(&component.name)?,
    };
    let version = component.version.trim();
    if cpe.version == CpeValue::Any && !version.is_empty() {
        cpe.version = CpeValue::Value(version.to_ascii_lowercase());
    }
    Some(cpe)
}

/// Whether a statement's product, a CPE 2.3 name (OpenVEX `identifiers.cpe23`, or the `cpe` of
/// the CycloneDX component its `affects[].ref` names), names this component. Part, vendor and
/// product must be given and equal; a product version `*` covers every version; any other
/// attribute the statement gives must equal the component's. Stricter than NVD's matching on
/// purpose: a statement that hides a vulnerability must name the component plainly.
fn cpe_names_component(product: &str, component: &Component) -> bool {
    if !product.starts_with("cpe:2.3:") {
        return false;
    }
    let (Ok(stated), Some(actual)) = (CpeName::parse(product), component_cpe(component)) else {
        return false;
    };
    let given_and_equal = |a: &CpeValue, b: &CpeValue| a.value().is_some() && a == b;
    if !(given_and_equal(&stated.part, &actual.part)
        && given_and_equal(&stated.vendor, &actual.vendor)
        && given_and_equal(&stated.product, &actual.product))
    {
        return false;
    }
    [
        (&stated.version, &actual.version),
        (&stated.update, &actual.update),
        (&stated.edition, &actual.edition),
        (&stated.language, &actual.language),
        (&stated.sw_edition, &actual.sw_edition),
        (&stated.target_sw, &actual.target_sw),
        (&stated.target_hw, &actual.target_hw),
        (&stated.other, &actual.other),
    ]
    .into_iter()
    .all(|(stated, actual)| *stated == CpeValue::Any || stated == actual)
}

/// Whether a statement's product names this component: its purl (a product purl without
/// qualifiers covers every qualified form; one without a version covers every version), its
/// `bom-ref`, a CycloneDX BOM-Link whose fragment is its `bom-ref`, or its CPE
/// ([`cpe_names_component`]).
fn names_component(product: &str, component: &Component) -> bool {
    if cpe_names_component(product, component) {
        return true;
    }
    if !component.reference.is_empty()
        && (product == component.reference
            || product
                .strip_prefix("urn:cdx:")
                .and_then(|link| link.rsplit_once('#'))
                .is_some_and(|(_, fragment)| fragment == component.reference))
    {
        return true;
    }
    let Some(purl) = &component.purl else {
        return false;
    };
    if product == purl {
        return true;
    }
    if !product.starts_with("pkg:") || product.contains(['?', '#']) {
        return false;
    }
    let versioned = purl_without_qualifiers(purl);
    if product == versioned {
        return true;
    }
    // A product without a version: every version of the package.
    !product.contains('@')
        && versioned
            .rsplit_once('@')
            .is_some_and(|(package, _)| package == product)
}

/// Statements indexed by vulnerability id and alias.
#[derive(Debug, Clone, Default)]
pub struct VexSet {
    statements: Vec<VexStatement>,
    by_id: HashMap<String, Vec<usize>>,
}

impl VexSet {
    pub fn new(statements: Vec<VexStatement>) -> VexSet {
        let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
        for (index, statement) in statements.iter().enumerate() {
            let ids: HashSet<&String> = std::iter::once(&statement.vulnerability)
                .chain(&statement.aliases)
                .collect();
            for id in ids {
                by_id.entry(id.clone()).or_default().push(index);
            }
        }
        VexSet { statements, by_id }
    }

    pub fn statements(&self) -> &[VexStatement] {
        &self.statements
    }

    /// The statement that decides whether the advisory known by `advisory_ids` (its id and
    /// aliases) affects `component`, or `None` if no statement speaks about both. Between
    /// several: the most recent wins (a statement without a time is older than any with
    /// one); between equally recent ones the more severe status wins (affected, under
    /// investigation, fixed, not affected), so a conflict never hides a vulnerability.
    pub fn applies(&self, advisory_ids: &[&str], component: &Component) -> Option<&VexStatement> {
        self.applies_at(advisory_ids, component)
            .map(|index| &self.statements[index])
    }

    /// As [`VexSet::applies`], the deciding statement's position in [`VexSet::statements`] (so
    /// a caller can tell which document it came from).
    pub fn applies_at(&self, advisory_ids: &[&str], component: &Component) -> Option<usize> {
        let mut candidates: Vec<usize> = advisory_ids
            .iter()
            .filter_map(|id| self.by_id.get(*id))
            .flatten()
            .copied()
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        candidates
            .into_iter()
            .filter(|&index| {
                self.statements[index]
                    .products
                    .iter()
                    .any(|p| names_component(p, component))
            })
            .max_by_key(|&index| {
                let s = &self.statements[index];
                (s.timestamp.is_some(), s.timestamp, s.status.severity_rank())
            })
    }
}
