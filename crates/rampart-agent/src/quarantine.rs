//! The signed quarantine instruction on the device (issue 16, decision 0031). A poll answer may
//! carry a [`SignedQuarantine`]; the agent acts on it only once it verifies against the director
//! root it already trusts (`<state>/director/root.json`, moved forward only by rotations): a
//! statement for this device, signed by the root's `targets` threshold, not expired, and newer
//! than the last one it acted on. Then it runs the configured hook (`[incident]
//! containment_hook` for `quarantined`, `release_hook` for `released`) with a timeout,
//! remembers what it acted on through the persistent-write layer (`<state>/quarantine.json`),
//! and acknowledges over `POST /device/v1/quarantine/ack`.
//!
//! Order: hook, then the memory, then the acknowledgement (the memory records whether it was
//! acknowledged). A restart after the memory is written re-runs nothing and sends only a
//! missing acknowledgement; a power cut between the hook and the memory runs the hook again,
//! so hooks must be idempotent (a second lock-down of a locked-down network changes nothing).
//!
//! The server enforces the quarantine whether or not the device does any of this: the
//! instruction is for cooperative devices.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rampart_core::metadata::{Metadata, Root};
use rampart_protocol::{
    HookOutcome, QuarantineAck, QuarantineState, QuarantineStatement, SignedQuarantine,
};
use rampart_tuf_client::store::MetadataStore;
use serde::{Deserialize, Serialize};

use crate::config::IncidentConfig;
use crate::director::{DIRECTOR_DIR, DIRECTOR_ROOT};
use crate::server_client::ServerClient;

/// What the agent remembers of the statement it last acted on, in the state directory.
pub const QUARANTINE_FILE: &str = "quarantine.json";
/// Longest hook detail sent (the server's limit).
pub const MAX_ACK_DETAIL: usize = 4096;
/// Largest memory file read.
const MAX_MEMORY_BYTES: u64 = 64 * 1024;

/// The statement the agent last acted on and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acted {
    pub incident: String,
    pub state: QuarantineState,
    pub issued: i64,
    pub hook: HookOutcome,
    pub detail: String,
    /// The server stored the acknowledgement.
    pub acked: bool,
}

impl Acted {
    fn ack(&self) -> QuarantineAck {
        QuarantineAck {
            incident: self.incident.clone(),
            state: self.state,
            issued: self.issued,
            hook: self.hook,
            detail: self.detail.clone(),
        }
    }
}

/// What to do about an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not acted on: forged, for another device, expired, or older than the last one acted
    /// on (a replay); the reason.
    Ignore(String),
    /// Acted on and acknowledged already.
    Done,
    /// Acted on; only the acknowledgement is missing.
    AckOnly(Acted),
    /// A new statement: run its hook.
    Run(QuarantineStatement),
}

/// Decides what an instruction asks of this device, given the trusted director root and what
/// was acted on before.
pub fn next_step(
    instruction: &SignedQuarantine,
    director_root: &Metadata<Root>,
    device_id: &str,
    now: i64,
    last: Option<&Acted>,
) -> Step {
    let statement =
        match rampart_incident::instruction::verify(instruction, director_root, device_id, now) {
            Ok(s) => s,
            Err(e) => return Step::Ignore(e.to_string()),
        };
    match last {
        Some(a) if a.issued == statement.issued && a.state == statement.state => {
            if a.acked {
                Step::Done
            } else {
                Step::AckOnly(a.clone())
            }
        }
        Some(a) if statement.issued <= a.issued => Step::Ignore(format!(
            "the quarantine statement was issued at {}, not after the one acted on ({}); a replay is ignored",
            statement.issued, a.issued
        )),
        _ => Step::Run(statement.clone()),
    }
}

