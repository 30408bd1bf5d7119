//! Every persistent write the agent makes on the device goes through a [`Disk`].
//!
//! That gives one place that is durable by construction (whole files are replaced by write,
//! fsync, rename, fsync of the directory; in-place writes to slots and environment blocks are
//! fsynced before anything depends on them) and one place where a power cut can be injected
//! for the power-loss torture tests: each write is a numbered *step*, and a [`FaultPlan`]
//! makes step N fail the way a power cut would, before the write, in the middle of it (a torn
//! write: part of the data reaches the medium), or just after it.
//!
//! In-process, an injected crash makes this and every later operation fail with
//! [`DiskError::Crashed`], so the caller unwinds without touching the device again, exactly as
//! a dead process would. In a real process, `RAMPART_AGENT_CRASH_AT=N[:before|torn|after]`
//! aborts the process instead (used by the SIGKILL/abort tests; never set it in production).

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Environment variable that makes the agent process abort at a write step (tests only).
pub const CRASH_ENV: &str = "RAMPART_AGENT_CRASH_AT";

/// Where, within one write step, the injected power cut happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Nothing of this write reached the medium.
    Before,
    /// Part of the data reached the medium (for whole-file replacement: a partial temporary
    /// file; for in-place writes: the first half of the bytes).
    Torn,
    /// The write completed (and was synced); the crash comes right after it.
    After,
}

impl CrashPoint {
    pub const ALL: [CrashPoint; 3] = [CrashPoint::Before, CrashPoint::Torn, CrashPoint::After];

    fn parse(s: &str) -> Option<CrashPoint> {
        match s {
            "before" => Some(CrashPoint::Before),
            "torn" => Some(CrashPoint::Torn),
            "after" => Some(CrashPoint::After),
            _ => None,
        }
    }
}

/// A crash to inject at write step `step` (counted from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultPlan {
    pub step: u64,
    pub point: CrashPoint,
    /// Abort the process (real crash) instead of failing every later operation (simulated).
    pub abort: bool,
}

impl FaultPlan {
    /// Reads [`CRASH_ENV`]; `None` when unset. A malformed value is an error, not ignored.
    pub fn from_env() -> Result<Option<FaultPlan>, String> {
        let Ok(value) = std::env::var(CRASH_ENV) else {
            return Ok(None);
        };
        let (step, point) = value.split_once(':').unwrap_or((&value, "before"));
        let step = step.parse().ok().filter(|s| *s > 0);
        match (step, CrashPoint::parse(point)) {
            (Some(step), Some(point)) => Ok(Some(FaultPlan {
                step,
                point,
                abort: true,
            })),
            _ => Err(format!(
                "{CRASH_ENV}={value:?} is not STEP[:before|torn|after] with STEP >= 1"
            )),
        }
    }
}

/// Why a persistent write failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A simulated power cut (tests): nothing more may be written.
    #[error("simulated power cut at write step {step} ({what})")]
    Crashed { step: u64, what: String },
}

impl DiskError {
    pub fn io(path: &Path, source: std::io::Error) -> DiskError {
        DiskError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// The agent's persistent-write layer (see the module documentation). Clones share the step
/// count and the fault plan: the TUF client writes its trusted metadata through a clone.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    plan: Option<FaultPlan>,
    steps: Arc<Steps>,
}

#[derive(Debug, Default)]
struct Steps {
    taken: AtomicU64,
    crashed: AtomicBool,
    /// Labels of the first steps taken, for tests that enumerate every step of a flow.
    journal: Mutex<Vec<String>>,
}

/// Step labels kept at most: a daemon runs for months on one `Disk`.
const JOURNAL_MAX: usize = 4096;

impl Disk {
    /// A disk without fault injection (production).
    pub fn new() -> Disk {
        Disk::default()
    }

    /// A disk that injects `plan`.
    pub fn with_fault(plan: FaultPlan) -> Disk {
        Disk {
            plan: Some(plan),
            ..Disk::default()
        }
    }

    /// A disk configured from [`CRASH_ENV`] (production binaries: normally unset).
    pub fn from_env() -> Result<Disk, String> {
        Ok(match FaultPlan::from_env()? {
            Some(plan) => Disk::with_fault(plan),
            None => Disk::new(),
        })
    }

