//! The agent's own log, kept tamper-evident: every line is a record of
//! [`rampart_incident::agent_log`]'s hash chain, and every `anchor_every` records (and before
//! each evidence bundle) an anchor record carries the chain head signed by the device key.
//! Evidence bundles carry the log files; the server keeps the anchors it receives, so a device
//! that rewrites its log after an anchor was uploaded is caught (see that module for what is
//! and is not proved).
//!
//! Files, in `<state_dir>/agent-log/`: `agent.log` (current) and `agent.log.1` (newest rotated)
//! to `agent.log.N`. A file is rotated before a line would take it over `log_file_bytes`; the
//! chain goes on across files (the next file's first `prev` is the rotated file's last hash).
//!
//! Power loss: each line is appended and `fdatasync`ed before the chain moves on, so a record
//! the agent acted after is on disk. A cut mid-line leaves a torn last line, which [`AgentLog::open`]
//! cuts off (it was never part of the chain). The log is outside the update's power-loss
//! state machine: its writes are not [`crate::disk::Disk`] steps, so they do not move the
//! torture tests' step numbers.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use rampart_incident::agent_log::{Chain, ChainHead, Level, MAX_LINE_BYTES, Record};
use rampart_incident::device_signature::DeviceSignature;

use crate::config::EvidenceConfig;

/// The log's directory inside the state directory.
pub const LOG_DIR: &str = "agent-log";
/// The current file.
pub const CURRENT: &str = "agent.log";

/// Why the log could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AgentLogError {
    #[error("agent log {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("could not sign an anchor of the agent log: {0}")]
    Sign(String),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> AgentLogError + '_ {
    move |source| AgentLogError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The open log (see the module documentation).
#[derive(Debug)]
pub struct AgentLog {
    dir: PathBuf,
    max_file_bytes: u64,
    keep_files: u32,
    anchor_every: u64,
    chain: Chain,
    current_len: u64,
    since_anchor: u64,
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl AgentLog {
    /// Opens (or creates) the log in `<state_dir>/agent-log`, cutting a torn last line and
    /// continuing the chain after the last record. A last record that does not parse (the file
    /// was damaged) is set aside as `agent.log.damaged-<ms>` and a new chain starts with an
    /// error record saying so: the server sees the break, nothing is silently dropped.
    pub fn open(state_dir: &Path, config: &EvidenceConfig) -> Result<AgentLog, AgentLogError> {
        let dir = state_dir.join(LOG_DIR);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let mut log = AgentLog {
            dir,
            max_file_bytes: config.log_file_bytes,
            keep_files: config.log_keep_files,
            anchor_every: config.anchor_every,
            chain: Chain::new(),
            current_len: 0,
            since_anchor: 0,
        };
        let current = log.current();
        log.current_len = cut_torn_tail(&current)?;
        let last = match last_record(&current)? {
            Some(last) => Some(last),
            None if log.current_len == 0 => last_record(&log.rotated(1))?,
            None => None,
        };
        match last {
            Some(Ok(record)) => log.chain = Chain::after(record.head()),
            Some(Err(reason)) => {
                let aside = log.dir.join(format!("{CURRENT}.damaged-{}", now_millis()));
                std::fs::rename(&current, &aside).map_err(io_error(&current))?;
                log.current_len = 0;
                log.append(
                    Level::Error,
                    &format!(
                        "the agent log's last record could not be read ({reason}); the file was set aside as {} and a new chain starts",
                        aside.display()
                    ),
                )?;
            }
            None => {}
        }
        Ok(log)
    }

    fn current(&self) -> PathBuf {
        self.dir.join(CURRENT)
    }

    fn rotated(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{CURRENT}.{n}"))
    }

    /// The chain's head (`None` before the first record).
    pub fn head(&self) -> Option<&ChainHead> {
        self.chain.head()
    }

    /// Appends a record.
    pub fn append(&mut self, level: Level, message: &str) -> Result<Record, AgentLogError> {
        let mut next = self.chain.clone();
        let record = next.append(now_millis(), level, message);
        self.write(&record)?;
        self.chain = next;
        self.since_anchor += 1;
        Ok(record)
    }

    /// Whether `anchor_every` records were written since the last anchor.
    pub fn anchor_due(&self) -> bool {
        self.since_anchor >= self.anchor_every
    }

    /// Appends an anchor: the current head signed by the device key (`sign` signs the message
    /// it is given).
    pub fn anchor(
        &mut self,
        device_id: &str,
        sign: &dyn Fn(&[u8]) -> Result<DeviceSignature, String>,
    ) -> Result<Record, AgentLogError> {
        let mut next = self.chain.clone();
        let record = next
            .anchor(now_millis(), device_id, sign)
            .map_err(AgentLogError::Sign)?;
        self.write(&record)?;
        self.chain = next;
        self.since_anchor = 0;
        Ok(record)
    }

    /// The log files, oldest first (the order their records chain in).
    pub fn files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = (1..=self.keep_files)
            .rev()
            .map(|n| self.rotated(n))
            .filter(|p| p.is_file())
            .collect();
        let current = self.current();
        if current.is_file() {
            files.push(current);
        }
        files
    }

