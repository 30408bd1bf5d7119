//! The verifier: AK enrolment (an EK an operator approved or certified by the EK roots, then
//! MakeCredential to the device's EK and AK name, then the secret
//! back) and quote verification (nonce, quote, counters, event log, golden measurements from
//! the signed release the inventory says the device runs), with [`rampart_attest`]'s pure
//! checks. Every refusal is recorded by [`Attestation::record_failure`] before it is answered.

use std::collections::BTreeMap;
use std::sync::Arc;

use rampart_attest::eventlog::EventLog;
use rampart_attest::measure::{GoldenMeasurements, check_measurements};
use rampart_attest::pcr::{PcrSelection, PcrValues};
use rampart_attest::quote::{AttestationKey as QuoteKey, check_counters, verify_quote};
use rampart_attest::wire::{ClockInfo, HashAlg, Public};
use rampart_db::{
    AttestationKey, DbError, DeviceFacts, EkBasis, NonceClaim, PendingEnrolment, QuoteCounters,
};
use rampart_protocol::{AttestationAnswer, AttestationOutcome};
use serde_json::json;

use super::attestation::Attestation;
use crate::delivery::image_repo::HostedRepo;
use crate::observe::audit::AuditWriteError;
use crate::observe::labels::AttestationCheck;
use crate::observe::metrics::Metrics;

/// How long a device has to answer an enrolment challenge, seconds.
pub(crate) const ENROLMENT_CHALLENGE_SECS: i64 = 300;
/// Most golden firmware PCR values a release may pin.
const MAX_FIRMWARE_PCRS: usize = 24;

/// A quote as the device sent it, decoded from base64.
pub(crate) struct QuoteEvidence {
    pub(crate) nonce: Vec<u8>,
    pub(crate) nonce_hex: String,
    pub(crate) message: Vec<u8>,
    pub(crate) signature: Vec<u8>,
    pub(crate) pcrs: Vec<u8>,
    pub(crate) event_log: Vec<u8>,
    /// The firmware's log (the kernel's `binary_bios_measurements`), when the device sent it.
    pub(crate) firmware_event_log: Option<Vec<u8>>,
}

/// Why an attestation step was refused or could not be done.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The device must do something first (enrol); nothing was recorded.
    #[error("{0}")]
    NotEnrolled(String),
    /// Refused and recorded (audit, security event, metrics): the reason for the device.
    #[error("{reason}")]
    Refused {
        check: AttestationCheck,
        reason: String,
    },
    #[error(transparent)]
    Storage(#[from] AuditWriteError),
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        Refusal::Storage(AuditWriteError::Db(e))
    }
}

/// An enrolment challenge for the device.
pub(crate) struct Challenge {
    pub(crate) challenge_id: String,
    pub(crate) credential_blob: Vec<u8>,
    pub(crate) encrypted_secret: Vec<u8>,
}

impl Attestation {
    async fn refuse(
        &self,
        device_id: &str,
        now: i64,
        check: AttestationCheck,
        reason: String,
        quote: bool,
    ) -> Refusal {
        match self
            .record_failure(device_id, now, check, &reason, quote)
            .await
        {
            Ok(()) => Refusal::Refused { check, reason },
            Err(e) => Refusal::Storage(e),
        }
    }