    /// Write steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps.taken.load(Ordering::SeqCst)
    }

    /// Whether an injected crash happened.
    pub fn crashed(&self) -> bool {
        self.steps.crashed.load(Ordering::SeqCst)
    }

    /// The labels of the steps taken, in order (the first [`JOURNAL_MAX`]).
    pub fn journal(&self) -> Vec<String> {
        self.steps
            .journal
            .lock()
            .map(|j| j.clone())
            .unwrap_or_default()
    }

    fn dead(&self, what: &str) -> Result<(), DiskError> {
        if self.crashed() {
            return Err(DiskError::Crashed {
                step: self.steps(),
                what: what.to_owned(),
            });
        }
        Ok(())
    }

    /// Starts a write step; returns the crash point if this step is the planned one.
    fn begin(&self, what: &str) -> Result<Option<CrashPoint>, DiskError> {
        self.dead(what)?;
        let step = self.steps.taken.fetch_add(1, Ordering::SeqCst) + 1;
        if let Ok(mut j) = self.steps.journal.lock()
            && j.len() < JOURNAL_MAX
        {
            j.push(what.to_owned());
        }
        Ok(self.plan.filter(|p| p.step == step).map(|p| p.point))
    }

    fn crash(&self, what: &str) -> DiskError {
        if self.plan.is_some_and(|p| p.abort) {
            eprintln!(
                "{CRASH_ENV}: aborting at write step {} ({what})",
                self.steps()
            );
            std::process::abort();
        }
        self.steps.crashed.store(true, Ordering::SeqCst);
        DiskError::Crashed {
            step: self.steps(),
            what: what.to_owned(),
        }
    }

