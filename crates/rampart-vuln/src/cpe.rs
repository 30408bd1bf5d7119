//! CPE 2.3 names (NIST IR 7695 formatted strings, `cpe:2.3:part:vendor:product:version:...`)
//! and NVD's CPE match criteria: a CPE name, possibly with `*` (any) attributes, and version
//! bounds (`versionStartIncluding`, `versionStartExcluding`, `versionEndIncluding`,
//! `versionEndExcluding`). Firmware parts (U-Boot, busybox, the kernel, OpenSSL) are matched
//! this way: they have no package ecosystem.
//!
//! Versions are ordered by [`FirmwareVersion`], a generic dotted numeric-and-suffix rule
//! (docs/decisions/0045-cpe-and-nvd-matching.md): upstream projects' own release numbers, not
//! any ecosystem's.
//!
//! Attributes other than vendor, product and version follow NIST IR 7696's name matching where
//! the criterion is specific and the component is too; a component attribute left `*` (the
//! SBOM did not say) is taken to match a criterion's value, so that a platform-specific
//! criterion is reported rather than missed, except `update`: a component's plain version
//! names the final release, so a criterion for `rc1` does not apply to it.

use std::cmp::Ordering;

/// The longest CPE name accepted, in bytes. NVD's longest criteria are under 200 bytes.
pub const MAX_CPE_LEN: usize = 512;
/// The longest version accepted, in bytes (the same bound as every ecosystem's versions).
pub const MAX_FIRMWARE_VERSION_LEN: usize = crate::version::MAX_VERSION_LEN;

/// Why a CPE name or criterion was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpeError {
    #[error("a CPE of {len} bytes is longer than the {MAX_CPE_LEN}-byte limit: this is not a CPE")]
    TooLong { len: usize },
    #[error(
        "`{0}` is not a CPE 2.3 formatted string: it must start with `cpe:2.3:` (CPE 2.2 URIs `cpe:/` are not read)"
    )]
    NotCpe23(String),
    #[error(
        "a CPE 2.3 name has 11 attributes after `cpe:2.3:` (part to other); `{name}` has {count}"
    )]
    AttributeCount { name: String, count: usize },
    #[error("the CPE `{name}` ends in a lone `\\`: escape it as `\\\\`")]
    DanglingEscape { name: String },
    #[error("the {attribute} attribute of `{name}` is empty: write `*` for any value")]
    EmptyAttribute {
        name: String,
        attribute: &'static str,
    },
    #[error(
        "the {attribute} attribute of `{name}` has an unescaped `{character}`: only letters, digits, `_`, `-` and `.` stand unescaped; quote others with `\\`"
    )]
    BadCharacter {
        name: String,
        attribute: &'static str,
        character: char,
    },
    #[error(
        "the {attribute} attribute of `{name}` has a wildcard inside a value: only a whole `*` (any) is matched"
    )]
    EmbeddedWildcard {
        name: String,
        attribute: &'static str,
    },
    #[error("the part of `{name}` is `{part}`: it must be `a`, `o`, `h` or `*`")]
    BadPart { name: String, part: String },
    #[error(
        "the criterion `{name}` has both {first} and {second}: give at most one start and one end bound"
    )]
    ConflictingBounds {
        name: String,
        first: &'static str,
        second: &'static str,
    },
    #[error("the {bound} of the criterion `{name}` cannot be ordered: {reason}")]
    BadBound {
        name: String,
        bound: &'static str,
        reason: FirmwareVersionError,
    },
}

/// One attribute of a CPE name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CpeValue {
    /// `*`: any value.
    Any,
    /// `-`: not applicable.
    NotApplicable,
    /// A value, unescaped and lowercased (CPE names compare case-insensitively).
    Value(String),
}

impl CpeValue {
    /// The value, if the attribute has one.
    pub fn value(&self) -> Option<&str> {
        match self {
            CpeValue::Value(value) => Some(value),
            _ => None,
        }
    }
}

/// A CPE 2.3 name: its eleven attributes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CpeName {
    pub part: CpeValue,
    pub vendor: CpeValue,
    pub product: CpeValue,
    pub version: CpeValue,
    pub update: CpeValue,
    pub edition: CpeValue,
    pub language: CpeValue,
    pub sw_edition: CpeValue,
    pub target_sw: CpeValue,
    pub target_hw: CpeValue,
    pub other: CpeValue,
}

