//! The SQLite database and its WAL and shared-memory files are owner-only (mode 0600), whatever
//! the umask: they hold the audit log and (sealed) webhook secrets.
#![cfg(unix)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use rampart_db::{Db, sqlite_file};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test]
async fn sqlite_database_wal_and_shm_are_created_0600() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("server.db");
    let db = Db::connect(&format!("sqlite://{}", db_path.display()))
        .await
        .unwrap();
    // A write, so the WAL has content and stays.
    assert!(db.register_if_new("dev-1", 1).await.unwrap());
    for name in ["server.db", "server.db-wal", "server.db-shm"] {
        let path = dir.path().join(name);
        assert!(path.exists(), "{name} was not created");
        assert_eq!(mode(&path), 0o600, "{name} is {:o}", mode(&path));
    }
    db.close().await;
}

#[tokio::test]
async fn an_existing_world_readable_database_is_tightened_to_0600() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("old.db");
    let url = format!("sqlite://{}", db_path.display());
    let db = Db::connect(&url).await.unwrap();
    db.register_if_new("dev-1", 1).await.unwrap();
    db.close().await;
    // As an older server left it under umask 022.
    for name in ["old.db", "old.db-wal", "old.db-shm"] {
        let path = dir.path().join(name);
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let db = Db::connect(&url).await.unwrap();
    db.register_if_new("dev-2", 2).await.unwrap();
    for name in ["old.db", "old.db-wal", "old.db-shm"] {
        let path = dir.path().join(name);
        assert_eq!(mode(&path), 0o600, "{name} is {:o}", mode(&path));
    }
    db.close().await;
}

#[test]
fn sqlite_urls_name_their_file() {
    assert_eq!(
        sqlite_file("sqlite:///var/lib/r/server.db").unwrap(),
        Path::new("/var/lib/r/server.db")
    );
    assert_eq!(
        sqlite_file("sqlite://r.db?mode=rwc").unwrap(),
        Path::new("r.db")
    );
    assert_eq!(
        sqlite_file("sqlite:dir/a%3Fb.db").unwrap(),
        Path::new("dir/a?b.db")
    );
    assert_eq!(sqlite_file("sqlite::memory:"), None);
    assert_eq!(sqlite_file("sqlite://?mode=memory"), None);
    assert_eq!(sqlite_file("sqlite://x.db?mode=memory"), None);
    assert_eq!(sqlite_file("postgres://u@h/db"), None);
}

#[tokio::test]
async fn a_database_in_a_missing_directory_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let url = format!("sqlite://{}", missing.join("server.db").display());
    let Err(e) = rampart_db::Db::connect(&url).await else {
        panic!("a database was opened in a directory that does not exist");
    };
    let message = e.to_string();
    assert!(
        message.contains(&missing.display().to_string()) && message.contains("no such directory"),
        "{message}"
    );
}
