//! The supply-chain risk routes (issue 17, decision 0043):
//!
//! * `POST /api/v1/risk/advisories` (operate) — body `{"advisories": [<OSV record>, ...]}`, at
//!   most [`MAX_IMPORT_RECORDS`] records and [`MAX_IMPORT_BODY`] bytes (1 MiB): each record is parsed
//!   (`rampart_vuln::osv`, its limits first); one that does not parse refuses the batch (422,
//!   naming it). Stored incrementally by id and `modified`; a withdrawn one leaves matching.
//!   `rampart risk import` sends a directory or an osv.dev zip in batches.
//! * `GET /api/v1/risk/posture?by=device|release|hardware|region|tag&limit&offset` (read): the
//!   posture rows (`rampart_vuln::posture`), most at risk first, paged, each with
//!   `fallback_affected` (devices whose inactive slot holds an exposed release;
//!   `rampart_vuln::fallback`); the releases and how their SBOMs stand.
//! * `GET /api/v1/risk/advisories/{id}?limit&offset` (read): a stored advisory (by OSV id or
//!   alias, or a CVE id of the stored NVD records: [`named_advisories`]), the releases and components it matched, and the devices it affects, paged; each
//!   device says which slot holds the affected release (`slot`: `running`, `inactive` (only the
//!   fallback: a rollback would bring it back) or `both`, decision 0049). `affected_count`
//!   counts the devices running it, `fallback_only_count` the others.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::AdvisoryImport;
use rampart_vuln::fallback::{SlotHolding, devices_by_slot};
use rampart_vuln::nvd::parse_nvd_item;
use rampart_vuln::osv::parse_advisory;
use rampart_vuln::posture::{AdvisorySeverity, GroupBy, posture};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::engines::risk::{Assessment, RiskError, assess_with};
use crate::helpers::{sha256_hex, unix_now};
use crate::listen::http::{
    ApiError, BodyLimits, db_error, json_response, parse_json, read_body, write_error,
};

use super::{ManagementApi, Permission, page_limit, repo_error};

/// Largest import body: a batch of OSV records. The listener refuses any body announced over
/// 1 MiB before reading it (`listen::http::read_body`), so that is the ceiling; a record near it
/// (OSV records are rarely over 100 KiB) is refused by the CLI with a clear message.
pub(crate) const MAX_IMPORT_BODY: usize = 1024 * 1024;
/// The most records in one import body.
pub(crate) const MAX_IMPORT_RECORDS: usize = 2_000;
/// Longest advisory id or alias looked up.
pub(super) const MAX_ADVISORY_ID: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportRequest {
    advisories: Vec<Box<serde_json::value::RawValue>>,
}

pub(super) fn risk_error(context: &str, e: RiskError) -> ApiError {
    match e {
        RiskError::Db(e) => db_error(context, e),
        RiskError::Repo(e) => repo_error(e),
        RiskError::Task(reason) => {
            crate::observe::log::error(
                "the risk assessment failed",
                json!({"context": context, "error": reason}),
            );
            ApiError::internal()
        }
    }
}

