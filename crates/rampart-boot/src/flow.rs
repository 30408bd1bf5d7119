//! The agent's install and boot flow as a pure state machine.
//!
//! The agent keeps an [`AgentState`] on disk (replaced atomically at every step). At every
//! start it observes which slot the bootloader booted, the kernel's boot id, and the
//! bootloader's primary slot, and [`on_start`] decides what to do. Every decision is
//! idempotent: a power cut at any instant leaves an [`AgentState`] and a bootloader state
//! from which the next start converges.
//!
//! The flow of one update:
//!
//! 1. `Idle` → `Installing{slot, written}`: the inactive slot is marked bad first, so the
//!    bootloader can never boot a half-written slot; then the image streams into it, with
//!    checkpoints (slot fsynced, `written` recorded) from which an interrupted download resumes.
//! 2. Verified → `Activated{slot, boot_id, activations}` → the slot is made primary with a boot
//!    counter → reboot.
//! 3. On the next start from that slot: health checks within a deadline. Pass → the slot is
//!    marked good, the anti-rollback counter raised, `Idle` with the new slot committed.
//!    Fail → `RollingBack` → the slot is marked bad and the old one made primary → reboot →
//!    `Idle` on the old slot, the rollback reported.
//! 4. Booting the old slot while `Activated` in a later boot means the bootloader gave up on
//!    the new slot (its counter ran out): a fallback, reported as a rollback.
//!
//! A re-image ([`Release::reimage`], incident response) runs the same flow, even when the
//! running slot claims the same release (its bytes are suspect), and does not end at the
//! commit:
//!
//! 5. The commit records `Mirroring{slot, written}` for the other slot (the one that held the
//!    suspect image) before that slot is marked bad, then the same release streams into it
//!    with the same verification and checkpoints. Only a verified mirror is marked good (the
//!    fallback); then `Idle`, both slots hold the release, and the re-image is reported. The
//!    committed slot stays primary and good throughout, and the bootloader never counts down
//!    the only bootable slot, so a power cut at any instant leaves a bootable good slot.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ab::Slot;

/// Version of the state file format.
pub const STATE_FORMAT: u32 = 1;
/// Activations of one release that may end up back in the old slot before the agent concludes
/// the bootloader fell back (the first may have been cut off before the bootloader saw it).
pub const MAX_ACTIVATIONS: u32 = 2;

/// Why an update ended the way it did: the reason code in reports (a wire spelling of the
/// native device protocol, so it lives there).
pub use rampart_protocol::Reason;
use rampart_protocol::ReportStatus;

/// A release the agent installs: everything needed to resume, verify and commit it without
/// the metadata at hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Target path in the image repository.
    pub target: String,
    pub version: String,
    pub security_version: u64,
    pub length: u64,
    /// Every signed hash (algorithm → lowercase hex); at least `sha256`.
    pub hashes: BTreeMap<String, String>,
    /// The server's assignment id, when installed through the update server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    /// A forced re-image: installed even over the same release, then mirrored into the other
    /// slot after the commit, so no slot keeps the previous (suspect) image.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reimage: bool,
}

impl Release {
    /// The image's SHA-256 (hex), if listed.
    pub fn sha256(&self) -> Option<&str> {
        self.hashes.get("sha256").map(String::as_str)
    }
}

/// What a slot holds, as far as the agent knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotContent {
    pub target: String,
    pub version: String,
    pub security_version: u64,
    pub sha256: String,
    /// The image's length in bytes (0: not recorded, in states written before it was), so
    /// measured boot can hash what the slot really holds.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub length: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl From<&Release> for SlotContent {
    fn from(r: &Release) -> Self {
        SlotContent {
            target: r.target.clone(),
            version: r.version.clone(),
            security_version: r.security_version,
            sha256: r.sha256().unwrap_or_default().to_owned(),
            length: r.length,
        }
    }
}

