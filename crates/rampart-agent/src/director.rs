//! Director metadata on the device, Uptane-style: what the director assigns this device is
//! verified before anything is downloaded.
//!
//! Through the update server ([`ServerClient`]), [`verify_assigned`]:
//!
//! 1. moves the pinned director root forward through `GET /device/v1/director/{N}.root.json`
//!    (each must be signed by the old and new root thresholds), then fetches
//!    `GET /device/v1/director/targets.json` and verifies it: threshold of the director's
//!    `targets` role, not expired, version not below the one this device accepted, bound to
//!    this device's id (from its own certificate, never from the server);
//! 2. refreshes the image repository through `/device/v1/repo/metadata/` with the TUF client;
//! 3. checks agreement: every director target must be in the image repository with the same
//!    length and hashes, built for this hardware, not below the installed security version (and
//!    in the transparency log when the device was provisioned with a log policy);
//! 4. records the accepted director version (write, fsync, rename) so an older one is refused
//!    from then on.
//!
//! Every file it keeps (the director root and targets, the accepted version, the image
//! repository's trusted metadata) is written through the device's [`Disk`], so the power-loss
//! tests cut the power at these writes too.
//!
//! Polling and reporting are [`crate::server_client`]'s; one whole session (poll, verify,
//! download) is [`crate::server_update`]'s.

use std::path::Path;

use rampart_core::director::{DirectorTrust, check_agreement};
use rampart_core::metadata::TargetFile;
use rampart_core::release::ReleaseInfo;
use rampart_tuf_client::{Limits, Updater, UpdaterConfig};

use rampart_tuf_client::store::MetadataStore;

use crate::disk::Disk;
use crate::server_client::io_error;
// Moved to `server_client`; kept here for the callers that still name them by this path.
use crate::server_client::{ServerClient, UpdateError};

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

/// A file of the director state replaced through `store`.
fn replace(store: &dyn MetadataStore, path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    store.replace(path, bytes).map_err(io_error(path))
}

/// Pins the director root at provisioning (refuses to replace one: it changes by rotation).
pub fn pin_director_root(state: &Path, root_bytes: &[u8]) -> Result<(), UpdateError> {
    pin_director_root_on(&Disk::new(), state, root_bytes)
}

/// [`pin_director_root`], written through `store` (on a device, its [`Disk`]).
pub fn pin_director_root_on(
    store: &dyn MetadataStore,
    state: &Path,
    root_bytes: &[u8],
) -> Result<(), UpdateError> {
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
    replace(store, &path, root_bytes)
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

/// Steps 1 to 4 of the module documentation: the director's metadata, the image repository,
/// their agreement and the release checks. `None` when the director lists no target. What it
/// keeps is written through `store` (on a device, its [`Disk`]).
pub fn verify_assigned(
    store: &dyn MetadataStore,
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
        replace(store, &root_path, &bytes)?;
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
    let fetcher = client.fetcher().clone();
    let mut up = Updater::new(config, fetcher, now_unix)?.with_store(store.to_box());
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
    replace(store, &stored, &director_bytes)?;
    let version_path = director_dir.join(DIRECTOR_VERSION);
    replace(
        store,
        &version_path,
        format!("{}\n", director.version()).as_bytes(),
    )?;

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
