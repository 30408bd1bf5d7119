//! The daemon's pass on a virtual device: queued reports, the poll, the assignment's type,
//! verification, and the agent's install through the device's session, a slice at a time on a
//! slow link.

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use rampart_agent::device::Staged;
use rampart_agent::install::{Begin, ImageSource};
use rampart_agent::source::{Refusal, Verified};
use rampart_boot::ab::Slot;
use rampart_boot::flow::{AgentState, PendingReport, Phase};
use rampart_protocol::{DeviceFacts, ReportStatus};
use rampart_tuf_client::fetch::MinRate;
use serde_json::json;

use super::{
    Crash, Download, PassEnd, Pending, Running, SLOW_TICK_MS, Shared, VirtualDevice, Wake, ms,
};
use crate::link::{PollAnswer, Session, UpdateKind};
use crate::power::MetadataFiles;
use crate::rng::Rng;
use crate::stats::Counters;
use rampart_agent::attest::Answered;
use rampart_protocol::AttestationOutcome;

/// A device's session as the agent's image source.
struct SessionSource<'a>(&'a RefCell<Box<dyn Session>>);

impl ImageSource for SessionSource<'_> {
    fn open_at(
        &mut self,
        v: &Verified,
        offset: u64,
    ) -> Result<(Box<dyn Read + Send>, u64), Refusal> {
        self.0.borrow_mut().open(v, offset)
    }

    fn min_rate(&self) -> MinRate {
        self.0.borrow().min_rate()
    }
}

/// A progress report (best effort), as the daemon's progress callback.
fn progress_reports<'a>(
    sh: &'a Shared,
    session: &'a RefCell<Box<dyn Session>>,
) -> impl Fn(&rampart_boot::flow::Release, u64) + 'a {
    move |release, written| {
        let pct = (written.saturating_mul(100) / release.length.max(1)).min(100) as u8;
        report(
            sh,
            session.borrow_mut().as_mut(),
            release.assignment.as_deref(),
            ReportStatus::Downloading,
            Some(pct),
            json!({"target": release.target, "written": written}),
        );
    }
}

impl VirtualDevice {
    pub(super) fn pass(&mut self, sh: &Shared, now: u64) -> Result<Wake, Crash> {
        let Some(mut run) = self.run.take() else {
            return Ok(Wake::boot(now));
        };
        if let Some(until) = self.profile.offline_until(now) {
            self.run = Some(run);
            return Ok(Wake::pass(until));
        }
        let end = self.update_pass(sh, &mut run, now)?;
        Ok(self.settle(sh, run, end, now))
    }

    pub(super) fn stream_slice(&mut self, sh: &Shared, now: u64) -> Result<Wake, Crash> {
        let Some(mut run) = self.run.take() else {
            return Ok(Wake::boot(now));
        };
        if let Some(until) = self.profile.offline_until(now) {
            // The network went away under the download: retried (resumed) later.
            run.download = None;
            run.session = None;
            Counters::inc(&sh.counters.download_errors);
            self.run = Some(run);
            return Ok(Wake::pass(until));
        }
        let end = self.drive(sh, &mut run, now)?;
        Ok(self.settle(sh, run, end, now))
    }

    /// After a pass (or a slice of one): the next event.
    fn settle(&mut self, sh: &Shared, mut run: Running, end: PassEnd, now: u64) -> Wake {
        match end {
            PassEnd::Reboot => Wake::boot(now + ms(sh.timing.reboot_delay)),
            PassEnd::Stream(at) => {
                self.run = Some(run);
                Wake {
                    pending: Pending::Stream,
                    at,
                }
            }
            PassEnd::Done(ok) => {
                // The session ends with the pass: its connection closes.
                run.session = None;
                run.download = None;
                let delay = self.next_delay(sh, &mut run, ok);
                self.run = Some(run);
                Wake::pass(now + ms(delay))
            }
        }
    }

