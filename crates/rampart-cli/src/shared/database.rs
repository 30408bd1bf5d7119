//! The server's database opened by the CLI itself (token and audit commands).

use anyhow::Context;

pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Who acts when the CLI changes the database directly.
pub fn cli_actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// Runs `future` on a runtime of its own (the audit commands talk to the database directly).
pub fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future))
}

/// Opens the server's database for a command that only reads it: a SQLite file that does not
/// exist is a mistyped `--db`, not an empty database to create.
pub async fn connect_existing(url: &str) -> anyhow::Result<rampart_db::Db> {
    if let Some(path) = rampart_db::sqlite_file(url)
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {}: check --db (the server creates it on its first start)",
            path.display()
        );
    }
    rampart_db::Db::connect(url)
        .await
        .context("opening the database given with --db")
}

/// The stored audit log as JSON Lines (for `rampart audit verify --db` and `export --db`).
pub fn audit_jsonl_from_db(url: &str) -> anyhow::Result<Vec<u8>> {
    runtime()?.block_on(async move {
        let db = connect_existing(url).await?;
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let lines = db.audit_lines(from, 10_000).await?;
            let Some(last) = lines.last() else { break };
            from = last.seq + 1;
            for l in &lines {
                out.extend_from_slice(l.line.as_bytes());
                out.push(b'\n');
            }
        }
        db.close().await;
        Ok(out)
    })
}
