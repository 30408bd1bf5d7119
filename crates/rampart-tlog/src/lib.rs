//! Transparency-log I/O shells around the pure [`rampart_log`] core:
//!
//! * [`tiles`]: reading a tiled log (local directory or HTTP) and computing nodes and proofs.
//! * [`store`]: the durable, crash-safe log store (write-ahead file, tiles, entry bundles).
//! * [`service`]: the log service: batching sequencer, witness cosigning, HTTP API.
//! * [`witness`]: a C2SP tlog-witness server.
#![forbid(unsafe_code)]

pub mod client;
pub mod monitor;
pub mod service;
pub mod store;
pub mod tiles;
pub mod witness;
