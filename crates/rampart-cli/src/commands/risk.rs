//! `rampart risk ...`: supply-chain risk. `sbom-check` matches an SBOM against a directory of
//! OSV advisories (and NVD documents, `--nvd`) offline, for pipelines, without a server. The
//! matching is `rampart_vuln::matching` and `::nvd`, merged by `::combined`; this module reads
//! files with size limits and prints. `import`,
//! `posture` and `remediate` go through the management API (`risk_fleet`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_vuln::combined::{Finding, combine};
use rampart_vuln::matching::{AdvisoryIndex, MatchReport, ProblemKind};
use rampart_vuln::nvd::CpeMatchReport;
use rampart_vuln::osv::{MAX_ADVISORY_BYTES, parse_advisory};
use rampart_vuln::sbom::{MAX_SBOM_BYTES, parse_sbom};
use rampart_vuln::suppression::{SuppressedMatch, split_cpe_matches};

use super::risk_fleet::{self, Output, RemediateRequest};
use super::risk_nvd;
use crate::shared::api_client::ApiArgs;
use crate::shared::files::read_bounded;

/// The most advisory files read from one directory (all of OSV's ecosystems together hold
/// fewer than 250,000 records).
const MAX_ADVISORY_FILES: usize = 1_000_000;

#[derive(Subcommand)]
pub enum RiskCommand {
    /// Match an SBOM's components against a directory of OSV advisories, offline: which
    /// advisory applies to which component, with its aliases and fixed versions. Exits 0
    /// when it ran, whatever it found.
    SbomCheck {
        /// The SBOM (CycloneDX 1.4-1.6 or SPDX 2.3 JSON).
        #[arg(long)]
        sbom: PathBuf,
        /// A directory of OSV advisories, one JSON record per `*.json` file (an unpacked
        /// osv.dev ecosystem export, or a clone of an advisory database's records). Optional
        /// with `--nvd`.
        #[arg(long, required_unless_present = "nvd")]
        advisories: Option<PathBuf>,
        /// NVD CVE API 2.0 documents (a file, or a directory of `*.json` pages; repeatable):
        /// firmware parts are matched by their CPE, or by a known firmware name (busybox,
        /// u-boot, linux, ...) when they have neither purl nor CPE.
        #[arg(long)]
        nvd: Vec<PathBuf>,
        /// Print `{"matches":[...],"unmatched_ecosystems":[...]}` instead of a table (with
        /// --vex, also `"suppressed":[...]`).
        #[arg(long)]
        json: bool,
        /// A vendor VEX document (CycloneDX VEX or OpenVEX, bare or signed with `rampart risk
        /// vex sign`): OSV matches a statement says do not affect the component move out of
        /// `matches` into `suppressed`, with the statement's justification. Repeatable.
        #[arg(long = "vex")]
        vex: Vec<PathBuf>,
        /// A trusted vendor public key (`rampart key export-public`): every --vex must then be
        /// signed by one of them. Without it, VEX is used unchecked (said on stderr). Repeatable.
        #[arg(long = "vex-signer", requires = "vex")]
        vex_signers: Vec<PathBuf>,
    },
    /// Vendor VEX: sign and verify documents, import them into the server, list them.
    Vex {
        #[command(subcommand)]
        command: super::risk_vex::VexCommand,
    },
    /// Import OSV advisories into the server: every `*.json` of a directory, or every
    /// `*.json` entry of osv.dev's per-ecosystem zip; sent in batches. Incremental: a changed
    /// record replaces the stored one, a withdrawn one leaves matching.
    Import {
        #[command(flatten)]
        api: ApiArgs,
        /// A directory of OSV records, or a .zip of them.
        #[arg(long, required_unless_present = "nvd")]
        advisories: Option<PathBuf>,
        /// NVD CVE API 2.0 documents (a file, or a directory of `*.json` pages; repeatable),
        /// sent to `POST /api/v1/risk/nvd` in batches.
        #[arg(long)]
        nvd: Vec<PathBuf>,
    },
    /// The fleet's risk posture: per group the devices, the affected devices, advisories by
    /// severity, the worst advisory and a score; most at risk first.
    Posture {
        #[command(flatten)]
        api: ApiArgs,
        /// What to group by.
        #[arg(long, default_value = "region", value_parser = ["device", "release", "hardware", "region", "tag"])]
        by: String,
        /// Print the API's JSON (every row).
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (a header line, RFC 4180 quoting).
        #[arg(long)]
        csv: bool,
    },
    /// Each advisory's exposure window (published -> fleet remediated), as the server's risk
    /// watch keeps it: open ones oldest first.
    Exposure {
        #[command(flatten)]
        api: ApiArgs,
        /// Only exposures in this state.
        #[arg(long, value_parser = ["open", "remediated", "withdrawn"])]
        state: Option<String>,
        /// Print the API's JSON (every row).
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV (a header line, RFC 4180 quoting; times in Unix seconds).
        #[arg(long)]
        csv: bool,
    },
    /// One advisory (by id or alias): severity, the devices it affects and its exposure.
    Advisory {
        #[command(flatten)]
        api: ApiArgs,
        /// The advisory id or alias (PYSEC-..., CVE-..., GHSA-...), or a CVE id of the
        /// imported NVD records.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create a campaign of a fixed release for exactly the devices an advisory affects now.
    Remediate {
        #[command(flatten)]
        api: ApiArgs,
        /// The advisory id or alias (PYSEC-..., CVE-..., GHSA-...), or a CVE id of the
        /// imported NVD records.
        advisory: String,
        /// The fixed release (its target path); its SBOM must not match the advisory.
        /// Affected devices on hardware it is not built for are left out and listed.
        #[arg(long)]
        release: String,
        /// The campaign's name (default: "remediate ADVISORY").
        #[arg(long)]
        name: Option<String>,
        /// Campaign spec fields as in `campaign create` (phases, gate, policy, ...; not name,
        /// release or targets), a JSON file.
        #[arg(long)]
        options: Option<PathBuf>,
        /// Start the campaign at once.
        #[arg(long)]
        start: bool,
    },
}

pub fn run(command: RiskCommand) -> anyhow::Result<()> {
    match command {
        RiskCommand::SbomCheck {
            sbom,
            advisories,
            nvd,
            json,
            vex,
            vex_signers,
        } => sbom_check(
            &sbom,
            advisories.as_deref(),
            &nvd,
            json,
            (&vex, &vex_signers),
        ),
        RiskCommand::Vex { command } => super::risk_vex::run(command),
        RiskCommand::Import {
            api,
            advisories,
            nvd,
        } => {
            let client = api.client()?;
            if let Some(advisories) = advisories {
                risk_fleet::import(&client, &advisories)?;
            }
            if !nvd.is_empty() {
                risk_nvd::import(&client, &nvd)?;
            }
            Ok(())
        }
        RiskCommand::Posture { api, by, json, csv } => {
            let output = if json {
                Output::Json
            } else if csv {
                Output::Csv
            } else {
                Output::Table
            };
            risk_fleet::posture(&api.client()?, &by, output)
        }
        RiskCommand::Exposure {
            api,
            state,
            json,
            csv,
        } => {
            let output = if json {
                Output::Json
            } else if csv {
                Output::Csv
            } else {
                Output::Table
            };
            super::risk_exposure::exposure(&api.client()?, state.as_deref(), output)
        }
        RiskCommand::Advisory { api, id, json } => {
            super::risk_exposure::advisory(&api.client()?, &id, json)
        }
        RiskCommand::Remediate {
            api,
            advisory,
            release,
            name,
            options,
            start,
        } => risk_fleet::remediate(
            &api.client()?,
            RemediateRequest {
                advisory: &advisory,
                release: &release,
                name: name.as_deref(),
                options: options.as_deref(),
                start,
            },
        ),
    }
}

fn sbom_check(
    sbom: &Path,
    advisories: Option<&Path>,
    nvd: &[PathBuf],
    json: bool,
    (vex_files, vex_signers): (&[PathBuf], &[PathBuf]),
) -> anyhow::Result<()> {
    // VEX first: a refused VEX fails the command before the feeds are read.
    let vex = (!vex_files.is_empty())
        .then(|| super::risk_vex::load_for_check(vex_files, vex_signers))
        .transpose()?;
    let sbom_bytes = read_bounded(sbom, MAX_SBOM_BYTES, "SBOM")?;
    let components = parse_sbom(&sbom_bytes)
        .with_context(|| format!("reading the SBOM {}", sbom.display()))?
        .components;
    let index = match advisories {
        Some(advisories) => load_advisories(advisories)?,
        None => AdvisoryIndex::new(),
    };
    let mut report = index.match_components(&components);
    let suppressed = match &vex {
        Some(vex) => {
            let (kept, suppressed) = vex.split(std::mem::take(&mut report.matches), &components);
            report.matches = kept;
            Some(suppressed)
        }
        None => None,
    };
    // Legacy (pre-PEP 440) versions in lists are common and harmless (matched as text):
    // counted, not listed; anything that narrows the matching is named.
    let mut as_text = 0;
    for problem in index.problems() {
        if problem.kind == ProblemKind::ListedVersionAsText {
            as_text += 1;
        } else {
            eprintln!("warning: {}: {}", problem.advisory, problem.problem);
        }
    }
    if as_text > 0 {
        eprintln!(
            "note: {as_text} listed versions follow no ordering rules of their ecosystem and are matched as written"
        );
    }
    let (cpe_report, nvd_records) = if nvd.is_empty() {
        (None, 0)
    } else {
        let cpe_index = risk_nvd::load_index(nvd)?;
        for problem in cpe_index.problems() {
            eprintln!(
                "warning: {}: {}: {}",
                problem.advisory, problem.criteria, problem.problem
            );
        }
        let records = cpe_index.len();
        (Some(cpe_index.match_cpe_components(&components)), records)
    };
    // VEX on the CPE and firmware-name matches too: a CVE the vendor says does not affect a
    // firmware part (named by CPE or bom-ref) moves out with its justification, and one a
    // suppressed OSV advisory names on the same component goes with it.
    let (cpe_report, suppressed) = match (cpe_report, suppressed, &vex) {
        (Some(mut cpe_report), Some(mut suppressed), Some(vex)) => {
            let (kept, cpe_suppressed) = split_cpe_matches(
                vex,
                std::mem::take(&mut cpe_report.matches),
                &suppressed,
                &components,
            );
            cpe_report.matches = kept;
            suppressed.extend(cpe_suppressed);
            (Some(cpe_report), Some(suppressed))
        }
        (cpe_report, suppressed, _) => (cpe_report, suppressed),
    };
    warn_unchecked(&report, cpe_report.as_ref());
    let findings = combine(
        &components,
        &report.matches,
        cpe_report
            .as_ref()
            .map_or(&[][..], |r| r.matches.as_slice()),
    );
    if json {
        let mut out = report_json(&findings, &report);
        if let Some(suppressed) = &suppressed {
            out["suppressed"] = suppressed_json(suppressed);
        }
        println!("{out}");
    } else {
        print_table(
            &findings,
            &report,
            components.len(),
            index.len() + nvd_records,
        );
        if let Some(suppressed) = &suppressed {
            print_suppressed(suppressed);
        }
    }
    Ok(())
}

/// Every `*.json` file of the directory, each bounded, parsed and indexed; a file that is
/// not an OSV record fails the command, naming it.
fn load_advisories(dir: &Path) -> anyhow::Result<AdvisoryIndex> {
    let entries = std::fs::read_dir(dir).with_context(|| {
        format!(
            "reading the advisories directory {}: give a directory of OSV JSON records",
            dir.display()
        )
    })?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "json") && path.is_file() {
            if paths.len() == MAX_ADVISORY_FILES {
                bail!(
                    "{} holds more than {MAX_ADVISORY_FILES} advisory files: split the feed",
                    dir.display()
                );
            }
            paths.push(path);
        }
    }
    if paths.is_empty() {
        bail!(
            "{} holds no *.json advisory files: give a directory of OSV records",
            dir.display()
        );
    }
    paths.sort();
    let mut index = AdvisoryIndex::new();
    for path in paths {
        let bytes = read_bounded(&path, MAX_ADVISORY_BYTES, "advisory")?;
        let advisory = parse_advisory(&bytes).with_context(|| {
            format!(
                "advisory file {}: fix or remove it and run again",
                path.display()
            )
        })?;
        index.insert(advisory);
    }
    Ok(index)
}

