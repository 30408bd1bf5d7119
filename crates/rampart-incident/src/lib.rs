//! The pure incident-response core (issue 16): what an incident is and how it moves
//! (`model`), with no I/O and no clock: every time is an argument. The server's incident engine,
//! the agent's evidence collection and the CLI's offline verification are its shells.
//!
//! Modules, one concern each:
//! - `model`: incident states and their order, severities, detectors, causes (the dedupe key:
//!   one open incident per cause, devices join it), playbook actions and the roles that may
//!   approve them.
//! - `instruction`: the signed quarantine instruction: the bytes the director key signs and the
//!   device's check against its trusted director root.

#![forbid(unsafe_code)]

pub mod instruction;
pub mod model;
