//! Campaigns: the I/O shell around `rampart_rollout`. The rules (waves, gates, breach
//! handling, policies, windows) are pure and live there; this module stores campaigns, runs
//! the engine that applies the rules, and serves the management API.
//!
//! The engine wakes every [`TICK`] and at once when a device reports a final result for a
//! campaign, so a breaching report halts its campaign within milliseconds, well inside one
//! poll interval. Every step is one database transaction with the campaign's new state; devices
//! of started waves that are not yet assigned (held by conditions or windows, or not reached
//! because the server stopped between two transactions) are picked up by the next step, so
//! a restart resumes exactly where the database says the campaign was.
//!
//! Routes (management listener, bearer tokens):
//! * `GET/POST /api/v1/campaigns` — list; create (`{"spec": CampaignSpec, "start": bool}`).
//! * `GET /api/v1/campaigns/{id}` — spec, state, plan and per-wave figures.
//! * `POST /api/v1/campaigns/{id}/{start|pause|resume|abort|approve}`.
//! * `GET /api/v1/campaigns/{id}/report?format=json|csv`.
//! * `PUT/DELETE /api/v1/groups/{name}/maintenance-window`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_db::{Campaign, CampaignUpdate, Db, DbError, DeviceInfo};
use rampart_rollout::window::MaintenanceWindow;
use rampart_rollout::{
    Action, CampaignSpec, CampaignState, Decision, DeviceRecord, DeviceView, Effect, Ineligible,
    Outcome, Plan, Status, Tally, UpdateType,
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

use crate::helpers::{new_id, unix_now};
use crate::listen::http::{ApiError, json_response};
use crate::listen::http::{db_error, write_error};
use crate::management::{ManagementApi, Permission};
use crate::observe::audit::{AuditWriteError, AuditWriter};

/// How often the engine looks at every active campaign even without reports.
pub const TICK: Duration = Duration::from_secs(1);
/// Devices assigned per engine step and campaign (a 100,000-device wave takes a few steps).
const ASSIGN_BATCH: i64 = 20_000;
/// The audit actor of automatic steps.
const ENGINE_ACTOR: &str = "system:campaigns";

/// The campaign engine and its shared state.
pub(crate) struct Campaigns {
    db: Db,
    audit: AuditWriter,
    wake: Notify,
    /// Serialises every change of campaign state (engine steps and operator actions).
    lock: Mutex<()>,
    /// Update type per campaign, to interpret reports without a database read.
    types: std::sync::Mutex<HashMap<String, UpdateType>>,
    alerts: crate::webhooks::Webhooks,
}

/// Why a campaign step failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CampaignError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Audit(#[from] AuditWriteError),
    #[error("stored campaign {0:?} is unreadable: {1}")]
    Corrupt(String, String),
}

fn corrupt(id: &str) -> impl Fn(String) -> CampaignError + '_ {
    move |e| CampaignError::Corrupt(id.to_string(), e)
}

/// A campaign as stored, parsed.
struct Loaded {
    row: Campaign,
    spec: CampaignSpec,
    state: CampaignState,
    plan: Option<Plan>,
}

fn load(row: Campaign) -> Result<Loaded, CampaignError> {
    let spec: CampaignSpec =
        serde_json::from_value(row.spec.clone()).map_err(|e| corrupt(&row.id)(e.to_string()))?;
    let state: CampaignState =
        serde_json::from_value(row.state.clone()).map_err(|e| corrupt(&row.id)(e.to_string()))?;
    let plan = if row.plan.is_empty() {
        None
    } else {
        Some(Plan::from_bounds(row.plan.clone()).map_err(|e| corrupt(&row.id)(e.to_string()))?)
    };
    Ok(Loaded {
        row,
        spec,
        state,
        plan,
    })
}

fn tally_from(counts: &[(String, i64)]) -> Tally {
    let mut t = Tally::default();
    for (outcome, n) in counts {
        let n = (*n).max(0) as u64;
        t.devices += n;
        match Outcome::parse(outcome) {
            Some(Outcome::Succeeded) => t.succeeded += n,
            Some(o) if o.is_failure() => {
                t.failed += n;
                match o {
                    Outcome::RolledBack => t.rolled_back += n,
                    Outcome::VerificationFailed => t.verification_failed += n,
                    _ => {}
                }
            }
            _ => {}
        }
    }
    t
}

