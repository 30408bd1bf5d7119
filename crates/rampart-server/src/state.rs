//! The one set of handles the front doors share, built once by the server: the database pool,
//! the audit writer, the metrics, the last-seen batcher, the hosted repository, the campaign
//! engine, the webhook machinery, and the request limits. Each front door builds its own state
//! from it (adding what only it needs), so no door holds a handle the others do not see.

use std::sync::Arc;

use rampart_db::Db;

use crate::delivery::image_repo::HostedRepo;
use crate::delivery::instruction::InstructionSigner;
use crate::engines::attestation::Attestation;
use crate::engines::campaigns::Campaigns;
use crate::engines::incidents::IncidentStore;
use crate::engines::last_seen::LastSeen;
use crate::engines::report_sinks::ReportSinks;
use crate::engines::webhooks::Webhooks;
use crate::listen::http::BodyLimits;
use crate::observe::audit::AuditWriter;
use crate::observe::metrics::Metrics;

/// The handles every front door is built from (cheap to clone).
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) db: Db,
    pub(crate) audit: AuditWriter,
    pub(crate) metrics: Arc<Metrics>,
    /// Devices' contact times, written in batches.
    pub(crate) last_seen: Arc<LastSeen>,
    /// The hosted image repository, if the server hosts one.
    pub(crate) image_repo: Option<Arc<HostedRepo>>,
    pub(crate) campaigns: Arc<Campaigns>,
    pub(crate) hooks: Webhooks,
    /// Request-body limits of every API.
    pub(crate) body_limits: BodyLimits,
    /// Poll interval told to devices, seconds.
    pub(crate) poll_interval_secs: u64,
    /// Remote attestation, when enabled.
    pub(crate) attestation: Option<Arc<Attestation>>,
    /// Forensic evidence, when the server keeps it.
    pub(crate) evidence: Option<Arc<crate::engines::evidence::Evidence>>,
    /// The incident store: detectors and operators record incidents through it.
    pub(crate) incidents: Arc<IncidentStore>,
    /// Notes revoked certificates and tokens presented to a front door (a detector's signal).
    pub(crate) revoked_use: Arc<crate::engines::detectors::RevokedUse>,
    /// Signs quarantine instructions with the director's key (none without a director: the
    /// server still enforces quarantine, devices just get no signed instruction).
    pub(crate) instructions: Option<Arc<InstructionSigner>>,
    /// The parsed advisory feed, kept until an import changes it (risk routes, risk watch).
    pub(crate) advisories: Arc<crate::engines::risk::AdvisoryCache>,
    /// The risk watch, woken by an import that changed the feed.
    pub(crate) risk_watch: Arc<crate::engines::risk_watch::RiskWatch>,
}

impl Shared {
    /// Where a stored device report goes: the campaign engine and the spike detector.
    pub(crate) fn report_sinks(&self) -> ReportSinks {
        ReportSinks {
            campaigns: self.campaigns.clone(),
            hooks: self.hooks.clone(),
        }
    }
}
