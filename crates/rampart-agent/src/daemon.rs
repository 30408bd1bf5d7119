//! The agent's passes: the boot flow, an update from the server, an offline install, and the
//! polling loop with jitter and exponential backoff around them.

use std::path::Path;
use std::time::Duration;

use rampart_boot::flow::{AgentState, PendingReport, Phase, Reason};
use rampart_protocol::{
    AttestationOutcome, AttestationRequest, DeviceFacts, ReportStatus, SignedQuarantine,
};

use crate::agent_log::AgentLog;
use crate::attest::{Answered, AttestationServer};
use crate::config::Config;
use crate::device::{Device, HealthCheck, Installed, Staged, Started};
use crate::evidence::DeviceKey;
use crate::platform::Platform;
use crate::server_client::{ServerClient, UpdateKind, random_id};
use crate::source::{Fetch, Refusal, Verified};

/// How a pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pass {
    /// Nothing to do (up to date, or nothing assigned).
    UpToDate,
    /// Committed a new release in this start.
    Committed { version: String },
    /// Finished a rollback in this start.
    RolledBack { version: String, reason: Reason },
    /// Reboot now: an update was activated, or a rollback needs the old slot.
    Reboot,
    /// A soft assignment waits: the device's soft-update check said not now.
    Deferred { why: String },
    /// A download-only assignment is verified in the inactive slot, not activated.
    Downloaded { version: String },
    /// A re-image is complete: `version` was committed and mirrored, both slots hold it.
    Reimaged { version: String },
}

/// How long the soft-update check may run.
const SOFT_CHECK_DEADLINE: Duration = Duration::from_secs(30);

/// Whether a soft assignment may install now: the configured check exits 0 (no check: yes).
/// `Err` says why not.
pub fn soft_install_allowed(config: &Config) -> Result<(), String> {
    let argv = &config.install.soft_check;
    if argv.is_empty() {
        return Ok(());
    }
    crate::health::run(
        "soft-update check",
        argv,
        std::time::Instant::now() + SOFT_CHECK_DEADLINE,
    )
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs the boot flow. Corrupt state or environment is refused before anything is written.
pub fn boot(
    device: &mut Device,
    state: &mut AgentState,
    health: &dyn HealthCheck,
) -> Result<Pass, Refusal> {
    let started = device.start(state, health)?;
    if started != Started::Reboot {
        measure(device, state)?;
    }
    Ok(match started {
        Started::Reboot => Pass::Reboot,
        Started::Ready {
            committed: Some(r), ..
        } => Pass::Committed { version: r.version },
        Started::Ready {
            rolled_back: Some(r),
            ..
        } => Pass::RolledBack {
            version: r.0.version,
            reason: r.1,
        },
        Started::Ready { .. } => Pass::UpToDate,
    })
}

/// Measures the running boot into the TPM ([`Device::measure_boot`]). A TPM failure is
/// printed and the boot goes on (its quotes will fail, saying the boot was not measured);
/// a power cut stays a power cut.
pub fn measure<P: Platform>(device: &mut Device<P>, state: &AgentState) -> Result<(), Refusal> {
    match device.measure_boot(state) {
        Ok(_) => Ok(()),
        Err(r) if r.crashed => Err(r),
        Err(r) => {
            eprintln!("measured boot: [{}] {}", r.reason.as_str(), r.detail);
            Ok(())
        }
    }
}

/// Sends queued reports to the server, keeping those it did not store.
pub fn flush(device: &mut Device, state: &mut AgentState, client: &ServerClient) {
    let mut send = |r: &PendingReport| match client.send_report(
        &r.id,
        r.status,
        r.assignment.as_deref(),
        None,
        r.details.clone(),
    ) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("report {} ({}) not sent yet: {e}", r.id, r.status);
            false
        }
    };
    if let Err(e) = device.flush_reports(state, &mut send) {
        eprintln!("could not record sent reports: {e}");
    }
}

/// Longest boot id a poll tells (Linux's is a 36-character UUID).
const MAX_BOOT_ID: usize = 64;

