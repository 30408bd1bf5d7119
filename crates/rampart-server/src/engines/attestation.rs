//! Remote attestation on the server's side, with no HTTP (docs/decisions/0027): each device's
//! attestation as the front doors and the policy see it, recording outcomes (with their audit
//! record, security event and metrics), and the staleness sweep.
//!
//! Fail closed by construction: "attested" is computed whenever it is read, from the last
//! outcome and its verification time ([`rampart_db::AttestationState::attested`]). The sweep
//! here only audits and counts; if it dies or stalls, devices still go stale on time, and
//! nothing can keep one attested (CVE-2022-3500). A refused quote is recorded as `failed`
//! before it is answered, never only logged (CVE-2023-3674).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rampart_db::{AttestationState, CheckOutcome, CheckResult, Db, DbError, SecurityEvent};
use rampart_protocol::AttestationOutcome;
use serde_json::{Value, json};

use crate::observe::audit::{AuditWriteError, AuditWriter};
use crate::observe::labels::AttestationCheck;
use crate::observe::metrics::Metrics;

/// Default freshness window: a passing quote keeps a device attested this long.
pub const DEFAULT_FRESHNESS: Duration = Duration::from_secs(3600);
/// Default lifetime of a quote nonce.
pub const DEFAULT_NONCE_LIFETIME: Duration = Duration::from_secs(900);
/// Default PCR the agent measures the booted image and its release claim into.
pub const DEFAULT_AGENT_PCR: u8 = 13;
/// Default interval of the staleness sweep.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(30);
/// Stale devices audited per sweep at most (the rest in the next sweeps).
const SWEEP_BATCH: i64 = 1_000;

/// Attestation settings of a server (`rampart server --attestation ...`).
#[derive(Debug, Clone)]
pub struct AttestationConfig {
    /// How long a passing quote keeps a device attested.
    pub freshness: Duration,
    /// How long a quote nonce stays valid.
    pub nonce_lifetime: Duration,
    /// The SHA-256 PCRs every quote must cover, as tpm2-tools writes a selection
    /// (`sha256:0,1,13`); always includes `agent_pcr`.
    pub required_pcrs: Vec<u8>,
    /// The PCR the agent measures into.
    pub agent_pcr: u8,
    /// Certificates (DER) of the EK roots: an EK certificate must chain to one of them.
    pub ek_roots: Vec<Vec<u8>>,
    /// Fleet-wide policy: no assignment, director metadata or artifact for a device without a
    /// fresh passing attestation.
    pub require: bool,
    /// How often the staleness engine sweeps.
    pub sweep_interval: Duration,
}

impl Default for AttestationConfig {
    fn default() -> Self {
        Self {
            freshness: DEFAULT_FRESHNESS,
            nonce_lifetime: DEFAULT_NONCE_LIFETIME,
            required_pcrs: vec![DEFAULT_AGENT_PCR],
            agent_pcr: DEFAULT_AGENT_PCR,
            ek_roots: Vec::new(),
            require: false,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }
}

impl AttestationConfig {
    /// Checks the settings; `Err` says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.freshness.as_secs() < 1 {
            return Err("the attestation freshness window must be at least 1 second".into());
        }
        if self.nonce_lifetime.as_secs() < 1 {
            return Err("the attestation nonce lifetime must be at least 1 second".into());
        }
        if self.sweep_interval.is_zero() {
            return Err("the attestation sweep interval must not be zero".into());
        }
        if let Some(pcr) = self
            .required_pcrs
            .iter()
            .chain([&self.agent_pcr])
            .find(|&&p| p > 23)
        {
            return Err(format!(
                "PCR {pcr} does not exist: a TPM 2.0 has PCRs 0 to 23"
            ));
        }
        if !self.required_pcrs.contains(&self.agent_pcr) {
            return Err(format!(
                "the required PCR selection must include the agent PCR {} (it holds the release measurement)",
                self.agent_pcr
            ));
        }
        Ok(())
    }

    /// The required selection as tpm2-tools writes it (`sha256:0,1,13`).
    pub fn selection_text(&self) -> String {
        let mut pcrs = self.required_pcrs.clone();
        pcrs.sort_unstable();
        pcrs.dedup();
        let list: Vec<String> = pcrs.iter().map(u8::to_string).collect();
        format!("sha256:{}", list.join(","))
    }

    pub(crate) fn freshness_secs(&self) -> i64 {
        i64::try_from(self.freshness.as_secs()).unwrap_or(i64::MAX)
    }
}

/// A device's attestation as operators and the policy see it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct AttestationView {
    pub(crate) outcome: AttestationOutcome,
    /// Why it is not attested, for a person ('' when attested).
    pub(crate) reason: String,
    /// Whether the device enrolled an attestation key.
    pub(crate) enrolled: bool,
    pub(crate) verified_at: Option<i64>,
    /// Until when the last pass keeps the device attested.
    pub(crate) fresh_until: Option<i64>,
    /// The release the last passing quote proved.
    pub(crate) release: String,
}

