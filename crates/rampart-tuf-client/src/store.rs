//! Durable local files: write to a fresh temporary file in the same directory, fsync, rename,
//! fsync the directory, so a crash leaves either the old or the new file, never a torn one.
//!
//! The client writes its trusted metadata through a [`MetadataStore`]: by default
//! [`AtomicFiles`] ([`write_atomic`]); a device passes its own persistent-write layer, so its
//! power-loss tests can cut the power at these writes too.

use std::io::Write;
use std::path::Path;

/// Where the client's trusted metadata is written: each file replaced whole and atomically
/// (a crash leaves the old or the new file).
pub trait MetadataStore: Send {
    fn replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()>;
    /// The same store, for an [`crate::Updater`] to own.
    fn to_box(&self) -> Box<dyn MetadataStore>;
}

/// Plain files replaced with [`write_atomic`].
#[derive(Debug, Default, Clone, Copy)]
pub struct AtomicFiles;

impl MetadataStore for AtomicFiles {
    fn replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        write_atomic(path, bytes)
    }

    fn to_box(&self) -> Box<dyn MetadataStore> {
        Box::new(AtomicFiles)
    }
}

/// Atomically replaces `path` with `bytes`, readable by everyone (mode 0644 on Unix).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o644)
}

/// Atomically replaces `path` with `bytes`, readable by the owner only (mode 0600 on Unix):
/// for secrets such as encrypted key files.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // A random, exclusively created name: no symlink can redirect it, and it is removed on error.
    let mut tmp = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_files_with_the_requested_mode_and_leaves_no_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("timestamp.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let k = dir.path().join("key");
        write_private(&k, b"secret").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&p), 0o644);
            assert_eq!(mode(&k), 0o600);
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