/// The facts a poll tells the server.
pub fn facts<P: Platform>(device: &mut Device<P>, state: &AgentState) -> DeviceFacts {
    let running = state.committed.and_then(|s| state.slots.get(&s));
    // The inventory's slot format: lowercase slot names; "active" for the committed slot,
    // otherwise the bootloader's "good" or "bad" (filterable as slot=b=bad).
    let mut slots = serde_json::Map::new();
    if let serde_json::Value::Object(view) = device.describe_slots(state) {
        for (name, v) in view {
            let value = if v["committed"].as_bool() == Some(true) {
                "active"
            } else {
                v["bootloader"].as_str().unwrap_or("unknown")
            };
            slots.insert(name.to_ascii_lowercase(), value.into());
        }
    }
    DeviceFacts {
        hardware_id: device.config.hardware_id.clone(),
        firmware_version: running.map_or("unknown", |c| c.version.as_str()).to_owned(),
        security_version: device.security_version().unwrap_or(0),
        slots,
        // A new boot makes the server ask for a quote at once; a platform that cannot tell
        // (or tells something that is not a boot id) says nothing: the freshness window still
        // asks.
        boot_id: device
            .platform
            .boot_id(&device.config)
            .ok()
            .filter(|b| b.len() <= MAX_BOOT_ID && !b.chars().any(char::is_control))
            .unwrap_or_default(),
        slot_versions: Some(slot_versions(state)),
        ..DeviceFacts::default()
    }
}

/// The version each slot holds, as the state records it (decision 0049): a slot whose content
/// the state does not record (never written by this agent, being written, or after
/// `reset-state`) is left out, never guessed; a version the wire type would refuse is left out
/// too, so the poll itself is never refused for it. Slot names as in `slots`.
pub fn slot_versions(state: &AgentState) -> std::collections::BTreeMap<String, String> {
    state
        .slots
        .iter()
        .map(|(slot, content)| (slot.name().to_ascii_lowercase(), content.version.clone()))
        .filter(|(name, version)| rampart_protocol::check_slot_version(name, version).is_ok())
        .collect()
}

/// Whether `assignment` still wants work although the device may run its release: a re-image
/// until it completed for this assignment (both slots written), or a mirror in progress.
pub fn reimage_pending(state: &AgentState, assignment: &crate::server_client::Assignment) -> bool {
    (assignment.reimage && state.reimaged_for.as_deref() != Some(assignment.id.as_str()))
        || matches!(&state.phase, Phase::Mirroring { release, .. }
            if release.assignment.as_deref() == Some(assignment.id.as_str()))
}

