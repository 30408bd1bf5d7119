//! The pure supply-chain risk core (issue 17): what a release is made of, which published
//! advisories apply to it, and how the vendor vouches for how it was built. No I/O and no
//! clock: the server's advisory import and risk posture, and the CLI's `rampart risk` and
//! `rampart release ... --provenance`, are its shells.
//!
//! Modules, one concern each:
//! - `component`: a software component as an SBOM names it (name, version, purl, CPE) and the
//!   ecosystem its version rules come from; purl parsing and package-name normalization.
//! - `version`: each ecosystem's version ordering (SemVer, PEP 440, dpkg, Alpine, crates.io,
//!   npm, Go, Maven) and the generic fallback, behind one `compare`.
//! - `osv`: OSV advisory records (ranges SEMVER / ECOSYSTEM / GIT, events, `versions` lists,
//!   aliases, withdrawn), parsed with every limit first.
//! - `feed_archive`: osv.dev's per-ecosystem zip of OSV records, walked within limits (entry
//!   count, each entry's bytes whatever its headers claim, the total), over any `Read + Seek`.
//! - `cpe`: CPE 2.3 names and NVD's match criteria (version bounds), ordered by a generic
//!   firmware version rule, for firmware parts with no package ecosystem.
//! - `nvd`: NVD CVE API 2.0 records, parsed with every limit first, and the index that matches
//!   firmware components by CPE (or by a known firmware name when they have none).
//! - `combined`: one report of both matchers' findings (OSV by purl, NVD by CPE or firmware
//!   name), a CVE found both ways on one component reported once.
//! - `matching`: advisories indexed by ecosystem and name, matched against components:
//!   which advisory applies, its aliases and fixed versions; ecosystems without rules are
//!   reported, never dropped.
//! - `sbom`: CycloneDX 1.4-1.6 JSON and SPDX 2.3 JSON read into components, bounded.
//! - `vex`: CycloneDX VEX and OpenVEX statements (not affected, with the justification kept;
//!   conflicts resolved by a stated rule).
//! - `signed_vex`: VEX documents in DSSE envelopes signed by a vendor key, verified before
//!   they are read.
//! - `suppression`: VEX applied to matches (suppressed, with the statement's justification).
//! - `severity`: CVSS v3.x and v4 vectors to a score and a rating.
//! - `posture`: risk posture per device, release, hardware id, region and tag (severity
//!   counts, the worst advisory, Dependency-Track's score), from matched releases.
//! - `exposure`: each advisory's exposure window (published -> fleet remediated) and when to
//!   alert on it, once per version of the record.
//! - `provenance`: in-toto statements with SLSA v1 provenance in DSSE envelopes, and the policy
//!   that accepts them (trusted builders, source, build type, k independent rebuilds).

#![forbid(unsafe_code)]

pub mod combined;
pub mod component;
pub mod cpe;
pub mod exposure;
pub mod fallback;
pub mod feed_archive;
pub mod json_limits;
pub mod matching;
pub mod nvd;
pub mod osv;
pub mod posture;
pub mod provenance;
pub mod sbom;
pub mod severity;
pub mod signed_vex;
pub mod suppression;
pub mod version;
pub mod vex;
