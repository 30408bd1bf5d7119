//! Witness policy (k of n) and the device-side verification of checkpoints and tlog-proofs.
//!
//! # Policy text format
//!
//! One directive per line, `<keyword> <value>`, separated by a single space; lines end in `\n`
//! (the last newline may be omitted). Empty lines and lines starting with `#` are ignored. No
//! other whitespace or control characters are allowed.
//!
//! ```text
//! # Rampart witness policy
//! log example.com/log+1a2b3c4d+AQ...
//! origin example.com/log
//! witness witness.example/w1+5e6f7a8b+BA...
//! witness witness.example/w2+9c0d1e2f+BA...
//! quorum 2
//! ```
//!
//! * `log <vkey>`: exactly once; the log's Ed25519 (`0x01`) verifier key.
//! * `origin <origin>`: at most once; the checkpoint origin line expected (the rest of the line,
//!   verbatim). Defaults to the log key's name.
//! * `witness <vkey>`: zero or more; witness verifier keys, Ed25519 cosignature (`0x04`) keys.
//!   Keys of unknown types (for example ML-DSA-44 cosignatures, `0x06`) are accepted but never
//!   counted.
//! * `quorum <k>`: exactly once; how many distinct witnesses must cosign (decimal, no leading
//!   zeros).
//!
//! Directives may come in any order. [`WitnessPolicy::to_text`] writes `log`, `origin`, the
//! `witness` lines in order, then `quorum`.
//!
//! A policy is rejected when the log key is not an Ed25519 key; a witness key is a plain Ed25519
//! (0x01) key; two witnesses share a name and key ID or a public key, or a witness shares the
//! log's public key (an Ed25519 cosignature does not commit to the witness name, so one key
//! under two names would count twice); the quorum exceeds the number of witnesses; there are
//! more than [`MAX_WITNESSES`] witnesses; or the text is over [`MAX_POLICY_SIZE`] bytes. A quorum
//! of 0 is allowed and means the log's signature alone is trusted.
//!
//! # Verification
//!
//! [`WitnessPolicy::verify_checkpoint`] requires a valid signature by the log key, a checkpoint
//! body for the policy's origin, and valid cosignatures from at least `quorum` distinct
//! witnesses. Signatures from unknown keys are ignored; a signature line from a known key that
//! does not verify rejects the checkpoint (as c2sp.org/signed-note recommends). A witness that
//! cosigns more than once counts once. Cosignature timestamps are not compared with a clock.
//!
//! [`WitnessPolicy::verify_proof`] additionally checks the RFC 6962 inclusion of a leaf hash.

use std::fmt;

use crate::checkpoint::{Checkpoint, CheckpointError, parse_decimal_u64};
use crate::cosignature::{CosignatureError, verify_cosignature};
use crate::note::{KeyType, Note, NoteError, Verifier, excerpt};
use crate::proof::TlogProof;

/// Largest policy text accepted, in bytes.
pub const MAX_POLICY_SIZE: usize = 64 * 1024;
/// Most witnesses a policy may list.
pub const MAX_WITNESSES: usize = 64;

/// Errors from parsing a policy or verifying a checkpoint or proof against it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("policy line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("policy has no log line")]
    MissingLog,
    #[error("policy has no quorum line")]
    MissingQuorum,
    #[error("policy is invalid: {0}")]
    Invalid(String),
    #[error("checkpoint is not a well-formed signed note: {0}")]
    Note(#[from] NoteError),
    #[error("checkpoint is not signed by the log key {log}")]
    NotSignedByLog { log: String },
    #[error("checkpoint carries a signature by the log key {log} that does not verify")]
    InvalidLogSignature { log: String },
    #[error("checkpoint body is malformed: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("proof is for origin {found:?}, expected {expected:?}")]
    OriginMismatch { found: String, expected: String },
    #[error("cosignature by witness {witness} is invalid: {reason}")]
    InvalidCosignature {
        witness: String,
        reason: CosignatureError,
    },
    #[error("checkpoint is cosigned by {valid} of the required {required} witnesses")]
    InsufficientCosignatures { valid: usize, required: usize },
    #[error("proof index {index} is outside the checkpoint's tree of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("inclusion proof does not match the checkpoint root: {0}")]
    InclusionMismatch(#[source] crate::merkle::ProofError),
}

/// Which log to trust, under which origin, and which witnesses must cosign (k of n).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    /// The log's Ed25519 (`0x01`) verifier key.
    pub log: Verifier,
    /// The checkpoint origin line expected.
    pub origin: String,
    /// Witness verifier keys (Ed25519 cosignature, `0x04`; unknown types never count).
    pub witnesses: Vec<Verifier>,
    /// How many distinct witnesses must cosign.
    pub quorum: usize,
}

