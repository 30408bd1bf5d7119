//! Pure rollout logic: what a campaign is ([`spec`]), how it widens ([`plan`]), when it moves
//! on, halts or rolls back ([`decide`]), when devices may be given the release ([`window`],
//! [`spec::Policy`]), what it reports ([`report`]) and the indicators computed from stored
//! events ([`indicators`]: success and rollback rates, time to a share of a campaign, time to
//! detect and remediate).
//!
//! No I/O, no clock, no async: the server passes the time and the results in, and carries out
//! the decisions (assigning waves, rolling back, alerting) in its database. That keeps every
//! rollout rule testable on a virtual clock, and the same rules for the native device API and
//! for any other protocol whose reports count toward the gates.
#![forbid(unsafe_code)]

pub mod decide;
pub mod indicators;
pub mod plan;
pub mod report;
pub mod spec;
pub mod window;

pub use decide::{
    Action, ActionError, Breach, BreachKind, CampaignState, Decision, Effect, Halt, Status, Tally,
    Verdict, act, allowed_actions, apply, decide, judge,
};
pub use plan::{Plan, order_devices, order_key};
pub use report::{DeviceRecord, Figures, Outcome, figures, to_csv};
pub use spec::{
    BreachAction, CampaignSpec, Condition, DeviceView, Gate, Ineligible, PhasePlan, Policy,
    Selection, Size, TargetFilter, UpdateType,
};

/// A campaign that cannot be run as asked; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

impl SpecError {
    pub fn new(message: impl Into<String>) -> SpecError {
        SpecError(message.into())
    }
}

#[cfg(test)]
mod tests;
