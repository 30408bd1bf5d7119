//! Fresh databases on both of the server's backends: a new SQLite file, or a new PostgreSQL
//! database on the server named by `RAMPART_TEST_POSTGRES_URL` (scripts/test.sh starts one and
//! sets it; without it the PostgreSQL tests fail, never skip).

use std::path::Path;

/// The variable naming the PostgreSQL server the tests create their databases on.
pub const POSTGRES_URL_VAR: &str = "RAMPART_TEST_POSTGRES_URL";

/// The PostgreSQL administration URL from [`POSTGRES_URL_VAR`]; panics, saying how to get one,
/// when it is not set.
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{POSTGRES_URL_VAR} is not set: run scripts/test.sh, which starts PostgreSQL \
             (scripts/start-postgres.sh)"
        )
    })
}

/// The URL of SQLite file `NAME.db` in `dir` (created on first connection).
pub fn sqlite_url(dir: &Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(format!("{name}.db")).display())
}

/// Runs one administration statement on the PostgreSQL server.
pub async fn postgres_admin(sql: &str) {
    let admin = postgres_admin_url();
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL reachable at {POSTGRES_URL_VAR}: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    pool.close().await;
}

/// A new, empty PostgreSQL database `db_name` (dropped first if a previous run left it): its URL.
pub async fn fresh_postgres(db_name: &str) -> String {
    postgres_admin(&format!("DROP DATABASE IF EXISTS {db_name}")).await;
    postgres_admin(&format!("CREATE DATABASE {db_name}")).await;
    let admin = postgres_admin_url();
    let (base, _) = admin
        .rsplit_once('/')
        .unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} names no database"));
    format!("{base}/{db_name}")
}

/// URLs of a new SQLite file in `dir` and of a new PostgreSQL database, both named after
/// `name` (and `prefix`, so test files never share a database).
pub async fn fresh_urls(dir: &Path, prefix: &str, name: &str) -> Vec<String> {
    vec![
        sqlite_url(dir, name),
        fresh_postgres(&format!("rampart_{prefix}_{name}_{}", std::process::id())).await,
    ]
}
