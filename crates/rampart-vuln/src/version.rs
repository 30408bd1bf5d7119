//! Each ecosystem's version ordering behind one [`compare`], and a parsed form
//! ([`ParsedVersion`]) so that matching parses an advisory's bounds once, not per comparison.
//!
//! - PyPI: PEP 440 (`pep440_rs`): epochs, pre/post/dev releases, local versions, and zero
//!   padding (`1.0 == 1.0.0`).
//! - crates.io: SemVer 2.0 (`semver`), by precedence (build metadata ignored).
//! - npm: SemVer with npm's tolerance of a leading `v` or `=` and surrounding spaces.
//! - Go: SemVer with the module system's leading `v` (optional here, as OSV writes Go versions
//!   without it); pseudo-versions are SemVer pre-releases and order as such; `+incompatible`
//!   is build metadata.
//! - Debian: dpkg's rules (`epoch:upstream-revision`, `~` before everything), hand-written
//!   ([decision 0037](../../../docs/decisions/0037-debian-and-alpine-version-orderings.md)).
//! - Alpine: apk's rules (`1.2.3_rc1 < 1.2.3 < 1.2.3_p1 < 1.2.3-r1`), hand-written (0037).
//! - Maven: Maven's `ComparableVersion` rules, hand-written
//!   ([decision 0038](../../../docs/decisions/0038-maven-version-ordering.md)).
//!
//! Any other ecosystem is an error naming it: its versions can still match an advisory's
//! explicit `versions` list (by equality), never a range.

use std::cmp::Ordering;
use std::str::FromStr;

use crate::component::Ecosystem;

/// The longest version string accepted, in bytes. Real versions are far shorter (dpkg's
/// longest in Debian's archive is under 100); the limit bounds parsing and comparing.
pub const MAX_VERSION_LEN: usize = 256;

/// Why a version could not be ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error(
        "ecosystem `{0}` has no version ordering in Rampart (known: PyPI, crates.io, npm, Go, Maven, Debian, Alpine); its advisories match only through their explicit `versions` lists"
    )]
    UnknownEcosystem(String),
    #[error("empty version for {ecosystem}: give the component's version")]
    Empty { ecosystem: String },
    #[error(
        "version of {len} bytes for {ecosystem} is longer than the {MAX_VERSION_LEN}-byte limit: this is not a real version"
    )]
    TooLong { ecosystem: String, len: usize },
    #[error("`{version}` is not a valid {ecosystem} version: {reason}")]
    Invalid {
        ecosystem: String,
        version: String,
        reason: String,
    },
}

/// A version parsed under its ecosystem's rules. Two parsed versions of the same ecosystem
/// compare with [`ParsedVersion::cmp_same`]; comparing across ecosystems is meaningless and
/// returns `None`.
#[derive(Debug, Clone)]
pub enum ParsedVersion {
    Pep440(pep440_rs::Version),
    /// SemVer (crates.io, npm, Go and OSV's SEMVER ranges), compared by precedence.
    SemVer(semver::Version),
    Debian(DebianVersion),
    Alpine(AlpineVersion),
    Maven(MavenVersion),
}

