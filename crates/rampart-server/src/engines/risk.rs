//! Supply-chain risk (issue 17, decision 0043): what the fleet is exposed to. Joins the
//! inventory (what each device runs), the components of each release's SBOM (parsed once from
//! the hosted repository, hash-checked against its TUF target, and stored) and the stored OSV
//! advisories, and hands the result to `rampart_vuln::posture`. No HTTP here: the operator
//! routes call [`assess_with`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rampart_db::{Db, DbError};
use rampart_vuln::component::Component;
use rampart_vuln::matching::AdvisoryIndex;
use rampart_vuln::osv::parse_advisory;
use rampart_vuln::posture::{AdvisorySeverity, DeviceRun, ReleaseExposure};
use rampart_vuln::sbom::{MAX_SBOM_BYTES, parse_sbom};
use serde::Serialize;

use crate::delivery::image_repo::{HostedRepo, HostedRepoError};

/// Devices read per page of the inventory.
const DEVICE_PAGE: i64 = rampart_db::MAX_RISK_DEVICE_PAGE;
/// The most devices one assessment reads (beyond this, the answer says it stopped).
pub const MAX_ASSESSED_DEVICES: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum RiskError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Repo(#[from] HostedRepoError),
    #[error("the risk assessment task failed: {0}")]
    Task(String),
}

/// How a release's SBOM stands.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseRisk {
    pub target: String,
    pub version: String,
    pub hardware_ids: Vec<String>,
    /// `indexed`, `none` (the release carries no SBOM: not assessed) or `unavailable` (see
    /// `problem`).
    pub sbom: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    pub components: usize,
    pub advisories: usize,
}

/// The joined view [`rampart_vuln::posture`] reads.
#[derive(Debug, Default)]
pub struct Assessment {
    pub devices: Vec<DeviceRun>,
    /// Devices past [`MAX_ASSESSED_DEVICES`], not assessed.
    pub devices_not_read: bool,
    pub exposure: ReleaseExposure,
    pub severities: BTreeMap<String, AdvisorySeverity>,
    pub releases: Vec<ReleaseRisk>,
    /// Advisories in matching.
    pub advisories: usize,
    /// Stored records that no longer parse (skipped; re-import them).
    pub unreadable_advisories: Vec<String>,
    /// For the advisory route: each matched advisory's (release, component name, version).
    pub matched_components: BTreeMap<String, Vec<(String, String, String)>>,
    /// Per matched advisory, the versions its matches name as fixed (from the OSV ranges).
    pub fixed_versions: BTreeMap<String, BTreeSet<String>>,
    /// Per release target, the matches vendor VEX suppressed (out of `exposure`).
    pub suppressed: BTreeMap<String, Vec<rampart_vuln::suppression::SuppressedMatch>>,
}

/// Reads and hash-checks `target`'s SBOM from the repository directory (blocking).
fn read_sbom(
    repo: &HostedRepo,
    doc: &rampart_core::release::DocumentRef,
    now: i64,
) -> Result<Vec<Component>, String> {
    let bytes = repo.document(doc, MAX_SBOM_BYTES, now)?;
    parse_sbom(&bytes)
        .map(|sbom| sbom.components)
        .map_err(|e| format!("{}: {e}", doc.path))
}

/// The components of `target`'s SBOM `doc`: stored ones when this SBOM was read before, else
/// read from the repository (hash-checked) and stored. `Ok(Err(problem))` when the SBOM
/// cannot be read, saying why.
pub async fn release_components(
    db: &Db,
    repo: &Arc<HostedRepo>,
    target: &str,
    doc: &rampart_core::release::DocumentRef,
    now: i64,
) -> Result<Result<Vec<Component>, String>, RiskError> {
    let digest = doc.sha256.to_ascii_lowercase();
    if let Some(components) = db.release_components(target, &digest).await? {
        return Ok(Ok(components));
    }
    let (repo, doc_owned) = (repo.clone(), doc.clone());
    let read = tokio::task::spawn_blocking(move || read_sbom(&repo, &doc_owned, now))
        .await
        .map_err(|e| RiskError::Task(e.to_string()))?;
    if let Ok(components) = &read {
        db.store_release_components(target, &digest, components, now)
            .await?;
    }
    Ok(read)
}

