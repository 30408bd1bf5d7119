use std::path::{Path, PathBuf};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rampart_core::delegation::{matching_children, validate_target_path};
use rampart_core::metadata::{MetaFile, TargetFile};
use rampart_core::verify::{StreamingCheck, check_length_and_hashes};
use rampart_core::{TrustedSet, TufError};

use crate::fetch::{FetchError, Fetcher};
use crate::store::{AtomicFiles, MetadataStore};

/// Hard upper bounds on what the client downloads and walks (endless-data defence).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub root_max: u64,
    pub timestamp_max: u64,
    pub snapshot_max: u64,
    pub targets_max: u64,
    /// Root versions fetched in one refresh at most.
    pub max_root_rotations: u64,
    /// Targets roles visited in one target search at most.
    pub max_delegations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            root_max: 512_000,
            // Room for several post-quantum signatures (an ML-DSA-65 signature is 6.6 KB in hex).
            timestamp_max: 65_536,
            snapshot_max: 2_000_000,
            targets_max: 5_000_000,
            max_root_rotations: 32,
            max_delegations: 32,
        }
    }
}

/// Where the client reads from and keeps its state.
#[derive(Debug, Clone)]
pub struct UpdaterConfig {
    /// Base URL of the metadata directory, without a trailing slash.
    pub metadata_url: String,
    /// Directory of trusted metadata (`root.json`, `timestamp.json`, ...).
    pub metadata_dir: PathBuf,
    /// Base URL of the targets directory, without a trailing slash.
    pub target_base_url: Option<String>,
    pub limits: Limits,
}

/// Why a client operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tuf(#[from] TufError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("no trusted root in {0}: initialise the client with a root.json first")]
    NoTrustedRoot(String),
    #[error("no target base URL configured")]
    NoTargetBaseUrl,
    #[error("gave up after visiting {0} delegated roles (delegation limit)")]
    TooManyDelegations(usize),
}

/// Characters Python's `urllib.parse.quote(s, safe="")` leaves alone, so file and URL names
/// match other TUF clients.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

fn quote(s: &str) -> String {
    utf8_percent_encode(s, QUOTE).to_string()
}

/// A TUF client bound to one repository and one local metadata directory.
pub struct Updater<F: Fetcher> {
    config: UpdaterConfig,
    fetcher: F,
    trusted: TrustedSet,
    store: Box<dyn MetadataStore>,
}

impl<F: Fetcher> Updater<F> {
    /// Loads the trusted root from the metadata directory. `now_unix` is the reference time for
    /// every expiry check of this session.
    pub fn new(config: UpdaterConfig, fetcher: F, now_unix: i64) -> Result<Self, ClientError> {
        let root_path = config.metadata_dir.join("root.json");
        let bytes = read_bounded(&root_path, config.limits.root_max)?
            .ok_or_else(|| ClientError::NoTrustedRoot(config.metadata_dir.display().to_string()))?;
        let trusted = TrustedSet::new(&bytes, now_unix)?;
        Ok(Updater {
            config,
            fetcher,
            trusted,
            store: Box::new(AtomicFiles),
        })
    }

    /// Writes the trusted metadata through `store` instead of plain atomic file replacement.
    pub fn with_store(mut self, store: Box<dyn MetadataStore>) -> Self {
        self.store = store;
        self
    }

    pub fn trusted(&self) -> &TrustedSet {
        &self.trusted
    }

    /// Refreshes root, timestamp, snapshot and top-level targets.
    pub fn refresh(&mut self) -> Result<(), ClientError> {
        self.load_root()?;
        self.load_timestamp()?;
        self.load_snapshot()?;
        self.load_targets("targets", "root")?;
        Ok(())
    }

    fn metadata_url(&self, name: &str, version: Option<u64>) -> String {
        match version {
            Some(v) => format!("{}/{v}.{}.json", self.config.metadata_url, quote(name)),
            None => format!("{}/{}.json", self.config.metadata_url, quote(name)),
        }
    }

    fn local_path(&self, role: &str) -> PathBuf {
        self.config
            .metadata_dir
            .join(format!("{}.json", quote(role)))
    }

    fn persist(&self, role: &str, bytes: &[u8]) -> Result<(), ClientError> {
        let path = self.local_path(role);
        self.store
            .replace(&path, bytes)
            .map_err(|source| ClientError::Io {
                path: path.display().to_string(),
                source,
            })
    }

