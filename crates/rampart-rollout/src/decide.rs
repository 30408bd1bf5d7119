//! The campaign state machine: what the server does next, given the campaign's state, its
//! current wave's results and the time (passed in; this crate has no clock).
//!
//! ```text
//!   draft ──start──► running ──gate passes──► (awaiting_approval ──approve──►) next wave … ──► completed
//!                      │  ▲                                         
//!          gate breach │  │ resume / approve                        
//!                      ▼  │                                         
//!                    paused ─────────abort──────────► aborted (terminal; also from running)
//! ```
//!
//! A gate breach pauses or aborts on its own, as the campaign's spec says, and may roll the
//! fleet back; an operator resuming a breached wave accepts the failures seen so far (later
//! ones count again).

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::spec::{BreachAction, CampaignSpec, Gate};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Draft,
    Running,
    AwaitingApproval,
    Paused,
    Aborted,
    Completed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Draft => "draft",
            Status::Running => "running",
            Status::AwaitingApproval => "awaiting_approval",
            Status::Paused => "paused",
            Status::Aborted => "aborted",
            Status::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [
            Status::Draft,
            Status::Running,
            Status::AwaitingApproval,
            Status::Paused,
            Status::Aborted,
            Status::Completed,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
    }

    /// Whether the campaign holds its devices (another campaign may not target them).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            Status::Running | Status::AwaitingApproval | Status::Paused
        )
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Status::Aborted | Status::Completed)
    }
}

/// Why a campaign stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Halt {
    pub at: i64,
    /// `"gate"` or `"operator"`.
    pub by: String,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breach: Option<Breach>,
}

/// A campaign's progress: everything the server persists to resume it exactly after a restart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignState {
    pub status: Status,
    /// The current wave (0: the canary).
    pub wave: usize,
    /// When the current wave started (its devices were given the release).
    pub wave_started: i64,
    #[serde(default)]
    pub started: Option<i64>,
    #[serde(default)]
    pub finished: Option<i64>,
    #[serde(default)]
    pub halt: Option<Halt>,
    /// Failures of the current wave an operator accepted by resuming after a breach.
    #[serde(default)]
    pub accepted_failures: u64,
    /// When the fleet rollback was ordered, if it was.
    #[serde(default)]
    pub rolled_back_at: Option<i64>,
}

impl CampaignState {
    pub fn draft() -> Self {
        CampaignState {
            status: Status::Draft,
            wave: 0,
            wave_started: 0,
            started: None,
            finished: None,
            halt: None,
            accepted_failures: 0,
            rolled_back_at: None,
        }
    }
}

/// Results of one wave so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Tally {
    /// Devices in the wave.
    pub devices: u64,
    pub succeeded: u64,
    /// Every failure (`failed`, `rolled_back`, `verification_failed`).
    pub failed: u64,
    pub rolled_back: u64,
    pub verification_failed: u64,
}

