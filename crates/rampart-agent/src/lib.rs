//! The device side of Rampart, as a library the `rampart-agent` binary (and the demo) use.
#![forbid(unsafe_code)]

pub mod agent_log;
pub mod attest;
pub mod bootenv;
pub mod bootloader;
pub mod bootsim;
pub mod cli_docs;
pub mod cli_output;
pub mod config;
pub mod daemon;
pub mod device;
pub mod director;
pub mod disk;
pub mod evidence;
pub mod health;
pub mod install;
pub mod measured;
pub mod platform;
pub mod quarantine;
pub mod server_client;
pub mod server_update;
pub mod source;
pub mod startup;
pub mod tls;
pub mod tpm;

use std::path::Path;

use anyhow::Context;
use rampart_core::release::ReleaseInfo;
use rampart_log::note::Verifier;
use rampart_log::policy::WitnessPolicy;
use rampart_log::statement::{ReleaseStatement, verify_logged_release};
use rampart_tuf_client::{HttpFetcher, Updater};

/// State file holding the witness policy releases must satisfy.
pub const LOG_POLICY: &str = "log-policy";
/// State file holding the verifier key of the vendor's release key.
pub const RELEASE_KEY: &str = "release-key";

/// When the device was provisioned with a log policy: the release must carry a tlog-proof
/// showing its statement is in the log, cosigned by the witness quorum. Checked offline.
/// Returns what was proven (for the caller to show), or `None` without a log policy.
pub fn check_logged(
    state: &Path,
    up: &mut Updater<HttpFetcher>,
    target: &str,
    info: &rampart_core::metadata::TargetFile,
    release: &ReleaseInfo,
) -> anyhow::Result<Option<String>> {
    let policy = match std::fs::read_to_string(state.join(LOG_POLICY)) {
        Ok(t) => t
            .parse::<WitnessPolicy>()
            .context("the stored log policy is malformed")?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let key = Verifier::parse(std::fs::read_to_string(state.join(RELEASE_KEY))?.trim())
        .context("the stored release key is malformed")?;
    let proof_ref = release
        .tlog_proof
        .as_ref()
        .with_context(|| format!("{target} carries no tlog-proof, but this device only installs releases recorded in the transparency log {}", policy.origin))?;
    let proof_info = up.get_targetinfo(&proof_ref.path)?.with_context(|| {
        format!(
            "the tlog-proof {} is not in the trusted metadata",
            proof_ref.path
        )
    })?;
    let proof = up.fetch_target(&proof_ref.path, &proof_info)?;
    let image_sha256 = info
        .hashes
        .get("sha256")
        .context("the release has no sha256")?;
    let statement = ReleaseStatement::for_release(target, release, image_sha256)?;
    let checkpoint = verify_logged_release(&statement, &proof, &policy, &key)
        .with_context(|| format!("{target} is not proven to be in the transparency log"))?;
    Ok(Some(format!(
        "{target} is in transparency log {} (tree of {} entries, {} witness quorum)",
        checkpoint.origin, checkpoint.size, policy.quorum
    )))
}