/// Names every component a matcher could not check. With NVD records, a part without a purl
/// is the CPE matcher's: only what neither matcher identifies is named.
fn warn_unchecked(report: &MatchReport, cpe: Option<&CpeMatchReport>) {
    let unidentified = match cpe {
        Some(cpe) => &cpe.unidentified,
        None => &report.unidentified,
    };
    let cpe_unchecked = cpe.map_or(&[][..], |cpe| cpe.unversioned.as_slice());
    let cpe_unordered = cpe.map_or(&[][..], |cpe| cpe.unordered_versions.as_slice());
    for component in report.unversioned.iter().chain(cpe_unchecked) {
        eprintln!(
            "warning: {} states no version: not checked",
            component.purl.as_deref().unwrap_or(&component.name)
        );
    }
    for unidentified in unidentified {
        eprintln!(
            "warning: {} {}: not checked: {}",
            unidentified.component.name, unidentified.component.version, unidentified.reason
        );
    }
    for unordered in report.unordered_versions.iter().chain(cpe_unordered) {
        eprintln!(
            "warning: {}: only explicit versions lists checked: {}",
            unordered
                .component
                .purl
                .as_deref()
                .unwrap_or(&unordered.component.name),
            unordered.reason
        );
    }
}

/// `{"matches":[{"purl","name","version","advisory","aliases","fixed","cpe","matched_by"}...],
/// "unmatched_ecosystems":[...]}`: the pipeline format of issue 17, each match saying how its
/// component was identified (`purl` is null for a part that has none).
fn report_json(findings: &[Finding], report: &MatchReport) -> serde_json::Value {
    let matches: Vec<serde_json::Value> = findings
        .iter()
        .map(|m| {
            serde_json::json!({
                "purl": m.purl,
                "name": m.name,
                "version": m.version,
                "advisory": m.advisory,
                "aliases": m.aliases,
                "fixed": m.fixed,
                "cpe": m.cpe,
                "matched_by": m.matched_by.as_str(),
            })
        })
        .collect();
    serde_json::json!({
        "matches": matches,
        "unmatched_ecosystems": report.unmatched_ecosystems,
    })
}