/// One update pass through the server: poll, verify, install, activate.
pub fn update_from_server(
    device: &mut Device,
    state: &mut AgentState,
    client: &ServerClient,
) -> Result<(Pass, Option<u64>), Refusal> {
    let facts = facts(device, state);
    let mut poll = client
        .poll_with(&facts)
        .map_err(|e| Refusal::new(Reason::from(&e), e))?;
    // At most an enrolment, then a quote: each may change what the next poll answers (the
    // new key's first nonce; an assignment a policy withheld from an unattested device), so
    // the device polls again at once rather than one interval later.
    for _ in 0..2 {
        let Some(request) = poll.attestation.take() else {
            break;
        };
        if !answer_attestation(device, &request, client, poll.assignment.is_some()) {
            break;
        }
        poll = client
            .poll_with(&facts)
            .map_err(|e| Refusal::new(Reason::from(&e), e))?;
    }
    if let Some(instruction) = poll.quarantine.take() {
        act_on_quarantine(device, client, &instruction);
    }
    let Some(assignment) = poll.assignment else {
        device.abandon_install(state)?;
        return Ok((Pass::UpToDate, poll.interval_secs));
    };
    let running = state.committed.and_then(|s| state.slots.get(&s));
    if !reimage_pending(state, &assignment)
        && running.is_some_and(|c| c.target == assignment.target)
    {
        // The device runs what it is assigned (a fleet rollback replaced the release it was
        // installing): an interrupted install of another release is no longer wanted.
        device.abandon_install(state)?;
        return Ok((Pass::UpToDate, poll.interval_secs));
    }
    // A release rolled back here is refused (as `Device::install` refuses it) before it is
    // verified and reported as downloading: otherwise every poll while it stays assigned would
    // send a `downloading` report that buries the `rolled_back` one.
    if let Some(last) = state.rolled_back(&assignment.target) {
        return Err(Refusal::rolled_back(last));
    }
    // A re-image is forced: neither the soft-update check nor download-only defers it.
    let kind = if assignment.reimage {
        UpdateKind::Forced
    } else {
        assignment.kind
    };
    match kind {
        UpdateKind::Soft => {
            if let Err(why) = soft_install_allowed(&device.config) {
                return Ok((Pass::Deferred { why }, poll.interval_secs));
            }
        }
        // Already verified into the inactive slot and reported for this assignment: nothing
        // to do until it is activated.
        UpdateKind::DownloadOnly
            if device.staged_target(state) == Some(&assignment.target)
                && state.downloaded_for.as_deref() == Some(assignment.id.as_str()) =>
        {
            return Ok((Pass::UpToDate, poll.interval_secs));
        }
        UpdateKind::DownloadOnly | UpdateKind::Forced => {}
    }
    let verified = match crate::director::verify_assigned(
        &device.disk,
        &device.config.state_dir,
        client,
        &device.config.hardware_id,
        now_unix(),
    ) {
        Ok(Some(v)) => {
            let mut v = Verified::from_assignment(v, &assignment.id)?;
            v.release.reimage = assignment.reimage;
            v
        }
        Ok(None) => {
            device.abandon_install(state)?;
            return Ok((Pass::UpToDate, poll.interval_secs));
        }
        Err(e) => {
            let reason = Reason::from(&e);
            if e.is_verification_failure() {
                client.report(
                    &assignment.id,
                    ReportStatus::VerificationFailed,
                    serde_json::json!({"target": assignment.target, "reason": reason.as_str(), "error": e.to_string()}),
                );
            }
            return Err(crash_aware(device, Refusal::new(reason, e)));
        }
    };
    client.report(
        &assignment.id,
        ReportStatus::Downloading,
        serde_json::json!({"target": verified.release.target, "version": verified.release.version}),
    );
    let fetch = Fetch::server(client);
    let progress = |release: &rampart_boot::flow::Release, written: u64| {
        let pct = (written.saturating_mul(100) / release.length.max(1)).min(100) as u8;
        let _ = client.send_report(
            &random_id(),
            ReportStatus::Downloading,
            release.assignment.as_deref(),
            Some(pct),
            serde_json::json!({"target": release.target, "written": written}),
        );
    };
    if kind == UpdateKind::DownloadOnly {
        let result = device.stage(state, &verified, &fetch, &progress);
        flush(device, state, client);
        return match result? {
            Staged::AlreadyRunning => Ok((Pass::UpToDate, poll.interval_secs)),
            Staged::AlreadyStaged { .. } | Staged::Downloaded { .. } => Ok((
                Pass::Downloaded {
                    version: verified.release.version.clone(),
                },
                poll.interval_secs,
            )),
        };
    }
    let result = device.install(state, &verified, &fetch, &progress);
    flush(device, state, client);
    match result? {
        Installed::AlreadyRunning => Ok((Pass::UpToDate, poll.interval_secs)),
        Installed::Reimaged { .. } => Ok((
            Pass::Reimaged {
                version: verified.release.version.clone(),
            },
            poll.interval_secs,
        )),
        Installed::Activated { slot, .. } => {
            client.report(
                &assignment.id,
                ReportStatus::Rebooting,
                serde_json::json!({"target": verified.release.target, "slot": slot.name()}),
            );
            Ok((Pass::Reboot, poll.interval_secs))
        }
    }
}

