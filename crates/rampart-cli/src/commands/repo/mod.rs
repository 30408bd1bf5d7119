//! `rampart repo ...`: the TUF image repository (create, publish, rotate root, delegate, verify,
//! record releases in a transparency log, serve, upload artifacts).

mod upload_artifacts;

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand};
use rampart_core::metadata::RoleType;
use rampart_repo::{ExpiryDays, InitOptions, Repository, RoleSigners, RootChange};

use crate::shared::now_unix;
use crate::shared::output::BarProgress;
use crate::shared::signing::{absolute_refs, opener, parse_policy_file, read_note_key};
use crate::shared::static_server::StaticServer;

#[derive(Args)]
pub struct RoleKeyArgs {
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
pub enum RepoCommand {
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

fn parse_role(s: &str) -> anyhow::Result<RoleType> {
    Ok(match s {
        "root" => RoleType::Root,
        "targets" => RoleType::Targets,
        "snapshot" => RoleType::Snapshot,
        "timestamp" => RoleType::Timestamp,
        other => bail!("unknown role {other:?}: use root, targets, snapshot or timestamp"),
    })
}

pub fn run(cmd: RepoCommand) -> anyhow::Result<()> {
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
            let policy_text = parse_policy_file(&policy)?.to_text();
            read_note_key(&release_key)?;
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
            let server = StaticServer::start(&dir, &listen)?;
            println!(
                "serving {} (metadata/, targets/); Ctrl-C to stop",
                dir.display()
            );
            println!("listening on http://{}", server.addr());
            server.join();
        }
        RepoCommand::UploadArtifacts { repo, to } => upload_artifacts::upload(&repo, &to)?,
    }
    Ok(())
}