impl ParsedVersion {
    /// The ordering of two versions of the same scheme; `None` across schemes.
    pub fn cmp_same(&self, other: &ParsedVersion) -> Option<Ordering> {
        Some(match (self, other) {
            (ParsedVersion::Pep440(a), ParsedVersion::Pep440(b)) => a.cmp(b),
            (ParsedVersion::SemVer(a), ParsedVersion::SemVer(b)) => a.cmp_precedence(b),
            (ParsedVersion::Debian(a), ParsedVersion::Debian(b)) => a.cmp(b),
            (ParsedVersion::Alpine(a), ParsedVersion::Alpine(b)) => a.cmp(b),
            (ParsedVersion::Maven(a), ParsedVersion::Maven(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// Orders two versions under the ecosystem's rules.
pub fn compare(ecosystem: &Ecosystem, a: &str, b: &str) -> Result<Ordering, VersionError> {
    let a = parse(ecosystem, a)?;
    let b = parse(ecosystem, b)?;
    // Both were parsed under one ecosystem, so they are of one scheme.
    Ok(a.cmp_same(&b).unwrap_or(Ordering::Equal))
}

/// Parses a version under the ecosystem's rules.
pub fn parse(ecosystem: &Ecosystem, version: &str) -> Result<ParsedVersion, VersionError> {
    let name = ecosystem.as_osv();
    check_length(name, version)?;
    match ecosystem {
        Ecosystem::PyPI => pep440_rs::Version::from_str(version.trim())
            .map(ParsedVersion::Pep440)
            .map_err(|error| invalid(name, version, error.to_string())),
        Ecosystem::CratesIo => parse_semver(name, version, false),
        Ecosystem::Npm => {
            let trimmed = version.trim();
            let trimmed = trimmed.strip_prefix('=').unwrap_or(trimmed).trim_start();
            parse_semver(name, trimmed, true)
        }
        Ecosystem::Go => parse_semver(name, version, true),
        Ecosystem::Debian => DebianVersion::parse(version)
            .map(ParsedVersion::Debian)
            .map_err(|reason| invalid(name, version, reason)),
        Ecosystem::Alpine => AlpineVersion::parse(version)
            .map(ParsedVersion::Alpine)
            .map_err(|reason| invalid(name, version, reason)),
        Ecosystem::Maven => MavenVersion::parse(version)
            .map(ParsedVersion::Maven)
            .map_err(|reason| invalid(name, version, reason)),
        Ecosystem::Other(other) => Err(VersionError::UnknownEcosystem(other.clone())),
    }
}

/// Parses a version of an OSV `SEMVER` range: SemVer 2.0 whatever the ecosystem, a leading
/// `v` tolerated.
pub fn parse_semver_range_bound(version: &str) -> Result<ParsedVersion, VersionError> {
    check_length("SEMVER", version)?;
    parse_semver("SEMVER", version, true)
}

fn check_length(ecosystem: &str, version: &str) -> Result<(), VersionError> {
    if version.len() > MAX_VERSION_LEN {
        return Err(VersionError::TooLong {
            ecosystem: ecosystem.to_owned(),
            len: version.len(),
        });
    }
    if version.trim().is_empty() {
        return Err(VersionError::Empty {
            ecosystem: ecosystem.to_owned(),
        });
    }
    Ok(())
}

fn invalid(ecosystem: &str, version: &str, reason: String) -> VersionError {
    VersionError::Invalid {
        ecosystem: ecosystem.to_owned(),
        version: version.to_owned(),
        reason,
    }
}

fn parse_semver(
    ecosystem: &str,
    version: &str,
    v_prefix_allowed: bool,
) -> Result<ParsedVersion, VersionError> {
    let trimmed = version.trim();
    let bare = if v_prefix_allowed {
        trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed)
    } else {
        trimmed
    };
    semver::Version::parse(bare)
        .map(ParsedVersion::SemVer)
        .map_err(|error| invalid(ecosystem, version, error.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Debian (dpkg)

/// A Debian version `[epoch:]upstream[-revision]`, ordered as dpkg orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianVersion {
    epoch: u64,
    upstream: String,
    /// Empty when the version has no `-revision`; dpkg orders that like `0`.
    revision: String,
}

impl DebianVersion {
    fn parse(version: &str) -> Result<DebianVersion, String> {
        let version = version.trim();
        let (epoch, rest) = match version.split_once(':') {
            Some((epoch, rest)) => {
                if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!("the epoch `{epoch}` is not a number"));
                }
                let epoch = epoch
                    .parse::<u64>()
                    .map_err(|_| format!("the epoch `{epoch}` is too large"))?;
                (epoch, rest)
            }
            None => (0, version),
        };
        let (upstream, revision) = match rest.rsplit_once('-') {
            Some((upstream, revision)) => (upstream, revision),
            None => (rest, ""),
        };
        if upstream.is_empty() {
            return Err("the upstream version is empty".to_owned());
        }
        if !upstream.as_bytes()[0].is_ascii_digit() {
            return Err("the upstream version must start with a digit".to_owned());
        }
        if let Some(bad) = upstream
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':')))
        {
            return Err(format!("`{bad}` is not allowed in an upstream version"));
        }
        if rest.contains('-') && revision.is_empty() {
            return Err("the revision after `-` is empty".to_owned());
        }
        if let Some(bad) = revision
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~')))
        {
            return Err(format!("`{bad}` is not allowed in a Debian revision"));
        }
        Ok(DebianVersion {
            epoch,
            upstream: upstream.to_owned(),
            revision: revision.to_owned(),
        })
    }
}

impl Ord for DebianVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.epoch
            .cmp(&other.epoch)
            .then_with(|| dpkg_part_cmp(self.upstream.as_bytes(), other.upstream.as_bytes()))
            .then_with(|| dpkg_part_cmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for DebianVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// dpkg's weight of a non-digit byte: `~` before the end of the string, the end before
/// letters, letters before every other character.
fn dpkg_order(byte: Option<u8>) -> i32 {
    match byte {
        None => 0,
        Some(b'~') => -1,
        Some(b) if b.is_ascii_digit() => 0,
        Some(b) if b.is_ascii_alphabetic() => i32::from(b),
        Some(b) => i32::from(b) + 256,
    }
}

/// dpkg's comparison of an upstream version or a revision: alternating runs of non-digits
/// (by [`dpkg_order`]) and digits (numerically, of any length).
fn dpkg_part_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !a[i].is_ascii_digit()) || (j < b.len() && !b[j].is_ascii_digit()) {
            let order_a = dpkg_order(a.get(i).copied().filter(|c| !c.is_ascii_digit()));
            let order_b = dpkg_order(b.get(j).copied().filter(|c| !c.is_ascii_digit()));
            if order_a != order_b {
                return order_a.cmp(&order_b);
            }
            if i < a.len() && !a[i].is_ascii_digit() {
                i += 1;
            }
            if j < b.len() && !b[j].is_ascii_digit() {
                j += 1;
            }
        }
        let digits_a = digit_run(a, &mut i);
        let digits_b = digit_run(b, &mut j);
        let ordering = numeric_cmp(digits_a, digits_b);
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

fn digit_run<'a>(bytes: &'a [u8], index: &mut usize) -> &'a [u8] {
    let start = *index;
    while *index < bytes.len() && bytes[*index].is_ascii_digit() {
        *index += 1;
    }
    &bytes[start..*index]
}

