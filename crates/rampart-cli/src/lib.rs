//! The `rampart` operator CLI: the command line and its dispatch in [`cli`], one module per
//! command under [`commands`], the helpers several commands share under [`shared`]. The binary
//! (`main.rs`) only parses the command line and runs it; `rampart-bench` reuses the demo's
//! set-up from here, and the tests walk [`cli::Cli`]'s commands.
#![forbid(unsafe_code)]

pub mod cli;
pub mod commands;
pub mod shared;
