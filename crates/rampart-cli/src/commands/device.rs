//! `rampart device list|show|revoke|reinstate`: the inventory through the management API
//! (`device_inventory.rs`).
//! `rampart device provision`: a device certificate from the manufacturer CA, either with a key
//! made here, or for a certificate signing request made on the device (its key stays in the
//! device's TPM or secure element). `rampart device quarantine|release|quarantined`: the
//! server's quarantine of a device (decision 0031), through the management API. `rampart device
//! reimage`: a forced re-image onto both A/B slots (decision 0032).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;

use super::ca::load_ca;
use crate::shared::api_client::ApiArgs;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// The inventory: list, show, revoke, reinstate.
    #[command(flatten)]
    Inventory(super::device_inventory::InventoryCommand),
    /// Issue a device certificate (OUT/ID.pem): with a new key (OUT/ID.key, mode 0600), or, with
    /// --csr, for the key of a certificate signing request made on the device (no key file: the
    /// key never leaves the device).
    Provision {
        #[arg(long)]
        ca: PathBuf,
        /// The device id (the CSR's subject commonName with --csr, which must then match).
        #[arg(long, required_unless_present = "csr")]
        id: Option<String>,
        /// A PKCS#10 request (PEM or DER) made on the device for its own key (e.g. its TPM key).
        #[arg(long)]
        csr: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Quarantine a device: the server gives it no assignments or campaign waves and answers
    /// it only on the quarantine routes, whether or not it cooperates; its polls carry a signed
    /// instruction for its containment hook. Only `rampart device release` ends it.
    Quarantine {
        #[command(flatten)]
        api: ApiArgs,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// The incident it belongs to (its timeline records it).
        #[arg(long, default_value = "")]
        incident: String,
        /// Also revoke the device's certificate (after the quarantine is written).
        #[arg(long)]
        revoke: bool,
    },
    /// Release a quarantined device (the only way a quarantine ends; audited).
    Release {
        #[command(flatten)]
        api: ApiArgs,
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Force a re-image (incident response): the device writes the release into its inactive
    /// slot even over the same release, boots and checks it, then writes it into the other slot
    /// too. No soft check or maintenance window defers it; a quarantined device still gets it.
    Reimage {
        #[command(flatten)]
        api: ApiArgs,
        id: String,
        /// The release (target path); without it, the device's last attested-good release.
        #[arg(long)]
        release: Option<String>,
    },
    /// List quarantined devices, oldest first.
    Quarantined {
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub fn run(cmd: DeviceCommand) -> anyhow::Result<()> {
    let (ca, id, csr, out, days) = match cmd {
        DeviceCommand::Inventory(c) => return super::device_inventory::run(c),
        DeviceCommand::Provision {
            ca,
            id,
            csr,
            out,
            days,
        } => (ca, id, csr, out, days),
        DeviceCommand::Quarantine {
            api,
            id,
            reason,
            incident,
            revoke,
        } => {
            let answer = api.client()?.ok(
                "POST",
                &format!("/api/v1/devices/{id}/quarantine"),
                Some(serde_json::json!({"reason": reason, "incident": incident, "revoke": revoke})),
            )?;
            let q = &answer["quarantine"];
            if answer["newly_quarantined"] == true {
                println!("quarantined {id} (since {})", q["since"]);
            } else {
                println!(
                    "{id} was already quarantined (since {}, by {})",
                    q["since"], q["actor"]
                );
            }
            if revoke {
                println!("revoked {id}'s certificate");
            }
            return Ok(());
        }
        DeviceCommand::Release { api, id, reason } => {
            api.client()?.ok(
                "POST",
                &format!("/api/v1/devices/{id}/release"),
                Some(serde_json::json!({"reason": reason})),
            )?;
            println!("released {id}: its next polls carry a signed release statement");
            return Ok(());
        }
        DeviceCommand::Reimage { api, id, release } => {
            let body = match release {
                Some(r) => serde_json::json!({"release": r}),
                None => serde_json::json!({}),
            };
            let answer =
                api.client()?
                    .ok("POST", &format!("/api/v1/devices/{id}/reimage"), Some(body))?;
            let a = &answer["assignment"];
            let why = if answer["release_chosen"] == "last_attested" {
                " (its last attested-good release)"
            } else {
                ""
            };
            println!(
                "re-imaging {id} to {}{why}: assignment {}; it reports `installed` once both slots hold it",
                a["target"].as_str().unwrap_or(""),
                a["id"].as_str().unwrap_or("")
            );
            return Ok(());
        }
        DeviceCommand::Quarantined { api } => {
            let answer = api
                .client()?
                .ok("GET", "/api/v1/quarantine?limit=1000", None)?;
            for q in answer["devices"].as_array().into_iter().flatten() {
                println!(
                    "{}\tsince {}\t{}\t{}\thook {}",
                    q["device_id"].as_str().unwrap_or(""),
                    q["since"],
                    if q["incident_id"] == "" {
                        q["actor"].as_str().unwrap_or("")
                    } else {
                        q["incident_id"].as_str().unwrap_or("")
                    },
                    q["reason"].as_str().unwrap_or(""),
                    q["ack_hook"].as_str().unwrap_or("not acknowledged"),
                );
            }
            return Ok(());
        }
    };
    let ca = load_ca(&ca)?;
    let Some(csr) = csr else {
        let id = id.context("--id names the device to provision")?;
        let issued = ca.issue_device(&id, days)?;
        std::fs::create_dir_all(&out)?;
        rampart_pki::write_private_key_pem(&out.join(format!("{id}.key")), &issued.key_pem)?;
        write_certificate(&out, &id, &issued.cert_pem)?;
        println!(
            "provisioned device {id} (certificate serial {})",
            issued.serial
        );
        return Ok(());
    };
    let request = read_request(&csr)?;
    let (id, cert_pem) = ca
        .issue_device_for_request(&request, id.as_deref(), days)
        .with_context(|| format!("{} was not certified", csr.display()))?;
    std::fs::create_dir_all(&out)?;
    write_certificate(&out, &id, &cert_pem)?;
    let serial = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .ok()
        .and_then(|der| rampart_pki::serial_hex_from_cert(&der))
        .unwrap_or_default();
    println!("provisioned device {id} for its own key (certificate serial {serial})");
    Ok(())
}

fn write_certificate(out: &std::path::Path, id: &str, pem: &str) -> anyhow::Result<()> {
    rampart_tuf_client::store::write_atomic(&out.join(format!("{id}.pem")), pem.as_bytes())?;
    Ok(())
}

/// The request's DER, from a PEM `CERTIFICATE REQUEST` or a DER file, read with the size limit
/// first.
fn read_request(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    // PEM is a third larger than the DER it holds, plus its armour.
    let limit = rampart_pki::csr::MAX_CSR_LEN * 2;
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .with_context(|| {
            format!(
                "cannot open the certificate signing request {}",
                path.display()
            )
        })?
        .take(limit as u64 + 1)
        .read_to_end(&mut bytes)?;
    anyhow::ensure!(
        bytes.len() <= limit,
        "{} is larger than {limit} bytes: not a device's certificate signing request",
        path.display()
    );
    if bytes.starts_with(b"-----BEGIN") {
        let der = CertificateSigningRequestDer::from_pem_slice(&bytes).with_context(|| {
            format!(
                "{} holds no PEM CERTIFICATE REQUEST (or NEW CERTIFICATE REQUEST)",
                path.display()
            )
        })?;
        Ok(der.as_ref().to_vec())
    } else {
        Ok(bytes)
    }
}