/// The advisory index of every stored advisory in matching, with each one's severity.
pub async fn advisory_index(
    db: &Db,
) -> Result<
    (
        AdvisoryIndex,
        BTreeMap<String, AdvisorySeverity>,
        Vec<String>,
    ),
    RiskError,
> {
    let records = db.advisories_for_matching().await?;
    let (index, severities, unreadable) = tokio::task::spawn_blocking(move || {
        let mut index = AdvisoryIndex::new();
        let mut severities = BTreeMap::new();
        let mut unreadable = Vec::new();
        for (id, record) in records {
            match parse_advisory(record.as_bytes()) {
                Ok(advisory) => {
                    severities.insert(advisory.id.clone(), AdvisorySeverity::of(&advisory));
                    index.insert(advisory);
                }
                Err(_) => unreadable.push(id),
            }
        }
        (index, severities, unreadable)
    })
    .await
    .map_err(|e| RiskError::Task(e.to_string()))?;
    Ok((index, severities, unreadable))
}

/// The stored advisories parsed into an index, with each one's severity and the records that
/// no longer parse.
pub struct ParsedFeed {
    pub index: AdvisoryIndex,
    pub severities: BTreeMap<String, AdvisorySeverity>,
    pub unreadable: Vec<String>,
    /// The stored NVD records, for CPE and firmware-name matching.
    pub nvd: super::risk_cpe::NvdFeed,
    /// The stored vendor VEX statements (`risk_vex`).
    pub vex: rampart_vuln::suppression::SourcedVex,
}

/// The parsed feed, kept while the stored feed's version (`Db::advisory_feed_version`, raised
/// by every import that changed an advisory, on any server of the database) stays the same:
/// parsing thousands of records on every posture request would cost more than the join.
#[derive(Default)]
pub struct AdvisoryCache {
    cached: tokio::sync::Mutex<Option<(i64, Arc<ParsedFeed>)>>,
}

impl AdvisoryCache {
    /// The parsed feed of the stored advisories as they are now. The version is read before
    /// the records: an import committing in between leaves newer records under an older
    /// version, which the next call rebuilds; never older records under a newer version.
    pub async fn feed(&self, db: &Db) -> Result<Arc<ParsedFeed>, RiskError> {
        let version = db.advisory_feed_version().await?;
        let mut cached = self.cached.lock().await;
        if let Some((at, feed)) = cached.as_ref()
            && *at == version
        {
            return Ok(feed.clone());
        }
        let (index, severities, unreadable) = advisory_index(db).await?;
        let nvd_records = db.nvd_advisories_for_matching().await?;
        let nvd = tokio::task::spawn_blocking(move || super::risk_cpe::parse_nvd_feed(nvd_records))
            .await
            .map_err(|e| RiskError::Task(e.to_string()))?;
        let vex = super::risk_vex::load(db).await?;
        let feed = Arc::new(ParsedFeed {
            index,
            severities,
            unreadable,
            nvd,
            vex,
        });
        *cached = Some((version, feed.clone()));
        Ok(feed)
    }
}