/// Where the agent is in an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    /// Nothing in progress.
    Idle,
    /// Streaming `release` into `slot` (marked bad in the bootloader); `written` bytes are
    /// on the medium (fsynced) and hashed from the slot when resuming.
    Installing {
        slot: Slot,
        release: Release,
        written: u64,
    },
    /// `slot` holds the verified `release` and was (or is being) made primary; the agent
    /// waits to start from it. `boot_id` is the boot in which it was activated.
    Activated {
        slot: Slot,
        release: Release,
        boot_id: String,
        activations: u32,
    },
    /// The new `slot` failed its health checks: it is being marked bad and the old slot made
    /// primary again, then the device reboots into the old slot.
    RollingBack {
        slot: Slot,
        release: Release,
        reason: Reason,
        detail: String,
    },
    /// A re-image committed `release` in the other slot (the running one) and is writing the
    /// same release into `slot` (marked bad while it is written, marked good only once it
    /// verifies); `written` bytes are on the medium, as for `Installing`.
    Mirroring {
        slot: Slot,
        release: Release,
        written: u64,
    },
}

/// A report not yet acknowledged by the server; sent (again) at every start until it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingReport {
    /// Unique id: the server answers a resent report idempotently.
    pub id: String,
    pub status: ReportStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<String>,
    pub reason: Reason,
    pub details: serde_json::Value,
}

/// The agent's persistent state (`agent-state.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    pub format: u32,
    pub phase: Phase,
    /// The committed slot the device runs from (`None` until the first start records it).
    #[serde(default)]
    pub committed: Option<Slot>,
    /// What each slot holds (absent: unknown, or being overwritten).
    #[serde(default)]
    pub slots: BTreeMap<Slot, SlotContent>,
    /// The outcome of the last update, for status output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_result: Option<LastResult>,
    /// Reports waiting for the server.
    #[serde(default)]
    pub outbox: Vec<PendingReport>,
    /// The download-only assignment whose release the inactive slot was last reported
    /// `downloaded` for: a release already there (e.g. the one the device ran before) is
    /// reported once for each new download-only assignment, not on every poll.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub downloaded_for: Option<String>,
    /// The re-image assignment last completed here (both slots written): the server keeps the
    /// assignment after the report, and the same assignment never re-images twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reimaged_for: Option<String>,
}

/// How the last update ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResult {
    pub target: String,
    pub version: String,
    pub reason: Reason,
    pub detail: String,
}

impl Default for AgentState {
    fn default() -> Self {
        AgentState {
            format: STATE_FORMAT,
            phase: Phase::Idle,
            committed: None,
            slots: BTreeMap::new(),
            last_result: None,
            outbox: Vec::new(),
            downloaded_for: None,
            reimaged_for: None,
        }
    }
}

/// Why a state file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "the agent state file is corrupt ({0}); the agent will not install until it is fixed: run `rampart-agent reset-state` to rebuild it from the running slot"
    )]
    Corrupt(String),
    #[error(
        "the agent state file has format {found}, this agent reads format {STATE_FORMAT}; use the agent version that wrote it or `rampart-agent reset-state`"
    )]
    Format { found: u32 },
}

/// Largest accepted state file.
pub const MAX_STATE_BYTES: usize = 1 << 20;

/// Reports kept for the server at most (the oldest are dropped).
pub const MAX_OUTBOX: usize = 64;

impl AgentState {
    /// Queues a report for the server under `id` (unique per device), in the agent's report
    /// shape: `details` gains the reason code, target and version. The outbox keeps the newest
    /// [`MAX_OUTBOX`].
    pub fn queue_report(
        &mut self,
        id: String,
        status: ReportStatus,
        release: &Release,
        reason: Reason,
        mut details: serde_json::Value,
    ) {
        details["reason"] = reason.as_str().into();
        details["target"] = release.target.clone().into();
        details["version"] = release.version.clone().into();
        self.outbox.push(PendingReport {
            id,
            status,
            assignment: release.assignment.clone(),
            reason,
            details,
        });
        if self.outbox.len() > MAX_OUTBOX {
            let excess = self.outbox.len() - MAX_OUTBOX;
            self.outbox.drain(..excess);
        }
    }

