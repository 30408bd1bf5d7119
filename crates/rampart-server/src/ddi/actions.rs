//! A device's DDI actions: its maintenance window, the action of its current assignment, the
//! deployment document, recording feedback as native reports, and the software module of a
//! release (digests computed once).

use rampart_db::DomainError;
use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use rampart_db::{Db, DbError, DdiAction, DdiFeedback, DdiModule, NewAction, Report};
use rampart_ddi::wire::{
    ActionHistory, Artifact as WireArtifact, Chunk, Deployment, DeploymentBase, Feedback, Hashes,
    Link, Links,
};
use rampart_ddi::{ActionState, ActionType, WindowState, deployment_modes};
use rampart_rollout::window::MaintenanceWindow;
use serde_json::json;

use crate::delivery::artifact_store::ArtifactStore;
use crate::delivery::image_repo::HostedRepo;
use crate::helpers::unix_now;
use crate::observe::metrics::Metrics;

use super::auth::*;
use super::errors::*;
use super::{DdiApi, MAX_HISTORY, REPORT_MESSAGE_CHARS, REPORT_MESSAGES};

/// Whether `action` is the device's current assignment and that assignment is a re-image.
pub(super) fn is_reimage(caller: &Caller, action: &DdiAction) -> bool {
    caller.state.assignment.as_ref().is_some_and(|a| {
        a.reimage
            && a.assignment_id == action.assignment_id
            && a.version == action.assignment_version
    })
}

impl DdiApi {
    /// The device's maintenance window now: none, open or closed (open if any of its groups'
    /// windows is open, as campaigns judge it).
    pub(super) async fn window(&self, device: &str, now: i64) -> Result<WindowState, DdiError> {
        let windows = self
            .db
            .device_windows(device)
            .await
            .map_err(|e| DdiError::db("reading maintenance windows", e))?;
        if windows.is_empty() {
            return Ok(WindowState::NoWindow);
        }
        let open = windows
            .iter()
            .any(|w| MaintenanceWindow::stored_is_open(w, now));
        Ok(if open {
            WindowState::Open
        } else {
            WindowState::Closed
        })
    }

    /// The maintenance window that applies to `action`: a re-image (the device's current
    /// assignment, with `reimage` set) is a forced action that no window defers; any other
    /// action has the device's window ([`DdiApi::window`]).
    pub(super) async fn action_window(
        &self,
        caller: &Caller,
        action: &DdiAction,
        now: i64,
    ) -> Result<WindowState, DdiError> {
        if is_reimage(caller, action) {
            return Ok(WindowState::NoWindow);
        }
        self.window(&caller.id, now).await
    }

    /// 403 for a quarantined device ([`DdiApi::require_not_quarantined`]), unless `action` is
    /// its re-image: a quarantined device is remedied by re-imaging it (decision 0032).
    pub(super) async fn require_not_quarantined_unless_reimage(
        &self,
        caller: &Caller,
        action: &DdiAction,
    ) -> Result<(), DdiError> {
        if is_reimage(caller, action) {
            return Ok(());
        }
        self.require_not_quarantined(&caller.id).await
    }

    /// Brings the device's actions in line with its assignment: an open action whose
    /// assignment was withdrawn or replaced is being cancelled; a current assignment without
    /// an action gets one (unless it already ran to an end, or that release is installed).
    /// Returns the active action.
    /// `active` and `installed` are the device's current actions ([`rampart_db::Db::ddi_actions_now`]).
    pub(super) async fn sync_action(
        &self,
        caller: &Caller,
        active: Option<DdiAction>,
        installed: Option<&DdiAction>,
        now: i64,
    ) -> Result<Option<DdiAction>, DdiError> {
        let db_err = |e| DdiError::db("reading DDI actions", e);
        let assignment = caller
            .state
            .assignment
            .clone()
            .filter(|a| !a.target.is_empty());
        if let Some(mut action) = active {
            let current = assignment.as_ref().is_some_and(|a| {
                a.assignment_id == action.assignment_id && a.version == action.assignment_version
            });
            // A device that refused the cancellation finishes the action first (hawkBit's
            // CANCEL_REJECTED); the next poll then offers what is assigned now.
            if !current && action.state == ActionState::Open.as_str() && !action.cancel_rejected {
                let cancelled = self
                    .db
                    .cancel_ddi_action(action.id)
                    .await
                    .map_err(|e| DdiError::db("cancelling a DDI action", e))?;
                if cancelled {
                    action.state = ActionState::Canceling.as_str().into();
                } else {
                    // Closed by feedback meanwhile.
                    return Ok(self
                        .db
                        .ddi_action(action.id)
                        .await
                        .map_err(db_err)?
                        .filter(|a| {
                            ActionState::parse(&a.state).is_some_and(ActionState::is_active)
                        }));
                }
            }
            return Ok(Some(action));
        }
        let Some(a) = assignment else {
            return Ok(None);
        };
        if let Some(existing) = self
            .db
            .ddi_action_for(&caller.id, &a.assignment_id, a.version)
            .await
            .map_err(db_err)?
        {
            // Ran to its end already (nothing more to offer), or a concurrent poll opened it
            // a moment ago (offer that one).
            let active = ActionState::parse(&existing.state).is_some_and(ActionState::is_active);
            return Ok(active.then_some(existing));
        }
        // A re-image is offered even over the release the device reports installed: that
        // image is what is suspect.
        if !a.reimage && installed.is_some_and(|i| i.target == a.target) {
            return Ok(None);
        }
        let module = match self.module(&a.target, now).await {
            Ok(m) => m,
            Err(e) => {
                // The poll still answers (the device keeps its schedule); the operator sees why.
                crate::observe::log::error(
                    "a DDI device's assigned release cannot be offered",
                    json!({"device": caller.id, "target": a.target, "error": e.message}),
                );
                return Ok(None);
            }
        };
        let action = self
            .db
            .open_ddi_action(&NewAction {
                device_id: &caller.id,
                assignment_id: &a.assignment_id,
                assignment_version: a.version,
                target: &a.target,
                module_id: module.id,
                update_type: &a.update_type,
                forced_at: a.forced_at,
                now,
            })
            .await
            .map_err(|e| DdiError::db("opening a DDI action", e))?;
        Ok(Some(action))
    }

