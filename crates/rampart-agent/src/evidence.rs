//! Forensic evidence on the device (issue 16): when a poll answer carries an
//! [`EvidenceRequest`], the agent collects a `rampart-evidence/1` bundle
//! ([`rampart_incident::evidence`]), signs it with its device key, binds it to a TPM quote when
//! it has a TPM, keeps it in the state directory and uploads it in resumable chunks.
//!
//! What a bundle holds, most important first (what does not fit the request's `max_bytes` is
//! left out and named in `omitted.txt`; text excerpts are cut instead):
//! - `slots/hashes.json`: SHA-256 and length of both slots, read now (not the state file's word);
//! - `bootloader/environment.txt`: the bootloader backend's variables;
//! - `state/agent-state.json`, `state/security-version`, `tpm/boot-measurements` (this boot's
//!   measurement log), and the trusted metadata files under `state/metadata/` and
//!   `state/director/`;
//! - `agent-log/agent.log[.N]`: the hash-chained agent log (whole files; their records chain in
//!   the order `.N` ... `.1`, then `agent.log`), which ends with an anchor made for this bundle;
//!   the manifest's `agent_log_head` is its last record;
//! - `journal/journalctl.txt`: `journalctl -n N -o short-iso` (or `journal/unavailable.txt`
//!   saying why there is none);
//! - `commands/NN-NAME.txt`: each configured command's exit status and output, bounded in time
//!   and bytes.
//!
//! The bundle is kept (`<state_dir>/evidence/<id>.bundle`, written through the
//! [`crate::disk::Disk`]) until the server says the upload is complete, so a restart resumes
//! the upload rather than collecting again: the evidence stays the one collected when asked.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rampart_boot::ab::Slot;
use rampart_incident::agent_log::Level;
use rampart_incident::device_signature::{DeviceSignature, SignatureAlgorithm};
use rampart_incident::evidence::{Bundle, Manifest, QuoteParts};
use rampart_protocol::{EvidenceComplete, EvidenceProgress, EvidenceRequest};
use rustls::SignatureScheme;
use rustls::sign::SigningKey;

use crate::agent_log::AgentLog;
use crate::config::EvidenceConfig;
use crate::device::Device;
use crate::disk::{Disk, DiskError};
use crate::health::{Keep, capture};
use crate::platform::Platform;
use crate::server_client::ServerClient;

/// The largest bundle the agent builds, whatever a request allows.
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;
/// The smallest `max_bytes` a request may give (the manifest, certificate and signatures alone
/// take a few KiB).
pub const MIN_BUNDLE_BYTES: u64 = 16 * 1024;
/// The largest chunk sent in one PUT, whatever a request allows.
pub const MAX_CHUNK_BYTES: u64 = 8 << 20;
/// Collected bundles waiting for upload at most; a request beyond them is refused.
pub const MAX_PENDING: usize = 4;
/// The longest metadata file copied into a bundle.
const MAX_STATE_FILE_BYTES: u64 = 1 << 20;
/// Room kept for the manifest, certificate, signature and quote, per bundle and per item.
const RESERVE_BYTES: u64 = 8 * 1024;
const RESERVE_PER_ITEM: u64 = 256;
/// The directory of pending bundles in the state directory.
pub const EVIDENCE_DIR: &str = "evidence";

