//! The hawkBit Direct Device Integration (DDI) API v1, so existing SWUpdate, RAUC
//! (rauc-hawkbit-updater) and other hawkBit clients update from Rampart unchanged.
//!
//! ```text
//! GET  /{tenant}/controller/v1/{id}                                    poll
//! GET  /{tenant}/controller/v1/{id}/deploymentBase/{action}           the deployment
//! POST /{tenant}/controller/v1/{id}/deploymentBase/{action}/feedback  progress and result
//! GET  /{tenant}/controller/v1/{id}/cancelAction/{action}             a withdrawal
//! POST /{tenant}/controller/v1/{id}/cancelAction/{action}/feedback    its confirmation
//! PUT  /{tenant}/controller/v1/{id}/configData                        attributes
//! GET  /{tenant}/controller/v1/{id}/installedBase/{action}            the installed deployment
//! GET  /{tenant}/controller/v1/{id}/softwaremodules/{m}/artifacts     a module's files
//! GET|HEAD .../softwaremodules/{m}/artifacts/{file}[.MD5SUM]          download (Range)
//! ```
//!
//! It is a front on the same inventory, assignments, campaigns and audit log as the native
//! device API: a DDI action is one device's view of its current assignment (plain or
//! campaign), opened when the device polls; DDI feedback is stored as native reports, so it
//! counts toward campaign gates exactly as native reports do. Artifacts are the image
//! repository's targets (any file: a `.swu`, a RAUC bundle), served only after their SHA-256
//! matched the signed TUF metadata; their SHA-1 and MD5, which DDI clients check, are computed
//! from the same bytes once. The protocol rules are pure (`rampart_ddi`); this module does the
//! I/O. Authentication per tenant: `TargetToken`, `GatewayToken`, client certificate.

mod actions;
mod auth;
mod checks;
mod errors;
mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use rampart_db::Db;

use crate::delivery::artifact_store::ArtifactStore;
use crate::delivery::image_repo::HostedRepo;
use crate::engines::last_seen::LastSeen;
use crate::engines::report_sinks::ReportSinks;
use crate::listen::auth_failures::AuthFailures;
use crate::listen::http::BodyLimits;
use crate::observe::metrics::Metrics;
use crate::state::Shared;

pub(crate) use routes::router;

/// `actionHistory` returns at most this many messages.
const MAX_HISTORY: usize = 100;
/// A feedback's native report carries at most this many of its messages, each cut to
/// [`REPORT_MESSAGE_CHARS`] (reports are bounded at 16 KiB of details).
const REPORT_MESSAGES: usize = 8;
const REPORT_MESSAGE_CHARS: usize = 256;

/// Shared state of the DDI front.
pub(crate) struct DdiApi {
    pub(crate) db: Db,
    pub(crate) audit: crate::observe::audit::AuditWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) last_seen: Arc<LastSeen>,
    pub(crate) poll_interval_secs: u64,
    pub(crate) body_limits: BodyLimits,
    pub(crate) repo: Option<Arc<HostedRepo>>,
    pub(crate) artifacts: Option<ArtifactStore>,
    pub(crate) sinks: ReportSinks,
    /// The listener's address, for links when a request has no usable `Host`.
    pub(crate) local_addr: SocketAddr,
    /// Computing a module's digests reads the whole artifact: once at a time.
    pub(crate) module_lock: Arc<tokio::sync::Mutex<()>>,
    /// Failed authentications per source (counted, audited, slowed down).
    pub(crate) auth_failures: Arc<AuthFailures>,
    /// Remote attestation, when enabled: under the fleet-wide policy, DDI devices (which do
    /// not attest) get no deployment.
    pub(crate) attestation: Option<Arc<crate::engines::attestation::Attestation>>,
    /// Notes a revoked device's use of the API (the revoked-credential detector's signal).
    pub(crate) revoked_use: Arc<crate::engines::detectors::RevokedUse>,
}

impl DdiApi {
    /// The DDI front's state: the shared handles, where artifacts are read from, the listener's
    /// address, and the failed-authentication throttle.
    pub(crate) fn new(
        shared: &Shared,
        artifacts: Option<ArtifactStore>,
        local_addr: SocketAddr,
        auth_failures: Arc<AuthFailures>,
    ) -> Self {
        DdiApi {
            db: shared.db.clone(),
            audit: shared.audit.clone(),
            metrics: shared.metrics.clone(),
            last_seen: shared.last_seen.clone(),
            poll_interval_secs: shared.poll_interval_secs,
            body_limits: shared.body_limits,
            repo: shared.image_repo.clone(),
            artifacts,
            sinks: shared.report_sinks(),
            local_addr,
            module_lock: Arc::new(tokio::sync::Mutex::new(())),
            auth_failures,
            attestation: shared.attestation.clone(),
            revoked_use: shared.revoked_use.clone(),
        }
    }

    /// Whether the fleet-wide attestation policy lets the device have a deployment now.
    pub(crate) async fn attestation_allows(
        &self,
        device_id: &str,
        now: i64,
    ) -> Result<bool, errors::DdiError> {
        match &self.attestation {
            None => Ok(true),
            Some(a) => a
                .allows_updates(device_id, now)
                .await
                .map_err(|e| errors::DdiError::db("reading a device's attestation", e)),
        }
    }

    /// The device's quarantine, if it is quarantined (one primary-key read).
    pub(crate) async fn quarantine(
        &self,
        device_id: &str,
    ) -> Result<Option<rampart_db::Quarantine>, errors::DdiError> {
        self.db
            .quarantine(device_id)
            .await
            .map_err(|e| errors::DdiError::db("reading a device's quarantine", e))
    }

    /// 403 `rampart.quarantined` for a quarantined device: no deployment, artifact or
    /// configData (decision 0031).
    pub(crate) async fn require_not_quarantined(
        &self,
        device_id: &str,
    ) -> Result<(), errors::DdiError> {
        match self.quarantine(device_id).await? {
            None => Ok(()),
            Some(q) => Err(errors::DdiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "rampart.quarantined",
                crate::engines::quarantine::refusal(device_id, &q),
            )),
        }
    }

    /// 403 for a device the fleet-wide attestation policy keeps from deployments.
    pub(crate) async fn require_attested(
        &self,
        device_id: &str,
        now: i64,
    ) -> Result<(), errors::DdiError> {
        if self.attestation_allows(device_id, now).await? {
            return Ok(());
        }
        Err(errors::DdiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "rampart.attestation_required",
            format!(
                "this server gives updates only to devices with a fresh passing remote attestation (--require-attestation), and device {device_id:?} has none; hawkBit clients cannot attest: update it through the native device API with a TPM"
            ),
        ))
    }
}