    /// Parses a state file, refusing oversized, malformed or foreign-format ones.
    pub fn parse(bytes: &[u8]) -> Result<AgentState, StateError> {
        if bytes.len() > MAX_STATE_BYTES {
            return Err(StateError::Corrupt(format!(
                "{} bytes, more than the {MAX_STATE_BYTES} a state file can be",
                bytes.len()
            )));
        }
        let state: AgentState =
            serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt(e.to_string()))?;
        if state.format != STATE_FORMAT {
            return Err(StateError::Format {
                found: state.format,
            });
        }
        Ok(state)
    }

    /// The state file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).unwrap_or_default();
        v.push(b'\n');
        v
    }

    /// How `target` ended when it was rolled back on this device (health checks failed or the
    /// bootloader fell back): such a release is not installed again.
    pub fn rolled_back(&self, target: &str) -> Option<&LastResult> {
        self.last_result.as_ref().filter(|last| {
            last.target == target
                && matches!(
                    last.reason,
                    Reason::HealthCheckFailed | Reason::BootloaderFallback
                )
        })
    }

    /// The release being worked on, if any.
    pub fn release(&self) -> Option<&Release> {
        match &self.phase {
            Phase::Idle => None,
            Phase::Installing { release, .. }
            | Phase::Activated { release, .. }
            | Phase::RollingBack { release, .. }
            | Phase::Mirroring { release, .. } => Some(release),
        }
    }

    /// Records `release` committed in `slot` (its health checks passed). A plain update ends
    /// `Idle`; a re-image goes on to `Mirroring` the other slot, whose old content is
    /// forgotten from here on (the caller marks it bad next). Returns the slot to mirror.
    pub fn commit(&mut self, slot: Slot, release: &Release) -> Option<Slot> {
        self.committed = Some(slot);
        self.slots.insert(slot, SlotContent::from(release));
        self.last_result = Some(LastResult {
            target: release.target.clone(),
            version: release.version.clone(),
            reason: Reason::Ok,
            detail: format!("committed in slot {slot}"),
        });
        if release.reimage {
            let mirror = slot.other();
            self.slots.remove(&mirror);
            self.phase = Phase::Mirroring {
                slot: mirror,
                release: release.clone(),
                written: 0,
            };
            Some(mirror)
        } else {
            self.phase = Phase::Idle;
            None
        }
    }

    /// Records the mirror of a re-image verified in `slot`: both slots hold the release, the
    /// re-image is done (and never redone for the same assignment). Returns the release, or
    /// `None` when no mirror of `slot` was in progress.
    pub fn finish_mirror(&mut self, slot: Slot) -> Option<Release> {
        let Phase::Mirroring {
            slot: mirror,
            release,
            ..
        } = &self.phase
        else {
            return None;
        };
        if *mirror != slot {
            return None;
        }
        let release = release.clone();
        self.slots.insert(slot, SlotContent::from(&release));
        self.phase = Phase::Idle;
        self.reimaged_for = release.assignment.clone();
        self.last_result = Some(LastResult {
            target: release.target.clone(),
            version: release.version.clone(),
            reason: Reason::Ok,
            detail: format!("re-imaged: slots {} and {slot} hold it", slot.other()),
        });
        Some(release)
    }

    /// Whether `release` is a re-image this device already completed (for the same server
    /// assignment): it is not re-imaged again while the assignment stays.
    pub fn reimage_done(&self, release: &Release) -> bool {
        release.reimage && release.assignment.is_some() && self.reimaged_for == release.assignment
    }
}