impl AttestationView {
    /// The view of a stored state at `now` (see the module documentation).
    pub(crate) fn of(
        state: Option<&AttestationState>,
        enrolled: bool,
        now: i64,
        freshness_secs: i64,
    ) -> AttestationView {
        let fresh_until = state
            .and_then(|s| s.verified_at)
            .map(|at| at.saturating_add(freshness_secs));
        let (outcome, reason) = match state {
            Some(s) if s.attested(now, freshness_secs) => {
                (AttestationOutcome::Attested, String::new())
            }
            Some(s) if s.outcome == CheckOutcome::Failed => {
                (AttestationOutcome::Failed, s.reason.clone())
            }
            Some(s) => (
                AttestationOutcome::Stale,
                format!(
                    "no passing quote since {}: the device has not answered the server's attestation request within the {freshness_secs} s freshness window; check that it polls and that its agent can reach its TPM",
                    s.verified_at.unwrap_or(s.checked_at)
                ),
            ),
            None if enrolled => (
                AttestationOutcome::Stale,
                "enrolled, but no quote received yet; the device sends one after its next poll"
                    .into(),
            ),
            None => (
                AttestationOutcome::Stale,
                "never attested: the device has not enrolled an attestation key; run its agent with a TPM (attestation enabled)"
                    .into(),
            ),
        };
        AttestationView {
            outcome,
            reason,
            enrolled,
            verified_at: state.and_then(|s| s.verified_at),
            fresh_until,
            release: state.map(|s| s.release.clone()).unwrap_or_default(),
        }
    }
}

/// Remote attestation's state and engine (shared by the front doors and the campaign engine).
pub(crate) struct Attestation {
    pub(crate) db: Db,
    pub(crate) audit: AuditWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: AttestationConfig,
}

impl Attestation {
    pub(crate) fn new(
        db: Db,
        audit: AuditWriter,
        metrics: Arc<Metrics>,
        config: AttestationConfig,
    ) -> Self {
        Self {
            db,
            audit,
            metrics,
            config,
        }
    }

    /// The device's attestation at `now`.
    pub(crate) async fn view(&self, device_id: &str, now: i64) -> Result<AttestationView, DbError> {
        let state = self.db.attestation_state(device_id).await?;
        let enrolled = self.db.attestation_key(device_id).await?.is_some();
        Ok(AttestationView::of(
            state.as_ref(),
            enrolled,
            now,
            self.config.freshness_secs(),
        ))
    }

    /// Whether the fleet-wide policy lets the device have updates at `now`: always without
    /// `require`, else only when it is attested (the DDI front's gate).
    pub(crate) async fn allows_updates(&self, device_id: &str, now: i64) -> Result<bool, DbError> {
        if !self.config.require {
            return Ok(true);
        }
        Ok(self
            .db
            .attestation_state(device_id)
            .await?
            .is_some_and(|s| s.attested(now, self.config.freshness_secs())))
    }

    /// Records a refused quote or enrolment step: the device's state (for a quote), an audit
    /// record and a security event, in one transaction, and the failure counter. Recorded
    /// before the device is answered: a refusal is never only logged.
    pub(crate) async fn record_failure(
        &self,
        device_id: &str,
        now: i64,
        check: AttestationCheck,
        reason: &str,
        quote: bool,
    ) -> Result<(), AuditWriteError> {
        Metrics::inc(&self.metrics.attestation.failures[check as usize]);
        let (action, kind) = if quote {
            ("device.attestation_failed", "attestation.failed")
        } else {
            (
                "device.attestation_enrolment_refused",
                "attestation.enrolment_refused",
            )
        };
        let details = json!({"check": check.as_str(), "reason": reason});
        let event = security_event(kind, device_id, details.clone(), now)?;
        let result = CheckResult::Failed {
            reason: reason.to_owned(),
        };
        self.audit
            .write(
                now,
                &format!("device:{device_id}"),
                action,
                device_id,
                details,
                |line| {
                    let (db, event, result) = (self.db.clone(), event.clone(), result.clone());
                    let device_id = device_id.to_owned();
                    async move {
                        if quote {
                            db.record_attestation(
                                &device_id,
                                now,
                                &result,
                                Some(&line),
                                Some(&event),
                            )
                            .await
                        } else {
                            db.insert_security_event(&event, &line).await
                        }
                    }
                },
            )
            .await
    }

    /// Records a passing quote (no audit record: passes are routine; failures and staleness
    /// are audited).
    pub(crate) async fn record_pass(
        &self,
        device_id: &str,
        now: i64,
        release: &str,
        counters: rampart_db::QuoteCounters,
    ) -> Result<(), DbError> {
        self.db
            .record_attestation(
                device_id,
                now,
                &CheckResult::Passed {
                    release: release.to_owned(),
                    counters,
                },
                None,
                None,
            )
            .await?;
        Metrics::inc(&self.metrics.attestation.quotes_passed);
        Ok(())
    }

