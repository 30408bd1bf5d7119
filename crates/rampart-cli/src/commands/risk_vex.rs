//! `rampart risk vex sign|verify|import|list|delete` and the VEX of `rampart risk sbom-check
//! --vex`: vendor VEX documents (CycloneDX VEX, OpenVEX) in DSSE envelopes. Signing goes
//! through `release_provenance::sign_envelope` (the provenance signing path: key files and
//! PKCS#11 tokens); the checks are `rampart_vuln::signed_vex`'s. See
//! docs/decisions/0047-vendor-signed-vex.md.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_core::keys::Key;
use rampart_vuln::provenance::MAX_ENVELOPE_BYTES;
use rampart_vuln::signed_vex::{
    MAX_TRUSTED_VEX_KEYS, prepare_for_signing, read_vex_unverified, verify_signed_vex,
};
use rampart_vuln::suppression::SourcedVex;
use rampart_vuln::vex::MAX_VEX_BYTES;
use serde_json::Value;

use super::release_provenance::sign_envelope;
use crate::shared::api_client::{ApiArgs, ApiClient};
use crate::shared::files::read_bounded;

/// Largest public key file read (a TUF key, or the JSON `rampart key export-public` prints).
const MAX_KEY_FILE_BYTES: usize = 64 * 1024;
/// Largest envelope `import` sends: the management API's body limit.
pub const MAX_VEX_IMPORT_BYTES: usize = 512 * 1024;
/// Most VEX files one `sbom-check` reads.
const MAX_VEX_FILES: usize = 256;