/// Runs the hook for `statement` with the configured timeout: the outcome and a detail (the
/// error and the tail of the output on failure). The hook gets the state as its last argument
/// and `RAMPART_QUARANTINE_STATE`, `RAMPART_INCIDENT` and `RAMPART_DEVICE_ID` in its
/// environment.
pub fn run_hook(config: &IncidentConfig, statement: &QuarantineStatement) -> (HookOutcome, String) {
    let (argv, state) = match statement.state {
        QuarantineState::Quarantined => (&config.containment_hook, "quarantined"),
        QuarantineState::Released => (&config.release_hook, "released"),
    };
    if argv.is_empty() || !statement.containment {
        return (HookOutcome::NotConfigured, String::new());
    }
    let mut argv = argv.clone();
    argv.push(state.into());
    // The environment travels through `env`, so `health::run` stays the one runner of
    // commands with a deadline.
    let mut with_env = vec![
        "env".to_owned(),
        format!("RAMPART_QUARANTINE_STATE={state}"),
        format!("RAMPART_INCIDENT={}", statement.incident),
        format!("RAMPART_DEVICE_ID={}", statement.device_id),
    ];
    with_env.extend(argv);
    let until = Instant::now() + Duration::from_secs(config.hook_timeout_secs.max(1));
    let what = if statement.state == QuarantineState::Quarantined {
        "containment hook"
    } else {
        "release hook"
    };
    match crate::health::run(what, &with_env, until) {
        Ok(()) => (HookOutcome::Succeeded, String::new()),
        Err(e) => (HookOutcome::Failed, bounded(&e)),
    }
}