/// Joins the inventory, the releases' components and the parsed `feed` (the management API
/// keeps it in an [`AdvisoryCache`]).
pub async fn assess_with(
    db: &Db,
    repo: &Arc<HostedRepo>,
    feed: &ParsedFeed,
    now: i64,
) -> Result<Assessment, RiskError> {
    let catalog = {
        let repo = repo.clone();
        tokio::task::spawn_blocking(move || repo.catalog(now))
            .await
            .map_err(|e| RiskError::Task(e.to_string()))??
    };
    let index = &feed.index;
    let mut out = Assessment {
        advisories: index.len() + feed.nvd.index.len(),
        severities: feed.severities.clone(),
        unreadable_advisories: [&feed.unreadable[..], &feed.nvd.unreadable[..]].concat(),
        ..Assessment::default()
    };
    // (version, hardware id) -> target, and version -> first target, for the inventory.
    let mut by_version_hw: HashMap<(String, String), String> = HashMap::new();
    let mut by_version: HashMap<String, String> = HashMap::new();
    let mut releases = catalog.releases;
    releases.sort_by(|a, b| a.target.cmp(&b.target));
    for release in releases {
        let Some(info) = release.release else {
            continue;
        };
        for hw in &info.hardware_ids {
            by_version_hw
                .entry((info.version.clone(), hw.clone()))
                .or_insert_with(|| release.target.clone());
        }
        by_version
            .entry(info.version.clone())
            .or_insert_with(|| release.target.clone());
        let mut state = ReleaseRisk {
            target: release.target.clone(),
            version: info.version.clone(),
            hardware_ids: info.hardware_ids.clone(),
            sbom: "none",
            problem: None,
            components: 0,
            advisories: 0,
        };
        let Some(doc) = info.sbom else {
            out.releases.push(state);
            continue;
        };
        let components = release_components(db, repo, &release.target, &doc, now).await?;
        match components {
            Ok(components) => {
                let report = index.match_components(&components);
                // The CPE step below dedupes against every OSV match, suppressed ones too (a
                // suppressed advisory must not come back through the component's CPE).
                let (matches, mut suppressed) =
                    super::risk_vex::apply(&feed.vex, report.matches.clone(), &components);
                let mut ids = BTreeSet::new();
                for m in &matches {
                    ids.insert(m.advisory.clone());
                    out.fixed_versions
                        .entry(m.advisory.clone())
                        .or_default()
                        .extend(m.fixed.iter().cloned());
                    out.matched_components
                        .entry(m.advisory.clone())
                        .or_default()
                        .push((release.target.clone(), m.name.clone(), m.version.clone()));
                }
                super::risk_cpe::add_cpe_matches(
                    &feed.nvd,
                    &components,
                    &report.matches,
                    super::risk_cpe::ReleaseCpeFindings {
                        target: &release.target,
                        ids: &mut ids,
                        matched_components: &mut out.matched_components,
                        severities: &mut out.severities,
                        vex: &feed.vex,
                        suppressed: &mut suppressed,
                    },
                );
                if !suppressed.is_empty() {
                    out.suppressed.insert(release.target.clone(), suppressed);
                }
                state.sbom = "indexed";
                state.components = components.len();
                state.advisories = ids.len();
                out.exposure.insert(release.target.clone(), ids);
            }
            Err(problem) => {
                state.sbom = "unavailable";
                state.problem = Some(problem);
            }
        }
        out.releases.push(state);
    }
    let mut after = String::new();
    loop {
        let page = db.risk_devices_after(&after, DEVICE_PAGE).await?;
        let done = (page.len() as i64) < DEVICE_PAGE;
        if let Some(last) = page.last() {
            after = last.id.clone();
        }
        for device in page {
            if out.devices.len() == MAX_ASSESSED_DEVICES {
                out.devices_not_read = true;
                break;
            }
            let resolve = |version: &str| {
                by_version_hw
                    .get(&(version.to_owned(), device.hardware_id.clone()))
                    .or_else(|| by_version.get(version))
                    .cloned()
            };
            let release = resolve(&device.firmware_version);
            // What a rollback boots (decision 0049): versions no release has are left out.
            let fallback_releases = super::risk_slots::inactive_slot_versions(
                &device.slots,
                device.slot_versions.as_ref(),
                &device.firmware_version,
            )
            .into_iter()
            .filter_map(resolve)
            .collect();
            out.devices.push(DeviceRun {
                device_id: device.id,
                release,
                hardware_id: device.hardware_id,
                region: device.region,
                tags: device.tags,
                fallback_releases,
            });
        }
        if done || out.devices_not_read {
            break;
        }
    }
    Ok(out)
}
