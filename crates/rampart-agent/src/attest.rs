//! Remote attestation on the device: the agent's side of AK enrolment and of quotes.
//!
//! Enrolment (once, when the server has no attestation key for this device): the TPM's
//! endorsement key and the attestation key it holds go to the server
//! ([`EnrolRequest`]); the server seals a secret to both with TPM2_MakeCredential
//! ([`EnrolChallenge`]); only this TPM can recover it with TPM2_ActivateCredential, and the
//! recovered secret ([`EnrolProof`]) proves the AK lives beside that EK.
//!
//! Quotes (when a poll answer carries an [`AttestationRequest`]): TPM2_Quote over the PCRs the
//! server asks for, qualified by its nonce, sent with this boot's measurement log
//! ([`QuoteSubmission`]); the server replays the log to the quoted PCRs and checks the
//! measurements against the release the device runs.
//!
//! What the agent measures at each boot is in [`crate::measured`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rampart_attest::device::{TpmDevice, TpmError};
use rampart_attest::pcr::PcrSelection;
use rampart_attest::wire::HashAlg;
use rampart_protocol::{
    AttestationAnswer, AttestationOutcome, AttestationRequest, EnrolAnswer, EnrolChallenge,
    EnrolProof, EnrolRequest, QuoteSubmission,
};

use crate::device::Device;
use crate::platform::Platform;
use crate::server_client::ServerClient;

/// The longest nonce a quote carries (TPM2B_DATA holds at most a SHA-512 digest).
const MAX_NONCE_BYTES: usize = 64;
/// The longest base64 field of a challenge read (a credential blob and an encrypted secret
/// are a few hundred bytes).
const MAX_CHALLENGE_FIELD_CHARS: usize = 4096;

/// The server's attestation routes, as the agent calls them: the update server through
/// [`ServerClient`], or the fleet simulator's device sessions.
pub trait AttestationServer {
    /// `POST /device/v1/attestation/enrol`.
    fn enrol(&self, request: &EnrolRequest) -> Result<EnrolChallenge, String>;
    /// `POST /device/v1/attestation/activate`.
    fn activate(&self, proof: &EnrolProof) -> Result<EnrolAnswer, String>;
    /// `POST /device/v1/attestation/quote`.
    fn submit_quote(&self, quote: &QuoteSubmission) -> Result<AttestationAnswer, String>;
}

impl AttestationServer for ServerClient {
    fn enrol(&self, request: &EnrolRequest) -> Result<EnrolChallenge, String> {
        ServerClient::enrol(self, request).map_err(|e| e.to_string())
    }

    fn activate(&self, proof: &EnrolProof) -> Result<EnrolAnswer, String> {
        ServerClient::activate(self, proof).map_err(|e| e.to_string())
    }

    fn submit_quote(&self, quote: &QuoteSubmission) -> Result<AttestationAnswer, String> {
        ServerClient::submit_quote(self, quote).map_err(|e| e.to_string())
    }
}

/// Why the device could not answer an attestation request.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    #[error(transparent)]
    Tpm(#[from] TpmError),
    #[error("attestation: {0}")]
    Server(String),
    #[error("the server's attestation request is malformed: {0}")]
    Request(String),
    #[error(
        "the server asks for a TPM quote but this agent has no TPM configured: add a [tpm] section to the agent configuration (see docs/device-integration.md), or ask the operator not to require attestation of this device"
    )]
    NoTpm,
    /// The configured firmware event log could not be read or is too large.
    #[error("{0}")]
    FirmwareLog(String),
    #[error("{0}")]
    Device(crate::source::Refusal),
}

impl<P: Platform> Device<P> {
    /// Answers the server's attestation request with this device's TPM and the measurement
    /// log of the running boot ([`answer`]).
    pub fn attest(
        &mut self,
        request: &AttestationRequest,
        server: &dyn AttestationServer,
    ) -> Result<Answered, AttestError> {
        let boot_id = self.boot_id().map_err(AttestError::Device)?;
        // A boot the agent could not measure (its slot's content unknown) has an empty log:
        // the server then says which measurement is missing.
        let log = self
            .platform
            .boot_log(&self.config, &boot_id)
            .map_err(AttestError::Device)?
            .unwrap_or_default();
        let firmware = match self
            .config
            .tpm
            .as_ref()
            .and_then(|t| t.firmware_event_log.as_ref())
        {
            Some(path) => Some(read_firmware_event_log(path)?),
            None => None,
        };
        let tpm = self.platform.tpm().ok_or(AttestError::NoTpm)?;
        answer(tpm, request, &log, firmware.as_deref(), server)
    }
}

