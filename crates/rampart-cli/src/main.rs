//! `rampart`: the operator CLI (keys, image repository, releases, benchmarks, demo).
#![forbid(unsafe_code)]

mod api_client;
mod artifacts;
mod bench;
mod bench_campaign;
mod bench_server;
mod campaign;
mod ddi;
mod demo;
mod demo_server;
mod director;
mod fleet;
mod fleet_demo;
mod serve;
mod server;
mod sim;
mod tlog;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rampart_core::Scheme;
use rampart_core::metadata::RoleType;
use rampart_keys::file::{FileSigner, KdfParams, passphrase_from_env_or_prompt};
use rampart_keys::pkcs11::{ModuleConfig, Pkcs11Signer, TokenKeyRef};
use rampart_keys::{SignError, Signer, open_signer};
use rampart_repo::{
    ExpiryDays, InitOptions, Progress, ReleaseRequest, Repository, RoleSigners, RootChange,
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
    Key(KeyCommand),
    /// Create, publish, rotate, delegate, verify and serve a TUF image repository.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Add firmware releases to a repository.
    #[command(subcommand)]
    Release(ReleaseCommand),
    /// Run and follow the transparency log that records every release.
    #[command(subcommand)]
    Log(tlog::LogCommand),
    /// Run a witness that cosigns consistent log checkpoints.
    #[command(subcommand)]
    Witness(tlog::WitnessCommand),
    /// Manufacturer CA: create it, issue the server certificate, revoke certificates.
    #[command(subcommand)]
    Ca(fleet::CaCommand),
    /// Devices: issue device keys and certificates.
    #[command(subcommand)]
    Device(fleet::DeviceCommand),
    /// Verify and export the tamper-evident audit log.
    #[command(subcommand)]
    Audit(fleet::AuditCommand),
    /// Run the update server: device API over mutual TLS, management API, inventory, metrics.
    // Boxed: the server's many flags would make every command this large.
    Server(Box<server::ServerArgs>),
    /// The director's root of trust (per-device targets metadata, Uptane-style).
    #[command(subcommand)]
    Director(director::DirectorCommand),
    /// Campaigns: phased rollouts with health gates (create, start/pause/resume/abort/approve, status, report).
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// hawkBit DDI: tenants and device tokens for SWUpdate, RAUC and other hawkBit clients.
    #[command(subcommand)]
    Ddi(ddi::DdiCommand),
    /// Management API tokens (admin, operator, viewer, auditor).
    #[command(subcommand)]
    Token(server::TokenCommand),
    /// Measure performance (figures for docs/benchmarks.md).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Simulate a fleet: virtual devices running the agent's verification and A/B boot flow against a server, over mutual TLS, with injected faults.
    Sim(Box<sim::SimArgs>),
    /// The main job: keys, repository, transparency log, server, a simulated fleet, a good release rolled out in waves and a bad one halted and rolled back.
    Demo(fleet_demo::DemoArgs),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Generate a key: an encrypted file (--out) or a non-extractable key on a PKCS#11 token (--pkcs11).
    Generate {
        /// ed25519, ecdsa-sha2-nistp256 (alias p256) or ml-dsa-65.
        #[arg(long, default_value = "ed25519")]
        scheme: String,
        /// Write an encrypted key file here (passphrase from RAMPART_KEY_PASSPHRASE or a prompt).
        #[arg(long, conflicts_with = "pkcs11")]
        out: Option<PathBuf>,
        /// Generate on a token: "token=LABEL;object=LABEL" (module RAMPART_PKCS11_MODULE, PIN RAMPART_PKCS11_PIN).
        #[arg(long)]
        pkcs11: Option<String>,
    },
    /// List keys: the key files in directories, and/or the keys on a PKCS#11 token.
    List {
        /// Directories (or files) to scan for key files.
        paths: Vec<PathBuf>,
        /// Also list the keys on the token with this label.
        #[arg(long)]
        pkcs11_token: Option<String>,
    },
    /// Print the TUF public key (with its key id) of a key reference.
    ExportPublic {
        /// file:PATH, a key file path, or pkcs11:token=..;object=..
        key: String,
    },
}

