//! Shared by the storage tests: a fresh database on each backend, embedded SQLite and
//! PostgreSQL (from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it these
//! tests fail).
#![allow(dead_code)]

/// URLs of a new SQLite file in `dir` and of a new PostgreSQL database, both named after
/// `name` (and `prefix`, so test files never share a database).
pub async fn fresh_urls(dir: &std::path::Path, prefix: &str, name: &str) -> Vec<String> {
    let sqlite = format!("sqlite://{}", dir.join(format!("{name}.db")).display());
    let admin = std::env::var("RAMPART_TEST_POSTGRES_URL")
        .expect("RAMPART_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL (scripts/start-postgres.sh)");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .expect("PostgreSQL reachable at RAMPART_TEST_POSTGRES_URL");
    let db_name = format!("rampart_{prefix}_{name}_{}", std::process::id());
    for sql in [
        format!("DROP DATABASE IF EXISTS {db_name}"),
        format!("CREATE DATABASE {db_name}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').unwrap();
    vec![sqlite, format!("{base}/{db_name}")]
}

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