/// Why evidence could not be collected or uploaded.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    #[error("the server's evidence request is malformed: {0}")]
    Request(String),
    #[error("the device key could not sign the evidence: {0}")]
    Sign(String),
    #[error("the TPM could not quote the evidence: {0}")]
    Quote(String),
    #[error("{0}")]
    Disk(#[from] DiskError),
    #[error("{0}")]
    Log(#[from] crate::agent_log::AgentLogError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{MAX_PENDING} evidence bundles already wait for upload; request {0} is refused until they are uploaded"
    )]
    TooManyPending(String),
    #[error("the bundle does not fit the request's {max} bytes even with only its required items")]
    TooLarge { max: u64 },
    #[error("uploading evidence {id}: {reason}")]
    Upload { id: String, reason: String },
    #[error("the server refused evidence {id} for good ({reason}); the bundle is dropped")]
    Refused { id: String, reason: String },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> EvidenceError + '_ {
    move |source| EvidenceError::Io {
        path: path.display().to_string(),
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// The device key
// ---------------------------------------------------------------------------------------------

/// The device's TLS key (a PEM file, a PKCS#11 token key or the TPM's key, as rustls signs
/// with it) and its certificate: what signs bundles and log anchors.
#[derive(Clone)]
pub struct DeviceKey {
    key: Arc<dyn SigningKey>,
    certificate: Vec<u8>,
}

/// The schemes tried, in order: what device keys are (ECDSA, Ed25519), then RSA with PSS.
const SCHEMES: [(SignatureScheme, SignatureAlgorithm); 9] = [
    (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        SignatureAlgorithm::EcdsaP256Sha256,
    ),
    (
        SignatureScheme::ECDSA_NISTP384_SHA384,
        SignatureAlgorithm::EcdsaP384Sha384,
    ),
    (SignatureScheme::ED25519, SignatureAlgorithm::Ed25519),
    (
        SignatureScheme::RSA_PSS_SHA256,
        SignatureAlgorithm::RsaPssSha256,
    ),
    (
        SignatureScheme::RSA_PSS_SHA384,
        SignatureAlgorithm::RsaPssSha384,
    ),
    (
        SignatureScheme::RSA_PSS_SHA512,
        SignatureAlgorithm::RsaPssSha512,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA256,
        SignatureAlgorithm::RsaPkcs1Sha256,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA384,
        SignatureAlgorithm::RsaPkcs1Sha384,
    ),
    (
        SignatureScheme::RSA_PKCS1_SHA512,
        SignatureAlgorithm::RsaPkcs1Sha512,
    ),
];

impl DeviceKey {
    /// The key and the device certificate (DER) it belongs to (see
    /// [`crate::tls::device_signing_key`]).
    pub fn new(key: Arc<dyn SigningKey>, certificate_der: Vec<u8>) -> DeviceKey {
        DeviceKey {
            key,
            certificate: certificate_der,
        }
    }

    /// The device key of a PEM certificate and key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<DeviceKey, crate::tls::TlsError> {
        let (key, certificate) = crate::tls::device_signing_key(
            cert_pem,
            &crate::tls::ClientKey::Pem(key_pem.to_vec()),
        )?;
        Ok(DeviceKey::new(key, certificate.to_vec()))
    }

    pub fn certificate(&self) -> &[u8] {
        &self.certificate
    }

    /// Signs `message` with the first scheme of [`SCHEMES`] the key offers.
    pub fn sign(&self, message: &[u8]) -> Result<DeviceSignature, EvidenceError> {
        let offered: Vec<SignatureScheme> = SCHEMES.iter().map(|(s, _)| *s).collect();
        let signer = self.key.choose_scheme(&offered).ok_or_else(|| {
            EvidenceError::Sign(format!(
                "the key ({:?}) signs with none of ECDSA P-256/P-384, Ed25519 or RSA",
                self.key.algorithm()
            ))
        })?;
        let algorithm = SCHEMES
            .iter()
            .find(|(s, _)| *s == signer.scheme())
            .map(|(_, a)| *a)
            .ok_or_else(|| {
                EvidenceError::Sign(format!("unexpected scheme {:?}", signer.scheme()))
            })?;
        let signature = signer
            .sign(message)
            .map_err(|e| EvidenceError::Sign(e.to_string()))?;
        Ok(DeviceSignature::new(algorithm, &signature))
    }

    /// [`DeviceKey::sign`] for the agent log's anchors.
    pub fn anchor_signer(&self) -> impl Fn(&[u8]) -> Result<DeviceSignature, String> + '_ {
        move |message| self.sign(message).map_err(|e| e.to_string())
    }
}

// ---------------------------------------------------------------------------------------------
// The upload routes
// ---------------------------------------------------------------------------------------------

/// Why an evidence route call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The server refused for good (an unknown or closed request, a refused bundle, a quota):
    /// sending the bundle again cannot succeed, so it is dropped. Otherwise (no answer, a
    /// conflict to resume from, a rate limit, the server unavailable) it is retried.
    pub terminal: bool,
    pub reason: String,
}

impl CallError {
    pub fn transient(reason: impl Into<String>) -> CallError {
        CallError {
            terminal: false,
            reason: reason.into(),
        }
    }
}

/// Whether an error answer ends the request for good: 400 (the upload is malformed: sent
/// again it stays so), 404 (no such request for this device), 410, 413 (too large, or the
/// quota is used up), 422 (the bundle was refused), and a 409 that says the request is closed
/// (used once: stored or refused). A 409 offset mismatch, 429 and 5xx are retried.
pub fn is_terminal(status: u16, code: &str) -> bool {
    matches!(status, 400 | 404 | 410 | 413 | 422)
        || (status == 409 && code == "evidence_request_closed")
}

