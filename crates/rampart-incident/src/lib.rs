//! The pure incident-response core (issue 16): what an incident is and how it moves
//! (`model`), with no I/O and no clock: every time is an argument. The server's incident engine,
//! the agent's evidence collection and the CLI's offline verification are its shells.
//!
//! Modules, one concern each:
//! - `model`: incident states and their order, severities, detectors, causes (the dedupe key:
//!   one open incident per cause, devices join it), playbook actions and the roles that may
//!   approve them.
//! - `device_signature`: signatures by a device's own (TLS) key and their verification with its
//!   SubjectPublicKeyInfo, for bundles and log anchors.
//! - `evidence`: the forensic evidence bundle (`rampart-evidence/1`): its manifest, canonical
//!   bytes, parsing with every limit and item hash checked, the signature and the
//!   TPM quote's qualifying data.
//! - `agent_log`: the agent's hash-chained log, its device-key anchors and their verification.
//! - `custody`: chain of custody for evidence: the checks of an uploaded bundle, and the
//!   incident export (`rampart-incident-export/1`) anyone verifies offline.

#![forbid(unsafe_code)]

pub mod agent_log;
pub mod custody;
pub mod device_signature;
pub mod evidence;
pub mod model;
