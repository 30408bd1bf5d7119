//! A C2SP tlog-witness server (<https://c2sp.org/tlog-witness>) and the client a log uses to
//! request cosignatures.
//!
//! # Server
//!
//! [`Witness`] holds the witness's cosignature key (type `0x04`), the logs it knows (one or more
//! Ed25519 verifier keys per origin; the origin is the key name) and, per origin, the latest
//! checkpoint it cosigned: `(size, root)`. [`Witness::add_checkpoint`] implements the whole
//! `add-checkpoint` protocol over a request body and a timestamp, without HTTP;
//! [`Witness::router`] and [`serve`] put it behind `POST /add-checkpoint`.
//!
//! Status codes, in the order the checks run:
//!
//! | status | when |
//! |--------|------|
//! | 413 | the request body is over [`MAX_REQUEST_BODY`] bytes |
//! | 400 | the body is malformed (old size line, proof lines, blank line, signed note, checkpoint body), or has more than [`MAX_PROOF_LINES`] proof lines |
//! | 404 | the checkpoint origin is not a log this witness knows |
//! | 403 | no signature by a trusted key of the origin verifies, or a signature line naming a trusted key (name and key ID) fails to verify |
//! | 400 | the old size is larger than the checkpoint size |
//! | 409 | the old size is not the size of the latest checkpoint cosigned for the origin (0 if none); the body is that size in decimal and `\n`, `Content-Type: text/x.tlog.size` |
//! | 422 | a checkpoint of size 0 whose root is not the empty-tree hash; a non-empty proof with old size 0; old size equal to the checkpoint size with a non-empty proof or a root different from the stored one (a split view); a consistency proof that does not verify against the stored root |
//! | 500 | the new state could not be persisted, or the clock is unusable (timestamp 0) |
//! | 200 | the body is the witness's cosignature line, `— <name> base64(key ID ‖ timestamp ‖ signature)\n` |
//!
//! Compare-and-persist is atomic: each origin's state sits behind its own mutex, held from the
//! comparison of the old size until the new `(size, root)` is durably on disk (temporary file,
//! fsync, rename, fsync of the directory), and only then is the cosignature returned. A witness
//! therefore never cosigns two checkpoints of the same size with different roots, nor goes back
//! to a smaller tree, even across restarts.
//!
//! # State directory
//!
//! One file per origin, named by the lowercase hex SHA-256 of the origin, holding
//! `<origin>\n<size>\n<base64 root>\n`. Every such file is checked at start-up
//! ([`Witness::new`] fails naming the bad file); other names (temporary files) are ignored. The
//! directory is locked (`.lock`, an exclusive advisory lock) for the life of the [`Witness`], so
//! that two witness processes cannot share it and break the atomicity above.
//!
//! # Client
//!
//! [`submit`] (and [`submit_with`] on a caller's [`ureq::Agent`], for keep-alive) sends one
//! `add-checkpoint` request and returns the cosignature lines ([`SubmitOutcome::Cosigned`]) or the
//! witness's size on a 409 ([`SubmitOutcome::Conflict`]). The cosignatures are parsed, not
//! verified: the caller checks them with the witness keys it trusts
//! ([`rampart_log::cosignature::verify_cosignature`]) and ignores the others.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rampart_log::checkpoint::Checkpoint;
use rampart_log::cosignature::{MAX_TIMESTAMP, cosign};
use rampart_log::merkle::{Hash, empty_root, verify_consistency};
use rampart_log::note::{MAX_NOTE_SIZE, Note, NoteError, NoteSignature, NoteSigner, SignerKind};
use rampart_log::note::{Verifier, parse_signature_lines};

