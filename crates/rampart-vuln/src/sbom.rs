//! SBOMs read into components: CycloneDX JSON (1.2 to 1.6) and SPDX JSON (2.2, 2.3), and a
//! Debian dpkg status file (a firmware root file system's package list) turned into one.
//!
//! Limits come first, before any parsing: the size, then the nesting depth on the raw bytes
//! (so serde never recurses deeper than that), then, while parsing, the number of components
//! and each field's length. Components nested in CycloneDX `components[].components` are
//! flattened as they are read, so the count is checked before a component is stored, not after
//! the whole tree is built. Hand-written visitors over the few fields Rampart reads, not a full
//! SBOM model: see docs/decisions/0039-sbom-and-vex-parsing.md.

use std::collections::HashSet;
use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::component::Component;
use crate::json_limits;

/// Largest SBOM accepted, in bytes.
pub const MAX_SBOM_BYTES: usize = 64 * 1024 * 1024;
/// Deepest nesting of objects and arrays accepted (CycloneDX nests components in components;
/// real documents stay well under 20 levels).
pub const MAX_SBOM_DEPTH: usize = 64;
/// Most components one SBOM may list (nested ones included, duplicates included).
pub const MAX_COMPONENTS: usize = 200_000;
/// Longest name, version, purl, CPE, group or reference accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 4096;

/// CycloneDX JSON versions read. JSON exists from 1.2; the fields read here have the same
/// meaning in every one of them.
pub const CYCLONEDX_SPEC_VERSIONS: &[&str] = &["1.2", "1.3", "1.4", "1.5", "1.6"];
/// SPDX JSON versions read (2.2 and 2.3 name packages and their external references alike).
pub const SPDX_VERSIONS: &[&str] = &["SPDX-2.2", "SPDX-2.3"];

/// Where an SBOM came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SbomFormat {
    CycloneDx,
    Spdx,
    /// A Debian dpkg status file (`/var/lib/dpkg/status`), see [`from_dpkg_status`].
    DpkgStatus,
}

impl fmt::Display for SbomFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SbomFormat::CycloneDx => "CycloneDX",
            SbomFormat::Spdx => "SPDX",
            SbomFormat::DpkgStatus => "dpkg status",
        })
    }
}

/// The components of one SBOM, each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sbom {
    pub format: SbomFormat,
    /// `specVersion` of CycloneDX, `spdxVersion` of SPDX; empty for a dpkg status file.
    pub spec_version: String,
    /// In document order (a CycloneDX parent before its nested components), the first of
    /// each set of duplicates kept.
    pub components: Vec<Component>,
    /// How many components were dropped as duplicates: the same purl, or, without a purl,
    /// the same group, name and version.
    pub duplicates: usize,
}

/// Why an SBOM was refused. Every message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SbomError {
    #[error(
        "the SBOM is {size} bytes, over the {max}-byte limit: attach the SBOM of one image, without file-level entries"
    )]
    TooLarge { size: usize, max: usize },
    #[error(
        "the SBOM nests objects and arrays deeper than {max} levels (at byte {offset}); no real SBOM nests that deep: check that this is the right file"
    )]
    TooDeep { max: usize, offset: usize },
    #[error("the SBOM lists more than {max} components: split it by image or release")]
    TooManyComponents { max: usize },
    #[error(
        "the {field} of component {position} (in document order) is {len} bytes, over the {max}-byte limit: check the generator's output"
    )]
    FieldTooLong {
        field: &'static str,
        position: usize,
        len: usize,
        max: usize,
    },
    #[error("the SBOM is not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "the document is neither CycloneDX JSON (\"bomFormat\": \"CycloneDX\") nor SPDX JSON (\"spdxVersion\"): {0}; export the SBOM as CycloneDX or SPDX JSON"
    )]
    UnknownFormat(String),
    #[error(
        "{format} version {found:?} is not supported (supported: {supported}): export the SBOM in a supported version"
    )]
    UnsupportedSpecVersion {
        format: SbomFormat,
        found: String,
        supported: String,
    },
    #[error("the {format} SBOM is malformed: {reason}")]
    Malformed { format: SbomFormat, reason: String },
}