/// Acts on a signed quarantine instruction (see `quarantine`); a failure is printed and the
/// pass goes on: the server enforces the quarantine either way, and the next poll brings the
/// instruction again.
pub fn act_on_quarantine(device: &Device, client: &ServerClient, instruction: &SignedQuarantine) {
    let config = device.config.incident.clone();
    let outcome = crate::quarantine::handle(
        &device.config.state_dir,
        &device.disk,
        client,
        instruction,
        now_unix(),
        |statement| crate::quarantine::run_hook(&config, statement),
    );
    match outcome {
        Ok(Some(acted)) => eprintln!(
            "quarantine statement {:?} (incident {:?}, issued {}): hook {:?}, acknowledged",
            acted.state, acted.incident, acted.issued, acted.hook
        ),
        Ok(None) => {}
        Err(e) => eprintln!("quarantine instruction not acted on: {e}"),
    }
}

/// Answers the server's attestation request (`assigned`: the poll answer that asked carried an
/// assignment); whether to poll again at once ([`Answered::poll_again`]). A failure is printed and the pass goes on: a policy that
/// requires attestation withholds the assignment, and the next poll asks again.
pub fn answer_attestation<P: Platform>(
    device: &mut Device<P>,
    request: &AttestationRequest,
    server: &dyn AttestationServer,
    assigned: bool,
) -> bool {
    match device.attest(request, server) {
        Ok(Answered::Quoted(answer)) if answer.outcome != AttestationOutcome::Attested => {
            let outcome = match answer.outcome {
                AttestationOutcome::Attested => "attested",
                AttestationOutcome::Failed => "failed",
                AttestationOutcome::Stale => "stale",
            };
            eprintln!(
                "attestation {outcome}: {}",
                answer
                    .reason
                    .as_deref()
                    .unwrap_or("the server gave no reason")
            );
            false
        }
        Ok(answered) => answered.poll_again(assigned),
        Err(e) => {
            eprintln!("attestation failed: {e}");
            false
        }
    }
}

/// An offline install from a repository directory or URL (no server): boot flow first, then
/// verify and stream.
pub fn install_from(
    device: &mut Device,
    state: &mut AgentState,
    from: &str,
    target: &str,
    health: &dyn HealthCheck,
    progress: &dyn crate::device::Progress,
) -> Result<Pass, Refusal> {
    offline_install(device, state, from, target, false, health, progress)
}

/// An offline re-image from a repository directory or URL: like [`install_from`], but the
/// release is written even over the same release, and after the reboot and commit the same
/// call (run again) mirrors it into the other slot ([`Pass::Reimaged`] when both hold it).
pub fn reimage_from(
    device: &mut Device,
    state: &mut AgentState,
    from: &str,
    target: &str,
    health: &dyn HealthCheck,
    progress: &dyn crate::device::Progress,
) -> Result<Pass, Refusal> {
    offline_install(device, state, from, target, true, health, progress)
}

fn offline_install(
    device: &mut Device,
    state: &mut AgentState,
    from: &str,
    target: &str,
    reimage: bool,
    health: &dyn HealthCheck,
    progress: &dyn crate::device::Progress,
) -> Result<Pass, Refusal> {
    if boot(device, state, health)? == Pass::Reboot {
        return Ok(Pass::Reboot);
    }
    let base = crate::source::repo_url(from)?;
    let floor = device.security_version()?;
    let (verified, _, _) = crate::source::verify_from_repo(
        &device.disk,
        &device.config.state_dir,
        &base,
        &device.config.hardware_id,
        floor,
        target,
        now_unix(),
    )
    .map_err(|r| crash_aware(device, r))?;
    let mut verified = verified;
    verified.release.reimage = reimage;
    match device.install(state, &verified, &Fetch::plain(), progress)? {
        Installed::AlreadyRunning => Ok(Pass::UpToDate),
        Installed::Activated { .. } => Ok(Pass::Reboot),
        Installed::Reimaged { .. } => Ok(Pass::Reimaged {
            version: verified.release.version,
        }),
    }
}

/// A refusal met while writing through the device's [`crate::disk::Disk`] from code that
/// knows nothing of power cuts (the TUF client): a power cut stays a power cut.
fn crash_aware(device: &Device, mut refusal: Refusal) -> Refusal {
    refusal.crashed |= device.disk.crashed();
    refusal
}

/// Runs the configured reboot command.
pub fn reboot(config: &Config) -> Result<(), String> {
    let argv = &config.boot.reboot_command;
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .map_err(|e| format!("reboot command {:?}: {e}", argv))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("reboot command {:?} failed ({status})", argv))
    }
}