/// Largest `add-checkpoint` request body accepted: the largest signed note plus room for the
/// old size line and [`MAX_PROOF_LINES`] proof lines.
pub const MAX_REQUEST_BODY: usize = MAX_NOTE_SIZE + 4096;
/// Most consistency-proof lines accepted in one request (the spec lets clients send 63).
pub const MAX_PROOF_LINES: usize = 64;
/// Content type of a 409 response body.
pub const CONTENT_TYPE_TLOG_SIZE: &str = "text/x.tlog.size";
/// Content type of every other response body.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; charset=utf-8";
/// Largest state file read at start-up.
const MAX_STATE_FILE: u64 = 2 * MAX_NOTE_SIZE as u64;
/// Largest response body the client reads.
const MAX_RESPONSE_BODY: u64 = MAX_NOTE_SIZE as u64;
/// Name of the lock file in the state directory.
const LOCK_FILE: &str = ".lock";

/// The witness's configuration.
#[derive(Debug)]
pub struct WitnessConfig {
    /// The witness's cosignature key (Ed25519 cosignature, type `0x04`); its name is the
    /// witness name.
    pub signer: NoteSigner,
    /// Directory holding the latest cosigned checkpoint of every log (created if missing).
    pub state_dir: PathBuf,
    /// The logs this witness cosigns for: each verifier's name is a log origin. Several keys
    /// may share an origin (a key rotation); a signature by any of them is enough.
    pub logs: Vec<Verifier>,
}

/// Why a [`Witness`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("the witness key {0} must be an Ed25519 cosignature key (type 0x04)")]
    NotCosignatureKey(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: the state directory is in use by another witness")]
    Locked { path: PathBuf },
    #[error("{path}: bad witness state file: {reason}")]
    BadStateFile { path: PathBuf, reason: String },
}

/// The answer to an `add-checkpoint` request, independent of HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessResponse {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body: cosignature lines (200), the witness's size and `\n` (409), or an error
    /// message.
    pub body: Vec<u8>,
}

impl WitnessResponse {
    fn text(status: u16, message: impl Into<String>) -> WitnessResponse {
        let mut body = message.into().into_bytes();
        body.push(b'\n');
        WitnessResponse {
            status,
            content_type: CONTENT_TYPE_TEXT,
            body,
        }
    }

    fn conflict(size: u64) -> WitnessResponse {
        WitnessResponse {
            status: 409,
            content_type: CONTENT_TYPE_TLOG_SIZE,
            body: format!("{size}\n").into_bytes(),
        }
    }
}

/// The latest checkpoint cosigned for one origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cosigned {
    size: u64,
    root: Hash,
}

/// One known log.
struct LogEntry {
    verifiers: Vec<Verifier>,
    state_file: PathBuf,
    /// `None` until the first checkpoint is cosigned. Held across the compare, verify and
    /// persist steps of a request.
    latest: Mutex<Option<Cosigned>>,
}

/// A tlog-witness: configuration and the per-origin state.
pub struct Witness {
    signer: NoteSigner,
    state_dir: PathBuf,
    logs: HashMap<String, LogEntry>,
    /// Held (locked) for the life of the witness.
    _lock: std::fs::File,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("state_dir", &self.state_dir)
            .field("origins", &self.logs.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Lowercase hex SHA-256 of `origin`: the name of its state file.
pub fn state_file_name(origin: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        origin.as_bytes(),
    ))
}

/// Parses a canonical ASCII decimal `u64` (no sign, no leading zeros except `0`).
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Decodes canonical standard base64 of exactly 32 bytes.
fn decode_hash(s: &str) -> Option<Hash> {
    if s.len() != 44 {
        return None;
    }
    B64.decode(s).ok()?.try_into().ok()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WitnessError + '_ {
    move |source| WitnessError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Parses a state file's content; `file_name` must be the hex SHA-256 of the origin inside.
fn parse_state_file(file_name: &str, bytes: &[u8]) -> Result<(String, Cosigned), String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let content = text
        .strip_suffix('\n')
        .ok_or("does not end with a newline")?;
    let lines: Vec<&str> = content.split('\n').collect();
    let [origin, size, root] = lines[..] else {
        return Err(format!(
            "expected 3 lines (origin, size, root), found {}",
            lines.len()
        ));
    };
    if origin.is_empty() || origin.chars().any(char::is_control) {
        return Err("the origin is empty or contains control characters".into());
    }
    if state_file_name(origin) != file_name {
        return Err(format!(
            "the file name is not the SHA-256 of its origin {origin:?}"
        ));
    }
    let size = parse_decimal(size).ok_or("the size is not a canonical decimal number")?;
    let root = decode_hash(root).ok_or("the root is not the base64 of 32 bytes")?;
    if size == 0 && root != empty_root() {
        return Err("size 0 with a root other than the empty-tree hash".into());
    }
    Ok((origin.to_owned(), Cosigned { size, root }))
}