/// Reads a CycloneDX or SPDX JSON SBOM, telling them apart by their top-level fields
/// (`bomFormat` or `spdxVersion`).
pub fn parse_sbom(bytes: &[u8]) -> Result<Sbom, SbomError> {
    if bytes.len() > MAX_SBOM_BYTES {
        return Err(SbomError::TooLarge {
            size: bytes.len(),
            max: MAX_SBOM_BYTES,
        });
    }
    if let Err(deep) = json_limits::check_depth(bytes, MAX_SBOM_DEPTH) {
        return Err(SbomError::TooDeep {
            max: deep.max_depth,
            offset: deep.offset,
        });
    }
    let mut collected = Collected::default();
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    // The depth is bounded above; serde_json's own recursion guard stays on as a second line.
    let parsed = DocumentSeed {
        collected: &mut collected,
    }
    .deserialize(&mut deserializer)
    .and_then(|top| deserializer.end().map(|()| top));
    let top = match parsed {
        Ok(top) => top,
        Err(e) => {
            // A limit found while parsing aborts it; report the limit, not serde's wrapper.
            if let Some(limit) = collected.limit.take() {
                return Err(limit);
            }
            if e.is_syntax() || e.is_eof() {
                return Err(SbomError::NotJson(e.to_string()));
            }
            return Err(SbomError::Malformed {
                format: top_format_hint(&collected),
                reason: e.to_string(),
            });
        }
    };
    let (format, spec_version) = identify(&top)?;
    let components = match format {
        SbomFormat::Spdx => collected.packages,
        _ => collected.components,
    };
    let (components, duplicates) = deduplicate(components);
    Ok(Sbom {
        format,
        spec_version,
        components,
        duplicates,
    })
}

/// What the top level says the document is.
#[derive(Default)]
struct TopLevel {
    bom_format: Option<String>,
    spec_version: Option<String>,
    spdx_version: Option<String>,
    saw_components: bool,
    /// CycloneDX's top-level `version`, `serialNumber` and `metadata` when present, checked
    /// for their types once the format is known.
    bom_version: Option<serde_json::Value>,
    serial_number: Option<serde_json::Value>,
    metadata_is_object: Option<bool>,
}

fn top_format_hint(collected: &Collected) -> SbomFormat {
    if collected.in_packages {
        SbomFormat::Spdx
    } else {
        SbomFormat::CycloneDx
    }
}

fn identify(top: &TopLevel) -> Result<(SbomFormat, String), SbomError> {
    match (&top.bom_format, &top.spdx_version) {
        (Some(_), Some(_)) => Err(SbomError::UnknownFormat(
            "it has both \"bomFormat\" and \"spdxVersion\"".into(),
        )),
        (Some(bom_format), None) => {
            if bom_format != "CycloneDX" {
                return Err(SbomError::UnknownFormat(format!(
                    "\"bomFormat\" is {bom_format:?}"
                )));
            }
            let found = top.spec_version.clone().unwrap_or_default();
            if !CYCLONEDX_SPEC_VERSIONS.contains(&found.as_str()) {
                return Err(SbomError::UnsupportedSpecVersion {
                    format: SbomFormat::CycloneDx,
                    found,
                    supported: CYCLONEDX_SPEC_VERSIONS.join(", "),
                });
            }
            let malformed = |reason: &str| {
                Err(SbomError::Malformed {
                    format: SbomFormat::CycloneDx,
                    reason: reason.into(),
                })
            };
            if top
                .bom_version
                .as_ref()
                .is_some_and(|v| v.as_u64().is_none_or(|n| n < 1))
            {
                return malformed("\"version\" must be an integer of at least 1");
            }
            if top
                .serial_number
                .as_ref()
                .is_some_and(|v| !v.as_str().is_some_and(|s| s.starts_with("urn:uuid:")))
            {
                return malformed("\"serialNumber\" must be a \"urn:uuid:\" string");
            }
            if top.metadata_is_object == Some(false) {
                return malformed("\"metadata\" must be an object");
            }
            Ok((SbomFormat::CycloneDx, found))
        }
        (None, Some(spdx_version)) => {
            if !SPDX_VERSIONS.contains(&spdx_version.as_str()) {
                return Err(SbomError::UnsupportedSpecVersion {
                    format: SbomFormat::Spdx,
                    found: spdx_version.clone(),
                    supported: SPDX_VERSIONS.join(", "),
                });
            }
            Ok((SbomFormat::Spdx, spdx_version.clone()))
        }
        (None, None) if top.saw_components => Err(SbomError::UnknownFormat(
            "it has \"components\" but no \"bomFormat\"".into(),
        )),
        (None, None) => Err(SbomError::UnknownFormat(
            "it has neither top-level field".into(),
        )),
    }
}

