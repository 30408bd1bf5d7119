//! Remote attestation on the native device API (docs/decisions/0027), when the server runs
//! with attestation enabled (else 404 `attestation_disabled`):
//!
//! * `POST /device/v1/attestation/enrol` — an [`EnrolRequest`] (EK and AK TPMT_PUBLIC, EK
//!   certificate). The EK must be approved by an operator; the AK must be a restricted signing
//!   key. Answers an [`EnrolChallenge`] (a secret sealed by MakeCredential, valid 5 minutes);
//!   403 `ek_not_trusted` / `enrolment_refused` otherwise (recorded).
//! * `POST /device/v1/attestation/activate` — an [`EnrolProof`] (the secret the TPM
//!   recovered). Answers an [`EnrolAnswer`]; 403 `activation_failed` for a wrong secret or an
//!   unknown, used or expired challenge (recorded; enrol again).
//! * `POST /device/v1/attestation/quote` — a [`QuoteSubmission`] naming the nonce of the poll
//!   answer's attestation request. Answers an [`AttestationAnswer`]: `attested`, or `failed`
//!   with the reason (recorded before the answer: audit record, security event, metrics); 409
//!   `not_enrolled` without an AK.
//!
//! Bodies: strict JSON (unknown fields refused), binary fields base64 (standard, padded) with
//! a size bound each; 400 malformed JSON, 413 over the body limit, 422 a bad field.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use rampart_protocol::{
    AttestationRequest, EnrolAnswer, EnrolChallenge, EnrolProof, EnrolRequest, QuoteSubmission,
};

use super::api::DeviceApi;
use super::report_rate::{ATTESTATION_BURST, ATTESTATION_PER_SECOND};
use crate::engines::attestation::Attestation;
use crate::engines::attestation_verify::{QuoteEvidence, Refusal};
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, BodyLimits, json_response, parse_json, read_body};
use crate::listen::mtls::PeerIdentity;

/// Largest TPM structure accepted in a field (TPMT_PUBLIC, TPMS_ATTEST, TPMT_SIGNATURE).
const MAX_STRUCTURE: usize = rampart_db::MAX_TPM_STRUCTURE;
/// Largest EK certificate accepted.
const MAX_EK_CERTIFICATE: usize = 8 * 1024;
/// Largest PCR file (24 SHA-256 values and their selection, in tpm2-tools' format).
const MAX_PCR_FILE: usize = 4 * 1024;
/// Largest event log accepted (the agent's log is a few hundred bytes; firmware logs are tens
/// of kilobytes).
const MAX_EVENT_LOG: usize = 256 * 1024;
/// Largest quote body: the agent's and the firmware's event logs in base64, and the rest.
const MAX_QUOTE_BODY: usize = 2 * (MAX_EVENT_LOG / 3 * 4) + 32 * 1024;
/// Longest nonce the server issues, in bytes.
const MAX_NONCE: usize = 64;

fn decode(field: &str, text: &str, max: usize) -> Result<Vec<u8>, ApiError> {
    if text.len() > max.div_ceil(3) * 4 {
        return Err(ApiError::invalid(format!(
            "{field} is over {max} bytes; send the structure exactly as the TPM marshals it"
        )));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| {
            ApiError::invalid(format!(
                "{field} is not base64 (standard alphabet, padded): {e}"
            ))
        })?;
    if bytes.is_empty() || bytes.len() > max {
        return Err(ApiError::invalid(format!(
            "{field} must be 1 to {max} bytes, not {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl DeviceApi {
    /// What every attestation route starts with: attestation enabled (else 404), the body read
    /// within `limits`, the calling device (registered on first contact, 403 if revoked; its
    /// contact recorded), and the time.
    async fn caller(
        &self,
        peer: &PeerIdentity,
        headers: &HeaderMap,
        body: Body,
        limits: BodyLimits,
    ) -> Result<(Arc<Attestation>, rampart_db::Device, axum::body::Bytes, i64), ApiError> {
        let attestation = self.attestation()?.clone();
        let bytes = read_body(headers, body, limits).await?;
        let now = unix_now();
        let device = self.identify(peer, now).await?;
        self.last_seen.record(&device.id, now);
        // Every refused step is written to the audit log: a device certificate must not be
        // able to flood it.
        if let Err(wait) = self
            .attestation_rate
            .take(&device.id, std::time::Instant::now())
        {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attestation_requests",
                format!(
                    "this device calls the attestation routes faster than once every {} s (bursts of {ATTESTATION_BURST}); send again in {} s",
                    1.0 / ATTESTATION_PER_SECOND,
                    wait.as_secs() + 1
                ),
            ));
        }
        Ok((attestation, device, bytes, now))
    }

    /// The attestation engine, or 404 when the server runs without attestation.
    fn attestation(&self) -> Result<&Arc<Attestation>, ApiError> {
        self.attestation.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "attestation_disabled",
                "this server does not attest devices (start it with --attestation); keep updating without attesting",
            )
        })
    }
}

