//! The device's client of the update server's native device API, over mutual TLS (the
//! device's certificate is its identity): `POST /device/v1/poll` (this device's facts in, the
//! assignment out), `POST /device/v1/reports`, and small authenticated GETs for the director
//! and image-repository metadata. The bodies are `rampart_protocol`'s wire types; the answers
//! are read tolerantly (see that crate), but an answer for another device, or an assignment
//! type this agent does not know, is refused.
//!
//! What a poll assigns is verified by [`crate::director`] and downloaded by
//! [`crate::server_update`].

use std::path::Path;

use rampart_core::TufError;
use rampart_core::director::DirectorError;
use rampart_core::release::ReleaseError;
use rampart_protocol::{
    AttestationAnswer, AttestationRequest, DeviceFacts, EnrolAnswer, EnrolChallenge, EnrolProof,
    EnrolRequest, ErrorDocument, EvidenceRequest, PollAnswer, QuoteSubmission, ReportRequest,
    ReportStatus,
};
use rampart_tuf_client::{ClientError, Fetcher as _, HttpFetcher};

pub use rampart_protocol::{Assignment, UpdateKind};

/// Largest poll answer (and report or attestation answer) read.
const MAX_POLL_BYTES: u64 = 64 * 1024;

/// Why an update through the server failed.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("device identity: {0}")]
    Identity(String),
    #[error("the update server at {url}: {reason}")]
    Server { url: String, reason: String },
    /// The server answered a poll with an error status: it refuses this device's poll (the
    /// answer's error code and detail say why), as opposed to an outage.
    #[error("the update server at {url} refused the poll: HTTP {status}: {answer}")]
    PollRefused {
        url: String,
        status: u16,
        answer: String,
    },
    #[error(transparent)]
    Director(#[from] DirectorError),
    #[error("image repository: {0}")]
    ImageRepo(#[from] ClientError),
    #[error("{target}: {source}")]
    Release {
        target: String,
        #[source]
        source: ReleaseError,
    },
    #[error("transparency log: {0:#}")]
    TransparencyLog(anyhow::Error),
    #[error("downloading {target}: {source}; the partial download was discarded, retry")]
    Download {
        target: String,
        #[source]
        source: TufError,
    },
    #[error(
        "no pinned director root in {0}: provision the device with `rampart-agent init --director-root FILE`"
    )]
    NoDirectorRoot(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl UpdateError {
    /// Whether this is a refusal of what the server sent (a security event worth reporting),
    /// rather than an outage or a local problem.
    pub fn is_verification_failure(&self) -> bool {
        matches!(
            self,
            UpdateError::Director(_)
                | UpdateError::Release { .. }
                | UpdateError::TransparencyLog(_)
                | UpdateError::Download { .. }
                | UpdateError::ImageRepo(ClientError::Tuf(_))
        )
    }
}

/// Longest part of a server's error answer the agent repeats.
const MAX_REFUSAL_CHARS: usize = 300;

/// A server's error answer as one line: `error: detail` from the API's JSON error format, or
/// the text itself; control characters dropped, at most [`MAX_REFUSAL_CHARS`].
fn refusal_text(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ErrorDocument>(body) {
        Ok(e) => format!("{}: {}", e.error, e.detail),
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REFUSAL_CHARS)
        .collect()
}

/// Turns an I/O error on `path` into an [`UpdateError`].
pub(crate) fn io_error(path: &Path) -> impl Fn(std::io::Error) -> UpdateError + '_ {
    move |source| UpdateError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The PEM files of a device's mutual-TLS identity.
#[derive(Debug, Clone)]
pub struct DeviceTls {
    /// CA certificate(s) the server's certificate must chain to.
    pub server_ca_pem: Vec<u8>,
    /// The device certificate (optionally followed by intermediates).
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// A connection to the update server's device API as one device.
pub struct ServerClient {
    base: String,
    device_id: String,
    fetcher: HttpFetcher,
    /// The last poll answer's evidence request, until the daemon takes it
    /// ([`ServerClient::take_evidence_request`]): polls happen deep in the update pass, the
    /// evidence pass runs after it whatever the update did.
    evidence_request: std::sync::Mutex<Option<EvidenceRequest>>,
}

/// The server's answer to a poll, once it is known to be for this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub assignment: Option<Assignment>,
    /// How long the server asks the device to wait before the next poll.
    pub interval_secs: Option<u64>,
    /// The server wants a fresh TPM quote (with this nonce).
    pub attestation: Option<AttestationRequest>,
    /// The server's signed quarantine statement (checked by `quarantine`, never trusted as
    /// sent).
    pub quarantine: Option<rampart_protocol::SignedQuarantine>,
    /// The server wants a forensic evidence bundle ([`crate::evidence`]).
    pub evidence: Option<EvidenceRequest>,
}

/// Reads a poll answer. The server must name the device its certificate names (a server that
/// answers for another device is misrouting or lying), and an assignment type this agent does
/// not know is refused rather than guessed.
pub fn parse_poll_answer(body: &[u8], device_id: &str) -> Result<Poll, String> {
    let answer: PollAnswer =
        serde_json::from_slice(body).map_err(|e| format!("unexpected poll answer: {e}"))?;
    if answer.device_id != device_id {
        return Err(format!(
            "the server identified this device as {:?}, but its certificate says {device_id:?}",
            answer.device_id
        ));
    }
    Ok(Poll {
        assignment: answer.assignment,
        interval_secs: answer.poll_interval_secs,
        attestation: answer.attestation,
        quarantine: answer.quarantine,
        evidence: answer.evidence,
    })
}

fn certificates(
    pem: &[u8],
    what: &str,
) -> Result<Vec<ureq::tls::Certificate<'static>>, UpdateError> {
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => return Err(UpdateError::Identity(format!("{what}: {e}"))),
        }
    }
    if out.is_empty() {
        return Err(UpdateError::Identity(format!(
            "{what}: no PEM certificate found"
        )));
    }
    Ok(out)
}