    /// Enrolment, step 1: checks the EK is trusted (approved, or certified by the EK roots) and the AK is a
    /// restricted signing key, then seals a fresh secret to both (TPM2_MakeCredential).
    pub(crate) async fn begin_enrolment(
        &self,
        device_id: &str,
        ek_public: &[u8],
        ek_certificate: Option<&[u8]>,
        ak_public: &[u8],
        now: i64,
    ) -> Result<Challenge, Refusal> {
        let enrolment = AttestationCheck::Enrolment;
        let ek_digest = crate::helpers::sha256_hex(ek_public);
        // One TPM per device and one device per TPM: another TPM cannot take over a device's
        // identity (a stolen certificate with an approved TPM of another device), nor can one
        // TPM attest for two identities.
        if let Some(own) = self.db.attestation_key(device_id).await?
            && own.ek_digest != ek_digest
        {
            let reason = format!(
                "this device enrolled with the TPM whose EK is sha256:{}, not sha256:{ek_digest}; if its TPM was really replaced, an operator deletes the device (DELETE /api/v1/ddi/devices/{device_id}, audited) so it enrols afresh",
                own.ek_digest
            );
            return Err(self.refuse(device_id, now, enrolment, reason, false).await);
        }
        if let Some(other) = self.db.attestation_key_by_ek(&ek_digest).await?
            && other.device_id != device_id
        {
            let reason = format!(
                "the TPM whose EK is sha256:{ek_digest} already attests for device {:?}; one TPM attests for one device",
                other.device_id
            );
            return Err(self.refuse(device_id, now, enrolment, reason, false).await);
        }
        let certified = match ek_certificate {
            Some(_) if self.config.ek_roots.is_empty() => Err(
                "it sent an EK certificate, but this server has no EK roots (--ek-roots)"
                    .to_owned(),
            ),
            // Every certificate of the EK roots file is trusted, intermediates included (a
            // maker's EK certificates are usually issued by an intermediate).
            Some(leaf) => rampart_attest::ekcert::verify_ek_certificate(
                leaf,
                &self.config.ek_roots,
                &self.config.ek_roots,
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(now.max(0) as u64),
                ek_public,
            )
            .map_err(|e| format!("its EK certificate is refused: {e}")),
            None => Err("it sent no EK certificate".to_owned()),
        };
        let basis = if self.db.approved_ek(&ek_digest).await?.is_some() {
            EkBasis::Approved
        } else if certified.is_ok() {
            EkBasis::Certificate
        } else {
            let why = certified.err().unwrap_or_default();
            let reason = format!(
                "endorsement key sha256:{ek_digest} is neither certified nor approved ({why}). An operator who trusts this TPM approves it with `rampart attest approve-ek EK.pub` (the EK's TPMT_PUBLIC, e.g. from `tpm2_createek -f tpmt`), or gives the server the TPM maker's EK roots (--ek-roots)"
            );
            return Err(self.refuse(device_id, now, enrolment, reason, false).await);
        };
        let ak = match Public::parse(ak_public).and_then(|public| {
            public.check_attestation_key()?;
            Ok(public)
        }) {
            Ok(ak) => ak,
            Err(e) => {
                let reason = format!(
                    "the attestation key is not usable: {e}; create it with `tpm2_createak -G ecc` (a restricted ECDSA P-256 signing key)"
                );
                return Err(self.refuse(device_id, now, enrolment, reason, false).await);
            }
        };
        let ak_name = ak.name();
        let mut secret = [0u8; 32];
        let mut entropy = [0u8; 32];
        let random = ring::rand::SystemRandom::new();
        ring::rand::SecureRandom::fill(&random, &mut secret)
            .and_then(|()| ring::rand::SecureRandom::fill(&random, &mut entropy))
            .map_err(|_| {
                AuditWriteError::Record("the system random number generator failed".into())
            })?;
        let made = match rampart_attest::credential::make_credential(
            ek_public, &ak_name, &secret, &entropy,
        ) {
            Ok(made) => made,
            Err(e) => {
                let reason = format!("cannot seal a credential to this endorsement key: {e}");
                return Err(self.refuse(device_id, now, enrolment, reason, false).await);
            }
        };
        let challenge_id = crate::helpers::new_id("enrol").map_err(|e| {
            AuditWriteError::Record(format!("no id for an enrolment challenge: {e}"))
        })?;
        let digest = ring::digest::digest(&ring::digest::SHA256, &secret);
        let mut secret_digest = [0u8; 32];
        secret_digest.copy_from_slice(digest.as_ref());
        self.db
            .insert_enrolment_challenge(&PendingEnrolment {
                challenge_id: challenge_id.clone(),
                key: AttestationKey {
                    device_id: device_id.to_owned(),
                    ak_public: ak_public.to_vec(),
                    ak_name,
                    ek_digest,
                    ek_basis: basis,
                    enrolled_at: 0,
                },
                secret_digest,
                expires_at: now.saturating_add(ENROLMENT_CHALLENGE_SECS),
            })
            .await?;
        Ok(Challenge {
            challenge_id,
            credential_blob: made.credential_blob,
            encrypted_secret: made.encrypted_secret,
        })
    }