fn syntax(line: usize, reason: impl Into<String>) -> PolicyError {
    PolicyError::Syntax {
        line,
        reason: reason.into(),
    }
}

impl WitnessPolicy {
    /// A checked policy.
    pub fn new(
        log: Verifier,
        origin: impl Into<String>,
        witnesses: Vec<Verifier>,
        quorum: usize,
    ) -> Result<WitnessPolicy, PolicyError> {
        let p = WitnessPolicy {
            log,
            origin: origin.into(),
            witnesses,
            quorum,
        };
        p.validate()?;
        Ok(p)
    }

    /// Parses the policy text format (see the module documentation).
    pub fn parse(text: &str) -> Result<WitnessPolicy, PolicyError> {
        if text.len() > MAX_POLICY_SIZE {
            return Err(PolicyError::TooLarge {
                size: text.len(),
                max: MAX_POLICY_SIZE,
            });
        }
        let mut log: Option<Verifier> = None;
        let mut origin: Option<String> = None;
        let mut witnesses: Vec<Verifier> = Vec::new();
        let mut quorum: Option<usize> = None;
        for (i, line) in text.split('\n').enumerate() {
            let n = i + 1;
            if line.chars().any(char::is_control) {
                return Err(syntax(
                    n,
                    "the line contains a control character (tab or CR?)",
                ));
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((keyword, value)) = line.split_once(' ') else {
                return Err(syntax(
                    n,
                    format!("expected \"<keyword> <value>\", found {:?}", excerpt(line)),
                ));
            };
            if value.is_empty() || value.starts_with(' ') || value.ends_with(' ') {
                return Err(syntax(
                    n,
                    "the value is empty or has extra spaces around it",
                ));
            }
            match keyword {
                "log" => {
                    if log.is_some() {
                        return Err(syntax(n, "a second log line; a policy names one log key"));
                    }
                    let v =
                        Verifier::parse(value).map_err(|e| syntax(n, format!("log key: {e}")))?;
                    log = Some(v);
                }
                "origin" => {
                    if origin.is_some() {
                        return Err(syntax(n, "a second origin line"));
                    }
                    origin = Some(value.to_owned());
                }
                "witness" => {
                    if witnesses.len() == MAX_WITNESSES {
                        return Err(syntax(n, format!("more than {MAX_WITNESSES} witnesses")));
                    }
                    let v = Verifier::parse(value)
                        .map_err(|e| syntax(n, format!("witness key: {e}")))?;
                    witnesses.push(v);
                }
                "quorum" => {
                    if quorum.is_some() {
                        return Err(syntax(n, "a second quorum line"));
                    }
                    let q = parse_decimal_u64(value)
                        .and_then(|q| usize::try_from(q).ok())
                        .ok_or_else(|| {
                            syntax(
                                n,
                                format!(
                                    "quorum {:?} is not a decimal number without leading zeros",
                                    excerpt(value)
                                ),
                            )
                        })?;
                    quorum = Some(q);
                }
                other => {
                    return Err(syntax(
                        n,
                        format!(
                            "unknown keyword {:?} (expected log, origin, witness or quorum)",
                            excerpt(other)
                        ),
                    ));
                }
            }
        }
        let log = log.ok_or(PolicyError::MissingLog)?;
        let quorum = quorum.ok_or(PolicyError::MissingQuorum)?;
        let origin = origin.unwrap_or_else(|| log.name().to_owned());
        WitnessPolicy::new(log, origin, witnesses, quorum)
    }

    /// The policy text: `log`, `origin`, `witness` lines in order, `quorum`.
    pub fn to_text(&self) -> String {
        let mut out = format!("log {}\norigin {}\n", self.log, self.origin);
        for w in &self.witnesses {
            out.push_str(&format!("witness {w}\n"));
        }
        out.push_str(&format!("quorum {}\n", self.quorum));
        out
    }

    /// Checks the rules listed in the module documentation.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let invalid = |s: String| Err(PolicyError::Invalid(s));
        if self.log.key_type() != KeyType::Ed25519 {
            return invalid(format!(
                "the log key {} must be an Ed25519 (0x01) key, not {}",
                self.log.key_label(),
                self.log.key_type()
            ));
        }
        if self.origin.is_empty()
            || self.origin.chars().any(char::is_control)
            || self.origin.starts_with(' ')
            || self.origin.ends_with(' ')
        {
            return invalid(format!(
                "origin {:?} must be non-empty, without control characters or surrounding spaces",
                excerpt(&self.origin)
            ));
        }
        if self.witnesses.len() > MAX_WITNESSES {
            return invalid(format!(
                "{} witnesses, over the limit of {MAX_WITNESSES}",
                self.witnesses.len()
            ));
        }
        for (i, w) in self.witnesses.iter().enumerate() {
            if KeyType::from_byte(w.key_type().to_byte()) == KeyType::Ed25519 {
                return invalid(format!(
                    "witness {} is a plain Ed25519 (0x01) key; witnesses cosign with Ed25519 cosignature (0x04) keys",
                    w.key_label()
                ));
            }
            if w.public_key() == self.log.public_key() {
                return invalid(format!(
                    "witness {} uses the log's public key",
                    w.key_label()
                ));
            }
            for other in &self.witnesses[..i] {
                if other.name() == w.name() && other.key_id() == w.key_id() {
                    return invalid(format!("witness {} is listed twice", w.key_label()));
                }
                if other.public_key() == w.public_key() {
                    return invalid(format!(
                        "witnesses {} and {} share a public key",
                        other.key_label(),
                        w.key_label()
                    ));
                }
            }
        }
        if self.quorum > self.witnesses.len() {
            return invalid(format!(
                "quorum {} is more than the {} witness(es) listed",
                self.quorum,
                self.witnesses.len()
            ));
        }
        Ok(())
    }

