//! The `rampart` operator CLI: one module per command under [`commands`], the helpers several
//! commands share under [`shared`]. The binary (`main.rs`) only parses the command line and
//! dispatches; `rampart-bench` reuses the demo's set-up from here.
#![forbid(unsafe_code)]

pub mod commands;
pub mod shared;