impl Tally {
    pub fn results(&self) -> u64 {
        self.succeeded + self.failed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreachKind {
    /// More failures than the gate allows.
    FailureRate,
    /// Every device reported and too few succeeded.
    SuccessRate,
}

/// A gate breach: the figures that caused it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breach {
    pub kind: BreachKind,
    pub wave: usize,
    pub failed: u64,
    pub succeeded: u64,
    pub devices: u64,
    pub detail: String,
}

/// What a gate says about a wave.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    /// Not yet: why.
    Pending(String),
    Breach(Breach),
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// Judges wave `wave` (its tally, minus failures an operator accepted) after `observed`
/// seconds. Failures are judged as soon as they arrive, against the wave's size (more than
/// the allowed share of the wave failed: no later success can repair that) and, once there
/// are enough results, against the results; success only once the wave has run long enough.
pub fn judge(
    gate: &Gate,
    wave: usize,
    tally: &Tally,
    accepted_failures: u64,
    observed: i64,
) -> Verdict {
    let failed = tally.failed.saturating_sub(accepted_failures);
    let results = tally.succeeded + failed;
    let min_results = if wave == 0 {
        gate.min_results
    } else {
        gate.min_results.min(tally.devices.max(1))
    };
    let breach = |kind, detail: String| {
        Verdict::Breach(Breach {
            kind,
            wave,
            failed,
            succeeded: tally.succeeded,
            devices: tally.devices,
            detail,
        })
    };
    let of_wave = pct(failed, tally.devices);
    if of_wave > gate.max_failure_pct {
        return breach(
            BreachKind::FailureRate,
            format!(
                "{failed} of the wave's {} devices failed ({of_wave:.1}%), more than the {}% the gate allows",
                tally.devices, gate.max_failure_pct
            ),
        );
    }
    if results >= min_results {
        let of_results = pct(failed, results);
        if of_results > gate.max_failure_pct {
            return breach(
                BreachKind::FailureRate,
                format!(
                    "{failed} of {results} results are failures ({of_results:.1}%), more than the {}% the gate allows",
                    gate.max_failure_pct
                ),
            );
        }
    }
    let success = pct(tally.succeeded, results);
    if results >= tally.devices && tally.devices > 0 && success < gate.min_success_pct {
        return breach(
            BreachKind::SuccessRate,
            format!(
                "every device of the wave reported and {} of {results} succeeded ({success:.1}%), below the {}% the gate needs",
                tally.succeeded, gate.min_success_pct
            ),
        );
    }
    if results < min_results {
        return Verdict::Pending(format!("{results} of {min_results} results needed"));
    }
    if success < gate.min_success_pct {
        return Verdict::Pending(format!(
            "success {success:.1}% is below {}%; waiting for more results",
            gate.min_success_pct
        ));
    }
    if observed < gate.min_observation_secs as i64 {
        return Verdict::Pending(format!(
            "observed for {observed} s of the {} s the gate needs",
            gate.min_observation_secs
        ));
    }
    Verdict::Pass
}

/// What the server should do for a campaign now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing to do yet (why).
    Wait(String),
    /// Start wave `to`: give its devices the release.
    Advance { to: usize },
    /// The gate passed; an operator must approve the next wave.
    AwaitApproval,
    /// The last wave passed.
    Complete,
    /// The gate was breached: pause or abort, and roll the fleet back if asked.
    Halt {
        action: BreachAction,
        rollback: bool,
        breach: Breach,
    },
}

/// The next step of a campaign: only running campaigns (and ones awaiting approval, whose
/// wave can still fail) move on their own.
pub fn decide(
    spec: &CampaignSpec,
    plan: &Plan,
    state: &CampaignState,
    tally: &Tally,
    now: i64,
) -> Decision {
    if !matches!(state.status, Status::Running | Status::AwaitingApproval) {
        return Decision::Wait(format!("the campaign is {}", state.status.as_str()));
    }
    match judge(
        &spec.gate,
        state.wave,
        tally,
        state.accepted_failures,
        now - state.wave_started,
    ) {
        Verdict::Breach(breach) => Decision::Halt {
            action: spec.on_breach,
            rollback: spec.rollback_on_breach,
            breach,
        },
        Verdict::Pending(why) => Decision::Wait(why),
        Verdict::Pass if state.status == Status::AwaitingApproval => {
            Decision::Wait("the gate passed; waiting for an operator to approve".into())
        }
        // The last wave ends when every device in it has a result (stragglers of earlier
        // waves keep their assignment and are counted in the report).
        Verdict::Pass if state.wave + 1 >= plan.waves() && tally.results() < tally.devices => {
            Decision::Wait(format!(
                "the last wave passed its gate; {} of its {} devices have not reported yet",
                tally.devices - tally.results(),
                tally.devices
            ))
        }
        Verdict::Pass if state.wave + 1 >= plan.waves() => Decision::Complete,
        Verdict::Pass if spec.gate.require_approval => Decision::AwaitApproval,
        Verdict::Pass => Decision::Advance { to: state.wave + 1 },
    }
}

/// Applies an automatic decision to the state (the server then does what it implies:
/// assign the next wave, roll back, send alerts).
pub fn apply(state: &mut CampaignState, decision: &Decision, now: i64) {
    match decision {
        Decision::Wait(_) => {}
        Decision::Advance { to } => advance(state, *to, now),
        Decision::AwaitApproval => state.status = Status::AwaitingApproval,
        Decision::Complete => {
            state.status = Status::Completed;
            state.finished = Some(now);
        }
        Decision::Halt {
            action,
            rollback,
            breach,
        } => {
            state.status = match action {
                BreachAction::Pause => Status::Paused,
                BreachAction::Abort => Status::Aborted,
            };
            if *action == BreachAction::Abort {
                state.finished = Some(now);
            }
            if *rollback {
                state.rolled_back_at = Some(now);
            }
            state.halt = Some(Halt {
                at: now,
                by: "gate".into(),
                reason: breach.detail.clone(),
                breach: Some(breach.clone()),
            });
        }
    }
}