fn encode_state_file(origin: &str, state: &Cosigned) -> Vec<u8> {
    format!("{origin}\n{}\n{}\n", state.size, B64.encode(state.root)).into_bytes()
}

/// Reads every state file in `dir` (names of 64 lowercase hex digits).
fn load_state(dir: &Path) -> Result<HashMap<String, Cosigned>, WitnessError> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let is_state_name =
            name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !is_state_name {
            continue; // the lock file, temporary files of interrupted writes
        }
        let file = std::fs::File::open(&path).map_err(io_err(&path))?;
        let mut bytes = Vec::new();
        file.take(MAX_STATE_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path))?;
        if bytes.len() as u64 > MAX_STATE_FILE {
            return Err(WitnessError::BadStateFile {
                path,
                reason: format!("over {MAX_STATE_FILE} bytes"),
            });
        }
        let (origin, state) = parse_state_file(&name, &bytes)
            .map_err(|reason| WitnessError::BadStateFile { path, reason })?;
        out.insert(origin, state);
    }
    Ok(out)
}

/// A parsed `add-checkpoint` request body.
struct Request<'a> {
    old: u64,
    proof: Vec<Hash>,
    note: &'a [u8],
}

/// Splits off the next `\n`-terminated line of `rest`.
fn next_line<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let i = rest.iter().position(|&b| b == b'\n')?;
    let line = &rest[..i];
    *rest = &rest[i + 1..];
    Some(line)
}

fn parse_request(body: &[u8]) -> Result<Request<'_>, String> {
    let mut rest = body;
    let old_line = next_line(&mut rest).ok_or("the body has no old size line")?;
    let old = std::str::from_utf8(old_line)
        .ok()
        .and_then(|l| l.strip_prefix("old "))
        .and_then(parse_decimal)
        .ok_or("the first line is not \"old <size>\" with a canonical decimal size")?;
    let mut proof = Vec::new();
    loop {
        let line = next_line(&mut rest)
            .ok_or("the body has no blank line between the proof and the checkpoint")?;
        if line.is_empty() {
            break;
        }
        if proof.len() == MAX_PROOF_LINES {
            return Err(format!(
                "more than {MAX_PROOF_LINES} consistency proof lines"
            ));
        }
        let hash = std::str::from_utf8(line)
            .ok()
            .and_then(decode_hash)
            .ok_or_else(|| {
                format!(
                    "consistency proof line {} is not the base64 of a 32-byte hash",
                    proof.len() + 1
                )
            })?;
        proof.push(hash);
    }
    Ok(Request {
        old,
        proof,
        note: rest,
    })
}

