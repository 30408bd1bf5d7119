//! `rampart key ...`: signing keys in encrypted files or on PKCS#11 tokens.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_core::Scheme;
use rampart_keys::file::{FileSigner, KdfParams, passphrase_from_env_or_prompt};
use rampart_keys::pkcs11::{ModuleConfig, Pkcs11Signer, TokenKeyRef};
use rampart_keys::{Signer, open_signer};

#[derive(Subcommand)]
pub enum KeyCommand {
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

pub fn run(cmd: KeyCommand) -> anyhow::Result<()> {
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