    /// The release `target` as a software module: its digests are computed from the stored
    /// artifact once, after its SHA-256 and length matched the signed metadata.
    pub(super) async fn module(&self, target: &str, now: i64) -> Result<DdiModule, DdiError> {
        if let Some(m) = self
            .db
            .ddi_module_by_target(target)
            .await
            .map_err(|e| DdiError::db("reading a DDI module", e))?
        {
            return Ok(m);
        }
        let (repo, store) = self.repo_and_store()?;
        // Its own task: reading a large artifact from a slow store may outlast this request
        // (a client that gives up), and the work must then still finish for the next poll.
        let work = tokio::spawn(describe_module(
            self.db.clone(),
            self.module_lock.clone(),
            repo,
            store,
            target.to_owned(),
            now,
        ));
        work.await
            .map_err(|e| DdiError::unavailable("describing a DDI module", e))?
    }

    pub(super) fn repo_and_store(&self) -> Result<(Arc<HostedRepo>, ArtifactStore), DdiError> {
        match (&self.repo, &self.artifacts) {
            (Some(repo), Some(store)) => Ok((repo.clone(), store.clone())),
            _ => Err(DdiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "rampart.no_image_repository",
                "this server hosts no image repository (`rampart server --repo DIR`)",
            )),
        }
    }

    /// `https://host[:port]/{tenant}/controller/v1/{id}` for links: the request's `Host` if it
    /// is a plain host name or address, else the listener's address.
    pub(super) fn base(&self, headers: &HeaderMap, tenant: &str, id: &str) -> String {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| self.local_addr.to_string());
        format!("https://{host}/{tenant}/controller/v1/{}", utf8_percent(id))
    }

    /// The action `id` of this device, or 404.
    pub(super) async fn own_action(&self, caller: &Caller, id: i64) -> Result<DdiAction, DdiError> {
        match self
            .db
            .ddi_action(id)
            .await
            .map_err(|e| DdiError::db("reading a DDI action", e))?
        {
            Some(a) if a.device_id == caller.id => Ok(a),
            Some(_) => Err(DdiError::not_found(format!(
                "Not a valid action ({id}) for target: {}",
                caller.id
            ))),
            None => Err(DdiError::not_found(format!(
                "Action with given identifier {id} does not exist."
            ))),
        }
    }

    /// The deployment document of `action`, with the device's `window` as read for this
    /// request.
    pub(super) async fn deployment_doc(
        &self,
        action: &DdiAction,
        window: WindowState,
        base: &str,
        history: Option<i64>,
        now: i64,
    ) -> Result<DeploymentBase, DdiError> {
        let module = self
            .db
            .ddi_module(action.module_id)
            .await
            .map_err(|e| DdiError::db("reading a DDI module", e))?
            .ok_or_else(|| DdiError::unavailable("a DDI action's module vanished", action.id))?;
        let ty = ActionType::from_stored(&action.update_type, action.forced_at);
        let modes = deployment_modes(ty, window, now);
        let action_history = match history {
            None | Some(0) => None,
            Some(n) => {
                let limit = if n < 0 {
                    MAX_HISTORY
                } else {
                    (n as usize).min(MAX_HISTORY)
                };
                let messages = self
                    .db
                    .ddi_action_messages(action.id, limit)
                    .await
                    .map_err(|e| DdiError::db("reading action messages", e))?;
                let state = ActionState::parse(&action.state).unwrap_or(ActionState::Open);
                (!messages.is_empty()).then(|| ActionHistory {
                    status: state.hawkbit_status().into(),
                    messages,
                })
            }
        };
        Ok(DeploymentBase {
            id: action.id.to_string(),
            deployment: Deployment {
                download: modes.download,
                update: modes.update,
                maintenance_window: modes.window,
                chunks: vec![Chunk {
                    part: "os".into(),
                    version: module.version.clone(),
                    name: module.target.clone(),
                    artifacts: vec![wire_artifact(base, &module)],
                    metadata: Vec::new(),
                }],
            },
            action_history,
        })
    }

    /// Stores one feedback and tells campaigns and alerts about its native report.
    pub(super) async fn record(
        &self,
        caller: &Caller,
        action: &DdiAction,
        feedback: &Feedback,
        new_state: ActionState,
        report_status: Option<&'static str>,
        note: Option<&'static str>,
    ) -> Answer {
        let messages = feedback.messages().map_err(|n| {
            DdiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "hawkbit.server.error.quota.tooManyEntries",
                format!(
                    "Quota exceeded: {n} messages in one feedback; the maximum is {}.",
                    rampart_ddi::wire::MAX_MESSAGES_PER_FEEDBACK
                ),
            )
        })?;
        let now = unix_now();
        let report = match report_status {
            None => None,
            Some(status) => {
                let id = crate::helpers::new_id("ddi")
                    .map_err(|_| DdiError::unavailable("making a report id", "no randomness"))?;
                // The full messages are in the action's history (`actionHistory`); the report
                // carries a bounded excerpt, so any accepted feedback fits a report.
                let excerpt: Vec<String> = messages
                    .iter()
                    .take(REPORT_MESSAGES)
                    .map(|m| m.chars().take(REPORT_MESSAGE_CHARS).collect())
                    .collect();
                let mut details = json!({
                    "ddi": {
                        "action": action.id,
                        "execution": feedback.status.execution.as_str(),
                        "finished": feedback.status.result.finished.as_str(),
                        "messages": excerpt,
                        "messages_total": messages.len(),
                    },
                    "target": action.target,
                });
                if status == "failed" {
                    details["reason"] = json!("install_failed");
                    details["detail"] = json!(excerpt.join("; "));
                }
                if let Some(note) = note {
                    details["note"] = json!(note);
                }
                Some(Report {
                    id,
                    device_id: caller.id.clone(),
                    assignment: action.assignment_id.clone(),
                    status: status.into(),
                    progress: 0,
                    details,
                    created: now,
                })
            }
        };
        self.db
            .record_ddi_feedback(&DdiFeedback {
                action_id: action.id,
                expected_state: &action.state,
                new_state: new_state.as_str(),
                execution: feedback.status.execution.as_str(),
                finished: feedback.status.result.finished.as_str(),
                messages: &messages,
                report: report.as_ref(),
                now,
            })
            .await
            .map_err(|e| match e {
                DbError::Domain(DomainError::Quota(m)) => DdiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "hawkbit.server.error.quota.tooManyEntries",
                    m,
                ),
                DbError::Domain(DomainError::Conflict(m)) => DdiError::new(
                    StatusCode::CONFLICT,
                    "hawkbit.server.error.repo.concurrentModification",
                    m,
                ),
                other => DdiError::db("storing DDI feedback", other),
            })?;
        if let Some(report) = report {
            if let Some(i) = rampart_protocol::ReportStatus::ALL
                .iter()
                .position(|s| s.as_str() == report.status)
            {
                Metrics::inc(&self.metrics.reports[i]);
            }
            self.sinks.deliver(&report, now).await;
        }
        Ok(ok_empty())
    }
}

