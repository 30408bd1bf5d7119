//! The server's audit key: where it lives by default, and created owner-only once
//! (`rampart server`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Name of the audit keys `rampart server` creates (the signed notes' key name).
pub const AUDIT_KEY_NAME: &str = "rampart-audit";

/// Where `rampart server` keeps its audit key by default: `PATH.audit-key` next to a
/// `sqlite://PATH` database; `None` for PostgreSQL and in-memory databases (give --audit-key).
pub fn default_audit_key(db_url: &str) -> Option<PathBuf> {
    let rest = db_url
        .strip_prefix("sqlite://")
        .or_else(|| db_url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.audit-key")))
}

/// Reads the audit key at `path`, or creates it (mode 0600) if it does not exist. A key file
/// others may read is refused: whoever holds the key can sign a rewritten history.
pub fn load_or_create_audit_key(path: &Path) -> anyhow::Result<rampart_log::note::NoteSigner> {
    if !path.exists() {
        let key = ephemeral_audit_key()?;
        if create_private_once(path, format!("{}\n", key.signer_key_string()).as_bytes())
            .with_context(|| format!("creating the audit key {}", path.display()))?
        {
            return Ok(key);
        }
        // Another server created it at the same moment: both use that one.
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading the audit key {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "the audit key {} may be read by other users (mode {:o}): run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the audit key {}", path.display()))?;
    rampart_log::note::NoteSigner::parse_signer_key(text.trim()).with_context(|| {
        format!(
            "{} is not an audit key (a signed-note key from `rampart log keygen`)",
            path.display()
        )
    })
}

/// A new random audit key, not written anywhere (`load_or_create_audit_key` writes it;
/// `rampart server check-config` checks with one when the configured key is not created yet).
pub fn ephemeral_audit_key() -> anyhow::Result<rampart_log::note::NoteSigner> {
    use ring::rand::SecureRandom as _;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| anyhow::anyhow!("the system random generator failed"))?;
    Ok(rampart_log::note::NoteSigner::from_seed(
        AUDIT_KEY_NAME,
        seed,
    )?)
}

/// Writes `bytes` to a new owner-only file at `path`, whole (written and synced under a
/// temporary name, then linked in place); `false` if `path` already exists, which is then left
/// as it is.
fn create_private_once(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(".tmp-audit-key-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(true),
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_audit_key_sits_next_to_a_sqlite_database_only() {
        assert_eq!(
            default_audit_key("sqlite:///var/lib/rampart/server.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/rampart/server.db.audit-key"))
        );
        assert_eq!(
            default_audit_key("sqlite:server.db"),
            Some(PathBuf::from("server.db.audit-key"))
        );
        assert_eq!(default_audit_key("sqlite::memory:"), None);
        assert_eq!(default_audit_key("postgres://rampart@db/fleet"), None);
    }

    #[test]
    fn an_audit_key_is_created_owner_only_and_one_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let created = load_or_create_audit_key(&path).unwrap();
        let loaded = load_or_create_audit_key(&path).unwrap();
        assert_eq!(created.verifier_key_string(), loaded.verifier_key_string());
        // A second server starting at the same moment never replaces the key.
        assert!(!create_private_once(&path, b"another key\n").unwrap());
        assert_eq!(
            load_or_create_audit_key(&path)
                .unwrap()
                .verifier_key_string(),
            created.verifier_key_string()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = load_or_create_audit_key(&path).unwrap_err().to_string();
            assert!(
                e.contains("may be read by other users") && e.contains("chmod 600"),
                "{e}"
            );
        }
    }
}