/// An owned campaign step, written in one transaction.
#[derive(Default)]
struct Step {
    assign: Vec<String>,
    hold: Vec<String>,
    rollback: Option<Option<String>>,
    withdraw: bool,
}

impl Campaigns {
    pub(crate) fn new(db: Db, audit: AuditWriter, alerts: crate::webhooks::Webhooks) -> Arc<Self> {
        Arc::new(Campaigns {
            db,
            audit,
            wake: Notify::new(),
            lock: Mutex::new(()),
            types: std::sync::Mutex::new(HashMap::new()),
            alerts,
        })
    }

    /// Runs the engine until `shutdown` resolves.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.step_all(unix_now()).await {
                crate::observe::log::error(
                    "a campaign step failed; retrying on the next tick",
                    json!({"error": e.to_string()}),
                );
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One step of every active campaign.
    pub(crate) async fn step_all(&self, now: i64) -> Result<(), CampaignError> {
        let _guard = self.lock.lock().await;
        for row in self.db.active_campaigns().await? {
            let id = row.id.clone();
            if let Err(e) = self.step(load(row)?, now).await {
                crate::observe::log::error(
                    "a campaign step failed",
                    json!({"campaign": id, "error": e.to_string()}),
                );
            }
        }
        Ok(())
    }

    async fn step(&self, mut c: Loaded, now: i64) -> Result<(), CampaignError> {
        let Some(plan) = c.plan.clone() else {
            return Ok(());
        };
        if !matches!(c.state.status, Status::Running | Status::AwaitingApproval) {
            return Ok(());
        }
        // Devices of started waves that may now be given the release.
        self.release_pending(&c, now).await?;
        let counts = self
            .db
            .campaign_wave_counts(&c.row.id, c.state.wave as i64)
            .await?;
        let tally = tally_from(&counts);
        let decision = rampart_rollout::decide(&c.spec, &plan, &c.state, &tally, now);
        let (action, details, step) = match &decision {
            Decision::Wait(_) => return Ok(()),
            Decision::Advance { to } => (
                "campaign.wave_started",
                json!({"wave": to, "name": Plan::wave_name(*to), "devices": plan.size_of(*to), "previous": tally}),
                Step::default(),
            ),
            Decision::AwaitApproval => (
                "campaign.awaiting_approval",
                json!({"wave": c.state.wave, "tally": tally}),
                Step::default(),
            ),
            Decision::Complete => (
                "campaign.completed",
                json!({"tally": tally}),
                Step::default(),
            ),
            Decision::Halt {
                action,
                rollback,
                breach,
            } => (
                "campaign.halted",
                json!({"action": action, "rollback": rollback, "breach": breach}),
                Step {
                    rollback: rollback.then(|| c.spec.rollback_release.clone()),
                    withdraw: *action == rampart_rollout::BreachAction::Abort,
                    ..Step::default()
                },
            ),
        };
        rampart_rollout::apply(&mut c.state, &decision, now);
        self.save(&c, &step, now, ENGINE_ACTOR, action, details.clone())
            .await?;
        crate::observe::log::info(
            action,
            json!({"campaign": c.row.id, "name": c.row.name, "details": details}),
        );
        match &decision {
            Decision::Advance { .. } => self.release_pending(&c, now).await?,
            Decision::Complete => {
                self.alert(
                    crate::webhooks::WebhookEvent::CampaignCompleted,
                    &c,
                    json!({"tally": tally}),
                )
                .await;
            }
            Decision::Halt {
                action,
                rollback,
                breach,
            } => {
                let data = json!({
                    "wave": breach.wave,
                    "wave_name": Plan::wave_name(breach.wave),
                    "breach": breach,
                    "action": action,
                    "rollback": rollback,
                });
                self.alert(crate::webhooks::WebhookEvent::GateBreach, &c, data.clone())
                    .await;
                self.alert(crate::webhooks::WebhookEvent::CampaignHalted, &c, data)
                    .await;
            }
            _ => {}
        }
        Ok(())
    }

