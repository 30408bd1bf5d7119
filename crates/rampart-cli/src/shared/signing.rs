//! Key references and note keys as the commands read them.

use std::path::Path;

use anyhow::Context;
use rampart_keys::{SignError, Signer, open_signer};
use rampart_log::note::NoteSigner;
use rampart_log::policy::WitnessPolicy;

/// Makes relative key-file references absolute, so rampart-repo.json works from any directory.
pub fn absolute_ref(r: &str) -> anyhow::Result<String> {
    if r.starts_with("pkcs11:") {
        return Ok(r.to_string());
    }
    let path = Path::new(r.strip_prefix("file:").unwrap_or(r));
    let abs =
        std::fs::canonicalize(path).with_context(|| format!("key file {}", path.display()))?;
    Ok(format!("file:{}", abs.display()))
}

pub fn absolute_refs(refs: &[String]) -> anyhow::Result<Vec<String>> {
    refs.iter().map(|r| absolute_ref(r)).collect()
}

pub fn opener() -> impl Fn(&str) -> Result<Box<dyn Signer>, SignError> {
    |r: &str| open_signer(r)
}

/// Reads a note signing key file (`PRIVATE+KEY+...`).
pub fn read_note_key(path: &Path) -> anyhow::Result<NoteSigner> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?;
    NoteSigner::parse_signer_key(text.trim())
        .with_context(|| format!("{} is not a note signing key", path.display()))
}

pub fn parse_policy_file(path: &Path) -> anyhow::Result<WitnessPolicy> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading policy {}", path.display()))?;
    text.parse::<WitnessPolicy>()
        .with_context(|| format!("{} is not a witness policy", path.display()))
}