/// Backoff after `failures` consecutive failures: doubling from `base`, capped at `max`, with
/// ±20 % jitter so a fleet does not poll in lockstep.
pub fn next_delay(base: Duration, failures: u32, max: Duration, jitter_unit: f64) -> Duration {
    let exp = base.saturating_mul(1u32 << failures.min(16));
    let capped = exp.min(max);
    let factor = 0.8 + 0.4 * jitter_unit.clamp(0.0, 1.0);
    capped.mul_f64(factor)
}

/// A uniform number in [0, 1) from the system RNG.
pub fn jitter() -> f64 {
    let mut b = [0u8; 4];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u32::from_le_bytes(b) as f64 / (u32::MAX as f64 + 1.0)
}

/// The evidence pass, after every update pass whatever it did: answers the last poll's
/// evidence request (collect once, keep, upload) and resumes every pending upload
/// ([`crate::evidence::answer`]), then anchors the agent log if an anchor is due.
pub fn evidence_pass(
    device: &mut Device,
    log: &mut AgentLog,
    key: &DeviceKey,
    client: &ServerClient,
) -> crate::evidence::Answered {
    let request = client.take_evidence_request();
    let disk = device.disk.clone();
    let state_dir = device.config.state_dir.clone();
    let mut store = crate::evidence::StateDirStore::new(&state_dir, &disk);
    let answered = crate::evidence::answer(
        device,
        log,
        key,
        client.device_id(),
        &mut store,
        client,
        request.as_ref(),
        crate::evidence::Retry::default(),
        now_unix(),
    );
    for id in &answered.collected {
        println!("evidence {id} collected");
    }
    for id in &answered.uploaded {
        println!("evidence {id} uploaded");
    }
    for line in &answered.failed {
        eprintln!("evidence: {line}");
    }
    if log.anchor_due()
        && let Err(e) = log.anchor(client.device_id(), &key.anchor_signer())
    {
        eprintln!("{e}");
    }
    answered
}

/// Whether `path` exists as a state directory with a trusted root.
pub fn provisioned(state_dir: &Path) -> bool {
    state_dir.join("metadata").join("root.json").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_jitters() {
        let base = Duration::from_secs(10);
        let max = Duration::from_secs(300);
        assert_eq!(next_delay(base, 0, max, 0.5), Duration::from_secs(10));
        assert_eq!(next_delay(base, 3, max, 0.5), Duration::from_secs(80));
        assert_eq!(next_delay(base, 10, max, 0.5), max);
        assert_eq!(next_delay(base, 0, max, 0.0), Duration::from_secs(8));
        assert_eq!(next_delay(base, 0, max, 1.0), Duration::from_secs(12));
        assert_eq!(next_delay(base, 40, max, 1.0), Duration::from_secs(360));
    }

    fn content(version: &str) -> rampart_boot::flow::SlotContent {
        rampart_boot::flow::SlotContent {
            target: format!("{version}/fw.img"),
            version: version.into(),
            security_version: 1,
            sha256: "00".repeat(32),
            length: 10,
        }
    }

    #[test]
    fn slot_versions_say_only_what_the_state_records() {
        use rampart_boot::ab::Slot;
        let mut state = AgentState::default();
        assert!(
            slot_versions(&state).is_empty(),
            "nothing recorded: nothing said"
        );
        state.slots.insert(Slot::A, content("1.0.0"));
        state.slots.insert(Slot::B, content("2.0.0"));
        assert_eq!(
            slot_versions(&state),
            [("a", "1.0.0"), ("b", "2.0.0")]
                .map(|(s, v)| (s.to_owned(), v.to_owned()))
                .into()
        );
        // A version the server would refuse is left out rather than refusing the whole poll.
        state.slots.insert(
            Slot::B,
            content(&"9".repeat(rampart_protocol::MAX_SLOT_VERSION_LEN + 1)),
        );
        assert_eq!(
            slot_versions(&state),
            [("a".to_owned(), "1.0.0".to_owned())].into()
        );
    }
}