    async fn alert(&self, event: crate::webhooks::WebhookEvent, c: &Loaded, data: Value) {
        let payload = json!({
            "campaign": c.row.id,
            "name": c.row.name,
            "release": c.row.release_target,
            "status": c.state.status.as_str(),
            "details": data,
        });
        if let Err(e) = self.alerts.emit(event, payload).await {
            crate::observe::log::error(
                "queueing a webhook alert failed",
                json!({"campaign": c.row.id, "error": e.to_string()}),
            );
        }
    }

    /// Gives the release to devices of started waves that are waiting, or held and now
    /// allowed; holds the ones the policy's conditions or their groups' windows hold back.
    async fn release_pending(&self, c: &Loaded, now: i64) -> Result<(), CampaignError> {
        let pending = self
            .db
            .campaign_pending(&c.row.id, c.state.wave as i64, ASSIGN_BATCH)
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut step = Step::default();
        // Few distinct windows (one per group): parse and judge each once per step. A window
        // stored unreadable holds its devices (it was validated when set).
        let mut open: HashMap<String, bool> = HashMap::new();
        for (device, attributes, windows) in pending {
            let conditions = c.spec.policy.conditions_met(&attributes);
            let window = windows.is_empty()
                || windows.iter().any(|w| {
                    *open
                        .entry(w.clone())
                        .or_insert_with(|| MaintenanceWindow::stored_is_open(w, now))
                });
            if conditions && window {
                step.assign.push(device);
            } else {
                step.hold.push(device);
            }
        }
        self.write_step(c, &step, now, None).await
    }

    async fn write_step(
        &self,
        c: &Loaded,
        step: &Step,
        now: i64,
        audit: Option<&rampart_db::AuditLine>,
    ) -> Result<(), CampaignError> {
        let state =
            serde_json::to_value(&c.state).map_err(|e| corrupt(&c.row.id)(e.to_string()))?;
        self.db
            .update_campaign(&CampaignUpdate {
                id: &c.row.id,
                state: &state,
                status: c.state.status.as_str(),
                now,
                assign: &step.assign,
                hold: &step.hold,
                rollback: step.rollback.as_ref().map(|t| t.as_deref()),
                withdraw_unfinished: step.withdraw,
                update_type: c.spec.update_type.as_str(),
                forced_at: forced_at(&c.spec, now),
                audit,
            })
            .await?;
        Ok(())
    }

    /// Saves the campaign's state with `step`, audited.
    async fn save(
        &self,
        c: &Loaded,
        step: &Step,
        now: i64,
        actor: &str,
        action: &str,
        details: Value,
    ) -> Result<(), CampaignError> {
        self.audit
            .write(now, actor, action, &c.row.id, details, |line| async move {
                self.write_step(c, step, now, Some(&line))
                    .await
                    .map_err(|e| match e {
                        CampaignError::Db(e) => e,
                        other => DbError::Invalid(other.to_string()),
                    })
            })
            .await?;
        Ok(())
    }

    /// A device reported about an assignment: records it for the campaign (if any) and wakes
    /// the engine for a final result. Errors are logged: the report itself is already stored.
    pub(crate) async fn on_report(
        &self,
        device_id: &str,
        assignment: &str,
        status: &str,
        details: &Value,
    ) {
        if assignment.is_empty() {
            return;
        }
        let campaign = assignment
            .strip_suffix(rampart_db::ROLLBACK_SUFFIX)
            .unwrap_or(assignment);
        let Some(update_type) = self.update_type(campaign).await else {
            return;
        };
        let Some(outcome) = Outcome::from_report(status, update_type) else {
            return;
        };
        let reason = details.get("reason").and_then(Value::as_str).unwrap_or(
            if outcome == Outcome::Succeeded {
                "ok"
            } else {
                ""
            },
        );
        let reason: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(64)
            .collect();
        match self
            .db
            .record_campaign_outcome(
                device_id,
                assignment,
                if assignment == campaign {
                    outcome.as_str()
                } else {
                    status
                },
                outcome.is_result(),
                &reason,
                unix_now(),
            )
            .await
        {
            Ok(true) if outcome.is_result() => self.wake.notify_one(),
            Ok(_) => {}
            Err(e) => crate::observe::log::error(
                "recording a campaign result failed",
                json!({"device": device_id, "campaign": campaign, "error": e.to_string()}),
            ),
        }
    }

