//! `rampart ca ...`, `rampart device provision` and `rampart audit ...`: device identity for
//! factories and tests, and the offline audit-log checks.

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

#[derive(Subcommand)]
pub enum DeviceCommand {
    /// Issue a device key and certificate (OUT/ID.pem, OUT/ID.key with mode 0600).
    Provision {
        #[arg(long)]
        ca: PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify an exported audit log (JSON Lines): any edited, removed, duplicated or reordered
    /// record fails, naming it. With --head and --count (a published head), a removed tail too.
    Verify {
        /// An exported log (JSON Lines); or give --db to check the server's stored log.
        #[arg(required_unless_present = "db", conflicts_with = "db")]
        file: Option<PathBuf>,
        /// The server's database (sqlite://PATH or postgres://...).
        #[arg(long)]
        db: Option<String>,
        /// Expected head hash (hex) of the first --count records.
        #[arg(long, requires = "count")]
        head: Option<String>,
        #[arg(long, requires = "head")]
        count: Option<u64>,
    },
    /// Convert an exported audit log (JSON Lines) to CSV or a JSON array on stdout.
    Export {
        /// An exported log (JSON Lines); or give --db to read the server's stored log.
        #[arg(required_unless_present = "db", conflicts_with = "db")]
        file: Option<PathBuf>,
        /// The server's database (sqlite://PATH or postgres://...).
        #[arg(long)]
        db: Option<String>,
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

fn load_ca(dir: &Path) -> anyhow::Result<CertificateAuthority> {
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

pub fn ca_command(cmd: CaCommand) -> anyhow::Result<()> {
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

pub fn device_command(cmd: DeviceCommand) -> anyhow::Result<()> {
    let DeviceCommand::Provision { ca, id, out, days } = cmd;
    let ca = load_ca(&ca)?;
    let issued = ca.issue_device(&id, days)?;
    std::fs::create_dir_all(&out)?;
    rampart_pki::write_private_key_pem(&out.join(format!("{id}.key")), &issued.key_pem)?;
    rampart_tuf_client::store::write_atomic(
        &out.join(format!("{id}.pem")),
        issued.cert_pem.as_bytes(),
    )?;
    println!(
        "provisioned device {id} (certificate serial {})",
        issued.serial
    );
    Ok(())
}

fn read_records(
    file: Option<&Path>,
    db: Option<&str>,
) -> anyhow::Result<Vec<rampart_audit::AuditRecord>> {
    let (bytes, source) = match (file, db) {
        (Some(file), _) => (
            std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
            file.display().to_string(),
        ),
        (None, Some(url)) => (
            crate::server::audit_jsonl_from_db(url)?,
            "the stored audit log".to_owned(),
        ),
        (None, None) => bail!("give an exported log file or --db URL"),
    };
    rampart_audit::parse_jsonl(bytes)
        .with_context(|| {
            format!("{source} does not parse as an audit log: not an audit export (JSON Lines), or damaged or tampered with")
        })
}

pub fn audit_command(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify {
            file,
            db,
            head,
            count,
        } => {
            let records = read_records(file.as_deref(), db.as_deref())?;
            let expected = match (head, count) {
                (Some(h), Some(c)) => {
                    let h: [u8; 32] = hex::decode(&h)
                        .ok()
                        .and_then(|v| v.try_into().ok())
                        .context("--head must be 64 hex characters")?;
                    Some((h, c))
                }
                _ => None,
            };
            let v =
                rampart_audit::verify_against(&records, expected).context("AUDIT LOG TAMPERED")?;
            println!("ok: {} records, head {}", v.count, hex::encode(v.head));
        }
        AuditCommand::Export { file, db, format } => {
            let records = read_records(file.as_deref(), db.as_deref())?;
            match format.as_str() {
                "jsonl" => print!("{}", rampart_audit::to_jsonl(&records)),
                "csv" => print!("{}", rampart_audit::to_csv(&records)),
                "json" => println!("{}", serde_json::to_string_pretty(&records)?),
                other => bail!("unknown --format {other:?}: use csv, json or jsonl"),
            }
        }
    }
    Ok(())
}
