//! Forced re-imaging (issue 16): a re-image assignment for one device, and the executor of the
//! `reimage` actions of the incident-action outbox.
//!
//! A re-image is an assignment of type `forced` with `reimage` set: the device installs the
//! release into its inactive slot even when it claims to run it already (its image is
//! suspect), boots and health-checks it, commits it (raising its anti-rollback floor), then
//! writes it into the other slot too and reports `installed` with `details.reimaged`. Neither
//! soft-update checks nor maintenance windows defer it (the native poll never consults
//! windows for a direct assignment; the DDI front door treats a re-image as having none).
//!
//! The release is the one asked for (the operator's choice, or the action's
//! `detail.release`), else the release the device's last passing TPM quote proved (its last
//! attested-good release), else the re-image fails with a clear outcome: nothing is guessed.
//! The executor names each assignment after its action (`rei-<action id>`), so an action run
//! twice (the server stopped between the assignment and finishing the action) assigns once,
//! and finishes the action only when the device reports how the re-image ended.

use std::sync::Arc;
use std::time::Duration;

use rampart_db::{Assignment, Db, DbError, IncidentAction, MAX_ACTION_CLAIM, TimelineEntry};
use serde_json::{Value, json};

use crate::delivery::image_repo::{HostedRepo, Release};
use crate::helpers::unix_now;
use crate::observe::audit::{AuditWriteError, AuditWriter};

/// How often the executor looks for approved `reimage` actions.
pub const CLAIM_INTERVAL: Duration = Duration::from_secs(1);
/// Actions claimed at a time.
const CLAIM_BATCH: i64 = 50;
/// Who the executor acts as in audit records and timelines.
pub const ACTOR: &str = "engine:reimage";

/// Why a re-image could not be assigned.
#[derive(Debug, thiserror::Error)]
pub enum ReimageError {
    #[error("no device {0:?}; list devices with `rampart device list`")]
    UnknownDevice(String),
    #[error(
        "device {0} is revoked: it gets no assignments; re-enrol it first if it is to be re-imaged"
    )]
    Revoked(String),
    #[error(
        "device {0} has no attested-good release to re-image to (no TPM quote of it ever passed); name the release: `rampart device reimage {0} --release TARGET`"
    )]
    NoKnownGoodRelease(String),
    #[error(
        "the server hosts no image repository (start it with --image-repo), so no release can be checked for a re-image"
    )]
    NoRepository,
    #[error("the image repository has no release {0:?}; list releases with `rampart release list`")]
    UnknownRelease(String),
    #[error("reading the image repository: {0}")]
    Repository(String),
    #[error(
        "{target} is built for {built_for:?}, but device {device} reports hardware {hardware:?}; choose a release for its hardware"
    )]
    IncompatibleHardware {
        target: String,
        built_for: Vec<String>,
        device: String,
        hardware: String,
    },
    #[error(
        "{target} has security version {release}, below device {device}'s anti-rollback floor {floor}: the device would refuse it; choose a release at or above the floor"
    )]
    BelowFloor {
        target: String,
        release: u64,
        device: String,
        floor: u64,
    },
    #[error("{context}: {source}")]
    Write {
        context: &'static str,
        source: AuditWriteError,
    },
}

impl ReimageError {
    fn db(context: &'static str) -> impl Fn(DbError) -> ReimageError {
        move |e| ReimageError::Write {
            context,
            source: AuditWriteError::Db(e),
        }
    }
}

/// Where a re-image's release came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseChoice {
    /// The operator (or the playbook action) named it.
    Requested,
    /// The release the device's last passing quote proved.
    LastAttested,
}

impl ReleaseChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseChoice::Requested => "requested",
            ReleaseChoice::LastAttested => "last_attested",
        }
    }
}

/// A re-image to assign.
#[derive(Debug, Clone)]
pub struct ReimageRequest<'a> {
    pub device_id: &'a str,
    /// The release (target path); `None`: the device's last attested-good release.
    pub release: Option<&'a str>,
    /// Who asks (`token:NAME`, or [`ACTOR`]).
    pub actor: &'a str,
    /// The assignment's id (the executor derives it from the action).
    pub assignment_id: String,
    /// The incident it remedies, for the audit record.
    pub incident: Option<&'a str>,
}