    /// The update type of a campaign (`None`: not a campaign's assignment).
    async fn update_type(&self, campaign: &str) -> Option<UpdateType> {
        if let Some(t) = self
            .types
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(campaign)
        {
            return Some(*t);
        }
        let row = self.db.campaign(campaign).await.ok()??;
        let spec: CampaignSpec = serde_json::from_value(row.spec).ok()?;
        let mut types = self.types.lock().unwrap_or_else(|e| e.into_inner());
        if types.len() > 10_000 {
            types.clear();
        }
        types.insert(campaign.to_string(), spec.update_type);
        Some(spec.update_type)
    }

    // ---- operator actions ------------------------------------------------------------------

    /// Resolves the targets, checks policy and compatibility with `release` (the campaign's
    /// release, looked up by the caller), plans the waves and starts.
    async fn start(
        &self,
        mut c: Loaded,
        release: &rampart_core::release::ReleaseInfo,
        actor: &str,
        now: i64,
    ) -> Result<Value, ApiError> {
        if c.state.status != Status::Draft {
            return Err(action_error(rampart_rollout::ActionError {
                action: "start",
                status: c.state.status.as_str(),
                hint: "it has already started",
            }));
        }
        let targets = &c.spec.targets;
        let infos = self
            .db
            .device_infos(targets.group.as_deref())
            .await
            .map_err(|e| db_error("reading the inventory", e))?;
        let selected: Vec<&DeviceInfo> = if let Some(list) = &targets.devices {
            let by_id: HashMap<&str, &DeviceInfo> =
                infos.iter().map(|d| (d.id.as_str(), d)).collect();
            let unknown: Vec<&String> = list
                .iter()
                .filter(|id| !by_id.contains_key(id.as_str()))
                .collect();
            if !unknown.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} listed device(s) are not in the inventory (e.g. {:?}); devices appear after their first contact",
                    unknown.len(),
                    unknown.iter().take(5).collect::<Vec<_>>()
                )));
            }
            let mut seen = std::collections::HashSet::new();
            list.iter()
                .filter(|id| seen.insert(id.as_str()))
                .filter_map(|id| by_id.get(id.as_str()).copied())
                .collect()
        } else if let Some(f) = &targets.filter {
            infos.iter().filter(|d| f.matches(&view(d))).collect()
        } else {
            infos.iter().collect()
        };
        let selected_count = selected.len();
        let mut excluded: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut eligible = Vec::new();
        for d in selected {
            if d.revoked {
                *excluded.entry("revoked").or_default() += 1;
                continue;
            }
            match c.spec.policy.eligible(&view(d)) {
                Ok(()) => eligible.push(d),
                Err(why) => *excluded.entry(Ineligible::as_str(why)).or_default() += 1,
            }
        }
        let incompatible: Vec<&&DeviceInfo> = eligible
            .iter()
            .filter(|d| !release.hardware_ids.iter().any(|h| h == &d.hardware_id))
            .collect();
        if !incompatible.is_empty() {
            let examples: Vec<String> = incompatible
                .iter()
                .take(5)
                .map(|d| format!("{} ({:?})", d.id, d.hardware_id))
                .collect();
            return Err(ApiError::invalid(format!(
                "release {:?} is built for hardware {:?}, but {} selected device(s) are other hardware, e.g. {}; narrow the targets or set policy.hardware_ids",
                c.spec.release,
                release.hardware_ids,
                incompatible.len(),
                examples.join(", ")
            )));
        }
        let plan = Plan::new(&c.spec.phases, &c.spec.gate, eligible.len() as u64).map_err(|e| {
            ApiError::invalid(format!(
                "{e} ({selected_count} selected, {} eligible, excluded: {excluded:?})",
                eligible.len()
            ))
        })?;
        let mut ids: Vec<String> = eligible.iter().map(|d| d.id.clone()).collect();
        rampart_rollout::order_devices(&c.row.id, &mut ids);
        let devices: Vec<(String, i64, i64)> = ids
            .into_iter()
            .enumerate()
            .map(|(i, id)| {
                let wave = plan.wave_of(i as u64) as i64;
                (id, i as i64, wave)
            })
            .collect();
        let effect =
            rampart_rollout::act(&mut c.state, Action::Start, &plan, &Tally::default(), now)
                .map_err(action_error)?;
        debug_assert_eq!(effect, Effect::Started);
        let state = serde_json::to_value(&c.state).map_err(|_| ApiError::internal())?;
        let details = json!({
            "selected": selected_count,
            "targets": devices.len(),
            "excluded": excluded,
            "plan": plan.bounds(),
        });
        let id = c.row.id.clone();
        let bounds = plan.bounds().to_vec();
        let update_type = c.spec.update_type.as_str();
        let forced_at = forced_at(&c.spec, now);
        self.audit
            .write(
                now,
                actor,
                "campaign.started",
                &id,
                details.clone(),
                |line| {
                    let (db, devices, bounds, state, id) =
                        (self.db.clone(), &devices, &bounds, &state, &id);
                    async move {
                        db.start_campaign(
                            id,
                            devices,
                            bounds,
                            &CampaignUpdate {
                                id,
                                state,
                                status: Status::Running.as_str(),
                                now,
                                assign: &[],
                                hold: &[],
                                rollback: None,
                                withdraw_unfinished: false,
                                update_type,
                                forced_at,
                                audit: Some(&line),
                            },
                        )
                        .await
                    }
                },
            )
            .await
            .map_err(write_error("starting a campaign"))?;
        c.plan = Some(plan);
        // The canary's devices are given the release now (and by any later step if this
        // one does not happen).
        if let Err(e) = self.release_pending(&c, now).await {
            crate::observe::log::error(
                "assigning the canary failed; the engine retries",
                json!({"campaign": id, "error": e.to_string()}),
            );
        }
        self.wake.notify_one();
        Ok(details)
    }

    /// Applies an operator action to a started campaign.
    async fn act(
        &self,
        mut c: Loaded,
        action: Action,
        actor: &str,
        now: i64,
    ) -> Result<Value, ApiError> {
        let plan = c.plan.clone().ok_or_else(|| {
            action_error(rampart_rollout::ActionError {
                action: action.as_str(),
                status: c.state.status.as_str(),
                hint: "start it first",
            })
        })?;
        let counts = self
            .db
            .campaign_wave_counts(&c.row.id, c.state.wave as i64)
            .await
            .map_err(|e| ApiError::from_db("reading a campaign", e))?;
        let tally = tally_from(&counts);
        let effect =
            rampart_rollout::act(&mut c.state, action, &plan, &tally, now).map_err(action_error)?;
        let step = Step {
            withdraw: effect == Effect::Aborted,
            ..Step::default()
        };
        let details = json!({"effect": format!("{effect:?}"), "wave": c.state.wave});
        self.save(
            &c,
            &step,
            now,
            actor,
            &format!("campaign.{}", action.as_str()),
            details.clone(),
        )
        .await
        .map_err(campaign_api_error)?;
        if let Effect::Advanced { .. } = effect {
            self.release_pending(&c, now)
                .await
                .map_err(campaign_api_error)?;
        }
        self.wake.notify_one();
        Ok(details)
    }
}