#[derive(Subcommand)]
pub enum VexCommand {
    /// Sign a CycloneDX VEX or OpenVEX document as its vendor: a DSSE envelope whose
    /// payloadType names the format (application/vnd.cyclonedx+json or
    /// application/vnd.openvex+json).
    Sign {
        /// The VEX document (CycloneDX 1.4-1.6 with vulnerabilities[].analysis, or OpenVEX).
        #[arg(long)]
        vex: PathBuf,
        /// The vendor's key: file:PATH, a key file path, or pkcs11:token=..;object=..
        #[arg(long)]
        key: String,
        /// Write the envelope here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a signed VEX document against vendor public keys; prints its statements.
    Verify {
        /// The DSSE envelope (`rampart risk vex sign`).
        #[arg(long)]
        vex: PathBuf,
        /// A trusted vendor public key: the JSON `rampart key export-public` prints, a TUF
        /// public key, or a key file (its public part). Repeatable.
        #[arg(long = "signer", required = true)]
        signers: Vec<PathBuf>,
        /// Print the statements as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import a signed VEX document into the server (checked against the vendor keys it
    /// trusts: `rampart server --vex-signer`).
    Import {
        #[command(flatten)]
        api: ApiArgs,
        /// The DSSE envelope.
        file: PathBuf,
    },
    /// The VEX documents the server holds.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a stored VEX document (its statements stop suppressing at the next request).
    Delete {
        #[command(flatten)]
        api: ApiArgs,
        /// The document's id (the SHA-256 of the VEX document, as `list` prints it).
        id: String,
    },
}

pub fn run(command: VexCommand) -> anyhow::Result<()> {
    match command {
        VexCommand::Sign { vex, key, out } => sign(&vex, &key, out.as_deref()),
        VexCommand::Verify { vex, signers, json } => verify(&vex, &signers, json),
        VexCommand::Import { api, file } => import(&api.client()?, &file),
        VexCommand::List { api, json } => list(&api.client()?, json),
        VexCommand::Delete { api, id } => delete(&api.client()?, &id),
    }
}

/// A vendor public key from a file: the JSON `rampart key export-public` prints
/// (`{"keyid", "key"}`), a bare TUF public key, or a Rampart key file (its public part, read
/// without the passphrase).
pub fn read_signer(path: &Path) -> anyhow::Result<Key> {
    let bytes = read_bounded(path, MAX_KEY_FILE_BYTES, "vendor public key")?;
    if let Ok(value) = serde_json::from_slice::<Value>(&bytes) {
        let key_json = value.get("key").cloned().unwrap_or(value);
        if let Ok(key) = serde_json::from_value::<Key>(key_json) {
            key.scheme().with_context(|| {
                format!("vendor public key {}: unsupported scheme", path.display())
            })?;
            return Ok(key);
        }
    }
    rampart_keys::file::read_public(path).with_context(|| {
        format!(
            "{} is not a public key: give the JSON `rampart key export-public KEY` prints",
            path.display()
        )
    })
}

/// Every `--signer` key, bounded.
pub fn read_signers(paths: &[PathBuf]) -> anyhow::Result<Vec<Key>> {
    if paths.len() > MAX_TRUSTED_VEX_KEYS {
        bail!(
            "{} vendor keys given, over the limit of {MAX_TRUSTED_VEX_KEYS}",
            paths.len()
        );
    }
    paths.iter().map(|p| read_signer(p)).collect()
}

fn sign(vex: &Path, key: &str, out: Option<&Path>) -> anyhow::Result<()> {
    let document = read_bounded(vex, MAX_VEX_BYTES, "VEX document")?;
    let payload_type = prepare_for_signing(&document).with_context(|| {
        format!(
            "VEX document {}: only a valid VEX document is signed",
            vex.display()
        )
    })?;
    let (envelope, key_id) = sign_envelope(key, payload_type, &document)?;
    let line = envelope.to_line() + "\n";
    match out {
        Some(path) => {
            std::fs::write(path, &line).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {} ({payload_type}) signed by key {key_id}",
                path.display()
            );
        }
        None => print!("{line}"),
    }
    Ok(())
}

fn verify(vex: &Path, signers: &[PathBuf], json: bool) -> anyhow::Result<()> {
    let keys = read_signers(signers)?;
    let bytes = read_bounded(vex, MAX_ENVELOPE_BYTES, "signed VEX")?;
    let document = verify_signed_vex(&bytes, &keys)
        .with_context(|| format!("signed VEX {}", vex.display()))?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "format": document.format,
                "signer_key_id": document.signer_key_id,
                "statements": document.statements,
            }))?
        );
        return Ok(());
    }
    println!(
        "VEX verified: {:?}, {} statement(s), signed by key {}",
        document.format,
        document.statements.len(),
        document.signer_key_id.as_deref().unwrap_or("")
    );
    for s in &document.statements {
        println!(
            "  {} {}: {}{}",
            s.vulnerability,
            s.products.join(","),
            s.stated_status,
            s.justification
                .as_deref()
                .map(|j| format!(" ({j})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

/// The VEX of `sbom-check --vex FILE... [--vex-signer KEY...]`: with signers, every file must
/// be an envelope signed by one of them; without, bare documents and envelopes are read as
/// they are, and standard error says their signatures went unchecked.
pub fn load_for_check(files: &[PathBuf], signer_paths: &[PathBuf]) -> anyhow::Result<SourcedVex> {
    if files.len() > MAX_VEX_FILES {
        bail!(
            "{} VEX files given, over the limit of {MAX_VEX_FILES}",
            files.len()
        );
    }
    let keys = read_signers(signer_paths)?;
    let mut documents = Vec::with_capacity(files.len());
    for path in files {
        let bytes = read_bounded(path, MAX_ENVELOPE_BYTES, "VEX")?;
        let document = if keys.is_empty() {
            let (document, enveloped) =
                read_vex_unverified(&bytes).with_context(|| format!("VEX {}", path.display()))?;
            eprintln!(
                "note: VEX {} is used without a signature check ({}); give --vex-signer VENDOR_KEY to accept only VEX the vendor signed",
                path.display(),
                if enveloped {
                    "its envelope's signature is not verified"
                } else {
                    "it is not signed"
                }
            );
            document
        } else {
            verify_signed_vex(&bytes, &keys).with_context(|| {
                format!(
                    "VEX {} refused (with --vex-signer only VEX signed by a given vendor key is used)",
                    path.display()
                )
            })?
        };
        documents.push((path.display().to_string(), document.statements));
    }
    Ok(SourcedVex::new(documents))
}

fn import(client: &ApiClient, file: &Path) -> anyhow::Result<()> {
    let bytes = read_bounded(file, MAX_VEX_IMPORT_BYTES, "signed VEX")?;
    let envelope: Value = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "{} is not one JSON DSSE envelope: sign the VEX document with `rampart risk vex sign`",
            file.display()
        )
    })?;
    let answer = client
        .ok("POST", "/api/v1/risk/vex", Some(envelope))
        .with_context(|| format!("importing the VEX {}", file.display()))?;
    println!(
        "VEX {} {}: {} statement(s), {} format, signed by key {}",
        answer["id"].as_str().unwrap_or(""),
        if answer["created"].as_bool() == Some(true) {
            "imported"
        } else {
            "was already imported"
        },
        answer["statements"].as_u64().unwrap_or(0),
        answer["format"].as_str().unwrap_or(""),
        answer["signer_key_id"].as_str().unwrap_or("")
    );
    Ok(())
}

fn list(client: &ApiClient, json: bool) -> anyhow::Result<()> {
    let answer = client.ok("GET", "/api/v1/risk/vex", None)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let empty = Vec::new();
    let documents = answer["documents"].as_array().unwrap_or(&empty);
    println!(
        "{:<64}  {:<10}  {:>10}  {:<12}  SIGNER",
        "ID", "FORMAT", "STATEMENTS", "IMPORTED_AT"
    );
    for d in documents {
        println!(
            "{:<64}  {:<10}  {:>10}  {:<12}  {}",
            d["id"].as_str().unwrap_or(""),
            d["format"].as_str().unwrap_or(""),
            d["statements"].as_u64().unwrap_or(0),
            d["imported_at"].as_i64().unwrap_or(0),
            d["signer_key_id"].as_str().unwrap_or("")
        );
    }
    println!(
        "{} of {} VEX document(s)",
        documents.len(),
        answer["total"].as_u64().unwrap_or(0)
    );
    Ok(())
}

fn delete(client: &ApiClient, id: &str) -> anyhow::Result<()> {
    if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "a VEX document id is 64 hex digits (its SHA-256, as `rampart risk vex list` prints)"
        );
    }
    client.ok("DELETE", &format!("/api/v1/risk/vex/{id}"), None)?;
    println!("VEX {id} removed");
    Ok(())
}