/// Assigns a re-image to one device (see the module documentation), with its audit record in
/// the same transaction. An assignment of the same id that exists already is returned as it is
/// (the re-run of an action). Returns the assignment and where its release came from.
pub async fn reimage_device(
    db: &Db,
    audit: &AuditWriter,
    repo: Option<&Arc<HostedRepo>>,
    request: &ReimageRequest<'_>,
) -> Result<(Assignment, ReleaseChoice), ReimageError> {
    let device = db
        .device(request.device_id)
        .await
        .map_err(ReimageError::db("reading the device"))?
        .ok_or_else(|| ReimageError::UnknownDevice(request.device_id.to_owned()))?;
    if device.revoked {
        return Err(ReimageError::Revoked(device.id));
    }
    let (target, choice) = match request.release {
        Some(release) => (release.to_owned(), ReleaseChoice::Requested),
        None => {
            let state = db
                .attestation_state(&device.id)
                .await
                .map_err(ReimageError::db("reading the device's attestation"))?;
            // A failed quote keeps the release the last passing one proved.
            match state.filter(|s| s.verified_at.is_some() && !s.release.is_empty()) {
                Some(s) => (s.release, ReleaseChoice::LastAttested),
                None => return Err(ReimageError::NoKnownGoodRelease(device.id)),
            }
        }
    };
    if let Some(existing) = db
        .assignment(&request.assignment_id)
        .await
        .map_err(ReimageError::db("reading assignments"))?
    {
        return Ok((existing, choice));
    }
    let repo = repo.ok_or(ReimageError::NoRepository)?.clone();
    let path = target.clone();
    let file = tokio::task::spawn_blocking(move || repo.target(&path, unix_now()))
        .await
        .map_err(|e| ReimageError::Repository(e.to_string()))?
        .map_err(|e| ReimageError::Repository(e.to_string()))?
        .ok_or_else(|| ReimageError::UnknownRelease(target.clone()))?;
    let info = Release::new(&target, &file)
        .release
        .ok_or_else(|| ReimageError::UnknownRelease(target.clone()))?;
    let hardware = device.facts.hardware_id.clone();
    if !hardware.is_empty() && !info.hardware_ids.contains(&hardware) {
        return Err(ReimageError::IncompatibleHardware {
            target,
            built_for: info.hardware_ids,
            device: device.id,
            hardware,
        });
    }
    if info.security_version < device.facts.security_version {
        return Err(ReimageError::BelowFloor {
            target,
            release: info.security_version,
            device: device.id,
            floor: device.facts.security_version,
        });
    }
    let now = unix_now();
    let assignment = Assignment {
        id: request.assignment_id.clone(),
        target: target.clone(),
        selector: json!({"devices": [device.id]}),
        created: now,
        created_by: request.actor.to_owned(),
        device_count: 1,
        update_type: "forced".into(),
        forced_at: 0,
        reimage: true,
    };
    let ids = vec![device.id.clone()];
    audit
        .write(
            now,
            request.actor,
            "assignment.reimage",
            &assignment.id,
            json!({"device": device.id, "target": target, "version": info.version,
                   "security_version": info.security_version, "release_chosen": choice.as_str(),
                   "incident": request.incident.unwrap_or_default()}),
            |line| {
                let (db, assignment, ids) = (db.clone(), assignment.clone(), ids.clone());
                async move { db.create_assignment(&assignment, &ids, &line).await }
            },
        )
        .await
        .map_err(|source| ReimageError::Write {
            context: "storing the re-image assignment",
            source,
        })?;
    Ok((assignment, choice))
}

/// The executor of `reimage` actions: claims approved ones and assigns each re-image (the
/// action stays `running`), then finishes each when its device reports: `done` once it reports
/// `installed` (with the slots it re-imaged), `failed` when it rolled the release back or
/// refused its metadata, when another assignment replaced the re-image, or when the re-image
/// could not be assigned at all (no known-good release, unknown device...). Every finish has its
/// timeline entry and audit record.
pub struct Reimager {
    db: Db,
    audit: AuditWriter,
    repo: Option<Arc<HostedRepo>>,
}

/// How a running re-image stands.
enum Standing {
    /// The device has not reported a result yet.
    Waiting,
    Finished {
        succeeded: bool,
        outcome: Value,
    },
}

impl Reimager {
    pub fn new(db: Db, audit: AuditWriter, repo: Option<Arc<HostedRepo>>) -> Reimager {
        Reimager { db, audit, repo }
    }

    /// Runs until `shutdown` turns true, a pass every [`CLAIM_INTERVAL`].
    pub(crate) async fn run(
        self,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
        let mut tick = tokio::time::interval(CLAIM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            heart.beat(crate::helpers::unix_now());
            if let Err(e) = self.pass().await {
                crate::observe::log::error(
                    "the re-image executor could not read its actions (they stay as they are and are taken up at the next pass)",
                    json!({"error": e.to_string()}),
                );
            }
        }
    }

    /// Assigns the approved `reimage` actions' re-images, then finishes those whose devices
    /// reported; how many actions it finished.
    pub async fn pass(&self) -> Result<usize, DbError> {
        let mut finished = 0;
        loop {
            let actions = self
                .db
                .claim_incident_actions("reimage", CLAIM_BATCH)
                .await?;
            let claimed = actions.len();
            for action in actions {
                if let Standing::Finished { succeeded, outcome } = self.assign(&action).await
                    && self.finish(&action, succeeded, outcome).await
                {
                    finished += 1;
                }
            }
            if claimed < CLAIM_BATCH as usize {
                break;
            }
        }
        for action in self
            .db
            .running_incident_actions("reimage", MAX_ACTION_CLAIM)
            .await?
        {
            if let Standing::Finished { succeeded, outcome } = self.standing(&action).await?
                && self.finish(&action, succeeded, outcome).await
            {
                finished += 1;
            }
        }
        Ok(finished)
    }