    /// Audits each pass that went stale since the last sweep (once per pass, with a security
    /// event) and refreshes the gauges. Returns how many were noted.
    pub(crate) async fn sweep(&self, now: i64) -> Result<usize, AuditWriteError> {
        let freshness = self.config.freshness_secs();
        let mut noted = 0;
        for state in self
            .db
            .newly_stale_attestations(now, freshness, SWEEP_BATCH)
            .await?
        {
            let Some(verified_at) = state.verified_at else {
                continue;
            };
            let device_id = state.device_id.as_str();
            let details = json!({
                "verified_at": verified_at,
                "freshness_secs": freshness,
                "release": state.release,
                "reason": format!("no passing quote within {freshness} s of the last one"),
            });
            let event = security_event("attestation.stale", device_id, details.clone(), now)?;
            let newly = self
                .audit
                .write(
                    now,
                    "attestation-engine",
                    "device.attestation_stale",
                    device_id,
                    details,
                    |line| {
                        let (db, event) = (self.db.clone(), event.clone());
                        let device_id = device_id.to_owned();
                        async move {
                            db.note_stale_attestation(&device_id, verified_at, now, &line, &event)
                                .await
                        }
                    },
                )
                .await?;
            if newly {
                noted += 1;
                Metrics::inc(&self.metrics.attestation.stale_transitions);
            }
        }
        let (attested, failed, stale) = self.db.attestation_counts(now, freshness).await?;
        let gauges = &self.metrics.attestation;
        gauges
            .attested
            .store(attested.max(0) as u64, Ordering::Relaxed);
        gauges.failed.store(failed.max(0) as u64, Ordering::Relaxed);
        gauges.stale.store(stale.max(0) as u64, Ordering::Relaxed);
        gauges
            .last_sweep
            .store(now.max(0) as u64, Ordering::Relaxed);
        Ok(noted)
    }

    /// Sweeps every `sweep_interval` until shutdown.
    pub(crate) async fn run(
        self: Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
        heart: super::heartbeat::Heart,
    ) {
        let mut tick = tokio::time::interval(self.config.sweep_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.sweep(crate::helpers::unix_now()).await {
                crate::observe::log::error(
                    "attestation staleness sweep failed (devices still go stale on time; only the audit records wait)",
                    json!({"error": e.to_string()}),
                );
            }
            heart.beat(crate::helpers::unix_now());
        }
    }
}

/// A security event with a fresh id (also the detectors' signals, `engines::detectors`).
pub(crate) fn security_event(
    kind: &str,
    device_id: &str,
    detail: Value,
    now: i64,
) -> Result<SecurityEvent, AuditWriteError> {
    let id = crate::helpers::new_id("sec")
        .map_err(|e| AuditWriteError::Record(format!("no id for a security event: {e}")))?;
    Ok(SecurityEvent {
        id,
        kind: kind.to_owned(),
        device_id: device_id.to_owned(),
        detail,
        created: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(outcome: CheckOutcome, verified_at: Option<i64>) -> AttestationState {
        AttestationState {
            device_id: "d".into(),
            outcome,
            reason: "PCR 13: expected aa, found bb".into(),
            checked_at: 100,
            verified_at,
            release: "fw.img".into(),
            counters: None,
            stale_noted_at: None,
            quoted_boot_id: String::new(),
        }
    }

    #[test]
    fn a_pass_is_attested_only_inside_its_window_and_a_failure_never() {
        let pass = state(CheckOutcome::Passed, Some(100));
        assert_eq!(
            AttestationView::of(Some(&pass), true, 159, 60).outcome,
            AttestationOutcome::Attested
        );
        assert_eq!(
            AttestationView::of(Some(&pass), true, 160, 60).outcome,
            AttestationOutcome::Stale
        );
        let failed = state(CheckOutcome::Failed, Some(100));
        let view = AttestationView::of(Some(&failed), true, 101, 60);
        assert_eq!(view.outcome, AttestationOutcome::Failed);
        assert!(view.reason.contains("PCR 13"));
        assert_eq!(
            AttestationView::of(None, false, 0, 60).outcome,
            AttestationOutcome::Stale
        );
    }

    #[test]
    fn the_required_selection_must_hold_the_agent_pcr_and_real_pcrs() {
        let mut config = AttestationConfig::default();
        config.validate().unwrap();
        assert_eq!(config.selection_text(), "sha256:13");
        config.required_pcrs = vec![0, 1];
        assert!(config.validate().unwrap_err().contains("agent PCR 13"));
        config.required_pcrs = vec![13, 24];
        assert!(config.validate().unwrap_err().contains("PCR 24"));
    }
}