    fn write(&mut self, record: &Record) -> Result<(), AgentLogError> {
        let line = record.to_line();
        if self.current_len > 0 && self.current_len + line.len() as u64 > self.max_file_bytes {
            self.rotate()?;
        }
        let path = self.current();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.write_all(line.as_bytes()).map_err(io_error(&path))?;
        file.sync_data().map_err(io_error(&path))?;
        if self.current_len == 0 {
            sync_dir(&self.dir)?;
        }
        self.current_len += line.len() as u64;
        Ok(())
    }

    /// `agent.log.N-1` -> `agent.log.N` ... `agent.log` -> `agent.log.1`, the oldest dropped.
    fn rotate(&mut self) -> Result<(), AgentLogError> {
        if self.keep_files == 0 {
            let current = self.current();
            std::fs::remove_file(&current).map_err(io_error(&current))?;
        } else {
            for n in (1..self.keep_files).rev() {
                let from = self.rotated(n);
                if from.exists() {
                    let to = self.rotated(n + 1);
                    std::fs::rename(&from, &to).map_err(io_error(&from))?;
                }
            }
            let current = self.current();
            std::fs::rename(&current, self.rotated(1)).map_err(io_error(&current))?;
        }
        sync_dir(&self.dir)?;
        self.current_len = 0;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), AgentLogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir))
}

/// Cuts a last line without its newline (a write torn by a power cut); the file's length after.
fn cut_torn_tail(path: &Path) -> Result<u64, AgentLogError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_error(path)(e)),
    };
    let len = file.metadata().map_err(io_error(path))?.len();
    let tail = read_tail(&mut file, len, path)?;
    let keep = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => len - (tail.len() - i - 1) as u64,
        // The whole file is one torn line.
        None if tail.len() as u64 == len => 0,
        // No newline in the tail window: the last line is longer than any record may be, so
        // it is damage, not a torn write; `open` sets the file aside.
        None => len,
    };
    if keep != len {
        file.set_len(keep).map_err(io_error(path))?;
        file.sync_data().map_err(io_error(path))?;
    }
    Ok(keep)
}

/// The last `MAX_LINE_BYTES + 1` bytes of the file.
fn read_tail(file: &mut File, len: u64, path: &Path) -> Result<Vec<u8>, AgentLogError> {
    let window = len.min(MAX_LINE_BYTES as u64 + 1);
    file.seek(SeekFrom::Start(len - window))
        .map_err(io_error(path))?;
    let mut tail = Vec::with_capacity(window as usize);
    file.take(window)
        .read_to_end(&mut tail)
        .map_err(io_error(path))?;
    Ok(tail)
}

/// The last complete record of a file: `None` for a missing or empty file, `Some(Err)` when
/// the last line is not a record.
fn last_record(path: &Path) -> Result<Option<Result<Record, String>>, AgentLogError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let len = file.metadata().map_err(io_error(path))?.len();
    let tail = read_tail(&mut file, len, path)?;
    let body = tail.strip_suffix(b"\n").unwrap_or(&tail);
    if body.is_empty() {
        return Ok(None);
    }
    let start = body.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let line = &body[start..];
    Ok(Some(
        serde_json::from_slice::<Record>(line).map_err(|e| e.to_string()),
    ))
}

#[cfg(test)]
mod tests;