/// Keeps the first of each set of duplicates: the same purl, or, for a component without a
/// purl, the same group, name and version. Returns the kept components and how many were
/// dropped.
fn deduplicate(components: Vec<Component>) -> (Vec<Component>, usize) {
    #[derive(PartialEq, Eq, Hash)]
    enum Identity {
        Purl(String),
        Named(Option<String>, String, String),
    }
    let mut seen = HashSet::with_capacity(components.len());
    let mut kept = Vec::with_capacity(components.len());
    let mut duplicates = 0;
    for component in components {
        let identity = match &component.purl {
            Some(purl) => Identity::Purl(purl.clone()),
            None => Identity::Named(
                component.group.clone(),
                component.name.clone(),
                component.version.clone(),
            ),
        };
        if seen.insert(identity) {
            kept.push(component);
        } else {
            duplicates += 1;
        }
    }
    (kept, duplicates)
}

/// What the visitors gather while serde walks the document once.
#[derive(Default)]
struct Collected {
    /// CycloneDX components, flattened in document order.
    components: Vec<Component>,
    /// SPDX packages.
    packages: Vec<Component>,
    /// Set when a limit stops the parse (the serde error only carries it as text).
    limit: Option<SbomError>,
    in_packages: bool,
}

impl Collected {
    /// Reserves the next component's position, or records that the count limit is passed.
    fn admit(&mut self) -> Result<usize, ()> {
        let stored = self.components.len() + self.packages.len();
        if stored >= MAX_COMPONENTS {
            self.limit = Some(SbomError::TooManyComponents {
                max: MAX_COMPONENTS,
            });
            return Err(());
        }
        Ok(stored)
    }

    fn bounded(
        &mut self,
        field: &'static str,
        position: usize,
        value: String,
    ) -> Result<String, ()> {
        if value.len() > MAX_FIELD_BYTES {
            self.limit = Some(SbomError::FieldTooLong {
                field,
                position,
                len: value.len(),
                max: MAX_FIELD_BYTES,
            });
            return Err(());
        }
        Ok(value)
    }
}

fn limit_error<E: de::Error>() -> E {
    E::custom("an SBOM limit was passed")
}

struct DocumentSeed<'a> {
    collected: &'a mut Collected,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = TopLevel;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<TopLevel, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = TopLevel;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object (a CycloneDX or SPDX document)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<TopLevel, A::Error> {
        let mut top = TopLevel::default();
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "bomFormat" => top.bom_format = Some(map.next_value()?),
                "specVersion" => top.spec_version = Some(map.next_value()?),
                "spdxVersion" => top.spdx_version = Some(map.next_value()?),
                "version" => top.bom_version = Some(map.next_value()?),
                "serialNumber" => top.serial_number = Some(map.next_value()?),
                "metadata" => {
                    let metadata: serde_json::Value = map.next_value()?;
                    top.metadata_is_object = Some(metadata.is_object());
                }
                "components" => {
                    top.saw_components = true;
                    map.next_value_seed(CycloneDxComponentsSeed {
                        collected: self.collected,
                    })?;
                }
                "packages" => {
                    self.collected.in_packages = true;
                    map.next_value_seed(SpdxPackagesSeed {
                        collected: self.collected,
                    })?;
                    self.collected.in_packages = false;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(top)
    }
}

/// A CycloneDX `components` array, at any level: each element is flattened into
/// `collected.components`.
struct CycloneDxComponentsSeed<'a> {
    collected: &'a mut Collected,
}

impl<'de> DeserializeSeed<'de> for CycloneDxComponentsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for CycloneDxComponentsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of CycloneDX components")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(CycloneDxComponentSeed {
                collected: &mut *self.collected,
            })?
            .is_some()
        {}
        Ok(())
    }
}

struct CycloneDxComponentSeed<'a> {
    collected: &'a mut Collected,
}

