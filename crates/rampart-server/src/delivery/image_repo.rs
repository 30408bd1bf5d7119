//! The server's verified view of the image repository it hosts ([`HostedRepo`]): the releases
//! operators assign, the entries the director copies, and the artifacts a device may fetch. The
//! directory is read exactly as a device reads it (the TUF client over `file://`, from
//! `metadata/1.root.json` through every rotation), so the server never offers a release devices
//! would refuse, and a tampered or expired directory is reported rather than served.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;
use rampart_core::metadata::TargetFile;
use rampart_core::release::ReleaseInfo;
use rampart_tuf_client::{HttpFetcher, Limits, Updater, UpdaterConfig};
use serde::Serialize;

use crate::listen::http::ApiError;

/// A loaded view is reused at most this long before `timestamp.json` is looked at again.
const RECHECK_AFTER: Duration = Duration::from_secs(2);
/// A loaded view is reloaded at least this often, so expiry is noticed.
const RELOAD_AFTER: Duration = Duration::from_secs(60);
/// Largest metadata file served.
pub(crate) const MAX_METADATA_BYTES: u64 = 64 << 20;
/// Target lookups remembered per loaded view.
const MAX_CACHED_LOOKUPS: usize = 4096;

/// Why the hosted image repository cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum HostedRepoError {
    #[error(
        "the image repository in {dir} does not verify: {reason}; check it with `rampart repo verify {dir}` (an expired timestamp needs `rampart repo publish {dir}`, or the server's --timestamp-key to renew it automatically)"
    )]
    Invalid { dir: String, reason: String },
    #[error("reading the image repository in {dir}: {reason}")]
    Io { dir: String, reason: String },
}

impl HostedRepoError {
    /// The device's answer: 503, with the reason logged for the operator.
    pub(crate) fn to_api(&self) -> ApiError {
        crate::observe::log::error(
            "the image repository cannot be served",
            serde_json::json!({"error": self.to_string()}),
        );
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "image_repository_unavailable",
            "the server's image repository cannot be served right now (the operator has been told why in the server log); retry later",
        )
    }
}

/// Identifies a version of `timestamp.json` on disk.
type Stamp = Option<(SystemTime, u64)>;

struct Loaded {
    stamp: Stamp,
    loaded: Instant,
    checked: Mutex<Instant>,
    consistent_snapshot: bool,
    updater: Mutex<Updater<HttpFetcher>>,
    lookups: Mutex<HashMap<String, Option<TargetFile>>>,
    _state: tempfile::TempDir,
}

/// The image repository directory the server hosts (`metadata/`, `targets/`), and its
/// verified contents.
pub struct HostedRepo {
    dir: PathBuf,
    loaded: Mutex<Option<Arc<Loaded>>>,
}

impl std::fmt::Debug for HostedRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostedRepo")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// One file of `targets/` a device may fetch, with the target it belongs to.
#[derive(Debug, Clone)]
pub(crate) struct Artifact {
    /// Path below `targets/`, as the device asks for it.
    pub(crate) file: String,
    /// The hash in the file name (the ETag).
    pub(crate) hash: String,
    pub(crate) info: TargetFile,
}

impl HostedRepo {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            loaded: Mutex::new(None),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn io_error(&self, e: impl ToString) -> HostedRepoError {
        HostedRepoError::Io {
            dir: self.dir.display().to_string(),
            reason: e.to_string(),
        }
    }