    /// The assignment of an action's re-image: named after the action, so assigning twice
    /// finds the first.
    fn assignment_id(action: &IncidentAction) -> String {
        format!("rei-{}", action.id)
    }

    /// Assigns the action's re-image; `Finished` (failed) when it cannot be assigned.
    async fn assign(&self, action: &IncidentAction) -> Standing {
        let failed = |why: String| Standing::Finished {
            succeeded: false,
            outcome: outcome_of(action, [("error", why.into())]),
        };
        if action.device_id.is_empty() {
            return failed("the action names no device; a re-image is for one device".into());
        }
        let request = ReimageRequest {
            device_id: &action.device_id,
            release: action.detail.get("release").and_then(Value::as_str),
            actor: ACTOR,
            assignment_id: Self::assignment_id(action),
            incident: Some(&action.incident_id),
        };
        match reimage_device(&self.db, &self.audit, self.repo.as_ref(), &request).await {
            Ok(_) => Standing::Waiting,
            Err(e) => failed(e.to_string()),
        }
    }

    /// Where a running re-image stands, from its device's reports.
    async fn standing(&self, action: &IncidentAction) -> Result<Standing, DbError> {
        let id = Self::assignment_id(action);
        let Some(assignment) = self.db.assignment(&id).await? else {
            // Claimed, but the server stopped before it was assigned: assign it now.
            return Ok(self.assign(action).await);
        };
        let result = self.db.last_result_for(&action.device_id, &id).await?;
        let base = [
            ("assignment", Value::from(id.clone())),
            ("release", assignment.target.clone().into()),
        ];
        let finished = |succeeded: bool, extra: Vec<(&'static str, Value)>| Standing::Finished {
            succeeded,
            outcome: outcome_of(action, base.clone().into_iter().chain(extra)),
        };
        match result {
            Some(r) if r.status == "installed" => Ok(finished(
                true,
                vec![
                    // Both slots from the native agent; a DDI client writes one.
                    ("reimaged", r.details.get("reimaged").cloned().unwrap_or_default()),
                    ("sha256", r.details.get("sha256").cloned().unwrap_or_default()),
                ],
            )),
            Some(r) if matches!(r.status.as_str(), "rolled_back" | "verification_failed") => {
                Ok(finished(
                    false,
                    vec![
                        (
                            "error",
                            format!(
                                "the device reported {} for the re-image; it does not run the release",
                                r.status
                            )
                            .into(),
                        ),
                        ("report", r.details),
                    ],
                ))
            }
            _ => {
                let current = self.db.device_assignment(&action.device_id).await?;
                match current.filter(|c| c.assignment_id != id) {
                    Some(other) => Ok(finished(
                        false,
                        vec![(
                            "error",
                            format!(
                                "assignment {:?} replaced the re-image before the device finished it",
                                other.assignment_id
                            )
                            .into(),
                        )],
                    )),
                    None => Ok(Standing::Waiting),
                }
            }
        }
    }

    /// Finishes an action with its timeline entry and audit record; whether it was finished
    /// (a failure to record is logged, and the next pass tries again).
    async fn finish(&self, action: &IncidentAction, succeeded: bool, outcome: Value) -> bool {
        let kind = if succeeded {
            "reimage_done"
        } else {
            "reimage_failed"
        };
        let now = unix_now();
        let written = self
            .audit
            .write(
                now,
                ACTOR,
                "incident.action_finished",
                &action.id,
                json!({"incident": action.incident_id, "action": "reimage", "device": action.device_id,
                       "succeeded": succeeded, "outcome": outcome}),
                |line| {
                    let db = self.db.clone();
                    let entry = TimelineEntry {
                        audit_seq: line.seq,
                        incident_id: action.incident_id.clone(),
                        at: now,
                        kind: kind.into(),
                        actor: ACTOR.into(),
                        device_id: action.device_id.clone(),
                        detail: outcome.clone(),
                    };
                    let (id, outcome) = (action.id.clone(), outcome.clone());
                    async move {
                        db.finish_incident_action(&id, succeeded, &outcome, &entry, &line)
                            .await
                    }
                },
            )
            .await;
        match written {
            Ok(()) => true,
            Err(e) => {
                crate::observe::log::error(
                    "a re-image action could not be finished (the next pass tries again)",
                    json!({"action": action.id, "error": e.to_string()}),
                );
                false
            }
        }
    }
}

/// An action's outcome: its parameters (kept, as `finish_incident_action` wants) and `extra`.
fn outcome_of(
    action: &IncidentAction,
    extra: impl IntoIterator<Item = (&'static str, Value)>,
) -> Value {
    let mut outcome = match &action.detail {
        Value::Object(m) => m.clone(),
        _ => serde_json::Map::new(),
    };
    for (k, v) in extra {
        outcome.insert(k.into(), v);
    }
    Value::Object(outcome)
}
