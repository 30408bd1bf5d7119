//! The TUF client state machine (spec section 5): which metadata may be trusted, in which order.
//!
//! Pure: callers pass the bytes they fetched and the current time. Nothing is trusted until every
//! check for it has passed, so a caller that persists only what this type accepted never writes
//! untrusted metadata to its store.

use std::collections::BTreeMap;

use crate::error::TufError;
use crate::metadata::{Metadata, RoleType, Root, Snapshot, Targets, Timestamp};
use crate::verify::{check_length_and_hashes, verify_threshold};

/// The keys, key ids and threshold a delegator assigns to a role.
type DelegationKeys<'a> = (&'a BTreeMap<String, crate::keys::Key>, Vec<String>, u32);

/// The set of metadata a client currently trusts.
#[derive(Debug, Clone)]
pub struct TrustedSet {
    now_unix: i64,
    root: Metadata<Root>,
    timestamp: Option<Metadata<Timestamp>>,
    snapshot: Option<Metadata<Snapshot>>,
    targets: BTreeMap<String, Metadata<Targets>>,
}

impl TrustedSet {
    /// Starts from a trusted root. The root must be signed by its own root threshold; its
    /// expiry is checked later, once no newer root is available.
    pub fn new(root_bytes: &[u8], now_unix: i64) -> Result<Self, TufError> {
        let root = Metadata::<Root>::from_bytes("root", root_bytes)?;
        let r = root.signed.role(RoleType::Root);
        verify_threshold("root", &root, &root.signed.keys, &r.keyids, r.threshold)?;
        Ok(TrustedSet {
            now_unix,
            root,
            timestamp: None,
            snapshot: None,
            targets: BTreeMap::new(),
        })
    }

    pub fn root(&self) -> &Metadata<Root> {
        &self.root
    }
    pub fn timestamp(&self) -> Option<&Metadata<Timestamp>> {
        self.timestamp.as_ref()
    }
    pub fn snapshot(&self) -> Option<&Metadata<Snapshot>> {
        self.snapshot.as_ref()
    }
    pub fn targets(&self, role: &str) -> Option<&Metadata<Targets>> {
        self.targets.get(role)
    }

    /// Accepts root version N+1: signed by the threshold of the trusted root and of itself.
    pub fn update_root(&mut self, bytes: &[u8]) -> Result<&Metadata<Root>, TufError> {
        if self.timestamp.is_some() {
            return Err(TufError::OutOfOrder(
                "root cannot change after timestamp was loaded",
            ));
        }
        let new = Metadata::<Root>::from_bytes("root", bytes)?;
        let old_role = self.root.signed.role(RoleType::Root);
        verify_threshold(
            "root",
            &new,
            &self.root.signed.keys,
            &old_role.keyids,
            old_role.threshold,
        )?;
        let expected = self
            .root
            .version()
            .checked_add(1)
            .ok_or(TufError::BadVersion {
                role: "root".into(),
                expected: u64::MAX,
                found: new.version(),
            })?;
        if new.version() != expected {
            return Err(TufError::BadVersion {
                role: "root".into(),
                expected,
                found: new.version(),
            });
        }
        let new_role = new.signed.role(RoleType::Root);
        verify_threshold(
            "root",
            &new,
            &new.signed.keys,
            &new_role.keyids,
            new_role.threshold,
        )?;
        self.root = new;
        Ok(&self.root)
    }

    fn check_final_root(&self) -> Result<(), TufError> {
        if self.root.is_expired(self.now_unix) {
            return Err(TufError::Expired {
                role: "root".into(),
                expires: self.root.signed.common.expires.clone(),
            });
        }
        Ok(())
    }

