//! `rampart director`: the Uptane-style director's root of trust.
//!
//! `init` writes version 1 of the director root: the offline root key(s) sign it, and the
//! server's online key holds the `targets` role (and, unused, `snapshot` and `timestamp`).
//! Devices pin this root at provisioning (`rampart-agent init --director-root`); the server
//! runs with it (`rampart server --director-root DIR/root.json --director-key KEYREF`).
//! `rotate-root` writes version N+1 signed by the old and the new root keys, as in TUF.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_core::director::{DirectorTrust, check_director_root};
use rampart_core::metadata::{Common, Metadata, RoleKeys, Root, format_expires};
use rampart_keys::Signer;
use rampart_repo::sign_envelope;
use rampart_tuf_client::store::write_atomic;

use crate::shared::now_unix;

const DAY: i64 = 86_400;

#[derive(Subcommand)]
pub enum DirectorCommand {
    /// Write version 1 of the director root (DIR/1.root.json and DIR/root.json).
    Init {
        /// Directory for the director root files.
        #[arg(long)]
        dir: PathBuf,
        /// Offline root key (repeat for several); file:PATH or pkcs11:token=..;object=..
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<String>,
        /// Root signatures required (default: all root keys).
        #[arg(long)]
        root_threshold: Option<u32>,
        /// The server's online key that signs each device's director metadata.
        #[arg(long)]
        online_key: String,
        /// Days the director root stays valid.
        #[arg(long, default_value_t = 365)]
        expires_days: u32,
    },
    /// Write director root N+1 (new online key and/or root keys), signed by the current root
    /// keys and the new ones; devices follow it on their next update.
    RotateRoot {
        #[arg(long)]
        dir: PathBuf,
        /// Current root key(s) signing the rotation (their threshold is needed).
        #[arg(long = "old-root-key", required = true)]
        old_root_keys: Vec<String>,
        /// Root keys of the new version (default: the current ones).
        #[arg(long = "root-key")]
        root_keys: Vec<String>,
        #[arg(long)]
        root_threshold: Option<u32>,
        /// The online key of the new version.
        #[arg(long)]
        online_key: String,
        #[arg(long, default_value_t = 365)]
        expires_days: u32,
    },
}

fn open(reference: &str) -> anyhow::Result<Box<dyn Signer>> {
    rampart_keys::open_signer(reference).with_context(|| format!("opening key {reference}"))
}

fn root_body(
    version: u64,
    root_signers: &[Box<dyn Signer>],
    threshold: u32,
    online: &dyn Signer,
    expires_days: u32,
) -> anyhow::Result<Root> {
    if threshold < 1 || threshold as usize > root_signers.len() {
        bail!(
            "--root-threshold {threshold} must be between 1 and the {} root key(s)",
            root_signers.len()
        );
    }
    if expires_days == 0 {
        bail!("--expires-days must be at least 1");
    }
    let mut keys = BTreeMap::new();
    let mut root_ids = Vec::new();
    for s in root_signers {
        keys.insert(s.key_id(), s.public_key().clone());
        if !root_ids.contains(&s.key_id()) {
            root_ids.push(s.key_id());
        }
    }
    if root_ids.contains(&online.key_id()) {
        bail!("the online key must not also be a root key: keep the root keys offline");
    }
    keys.insert(online.key_id(), online.public_key().clone());
    let mut roles = BTreeMap::new();
    roles.insert(
        "root".to_string(),
        RoleKeys {
            keyids: root_ids,
            threshold,
        },
    );
    for role in ["targets", "snapshot", "timestamp"] {
        roles.insert(
            role.to_string(),
            RoleKeys {
                keyids: vec![online.key_id()],
                threshold: 1,
            },
        );
    }
    Ok(Root {
        common: Common {
            type_: "root".into(),
            spec_version: "1.0.31".into(),
            version,
            expires: format_expires(now_unix() + i64::from(expires_days) * DAY),
        },
        consistent_snapshot: None,
        keys,
        roles,
    })
}

fn write_root(dir: &Path, version: u64, bytes: &[u8]) -> anyhow::Result<()> {
    for name in [format!("{version}.root.json"), "root.json".to_string()] {
        let path = dir.join(name);
        write_atomic(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

pub fn run(cmd: DirectorCommand) -> anyhow::Result<()> {
    match cmd {
        DirectorCommand::Init {
            dir,
            root_keys,
            root_threshold,
            online_key,
            expires_days,
        } => {
            if dir.join("root.json").exists() || dir.join("1.root.json").exists() {
                bail!(
                    "{} already holds a director root; change it with `rampart director rotate-root`",
                    dir.display()
                );
            }
            let roots = root_keys
                .iter()
                .map(|r| open(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let online = open(&online_key)?;
            let threshold = root_threshold.unwrap_or(roots.len() as u32);
            let body = root_body(1, &roots, threshold, online.as_ref(), expires_days)?;
            let bytes = sign_envelope(&body, &roots)?;
            check_director_root(&bytes, &online.key_id())?;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write_root(&dir, 1, &bytes)?;
            println!(
                "director root v1 written to {}/1.root.json (online key {}); pin it on devices and run the server with --director-root {}/root.json",
                dir.display(),
                online.key_id(),
                dir.display()
            );
        }
        DirectorCommand::RotateRoot {
            dir,
            old_root_keys,
            root_keys,
            root_threshold,
            online_key,
            expires_days,
        } => {
            let current_path = dir.join("root.json");
            let current = std::fs::read(&current_path)
                .with_context(|| format!("reading {}", current_path.display()))?;
            let mut trust = DirectorTrust::new(&current)
                .context("the current director root does not verify")?;
            let old = old_root_keys
                .iter()
                .map(|r| open(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let new_refs = if root_keys.is_empty() {
                &old_root_keys
            } else {
                &root_keys
            };
            let new = new_refs
                .iter()
                .map(|r| open(r))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let online = open(&online_key)?;
            let version = trust.root().version() + 1;
            let threshold = root_threshold.unwrap_or(new.len() as u32);
            let body = root_body(version, &new, threshold, online.as_ref(), expires_days)?;
            let signers: Vec<Box<dyn Signer>> = old.into_iter().chain(new).collect();
            let bytes = sign_envelope(&body, &signers)?;
            trust.update_root(&bytes).context(
                "the new root would not be accepted by devices (pass enough --old-root-key for the current threshold)",
            )?;
            check_director_root(&bytes, &online.key_id())?;
            let parsed = Metadata::<Root>::from_bytes("director root", &bytes)?;
            write_root(&dir, parsed.version(), &bytes)?;
            println!(
                "director root v{} written to {}; restart the server with --director-key {online_key}",
                parsed.version(),
                dir.display()
            );
        }
    }
    Ok(())
}