    /// The daemon's delay before the next pass: the poll interval, or exponential backoff
    /// after failures, with ±20 % jitter (`rampart_agent::daemon::next_delay`).
    fn next_delay(&self, sh: &Shared, run: &mut Running, ok: bool) -> Duration {
        let max = sh.timing.max_backoff;
        let interval = if ok {
            run.failures = 0;
            run.interval
        } else {
            run.failures += 1;
            rampart_agent::daemon::next_delay(run.interval, run.failures, max, 0.5)
        };
        run.passes += 1;
        let jitter = Rng::new(sh.seed, self.profile.index, "jitter", run.passes).unit();
        rampart_agent::daemon::next_delay(interval, 0, max.max(interval), jitter)
    }

    /// The server asks for a quote: the agent's own answer (`Device::attest`: an enrolment
    /// when the server has no AK yet, else the quote with this boot's measurement log), then,
    /// when that may change what the server answers (the new key's first nonce; what a policy
    /// withheld from an unattested device: `assigned` says the answer carried an
    /// assignment), the next poll's answer, as the daemon does. `None`: keep the first.
    fn attest(
        &mut self,
        sh: &Shared,
        session: &mut dyn Session,
        facts: &DeviceFacts,
        request: &rampart_protocol::AttestationRequest,
        assigned: bool,
    ) -> Option<PollAnswer> {
        let Some(server) = session.attestation() else {
            Counters::inc(&sh.counters.attestation_failures);
            self.note(
                sh,
                "the server asks for a quote over a link that does not attest".into(),
            );
            return None;
        };
        let answered = self.agent.attest(request, server);
        let again = answered.as_ref().is_ok_and(|a| a.poll_again(assigned));
        match answered {
            Ok(Answered::Enrolled) => {}
            Ok(Answered::Quoted(answer)) if answer.outcome == AttestationOutcome::Attested => {
                Counters::inc(&sh.counters.attested);
                if !again {
                    return None;
                }
            }
            Ok(Answered::Quoted(answer)) => {
                Counters::inc(&sh.counters.attestation_failures);
                let why = answer.reason.unwrap_or_else(|| "no reason given".into());
                self.note(sh, format!("not attested ({:?}): {why}", answer.outcome));
                return None;
            }
            Err(e) => {
                Counters::inc(&sh.counters.attestation_failures);
                self.note(sh, format!("attestation: {e}"));
                return None;
            }
        }
        match session.poll(facts) {
            Ok(again) => {
                Counters::inc(&sh.counters.polls);
                Some(again)
            }
            Err(e) => {
                Counters::inc(&sh.counters.poll_errors);
                self.note(sh, e);
                None
            }
        }
    }

