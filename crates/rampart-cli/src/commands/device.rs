//! `rampart device provision`: a device certificate from the manufacturer CA, either with a key
//! made here, or for a certificate signing request made on the device (its key stays in the
//! device's TPM or secure element).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Subcommand;
use rustls_pki_types::CertificateSigningRequestDer;
use rustls_pki_types::pem::PemObject as _;

use super::ca::load_ca;

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Issue a device certificate (OUT/ID.pem): with a new key (OUT/ID.key, mode 0600), or, with
    /// --csr, for the key of a certificate signing request made on the device (no key file: the
    /// key never leaves the device).
    Provision {
        #[arg(long)]
        ca: PathBuf,
        /// The device id (the CSR's subject commonName with --csr, which must then match).
        #[arg(long, required_unless_present = "csr")]
        id: Option<String>,
        /// A PKCS#10 request (PEM or DER) from the device, e.g. `rampart-agent tpm csr`.
        #[arg(long)]
        csr: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

pub fn run(cmd: DeviceCommand) -> anyhow::Result<()> {
    let DeviceCommand::Provision {
        ca,
        id,
        csr,
        out,
        days,
    } = cmd;
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