    /// Replaces `path` with `bytes` atomically: a fresh temporary file in the same directory,
    /// written, fsynced, renamed over `path`, and the directory fsynced. A crash leaves the
    /// old or the new file (and possibly a stray temporary, removed by [`Disk::sweep`]).
    pub fn replace_file(&self, path: &Path, bytes: &[u8]) -> Result<(), DiskError> {
        let what = format!("replace {}", path.display());
        let crash = self.begin(&what)?;
        if crash == Some(CrashPoint::Before) {
            return Err(self.crash(&what));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let io = |e| DiskError::io(path, e);
        let mut tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempfile_in(dir)
            .map_err(io)?;
        if crash == Some(CrashPoint::Torn) {
            tmp.write_all(&bytes[..bytes.len() / 2]).map_err(io)?;
            // A power cut keeps the temporary file: do not let tempfile delete it.
            let _ = tmp.keep();
            return Err(self.crash(&what));
        }
        tmp.write_all(bytes).map_err(io)?;
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        if let Ok(d) = File::open(dir) {
            d.sync_all().map_err(io)?;
        }
        if crash == Some(CrashPoint::After) {
            return Err(self.crash(&what));
        }
        Ok(())
    }

    /// Removes `path` (if present) durably.
    pub fn remove_file(&self, path: &Path) -> Result<(), DiskError> {
        let what = format!("remove {}", path.display());
        let crash = self.begin(&what)?;
        if matches!(crash, Some(CrashPoint::Before | CrashPoint::Torn)) {
            return Err(self.crash(&what));
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(DiskError::io(path, e)),
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && let Ok(d) = File::open(dir)
        {
            d.sync_all().map_err(|e| DiskError::io(path, e))?;
        }
        if crash == Some(CrashPoint::After) {
            return Err(self.crash(&what));
        }
        Ok(())
    }

    /// Writes `bytes` at `offset` of an open file or block device (`path` names it in errors)
    /// and, when `sync`, fsyncs it. A torn crash writes the first half of `bytes`.
    pub fn write_at(
        &self,
        file: &File,
        path: &Path,
        offset: u64,
        bytes: &[u8],
        sync: bool,
    ) -> Result<(), DiskError> {
        let what = format!(
            "write {} bytes at {offset} of {}",
            bytes.len(),
            path.display()
        );
        let crash = self.begin(&what)?;
        let io = |e| DiskError::io(path, e);
        match crash {
            Some(CrashPoint::Before) => return Err(self.crash(&what)),
            Some(CrashPoint::Torn) => {
                file.write_all_at(&bytes[..bytes.len() / 2], offset)
                    .map_err(io)?;
                let _ = file.sync_data();
                return Err(self.crash(&what));
            }
            _ => {}
        }
        file.write_all_at(bytes, offset).map_err(io)?;
        if sync {
            file.sync_data().map_err(io)?;
        }
        if crash == Some(CrashPoint::After) {
            return Err(self.crash(&what));
        }
        Ok(())
    }

    /// Runs a persistent change made by someone else (a bootloader script) as a write step:
    /// a planned crash happens before it (`Before`, `Torn`) or after it (`After`).
    pub fn external<T>(
        &self,
        what: &str,
        change: impl FnOnce() -> Result<T, DiskError>,
    ) -> Result<T, DiskError> {
        let crash = self.begin(what)?;
        if matches!(crash, Some(CrashPoint::Before | CrashPoint::Torn)) {
            return Err(self.crash(what));
        }
        let out = change()?;
        if crash == Some(CrashPoint::After) {
            return Err(self.crash(what));
        }
        Ok(out)
    }

    /// Fsyncs an open file (a step of its own: data written without sync may be lost).
    pub fn sync(&self, file: &File, path: &Path) -> Result<(), DiskError> {
        self.dead("sync")?;
        file.sync_data().map_err(|e| DiskError::io(path, e))
    }

    /// Removes temporaries a crash inside [`Disk::replace_file`] may have left in `dir`.
    pub fn sweep(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The TUF client's trusted metadata is written as whole-file replacements: write steps.
impl rampart_tuf_client::store::MetadataStore for Disk {
    fn replace(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        self.replace_file(path, bytes)
            .map_err(std::io::Error::other)
    }

    fn to_box(&self) -> Box<dyn rampart_tuf_client::store::MetadataStore> {
        Box::new(self.clone())
    }
}

/// Prefix of the temporary files of [`Disk::replace_file`].
pub const TMP_PREFIX: &str = ".rampart-tmp-";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_is_all_or_nothing_at_every_crash_point() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        std::fs::write(&p, b"old").unwrap();
        for point in CrashPoint::ALL {
            std::fs::write(&p, b"old").unwrap();
            let disk = Disk::with_fault(FaultPlan {
                step: 1,
                point,
                abort: false,
            });
            let err = disk.replace_file(&p, b"new contents").unwrap_err();
            assert!(matches!(err, DiskError::Crashed { step: 1, .. }), "{err}");
            let got = std::fs::read(&p).unwrap();
            let expected: &[u8] = if point == CrashPoint::After {
                b"new contents"
            } else {
                b"old"
            };
            assert_eq!(got, expected, "{point:?}");
            // Dead after the crash: nothing more is written.
            assert!(matches!(
                disk.replace_file(&p, b"later"),
                Err(DiskError::Crashed { .. })
            ));
            assert_eq!(std::fs::read(&p).unwrap(), expected);
            Disk::sweep(dir.path());
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn torn_in_place_write_keeps_half_and_counts_steps() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("slot");
        std::fs::write(&p, [0u8; 8]).unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let disk = Disk::with_fault(FaultPlan {
            step: 2,
            point: CrashPoint::Torn,
            abort: false,
        });
        disk.write_at(&file, &p, 0, &[1, 1], true).unwrap();
        assert!(disk.write_at(&file, &p, 2, &[2, 2, 2, 2], true).is_err());
        assert_eq!(std::fs::read(&p).unwrap(), [1, 1, 2, 2, 0, 0, 0, 0]);
        assert_eq!(disk.steps(), 2);
        assert!(disk.crashed());
        assert_eq!(disk.journal().len(), 2);
    }

    #[test]
    fn a_long_running_daemon_does_not_grow_the_journal_without_bound() {
        let disk = Disk::new();
        for _ in 0..JOURNAL_MAX + 10 {
            disk.external("a bootloader script", || Ok(())).unwrap();
        }
        assert_eq!(disk.steps(), JOURNAL_MAX as u64 + 10);
        assert_eq!(disk.journal().len(), JOURNAL_MAX);
    }

    #[test]
    fn crash_env_is_parsed_strictly() {
        // Parsing only (the variable is not set in tests).
        assert_eq!(CrashPoint::parse("torn"), Some(CrashPoint::Torn));
        assert_eq!(CrashPoint::parse("middle"), None);
    }
}
