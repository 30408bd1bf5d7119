use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use rampart_core::TufError;
use rampart_core::delegation::validate_target_path;
use rampart_core::metadata::{
    Common, DelegatedRole, Delegations, MetaFile, Metadata, RoleKeys, RoleType, Root, Signature,
    SignedBody, Snapshot, TargetFile, Targets, Timestamp, envelope_bytes, format_expires,
};
use rampart_core::release::{DocumentRef, ReleaseError, ReleaseInfo};
use rampart_keys::{SignError, Signer};
use rampart_tuf_client::store::write_atomic;
use serde::{Deserialize, Serialize};

use crate::documents::{self, DocumentError};

/// The file, at the repository's top, naming the signing keys of each role (references only:
/// no secret is stored in it).
pub const CONFIG_FILE: &str = "rampart-repo.json";
/// The file, at the repository's top, whose lock every writer holds (see [`Repository::lock`]).
pub const LOCK_FILE: &str = ".rampart-repo.lock";
const SPEC_VERSION: &str = "1.0.31";
const DAY: i64 = 86_400;

/// Errors of repository operations; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} is not a Rampart repository (no {CONFIG_FILE}); run `rampart repo init` first")]
    NotARepository(String),
    #[error("{0} already holds a repository; choose an empty directory")]
    AlreadyExists(String),
    #[error("{path} is malformed: {reason}")]
    BadFile { path: String, reason: String },
    #[error("role {role}: {reason}")]
    BadRoleKeys { role: String, reason: String },
    #[error("signing key")]
    Sign(#[from] SignError),
    #[error(transparent)]
    Tuf(#[from] TufError),
    #[error(transparent)]
    Release(#[from] ReleaseError),
    #[error(transparent)]
    Document(#[from] DocumentError),
    #[error(
        "target {0:?} already exists; releases are immutable, publish a new version under a new name"
    )]
    TargetExists(String),
    #[error(
        "security version {offered} is below {existing}, already released for hardware {hardware:?} in {target:?}; security versions only go up"
    )]
    SecurityVersionDecrease {
        offered: u64,
        existing: u64,
        hardware: String,
        target: String,
    },
    #[error(
        "target {target:?} is outside the paths delegated to role {role:?}; no client would find it there (choose --name to match, or another --role)"
    )]
    OutsideDelegation { target: String, role: String },
    #[error(
        "{file} would be {size} bytes, over the {limit}-byte limit clients apply to {role} metadata: {hint}"
    )]
    TooLargeForClients {
        file: String,
        role: &'static str,
        size: u64,
        limit: u64,
        hint: &'static str,
    },
    #[error("recording the release in the transparency log failed: {0}")]
    Log(String),
    #[error("no delegated role named {0:?}; create it with `rampart repo delegate`")]
    UnknownRole(String),
    #[error("verification failed: {0}")]
    Verify(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RepoError + '_ {
    move |source| RepoError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Days each role's metadata stays valid after it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryDays {
    pub root: u32,
    pub targets: u32,
    pub snapshot: u32,
    pub timestamp: u32,
}

impl Default for ExpiryDays {
    fn default() -> Self {
        ExpiryDays {
            root: 365,
            targets: 90,
            snapshot: 7,
            timestamp: 1,
        }
    }
}

/// Key references and threshold of one role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleSigners {
    /// `file:PATH` or `pkcs11:token=..;object=..` references.
    pub keys: Vec<String>,
    pub threshold: u32,
}

/// Contents of `rampart-repo.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RepoConfig {
    pub format: u32,
    pub root: RoleSigners,
    pub targets: RoleSigners,
    pub snapshot: RoleSigners,
    pub timestamp: RoleSigners,
    /// Delegated targets roles (one level below `targets`).
    #[serde(default)]
    pub delegations: BTreeMap<String, RoleSigners>,
    #[serde(default)]
    pub expiry_days: ExpiryDays,
    /// The transparency log every release is recorded in, if one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparency: Option<TransparencyConfig>,
}

/// Where releases are logged and how the proofs are checked (`rampart repo set-log`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransparencyConfig {
    /// Base URL of the log (`rampart log serve`).
    pub log_url: String,
    /// Witness policy text (log key, witnesses, quorum): what devices will check.
    pub policy: String,
    /// Path of the release note key that signs each release statement.
    pub release_key: String,
}

/// Records a release statement in the transparency log and returns its tlog-proof.
pub type ReleaseLogger<'a> =
    &'a dyn Fn(&rampart_log::statement::ReleaseStatement) -> Result<Vec<u8>, String>;

impl RepoConfig {
    fn role(&self, role: RoleType) -> &RoleSigners {
        match role {
            RoleType::Root => &self.root,
            RoleType::Targets => &self.targets,
            RoleType::Snapshot => &self.snapshot,
            RoleType::Timestamp => &self.timestamp,
        }
    }
    fn role_mut(&mut self, role: RoleType) -> &mut RoleSigners {
        match role {
            RoleType::Root => &mut self.root,
            RoleType::Targets => &mut self.targets,
            RoleType::Snapshot => &mut self.snapshot,
            RoleType::Timestamp => &mut self.timestamp,
        }
    }
}

/// Reports progress of long operations (hashing and copying images, verifying).
pub trait Progress {
    fn start(&self, _what: &str, _total: u64) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

/// Progress that is not shown.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Opens key references; the CLI supplies one that prompts for passphrases.
pub type KeyOpener<'a> = &'a dyn Fn(&str) -> Result<Box<dyn Signer>, SignError>;

/// What `init` needs.
pub struct InitOptions {
    pub root: RoleSigners,
    pub targets: RoleSigners,
    pub snapshot: RoleSigners,
    pub timestamp: RoleSigners,
    pub expiry_days: ExpiryDays,
}

/// A release to add.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub image: PathBuf,
    /// Target path; defaults to `<version>/<image file name>`.
    pub target_name: Option<String>,
    pub hardware_ids: Vec<String>,
    pub version: String,
    pub security_version: u64,
    pub sbom: Option<PathBuf>,
    pub provenance: Option<ProvenanceInput>,
    /// Delegated role to list the release in; `None` for the top-level targets role.
    pub role: Option<String>,
}