/// The server's evidence routes, as the agent calls them: the update server through
/// [`ServerClient`], or the fleet simulator's device sessions.
pub trait EvidenceServer {
    /// `GET /device/v1/evidence/{id}`.
    fn progress(&self, id: &str) -> Result<EvidenceProgress, CallError>;
    /// `PUT /device/v1/evidence/{id}?offset=N`.
    fn put(&self, id: &str, offset: u64, chunk: &[u8]) -> Result<EvidenceProgress, CallError>;
    /// `POST /device/v1/evidence/{id}/complete`.
    fn complete(
        &self,
        id: &str,
        complete: &EvidenceComplete,
    ) -> Result<EvidenceProgress, CallError>;
}

/// Largest answer of an evidence route read.
const MAX_ANSWER_BYTES: u64 = 64 * 1024;

/// Reads an evidence route's answer: the progress, or a [`CallError`] classified by
/// [`is_terminal`] with the server's error code and detail.
fn progress_answer(
    url: &str,
    answer: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<EvidenceProgress, CallError> {
    let mut response = answer.map_err(|e| CallError::transient(format!("{url}: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| CallError::transient(format!("{url}: {e}")))?;
    if status == 200 {
        return serde_json::from_slice(&body)
            .map_err(|e| CallError::transient(format!("{url}: unexpected answer: {e}")));
    }
    let (code, detail) = match serde_json::from_slice::<rampart_protocol::ErrorDocument>(&body) {
        Ok(e) => (e.error, e.detail),
        Err(_) => (String::new(), String::from_utf8_lossy(&body).into_owned()),
    };
    let detail: String = detail
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    Err(CallError {
        terminal: is_terminal(status, &code),
        reason: format!("{url}: HTTP {status} {code}: {detail}"),
    })
}

impl EvidenceServer for ServerClient {
    fn progress(&self, id: &str) -> Result<EvidenceProgress, CallError> {
        let url = self.url(&format!("/device/v1/evidence/{id}"));
        progress_answer(&url, self.http().get(&url).call())
    }
    fn put(&self, id: &str, offset: u64, chunk: &[u8]) -> Result<EvidenceProgress, CallError> {
        let url = self.url(&format!("/device/v1/evidence/{id}?offset={offset}"));
        let sent = self
            .http()
            .put(&url)
            .header("content-type", "application/octet-stream")
            .send(chunk);
        progress_answer(&url, sent)
    }
    fn complete(
        &self,
        id: &str,
        complete: &EvidenceComplete,
    ) -> Result<EvidenceProgress, CallError> {
        let url = self.url(&format!("/device/v1/evidence/{id}/complete"));
        let body = serde_json::to_vec(complete).expect("a completion serializes");
        let sent = self
            .http()
            .post(&url)
            .header("content-type", "application/json")
            .send(&body[..]);
        progress_answer(&url, sent)
    }
}

/// How often and how patiently an upload is retried within one pass.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Failed requests tolerated before the pass gives up (the bundle stays pending).
    pub attempts: u32,
    /// The first wait; doubled after each failure, up to `max`.
    pub base: Duration,
    pub max: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 6,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
        }
    }
}

/// Uploads `bundle` for `request`: asks how much the server holds, sends the rest in chunks
/// of the request's `chunk_bytes` from there, then completes it. A failed request is retried
/// after a growing wait, resuming from what the server says it holds; after `retry.attempts`
/// failures the error is returned (the caller keeps the bundle for the next pass).
pub fn upload(
    server: &dyn EvidenceServer,
    request: &EvidenceRequest,
    bundle: &[u8],
    retry: Retry,
) -> Result<EvidenceProgress, EvidenceError> {
    let id = request.id.as_str();
    let chunk = chunk_size(request)?;
    let sha256 = hex::encode(rampart_incident::device_signature::sha256(bundle));
    let length = bundle.len() as u64;
    let mut failures = 0u32;
    let mut fail = |error: CallError| -> Result<(), EvidenceError> {
        if error.terminal {
            return Err(EvidenceError::Refused {
                id: id.to_owned(),
                reason: error.reason,
            });
        }
        let reason = error.reason;
        failures += 1;
        if failures >= retry.attempts {
            return Err(EvidenceError::Upload {
                id: id.to_owned(),
                reason: format!(
                    "{reason} (gave up after {failures} failed requests; the bundle is kept for the next pass)"
                ),
            });
        }
        let wait = retry
            .base
            .saturating_mul(1 << (failures - 1).min(16))
            .min(retry.max);
        std::thread::sleep(wait);
        Ok(())
    };
    loop {
        let progress = match server.progress(id) {
            Ok(p) => p,
            Err(e) => {
                fail(e)?;
                continue;
            }
        };
        if progress.complete {
            return match progress.sha256.as_deref() {
                Some(h) if h != sha256 => Err(EvidenceError::Refused {
                    id: id.to_owned(),
                    reason: format!(
                        "the server completed another bundle ({h}) under this id; this one is {sha256}"
                    ),
                }),
                _ => Ok(progress),
            };
        }
        if progress.received > length {
            return Err(EvidenceError::Refused {
                id: id.to_owned(),
                reason: format!(
                    "the server holds {} bytes, more than the bundle's {length}",
                    progress.received
                ),
            });
        }
        let mut offset = progress.received;
        let mut broke = None;
        while offset < length {
            let end = (offset + chunk).min(length);
            match server.put(id, offset, &bundle[offset as usize..end as usize]) {
                Ok(p) if p.received == end => offset = end,
                Ok(p) => {
                    broke = Some(CallError::transient(format!(
                        "after a chunk up to byte {end} the server holds {} bytes",
                        p.received
                    )));
                    break;
                }
                Err(e) => {
                    broke = Some(e);
                    break;
                }
            }
        }
        if let Some(error) = broke {
            fail(error)?;
            continue;
        }
        match server.complete(
            id,
            &EvidenceComplete {
                length,
                sha256: sha256.clone(),
            },
        ) {
            Ok(p) if p.complete => return Ok(p),
            Ok(_) => fail(CallError::transient(
                "the server did not mark the upload complete",
            ))?,
            Err(e) => fail(e)?,
        }
    }
}

fn chunk_size(request: &EvidenceRequest) -> Result<u64, EvidenceError> {
    if request.chunk_bytes == 0 {
        return Err(EvidenceError::Request("chunk_bytes is 0".into()));
    }
    Ok(request.chunk_bytes.min(MAX_CHUNK_BYTES))
}

// ---------------------------------------------------------------------------------------------
// Pending bundles
// ---------------------------------------------------------------------------------------------

/// A collected bundle waiting for its upload to complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub request: EvidenceRequest,
    pub bundle: Vec<u8>,
}

