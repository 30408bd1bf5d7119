//! The log service: a sequencer thread that batches appends (acknowledging each only once it
//! is durable), integrates them into tiles, signs a checkpoint, collects witness cosignatures
//! and publishes the checkpoint only with a quorum; and its HTTP API.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::time::{Duration, Instant};

use rampart_log::checkpoint::Checkpoint;
use rampart_log::cosignature::{sign_checkpoint, verify_cosignature};
use rampart_log::note::{Note, NoteSigner, Verifier};
use rampart_log::tiles::MAX_ENTRY_SIZE;

use crate::store::{LogStore, StoreError};
use crate::tiles::TreeReader;
use crate::witness::{SubmitOutcome, submit};

/// A witness the log asks for cosignatures.
#[derive(Debug, Clone)]
pub struct WitnessEndpoint {
    /// Base URL; the log POSTs to `<url>/add-checkpoint`.
    pub url: String,
    pub verifier: Verifier,
}

/// How a log runs.
pub struct LogConfig {
    pub dir: PathBuf,
    /// The log's checkpoint key; its name is the log's origin.
    pub signer: NoteSigner,
    pub witnesses: Vec<WitnessEndpoint>,
    /// Cosignatures needed before a checkpoint is published.
    pub quorum: usize,
    /// Most entries sequenced in one durable write.
    pub max_batch: usize,
    /// Longest time between an append and the checkpoint that includes it.
    pub publish_interval: Duration,
    pub witness_timeout: Duration,
}

impl LogConfig {
    pub fn new(dir: PathBuf, signer: NoteSigner) -> LogConfig {
        LogConfig {
            dir,
            signer,
            witnesses: Vec::new(),
            quorum: 0,
            max_batch: 8192,
            publish_interval: Duration::from_millis(500),
            witness_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the service refused or failed a request.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(
        "checkpoint for size {size} got {got} of the {quorum} witness cosignatures required: {failures}"
    )]
    NoQuorum {
        size: u64,
        got: usize,
        quorum: usize,
        failures: String,
    },
    #[error("the log service has stopped")]
    Stopped,
    #[error("{0}")]
    Other(String),
}

type Reply<T> = SyncSender<Result<T, String>>;

enum Command {
    Add(Vec<u8>, Reply<u64>),
    Publish(Reply<Vec<u8>>),
}

/// A handle to a running log service; cheap to clone.
#[derive(Clone)]
pub struct LogHandle {
    tx: SyncSender<Command>,
    origin: Arc<str>,
    dir: Arc<PathBuf>,
}

impl LogHandle {
    /// Appends an entry; returns its index once it is durably sequenced.
    pub fn add(&self, entry: Vec<u8>) -> Result<u64, ServiceError> {
        let (tx, rx) = sync_channel(1);
        self.tx
            .send(Command::Add(entry, tx))
            .map_err(|_| ServiceError::Stopped)?;
        rx.recv()
            .map_err(|_| ServiceError::Stopped)?
            .map_err(ServiceError::Other)
    }

