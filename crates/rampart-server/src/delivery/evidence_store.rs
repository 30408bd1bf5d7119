//! Where verified forensic evidence bundles are kept (issue 16, decision 0034): content-addressed
//! by their SHA-256 (hex), in a directory ([`EvidenceStore::Local`], `DIR/<sha256>`) or an
//! S3-compatible object store ([`EvidenceStore::ObjectStore`], `<prefix>/evidence/<sha256>`,
//! the same bucket, endpoint and credentials the artifact store reads: `rampart server
//! --evidence-store s3://BUCKET/PREFIX`).
//!
//! A name is the hash of the content, so an object is written once and never changes; the
//! reader checks the hash of what it gets back (the store is not trusted more than the artifact
//! store: whoever can write to it can destroy evidence, not substitute it unnoticed, because the
//! hash is in the audit chain and the transparency log).

use std::path::{Path, PathBuf};

use crate::delivery::artifact_store::{ArtifactStoreError, ObjectStoreArtifacts, Opened};

/// Where evidence bundles are stored. Cheap to clone.
#[derive(Clone, Debug)]
pub enum EvidenceStore {
    /// A directory holding `<sha256>` for each bundle.
    Local(PathBuf),
    /// An S3-compatible object store (objects below `<prefix>/evidence/`).
    ObjectStore(ObjectStoreArtifacts),
}

/// Why the evidence store failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceStoreError {
    #[error("{0:?} is not a SHA-256 in lower-case hex; evidence is stored by its hash")]
    BadName(String),
    #[error(
        "writing evidence to {location}: {reason}; check the directory's space and permissions"
    )]
    Write { location: String, reason: String },
    #[error(transparent)]
    Store(#[from] ArtifactStoreError),
}

fn check_name(sha256: &str) -> Result<(), EvidenceStoreError> {
    if sha256.len() == 64
        && sha256
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        Ok(())
    } else {
        Err(EvidenceStoreError::BadName(
            sha256.chars().take(80).collect(),
        ))
    }
}

impl EvidenceStore {
    /// An object store from `s3://BUCKET[/PREFIX]` (configured from the `AWS_*` environment
    /// like the artifact store, see [`ObjectStoreArtifacts::from_url`]).
    pub fn from_url(url: &str) -> Result<Self, ArtifactStoreError> {
        let store = ObjectStoreArtifacts::from_url(url, std::iter::empty::<(&str, &str)>())?;
        Ok(EvidenceStore::ObjectStore(store.under("evidence")))
    }