/// Where pending bundles are kept: the state directory on a device, memory in the simulator.
pub trait PendingStore {
    /// Every pending bundle.
    fn pending(&self) -> Result<Vec<Pending>, EvidenceError>;
    /// Keeps a collected bundle (durably before it returns).
    fn keep(&mut self, pending: &Pending) -> Result<(), EvidenceError>;
    /// Drops an uploaded bundle.
    fn drop_uploaded(&mut self, id: &str) -> Result<(), EvidenceError>;
}

/// Pending bundles in `<state_dir>/evidence/`: `<id>.bundle`, then `<id>.request.json` (written
/// second, so a request file always has its whole bundle beside it).
pub struct StateDirStore<'a> {
    dir: PathBuf,
    disk: &'a Disk,
}

impl<'a> StateDirStore<'a> {
    pub fn new(state_dir: &Path, disk: &'a Disk) -> StateDirStore<'a> {
        StateDirStore {
            dir: state_dir.join(EVIDENCE_DIR),
            disk,
        }
    }

    fn paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{id}.bundle")),
            self.dir.join(format!("{id}.request.json")),
        )
    }
}

impl PendingStore for StateDirStore<'_> {
    fn pending(&self) -> Result<Vec<Pending>, EvidenceError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&self.dir)(e)),
        };
        let mut pending = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_error(&self.dir))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(id) = name.strip_suffix(".request.json") else {
                continue;
            };
            let text = read_bounded(&path, 64 * 1024)?;
            let request: EvidenceRequest = serde_json::from_slice(&text).map_err(|e| {
                EvidenceError::Request(format!("{} is not a request: {e}", path.display()))
            })?;
            if request.id != id {
                continue;
            }
            let (bundle_path, _) = self.paths(id);
            let bundle = read_bounded(&bundle_path, MAX_BUNDLE_BYTES)?;
            pending.push(Pending { request, bundle });
        }
        pending.sort_by(|a, b| a.request.id.cmp(&b.request.id));
        Ok(pending)
    }

    fn keep(&mut self, pending: &Pending) -> Result<(), EvidenceError> {
        std::fs::create_dir_all(&self.dir).map_err(io_error(&self.dir))?;
        let (bundle, request) = self.paths(&pending.request.id);
        self.disk.replace_file(&bundle, &pending.bundle)?;
        let text = serde_json::to_vec(&pending.request).expect("a request serializes");
        self.disk.replace_file(&request, &text)?;
        Ok(())
    }

    fn drop_uploaded(&mut self, id: &str) -> Result<(), EvidenceError> {
        let (bundle, request) = self.paths(id);
        // The request file first: a bundle without one is an orphan, never half a pending.
        for path in [request, bundle] {
            if path.exists() {
                self.disk.remove_file(&path)?;
            }
        }
        Ok(())
    }
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, EvidenceError> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io_error(path))?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(path))?;
    if bytes.len() as u64 > limit {
        return Err(EvidenceError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other(format!("larger than {limit} bytes")),
        });
    }
    Ok(bytes)
}