    fn load_root(&mut self) -> Result<(), ClientError> {
        let first = self.trusted.root().version().saturating_add(1);
        for version in first..first.saturating_add(self.config.limits.max_root_rotations) {
            let url = self.metadata_url("root", Some(version));
            let bytes = match self.fetcher.fetch(&url, self.config.limits.root_max) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => break,
                Err(e) => return Err(e.into()),
            };
            self.trusted.update_root(&bytes)?;
            self.persist("root", &bytes)?;
        }
        Ok(())
    }

    fn load_timestamp(&mut self) -> Result<(), ClientError> {
        // A stored timestamp, even an expired one, still guards against rollback.
        if let Ok(Some(local)) = read_bounded(
            &self.local_path("timestamp"),
            self.config.limits.timestamp_max,
        ) {
            let _ = self.trusted.update_timestamp(&local);
        }
        let url = self.metadata_url("timestamp", None);
        let bytes = self.fetcher.fetch(&url, self.config.limits.timestamp_max)?;
        match self.trusted.update_timestamp(&bytes) {
            Ok(_) => {}
            Err(TufError::EqualVersion { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        self.persist("timestamp", &bytes)
    }

    fn load_snapshot(&mut self) -> Result<(), ClientError> {
        if let Ok(Some(local)) = read_bounded(
            &self.local_path("snapshot"),
            self.config.limits.snapshot_max,
        ) && self.trusted.update_snapshot(&local, true).is_ok()
        {
            return Ok(());
        }
        let meta = self
            .trusted
            .timestamp()
            .expect("timestamp loaded before snapshot")
            .signed
            .snapshot_meta()
            .clone();
        let bytes = self.fetch_meta("snapshot", &meta, self.config.limits.snapshot_max)?;
        self.trusted.update_snapshot(&bytes, false)?;
        self.persist("snapshot", &bytes)
    }

    fn fetch_meta(&self, role: &str, meta: &MetaFile, max: u64) -> Result<Vec<u8>, ClientError> {
        let version = self
            .trusted
            .root()
            .signed
            .consistent_snapshot()
            .then_some(meta.version);
        let limit = meta.length.unwrap_or(max).min(max);
        Ok(self
            .fetcher
            .fetch(&self.metadata_url(role, version), limit)?)
    }

    fn load_targets(&mut self, role: &str, delegator: &str) -> Result<(), ClientError> {
        if self.trusted.targets(role).is_some() {
            self.trusted.verify_cached_delegate(role, delegator)?;
            return Ok(());
        }
        let max = self.config.limits.targets_max;
        if let Ok(Some(local)) = read_bounded(&self.local_path(role), max)
            && self
                .trusted
                .update_delegated_targets(&local, role, delegator, true)
                .is_ok()
        {
            return Ok(());
        }
        let meta = self.trusted.snapshot_meta_for(role)?;
        let bytes = self.fetch_meta(role, &meta, max)?;
        self.trusted
            .update_delegated_targets(&bytes, role, delegator, false)?;
        self.persist(role, &bytes)
    }

    /// Finds the trusted description of `target_path`, walking delegations in pre-order
    /// depth-first order as the TUF spec prescribes. Refreshes first if needed.
    pub fn get_targetinfo(&mut self, target_path: &str) -> Result<Option<TargetFile>, ClientError> {
        validate_target_path(target_path)?;
        if self.trusted.targets("targets").is_none() {
            self.refresh()?;
        }
        let mut to_visit: Vec<(String, String)> = vec![("targets".into(), "root".into())];
        let mut visited: Vec<(String, String)> = Vec::new();
        while let Some((role, parent)) = to_visit.pop() {
            if visited.contains(&(role.clone(), parent.clone())) {
                continue;
            }
            if visited.len() >= self.config.limits.max_delegations {
                return Err(ClientError::TooManyDelegations(visited.len()));
            }
            self.load_targets(&role, &parent)?;
            let targets = &self.trusted.targets(&role).expect("just loaded").signed;
            if let Some(t) = targets.targets.get(target_path) {
                return Ok(Some(t.clone()));
            }
            let children = matching_children(targets, target_path);
            visited.push((role.clone(), parent));
            if children.last().is_some_and(|c| c.terminating) {
                to_visit.clear();
            }
            to_visit.extend(children.into_iter().rev().map(|c| (c.name, role.clone())));
        }
        Ok(None)
    }

    /// Local file name for a target path: the quoted path, so that every target maps to one
    /// flat file name inside the target directory and no path can escape it.
    pub fn target_file_path(target_dir: &Path, target_path: &str) -> PathBuf {
        target_dir.join(quote(target_path))
    }

    /// Returns the path of an already downloaded copy whose length and hashes match.
    pub fn find_cached_target(
        target_dir: &Path,
        target_path: &str,
        info: &TargetFile,
    ) -> Option<PathBuf> {
        let path = Self::target_file_path(target_dir, target_path);
        let bytes = read_bounded(&path, info.length).ok()??;
        check_length_and_hashes(target_path, &bytes, Some(info.length), Some(&info.hashes))
            .ok()
            .map(|_| path)
    }

    /// Downloads a target into `target_dir` under its quoted name (see [`Self::target_file_path`]).
    pub fn download_target(
        &self,
        target_path: &str,
        info: &TargetFile,
        target_dir: &Path,
    ) -> Result<PathBuf, ClientError> {
        let path = Self::target_file_path(target_dir, target_path);
        self.download_target_to(target_path, info, &path)?;
        Ok(path)
    }

    /// Downloads a target to `dest`, streaming it through the length and hash checks into a
    /// temporary file beside `dest` that replaces `dest` only once everything matched: nothing
    /// unverified ever appears under `dest`, and memory use does not grow with the image.
    pub fn download_target_to(
        &self,
        target_path: &str,
        info: &TargetFile,
        dest: &Path,
    ) -> Result<(), ClientError> {
        use std::io::Write;
        let url = self.target_url(target_path, info)?;
        let mut check = StreamingCheck::new(target_path, info.length, &info.hashes)?;
        let dir = dest
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io = |source| ClientError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".download-")
            .tempfile_in(dir)
            .map_err(io)?;
        let mut refused: Option<TufError> = None;
        self.fetcher
            .fetch_into(&url, info.length, &mut |chunk| {
                check.update(chunk).map_err(|e| {
                    refused = Some(e);
                    std::io::Error::other("refused")
                })?;
                tmp.write_all(chunk)
            })
            .map_err(|e| refused.take().map(ClientError::from).unwrap_or(e.into()))?;
        check.finish()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(dest).map_err(|e| ClientError::Io {
            path: dest.display().to_string(),
            source: e.error,
        })?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// The URL a target is downloaded from (`<base>/[dir/]<hash>.<name>` with consistent
    /// snapshots).
    pub fn target_url(&self, target_path: &str, info: &TargetFile) -> Result<String, ClientError> {
        validate_target_path(target_path)?;
        let base = self
            .config
            .target_base_url
            .as_deref()
            .ok_or(ClientError::NoTargetBaseUrl)?;
        Ok(if self.trusted.root().signed.consistent_snapshot() {
            let hash = info.hashes.values().next().expect("targets have hashes");
            match target_path.rsplit_once('/') {
                Some((dir, name)) => format!("{base}/{}/{hash}.{}", quote_path(dir), quote(name)),
                None => format!("{base}/{hash}.{}", quote(target_path)),
            }
        } else {
            format!("{base}/{}", quote_path(target_path))
        })
    }

    /// Fetches and verifies a target into memory (for small targets such as SBOMs).
    pub fn fetch_target(
        &self,
        target_path: &str,
        info: &TargetFile,
    ) -> Result<Vec<u8>, ClientError> {
        let url = self.target_url(target_path, info)?;
        let bytes = self.fetcher.fetch(&url, info.length)?;
        check_length_and_hashes(target_path, &bytes, Some(info.length), Some(&info.hashes))?;
        Ok(bytes)
    }
}

fn quote_path(p: &str) -> String {
    p.split('/').map(quote).collect::<Vec<_>>().join("/")
}

/// Reads a local file if it exists, refusing files over `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ClientError> {
    let io = |source| ClientError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    Ok(Some(
        crate::fetch::read_limited(&path.display().to_string(), f, limit)
            .map_err(|e| io(std::io::Error::other(e)))?,
    ))
}
