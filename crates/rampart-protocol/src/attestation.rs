//! Remote attestation on the native device API: AK enrolment (`POST
//! /device/v1/attestation/enrol`, then `.../activate`), the server's request for a fresh quote
//! in the poll answer ([`AttestationRequest`]), and the quote a device sends (`POST
//! /device/v1/attestation/quote`). Binary TPM structures travel base64-encoded (standard
//! alphabet, padded), exactly as the TPM marshals them.

use serde::{Deserialize, Serialize};

/// Enrolment, step 1: the device's endorsement key and the attestation key it made under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The EK's TPMT_PUBLIC, base64.
    pub ek_public: String,
    /// The EK certificate (DER), base64, when the TPM has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ek_certificate: Option<String>,
    /// The AK's TPMT_PUBLIC, base64.
    pub ak_public: String,
}

/// Enrolment, step 1's answer: a secret sealed by TPM2_MakeCredential to the EK and the AK's
/// name; only the TPM holding both can recover it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct EnrolChallenge {
    /// Names this challenge in step 2.
    pub challenge_id: String,
    /// TPM2B_ID_OBJECT's content (credentialBlob), base64.
    pub credential_blob: String,
    /// TPM2B_ENCRYPTED_SECRET's content (secret), base64.
    pub encrypted_secret: String,
}

/// Enrolment, step 2: the secret TPM2_ActivateCredential recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct EnrolProof {
    pub challenge_id: String,
    /// The recovered secret, base64.
    pub secret: String,
}

/// Enrolment, step 2's answer: the AK is this device's from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct EnrolAnswer {
    /// The AK's TPM name (nameAlg and digest of its public area), hex.
    pub ak_name: String,
}

/// In a poll answer: the server wants a fresh quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct AttestationRequest {
    /// The nonce the quote must carry as qualifying data, hex. Single use, short-lived.
    pub nonce: String,
    /// The PCRs to quote, as tpm2-tools writes a selection (`sha256:0,1,13`).
    pub pcrs: String,
    /// False when the server has no AK for this device yet: enrol first.
    pub enrolled: bool,
}

/// `POST /device/v1/attestation/quote`: a quote and the event logs that explain it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct QuoteSubmission {
    /// The nonce from the [`AttestationRequest`], hex.
    pub nonce: String,
    /// TPMS_ATTEST, base64 (`tpm2_quote -m`).
    pub message: String,
    /// TPMT_SIGNATURE, base64 (`tpm2_quote -s`).
    pub signature: String,
    /// The quoted PCR values in tpm2-tools' PCR file format, base64 (`tpm2_quote -o`).
    pub pcrs: String,
    /// The agent's TCG event log of this boot (crypto-agile format), base64.
    pub event_log: String,
    /// The firmware's TCG event log (the kernel's `binary_bios_measurements`), base64, where
    /// the device has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware_event_log: Option<String>,
}

/// A device's attestation state, as the server keeps and shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttestationOutcome {
    /// A quote verified within the freshness window and its measurements match the release
    /// the device runs.
    Attested,
    /// The last quote failed a check (the reason says which).
    Failed,
    /// No verified quote within the freshness window (or none ever).
    Stale,
}

/// The answer to a quote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(any(test, feature = "schema"), derive(schemars::JsonSchema))]
pub struct AttestationAnswer {
    pub outcome: AttestationOutcome,
    /// Why it failed, for a person: which check, which PCR or event, expected vs found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