/// What the agent observes at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// The slot the bootloader booted.
    pub booted: Slot,
    /// The kernel's boot id: differs after every reboot.
    pub boot_id: String,
    /// The bootloader's primary slot (the first in its boot order).
    pub primary: Slot,
}

/// What to do at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupAction {
    /// Nothing in progress; the booted slot is the committed one. Confirm it as good (reset
    /// its boot counter) and carry on.
    Idle { confirm: Slot },
    /// First start ever: record the booted slot as committed.
    Adopt { slot: Slot },
    /// Idle, but the bootloader booted another slot than the committed one (it gave up on
    /// the committed slot, or someone switched): adopt it and report.
    UnexpectedSlot { booted: Slot, committed: Slot },
    /// An install was interrupted: resume streaming into `slot` from `written`.
    ResumeInstall { slot: Slot, written: u64 },
    /// The bootloader booted the slot an install was writing to (it was never activated, so
    /// it still held its old, bootable content when it was chosen): give up the install.
    AbandonInstall { slot: Slot },
    /// The new slot is active but this boot has not rebooted into it yet (same boot), or
    /// the activation never reached the bootloader: make it primary (again) and reboot.
    Activate { slot: Slot },
    /// Started from the new slot: run the health checks, then commit or roll back.
    CheckHealth { slot: Slot },
    /// The bootloader gave up on the new slot and booted the old one.
    Fallback { slot: Slot },
    /// A rollback was decided but the device still runs the bad slot: mark it bad, make the
    /// old slot primary (again) and reboot.
    RedoRollback { slot: Slot },
    /// The rollback reached the old slot: record it and report.
    FinishRollback { slot: Slot },
    /// A re-image's mirror into `slot` was interrupted: the committed slot runs; make sure
    /// `slot` is marked bad (it may be half written), and resume from `written` with the next
    /// install of the same release.
    ResumeMirror { slot: Slot, written: u64 },
    /// The bootloader booted the slot a re-image was to mirror into. It is only ever written
    /// after it is marked bad, so it still held its previous image: adopt it and report (the
    /// re-image assignment, still there, starts over).
    AbandonMirror { slot: Slot },
}

