//! The monitor: follows a log, checks that every checkpoint it sees is consistent with the last
//! one, and raises an alert for any entry signed with the vendor's release key that the release
//! registry does not know (a stolen key becomes visible).

use rampart_log::merkle::{Hash, leaf_hash, verify_consistency};
use rampart_log::note::{Note, Verifier};
use rampart_log::policy::WitnessPolicy;
use rampart_log::statement::ReleaseStatement;
use rampart_log::tiles::TILE_WIDTH;

use crate::tiles::{LogSource, TileReadError, TreeReader};

/// What the monitor has verified so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MonitorState {
    pub size: u64,
    pub root: Hash,
}

impl MonitorState {
    pub fn to_text(&self) -> String {
        format!("size {}\nroot {}\n", self.size, hex::encode(self.root))
    }

    pub fn parse(text: &str) -> Option<MonitorState> {
        let mut l = text.lines();
        let size = l.next()?.strip_prefix("size ")?.parse().ok()?;
        let root = hex::decode(l.next()?.strip_prefix("root ")?)
            .ok()?
            .try_into()
            .ok()?;
        Some(MonitorState { size, root })
    }
}

/// An entry the registry does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub index: u64,
    pub statement: ReleaseStatement,
}

impl std::fmt::Display for Alert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "entry {}: release {} version {} (sha256 {}) is signed with the release key but is not in the release registry",
            self.index,
            self.statement.target,
            self.statement.version,
            hex::encode(self.statement.sha256)
        )
    }
}

/// Why monitoring stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Tiles(#[from] TileReadError),
    #[error("checkpoint rejected: {0}")]
    Checkpoint(String),
    #[error("INCONSISTENT LOG: {0}")]
    Inconsistent(String),
}

/// One round: verify the current checkpoint, its consistency with `state`, and every new entry.
/// Updates `state` only when everything checked out.
pub fn monitor_once(
    source: &dyn LogSource,
    policy: &WitnessPolicy,
    release_key: &Verifier,
    state: &mut MonitorState,
    known: &dyn Fn(&ReleaseStatement) -> bool,
) -> Result<Vec<Alert>, MonitorError> {
    let note = Note::parse(&source.read("checkpoint")?)
        .map_err(|e| MonitorError::Checkpoint(e.to_string()))?;
    let cp = policy
        .verify_checkpoint(&note)
        .map_err(|e| MonitorError::Checkpoint(e.to_string()))?;
    if cp.size < state.size {
        return Err(MonitorError::Inconsistent(format!(
            "the log shrank from {} to {} entries",
            state.size, cp.size
        )));
    }
    let mut reader = TreeReader::new(source, cp.size);
    if state.size > 0 {
        let proof = reader.consistency_proof(state.size)?;
        verify_consistency(state.size, cp.size, &proof, &state.root, &cp.root).map_err(|e| {
            MonitorError::Inconsistent(format!(
                "checkpoint of size {} is not consistent with the one of size {} seen before: {e}",
                cp.size, state.size
            ))
        })?;
    }
    if cp.size == state.size {
        return Ok(Vec::new());
    }
    // The tiles must reproduce the signed root before their entries are trusted.
    if reader.root()? != cp.root {
        return Err(MonitorError::Inconsistent(
            "the tiles do not hash to the checkpoint's root".into(),
        ));
    }
    let mut alerts = Vec::new();
    let mut index = state.size;
    while index < cp.size {
        let bundle = index / TILE_WIDTH;
        let entries = reader.entries(bundle)?;
        for (k, entry) in entries.iter().enumerate() {
            let i = bundle * TILE_WIDTH + k as u64;
            if i < index {
                continue;
            }
            if leaf_hash(entry) != reader.node(0, i)? {
                return Err(MonitorError::Inconsistent(format!(
                    "entry {i} does not match its leaf hash in the tree"
                )));
            }
            let Ok(note) = Note::parse(entry) else {
                continue;
            };
            let by_vendor = note
                .signatures
                .iter()
                .any(|s| release_key.matches(s) && release_key.verify_signature(&note.text, s));
            if !by_vendor {
                continue;
            }
            match ReleaseStatement::parse_text(&note.text) {
                Ok(statement) if known(&statement) => {}
                Ok(statement) => alerts.push(Alert {
                    index: i,
                    statement,
                }),
                Err(_) => {
                    return Err(MonitorError::Inconsistent(format!(
                        "entry {i} is signed with the release key but is not a release statement"
                    )));
                }
            }
        }
        index = (bundle + 1) * TILE_WIDTH;
    }
    *state = MonitorState {
        size: cp.size,
        root: cp.root,
    };
    Ok(alerts)
}