fn lock(m: &Mutex<Option<Cosigned>>) -> MutexGuard<'_, Option<Cosigned>> {
    // The guarded value is replaced only after a successful persist, in one assignment: a
    // panic elsewhere cannot leave it half-updated.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Witness {
    /// Starts a witness: checks the key, creates and locks the state directory and loads every
    /// state file in it.
    pub fn new(config: WitnessConfig) -> Result<Witness, WitnessError> {
        let WitnessConfig {
            signer,
            state_dir,
            logs,
        } = config;
        if signer.kind() != SignerKind::Ed25519Cosignature {
            return Err(WitnessError::NotCosignatureKey(format!(
                "{}+{}",
                signer.name(),
                hex::encode(signer.key_id())
            )));
        }
        std::fs::create_dir_all(&state_dir).map_err(io_err(&state_dir))?;
        let lock_path = state_dir.join(LOCK_FILE);
        let lock_file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock_file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(WitnessError::Locked { path: state_dir });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let mut stored = load_state(&state_dir)?;
        let mut by_origin: HashMap<String, LogEntry> = HashMap::new();
        for v in logs {
            let origin = v.name().to_owned();
            if let Some(entry) = by_origin.get_mut(&origin) {
                if !entry.verifiers.contains(&v) {
                    entry.verifiers.push(v);
                }
                continue;
            }
            let latest = stored.remove(&origin);
            by_origin.insert(
                origin.clone(),
                LogEntry {
                    verifiers: vec![v],
                    state_file: state_dir.join(state_file_name(&origin)),
                    latest: Mutex::new(latest),
                },
            );
        }
        Ok(Witness {
            signer,
            state_dir,
            logs: by_origin,
            _lock: lock_file,
        })
    }

    /// The verifier of this witness's cosignatures.
    pub fn verifier(&self) -> Verifier {
        self.signer.verifier()
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The latest checkpoint cosigned for `origin`: `(size, root)`, or `None` if the origin is
    /// unknown or nothing was cosigned yet.
    pub fn latest(&self, origin: &str) -> Option<(u64, Hash)> {
        let entry = self.logs.get(origin)?;
        let latest = *lock(&entry.latest);
        latest.map(|c| (c.size, c.root))
    }

    /// Handles one `add-checkpoint` request body at time `now` (UNIX seconds, the cosignature
    /// timestamp). See the module documentation for the status codes.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> WitnessResponse {
        if body.len() > MAX_REQUEST_BODY {
            return WitnessResponse::text(
                413,
                format!("request body over {MAX_REQUEST_BODY} bytes"),
            );
        }
        let req = match parse_request(body) {
            Ok(r) => r,
            Err(e) => return WitnessResponse::text(400, e),
        };
        let note = match Note::parse(req.note) {
            Ok(n) => n,
            Err(e) => return WitnessResponse::text(400, format!("malformed checkpoint note: {e}")),
        };
        let checkpoint = match Checkpoint::parse_body(&note.text) {
            Ok(c) => c,
            Err(e) => return WitnessResponse::text(400, format!("malformed checkpoint: {e}")),
        };
        let Some(log) = self.logs.get(&checkpoint.origin) else {
            return WitnessResponse::text(404, "unknown log origin");
        };
        if let Err(e) = note.verify(&log.verifiers) {
            let reason = match e {
                NoteError::NotVerified => "no signature by a known key of this log".to_string(),
                other => other.to_string(),
            };
            return WitnessResponse::text(403, reason);
        }
        if req.old > checkpoint.size {
            return WitnessResponse::text(
                400,
                format!(
                    "old size {} is larger than the checkpoint size {}",
                    req.old, checkpoint.size
                ),
            );
        }

        // Compare, verify and persist under the origin's lock.
        let mut latest = lock(&log.latest);
        let stored_size = latest.map_or(0, |c| c.size);
        if req.old != stored_size {
            return WitnessResponse::conflict(stored_size);
        }
        if checkpoint.size == 0 && checkpoint.root != empty_root() {
            return WitnessResponse::text(
                422,
                "a checkpoint of size 0 must have the empty-tree root hash",
            );
        }
        if req.old == 0 {
            if !req.proof.is_empty() {
                return WitnessResponse::text(
                    422,
                    "the consistency proof must be empty when the old size is 0",
                );
            }
        } else {
            // old == stored size > 0, so a state is stored.
            let Some(stored) = *latest else {
                return WitnessResponse::text(500, "internal error: missing state");
            };
            if req.old == checkpoint.size {
                if !req.proof.is_empty() {
                    return WitnessResponse::text(
                        422,
                        "the consistency proof must be empty when the old size equals the checkpoint size",
                    );
                }
                if checkpoint.root != stored.root {
                    return WitnessResponse::text(
                        422,
                        "the checkpoint has the size of the latest cosigned checkpoint but a different root hash",
                    );
                }
            } else if let Err(e) = verify_consistency(
                req.old,
                checkpoint.size,
                &req.proof,
                &stored.root,
                &checkpoint.root,
            ) {
                return WitnessResponse::text(
                    422,
                    format!("the consistency proof does not verify: {e}"),
                );
            }
        }

        if now == 0 || now > MAX_TIMESTAMP {
            return WitnessResponse::text(500, "the witness clock gives an unusable timestamp");
        }
        let cosignature = match cosign(&self.signer, &note.text, now) {
            Ok(s) => s,
            Err(e) => return WitnessResponse::text(500, format!("cosigning failed: {e}")),
        };
        let new_state = Cosigned {
            size: checkpoint.size,
            root: checkpoint.root,
        };
        if *latest != Some(new_state) {
            let bytes = encode_state_file(&checkpoint.origin, &new_state);
            if let Err(e) = rampart_tuf_client::store::write_atomic(&log.state_file, &bytes) {
                return WitnessResponse::text(
                    500,
                    format!("persisting the checkpoint failed: {e}"),
                );
            }
            *latest = Some(new_state);
        }
        drop(latest);
        WitnessResponse {
            status: 200,
            content_type: CONTENT_TYPE_TEXT,
            body: cosignature.to_line().into_bytes(),
        }
    }

    /// The HTTP interface: `POST /add-checkpoint`, bodies limited to [`MAX_REQUEST_BODY`]
    /// bytes (413 above). Nest it under a prefix for a submission prefix other than `/`.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/add-checkpoint", post(add_checkpoint_handler))
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
            .with_state(self)
    }
}

