//! What the device agent needs of a TPM 2.0: its endorsement key, an attestation key, credential
//! activation, PCR extends and quotes, and the anti-rollback counter. The real TPM implements it
//! in `rampart-tpm` (tss-esapi); the fleet simulator uses [`crate::soft::SoftTpm`].
//!
//! Every structure crosses this trait as the TPM marshals it, so the verifier reads the same
//! bytes from a real TPM and from the model.

/// The endorsement key: its public area and, when the TPM carries one, its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endorsement {
    /// TPMT_PUBLIC of the EK, as the TPM marshals it.
    pub public: Vec<u8>,
    /// The EK certificate (DER) from the TPM's NV storage, when present.
    pub certificate: Option<Vec<u8>>,
}

/// A quote as the TPM produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteBytes {
    /// TPMS_ATTEST (the content of TPM2B_ATTEST), as `tpm2_quote -m` writes it.
    pub message: Vec<u8>,
    /// TPMT_SIGNATURE, as `tpm2_quote -s` writes it.
    pub signature: Vec<u8>,
    /// The PCR values read right after the quote, in tpm2-tools' PCR file format
    /// (`tpm2_quote -o`).
    pub pcrs: Vec<u8>,
}

/// A TPM operation failed.
#[derive(Debug, thiserror::Error)]
#[error("TPM {operation} failed: {message}")]
pub struct TpmError {
    /// The operation, e.g. "quote".
    pub operation: &'static str,
    /// What went wrong, for a person.
    pub message: String,
}

/// What the agent needs of a TPM (see the module documentation).
pub trait TpmDevice: Send {
    /// The endorsement key's public area and certificate.
    fn endorsement(&mut self) -> Result<Endorsement, TpmError>;
    /// The attestation key's TPMT_PUBLIC (a restricted ECDSA P-256 signing key under the
    /// endorsement hierarchy), created on first use and kept in the TPM.
    fn attestation_key(&mut self) -> Result<Vec<u8>, TpmError>;
    /// TPM2_ActivateCredential with the attestation key and the endorsement key: the secret the
    /// verifier sealed to this AK's name and this EK (TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET
    /// contents, as the verifier's MakeCredential wrote them).
    fn activate_credential(
        &mut self,
        credential_blob: &[u8],
        encrypted_secret: &[u8],
    ) -> Result<Vec<u8>, TpmError>;
    /// Extends SHA-256 PCR `pcr` with `digest`.
    fn extend(&mut self, pcr: u8, digest: &[u8; 32]) -> Result<(), TpmError>;
    /// TPM2_Quote with the attestation key over the SHA-256 PCRs `pcrs`, qualified by `nonce`.
    fn quote(&mut self, nonce: &[u8], pcrs: &[u8]) -> Result<QuoteBytes, TpmError>;
    /// The hardware anti-rollback floor: the NV counter's value, 0 when never raised.
    fn security_floor(&mut self) -> Result<u64, TpmError>;
    /// Raises the NV counter to at least `to` (it only counts up).
    fn raise_security_floor(&mut self, to: u64) -> Result<(), TpmError>;
}
