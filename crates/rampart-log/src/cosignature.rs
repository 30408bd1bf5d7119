//! C2SP tlog-cosignature/v1 Ed25519 cosignatures (<https://c2sp.org/tlog-cosignature>), and the
//! log's own checkpoint signature.
//!
//! A cosignature is a note signature line from a key of type `0x04` whose signature bytes are
//!
//! ```text
//! u64 big-endian timestamp || Ed25519 signature (64 bytes)
//! ```
//!
//! and the Ed25519 signature is over
//!
//! ```text
//! cosignature/v1\n
//! time <timestamp, decimal>\n
//! <the whole checkpoint body>
//! ```
//!
//! Timestamps are POSIX seconds passed in by the caller (this crate has no clock) and must not
//! exceed 2^63 - 1. Whether a timestamp is too far in the future is the caller's policy.

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::note::{
    CosignatureBytesError, KeyType, Note, NoteError, NoteSignature, NoteSigner, SignerKind,
    Verifier, verify_cosignature_bytes,
};

// The wire form lives with the note verifier, which checks type-0x04 signatures itself.
pub use crate::note::{COSIGNATURE_LEN, COSIGNATURE_V1_HEADER, MAX_TIMESTAMP, cosigned_message};

/// Errors from making or checking cosignatures and checkpoint signatures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignatureError {
    #[error("{0}")]
    WrongSignerKind(&'static str),
    #[error("cosignature timestamp {0} is over the limit of 2^63 - 1")]
    TimestampTooLarge(u64),
    #[error("checkpoint body is malformed: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Note(#[from] NoteError),
    #[error("key {key} is not an Ed25519 cosignature key (type 0x04) but {key_type}")]
    NotCosignatureKey { key: String, key_type: KeyType },
    #[error("the signature line is from {found}, not from {expected}")]
    KeyMismatch { found: String, expected: String },
    #[error(
        "cosignature by {key} is {len} bytes; an Ed25519 cosignature is {COSIGNATURE_LEN} (8-byte timestamp and 64-byte signature)"
    )]
    WrongLength { key: String, len: usize },
    #[error("cosignature by {key} does not verify over the checkpoint")]
    BadSignature { key: String },
}

/// Cosigns a checkpoint body at `timestamp` (POSIX seconds) with a cosignature (`0x04`) signer.
/// The body must be a valid checkpoint body.
pub fn cosign(
    signer: &NoteSigner,
    checkpoint_body: &str,
    timestamp: u64,
) -> Result<NoteSignature, CosignatureError> {
    if signer.kind() != SignerKind::Ed25519Cosignature {
        return Err(CosignatureError::WrongSignerKind(
            "cosignatures need an Ed25519 cosignature key (type 0x04), not a plain Ed25519 key",
        ));
    }
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureError::TimestampTooLarge(timestamp));
    }
    Checkpoint::parse_body(checkpoint_body)?;
    let ed_sig = signer.sign_raw(&cosigned_message(checkpoint_body, timestamp));
    let mut bytes = Vec::with_capacity(COSIGNATURE_LEN);
    bytes.extend_from_slice(&timestamp.to_be_bytes());
    bytes.extend_from_slice(&ed_sig);
    Ok(signer.signature(bytes))
}

/// Verifies a cosignature line by `verifier` (an Ed25519 cosignature key) over
/// `checkpoint_body` and returns its timestamp.
pub fn verify_cosignature(
    verifier: &Verifier,
    checkpoint_body: &str,
    sig: &NoteSignature,
) -> Result<u64, CosignatureError> {
    let key = verifier.key_label();
    if KeyType::from_byte(verifier.key_type().to_byte()) != KeyType::Ed25519Cosignature {
        return Err(CosignatureError::NotCosignatureKey {
            key,
            key_type: verifier.key_type(),
        });
    }
    if !verifier.matches(sig) {
        return Err(CosignatureError::KeyMismatch {
            found: sig.key_label(),
            expected: key,
        });
    }
    verify_cosignature_bytes(verifier.public_key(), checkpoint_body, &sig.signature).map_err(|e| {
        match e {
            CosignatureBytesError::WrongLength(len) => CosignatureError::WrongLength { key, len },
            CosignatureBytesError::TimestampTooLarge(t) => CosignatureError::TimestampTooLarge(t),
            CosignatureBytesError::BadSignature => CosignatureError::BadSignature { key },
        }
    })
}

