//! `rampart attest ...`: remote attestation offline. `check-quote` verifies a TPM2_Quote from the
//! same files, in the same formats, as tpm2-tools' `tpm2_checkquote`, with the checks
//! tpm2-tools 5.4 leaves out (the TPM_GENERATED magic, the PCR selection): the verification is
//! the server's own (`rampart_attest::quote`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use rampart_attest::pcr::{PcrSelection, PcrValues};
use rampart_attest::quote::{AttestationKey, QuoteError, VerifiedQuote, verify_quote};
use rampart_attest::wire::{Attest, Attested, MAX_ATTEST_SIZE, MAX_SIGNATURE_SIZE, Public};

use crate::shared::files::read_bounded;

/// Largest AK file read (a PEM RSA-4096 key is under 1 KiB).
const MAX_AK_FILE: usize = 16 * 1024;

#[derive(clap::Subcommand)]
pub enum AttestCommand {
    /// Verify a TPM2_Quote offline (the inputs of tpm2_checkquote): exit 0 and print the PCR
    /// values it vouches for, or fail saying which check failed.
    CheckQuote(CheckQuoteArgs),
    /// Approve a TPM's endorsement key (a TPM without an EK certificate) so its device may
    /// enrol an attestation key (management API).
    ApproveEk(super::attest_fleet::ApproveEkArgs),
    /// A device's attestation (attested, failed with the reason, or stale), or the fleet's
    /// counts (management API).
    Status(super::attest_fleet::StatusArgs),
}

#[derive(clap::Args)]
pub struct CheckQuoteArgs {
    /// The attestation key: PEM or DER SubjectPublicKeyInfo (`tpm2_createak -f pem`), or its
    /// TPM2B_PUBLIC / TPMT_PUBLIC (`tpm2_createak -u` in the default format).
    #[arg(long, short = 'u', value_name = "AK")]
    ak_public: PathBuf,
    /// The quoted TPMS_ATTEST (`tpm2_quote -m`).
    #[arg(long, short = 'm', value_name = "QUOTE.msg")]
    message: PathBuf,
    /// The TPMT_SIGNATURE (`tpm2_quote -s`).
    #[arg(long, short = 's', value_name = "QUOTE.sig")]
    signature: PathBuf,
    /// The PCR values (`tpm2_quote -o`).
    #[arg(long, short = 'f', value_name = "PCRS")]
    pcrs: PathBuf,
    /// The nonce the quote must carry, in hex (`tpm2_quote -q`).
    #[arg(long, short = 'q', value_name = "HEX")]
    nonce: String,
    /// The PCRs the quote must cover exactly, e.g. sha256:0,1,16 (default: any; the PCR file
    /// must name exactly the quoted PCRs either way).
    #[arg(long, short = 'l', value_name = "SELECTION")]
    pcr_list: Option<String>,
    /// Print the result (or the failed check) as JSON on standard output.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: AttestCommand) -> anyhow::Result<()> {
    match cmd {
        AttestCommand::CheckQuote(args) => check_quote(&args),
        AttestCommand::ApproveEk(args) => super::attest_fleet::approve_ek(&args),
        AttestCommand::Status(args) => super::attest_fleet::status(&args),
    }
}

fn check_quote(args: &CheckQuoteArgs) -> anyhow::Result<()> {
    let ak = load_ak(&args.ak_public)?;
    let message = read_bounded(&args.message, MAX_ATTEST_SIZE, "the quote message")?;
    let signature = read_bounded(&args.signature, MAX_SIGNATURE_SIZE, "the quote signature")?;
    let pcr_file = read_bounded(
        &args.pcrs,
        rampart_attest::pcr::MAX_PCR_FILE_SIZE,
        "the PCR file",
    )?;
    let nonce = parse_nonce(&args.nonce)?;
    let required = args
        .pcr_list
        .as_deref()
        .map(PcrSelection::parse)
        .transpose()?;
    // A malformed PCR file is refused like any other failed check (named, and in --json).
    let verified = PcrValues::parse_file(&pcr_file)
        .map_err(QuoteError::PcrValues)
        .and_then(|pcrs| {
            // Nothing required: whatever the quote covers (as tpm2_checkquote), still checked
            // against the PCR file's selection. A message that does not parse fails below.
            let required = required.unwrap_or_else(|| {
                quoted_selection(&message).unwrap_or_else(|| pcrs.selection().clone())
            });
            verify_quote(&message, &signature, &pcrs, &ak, &nonce, &required)
        });
    match verified {
        Ok(verified) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&verified_json(&verified))?
                );
            } else {
                print_verified(&verified);
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                let refused = serde_json::json!({
                    "verified": false,
                    "check": e.check(),
                    "reason": e.to_string(),
                });
                println!("{}", serde_json::to_string_pretty(&refused)?);
            }
            let check = e.check();
            Err(anyhow::Error::new(e).context(format!(
                "quote {} refused by the {check} check",
                args.message.display()
            )))
        }
    }
}

