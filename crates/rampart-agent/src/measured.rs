//! Measured boot where no bootloader measures: once per boot, the agent extends its PCR
//! (`tpm.pcr`, 13 by default) with the booted slot image's SHA-256 and the release it claims
//! ([`rampart_attest::measure::boot_log`] builds the two events), and keeps the events as this
//! boot's measurement log (TCG crypto-agile format) for the quotes it sends.
//!
//! A restart of the agent within the same boot must not extend again (the PCR would then hold
//! events its log does not show, and every quote of this boot would fail). The log is stored
//! after the extends, so an agent stopped in between (killed, or the state directory's write
//! cut) finds no log for this boot; it then reads the PCR (a quote of that PCR alone: its
//! digest is the SHA-256 of the PCR's value) and extends only the events the PCR does not hold
//! yet. A PCR value no prefix of this boot's events explains is refused: another program
//! extends the agent's PCR.

use rampart_attest::device::TpmDevice;
use rampart_attest::eventlog::{Event, extend_sha256};
use rampart_attest::measure::{DEFAULT_AGENT_PCR, boot_log};
use rampart_attest::wire::{Attest, Attested};
use rampart_boot::flow::{AgentState, Reason};

use crate::device::Device;
use crate::platform::{Platform, tpm_refusal};
use crate::source::Refusal;

/// What [`Device::measure_boot`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Measured {
    /// The device has no TPM.
    NoTpm,
    /// This boot was measured before (its log is stored).
    Already,
    /// The booted slot's content is unknown (a rebuilt state): nothing to claim.
    Unknown,
    /// Extended `extended` events (fewer than the log's when a restarted agent found some in
    /// the PCR already) and stored the log.
    Extended { extended: usize },
}

impl<P: Platform> Device<P> {
    /// Measures the running boot once (see the module documentation).
    pub fn measure_boot(&mut self, state: &AgentState) -> Result<Measured, Refusal> {
        if self.platform.tpm().is_none() {
            return Ok(Measured::NoTpm);
        }
        let booted = self.platform.booted_slot(&self.config)?;
        let boot_id = self.boot_id()?;
        if self.platform.boot_log(&self.config, &boot_id)?.is_some() {
            return Ok(Measured::Already);
        }
        let Some(content) = state.slots.get(&booted) else {
            return Ok(Measured::Unknown);
        };
        let claimed: [u8; 32] = hex::decode(&content.sha256)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                Refusal::new(
                    Reason::StateCorrupt,
                    format!(
                        "the state says slot {booted} holds {} with sha256 {:?}, which is not a SHA-256 digest",
                        content.target, content.sha256
                    ),
                )
            })?;
        // What the slot really holds, hashed now: a slot changed behind the agent's back
        // (tampered with, or flashed by someone else) is measured as it is, so its quotes fail
        // the golden check. A slot that cannot be read is measured as unreadable, never as the
        // claim. States written before the length was recorded measure the claim.
        let image = match content.length {
            0 => claimed,
            length => self
                .platform
                .hash_slot_image(&self.config, booted, length)
                .unwrap_or_else(|e| {
                    sha256(format!("rampart: slot {booted} unreadable: {e}").as_bytes())
                }),
        };
        let pcr = self
            .config
            .tpm
            .as_ref()
            .map_or(DEFAULT_AGENT_PCR, |t| t.pcr);
        let log = boot_log(pcr, image, &content.target);
        let digests: Vec<[u8; 32]> = log.events.iter().filter_map(Event::sha256).collect();
        let Some(tpm) = self.platform.tpm() else {
            return Ok(Measured::NoTpm);
        };
        let held = events_in_pcr(tpm, pcr, &digests)?;
        for digest in &digests[held..] {
            tpm.extend(pcr, digest).map_err(tpm_refusal)?;
        }
        self.platform
            .store_boot_log(&self.disk, &self.config, &boot_id, &log.encode())?;
        Ok(Measured::Extended {
            extended: digests.len() - held,
        })
    }
}

/// How many of `digests` (in order, from the reset value) SHA-256 PCR `pcr` holds.
fn events_in_pcr(tpm: &mut dyn TpmDevice, pcr: u8, digests: &[[u8; 32]]) -> Result<usize, Refusal> {
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| Refusal::new(Reason::TpmFailed, "the system RNG failed"))?;
    let quote = tpm.quote(&nonce, &[pcr]).map_err(tpm_refusal)?;
    let quoted = quoted_pcr_digest(&quote.message).ok_or_else(|| {
        Refusal::new(
            Reason::TpmFailed,
            "the TPM's quote of the agent's PCR is not a TPMS_ATTEST quote with a SHA-256 PCR digest",
        )
    })?;
    let mut value = [0u8; 32];
    for held in 0..=digests.len() {
        if sha256(&value) == quoted {
            return Ok(held);
        }
        if let Some(digest) = digests.get(held) {
            value = extend_sha256(&value, digest);
        }
    }
    Err(Refusal::new(
        Reason::TpmFailed,
        format!(
            "PCR {pcr} holds a value this boot's measurements do not explain: another program extends PCR {pcr}; give the agent a PCR of its own (tpm.pcr) and reboot"
        ),
    ))
}

/// The pcrDigest of a quote's TPMS_ATTEST.
fn quoted_pcr_digest(message: &[u8]) -> Option<[u8; 32]> {
    match Attest::parse(message).ok()?.attested {
        Attested::Quote(info) => info.pcr_digest.try_into().ok(),
        Attested::Other(_) => None,
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}