    /// Enrolment, step 2: the secret the TPM recovered. Right: the AK is the device's (audited).
    /// Wrong, unknown or expired challenge: refused and recorded; the device enrols again.
    pub(crate) async fn finish_enrolment(
        &self,
        device_id: &str,
        challenge_id: &str,
        secret: &[u8],
        now: i64,
    ) -> Result<AttestationKey, Refusal> {
        let enrolment = AttestationCheck::Enrolment;
        let Some(pending) = self
            .db
            .take_enrolment_challenge(device_id, challenge_id, now)
            .await?
        else {
            let reason = format!(
                "enrolment challenge {challenge_id:?} is unknown, already answered or expired (answer within {ENROLMENT_CHALLENGE_SECS} s); enrol again"
            );
            return Err(self.refuse(device_id, now, enrolment, reason, false).await);
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, secret);
        // Compared as digests (both 32 bytes): the secret's length leaks nothing either.
        if !constant_time_eq(digest.as_ref(), &pending.secret_digest) {
            let reason = "the secret does not match the one sealed to this device's EK and AK: the AK and the EK are not in the same TPM (or the answer was altered); enrol again".to_owned();
            return Err(self.refuse(device_id, now, enrolment, reason, false).await);
        }
        let key = AttestationKey {
            enrolled_at: now,
            ..pending.key
        };
        let details = json!({
            "ak_name": hex::encode(&key.ak_name),
            "ek_digest": key.ek_digest,
            "ek_basis": key.ek_basis.as_str(),
        });
        self.audit
            .write(
                now,
                &format!("device:{device_id}"),
                "device.attestation_enrolled",
                device_id,
                details,
                |line| {
                    let (db, key) = (self.db.clone(), key.clone());
                    async move { db.enrol_attestation_key(&key, &line).await }
                },
            )
            .await?;
        Metrics::inc(&self.metrics.attestation.enrolments);
        Ok(key)
    }

    /// Verifies a quote (see the module documentation) and records the outcome.
    pub(crate) async fn check_quote(
        &self,
        device_id: &str,
        facts: &DeviceFacts,
        evidence: &QuoteEvidence,
        repo: Option<&Arc<HostedRepo>>,
        now: i64,
    ) -> Result<AttestationAnswer, Refusal> {
        let Some(key) = self.db.attestation_key(device_id).await? else {
            return Err(Refusal::NotEnrolled(
                "this device has no attestation key: enrol first (POST /device/v1/attestation/enrol, then .../activate)".into(),
            ));
        };
        // The nonce is used up before anything else is checked: no nonce is verified twice.
        let claim = self
            .db
            .claim_nonce(device_id, &evidence.nonce_hex, now)
            .await?;
        let nonce_problem = match claim {
            NonceClaim::Claimed => None,
            NonceClaim::AlreadyUsed => Some("was already used by an earlier quote (a replay)"),
            NonceClaim::Expired => Some("has expired"),
            NonceClaim::Unknown => Some("was never issued to this device"),
        };
        if let Some(problem) = nonce_problem {
            let reason = format!(
                "quote nonce {} {problem}; quote the nonce of the next poll answer",
                evidence.nonce_hex
            );
            return self
                .failed(device_id, now, AttestationCheck::Nonce, reason)
                .await;
        }
        match self.verify(&key, facts, evidence, repo, now).await? {
            Ok((release, counters)) => {
                self.record_pass(device_id, now, &release, counters).await?;
                Ok(AttestationAnswer {
                    outcome: AttestationOutcome::Attested,
                    reason: None,
                })
            }
            Err((check, reason)) => self.failed(device_id, now, check, reason).await,
        }
    }

    async fn failed(
        &self,
        device_id: &str,
        now: i64,
        check: AttestationCheck,
        reason: String,
    ) -> Result<AttestationAnswer, Refusal> {
        self.record_failure(device_id, now, check, &reason, true)
            .await?;
        Ok(AttestationAnswer {
            outcome: AttestationOutcome::Failed,
            reason: Some(reason),
        })
    }