const ATTRIBUTE_NAMES: [&str; 11] = [
    "part",
    "vendor",
    "product",
    "version",
    "update",
    "edition",
    "language",
    "sw_edition",
    "target_sw",
    "target_hw",
    "other",
];

impl CpeName {
    /// A name with the given part, vendor and product and every other attribute `*`.
    pub fn product(part: &str, vendor: &str, product: &str) -> CpeName {
        CpeName {
            part: CpeValue::Value(part.to_owned()),
            vendor: CpeValue::Value(vendor.to_owned()),
            product: CpeValue::Value(product.to_owned()),
            version: CpeValue::Any,
            update: CpeValue::Any,
            edition: CpeValue::Any,
            language: CpeValue::Any,
            sw_edition: CpeValue::Any,
            target_sw: CpeValue::Any,
            target_hw: CpeValue::Any,
            other: CpeValue::Any,
        }
    }

    /// Parses a CPE 2.3 formatted string. The length is checked first; attributes are split at
    /// unescaped `:`, `\` quotes the next character, `*` alone is any and `-` alone is not
    /// applicable.
    pub fn parse(text: &str) -> Result<CpeName, CpeError> {
        if text.len() > MAX_CPE_LEN {
            return Err(CpeError::TooLong { len: text.len() });
        }
        let text = text.trim();
        let Some(rest) = text.strip_prefix("cpe:2.3:") else {
            return Err(CpeError::NotCpe23(text.to_owned()));
        };
        let fields = split_attributes(text, rest)?;
        if fields.len() != ATTRIBUTE_NAMES.len() {
            return Err(CpeError::AttributeCount {
                name: text.to_owned(),
                count: fields.len(),
            });
        }
        let mut values = Vec::with_capacity(fields.len());
        for (field, attribute) in fields.iter().zip(ATTRIBUTE_NAMES) {
            values.push(decode_attribute(text, attribute, field)?);
        }
        let mut values = values.into_iter();
        let mut next = || values.next().unwrap_or(CpeValue::Any);
        let name = CpeName {
            part: next(),
            vendor: next(),
            product: next(),
            version: next(),
            update: next(),
            edition: next(),
            language: next(),
            sw_edition: next(),
            target_sw: next(),
            target_hw: next(),
            other: next(),
        };
        if let CpeValue::Value(part) = &name.part
            && !matches!(part.as_str(), "a" | "o" | "h")
        {
            return Err(CpeError::BadPart {
                name: text.to_owned(),
                part: part.clone(),
            });
        }
        if name.part == CpeValue::NotApplicable {
            return Err(CpeError::BadPart {
                name: text.to_owned(),
                part: "-".to_owned(),
            });
        }
        Ok(name)
    }

    /// The CPE 2.3 formatted string, every character other than letters, digits, `_`, `-`
    /// and `.` quoted.
    pub fn to_formatted_string(&self) -> String {
        let mut out = String::from("cpe:2.3");
        for value in self.attributes() {
            out.push(':');
            match value {
                CpeValue::Any => out.push('*'),
                CpeValue::NotApplicable => out.push('-'),
                CpeValue::Value(value) if value == "-" => out.push_str("\\-"),
                CpeValue::Value(value) => {
                    for c in value.chars() {
                        if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')) {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                }
            }
        }
        out
    }

    fn attributes(&self) -> [&CpeValue; 11] {
        [
            &self.part,
            &self.vendor,
            &self.product,
            &self.version,
            &self.update,
            &self.edition,
            &self.language,
            &self.sw_edition,
            &self.target_sw,
            &self.target_hw,
            &self.other,
        ]
    }
}

/// Splits at unescaped `:`, keeping escapes in the fields (decoding needs them to tell a
/// quoted `*` from a wildcard).
fn split_attributes<'a>(name: &str, rest: &'a str) -> Result<Vec<&'a str>, CpeError> {
    let mut fields = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (offset, c) in rest.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ':' {
            fields.push(&rest[start..offset]);
            start = offset + 1;
            // More fields than a CPE has: stop counting, the count error says enough.
            if fields.len() > ATTRIBUTE_NAMES.len() {
                return Ok(fields);
            }
        }
    }
    if escaped {
        return Err(CpeError::DanglingEscape {
            name: name.to_owned(),
        });
    }
    fields.push(&rest[start..]);
    Ok(fields)
}

