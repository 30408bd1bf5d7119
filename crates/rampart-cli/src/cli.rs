//! The `rampart` command line: every command and its global options, parsed with clap, and the
//! dispatch to each command's module in [`crate::commands`]. `rampart completions` and
//! `rampart man` are generated from this same definition ([`Cli::command`]).

use clap::{CommandFactory as _, Parser, Subcommand, ValueEnum};

use crate::commands::{
    assignment, attest, audit, ca, campaign, completions, ddi, demo, device, director, fleet,
    incident, key, log, man, release, repo, reports, risk, server, sim, status, token, witness,
};

#[derive(Parser)]
#[command(
    name = "rampart",
    version,
    about = "Rampart: signed firmware updates for device fleets (keys, TUF repository, releases)"
)]
pub struct Cli {
    /// How much the server and the CLI log (JSON lines on standard error): error, warn, info,
    /// debug (also each request) or trace.
    #[arg(long, global = true, env = "RAMPART_LOG", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn level(self) -> rampart_server::log::Level {
        use rampart_server::log::Level;
        match self {
            LogLevel::Error => Level::Error,
            LogLevel::Warn => Level::Warn,
            LogLevel::Info => Level::Info,
            LogLevel::Debug => Level::Debug,
            LogLevel::Trace => Level::Trace,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Devices: issue certificates; list, show, revoke and reinstate them, quarantine and
    /// re-image them (through the API).
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Assignments: tell devices which release to install (create, list, show, cancel).
    #[command(subcommand)]
    Assignment(assignment::AssignmentCommand),
    /// Devices' reports (status, progress, results), newest first.
    Reports(reports::ReportsArgs),
    /// The fleet: how many devices run each firmware version.
    #[command(subcommand)]
    Fleet(fleet::FleetCommand),
    /// The server's health: reachable, version, database, engines, metadata expiry.
    Status(status::StatusArgs),
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
    /// Management API tokens (admin, operator, viewer, auditor, monitor): through the API with
    /// an admin token, or in the server's database (--db, for the first admin token).
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
    /// Write man pages: one per command and subcommand (to --dir, else rampart.1 to stdout).
    Man(man::ManArgs),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    rampart_server::log::set_level(cli.log_level.level());
    match cli.command {
        Command::Key(c) => key::run(c),
        Command::Repo(c) => repo::run(c),
        Command::Release(c) => release::run(c),
        Command::Log(c) => log::run(c),
        Command::Witness(c) => witness::run(c),
        Command::Ca(c) => ca::run(c),
        Command::Device(c) => device::run(c),
        Command::Assignment(c) => assignment::run(c),
        Command::Reports(a) => reports::run(&a),
        Command::Fleet(c) => fleet::run(c),
        Command::Status(a) => status::run(&a),
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
        Command::Completions(a) => completions::completions(&a, Cli::command()),
        Command::Man(a) => man::man(&a, Cli::command()),
    }
}