    /// Integrates everything sequenced and publishes a witnessed checkpoint now; returns it.
    pub fn publish(&self) -> Result<Vec<u8>, ServiceError> {
        let (tx, rx) = sync_channel(1);
        self.tx
            .send(Command::Publish(tx))
            .map_err(|_| ServiceError::Stopped)?;
        rx.recv()
            .map_err(|_| ServiceError::Stopped)?
            .map_err(ServiceError::Other)
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

/// Opens the store (recovering from any crash) and starts the sequencer thread.
pub fn start(config: LogConfig) -> Result<(LogHandle, std::thread::JoinHandle<()>), ServiceError> {
    let store = LogStore::open(&config.dir)?;
    let (tx, rx) = sync_channel(65_536);
    let handle = LogHandle {
        tx,
        origin: Arc::from(config.signer.name()),
        dir: Arc::new(config.dir.clone()),
    };
    let thread = std::thread::Builder::new()
        .name("log-sequencer".into())
        .spawn(move || Sequencer::new(config, store).run(rx))
        .map_err(|e| ServiceError::Other(e.to_string()))?;
    Ok((handle, thread))
}

struct Sequencer {
    config: LogConfig,
    store: LogStore,
    /// Size each witness last cosigned, as far as this log knows (corrected on 409).
    witness_sizes: Vec<u64>,
    published_size: Option<u64>,
}

impl Sequencer {
    fn new(config: LogConfig, store: LogStore) -> Sequencer {
        let witness_sizes = vec![0; config.witnesses.len()];
        let published_size = store
            .checkpoint()
            .ok()
            .flatten()
            .and_then(|b| Note::parse(&b).ok())
            .and_then(|n| Checkpoint::parse_body(&n.text).ok())
            .map(|c| c.size);
        Sequencer {
            config,
            store,
            witness_sizes,
            published_size,
        }
    }

    fn run(mut self, rx: Receiver<Command>) {
        let mut deadline: Option<Instant> = (self.store.pending() > 0).then(Instant::now);
        loop {
            let wait = deadline.map_or(Duration::from_secs(3600), |d| {
                d.saturating_duration_since(Instant::now())
            });
            let first = match rx.recv_timeout(wait) {
                Ok(c) => Some(c),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut adds: Vec<(Vec<u8>, Reply<u64>)> = Vec::new();
            let mut publishes: Vec<Reply<Vec<u8>>> = Vec::new();
            let mut next = first;
            while let Some(c) = next.take() {
                match c {
                    Command::Add(e, r) => adds.push((e, r)),
                    Command::Publish(r) => publishes.push(r),
                }
                if adds.len() < self.config.max_batch {
                    next = rx.try_recv().ok();
                }
            }
            if !adds.is_empty() {
                self.sequence(adds);
                deadline.get_or_insert_with(|| Instant::now() + self.config.publish_interval);
            }
            let due = deadline.is_some_and(|d| Instant::now() >= d);
            if due || !publishes.is_empty() {
                let result = self.publish();
                deadline = match &result {
                    Ok(_) => None,
                    // Try again later; entries stay sequenced and durable meanwhile.
                    Err(_) => Some(Instant::now() + self.config.publish_interval),
                };
                for r in publishes {
                    let _ = r.send(
                        result
                            .as_ref()
                            .map(Clone::clone)
                            .map_err(ToString::to_string),
                    );
                }
            }
        }
    }

    fn sequence(&mut self, adds: Vec<(Vec<u8>, Reply<u64>)>) {
        let (ok, too_big): (Vec<_>, Vec<_>) = adds
            .into_iter()
            .partition(|(e, _)| e.len() <= MAX_ENTRY_SIZE);
        for (e, r) in too_big {
            let _ = r.send(Err(StoreError::EntryTooLarge { size: e.len() }.to_string()));
        }
        let (entries, replies): (Vec<Vec<u8>>, Vec<Reply<u64>>) = ok.into_iter().unzip();
        match self.store.append(&entries) {
            Ok(first) => {
                for (i, r) in replies.into_iter().enumerate() {
                    let _ = r.send(Ok(first + i as u64));
                }
            }
            Err(e) => {
                for r in replies {
                    let _ = r.send(Err(e.to_string()));
                }
            }
        }
    }

    /// Integrates, signs and (with a quorum) publishes a checkpoint; returns the note bytes.
    fn publish(&mut self) -> Result<Vec<u8>, ServiceError> {
        let (size, root) = self.store.integrate()?;
        if self.published_size == Some(size)
            && let Some(current) = self.store.checkpoint()?
        {
            return Ok(current);
        }
        let checkpoint = Checkpoint::new(self.config.signer.name(), size, root);
        let mut note = sign_checkpoint(&self.config.signer, &checkpoint)
            .map_err(|e| ServiceError::Other(e.to_string()))?;
        let body = checkpoint.to_body();
        let signed = note.to_bytes();
        let mut failures = Vec::new();
        let mut cosigs = Vec::new();
        let source = self.store.source();
        let mut reader = TreeReader::new(&source, size);
        let witnesses = self.config.witnesses.clone();
        for (i, w) in witnesses.iter().enumerate() {
            match self.cosign(i, w, &mut reader, &signed) {
                Ok(sigs) => {
                    let valid: Vec<_> = sigs
                        .into_iter()
                        .filter(|s| {
                            w.verifier.matches(s)
                                && verify_cosignature(&w.verifier, &body, s).is_ok()
                        })
                        .collect();
                    if valid.is_empty() {
                        failures.push(format!("{}: no valid cosignature in the answer", w.url));
                    } else {
                        self.witness_sizes[i] = size;
                        cosigs.extend(valid.into_iter().take(1));
                    }
                }
                Err(e) => failures.push(format!("{}: {e}", w.url)),
            }
        }
        if cosigs.len() < self.config.quorum {
            return Err(ServiceError::NoQuorum {
                size,
                got: cosigs.len(),
                quorum: self.config.quorum,
                failures: failures.join("; "),
            });
        }
        note.signatures.extend(cosigs);
        let bytes = note.to_bytes();
        self.store.publish_checkpoint(&bytes)?;
        self.published_size = Some(size);
        Ok(bytes)
    }

    fn cosign(
        &mut self,
        i: usize,
        w: &WitnessEndpoint,
        reader: &mut TreeReader<'_>,
        note: &[u8],
    ) -> Result<Vec<rampart_log::note::NoteSignature>, String> {
        let size = reader.size();
        // Two tries: the second with the size the witness reported (409) if ours was stale.
        for _ in 0..2 {
            let old = self.witness_sizes[i];
            if old > size {
                return Err(format!(
                    "witness has seen size {old}, larger than this log's {size}"
                ));
            }
            let proof = if old == 0 {
                Vec::new()
            } else {
                reader.consistency_proof(old).map_err(|e| e.to_string())?
            };
            match submit(&w.url, old, &proof, note, self.config.witness_timeout)
                .map_err(|e| e.to_string())?
            {
                SubmitOutcome::Cosigned(sigs) => return Ok(sigs),
                SubmitOutcome::Conflict { witness_size } => self.witness_sizes[i] = witness_size,
            }
        }
        Err("witness kept reporting a different size".into())
    }
}

/// The log's HTTP API: `POST /add` (body: one entry; answer: its index), and the read-only
/// tlog-tiles files `GET /checkpoint`, `GET /tile/...`.
pub fn router(handle: LogHandle) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/add", post(add_entry))
        .route("/checkpoint", get(read_file))
        .route("/tile/{*path}", get(read_file))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_ENTRY_SIZE))
        .with_state(handle)
}

async fn add_entry(
    axum::extract::State(handle): axum::extract::State<LogHandle>,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let entry = body.to_vec();
    match tokio::task::spawn_blocking(move || handle.add(entry)).await {
        Ok(Ok(index)) => (StatusCode::OK, format!("{index}\n")),
        Ok(Err(ServiceError::Other(m))) if m.contains("over the") => {
            (StatusCode::PAYLOAD_TOO_LARGE, format!("{m}\n"))
        }
        Ok(Err(e)) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

async fn read_file(
    axum::extract::State(handle): axum::extract::State<LogHandle>,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let path = uri.path().trim_start_matches('/').to_string();
    let valid = path == "checkpoint" || rampart_log::tiles::parse_tile_path(&path).is_some();
    if !valid {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    match tokio::fs::read(handle.dir().join(&path)).await {
        Ok(bytes) => {
            let (ctype, cache) = if path == "checkpoint" {
                ("text/plain; charset=utf-8", "no-store")
            } else if path.contains(".p/") {
                ("application/octet-stream", "max-age=60")
            } else {
                ("application/octet-stream", "max-age=31536000, immutable")
            };
            (
                [
                    (header::CONTENT_TYPE, ctype),
                    (header::CACHE_CONTROL, cache),
                ],
                bytes,
            )
                .into_response()
        }
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}