fn decode_attribute(
    name: &str,
    attribute: &'static str,
    field: &str,
) -> Result<CpeValue, CpeError> {
    match field {
        "" => {
            return Err(CpeError::EmptyAttribute {
                name: name.to_owned(),
                attribute,
            });
        }
        "*" => return Ok(CpeValue::Any),
        "-" => return Ok(CpeValue::NotApplicable),
        _ => {}
    }
    let mut value = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            // split_attributes refused a dangling escape, so a character follows.
            let quoted = chars.next().unwrap_or('\\');
            if !quoted.is_ascii_graphic() {
                return Err(CpeError::BadCharacter {
                    name: name.to_owned(),
                    attribute,
                    character: quoted,
                });
            }
            value.push(quoted.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
            value.push(c.to_ascii_lowercase());
        } else if matches!(c, '*' | '?') {
            return Err(CpeError::EmbeddedWildcard {
                name: name.to_owned(),
                attribute,
            });
        } else {
            return Err(CpeError::BadCharacter {
                name: name.to_owned(),
                attribute,
                character: c,
            });
        }
    }
    Ok(CpeValue::Value(value))
}

// ---------------------------------------------------------------------------------------------
// Firmware versions

/// Why a version cannot be ordered as a firmware version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FirmwareVersionError {
    #[error("the version is empty")]
    Empty,
    #[error(
        "a version of {len} bytes is longer than the {MAX_FIRMWARE_VERSION_LEN}-byte limit: this is not a real version"
    )]
    TooLong { len: usize },
    #[error(
        "`{0}` does not start with a number (after an optional `v`): it is not a release number"
    )]
    NoNumber(String),
    #[error("`{0}` has a character that is not ASCII: it is not a release number")]
    NotAscii(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Digits without leading zeros (`04` is `4`), compared by value at any length.
    Number(String),
    /// Letters, lowercased.
    Word(String),
}

/// Words that mark a release before the numbers they follow (`6.1-rc1 < 6.1`). Any other word
/// marks one after (`1.1.1k > 1.1.1`, OpenSSL's letter releases).
const PRE_RELEASE_WORDS: [&str; 5] = ["dev", "alpha", "beta", "pre", "rc"];

/// A version ordered by the generic dotted numeric-and-suffix rule: split into runs of digits
/// and runs of letters (anything else separates); numbers compare by value and a version
/// that ends reads as zeros from there (`6.1 == 6.1.0`, `2023.04 == 2023.4`); at one position a number is
/// later than a word; a pre-release word (`dev < alpha < beta < pre < rc`) is earlier than
/// any other word and than the end of the version; other words compare alphabetically and are
/// later than the end (`1.1.1 < 1.1.1a < 1.1.1k`).
#[derive(Debug, Clone)]
pub struct FirmwareVersion {
    tokens: Vec<Token>,
}

impl FirmwareVersion {
    pub fn parse(text: &str) -> Result<FirmwareVersion, FirmwareVersionError> {
        if text.len() > MAX_FIRMWARE_VERSION_LEN {
            return Err(FirmwareVersionError::TooLong { len: text.len() });
        }
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(FirmwareVersionError::Empty);
        }
        if !trimmed.is_ascii() {
            return Err(FirmwareVersionError::NotAscii(trimmed.to_owned()));
        }
        let bare = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
        if !bare.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(FirmwareVersionError::NoNumber(trimmed.to_owned()));
        }
        let mut tokens = Vec::new();
        let bytes = bare.as_bytes();
        let mut index = 0;
        while index < bytes.len() {
            let start = index;
            if bytes[index].is_ascii_digit() {
                while index < bytes.len() && bytes[index].is_ascii_digit() {
                    index += 1;
                }
                let digits = bare[start..index].trim_start_matches('0');
                tokens.push(Token::Number(digits.to_owned()));
            } else if bytes[index].is_ascii_alphabetic() {
                while index < bytes.len() && bytes[index].is_ascii_alphabetic() {
                    index += 1;
                }
                tokens.push(Token::Word(bare[start..index].to_ascii_lowercase()));
            } else {
                index += 1;
            }
        }
        Ok(FirmwareVersion { tokens })
    }
}

fn pre_release_rank(word: &str) -> Option<usize> {
    PRE_RELEASE_WORDS.iter().position(|known| *known == word)
}