    /// The checks of a quote whose nonce was claimed: the release and counters it proves, or
    /// the failed check and its reason.
    async fn verify(
        &self,
        key: &AttestationKey,
        facts: &DeviceFacts,
        evidence: &QuoteEvidence,
        repo: Option<&Arc<HostedRepo>>,
        now: i64,
    ) -> Result<Result<(String, QuoteCounters), (AttestationCheck, String)>, Refusal> {
        let quote = AttestationCheck::Quote;
        let required = match PcrSelection::parse(&self.config.selection_text()) {
            Ok(selection) => selection,
            Err(e) => return Ok(Err((quote, format!("server PCR selection: {e}")))),
        };
        let values = match PcrValues::parse_file(&evidence.pcrs) {
            Ok(values) => values,
            Err(e) => return Ok(Err((quote, format!("quoted PCR values: {e}")))),
        };
        let ak = match Public::parse(&key.ak_public) {
            Ok(public) => QuoteKey::from_public(&public),
            Err(e) => return Ok(Err((quote, format!("stored AK: {e}; enrol again")))),
        };
        let verified = match verify_quote(
            &evidence.message,
            &evidence.signature,
            &values,
            &ak,
            &evidence.nonce,
            &required,
        ) {
            Ok(verified) => verified,
            Err(e) => return Ok(Err((quote, e.to_string()))),
        };
        let clock = verified.clock_info;
        if let Some(previous) = self
            .db
            .attestation_state(&key.device_id)
            .await?
            .and_then(|s| s.counters)
        {
            let previous = ClockInfo {
                clock: previous.clock,
                reset_count: previous.reset_count,
                restart_count: previous.restart_count,
                safe: true,
            };
            if let Err(e) = check_counters(&previous, &clock) {
                return Ok(Err((AttestationCheck::Counters, e.to_string())));
            }
        }
        let measurements = AttestationCheck::Measurements;
        let golden = match golden_measurements(facts, repo, now).await {
            Ok(golden) => golden,
            Err(reason) => return Ok(Err((measurements, reason))),
        };
        let log = match device_log(&evidence.event_log, evidence.firmware_event_log.as_deref()) {
            Ok(log) => log,
            Err(reason) => return Ok(Err((measurements, reason))),
        };
        let quoted: BTreeMap<u8, [u8; 32]> = verified
            .pcrs
            .iter()
            .filter(|(bank, _, _)| *bank == HashAlg::Sha256)
            .filter_map(|(_, pcr, value)| Some((pcr, <[u8; 32]>::try_from(value).ok()?)))
            .collect();
        if let Err(e) = check_measurements(&log, &quoted, &golden, self.config.agent_pcr) {
            return Ok(Err((measurements, e.to_string())));
        }
        Ok(Ok((
            golden.target_path,
            QuoteCounters {
                reset_count: clock.reset_count,
                restart_count: clock.restart_count,
                clock: clock.clock,
            },
        )))
    }
}

/// The log that must explain the quoted PCRs: the firmware's events (what booted before the
/// agent ran: firmware, bootloader, kernel), then the agent's boot events. Each log is parsed
/// with its own limits; a firmware PCR the quote covers is then checked by replaying them.
fn device_log(agent: &[u8], firmware: Option<&[u8]>) -> Result<EventLog, String> {
    let agent = EventLog::parse(agent).map_err(|e| format!("event log: {e}"))?;
    let Some(firmware) = firmware else {
        return Ok(agent);
    };
    let mut log = EventLog::parse(firmware).map_err(|e| format!("firmware event log: {e}"))?;
    log.events.extend(agent.events);
    Ok(log)
}