// ---------------------------------------------------------------------------------------------
// Collection
// ---------------------------------------------------------------------------------------------

/// Checks what the agent uses of a request before acting on it: an id usable as a file name
/// and URL segment, a hex nonce a TPM can quote over, sizes it can honour.
pub fn check_request(request: &EvidenceRequest) -> Result<(), EvidenceError> {
    let id = &request.id;
    if id.is_empty()
        || id.len() > 128
        || id.starts_with('.')
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(EvidenceError::Request(format!(
            "id {:?} is not 1-128 characters of A-Z a-z 0-9 - _ . (not starting with .)",
            id.chars().take(64).collect::<String>()
        )));
    }
    let nonce = hex::decode(&request.nonce)
        .map_err(|e| EvidenceError::Request(format!("the nonce is not hex: {e}")))?;
    if nonce.is_empty() || nonce.len() > 64 {
        return Err(EvidenceError::Request(format!(
            "the nonce is {} bytes; 1 to 64 are accepted",
            nonce.len()
        )));
    }
    if request.incident.len() > rampart_incident::evidence::MAX_FIELD_BYTES {
        return Err(EvidenceError::Request("the incident id is too long".into()));
    }
    if request.max_bytes < MIN_BUNDLE_BYTES {
        return Err(EvidenceError::Request(format!(
            "max_bytes {} is below the {MIN_BUNDLE_BYTES} a bundle needs",
            request.max_bytes
        )));
    }
    chunk_size(request)?;
    Ok(())
}

/// How an item that does not fit may be shortened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// Whole or not at all.
    Never,
    /// A text excerpt: its head is kept, with a note.
    KeepHead,
    /// An agent log file: its last whole lines are kept (a run of records that still chains,
    /// ending at the head); never a part of a line.
    KeepLastLines,
}

/// An item that may go into a bundle.
struct Candidate {
    name: String,
    bytes: Vec<u8>,
    cut: Cut,
}

impl Candidate {
    fn whole(name: impl Into<String>, bytes: Vec<u8>) -> Candidate {
        Candidate {
            name: name.into(),
            bytes,
            cut: Cut::Never,
        }
    }
    fn text(name: impl Into<String>, bytes: Vec<u8>) -> Candidate {
        Candidate {
            name: name.into(),
            bytes,
            cut: Cut::KeepHead,
        }
    }
}