/// The largest firmware event log sent (the server accepts 256 KiB; real logs are tens of KiB).
pub const MAX_FIRMWARE_EVENT_LOG: u64 = 256 * 1024;

/// Reads the configured firmware event log, bounded.
fn read_firmware_event_log(path: &std::path::Path) -> Result<Vec<u8>, AttestError> {
    use std::io::Read as _;
    let unreadable = |e: std::io::Error| {
        AttestError::FirmwareLog(format!(
            "cannot read the firmware event log {} (tpm.firmware_event_log): {e}; fix the path \
             or remove the setting",
            path.display()
        ))
    };
    let mut log = Vec::new();
    std::fs::File::open(path)
        .map_err(unreadable)?
        .take(MAX_FIRMWARE_EVENT_LOG + 1)
        .read_to_end(&mut log)
        .map_err(unreadable)?;
    if log.len() as u64 > MAX_FIRMWARE_EVENT_LOG {
        return Err(AttestError::FirmwareLog(format!(
            "the firmware event log {} is larger than {MAX_FIRMWARE_EVENT_LOG} bytes, more than \
             the server accepts",
            path.display()
        )));
    }
    Ok(log)
}

/// Enrols this TPM's attestation key with the server (see the module documentation).
pub fn enrol(
    tpm: &mut dyn TpmDevice,
    server: &dyn AttestationServer,
) -> Result<EnrolAnswer, AttestError> {
    let endorsement = tpm.endorsement()?;
    let ak_public = tpm.attestation_key()?;
    let challenge = server
        .enrol(&EnrolRequest {
            ek_public: BASE64.encode(&endorsement.public),
            ek_certificate: endorsement.certificate.as_deref().map(|c| BASE64.encode(c)),
            ak_public: BASE64.encode(&ak_public),
        })
        .map_err(AttestError::Server)?;
    let blob = challenge_field(&challenge.credential_blob, "credential_blob")?;
    let secret = challenge_field(&challenge.encrypted_secret, "encrypted_secret")?;
    let recovered = tpm.activate_credential(&blob, &secret)?;
    server
        .activate(&EnrolProof {
            challenge_id: challenge.challenge_id,
            secret: BASE64.encode(&recovered),
        })
        .map_err(AttestError::Server)
}

fn challenge_field(text: &str, name: &str) -> Result<Vec<u8>, AttestError> {
    if text.len() > MAX_CHALLENGE_FIELD_CHARS {
        return Err(AttestError::Request(format!(
            "the enrolment challenge's {name} is {} characters; at most {MAX_CHALLENGE_FIELD_CHARS} are read",
            text.len()
        )));
    }
    BASE64.decode(text).map_err(|e| {
        AttestError::Request(format!(
            "the enrolment challenge's {name} is not base64: {e}"
        ))
    })
}

/// What answering an attestation request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answered {
    /// The server had no attestation key for this device: it has one now. A new key's first
    /// nonce comes with the next poll (the server drops nonces issued before the enrolment).
    Enrolled,
    /// The quote was sent; the server's verdict.
    Quoted(AttestationAnswer),
}

impl Answered {
    /// Whether polling again at once can bring something new: the new key's first nonce
    /// after an enrolment, or, after a passing quote, an assignment a policy withheld from the
    /// unattested device (only when the answer carried none: `assigned`).
    pub fn poll_again(&self, assigned: bool) -> bool {
        match self {
            Answered::Enrolled => true,
            Answered::Quoted(a) => a.outcome == AttestationOutcome::Attested && !assigned,
        }
    }
}

/// Answers a poll's attestation request: enrols when the server has no attestation key for
/// this device, otherwise quotes the requested PCRs over the nonce and sends the quote with
/// this boot's measurement log (`event_log`, the TCG crypto-agile format).
pub fn answer(
    tpm: &mut dyn TpmDevice,
    request: &AttestationRequest,
    event_log: &[u8],
    firmware_event_log: Option<&[u8]>,
    server: &dyn AttestationServer,
) -> Result<Answered, AttestError> {
    let nonce = request_nonce(&request.nonce)?;
    let pcrs = requested_pcrs(&request.pcrs)?;
    if !request.enrolled {
        enrol(tpm, server)?;
        return Ok(Answered::Enrolled);
    }
    let quote = tpm.quote(&nonce, &pcrs)?;
    server
        .submit_quote(&QuoteSubmission {
            nonce: request.nonce.clone(),
            message: BASE64.encode(&quote.message),
            signature: BASE64.encode(&quote.signature),
            pcrs: BASE64.encode(&quote.pcrs),
            event_log: BASE64.encode(event_log),
            firmware_event_log: firmware_event_log.map(|log| BASE64.encode(log)),
        })
        .map(Answered::Quoted)
        .map_err(AttestError::Server)
}

