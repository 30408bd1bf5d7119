//! What several commands share: the management-API client, the server's database and audit key
//! as the CLI opens them, key references, progress output, tables, the static file server, the clock,
//! and where the `rampart` binary is.

pub mod api_client;
pub mod audit_key;
pub mod database;
pub mod files;
pub mod output;
pub mod signing;
pub mod static_server;
pub mod table;

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The `rampart` binary: this program when it is `rampart`, else (`rampart-bench`) the `rampart`
/// built beside it. The demo and the benchmarks run its commands and its server as processes.
pub fn rampart_binary() -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context as _;
    let me = std::env::current_exe().context("locating the running binary")?;
    let rampart = me.with_file_name(format!("rampart{}", std::env::consts::EXE_SUFFIX));
    anyhow::ensure!(
        rampart.exists(),
        "no rampart binary at {}: build it first (cargo build --release -p rampart-cli)",
        rampart.display()
    );
    Ok(rampart)
}
