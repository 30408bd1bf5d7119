//! One module per `rampart` command. Each defines the command's arguments (`XCommand` for a
//! command with subcommands, `XArgs` for one without) and `run`, which carries it out.

pub mod assignment;
pub mod attest;
pub mod attest_fleet;
pub mod audit;
pub mod ca;
pub mod campaign;
pub mod completions;
pub mod ddi;
pub mod demo;
pub mod device;
pub mod device_inventory;
pub mod director;
pub mod fleet;
pub mod incident;
pub mod incident_export;
pub mod key;
pub mod log;
pub mod man;
pub mod release;
pub mod release_provenance;
pub mod repo;
pub mod reports;
pub mod risk;
pub mod risk_exposure;
pub mod risk_feed;
pub mod risk_fleet;
pub mod risk_nvd;
pub mod risk_vex;
pub mod server;
pub mod sim;
pub mod status;
pub mod token;
pub mod witness;