fn cmp_tokens(a: &Token, b: &Token) -> Ordering {
    match (a, b) {
        (Token::Number(a), Token::Number(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
        (Token::Number(_), Token::Word(_)) => Ordering::Greater,
        (Token::Word(_), Token::Number(_)) => Ordering::Less,
        (Token::Word(a), Token::Word(b)) => match (pre_release_rank(a), pre_release_rank(b)) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => a.cmp(b),
        },
    }
}

/// How a version that goes on compares with one that ended before `token`.
fn cmp_to_end(token: &Token) -> Ordering {
    match token {
        Token::Word(word) if pre_release_rank(word).is_some() => Ordering::Less,
        _ => Ordering::Greater,
    }
}

impl Ord for FirmwareVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        let mut a = self.tokens.iter();
        let mut b = other.tokens.iter();
        loop {
            return match (a.next(), b.next()) {
                (None, None) => Ordering::Equal,
                // A version that ended reads as zeros from there (`6.1 == 6.1.0`).
                (Some(Token::Number(digits)), None) | (None, Some(Token::Number(digits)))
                    if digits.is_empty() =>
                {
                    continue;
                }
                (Some(token), None) => cmp_to_end(token),
                (None, Some(token)) => cmp_to_end(token).reverse(),
                (Some(x), Some(y)) => match cmp_tokens(x, y) {
                    Ordering::Equal => continue,
                    unequal => unequal,
                },
            };
        }
    }
}

impl PartialOrd for FirmwareVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for FirmwareVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for FirmwareVersion {}

// ---------------------------------------------------------------------------------------------
// Match criteria

/// NVD's version bounds of a criterion, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VersionBounds {
    pub start_including: Option<String>,
    pub start_excluding: Option<String>,
    pub end_including: Option<String>,
    pub end_excluding: Option<String>,
}

impl VersionBounds {
    fn is_empty(&self) -> bool {
        self.start_including.is_none()
            && self.start_excluding.is_none()
            && self.end_including.is_none()
            && self.end_excluding.is_none()
    }
}

#[derive(Debug, Clone)]
struct Bound {
    version: FirmwareVersion,
    inclusive: bool,
}

/// Which versions a criterion covers.
#[derive(Debug, Clone)]
enum VersionRule {
    /// `*` and no bounds: every version.
    Any,
    /// `-`: only a component whose version is not applicable.
    NotApplicable,
    /// One version, ordered.
    Exact(FirmwareVersion),
    /// One version the firmware rule cannot order: equal text only.
    ExactText(String),
    /// Bounds, either side optional.
    Range {
        start: Option<Bound>,
        end: Option<Bound>,
    },
}

/// A CPE match criterion: a name and the versions it covers.
#[derive(Debug, Clone)]
pub struct CpeCriterion {
    pub name: CpeName,
    versions: VersionRule,
}

/// A component's version as a criterion sees it.
#[derive(Debug, Clone, Copy)]
pub enum CandidateVersion<'a> {
    /// Ordered by the firmware rule.
    Ordered(&'a FirmwareVersion, &'a str),
    /// Not orderable: only equal text and `*` criteria match.
    Text(&'a str),
}