    /// Parses an encoded checkpoint note and verifies it (see
    /// [`WitnessPolicy::verify_checkpoint`]).
    pub fn verify_checkpoint_bytes(&self, note: &[u8]) -> Result<Checkpoint, PolicyError> {
        self.verify_checkpoint(&Note::parse(note)?)
    }

    /// Verifies a checkpoint note against the policy and returns the checkpoint: a valid log
    /// signature, the expected origin, and valid cosignatures from at least `quorum` distinct
    /// witnesses.
    pub fn verify_checkpoint(&self, note: &Note) -> Result<Checkpoint, PolicyError> {
        self.validate()?;

        let log = self.log.key_label();
        let mut log_sigs = note.signatures_from(&self.log).peekable();
        if log_sigs.peek().is_none() {
            return Err(PolicyError::NotSignedByLog { log });
        }
        for sig in log_sigs {
            if !self.log.verify_signature(&note.text, sig) {
                return Err(PolicyError::InvalidLogSignature { log });
            }
        }

        let checkpoint = Checkpoint::parse_body(&note.text)?;
        if checkpoint.origin != self.origin {
            return Err(PolicyError::OriginMismatch {
                found: excerpt(&checkpoint.origin),
                expected: self.origin.clone(),
            });
        }

        let mut counted: Vec<&[u8]> = Vec::new();
        for w in &self.witnesses {
            if KeyType::from_byte(w.key_type().to_byte()) != KeyType::Ed25519Cosignature {
                continue; // unknown types are never trusted
            }
            let mut cosigned = false;
            for sig in note.signatures_from(w) {
                verify_cosignature(w, &note.text, sig).map_err(|reason| {
                    PolicyError::InvalidCosignature {
                        witness: w.key_label(),
                        reason,
                    }
                })?;
                cosigned = true;
            }
            if cosigned && !counted.contains(&w.public_key()) {
                counted.push(w.public_key());
            }
        }
        if counted.len() < self.quorum {
            return Err(PolicyError::InsufficientCosignatures {
                valid: counted.len(),
                required: self.quorum,
            });
        }
        Ok(checkpoint)
    }

