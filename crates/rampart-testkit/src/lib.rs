//! What Rampart's tests and benchmarks share, in one unpublished crate: the workspace's binaries
//! built for any package's tests ([`binaries`]), the `rampart` CLI driven as a process
//! ([`cli`]), and the one (mutual-)TLS HTTP client ([`http`]).
#![forbid(unsafe_code)]

pub mod binaries;
pub mod cli;
pub mod http;
