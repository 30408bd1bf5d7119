//! `POST /api/v1/risk/advisories/{id}/remediate` (operate): a campaign of a fixed release for
//! exactly the devices an advisory affects (issue 17). Body:
//! `{"release": TARGET, "name"?: NAME, "start"?: bool, "options"?: {<campaign spec fields>}}`;
//! `options` takes what a campaign spec takes except `name`, `release` and `targets`.
//!
//! The device set is resolved now, from the current assessment, and fixed in the campaign as an
//! explicit list (`targets.devices`): a device that starts running the vulnerable release later
//! is not swept in silently, and the campaign shows what the operator was shown. Refused:
//! an unknown advisory (404; an OSV id or alias, or a CVE id of the stored NVD records), an
//! advisory affecting no device (409), an unknown release (422), one built for none of the
//! affected devices' hardware (409 `no_compatible_devices`),
//! a release whose own SBOM the advisory matches, or one without an indexed SBOM (nothing shows
//! it is fixed) (409). The campaign and its audit record (`risk.remediation_created`) are
//! stored in one transaction.
//!
//! The campaign targets the devices whose RUNNING slot holds an affected release. A device
//! that runs a fixed release but keeps an affected one in its inactive slot (what a rollback
//! boots, decision 0049) is not targeted: the answer lists it in `fallback_only` (bounded like a
//! page, `fallback_only_total` whole); `rampart device reimage` writes both of its slots.
//! An affected device whose hardware the release does not list is left out too and listed
//! in `incompatible` (with its hardware id): it needs a fixed release built for it.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rampart_db::Campaign;
use rampart_rollout::{CampaignSpec, CampaignState, Status};
use rampart_vuln::fallback::fallback_only_devices;
use rampart_vuln::posture::affected_devices;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::helpers::{new_id, sha256_hex, unix_now};
use crate::listen::http::{ApiError, json_response, write_error};

use super::campaigns::{action_failed, loaded};
use super::risk::{MAX_ADVISORY_ID, assess_cached, named_advisories, risk_error};
use super::{Caller, ManagementApi, Permission};

/// Campaign spec fields the route sets itself; `options` may not give them.
const SET_BY_ROUTE: [&str; 3] = ["name", "release", "targets"];

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RemediateRequest {
    pub(crate) release: String,
    #[serde(default)]
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) start: bool,
    #[serde(default)]
    pub(crate) options: Map<String, Value>,
}

fn conflict(code: &'static str, detail: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, detail)
}