/// Collects, signs (and with a TPM, quotes) a bundle answering `request`. The agent log gets a
/// record of the request and a fresh anchor first, so the bundle's log ends with an anchor made
/// for it.
pub fn collect<P: Platform>(
    device: &mut Device<P>,
    log: &mut AgentLog,
    key: &DeviceKey,
    device_id: &str,
    request: &EvidenceRequest,
    collected_at: i64,
) -> Result<Vec<u8>, EvidenceError> {
    check_request(request)?;
    log.append(
        Level::Warn,
        &format!(
            "collecting evidence {} for incident {}",
            request.id, request.incident
        ),
    )?;
    log.anchor(device_id, &key.anchor_signer())?;
    let head = log
        .head()
        .cloned()
        .expect("the log has a record: one was just written");
    let candidates = gather(device, log)?;
    let max = request.max_bytes.min(MAX_BUNDLE_BYTES);
    let items = fit(candidates, max, key.certificate().len() as u64);
    let manifest = Manifest::new(
        device_id,
        &request.id,
        &request.incident,
        &request.nonce.to_ascii_lowercase(),
        collected_at,
        env!("CARGO_PKG_VERSION"),
        &items,
        head,
    );
    let signature = key.sign(&manifest.signing_message())?;
    let quote = match device.platform.tpm() {
        Some(tpm) => {
            let data = manifest
                .quote_qualifying_data()
                .map_err(|e| EvidenceError::Request(e.to_string()))?;
            let agent_pcr = device
                .config
                .tpm
                .as_ref()
                .map_or(crate::config::DEFAULT_AGENT_PCR, |t| t.pcr);
            let mut pcrs: Vec<u8> = (0..8).collect();
            if !pcrs.contains(&agent_pcr) {
                pcrs.push(agent_pcr);
            }
            let q = tpm
                .quote(&data, &pcrs)
                .map_err(|e| EvidenceError::Quote(e.to_string()))?;
            Some(QuoteParts {
                message: q.message,
                signature: q.signature,
                pcrs: q.pcrs,
            })
        }
        None => None,
    };
    let bundle = Bundle {
        manifest,
        items,
        signature,
        certificate: key.certificate().to_vec(),
        quote,
    }
    .to_bytes();
    if bundle.len() as u64 > max {
        return Err(EvidenceError::TooLarge { max });
    }
    Ok(bundle)
}

/// Everything a bundle may hold, most important first.
fn gather<P: Platform>(
    device: &mut Device<P>,
    log: &AgentLog,
) -> Result<Vec<Candidate>, EvidenceError> {
    let config = device.config.clone();
    let mut out = Vec::new();

    let mut slots = serde_json::Map::new();
    for slot in [Slot::A, Slot::B] {
        let value = match device.platform.hash_slot(&config, slot) {
            Ok((hash, length)) => serde_json::json!({
                "sha256": hex::encode(hash),
                "length": length,
                "medium": device.platform.describe_slot(&config, slot),
            }),
            Err(e) => serde_json::json!({"error": e}),
        };
        slots.insert(slot.name().to_owned(), value);
    }
    out.push(Candidate::whole(
        "slots/hashes.json",
        serde_json::to_vec_pretty(&slots).expect("JSON serializes"),
    ));

    let environment = device
        .platform
        .bootloader()
        .environment()
        .unwrap_or_else(|e| format!("the bootloader environment could not be read: {e}\n"));
    out.push(Candidate::whole(
        "bootloader/environment.txt",
        environment.into_bytes(),
    ));

    let state = match device.load_state() {
        Ok(s) => serde_json::to_vec_pretty(&s).expect("the agent state serializes"),
        Err(r) => format!("the agent state could not be read: {}\n", r.detail).into_bytes(),
    };
    out.push(Candidate::whole("state/agent-state.json", state));
    let floor = match device.security_version() {
        Ok(v) => format!("{v}\n"),
        Err(r) => format!(
            "the anti-rollback counter could not be read: {}\n",
            r.detail
        ),
    };
    out.push(Candidate::whole(
        "state/security-version",
        floor.into_bytes(),
    ));

    // The agent log, newest file first (so the file with the fresh anchor fits first); put
    // back in chain order by `fit`.
    for file in log.files().iter().rev() {
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("agent.log");
        let bytes = std::fs::read(file).map_err(io_error(file))?;
        out.push(Candidate {
            name: format!("agent-log/{name}"),
            bytes,
            cut: Cut::KeepLastLines,
        });
    }

    if let Ok(boot_id) = device.boot_id()
        && let Ok(Some(measurements)) = device.platform.boot_log(&config, &boot_id)
    {
        out.push(Candidate::whole("tpm/boot-measurements", measurements));
    }
    for sub in ["metadata", crate::director::DIRECTOR_DIR] {
        out.extend(metadata_files(&config.state_dir.join(sub), sub));
    }

    out.push(journal(&config.evidence));
    for (n, argv) in config.evidence.commands.iter().enumerate() {
        out.push(command_output(n, argv, &config.evidence));
    }
    Ok(out)
}

/// The JSON files directly in `dir` (trusted TUF metadata), as `state/<sub>/<name>`.
fn metadata_files(dir: &Path, sub: &str) -> Vec<Candidate> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<Candidate> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_owned();
            let safe = rampart_incident::evidence::check_name(&name).is_ok();
            if !safe || !name.ends_with(".json") || !e.file_type().ok()?.is_file() {
                return None;
            }
            let bytes = read_bounded(&e.path(), MAX_STATE_FILE_BYTES).ok()?;
            Some(Candidate::whole(format!("state/{sub}/{name}"), bytes))
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

