//! The start of every boot (see [`rampart_boot::flow::on_start`]): the agent observes which
//! slot runs, then commits a new release whose health checks pass, rolls back one whose
//! checks fail, finishes an interrupted rollback, or confirms the running slot.

use std::time::Duration;

use rampart_boot::ab::{Slot, SlotHealth};
use rampart_boot::flow::{AgentState, LastResult, Phase, Reason, Release, StartupAction, on_start};
use rampart_protocol::ReportStatus;

use crate::device::{Device, HealthCheck, Started, queue};
use crate::platform::{Platform, boot_refusal};
use crate::source::Refusal;

impl<P: Platform> Device<P> {
    /// Runs the start-of-boot flow (see [`rampart_boot::flow::on_start`]).
    pub fn start(
        &mut self,
        state: &mut AgentState,
        health: &dyn HealthCheck,
    ) -> Result<Started, Refusal> {
        let seen = self.observe_with(matches!(state.phase, Phase::Activated { .. }))?;
        self.platform.sweep(&self.config);
        let ready = Started::Ready {
            committed: None,
            rolled_back: None,
        };
        match on_start(state, &seen) {
            StartupAction::Idle { confirm } => {
                self.platform
                    .bootloader()
                    .confirm(&self.disk, confirm)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::Adopt { slot } => {
                state.committed = Some(slot);
                self.save(state)?;
                self.platform
                    .bootloader()
                    .confirm(&self.disk, slot)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::UnexpectedSlot { booted, committed } => {
                let detail = format!(
                    "the bootloader booted slot {booted}, not the committed slot {committed}; {booted} is now the committed slot"
                );
                self.adopt_unexpected(state, booted, committed, &detail)?;
                Ok(ready)
            }
            StartupAction::AbandonInstall { slot } => {
                let detail = format!(
                    "the bootloader booted slot {slot} while an update was being written to it; the update was abandoned"
                );
                self.abandon_for_booted(state, slot, &detail)?;
                Ok(ready)
            }
            StartupAction::AbandonMirror { slot } => {
                let detail = format!(
                    "the bootloader booted slot {slot}, which a re-image was about to overwrite (it still held its previous image); the re-image was abandoned and starts over"
                );
                self.abandon_for_booted(state, slot, &detail)?;
                Ok(ready)
            }
            StartupAction::ResumeMirror { slot, .. } => {
                // Resumed by the next install of the same release, as an interrupted install
                // is. The mirror slot may be half written, and the commit may have been cut
                // off before it was marked bad: mark it (again) before anything else.
                let committed = state.committed.unwrap_or(seen.booted);
                self.platform
                    .bootloader()
                    .confirm(&self.disk, committed)
                    .map_err(boot_refusal)?;
                self.platform
                    .bootloader()
                    .set_health(&self.disk, slot, SlotHealth::Bad)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::ResumeInstall { .. } => {
                // Resumed by the next install of the same release (the source is re-verified
                // first); meanwhile the committed slot runs as before.
                let committed = state.committed.unwrap_or(seen.booted);
                self.platform
                    .bootloader()
                    .confirm(&self.disk, committed)
                    .map_err(boot_refusal)?;
                Ok(ready)
            }
            StartupAction::Activate { slot } => {
                if let Phase::Activated {
                    boot_id,
                    activations,
                    ..
                } = &mut state.phase
                    && *boot_id != seen.boot_id
                {
                    *activations += 1;
                    *boot_id = seen.boot_id.clone();
                    self.save(state)?;
                }
                self.platform
                    .bootloader()
                    .set_primary(&self.disk, slot)
                    .map_err(boot_refusal)?;
                Ok(Started::Reboot)
            }
            StartupAction::CheckHealth { slot } => {
                let Phase::Activated { release, .. } = state.phase.clone() else {
                    unreachable!("on_start only checks health in the Activated phase")
                };
                let deadline = Duration::from_secs(self.config.health.deadline_secs);
                match health.check(deadline) {
                    Ok(()) => {
                        self.platform
                            .bootloader()
                            .set_health(&self.disk, slot, SlotHealth::Good)
                            .map_err(boot_refusal)?;
                        // The floor rises at every commit, a re-image's too: re-imaging to a
                        // release with a higher security version shuts out the suspect one.
                        self.raise_security_version(release.security_version)?;
                        if let Some(mirror) = state.commit(slot, &release) {
                            // Mirroring is recorded before the old slot is marked bad: a power
                            // cut between the two is repaired at start (ResumeMirror). It is
                            // reported `installed` only once the mirror is verified.
                            self.save(state)?;
                            self.platform
                                .bootloader()
                                .set_health(&self.disk, mirror, SlotHealth::Bad)
                                .map_err(boot_refusal)?;
                        } else {
                            let slots = self.slot_states(state);
                            queue(
                                state,
                                ReportStatus::Installed,
                                &release,
                                Reason::Ok,
                                serde_json::json!({"slot": slot.name(), "slots": slots}),
                            );
                            self.save(state)?;
                        }
                        Ok(Started::Ready {
                            committed: Some(Box::new(release)),
                            rolled_back: None,
                        })
                    }
                    Err(why) => {
                        state.phase = Phase::RollingBack {
                            slot,
                            release,
                            reason: Reason::HealthCheckFailed,
                            detail: why,
                        };
                        self.save(state)?;
                        self.roll_back(slot)?;
                        Ok(Started::Reboot)
                    }
                }
            }
            StartupAction::Fallback { slot } => {
                let Phase::Activated { release, .. } = state.phase.clone() else {
                    unreachable!("on_start only detects fallbacks in the Activated phase")
                };
                self.roll_back(slot)?;
                let detail = format!(
                    "the bootloader gave up on slot {slot} after its boot attempts and booted slot {}",
                    seen.booted
                );
                self.finish_rollback(
                    state,
                    slot,
                    seen.booted,
                    &release,
                    Reason::BootloaderFallback,
                    &detail,
                )?;
                Ok(Started::Ready {
                    committed: None,
                    rolled_back: Some(Box::new((release, Reason::BootloaderFallback))),
                })
            }
            StartupAction::RedoRollback { slot } => {
                self.roll_back(slot)?;
                Ok(Started::Reboot)
            }
            StartupAction::FinishRollback { slot } => {
                let Phase::RollingBack {
                    release,
                    reason,
                    detail,
                    ..
                } = state.phase.clone()
                else {
                    unreachable!("on_start only finishes rollbacks in the RollingBack phase")
                };
                self.finish_rollback(state, slot, seen.booted, &release, reason, &detail)?;
                self.platform
                    .bootloader()
                    .confirm(&self.disk, seen.booted)
                    .map_err(boot_refusal)?;
                Ok(Started::Ready {
                    committed: None,
                    rolled_back: Some(Box::new((release, reason))),
                })
            }
        }
    }

    /// The bootloader booted `slot`, which the agent was about to write or writing while it
    /// was still whole: give up the install or mirror, adopt the slot and report.
    fn abandon_for_booted(
        &mut self,
        state: &mut AgentState,
        slot: Slot,
        detail: &str,
    ) -> Result<(), Refusal> {
        let release = state.release().cloned();
        state.phase = Phase::Idle;
        if let Some(r) = &release {
            state.last_result = Some(LastResult {
                target: r.target.clone(),
                version: r.version.clone(),
                reason: Reason::UnexpectedSlot,
                detail: detail.to_owned(),
            });
            queue(
                state,
                ReportStatus::Failed,
                r,
                Reason::UnexpectedSlot,
                serde_json::json!({"detail": detail}),
            );
        }
        let committed = state.committed.unwrap_or(slot.other());
        self.adopt_unexpected(state, slot, committed, detail)
    }

    fn adopt_unexpected(
        &mut self,
        state: &mut AgentState,
        booted: Slot,
        committed: Slot,
        detail: &str,
    ) -> Result<(), Refusal> {
        state.committed = Some(booted);
        let content = state.slots.get(&booted).cloned();
        let release = Release {
            target: content
                .as_ref()
                .map(|c| c.target.clone())
                .unwrap_or_default(),
            version: content
                .as_ref()
                .map(|c| c.version.clone())
                .unwrap_or_default(),
            security_version: content.as_ref().map_or(0, |c| c.security_version),
            length: 0,
            hashes: Default::default(),
            assignment: None,
            reimage: false,
        };
        queue(
            state,
            ReportStatus::Failed,
            &release,
            Reason::UnexpectedSlot,
            serde_json::json!({"detail": detail, "previous_slot": committed.name()}),
        );
        self.save(state)?;
        self.platform
            .bootloader()
            .confirm(&self.disk, booted)
            .map_err(boot_refusal)
    }

    /// Marks `bad` bad and makes the other slot primary (idempotent).
    fn roll_back(&mut self, bad: Slot) -> Result<(), Refusal> {
        self.platform
            .bootloader()
            .set_health(&self.disk, bad, SlotHealth::Bad)
            .map_err(boot_refusal)?;
        self.platform
            .bootloader()
            .set_primary(&self.disk, bad.other())
            .map_err(boot_refusal)
    }

    fn finish_rollback(
        &mut self,
        state: &mut AgentState,
        bad: Slot,
        running: Slot,
        release: &Release,
        reason: Reason,
        detail: &str,
    ) -> Result<(), Refusal> {
        state.phase = Phase::Idle;
        state.committed = Some(running);
        state.slots.remove(&bad);
        state.last_result = Some(LastResult {
            target: release.target.clone(),
            version: release.version.clone(),
            reason,
            detail: detail.to_owned(),
        });
        let slots = self.slot_states(state);
        queue(
            state,
            ReportStatus::RolledBack,
            release,
            reason,
            serde_json::json!({"detail": detail, "bad_slot": bad.name(), "running_slot": running.name(), "slots": slots, "logs": detail}),
        );
        self.save(state)
    }
}