    /// The device entry point: verifies the proof's checkpoint against the policy, then the
    /// RFC 6962 inclusion of `leaf_hash` at `proof.index` under the checkpoint's root. Returns
    /// the verified checkpoint. `proof.extra` is not looked at.
    pub fn verify_proof(
        &self,
        leaf_hash: &[u8; 32],
        proof: &TlogProof,
    ) -> Result<Checkpoint, PolicyError> {
        let checkpoint = self.verify_checkpoint(&proof.checkpoint)?;
        if proof.index >= checkpoint.size {
            return Err(PolicyError::IndexOutOfRange {
                index: proof.index,
                size: checkpoint.size,
            });
        }
        crate::merkle::verify_inclusion(
            leaf_hash,
            proof.index,
            checkpoint.size,
            &proof.hashes,
            &checkpoint.root,
        )
        .map_err(PolicyError::InclusionMismatch)?;
        Ok(checkpoint)
    }
}

impl fmt::Display for WitnessPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl std::str::FromStr for WitnessPolicy {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WitnessPolicy::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::{cosign, sign_checkpoint};
    use crate::note::NoteSigner;

    const ORIGIN: &str = "example.com/log";
    const TS: u64 = 1_700_000_000;

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for p in parts {
            ctx.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    fn leaf(data: &[u8]) -> [u8; 32] {
        sha256(&[&[0], data])
    }

    fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
        sha256(&[&[1], l, r])
    }

    /// A 5-leaf RFC 6962 tree, computed by hand: root = H(H(H(l0,l1),H(l2,l3)),l4).
    struct Tree {
        leaves: Vec<[u8; 32]>,
        root: [u8; 32],
    }

    fn tree() -> Tree {
        let leaves: Vec<[u8; 32]> = (0u8..5).map(|i| leaf(&[b'e', i])).collect();
        let h01 = node(&leaves[0], &leaves[1]);
        let h23 = node(&leaves[2], &leaves[3]);
        let root = node(&node(&h01, &h23), &leaves[4]);
        Tree { leaves, root }
    }

    fn proof_for_2(t: &Tree) -> Vec<[u8; 32]> {
        vec![t.leaves[3], node(&t.leaves[0], &t.leaves[1]), t.leaves[4]]
    }

    struct Setup {
        log: NoteSigner,
        witnesses: Vec<NoteSigner>,
        policy: WitnessPolicy,
        checkpoint: Checkpoint,
    }

    fn setup(quorum: usize) -> Setup {
        let log = NoteSigner::from_seed(ORIGIN, [1; 32]).unwrap();
        let witnesses: Vec<NoteSigner> = (0..3u8)
            .map(|i| {
                NoteSigner::cosigner_from_seed(&format!("witness.example/w{i}"), [10 + i; 32])
                    .unwrap()
            })
            .collect();
        let policy = WitnessPolicy::new(
            log.verifier(),
            ORIGIN,
            witnesses.iter().map(NoteSigner::verifier).collect(),
            quorum,
        )
        .unwrap();
        Setup {
            log,
            witnesses,
            policy,
            checkpoint: Checkpoint::new(ORIGIN, 5, tree().root),
        }
    }

    /// The log's checkpoint cosigned by the witnesses with the given indexes.
    fn signed(s: &Setup, cosigners: &[usize]) -> Note {
        let mut note = sign_checkpoint(&s.log, &s.checkpoint).unwrap();
        for &i in cosigners {
            note.signatures
                .push(cosign(&s.witnesses[i], &note.text, TS + i as u64).unwrap());
        }
        note
    }