/// Compares two runs of ASCII digits as numbers of any length (leading zeros ignored).
fn numeric_cmp(a: &[u8], b: &[u8]) -> Ordering {
    let a = strip_leading_zeros(a);
    let b = strip_leading_zeros(b);
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

fn strip_leading_zeros(digits: &[u8]) -> &[u8] {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    &digits[first..]
}

// ---------------------------------------------------------------------------------------------
// Alpine (apk)

/// apk's suffixes, in order; a version without a suffix sits between `rc` and `cvs`.
const ALPINE_PRE_SUFFIXES: [&str; 4] = ["alpha", "beta", "pre", "rc"];
const ALPINE_POST_SUFFIXES: [&str; 5] = ["cvs", "svn", "git", "hg", "p"];
/// The rank of "no suffix" among the suffixes.
const ALPINE_NO_SUFFIX_RANK: u8 = ALPINE_PRE_SUFFIXES.len() as u8;

/// An Alpine package version `1.2.3[letter]{_suffix[N]}[~hash][-rN]`, ordered as apk orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlpineVersion {
    /// The dotted numbers, as written (leading zeros matter after the first, see `cmp`).
    numbers: Vec<String>,
    letter: Option<u8>,
    /// (rank, number): rank indexes pre-suffixes, then "none", then post-suffixes.
    suffixes: Vec<(u8, String)>,
    revision: String,
}

