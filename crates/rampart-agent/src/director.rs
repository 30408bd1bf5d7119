//! Updating through the Rampart update server, with Uptane-style full verification.
//!
//! Over mutual TLS (the device's certificate is its identity), [`update`]:
//!
//! 1. polls `POST /device/v1/poll`; nothing assigned → done;
//! 2. moves the pinned director root forward through `GET /device/v1/director/{N}.root.json`
//!    (each must be signed by the old and new root thresholds), then fetches
//!    `GET /device/v1/director/targets.json` and verifies it: threshold of the director's
//!    `targets` role, not expired, version not below the one this device accepted, bound to
//!    this device's id (from its own certificate, never from the server);
//! 3. refreshes the image repository through `/device/v1/repo/metadata/` with the TUF client;
//! 4. checks agreement: every director target must be in the image repository with the same
//!    length and hashes, built for this hardware, not below the installed security version (and
//!    in the transparency log when the device was provisioned with a log policy);
//! 5. records the accepted director version (write, fsync, rename) so an older one is refused
//!    from then on;
//! 6. downloads the artifact from `/device/v1/repo/targets/`, resuming a partial download
//!    (`<out>.part`) with `Range` and `If-Range`, and verifies the whole file's length and
//!    hashes before renaming it to `<out>`.
//!
//! Installing into a slot is not done here: it stops at a verified artifact on disk.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use rampart_core::TufError;
use rampart_core::director::{DirectorError, DirectorTrust, check_agreement};
use rampart_core::metadata::TargetFile;
use rampart_core::release::{ReleaseError, ReleaseInfo};
use rampart_core::verify::StreamingCheck;
use rampart_tuf_client::fetch::copy_limited;
use rampart_tuf_client::store::write_atomic;
use rampart_tuf_client::{
    ClientError, FetchError, Fetcher as _, HttpFetcher, Limits, Updater, UpdaterConfig,
};
use serde::Deserialize;

/// Directory (inside the state directory) of the director state.
pub const DIRECTOR_DIR: &str = "director";
/// The pinned, possibly rotated, director root.
pub const DIRECTOR_ROOT: &str = "root.json";
/// The last director targets metadata the device accepted, and its version.
pub const DIRECTOR_TARGETS: &str = "targets.json";
pub const DIRECTOR_VERSION: &str = "version";

/// Director roots fetched in one update at most.
const MAX_ROOT_ROTATIONS: u64 = 32;
/// Largest director root, director targets metadata and poll answer accepted.
const MAX_ROOT_BYTES: u64 = 512_000;
const MAX_DIRECTOR_TARGETS_BYTES: u64 = 5_000_000;
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
    let text = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(v) if v["error"].is_string() => format!(
            "{}: {}",
            v["error"].as_str().unwrap_or_default(),
            v["detail"].as_str().unwrap_or_default()
        ),
        _ => String::from_utf8_lossy(body).into_owned(),
    };
    text.chars()
        .filter(|c| !c.is_control())
        .take(MAX_REFUSAL_CHARS)
        .collect()
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> UpdateError + '_ {
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
}

/// How a device treats an assignment: the poll answer's `assignment.type`, set by the
/// operator per assignment or campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpdateKind {
    /// Install and reboot as soon as it is verified (also when the server sends no type).
    #[default]
    Forced,
    /// Install when the device allows it now (`install.soft_check`); otherwise wait for a
    /// later poll.
    Soft,
    /// Download and verify into the inactive slot, report `downloaded`, do not activate: a
    /// later forced or soft assignment of the same release activates it without downloading
    /// it again.
    DownloadOnly,
}