#[derive(Args)]
struct RoleKeyArgs {
    /// Root keys (repeat); file:PATH or pkcs11:token=..;object=..
    #[arg(long = "root-key", required = true)]
    root: Vec<String>,
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    /// Targets keys (repeat).
    #[arg(long = "targets-key", required = true)]
    targets: Vec<String>,
    #[arg(long, default_value_t = 1)]
    targets_threshold: u32,
    /// Snapshot keys (online; repeat).
    #[arg(long = "snapshot-key", required = true)]
    snapshot: Vec<String>,
    /// Timestamp keys (online; repeat).
    #[arg(long = "timestamp-key", required = true)]
    timestamp: Vec<String>,
}

#[derive(Subcommand)]
enum RepoCommand {
    /// Create a repository: version 1 of root, targets, snapshot and timestamp.
    Init {
        dir: PathBuf,
        #[command(flatten)]
        keys: RoleKeyArgs,
        /// Days root metadata stays valid.
        #[arg(long, default_value_t = 365)]
        root_expiry_days: u32,
        #[arg(long, default_value_t = 90)]
        targets_expiry_days: u32,
        #[arg(long, default_value_t = 7)]
        snapshot_expiry_days: u32,
        #[arg(long, default_value_t = 1)]
        timestamp_expiry_days: u32,
    },
    /// Re-sign snapshot and timestamp over the latest targets metadata (also renews their expiry).
    Publish {
        dir: PathBuf,
        /// Also re-sign targets and every delegated role with a fresh expiry (needs their keys).
        #[arg(long)]
        renew_targets: bool,
    },
    /// Write root N+1 with key changes (signed by old and new root keys); revokes removed keys.
    RotateRoot {
        dir: PathBuf,
        /// Role whose keys change: root, targets, snapshot or timestamp.
        #[arg(long)]
        role: String,
        #[arg(long = "add-key")]
        add: Vec<String>,
        /// Key id to remove (revoke).
        #[arg(long = "remove-key")]
        remove: Vec<String>,
        #[arg(long)]
        threshold: Option<u32>,
    },
    /// Delegate target paths from the top-level targets role to a new role.
    Delegate {
        dir: PathBuf,
        #[arg(long)]
        name: String,
        /// Path patterns (repeat), e.g. 'board-a/*'. '*' does not cross '/'.
        #[arg(long = "path", required = true)]
        paths: Vec<String>,
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
        #[arg(long, default_value_t = 1)]
        threshold: u32,
        #[arg(long)]
        terminating: bool,
    },
    /// Verify the repository as a client would, including every target's hash.
    Verify {
        dir: PathBuf,
        /// Trusted root to start from (default: metadata/1.root.json).
        #[arg(long)]
        trusted_root: Option<PathBuf>,
    },
    /// Record every future release in a transparency log (or stop, with --off).
    SetLog {
        dir: PathBuf,
        /// The log's base URL (`rampart log serve`).
        #[arg(long, required_unless_present = "off")]
        log_url: Option<String>,
        /// Witness policy file devices will check proofs against.
        #[arg(long, required_unless_present = "off")]
        policy: Option<PathBuf>,
        /// Note key that signs release statements (`rampart log keygen`).
        #[arg(long, required_unless_present = "off")]
        release_key: Option<PathBuf>,
        #[arg(long)]
        off: bool,
    },
    /// Serve the repository read-only over plain HTTP (metadata/ and targets/), for tests and demos.
    Serve {
        dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
    /// Upload the repository's targets/ to S3-compatible object storage for
    /// `rampart server --artifacts` (objects already there with the same size are skipped).
    UploadArtifacts {
        /// The image repository directory.
        #[arg(long)]
        repo: PathBuf,
        /// s3://BUCKET or s3://BUCKET/PREFIX; files become PREFIX/targets/<path>. Endpoint,
        /// region and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID,
        /// AWS_SECRET_ACCESS_KEY (AWS_ALLOW_HTTP=true for a plain-HTTP endpoint).
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Add a firmware image as a signed target, then publish (unless --no-publish).
    Add {
        image: PathBuf,
        #[arg(long)]
        repo: PathBuf,
        /// Hardware compatibility id (repeat).
        #[arg(long = "hw", required = true)]
        hardware: Vec<String>,
        /// Semantic version, e.g. 1.4.0.
        #[arg(long)]
        version: String,
        /// Anti-rollback counter; never lower than an earlier release for the same hardware.
        #[arg(long)]
        security_version: u64,
        /// CycloneDX JSON SBOM to attach (validated).
        #[arg(long)]
        sbom: Option<PathBuf>,
        /// in-toto provenance statement to attach (its subject must name the image).
        #[arg(long)]
        provenance: Option<PathBuf>,
        /// Target path (default VERSION/FILE_NAME).
        #[arg(long)]
        name: Option<String>,
        /// Delegated role to list the release in (default: top-level targets).
        #[arg(long)]
        role: Option<String>,
        /// Sign the targets role but do not publish snapshot and timestamp yet.
        #[arg(long)]
        no_publish: bool,
    },
}

/// Shows long operations on stderr with a progress bar.
#[derive(Default)]
pub struct BarProgress(std::sync::Mutex<Option<ProgressBar>>);

impl Progress for BarProgress {
    fn start(&self, what: &str, total: u64) {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        *self.0.lock().expect("progress lock") = Some(bar);
    }
    fn advance(&self, n: u64) {
        if let Some(b) = &*self.0.lock().expect("progress lock") {
            b.inc(n);
        }
    }
    fn finish(&self) {
        if let Some(b) = self.0.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }
}

pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Makes relative key-file references absolute, so rampart-repo.json works from any directory.
fn absolute_ref(r: &str) -> anyhow::Result<String> {
    if r.starts_with("pkcs11:") {
        return Ok(r.to_string());
    }
    let path = Path::new(r.strip_prefix("file:").unwrap_or(r));
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("key file {}", path.display()))?;
    Ok(format!("file:{}", abs.display()))
}

fn absolute_refs(refs: &[String]) -> anyhow::Result<Vec<String>> {
    refs.iter().map(|r| absolute_ref(r)).collect()
}

fn opener() -> impl Fn(&str) -> Result<Box<dyn Signer>, SignError> {
    |r: &str| open_signer(r)
}

fn parse_role(s: &str) -> anyhow::Result<RoleType> {
    Ok(match s {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        "timestamp" => RoleType::Timestamp,
        other => bail!("unknown role {other:?}: use root, targets, snapshot or timestamp"),
    })
}

fn key_command(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate {
            scheme,
            out,
            pkcs11,
        } => {
            let scheme = Scheme::parse(&scheme)?;
            let signer: Box<dyn Signer> = match (out, pkcs11) {
                (Some(out), None) => {
                    if out.exists() {
                        bail!("{} exists; refusing to overwrite a key file", out.display());
                    }
                    let pass = passphrase_from_env_or_prompt("Passphrase for the new key: ")?;
                    if pass.len() < 8 {
                        bail!("passphrase must be at least 8 characters");
                    }
                    let (signer, bytes) =
                        FileSigner::generate(scheme, &pass, KdfParams::default())?;
                    rampart_tuf_client::store::write_private(&out, &bytes)
                        .with_context(|| format!("writing {}", out.display()))?;
                    eprintln!("wrote {}", out.display());
                    Box::new(signer)
                }
                (None, Some(reference)) => {
                    let r = TokenKeyRef::parse(&reference)?;
                    let s = Pkcs11Signer::generate(&ModuleConfig::from_env()?, &r, scheme)?;
                    eprintln!("generated non-extractable key {r}");
                    Box::new(s)
                }
                _ => bail!("give --out FILE (encrypted key file) or --pkcs11 'token=..;object=..'"),
            };
            println!("{}  {}", signer.key_id(), signer.public_key().scheme);
        }
        KeyCommand::List {
            paths,
            pkcs11_token,
        } => {
            for p in &paths {
                let files: Vec<PathBuf> = if p.is_dir() {
                    let mut v: Vec<PathBuf> = std::fs::read_dir(p)?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .collect();
                    v.sort();
                    v
                } else {
                    vec![p.clone()]
                };
                for f in files {
                    if let Ok(k) = rampart_keys::file::read_public(&f) {
                        println!("{}  {:<20} file:{}", k.key_id(), k.scheme, f.display());
                    }
                }
            }
            if let Some(token) = pkcs11_token {
                for (label, k) in
                    rampart_keys::pkcs11::list_keys(&ModuleConfig::from_env()?, &token)?
                {
                    println!(
                        "{}  {:<20} pkcs11:token={token};object={label}",
                        k.key_id(),
                        k.scheme
                    );
                }
            }
        }
        KeyCommand::ExportPublic { key } => {
            let k = if key.starts_with("pkcs11:") {
                open_signer(&key)?.public_key().clone()
            } else {
                rampart_keys::file::read_public(Path::new(
                    key.strip_prefix("file:").unwrap_or(&key),
                ))?
            };
            let out = serde_json::json!({ "keyid": k.key_id(), "key": k });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}

fn repo_command(cmd: RepoCommand) -> anyhow::Result<()> {
    let open = opener();
    match cmd {
        RepoCommand::Init {
            dir,
            keys,
            root_expiry_days,
            targets_expiry_days,
            snapshot_expiry_days,
            timestamp_expiry_days,
        } => {
            let opts = InitOptions {
                root: RoleSigners {
                    keys: absolute_refs(&keys.root)?,
                    threshold: keys.root_threshold,
                },
                targets: RoleSigners {
                    keys: absolute_refs(&keys.targets)?,
                    threshold: keys.targets_threshold,
                },
                snapshot: RoleSigners {
                    keys: absolute_refs(&keys.snapshot)?,
                    threshold: 1,
                },
                timestamp: RoleSigners {
                    keys: absolute_refs(&keys.timestamp)?,
                    threshold: 1,
                },
                expiry_days: ExpiryDays {
                    root: root_expiry_days,
                    targets: targets_expiry_days,
                    snapshot: snapshot_expiry_days,
                    timestamp: timestamp_expiry_days,
                },
            };
            Repository::init(&dir, opts, &open, now_unix())?;
            println!(
                "created repository {} (root v1, targets v1, snapshot v1, timestamp v1)",
                dir.display()
            );
        }
        RepoCommand::Publish { dir, renew_targets } => {
            let repo = Repository::open(&dir)?;
            if renew_targets {
                for (role, v) in repo.renew_targets(&open, now_unix())? {
                    println!("renewed {role} as v{v}");
                }
            }
            let (s, t) = repo.publish(&open, now_unix())?;
            println!("published snapshot v{s}, timestamp v{t}");
        }
        RepoCommand::RotateRoot {
            dir,
            role,
            add,
            remove,
            threshold,
        } => {
            let mut repo = Repository::open(&dir)?;
            let change = RootChange {
                role: parse_role(&role)?,
                add_keys: absolute_refs(&add)?,
                remove_key_ids: remove,
                threshold,
            };
            let v = repo.rotate_root(&[change], &open, now_unix())?;
            println!(
                "wrote root v{v}, signed by the previous and the new root keys; snapshot and timestamp republished"
            );
        }
        RepoCommand::Delegate {
            dir,
            name,
            paths,
            keys,
            threshold,
            terminating,
        } => {
            let mut repo = Repository::open(&dir)?;
            repo.delegate(
                &name,
                paths,
                RoleSigners {
                    keys: absolute_refs(&keys)?,
                    threshold,
                },
                terminating,
                &open,
                now_unix(),
            )?;
            println!("delegated to role {name}; targets, snapshot and timestamp re-signed");
        }
        RepoCommand::Verify { dir, trusted_root } => {
            let repo = Repository::open(&dir)?;
            let r = repo.verify(trusted_root.as_deref(), now_unix(), &BarProgress::default())?;
            println!(
                "ok: root v{}, timestamp v{}, snapshot v{}, {} targets role(s), {} target(s) verified",
                r.root_version,
                r.timestamp_version,
                r.snapshot_version,
                r.targets_roles,
                r.targets_checked
            );
        }
        RepoCommand::SetLog {
            dir,
            log_url,
            policy,
            release_key,
            off,
        } => {
            let mut repo = Repository::open(&dir)?;
            if off {
                repo.set_transparency(None)?;
                println!("releases will no longer be logged");
                return Ok(());
            }
            let (Some(log_url), Some(policy), Some(release_key)) = (log_url, policy, release_key)
            else {
                bail!("give --log-url, --policy and --release-key (or --off)");
            };
            let policy_text = tlog::parse_policy_file(&policy)?.to_text();
            tlog::read_note_key(&release_key)?;
            let release_key = std::fs::canonicalize(&release_key)?.display().to_string();
            repo.set_transparency(Some(rampart_repo::TransparencyConfig {
                log_url,
                policy: policy_text,
                release_key,
            }))?;
            println!(
                "every release will be recorded in the transparency log and ship with its tlog-proof"
            );
        }
        RepoCommand::Serve { dir, listen } => {
            let server = serve::StaticServer::start(&dir, &listen)?;
            println!(
                "serving {} (metadata/, targets/); Ctrl-C to stop",
                dir.display()
            );
            println!("listening on http://{}", server.addr());
            server.join();
        }
        RepoCommand::UploadArtifacts { repo, to } => artifacts::upload(&repo, &to)?,
    }
    Ok(())
}

fn release_command(cmd: ReleaseCommand) -> anyhow::Result<()> {
    let open = opener();
    let ReleaseCommand::Add {
        image,
        repo,
        hardware,
        version,
        security_version,
        sbom,
        provenance,
        name,
        role,
        no_publish,
    } = cmd;
    let repository = Repository::open(&repo)?;
    let req = ReleaseRequest {
        image,
        target_name: name,
        hardware_ids: hardware,
        version,
        security_version,
        sbom,
        provenance,
        role,
    };
    let added = match repository.config().transparency.clone() {
        None => repository.add_releases(&[req], &open, now_unix(), &BarProgress::default())?,
        Some(t) => {
            let policy: rampart_log::policy::WitnessPolicy = t
                .policy
                .parse()
                .context("the witness policy in rampart-repo.json is malformed")?;
            let client = rampart_tlog::client::LogClient::new(&t.log_url, policy);
            let key = tlog::read_note_key(Path::new(&t.release_key))?;
            let logger = |s: &rampart_log::statement::ReleaseStatement| {
                eprintln!(
                    "recording {} in the transparency log at {} ...",
                    s.target, t.log_url
                );
                client
                    .log_release(s, &key, std::time::Duration::from_secs(120))
                    .map_err(|e| e.to_string())
            };
            repository.add_releases_logged(
                &[req],
                &open,
                now_unix(),
                &BarProgress::default(),
                Some(&logger),
            )?
        }
    };
    for a in &added {
        println!(
            "added {} ({} bytes, sha256 {}) to role {}",
            a.target_name, a.length, a.sha256, a.role
        );
    }
    if no_publish {
        println!(
            "not published: run `rampart repo publish {}` to make it visible",
            repo.display()
        );
    } else {
        let (s, t) = repository.publish(&open, now_unix())?;
        println!("published snapshot v{s}, timestamp v{t}");
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    rampart_agent::cli_output::exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key(c) => key_command(c),
        Command::Repo(c) => repo_command(c),
        Command::Release(c) => release_command(c),
        Command::Log(c) => tlog::log_command(c),
        Command::Witness(c) => tlog::witness_command(c),
        Command::Ca(c) => fleet::ca_command(c),
        Command::Device(c) => fleet::device_command(c),
        Command::Audit(c) => fleet::audit_command(c),
        Command::Server(args) => server::run(*args),
        Command::Director(c) => director::director_command(c),
        Command::Token(c) => server::token_command(c),
        Command::Campaign(c) => campaign::run(c),
        Command::Ddi(c) => ddi::run(c),
        Command::Bench(c) => bench::run(c),
        Command::Sim(a) => sim::run(*a),
        Command::Demo(a) => fleet_demo::run(a),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            rampart_agent::cli_output::print_error(e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}
