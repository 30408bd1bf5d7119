//! Pure remote-attestation core (no I/O, no clock): what a TPM 2.0 signs and how a verifier
//! decides that a device runs what its signed release says.
//!
//! - [`wire`]: TPM 2.0 structures as bytes (TPMS_ATTEST, TPMT_SIGNATURE, TPMT_PUBLIC,
//!   TPML_PCR_SELECTION, names), bounded parsing and encoding.
//! - [`pcr`]: PCR selections (`sha256:0,1,16`, as tpm2-tools writes them) and PCR values,
//!   with tpm2-tools' PCR file format.
//! - [`quote`]: verification of a TPM2_Quote against an attestation key, a nonce and a
//!   required selection; the reset and restart counters.
//! - [`eventlog`]: the TCG crypto-agile event log: parse, encode, replay.
//! - [`measure`]: the agent's boot events and the check against golden measurements from a
//!   release's signed TUF metadata.
//! - [`credential`]: TPM2_MakeCredential in software (server side of AK enrolment), and
//!   ActivateCredential for the software TPM model.
//! - [`ekcert`]: endorsement-key certificate chains.
//! - [`device`]: [`device::TpmDevice`], what the agent needs of a TPM (the real one in
//!   `rampart-tpm`, the model in [`soft`]).
//! - [`soft`]: a software TPM model for the fleet simulator and tests: same structures, same
//!   verification.

#![forbid(unsafe_code)]

pub mod credential;
pub mod device;
pub mod ekcert;
pub mod eventlog;
pub mod measure;
pub mod pcr;
pub mod quote;
pub mod soft;
pub mod spki;
#[cfg(test)]
mod testdata;
pub mod wire;