    /// One pass of `rampart_agent::daemon`: queued reports, poll, and the update it assigns.
    fn update_pass(&mut self, sh: &Shared, run: &mut Running, now: u64) -> Result<PassEnd, Crash> {
        let mut session = match sh.link.connect(&self.profile.identity) {
            Ok(s) => s,
            Err(e) => {
                Counters::inc(&sh.counters.connect_errors);
                self.note(sh, e);
                return Ok(PassEnd::Done(false));
            }
        };
        Counters::inc(&sh.counters.sessions);
        self.flush(sh, &mut run.state, session.as_mut())?;
        let facts = self.facts(&run.state, now);
        let poll = match session.poll(&facts) {
            Ok(p) => p,
            Err(e) => {
                Counters::inc(&sh.counters.poll_errors);
                self.note(sh, e);
                return Ok(PassEnd::Done(false));
            }
        };
        Counters::inc(&sh.counters.polls);
        // At most an enrolment, then a quote, each followed by a poll (as the daemon).
        let mut poll = poll;
        for _ in 0..2 {
            let Some(request) = poll.attestation.take() else {
                break;
            };
            let assigned = poll.assignment.is_some();
            match self.attest(sh, session.as_mut(), &facts, &request, assigned) {
                Some(again) => poll = again,
                None => break,
            }
        }
        self.note_quarantine(poll.quarantine.as_ref(), now);
        if let Some(instruction) = poll.quarantine.take() {
            self.act_on_quarantine(sh, session.as_mut(), &instruction);
        }
        self.told = Some(facts.firmware_version.clone());
        self.answer_evidence(sh, session.as_ref(), poll.evidence.take());
        if sh.timing.poll_interval.is_none()
            && let Some(secs) = poll.interval_secs
        {
            run.interval = Duration::from_secs(secs.max(1));
        }
        let Some(assignment) = poll.assignment else {
            return self.abandon_install(run);
        };
        let running = run.state.committed.and_then(|s| run.state.slots.get(&s));
        if !rampart_agent::daemon::reimage_pending(&run.state, &assignment)
            && running.is_some_and(|c| c.target == assignment.target)
        {
            // As the daemon: an interrupted install of another release is no longer wanted.
            return self.abandon_install(run);
        }
        // Refused before it is verified or reported as downloading (as the daemon does).
        if let Some(last) = run.state.rolled_back(&assignment.target) {
            Counters::inc(&sh.counters.refused_rolled_back);
            self.last_error = Some(Refusal::rolled_back(last).detail);
            return Ok(PassEnd::Done(false));
        }
        // A re-image is forced, as the daemon treats it.
        let mut assignment = assignment;
        if assignment.reimage {
            assignment.kind = UpdateKind::Forced;
        }
        match assignment.kind {
            UpdateKind::Soft if self.profile.battery_low(now) => {
                Counters::inc(&sh.counters.deferred);
                return Ok(PassEnd::Done(true));
            }
            // Already verified into the inactive slot and reported for this assignment.
            UpdateKind::DownloadOnly
                if self.agent.staged_target(&run.state) == Some(&assignment.target)
                    && run.state.downloaded_for.as_deref() == Some(assignment.id.as_str()) =>
            {
                return Ok(PassEnd::Done(true));
            }
            _ => {}
        }
        self.plan_metadata_cut(sh, &assignment.target);
        let metadata = MetadataFiles {
            power: self.power.clone(),
        };
        let verifying = session.verify(
            &metadata,
            &self.profile.state_dir,
            &self.profile.hardware_id,
            &assignment,
            rampart_agent::daemon::now_unix(),
        );
        self.crashed()?;
        let mut verified = match verifying {
            Ok(Some(v)) => v,
            Ok(None) => return self.abandon_install(run),
            Err(e) => {
                if e.verification {
                    Counters::inc(&sh.counters.verification_failures);
                    report(
                        sh,
                        session.as_mut(),
                        Some(&assignment.id),
                        ReportStatus::VerificationFailed,
                        None,
                        json!({"target": assignment.target, "reason": e.reason.as_str(), "error": e.message}),
                    );
                }
                self.note(sh, format!("[{}] {}", e.reason.as_str(), e.message));
                return Ok(PassEnd::Done(false));
            }
        };
        verified.release.reimage = assignment.reimage;
        // The signed image is a real firmware image: a slot holding exactly it boots.
        sh.learn(&verified.release);
        report(
            sh,
            session.as_mut(),
            Some(&assignment.id),
            ReportStatus::Downloading,
            None,
            json!({"target": verified.release.target, "version": verified.release.version}),
        );
        self.plan_crash(sh, &verified.release);
        let session = RefCell::new(session);
        let begun = self.agent.begin_write(
            &mut run.state,
            &verified,
            &mut SessionSource(&session),
            &progress_reports(sh, &session),
        );
        self.crashed()?;
        run.session = Some(session.into_inner());
        match begun {
            Ok(Begin::AlreadyRunning) => Ok(PassEnd::Done(true)),
            Ok(Begin::Staged { slot }) => {
                self.finish_install(sh, run, slot, &verified, assignment.kind, 0, true)
            }
            Ok(Begin::Streaming(stream)) => {
                Counters::inc(&sh.counters.downloads);
                run.download = Some(Download {
                    stream,
                    kind: assignment.kind,
                    owed_since: None,
                });
                self.drive(sh, run, now)
            }
            Err(r) => {
                self.note(sh, format!("[{}] {}", r.reason.as_str(), r.detail));
                Ok(PassEnd::Done(false))
            }
        }
    }

    /// Gives up an interrupted install (nothing, or something else, is assigned now).
    fn abandon_install(&mut self, run: &mut Running) -> Result<PassEnd, Crash> {
        let result = self.agent.abandon_install(&mut run.state);
        self.crashed()?;
        Ok(PassEnd::Done(result.is_ok()))
    }

