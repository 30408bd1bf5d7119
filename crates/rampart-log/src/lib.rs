//! Rampart's transparency-log core. Pure: no I/O, no clock (timestamps are passed in), no async.
//!
//! * [`merkle`]: RFC 6962 / RFC 9162 hashing, inclusion and consistency proofs (produce and
//!   verify), and the compact range used to append.
//! * [`tiles`]: C2SP tlog-tiles arithmetic and paths.
//! * [`note`]: C2SP signed notes (Ed25519; other key types parsed and reported, never trusted).
//! * [`checkpoint`]: C2SP tlog-checkpoint bodies.
//! * [`cosignature`]: C2SP tlog-cosignature/v1.
//! * [`proof`]: C2SP tlog-proof@v1 (offline inclusion proofs shipped with a release).
//! * [`policy`]: witness quorum policy (k of n) and the device-side verification of a proof.
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod cosignature;
pub mod merkle;
pub mod note;
pub mod policy;
pub mod proof;
pub mod statement;
pub mod tiles;
