//! Where a stored device report goes, whichever front door took it (native or DDI): the
//! campaign engine (gates) and the webhook dispatcher's rollback-spike detector.

use std::sync::Arc;

use rampart_db::Report;

/// Who else learns of a stored report.
pub(crate) struct ReportSinks {
    /// Reports about a campaign's assignment count toward its gates.
    pub(crate) campaigns: Arc<super::campaigns::Campaigns>,
    /// Alerts: failed verifications and rollback spikes.
    pub(crate) hooks: super::webhooks::Webhooks,
}

impl ReportSinks {
    /// Tells campaigns (gates) and the rollback-spike detector about a stored report.
    pub(crate) async fn deliver(&self, report: &Report, now: i64) {
        self.campaigns
            .on_report(
                &report.device_id,
                &report.assignment,
                &report.status,
                &report.details,
            )
            .await;
        self.hooks
            .observe_report(&report.status, &report.device_id, now);
    }
}