    #[test]
    fn quorum_counting() {
        let s = setup(2);
        let err = s.policy.verify_checkpoint(&signed(&s, &[0])).unwrap_err();
        assert_eq!(
            err,
            PolicyError::InsufficientCosignatures {
                valid: 1,
                required: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "checkpoint is cosigned by 1 of the required 2 witnesses"
        );
        assert!(s.policy.verify_checkpoint(&signed(&s, &[])).is_err());
        assert_eq!(
            s.policy.verify_checkpoint(&signed(&s, &[0, 2])).unwrap(),
            s.checkpoint
        );
        assert!(s.policy.verify_checkpoint(&signed(&s, &[2, 1, 0])).is_ok());
        // Through the encoding too.
        let bytes = signed(&s, &[1, 2]).to_bytes();
        assert_eq!(
            s.policy.verify_checkpoint_bytes(&bytes).unwrap(),
            s.checkpoint
        );
    }

    #[test]
    fn same_witness_twice_counts_once() {
        let s = setup(2);
        let mut note = signed(&s, &[1]);
        note.signatures
            .push(cosign(&s.witnesses[1], &note.text, TS + 100).unwrap());
        assert_eq!(note.signatures.len(), 3);
        assert_eq!(
            s.policy.verify_checkpoint(&note),
            Err(PolicyError::InsufficientCosignatures {
                valid: 1,
                required: 2
            })
        );
    }

    #[test]
    fn wrong_origin_fails() {
        let s = setup(1);
        let mut other = s.checkpoint.clone();
        other.origin = "example.com/other-log".into();
        let mut note = sign_checkpoint(&s.log, &other).unwrap();
        note.signatures
            .push(cosign(&s.witnesses[0], &note.text, TS).unwrap());
        let err = s.policy.verify_checkpoint(&note).unwrap_err();
        assert_eq!(
            err.to_string(),
            "proof is for origin \"example.com/other-log\", expected \"example.com/log\""
        );
    }

    #[test]
    fn checkpoint_signed_by_another_log_key_fails() {
        let s = setup(1);
        let impostor = NoteSigner::from_seed(ORIGIN, [99; 32]).unwrap();
        let mut note = sign_checkpoint(&impostor, &s.checkpoint).unwrap();
        note.signatures
            .push(cosign(&s.witnesses[0], &note.text, TS).unwrap());
        note.signatures
            .push(cosign(&s.witnesses[1], &note.text, TS).unwrap());
        let err = s.policy.verify_checkpoint(&note).unwrap_err();
        assert!(matches!(err, PolicyError::NotSignedByLog { .. }));
        assert!(err.to_string().contains("not signed by the log key"));

        // The right key id but a forged signature.
        let mut forged = signed(&s, &[0]);
        forged.signatures[0].signature[10] ^= 1;
        assert!(matches!(
            s.policy.verify_checkpoint(&forged),
            Err(PolicyError::InvalidLogSignature { .. })
        ));
    }

    #[test]
    fn bad_cosignature_from_known_witness_rejects() {
        let s = setup(1);
        let mut note = signed(&s, &[0, 1]);
        note.signatures[2].signature[20] ^= 1;
        let err = s.policy.verify_checkpoint(&note).unwrap_err();
        assert!(matches!(err, PolicyError::InvalidCosignature { .. }));
        // A cosignature over another checkpoint does not count either.
        let mut note = signed(&s, &[]);
        let other = Checkpoint::new(ORIGIN, 4, [0; 32]).to_body();
        note.signatures
            .push(cosign(&s.witnesses[0], &other, TS).unwrap());
        assert!(matches!(
            s.policy.verify_checkpoint(&note),
            Err(PolicyError::InvalidCosignature { .. })
        ));
    }

    #[test]
    fn unknown_signatures_are_ignored() {
        let s = setup(1);
        let mut note = signed(&s, &[0]);
        let stranger = NoteSigner::cosigner_from_seed("stranger.example", [50; 32]).unwrap();
        note.signatures
            .push(cosign(&stranger, &note.text, TS).unwrap());
        // Same name as a witness but another key ID: unknown, ignored.
        let mut odd = note.signatures[1].clone();
        odd.key_id = [0, 0, 0, 0];
        note.signatures.push(odd);
        assert!(s.policy.verify_checkpoint(&note).is_ok());
        // A stranger's cosignatures never satisfy the quorum.
        let mut only_stranger = signed(&s, &[]);
        only_stranger
            .signatures
            .push(cosign(&stranger, &only_stranger.text, TS).unwrap());
        assert!(matches!(
            s.policy.verify_checkpoint(&only_stranger),
            Err(PolicyError::InsufficientCosignatures { valid: 0, .. })
        ));
    }

    #[test]
    fn unknown_type_witnesses_never_count() {
        let s = setup(1);
        let w = &s.witnesses[0];
        let mut key = vec![0x06];
        key.extend_from_slice(&w.public_key());
        let id = crate::note::key_id(w.name(), 0x06, &w.public_key());
        let vkey = format!(
            "{}+{}+{}",
            w.name(),
            hex::encode(id),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &key)
        );
        let unknown = Verifier::parse(&vkey).unwrap();
        let policy = WitnessPolicy::new(s.log.verifier(), ORIGIN, vec![unknown], 1).unwrap();
        let mut note = signed(&s, &[]);
        let mut sig = cosign(w, &note.text, TS).unwrap();
        sig.key_id = id;
        note.signatures.push(sig);
        assert!(matches!(
            policy.verify_checkpoint(&note),
            Err(PolicyError::InsufficientCosignatures { valid: 0, .. })
        ));
    }