impl<'de> DeserializeSeed<'de> for CycloneDxComponentSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for CycloneDxComponentSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a CycloneDX component object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let collected = self.collected;
        // The parent takes its place before its nested components, so the flat list keeps
        // document order.
        let position = collected.admit().map_err(|()| limit_error::<A::Error>())?;
        collected.components.push(Component::default());
        let mut component = Component::default();
        let mut name = None;
        let mut has_type = false;
        while let Some(key) = map.next_key::<String>()? {
            let field: &'static str = match key.as_str() {
                "type" => {
                    map.next_value::<String>()?;
                    has_type = true;
                    continue;
                }
                "components" => {
                    map.next_value_seed(CycloneDxComponentsSeed {
                        collected: &mut *collected,
                    })?;
                    continue;
                }
                "name" => "name",
                "version" => "version",
                "bom-ref" => "bom-ref",
                "purl" => "purl",
                "cpe" => "cpe",
                "group" => "group",
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            let value: String = map.next_value()?;
            let value = collected
                .bounded(field, position, value)
                .map_err(|()| limit_error::<A::Error>())?;
            match field {
                "name" => name = Some(value),
                "version" => component.version = value,
                "bom-ref" => component.reference = value,
                "purl" => component.purl = Some(value),
                "cpe" => component.cpe = Some(value),
                _ => component.group = Some(value),
            }
        }
        let (Some(name), true) = (name, has_type) else {
            return Err(de::Error::custom(format!(
                "component {position} (in document order) needs string \"type\" and \"name\""
            )));
        };
        component.name = name;
        collected.components[position] = component;
        Ok(())
    }
}

/// SPDX `packages`: each becomes a component (`SPDXID`, `name`, `versionInfo`, and the
/// `purl` and `cpe23Type` external references).
struct SpdxPackagesSeed<'a> {
    collected: &'a mut Collected,
}

impl<'de> DeserializeSeed<'de> for SpdxPackagesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    #[serde(rename = "SPDXID", default)]
    spdx_id: String,
    name: String,
    #[serde(default)]
    version_info: String,
    #[serde(default)]
    external_refs: Vec<SpdxExternalRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExternalRef {
    reference_type: String,
    reference_locator: String,
}

impl<'de> Visitor<'de> for SpdxPackagesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of SPDX packages")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let collected = self.collected;
        while let Some(package) = seq.next_element::<SpdxPackage>()? {
            let position = collected.admit().map_err(|()| limit_error::<A::Error>())?;
            let mut bounded = |field, value| {
                collected
                    .bounded(field, position, value)
                    .map_err(|()| limit_error::<A::Error>())
            };
            let mut component = Component {
                reference: bounded("SPDXID", package.spdx_id)?,
                name: bounded("name", package.name)?,
                version: bounded("versionInfo", package.version_info)?,
                ..Component::default()
            };
            // The first of each kind counts: SPDX allows several, and tools list the most
            // specific one first.
            for external in package.external_refs {
                match external.reference_type.as_str() {
                    "purl" if component.purl.is_none() => {
                        component.purl = Some(bounded("purl", external.reference_locator)?);
                    }
                    "cpe23Type" if component.cpe.is_none() => {
                        component.cpe = Some(bounded("cpe", external.reference_locator)?);
                    }
                    _ => {}
                }
            }
            collected.packages.push(component);
        }
        Ok(())
    }
}

/// Characters a purl version keeps as they are: unreserved characters, and `:` (a Debian
/// epoch), which the purl grammar allows in a version. Everything else (`+`, `~` is
/// unreserved) is percent-encoded.
const PURL_VERSION_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b':');

/// The installed packages of a Debian dpkg status file (a firmware root file system's
/// `/var/lib/dpkg/status`) as components: `pkg:deb/debian/NAME@VERSION?arch=ARCH`, with
/// `upstream=SOURCE` when the binary package is built from a source package of another name
/// (Debian advisories name source packages). Packages dpkg lists but has not installed
/// (`not-installed`, `config-files`) are left out.
pub fn from_dpkg_status(text: &str) -> Result<Sbom, SbomError> {
    if text.len() > MAX_SBOM_BYTES {
        return Err(SbomError::TooLarge {
            size: text.len(),
            max: MAX_SBOM_BYTES,
        });
    }
    let malformed = |reason: String| SbomError::Malformed {
        format: SbomFormat::DpkgStatus,
        reason,
    };
    let mut components = Vec::new();
    let mut paragraph: Vec<(&str, &str)> = Vec::new();
    let mut paragraph_line = 1;
    // A trailing empty line closes the last paragraph.
    for (index, line) in text.lines().chain(std::iter::once("")).enumerate() {
        if line.trim().is_empty() {
            if !paragraph.is_empty() {
                if components.len() >= MAX_COMPONENTS {
                    return Err(SbomError::TooManyComponents {
                        max: MAX_COMPONENTS,
                    });
                }
                let position = components.len();
                if let Some(component) = dpkg_component(&paragraph, position).map_err(|e| {
                    e.unwrap_or_else(|| {
                        malformed(format!(
                            "the paragraph at line {paragraph_line} has no \"Package\" field"
                        ))
                    })
                })? {
                    components.push(component);
                }
                paragraph.clear();
            }
            paragraph_line = index + 2;
            continue;
        }
        // Continuation lines (descriptions, conffiles) carry nothing read here.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            return Err(malformed(format!(
                "line {} is neither \"Field: value\" nor a continuation line",
                index + 1
            )));
        };
        paragraph.push((field, value.trim()));
    }
    let (components, duplicates) = deduplicate(components);
    Ok(Sbom {
        format: SbomFormat::DpkgStatus,
        spec_version: String::new(),
        components,
        duplicates,
    })
}

