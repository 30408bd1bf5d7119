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