/// The suppressed matches: each match's fields as in `matches` (`"purl"`, or `"cpe"` for a
/// firmware part matched by CPE or name), and `"vex": {"status", "justification",
/// "impact_statement", "source"}`.
fn suppressed_json(suppressed: &[SuppressedMatch]) -> serde_json::Value {
    serde_json::Value::Array(
        suppressed
            .iter()
            .map(|s| {
                let m = &s.matched;
                // A firmware part without a purl is named by its CPE (given or by its name):
                // `"purl": null` and a `"cpe"` after the other fields.
                let by_cpe = m.purl.starts_with("cpe:2.3:");
                let mut out = serde_json::json!({
                    "purl": (!by_cpe).then_some(&m.purl),
                    "name": m.name,
                    "version": m.version,
                    "advisory": m.advisory,
                    "aliases": m.aliases,
                    "fixed": m.fixed,
                    "vex": s.vex,
                });
                if by_cpe {
                    out["cpe"] = serde_json::json!(m.purl);
                }
                out
            })
            .collect(),
    )
}

fn print_suppressed(suppressed: &[SuppressedMatch]) {
    if suppressed.is_empty() {
        return;
    }
    println!("{} matches suppressed by VEX:", suppressed.len());
    for s in suppressed {
        let status = serde_json::to_value(s.vex.status).unwrap_or_default();
        println!(
            "  {} {} {}: {}{} ({})",
            s.matched.name,
            s.matched.version,
            s.matched.advisory,
            status.as_str().unwrap_or(""),
            s.vex
                .justification
                .as_deref()
                .map(|j| format!(", {j}"))
                .unwrap_or_default(),
            s.vex.source
        );
    }
}