/// Provenance attached to a release, stored as its own target next to the image.
#[derive(Debug, Clone)]
pub enum ProvenanceInput {
    /// A bare in-toto statement file (unsigned), stored as `<target>.intoto.json`.
    Statement(PathBuf),
    /// An in-toto bundle (DSSE envelopes, one a line), stored as `<target>.intoto.jsonl`. The
    /// caller verifies signatures against its policy first; the repository checks that every
    /// envelope names the stored image.
    Bundle(Vec<u8>),
}

/// What `add_releases` did for one release.
#[derive(Debug, Clone)]
pub struct AddedRelease {
    pub target_name: String,
    pub sha256: String,
    pub length: u64,
    pub role: String,
}

/// A change to one role's keys in a root rotation.
#[derive(Debug, Clone)]
pub struct RootChange {
    pub role: RoleType,
    pub add_keys: Vec<String>,
    /// Key ids to remove (revocation).
    pub remove_key_ids: Vec<String>,
    pub threshold: Option<u32>,
}

/// Summary of a verification.
#[derive(Debug, Clone, Default)]
pub struct VerifyReport {
    pub root_version: u64,
    pub timestamp_version: u64,
    pub snapshot_version: u64,
    pub targets_roles: usize,
    pub targets_checked: usize,
}

/// An image repository on disk.
pub struct Repository {
    dir: PathBuf,
    config: RepoConfig,
}

/// The repository's write lock (an advisory lock on [`LOCK_FILE`]); released when dropped.
/// Every writing operation holds it, so an operator's `rampart repo publish` and the server's
/// automatic renewal never write snapshot or timestamp versions at the same time.
#[derive(Debug)]
pub struct RepoLock {
    _file: std::fs::File,
}

/// What [`Repository::renew_published`] signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Renewed {
    /// The new snapshot version, if the snapshot was re-signed too.
    pub snapshot_version: Option<u64>,
    pub snapshot_expires_unix: Option<i64>,
    pub timestamp_version: u64,
    pub timestamp_expires_unix: i64,
}

pub(crate) fn read_file(path: &Path, limit: u64) -> Result<Vec<u8>, RepoError> {
    let f = std::fs::File::open(path).map_err(io_err(path))?;
    let mut buf = Vec::new();
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path))?;
    if buf.len() as u64 > limit {
        return Err(RepoError::BadFile {
            path: path.display().to_string(),
            reason: format!("over {limit} bytes"),
        });
    }
    Ok(buf)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    write_atomic(path, bytes).map_err(io_err(path))
}

/// Writes a metadata file after checking it fits the size limits clients apply by default, so
/// the repository never publishes something its own devices would refuse.
fn write_metadata(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let limits = rampart_tuf_client::Limits::default();
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let (role, limit, hint) = if name == "timestamp.json" {
        (
            "timestamp",
            limits.timestamp_max,
            "use fewer timestamp keys (each ML-DSA-65 signature adds 6.6 KB)",
        )
    } else if name.ends_with(".root.json") {
        ("root", limits.root_max, "use fewer root keys or signatures")
    } else if name.ends_with(".snapshot.json") {
        ("snapshot", limits.snapshot_max, "use fewer delegated roles")
    } else {
        (
            "targets",
            limits.targets_max,
            "spread releases over delegated roles (`rampart repo delegate`)",
        )
    };
    if bytes.len() as u64 > limit {
        return Err(RepoError::TooLargeForClients {
            file: name.to_string(),
            role,
            size: bytes.len() as u64,
            limit,
            hint,
        });
    }
    write(path, bytes)
}

fn common(role: RoleType, version: u64, expires_unix: i64) -> Common {
    Common {
        type_: role.as_str().to_string(),
        spec_version: SPEC_VERSION.to_string(),
        version,
        expires: format_expires(expires_unix),
    }
}

/// Signs `signed` with every signer and returns the envelope bytes.
pub fn sign_envelope<T: Serialize>(
    signed: &T,
    signers: &[Box<dyn Signer>],
) -> Result<Vec<u8>, RepoError> {
    let signers: Vec<&dyn Signer> = signers.iter().map(|s| s.as_ref()).collect();
    sign_envelope_with(signed, &signers)
}

/// [`sign_envelope`] with borrowed signers (keys held elsewhere, e.g. by the server).
pub fn sign_envelope_with<T: Serialize>(
    signed: &T,
    signers: &[&dyn Signer],
) -> Result<Vec<u8>, RepoError> {
    let canonical =
        rampart_core::cjson::to_canonical_bytes(signed).map_err(|e| RepoError::BadFile {
            path: "<metadata>".into(),
            reason: e.to_string(),
        })?;
    let mut signatures = Vec::new();
    for s in signers {
        if signatures.iter().any(|x: &Signature| x.keyid == s.key_id()) {
            continue;
        }
        signatures.push(Signature {
            keyid: s.key_id(),
            sig: hex::encode(s.sign(&canonical)?),
        });
    }
    Ok(envelope_bytes(signed, &signatures))
}

fn check_threshold(role: &str, s: &RoleSigners) -> Result<(), RepoError> {
    if s.keys.is_empty() {
        return Err(RepoError::BadRoleKeys {
            role: role.into(),
            reason: "needs at least one key".into(),
        });
    }
    if s.threshold < 1 || s.threshold as usize > s.keys.len() {
        return Err(RepoError::BadRoleKeys {
            role: role.into(),
            reason: format!(
                "threshold {} must be between 1 and its {} key(s)",
                s.threshold,
                s.keys.len()
            ),
        });
    }
    Ok(())
}