    /// Streams what the link allows now (everything, unless the link is slow), then finishes.
    fn drive(&mut self, sh: &Shared, run: &mut Running, now: u64) -> Result<PassEnd, Crash> {
        let (Some(mut d), Some(session)) = (run.download.take(), run.session.take()) else {
            return Ok(PassEnd::Done(false));
        };
        // A slow link delivers its rate over the time since the last slice: when the workers
        // are busy and the slice runs late, it reads what the link brought in meanwhile, so
        // the simulated rate holds whatever the scheduling delay (capped at 10 s worth).
        let budget = match self.profile.slow {
            Some(rate) => {
                let since = d.owed_since.unwrap_or(now.saturating_sub(SLOW_TICK_MS));
                d.owed_since = Some(now);
                let ms = now.saturating_sub(since).clamp(SLOW_TICK_MS, 10_000);
                (rate.saturating_mul(ms) / 1000).max(1)
            }
            None => u64::MAX,
        };
        let fetched = d.stream.fetched();
        let session = RefCell::new(session);
        let pumped = self.agent.pump(
            &mut run.state,
            &mut d.stream,
            budget,
            &progress_reports(sh, &session),
        );
        run.session = Some(session.into_inner());
        Counters::add(&sh.counters.bytes, d.stream.fetched() - fetched);
        self.crashed()?;
        match pumped {
            Ok(false) => {
                run.download = Some(d);
                Ok(PassEnd::Stream(now + SLOW_TICK_MS))
            }
            Ok(true) => {
                let (slot, resumed_from) = (d.stream.slot, d.stream.resumed_from);
                self.finish_install(
                    sh,
                    run,
                    slot,
                    &d.stream.verified,
                    d.kind,
                    resumed_from,
                    false,
                )
            }
            Err(refusal) => self.install_refused(sh, run, refusal),
        }
    }

    /// A refusal while streaming: a retryable one (network) keeps the install for resuming, any
    /// other ended it (the agent recorded it and queued a `failed` report).
    fn install_refused(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        refusal: Refusal,
    ) -> Result<PassEnd, Crash> {
        self.note(
            sh,
            format!("[{}] {}", refusal.reason.as_str(), refusal.detail),
        );
        if refusal.is_retryable() {
            Counters::inc(&sh.counters.download_errors);
        } else {
            Counters::inc(&sh.counters.install_failures);
        }
        if let Some(mut session) = run.session.take() {
            self.flush(sh, &mut run.state, session.as_mut())?;
        }
        Ok(PassEnd::Done(false))
    }

    /// The image is in the slot and verified: activate it, or (download only) stop there.
    #[allow(clippy::too_many_arguments)]
    fn finish_install(
        &mut self,
        sh: &Shared,
        run: &mut Running,
        slot: Slot,
        v: &Verified,
        kind: UpdateKind,
        resumed_from: u64,
        from_staged: bool,
    ) -> Result<PassEnd, Crash> {
        if kind == UpdateKind::DownloadOnly {
            // Verified in the inactive slot, which stays marked bad: the bootloader never picks
            // it until an install activates it.
            let queued = run.state.outbox.len();
            let staged =
                self.agent
                    .record_staged(&mut run.state, slot, v, resumed_from, from_staged);
            self.crashed()?;
            match staged {
                Ok(Staged::Downloaded { .. }) | Ok(Staged::AlreadyStaged { .. })
                    if run.state.outbox.len() > queued =>
                {
                    Counters::inc(&sh.counters.downloaded)
                }
                Ok(_) => {}
                Err(r) => self.note(sh, format!("[{}] {}", r.reason.as_str(), r.detail)),
            }
            if let Some(mut session) = run.session.take() {
                self.flush(sh, &mut run.state, session.as_mut())?;
            }
            return Ok(PassEnd::Done(true));
        }
        if matches!(&run.state.phase, Phase::Mirroring { slot: s, .. } if *s == slot) {
            // A re-image's second slot is verified: marked good and reported, no reboot.
            let mirrored = self.agent.finish_mirror(&mut run.state, slot, v);
            self.crashed()?;
            if let Err(r) = mirrored {
                self.note(sh, format!("[{}] {}", r.reason.as_str(), r.detail));
                return Ok(PassEnd::Done(false));
            }
            if let Some(mut session) = run.session.take() {
                self.flush(sh, &mut run.state, session.as_mut())?;
            }
            return Ok(PassEnd::Done(true));
        }
        let activated = self.agent.activate(&mut run.state, slot, &v.release);
        self.crashed()?;
        if let Err(r) = activated {
            self.note(sh, format!("[{}] {}", r.reason.as_str(), r.detail));
            return Ok(PassEnd::Done(false));
        }
        // The daemon's flush, `rebooting` report and reboot.
        if let Some(mut session) = run.session.take() {
            self.flush(sh, &mut run.state, session.as_mut())?;
            report(
                sh,
                session.as_mut(),
                v.release.assignment.as_deref(),
                ReportStatus::Rebooting,
                None,
                json!({"target": v.release.target, "slot": slot.name()}),
            );
        }
        Ok(PassEnd::Reboot)
    }