pub(super) async fn import_advisories(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let limits = BodyLimits {
        max_bytes: MAX_IMPORT_BODY,
        ..api.body_limits
    };
    let bytes = read_body(&headers, body, limits).await?;
    let request: ImportRequest = parse_json(&bytes, r#"{"advisories": [<OSV record>, ...]}"#)?;
    if request.advisories.is_empty() || request.advisories.len() > MAX_IMPORT_RECORDS {
        return Err(ApiError::invalid(format!(
            "advisories must hold 1 to {MAX_IMPORT_RECORDS} OSV records, not {}; send a feed in batches (`rampart risk import` does)",
            request.advisories.len()
        )));
    }
    let mut batch = Vec::with_capacity(request.advisories.len());
    let mut seen = std::collections::HashSet::new();
    for (position, raw) in request.advisories.iter().enumerate() {
        let advisory = parse_advisory(raw.get().as_bytes()).map_err(|e| {
            ApiError::invalid(format!(
                "advisories[{position}] is not a valid OSV record: {e}; fix or leave it out"
            ))
        })?;
        if !seen.insert(advisory.id.clone()) {
            return Err(ApiError::invalid(format!(
                "advisories[{position}]: {:?} is given twice in this batch; send each id once",
                advisory.id
            )));
        }
        batch.push(AdvisoryImport {
            id: advisory.id.clone(),
            modified: advisory.modified.clone(),
            withdrawn: advisory.withdrawn.clone(),
            aliases: advisory.aliases.clone(),
            record: raw.get().to_owned(),
        });
    }
    let ids: Vec<String> = batch.iter().map(|a| a.id.clone()).collect();
    store_feed_batch(
        &api,
        &caller.actor(),
        "risk.advisories_imported",
        "importing advisories",
        &ids,
        |line, now| {
            let (db, batch) = (api.db.clone(), batch.clone());
            async move { db.import_advisories(&batch, now, &line).await }
        },
    )
    .await
}

/// Stores one imported batch of an advisory feed (OSV or NVD) with its audit record
/// (`action`: the ids' count and digest), answers the counts, and wakes the risk watch when
/// the batch changed the feed: a new or changed advisory may reach devices now.
pub(super) async fn store_feed_batch<F, Fut>(
    api: &ManagementApi,
    actor: &str,
    action: &str,
    context: &'static str,
    ids: &[String],
    store: F,
) -> Result<Response, ApiError>
where
    F: Fn(rampart_db::AuditLine, i64) -> Fut,
    Fut: std::future::Future<Output = Result<rampart_db::ImportCounts, rampart_db::DbError>>,
{
    let now = unix_now();
    let digest = sha256_hex(ids.join("\n").as_bytes());
    let counts = api
        .audit
        .write(
            now,
            actor,
            action,
            "advisories",
            json!({"records": ids.len(), "ids_sha256": digest}),
            |line| store(line, now),
        )
        .await
        .map_err(write_error(context))?;
    if counts.added + counts.replaced > 0 {
        api.risk_watch.wake();
    }
    Ok(json_response(StatusCode::OK, &counts))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PostureQuery {
    by: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// The assessment now, through the API's cached advisory feed.
pub(super) async fn assess_cached(
    api: &ManagementApi,
    repo: &Arc<crate::delivery::image_repo::HostedRepo>,
) -> Result<Assessment, RiskError> {
    let feed = api.advisories.feed(&api.db).await?;
    assess_with(&api.db, repo, &feed, unix_now()).await
}

/// A query string the route does not take: 422 naming the problem, after authorization (an
/// unauthenticated caller learns nothing about the route's parameters).
fn query_error(e: QueryRejection) -> ApiError {
    ApiError::invalid(format!(
        "query: {}; this route takes by, limit and offset (the advisory route: limit and offset)",
        e.body_text()
    ))
}

fn page_offset(offset: Option<i64>) -> Result<usize, ApiError> {
    match offset {
        None => Ok(0),
        Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::invalid(format!(
            "offset must be between 0 and {}, not {n}",
            u32::MAX
        ))),
    }
}

pub(super) async fn get_posture(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<PostureQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(query) = query.map_err(query_error)?;
    let report = posture_report(&api, query.by.as_deref(), query.limit, query.offset).await?;
    Ok(json_response(StatusCode::OK, &report))
}

/// The fleet's risk posture grouped `by` (region when `None`), one page of rows, most at risk
/// first: `GET /api/v1/risk/posture` and the web console's risk page.
pub(crate) async fn posture_report(
    api: &ManagementApi,
    by: Option<&str>,
    limit: Option<i64>,
    offset: Option<i64>,
) -> Result<Value, ApiError> {
    let by = match by {
        None => GroupBy::Region,
        Some(s) => GroupBy::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "by must be device, release, hardware, region or tag, not {s:?}"
            ))
        })?,
    };
    let limit = page_limit(limit)? as usize;
    let offset = page_offset(offset)?;
    let repo = api.image_repo()?;
    let assessment = assess_cached(api, &repo)
        .await
        .map_err(|e| risk_error("assessing risk", e))?;
    let mut rows = posture(
        by,
        &assessment.devices,
        &assessment.exposure,
        &assessment.severities,
    );
    rampart_vuln::fallback::annotate(by, &mut rows, &assessment.devices, &assessment.exposure);
    let total = rows.len();
    let page: Vec<_> = rows.into_iter().skip(offset).take(limit).collect();
    let page = super::risk_vex::rows_with_suppressed(
        by,
        &assessment.devices,
        &assessment.suppressed,
        page,
    );
    Ok(json!({
        "by": by.as_str(),
        "total": total,
        "rows": page,
        "devices": assessment.devices.len(),
        "devices_not_read": assessment.devices_not_read,
        "advisories": assessment.advisories,
        "unreadable_advisories": assessment.unreadable_advisories.len(),
        "releases": assessment.releases,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AdvisoryQuery {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// An advisory a route was asked about: an OSV one stored under the id or naming it as an
/// alias, or the NVD record of a CVE (decision 0048), which firmware parts match by CPE or
/// name and which the assessment keys by its CVE id.
pub(super) struct NamedAdvisory {
    pub id: String,
    /// `osv` or `nvd`: the feed it came from.
    pub source: &'static str,
    pub modified: String,
    /// When it was withdrawn (OSV) or rejected (NVD); `None` while it applies.
    pub withdrawn: Option<String>,
    pub aliases: Vec<String>,
    pub summary: Option<String>,
    pub severity: AdvisorySeverity,
}

/// The advisories `id` names: the stored OSV advisories (by id, else by alias), and the NVD
/// record stored under `id` unless one of those OSV advisories is it. A CVE that OSV also
/// describes is matched as the OSV advisory where an OSV match names it, and under its own
/// id where only CPE or name matching found it, so both are answered. 404 when neither feed
/// holds it.
pub(super) async fn named_advisories(
    api: &ManagementApi,
    id: &str,
) -> Result<Vec<NamedAdvisory>, ApiError> {
    let osv = api
        .db
        .advisories_named(id)
        .await
        .map_err(|e| db_error("reading an advisory", e))?;
    let nvd = api
        .db
        .nvd_advisory(id)
        .await
        .map_err(|e| db_error("reading an NVD record", e))?;
    let mut named: Vec<NamedAdvisory> = osv
        .into_iter()
        .map(|a| {
            let parsed = parse_advisory(a.record.as_bytes()).ok();
            NamedAdvisory {
                severity: parsed
                    .as_ref()
                    .map(AdvisorySeverity::of)
                    .unwrap_or(AdvisorySeverity::UNASSIGNED),
                summary: parsed.and_then(|p| p.summary),
                id: a.id,
                source: "osv",
                modified: a.modified,
                withdrawn: a.withdrawn,
                aliases: a.aliases,
            }
        })
        .collect();
    if let Some(record) = nvd.filter(|r| !named.iter().any(|a| a.id == r.id)) {
        let parsed = parse_nvd_item(record.record.as_bytes()).ok();
        named.push(NamedAdvisory {
            severity: parsed
                .as_ref()
                .map(crate::engines::risk_cpe::severity_of)
                .unwrap_or(AdvisorySeverity::UNASSIGNED),
            summary: None,
            withdrawn: record.is_rejected().then(|| record.last_modified.clone()),
            id: record.id,
            source: "nvd",
            modified: record.last_modified,
            aliases: Vec::new(),
        });
    }
    if named.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_advisory",
            format!(
                "no advisory {id:?} is stored (by OSV id or alias, or as an NVD CVE id); import the feed with `rampart risk import` (OSV) or `rampart risk import --nvd` (NVD)"
            ),
        ));
    }
    Ok(named)
}

pub(super) async fn get_advisory(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<AdvisoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(query) = query.map_err(query_error)?;
    if id.is_empty() || id.len() > MAX_ADVISORY_ID || id.chars().any(char::is_control) {
        return Err(ApiError::invalid(format!(
            "an advisory id is 1 to {MAX_ADVISORY_ID} bytes without control characters"
        )));
    }
    let limit = page_limit(query.limit)? as usize;
    let offset = page_offset(query.offset)?;
    let stored = named_advisories(&api, &id).await?;
    let repo = api.image_repo()?;
    let assessment = assess_cached(&api, &repo)
        .await
        .map_err(|e| risk_error("assessing risk", e))?;
    let mut answers = Vec::new();
    for advisory in stored {
        let reached = if advisory.withdrawn.is_some() {
            Vec::new()
        } else {
            devices_by_slot(&advisory.id, &assessment.devices, &assessment.exposure)
        };
        let affected_count = reached
            .iter()
            .filter(|(_, holding)| *holding != SlotHolding::Inactive)
            .count();
        let matched = assessment
            .matched_components
            .get(&advisory.id)
            .map_or(&[][..], Vec::as_slice);
        let components: Vec<Value> = matched
            .iter()
            .take(super::MAX_PAGE as usize)
            .map(|(release, name, version)| {
                json!({"release": release, "name": name, "version": version})
            })
            .collect();
        let devices: Vec<Value> = reached
            .iter()
            .skip(offset)
            .take(limit)
            .map(|(d, holding)| {
                json!({
                    "id": d.device_id,
                    "release": d.release,
                    "hardware_id": d.hardware_id,
                    "region": d.region,
                    "slot": holding.as_str(),
                    "fallback_releases": d.fallback_releases,
                })
            })
            .collect();
        let exposure = api
            .db
            .exposure_of(&advisory.id)
            .await
            .map_err(|e| db_error("reading an advisory's exposure", e))?;
        answers.push(json!({
            "exposure": super::risk_exposure::exposure_json(exposure.as_ref().map(|r| &r.exposure)),
            "id": advisory.id,
            "source": advisory.source,
            "modified": advisory.modified,
            "withdrawn": advisory.withdrawn,
            "aliases": advisory.aliases,
            "summary": advisory.summary,
            "severity": advisory.severity,
            "components": components,
            "components_total": matched.len(),
            "affected_count": affected_count,
            "fallback_only_count": reached.len() - affected_count,
            "devices_total": reached.len(),
            "devices": devices,
            "suppressed": super::risk_vex::advisory_suppressed(&assessment.suppressed, &advisory.id),
        }));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({"query": id, "advisories": answers}),
    ))
}

