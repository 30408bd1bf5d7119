//! The engines: work the server does on its own clock or on events, with no HTTP (no axum,
//! no hyper, no answer types): the campaign engine, the webhook dispatcher, the batched
//! last-seen writer, metadata renewal, audit anchoring, the attestation staleness sweep, the
//! incident store, the incident alerts' executor and sinks, the quarantine and re-image
//! executors of the incident-action outbox, the incident detectors (`detectors`) and every
//! engine's heartbeat (`heartbeat`).

pub mod alerts;
pub mod attestation;
pub(crate) mod attestation_verify;
pub mod audit_anchor;
pub mod campaigns;
pub(crate) mod detectors;
pub mod evidence;
pub(crate) mod heartbeat;
pub mod incidents;
pub mod last_seen;
pub mod quarantine;
pub mod reimage;
pub mod renewal;
pub(crate) mod report_sinks;
pub mod risk;
pub mod risk_cpe;
pub mod risk_slots;
pub mod risk_vex;
pub mod risk_watch;
pub mod webhooks;