fn view(d: &DeviceInfo) -> DeviceView<'_> {
    DeviceView {
        id: &d.id,
        hardware_id: &d.hardware_id,
        region: &d.region,
        firmware_version: &d.firmware_version,
        tags: &d.tags,
        attributes: &d.attributes,
    }
}

fn action_error(e: rampart_rollout::ActionError) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, "invalid_action", e.to_string())
}

fn campaign_api_error(e: CampaignError) -> ApiError {
    match e {
        CampaignError::Db(e) => ApiError::from_db("a campaign step", e),
        CampaignError::Audit(e) => write_error("a campaign step")(e),
        CampaignError::Corrupt(..) => {
            crate::observe::log::error(
                "a stored campaign is unreadable",
                json!({"error": e.to_string()}),
            );
            ApiError::internal()
        }
    }
}

async fn loaded(api: &ManagementApi, id: &str) -> Result<Loaded, ApiError> {
    let row = api
        .db
        .campaign(id)
        .await
        .map_err(|e| ApiError::from_db("reading a campaign", e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_campaign",
                format!("no campaign {id:?}; list them with GET /api/v1/campaigns"),
            )
        })?;
    load(row).map_err(campaign_api_error)
}

// ---- handlers ------------------------------------------------------------------------------

pub(crate) async fn create(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        spec: CampaignSpec,
        #[serde(default)]
        start: bool,
    }
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let r: Request = api
        .body(
            &headers,
            body,
            r#"{"spec": {"name", "release", "targets": {...}, "phases"?, "gate"?, "policy"?, ...}, "start": true|false}"#,
        )
        .await?;
    r.spec
        .validate()
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let campaigns = api.campaigns()?;
    let release = api.firmware_release(&r.spec.release).await?;
    if let Some(back) = &r.spec.rollback_release {
        api.firmware_release(back).await?;
    }
    let now = unix_now();
    let id = new_id("c")?;
    let row = Campaign {
        id: id.clone(),
        name: r.spec.name.clone(),
        release_target: r.spec.release.clone(),
        spec: serde_json::to_value(&r.spec).map_err(|_| ApiError::internal())?,
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
            "campaign.created",
            &id,
            json!({"name": row.name, "release": row.release_target}),
            |line| {
                let (db, row) = (api.db.clone(), row.clone());
                async move { db.create_campaign(&row, &line).await }
            },
        )
        .await
        .map_err(write_error("creating a campaign"))?;
    let mut started = Value::Null;
    if r.start {
        let _guard = campaigns.lock.lock().await;
        let c = loaded(&api, &id).await?;
        started = campaigns
            .start(c, &release, &caller.actor(), unix_now())
            .await?;
    }
    let c = loaded(&api, &id).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"id": id, "status": c.state.status.as_str(), "state": c.state, "plan": c.row.plan, "started": started}),
    ))
}

