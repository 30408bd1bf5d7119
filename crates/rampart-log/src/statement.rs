//! Release statements: the log entries Rampart publishes for every release.
//!
//! An entry is a C2SP signed note. Its text is the statement below, one field a line, each line
//! ending in `\n`; it is signed by the vendor's release key (an Ed25519 note key), so a monitor
//! can tell entries made with the vendor's key from anyone else's:
//!
//! ```text
//! rampart.dev/release-statement/v1
//! target <TUF target path>
//! version <semantic version>
//! security-version <decimal>
//! hardware <id>            (one line per hardware id, in the order given)
//! sha256 <hex of the image>
//! sbom-sha256 <hex>        (only when the release carries an SBOM)
//! ```
//!
//! The leaf hash is the RFC 6962 leaf hash of the whole note (text, blank line, signature
//! lines). Anyone holding the release's TUF metadata can rebuild the text; the signature lines
//! travel in the `extra` field of the release's tlog-proof, so a device can rebuild the exact
//! entry and check its inclusion offline.

use crate::merkle::{Hash, leaf_hash};
use crate::note::{Note, NoteSignature};

/// First line of every release statement.
pub const HEADER: &str = "rampart.dev/release-statement/v1";

/// What a release statement says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStatement {
    pub target: String,
    pub version: String,
    pub security_version: u64,
    pub hardware_ids: Vec<String>,
    pub sha256: [u8; 32],
    pub sbom_sha256: Option<[u8; 32]>,
}

/// Why a statement could not be built or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StatementError {
    #[error(
        "{field} {value:?} cannot be written in a release statement (no control characters, 1-1024 bytes)"
    )]
    BadField { field: &'static str, value: String },
    #[error("not a release statement: {0}")]
    Malformed(String),
}