impl AlpineVersion {
    fn parse(version: &str) -> Result<AlpineVersion, String> {
        let version = version.trim();
        let (main, revision) = match version.rsplit_once("-r") {
            Some((main, revision)) => {
                if revision.is_empty() || !revision.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(format!(
                        "the package release `-r{revision}` is not a number"
                    ));
                }
                (main, revision.to_owned())
            }
            None => (version, "0".to_owned()),
        };
        // A `~hash` (a commit) is not ordered by apk's rules beyond being present; dropped.
        let main = main.split_once('~').map_or(main, |(before, _)| before);
        let mut parts = main.split('_');
        let head = parts.next().unwrap_or_default();
        let digits_end = head
            .bytes()
            .position(|b| !(b.is_ascii_digit() || b == b'.'))
            .unwrap_or(head.len());
        let (dotted, tail) = head.split_at(digits_end);
        if dotted.is_empty() || !dotted.as_bytes()[0].is_ascii_digit() {
            return Err("it must start with a number".to_owned());
        }
        let numbers: Vec<String> = dotted.split('.').map(str::to_owned).collect();
        if numbers.iter().any(String::is_empty) {
            return Err("it has an empty number between dots".to_owned());
        }
        let letter = match tail.as_bytes() {
            [] => None,
            [letter] if letter.is_ascii_lowercase() => Some(*letter),
            _ => {
                return Err(format!(
                    "`{tail}` after the numbers is not a single lowercase letter"
                ));
            }
        };
        let mut suffixes = Vec::new();
        for part in parts {
            let name_end = part
                .bytes()
                .position(|b| b.is_ascii_digit())
                .unwrap_or(part.len());
            let (name, number) = part.split_at(name_end);
            let rank = if let Some(index) = ALPINE_PRE_SUFFIXES.iter().position(|s| *s == name) {
                index as u8
            } else if let Some(index) = ALPINE_POST_SUFFIXES.iter().position(|s| *s == name) {
                ALPINE_NO_SUFFIX_RANK + 1 + index as u8
            } else {
                return Err(format!(
                    "`_{name}` is not an apk suffix (alpha, beta, pre, rc, cvs, svn, git, hg, p)"
                ));
            };
            if !number.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`_{part}` has a suffix number that is not a number"
                ));
            }
            suffixes.push((rank, number.to_owned()));
        }
        Ok(AlpineVersion {
            numbers,
            letter,
            suffixes,
            revision,
        })
    }
}

impl Ord for AlpineVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        for (index, (a, b)) in self.numbers.iter().zip(&other.numbers).enumerate() {
            // apk compares a later number with a leading zero as a decimal fraction
            // (1.01 < 1.1), as text.
            let ordering = if index > 0 && (a.starts_with('0') || b.starts_with('0')) {
                a.cmp(b)
            } else {
                numeric_cmp(a.as_bytes(), b.as_bytes())
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        self.numbers
            .len()
            .cmp(&other.numbers.len())
            .then_with(|| self.letter.cmp(&other.letter))
            .then_with(|| {
                let count = self.suffixes.len().max(other.suffixes.len());
                let none = (ALPINE_NO_SUFFIX_RANK, String::new());
                for index in 0..count {
                    let a = self.suffixes.get(index).unwrap_or(&none);
                    let b = other.suffixes.get(index).unwrap_or(&none);
                    let ordering =
                        a.0.cmp(&b.0)
                            .then_with(|| numeric_cmp(a.1.as_bytes(), b.1.as_bytes()));
                    if ordering != Ordering::Equal {
                        return ordering;
                    }
                }
                Ordering::Equal
            })
            .then_with(|| numeric_cmp(self.revision.as_bytes(), other.revision.as_bytes()))
    }
}

impl PartialOrd for AlpineVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ---------------------------------------------------------------------------------------------
// Maven (ComparableVersion)

/// Maven's known qualifiers in order; the empty one is a release (`ga`, `final`, `release`).
const MAVEN_QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];
const MAVEN_RELEASE_RANK: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
enum MavenItem {
    /// Digits without leading zeros (empty is zero).
    Int(String),
    /// A qualifier's sort key: its rank among the known ones, or after them by name.
    Qualifier(MavenQualifier),
    List(Vec<MavenItem>),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum MavenQualifier {
    Known(usize),
    Unknown(String),
}

/// A Maven version, ordered by Maven's `ComparableVersion` rules: `.`- and `-`-separated
/// items, a switch between digits and letters acting as `-`, known qualifiers ordered
/// `alpha < beta < milestone < rc = cr < snapshot < (release) < sp`, unknown ones after them by
/// name, trailing zeros and release qualifiers ignored (`1.0 == 1 == 1.0.0-ga`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MavenVersion {
    items: Vec<MavenItem>,
}