fn request_nonce(hex_nonce: &str) -> Result<Vec<u8>, AttestError> {
    if hex_nonce.len() > 2 * MAX_NONCE_BYTES {
        return Err(AttestError::Request(format!(
            "the nonce is {} hex characters; a TPM quotes at most {MAX_NONCE_BYTES} bytes",
            hex_nonce.len()
        )));
    }
    let nonce = hex::decode(hex_nonce)
        .map_err(|e| AttestError::Request(format!("the nonce is not hex: {e}")))?;
    if nonce.is_empty() {
        return Err(AttestError::Request("the nonce is empty".into()));
    }
    Ok(nonce)
}

/// The SHA-256 PCR indexes of a selection as tpm2-tools writes it (`sha256:0,1,13`): the
/// device's TPM quotes its SHA-256 bank only.
fn requested_pcrs(selection: &str) -> Result<Vec<u8>, AttestError> {
    let parsed = PcrSelection::parse(selection)
        .map_err(|e| AttestError::Request(format!("PCR selection: {e}")))?;
    let mut pcrs = Vec::new();
    for (bank, pcr) in parsed.iter() {
        if bank != HashAlg::Sha256 {
            return Err(AttestError::Request(format!(
                "PCR selection {selection:?} asks for the {} bank; this device quotes its SHA-256 bank only",
                bank.name()
            )));
        }
        pcrs.push(pcr);
    }
    Ok(pcrs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_attest::soft::SoftTpm;
    use std::cell::RefCell;

    /// Keeps the quote it was sent; enrolment is not exercised here.
    #[derive(Default)]
    struct Recorder(RefCell<Option<QuoteSubmission>>);

    impl AttestationServer for Recorder {
        fn enrol(&self, _: &EnrolRequest) -> Result<EnrolChallenge, String> {
            Err("not in this test".into())
        }
        fn activate(&self, _: &EnrolProof) -> Result<EnrolAnswer, String> {
            Err("not in this test".into())
        }
        fn submit_quote(&self, quote: &QuoteSubmission) -> Result<AttestationAnswer, String> {
            *self.0.borrow_mut() = Some(quote.clone());
            Ok(AttestationAnswer {
                outcome: AttestationOutcome::Attested,
                reason: None,
            })
        }
    }

    fn request() -> AttestationRequest {
        AttestationRequest {
            nonce: "00".repeat(32),
            pcrs: "sha256:0,13".into(),
            enrolled: true,
        }
    }

    #[test]
    fn a_quote_carries_the_firmware_event_log_beside_the_agents() {
        let mut tpm = SoftTpm::new([7; 32]);
        let server = Recorder::default();
        answer(
            &mut tpm,
            &request(),
            b"agent log",
            Some(b"firmware log"),
            &server,
        )
        .unwrap();
        let sent = server.0.borrow().clone().unwrap();
        assert_eq!(sent.event_log, BASE64.encode(b"agent log"));
        assert_eq!(
            sent.firmware_event_log,
            Some(BASE64.encode(b"firmware log"))
        );
        answer(&mut tpm, &request(), b"agent log", None, &server).unwrap();
        assert_eq!(server.0.borrow().as_ref().unwrap().firmware_event_log, None);
    }

    #[test]
    fn a_missing_or_oversized_firmware_event_log_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("binary_bios_measurements");
        let e = read_firmware_event_log(&missing).unwrap_err().to_string();
        assert!(e.contains("tpm.firmware_event_log"), "{e}");
        std::fs::write(&missing, vec![0u8; MAX_FIRMWARE_EVENT_LOG as usize + 1]).unwrap();
        let e = read_firmware_event_log(&missing).unwrap_err().to_string();
        assert!(e.contains("larger than"), "{e}");
        std::fs::write(&missing, b"log").unwrap();
        assert_eq!(read_firmware_event_log(&missing).unwrap(), b"log");
    }
}
