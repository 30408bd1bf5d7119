//! The engines: work the server does on its own clock or on events, with no HTTP (no axum,
//! no hyper, no answer types): the campaign engine, the webhook dispatcher, the batched
//! last-seen writer, metadata renewal, audit anchoring, and the attestation staleness sweep.

pub mod attestation;
pub(crate) mod attestation_verify;
pub mod audit_anchor;
pub mod campaigns;
pub mod evidence;
pub mod last_seen;
pub mod renewal;
pub(crate) mod report_sinks;
pub mod webhooks;
