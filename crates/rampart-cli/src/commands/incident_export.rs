//! `rampart incident export` and `rampart incident verify-export`: an incident's chain-of-custody
//! export (`rampart-incident-export/1`, decision 0034) fetched from the management API, and its
//! offline verification: the audit head's signature, the audit segment, every bundle's hash,
//! structure, request, signature and TPM quote binding, the device certificates against the
//! manufacturer CA, and (with the log's policy) every bundle's transparency-log inclusion.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::shared::api_client::ApiArgs;

/// Largest export file `verify-export` reads.
const MAX_EXPORT_FILE: u64 = 2 << 30;

/// The incident export commands.
#[derive(Subcommand)]
pub enum IncidentExportCommand {
    /// Fetch an incident's chain-of-custody export (evidence bundles, device certificates,
    /// timeline, audit records with a signed head, transparency-log proofs) into one file.
    Export(ExportArgs),
    /// Verify an export offline: signatures, hashes, the audit chain segment and its signed
    /// head, the certificates against the CA, the TPM quote binding and (with --log-policy)
    /// the transparency-log inclusion. Fails naming what does not verify.
    VerifyExport(VerifyExportArgs),
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    api: ApiArgs,
    /// The incident id.
    id: String,
    /// Where to write the export (written whole, then renamed into place).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct VerifyExportArgs {
    /// The export file (`rampart incident export --out FILE`).
    file: PathBuf,
    /// The manufacturer CA certificate (PEM) the device certificates must chain to.
    #[arg(long = "ca", value_name = "CA.pem")]
    ca: PathBuf,
    /// The server's audit key (a verifier key, or a file holding one; `rampart log vkey
    /// AUDIT_KEY`): the audit head must be signed by it. Repeat for a rotated key.
    #[arg(long = "anchor-key", value_name = "KEY", required = true)]
    anchor_keys: Vec<String>,
    /// The transparency log's witness policy (log key, origin, witnesses, quorum): every
    /// bundle's inclusion proof is checked against a checkpoint it accepts. Without it the
    /// inclusion is not checked (and the output says so).
    #[arg(long = "log-policy", value_name = "FILE")]
    log_policy: Option<PathBuf>,
}

pub fn run(cmd: IncidentExportCommand) -> anyhow::Result<()> {
    match cmd {
        IncidentExportCommand::Export(args) => export(&args),
        IncidentExportCommand::VerifyExport(args) => verify_export(&args),
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    let path = format!(
        "/api/v1/incidents/{}/export",
        crate::shared::api_client::path_segment(&args.id)
    );
    let (status, text) = client.call_text("GET", &path, None)?;
    if status != 200 {
        let value: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        anyhow::bail!(
            "exporting incident {}: {status} {}: {}",
            args.id,
            value["error"].as_str().unwrap_or(""),
            value["detail"].as_str().unwrap_or("")
        );
    }
    let document: rampart_incident::custody::Export =
        serde_json::from_str(&text).context("the server's answer is not an incident export")?;
    write_whole(&args.out, text.as_bytes())?;
    println!(
        "incident {}: {} evidence bundle(s), {} timeline entries, {} audit records written to {}",
        document.incident,
        document.evidence.len(),
        document.timeline.len(),
        document.audit_records.len(),
        args.out.display()
    );
    Ok(())
}

/// Writes `bytes` to a temporary file beside `out`, flushes it, and renames it into place.
fn write_whole(out: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("writing {}", out.display()))?;
    file.persist(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}

fn verify_export(args: &VerifyExportArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    if size > MAX_EXPORT_FILE {
        anyhow::bail!(
            "{} is {size} bytes, more than any export this verifier reads ({MAX_EXPORT_FILE})",
            args.file.display()
        );
    }
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let keys = args
        .anchor_keys
        .iter()
        .map(|k| crate::commands::audit::read_anchor_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let policy = args
        .log_policy
        .as_ref()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            rampart_log::policy::WitnessPolicy::parse(&text)
                .with_context(|| format!("{} is not a witness policy", path.display()))
        })
        .transpose()?;
    let verified = rampart_incident::custody::verify_export(&bytes, &keys, policy.as_ref())
        .with_context(|| format!("{} does not verify", args.file.display()))?;
    let ca_pem =
        std::fs::read(&args.ca).with_context(|| format!("reading {}", args.ca.display()))?;
    let ca = pem::parse(&ca_pem)
        .with_context(|| format!("{} is not a PEM certificate", args.ca.display()))?;
    for (request, certificate, presented_at) in &verified.certificates {
        check_chain(ca.contents(), certificate, *presented_at).with_context(|| {
            format!(
                "{} does not verify: evidence {request}: the device certificate it was uploaded with",
                args.file.display()
            )
        })?;
    }
    println!(
        "incident {}: {} evidence bundle(s) verified (signatures, hashes, requests{}), device certificates chain to {}, audit records {}..={} link to a head signed by the audit key; transparency-log inclusion {}",
        verified.incident,
        verified.bundles.len(),
        if verified.bundles.iter().any(|(_, _, quoted)| *quoted) {
            ", TPM quotes"
        } else {
            ""
        },
        args.ca.display(),
        verified.audit_range.0,
        verified.audit_range.1,
        if verified.log_checked {
            "verified"
        } else {
            "NOT checked (give --log-policy FILE)"
        }
    );
    for (request, sha256, quoted) in &verified.bundles {
        println!(
            "  {request}  sha256 {sha256}{}",
            if *quoted { "  (TPM quote checked)" } else { "" }
        );
    }
    Ok(())
}

/// The certificate chains to the CA and was valid when it was presented.
fn check_chain(ca_der: &[u8], certificate: &[u8], presented_at: i64) -> anyhow::Result<()> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls_pki_types::CertificateDer::from(ca_der.to_vec()))
        .context("the CA certificate is not usable as a root")?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        std::sync::Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .context("building the certificate verifier")?;
    let when = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(presented_at).unwrap_or(0),
    ));
    verifier
        .verify_client_cert(
            &rustls_pki_types::CertificateDer::from(certificate.to_vec()),
            &[],
            when,
        )
        .map_err(|e| anyhow::anyhow!("it does not chain to the CA: {e}"))?;
    Ok(())
}
