//! `rampart-bench`: the measurements recorded in docs/benchmarks.md, outside the operator
//! binary. Each prints the median and spread of repeated rounds and, where a peer exists, the
//! peer measured in the same run. The server and campaign benchmarks run the `rampart` binary
//! built beside this one (`cargo build --release -p rampart-cli -p rampart-bench`).
#![forbid(unsafe_code)]

mod attest;
mod attest_fleet;
mod attest_roundtrip;
mod campaign;
mod console_fleet;
mod gameday;
mod log;
mod report;
mod risk;
mod server;
mod tuf_client;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rampart-bench",
    version,
    about = "Rampart benchmarks (the figures of docs/benchmarks.md)"
)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Signature verifications per second for each scheme.
    Verify {
        /// Measurement rounds (each about 0.3 s per scheme).
        #[arg(long, default_value_t = 11)]
        rounds: usize,
        /// The pyca/cryptography peer script (what python-tuf verifies with).
        #[arg(long, default_value = "scripts/bench_verify_peer.py")]
        peer_script: PathBuf,
        #[arg(long)]
        no_peer: bool,
    },
    /// TPM quote verifications per second on one core (the server's whole check), and ring's
    /// bare ECDSA P-256 verification in the same run.
    AttestQuotes {
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// TUF client refresh + one target download from a 10,000-target repository with one
    /// delegation, served over loopback HTTP; python-tuf ngclient measured in the same run.
    TufClient {
        #[arg(long, default_value_t = 10_000)]
        targets: usize,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
        /// Size of the downloaded target in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        target_size: usize,
        /// The python-tuf driver script; skipped only with --no-peer.
        #[arg(long, default_value = "scripts/bench_ngclient.py")]
        peer_script: PathBuf,
        #[arg(long)]
        no_peer: bool,
    },
    /// Sustained durable appends per second to the transparency log (acknowledged only after
    /// fsync, integrated into tiles, checkpoints signed and published), and bytes stored per entry.
    LogAppend(log::LogAppendArgs),
    /// Device-side proof verification time in a tree of 2^20 leaves: the Merkle inclusion proof
    /// alone, and the whole offline check (log signature, witness quorum, release signature).
    LogProof {
        #[arg(long, default_value_t = 11)]
        rounds: usize,
    },
    /// The update server under polling load: `rampart server` as a child process with N
    /// registered devices, polled over mutual-TLS keep-alive connections from this process;
    /// polls/s, p50/p99 latency, server peak RSS, database bytes per device.
    Server(server::ServerBenchArgs),
    /// A simulated rollout at fleet scale: the real server and the fleet simulator, a good
    /// release in waves (time per wave), a bad one halted at its canary (breach-to-halt time),
    /// the server's CPU and peak RSS.
    Campaign(campaign::CampaignBenchArgs),
    /// A fleet update with remote attestation required vs without, same run (issue 15).
    AttestFleet(attest_fleet::AttestFleetArgs),
    /// One device's attestation round trip with swtpm and the real server (`tpm` feature).
    AttestRoundtrip(attest_roundtrip::AttestRoundtripArgs),
    /// Game day (issue 16): devices compromised among a simulated fleet on the real server with
    /// attestation and incident playbooks; time to detect, contain and recover (p50/p95),
    /// devices recovered, healthy devices quarantined.
    Gameday(gameday::GameDayArgs),
    /// Supply-chain risk (issue 17): every real advisory re-matched against a fleet's releases,
    /// one new advisory to affected devices, memory (the pure core's figures).
    Risk(risk::RiskArgs),
    /// The web console's fleet page (issue 18): its answer time per kind of filter, p50/p95,
    /// with N devices on SQLite or PostgreSQL.
    ConsoleFleet(console_fleet::ConsoleFleetArgs),
}

fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Verify {
            rounds,
            peer_script,
            no_peer,
        } => verify::bench_verify(rounds, (!no_peer).then_some(peer_script)),
        BenchCommand::AttestQuotes { rounds } => attest::bench_attest_quotes(rounds),
        BenchCommand::LogAppend(a) => log::bench_log_append(a),
        BenchCommand::LogProof { rounds } => log::bench_log_proof(rounds),
        BenchCommand::Server(a) => server::run(a),
        BenchCommand::Campaign(a) => campaign::run(a),
        BenchCommand::AttestFleet(a) => attest_fleet::run(a),
        BenchCommand::AttestRoundtrip(a) => attest_roundtrip::run(a),
        BenchCommand::Gameday(a) => gameday::run(a),
        BenchCommand::Risk(a) => risk::run(a),
        BenchCommand::ConsoleFleet(a) => console_fleet::run(a),
        BenchCommand::TufClient {
            targets,
            iterations,
            target_size,
            peer_script,
            no_peer,
        } => tuf_client::bench_tuf_client(
            targets,
            iterations,
            target_size,
            (!no_peer).then_some(peer_script),
        ),
    }
}

fn main() -> std::process::ExitCode {
    rampart_agent::cli_output::exit_quietly_on_broken_pipe();
    match run(Cli::parse().command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            rampart_agent::cli_output::print_error(e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}