pub(crate) async fn list(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let rows = api
        .db
        .list_campaigns(1000)
        .await
        .map_err(|e| ApiError::from_db("listing campaigns", e))?;
    let list: Vec<Value> = rows
        .into_iter()
        .map(|c| {
            json!({"id": c.id, "name": c.name, "release": c.release_target, "status": c.status,
                   "created": c.created, "created_by": c.created_by, "waves": c.plan.len(),
                   "targets": c.plan.last().copied().unwrap_or(0)})
        })
        .collect();
    Ok(json_response(StatusCode::OK, &json!({"campaigns": list})))
}

pub(crate) async fn get(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let c = loaded(&api, &id).await?;
    let report = report_json(&api, &c).await?;
    Ok(json_response(StatusCode::OK, &report))
}

pub(crate) async fn action(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let action = Action::parse(&action).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!(
                "{action:?} is not a campaign action; use start, pause, resume, abort or approve"
            ),
        )
    })?;
    let campaigns = api.campaigns()?;
    let _guard = campaigns.lock.lock().await;
    let c = loaded(&api, &id).await?;
    let now = unix_now();
    let details = match action {
        Action::Start => {
            let release = api.firmware_release(&c.spec.release).await?;
            if let Some(back) = &c.spec.rollback_release {
                api.firmware_release(back).await?;
            }
            campaigns.start(c, &release, &caller.actor(), now).await?
        }
        other => campaigns.act(c, other, &caller.actor(), now).await?,
    };
    let c = loaded(&api, &id).await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "status": c.state.status.as_str(), "state": c.state, "result": details}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReportQuery {
    format: Option<String>,
}

pub(crate) async fn report(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    crate::listen::http::ApiQuery(q): crate::listen::http::ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let c = loaded(&api, &id).await?;
    match q.format.as_deref().unwrap_or("json") {
        "json" => Ok(json_response(StatusCode::OK, &report_json(&api, &c).await?)),
        "csv" => {
            let (figures, _) = figures_of(&api, &c).await?;
            let csv = figures
                .map(|f| rampart_rollout::to_csv(&f))
                .unwrap_or_default();
            Ok((
                StatusCode::OK,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                )],
                csv,
            )
                .into_response())
        }
        other => Err(ApiError::invalid(format!(
            "format {other:?} is not supported; use json or csv"
        ))),
    }
}

