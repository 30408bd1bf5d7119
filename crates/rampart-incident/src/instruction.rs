//! The signed quarantine instruction (issue 16, [decision 0031]): the bytes the director's online
//! key signs (the OLPC canonical JSON of the statement, as TUF signs `signed`), and the device's
//! check of a [`SignedQuarantine`] against the director root it already trusts. Pure: the time
//! is an argument.
//!
//! [decision 0031]: ../../../docs/decisions/0031-quarantine.md

use std::collections::BTreeSet;

use rampart_core::metadata::{Metadata, RoleType, Root};
use rampart_protocol::{QuarantineStatement, SignedQuarantine};

/// The statement type every quarantine instruction names, so a signature over another kind of
/// document (director targets metadata, say) never passes for one.
pub const QUARANTINE_TYPE: &str = "rampart-quarantine";

/// Why a device ignores a quarantine instruction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstructionError {
    #[error(
        "the quarantine instruction is of type {0:?}, not {QUARANTINE_TYPE:?}; the server sent another document"
    )]
    WrongType(String),
    #[error(
        "the quarantine instruction is for device {found:?}, not this device ({expected:?}); ignored"
    )]
    WrongDevice { expected: String, found: String },
    #[error(
        "the quarantine instruction has {valid} valid director signature(s) of the {threshold} the director root requires; ignored (forged, or signed by a key the root does not list)"
    )]
    Signatures { valid: usize, threshold: u32 },
    #[error(
        "the quarantine instruction expired at {expires} (now {now}); the next poll brings a fresh one"
    )]
    Expired { expires: i64, now: i64 },
    #[error("the quarantine instruction cannot be put in canonical form: {0}")]
    Canonical(String),
}

/// The bytes signed: the canonical JSON of the statement.
pub fn signing_bytes(statement: &QuarantineStatement) -> Result<Vec<u8>, InstructionError> {
    rampart_core::cjson::to_canonical_bytes(statement)
        .map_err(|e| InstructionError::Canonical(e.to_string()))
}