/// An advisory that affects the fleet, for the web console's risk page.
#[derive(Debug, Clone)]
pub(crate) struct FleetAdvisory {
    pub id: String,
    pub severity: AdvisorySeverity,
    /// Devices whose running slot holds an affected release.
    pub affected: usize,
    /// Devices that hold an affected release only in their inactive slot.
    pub fallback_only: usize,
    /// The affected releases (targets).
    pub releases: Vec<String>,
    /// The versions its matches name as fixed.
    pub fixed: Vec<String>,
}

/// Every advisory that matches a release some device runs or keeps in its inactive slot,
/// most severe first (then most devices): from the same assessment as the posture.
pub(crate) async fn fleet_advisories(api: &ManagementApi) -> Result<Vec<FleetAdvisory>, ApiError> {
    let repo = api.image_repo()?;
    let assessment = assess_cached(api, &repo)
        .await
        .map_err(|e| risk_error("assessing risk", e))?;
    let mut by_id: std::collections::BTreeMap<&String, Vec<String>> = Default::default();
    for (release, ids) in &assessment.exposure {
        for id in ids {
            by_id.entry(id).or_default().push(release.clone());
        }
    }
    let mut out: Vec<FleetAdvisory> = by_id
        .into_iter()
        .map(|(id, releases)| {
            let reached = devices_by_slot(id, &assessment.devices, &assessment.exposure);
            let affected = reached
                .iter()
                .filter(|(_, holding)| *holding != SlotHolding::Inactive)
                .count();
            FleetAdvisory {
                id: id.clone(),
                severity: assessment
                    .severities
                    .get(id)
                    .copied()
                    .unwrap_or(AdvisorySeverity::UNASSIGNED),
                affected,
                fallback_only: reached.len() - affected,
                releases,
                fixed: assessment
                    .fixed_versions
                    .get(id)
                    .map(|f| f.iter().cloned().collect())
                    .unwrap_or_default(),
            }
        })
        .filter(|a| a.affected + a.fallback_only > 0)
        .collect();
    out.sort_by(|a, b| {
        b.severity
            .rank()
            .partial_cmp(&a.severity.rank())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.affected.cmp(&a.affected))
            .then(a.id.cmp(&b.id))
    });
    Ok(out)
}