impl Repository {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }
    fn metadata_dir(&self) -> PathBuf {
        self.dir.join("metadata")
    }
    fn targets_dir(&self) -> PathBuf {
        self.dir.join("targets")
    }

    fn lock_file(&self) -> Result<std::fs::File, RepoError> {
        let path = self.dir.join(LOCK_FILE);
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))
    }

    /// Waits for the repository's write lock and takes it (see [`RepoLock`]).
    pub fn lock(&self) -> Result<RepoLock, RepoError> {
        let file = self.lock_file()?;
        file.lock().map_err(io_err(&self.dir.join(LOCK_FILE)))?;
        Ok(RepoLock { _file: file })
    }

    /// Takes the repository's write lock if no other writer holds it; `None` if one does.
    pub fn try_lock(&self) -> Result<Option<RepoLock>, RepoError> {
        let file = self.lock_file()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(RepoLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(RepoError::Io {
                path: self.dir.join(LOCK_FILE).display().to_string(),
                source: e,
            }),
        }
    }

    /// Creates a new repository with version 1 of every top-level role.
    pub fn init(
        dir: &Path,
        opts: InitOptions,
        open: KeyOpener,
        now: i64,
    ) -> Result<Repository, RepoError> {
        if dir.join(CONFIG_FILE).exists() || dir.join("metadata").exists() {
            return Err(RepoError::AlreadyExists(dir.display().to_string()));
        }
        for (name, s) in [
            ("root", &opts.root),
            ("targets", &opts.targets),
            ("snapshot", &opts.snapshot),
            ("timestamp", &opts.timestamp),
        ] {
            check_threshold(name, s)?;
        }
        std::fs::create_dir_all(dir.join("metadata")).map_err(io_err(dir))?;
        std::fs::create_dir_all(dir.join("targets")).map_err(io_err(dir))?;
        let config = RepoConfig {
            format: 1,
            root: opts.root,
            targets: opts.targets,
            snapshot: opts.snapshot,
            timestamp: opts.timestamp,
            delegations: BTreeMap::new(),
            expiry_days: opts.expiry_days,
            transparency: None,
        };
        let repo = Repository {
            dir: dir.to_path_buf(),
            config,
        };
        let root_signers = repo.open_role(RoleType::Root, open)?;
        let mut keys = BTreeMap::new();
        let mut roles = BTreeMap::new();
        for role in [
            RoleType::Root,
            RoleType::Targets,
            RoleType::Snapshot,
            RoleType::Timestamp,
        ] {
            let signers = if role == RoleType::Root {
                Vec::new()
            } else {
                repo.open_role(role, open)?
            };
            let list = if role == RoleType::Root {
                &root_signers
            } else {
                &signers
            };
            let mut keyids = Vec::new();
            for s in list {
                keys.insert(s.key_id(), s.public_key().clone());
                if !keyids.contains(&s.key_id()) {
                    keyids.push(s.key_id());
                }
            }
            roles.insert(
                role.as_str().to_string(),
                RoleKeys {
                    keyids,
                    threshold: repo.config.role(role).threshold,
                },
            );
        }
        let root = Root {
            common: common(
                RoleType::Root,
                1,
                now + i64::from(repo.config.expiry_days.root) * DAY,
            ),
            consistent_snapshot: Some(true),
            keys,
            roles,
        };
        write_metadata(
            &repo.metadata_dir().join("1.root.json"),
            &sign_envelope(&root, &root_signers)?,
        )?;
        let targets = Targets {
            common: common(
                RoleType::Targets,
                1,
                now + i64::from(repo.config.expiry_days.targets) * DAY,
            ),
            targets: BTreeMap::new(),
            delegations: None,
        };
        let t_signers = repo.open_role(RoleType::Targets, open)?;
        write_metadata(
            &repo.metadata_dir().join("1.targets.json"),
            &sign_envelope(&targets, &t_signers)?,
        )?;
        repo.save_config()?;
        let _lock = repo.lock()?;
        repo.publish_locked(open, now)?;
        Ok(repo)
    }

    /// Opens an existing repository.
    pub fn open(dir: &Path) -> Result<Repository, RepoError> {
        let path = dir.join(CONFIG_FILE);
        if !path.exists() {
            return Err(RepoError::NotARepository(dir.display().to_string()));
        }
        let bytes = read_file(&path, 1 << 20)?;
        let config: RepoConfig =
            serde_json::from_slice(&bytes).map_err(|e| RepoError::BadFile {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        Ok(Repository {
            dir: dir.to_path_buf(),
            config,
        })
    }

    fn save_config(&self) -> Result<(), RepoError> {
        let mut bytes = serde_json::to_vec_pretty(&self.config).expect("config serializes");
        bytes.push(b'\n');
        write(&self.dir.join(CONFIG_FILE), &bytes)
    }

    fn open_refs(
        &self,
        refs: &[String],
        open: KeyOpener,
    ) -> Result<Vec<Box<dyn Signer>>, RepoError> {
        refs.iter()
            .map(|r| open(r).map_err(RepoError::from))
            .collect()
    }

    fn open_role(
        &self,
        role: RoleType,
        open: KeyOpener,
    ) -> Result<Vec<Box<dyn Signer>>, RepoError> {
        self.open_refs(&self.config.role(role).keys, open)
    }

    /// Highest version of `role` on disk (`N.role.json`), if any.
    pub fn latest_version(&self, role: &str) -> Result<Option<u64>, RepoError> {
        let suffix = format!(".{role}.json");
        let mut best = None;
        let md = self.metadata_dir();
        for e in std::fs::read_dir(&md).map_err(io_err(&md))? {
            let name = e.map_err(io_err(&md))?.file_name();
            let name = name.to_string_lossy();
            if let Some(v) = name
                .strip_suffix(&suffix)
                .and_then(|v| v.parse::<u64>().ok())
            {
                best = best.max(Some(v));
            }
        }
        Ok(best)
    }

    fn load<T: SignedBody>(&self, role: &str) -> Result<(u64, Metadata<T>), RepoError> {
        let v = self
            .latest_version(role)?
            .ok_or_else(|| RepoError::BadFile {
                path: self.metadata_dir().display().to_string(),
                reason: format!("no {role} metadata"),
            })?;
        let path = self.metadata_dir().join(format!("{v}.{role}.json"));
        let bytes = read_file(&path, 64 << 20)?;
        Ok((v, Metadata::<T>::from_bytes(role, &bytes)?))
    }

    /// The current root.
    pub fn root(&self) -> Result<Root, RepoError> {
        Ok(self.load::<Root>("root")?.1.signed)
    }

    /// The latest signed metadata of a targets role.
    pub fn targets_role(&self, role: &str) -> Result<Targets, RepoError> {
        Ok(self.load::<Targets>(role)?.1.signed)
    }

    fn targets_roles(&self) -> Vec<String> {
        std::iter::once("targets".to_string())
            .chain(self.config.delegations.keys().cloned())
            .collect()
    }

    fn signers_for_targets_role(
        &self,
        role: &str,
        open: KeyOpener,
    ) -> Result<Vec<Box<dyn Signer>>, RepoError> {
        if role == "targets" {
            return self.open_role(RoleType::Targets, open);
        }
        let s = self
            .config
            .delegations
            .get(role)
            .ok_or_else(|| RepoError::UnknownRole(role.into()))?;
        self.open_refs(&s.keys, open)
    }

    fn write_targets_role(
        &self,
        role: &str,
        mut t: Targets,
        open: KeyOpener,
        now: i64,
    ) -> Result<u64, RepoError> {
        let signers = self.signers_for_targets_role(role, open)?;
        t.common.version += 1;
        t.common.expires = format_expires(now + i64::from(self.config.expiry_days.targets) * DAY);
        let v = t.common.version;
        write_metadata(
            &self.metadata_dir().join(format!("{v}.{role}.json")),
            &sign_envelope(&t, &signers)?,
        )?;
        Ok(v)
    }

    /// Where the hash-prefixed copy of a target lives.
    fn target_file_path(&self, target_name: &str, sha256: &str) -> PathBuf {
        match target_name.rsplit_once('/') {
            Some((dir, file)) => self
                .targets_dir()
                .join(dir)
                .join(format!("{sha256}.{file}")),
            None => self.targets_dir().join(format!("{sha256}.{target_name}")),
        }
    }

    /// Copies `src` into `targets/` under its hash-prefixed name, hashing while copying.
    fn store_target(
        &self,
        target_name: &str,
        src: &Path,
        progress: &dyn Progress,
    ) -> Result<(String, u64), RepoError> {
        let mut input = std::fs::File::open(src).map_err(io_err(src))?;
        let total = input.metadata().map_err(io_err(src))?.len();
        let (dir_part, file_part) = match target_name.rsplit_once('/') {
            Some((d, f)) => (Some(d), f),
            None => (None, target_name),
        };
        let dest_dir = match dir_part {
            Some(d) => self.targets_dir().join(d),
            None => self.targets_dir(),
        };
        std::fs::create_dir_all(&dest_dir).map_err(io_err(&dest_dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dest_dir).map_err(io_err(&dest_dir))?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut length = 0u64;
        progress.start(&format!("hashing and copying {}", src.display()), total);
        loop {
            let n = input.read(&mut buf).map_err(io_err(src))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(io_err(&dest_dir))?;
            length += n as u64;
            progress.advance(n as u64);
        }
        progress.finish();
        // Served files must be world-readable; temporary files start owner-only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(0o644))
                .map_err(io_err(&dest_dir))?;
        }
        tmp.as_file().sync_all().map_err(io_err(&dest_dir))?;
        let sha256 = hex::encode(ctx.finish());
        let dest = dest_dir.join(format!("{sha256}.{file_part}"));
        tmp.persist(&dest).map_err(|e| RepoError::Io {
            path: dest.display().to_string(),
            source: e.error,
        })?;
        Ok((sha256, length))
    }

    fn store_document(
        &self,
        name: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(DocumentRef, TargetFile), RepoError> {
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes));
        let (dir, file) = name
            .rsplit_once('/')
            .map(|(d, f)| (self.targets_dir().join(d), f))
            .unwrap_or((self.targets_dir(), name));
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        write(&dir.join(format!("{sha256}.{file}")), bytes)?;
        let doc = DocumentRef {
            path: name.to_string(),
            sha256: sha256.clone(),
            length: bytes.len() as u64,
            media_type: media_type.into(),
        };
        let tf = TargetFile {
            length: bytes.len() as u64,
            hashes: IndexMap::from([("sha256".to_string(), sha256)]),
            custom: None,
        };
        Ok((doc, tf))
    }

    /// Adds releases, signing each affected targets role once. Does not publish.
    pub fn add_releases(
        &self,
        requests: &[ReleaseRequest],
        open: KeyOpener,
        now: i64,
        progress: &dyn Progress,
    ) -> Result<Vec<AddedRelease>, RepoError> {
        self.add_releases_logged(requests, open, now, progress, None)
    }

    /// Saves the transparency-log settings used by `release add`.
    pub fn set_transparency(&mut self, t: Option<TransparencyConfig>) -> Result<(), RepoError> {
        let _lock = self.lock()?;
        self.config.transparency = t;
        self.save_config()
    }

    /// Like [`Self::add_releases`]; with a `logger`, each release's statement is recorded in the
    /// transparency log first and its tlog-proof is attached as the target `<name>.tlog-proof`.
    pub fn add_releases_logged(
        &self,
        requests: &[ReleaseRequest],
        open: KeyOpener,
        now: i64,
        progress: &dyn Progress,
        logger: Option<ReleaseLogger>,
    ) -> Result<Vec<AddedRelease>, RepoError> {
        let _lock = self.lock()?;
        let mut roles: BTreeMap<String, Targets> = BTreeMap::new();
        let mut all_existing: BTreeMap<String, TargetFile> = BTreeMap::new();
        let top = self.targets_role("targets")?;
        for role in self.targets_roles() {
            let t = self.targets_role(&role)?;
            // Only entries a client would trust count: a delegate listing paths outside its
            // delegation must not be able to block the owner's releases.
            all_existing.extend(
                t.targets
                    .iter()
                    .filter(|(name, _)| role_may_list(&top, &role, name))
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
            roles.insert(role, t);
        }
        // Highest security version released so far per (role, hardware id), and the target
        // carrying it. Per role, so that a delegate cannot block releases the owner signs.
        let mut highest_security: BTreeMap<(String, String), (u64, String)> = BTreeMap::new();
        fn note_release(
            highest_security: &mut BTreeMap<(String, String), (u64, String)>,
            role: &str,
            name: &str,
            info: &ReleaseInfo,
        ) {
            for hw in &info.hardware_ids {
                let e = highest_security
                    .entry((role.to_string(), hw.clone()))
                    .or_insert((0, name.to_string()));
                if info.security_version > e.0 {
                    *e = (info.security_version, name.to_string());
                }
            }
        }
        for (role, t) in &roles {
            for (name, tf) in &t.targets {
                if let Ok(old) = ReleaseInfo::from_custom(tf.custom.as_ref()) {
                    note_release(&mut highest_security, role, name, &old);
                }
            }
        }
        let mut added = Vec::new();
        for req in requests {
            let role = req.role.clone().unwrap_or_else(|| "targets".into());
            if !roles.contains_key(&role) {
                return Err(RepoError::UnknownRole(role));
            }
            let file_name = req
                .image
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("image")
                .to_string();
            let target_name = req
                .target_name
                .clone()
                .unwrap_or_else(|| format!("{}/{file_name}", req.version));
            validate_target_path(&target_name)?;
            if !role_may_list(&top, &role, &target_name) {
                return Err(RepoError::OutsideDelegation {
                    target: target_name,
                    role,
                });
            }
            // The SBOM is read and checked first: its format names its target.
            let sbom = req
                .sbom
                .as_ref()
                .map(|p| read_file(p, documents::MAX_DOCUMENT_BYTES as u64))
                .transpose()?;
            let sbom_kind = sbom.as_deref().map(documents::validate_sbom).transpose()?;
            let sbom_name = sbom_kind.map(|kind| format!("{target_name}{}", kind.suffix));
            let provenance_name = req.provenance.as_ref().map(|p| match p {
                ProvenanceInput::Statement(_) => format!("{target_name}.intoto.json"),
                ProvenanceInput::Bundle(_) => format!("{target_name}.intoto.jsonl"),
            });
            let proof_name = logger.map(|_| format!("{target_name}.tlog-proof"));
            for name in std::iter::once(&target_name)
                .chain(&sbom_name)
                .chain(&provenance_name)
                .chain(&proof_name)
            {
                validate_target_path(name)?;
                if !role_may_list(&top, &role, name) {
                    return Err(RepoError::OutsideDelegation {
                        target: name.clone(),
                        role,
                    });
                }
                if all_existing.contains_key(name) {
                    return Err(RepoError::TargetExists(name.clone()));
                }
            }
            let mut info = ReleaseInfo {
                hardware_ids: req.hardware_ids.clone(),
                version: req.version.clone(),
                security_version: req.security_version,
                sbom: None,
                provenance: None,
                tlog_proof: None,
            };
            info.validate()?;
            for hw in &info.hardware_ids {
                if let Some((existing, target)) = highest_security.get(&(role.clone(), hw.clone()))
                    && *existing > info.security_version
                {
                    return Err(RepoError::SecurityVersionDecrease {
                        offered: info.security_version,
                        existing: *existing,
                        hardware: hw.clone(),
                        target: target.clone(),
                    });
                }
            }
            // Read and validate documents before touching the repository (the provenance
            // subject check needs the image hash, so a failure there removes the stored copy).
            // (bytes, whether a bundle)
            let provenance = match &req.provenance {
                None => None,
                Some(ProvenanceInput::Statement(p)) => {
                    Some((read_file(p, documents::MAX_DOCUMENT_BYTES as u64)?, false))
                }
                Some(ProvenanceInput::Bundle(b)) => Some((b.clone(), true)),
            };
            let (sha256, length) = self.store_target(&target_name, &req.image, progress)?;
            if let Some((b, is_bundle)) = &provenance
                && let Err(e) = if *is_bundle {
                    documents::validate_provenance_bundle(b, &sha256)
                } else {
                    documents::validate_provenance(b, &sha256)
                }
            {
                let _ = std::fs::remove_file(self.target_file_path(&target_name, &sha256));
                return Err(e.into());
            }
            let targets = roles.get_mut(&role).expect("checked");
            if let (Some(b), Some(name), Some(kind)) = (sbom, sbom_name, sbom_kind) {
                let (doc, tf) = self.store_document(&name, &b, kind.media_type)?;
                targets.targets.insert(name.clone(), tf.clone());
                all_existing.insert(name, tf);
                info.sbom = Some(doc);
            }
            if let (Some((b, is_bundle)), Some(name)) = (provenance, provenance_name) {
                let media_type = if is_bundle {
                    rampart_vuln::provenance::BUNDLE_MEDIA_TYPE
                } else {
                    "application/vnd.in-toto+json"
                };
                let (doc, tf) = self.store_document(&name, &b, media_type)?;
                targets.targets.insert(name.clone(), tf.clone());
                all_existing.insert(name, tf);
                info.provenance = Some(doc);
            }
            if let (Some(log), Some(name)) = (logger, proof_name) {
                let statement = rampart_log::statement::ReleaseStatement::for_release(
                    &target_name,
                    &info,
                    &sha256,
                )
                .map_err(|e| RepoError::Log(e.to_string()))?;
                let proof = match log(&statement) {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = std::fs::remove_file(self.target_file_path(&target_name, &sha256));
                        return Err(RepoError::Log(e));
                    }
                };
                let (doc, tf) = self.store_document(
                    &name,
                    &proof,
                    "text/plain; profile=c2sp.org/tlog-proof@v1",
                )?;
                targets.targets.insert(name.clone(), tf.clone());
                all_existing.insert(name, tf);
                info.tlog_proof = Some(doc);
            }
            let tf = TargetFile {
                length,
                hashes: IndexMap::from([("sha256".to_string(), sha256.clone())]),
                custom: Some(info.to_custom()),
            };
            targets.targets.insert(target_name.clone(), tf.clone());
            all_existing.insert(target_name.clone(), tf);
            note_release(&mut highest_security, &role, &target_name, &info);
            added.push(AddedRelease {
                target_name,
                sha256,
                length,
                role,
            });
        }
        let touched: std::collections::BTreeSet<&str> =
            added.iter().map(|a| a.role.as_str()).collect();
        for role in touched {
            self.write_targets_role(role, roles[role].clone(), open, now)?;
        }
        Ok(added)
    }

    /// Re-signs the top-level targets role and every delegated role with a new version and a
    /// fresh expiry (their offline keys are needed). Does not publish.
    pub fn renew_targets(
        &self,
        open: KeyOpener,
        now: i64,
    ) -> Result<Vec<(String, u64)>, RepoError> {
        let _lock = self.lock()?;
        let mut renewed = Vec::new();
        for role in self.targets_roles() {
            let t = self.targets_role(&role)?;
            let v = self.write_targets_role(&role, t, open, now)?;
            renewed.push((role, v));
        }
        Ok(renewed)
    }

    /// Signs a new snapshot listing the latest version of every targets role, and a new
    /// timestamp for it. Also the way to renew their expiry.
    pub fn publish(&self, open: KeyOpener, now: i64) -> Result<(u64, u64), RepoError> {
        let _lock = self.lock()?;
        self.publish_locked(open, now)
    }

    /// [`Self::publish`] for a caller holding the lock.
    fn publish_locked(&self, open: KeyOpener, now: i64) -> Result<(u64, u64), RepoError> {
        let mut meta = BTreeMap::new();
        for role in self.targets_roles() {
            let v = self
                .latest_version(&role)?
                .ok_or_else(|| RepoError::UnknownRole(role.clone()))?;
            let bytes = read_file(
                &self.metadata_dir().join(format!("{v}.{role}.json")),
                64 << 20,
            )?;
            meta.insert(format!("{role}.json"), meta_file(v, &bytes));
        }
        let snapshot_signers = self.open_role(RoleType::Snapshot, open)?;
        let timestamp_signers = self.open_role(RoleType::Timestamp, open)?;
        let (snap_version, _, snapshot) =
            self.write_snapshot(meta, &borrowed(&snapshot_signers), now)?;
        let (ts_version, _) = self.write_timestamp(snapshot, &borrowed(&timestamp_signers), now)?;
        Ok((snap_version, ts_version))
    }

    /// Re-signs what is published with fresh expiries, publishing nothing new: a new timestamp
    /// and, with `snapshot_signers`, a new snapshot listing the same targets versions as the
    /// current one (so a release added with `--no-publish` stays unpublished). Takes the
    /// repository's lock if it is free; `Ok(None)` if another writer holds it (try again later).
    /// The signers must be the roles' keys in the current root ([`Self::check_online_signers`],
    /// checked here too: a key rotated out since is refused, not used).
    pub fn renew_published(
        &self,
        snapshot_signers: Option<&[&dyn Signer]>,
        timestamp_signers: &[&dyn Signer],
        now: i64,
    ) -> Result<Option<Renewed>, RepoError> {
        let Some(_lock) = self.try_lock()? else {
            return Ok(None);
        };
        self.check_online_signers(RoleType::Timestamp, timestamp_signers)?;
        if let Some(signers) = snapshot_signers {
            self.check_online_signers(RoleType::Snapshot, signers)?;
        }
        let ts_path = self.metadata_dir().join("timestamp.json");
        let current =
            Metadata::<Timestamp>::from_bytes("timestamp", &read_file(&ts_path, 1 << 20)?)?;
        let mut snapshot = current
            .signed
            .meta
            .get("snapshot.json")
            .cloned()
            .ok_or_else(|| RepoError::BadFile {
                path: ts_path.display().to_string(),
                reason: "lists no snapshot.json".into(),
            })?;
        let mut renewed_snapshot = None;
        if let Some(signers) = snapshot_signers {
            let path = self
                .metadata_dir()
                .join(format!("{}.snapshot.json", snapshot.version));
            let published =
                Metadata::<Snapshot>::from_bytes("snapshot", &read_file(&path, 64 << 20)?)?;
            let (version, expires, meta) =
                self.write_snapshot(published.signed.meta, signers, now)?;
            renewed_snapshot = Some((version, expires));
            snapshot = meta;
        }
        let (timestamp_version, timestamp_expires_unix) =
            self.write_timestamp(snapshot, timestamp_signers, now)?;
        Ok(Some(Renewed {
            snapshot_version: renewed_snapshot.map(|(v, _)| v),
            snapshot_expires_unix: renewed_snapshot.map(|(_, e)| e),
            timestamp_version,
            timestamp_expires_unix,
        }))
    }

    /// Checks that `signers` are keys of `role` in the current root, at least its threshold, so
    /// that what they sign is accepted by devices.
    pub fn check_online_signers(
        &self,
        role: RoleType,
        signers: &[&dyn Signer],
    ) -> Result<(), RepoError> {
        let (version, root) = self.load::<Root>("root")?;
        let name = role.as_str();
        let keys = root
            .signed
            .roles
            .get(name)
            .ok_or_else(|| RepoError::BadRoleKeys {
                role: name.into(),
                reason: format!("root v{version} has no {name} role"),
            })?;
        let mut distinct = std::collections::BTreeSet::new();
        for s in signers {
            let id = s.key_id();
            if !keys.keyids.contains(&id) {
                return Err(RepoError::BadRoleKeys {
                    role: name.into(),
                    reason: format!(
                        "key {id} is not a {name} key of root v{version}; give one of its keys ({})",
                        keys.keyids.join(", ")
                    ),
                });
            }
            distinct.insert(id);
        }
        if (distinct.len() as u64) < u64::from(keys.threshold) {
            return Err(RepoError::BadRoleKeys {
                role: name.into(),
                reason: format!(
                    "root v{version} needs {} of its {name} keys, {} given",
                    keys.threshold,
                    distinct.len()
                ),
            });
        }
        Ok(())
    }

    /// Signs and writes snapshot version latest+1 listing `meta`: its version, expiry and the
    /// entry a timestamp lists for it.
    fn write_snapshot(
        &self,
        meta: BTreeMap<String, MetaFile>,
        signers: &[&dyn Signer],
        now: i64,
    ) -> Result<(u64, i64, MetaFile), RepoError> {
        let version = self.latest_version("snapshot")?.unwrap_or(0) + 1;
        let expires = now + i64::from(self.config.expiry_days.snapshot) * DAY;
        let snapshot = Snapshot {
            common: common(RoleType::Snapshot, version, expires),
            meta,
        };
        let bytes = sign_envelope_with(&snapshot, signers)?;
        write_metadata(
            &self.metadata_dir().join(format!("{version}.snapshot.json")),
            &bytes,
        )?;
        Ok((version, expires, meta_file(version, &bytes)))
    }

    /// Signs and writes the next `timestamp.json`, listing `snapshot`: its version and expiry.
    fn write_timestamp(
        &self,
        snapshot: MetaFile,
        signers: &[&dyn Signer],
        now: i64,
    ) -> Result<(u64, i64), RepoError> {
        let ts_path = self.metadata_dir().join("timestamp.json");
        let version = if ts_path.exists() {
            Metadata::<Timestamp>::from_bytes("timestamp", &read_file(&ts_path, 1 << 20)?)?
                .version()
                + 1
        } else {
            1
        };
        let expires = now + i64::from(self.config.expiry_days.timestamp) * DAY;
        let timestamp = Timestamp {
            common: common(RoleType::Timestamp, version, expires),
            meta: BTreeMap::from([("snapshot.json".to_string(), snapshot)]),
        };
        write_metadata(&ts_path, &sign_envelope_with(&timestamp, signers)?)?;
        Ok((version, expires))
    }

    /// Writes root version N+1 with the requested key changes, signed by the old root's keys
    /// and the new root's keys; re-signs targets if its keys changed, then publishes.
    pub fn rotate_root(
        &mut self,
        changes: &[RootChange],
        open: KeyOpener,
        now: i64,
    ) -> Result<u64, RepoError> {
        let _lock = self.lock()?;
        let (old_version, old_md) = self.load::<Root>("root")?;
        let old_root = old_md.signed;
        let old_root_signers = self.open_role(RoleType::Root, open)?;
        let mut new_root = old_root.clone();
        let mut new_config = self.config.clone();
        let mut targets_keys_changed = false;
        for change in changes {
            let role_name = change.role.as_str();
            let rk = new_root
                .roles
                .get_mut(role_name)
                .expect("root has all roles");
            let cfg = new_config.role_mut(change.role);
            for id in &change.remove_key_ids {
                if !rk.keyids.contains(id) {
                    return Err(RepoError::BadRoleKeys {
                        role: role_name.into(),
                        reason: format!("has no key {id}"),
                    });
                }
                rk.keyids.retain(|k| k != id);
                let mut kept = Vec::new();
                for r in &cfg.keys {
                    if open(r)?.key_id() != *id {
                        kept.push(r.clone());
                    }
                }
                cfg.keys = kept;
            }
            for r in &change.add_keys {
                let s = open(r)?;
                // A key that cannot sign (wrong PIN, public object not matching the private key)
                // must fail here, before a root that trusts it is written.
                let probe = b"rampart key check";
                s.public_key().verify(probe, &s.sign(probe)?).map_err(|e| {
                    RepoError::BadRoleKeys {
                        role: role_name.into(),
                        reason: format!("key {r} does not produce valid signatures: {e}"),
                    }
                })?;
                if !rk.keyids.contains(&s.key_id()) {
                    rk.keyids.push(s.key_id());
                    new_root.keys.insert(s.key_id(), s.public_key().clone());
                    cfg.keys.push(r.clone());
                }
            }
            if let Some(t) = change.threshold {
                rk.threshold = t;
            }
            cfg.threshold = rk.threshold;
            if rk.keyids.len() != cfg.keys.len() {
                return Err(RepoError::BadRoleKeys {
                    role: role_name.into(),
                    reason:
                        "the root lists keys whose signing references are not in rampart-repo.json"
                            .into(),
                });
            }
            check_threshold(role_name, cfg)?;
            targets_keys_changed |= change.role == RoleType::Targets;
        }
        // Keys no role uses any more are dropped, so revoked keys leave the root.
        let used: std::collections::BTreeSet<String> = new_root
            .roles
            .values()
            .flat_map(|r| r.keyids.clone())
            .collect();
        new_root.keys.retain(|id, _| used.contains(id));
        new_root.common.version = old_version + 1;
        new_root.common.expires =
            format_expires(now + i64::from(new_config.expiry_days.root) * DAY);
        let mut signers = old_root_signers;
        signers.extend(self.open_refs(&new_config.root.keys, open)?);
        let bytes = sign_envelope(&new_root, &signers)?;
        // Prove a client holding the old root accepts the new one before writing anything.
        let old_bytes = read_file(
            &self.metadata_dir().join(format!("{old_version}.root.json")),
            1 << 20,
        )?;
        rampart_core::TrustedSet::new(&old_bytes, now)?.update_root(&bytes)?;
        self.config = new_config;
        write_metadata(
            &self
                .metadata_dir()
                .join(format!("{}.root.json", old_version + 1)),
            &bytes,
        )?;
        self.save_config()?;
        if targets_keys_changed {
            let t = self.targets_role("targets")?;
            self.write_targets_role("targets", t, open, now)?;
        }
        self.publish_locked(open, now)?;
        Ok(old_version + 1)
    }

    /// Delegates `paths` from the top-level targets role to a new role signed by `keys`.
    pub fn delegate(
        &mut self,
        name: &str,
        paths: Vec<String>,
        signers: RoleSigners,
        terminating: bool,
        open: KeyOpener,
        now: i64,
    ) -> Result<(), RepoError> {
        let bad = |reason: &str| RepoError::BadRoleKeys {
            role: name.into(),
            reason: reason.into(),
        };
        if rampart_core::metadata::TOP_LEVEL_ROLE_NAMES.contains(&name)
            || self.config.delegations.contains_key(name)
        {
            return Err(bad("name is taken"));
        }
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(bad("role names may use letters, digits, '-' and '_'"));
        }
        if paths.is_empty() {
            return Err(bad("give at least one --path pattern"));
        }
        check_threshold(name, &signers)?;
        let _lock = self.lock()?;
        let opened = self.open_refs(&signers.keys, open)?;
        let mut parent = self.targets_role("targets")?;
        let d = parent.delegations.get_or_insert_with(|| Delegations {
            keys: BTreeMap::new(),
            roles: Some(Vec::new()),
            succinct_roles: None,
        });
        let mut keyids = Vec::new();
        for s in &opened {
            d.keys.insert(s.key_id(), s.public_key().clone());
            keyids.push(s.key_id());
        }
        d.roles.get_or_insert_with(Vec::new).push(DelegatedRole {
            name: name.into(),
            keyids,
            threshold: signers.threshold,
            terminating,
            paths: Some(paths),
            path_hash_prefixes: None,
        });
        let child = Targets {
            common: common(
                RoleType::Targets,
                1,
                now + i64::from(self.config.expiry_days.targets) * DAY,
            ),
            targets: BTreeMap::new(),
            delegations: None,
        };
        write_metadata(
            &self.metadata_dir().join(format!("1.{name}.json")),
            &sign_envelope(&child, &opened)?,
        )?;
        self.config.delegations.insert(name.into(), signers);
        self.write_targets_role("targets", parent, open, now)?;
        self.save_config()?;
        self.publish_locked(open, now)?;
        Ok(())
    }

    /// Verifies the repository as a client would: from `trusted_root` (default: version 1 of
    /// root) through every root rotation, timestamp, snapshot and targets role, then every
    /// target's length, hash and release information.
    pub fn verify(
        &self,
        trusted_root: Option<&Path>,
        now: i64,
        progress: &dyn Progress,
    ) -> Result<VerifyReport, RepoError> {
        use rampart_tuf_client::{HttpFetcher, Limits, Updater, UpdaterConfig};
        let state = tempfile::tempdir().map_err(io_err(&self.dir))?;
        let root_src = trusted_root
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.metadata_dir().join("1.root.json"));
        write(
            &state.path().join("root.json"),
            &read_file(&root_src, 1 << 20)?,
        )?;
        let abs = std::fs::canonicalize(&self.dir).map_err(io_err(&self.dir))?;
        let base = format!("file://{}", abs.display());
        let config = UpdaterConfig {
            metadata_url: format!("{base}/metadata"),
            metadata_dir: state.path().to_path_buf(),
            target_base_url: Some(format!("{base}/targets")),
            limits: Limits {
                targets_max: 64 << 20,
                snapshot_max: 64 << 20,
                ..Limits::default()
            },
        };
        let mut updater = Updater::new(config, HttpFetcher::default(), now)
            .map_err(|e| RepoError::Verify(e.to_string()))?;
        updater
            .refresh()
            .map_err(|e| RepoError::Verify(e.to_string()))?;
        let mut report = VerifyReport {
            root_version: updater.trusted().root().version(),
            timestamp_version: updater
                .trusted()
                .timestamp()
                .map(|t| t.version())
                .unwrap_or(0),
            snapshot_version: updater
                .trusted()
                .snapshot()
                .map(|t| t.version())
                .unwrap_or(0),
            ..Default::default()
        };
        let roles = self.targets_roles();
        report.targets_roles = roles.len();
        let mut names = Vec::new();
        for role in &roles {
            names.extend(self.targets_role(role)?.targets.into_keys());
        }
        progress.start("verifying targets", names.len() as u64);
        for name in &names {
            let info = updater
                .get_targetinfo(name)
                .map_err(|e| RepoError::Verify(format!("{name}: {e}")))?
                .ok_or_else(|| {
                    RepoError::Verify(format!("{name}: not reachable through trusted delegations"))
                })?;
            updater
                .fetch_target(name, &info)
                .map_err(|e| RepoError::Verify(format!("{name}: {e}")))?;
            let is_document = documents::SBOM_SUFFIXES
                .iter()
                .any(|suffix| name.ends_with(suffix))
                || name.ends_with(".intoto.json")
                || name.ends_with(".intoto.jsonl")
                || name.ends_with(".tlog-proof");
            if !is_document {
                ReleaseInfo::from_custom(info.custom.as_ref())
                    .map_err(|e| RepoError::Verify(format!("{name}: {e}")))?;
            }
            report.targets_checked += 1;
            progress.advance(1);
        }
        progress.finish();
        Ok(report)
    }
}

/// Whether `role` is trusted for `target` according to the top-level targets delegations.
fn role_may_list(top: &Targets, role: &str, target: &str) -> bool {
    if role == "targets" {
        return true;
    }
    rampart_core::delegation::matching_children(top, target)
        .iter()
        .any(|c| c.name == role)
}

fn borrowed(signers: &[Box<dyn Signer>]) -> Vec<&dyn Signer> {
    signers.iter().map(|s| s.as_ref()).collect()
}

fn meta_file(version: u64, bytes: &[u8]) -> MetaFile {
    MetaFile {
        version,
        length: Some(bytes.len() as u64),
        hashes: Some(IndexMap::from([(
            "sha256".to_string(),
            hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes)),
        )])),
    }
}