/// One dpkg paragraph: `Ok(None)` for a package that is not installed, `Err(None)` for a
/// paragraph without `Package`.
fn dpkg_component(
    paragraph: &[(&str, &str)],
    position: usize,
) -> Result<Option<Component>, Option<SbomError>> {
    let field = |name: &str| {
        paragraph
            .iter()
            .find(|(f, _)| f.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let package = field("Package").ok_or(None)?;
    let status_word = field("Status")
        .and_then(|s| s.split_whitespace().nth(2))
        .unwrap_or("installed");
    if matches!(status_word, "not-installed" | "config-files") {
        return Ok(None);
    }
    let Some(version) = field("Version") else {
        return Ok(None);
    };
    for (name, value) in [("Package", package), ("Version", version)] {
        if value.len() > MAX_FIELD_BYTES {
            return Err(Some(SbomError::FieldTooLong {
                field: name,
                position,
                len: value.len(),
                max: MAX_FIELD_BYTES,
            }));
        }
    }
    let architecture = field("Architecture").unwrap_or("all");
    // "Source: glibc (2.36-9)": the source package's name, and its version when it differs.
    let source = field("Source").and_then(|s| s.split_whitespace().next());
    let mut purl = format!(
        "pkg:deb/debian/{}@{}?arch={}",
        utf8_percent_encode(package, PURL_VERSION_KEEP),
        utf8_percent_encode(version, PURL_VERSION_KEEP),
        utf8_percent_encode(architecture, PURL_VERSION_KEEP),
    );
    if let Some(source) = source.filter(|s| *s != package) {
        purl.push_str("&upstream=");
        purl.push_str(&utf8_percent_encode(source, PURL_VERSION_KEEP).to_string());
    }
    // Percent-encoding can triple a field: the purl is bounded as parse_sbom bounds one, so
    // the SBOM written from it reads back.
    if purl.len() > MAX_FIELD_BYTES {
        return Err(Some(SbomError::FieldTooLong {
            field: "purl",
            position,
            len: purl.len(),
            max: MAX_FIELD_BYTES,
        }));
    }
    Ok(Some(Component {
        reference: purl.clone(),
        name: package.to_owned(),
        version: version.to_owned(),
        purl: Some(purl),
        cpe: None,
        group: None,
    }))
}

/// The SBOM as a CycloneDX 1.6 JSON document (components as `library`, with their
/// references, purls, CPEs and groups), for attaching what [`from_dpkg_status`] read to a
/// release. No serial number or timestamp: the caller adds them if it wants them.
pub fn to_cyclonedx_json(sbom: &Sbom) -> Vec<u8> {
    let components: Vec<serde_json::Value> = sbom
        .components
        .iter()
        .map(|c| {
            let mut object = serde_json::Map::new();
            object.insert("type".into(), "library".into());
            if !c.reference.is_empty() {
                object.insert("bom-ref".into(), c.reference.clone().into());
            }
            if let Some(group) = &c.group {
                object.insert("group".into(), group.clone().into());
            }
            object.insert("name".into(), c.name.clone().into());
            if !c.version.is_empty() {
                object.insert("version".into(), c.version.clone().into());
            }
            if let Some(purl) = &c.purl {
                object.insert("purl".into(), purl.clone().into());
            }
            if let Some(cpe) = &c.cpe {
                object.insert("cpe".into(), cpe.clone().into());
            }
            serde_json::Value::Object(object)
        })
        .collect();
    let document = serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "version": 1,
        "components": components,
    });
    serde_json::to_vec_pretty(&document).expect("a JSON value always serializes")
}
