//! The release and assignment routes: the hosted releases, and assigning one to devices.

use rampart_db::DomainError;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::{Assignment, DbError, DeviceFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use std::collections::BTreeMap;

use rampart_vuln::component::Component;
use rampart_vuln::provenance::{ProvenanceSummary, summarize};

use crate::delivery::image_repo::{Catalog, Release};
use crate::engines::risk::release_components;
use crate::helpers::{new_id, unix_now};
use crate::listen::http::{ApiError, json_response};
use crate::listen::http::{db_error, write_error};
use crate::observe::metrics::Metrics;

use super::{MAX_PAGE, ManagementApi, Permission, device_list_summary, repo_error};

pub(super) async fn list_releases(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let catalog = release_catalog(&api).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"timestamp_version": catalog.timestamp_version, "releases": catalog.releases}),
    ))
}

/// The hosted repository's verified top-level releases: `GET /api/v1/releases` and the web
/// console's release list.
pub(crate) async fn release_catalog(api: &ManagementApi) -> Result<Catalog, ApiError> {
    let repo = api.image_repo()?;
    tokio::task::spawn_blocking(move || repo.catalog(unix_now()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(repo_error)
}

/// Largest provenance document read for a release's view (the repository refuses larger
/// ones when releasing).
const MAX_PROVENANCE_BYTES: usize = 4 << 20;

/// Where a release's transparency-log entry is, from its tlog-proof (devices verify the
/// proof against the log's key and witnesses; the server shows it).
#[derive(Debug, Clone)]
pub(crate) struct LogEntry {
    pub index: u64,
    pub origin: String,
    pub tree_size: u64,
    pub root_hex: String,
    pub proof_hashes: usize,
    /// Who signed the checkpoint: the log, and the witnesses that cosigned it.
    pub signers: Vec<String>,
}

/// Where a release is deployed, from the same join the risk posture reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Deployment {
    /// Devices running it, per hardware id.
    pub running: BTreeMap<String, usize>,
    /// Devices that hold it in an inactive slot (what a rollback boots), per hardware id.
    pub inactive: BTreeMap<String, usize>,
}

/// One release with its documents read and checked against their signed targets: each part
/// is `Err(problem)` when it cannot be read (the page says why), `None` when the release has
/// no such document.
pub(crate) struct ReleaseView {
    pub release: Release,
    pub components: Option<Result<Vec<Component>, String>>,
    pub provenance: Option<Result<ProvenanceSummary, String>>,
    pub log_entry: Option<Result<LogEntry, String>>,
    pub deployment: Result<Deployment, String>,
}

/// One hosted release and what its documents say: the web console's release page.
pub(crate) async fn release_view(
    api: &ManagementApi,
    target: &str,
) -> Result<ReleaseView, ApiError> {
    let repo = api.image_repo()?;
    let now = unix_now();
    let path = target.to_owned();
    let lookup = repo.clone();
    let file = tokio::task::spawn_blocking(move || lookup.target(&path, now))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(repo_error)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_release",
                format!("the image repository has no target {target:?}; list releases with GET /api/v1/releases"),
            )
        })?;
    let release = Release::new(target, &file);
    let Some(info) = release.release.clone() else {
        return Ok(ReleaseView {
            release,
            components: None,
            provenance: None,
            log_entry: None,
            deployment: Ok(Deployment::default()),
        });
    };
    let components = match &info.sbom {
        None => None,
        Some(doc) => Some(
            release_components(&api.db, &repo, target, doc, now)
                .await
                .map_err(|e| super::risk::risk_error("reading an SBOM", e))?,
        ),
    };
    let read = |doc: rampart_core::release::DocumentRef, max: usize| {
        let repo = repo.clone();
        async move {
            tokio::task::spawn_blocking(move || repo.document(&doc, max, now))
                .await
                .map_err(|_| ApiError::internal())
        }
    };
    let provenance = match info.provenance.clone() {
        None => None,
        Some(doc) => Some(read(doc, MAX_PROVENANCE_BYTES).await?.and_then(|bytes| {
            summarize(&bytes, &release.sha256).map_err(|e| format!("the provenance: {e}"))
        })),
    };
    let log_entry = match info.tlog_proof.clone() {
        None => None,
        Some(doc) => Some(
            read(doc, rampart_log::proof::MAX_TLOG_PROOF_SIZE)
                .await?
                .and_then(|bytes| log_entry(&bytes)),
        ),
    };
    let deployment = match super::risk::assess_cached(api, &repo).await {
        Ok(assessment) => {
            let mut deployment = Deployment::default();
            for device in &assessment.devices {
                if device.release.as_deref() == Some(target) {
                    *deployment
                        .running
                        .entry(device.hardware_id.clone())
                        .or_default() += 1;
                }
                if device.fallback_releases.iter().any(|r| r == target) {
                    *deployment
                        .inactive
                        .entry(device.hardware_id.clone())
                        .or_default() += 1;
                }
            }
            Ok(deployment)
        }
        Err(e) => Err(e.to_string()),
    };
    Ok(ReleaseView {
        release,
        components,
        provenance,
        log_entry,
        deployment,
    })
}