/// The log signs its checkpoint: a note whose text is `checkpoint.to_body()`, signed by the
/// plain Ed25519 (`0x01`) `log_signer`. Witness cosignatures can then be appended to
/// `signatures`.
pub fn sign_checkpoint(
    log_signer: &NoteSigner,
    checkpoint: &Checkpoint,
) -> Result<Note, CosignatureError> {
    if log_signer.kind() != SignerKind::Ed25519 {
        return Err(CosignatureError::WrongSignerKind(
            "a log signs its checkpoints with a plain Ed25519 key (type 0x01), not a cosignature key",
        ));
    }
    checkpoint.validate()?;
    let mut note = Note::new(checkpoint.to_body())?;
    log_signer.sign_note(&mut note)?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint() -> Checkpoint {
        Checkpoint::new("example.com/log", 5, [0x11; 32])
    }

    #[test]
    fn message_format_matches_spec() {
        let body =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let msg = cosigned_message(body, 1679315147);
        assert_eq!(
            msg,
            format!("cosignature/v1\ntime 1679315147\n{body}").into_bytes()
        );
    }

    #[test]
    fn cosign_and_verify() {
        let w = NoteSigner::cosigner_from_seed("witness.example/w1", [5; 32]).unwrap();
        let body = checkpoint().to_body();
        let sig = cosign(&w, &body, 1_700_000_000).unwrap();
        assert_eq!(sig.signature.len(), COSIGNATURE_LEN);
        assert_eq!(&sig.signature[..8], &1_700_000_000u64.to_be_bytes());
        let v = w.verifier();
        assert_eq!(verify_cosignature(&v, &body, &sig), Ok(1_700_000_000));
        assert!(v.verify_signature(&body, &sig));

        // The line survives a note round trip.
        let log = NoteSigner::from_seed("example.com/log", [6; 32]).unwrap();
        let mut note = sign_checkpoint(&log, &checkpoint()).unwrap();
        note.signatures.push(sig.clone());
        let parsed = Note::parse(&note.to_bytes()).unwrap();
        let vs = [log.verifier(), v.clone()];
        assert_eq!(parsed.verify(&vs).unwrap().len(), 2);

        // Another body, timestamp or key fails.
        let other = Checkpoint::new("example.com/log", 6, [0x11; 32]).to_body();
        assert!(matches!(
            verify_cosignature(&v, &other, &sig),
            Err(CosignatureError::BadSignature { .. })
        ));
        let mut bad_ts = sig.clone();
        bad_ts.signature[7] ^= 1;
        assert!(verify_cosignature(&v, &body, &bad_ts).is_err());
        let mut huge_ts = sig.clone();
        huge_ts.signature[0] = 0x80;
        assert!(matches!(
            verify_cosignature(&v, &body, &huge_ts),
            Err(CosignatureError::TimestampTooLarge(_))
        ));
        let mut short = sig.clone();
        short.signature.truncate(70);
        assert!(matches!(
            verify_cosignature(&v, &body, &short),
            Err(CosignatureError::WrongLength { .. })
        ));
        let w2 = NoteSigner::cosigner_from_seed("witness.example/w2", [7; 32]).unwrap();
        assert!(matches!(
            verify_cosignature(&w2.verifier(), &body, &sig),
            Err(CosignatureError::KeyMismatch { .. })
        ));
        // A plain key with the same seed and name is not a cosignature key.
        let plain = NoteSigner::from_seed("witness.example/w1", [5; 32]).unwrap();
        assert!(matches!(
            verify_cosignature(&plain.verifier(), &body, &sig),
            Err(CosignatureError::NotCosignatureKey { .. })
        ));
    }

    #[test]
    fn signer_kinds_are_enforced() {
        let w = NoteSigner::cosigner_from_seed("w", [5; 32]).unwrap();
        let log = NoteSigner::from_seed("example.com/log", [6; 32]).unwrap();
        let body = checkpoint().to_body();
        assert!(cosign(&log, &body, 1).is_err());
        assert!(sign_checkpoint(&w, &checkpoint()).is_err());
        assert!(matches!(
            cosign(&w, &body, MAX_TIMESTAMP + 1),
            Err(CosignatureError::TimestampTooLarge(_))
        ));
        assert!(cosign(&w, &body, MAX_TIMESTAMP).is_ok());
        assert!(matches!(
            cosign(&w, "not a checkpoint\n", 1),
            Err(CosignatureError::Checkpoint(_))
        ));
    }

    #[test]
    fn sign_checkpoint_produces_verifiable_note() {
        let log = NoteSigner::from_seed("example.com/log", [6; 32]).unwrap();
        let note = sign_checkpoint(&log, &checkpoint()).unwrap();
        assert_eq!(Checkpoint::parse_body(&note.text).unwrap(), checkpoint());
        assert_eq!(note.verified_by(&[log.verifier()]).len(), 1);
        let mut bad = checkpoint();
        bad.origin = String::new();
        assert!(sign_checkpoint(&log, &bad).is_err());
    }
}
