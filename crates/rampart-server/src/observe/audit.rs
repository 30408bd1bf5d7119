//! Appending to the stored audit log (a [`rampart_audit`] hash chain in the `audit_log` table).
//!
//! Every append reads the stored head first and links the new record to it, inside a lock, so
//! the chain stays whole across restarts; if another process (e.g. `rampart token create`)
//! appended in between, the insert fails on the sequence number and is retried on the new head.
//! A management action and its record are written in one transaction ([`AuditWriter::write`]),
//! so neither exists without the other.

use rampart_db::StorageError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rampart_audit::{AuditChain, AuditRecord};
use rampart_db::{AuditLine, Db, DbError};
use serde_json::Value;
use tokio::sync::Mutex;

/// Attempts before an append that keeps losing the race for the next sequence number gives up.
const APPEND_ATTEMPTS: usize = 5;

/// Why an audited write failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditWriteError {
    /// The stored chain's last record is unreadable or does not verify: the log was tampered
    /// with or damaged. Nothing is appended to a broken chain.
    #[error(
        "the stored audit log's last record is invalid ({0}); run `rampart audit verify --db URL` to find the damage"
    )]
    BrokenChain(String),
    /// The record itself is invalid (e.g. a control character in a field).
    #[error("invalid audit record: {0}")]
    Record(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Who may append to the audit log of one database.
#[derive(Clone)]
pub struct AuditWriter {
    db: Db,
    lock: Arc<Mutex<()>>,
    appended: Arc<AtomicU64>,
}

impl AuditWriter {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            lock: Arc::new(Mutex::new(())),
            appended: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Holds back appends through this writer while the guard lives (the audit anchor reads
    /// and signs the head under it, so the head it signs is the log's head).
    pub(crate) async fn hold(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Records appended through this writer.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Appends a record on its own (device and security events).
    pub async fn record(
        &self,
        time: i64,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
    ) -> Result<(), AuditWriteError> {
        let db = self.db.clone();
        self.write(time, actor, action, subject, details, |line| {
            let db = db.clone();
            async move { db.append_audit(&line).await }
        })
        .await
    }

    /// Builds the record linked to the stored head and runs `change` with it; `change` stores
    /// the record in the same transaction as the change it describes (the `rampart_db` methods
    /// taking an [`AuditLine`] do).
    pub async fn write<T, F, Fut>(
        &self,
        time: i64,
        actor: &str,
        action: &str,
        subject: &str,
        details: Value,
        change: F,
    ) -> Result<T, AuditWriteError>
    where
        F: Fn(AuditLine) -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let _guard = self.lock.lock().await;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = match self.db.last_audit().await? {
                Some(line) => Some(parse_stored(&line)?),
                None => None,
            };
            let mut chain = AuditChain::resume(last.as_ref())
                .map_err(|e| AuditWriteError::BrokenChain(e.to_string()))?;
            let record = chain
                .append(time, actor, action, subject, details.clone())
                .map_err(|e| AuditWriteError::Record(e.to_string()))?;
            let line = AuditLine {
                seq: record.seq,
                line: rampart_audit::to_json_line(&record),
            };
            match change(line).await {
                Ok(value) => {
                    self.appended.fetch_add(1, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(e) if attempt < APPEND_ATTEMPTS && is_conflict(&e) => {
                    tokio::time::sleep(Duration::from_millis(5 * attempt as u64)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn parse_stored(line: &AuditLine) -> Result<AuditRecord, AuditWriteError> {
    let mut records = rampart_audit::parse_jsonl(line.line.as_bytes())
        .map_err(|e| AuditWriteError::BrokenChain(e.to_string()))?;
    match (records.pop(), records.is_empty()) {
        (Some(record), true) if record.seq == line.seq => Ok(record),
        _ => Err(AuditWriteError::BrokenChain(format!(
            "row {} does not hold exactly that record",
            line.seq
        ))),
    }
}

/// A unique-key violation: most likely another writer took the sequence number.
fn is_conflict(e: &DbError) -> bool {
    match e {
        DbError::Storage(StorageError::Sql(sqlx::Error::Database(db))) => {
            db.is_unique_violation()
                || db.message().contains("UNIQUE")
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}
