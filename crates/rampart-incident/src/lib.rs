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
//! - `lifecycle`: forward-only moves with each state's time, the acknowledgement, and the
//!   timings (to detect, acknowledge, contain, eradicate, recover, close).
//! - `playbook`: per detector and severity, the actions run at once and those held for a
//!   role's approval (built-in defaults, TOML/JSON configuration, validation).
//! - `device_signature`: signatures by a device's own (TLS) key and their verification with its
//!   SubjectPublicKeyInfo, for bundles and log anchors.
//! - `evidence`: the forensic evidence bundle (`rampart-evidence/1`): its manifest, canonical
//!   bytes, parsing with every limit and item hash checked, the signature and the
//!   TPM quote's qualifying data.
//! - `agent_log`: the agent's hash-chained log, its device-key anchors and their verification.
//! - `custody`: chain of custody for evidence: the checks of an uploaded bundle, and the
//!   incident export (`rampart-incident-export/1`) anyone verifies offline.
//! - `alert`: what a high-priority alert says (severity, dedupe key, the incident's devices,
//!   release, evidence hashes and timeline tail, bounded) and the dedupe window's rule.
//! - `instruction`: the signed quarantine instruction: the bytes the director key signs and the
//!   device's check against its trusted director root.

//! - `instruction`: the signed quarantine instruction: the bytes the director key signs and the
//!   device's check against its trusted director root.

#![forbid(unsafe_code)]

pub mod agent_log;
pub mod alert;
pub mod custody;
pub mod detect;
pub mod device_signature;
pub mod evidence;
pub mod finding;
pub mod instruction;
pub mod lifecycle;
pub mod model;
pub mod playbook;
