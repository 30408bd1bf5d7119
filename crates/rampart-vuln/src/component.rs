//! A software component as an SBOM names it, and the ecosystem whose version rules order its
//! versions. Components are identified by purl where the SBOM gives one, by CPE for firmware
//! parts that have one, and by name and version for those that have neither (Yocto recipes,
//! busybox, U-Boot, the kernel).

use serde::{Deserialize, Serialize};

/// The ecosystems whose version orderings Rampart knows, by their OSV names. Any other
/// ecosystem is kept by name ([`Ecosystem::Other`]) and reported as unmatched, never dropped.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Ecosystem {
    PyPI,
    CratesIo,
    Npm,
    Go,
    Maven,
    Debian,
    Alpine,
    /// An ecosystem without ordering rules here (its OSV name, or the purl type).
    Other(String),
}

impl Ecosystem {
    /// The OSV spelling (`PyPI`, `crates.io`, `npm`, `Go`, `Maven`, `Debian`, `Alpine`).
    /// OSV also qualifies some ecosystems with a release (`Debian:12`, `Alpine:v3.19`): the
    /// qualifier is not part of the ecosystem.
    pub fn from_osv(name: &str) -> Ecosystem {
        let base = name.split(':').next().unwrap_or(name);
        match base {
            "PyPI" => Ecosystem::PyPI,
            "crates.io" => Ecosystem::CratesIo,
            "npm" => Ecosystem::Npm,
            "Go" => Ecosystem::Go,
            "Maven" => Ecosystem::Maven,
            "Debian" => Ecosystem::Debian,
            "Alpine" => Ecosystem::Alpine,
            other => Ecosystem::Other(other.to_owned()),
        }
    }

    /// The OSV spelling.
    pub fn as_osv(&self) -> &str {
        match self {
            Ecosystem::PyPI => "PyPI",
            Ecosystem::CratesIo => "crates.io",
            Ecosystem::Npm => "npm",
            Ecosystem::Go => "Go",
            Ecosystem::Maven => "Maven",
            Ecosystem::Debian => "Debian",
            Ecosystem::Alpine => "Alpine",
            Ecosystem::Other(name) => name,
        }
    }

    /// The ecosystem of a purl type (`pypi`, `cargo`, `npm`, `golang`, `maven`, `deb`, `apk`);
    /// `None` for types that name no ecosystem (`generic`).
    pub fn from_purl_type(purl_type: &str) -> Option<Ecosystem> {
        Some(match purl_type {
            "pypi" => Ecosystem::PyPI,
            "cargo" => Ecosystem::CratesIo,
            "npm" => Ecosystem::Npm,
            "golang" => Ecosystem::Go,
            "maven" => Ecosystem::Maven,
            "deb" => Ecosystem::Debian,
            "apk" => Ecosystem::Alpine,
            "generic" => return None,
            // Purl types of ecosystems without ordering rules here carry OSV's spelling, so
            // that their advisories' explicit `versions` lists still meet them.
            "nuget" => Ecosystem::Other("NuGet".to_owned()),
            "gem" => Ecosystem::Other("RubyGems".to_owned()),
            "composer" => Ecosystem::Other("Packagist".to_owned()),
            "hex" => Ecosystem::Other("Hex".to_owned()),
            "pub" => Ecosystem::Other("Pub".to_owned()),
            "hackage" => Ecosystem::Other("Hackage".to_owned()),
            "cran" => Ecosystem::Other("CRAN".to_owned()),
            "swift" => Ecosystem::Other("SwiftURL".to_owned()),
            other => Ecosystem::Other(other.to_owned()),
        })
    }

    /// Whether Rampart orders this ecosystem's versions.
    pub fn is_known(&self) -> bool {
        !matches!(self, Ecosystem::Other(_))
    }
}

/// One component of a release, as its SBOM lists it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// The SBOM's own reference to it (CycloneDX `bom-ref`, SPDX `SPDXID`); empty if none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reference: String,
    pub name: String,
    /// The version as the SBOM states it (empty when it states none: such a component is
    /// reported, it cannot be matched).
    pub version: String,
    /// The package URL, as given (`pkg:pypi/requests@2.19.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    /// A CPE 2.3 name (`cpe:2.3:a:denx:u-boot:2023.04:*:*:*:*:*:*:*`), for firmware parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpe: Option<String>,
    /// The CycloneDX `group` (a Maven group id, an npm scope), kept apart from the name as
    /// the SBOM gives it; OSV's Maven names are `group:name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Ecosystem {
    /// The package name as this ecosystem compares names, so that an advisory's spelling and
    /// an SBOM's meet: PyPI by PEP 503 (lowercase, runs of `-`, `_`, `.` as one `-`);
    /// crates.io case-insensitively with `_` as `-` (crates.io refuses two crates that differ
    /// only so); every other ecosystem as written (npm, Go, Maven and distribution package
    /// names are case-sensitive).
    pub fn normalize_package_name(&self, name: &str) -> String {
        let name = name.trim();
        match self {
            Ecosystem::PyPI => {
                let mut normalized = String::with_capacity(name.len());
                let mut in_separator_run = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        if !in_separator_run {
                            normalized.push('-');
                        }
                        in_separator_run = true;
                    } else {
                        normalized.extend(c.to_lowercase());
                        in_separator_run = false;
                    }
                }
                normalized
            }
            Ecosystem::CratesIo => name.to_ascii_lowercase().replace('_', "-"),
            _ => name.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_names_normalize_by_pep_503() {
        for spelling in ["PyYAML", "pyyaml", "Py_Yaml", "py.yaml", "py-_.yaml"] {
            let expected = if spelling.eq_ignore_ascii_case("pyyaml") {
                "pyyaml"
            } else {
                "py-yaml"
            };
            assert_eq!(Ecosystem::PyPI.normalize_package_name(spelling), expected);
        }
        assert_eq!(
            Ecosystem::PyPI.normalize_package_name("zope.interface"),
            "zope-interface"
        );
    }

    #[test]
    fn crates_io_names_ignore_case_and_underscores_other_ecosystems_keep_theirs() {
        assert_eq!(
            Ecosystem::CratesIo.normalize_package_name("Serde_JSON"),
            "serde-json"
        );
        assert_eq!(
            Ecosystem::Npm.normalize_package_name("JSONStream"),
            "JSONStream"
        );
        assert_eq!(
            Ecosystem::Go.normalize_package_name("github.com/Foo/bar"),
            "github.com/Foo/bar"
        );
    }
}
