//! Rampart's system tests, in `tests/`: the real binaries together (the update server, the
//! device agent, the transparency log and its witness, Debian's swupdate, an S3-compatible
//! server, schemathesis), killed, restarted and moved through simulated days. They drive the
//! binaries through `rampart-testkit`; this library is empty.
#![forbid(unsafe_code)]
