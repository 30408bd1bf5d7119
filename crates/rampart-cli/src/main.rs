//! `rampart`: the operator CLI. Parses the command line and hands each command to its module in
//! `rampart_cli::commands`.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use rampart_cli::commands::{
    attest, audit, ca, campaign, ddi, demo, device, director, incident, key, log, release, repo,
    risk, server, sim, token, witness,
};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Rampart: signed firmware updates for device fleets (keys, TUF repository, releases)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate, list and export signing keys (encrypted files or PKCS#11 tokens).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Create, publish, rotate, delegate, verify and serve a TUF image repository.
    #[command(subcommand)]
    Repo(repo::RepoCommand),
    /// Add firmware releases to a repository.
    #[command(subcommand)]
    Release(release::ReleaseCommand),
    /// Run and follow the transparency log that records every release.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// Run a witness that cosigns consistent log checkpoints.
    #[command(subcommand)]
    Witness(witness::WitnessCommand),
    /// Manufacturer CA: create it, issue the server certificate, revoke certificates.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Devices: issue device keys and certificates.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Remote attestation: check a TPM quote offline (the inputs of tpm2_checkquote).
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// Verify and export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Run the update server: device API over mutual TLS, management API, inventory, metrics.
    // Boxed: the server's many flags would make every command this large.
    Server(Box<server::ServerArgs>),
    /// The director's root of trust (per-device targets metadata, Uptane-style).
    #[command(subcommand)]
    Director(director::DirectorCommand),
    /// Campaigns: phased rollouts with health gates (create, start/pause/resume/abort/approve, status, report).
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// Incidents: list, show, open, acknowledge, contain, re-image, collect evidence, close; approve held actions; playbooks.
    #[command(subcommand)]
    Incident(incident::IncidentCommand),
    /// hawkBit DDI: tenants and device tokens for SWUpdate, RAUC and other hawkBit clients.
    #[command(subcommand)]
    Ddi(ddi::DdiCommand),
    /// Management API tokens (admin, operator, viewer, auditor).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Supply-chain risk: match an SBOM against OSV advisories (`sbom-check`, offline); import
    /// advisories, the fleet's posture and remediation campaigns (through the API).
    #[command(subcommand)]
    Risk(risk::RiskCommand),
    /// Simulate a fleet: virtual devices running the agent's verification and A/B boot flow against a server, over mutual TLS, with injected faults.
    Sim(Box<sim::SimArgs>),
    /// The main job: keys, repository, transparency log, server, a simulated fleet, a good release rolled out in waves and a bad one halted and rolled back.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    rampart_agent::cli_output::exit_quietly_on_broken_pipe();
    let result = match Cli::parse().command {
        Command::Key(c) => key::run(c),
        Command::Repo(c) => repo::run(c),
        Command::Release(c) => release::run(c),
        Command::Log(c) => log::run(c),
        Command::Witness(c) => witness::run(c),
        Command::Ca(c) => ca::run(c),
        Command::Device(c) => device::run(c),
        Command::Attest(c) => attest::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Server(a) => server::run(*a),
        Command::Director(c) => director::run(c),
        Command::Campaign(c) => campaign::run(c),
        Command::Incident(c) => incident::run(c),
        Command::Ddi(c) => ddi::run(c),
        Command::Token(c) => token::run(c),
        Command::Risk(c) => risk::run(c),
        Command::Sim(a) => sim::run(*a),
        Command::Demo(a) => demo::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            rampart_agent::cli_output::print_error(e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}
