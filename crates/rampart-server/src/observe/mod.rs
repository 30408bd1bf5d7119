//! Observing the server: structured logs, Prometheus metrics (and the labels they count by),
//! and the tamper-evident audit log writer. Depends on no other room.

pub mod audit;
pub mod labels;
pub mod log;
pub mod metrics;