impl MavenVersion {
    fn parse(version: &str) -> Result<MavenVersion, String> {
        let version = version.trim().to_ascii_lowercase();
        if let Some(bad) = version
            .chars()
            .find(|c| c.is_whitespace() || c.is_control())
        {
            return Err(format!("{bad:?} is not allowed in a Maven version"));
        }
        // Each `-` (and each digit/letter switch) opens a sublist nested in the one before,
        // so the lists form a chain: collect them flat, then fold from the innermost.
        let mut chain: Vec<Vec<MavenItem>> = vec![Vec::new()];
        let bytes = version.as_bytes();
        let mut start = 0;
        let mut in_digits = false;
        for (index, &byte) in bytes.iter().enumerate() {
            let current = chain.len() - 1;
            match byte {
                b'.' => {
                    chain[current].push(maven_token(&version[start..index], false));
                    start = index + 1;
                }
                b'-' => {
                    chain[current].push(maven_token(&version[start..index], false));
                    start = index + 1;
                    chain.push(Vec::new());
                }
                b'0'..=b'9' => {
                    if !in_digits && index > start {
                        chain[current].push(maven_token(&version[start..index], true));
                        start = index;
                        chain.push(Vec::new());
                    }
                    in_digits = true;
                }
                _ => {
                    if in_digits && index > start {
                        chain[current].push(maven_token(&version[start..index], false));
                        start = index;
                        chain.push(Vec::new());
                    }
                    in_digits = false;
                }
            }
        }
        let current = chain.len() - 1;
        if bytes.len() > start {
            chain[current].push(maven_token(&version[start..], false));
        }
        let mut inner: Option<Vec<MavenItem>> = None;
        while let Some(mut list) = chain.pop() {
            if let Some(sublist) = inner.take() {
                list.push(MavenItem::List(sublist));
            }
            maven_normalize(&mut list);
            inner = Some(list);
        }
        Ok(MavenVersion {
            items: inner.unwrap_or_default(),
        })
    }
}

/// One token between separators: a number, or a qualifier (`a1`, `b1`, `m1` spell alpha, beta
/// and milestone when a digit follows directly).
fn maven_token(token: &str, followed_by_digit: bool) -> MavenItem {
    if token.is_empty() {
        return MavenItem::Int(String::new());
    }
    if token.bytes().all(|b| b.is_ascii_digit()) {
        let digits = strip_leading_zeros(token.as_bytes());
        return MavenItem::Int(String::from_utf8_lossy(digits).into_owned());
    }
    let spelled = match token {
        "a" if followed_by_digit => "alpha",
        "b" if followed_by_digit => "beta",
        "m" if followed_by_digit => "milestone",
        "ga" | "final" | "release" => "",
        "cr" => "rc",
        other => other,
    };
    MavenItem::Qualifier(match MAVEN_QUALIFIERS.iter().position(|q| *q == spelled) {
        Some(rank) => MavenQualifier::Known(rank),
        None => MavenQualifier::Unknown(spelled.to_owned()),
    })
}

impl MavenItem {
    fn is_null(&self) -> bool {
        match self {
            MavenItem::Int(digits) => digits.is_empty(),
            MavenItem::Qualifier(q) => *q == MavenQualifier::Known(MAVEN_RELEASE_RANK),
            MavenItem::List(items) => items.is_empty(),
        }
    }