/// Describes the release `target` as a software module: its digests are computed from the
/// stored artifact once (one release at a time), after its SHA-256 and length matched the
/// signed metadata.
pub(super) async fn describe_module(
    db: Db,
    lock: Arc<tokio::sync::Mutex<()>>,
    repo: Arc<HostedRepo>,
    store: ArtifactStore,
    target: String,
    now: i64,
) -> Result<DdiModule, DdiError> {
    let target = target.as_str();
    let _one_at_a_time = lock.lock().await;
    if let Some(m) = db
        .ddi_module_by_target(target)
        .await
        .map_err(|e| DdiError::db("reading a DDI module", e))?
    {
        return Ok(m);
    }
    let path = target.to_owned();
    let artifacts = tokio::task::spawn_blocking(move || repo.artifacts(&path, now))
        .await
        .map_err(|e| DdiError::unavailable("reading the image repository", e))?
        .map_err(|e| DdiError::unavailable("reading the image repository", e))?;
    let Some(artifact) = artifacts.into_iter().find(|a| {
        a.info.hashes.contains_key("sha256")
            && a.info.hashes["sha256"].eq_ignore_ascii_case(&a.hash)
    }) else {
        return Err(DdiError::not_found(format!(
            "the image repository has no target {target:?} with a SHA-256"
        )));
    };
    let length = artifact.info.length;
    let opened = store
        .open(&artifact.file, 0, length)
        .await
        .map_err(|e| DdiError::unavailable("reading an artifact", e))?
        .ok_or_else(|| {
            DdiError::unavailable(
                "an artifact is missing from the artifact store",
                store.location(&artifact.file),
            )
        })?;
    let mut stream = opened.stream;
    let mut sha1 = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    let mut sha256 = ring::digest::Context::new(&ring::digest::SHA256);
    let mut md5 = <md5::Md5 as md5::Digest>::new();
    let mut seen = 0u64;
    use futures_util::StreamExt as _;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| DdiError::unavailable("reading an artifact", e))?;
        seen += chunk.len() as u64;
        if seen > length {
            break;
        }
        sha1.update(&chunk);
        sha256.update(&chunk);
        md5::Digest::update(&mut md5, &chunk);
    }
    let sha256 = hex::encode(sha256.finish());
    if seen != length || !sha256.eq_ignore_ascii_case(&artifact.hash) {
        return Err(DdiError::unavailable(
            "a stored artifact does not match its signed metadata",
            format!(
                "{}: {seen} bytes with SHA-256 {sha256}, the metadata says {length} bytes with {}",
                store.location(&artifact.file),
                artifact.hash
            ),
        ));
    }
    let version = rampart_core::release::ReleaseInfo::from_custom(artifact.info.custom.as_ref())
        .map(|r| r.version)
        .unwrap_or_default();
    let filename = target.rsplit('/').next().unwrap_or(target).to_owned();
    let module = DdiModule {
        id: 0,
        target: target.to_owned(),
        filename,
        version,
        size: length as i64,
        sha1: hex::encode(sha1.finish()),
        md5: hex::encode(md5::Digest::finalize(md5)),
        sha256,
    };
    db.insert_ddi_module(&module, now)
        .await
        .map_err(|e| DdiError::db("storing a DDI module", e))
}