    /// Forgets the loaded view, so the next request verifies the directory again (after the
    /// server renewed its metadata, devices get the new timestamp at once).
    pub(crate) fn reload(&self) {
        *self.loaded.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    fn stamp(&self) -> Stamp {
        let meta = std::fs::metadata(self.dir.join("metadata/timestamp.json")).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// The verified repository (blocking): reused while `timestamp.json` is unchanged.
    fn current(&self, now: i64) -> Result<Arc<Loaded>, HostedRepoError> {
        let mut slot = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(loaded) = slot.as_ref()
            && loaded.loaded.elapsed() < RELOAD_AFTER
        {
            let mut checked = loaded.checked.lock().unwrap_or_else(|e| e.into_inner());
            if checked.elapsed() < RECHECK_AFTER {
                return Ok(loaded.clone());
            }
            if loaded.stamp.is_some() && loaded.stamp == self.stamp() {
                *checked = Instant::now();
                return Ok(loaded.clone());
            }
        }
        let loaded = Arc::new(self.load(now)?);
        *slot = Some(loaded.clone());
        Ok(loaded)
    }

    fn load(&self, now: i64) -> Result<Loaded, HostedRepoError> {
        let stamp = self.stamp();
        let state = tempfile::tempdir().map_err(|e| self.io_error(e))?;
        let root = std::fs::read(self.dir.join("metadata/1.root.json"))
            .map_err(|e| self.io_error(format!("metadata/1.root.json: {e}")))?;
        std::fs::write(state.path().join("root.json"), root).map_err(|e| self.io_error(e))?;
        let abs = std::fs::canonicalize(&self.dir).map_err(|e| self.io_error(e))?;
        let base = format!("file://{}", abs.display());
        let config = UpdaterConfig {
            metadata_url: format!("{base}/metadata"),
            metadata_dir: state.path().to_path_buf(),
            target_base_url: Some(format!("{base}/targets")),
            limits: Limits {
                snapshot_max: MAX_METADATA_BYTES,
                targets_max: MAX_METADATA_BYTES,
                ..Limits::default()
            },
        };
        let invalid = |e: rampart_tuf_client::ClientError| HostedRepoError::Invalid {
            dir: self.dir.display().to_string(),
            reason: e.to_string(),
        };
        let mut updater = Updater::new(config, HttpFetcher::default(), now).map_err(invalid)?;
        updater.refresh().map_err(invalid)?;
        let consistent_snapshot = updater.trusted().root().signed.consistent_snapshot();
        Ok(Loaded {
            stamp,
            loaded: Instant::now(),
            checked: Mutex::new(Instant::now()),
            consistent_snapshot,
            updater: Mutex::new(updater),
            lookups: Mutex::new(HashMap::new()),
            _state: state,
        })
    }

    /// The verified entry of `target` (walking delegations), if the repository lists it
    /// (blocking: call from `spawn_blocking`).
    pub fn target(&self, target: &str, now: i64) -> Result<Option<TargetFile>, HostedRepoError> {
        let loaded = self.current(now)?;
        self.lookup(&loaded, target)
    }

    fn lookup(&self, loaded: &Loaded, target: &str) -> Result<Option<TargetFile>, HostedRepoError> {
        if let Some(found) = loaded
            .lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(target)
        {
            return Ok(found.clone());
        }
        let found = {
            let mut updater = loaded.updater.lock().unwrap_or_else(|e| e.into_inner());
            match updater.get_targetinfo(target) {
                Ok(found) => found,
                // An unacceptable path is simply not a target.
                Err(rampart_tuf_client::ClientError::Tuf(
                    rampart_core::TufError::BadTargetPath { .. },
                )) => None,
                Err(e) => {
                    return Err(HostedRepoError::Invalid {
                        dir: self.dir.display().to_string(),
                        reason: e.to_string(),
                    });
                }
            }
        };
        let mut lookups = loaded.lookups.lock().unwrap_or_else(|e| e.into_inner());
        if lookups.len() >= MAX_CACHED_LOOKUPS {
            lookups.clear();
        }
        lookups.insert(target.to_owned(), found.clone());
        Ok(found)
    }

    /// The files of `targets/` a device assigned `target` may fetch: the target itself and the
    /// documents its release information references (blocking). Empty if the repository does
    /// not list `target`.
    pub(crate) fn artifacts(
        &self,
        target: &str,
        now: i64,
    ) -> Result<Vec<Artifact>, HostedRepoError> {
        let loaded = self.current(now)?;
        let Some(info) = self.lookup(&loaded, target)? else {
            return Ok(Vec::new());
        };
        let mut paths = vec![(target.to_owned(), info.clone())];
        if let Ok(release) = ReleaseInfo::from_custom(info.custom.as_ref()) {
            for doc in [&release.sbom, &release.provenance, &release.tlog_proof]
                .into_iter()
                .flatten()
            {
                if let Some(doc_info) = self.lookup(&loaded, &doc.path)? {
                    paths.push((doc.path.clone(), doc_info));
                }
            }
        }
        let mut out = Vec::new();
        for (path, info) in paths {
            for hash in info.hashes.values() {
                let file = if loaded.consistent_snapshot {
                    match path.rsplit_once('/') {
                        Some((dir, name)) => format!("{dir}/{hash}.{name}"),
                        None => format!("{hash}.{path}"),
                    }
                } else {
                    path.clone()
                };
                out.push(Artifact {
                    file,
                    hash: hash.to_ascii_lowercase(),
                    info: info.clone(),
                });
            }
        }
        Ok(out)
    }
}

impl HostedRepo {
    /// The bytes of a document a release references (its SBOM, provenance or tlog-proof),
    /// read from `targets/` at most `max` bytes and checked against the document's signed
    /// target (length and SHA-256) before anyone reads them (blocking). The error says what
    /// is wrong for an operator.
    pub(crate) fn document(
        &self,
        doc: &rampart_core::release::DocumentRef,
        max: usize,
        now: i64,
    ) -> Result<Vec<u8>, String> {
        use std::io::Read as _;
        let artifacts = self.artifacts(&doc.path, now).map_err(|e| e.to_string())?;
        let artifact = artifacts
            .iter()
            .find(|a| {
                a.info
                    .hashes
                    .get("sha256")
                    .is_some_and(|h| h.eq_ignore_ascii_case(&a.hash))
            })
            .ok_or_else(|| format!("the repository lists no target {:?}", doc.path))?;
        let path = self.dir.join("targets").join(&artifact.file);
        let file = std::fs::File::open(&path).map_err(|e| {
            format!(
                "{}: {e} (is the document in the repository directory?)",
                path.display()
            )
        })?;
        let mut bytes = Vec::new();
        file.take(max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if bytes.len() > max {
            return Err(format!("{} is larger than {max} bytes", doc.path));
        }
        let expected = artifact
            .info
            .hashes
            .get("sha256")
            .map(|h| h.to_ascii_lowercase())
            .unwrap_or_default();
        if crate::helpers::sha256_hex(&bytes) != expected
            || bytes.len() as u64 != artifact.info.length
        {
            return Err(format!(
                "{} does not match its signed target (length or SHA-256); the repository directory was changed",
                doc.path
            ));
        }
        Ok(bytes)
    }
}

/// A release as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct Release {
    /// The target path, which assignments name.
    pub target: String,
    pub length: u64,
    pub sha256: String,
    /// The release information, if the target is a firmware image (documents have none).
    pub release: Option<ReleaseInfo>,
}

impl Release {
    pub fn new(target: &str, file: &TargetFile) -> Self {
        Release {
            target: target.to_owned(),
            length: file.length,
            sha256: file.hashes.get("sha256").cloned().unwrap_or_default(),
            release: ReleaseInfo::from_custom(file.custom.as_ref()).ok(),
        }
    }
}

/// The verified top-level releases at one timestamp version.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub timestamp_version: u64,
    /// Top-level targets (delegated ones are found by name with [`HostedRepo::target`]).
    pub releases: Vec<Release>,
}

impl HostedRepo {
    /// The verified top-level releases (blocking: call from `spawn_blocking`).
    pub fn catalog(&self, now: i64) -> Result<Catalog, HostedRepoError> {
        let loaded = self.current(now)?;
        let updater = loaded.updater.lock().unwrap_or_else(|e| e.into_inner());
        let trusted = updater.trusted();
        let releases = trusted
            .targets("targets")
            .map(|top| {
                top.signed
                    .targets
                    .iter()
                    .map(|(name, file)| Release::new(name, file))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Catalog {
            timestamp_version: trusted.timestamp().map(|t| t.version()).unwrap_or(0),
            releases,
        })
    }
}
