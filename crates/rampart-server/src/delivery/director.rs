//! The Uptane-style director: each device's own targets metadata, signed on demand with the
//! director's online key (see [`rampart_core::director`] for the format and the device checks).
//! Signed copies are cached per (device, version) while more than half their validity remains,
//! for at most [`MAX_CACHED`] devices. The device routes that serve it are `device::director`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_core::director::check_director_root;
use rampart_core::metadata::{Metadata, Root};
use rampart_keys::Signer;

use crate::helpers::unix_now;

/// Default validity of director targets metadata.
pub const DEFAULT_DIRECTOR_TARGETS_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// Signed director metadata kept in memory at most (one per device).
pub const MAX_CACHED: usize = 100_000;
/// Largest director root file served.
pub(crate) const MAX_ROOT_BYTES: u64 = 512_000;

/// How the server acts as the director.
#[derive(Clone)]
pub struct DirectorConfig {
    /// The current director root (`rampart director init` writes `DIR/root.json` and
    /// `DIR/1.root.json`); other versions are served from the same directory as `N.root.json`.
    pub root_path: PathBuf,
    /// The online key, listed alone (threshold 1) for the `targets` role of the root.
    pub signer: Arc<dyn Signer>,
    /// How long each signed director targets metadata stays valid (at least 2 minutes).
    pub targets_expiry: Duration,
}

impl std::fmt::Debug for DirectorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectorConfig")
            .field("root_path", &self.root_path)
            .field("key_id", &self.signer.key_id())
            .field("targets_expiry", &self.targets_expiry)
            .finish()
    }
}

impl DirectorConfig {
    pub fn new(root_path: impl Into<PathBuf>, signer: Arc<dyn Signer>) -> Self {
        Self {
            root_path: root_path.into(),
            signer,
            targets_expiry: DEFAULT_DIRECTOR_TARGETS_EXPIRY,
        }
    }
}

/// A device's signed director targets metadata, as cached.
pub(crate) struct Signed {
    pub(crate) version: i64,
    pub(crate) target: String,
    pub(crate) expires_unix: i64,
    pub(crate) bytes: Arc<Vec<u8>>,
    pub(crate) etag: String,
}

/// The running director.
pub(crate) struct Director {
    pub(crate) signer: Arc<dyn Signer>,
    pub(crate) root_bytes: Vec<u8>,
    pub(crate) root_version: u64,
    pub(crate) root_dir: PathBuf,
    pub(crate) expiry_secs: i64,
    cache: Mutex<HashMap<String, Signed>>,
}

impl Director {
    /// Loads and checks the director root against the online key.
    pub(crate) fn new(config: &DirectorConfig) -> Result<Self, String> {
        let path = &config.root_path;
        let expiry_secs = i64::try_from(config.targets_expiry.as_secs()).unwrap_or(i64::MAX);
        if expiry_secs < 120 {
            return Err("director targets_expiry must be at least 2 minutes".into());
        }
        let root_bytes = std::fs::read(path)
            .map_err(|e| format!("reading the director root {}: {e}", path.display()))?;
        if root_bytes.len() as u64 > MAX_ROOT_BYTES {
            return Err(format!(
                "the director root {} is over {MAX_ROOT_BYTES} bytes",
                path.display()
            ));
        }
        let root = check_director_root(&root_bytes, &config.signer.key_id()).map_err(|e| {
            format!(
                "the director root {} does not suit the director key: {e}",
                path.display()
            )
        })?;
        if Metadata::<Root>::from_bytes("director root", &root_bytes)
            .map(|md| md.is_expired(unix_now()))
            .unwrap_or(false)
        {
            crate::observe::log::warn(
                &format!(
                    "the director root {} expired at {}; devices will refuse director metadata until a new root is published",
                    path.display(),
                    root.common.expires
                ),
                serde_json::Value::Null,
            );
        }
        let root_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        Ok(Director {
            signer: config.signer.clone(),
            root_bytes,
            root_version: root.common.version,
            root_dir,
            expiry_secs,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The cached copy for `device_id` if it is for this assignment and still fresh.
    pub(crate) fn cached(
        &self,
        device_id: &str,
        version: i64,
        target: &str,
        now: i64,
    ) -> Option<(Arc<Vec<u8>>, String)> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let signed = cache.get(device_id)?;
        let fresh = signed.expires_unix - now > self.expiry_secs / 2;
        (signed.version == version && signed.target == target && fresh)
            .then(|| (signed.bytes.clone(), signed.etag.clone()))
    }

    /// Caches a signed copy (at most [`MAX_CACHED`] devices).
    pub(crate) fn remember(&self, device_id: &str, signed: Signed) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(device_id) {
            // Bounded: drop one entry (it is re-signed on its next request).
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(device_id.to_owned(), signed);
    }
}
