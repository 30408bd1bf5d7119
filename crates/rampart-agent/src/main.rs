//! `rampart-agent`: the device side. With a configuration file (`--config`), it runs the
//! update daemon (`run`), installs offline (`install --from`), and runs the boot flow: verify
//! everything, stream into the inactive A/B slot, try-boot it with a boot counter, commit after
//! health checks or roll back. Without one, `check`/`fetch`/`update` verify and download only.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{CommandFactory as _, Parser, Subcommand};
use std::io::Write as _;
use std::time::Duration;

use rampart_agent::agent_log::AgentLog;
use rampart_agent::config::Config;
use rampart_agent::daemon::Pass;
use rampart_agent::daemon::now_unix;
use rampart_agent::device::Device;
use rampart_agent::disk::Disk;
use rampart_agent::server_client::ServerClient;
use rampart_agent::source::Refusal;
use rampart_agent::tpm::OpenTpm;
use rampart_agent::{LOG_POLICY, RELEASE_KEY};
use rampart_incident::agent_log::Level;
use rampart_log::note::Verifier;
use rampart_log::policy::WitnessPolicy;
use rampart_tuf_client::{HttpFetcher, Updater};

#[derive(Parser)]
#[command(name = "rampart-agent", version, about = "Rampart device agent")]
struct Cli {
    /// The agent configuration (TOML; see docs/device-integration.md). Its `state_dir`
    /// replaces --state-dir.
    #[arg(long, short = 'c', env = "RAMPART_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Directory holding the device's trusted metadata and state.
    #[arg(
        long,
        env = "RAMPART_AGENT_STATE",
        default_value = "/var/lib/rampart-agent"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        shell: rampart_agent::cli_docs::Shell,
    },
    /// Write man pages: one per command (to --dir, else rampart-agent.1 to stdout).
    Man {
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// The update daemon: run the boot flow (commit or roll back a new slot), then poll the
    /// server with jitter and exponential backoff, installing what it assigns.
    Run {
        /// One pass (boot flow, one poll, at most one install) and exit: for scripts and cron.
        /// Exit status 0: up to date or rebooting into an update; 1: failure.
        #[arg(long)]
        once: bool,
    },
    /// Install a release from an image repository directory (offline, e.g. a USB stick) or
    /// URL: verify, stream into the inactive slot, activate, reboot.
    Install {
        /// Repository directory (with metadata/ and targets/) or base URL.
        #[arg(long)]
        from: String,
        /// Target path of the release.
        target: String,
        /// Do not run the reboot command after activating.
        #[arg(long)]
        no_reboot: bool,
        /// Re-image (incident response): write the release even over the same release, and
        /// after the reboot that commits it, run the same command again to write it into the
        /// other slot too, so no slot keeps the previous image.
        #[arg(long)]
        reimage: bool,
    },
    /// Run the boot flow only (commit or roll back after booting an update); for boot scripts.
    Boot,
    /// Simulate a power-on on a workstation: the configured GRUB or U-Boot environment's boot
    /// script picks a slot and counts the attempt, as on a device, then the "kernel" writes
    /// `rampart.slot=X` to boot.cmdline and a new boot id to boot.boot_id. Try the A/B flow
    /// with it (docs/device-integration.md, "Trying the A/B flow on a workstation").
    SimulateReboot {
        /// The kernel of this slot does not come up (repeatable): the bootloader uses up its
        /// attempts and falls back, as after a broken update.
        #[arg(long, value_name = "A|B")]
        kernel_fails: Vec<String>,
    },
    /// Show the agent state and the bootloader's view of the slots (JSON).
    Status,
    /// Rebuild a lost or corrupt state file from the running slot (the slot contents become
    /// unknown until the next update).
    ResetState,
    /// Install the trusted root shipped with the device (factory provisioning), and optionally
    /// the transparency-log policy every release must then satisfy.
    Init {
        trusted_root: PathBuf,
        /// Witness policy file: releases must carry a tlog-proof meeting it.
        #[arg(long, requires = "release_key")]
        log_policy: Option<PathBuf>,
        /// Verifier key of the vendor's release key (signs the logged release statements).
        #[arg(long, requires = "log_policy")]
        release_key: Option<String>,
        /// The update server's director root (`rampart director init`), pinned for `update`.
        #[arg(long)]
        director_root: Option<PathBuf>,
    },
    /// Update through the update server over mutual TLS: poll, verify the director's and the
    /// image repository's metadata and their agreement, and download the assigned release
    /// (resuming a partial download) into --out.
    Update {
        /// The server's device API, e.g. https://updates.example:8443
        #[arg(long, env = "RAMPART_SERVER_URL")]
        server_url: String,
        /// CA certificate(s) the server's certificate must chain to (PEM).
        #[arg(long)]
        server_ca: PathBuf,
        /// This device's certificate (PEM); its device id is this device's identity.
        #[arg(long)]
        cert: PathBuf,
        /// This device's private key (PEM).
        #[arg(long)]
        key: PathBuf,
        /// This device's hardware compatibility id.
        #[arg(long, env = "RAMPART_HARDWARE_ID")]
        hardware_id: String,
        /// Where the verified artifact is written (a partial download is kept as <out>.part).
        #[arg(long)]
        out: PathBuf,
    },
    /// The device's TPM (the configuration's `[tpm]` section).
    Tpm {
        #[command(subcommand)]
        command: TpmCommand,
    },
    /// Refresh metadata and say whether a release may be installed on this device.
    Check(FetchArgs),
    /// Refresh, verify and download a release into --out (nothing is written unless it verifies).
    Fetch {
        #[command(flatten)]
        args: FetchArgs,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum TpmCommand {
    /// Make the mutual-TLS key inside the TPM (at tpm.tls_key_handle; it never leaves the TPM)
    /// and write a certificate signing request for it. The operator answers it with `rampart
    /// device provision --csr FILE`; the certificate goes to server.cert, with server.key =
    /// "tpm:".
    Provision {
        /// Where the certificate signing request (PEM) is written.
        #[arg(long)]
        csr: PathBuf,
        /// This device's id (the request's subject; the certificate names it).
        #[arg(long)]
        device_id: String,
    },
}

#[derive(clap::Args)]
struct FetchArgs {
    /// Repository base URL (serving metadata/ and targets/).
    #[arg(long, env = "RAMPART_REPO_URL")]
    repo_url: String,
    /// This device's hardware compatibility id.
    #[arg(long, env = "RAMPART_HARDWARE_ID")]
    hardware_id: String,
    /// Target path of the release.
    target: String,
}

/// Refreshes the repository and checks the release for this device (`check`, `fetch`).
fn verified(
    state: &Path,
    args: &FetchArgs,
) -> anyhow::Result<(rampart_agent::source::Verified, Updater<HttpFetcher>)> {
    let installed = rampart_agent::director::installed_security_version(state)?;
    let (verified, up, logged) = rampart_agent::source::verify_from_repo(
        &Disk::from_env().map_err(anyhow::Error::msg)?,
        state,
        args.repo_url.trim_end_matches('/'),
        &args.hardware_id,
        installed,
        &args.target,
        now_unix(),
    )
    .map_err(refused)?;
    if let Some(line) = logged {
        eprintln!("{line}");
    }
    Ok((verified, up))
}

fn config_path(cli: &Cli) -> anyhow::Result<&Path> {
    cli.config.as_deref().context(
        "this command needs the agent configuration: pass --config FILE (or set RAMPART_AGENT_CONFIG); see docs/device-integration.md",
    )
}

fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Ok(Config::load(config_path(cli)?)?)
}

/// The configured TPM, opened once: the device logic and the TLS key share its connection.
fn open_tpm(config: &Config) -> anyhow::Result<Option<Box<dyn OpenTpm>>> {
    config
        .tpm
        .as_ref()
        .map(|tpm| rampart_agent::tpm::open(tpm).map_err(anyhow::Error::from))
        .transpose()
}

/// The device of a provisioned agent: its state directory must exist (`init` creates it). A
/// missing one is a mistake (a wrong `state_dir`, an unprovisioned device), never a fresh
/// device to invent a state for.
fn open_device(cli: &Cli, config: Config, tpm: Option<&dyn OpenTpm>) -> anyhow::Result<Device> {
    if !config.state_dir.is_dir() {
        let file = config_path(cli)?.display();
        bail!(
            "the state directory {} (state_dir in {file}) does not exist: provision the device with `rampart-agent --config {file} init TRUSTED_ROOT.json` (it creates the directory and installs the trusted root), or correct state_dir (relative paths are relative to the configuration file's directory)",
            config.state_dir.display(),
        );
    }
    let disk = Disk::from_env().map_err(anyhow::Error::msg)?;
    match tpm {
        Some(tpm) => Device::open_with_tpm(config, disk, tpm.device()).map_err(refused),
        None => Device::open(config, disk).map_err(refused),
    }
}

/// A device of the configuration with its TPM, if it has one.
fn open_configured(cli: &Cli) -> anyhow::Result<(Device, Option<Box<dyn OpenTpm>>)> {
    let config = load_config(cli)?;
    let tpm = open_tpm(&config)?;
    Ok((open_device(cli, config, tpm.as_deref())?, tpm))
}

/// A refusal as an error that names its reason code.
fn refused(r: Refusal) -> anyhow::Error {
    anyhow::anyhow!("[{}] {}", r.reason.as_str(), r.detail)
}

/// The device's TLS client key as the configuration names it (`server.key`).
fn client_key(
    config: &Config,
    tpm: Option<&dyn OpenTpm>,
) -> anyhow::Result<rampart_agent::tls::ClientKey> {
    let server = config.server.as_ref().context(
        "the configuration has no [server] section; `run` needs the update server (use `install --from` offline)",
    )?;
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    Ok(if server.key == rampart_agent::config::TPM_KEY {
        let tpm = tpm.context("server.key = \"tpm:\" needs the [tpm] section's TPM")?;
        rampart_agent::tls::ClientKey::Signer {
            key: tpm.tls_key()?,
            name: format!(
                "the TLS key in the TPM (handle {:#010x})",
                config.tpm.as_ref().map_or(0, |t| t.tls_key_handle)
            ),
        }
    } else if server.key.starts_with("pkcs11:") {
        let pin = match &server.pkcs11_pin_file {
            Some(p) => String::from_utf8(read(p)?)
                .context("the PIN file is not UTF-8")?
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
            None => std::env::var("RAMPART_PKCS11_PIN").context(
                "a PKCS#11 key needs server.pkcs11_pin_file in the configuration or RAMPART_PKCS11_PIN",
            )?,
        };
        rampart_agent::tls::ClientKey::pkcs11_from_uri(
            server
                .pkcs11_module
                .clone()
                .unwrap_or_else(|| rampart_keys::pkcs11::DEFAULT_MODULE.into()),
            pin,
            &server.key,
        )?
    } else {
        rampart_agent::tls::ClientKey::Pem(read(Path::new(&server.key))?)
    })
}

fn server_client(config: &Config, tpm: Option<&dyn OpenTpm>) -> anyhow::Result<ServerClient> {
    let key = client_key(config, tpm)?;
    let server = config.server.as_ref().expect("checked by client_key");
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let (fetcher, device_id) =
        rampart_agent::tls::device_agent(&read(&server.ca)?, &read(&server.cert)?, &key)?;
    Ok(ServerClient::from_fetcher(&server.url, fetcher, device_id))
}

/// The device key that signs evidence bundles and agent-log anchors: the TLS client key.
fn device_key(
    config: &Config,
    tpm: Option<&dyn OpenTpm>,
) -> anyhow::Result<rampart_agent::evidence::DeviceKey> {
    let key = client_key(config, tpm)?;
    let server = config.server.as_ref().expect("checked by client_key");
    let cert = std::fs::read(&server.cert)
        .with_context(|| format!("reading {}", server.cert.display()))?;
    let (key, certificate) = rampart_agent::tls::device_signing_key(&cert, &key)?;
    Ok(rampart_agent::evidence::DeviceKey::new(
        key,
        certificate.to_vec(),
    ))
}

fn say(pass: &Pass) {
    match pass {
        Pass::UpToDate => println!("up to date"),
        Pass::Committed { version } => println!("committed version {version}"),
        Pass::RolledBack { version, reason } => {
            println!("rolled back from version {version} ({})", reason.as_str())
        }
        Pass::Reboot => println!("rebooting"),
        Pass::Deferred { why } => println!("soft update deferred: {why}"),
        Pass::Downloaded { version } => {
            println!("downloaded version {version} into the inactive slot (not activated)")
        }
        Pass::Reimaged { version } => {
            println!("re-imaged: both slots hold version {version}")
        }
    }
}

fn reboot_if(pass: &Pass, config: &Config) -> anyhow::Result<()> {
    if *pass == Pass::Reboot {
        rampart_agent::daemon::reboot(config).map_err(anyhow::Error::msg)?;
    }
    Ok(())
}

fn run_daemon(cli: &Cli, once: bool) -> anyhow::Result<()> {
    let config = load_config(cli)?;
    let tpm = open_tpm(&config)?;
    let client = server_client(&config, tpm.as_deref())?;
    let device_key = device_key(&config, tpm.as_deref())?;
    let mut log = AgentLog::open(&config.state_dir, &config.evidence)?;
    log.append(Level::Info, "agent started")?;
    let server = config.server.clone().expect("checked by server_client");
    let commands = config.health.commands.clone();
    let check_server = config.health.check_server;
    let mut device = open_device(cli, config, tpm.as_deref())?;
    let health = rampart_agent::health::Checks {
        commands,
        server: check_server.then_some(&client),
    };
    let base = Duration::from_secs(server.poll_interval_secs.max(1));
    let max = Duration::from_secs(server.max_backoff_secs.max(1));
    let mut failures = 0u32;
    loop {
        let mut interval = base;
        let outcome = (|| -> Result<Pass, Refusal> {
            let mut state = device.load_state()?;
            let pass = rampart_agent::daemon::boot(&mut device, &mut state, &health)?;
            rampart_agent::daemon::flush(&mut device, &mut state, &client);
            if pass == Pass::Reboot {
                return Ok(pass);
            }
            if pass != Pass::UpToDate {
                say(&pass);
            }
            let (pass, asked) =
                rampart_agent::daemon::update_from_server(&mut device, &mut state, &client)?;
            if let Some(secs) = asked {
                interval = Duration::from_secs(secs.max(1));
            }
            Ok(pass)
        })();
        // Into the tamper-evident log; the console gets them from `say` and below.
        let recorded = match &outcome {
            Ok(Pass::UpToDate) => Ok(()),
            Ok(pass) => log
                .append(Level::Info, &format!("pass: {pass:?}"))
                .map(drop),
            Err(r) => log
                .append(
                    Level::Error,
                    &format!("error: [{}] {}", r.reason.as_str(), r.detail),
                )
                .map(drop),
        };
        if let Err(e) = recorded {
            eprintln!("{e}");
        }
        if !matches!(outcome, Ok(Pass::Reboot)) {
            rampart_agent::daemon::evidence_pass(&mut device, &mut log, &device_key, &client);
        }
        match outcome {
            Ok(pass) => {
                failures = 0;
                say(&pass);
                reboot_if(&pass, &device.config)?;
                if once {
                    return Ok(());
                }
                if pass == Pass::Reboot {
                    // The reboot command returned: give the system time to go down.
                    std::thread::sleep(Duration::from_secs(60));
                    continue;
                }
            }
            // One pass returns its error (printed once, by `main`); the daemon reports it
            // and carries on.
            Err(r) if once => return Err(refused(r)),
            Err(r) => {
                eprintln!("error: [{}] {}", r.reason.as_str(), r.detail);
                failures += 1;
                interval = rampart_agent::daemon::next_delay(base, failures, max, 0.5);
            }
        }
        let delay = rampart_agent::daemon::next_delay(
            interval,
            0,
            max.max(interval),
            rampart_agent::daemon::jitter(),
        );
        std::thread::sleep(delay);
    }
}

/// `simulate-reboot`: one simulated power-on, and what it did.
fn simulate_reboot(cli: &Cli, kernel_fails: &[String]) -> anyhow::Result<()> {
    let failing = kernel_fails
        .iter()
        .map(|s| {
            rampart_boot::ab::Slot::parse(s)
                .with_context(|| format!("--kernel-fails {s:?}: name slot A or B"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let config = load_config(cli)?;
    let mut sim = rampart_agent::bootsim::from_config(&config).map_err(anyhow::Error::msg)?;
    let on = sim.power_on(&|slot| !failing.contains(&slot))?;
    let env = sim.environment().map_err(anyhow::Error::msg)?;
    let var = |name: &str| env.get(name).map_or("(unset)", String::as_str);
    if on.used_default_env {
        println!(
            "the bootloader environment was unset or unreadable: the boot script's defaults were used"
        );
    }
    if on.failed_attempts > 0 {
        println!(
            "{} boot attempt(s) failed: the kernel did not come up",
            on.failed_attempts
        );
    }
    println!(
        "BOOT_ORDER={} BOOT_A_LEFT={} BOOT_B_LEFT={}",
        var("BOOT_ORDER"),
        var("BOOT_A_LEFT"),
        var("BOOT_B_LEFT")
    );
    match on.running {
        Some(slot) => println!(
            "booted slot {slot} ({} says rampart.slot={slot}); now run the agent's boot flow (`boot` or `run`)",
            config.boot.cmdline.display()
        ),
        None => bail!("no slot has boot attempts left: the device would not boot"),
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let cli = match (&cli.config, &cli.command) {
        (Some(_), Command::Init { .. }) => Cli {
            state_dir: load_config(&cli)?.state_dir,
            ..cli
        },
        _ => cli,
    };
    match cli.command {
        Command::Completions { shell } => rampart_agent::cli_docs::write_completions(
            shell,
            Cli::command(),
            &mut std::io::stdout().lock(),
        ),
        Command::Man { dir: None } => {
            rampart_agent::cli_docs::write_man_page(Cli::command(), &mut std::io::stdout().lock())?
        }
        Command::Man { dir: Some(dir) } => {
            let pages = rampart_agent::cli_docs::write_man_pages(Cli::command(), &dir)?;
            eprintln!("{pages} man pages in {}", dir.display());
        }
        Command::Run { once } => run_daemon(&cli, once)?,
        Command::Install {
            ref from,
            ref target,
            no_reboot,
            reimage,
        } => {
            let (mut device, _tpm) = open_configured(&cli)?;
            let health = rampart_agent::health::Checks {
                commands: device.config.health.commands.clone(),
                server: None,
            };
            let mut state = device.load_state().map_err(refused)?;
            let started = std::time::Instant::now();
            let progress = |release: &rampart_boot::flow::Release, written: u64| {
                eprintln!(
                    "{}: {} of {} MiB written ({:.0} MiB/s)",
                    release.target,
                    written >> 20,
                    release.length >> 20,
                    written as f64 / 1048576.0 / started.elapsed().as_secs_f64().max(1e-3)
                );
            };
            let install = if reimage {
                rampart_agent::daemon::reimage_from
            } else {
                rampart_agent::daemon::install_from
            };
            let pass = install(&mut device, &mut state, from, target, &health, &progress)
                .map_err(refused)?;
            say(&pass);
            if !no_reboot {
                reboot_if(&pass, &device.config)?;
            }
        }
        Command::Boot => {
            let config = load_config(&cli)?;
            let tpm = open_tpm(&config)?;
            let commands = config.health.commands.clone();
            let client = if config.health.check_server {
                Some(server_client(&config, tpm.as_deref())?)
            } else {
                None
            };
            let mut device = open_device(&cli, config, tpm.as_deref())?;
            let mut state = device.load_state().map_err(refused)?;
            let health = rampart_agent::health::Checks {
                commands,
                server: client.as_ref(),
            };
            let pass =
                rampart_agent::daemon::boot(&mut device, &mut state, &health).map_err(refused)?;
            if let Some(client) = &client {
                rampart_agent::daemon::flush(&mut device, &mut state, client);
            }
            say(&pass);
            reboot_if(&pass, &device.config)?;
        }
        Command::SimulateReboot { ref kernel_fails } => simulate_reboot(&cli, kernel_fails)?,
        Command::Status => {
            let (mut device, _tpm) = open_configured(&cli)?;
            let state = device.load_state().map_err(refused)?;
            let view = serde_json::json!({
                "state": state,
                "security_version": device.security_version().map_err(refused)?,
                "slots": device.describe_slots(&state),
            });
            // A closed pipe (`status | head`) is not an error worth a panic.
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                serde_json::to_string_pretty(&view)?
            );
        }
        Command::ResetState => {
            let (mut device, _tpm) = open_configured(&cli)?;
            let state = device.reset_state().map_err(refused)?;
            println!(
                "state rebuilt: slot {} committed",
                state.committed.map_or("?", |s| s.name())
            );
        }
        Command::Init {
            trusted_root,
            log_policy,
            release_key,
            director_root,
        } => {
            let bytes = std::fs::read(&trusted_root)
                .with_context(|| format!("reading {}", trusted_root.display()))?;
            rampart_core::TrustedSet::new(&bytes, now_unix())
                .context("the trusted root does not verify")?;
            let dir = cli.state_dir.join("metadata");
            std::fs::create_dir_all(&dir)?;
            let disk = Disk::from_env().map_err(anyhow::Error::msg)?;
            if dir.join("root.json").exists() {
                bail!(
                    "{} already holds a trusted root; a device's root changes only by rotation",
                    dir.display()
                );
            }
            if let (Some(policy), Some(key)) = (log_policy, release_key) {
                let text = std::fs::read_to_string(&policy)
                    .with_context(|| format!("reading {}", policy.display()))?;
                let parsed: WitnessPolicy = text.parse().context("the log policy is malformed")?;
                Verifier::parse(&key).context("--release-key is not a verifier key")?;
                disk.replace_file(&cli.state_dir.join(LOG_POLICY), parsed.to_text().as_bytes())?;
                disk.replace_file(
                    &cli.state_dir.join(RELEASE_KEY),
                    format!("{key}\n").as_bytes(),
                )?;
                println!(
                    "releases must be in the transparency log {} with {} witness cosignature(s)",
                    parsed.origin, parsed.quorum
                );
            }
            if let Some(director_root) = director_root {
                let bytes = std::fs::read(&director_root)
                    .with_context(|| format!("reading {}", director_root.display()))?;
                rampart_agent::director::pin_director_root_on(&disk, &cli.state_dir, &bytes)
                    .context("pinning the director root")?;
                println!("director root pinned");
            }
            disk.replace_file(&dir.join("root.json"), &bytes)?;
            println!("trusted root installed in {}", dir.display());
        }
        Command::Update {
            server_url,
            server_ca,
            cert,
            key,
            hardware_id,
            out,
        } => {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let tls = rampart_agent::server_client::DeviceTls {
                server_ca_pem: read(&server_ca)?,
                cert_pem: read(&cert)?,
                key_pem: read(&key)?,
            };
            let client = ServerClient::new(&server_url, &tls)?;
            match rampart_agent::server_update::update(
                &cli.state_dir,
                &client,
                &hardware_id,
                &out,
                now_unix(),
            )? {
                rampart_agent::server_update::UpdateOutcome::NothingAssigned => {
                    println!("nothing assigned to device {}", client.device_id());
                }
                rampart_agent::server_update::UpdateOutcome::Downloaded {
                    target,
                    version,
                    director_version,
                    path,
                    resumed_from,
                    already_present,
                } => {
                    let how = if already_present {
                        " (already downloaded)".to_string()
                    } else if resumed_from > 0 {
                        format!(" (resumed from byte {resumed_from})")
                    } else {
                        String::new()
                    };
                    println!(
                        "verified {target} version {version} (director v{director_version}) -> {}{how}",
                        path.display()
                    );
                }
            }
        }
        Command::Tpm {
            command:
                TpmCommand::Provision {
                    ref csr,
                    ref device_id,
                },
        } => {
            let config = load_config(&cli)?;
            let tpm = open_tpm(&config)?.context(
                "`tpm provision` needs a [tpm] section in the configuration (the TPM to keep the key in)",
            )?;
            let request = tpm.certificate_request_pem(device_id)?;
            std::fs::write(csr, request).with_context(|| format!("writing {}", csr.display()))?;
            println!(
                "the TLS key of device {device_id} is in the TPM (handle {:#010x}); certificate signing request written to {}",
                config.tpm.as_ref().map_or(0, |t| t.tls_key_handle),
                csr.display()
            );
        }
        Command::Check(args) => {
            let (v, _) = verified(&cli.state_dir, &args)?;
            println!(
                "installable: {} version {} (security version {}, {} bytes)",
                args.target, v.release.version, v.release.security_version, v.info.length
            );
        }
        Command::Fetch { args, out } => {
            let (v, up) = verified(&cli.state_dir, &args)?;
            up.download_target_to(&args.target, &v.info, &out)
                .with_context(|| format!("downloading {} to {}", args.target, out.display()))?;
            println!(
                "verified {} version {} -> {}",
                args.target,
                v.release.version,
                out.display()
            );
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    rampart_agent::cli_output::exit_quietly_on_broken_pipe();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            rampart_agent::cli_output::print_error(e.as_ref());
            std::process::ExitCode::FAILURE
        }
    }
}