    /// Compares with another item, or with nothing (`None`: the other version ended).
    fn cmp_item(&self, other: Option<&MavenItem>) -> Ordering {
        match (self, other) {
            (MavenItem::Int(digits), None) => {
                if digits.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (MavenItem::Int(a), Some(MavenItem::Int(b))) => numeric_cmp(a.as_bytes(), b.as_bytes()),
            (MavenItem::Int(_), Some(_)) => Ordering::Greater,
            (MavenItem::Qualifier(q), None) => q.cmp(&MavenQualifier::Known(MAVEN_RELEASE_RANK)),
            (MavenItem::Qualifier(_), Some(MavenItem::Int(_) | MavenItem::List(_))) => {
                Ordering::Less
            }
            (MavenItem::Qualifier(a), Some(MavenItem::Qualifier(b))) => a.cmp(b),
            (MavenItem::List(items), None) => match items.first() {
                Some(first) => first.cmp_item(None),
                None => Ordering::Equal,
            },
            (MavenItem::List(_), Some(MavenItem::Int(_))) => Ordering::Less,
            (MavenItem::List(_), Some(MavenItem::Qualifier(_))) => Ordering::Greater,
            (MavenItem::List(a), Some(MavenItem::List(b))) => maven_list_cmp(a, b),
        }
    }
}

fn maven_list_cmp(a: &[MavenItem], b: &[MavenItem]) -> Ordering {
    for index in 0..a.len().max(b.len()) {
        let ordering = match (a.get(index), b.get(index)) {
            (Some(left), right) => left.cmp_item(right),
            (None, Some(right)) => right.cmp_item(None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Drops trailing null items (zeros, release qualifiers, empty lists), looking past sublists
/// as Maven does.
fn maven_normalize(items: &mut Vec<MavenItem>) {
    let mut index = items.len();
    while index > 0 {
        index -= 1;
        if items[index].is_null() {
            items.remove(index);
        } else if !matches!(items[index], MavenItem::List(_)) {
            break;
        }
    }
}

impl Ord for MavenVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        maven_list_cmp(&self.items, &other.items)
    }
}

impl PartialOrd for MavenVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::{Equal, Greater, Less};

    fn check(ecosystem: Ecosystem, pairs: &[(&str, &str, Ordering)]) {
        for (a, b, expected) in pairs {
            let got = compare(&ecosystem, a, b).unwrap();
            assert_eq!(got, *expected, "{ecosystem:?}: {a} vs {b}");
            let reverse = compare(&ecosystem, b, a).unwrap();
            assert_eq!(reverse, expected.reverse(), "{ecosystem:?}: {b} vs {a}");
        }
    }

    #[test]
    fn pypi_orders_by_pep_440() {
        check(
            Ecosystem::PyPI,
            &[
                ("1.0rc1", "1.0", Less),
                ("1.0.post1", "1.0", Greater),
                ("1.0", "1.0.0", Equal),
                ("2.2", "2.2.0", Equal),
                ("1.0.dev1", "1.0a1", Less),
                ("1.0a1", "1.0b1", Less),
                ("1!0.5", "2.0", Greater),
                ("1.0+local.1", "1.0", Greater),
                ("1.10", "1.9", Greater),
                ("3.1.0.rc1", "3.1.0rc1", Equal),
                ("5.3b1", "5.3", Less),
            ],
        );
    }

    #[test]
    fn semver_ecosystems_order_by_precedence() {
        check(
            Ecosystem::CratesIo,
            &[
                ("1.0.0-alpha", "1.0.0", Less),
                ("1.0.0-alpha.1", "1.0.0-alpha.beta", Less),
                ("1.0.0+build.1", "1.0.0+build.2", Equal),
                ("0.10.0", "0.9.9", Greater),
            ],
        );
        check(
            Ecosystem::Npm,
            &[("v1.2.3", "1.2.3", Equal), ("=1.2.4", "1.2.3", Greater)],
        );
        check(
            Ecosystem::Go,
            &[
                ("v1.2.3", "1.2.3", Equal),
                ("v0.0.0-20191109021931-daa7c04131f5", "v0.0.1", Less),
                (
                    "v0.0.0-20191109021931-daa7c04131f5",
                    "v0.0.0-20200101000000-000000000000",
                    Less,
                ),
                ("v2.0.0+incompatible", "v2.0.0", Equal),
            ],
        );
    }

    #[test]
    fn crates_io_refuses_a_v_prefix_and_partial_versions() {
        assert!(matches!(
            compare(&Ecosystem::CratesIo, "v1.0.0", "1.0.0"),
            Err(VersionError::Invalid { .. })
        ));
        assert!(matches!(
            compare(&Ecosystem::CratesIo, "1.0", "1.0.0"),
            Err(VersionError::Invalid { .. })
        ));
    }

    #[test]
    fn debian_orders_by_dpkg_rules() {
        check(
            Ecosystem::Debian,
            &[
                ("1:0.9", "2.0", Greater),
                ("1.0~rc1", "1.0", Less),
                ("1.0~~", "1.0~", Less),
                ("1.0", "1.0-0", Equal),
                ("1.0-1", "1.0-2", Less),
                ("1.0a", "1.0", Greater),
                ("1.0+b1", "1.0a", Greater),
                ("1.0.1", "1.0a", Greater),
                ("2.30-1", "2.4-1", Greater),
                ("3.0.11-1~deb12u2", "3.0.11-1", Less),
                ("1.1.1n-0+deb11u5", "1.1.1n-0+deb11u4", Greater),
                ("7.88.1-10+deb12u5", "7.88.1-10", Greater),
                ("0001.0", "1.0", Equal),
                ("1.2.3-1ubuntu0.1", "1.2.3-1", Greater),
                ("1:1.0-1", "1:1.0-1", Equal),
                (
                    "99999999999999999999999.1",
                    "99999999999999999999998.9",
                    Greater,
                ),
            ],
        );
    }

    #[test]
    fn debian_refuses_malformed_versions() {
        for bad in ["a1.0", "x:1.0", "1.0-", "1.0 1", "1:", "1.0-1!"] {
            assert!(
                matches!(
                    parse(&Ecosystem::Debian, bad),
                    Err(VersionError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn alpine_orders_by_apk_rules() {
        check(
            Ecosystem::Alpine,
            &[
                ("1.2.3_rc1", "1.2.3", Less),
                ("1.2.3", "1.2.3-r1", Less),
                ("1.2.3_rc1", "1.2.3-r1", Less),
                ("1.2.3_alpha", "1.2.3_beta", Less),
                ("1.2.3_beta2", "1.2.3_pre1", Less),
                ("1.2.3_pre1", "1.2.3_rc1", Less),
                ("1.2.3_p1", "1.2.3", Greater),
                ("1.2.3_p1", "1.2.3-r5", Greater),
                ("1.2.3_git20230101", "1.2.3_p1", Less),
                ("1.2.3a", "1.2.3", Greater),
                ("1.2.3a", "1.2.3b", Less),
                ("1.2.10", "1.2.9", Greater),
                ("1.2", "1.2.1", Less),
                ("1.01", "1.1", Less),
                ("3.1.4-r5", "3.1.4-r10", Less),
                ("1.2.3-r0", "1.2.3", Equal),
            ],
        );
    }

    #[test]
    fn alpine_refuses_unknown_suffixes_and_garbage() {
        for bad in ["1.2.3_foo", "a1", "1..2", "1.2.3-rX", "1.2.3AB"] {
            assert!(
                matches!(
                    parse(&Ecosystem::Alpine, bad),
                    Err(VersionError::Invalid { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn maven_orders_by_comparable_version_rules() {
        check(
            Ecosystem::Maven,
            &[
                ("1.0-alpha", "1.0", Less),
                ("1.0", "1.0-sp", Less),
                ("1.0-alpha", "1.0-sp", Less),
                ("1", "1.0.0", Equal),
                ("1.0-ga", "1.0", Equal),
                ("1.0.final", "1.0", Equal),
                ("1.0-alpha", "1.0-beta", Less),
                ("1.0-beta", "1.0-milestone", Less),
                ("1.0-milestone", "1.0-rc", Less),
                ("1.0-rc", "1.0-cr", Equal),
                ("1.0-rc", "1.0-snapshot", Less),
                ("1.0-SNAPSHOT", "1.0", Less),
                ("1.0a1", "1.0-alpha-1", Equal),
                ("1.0-alpha-1", "1.0-alpha-2", Less),
                ("1.0-alpha-10", "1.0-alpha-2", Greater),
                ("1.0-sp", "1.0-foo", Less),
                ("1.0-foo", "1.0-1", Less),
                ("1.0.1", "1.0-1", Greater),
                ("2.0", "10.0", Less),
                ("1.0-xyz", "1.0-abc", Greater),
                ("2.17.1", "2.17.0", Greater),
                ("2.15.0-rc1", "2.15.0", Less),
            ],
        );
    }

    #[test]
    fn unknown_ecosystem_is_named_in_the_error() {
        let error = compare(&Ecosystem::Other("Hex".into()), "1.0", "2.0").unwrap_err();
        assert_eq!(error, VersionError::UnknownEcosystem("Hex".into()));
        assert!(error.to_string().contains("`Hex`"));
    }

    #[test]
    fn oversized_and_empty_versions_are_refused_before_parsing() {
        let long = "1.".repeat(MAX_VERSION_LEN);
        for ecosystem in [Ecosystem::PyPI, Ecosystem::Debian, Ecosystem::Maven] {
            assert!(matches!(
                parse(&ecosystem, &long),
                Err(VersionError::TooLong { .. })
            ));
            assert!(matches!(
                parse(&ecosystem, " "),
                Err(VersionError::Empty { .. })
            ));
        }
    }

    #[test]
    fn maven_deeply_nested_version_within_the_limit_parses() {
        // Every `-` opens a sublist: the longest allowed version nests 255 deep.
        let nested = "1-".repeat(MAX_VERSION_LEN / 2 - 1) + "1";
        let a = parse(&Ecosystem::Maven, &nested).unwrap();
        let b = parse(&Ecosystem::Maven, &nested).unwrap();
        assert_eq!(a.cmp_same(&b), Some(Equal));
    }
}
