//! `rampart witness serve`: a witness that cosigns consistent log checkpoints.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use rampart_log::note::Verifier;
use rampart_tlog::witness::{Witness, WitnessConfig};

use super::log::serve_forever;
use crate::shared::signing::read_note_key;

#[derive(Subcommand)]
pub enum WitnessCommand {
    /// Run a C2SP tlog-witness (POST /add-checkpoint).
    Serve {
        /// The witness's cosigning key file (from `rampart log keygen --witness`).
        #[arg(long)]
        key: PathBuf,
        /// Directory holding the last checkpoint seen per log.
        #[arg(long)]
        state: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: String,
        /// Verifier key of a log to witness (repeat).
        #[arg(long = "log", required = true)]
        logs: Vec<String>,
    },
}

pub fn run(cmd: WitnessCommand) -> anyhow::Result<()> {
    let WitnessCommand::Serve {
        key,
        state,
        listen,
        logs,
    } = cmd;
    let signer = read_note_key(&key)?;
    let logs = logs
        .iter()
        .map(|l| Verifier::parse(l).with_context(|| format!("--log {l:?} is not a verifier key")))
        .collect::<Result<Vec<_>, _>>()?;
    let witness = Arc::new(Witness::new(WitnessConfig {
        signer,
        state_dir: state,
        logs,
    })?);
    println!("witness {}", witness.verifier().to_vkey_string());
    serve_forever(witness.router(), &listen)
}