impl DeviceApi {
    /// The poll answer's attestation request (when a quote is due: the device is not attested,
    /// half its freshness window has passed, or it reports a boot (`boot_id`) other than its
    /// last quote's: it rebooted, perhaps into a changed image) and whether the fleet-wide policy lets the
    /// device have its assignment. The pending nonce is reused until it is used or nearly
    /// expired, so the answer and its ETag stay the same between polls.
    pub(super) async fn attestation_request(
        &self,
        device_id: &str,
        boot_id: Option<&str>,
        now: i64,
    ) -> Result<(Option<AttestationRequest>, bool), ApiError> {
        let Some(attestation) = &self.attestation else {
            return Ok((None, true));
        };
        let read = |e| ApiError::from_db("reading a device's attestation", e);
        let state = attestation
            .db
            .attestation_state(device_id)
            .await
            .map_err(read)?;
        let freshness = attestation.config.freshness_secs();
        let attested = state.as_ref().is_some_and(|s| s.attested(now, freshness));
        let allowed = attested || !attestation.config.require;
        let refresh_from = state
            .as_ref()
            .and_then(|s| s.verified_at)
            .map(|at| at.saturating_add(freshness / 2));
        let rebooted = boot_id.is_some_and(|boot| {
            state
                .as_ref()
                .is_some_and(|s| !s.quoted_boot_id.is_empty() && s.quoted_boot_id != boot)
        });
        if attested && !rebooted && refresh_from.is_some_and(|from| from > now) {
            return Ok((None, allowed));
        }
        let enrolled = attestation
            .db
            .attestation_key(device_id)
            .await
            .map_err(read)?
            .is_some();
        let lifetime =
            i64::try_from(attestation.config.nonce_lifetime.as_secs()).unwrap_or(i64::MAX);
        let min_left = i64::try_from(self.poll_interval_secs)
            .unwrap_or(i64::MAX)
            .min(lifetime / 2);
        let mut random = Ok(());
        let issued = attestation
            .db
            .pending_nonce(device_id, now, lifetime, min_left, || {
                let mut nonce = [0u8; 32];
                random =
                    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce);
                hex::encode(nonce)
            })
            .await
            .map_err(|e| ApiError::from_db("issuing an attestation nonce", e))?;
        if random.is_err() {
            return Err(ApiError::internal());
        }
        Ok((
            Some(AttestationRequest {
                nonce: issued.nonce,
                pcrs: attestation.config.selection_text(),
                enrolled,
            }),
            allowed,
        ))
    }

    /// 403 `attestation_required` when the fleet-wide policy requires attestation and the
    /// device has no fresh passing one (director metadata and artifacts).
    pub(crate) async fn require_attested(&self, device_id: &str, now: i64) -> Result<(), ApiError> {
        let Some(attestation) = self.attestation.as_ref().filter(|a| a.config.require) else {
            return Ok(());
        };
        let view = attestation
            .view(device_id, now)
            .await
            .map_err(|e| ApiError::from_db("reading a device's attestation", e))?;
        if view.outcome == rampart_protocol::AttestationOutcome::Attested {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "attestation_required",
            format!(
                "this server gives updates only to devices with a fresh passing attestation, and device {device_id:?} is {}: {}. Poll, enrol if asked, send the quote the poll answer asks for, then retry",
                match view.outcome {
                    rampart_protocol::AttestationOutcome::Failed => "failed",
                    _ => "stale",
                },
                view.reason
            ),
        ))
    }
}

/// The answer to a refused step.
fn refusal_answer(refusal: Refusal, code: &'static str) -> ApiError {
    match refusal {
        Refusal::NotEnrolled(detail) => ApiError::new(StatusCode::CONFLICT, "not_enrolled", detail),
        Refusal::Refused { reason, .. } => ApiError::new(StatusCode::FORBIDDEN, code, reason),
        Refusal::Storage(e) => {
            crate::observe::log::error(
                "recording an attestation step failed",
                serde_json::json!({"error": e.to_string()}),
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the server could not record this attestation step; retry later",
            )
        }
    }
}