    /// Checks at start-up that the store can be used: a directory is created (owner-only), an
    /// object store's bucket must be listable.
    pub async fn check(&self) -> Result<(), EvidenceStoreError> {
        match self {
            EvidenceStore::Local(dir) => {
                create_private_dir(dir)
                    .await
                    .map_err(|e| EvidenceStoreError::Write {
                        location: dir.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            EvidenceStore::ObjectStore(store) => Ok(store.check().await?),
        }
    }

    /// Where the bundle `sha256` is, for messages.
    pub fn location(&self, sha256: &str) -> String {
        match self {
            EvidenceStore::Local(dir) => dir.join(sha256).display().to_string(),
            EvidenceStore::ObjectStore(store) => store.location(sha256),
        }
    }

    /// Stores the file `file` (already verified to hash to `sha256`) under its hash. A bundle
    /// already stored under that hash is the same bytes and is kept.
    pub async fn put(&self, sha256: &str, file: &Path) -> Result<(), EvidenceStoreError> {
        check_name(sha256)?;
        match self {
            EvidenceStore::Local(dir) => {
                let target = dir.join(sha256);
                let write_error = |e: std::io::Error| EvidenceStoreError::Write {
                    location: target.display().to_string(),
                    reason: e.to_string(),
                };
                if tokio::fs::try_exists(&target).await.map_err(write_error)? {
                    return Ok(());
                }
                // Copied to a temporary name, flushed, then renamed: the name never holds a
                // partial bundle, even across a power cut.
                let partial = dir.join(format!(".{sha256}.partial"));
                tokio::fs::copy(file, &partial).await.map_err(write_error)?;
                let synced = tokio::fs::File::open(&partial).await.map_err(write_error)?;
                synced.sync_all().await.map_err(write_error)?;
                tokio::fs::rename(&partial, &target)
                    .await
                    .map_err(write_error)?;
                let dir_handle = tokio::fs::File::open(dir).await.map_err(write_error)?;
                dir_handle.sync_all().await.map_err(write_error)?;
                Ok(())
            }
            EvidenceStore::ObjectStore(store) => {
                if store.size(sha256).await?.is_some() {
                    return Ok(());
                }
                store.upload(sha256, file, &|_| {}).await?;
                Ok(())
            }
        }
    }

    /// Opens the bundle `sha256`, or `None` if the store does not hold it.
    pub async fn open(&self, sha256: &str) -> Result<Option<Opened>, EvidenceStoreError> {
        check_name(sha256)?;
        match self {
            EvidenceStore::Local(dir) => {
                let file = dir.join(sha256);
                let found = crate::delivery::artifact_store::open_file(&file, 0, None)
                    .await
                    .map_err(|e| ArtifactStoreError::Read {
                        location: file.display().to_string(),
                        reason: e.to_string(),
                    })?;
                Ok(found.map(|(stream, size)| Opened { size, stream }))
            }
            EvidenceStore::ObjectStore(store) => {
                let Some(size) = store.size(sha256).await? else {
                    return Ok(None);
                };
                Ok(store.open(sha256, 0, size).await?)
            }
        }
    }

    /// The whole bundle `sha256`, read up to `max` bytes and checked against its hash (`None`:
    /// not stored).
    pub async fn read(
        &self,
        sha256: &str,
        max: u64,
    ) -> Result<Option<Vec<u8>>, EvidenceStoreError> {
        use futures_util::TryStreamExt as _;
        let Some(opened) = self.open(sha256).await? else {
            return Ok(None);
        };
        let read_error = |reason: String| ArtifactStoreError::Read {
            location: self.location(sha256),
            reason,
        };
        if opened.size > max {
            return Err(
                read_error(format!("{} bytes, over the limit of {max}", opened.size)).into(),
            );
        }
        let mut bytes = Vec::with_capacity(opened.size as usize);
        let mut stream = opened.stream;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| read_error(e.to_string()))?
        {
            if bytes.len() as u64 + chunk.len() as u64 > max {
                return Err(read_error(format!("over the limit of {max} bytes")).into());
            }
            bytes.extend_from_slice(&chunk);
        }
        let found = crate::helpers::sha256_hex(&bytes);
        if found != sha256 {
            return Err(read_error(format!(
                "the stored bytes hash to {found}: the evidence store was tampered with or damaged"
            ))
            .into());
        }
        Ok(Some(bytes))
    }
}

/// Creates `dir` (and its parents) owner-only if missing.
pub(crate) async fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_hash_names_a_bundle() {
        assert!(check_name(&"a".repeat(64)).is_ok());
        for bad in [
            "",
            "../etc/passwd",
            &"A".repeat(64),
            &"a".repeat(63),
            &"g".repeat(64),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_stored_bundle_reads_back_and_a_changed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = EvidenceStore::Local(dir.path().join("evidence"));
        store.check().await.unwrap();
        let source = dir.path().join("bundle");
        std::fs::write(&source, b"evidence bytes").unwrap();
        let sha = crate::helpers::sha256_hex(b"evidence bytes");
        store.put(&sha, &source).await.unwrap();
        assert_eq!(
            store.read(&sha, 1024).await.unwrap().unwrap(),
            b"evidence bytes"
        );
        assert!(store.read(&"0".repeat(64), 1024).await.unwrap().is_none());
        std::fs::write(dir.path().join("evidence").join(&sha), b"other bytes").unwrap();
        let e = store.read(&sha, 1024).await.unwrap_err().to_string();
        assert!(e.contains("tampered"), "{e}");
    }
}
