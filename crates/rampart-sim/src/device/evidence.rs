//! The daemon's evidence pass on a virtual device (`rampart_agent::daemon::evidence_pass`): the
//! agent's own collection, signing and resumable upload ([`rampart_agent::evidence::answer`])
//! with the device's own key, its agent log in its state directory, and the bundles waiting
//! for upload kept with the device (they survive its power cuts, as the state directory's
//! files do).

use rampart_agent::agent_log::AgentLog;
use rampart_agent::evidence::{DeviceKey, EvidenceError, Pending, PendingStore, Retry, answer};
use rampart_protocol::EvidenceRequest;

use super::{Shared, VirtualDevice};
use crate::link::Session;
use crate::stats::Counters;

/// What a virtual device keeps for evidence.
#[derive(Default)]
pub(crate) struct DeviceEvidence {
    /// Opened on the first evidence request (most devices never get one).
    log: Option<AgentLog>,
    kept: KeptBundles,
}

/// Bundles collected and not yet uploaded.
#[derive(Default)]
struct KeptBundles(Vec<Pending>);

impl PendingStore for KeptBundles {
    fn pending(&self) -> Result<Vec<Pending>, EvidenceError> {
        Ok(self.0.clone())
    }
    fn keep(&mut self, pending: &Pending) -> Result<(), EvidenceError> {
        self.0.push(pending.clone());
        Ok(())
    }
    fn drop_uploaded(&mut self, id: &str) -> Result<(), EvidenceError> {
        self.0.retain(|p| p.request.id != id);
        Ok(())
    }
}

/// A virtual device does not wait between upload retries (its pass holds a worker); what does
/// not go through stays kept for its next pass.
const SIM_RETRY: Retry = Retry {
    attempts: 2,
    base: std::time::Duration::ZERO,
    max: std::time::Duration::ZERO,
};

impl VirtualDevice {
    /// Answers the poll's evidence request, if any, and uploads what is kept.
    pub(super) fn answer_evidence(
        &mut self,
        sh: &Shared,
        session: &dyn Session,
        request: Option<EvidenceRequest>,
    ) {
        if request.is_none() && self.evidence.kept.0.is_empty() {
            return;
        }
        let Some(server) = session.evidence() else {
            Counters::inc(&sh.counters.evidence_failures);
            self.note(
                sh,
                "the server asks for evidence over a link that takes none".into(),
            );
            return;
        };
        let identity = &self.profile.identity;
        let key =
            match DeviceKey::from_pem(identity.cert_pem.as_bytes(), identity.key_pem.as_bytes()) {
                Ok(k) => k,
                Err(e) => {
                    Counters::inc(&sh.counters.evidence_failures);
                    self.note(sh, format!("evidence: the device key: {e}"));
                    return;
                }
            };
        let log = match &mut self.evidence.log {
            Some(log) => log,
            None => match AgentLog::open(&self.profile.state_dir, &self.agent.config.evidence) {
                Ok(log) => self.evidence.log.insert(log),
                Err(e) => {
                    Counters::inc(&sh.counters.evidence_failures);
                    self.note(sh, format!("evidence: {e}"));
                    return;
                }
            },
        };
        let id = identity.id.clone();
        let done = answer(
            &mut self.agent,
            log,
            &key,
            &id,
            &mut self.evidence.kept,
            server,
            request.as_ref(),
            SIM_RETRY,
            rampart_agent::daemon::now_unix(),
        );
        Counters::add(&sh.counters.evidence_collected, done.collected.len() as u64);
        Counters::add(&sh.counters.evidence_uploaded, done.uploaded.len() as u64);
        Counters::add(&sh.counters.evidence_failures, done.failed.len() as u64);
        if let Some(last) = done.failed.last() {
            self.note(sh, last.clone());
        }
    }
}