fn print_table(findings: &[Finding], report: &MatchReport, components: usize, advisories: usize) {
    let rows: Vec<[String; 6]> = findings
        .iter()
        .map(|m| {
            [
                m.name.clone(),
                m.version.clone(),
                m.matched_by.as_str().to_owned(),
                m.advisory.clone(),
                m.aliases.join(","),
                if m.fixed.is_empty() {
                    "-".to_owned()
                } else {
                    m.fixed.join(",")
                },
            ]
        })
        .collect();
    let header = [
        "COMPONENT",
        "VERSION",
        "MATCHED BY",
        "ADVISORY",
        "ALIASES",
        "FIXED",
    ]
    .map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        println!("{}", cells.join("  ").trim_end());
    }
    let affected: std::collections::BTreeSet<(&str, Option<&str>, &str)> = findings
        .iter()
        .map(|m| (m.name.as_str(), m.purl.as_deref(), m.version.as_str()))
        .collect();
    println!(
        "{} matches: {} of {components} components affected, {advisories} advisories checked",
        findings.len(),
        affected.len()
    );
    if !report.unmatched_ecosystems.is_empty() {
        println!(
            "ecosystems without version ordering (explicit versions lists only): {}",
            report.unmatched_ecosystems.join(", ")
        );
    }
}