/// The system journal's last lines, or why there are none.
fn journal(config: &EvidenceConfig) -> Candidate {
    if config.journal_lines == 0 {
        return Candidate::whole(
            "journal/unavailable.txt",
            b"no journal excerpt: evidence.journal_lines = 0 in the agent configuration\n".to_vec(),
        );
    }
    let argv: Vec<String> = [
        "journalctl",
        "--no-pager",
        "-n",
        &config.journal_lines.to_string(),
        "-o",
        "short-iso",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let until = Instant::now() + Duration::from_secs(config.command_timeout_secs.max(1));
    match capture(&argv, until, config.journal_max_bytes as usize, Keep::Tail) {
        Ok(c) if c.status.is_some_and(|s| s.success()) => {
            Candidate::text("journal/journalctl.txt", c.stdout)
        }
        Ok(c) => Candidate::whole(
            "journal/unavailable.txt",
            format!(
                "journalctl did not give an excerpt ({}): {}\n",
                describe_status(c.status),
                String::from_utf8_lossy(&c.stderr).trim()
            )
            .into_bytes(),
        ),
        Err(e) => Candidate::whole(
            "journal/unavailable.txt",
            format!("journalctl could not run on this device ({e}): no system journal excerpt\n")
                .into_bytes(),
        ),
    }
}

fn describe_status(status: Option<std::process::ExitStatus>) -> String {
    match status {
        Some(s) => s.to_string(),
        None => "killed at the time limit".into(),
    }
}

/// A configured command's exit status and output (stdout, then stderr).
fn command_output(n: usize, argv: &[String], config: &EvidenceConfig) -> Candidate {
    let program: String = Path::new(&argv[0])
        .file_name()
        .and_then(|s| s.to_str())
        .unwrap_or("command")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let name = format!("commands/{n:02}-{program}.txt");
    let until = Instant::now() + Duration::from_secs(config.command_timeout_secs);
    let mut text = format!("$ {}\n", argv.join(" ")).into_bytes();
    match capture(argv, until, config.command_max_bytes as usize, Keep::Head) {
        Ok(c) => {
            text.extend(format!("# {}\n", describe_status(c.status)).into_bytes());
            text.extend(c.stdout);
            if !c.stderr.is_empty() {
                text.extend(b"\n# stderr\n");
                text.extend(c.stderr);
            }
            if c.cut {
                text.extend(
                    format!(
                        "\n# output cut at {} bytes (evidence.command_max_bytes)\n",
                        config.command_max_bytes
                    )
                    .into_bytes(),
                );
            }
        }
        Err(e) => text.extend(format!("# could not run: {e}\n").into_bytes()),
    }
    Candidate::text(name, text)
}

/// The candidates that fit `max` bundle bytes, in bundle order (agent log files in chain
/// order), with `omitted.txt` naming what did not fit. Sizes are counted as base64.
fn fit(candidates: Vec<Candidate>, max: u64, certificate_len: u64) -> Vec<(String, Vec<u8>)> {
    let reserve =
        RESERVE_BYTES + RESERVE_PER_ITEM * (candidates.len() as u64 + 1) + certificate_len * 4 / 3;
    let mut room = max.saturating_sub(reserve) / 4 * 3;
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    let mut omitted = Vec::new();
    for mut c in candidates {
        let len = c.bytes.len() as u64;
        if len <= room {
            room -= len;
            kept.push((c.name, c.bytes));
            continue;
        }
        match c.cut {
            Cut::KeepHead if room > 256 => {
                let keep = room - 128;
                c.bytes.truncate(keep as usize);
                c.bytes.extend(
                    format!("\n# cut at {keep} of {len} bytes to fit the bundle\n").into_bytes(),
                );
                room = room.saturating_sub(c.bytes.len() as u64);
                kept.push((c.name, c.bytes));
            }
            Cut::KeepLastLines if room > 0 => {
                // The first line start at or after `len - room`.
                let from = (len - room) as usize;
                let start = match c.bytes[from - 1..].iter().position(|b| *b == b'\n') {
                    Some(i) => from + i,
                    None => c.bytes.len(),
                };
                if start < c.bytes.len() {
                    omitted.push(format!(
                        "{}: its first {start} bytes (older records)",
                        c.name
                    ));
                    let tail = c.bytes.split_off(start);
                    room -= tail.len() as u64;
                    kept.push((c.name, tail));
                } else {
                    omitted.push(format!("{} ({len} bytes)", c.name));
                }
            }
            _ => omitted.push(format!("{} ({len} bytes)", c.name)),
        }
    }
    // Agent log files back into chain order: rotated ones oldest (highest number) first, the
    // current file last.
    let log_order = |name: &str| -> Option<i64> {
        let file = name.strip_prefix("agent-log/")?;
        Some(match file.strip_prefix("agent.log.") {
            Some(n) => -n.parse::<i64>().ok()?,
            None => 0,
        })
    };
    let mut logs: Vec<(String, Vec<u8>)> = Vec::new();
    kept.retain(|(name, bytes)| {
        if log_order(name).is_some() {
            logs.push((name.clone(), bytes.clone()));
            false
        } else {
            true
        }
    });
    logs.sort_by_key(|(name, _)| log_order(name));
    kept.extend(logs);
    if !omitted.is_empty() {
        kept.push((
            "omitted.txt".into(),
            format!(
                "left out to fit the request's {max} bytes:\n{}\n",
                omitted.join("\n")
            )
            .into_bytes(),
        ));
    }
    kept
}

/// What [`answer`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Requests collected now.
    pub collected: Vec<String>,
    /// Uploads completed now.
    pub uploaded: Vec<String>,
    /// Failures, one line each (the bundles concerned stay pending).
    pub failed: Vec<String>,
}