    /// Accepts a new timestamp. Returns `EqualVersion` when it is the version already trusted
    /// (the caller keeps the trusted one and need not persist anything).
    pub fn update_timestamp(&mut self, bytes: &[u8]) -> Result<&Metadata<Timestamp>, TufError> {
        if self.snapshot.is_some() {
            return Err(TufError::OutOfOrder(
                "timestamp cannot change after snapshot was loaded",
            ));
        }
        self.check_final_root()?;
        let new = Metadata::<Timestamp>::from_bytes("timestamp", bytes)?;
        let r = self.root.signed.role(RoleType::Timestamp);
        verify_threshold(
            "timestamp",
            &new,
            &self.root.signed.keys,
            &r.keyids,
            r.threshold,
        )?;
        if let Some(old) = &self.timestamp {
            if new.version() < old.version() {
                return Err(TufError::Rollback {
                    role: "timestamp".into(),
                    trusted: old.version(),
                    new: new.version(),
                });
            }
            if new.version() == old.version() {
                return Err(TufError::EqualVersion {
                    role: "timestamp".into(),
                    version: new.version(),
                });
            }
            let (old_snap, new_snap) = (
                old.signed.snapshot_meta().version,
                new.signed.snapshot_meta().version,
            );
            if new_snap < old_snap {
                return Err(TufError::Rollback {
                    role: "snapshot (as listed in timestamp)".into(),
                    trusted: old_snap,
                    new: new_snap,
                });
            }
        }
        // Kept even when expired, so that it still guards against rollback of later timestamps
        // in this session; the expiry error below stops the update.
        self.timestamp = Some(new);
        self.check_final_timestamp()?;
        Ok(self.timestamp.as_ref().expect("just set"))
    }

    fn check_final_timestamp(&self) -> Result<&Metadata<Timestamp>, TufError> {
        let ts = self
            .timestamp
            .as_ref()
            .ok_or(TufError::OutOfOrder("timestamp must be loaded first"))?;
        if ts.is_expired(self.now_unix) {
            return Err(TufError::Expired {
                role: "timestamp".into(),
                expires: ts.signed.common.expires.clone(),
            });
        }
        Ok(ts)
    }

    /// Accepts a snapshot. `from_local_store` skips the length/hash check against timestamp (a
    /// stored snapshot may predate the new timestamp) but every other check still applies.
    pub fn update_snapshot(
        &mut self,
        bytes: &[u8],
        from_local_store: bool,
    ) -> Result<&Metadata<Snapshot>, TufError> {
        if !self.targets.is_empty() {
            return Err(TufError::OutOfOrder(
                "snapshot cannot change after targets were loaded",
            ));
        }
        let ts = self.check_final_timestamp()?;
        let meta = ts.signed.snapshot_meta().clone();
        if !from_local_store {
            check_length_and_hashes("snapshot", bytes, meta.length, meta.hashes.as_ref())?;
        }
        let new = Metadata::<Snapshot>::from_bytes("snapshot", bytes)?;
        let r = self.root.signed.role(RoleType::Snapshot);
        verify_threshold(
            "snapshot",
            &new,
            &self.root.signed.keys,
            &r.keyids,
            r.threshold,
        )?;
        if let Some(old) = &self.snapshot {
            for (name, old_meta) in &old.signed.meta {
                let Some(new_meta) = new.signed.meta.get(name) else {
                    return Err(TufError::RoleRemoved { role: name.clone() });
                };
                if new_meta.version < old_meta.version {
                    return Err(TufError::Rollback {
                        role: name.trim_end_matches(".json").to_string(),
                        trusted: old_meta.version,
                        new: new_meta.version,
                    });
                }
            }
        }
        self.snapshot = Some(new);
        self.check_final_snapshot()?;
        Ok(self.snapshot.as_ref().expect("just set"))
    }