pub(super) async fn remediate(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(advisory): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let request: RemediateRequest = api
        .body(
            &headers,
            body,
            r#"{"release": "fixed.bin", "name"?: "...", "start"?: true|false, "options"?: {"phases"?, "gate"?, "policy"?, ...}}"#,
        )
        .await?;
    let answer = remediate_advisory(&api, &caller, &advisory, request).await?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// Creates (and, if asked, starts) the remediation campaign of `advisory` for `caller` (who
/// needs [`Permission::Operate`]): the management API's route and the web console's form
/// both come here. The answer is the route's JSON (the campaign's `id` among it).
pub(crate) async fn remediate_advisory(
    api: &ManagementApi,
    caller: &Caller,
    advisory: &str,
    request: RemediateRequest,
) -> Result<Value, ApiError> {
    caller.require(Permission::Operate)?;
    if advisory.is_empty()
        || advisory.len() > MAX_ADVISORY_ID
        || advisory.chars().any(char::is_control)
    {
        return Err(ApiError::invalid(format!(
            "an advisory id is 1 to {MAX_ADVISORY_ID} bytes without control characters"
        )));
    }
    if let Some(field) = SET_BY_ROUTE
        .iter()
        .find(|f| request.options.contains_key(**f))
    {
        return Err(ApiError::invalid(format!(
            "options.{field} is set by the remediation (the release and name are fields of their own, the targets are the affected devices); leave it out"
        )));
    }
    let stored = named_advisories(api, advisory).await?;
    let ids: BTreeSet<String> = stored
        .iter()
        .filter(|a| a.withdrawn.is_none())
        .map(|a| a.id.clone())
        .collect();
    // The release must exist and be firmware before anything else is judged about it.
    let release_info = api.firmware_release(&request.release).await?;
    let repo = api.image_repo()?;
    let assessment = assess_cached(api, &repo)
        .await
        .map_err(|e| risk_error("assessing risk", e))?;
    let release_state = assessment
        .releases
        .iter()
        .find(|r| r.target == request.release);
    match release_state {
        Some(r) if r.sbom == "indexed" => {}
        Some(r) => {
            return Err(conflict(
                "release_not_assessed",
                format!(
                    "release {:?} has no indexed SBOM ({}{}): nothing shows it fixes {advisory:?}; attach an SBOM to the release",
                    request.release,
                    r.sbom,
                    r.problem
                        .as_deref()
                        .map(|p| format!(": {p}"))
                        .unwrap_or_default()
                ),
            ));
        }
        None => {
            return Err(conflict(
                "release_not_assessed",
                format!(
                    "release {:?} is not in the assessment; list releases with GET /api/v1/risk/posture",
                    request.release
                ),
            ));
        }
    }
    if let Some(still) = assessment
        .exposure
        .get(&request.release)
        .and_then(|matched| ids.iter().find(|id| matched.contains(*id)))
    {
        return Err(conflict(
            "release_still_affected",
            format!(
                "release {:?} is itself affected by {still}: its SBOM still holds a vulnerable component; choose a release with the fix",
                request.release
            ),
        ));
    }
    let mut devices = BTreeSet::new();
    let mut incompatible = BTreeSet::new();
    let mut fallback = BTreeSet::new();
    for id in &ids {
        for device in affected_devices(id, &assessment.devices, &assessment.exposure) {
            // The fixed release installs only on the hardware it lists (a campaign refuses to
            // start otherwise): another board needs its own fixed build, in its own campaign.
            if release_info
                .hardware_ids
                .iter()
                .any(|h| h == &device.hardware_id)
            {
                devices.insert(device.device_id.clone());
            } else {
                incompatible.insert((device.device_id.clone(), device.hardware_id.clone()));
            }
        }
        for device in fallback_only_devices(id, &assessment.devices, &assessment.exposure) {
            fallback.insert(device.device_id.clone());
        }
    }
    // A device the campaign updates gets the fixed release in its inactive slot and runs it;
    // its old slot keeps the vulnerable one until the next update. Only devices that are not
    // targeted are listed as needing a re-image.
    let incompatible_ids: BTreeSet<String> =
        incompatible.iter().map(|(id, _)| id.clone()).collect();
    let fallback_only: Vec<String> = fallback
        .iter()
        .filter(|d| !devices.contains(*d) && !incompatible_ids.contains(*d))
        .cloned()
        .collect();
    if devices.is_empty() && !incompatible.is_empty() {
        let hardware: BTreeSet<&str> = incompatible.iter().map(|(_, h)| h.as_str()).collect();
        return Err(conflict(
            "no_compatible_devices",
            format!(
                "the {} device(s) advisory {advisory:?} affects are hardware {hardware:?}, and release {:?} is built for {:?}; remediate with a fixed release built for their hardware",
                incompatible.len(),
                request.release,
                release_info.hardware_ids,
            ),
        ));
    }
    if devices.is_empty() {
        return Err(conflict(
            "no_affected_devices",
            format!(
                "advisory {advisory:?} affects no device in the fleet{}; there is nothing to remediate{}",
                if ids.is_empty() {
                    " (it is withdrawn)"
                } else {
                    ""
                },
                if fallback_only.is_empty() {
                    String::new()
                } else {
                    format!(
                        " by a campaign, but {} device(s) hold an affected release in their inactive slot (a rollback would bring it back): re-image them with `rampart device reimage` (GET /api/v1/risk/advisories/{advisory} lists them with slot \"inactive\")",
                        fallback_only.len()
                    )
                }
            ),
        ));
    }
    let devices: Vec<String> = devices.into_iter().collect();
    let name = request
        .name
        .clone()
        .unwrap_or_else(|| format!("remediate {advisory}"));
    let mut spec = request.options.clone();
    spec.insert("name".into(), json!(name));
    spec.insert("release".into(), json!(request.release));
    spec.insert("targets".into(), json!({"devices": devices}));
    let spec: CampaignSpec = serde_json::from_value(Value::Object(spec))
        .map_err(|e| ApiError::invalid(format!("options: {e}; give campaign spec fields")))?;
    spec.validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(back) = &spec.rollback_release {
        api.firmware_release(back).await?;
    }
    let campaigns = api.campaigns()?;
    let now = unix_now();
    let id = new_id("c")?;
    let row = Campaign {
        id: id.clone(),
        name: spec.name.clone(),
        release_target: spec.release.clone(),
        spec: serde_json::to_value(&spec).map_err(|_| ApiError::internal())?,
        plan: vec![],
        state: serde_json::to_value(CampaignState::draft()).map_err(|_| ApiError::internal())?,
        status: Status::Draft.as_str().into(),
        created: now,
        created_by: caller.actor(),
        updated: now,
    };
    api.audit
        .write(
            now,
            &caller.actor(),
            "risk.remediation_created",
            &id,
            json!({
                "advisory": advisory,
                "advisory_ids": ids,
                "release": spec.release,
                "name": spec.name,
                "devices": devices.len(),
                "devices_sha256": sha256_hex(devices.join("\n").as_bytes()),
                "fallback_only": fallback_only.len(),
                "incompatible": incompatible.len(),
            }),
            |line| {
                let (db, row) = (api.db.clone(), row.clone());
                async move { db.create_campaign(&row, &line).await }
            },
        )
        .await
        .map_err(write_error("creating a remediation campaign"))?;
    let mut started = Value::Null;
    if request.start {
        let release = api.firmware_release(&spec.release).await?;
        let _guard = campaigns.lock.lock().await;
        let c = loaded(api, &id).await?;
        started = campaigns
            .start(c, &release, &caller.actor(), unix_now())
            .await
            .map_err(action_failed)?;
    }
    let c = loaded(api, &id).await?;
    Ok(json!({
            "id": id,
            "name": spec.name,
            "release": spec.release,
            "advisory": advisory,
            "advisory_ids": ids,
            // The list is bounded like a page; the count is whole.
            "devices": devices.iter().take(super::MAX_PAGE as usize).collect::<Vec<_>>(),
            "devices_total": devices.len(),
            // Not targeted (their running release is not affected) but their inactive slot
            // holds an affected release: `rampart device reimage` writes both slots.
            "fallback_only": fallback_only.iter().take(super::MAX_PAGE as usize).collect::<Vec<_>>(),
            "fallback_only_total": fallback_only.len(),
            // Affected, but on hardware the release is not built for: they need another
            // fixed release, in a campaign of their own.
            "incompatible": incompatible
                .iter()
                .take(super::MAX_PAGE as usize)
                .map(|(id, hardware)| json!({"id": id, "hardware_id": hardware}))
                .collect::<Vec<_>>(),
            "incompatible_total": incompatible.len(),
            "status": c.state.status.as_str(),
            "started": started,
    }))
}