impl CpeCriterion {
    /// Builds a criterion from NVD's `criteria` string and bounds. When bounds are given they
    /// decide the versions (NVD then writes `*` as the criterion's version).
    pub fn new(criteria: &str, bounds: &VersionBounds) -> Result<CpeCriterion, CpeError> {
        let name = CpeName::parse(criteria)?;
        let conflict = |first, second| CpeError::ConflictingBounds {
            name: criteria.to_owned(),
            first,
            second,
        };
        if bounds.start_including.is_some() && bounds.start_excluding.is_some() {
            return Err(conflict("versionStartIncluding", "versionStartExcluding"));
        }
        if bounds.end_including.is_some() && bounds.end_excluding.is_some() {
            return Err(conflict("versionEndIncluding", "versionEndExcluding"));
        }
        let bound = |text: &Option<String>, inclusive: bool, which: &'static str| {
            text.as_deref()
                .map(|text| {
                    FirmwareVersion::parse(text)
                        .map(|version| Bound { version, inclusive })
                        .map_err(|reason| CpeError::BadBound {
                            name: criteria.to_owned(),
                            bound: which,
                            reason,
                        })
                })
                .transpose()
        };
        let versions = if !bounds.is_empty() {
            let start = match bound(&bounds.start_including, true, "versionStartIncluding")? {
                Some(start) => Some(start),
                None => bound(&bounds.start_excluding, false, "versionStartExcluding")?,
            };
            let end = match bound(&bounds.end_including, true, "versionEndIncluding")? {
                Some(end) => Some(end),
                None => bound(&bounds.end_excluding, false, "versionEndExcluding")?,
            };
            VersionRule::Range { start, end }
        } else {
            match &name.version {
                CpeValue::Any => VersionRule::Any,
                CpeValue::NotApplicable => VersionRule::NotApplicable,
                CpeValue::Value(text) => match FirmwareVersion::parse(text) {
                    Ok(version) => VersionRule::Exact(version),
                    Err(_) => VersionRule::ExactText(text.clone()),
                },
            }
        };
        Ok(CpeCriterion { name, versions })
    }

    /// Whether the criterion covers a component with this CPE name (its vendor and product
    /// are what an index looked up) at this version (`None`: the component's version is not
    /// applicable, `-`).
    pub fn matches(&self, target: &CpeName, version: Option<CandidateVersion<'_>>) -> bool {
        let names_match = attribute_matches(&self.name.vendor, &target.vendor, false)
            && attribute_matches(&self.name.product, &target.product, false)
            && attribute_matches(&self.name.part, &target.part, true)
            && attribute_matches(&self.name.update, update_of(&target.update), false)
            && attribute_matches(&self.name.edition, &target.edition, true)
            && attribute_matches(&self.name.language, &target.language, true)
            && attribute_matches(&self.name.sw_edition, &target.sw_edition, true)
            && attribute_matches(&self.name.target_sw, &target.target_sw, true)
            && attribute_matches(&self.name.target_hw, &target.target_hw, true)
            && attribute_matches(&self.name.other, &target.other, true);
        if !names_match {
            return false;
        }
        match (&self.versions, version) {
            (VersionRule::Any, _) => true,
            (VersionRule::NotApplicable, version) => version.is_none(),
            (_, None) => false,
            (VersionRule::Exact(exact), Some(CandidateVersion::Ordered(version, _))) => {
                version == exact
            }
            (VersionRule::Exact(_), Some(CandidateVersion::Text(_))) => false,
            (VersionRule::ExactText(exact), Some(CandidateVersion::Ordered(_, text)))
            | (VersionRule::ExactText(exact), Some(CandidateVersion::Text(text))) => {
                exact.eq_ignore_ascii_case(text.trim())
            }
            (VersionRule::Range { .. }, Some(CandidateVersion::Text(_))) => false,
            (VersionRule::Range { start, end }, Some(CandidateVersion::Ordered(version, _))) => {
                let above_start =
                    start
                        .as_ref()
                        .is_none_or(|start| match version.cmp(&start.version) {
                            Ordering::Greater => true,
                            Ordering::Equal => start.inclusive,
                            Ordering::Less => false,
                        });
                let below_end = end
                    .as_ref()
                    .is_none_or(|end| match version.cmp(&end.version) {
                        Ordering::Less => true,
                        Ordering::Equal => end.inclusive,
                        Ordering::Greater => false,
                    });
                above_start && below_end
            }
        }
    }
}

/// A component's `update` left `*` names its final release: the same as `-` (no update).
fn update_of(update: &CpeValue) -> &CpeValue {
    match update {
        CpeValue::Any => &CpeValue::NotApplicable,
        other => other,
    }
}