impl ServerClient {
    /// A client of the server at `base_url` (`https://host:port`) authenticating as the
    /// device of `tls`. The device id is read from the device's own certificate.
    pub fn new(base_url: &str, tls: &DeviceTls) -> Result<Self, UpdateError> {
        let roots = certificates(&tls.server_ca_pem, "server CA certificate")?;
        let chain = certificates(&tls.cert_pem, "device certificate")?;
        let key = ureq::tls::PrivateKey::from_pem(&tls.key_pem)
            .map_err(|e| UpdateError::Identity(format!("device key: {e}")))?;
        let device_id = rampart_pki::device_id_from_cert(chain[0].der()).ok_or_else(|| {
            UpdateError::Identity(
                "the device certificate carries no valid device id (urn:rampart:device: URI or common name)".into(),
            )
        })?;
        let config = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key)))
            .build();
        Ok(ServerClient {
            base: base_url.trim_end_matches('/').to_owned(),
            device_id,
            fetcher: HttpFetcher::with_tls(config),
            evidence_request: Default::default(),
        })
    }

    /// A client over an already configured fetcher (e.g. [`crate::tls::device_agent`], for a
    /// key on a PKCS#11 token) for the device `device_id`.
    pub fn from_fetcher(base_url: &str, fetcher: HttpFetcher, device_id: String) -> Self {
        ServerClient {
            base: base_url.trim_end_matches('/').to_owned(),
            device_id,
            fetcher,
            evidence_request: Default::default(),
        }
    }

    /// This device's id, from its certificate.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub(crate) fn server_error(&self, url: &str, reason: impl ToString) -> UpdateError {
        UpdateError::Server {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Asks the server what to install (telling it no facts).
    pub fn poll(&self) -> Result<Option<Assignment>, UpdateError> {
        Ok(self.send_poll(b"{}")?.assignment)
    }

    /// Polls, telling the server this device's facts (hardware id, versions, slots; see the
    /// device API).
    pub fn poll_with(&self, facts: &DeviceFacts) -> Result<Poll, UpdateError> {
        let body = serde_json::to_vec(facts).map_err(|e| {
            self.server_error(&self.url("/device/v1/poll"), format!("device facts: {e}"))
        })?;
        self.send_poll(&body)
    }

    fn send_poll(&self, body: &[u8]) -> Result<Poll, UpdateError> {
        let url = self.url("/device/v1/poll");
        let mut response = self.post(&url, body)?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_POLL_BYTES)
            .read_to_vec()
            .map_err(|e| self.server_error(&url, e))?;
        if status != 200 {
            return Err(UpdateError::PollRefused {
                url,
                status,
                answer: refusal_text(&body),
            });
        }
        let poll =
            parse_poll_answer(&body, &self.device_id).map_err(|e| self.server_error(&url, e))?;
        if poll.evidence.is_some() {
            *self
                .evidence_request
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = poll.evidence.clone();
        }
        Ok(poll)
    }

    /// The evidence request of the last poll answer that carried one, once.
    pub fn take_evidence_request(&self) -> Option<EvidenceRequest> {
        self.evidence_request
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Best-effort status report (the update's outcome does not depend on it).
    pub fn report(&self, assignment: &str, status: ReportStatus, details: serde_json::Value) {
        if let Err(e) = self.send_report(&random_id(), status, Some(assignment), None, details) {
            eprintln!("could not report {status}: {e}");
        }
    }

    /// Sends one report; `Ok` once the server stored it (201, or 200 for a resent one).
    pub fn send_report(
        &self,
        id: &str,
        status: ReportStatus,
        assignment: Option<&str>,
        progress: Option<u8>,
        details: serde_json::Value,
    ) -> Result<(), UpdateError> {
        let url = self.url("/device/v1/reports");
        let body = serde_json::to_vec(&ReportRequest {
            id: id.to_owned(),
            status,
            details: Some(details),
            assignment: assignment.map(str::to_owned),
            progress: progress.map(u64::from),
        })
        .map_err(|e| self.server_error(&url, format!("report: {e}")))?;
        let mut response = self.post(&url, &body)?;
        let code = response.status().as_u16();
        if code == 200 || code == 201 {
            return Ok(());
        }
        let text = response
            .body_mut()
            .with_config()
            .limit(MAX_POLL_BYTES)
            .read_to_string()
            .unwrap_or_default();
        Err(self.server_error(&url, format!("HTTP {code}: {text}")))
    }

    /// `POST /device/v1/attestation/enrol`: this TPM's endorsement and attestation keys; the
    /// answer is a credential only that TPM can activate.
    pub fn enrol(&self, request: &EnrolRequest) -> Result<EnrolChallenge, UpdateError> {
        self.post_json("/device/v1/attestation/enrol", request)
    }

    /// `POST /device/v1/attestation/activate`: the activated secret proves the AK and EK
    /// live in the same TPM.
    pub fn activate(&self, proof: &EnrolProof) -> Result<EnrolAnswer, UpdateError> {
        self.post_json("/device/v1/attestation/activate", proof)
    }

    /// `POST /device/v1/attestation/quote`: a quote and the event log; the answer is the
    /// server's verdict.
    pub fn submit_quote(&self, quote: &QuoteSubmission) -> Result<AttestationAnswer, UpdateError> {
        self.post_json("/device/v1/attestation/quote", quote)
    }

    /// `POST /device/v1/quarantine/ack`: what the containment (or release) hook did.
    pub fn acknowledge_quarantine(
        &self,
        ack: &rampart_protocol::QuarantineAck,
    ) -> Result<serde_json::Value, UpdateError> {
        self.post_json("/device/v1/quarantine/ack", ack)
    }

    /// POSTs `body` as JSON to `path` and reads a bounded JSON answer; an error status is
    /// refused with the server's error answer.
    fn post_json<B: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<A, UpdateError> {
        let url = self.url(path);
        let body = serde_json::to_vec(body).map_err(|e| self.server_error(&url, e))?;
        let response = self.post(&url, &body)?;
        self.json_answer(&url, response)
    }

    /// Reads a bounded JSON answer; an error status is refused with the server's error answer.
    fn json_answer<A: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        mut response: ureq::http::Response<ureq::Body>,
    ) -> Result<A, UpdateError> {
        let status = response.status().as_u16();
        let answer = response
            .body_mut()
            .with_config()
            .limit(MAX_POLL_BYTES)
            .read_to_vec()
            .map_err(|e| self.server_error(url, e))?;
        if !(200..300).contains(&status) {
            return Err(self.server_error(url, format!("HTTP {status}: {}", refusal_text(&answer))));
        }
        serde_json::from_slice(&answer)
            .map_err(|e| self.server_error(url, format!("unexpected answer: {e}")))
    }

    /// POSTs a JSON body.
    fn post(
        &self,
        url: &str,
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, UpdateError> {
        self.fetcher
            .agent()
            .post(url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| self.server_error(url, e))
    }

    /// The HTTP agent (mutual TLS) for downloads.
    pub fn http(&self) -> &ureq::Agent {
        self.fetcher.agent()
    }

    /// The minimum transfer rate downloads must keep.
    pub fn min_rate(&self) -> rampart_tuf_client::fetch::MinRate {
        self.fetcher.min_rate()
    }

    /// The fetcher (mutual TLS, PEM or PKCS#11 key) for the image repository's TUF client.
    pub(crate) fn fetcher(&self) -> &HttpFetcher {
        &self.fetcher
    }

    /// GET a small file; `None` for 404/403.
    pub(crate) fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, UpdateError> {
        let url = self.url(path);
        match self.fetcher.fetch(&url, limit) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(self.server_error(&url, e)),
        }
    }
}