/// The last [`MAX_ACK_DETAIL`] bytes of `text` (on a character boundary).
fn bounded(text: &str) -> String {
    let mut start = text.len().saturating_sub(MAX_ACK_DETAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

fn memory_path(state_dir: &Path) -> PathBuf {
    state_dir.join(QUARANTINE_FILE)
}

/// What was acted on before (`None`: nothing, or an unreadable memory, which acts again).
pub fn remembered(state_dir: &Path) -> Option<Acted> {
    let path = memory_path(state_dir);
    let len = std::fs::metadata(&path).ok()?.len();
    if len > MAX_MEMORY_BYTES {
        return None;
    }
    serde_json::from_slice(&std::fs::read(&path).ok()?).ok()
}

/// The trusted director root of the state directory.
pub fn trusted_director_root(state_dir: &Path) -> Result<Metadata<Root>, String> {
    let path = state_dir.join(DIRECTOR_DIR).join(DIRECTOR_ROOT);
    let bytes = std::fs::read(&path).map_err(|e| {
        format!(
            "no trusted director root at {} ({e}); a quarantine instruction cannot be checked without one (pin one with `rampart-agent init --director-root`)",
            path.display()
        )
    })?;
    Metadata::<Root>::from_bytes("director root", &bytes).map_err(|e| {
        format!(
            "the trusted director root {} is unreadable: {e}",
            path.display()
        )
    })
}

/// Acts on a poll's instruction: checks it, runs its hook through `hook` unless it was acted
/// on, remembers that through `store`, and acknowledges it. Returns what was acted on (`None`
/// when the instruction was ignored or already done), or why it stopped.
pub fn handle(
    state_dir: &Path,
    store: &dyn MetadataStore,
    client: &ServerClient,
    instruction: &SignedQuarantine,
    now: i64,
    hook: impl FnOnce(&QuarantineStatement) -> (HookOutcome, String),
) -> Result<Option<Acted>, String> {
    let root = trusted_director_root(state_dir)?;
    let last = remembered(state_dir);
    let mut acted = match next_step(instruction, &root, client.device_id(), now, last.as_ref()) {
        Step::Ignore(why) => return Err(why),
        Step::Done => return Ok(None),
        Step::AckOnly(acted) => acted,
        Step::Run(statement) => {
            let (outcome, detail) = hook(&statement);
            let acted = Acted {
                incident: statement.incident.clone(),
                state: statement.state,
                issued: statement.issued,
                hook: outcome,
                detail: bounded(&detail),
                acked: false,
            };
            remember(store, state_dir, &acted)?;
            acted
        }
    };
    client
        .acknowledge_quarantine(&acted.ack())
        .map_err(|e| format!("acknowledging the quarantine statement: {e}"))?;
    acted.acked = true;
    remember(store, state_dir, &acted)?;
    Ok(Some(acted))
}

fn remember(store: &dyn MetadataStore, state_dir: &Path, acted: &Acted) -> Result<(), String> {
    let path = memory_path(state_dir);
    let bytes = serde_json::to_vec(acted).map_err(|e| e.to_string())?;
    store.replace(&path, &bytes).map_err(|e| {
        format!(
            "remembering the quarantine statement in {}: {e}",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::keys::{Key, Scheme};
    use rampart_core::metadata::{Common, RoleKeys, format_expires};
    use rampart_incident::instruction::{QUARANTINE_TYPE, signing_bytes};
    use rampart_protocol::InstructionSignature;
    use ring::signature::{Ed25519KeyPair, KeyPair as _};

    fn keypair(seed: u8) -> (Ed25519KeyPair, Key) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref()).unwrap();
        (pair, key)
    }

    fn root(online: &Key) -> Metadata<Root> {
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(online.key_id(), online.clone());
        let roles = ["root", "targets", "snapshot", "timestamp"]
            .into_iter()
            .map(|r| {
                let keys = RoleKeys {
                    keyids: vec![online.key_id()],
                    threshold: 1,
                };
                (r.to_owned(), keys)
            })
            .collect();
        let root = Root {
            common: Common {
                type_: "root".into(),
                spec_version: "1.0.31".into(),
                version: 1,
                expires: format_expires(4_000_000_000),
            },
            consistent_snapshot: None,
            keys,
            roles,
        };
        let bytes =
            serde_json::to_vec(&serde_json::json!({"signed": root, "signatures": []})).unwrap();
        Metadata::<Root>::from_bytes("director root", &bytes).unwrap()
    }

    fn instruction(
        issued: i64,
        state: QuarantineState,
        pair: &Ed25519KeyPair,
        key: &Key,
    ) -> SignedQuarantine {
        let statement = QuarantineStatement {
            kind: QUARANTINE_TYPE.into(),
            device_id: "dev-1".into(),
            incident: "inc-1".into(),
            state,
            containment: true,
            issued,
            expires: 10_000,
        };
        let sig = pair.sign(&signing_bytes(&statement).unwrap());
        SignedQuarantine {
            signed: statement,
            signatures: vec![InstructionSignature {
                keyid: key.key_id(),
                sig: hex::encode(sig.as_ref()),
            }],
        }
    }

    #[test]
    fn a_forged_quarantine_instruction_is_ignored_by_the_agent() {
        let (director, director_key) = keypair(1);
        let (forger, forger_key) = keypair(2);
        let trusted = root(&director_key);
        let forged = instruction(100, QuarantineState::Quarantined, &forger, &forger_key);
        assert!(matches!(
            next_step(&forged, &trusted, "dev-1", 200, None),
            Step::Ignore(_)
        ));
        let mut borrowed = forged;
        borrowed.signatures[0].keyid = director_key.key_id();
        assert!(matches!(
            next_step(&borrowed, &trusted, "dev-1", 200, None),
            Step::Ignore(_)
        ));
        // A genuine `quarantined` statement altered into a `released` one.
        let mut altered = instruction(100, QuarantineState::Quarantined, &director, &director_key);
        altered.signed.state = QuarantineState::Released;
        assert!(matches!(
            next_step(&altered, &trusted, "dev-1", 200, None),
            Step::Ignore(_)
        ));
        let genuine = instruction(100, QuarantineState::Quarantined, &director, &director_key);
        assert!(matches!(
            next_step(&genuine, &trusted, "dev-1", 200, None),
            Step::Run(_)
        ));
    }

    #[test]
    fn a_statement_acted_on_runs_once_and_a_replay_is_ignored() {
        let (director, key) = keypair(1);
        let trusted = root(&key);
        let acted = Acted {
            incident: "inc-1".into(),
            state: QuarantineState::Quarantined,
            issued: 100,
            hook: HookOutcome::Succeeded,
            detail: String::new(),
            acked: false,
        };
        let same = instruction(100, QuarantineState::Quarantined, &director, &key);
        assert_eq!(
            next_step(&same, &trusted, "dev-1", 200, Some(&acted)),
            Step::AckOnly(acted.clone())
        );
        let acked = Acted {
            acked: true,
            ..acted.clone()
        };
        assert_eq!(
            next_step(&same, &trusted, "dev-1", 200, Some(&acked)),
            Step::Done
        );
        let older = instruction(50, QuarantineState::Released, &director, &key);
        assert!(matches!(
            next_step(&older, &trusted, "dev-1", 200, Some(&acked)),
            Step::Ignore(_)
        ));
        let release = instruction(150, QuarantineState::Released, &director, &key);
        assert!(matches!(
            next_step(&release, &trusted, "dev-1", 200, Some(&acked)),
            Step::Run(_)
        ));
    }
}
