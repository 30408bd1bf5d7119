//! The campaign engine: the I/O shell around `rampart_rollout`. The rules (waves, gates, breach
//! handling, policies, windows) are pure and live there; this module stores campaigns and runs
//! the engine that applies the rules (the operator room serves the routes, see
//! `operator::campaigns`).
//!
//! The engine wakes every [`TICK`] and at once when a device reports a final result for a
//! campaign, so a breaching report halts its campaign within milliseconds, well inside one
//! poll interval. Every step is one database transaction with the campaign's new state; devices
//! of started waves that are not yet assigned (held by conditions or windows, or not reached
//! because the server stopped between two transactions) are picked up by the next step, so
//! a restart resumes exactly where the database says the campaign was.

use rampart_db::DomainError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use rampart_db::{Campaign, CampaignUpdate, Db, DbError, DeviceInfo};
use rampart_rollout::window::MaintenanceWindow;
use rampart_rollout::{
    Action, CampaignSpec, CampaignState, Decision, DeviceView, Effect, Ineligible, Outcome, Plan,
    Status, Tally, UpdateType,
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

use crate::helpers::unix_now;
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
    pub(crate) lock: Mutex<()>,
    /// Update type per campaign, to interpret reports without a database read.
    types: std::sync::Mutex<HashMap<String, UpdateType>>,
    alerts: crate::engines::webhooks::Webhooks,
    /// Remote attestation, when enabled: campaigns that require it (or a server that does)
    /// hold unattested devices.
    attestation: Option<Arc<crate::engines::attestation::Attestation>>,
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

/// Why an operator action on a campaign was refused or failed; the operator room turns it into
/// an answer.
#[derive(Debug)]
pub(crate) enum ActionFailed {
    /// The rules do not allow the action in the campaign's state.
    Refused(rampart_rollout::ActionError),
    /// The targets, policy or plan do not fit the fleet or the release.
    Invalid(String),
    /// Reading (`context`) failed.
    Read(&'static str, DbError),
    /// The audited write (`context`) failed.
    Write(&'static str, AuditWriteError),
    /// A campaign step failed.
    Step(CampaignError),
    /// The campaign state could not be encoded.
    Encoding,
}

fn corrupt(id: &str) -> impl Fn(String) -> CampaignError + '_ {
    move |e| CampaignError::Corrupt(id.to_string(), e)
}

/// A campaign as stored, parsed.
pub(crate) struct Loaded {
    pub(crate) row: Campaign,
    pub(crate) spec: CampaignSpec,
    pub(crate) state: CampaignState,
    pub(crate) plan: Option<Plan>,
}

pub(crate) fn load(row: Campaign) -> Result<Loaded, CampaignError> {
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
        // A quarantined device is in no wave's figures: neither a success nor a failure, and
        // not a device the wave waits for (decision 0031).
        if outcome == rampart_db::QUARANTINED_OUTCOME {
            continue;
        }
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
    pub(crate) fn new(
        db: Db,
        audit: AuditWriter,
        alerts: crate::engines::webhooks::Webhooks,
        attestation: Option<Arc<crate::engines::attestation::Attestation>>,
    ) -> Arc<Self> {
        Arc::new(Campaigns {
            attestation,
            db,
            audit,
            wake: Notify::new(),
            lock: Mutex::new(()),
            types: std::sync::Mutex::new(HashMap::new()),
            alerts,
        })
    }

    /// Runs the engine until `shutdown` resolves.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
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
            heart.beat(unix_now());
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
                    crate::engines::webhooks::WebhookEvent::CampaignCompleted,
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
                self.alert(
                    crate::engines::webhooks::WebhookEvent::GateBreach,
                    &c,
                    data.clone(),
                )
                .await;
                self.alert(
                    crate::engines::webhooks::WebhookEvent::CampaignHalted,
                    &c,
                    data,
                )
                .await;
            }
            _ => {}
        }
        Ok(())
    }

    async fn alert(&self, event: crate::engines::webhooks::WebhookEvent, c: &Loaded, data: Value) {
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
        // Devices without a fresh passing attestation are held, not failed: they are given the
        // release at a later step once they attest.
        let attested = match &self.attestation {
            Some(a) if a.config.require || c.spec.require_attestation => {
                let ids: Vec<String> = pending.iter().map(|(d, _, _)| d.clone()).collect();
                Some(
                    self.db
                        .attested_among(&ids, now, a.config.freshness_secs())
                        .await?,
                )
            }
            _ => None,
        };
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
            let attested = attested.as_ref().is_none_or(|set| set.contains(&device));
            if conditions && window && attested {
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
                        other => DbError::Domain(DomainError::Invalid(other.to_string())),
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
    pub(crate) async fn start(
        &self,
        mut c: Loaded,
        release: &rampart_core::release::ReleaseInfo,
        actor: &str,
        now: i64,
    ) -> Result<Value, ActionFailed> {
        if c.state.status != Status::Draft {
            return Err(ActionFailed::Refused(rampart_rollout::ActionError {
                action: "start",
                status: c.state.status.as_str(),
                hint: "it has already started",
            }));
        }
        if c.spec.require_attestation && self.attestation.is_none() {
            return Err(ActionFailed::Invalid(
                "the campaign requires attestation (require_attestation), but this server runs without it; start the server with --attestation, or drop require_attestation".into(),
            ));
        }
        let targets = &c.spec.targets;
        let infos = self
            .db
            .device_infos(targets.group.as_deref())
            .await
            .map_err(|e| ActionFailed::Read("reading the inventory", e))?;
        let selected: Vec<&DeviceInfo> = if let Some(list) = &targets.devices {
            let by_id: HashMap<&str, &DeviceInfo> =
                infos.iter().map(|d| (d.id.as_str(), d)).collect();
            let unknown: Vec<&String> = list
                .iter()
                .filter(|id| !by_id.contains_key(id.as_str()))
                .collect();
            if !unknown.is_empty() {
                return Err(ActionFailed::Invalid(format!(
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
        // Quarantined devices are never in a wave (decision 0031).
        let quarantined: std::collections::HashSet<String> = self
            .db
            .quarantined_devices(i64::MAX)
            .await
            .map_err(|e| ActionFailed::Read("reading quarantined devices", e))?
            .into_iter()
            .map(|q| q.device_id)
            .collect();
        for d in selected {
            if d.revoked {
                *excluded.entry("revoked").or_default() += 1;
                continue;
            }
            if quarantined.contains(&d.id) {
                *excluded.entry("quarantined").or_default() += 1;
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
            return Err(ActionFailed::Invalid(format!(
                "release {:?} is built for hardware {:?}, but {} selected device(s) are other hardware, e.g. {}; narrow the targets or set policy.hardware_ids",
                c.spec.release,
                release.hardware_ids,
                incompatible.len(),
                examples.join(", ")
            )));
        }
        let plan = Plan::new(&c.spec.phases, &c.spec.gate, eligible.len() as u64).map_err(|e| {
            ActionFailed::Invalid(format!(
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
                .map_err(ActionFailed::Refused)?;
        debug_assert_eq!(effect, Effect::Started);
        let state = serde_json::to_value(&c.state).map_err(|_| ActionFailed::Encoding)?;
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
            .map_err(|e| ActionFailed::Write("starting a campaign", e))?;
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
    pub(crate) async fn act(
        &self,
        mut c: Loaded,
        action: Action,
        actor: &str,
        now: i64,
    ) -> Result<Value, ActionFailed> {
        let plan = c.plan.clone().ok_or_else(|| {
            ActionFailed::Refused(rampart_rollout::ActionError {
                action: action.as_str(),
                status: c.state.status.as_str(),
                hint: "start it first",
            })
        })?;
        let counts = self
            .db
            .campaign_wave_counts(&c.row.id, c.state.wave as i64)
            .await
            .map_err(|e| ActionFailed::Read("reading a campaign", e))?;
        let tally = tally_from(&counts);
        let effect = rampart_rollout::act(&mut c.state, action, &plan, &tally, now)
            .map_err(ActionFailed::Refused)?;
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
        .map_err(ActionFailed::Step)?;
        if let Effect::Advanced { .. } = effect {
            self.release_pending(&c, now)
                .await
                .map_err(ActionFailed::Step)?;
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
