//! The signed quarantine instruction a poll answer carries to a quarantined (or just released)
//! device: a `rampart-quarantine` statement signed with the director's online key over its
//! canonical JSON (`rampart_incident::instruction`), which the agent checks against the director
//! root it already trusts. Signed copies are cached per device while more than half their
//! validity remains, so a poll answer (and its ETag) stays the same between polls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rampart_incident::instruction::{QUARANTINE_TYPE, signing_bytes};
use rampart_keys::Signer;
use rampart_protocol::{
    InstructionSignature, QuarantineState, QuarantineStatement, SignedQuarantine,
};

/// Devices whose signed instruction is kept in memory at most.
pub const MAX_CACHED_INSTRUCTIONS: usize = 100_000;

/// Signs quarantine instructions with the director's online key.
pub(crate) struct InstructionSigner {
    signer: Arc<dyn Signer>,
    validity_secs: i64,
    cache: Mutex<HashMap<String, SignedQuarantine>>,
}

impl InstructionSigner {
    /// `validity_secs`: how long each statement stays valid (the director's targets expiry).
    pub(crate) fn new(signer: Arc<dyn Signer>, validity_secs: i64) -> Self {
        Self {
            signer,
            validity_secs: validity_secs.max(120),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The signed statement that `device_id` is quarantined (or released) by `incident`, as of
    /// `issued` (the quarantine's start, or the release's time). Reuses the cached copy of the
    /// same statement while more than half its validity remains.
    pub(crate) fn statement(
        &self,
        device_id: &str,
        incident: &str,
        state: QuarantineState,
        issued: i64,
        now: i64,
    ) -> Result<SignedQuarantine, String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signed) = cache.get(device_id) {
            let s = &signed.signed;
            if s.incident == incident
                && s.state == state
                && s.issued == issued
                && s.expires - now > self.validity_secs / 2
            {
                return Ok(signed.clone());
            }
        }
        let statement = QuarantineStatement {
            kind: QUARANTINE_TYPE.into(),
            device_id: device_id.to_owned(),
            incident: incident.to_owned(),
            state,
            containment: true,
            issued,
            expires: now.saturating_add(self.validity_secs),
        };
        let bytes = signing_bytes(&statement).map_err(|e| e.to_string())?;
        let sig = self
            .signer
            .sign(&bytes)
            .map_err(|e| format!("signing a quarantine instruction: {e}"))?;
        let signed = SignedQuarantine {
            signed: statement,
            signatures: vec![InstructionSignature {
                keyid: self.signer.key_id(),
                sig: hex::encode(sig),
            }],
        };
        if cache.len() >= MAX_CACHED_INSTRUCTIONS && !cache.contains_key(device_id) {
            // Bounded: drop one entry (it is re-signed on its next poll).
            if let Some(victim) = cache.keys().next().cloned() {
                cache.remove(&victim);
            }
        }
        cache.insert(device_id.to_owned(), signed.clone());
        Ok(signed)
    }
}
