//! `rampart ca ...`: the manufacturer CA for factories and tests (create it, issue the server
//! certificate, revoke certificates and write the CRL).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use clap::Subcommand;
use rampart_pki::CertificateAuthority;

#[derive(Subcommand)]
pub enum CaCommand {
    /// Create a manufacturer CA in DIR (ca.pem, ca.key with mode 0600, an empty CRL).
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "Rampart manufacturer CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue the update server's TLS certificate (DNS names and IP addresses).
    ServerCert {
        #[arg(long)]
        ca: PathBuf,
        /// A DNS name or IP address (repeat).
        #[arg(long = "name", required = true)]
        names: Vec<String>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
    /// Revoke a certificate by serial (hex) and write a new CRL (crl.pem) for the server.
    Revoke {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        serial: String,
    },
}

pub(crate) fn load_ca(dir: &Path) -> anyhow::Result<CertificateAuthority> {
    let cert = std::fs::read_to_string(dir.join("ca.pem"))
        .with_context(|| format!("reading {}/ca.pem", dir.display()))?;
    let key = std::fs::read_to_string(dir.join("ca.key"))
        .with_context(|| format!("reading {}/ca.key", dir.display()))?;
    Ok(CertificateAuthority::load(&cert, &key)?)
}

/// Writes the CRL for the serials listed in DIR/revoked (one `serial unix-time` a line).
fn write_crl(ca: &CertificateAuthority, dir: &Path) -> anyhow::Result<usize> {
    let list = std::fs::read_to_string(dir.join("revoked")).unwrap_or_default();
    let mut revoked = Vec::new();
    for line in list.lines().filter(|l| !l.trim().is_empty()) {
        let (serial, t) = line
            .split_once(' ')
            .context("malformed line in the revoked list")?;
        let t: u64 = t
            .trim()
            .parse()
            .context("malformed time in the revoked list")?;
        revoked.push((
            serial.to_string(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(t),
        ));
    }
    let number = revoked.len() as u64 + 1;
    let now = SystemTime::now();
    let crl = ca.crl(
        &revoked,
        now,
        now + Duration::from_secs(30 * 86_400),
        number,
    )?;
    rampart_tuf_client::store::write_atomic(&dir.join("crl.pem"), crl.as_bytes())?;
    Ok(revoked.len())
}

pub fn run(cmd: CaCommand) -> anyhow::Result<()> {
    match cmd {
        CaCommand::Init { dir, name, days } => {
            if dir.join("ca.key").exists() {
                bail!(
                    "{} already holds a CA; refusing to overwrite its key",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir)?;
            let ca = CertificateAuthority::generate(&name, days)?;
            rampart_pki::write_private_key_pem(&dir.join("ca.key"), &ca.key_pem())?;
            rampart_tuf_client::store::write_atomic(&dir.join("ca.pem"), ca.cert_pem().as_bytes())?;
            write_crl(&ca, &dir)?;
            println!(
                "created CA {name:?} in {} (serial {})",
                dir.display(),
                ca.serial()
            );
        }
        CaCommand::ServerCert {
            ca,
            names,
            out,
            days,
        } => {
            let ca = load_ca(&ca)?;
            let issued = ca.issue_server(&names, days)?;
            std::fs::create_dir_all(&out)?;
            rampart_pki::write_private_key_pem(&out.join("server.key"), &issued.key_pem)?;
            rampart_tuf_client::store::write_atomic(
                &out.join("server.pem"),
                issued.cert_pem.as_bytes(),
            )?;
            println!(
                "issued server certificate for {names:?} (serial {})",
                issued.serial
            );
        }
        CaCommand::Revoke { ca: dir, serial } => {
            let ca = load_ca(&dir)?;
            let serial = serial
                .trim()
                .trim_start_matches("0x")
                .replace(':', "")
                .to_ascii_lowercase();
            if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!("--serial must be the certificate serial in hex");
            }
            let mut list = std::fs::read_to_string(dir.join("revoked")).unwrap_or_default();
            if list
                .lines()
                .any(|l| l.split(' ').next() == Some(serial.as_str()))
            {
                bail!("serial {serial} is already revoked");
            }
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)?
                .as_secs();
            list.push_str(&format!("{serial} {now}\n"));
            rampart_tuf_client::store::write_atomic(&dir.join("revoked"), list.as_bytes())?;
            let n = write_crl(&ca, &dir)?;
            println!(
                "revoked {serial}; {}/crl.pem now lists {n} certificate(s): reload the server",
                dir.display()
            );
        }
    }
    Ok(())
}