impl UpdateKind {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateKind::Forced => "forced",
            UpdateKind::Soft => "soft",
            UpdateKind::DownloadOnly => "download_only",
        }
    }

    /// Reads the wire spelling; absent means forced (servers that predate the field).
    pub fn parse(s: Option<&str>) -> Result<UpdateKind, String> {
        match s {
            None | Some("forced") => Ok(UpdateKind::Forced),
            Some("soft") => Ok(UpdateKind::Soft),
            Some("download_only") => Ok(UpdateKind::DownloadOnly),
            Some(other) => Err(format!(
                "unknown assignment type {other:?} (expected forced, soft or download_only); not acting on it"
            )),
        }
    }
}

/// What the server's poll answer assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub id: String,
    pub target: String,
    pub director_version: u64,
    pub kind: UpdateKind,
}

#[derive(Deserialize)]
struct PollAnswer {
    device_id: String,
    #[serde(default)]
    poll_interval_secs: Option<u64>,
    assignment: Option<WireAssignment>,
}

#[derive(Deserialize)]
struct WireAssignment {
    id: String,
    target: String,
    director_version: u64,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

/// The server's answer to a poll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub assignment: Option<Assignment>,
    /// How long the server asks the device to wait before the next poll.
    pub interval_secs: Option<u64>,
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
    let assignment = match answer.assignment {
        None => None,
        Some(a) => Some(Assignment {
            kind: UpdateKind::parse(a.kind.as_deref())?,
            id: a.id,
            target: a.target,
            director_version: a.director_version,
        }),
    };
    Ok(Poll {
        assignment,
        interval_secs: answer.poll_interval_secs,
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
        })
    }

    /// A client over an already configured fetcher (e.g. [`crate::tls::device_agent`], for a
    /// key on a PKCS#11 token) for the device `device_id`.
    pub fn from_fetcher(base_url: &str, fetcher: HttpFetcher, device_id: String) -> Self {
        ServerClient {
            base: base_url.trim_end_matches('/').to_owned(),
            device_id,
            fetcher,
        }
    }

    /// This device's id, from its certificate.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn server_error(&self, url: &str, reason: impl ToString) -> UpdateError {
        UpdateError::Server {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }

    /// Asks the server what to install.
    pub fn poll(&self) -> Result<Option<Assignment>, UpdateError> {
        Ok(self.poll_with(&serde_json::json!({}))?.assignment)
    }

    /// Polls, telling the server this device's facts (hardware id, versions, slots; see the
    /// device API).
    pub fn poll_with(&self, facts: &serde_json::Value) -> Result<Poll, UpdateError> {
        let url = self.url("/device/v1/poll");
        let mut response = self
            .fetcher
            .agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(facts.to_string().as_bytes())
            .map_err(|e| self.server_error(&url, e))?;
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
        parse_poll_answer(&body, &self.device_id).map_err(|e| self.server_error(&url, e))
    }

    /// Best-effort status report (the update's outcome does not depend on it).
    pub fn report(&self, assignment: &str, status: &str, details: serde_json::Value) {
        if let Err(e) = self.send_report(&random_id(), status, Some(assignment), None, details) {
            eprintln!("could not report {status}: {e}");
        }
    }

    /// Sends one report; `Ok` once the server stored it (201, or 200 for a resent one).
    pub fn send_report(
        &self,
        id: &str,
        status: &str,
        assignment: Option<&str>,
        progress: Option<u8>,
        details: serde_json::Value,
    ) -> Result<(), UpdateError> {
        let url = self.url("/device/v1/reports");
        let mut body = serde_json::json!({
            "id": id,
            "status": status,
            "details": details,
        });
        if let Some(a) = assignment {
            body["assignment"] = a.into();
        }
        if let Some(p) = progress {
            body["progress"] = p.into();
        }
        let mut response = self
            .fetcher
            .agent()
            .post(&url)
            .header("content-type", "application/json")
            .send(body.to_string().as_bytes())
            .map_err(|e| self.server_error(&url, e))?;
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

    /// The HTTP agent (mutual TLS) for downloads.
    pub fn http(&self) -> &ureq::Agent {
        self.fetcher.agent()
    }

    /// The minimum transfer rate downloads must keep.
    pub fn min_rate(&self) -> rampart_tuf_client::fetch::MinRate {
        self.fetcher.min_rate()
    }

    /// GET a small file; `None` for 404/403.
    fn get(&self, path: &str, limit: u64) -> Result<Option<Vec<u8>>, UpdateError> {
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

/// The director version this device last accepted, if any.
pub fn accepted_director_version(state: &Path) -> Result<Option<u64>, UpdateError> {
    let path = state.join(DIRECTOR_DIR).join(DIRECTOR_VERSION);
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map(Some).map_err(|_| UpdateError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other("not a number"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// The security version the device runs, from `<state>/security-version` (0 if absent).
pub fn installed_security_version(state: &Path) -> Result<u64, UpdateError> {
    let path = state.join("security-version");
    match std::fs::read_to_string(&path) {
        Ok(s) => s.trim().parse().map_err(|_| UpdateError::Io {
            path: path.display().to_string(),
            source: std::io::Error::other("not a number"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_error(&path)(e)),
    }
}

/// Pins the director root at provisioning (refuses to replace one: it changes by rotation).
pub fn pin_director_root(state: &Path, root_bytes: &[u8]) -> Result<(), UpdateError> {
    DirectorTrust::new(root_bytes)?;
    let dir = state.join(DIRECTOR_DIR);
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let path = dir.join(DIRECTOR_ROOT);
    if path.exists() {
        return Err(UpdateError::Io {
            path: path.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "a director root is already pinned; it changes only by rotation",
            ),
        });
    }
    write_atomic(&path, root_bytes).map_err(io_error(&path))
}

/// What [`update`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The server assigns nothing to this device.
    NothingAssigned,
    /// The assigned artifact was verified and is at `path`.
    Downloaded {
        target: String,
        version: String,
        director_version: u64,
        path: PathBuf,
        /// Bytes of an earlier partial download that were kept (0: downloaded from the start).
        resumed_from: u64,
        /// Whether a verified copy was already at `path` (nothing downloaded).
        already_present: bool,
    },
}

/// One update session: poll, verify director and image repository, check agreement, and
/// download the assigned artifact to `out` (see the module documentation). Verification
/// failures are also reported to the server as `verification_failed`.
pub fn update(
    state: &Path,
    client: &ServerClient,
    hardware_id: &str,
    out: &Path,
    now_unix: i64,
) -> Result<UpdateOutcome, UpdateError> {
    let Some(assignment) = client.poll()? else {
        return Ok(UpdateOutcome::NothingAssigned);
    };
    let result = update_assigned(state, client, hardware_id, out, now_unix);
    match &result {
        Ok(UpdateOutcome::Downloaded { .. }) => client.report(
            &assignment.id,
            "downloaded",
            serde_json::json!({"target": assignment.target}),
        ),
        Err(e) if e.is_verification_failure() => client.report(
            &assignment.id,
            "verification_failed",
            serde_json::json!({"target": assignment.target, "error": e.to_string()}),
        ),
        _ => {}
    }
    result
}

fn update_assigned(
    state: &Path,
    client: &ServerClient,
    hardware_id: &str,
    out: &Path,
    now_unix: i64,
) -> Result<UpdateOutcome, UpdateError> {
    let Some(v) = verify_assigned(state, client, hardware_id, now_unix)? else {
        // The director lists nothing (the assignment was cancelled after the poll).
        return Ok(UpdateOutcome::NothingAssigned);
    };
    let (resumed_from, already_present) =
        download_resumable(client, &v.url, &v.target, &v.info, out)?;
    Ok(UpdateOutcome::Downloaded {
        target: v.target,
        version: v.release.version,
        director_version: v.director_version,
        path: out.to_path_buf(),
        resumed_from,
        already_present,
    })
}

/// A release the director assigns to this device, verified against the image repository.
#[derive(Debug, Clone)]
pub struct VerifiedAssignment {
    pub target: String,
    pub info: TargetFile,
    pub release: ReleaseInfo,
    /// Where the artifact is downloaded from (through the server).
    pub url: String,
    pub director_version: u64,
}

/// Steps 2 to 5 of the module documentation: the director's metadata, the image repository,
/// their agreement and the release checks. `None` when the director lists no target.
pub fn verify_assigned(
    state: &Path,
    client: &ServerClient,
    hardware_id: &str,
    now_unix: i64,
) -> Result<Option<VerifiedAssignment>, UpdateError> {
    // The director: root rotations, then this device's targets metadata.
    let director_dir = state.join(DIRECTOR_DIR);
    let root_path = director_dir.join(DIRECTOR_ROOT);
    let root = match std::fs::read(&root_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(UpdateError::NoDirectorRoot(
                director_dir.display().to_string(),
            ));
        }
        Err(e) => return Err(io_error(&root_path)(e)),
    };
    let mut trust = DirectorTrust::new(&root)?;
    for _ in 0..MAX_ROOT_ROTATIONS {
        let next = trust.root().version() + 1;
        let Some(bytes) = client.get(
            &format!("/device/v1/director/{next}.root.json"),
            MAX_ROOT_BYTES,
        )?
        else {
            break;
        };
        trust.update_root(&bytes)?;
        write_atomic(&root_path, &bytes).map_err(io_error(&root_path))?;
    }
    let accepted = accepted_director_version(state)?;
    let targets_path = "/device/v1/director/targets.json";
    let director_bytes = client
        .get(targets_path, MAX_DIRECTOR_TARGETS_BYTES)?
        .ok_or_else(|| {
            client.server_error(
                &client.url(targets_path),
                "no director metadata for this device (404)",
            )
        })?;
    let director = trust.verify_targets(&director_bytes, client.device_id(), accepted, now_unix)?;

    // The image repository, through the server, with the TUF client.
    let config = UpdaterConfig {
        metadata_url: client.url("/device/v1/repo/metadata"),
        metadata_dir: state.join("metadata"),
        target_base_url: Some(client.url("/device/v1/repo/targets")),
        limits: Limits::default(),
    };
    // The same mutual-TLS identity (PEM or PKCS#11 key) as the poll.
    let fetcher = client.fetcher.clone();
    let mut up = Updater::new(config, fetcher, now_unix)?;
    up.refresh()?;
    let mut image = std::collections::BTreeMap::new();
    for path in director.signed.targets.keys() {
        if let Some(info) = up.get_targetinfo(path)? {
            image.insert(path.clone(), info);
        }
    }
    check_agreement(&director.signed, &image, Some(hardware_id))?;

    let installed = installed_security_version(state)?;
    let mut chosen: Option<(String, TargetFile, ReleaseInfo)> = None;
    for (path, info) in &image {
        let release = ReleaseInfo::from_custom(info.custom.as_ref()).map_err(|source| {
            UpdateError::Release {
                target: path.clone(),
                source,
            }
        })?;
        release
            .check_installable(hardware_id, installed)
            .map_err(|source| UpdateError::Release {
                target: path.clone(),
                source,
            })?;
        crate::check_logged(state, &mut up, path, info, &release)
            .map_err(UpdateError::TransparencyLog)?;
        chosen = Some((path.clone(), info.clone(), release));
    }

    // Accepted: from now on an older director version is refused.
    std::fs::create_dir_all(&director_dir).map_err(io_error(&director_dir))?;
    let stored = director_dir.join(DIRECTOR_TARGETS);
    write_atomic(&stored, &director_bytes).map_err(io_error(&stored))?;
    let version_path = director_dir.join(DIRECTOR_VERSION);
    write_atomic(
        &version_path,
        format!("{}\n", director.version()).as_bytes(),
    )
    .map_err(io_error(&version_path))?;

    let Some((target, info, release)) = chosen else {
        return Ok(None);
    };
    let url = up.target_url(&target, &info)?;
    Ok(Some(VerifiedAssignment {
        target,
        info,
        release,
        url,
        director_version: director.version(),
    }))
}

/// Feeds the first `limit` bytes of `path` to `check` (a verified copy, or a partial download).
fn hash_file(path: &Path, check: &mut StreamingCheck) -> Result<u64, UpdateError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if check.update(&buf[..n]).is_err() {
            return Ok(total);
        }
    }
}

/// Whether `path` already holds the verified artifact.
fn already_verified(path: &Path, target: &str, info: &TargetFile) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if meta.len() != info.length {
        return false;
    }
    let Ok(mut check) = StreamingCheck::new(target, info.length, &info.hashes) else {
        return false;
    };
    hash_file(path, &mut check).is_ok() && check.finish().is_ok()
}

/// Downloads `url` to `out` through `<out>.part`, resuming what the partial file holds. The
/// whole file's length and hashes are checked before it is renamed to `out`; a partial file
/// that fails the check is removed. Returns the bytes resumed from and whether `out` was
/// already complete.
fn download_resumable(
    client: &ServerClient,
    url: &str,
    target: &str,
    info: &TargetFile,
    out: &Path,
) -> Result<(u64, bool), UpdateError> {
    if already_verified(out, target, info) {
        return Ok((0, true));
    }
    let mut part_name = out.file_name().unwrap_or_default().to_os_string();
    part_name.push(".part");
    let part = out.with_file_name(part_name);
    let refused = |source| UpdateError::Download {
        target: target.to_owned(),
        source,
    };
    let mut check = StreamingCheck::new(target, info.length, &info.hashes).map_err(refused)?;
    let mut have = match std::fs::metadata(&part) {
        Ok(meta) if meta.len() <= info.length => meta.len(),
        Ok(_) => {
            std::fs::remove_file(&part).map_err(io_error(&part))?;
            0
        }
        Err(_) => 0,
    };
    if have > 0 {
        hash_file(&part, &mut check)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .map_err(io_error(&part))?;
    let resumed_from = have;
    if have < info.length {
        let etag = format!(
            "\"{}\"",
            info.hashes.values().next().map_or("", String::as_str)
        );
        let mut request = client.fetcher.agent().get(url);
        if have > 0 {
            request = request
                .header("range", format!("bytes={have}-"))
                .header("if-range", etag);
        }
        let response = request.call().map_err(|e| client.server_error(url, e))?;
        let status = response.status().as_u16();
        match status {
            206 if have > 0 => {
                let content_range = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let expected = format!("bytes {have}-{}/{}", info.length - 1, info.length);
                if content_range != expected {
                    return Err(client.server_error(
                        url,
                        format!("answered Content-Range {content_range:?}, not {expected:?}"),
                    ));
                }
            }
            200 => {
                if have > 0 {
                    // The server sent the whole file (it changed, or ignores ranges).
                    file.set_len(0).map_err(io_error(&part))?;
                    check =
                        StreamingCheck::new(target, info.length, &info.hashes).map_err(refused)?;
                    have = 0;
                }
            }
            other => {
                return Err(client.server_error(url, format!("HTTP status {other}")));
            }
        }
        let mut rejected: Option<TufError> = None;
        let copied = copy_limited(
            url,
            response.into_body().into_reader(),
            info.length - have,
            client.fetcher.min_rate(),
            &mut |chunk| {
                check.update(chunk).map_err(|e| {
                    rejected = Some(e);
                    std::io::Error::other("refused")
                })?;
                file.write_all(chunk)
            },
        );
        if let Some(e) = rejected {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(refused(e));
        }
        copied.map_err(|e: FetchError| client.server_error(url, e))?;
    }
    file.sync_all().map_err(io_error(&part))?;
    drop(file);
    if let Err(e) = check.finish() {
        let _ = std::fs::remove_file(&part);
        return Err(refused(e));
    }
    std::fs::rename(&part, out).map_err(io_error(out))?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok((resumed_from, false))
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