/// The current time in UNIX seconds.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

async fn add_checkpoint_handler(State(witness): State<Arc<Witness>>, body: Bytes) -> Response {
    // Verification and the fsync of the state file block: keep them off the async workers.
    let result =
        tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, unix_now())).await;
    let resp = result.unwrap_or_else(|_| WitnessResponse::text(500, "internal error"));
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, resp.content_type)],
        resp.body,
    )
        .into_response()
}

/// Serves [`Witness::router`] on `listener` until the task is dropped, with bounded
/// connections (see [`rampart_listen::serve_small_service`]).
pub async fn serve(
    witness: Arc<Witness>,
    listener: tokio::net::TcpListener,
) -> std::io::Result<()> {
    rampart_listen::serve_small_service(listener, witness.router(), std::future::pending()).await;
    Ok(())
}

/// What a witness answered to [`submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// 200: the signature lines of the response, parsed but not verified.
    Cosigned(Vec<NoteSignature>),
    /// 409: the old size did not match; the witness's latest cosigned size.
    Conflict { witness_size: u64 },
}

/// Why [`submit`] failed.
#[derive(Debug, thiserror::Error)]
pub enum WitnessClientError {
    #[error("{count} consistency proof hashes, over the limit of {max}")]
    ProofTooLong { count: usize, max: usize },
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    #[error("witness {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("witness {url} sent a malformed response: {reason}")]
    BadResponse { url: String, reason: String },
}

/// The request body of `add-checkpoint`.
pub fn request_body(old: u64, proof: &[Hash], checkpoint_note: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(16 + 45 * proof.len() + 1 + checkpoint_note.len());
    body.extend_from_slice(format!("old {old}\n").as_bytes());
    for h in proof {
        body.extend_from_slice(B64.encode(h).as_bytes());
        body.push(b'\n');
    }
    body.push(b'\n');
    body.extend_from_slice(checkpoint_note);
    body
}

/// Sends `checkpoint_note` (a signed checkpoint) with a consistency proof from `old` to the
/// witness whose submission prefix is `agent_url` (e.g. `https://witness.example/`; the call
/// goes to `<prefix>/add-checkpoint`), with an overall `timeout`. Uses a fresh agent; see
/// [`submit_with`] to reuse connections.
pub fn submit(
    agent_url: &str,
    old: u64,
    proof: &[Hash],
    checkpoint_note: &[u8],
    timeout: Duration,
) -> Result<SubmitOutcome, WitnessClientError> {
    submit_with(
        &ureq::Agent::new_with_defaults(),
        agent_url,
        old,
        proof,
        checkpoint_note,
        timeout,
    )
}