/// Checks an instruction for `device_id` at `now_unix` against the trusted director root: the
/// statement's type and device, at least the root's `targets` threshold of distinct director
/// keys signing its canonical bytes, and its expiry. Returns the statement it vouches for.
pub fn verify<'a>(
    instruction: &'a SignedQuarantine,
    director_root: &Metadata<Root>,
    device_id: &str,
    now_unix: i64,
) -> Result<&'a QuarantineStatement, InstructionError> {
    let statement = &instruction.signed;
    if statement.kind != QUARANTINE_TYPE {
        return Err(InstructionError::WrongType(statement.kind.clone()));
    }
    if statement.device_id != device_id {
        return Err(InstructionError::WrongDevice {
            expected: device_id.to_owned(),
            found: statement.device_id.clone(),
        });
    }
    let message = signing_bytes(statement)?;
    let role = director_root.signed.role(RoleType::Targets);
    // A key counts once however many ids or signatures name it.
    let mut counted: BTreeSet<Vec<u8>> = BTreeSet::new();
    for keyid in role.keyids.iter().collect::<BTreeSet<_>>() {
        let Some(key) = director_root.signed.keys.get(keyid) else {
            continue;
        };
        let Ok(material) = key.material() else {
            continue;
        };
        let verified = instruction
            .signatures
            .iter()
            .filter(|s| &s.keyid == keyid)
            .filter_map(|s| hex::decode(&s.sig).ok())
            .any(|sig: Vec<u8>| key.verify(&message, &sig).is_ok());
        if verified {
            counted.insert(material);
        }
    }
    if counted.len() < role.threshold.max(1) as usize {
        return Err(InstructionError::Signatures {
            valid: counted.len(),
            threshold: role.threshold,
        });
    }
    if now_unix >= statement.expires {
        return Err(InstructionError::Expired {
            expires: statement.expires,
            now: now_unix,
        });
    }
    Ok(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rampart_core::keys::{Key, Scheme};
    use rampart_core::metadata::{Common, RoleKeys, format_expires};
    use rampart_protocol::{InstructionSignature, QuarantineState};
    use ring::signature::{Ed25519KeyPair, KeyPair};

    fn keypair(seed: u8) -> (Ed25519KeyPair, Key) {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap();
        let key = Key::from_public_bytes(Scheme::Ed25519, pair.public_key().as_ref()).unwrap();
        (pair, key)
    }

    /// A director root listing `online` for targets (its own signatures are not what this
    /// check reads).
    fn root(online: &Key) -> Metadata<Root> {
        let mut keys = std::collections::BTreeMap::new();
        keys.insert(online.key_id(), online.clone());
        let roles = ["root", "targets", "snapshot", "timestamp"]
            .into_iter()
            .map(|r| {
                (
                    r.to_owned(),
                    RoleKeys {
                        keyids: vec![online.key_id()],
                        threshold: 1,
                    },
                )
            })
            .collect();
        let root = Root {
            common: Common {
                type_: "root".into(),
                spec_version: "1.0.31".into(),
                version: 1,
                expires: format_expires(4_000_000_000),
            },
            consistent_snapshot: None,
            keys,
            roles,
        };
        let bytes =
            serde_json::to_vec(&serde_json::json!({"signed": root, "signatures": []})).unwrap();
        Metadata::<Root>::from_bytes("director root", &bytes).unwrap()
    }

    fn statement(device: &str) -> QuarantineStatement {
        QuarantineStatement {
            kind: QUARANTINE_TYPE.into(),
            device_id: device.into(),
            incident: "inc-1".into(),
            state: QuarantineState::Quarantined,
            containment: true,
            issued: 1_000,
            expires: 2_000,
        }
    }

    fn sign(statement: QuarantineStatement, pair: &Ed25519KeyPair, key: &Key) -> SignedQuarantine {
        let sig = pair.sign(&signing_bytes(&statement).unwrap());
        SignedQuarantine {
            signed: statement,
            signatures: vec![InstructionSignature {
                keyid: key.key_id(),
                sig: hex::encode(sig.as_ref()),
            }],
        }
    }

    #[test]
    fn an_instruction_signed_by_the_director_key_verifies() {
        let (pair, key) = keypair(1);
        let signed = sign(statement("dev-1"), &pair, &key);
        assert_eq!(
            verify(&signed, &root(&key), "dev-1", 1_500).unwrap(),
            &signed.signed
        );
    }

    #[test]
    fn a_forged_or_altered_instruction_is_refused() {
        let (pair, key) = keypair(1);
        let (other_pair, other_key) = keypair(2);
        let trusted = root(&key);
        // Signed by a key the root does not list, under its own id and under the director's.
        let forged = sign(statement("dev-1"), &other_pair, &other_key);
        assert!(matches!(
            verify(&forged, &trusted, "dev-1", 1_500),
            Err(InstructionError::Signatures { valid: 0, .. })
        ));
        let mut borrowed_id = forged.clone();
        borrowed_id.signatures[0].keyid = key.key_id();
        assert!(verify(&borrowed_id, &trusted, "dev-1", 1_500).is_err());
        // A genuine signature over another statement: the release flipped to quarantine etc.
        let mut altered = sign(statement("dev-1"), &pair, &key);
        altered.signed.state = QuarantineState::Released;
        assert!(verify(&altered, &trusted, "dev-1", 1_500).is_err());
        // Unsigned.
        let mut unsigned = sign(statement("dev-1"), &pair, &key);
        unsigned.signatures.clear();
        assert!(verify(&unsigned, &trusted, "dev-1", 1_500).is_err());
    }

    #[test]
    fn an_instruction_for_another_device_of_another_type_or_expired_is_refused() {
        let (pair, key) = keypair(1);
        let trusted = root(&key);
        let other = sign(statement("dev-2"), &pair, &key);
        assert!(matches!(
            verify(&other, &trusted, "dev-1", 1_500),
            Err(InstructionError::WrongDevice { .. })
        ));
        let mut wrong_type = statement("dev-1");
        wrong_type.kind = "targets".into();
        let wrong_type = sign(wrong_type, &pair, &key);
        assert!(matches!(
            verify(&wrong_type, &trusted, "dev-1", 1_500),
            Err(InstructionError::WrongType(_))
        ));
        let fine = sign(statement("dev-1"), &pair, &key);
        assert!(matches!(
            verify(&fine, &trusted, "dev-1", 2_000),
            Err(InstructionError::Expired { .. })
        ));
    }
}