/// A tlog-proof's entry, for people.
fn log_entry(bytes: &[u8]) -> Result<LogEntry, String> {
    let proof = rampart_log::proof::TlogProof::parse(bytes)
        .map_err(|e| format!("the tlog-proof does not parse: {e}"))?;
    let checkpoint = proof
        .checkpoint_body()
        .map_err(|e| format!("the tlog-proof's checkpoint: {e}"))?;
    Ok(LogEntry {
        index: proof.index,
        origin: checkpoint.origin,
        tree_size: checkpoint.size,
        root_hex: hex::encode(checkpoint.root),
        proof_hashes: proof.hashes.len(),
        signers: proof
            .checkpoint
            .signatures
            .iter()
            .map(|s| s.name.clone())
            .collect(),
    })
}

// ---- assignments -------------------------------------------------------------------------

/// Which devices an assignment is for; every given criterion must match.
#[derive(Debug, Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hardware_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
}

pub(super) async fn create_assignment(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        target: String,
        /// `forced` (default), `soft`, `download_only` or `timeforced`.
        #[serde(default, rename = "type")]
        update_type: Option<String>,
        /// For `timeforced`: seconds from now until it is forced.
        #[serde(default)]
        force_after_secs: Option<u64>,
        #[serde(flatten)]
        selector: Selector,
    }
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let r: Request = api
        .body(
            &headers,
            body,
            r#"{"target": "<release target>", "type": "forced" | "soft" | "download_only" | "timeforced", "force_after_secs": 3600, "devices": [...] | "group": "..." | "tag": "..." | "hardware_id": "..." | "region": "..."}"#,
        )
        .await?;
    let update_type = r.update_type.clone().unwrap_or_else(|| "forced".into());
    if !rampart_db::UPDATE_TYPES.contains(&update_type.as_str()) {
        return Err(ApiError::invalid(format!(
            "type {update_type:?} is not one of forced, soft, download_only, timeforced"
        )));
    }
    rampart_rollout::spec::check_force_after(&update_type, r.force_after_secs)
        .map_err(ApiError::invalid)?;
    let forced_at = r
        .force_after_secs
        .map_or(0, |secs| unix_now().saturating_add(secs as i64));
    let s = &r.selector;
    if s.devices.is_none()
        && s.group.is_none()
        && s.tag.is_none()
        && s.hardware_id.is_none()
        && s.region.is_none()
    {
        return Err(ApiError::invalid(
            "name the devices: give at least one of devices, group, tag, hardware_id, region",
        ));
    }
    let info = api.firmware_release(&r.target).await?;

    // Resolve the devices.
    let filter = DeviceFilter {
        hardware_id: s.hardware_id.clone(),
        region: s.region.clone(),
        tag: s.tag.clone(),
        group: s.group.clone(),
        ..DeviceFilter::default()
    };
    if let Some(group) = &s.group
        && api
            .db
            .group(group)
            .await
            .map_err(|e| db_error("reading a group", e))?
            .is_none()
    {
        return Err(db_error(
            "",
            DbError::Domain(DomainError::UnknownGroup(group.clone())),
        ));
    }
    let mut devices = Vec::new();
    let mut offset = 0;
    loop {
        let page = api
            .db
            .list_devices(&filter, 10_000, offset)
            .await
            .map_err(|e| db_error("selecting devices", e))?;
        let n = page.len() as i64;
        devices.extend(page);
        if n < 10_000 {
            break;
        }
        offset += n;
    }
    if let Some(ids) = &s.devices {
        let wanted: std::collections::HashSet<&String> = ids.iter().collect();
        let selected: std::collections::HashSet<&String> = devices.iter().map(|d| &d.id).collect();
        for id in ids {
            if !selected.contains(id) {
                // Either unknown, or excluded by the other criteria.
                let known = api
                    .db
                    .device(id)
                    .await
                    .map_err(|e| db_error("reading a device", e))?;
                if known.is_none() {
                    return Err(db_error(
                        "",
                        DbError::Domain(DomainError::UnknownDevice(id.clone())),
                    ));
                }
            }
        }
        devices.retain(|d| wanted.contains(&d.id));
    }
    devices.retain(|d| !d.revoked);
    if devices.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_devices",
            "no (unrevoked) device matches the selector",
        ));
    }
    // Never tell a device to install firmware built for other hardware.
    let incompatible: Vec<&str> = devices
        .iter()
        .filter(|d| {
            !d.facts.hardware_id.is_empty() && !info.hardware_ids.contains(&d.facts.hardware_id)
        })
        .map(|d| d.id.as_str())
        .take(10)
        .collect();
    if !incompatible.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incompatible_hardware",
            format!(
                "{} is built for {:?}, but these devices report other hardware: {}; narrow the selector (e.g. hardware_id)",
                r.target,
                info.hardware_ids,
                incompatible.join(", ")
            ),
        ));
    }
    let ids: Vec<String> = devices.into_iter().map(|d| d.id).collect();
    refuse_quarantined(&api, &ids).await?;
    // The selector as recorded: a long device list is summarised so the record stays small.
    let mut audited_selector =
        serde_json::to_value(&r.selector).map_err(|_| ApiError::internal())?;
    if let Some(list) = &r.selector.devices {
        audited_selector["devices"] = device_list_summary(list);
    }
    let now = unix_now();
    let assignment = Assignment {
        id: new_id("asg")?,
        target: r.target.clone(),
        selector: serde_json::to_value(&r.selector).map_err(|_| ApiError::internal())?,
        created: now,
        created_by: caller.actor(),
        device_count: ids.len() as i64,
        update_type,
        forced_at,
        reimage: false,
    };
    api.audit
        .write(
            now,
            &caller.actor(),
            "assignment.created",
            &assignment.id,
            json!({"target": assignment.target, "type": assignment.update_type, "selector": audited_selector, "devices": ids.len(), "version": info.version}),
            |line| {
                let (db, assignment, ids) = (api.db.clone(), assignment.clone(), ids.clone());
                async move { db.create_assignment(&assignment, &ids, &line).await }
            },
        )
        .await
        .map_err(write_error("creating an assignment"))?;
    Metrics::inc(&api.metrics.assignments_created);
    Ok(json_response(StatusCode::CREATED, &assignment))
}