/// [`submit`] on a caller's agent (HTTP keep-alive across calls).
pub fn submit_with(
    agent: &ureq::Agent,
    agent_url: &str,
    old: u64,
    proof: &[Hash],
    checkpoint_note: &[u8],
    timeout: Duration,
) -> Result<SubmitOutcome, WitnessClientError> {
    if proof.len() >= MAX_PROOF_LINES {
        // The spec forbids clients to send more than 63 lines.
        return Err(WitnessClientError::ProofTooLong {
            count: proof.len(),
            max: MAX_PROOF_LINES - 1,
        });
    }
    let url = format!("{}/add-checkpoint", agent_url.trim_end_matches('/'));
    let transport = |e: ureq::Error| WitnessClientError::Transport {
        url: url.clone(),
        reason: e.to_string(),
    };
    let body = request_body(old, proof, checkpoint_note);
    let mut resp = agent
        .post(&url)
        .config()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .header("Content-Type", "text/plain")
        .send(&body[..])
        .map_err(transport)?;
    let status = resp.status().as_u16();
    let bytes = resp
        .body_mut()
        .with_config()
        .limit(MAX_RESPONSE_BODY)
        .read_to_vec()
        .map_err(transport)?;
    let bad = |reason: String| WitnessClientError::BadResponse {
        url: url.clone(),
        reason,
    };
    match status {
        200 => {
            let sigs = parse_signature_lines(&bytes)
                .map_err(|e| bad(format!("the cosignature lines do not parse: {e}")))?;
            Ok(SubmitOutcome::Cosigned(sigs))
        }
        409 => {
            let size = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.strip_suffix('\n'))
                .and_then(parse_decimal)
                .ok_or_else(|| {
                    bad("a 409 response body is not a decimal size and newline".into())
                })?;
            Ok(SubmitOutcome::Conflict { witness_size: size })
        }
        _ => {
            let text = String::from_utf8_lossy(&bytes);
            let text: String = text.trim_end().chars().take(512).collect();
            Err(WitnessClientError::Status {
                url: url.clone(),
                status,
                body: text,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bodies_round_trip() {
        let proof = [[1u8; 32], [2u8; 32]];
        let body = request_body(7, &proof, b"note\n\n\xe2\x80\x94 x AAAA\n");
        let req = parse_request(&body).unwrap();
        assert_eq!(req.old, 7);
        assert_eq!(req.proof, proof);
        assert_eq!(req.note, b"note\n\n\xe2\x80\x94 x AAAA\n");
    }

    #[test]
    fn malformed_request_framing_is_rejected() {
        for body in [
            &b""[..],
            b"old 1",
            b"old 01\n\n",
            b"old -1\n\n",
            b"old  1\n\n",
            b"Old 1\n\n",
            b"old 1\nnot base64\n\n",
            b"old 1\nAAAA\n\n",
            b"old 1\n",
            b"old 18446744073709551616\n\n",
        ] {
            assert!(
                parse_request(body).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let mut many = b"old 1\n".to_vec();
        for _ in 0..=MAX_PROOF_LINES {
            many.extend_from_slice(B64.encode([0u8; 32]).as_bytes());
            many.push(b'\n');
        }
        many.push(b'\n');
        assert!(parse_request(&many).is_err());
    }

    #[test]
    fn state_files_are_checked() {
        let origin = "example.com/log";
        let name = state_file_name(origin);
        let good = encode_state_file(
            origin,
            &Cosigned {
                size: 3,
                root: [7; 32],
            },
        );
        assert_eq!(
            parse_state_file(&name, &good).unwrap(),
            (
                origin.to_string(),
                Cosigned {
                    size: 3,
                    root: [7; 32]
                }
            )
        );
        assert!(parse_state_file(&state_file_name("other"), &good).is_err());
        assert!(parse_state_file(&name, &good[..good.len() - 1]).is_err());
        let zero = encode_state_file(
            origin,
            &Cosigned {
                size: 0,
                root: [7; 32],
            },
        );
        assert!(parse_state_file(&name, &zero).is_err());
    }
}