/// Answers the poll's evidence request (if any: collected once per request id, then kept) and
/// uploads every pending bundle. Everything is written to the agent log (nothing is printed:
/// the caller says what it wants from [`Answered`]); failures leave the bundle pending for the
/// next pass.
#[allow(clippy::too_many_arguments)]
pub fn answer<P: Platform>(
    device: &mut Device<P>,
    log: &mut AgentLog,
    key: &DeviceKey,
    device_id: &str,
    store: &mut dyn PendingStore,
    server: &dyn EvidenceServer,
    request: Option<&EvidenceRequest>,
    retry: Retry,
    now_unix: i64,
) -> Answered {
    let mut done = Answered::default();
    let mut failed = |log: &mut AgentLog, line: String| {
        if let Err(e) = log.append(Level::Error, &line) {
            done.failed.push(e.to_string());
        }
        done.failed.push(line);
    };
    let pending = match store.pending() {
        Ok(p) => p,
        Err(e) => {
            failed(log, format!("pending evidence could not be read: {e}"));
            return done;
        }
    };
    let mut pending = pending;
    if let Some(request) = request
        && !pending.iter().any(|p| p.request.id == request.id)
    {
        let outcome = if pending.len() >= MAX_PENDING {
            Err(EvidenceError::TooManyPending(request.id.clone()))
        } else {
            collect(device, log, key, device_id, request, now_unix).and_then(|bundle| {
                let p = Pending {
                    request: request.clone(),
                    bundle,
                };
                store.keep(&p)?;
                Ok(p)
            })
        };
        match outcome {
            Ok(p) => {
                // Already in the log: the request's record and its anchor precede the bundle.
                let _ = log.append(
                    Level::Info,
                    &format!(
                        "evidence {} collected ({} bytes)",
                        p.request.id,
                        p.bundle.len()
                    ),
                );
                done.collected.push(p.request.id.clone());
                pending.push(p);
            }
            Err(e) => failed(log, format!("evidence {}: {e}", request.id)),
        }
    }
    for p in pending {
        let id = p.request.id.clone();
        match upload(server, &p.request, &p.bundle, retry) {
            Ok(progress) => {
                if let Err(e) = store.drop_uploaded(&id) {
                    failed(log, format!("evidence {id} uploaded but not dropped: {e}"));
                }
                let _ = log.append(
                    Level::Info,
                    &format!(
                        "evidence {id} uploaded (sha256 {})",
                        progress.sha256.as_deref().unwrap_or("not given")
                    ),
                );
                done.uploaded.push(id);
            }
            Err(e @ EvidenceError::Refused { .. }) => {
                if let Err(dropped) = store.drop_uploaded(&id) {
                    failed(
                        log,
                        format!("evidence {id} could not be dropped: {dropped}"),
                    );
                }
                failed(log, e.to_string());
            }
            Err(e) => failed(log, e.to_string()),
        }
    }
    done
}

#[cfg(test)]
pub(crate) mod tests;