async fn figures_of(
    api: &ManagementApi,
    c: &Loaded,
) -> Result<(Option<rampart_rollout::Figures>, BTreeMap<String, u64>), ApiError> {
    let Some(plan) = &c.plan else {
        return Ok((None, BTreeMap::new()));
    };
    let devices = api
        .db
        .campaign_devices(&c.row.id)
        .await
        .map_err(|e| ApiError::from_db("reading a campaign's devices", e))?;
    let mut rollback: BTreeMap<String, u64> = BTreeMap::new();
    let records: Vec<DeviceRecord> = devices
        .iter()
        .map(|d| {
            if !d.rollback_outcome.is_empty() {
                *rollback.entry(d.rollback_outcome.clone()).or_default() += 1;
            }
            DeviceRecord {
                wave: d.wave.max(0) as usize,
                outcome: Outcome::parse(&d.outcome).unwrap_or(Outcome::Waiting),
                reason: (!d.reason.is_empty()).then(|| d.reason.clone()),
                result_at: d.result_at,
            }
        })
        .collect();
    Ok((
        Some(rampart_rollout::figures(plan, &records, c.state.started)),
        rollback,
    ))
}

async fn report_json(api: &ManagementApi, c: &Loaded) -> Result<Value, ApiError> {
    let (figures, rollback) = figures_of(api, c).await?;
    let rolled_back_devices: u64 = rollback.values().sum();
    Ok(json!({
        "id": c.row.id,
        "name": c.row.name,
        "release": c.row.release_target,
        "status": c.state.status.as_str(),
        "created": c.row.created,
        "created_by": c.row.created_by,
        "spec": c.spec,
        "state": c.state,
        "plan": c.row.plan,
        "wave": c.state.wave,
        "wave_name": Plan::wave_name(c.state.wave),
        "figures": figures,
        "fleet_rollback": (rolled_back_devices > 0).then(|| json!({
            "devices": rolled_back_devices,
            "by_status": rollback,
        })),
    }))
}

pub(crate) async fn set_window(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(group): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let w: MaintenanceWindow = api
        .body(
            &headers,
            body,
            r#"{"cron": "0 2 * * *", "duration_secs": 7200, "timezone": "Europe/Berlin"}"#,
        )
        .await?;
    let compiled = w.compile().map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = unix_now();
    let text = serde_json::to_string(&w).map_err(|_| ApiError::internal())?;
    api.audit
        .write(
            now,
            &caller.actor(),
            "group.window_set",
            &group,
            serde_json::to_value(&w).unwrap_or_default(),
            |line| {
                let (db, group, text) = (api.db.clone(), group.clone(), text.clone());
                async move { db.set_group_window(&group, Some(&text), &line).await }
            },
        )
        .await
        .map_err(write_error("setting a maintenance window"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"group": group, "maintenance_window": w, "open_now": compiled.is_open(now), "next_open": compiled.next_open(now)}),
    ))
}

pub(crate) async fn clear_window(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    api.audit
        .write(
            unix_now(),
            &caller.actor(),
            "group.window_cleared",
            &group,
            json!({}),
            |line| {
                let (db, group) = (api.db.clone(), group.clone());
                async move { db.set_group_window(&group, None, &line).await }
            },
        )
        .await
        .map_err(write_error("clearing a maintenance window"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// When devices assigned now are forced: `force_after_secs` from now for a time-forced campaign,
/// 0 (not time-forced) otherwise.
fn forced_at(spec: &rampart_rollout::spec::CampaignSpec, now: i64) -> i64 {
    match (spec.update_type, spec.force_after_secs) {
        (UpdateType::TimeForced, Some(secs)) => now.saturating_add(secs as i64),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_forced_campaigns_force_after_their_delay_others_never() {
        let mut spec: rampart_rollout::spec::CampaignSpec = serde_json::from_value(json!({
            "name": "tf", "release": "fw.bin", "targets": {"group": "g"},
            "update_type": "timeforced", "force_after_secs": 600
        }))
        .unwrap();
        assert_eq!(forced_at(&spec, 1000), 1600);
        spec.update_type = UpdateType::Soft;
        spec.force_after_secs = None;
        assert_eq!(forced_at(&spec, 1000), 0);
    }
}