    #[test]
    fn verify_proof_checks_inclusion() {
        let s = setup(2);
        let t = tree();
        let proof = TlogProof {
            extra: None,
            index: 2,
            hashes: proof_for_2(&t),
            checkpoint: signed(&s, &[0, 1]),
        };
        let parsed = TlogProof::parse(&proof.to_bytes()).unwrap();
        assert_eq!(
            s.policy.verify_proof(&t.leaves[2], &parsed).unwrap(),
            s.checkpoint
        );

        // The last leaf, whose proof is the left subtree root.
        let last = TlogProof {
            index: 4,
            hashes: vec![node(
                &node(&t.leaves[0], &t.leaves[1]),
                &node(&t.leaves[2], &t.leaves[3]),
            )],
            ..proof.clone()
        };
        assert!(s.policy.verify_proof(&t.leaves[4], &last).is_ok());

        // Another leaf at that index fails.
        let err = s.policy.verify_proof(&t.leaves[3], &proof).unwrap_err();
        assert!(matches!(err, PolicyError::InclusionMismatch(_)));
        assert!(
            err.to_string()
                .starts_with("inclusion proof does not match the checkpoint root")
        );
        // A tampered proof hash fails.
        let mut tampered = proof.clone();
        tampered.hashes[1][0] ^= 1;
        assert!(matches!(
            s.policy.verify_proof(&t.leaves[2], &tampered),
            Err(PolicyError::InclusionMismatch(_))
        ));
        // A wrong index fails.
        let wrong_index = TlogProof {
            index: 3,
            ..proof.clone()
        };
        assert!(s.policy.verify_proof(&t.leaves[2], &wrong_index).is_err());
        let out_of_range = TlogProof {
            index: 5,
            ..proof.clone()
        };
        assert_eq!(
            s.policy.verify_proof(&t.leaves[2], &out_of_range),
            Err(PolicyError::IndexOutOfRange { index: 5, size: 5 })
        );
        // Too few cosignatures fail before the Merkle check.
        let weak = TlogProof {
            checkpoint: signed(&s, &[0]),
            ..proof.clone()
        };
        assert!(matches!(
            s.policy.verify_proof(&t.leaves[2], &weak),
            Err(PolicyError::InsufficientCosignatures { .. })
        ));
    }

    #[test]
    fn policy_text_round_trip() {
        let s = setup(2);
        let text = s.policy.to_text();
        assert!(text.starts_with(&format!(
            "log {}\norigin {ORIGIN}\nwitness ",
            s.log.verifier()
        )));
        assert!(text.ends_with("quorum 2\n"));
        assert_eq!(WitnessPolicy::parse(&text).unwrap(), s.policy);

        // Comments, blank lines, any order, no final newline, default origin.
        let mut lines = vec!["# comment".to_string(), String::new(), "quorum 1".into()];
        lines.push(format!("witness {}", s.witnesses[0].verifier()));
        lines.push(format!("log {}", s.log.verifier()));
        let p = WitnessPolicy::parse(&lines.join("\n")).unwrap();
        assert_eq!(p.origin, ORIGIN);
        assert_eq!(p.quorum, 1);
        assert_eq!(p.witnesses.len(), 1);
    }