/// A fresh random report id (128 bits, hex): the server deduplicates resent reports by id.
pub fn random_id() -> String {
    let mut id = [0u8; 16];
    // The system RNG does not fail on Linux; an all-zero id would only collide with itself.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
    hex::encode(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_answers_carry_the_assignment_type() {
        let p = parse_poll_answer(
            br#"{"device_id":"d","poll_interval_secs":30,"assignment":null}"#,
            "d",
        )
        .unwrap();
        assert_eq!(p.interval_secs, Some(30));
        assert_eq!(p.assignment, None);
        for (ty, kind) in [
            ("", UpdateKind::Forced),
            (r#","type":"forced""#, UpdateKind::Forced),
            (r#","type":"soft""#, UpdateKind::Soft),
            (r#","type":"download_only""#, UpdateKind::DownloadOnly),
        ] {
            let body = format!(
                r#"{{"device_id":"d","assignment":{{"id":"a","target":"t","director_version":2{ty}}}}}"#
            );
            let a = parse_poll_answer(body.as_bytes(), "d")
                .unwrap()
                .assignment
                .unwrap();
            assert_eq!((a.id.as_str(), a.target.as_str(), a.kind), ("a", "t", kind));
        }
        let unknown = br#"{"device_id":"d","assignment":{"id":"a","target":"t","director_version":2,"type":"later"}}"#;
        assert!(
            parse_poll_answer(unknown, "d")
                .unwrap_err()
                .contains("unknown assignment type")
        );
        let err =
            parse_poll_answer(br#"{"device_id":"other","assignment":null}"#, "d").unwrap_err();
        assert!(err.contains("certificate says"), "{err}");
        assert!(parse_poll_answer(b"junk", "d").is_err());
    }
}