    /// A signed quarantine instruction: a cooperative device acts on it as the agent does
    /// (through its metadata store, so a power cut can strike the memory write); an
    /// uncooperative one ignores it.
    fn act_on_quarantine(
        &mut self,
        sh: &Shared,
        session: &mut dyn Session,
        instruction: &rampart_protocol::SignedQuarantine,
    ) {
        if !self.profile.cooperative {
            Counters::inc(&sh.counters.quarantine_ignored);
            return;
        }
        let metadata = MetadataFiles {
            power: self.power.clone(),
        };
        match session.quarantine(
            &metadata,
            &self.profile.state_dir,
            instruction,
            rampart_agent::daemon::now_unix(),
        ) {
            Ok(true) => Counters::inc(&sh.counters.quarantine_acks),
            Ok(false) => {}
            Err(e) => {
                Counters::inc(&sh.counters.quarantine_ignored);
                self.note(sh, e);
            }
        }
    }

    /// Sends queued reports, keeping those the server did not store (`daemon::flush`).
    fn flush(
        &mut self,
        sh: &Shared,
        state: &mut AgentState,
        session: &mut dyn Session,
    ) -> Result<(), Crash> {
        if state.outbox.is_empty() {
            return Ok(());
        }
        let mut error = None;
        let mut send = |r: &PendingReport| {
            let details = r.details.clone();
            let sent = session.report(&r.id, r.status, r.assignment.as_deref(), None, details);
            let counter = match &sent {
                Ok(()) => &sh.counters.reports_sent,
                Err(_) => &sh.counters.report_errors,
            };
            Counters::inc(counter);
            // Kept in the outbox unless the server stored it.
            sent.map_err(|e| error = Some(e)).is_ok()
        };
        let recorded = self.agent.flush_reports(state, &mut send);
        self.crashed()?;
        if let Some(e) = error {
            self.note(sh, e);
        }
        if let Err(r) = recorded {
            self.note(sh, r.detail);
        }
        Ok(())
    }

    /// The facts a poll tells the server (`daemon::facts`, plus region, tags and the
    /// simulated condition attributes).
    fn facts(&mut self, state: &AgentState, now: u64) -> DeviceFacts {
        let (battery, mains) = self.profile.power(now);
        let mut attributes = serde_json::Map::new();
        attributes.insert("battery_pct".into(), battery.into());
        attributes.insert("on_mains".into(), mains.into());
        let mut facts = DeviceFacts {
            region: self.profile.region.clone(),
            tags: self.profile.tags.clone(),
            attributes: Some(attributes),
            ..rampart_agent::daemon::facts(&mut self.agent, state)
        };
        if self.forges_reports() {
            facts.firmware_version = crate::compromise::FORGED_VERSION.to_owned();
        }
        facts
    }
}

/// A best-effort report (not queued), as `ServerClient::report` sends them.
fn report(
    sh: &Shared,
    session: &mut dyn Session,
    assignment: Option<&str>,
    status: ReportStatus,
    progress: Option<u8>,
    details: serde_json::Value,
) {
    let id = rampart_agent::server_client::random_id();
    match session.report(&id, status, assignment, progress, details) {
        Ok(()) => Counters::inc(&sh.counters.reports_sent),
        Err(_) => Counters::inc(&sh.counters.report_errors),
    }
}