/// A module's artifact as DDI describes it: digests, size, and its download and MD5SUM links
/// (the `-http` variants name the same HTTPS URL: clients fall back to them).
pub(super) fn wire_artifact(base: &str, module: &DdiModule) -> WireArtifact {
    let file = format!(
        "{base}/softwaremodules/{}/artifacts/{}",
        module.id,
        utf8_percent(&module.filename)
    );
    let mut links = Links::new();
    links.insert("download".into(), Link::new(file.clone()));
    links.insert("download-http".into(), Link::new(file.clone()));
    links.insert("md5sum".into(), Link::new(format!("{file}.MD5SUM")));
    links.insert("md5sum-http".into(), Link::new(format!("{file}.MD5SUM")));
    WireArtifact {
        filename: module.filename.clone(),
        hashes: Hashes {
            sha1: module.sha1.clone(),
            md5: module.md5.clone(),
            sha256: module.sha256.clone(),
        },
        size: module.size.max(0) as u64,
        links,
    }
}

/// Percent-encodes what a URL path segment cannot hold as is.
pub(super) fn utf8_percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_percent_encoded_in_links() {
        assert_eq!(utf8_percent("fw-1.0_a~b.swu"), "fw-1.0_a~b.swu");
        assert_eq!(utf8_percent("fw 1+2/é.swu"), "fw%201%2B2%2F%C3%A9.swu");
    }

    #[test]
    fn artifacts_link_their_download_and_md5sum() {
        let module = DdiModule {
            id: 42,
            target: "fw/1.0.swu".into(),
            filename: "fw 1.0.swu".into(),
            version: "1.0".into(),
            size: -1,
            sha1: "s1".into(),
            md5: "m5".into(),
            sha256: "s256".into(),
        };
        let a = wire_artifact("https://h/T/controller/v1/dev", &module);
        let file = "https://h/T/controller/v1/dev/softwaremodules/42/artifacts/fw%201.0.swu";
        assert_eq!(a.links["download"].href, file);
        assert_eq!(a.links["download-http"].href, file);
        assert_eq!(a.links["md5sum"].href, format!("{file}.MD5SUM"));
        assert_eq!(a.filename, "fw 1.0.swu");
        assert_eq!(
            (a.hashes.sha1.as_str(), a.hashes.md5.as_str()),
            ("s1", "m5")
        );
        // A size that is not a size is never sent negative.
        assert_eq!(a.size, 0);
    }
}