fn check(field: &'static str, value: &str) -> Result<(), StatementError> {
    if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
        return Err(StatementError::BadField {
            field,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn hex32(field: &str, s: &str) -> Result<[u8; 32], StatementError> {
    let v = hex::decode(s).map_err(|_| StatementError::Malformed(format!("{field} is not hex")))?;
    v.try_into()
        .map_err(|_| StatementError::Malformed(format!("{field} is not 32 bytes")))
}

impl ReleaseStatement {
    /// The statement for the release described by a target's `custom.rampart` fields and its
    /// image digest (hex), as both the repository and the device build it.
    pub fn for_release(
        target: &str,
        release: &rampart_core::release::ReleaseInfo,
        image_sha256_hex: &str,
    ) -> Result<ReleaseStatement, StatementError> {
        Ok(ReleaseStatement {
            target: target.to_string(),
            version: release.version.clone(),
            security_version: release.security_version,
            hardware_ids: release.hardware_ids.clone(),
            sha256: hex32("sha256", image_sha256_hex)?,
            sbom_sha256: release
                .sbom
                .as_ref()
                .map(|d| hex32("sbom sha256", &d.sha256))
                .transpose()?,
        })
    }

    /// The statement text (the note text that gets signed).
    pub fn to_text(&self) -> Result<String, StatementError> {
        check("target", &self.target)?;
        check("version", &self.version)?;
        if self.hardware_ids.is_empty() {
            return Err(StatementError::BadField {
                field: "hardware",
                value: String::new(),
            });
        }
        let mut t = format!(
            "{HEADER}\ntarget {}\nversion {}\nsecurity-version {}\n",
            self.target, self.version, self.security_version
        );
        for hw in &self.hardware_ids {
            check("hardware", hw)?;
            if hw.contains(' ') {
                return Err(StatementError::BadField {
                    field: "hardware",
                    value: hw.clone(),
                });
            }
            t.push_str(&format!("hardware {hw}\n"));
        }
        t.push_str(&format!("sha256 {}\n", hex::encode(self.sha256)));
        if let Some(s) = &self.sbom_sha256 {
            t.push_str(&format!("sbom-sha256 {}\n", hex::encode(s)));
        }
        Ok(t)
    }

    /// Parses a statement text (strictly: the exact form [`Self::to_text`] writes).
    pub fn parse_text(text: &str) -> Result<ReleaseStatement, StatementError> {
        let bad = |m: &str| StatementError::Malformed(m.to_string());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("text must end with a newline"))?;
        let mut lines = body.split('\n');
        if lines.next() != Some(HEADER) {
            return Err(bad("first line is not the release-statement header"));
        }
        let mut field = |name: &str| -> Result<String, StatementError> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix(' '))
                .map(str::to_string)
                .ok_or_else(|| StatementError::Malformed(format!("missing `{name}` line")))
        };
        let target = field("target")?;
        let version = field("version")?;
        let security_version = field("security-version")?
            .parse()
            .map_err(|_| bad("security-version is not a number"))?;
        let rest: Vec<&str> = lines.collect();
        let mut i = 0;
        let mut hardware_ids = Vec::new();
        while let Some(hw) = rest.get(i).and_then(|l| l.strip_prefix("hardware ")) {
            hardware_ids.push(hw.to_string());
            i += 1;
        }
        let sha256 = hex32(
            "sha256",
            rest.get(i)
                .and_then(|l| l.strip_prefix("sha256 "))
                .ok_or_else(|| bad("missing `sha256` line"))?,
        )?;
        i += 1;
        let sbom_sha256 = match rest.get(i).and_then(|l| l.strip_prefix("sbom-sha256 ")) {
            Some(h) => {
                i += 1;
                Some(hex32("sbom-sha256", h)?)
            }
            None => None,
        };
        if i != rest.len() {
            return Err(bad("unexpected lines after the statement"));
        }
        let s = ReleaseStatement {
            target,
            version,
            security_version,
            hardware_ids,
            sha256,
            sbom_sha256,
        };
        // Round-trip to reject anything to_text would not have written.
        if s.to_text()? != text {
            return Err(bad("statement is not in canonical form"));
        }
        Ok(s)
    }

    /// The log entry for this statement with the given signature lines, and its leaf hash.
    pub fn entry(&self, signatures: &[NoteSignature]) -> Result<(Vec<u8>, Hash), StatementError> {
        let mut note =
            Note::new(self.to_text()?).map_err(|e| StatementError::Malformed(e.to_string()))?;
        note.signatures = signatures.to_vec();
        let bytes = note.to_bytes();
        let leaf = leaf_hash(&bytes);
        Ok((bytes, leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::note::NoteSigner;

    fn statement() -> ReleaseStatement {
        ReleaseStatement {
            target: "board-a/1.2.0/fw.img".into(),
            version: "1.2.0".into(),
            security_version: 7,
            hardware_ids: vec!["board-a".into(), "board-a2".into()],
            sha256: [0xab; 32],
            sbom_sha256: Some([0xcd; 32]),
        }
    }

    #[test]
    fn text_round_trips_and_is_strict() {
        let s = statement();
        let t = s.to_text().unwrap();
        assert!(t.starts_with("rampart.dev/release-statement/v1\ntarget board-a/1.2.0/fw.img\n"));
        assert_eq!(ReleaseStatement::parse_text(&t).unwrap(), s);
        for bad in [
            t.replace("security-version 7", "security-version 07"),
            t.replace('\n', "\r\n"),
            format!("{t}extra\n"),
            t.trim_end().to_string(),
        ] {
            assert!(ReleaseStatement::parse_text(&bad).is_err(), "{bad:?}");
        }
        let mut s2 = statement();
        s2.target = "a\nsha256 00".into();
        assert!(s2.to_text().is_err(), "newlines cannot smuggle fields");
    }

    #[test]
    fn entry_is_the_signed_note_and_its_leaf_hash() {
        let signer = NoteSigner::from_seed("vendor.example/releases", [9; 32]).unwrap();
        let s = statement();
        let sig = signer.sign(&s.to_text().unwrap()).unwrap();
        let (bytes, leaf) = s.entry(std::slice::from_ref(&sig)).unwrap();
        let note = Note::parse(&bytes).unwrap();
        assert!(
            signer
                .verifier()
                .verify_signature(&note.text, &note.signatures[0])
        );
        assert_eq!(leaf, leaf_hash(&bytes));
    }
}

/// Why a release was not accepted as logged.
#[derive(Debug, thiserror::Error)]
pub enum LoggedReleaseError {
    #[error(transparent)]
    Statement(#[from] StatementError),
    #[error("the tlog-proof is malformed: {0}")]
    Proof(#[from] crate::proof::TlogProofError),
    #[error(
        "the tlog-proof carries no release-key signature for the statement (its `extra` field must hold the entry's signature lines)"
    )]
    NoSignature,
    #[error("the release statement is not signed by the release key {0}")]
    NotSignedByReleaseKey(String),
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
}

/// The device-side check, with no network access: the release described by `statement` (built
/// from the device's verified update metadata) is in the log, as shown by `proof`, under the
/// log key and witness quorum of `policy`, and its entry is signed by `release_key`.
pub fn verify_logged_release(
    statement: &ReleaseStatement,
    proof_bytes: &[u8],
    policy: &crate::policy::WitnessPolicy,
    release_key: &crate::note::Verifier,
) -> Result<crate::checkpoint::Checkpoint, LoggedReleaseError> {
    let proof = crate::proof::TlogProof::parse(proof_bytes)?;
    let extra = proof
        .extra
        .as_deref()
        .ok_or(LoggedReleaseError::NoSignature)?;
    let signatures =
        crate::note::parse_signature_lines(extra).map_err(|_| LoggedReleaseError::NoSignature)?;
    let text = statement.to_text()?;
    if !signatures
        .iter()
        .any(|s| release_key.matches(s) && release_key.verify_signature(&text, s))
    {
        return Err(LoggedReleaseError::NotSignedByReleaseKey(
            release_key.key_label(),
        ));
    }
    let (_, leaf) = statement.entry(&signatures)?;
    Ok(policy.verify_proof(&leaf, &proof)?)
}

#[cfg(test)]
mod logged_release_tests {
    use super::*;
    use crate::checkpoint::Checkpoint;
    use crate::cosignature::{cosign, sign_checkpoint};
    use crate::merkle::{inclusion_proof, leaf_hash, root_from_leaf_hashes};
    use crate::note::NoteSigner;
    use crate::policy::WitnessPolicy;
    use crate::proof::TlogProof;

    struct World {
        release_key: NoteSigner,
        policy: WitnessPolicy,
        statement: ReleaseStatement,
        proof: Vec<u8>,
    }

    /// A log of 7 entries whose entry 5 is the release, cosigned by `cosigners` of 3 witnesses.
    fn world(cosigners: usize) -> World {
        let release_key = NoteSigner::from_seed("vendor.example/releases", [1; 32]).unwrap();
        let log = NoteSigner::from_seed("log.example/fw", [2; 32]).unwrap();
        let witnesses: Vec<NoteSigner> = (0..3)
            .map(|i| {
                NoteSigner::cosigner_from_seed(&format!("w{i}.example"), [10 + i; 32]).unwrap()
            })
            .collect();
        let statement = ReleaseStatement {
            target: "board-a/2.0.0/fw.img".into(),
            version: "2.0.0".into(),
            security_version: 4,
            hardware_ids: vec!["board-a".into()],
            sha256: [7; 32],
            sbom_sha256: None,
        };
        let sig = release_key.sign(&statement.to_text().unwrap()).unwrap();
        let (_, leaf) = statement.entry(std::slice::from_ref(&sig)).unwrap();
        let mut leaves: Vec<[u8; 32]> = (0..7u8).map(|i| leaf_hash(&[i])).collect();
        leaves[5] = leaf;
        let cp = Checkpoint::new("log.example/fw", 7, root_from_leaf_hashes(&leaves));
        let mut note = sign_checkpoint(&log, &cp).unwrap();
        for w in witnesses.iter().take(cosigners) {
            note.signatures
                .push(cosign(w, &cp.to_body(), 1_800_000_000).unwrap());
        }
        // Complete subtrees from the leaves, for the proof generator.
        let node = &mut |level: u8, index: u64| -> Result<[u8; 32], ()> {
            let start = (index << level) as usize;
            Ok(root_from_leaf_hashes(
                &leaves[start..start + (1usize << level)],
            ))
        };
        let hashes = inclusion_proof(5, 7, node).unwrap();
        let proof = TlogProof {
            extra: Some(sig.to_line().into_bytes()),
            index: 5,
            hashes,
            checkpoint: note,
        }
        .to_bytes();
        let policy = WitnessPolicy::new(
            log.verifier(),
            "log.example/fw",
            witnesses.iter().map(NoteSigner::verifier).collect(),
            2,
        )
        .unwrap();
        World {
            release_key,
            policy,
            statement,
            proof,
        }
    }

    #[test]
    fn a_logged_release_verifies_offline() {
        let w = world(2);
        let cp =
            verify_logged_release(&w.statement, &w.proof, &w.policy, &w.release_key.verifier())
                .unwrap();
        assert_eq!(cp.size, 7);
    }

    #[test]
    fn any_change_to_the_release_breaks_the_proof() {
        let w = world(3);
        let key = w.release_key.verifier();
        let mut other = w.statement.clone();
        other.sha256[0] ^= 1;
        assert!(matches!(
            verify_logged_release(&other, &w.proof, &w.policy, &key),
            Err(LoggedReleaseError::NotSignedByReleaseKey(_))
        ));
        let mut other = w.statement.clone();
        other.security_version = 5;
        assert!(verify_logged_release(&other, &w.proof, &w.policy, &key).is_err());
    }

    #[test]
    fn a_proof_without_quorum_or_from_another_key_is_refused() {
        let w = world(1);
        assert!(matches!(
            verify_logged_release(&w.statement, &w.proof, &w.policy, &w.release_key.verifier()),
            Err(LoggedReleaseError::Policy(_))
        ));
        let w = world(2);
        let stranger = NoteSigner::from_seed("vendor.example/releases", [99; 32]).unwrap();
        assert!(matches!(
            verify_logged_release(&w.statement, &w.proof, &w.policy, &stranger.verifier()),
            Err(LoggedReleaseError::NotSignedByReleaseKey(_))
        ));
    }

    #[test]
    fn truncated_padded_or_altered_proofs_are_refused() {
        let w = world(2);
        let key = w.release_key.verifier();
        let text = String::from_utf8(w.proof.clone()).unwrap();
        let cut = &w.proof[..w.proof.len() / 2];
        assert!(
            verify_logged_release(&w.statement, cut, &w.policy, &key).is_err(),
            "truncated"
        );
        let padded = [w.proof.clone(), b"garbage\n".to_vec()].concat();
        assert!(
            verify_logged_release(&w.statement, &padded, &w.policy, &key).is_err(),
            "padded"
        );
        let moved = text.replacen("index 5", "index 4", 1);
        assert!(
            verify_logged_release(&w.statement, moved.as_bytes(), &w.policy, &key).is_err(),
            "other index"
        );
        let no_extra: String = text
            .lines()
            .filter(|l| !l.starts_with("extra "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(matches!(
            verify_logged_release(&w.statement, no_extra.as_bytes(), &w.policy, &key),
            Err(LoggedReleaseError::NoSignature)
        ));
        let other_origin = WitnessPolicy::new(
            w.policy.log.clone(),
            "log.example/other",
            w.policy.witnesses.clone(),
            2,
        )
        .unwrap();
        assert!(matches!(
            verify_logged_release(&w.statement, &w.proof, &other_origin, &key),
            Err(LoggedReleaseError::Policy(_))
        ));
    }
}
