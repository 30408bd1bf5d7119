//! What Rampart's tests and benchmarks share, in one unpublished crate: the workspace's binaries
//! built for any package's tests ([`binaries`]), the `rampart` CLI driven as a process
//! ([`cli`]), the one (mutual-)TLS HTTP client ([`http`]), and the fixtures: fresh databases on
//! both backends ([`databases`]), the server's PKI as files ([`pki`]), an S3-compatible server
//! ([`moto`]) a SoftHSM2 token ([`softhsm`]) and a software TPM
//! ([`swtpm`]).
#![forbid(unsafe_code)]

pub mod binaries;
pub mod cli;
pub mod databases;
pub mod http;
pub mod images;
pub mod moto;
pub mod pki;
pub mod softhsm;
pub mod swtpm;