/// The golden measurements of the release the inventory says the device runs: the signed
/// target whose release version is the device's reported firmware version, built for its
/// hardware; its sha256, its path, and firmware PCR values pinned in its `custom` metadata
/// (`"attestation": {"firmware_pcrs": {"0": "<sha256 hex>", ...}}`).
async fn golden_measurements(
    facts: &DeviceFacts,
    repo: Option<&Arc<HostedRepo>>,
    now: i64,
) -> Result<GoldenMeasurements, String> {
    let Some(repo) = repo.cloned() else {
        return Err("this server hosts no image repository, so it has no golden measurements; start it with --repo".into());
    };
    if facts.firmware_version.is_empty() {
        return Err("the inventory does not say which release this device runs: it has not reported its facts (poll with facts first)".into());
    }
    let (version, hardware) = (facts.firmware_version.clone(), facts.hardware_id.clone());
    let found = tokio::task::spawn_blocking(move || {
        let catalog = repo.catalog(now).map_err(|e| e.to_string())?;
        let matching: Vec<_> = catalog
            .releases
            .into_iter()
            .filter(|r| {
                r.release
                    .as_ref()
                    .is_some_and(|info| info.version == version && info.hardware_ids.contains(&hardware))
            })
            .collect();
        let target = match matching.as_slice() {
            [one] => one.target.clone(),
            [] => return Err(format!(
                "the image repository has no signed release {version:?} for hardware {hardware:?}, the release the inventory says this device runs; publish it, or update the device"
            )),
            many => return Err(format!(
                "{} signed releases are version {version:?} for hardware {hardware:?}; the golden measurements are ambiguous (give each release its own version)",
                many.len()
            )),
        };
        let file = repo
            .target(&target, now)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("release {target:?} vanished from the image repository"))?;
        Ok::<_, String>((target, file))
    })
    .await
    .map_err(|_| "reading the image repository failed".to_owned())??;
    let (target_path, file) = found;
    let sha256 = file
        .hashes
        .get("sha256")
        .and_then(|h| hex::decode(h).ok())
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or_else(|| {
            format!("release {target_path:?} has no sha256 hash in its signed metadata")
        })?;
    Ok(GoldenMeasurements {
        firmware_pcrs: firmware_pcrs(file.custom.as_ref())
            .map_err(|e| format!("release {target_path:?}: {e}"))?,
        target_path,
        image_sha256: sha256,
    })
}

/// Firmware PCR values pinned in a target's `custom` metadata (see [`golden_measurements`]).
pub(crate) fn firmware_pcrs(
    custom: Option<&serde_json::Value>,
) -> Result<BTreeMap<u8, [u8; 32]>, String> {
    let Some(pinned) = custom.and_then(|c| c.get("attestation")?.get("firmware_pcrs")) else {
        return Ok(BTreeMap::new());
    };
    let map = pinned.as_object().ok_or(
        "custom.attestation.firmware_pcrs must be an object {\"<PCR>\": \"<sha256 hex>\"}",
    )?;
    if map.len() > MAX_FIRMWARE_PCRS {
        return Err(format!(
            "custom.attestation.firmware_pcrs pins {} PCRs; a TPM has {MAX_FIRMWARE_PCRS}",
            map.len()
        ));
    }
    map.iter()
        .map(|(pcr, value)| {
            let index = pcr
                .parse::<u8>()
                .ok()
                .filter(|p| usize::from(*p) < MAX_FIRMWARE_PCRS)
                .ok_or_else(|| {
                    format!("custom.attestation.firmware_pcrs: {pcr:?} is not a PCR 0-23")
                })?;
            let digest = value
                .as_str()
                .and_then(|v| hex::decode(v).ok())
                .and_then(|v| <[u8; 32]>::try_from(v).ok())
                .ok_or_else(|| {
                    format!(
                        "custom.attestation.firmware_pcrs[{pcr:?}] must be 64 hex digits (SHA-256)"
                    )
                })?;
            Ok((index, digest))
        })
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firmware_pcrs_are_read_strictly_from_custom_metadata() {
        assert!(firmware_pcrs(None).unwrap().is_empty());
        let custom = json!({"attestation": {"firmware_pcrs": {"0": "aa".repeat(32)}}});
        assert_eq!(firmware_pcrs(Some(&custom)).unwrap()[&0], [0xaa; 32]);
        for bad in [
            json!({"attestation": {"firmware_pcrs": {"24": "aa".repeat(32)}}}),
            json!({"attestation": {"firmware_pcrs": {"0": "aa"}}}),
            json!({"attestation": {"firmware_pcrs": ["aa"]}}),
        ] {
            assert!(firmware_pcrs(Some(&bad)).is_err(), "{bad}");
        }
    }
}