/// 409 when any of the devices is quarantined, naming them, their incidents and the way out
/// (decision 0031). The poll refuses a quarantined device any assignment anyway; this says so
/// to the operator at once.
async fn refuse_quarantined(api: &ManagementApi, ids: &[String]) -> Result<(), ApiError> {
    let quarantined: Vec<String> = api
        .db
        .quarantined_among(ids)
        .await
        .map_err(|e| db_error("reading quarantined devices", e))?
        .into_iter()
        .map(|q| {
            if q.incident_id.is_empty() {
                format!("{} (by {})", q.device_id, q.actor)
            } else {
                format!("{} (incident {})", q.device_id, q.incident_id)
            }
        })
        .collect();
    if quarantined.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "quarantined",
        format!(
            "{} of the selected devices are quarantined and get no assignments: {}; release them first with `rampart device release DEVICE`, or narrow the selector",
            quarantined.len(),
            quarantined
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
    ))
}

pub(super) async fn list_assignments(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let list = api
        .db
        .list_assignments(MAX_PAGE)
        .await
        .map_err(|e| db_error("listing assignments", e))?;
    Ok(json_response(StatusCode::OK, &json!({"assignments": list})))
}

pub(super) async fn get_assignment(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let assignment = api
        .db
        .assignment(&id)
        .await
        .map_err(|e| db_error("reading an assignment", e))?
        .ok_or_else(|| {
            db_error(
                "",
                DbError::Domain(DomainError::UnknownAssignment(id.clone())),
            )
        })?;
    let counts = api
        .db
        .assignment_status_counts(&id)
        .await
        .map_err(|e| db_error("counting reports", e))?;
    let status: serde_json::Map<String, Value> =
        counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"assignment": assignment, "devices_by_last_status": status}),
    ))
}

pub(super) async fn cancel_assignment(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let now = unix_now();
    let changed = api
        .audit
        .write(
            now,
            &caller.actor(),
            "assignment.cancelled",
            &id,
            json!({}),
            |line| {
                let (db, id) = (api.db.clone(), id.clone());
                async move { db.cancel_assignment(&id, now, &line).await }
            },
        )
        .await
        .map_err(write_error("cancelling an assignment"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "devices_cancelled": changed}),
    ))
}
