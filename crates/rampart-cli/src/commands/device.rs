//! `rampart device provision`: a device key and certificate from the manufacturer CA.

use std::path::PathBuf;

use clap::Subcommand;

use super::ca::load_ca;

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

pub fn run(cmd: DeviceCommand) -> anyhow::Result<()> {
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