/// The selection a quote message lists, if it parses as a quote.
fn quoted_selection(message: &[u8]) -> Option<PcrSelection> {
    match Attest::parse(message).ok()?.attested {
        Attested::Quote(info) => PcrSelection::from_wire(&info.pcr_select).ok(),
        Attested::Other(_) => None,
    }
}

/// The AK in any of the forms tpm2-tools writes: PEM, DER SPKI, TPM2B_PUBLIC, TPMT_PUBLIC.
fn load_ak(path: &Path) -> anyhow::Result<AttestationKey> {
    let bytes = read_bounded(path, MAX_AK_FILE, "the attestation key")?;
    let what = || format!("reading the attestation key {}", path.display());
    if bytes.starts_with(b"-----BEGIN") {
        let pem = pem::parse(&bytes).with_context(what)?;
        if pem.tag() != "PUBLIC KEY" {
            anyhow::bail!(
                "{}: a PEM {:?}, not a PUBLIC KEY (export the AK with `tpm2_readpublic -f pem`)",
                what(),
                pem.tag()
            );
        }
        return AttestationKey::from_spki_der(pem.contents()).with_context(what);
    }
    if bytes.first() == Some(&0x30) {
        return AttestationKey::from_spki_der(&bytes).with_context(what);
    }
    if let Ok(public) = Public::parse_sized(&bytes).or_else(|_| Public::parse(&bytes)) {
        return Ok(AttestationKey::from_public(&public));
    }
    let sized = Public::parse_sized(&bytes).err();
    anyhow::bail!(
        "{}: neither a PEM or DER public key nor a TPM2B_PUBLIC/TPMT_PUBLIC{}",
        what(),
        sized
            .map(|e| format!(" (as TPM2B_PUBLIC: {e})"))
            .unwrap_or_default()
    )
}

/// Hex as tpm2-tools takes it, with or without `0x`.
fn parse_nonce(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits = text.strip_prefix("0x").unwrap_or(text);
    let nonce = hex::decode(digits).with_context(|| {
        format!(
            "--nonce {text:?} is not hex (give the bytes passed to tpm2_quote -q, e.g. 0badc0de)"
        )
    })?;
    if nonce.is_empty() || nonce.len() > rampart_attest::wire::MAX_DIGEST_SIZE {
        anyhow::bail!(
            "--nonce is {} bytes; a TPM nonce is 1 to {} bytes",
            nonce.len(),
            rampart_attest::wire::MAX_DIGEST_SIZE
        );
    }
    Ok(nonce)
}

fn print_verified(verified: &VerifiedQuote) {
    let c = &verified.clock_info;
    println!(
        "quote verified: signed by the attestation key, made by the TPM, nonce {}, PCRs {}",
        hex::encode(&verified.nonce),
        verified.selection
    );
    println!(
        "clock: {} ms, reset count {}, restart count {}, safe {}; firmware version {:#018x}",
        c.clock,
        c.reset_count,
        c.restart_count,
        if c.safe { "yes" } else { "no" },
        verified.firmware_version
    );
    println!("pcrs:");
    let mut bank = None;
    for (hash, pcr, value) in verified.pcrs.iter() {
        if bank != Some(hash) {
            println!("  {hash}:");
            bank = Some(hash);
        }
        println!("    {pcr:<2}: 0x{}", hex::encode(value));
    }
}

fn verified_json(verified: &VerifiedQuote) -> serde_json::Value {
    let mut banks = serde_json::Map::new();
    for (hash, pcr, value) in verified.pcrs.iter() {
        let bank = banks
            .entry(hash.name())
            .or_insert_with(|| serde_json::Value::Object(Default::default()));
        bank[pcr.to_string()] = serde_json::Value::String(hex::encode(value));
    }
    let c = &verified.clock_info;
    serde_json::json!({
        "verified": true,
        "nonce": hex::encode(&verified.nonce),
        "selection": verified.selection.to_string(),
        "clock": {
            "clock": c.clock,
            "reset_count": c.reset_count,
            "restart_count": c.restart_count,
            "safe": c.safe,
        },
        "firmware_version": verified.firmware_version,
        "qualified_signer": hex::encode(&verified.qualified_signer),
        "pcrs": banks,
    })
}
