//! The hawkBit Direct Device Integration (DDI) API v1, device side, as pure logic: the JSON
//! documents a server sends and receives, how an action's type, force time and maintenance
//! window become the `download` / `update` modes a client obeys, what each feedback does to an
//! action (and which native report it counts as), the cancellation handshake, and `configData`'s
//! merge / replace / remove rules. No I/O and no clock: the server shell passes `now`.
//!
//! Wire shapes and status rules follow Eclipse hawkBit's DDI resources, with the deviations
//! Rampart makes on purpose documented where they are decided (see `docs/ddi.md`).

#![forbid(unsafe_code)]

pub mod action;
pub mod auth;
pub mod config_data;
pub mod wire;

#[cfg(test)]
mod tests;

pub use action::{
    ActionState, ActionType, CancelEffect, DeploymentModes, FeedbackEffect, FeedbackError,
    WindowState, cancel_feedback, deployment_feedback, deployment_modes,
};
pub use auth::{Credential, parse_authorization};
pub use config_data::{ConfigDataError, apply_config_data};
pub use wire::{Execution, Feedback, Finished, polling_sleep};
