//! The pure incident-response core (issue 16): what an incident is and how it moves
//! (`model`), with no I/O and no clock: every time is an argument. The server's incident engine,
//! the agent's evidence collection and the CLI's offline verification are its shells.
//!
//! Modules, one concern each:
//! - `model`: incident states and their order, severities, detectors, causes (the dedupe key:
//!   one open incident per cause, devices join it), playbook actions and the roles that may
//!   approve them.
//! - `detect`: one rule per detector over typed signals read from stored state, with its
//!   thresholds (`[detectors]` of the server's incident configuration), the failing-closed
//!   findings (a detector that cannot evaluate, a stalled engine) and their deduplication.
//! - `finding`: what a detector found (cause, severity, device, release, first signal), the
//!   input the server's incident store records.
//! - `playbook`: per detector and severity, the actions run at once and those held for a
//!   role's approval (built-in defaults, TOML/JSON configuration, validation).

#![forbid(unsafe_code)]

pub mod detect;
pub mod finding;
pub mod model;
pub mod playbook;