fn advance(state: &mut CampaignState, to: usize, now: i64) {
    state.status = Status::Running;
    state.wave = to;
    state.wave_started = now;
    state.accepted_failures = 0;
    state.halt = None;
}

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Start,
    Pause,
    Resume,
    Abort,
    /// Approve the current gate: start the next wave (also past a breach, overriding it).
    Approve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Abort => "abort",
            Action::Approve => "approve",
        }
    }

    /// Every action, in the order a console offers them.
    pub const ALL: [Action; 5] = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::Approve,
        Action::Abort,
    ];

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// The actions [`act`] accepts in `state`, in [`Action::ALL`]'s order: what a console offers.
/// Found by trying each on a copy, so it can never disagree with [`act`]. Whether an action is
/// allowed depends on the state alone (the plan and the tally only shape its effect), so a
/// one-wave plan and an empty tally stand in for them.
pub fn allowed_actions(state: &CampaignState) -> Vec<Action> {
    let Ok(plan) = Plan::from_bounds(vec![1]) else {
        return Vec::new();
    };
    Action::ALL
        .into_iter()
        .filter(|&action| act(&mut state.clone(), action, &plan, &Tally::default(), 0).is_ok())
        .collect()
}

/// What an operator action did, for the server to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Wave 0 (the canary) starts.
    Started,
    Paused,
    Resumed,
    Aborted,
    /// Wave `to` starts.
    Advanced {
        to: usize,
    },
    /// The last wave was approved: done.
    Completed,
}

/// An action that the campaign's status does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a campaign that is {status}: {hint}")]
pub struct ActionError {
    pub action: &'static str,
    pub status: &'static str,
    pub hint: &'static str,
}

/// Applies an operator action. `tally` is the current wave's (resuming after a breach
/// accepts its failures so far).
pub fn act(
    state: &mut CampaignState,
    action: Action,
    plan: &Plan,
    tally: &Tally,
    now: i64,
) -> Result<Effect, ActionError> {
    let refuse = |hint| {
        Err(ActionError {
            action: action.as_str(),
            status: state.status.as_str(),
            hint,
        })
    };
    match (action, state.status) {
        (Action::Start, Status::Draft) => {
            advance(state, 0, now);
            state.started = Some(now);
            Ok(Effect::Started)
        }
        (Action::Start, _) => refuse("it has already started"),
        (Action::Pause, Status::Running | Status::AwaitingApproval) => {
            state.status = Status::Paused;
            state.halt = Some(Halt {
                at: now,
                by: "operator".into(),
                reason: "paused by an operator".into(),
                breach: None,
            });
            Ok(Effect::Paused)
        }
        (Action::Pause, Status::Draft) => refuse("start it first"),
        (Action::Pause, Status::Paused) => refuse("it is already paused"),
        (Action::Resume, Status::Paused) => {
            if state.halt.as_ref().is_some_and(|h| h.breach.is_some()) {
                state.accepted_failures = tally.failed;
            }
            state.status = Status::Running;
            state.halt = None;
            Ok(Effect::Resumed)
        }
        (Action::Resume, Status::Running | Status::AwaitingApproval) => refuse("it is not paused"),
        (Action::Resume, Status::Draft) => refuse("use start"),
        (Action::Abort, s) if !s.is_terminal() => {
            state.status = Status::Aborted;
            state.finished = Some(now);
            state.halt = Some(Halt {
                at: now,
                by: "operator".into(),
                reason: "aborted by an operator".into(),
                breach: None,
            });
            Ok(Effect::Aborted)
        }
        (Action::Approve, Status::AwaitingApproval | Status::Paused) => {
            if state.rolled_back_at.is_some() {
                return refuse("the fleet was rolled back after a breach; create a new campaign");
            }
            if state.wave + 1 >= plan.waves() {
                state.status = Status::Completed;
                state.finished = Some(now);
                state.halt = None;
                Ok(Effect::Completed)
            } else {
                let to = state.wave + 1;
                advance(state, to, now);
                Ok(Effect::Advanced { to })
            }
        }
        (Action::Approve, Status::Running) => {
            refuse("its gate has not passed yet (pause it first to override the gate)")
        }
        (Action::Approve, Status::Draft) => refuse("start it first"),
        (_, _) => refuse("it has ended"),
    }
}