/// Decides what to do at start (see the module documentation).
pub fn on_start(state: &AgentState, seen: &Observed) -> StartupAction {
    match &state.phase {
        Phase::Idle => match state.committed {
            None => StartupAction::Adopt { slot: seen.booted },
            Some(c) if c == seen.booted => StartupAction::Idle { confirm: c },
            Some(c) => StartupAction::UnexpectedSlot {
                booted: seen.booted,
                committed: c,
            },
        },
        Phase::Installing { slot, written, .. } => {
            if *slot == seen.booted {
                StartupAction::AbandonInstall { slot: *slot }
            } else {
                StartupAction::ResumeInstall {
                    slot: *slot,
                    written: *written,
                }
            }
        }
        Phase::Activated {
            slot,
            boot_id,
            activations,
            ..
        } => {
            if *slot == seen.booted {
                StartupAction::CheckHealth { slot: *slot }
            } else if *boot_id == seen.boot_id {
                // Same boot: the agent stopped between activating and rebooting.
                StartupAction::Activate { slot: *slot }
            } else if seen.primary == *slot || *activations >= MAX_ACTIVATIONS {
                // The bootloader had the new slot first in its order and still booted the old
                // one: its counter ran out.
                StartupAction::Fallback { slot: *slot }
            } else {
                // The activation never reached the bootloader (power cut before it was
                // written): activate again.
                StartupAction::Activate { slot: *slot }
            }
        }
        Phase::RollingBack { slot, .. } => {
            if *slot == seen.booted {
                StartupAction::RedoRollback { slot: *slot }
            } else {
                StartupAction::FinishRollback { slot: *slot }
            }
        }
        Phase::Mirroring { slot, written, .. } => {
            if *slot == seen.booted {
                StartupAction::AbandonMirror { slot: *slot }
            } else {
                StartupAction::ResumeMirror {
                    slot: *slot,
                    written: *written,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release() -> Release {
        Release {
            target: "fw.img".into(),
            version: "2.0.0".into(),
            security_version: 2,
            length: 10,
            hashes: BTreeMap::from([("sha256".into(), "ab".repeat(32))]),
            assignment: None,
            reimage: false,
        }
    }

    fn seen(booted: Slot, boot_id: &str, primary: Slot) -> Observed {
        Observed {
            booted,
            boot_id: boot_id.into(),
            primary,
        }
    }

    fn with(phase: Phase) -> AgentState {
        AgentState {
            phase,
            committed: Some(Slot::A),
            ..AgentState::default()
        }
    }

    #[test]
    fn idle_starts_confirm_adopt_or_flag_an_unexpected_slot() {
        let mut s = AgentState::default();
        assert_eq!(
            on_start(&s, &seen(Slot::B, "1", Slot::B)),
            StartupAction::Adopt { slot: Slot::B }
        );
        s.committed = Some(Slot::A);
        assert_eq!(
            on_start(&s, &seen(Slot::A, "1", Slot::A)),
            StartupAction::Idle { confirm: Slot::A }
        );
        assert_eq!(
            on_start(&s, &seen(Slot::B, "1", Slot::A)),
            StartupAction::UnexpectedSlot {
                booted: Slot::B,
                committed: Slot::A
            }
        );
    }

    #[test]
    fn interrupted_installs_resume_unless_their_slot_was_booted() {
        let s = with(Phase::Installing {
            slot: Slot::B,
            release: release(),
            written: 4,
        });
        assert_eq!(
            on_start(&s, &seen(Slot::A, "2", Slot::A)),
            StartupAction::ResumeInstall {
                slot: Slot::B,
                written: 4
            }
        );
        assert_eq!(
            on_start(&s, &seen(Slot::B, "2", Slot::B)),
            StartupAction::AbandonInstall { slot: Slot::B }
        );
    }

    #[test]
    fn activation_outcomes() {
        let act = |n| {
            with(Phase::Activated {
                slot: Slot::B,
                release: release(),
                boot_id: "1".into(),
                activations: n,
            })
        };
        // Booted the new slot.
        assert_eq!(
            on_start(&act(1), &seen(Slot::B, "2", Slot::B)),
            StartupAction::CheckHealth { slot: Slot::B }
        );
        // Same boot: not rebooted yet.
        assert_eq!(
            on_start(&act(1), &seen(Slot::A, "1", Slot::B)),
            StartupAction::Activate { slot: Slot::B }
        );
        // Rebooted, new slot primary, old slot booted: the counter ran out.
        assert_eq!(
            on_start(&act(1), &seen(Slot::A, "2", Slot::B)),
            StartupAction::Fallback { slot: Slot::B }
        );
        // Rebooted, the activation never reached the bootloader: once more.
        assert_eq!(
            on_start(&act(1), &seen(Slot::A, "2", Slot::A)),
            StartupAction::Activate { slot: Slot::B }
        );
        // ... but not forever.
        assert_eq!(
            on_start(&act(MAX_ACTIVATIONS), &seen(Slot::A, "3", Slot::A)),
            StartupAction::Fallback { slot: Slot::B }
        );
    }

    #[test]
    fn rollbacks_are_redone_until_the_old_slot_runs() {
        let s = with(Phase::RollingBack {
            slot: Slot::B,
            release: release(),
            reason: Reason::HealthCheckFailed,
            detail: "app did not start".into(),
        });
        assert_eq!(
            on_start(&s, &seen(Slot::B, "3", Slot::B)),
            StartupAction::RedoRollback { slot: Slot::B }
        );
        assert_eq!(
            on_start(&s, &seen(Slot::A, "4", Slot::A)),
            StartupAction::FinishRollback { slot: Slot::B }
        );
    }

    #[test]
    fn state_files_round_trip_and_bad_ones_are_refused() {
        let s = with(Phase::Installing {
            slot: Slot::B,
            release: release(),
            written: 4,
        });
        assert_eq!(AgentState::parse(&s.to_bytes()).unwrap(), s);
        assert!(matches!(
            AgentState::parse(b"{\"format\":1,\"phase\":"),
            Err(StateError::Corrupt(_))
        ));
        let mut other = s.clone();
        other.format = 9;
        assert!(matches!(
            AgentState::parse(&other.to_bytes()),
            Err(StateError::Format { found: 9 })
        ));
        assert!(matches!(
            AgentState::parse(&vec![b' '; MAX_STATE_BYTES + 1]),
            Err(StateError::Corrupt(_))
        ));
    }

    #[test]
    fn a_reimage_commit_goes_on_to_mirror_the_other_slot_and_forgets_its_old_content() {
        let mut s = with(Phase::Idle);
        s.slots.insert(Slot::A, SlotContent::from(&release()));
        // A plain update ends at the commit.
        assert_eq!(s.commit(Slot::B, &release()), None);
        assert_eq!(s.phase, Phase::Idle);
        assert_eq!(s.committed, Some(Slot::B));
        // A re-image mirrors: the old slot's content is no longer trusted to be known.
        let mut s = with(Phase::Idle);
        s.slots.insert(Slot::A, SlotContent::from(&release()));
        let mut r = release();
        r.reimage = true;
        r.assignment = Some("as-1".into());
        assert_eq!(s.commit(Slot::B, &r), Some(Slot::A));
        assert_eq!(
            s.phase,
            Phase::Mirroring {
                slot: Slot::A,
                release: r.clone(),
                written: 0
            }
        );
        assert!(!s.slots.contains_key(&Slot::A));
        assert!(!s.reimage_done(&r));
        // Finishing another slot's mirror is refused; the right one completes the re-image.
        assert_eq!(s.finish_mirror(Slot::B), None);
        assert_eq!(s.finish_mirror(Slot::A), Some(r.clone()));
        assert_eq!(s.phase, Phase::Idle);
        assert_eq!(s.slots.get(&Slot::A), Some(&SlotContent::from(&r)));
        assert_eq!(s.slots.get(&Slot::B), Some(&SlotContent::from(&r)));
        assert!(s.reimage_done(&r));
        // A new re-image assignment of the same release is a new re-image.
        r.assignment = Some("as-2".into());
        assert!(!s.reimage_done(&r));
    }

    #[test]
    fn an_interrupted_mirror_resumes_unless_the_bootloader_booted_its_slot() {
        let mut r = release();
        r.reimage = true;
        let s = AgentState {
            phase: Phase::Mirroring {
                slot: Slot::A,
                release: r,
                written: 8,
            },
            committed: Some(Slot::B),
            ..AgentState::default()
        };
        assert_eq!(
            on_start(&s, &seen(Slot::B, "5", Slot::B)),
            StartupAction::ResumeMirror {
                slot: Slot::A,
                written: 8
            }
        );
        assert_eq!(
            on_start(&s, &seen(Slot::A, "6", Slot::B)),
            StartupAction::AbandonMirror { slot: Slot::A }
        );
        assert_eq!(AgentState::parse(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn state_files_written_before_reimaging_existed_still_parse() {
        let old = br#"{"format":1,"phase":{"phase":"installing","slot":"B","release":{"target":"fw.img","version":"2.0.0","security_version":2,"length":10,"hashes":{"sha256":"ab"}},"written":4},"committed":"A"}"#;
        let s = AgentState::parse(old).unwrap();
        assert_eq!(s.release().map(|r| r.reimage), Some(false));
        assert_eq!(s.reimaged_for, None);
        // And a plain release writes no `reimage` field (older agents read it back).
        assert!(!String::from_utf8(s.to_bytes()).unwrap().contains("reimage"));
    }
}
