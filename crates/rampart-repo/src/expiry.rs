//! When each role's published metadata expires, and when the online roles are due for renewal.
//!
//! Read straight from `metadata/` (no `rampart-repo.json` needed, so a hosted copy of a
//! repository is watched too) and without verifying signatures: this is for warnings; what
//! devices are served is verified elsewhere.

use std::collections::HashMap;
use std::path::Path;

use rampart_core::metadata::{Metadata, Root, Snapshot, Targets, Timestamp};

use crate::RepoError;

/// One role's published metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleExpiry {
    /// `root`, `timestamp`, `snapshot`, `targets` or a delegated role's name.
    pub role: String,
    pub version: u64,
    pub expires_unix: i64,
}

/// Whether metadata expiring at `expires_unix`, valid for `validity_secs` when signed, is due
/// for re-signing at `now`: when less than `renew_when_remaining` (a fraction of the validity,
/// 0 to 1) is left, or it has expired.
pub fn renewal_due(
    now: i64,
    expires_unix: i64,
    validity_secs: i64,
    renew_when_remaining: f64,
) -> bool {
    let threshold = (validity_secs.max(0) as f64 * renew_when_remaining.clamp(0.0, 1.0)) as i64;
    expires_unix.saturating_sub(now) < threshold.max(1)
}

/// Reads the expiries of the published metadata, remembering versioned files (which never
/// change once written) so that a repeated look reads only `timestamp.json` and new versions.
#[derive(Debug, Default)]
pub struct PublishedExpiries {
    /// Expiry of each `N.role.json` already read, by file name.
    seen: HashMap<String, i64>,
}

impl PublishedExpiries {
    /// The expiry of every role the current `timestamp.json` reaches (timestamp, snapshot and
    /// every targets role the snapshot lists), and of the newest root, in that order with the
    /// root first.
    pub fn read(&mut self, repo_dir: &Path) -> Result<Vec<RoleExpiry>, RepoError> {
        let metadata = repo_dir.join("metadata");
        let mut out = Vec::new();
        let root_version = newest_root(&metadata)?;
        out.push(RoleExpiry {
            role: "root".into(),
            version: root_version,
            expires_unix: self.versioned::<Root>(&metadata, "root", root_version)?,
        });
        let ts_path = metadata.join("timestamp.json");
        let timestamp = Metadata::<Timestamp>::from_bytes("timestamp", &read(&ts_path, 1 << 20)?)?;
        out.push(RoleExpiry {
            role: "timestamp".into(),
            version: timestamp.version(),
            expires_unix: timestamp.expires_unix(),
        });
        let Some(snapshot) = timestamp.signed.meta.get("snapshot.json") else {
            return Err(RepoError::BadFile {
                path: ts_path.display().to_string(),
                reason: "lists no snapshot.json".into(),
            });
        };
        let snapshot_path = metadata.join(format!("{}.snapshot.json", snapshot.version));
        let snapshot_md =
            Metadata::<Snapshot>::from_bytes("snapshot", &read(&snapshot_path, 64 << 20)?)?;
        out.push(RoleExpiry {
            role: "snapshot".into(),
            version: snapshot.version,
            expires_unix: snapshot_md.expires_unix(),
        });
        self.seen.insert(
            format!("{}.snapshot.json", snapshot.version),
            snapshot_md.expires_unix(),
        );
        for (file, meta) in &snapshot_md.signed.meta {
            let Some(role) = file.strip_suffix(".json") else {
                continue;
            };
            out.push(RoleExpiry {
                role: role.into(),
                version: meta.version,
                expires_unix: self.versioned::<Targets>(&metadata, role, meta.version)?,
            });
        }
        Ok(out)
    }

    fn versioned<T: rampart_core::metadata::SignedBody>(
        &mut self,
        metadata: &Path,
        role: &str,
        version: u64,
    ) -> Result<i64, RepoError> {
        let name = format!("{version}.{role}.json");
        if let Some(expires) = self.seen.get(&name) {
            return Ok(*expires);
        }
        let expires = Metadata::<T>::from_bytes(role, &read(&metadata.join(&name), 64 << 20)?)?
            .expires_unix();
        self.seen.insert(name, expires);
        Ok(expires)
    }
}

fn newest_root(metadata: &Path) -> Result<u64, RepoError> {
    let io = |source| RepoError::Io {
        path: metadata.display().to_string(),
        source,
    };
    let mut newest = None;
    for entry in std::fs::read_dir(metadata).map_err(io)? {
        let name = entry.map_err(io)?.file_name();
        if let Some(v) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".root.json"))
            .and_then(|v| v.parse::<u64>().ok())
        {
            newest = newest.max(Some(v));
        }
    }
    newest.ok_or_else(|| RepoError::BadFile {
        path: metadata.display().to_string(),
        reason: "no N.root.json".into(),
    })
}

fn read(path: &Path, limit: u64) -> Result<Vec<u8>, RepoError> {
    crate::repo::read_file(path, limit)
}

#[cfg(test)]
mod tests {
    use super::renewal_due;

    const DAY: i64 = 86_400;

    #[test]
    fn renewal_is_due_once_less_than_the_fraction_of_validity_remains() {
        let signed = 1_000_000;
        let expires = signed + DAY;
        // Fresh, and just before half-life: not yet.
        assert!(!renewal_due(signed, expires, DAY, 0.5));
        assert!(!renewal_due(signed + DAY / 2 - 1, expires, DAY, 0.5));
        // At half-life, later, and after expiry: due.
        assert!(renewal_due(signed + DAY / 2 + 1, expires, DAY, 0.5));
        assert!(renewal_due(expires - 1, expires, DAY, 0.5));
        assert!(renewal_due(expires + 10 * DAY, expires, DAY, 0.5));
        // Another fraction moves the point: a quarter of a 7-day snapshot is 42 hours.
        let week = 7 * DAY;
        assert!(!renewal_due(
            signed + week - 43 * 3600,
            signed + week,
            week,
            0.25
        ));
        assert!(renewal_due(
            signed + week - 41 * 3600,
            signed + week,
            week,
            0.25
        ));
        // Metadata signed with a validity longer than configured (e.g. by hand) is renewed by
        // what is left, not by its age.
        assert!(!renewal_due(signed, signed + 30 * DAY, DAY, 0.5));
        // A zero fraction still renews expired metadata.
        assert!(renewal_due(expires, expires, DAY, 0.0));
        assert!(!renewal_due(expires - 2, expires, DAY, 0.0));
    }
}
