//! `rampart attest approve-ek` and `rampart attest status`: the fleet's attestation through the
//! management API (the offline `check-quote` is in `attest`).

use std::path::PathBuf;

use anyhow::Context;
use base64::Engine as _;
use serde_json::json;

use crate::shared::api_client::ApiArgs;

/// Largest EK public file read (a TPMT_PUBLIC is a few hundred bytes).
const MAX_EK_FILE: u64 = 16 * 1024;

#[derive(clap::Args)]
pub struct ApproveEkArgs {
    /// The EK's TPMT_PUBLIC as the TPM marshals it (`tpm2_createek -f tpmt -u EK.pub`, or
    /// `tpm2_readpublic -c 0x81010001 -f tpmt -o EK.pub`).
    file: PathBuf,
    /// Why this TPM is trusted (who checked it, which batch), kept with the approval.
    #[arg(long, default_value = "")]
    note: String,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// One device: its attestation (attested, failed with the reason, or stale). Without it,
    /// the fleet's counts.
    device: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

/// Approves an endorsement key for enrolment (a TPM without an EK certificate).
pub fn approve_ek(args: &ApproveEkArgs) -> anyhow::Result<()> {
    let size = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?
        .len();
    anyhow::ensure!(
        size > 0 && size <= MAX_EK_FILE,
        "{} is {size} bytes; an EK's TPMT_PUBLIC is a few hundred (export it with `tpm2_createek -f tpmt`)",
        args.file.display()
    );
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let answer = args.api.client()?.ok(
        "POST",
        "/api/v1/attestation/approved-eks",
        Some(json!({
            "ek_public": base64::engine::general_purpose::STANDARD.encode(&bytes),
            "note": args.note,
        })),
    )?;
    let digest = answer["ek_digest"].as_str().unwrap_or_default();
    if answer["newly_approved"] == true {
        println!("approved EK sha256:{digest}: a device with this TPM may now enrol");
    } else {
        println!("EK sha256:{digest} was already approved");
    }
    Ok(())
}

/// Prints a device's attestation, or the fleet's counts.
pub fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let client = args.api.client()?;
    match &args.device {
        Some(device) => {
            let answer = client.ok(
                "GET",
                &format!("/api/v1/attestation/devices/{device}"),
                None,
            )?;
            let view = &answer["attestation"];
            println!(
                "{device}: {}",
                view["outcome"].as_str().unwrap_or("unknown")
            );
            if let Some(reason) = view["reason"].as_str().filter(|r| !r.is_empty()) {
                println!("  reason: {reason}");
            }
            if let Some(release) = view["release"].as_str().filter(|r| !r.is_empty()) {
                println!("  release proved: {release}");
            }
            if let Some(until) = view["fresh_until"].as_i64() {
                println!("  last pass fresh until: {until} (unix seconds)");
            }
            println!("  enrolled: {}", view["enrolled"]);
        }
        None => {
            let answer = client.ok("GET", "/api/v1/attestation/status", None)?;
            println!(
                "attested {}, failed {}, stale {} (freshness {} s, PCRs {}, required fleet-wide: {})",
                answer["attested"],
                answer["failed"],
                answer["stale"],
                answer["freshness_secs"],
                answer["pcrs"].as_str().unwrap_or(""),
                answer["required"]
            );
        }
    }
    Ok(())
}
