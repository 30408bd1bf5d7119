//! Shared by the storage tests: a fresh database on each backend, embedded SQLite and
//! PostgreSQL (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it these
//! tests fail).
#![allow(dead_code)]

pub use rampart_testkit::databases::fresh_urls;

/// [`fresh_urls`], connected (and migrated).
pub async fn fresh_databases(
    dir: &std::path::Path,
    prefix: &str,
    name: &str,
) -> Vec<rampart_db::Db> {
    let mut dbs = Vec::new();
    for url in fresh_urls(dir, prefix, name).await {
        dbs.push(rampart_db::Db::connect(&url).await.unwrap());
    }
    dbs
}

/// The runtime the storage tests run on: two worker threads, as the server's tests.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