    #[test]
    fn policy_parse_rejects_bad_input() {
        let s = setup(2);
        let log = format!("log {}", s.log.verifier());
        let w: Vec<String> = s
            .witnesses
            .iter()
            .map(|w| format!("witness {}", w.verifier()))
            .collect();
        let plain_witness = NoteSigner::from_seed("w.example", [30; 32]).unwrap();
        let same_key_other_name =
            NoteSigner::cosigner_from_seed("witness.example/alias", [10; 32]).unwrap();
        let log_as_witness = NoteSigner::cosigner_from_seed("w.example", [1; 32]).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (format!("{}\nquorum 1\n", w[0]), "no log"),
            (format!("{log}\n{}\n", w[0]), "no quorum"),
            (format!("{log}\n{log}\n{}\nquorum 1\n", w[0]), "two logs"),
            (
                format!("{log}\n{}\nquorum 1\nquorum 1\n", w[0]),
                "two quorums",
            ),
            (
                format!("{log}\norigin a\norigin a\n{}\nquorum 1\n", w[0]),
                "two origins",
            ),
            (format!("{log}\n{}\nquorum 2\n", w[0]), "quorum too high"),
            (format!("{log}\n{}\nquorum 01\n", w[0]), "leading zero"),
            (format!("{log}\n{}\nquorum -1\n", w[0]), "negative"),
            (
                format!("{log}\n{}\n{}\nquorum 1\n", w[0], w[0]),
                "duplicate",
            ),
            (
                format!(
                    "{log}\n{}\nwitness {}\nquorum 2\n",
                    w[0],
                    same_key_other_name.verifier()
                ),
                "shared public key",
            ),
            (
                format!("{log}\nwitness {}\nquorum 1\n", plain_witness.verifier()),
                "plain witness key",
            ),
            (
                format!("{log}\nwitness {}\nquorum 1\n", log_as_witness.verifier()),
                "log key as witness",
            ),
            (
                format!("log {}\nquorum 0\n", s.witnesses[0].verifier()),
                "cosignature key as log",
            ),
            (
                format!("{log}\n{}\nquorum 1\nfoo bar\n", w[0]),
                "unknown keyword",
            ),
            (format!("{log}\n{}\nquorum 1\r\n", w[0]), "CRLF"),
            (format!("{log}\n{} \nquorum 1\n", w[0]), "trailing space"),
            (format!("{log}\n{}\nquorum  1\n", w[0]), "double space"),
            (format!("{log}\n{}\nquorum\n", w[0]), "no value"),
            (format!("{log}x\n{}\nquorum 1\n", w[0]), "bad log key"),
            (
                format!("{log}\norigin \n{}\nquorum 1\n", w[0]),
                "empty origin",
            ),
        ];
        for (text, what) in cases {
            assert!(WitnessPolicy::parse(&text).is_err(), "{what} was accepted");
        }
        let huge = "#".repeat(MAX_POLICY_SIZE + 1);
        assert!(matches!(
            WitnessPolicy::parse(&huge),
            Err(PolicyError::TooLarge { .. })
        ));
        let mut many = format!("{log}\nquorum 0\n");
        for i in 0..=MAX_WITNESSES {
            let w = NoteSigner::cosigner_from_seed("w", [i as u8 + 100; 32]).unwrap();
            many.push_str(&format!("witness {}\n", w.verifier()));
        }
        assert!(WitnessPolicy::parse(&many).is_err());
    }

    #[test]
    fn quorum_zero_trusts_the_log_alone() {
        let s = setup(0);
        assert!(s.policy.verify_checkpoint(&signed(&s, &[])).is_ok());
        let unsigned = Note {
            text: s.checkpoint.to_body(),
            signatures: vec![],
        };
        assert!(matches!(
            s.policy.verify_checkpoint(&unsigned),
            Err(PolicyError::NotSignedByLog { .. })
        ));
    }
}