pub(super) async fn enrol(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (attestation, device, bytes, now) =
        api.caller(&peer, &headers, body, api.body_limits).await?;
    let request: EnrolRequest = parse_json(
        &bytes,
        r#"{"ek_public": "<base64 TPMT_PUBLIC>", "ek_certificate": "<base64 DER>"?, "ak_public": "<base64 TPMT_PUBLIC>"}"#,
    )?;
    let ek_public = decode("ek_public", &request.ek_public, MAX_STRUCTURE)?;
    let ak_public = decode("ak_public", &request.ak_public, MAX_STRUCTURE)?;
    let certificate = request
        .ek_certificate
        .as_deref()
        .map(|c| decode("ek_certificate", c, MAX_EK_CERTIFICATE))
        .transpose()?;
    let challenge = attestation
        .begin_enrolment(
            &device.id,
            &ek_public,
            certificate.as_deref(),
            &ak_public,
            now,
        )
        .await
        .map_err(|r| refusal_answer(r, "enrolment_refused"))?;
    Ok(json_response(
        StatusCode::OK,
        &EnrolChallenge {
            challenge_id: challenge.challenge_id,
            credential_blob: base64(&challenge.credential_blob),
            encrypted_secret: base64(&challenge.encrypted_secret),
        },
    ))
}

pub(super) async fn activate(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (attestation, device, bytes, now) =
        api.caller(&peer, &headers, body, api.body_limits).await?;
    let proof: EnrolProof = parse_json(
        &bytes,
        r#"{"challenge_id": "<from the enrolment answer>", "secret": "<base64>"}"#,
    )?;
    if proof.challenge_id.is_empty() || proof.challenge_id.len() > 128 {
        return Err(ApiError::invalid(
            "challenge_id must be the 1-128 character id of the enrolment answer",
        ));
    }
    let secret = decode("secret", &proof.secret, 64)?;
    let key = attestation
        .finish_enrolment(&device.id, &proof.challenge_id, &secret, now)
        .await
        .map_err(|r| refusal_answer(r, "activation_failed"))?;
    Ok(json_response(
        StatusCode::OK,
        &EnrolAnswer {
            ak_name: hex::encode(&key.ak_name),
        },
    ))
}

pub(super) async fn quote(
    State(api): State<Arc<DeviceApi>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limits = BodyLimits {
        max_bytes: api.body_limits.max_bytes.max(MAX_QUOTE_BODY),
        ..api.body_limits
    };
    let (attestation, device, bytes, now) = api.caller(&peer, &headers, body, limits).await?;
    let submission: QuoteSubmission = parse_json(
        &bytes,
        r#"{"nonce": "<hex>", "message": "<base64 TPMS_ATTEST>", "signature": "<base64 TPMT_SIGNATURE>", "pcrs": "<base64 PCR file>", "event_log": "<base64>", "firmware_event_log": "<base64, optional>"}"#,
    )?;
    let nonce = hex::decode(&submission.nonce)
        .ok()
        .filter(|n| !n.is_empty() && n.len() <= MAX_NONCE)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "nonce must be the hex nonce of the poll answer's attestation request (at most {MAX_NONCE} bytes)"
            ))
        })?;
    let evidence = QuoteEvidence {
        nonce_hex: hex::encode(&nonce),
        nonce,
        message: decode("message", &submission.message, MAX_STRUCTURE)?,
        signature: decode("signature", &submission.signature, MAX_STRUCTURE)?,
        pcrs: decode("pcrs", &submission.pcrs, MAX_PCR_FILE)?,
        event_log: decode("event_log", &submission.event_log, MAX_EVENT_LOG)?,
        firmware_event_log: submission
            .firmware_event_log
            .as_deref()
            .map(|log| decode("firmware_event_log", log, MAX_EVENT_LOG))
            .transpose()?,
    };
    let answer = attestation
        .check_quote(
            &device.id,
            &device.facts,
            &evidence,
            api.image_repo.as_ref(),
            now,
        )
        .await
        .map_err(|r| refusal_answer(r, "attestation_failed"))?;
    Ok(json_response(StatusCode::OK, &answer))
}