/// What one device is exposed to: the advisories of the release it runs and of the releases
/// its inactive slots hold, for the web console's device page. `release` is `None` when no
/// release of the repository has the device's version (its exposure is unknown).
pub(crate) struct DeviceRisk {
    pub release: Option<String>,
    /// (advisory id, severity, `running` or `inactive`), most severe first.
    pub advisories: Vec<(String, AdvisorySeverity, &'static str)>,
}

/// One device's risk, from the same assessment as the posture (`None`: the device was not
/// assessed, e.g. beyond the assessment's device limit).
pub(crate) async fn device_risk(
    api: &ManagementApi,
    id: &str,
) -> Result<Option<DeviceRisk>, ApiError> {
    let repo = api.image_repo()?;
    let assessment = assess_cached(api, &repo)
        .await
        .map_err(|e| risk_error("assessing risk", e))?;
    let Some(device) = assessment.devices.iter().find(|d| d.device_id == id) else {
        return Ok(None);
    };
    let severity = |advisory: &String| {
        assessment
            .severities
            .get(advisory)
            .copied()
            .unwrap_or(AdvisorySeverity::UNASSIGNED)
    };
    let mut advisories: Vec<(String, AdvisorySeverity, &'static str)> = Vec::new();
    let slots = device
        .release
        .iter()
        .map(|r| (r, "running"))
        .chain(device.fallback_releases.iter().map(|r| (r, "inactive")));
    for (release, slot) in slots {
        for advisory in assessment.exposure.get(release).into_iter().flatten() {
            if !advisories.iter().any(|(a, _, _)| a == advisory) {
                advisories.push((advisory.clone(), severity(advisory), slot));
            }
        }
    }
    advisories.sort_by(|a, b| {
        b.1.rank()
            .partial_cmp(&a.1.rank())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.0.cmp(&b.0))
    });
    Ok(Some(DeviceRisk {
        release: device.release.clone(),
        advisories,
    }))
}