    fn check_final_snapshot(&self) -> Result<&Metadata<Snapshot>, TufError> {
        let ts = self.check_final_timestamp()?;
        let snap = self
            .snapshot
            .as_ref()
            .ok_or(TufError::OutOfOrder("snapshot must be loaded first"))?;
        if snap.is_expired(self.now_unix) {
            return Err(TufError::Expired {
                role: "snapshot".into(),
                expires: snap.signed.common.expires.clone(),
            });
        }
        let want = ts.signed.snapshot_meta().version;
        if snap.version() != want {
            return Err(TufError::BadVersion {
                role: "snapshot".into(),
                expected: want,
                found: snap.version(),
            });
        }
        Ok(snap)
    }

    /// What snapshot says about `role`'s metadata file, used by callers to pick the URL and
    /// the download limit.
    pub fn snapshot_meta_for(&self, role: &str) -> Result<crate::metadata::MetaFile, TufError> {
        let snap = self.check_final_snapshot()?;
        snap.signed
            .meta
            .get(&format!("{role}.json"))
            .cloned()
            .ok_or_else(|| TufError::MissingMeta {
                role: role.to_string(),
                listed_in: "snapshot".into(),
            })
    }

    /// Checks an already trusted delegated role against another delegator that also delegates to
    /// it: trust must hold along every path a client reaches the role by.
    pub fn verify_cached_delegate(&self, role: &str, delegator: &str) -> Result<(), TufError> {
        let md = self
            .targets
            .get(role)
            .ok_or(TufError::OutOfOrder("role is not loaded"))?;
        if delegator == "root" {
            let r = self.root.signed.role(RoleType::Targets);
            return verify_threshold(role, md, &self.root.signed.keys, &r.keyids, r.threshold);
        }
        let (keys, keyids, threshold) = self.delegation_keys(role, delegator)?;
        verify_threshold(role, md, keys, &keyids, threshold)
    }

    fn delegation_keys(&self, role: &str, delegator: &str) -> Result<DelegationKeys<'_>, TufError> {
        let missing = || TufError::MissingMeta {
            role: role.to_string(),
            listed_in: format!("{delegator} delegations"),
        };
        let parent = self.targets.get(delegator).ok_or(TufError::OutOfOrder(
            "a delegating role must be loaded before its delegates",
        ))?;
        let delegations = parent.signed.delegations.as_ref().ok_or_else(missing)?;
        let (keyids, threshold) =
            crate::delegation::role_keys(delegations, role).ok_or_else(missing)?;
        Ok((&delegations.keys, keyids, threshold))
    }

    /// Accepts the top-level targets metadata.
    pub fn update_targets(
        &mut self,
        bytes: &[u8],
        from_local_store: bool,
    ) -> Result<&Metadata<Targets>, TufError> {
        self.update_delegated_targets(bytes, "targets", "root", from_local_store)
    }

    /// Accepts metadata for targets role `role`, delegated by the trusted role `delegator`
    /// (`"root"` for the top-level targets role).
    pub fn update_delegated_targets(
        &mut self,
        bytes: &[u8],
        role: &str,
        delegator: &str,
        from_local_store: bool,
    ) -> Result<&Metadata<Targets>, TufError> {
        let meta = self.snapshot_meta_for(role)?;
        if !from_local_store {
            check_length_and_hashes(role, bytes, meta.length, meta.hashes.as_ref())?;
        }
        let new = Metadata::<Targets>::from_bytes(role, bytes)?;
        if delegator == "root" {
            let r = self.root.signed.role(RoleType::Targets);
            verify_threshold(role, &new, &self.root.signed.keys, &r.keyids, r.threshold)?;
        } else {
            let (keys, keyids, threshold) = self.delegation_keys(role, delegator)?;
            verify_threshold(role, &new, keys, &keyids, threshold)?;
        }
        if new.version() != meta.version {
            return Err(TufError::BadVersion {
                role: role.to_string(),
                expected: meta.version,
                found: new.version(),
            });
        }
        if new.is_expired(self.now_unix) {
            return Err(TufError::Expired {
                role: role.to_string(),
                expires: new.signed.common.expires.clone(),
            });
        }
        self.targets.insert(role.to_string(), new);
        Ok(&self.targets[role])
    }
}