/// One attribute of a criterion against the component's: the criterion's `*` covers every
/// value; a component's `*` is covered by any criterion value when `unknown_matches` (the SBOM
/// did not say, so the criterion cannot be ruled out).
fn attribute_matches(criterion: &CpeValue, component: &CpeValue, unknown_matches: bool) -> bool {
    match (criterion, component) {
        (CpeValue::Any, _) => true,
        (_, CpeValue::Any) => unknown_matches,
        (CpeValue::NotApplicable, CpeValue::NotApplicable) => true,
        (CpeValue::Value(a), CpeValue::Value(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> FirmwareVersion {
        FirmwareVersion::parse(text).unwrap()
    }

    #[test]
    fn formatted_strings_parse_with_escapes_any_and_not_applicable() {
        let name = CpeName::parse("cpe:2.3:a:denx:u-boot:2023.04:-:*:*:*:*:*:*").unwrap();
        assert_eq!(name.part, CpeValue::Value("a".to_owned()));
        assert_eq!(name.vendor, CpeValue::Value("denx".to_owned()));
        assert_eq!(name.product, CpeValue::Value("u-boot".to_owned()));
        assert_eq!(name.version, CpeValue::Value("2023.04".to_owned()));
        assert_eq!(name.update, CpeValue::NotApplicable);
        assert_eq!(name.other, CpeValue::Any);

        // Quoted characters, case folded.
        let name = CpeName::parse(r"cpe:2.3:a:Foo\:bar:Big\~App:1.0\+git\*:*:*:*:*:*:*:*").unwrap();
        assert_eq!(name.vendor.value(), Some("foo:bar"));
        assert_eq!(name.product.value(), Some("big~app"));
        assert_eq!(name.version.value(), Some("1.0+git*"));
        // A quoted `-` is a value, not "not applicable", and survives the round trip.
        let dash = CpeName::parse(r"cpe:2.3:a:v:p:\-:*:*:*:*:*:*:*").unwrap();
        assert_eq!(dash.version, CpeValue::Value("-".to_owned()));
        for name in [
            "cpe:2.3:o:linux:linux_kernel:6.1.55:*:*:*:*:*:*:*",
            r"cpe:2.3:a:foo\:bar:big\~app:1.0\+git\*:*:*:*:*:*:*:*",
            r"cpe:2.3:a:v:p:\-:-:*:*:*:*:*:*",
        ] {
            let parsed = CpeName::parse(name).unwrap();
            assert_eq!(parsed.to_formatted_string(), name);
            assert_eq!(
                CpeName::parse(&parsed.to_formatted_string()).unwrap(),
                parsed
            );
        }
    }

    #[test]
    fn malformed_names_are_refused_with_the_reason() {
        let refused = |text: &str| CpeName::parse(text).unwrap_err();
        assert!(matches!(
            refused(&format!(
                "cpe:2.3:a:v:{}:1:*:*:*:*:*:*:*",
                "p".repeat(MAX_CPE_LEN)
            )),
            CpeError::TooLong { .. }
        ));
        assert!(matches!(
            refused("cpe:/a:denx:u-boot:2023.04"),
            CpeError::NotCpe23(_)
        ));
        assert!(matches!(
            refused("cpe:2.3:a:denx:u-boot:2023.04"),
            CpeError::AttributeCount { count: 4, .. }
        ));
        assert!(matches!(
            refused("cpe:2.3:a:d:p:1:*:*:*:*:*:*:*:extra:more"),
            CpeError::AttributeCount { .. }
        ));
        assert!(matches!(
            refused(r"cpe:2.3:a:d:p:1:*:*:*:*:*:*:x\"),
            CpeError::DanglingEscape { .. }
        ));
        assert!(matches!(
            refused("cpe:2.3:a:d::1:*:*:*:*:*:*:*"),
            CpeError::EmptyAttribute {
                attribute: "product",
                ..
            }
        ));
        assert!(matches!(
            refused("cpe:2.3:a:d:p q:1:*:*:*:*:*:*:*"),
            CpeError::BadCharacter { character: ' ', .. }
        ));
        assert!(matches!(
            refused("cpe:2.3:a:d:p:1.*:*:*:*:*:*:*:*"),
            CpeError::EmbeddedWildcard {
                attribute: "version",
                ..
            }
        ));
        assert!(matches!(
            refused("cpe:2.3:x:d:p:1:*:*:*:*:*:*:*"),
            CpeError::BadPart { .. }
        ));
        assert!(matches!(
            refused("cpe:2.3:-:d:p:1:*:*:*:*:*:*:*"),
            CpeError::BadPart { .. }
        ));
    }

    #[test]
    fn firmware_versions_order_by_dotted_numbers_and_suffixes() {
        let ascending = [
            "1.36.0",
            "1.36.1-rc1",
            "1.36.1",
            "1.36.1a",
            "1.36.2",
            "1.36.10",
        ];
        for pair in ascending.windows(2) {
            assert!(
                version(pair[0]) < version(pair[1]),
                "{} < {}",
                pair[0],
                pair[1]
            );
        }
        // U-Boot's year.month, the kernel's release candidates, OpenSSL's letters.
        assert!(version("2022.07-rc6") < version("2022.07"));
        assert!(version("2023.01") < version("2023.04"));
        assert_eq!(version("2023.04"), version("2023.4"));
        assert!(version("6.1-rc1") < version("6.1"));
        assert!(version("6.1-rc2") > version("6.1-rc1"));
        assert!(version("6.1.55") > version("6.1.9"));
        assert_eq!(version("6.1"), version("6.1.0"));
        assert_eq!(version("v6.1.0"), version("6.1"));
        assert!(version("1.1.1k") > version("1.1.1"));
        assert!(version("1.1.1k") < version("1.1.1w"));
        assert!(version("1.1.1w") < version("3.0.2"));
        assert!(version("3.0.0-alpha1") < version("3.0.0-beta1"));
        assert!(version("3.0.0-beta1") < version("3.0.0"));
        // Numbers beyond any integer type still order.
        assert!(version("1.99999999999999999999999") < version("1.100000000000000000000000"));
        // A vendor suffix after the numbers orders after them.
        assert!(version("6.1.55-yocto-standard") > version("6.1.55"));
        assert!(version("6.1.55-yocto-standard") < version("6.1.56"));
    }

    #[test]
    fn versions_that_are_not_release_numbers_are_refused() {
        assert!(matches!(
            FirmwareVersion::parse(" "),
            Err(FirmwareVersionError::Empty)
        ));
        assert!(matches!(
            FirmwareVersion::parse(&"1".repeat(MAX_FIRMWARE_VERSION_LEN + 1)),
            Err(FirmwareVersionError::TooLong { .. })
        ));
        assert!(matches!(
            FirmwareVersion::parse("git-abc"),
            Err(FirmwareVersionError::NoNumber(_))
        ));
        assert!(matches!(
            FirmwareVersion::parse("1.0\u{00e9}"),
            Err(FirmwareVersionError::NotAscii(_))
        ));
    }

    fn criterion(criteria: &str, bounds: [Option<&str>; 4]) -> CpeCriterion {
        let [
            start_including,
            start_excluding,
            end_including,
            end_excluding,
        ] = bounds.map(|bound| bound.map(str::to_owned));
        CpeCriterion::new(
            criteria,
            &VersionBounds {
                start_including,
                start_excluding,
                end_including,
                end_excluding,
            },
        )
        .unwrap()
    }

    fn covers(criterion: &CpeCriterion, cpe: &str) -> bool {
        let name = CpeName::parse(cpe).unwrap();
        let text = name.version.value().unwrap_or_default().to_owned();
        let parsed = FirmwareVersion::parse(&text);
        let candidate = match (&name.version, &parsed) {
            (CpeValue::NotApplicable, _) => None,
            (_, Ok(parsed)) => Some(CandidateVersion::Ordered(parsed, &text)),
            (_, Err(_)) => Some(CandidateVersion::Text(&text)),
        };
        criterion.matches(&name, candidate)
    }

    #[test]
    fn bounds_include_and_exclude_their_versions() {
        let uboot = "cpe:2.3:a:denx:u-boot:*:*:*:*:*:*:*:*";
        let end_excluding = criterion(uboot, [None, None, None, Some("2022.07")]);
        assert!(covers(
            &end_excluding,
            "cpe:2.3:a:denx:u-boot:2022.04:*:*:*:*:*:*:*"
        ));
        assert!(covers(
            &end_excluding,
            "cpe:2.3:a:denx:u-boot:2022.07-rc5:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &end_excluding,
            "cpe:2.3:a:denx:u-boot:2022.07:*:*:*:*:*:*:*"
        ));

        let end_including = criterion(uboot, [None, None, Some("2022.07"), None]);
        assert!(covers(
            &end_including,
            "cpe:2.3:a:denx:u-boot:2022.07:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &end_including,
            "cpe:2.3:a:denx:u-boot:2022.10:*:*:*:*:*:*:*"
        ));

        let linux = "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*";
        let window = criterion(linux, [Some("6.1"), None, None, Some("6.1.56")]);
        assert!(covers(
            &window,
            "cpe:2.3:o:linux:linux_kernel:6.1:*:*:*:*:*:*:*"
        ));
        assert!(covers(
            &window,
            "cpe:2.3:o:linux:linux_kernel:6.1.55:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &window,
            "cpe:2.3:o:linux:linux_kernel:6.1.56:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &window,
            "cpe:2.3:o:linux:linux_kernel:5.15.130:*:*:*:*:*:*:*"
        ));

        let start_excluding = criterion(linux, [None, Some("6.1"), None, None]);
        assert!(!covers(
            &start_excluding,
            "cpe:2.3:o:linux:linux_kernel:6.1.0:*:*:*:*:*:*:*"
        ));
        assert!(covers(
            &start_excluding,
            "cpe:2.3:o:linux:linux_kernel:6.1.1:*:*:*:*:*:*:*"
        ));
        // An unorderable version meets no range.
        assert!(!covers(
            &window,
            "cpe:2.3:o:linux:linux_kernel:next:*:*:*:*:*:*:*"
        ));
    }

    #[test]
    fn a_criterion_without_bounds_covers_its_own_version_or_every_version() {
        let exact = criterion("cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*", [None; 4]);
        assert!(covers(
            &exact,
            "cpe:2.3:a:busybox:busybox:1.35.0:*:*:*:*:*:*:*"
        ));
        assert!(covers(
            &exact,
            "cpe:2.3:a:busybox:busybox:1.35:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &exact,
            "cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*"
        ));
        let every = criterion("cpe:2.3:a:busybox:busybox:*:*:*:*:*:*:*:*", [None; 4]);
        assert!(covers(
            &every,
            "cpe:2.3:a:busybox:busybox:1.36.1:*:*:*:*:*:*:*"
        ));
        assert!(covers(&every, "cpe:2.3:a:busybox:busybox:-:*:*:*:*:*:*:*"));
        assert!(!covers(&exact, "cpe:2.3:a:busybox:busybox:-:*:*:*:*:*:*:*"));
        let text = criterion("cpe:2.3:a:v:p:snapshot:*:*:*:*:*:*:*", [None; 4]);
        assert!(covers(&text, "cpe:2.3:a:v:p:snapshot:*:*:*:*:*:*:*"));
        assert!(!covers(&text, "cpe:2.3:a:v:p:1.0:*:*:*:*:*:*:*"));
    }

    #[test]
    fn other_attributes_follow_the_stated_rule() {
        // Vendor and product must agree.
        let openssl = criterion("cpe:2.3:a:openssl:openssl:3.0.2:*:*:*:*:*:*:*", [None; 4]);
        assert!(!covers(
            &openssl,
            "cpe:2.3:a:libressl:openssl:3.0.2:*:*:*:*:*:*:*"
        ));
        // A release-candidate criterion does not cover the final release (nor an unsaid update).
        let rc = criterion(
            "cpe:2.3:o:linux:linux_kernel:6.1:rc1:*:*:*:*:*:*",
            [None; 4],
        );
        assert!(covers(
            &rc,
            "cpe:2.3:o:linux:linux_kernel:6.1:rc1:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &rc,
            "cpe:2.3:o:linux:linux_kernel:6.1:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &rc,
            "cpe:2.3:o:linux:linux_kernel:6.1:-:*:*:*:*:*:*"
        ));
        let final_release = criterion("cpe:2.3:o:linux:linux_kernel:6.1:-:*:*:*:*:*:*", [None; 4]);
        assert!(covers(
            &final_release,
            "cpe:2.3:o:linux:linux_kernel:6.1:*:*:*:*:*:*:*"
        ));
        // A platform the component does not state is not ruled out; one it states is.
        let android = criterion("cpe:2.3:a:v:p:1.0:*:*:*:*:android:*:*", [None; 4]);
        assert!(covers(&android, "cpe:2.3:a:v:p:1.0:*:*:*:*:*:*:*"));
        assert!(!covers(&android, "cpe:2.3:a:v:p:1.0:*:*:*:*:linux:*:*"));
        // A component that leaves the part unsaid (as Yocto writes them) meets `o` and `a`.
        assert!(covers(
            &final_release,
            "cpe:2.3:*:linux:linux_kernel:6.1:*:*:*:*:*:*:*"
        ));
        assert!(!covers(
            &openssl,
            "cpe:2.3:o:openssl:openssl:3.0.2:*:*:*:*:*:*:*"
        ));
    }

    #[test]
    fn contradictory_or_unorderable_bounds_are_refused() {
        let bounds = VersionBounds {
            start_including: Some("1.0".to_owned()),
            start_excluding: Some("1.0".to_owned()),
            ..VersionBounds::default()
        };
        assert!(matches!(
            CpeCriterion::new("cpe:2.3:a:v:p:*:*:*:*:*:*:*:*", &bounds),
            Err(CpeError::ConflictingBounds { .. })
        ));
        let bounds = VersionBounds {
            end_including: Some("2.0".to_owned()),
            end_excluding: Some("2.1".to_owned()),
            ..VersionBounds::default()
        };
        assert!(matches!(
            CpeCriterion::new("cpe:2.3:a:v:p:*:*:*:*:*:*:*:*", &bounds),
            Err(CpeError::ConflictingBounds { .. })
        ));
        let bounds = VersionBounds {
            end_excluding: Some("latest".to_owned()),
            ..VersionBounds::default()
        };
        let error = CpeCriterion::new("cpe:2.3:a:v:p:*:*:*:*:*:*:*:*", &bounds).unwrap_err();
        assert!(error.to_string().contains("versionEndExcluding"), "{error}");
    }
}
