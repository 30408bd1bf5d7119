//! Threshold signature verification and length/hash checks.

use std::collections::{BTreeMap, BTreeSet};

use indexmap::IndexMap;

use crate::error::TufError;
use crate::keys::Key;
use crate::metadata::{Metadata, SignedBody};

/// Counts the distinct keys among `keyids` whose signature over the metadata verifies, and
/// fails unless that count reaches `threshold`.
///
/// A key counts once however many key ids or signatures name it: two key ids with the same key
/// material count as one (CVE-2020-15093 was the opposite mistake).
pub fn verify_threshold<T: SignedBody>(
    role: &str,
    md: &Metadata<T>,
    keys: &BTreeMap<String, Key>,
    keyids: &[String],
    threshold: u32,
) -> Result<(), TufError> {
    let mut counted_material: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut counted_ids: BTreeSet<&str> = BTreeSet::new();
    for keyid in keyids {
        if !counted_ids.insert(keyid.as_str()) {
            continue;
        }
        let Some(key) = keys.get(keyid) else { continue };
        let Some(sig) = md.signatures.iter().find(|s| &s.keyid == keyid) else {
            continue;
        };
        let Ok(sig_bytes) = hex::decode(&sig.sig) else {
            continue;
        };
        let Ok(material) = key.material() else {
            continue;
        };
        if counted_material.contains(&material) {
            continue;
        }
        if key.verify(&md.canonical_signed, &sig_bytes).is_ok() {
            counted_material.insert(material);
        }
    }
    if counted_material.len() >= threshold as usize {
        Ok(())
    } else {
        Err(TufError::ThresholdNotMet {
            role: role.to_string(),
            valid: counted_material.len(),
            threshold,
        })
    }
}

/// The hash algorithms this client computes.
pub const SUPPORTED_HASHES: [&str; 2] = ["sha256", "sha512"];

/// Computes the named digest of `data`, or `None` for an algorithm we do not support.
pub fn digest(algorithm: &str, data: &[u8]) -> Option<Vec<u8>> {
    let alg = match algorithm {
        "sha256" => &ring::digest::SHA256,
        "sha512" => &ring::digest::SHA512,
        _ => return None,
    };
    Some(ring::digest::digest(alg, data).as_ref().to_vec())
}

/// Checks `data` against an expected length and a set of hashes. Every listed hash with a
/// supported algorithm must match; at least one must be supported; unknown algorithms are refused
/// so that an attacker cannot strip the check by renaming it.
pub fn check_length_and_hashes(
    what: &str,
    data: &[u8],
    length: Option<u64>,
    hashes: Option<&IndexMap<String, String>>,
) -> Result<(), TufError> {
    if let Some(len) = length
        && data.len() as u64 != len
    {
        return Err(TufError::LengthMismatch {
            what: what.to_string(),
            expected: len,
            found: data.len() as u64,
        });
    }
    let Some(hashes) = hashes else { return Ok(()) };
    if hashes.is_empty() {
        return Err(TufError::NoSupportedHash {
            what: what.to_string(),
        });
    }
    for (alg, want_hex) in hashes {
        let Some(got) = digest(alg, data) else {
            return Err(TufError::NoSupportedHash {
                what: format!("{what} (algorithm {alg:?})"),
            });
        };
        if hex::encode(got) != want_hex.to_ascii_lowercase() {
            return Err(TufError::HashMismatch {
                what: what.to_string(),
                algorithm: alg.clone(),
            });
        }
    }
    Ok(())
}

/// Incremental length and hash check, for targets too large to hold in memory.
pub struct StreamingCheck {
    what: String,
    expected_length: u64,
    expected: Vec<(String, String)>,
    contexts: Vec<ring::digest::Context>,
    length: u64,
}

impl StreamingCheck {
    /// Prepares to check data against `length` and every hash in `hashes`; fails up front for an
    /// empty hash list or an algorithm this client does not compute.
    pub fn new(
        what: &str,
        length: u64,
        hashes: &IndexMap<String, String>,
    ) -> Result<Self, TufError> {
        if hashes.is_empty() {
            return Err(TufError::NoSupportedHash {
                what: what.to_string(),
            });
        }
        let mut contexts = Vec::new();
        for alg in hashes.keys() {
            let a = match alg.as_str() {
                "sha256" => &ring::digest::SHA256,
                "sha512" => &ring::digest::SHA512,
                _ => {
                    return Err(TufError::NoSupportedHash {
                        what: format!("{what} (algorithm {alg:?})"),
                    });
                }
            };
            contexts.push(ring::digest::Context::new(a));
        }
        Ok(StreamingCheck {
            what: what.to_string(),
            expected_length: length,
            expected: hashes
                .iter()
                .map(|(a, h)| (a.clone(), h.to_ascii_lowercase()))
                .collect(),
            contexts,
            length: 0,
        })
    }

    /// Feeds the next chunk; fails as soon as the data is longer than expected.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), TufError> {
        self.length += chunk.len() as u64;
        if self.length > self.expected_length {
            return Err(TufError::LengthMismatch {
                what: self.what.clone(),
                expected: self.expected_length,
                found: self.length,
            });
        }
        for c in &mut self.contexts {
            c.update(chunk);
        }
        Ok(())
    }

    /// Checks the final length and every hash.
    pub fn finish(self) -> Result<(), TufError> {
        if self.length != self.expected_length {
            return Err(TufError::LengthMismatch {
                what: self.what,
                expected: self.expected_length,
                found: self.length,
            });
        }
        for (ctx, (alg, want)) in self.contexts.into_iter().zip(self.expected) {
            if hex::encode(ctx.finish()) != want {
                return Err(TufError::HashMismatch {
                    what: self.what,
                    algorithm: alg,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hashes(data: &[u8]) -> IndexMap<String, String> {
        IndexMap::from([
            (
                "sha256".to_string(),
                hex::encode(digest("sha256", data).unwrap()),
            ),
            (
                "sha512".to_string(),
                hex::encode(digest("sha512", data).unwrap()),
            ),
        ])
    }

    #[test]
    fn streaming_check_agrees_with_the_one_shot_check() {
        let data = vec![7u8; 100_000];
        let h = hashes(&data);
        let mut c = StreamingCheck::new("t", data.len() as u64, &h).unwrap();
        for chunk in data.chunks(4096) {
            c.update(chunk).unwrap();
        }
        c.finish().unwrap();
        check_length_and_hashes("t", &data, Some(data.len() as u64), Some(&h)).unwrap();

        let mut bad = data.clone();
        bad[50_000] ^= 1;
        let mut c = StreamingCheck::new("t", data.len() as u64, &h).unwrap();
        c.update(&bad).unwrap();
        assert!(matches!(c.finish(), Err(TufError::HashMismatch { .. })));

        let mut c = StreamingCheck::new("t", 10, &h).unwrap();
        assert!(matches!(
            c.update(&data),
            Err(TufError::LengthMismatch { .. })
        ));
        let mut unknown = h.clone();
        unknown.insert("md5".into(), "00".into());
        assert!(matches!(
            StreamingCheck::new("t", 1, &unknown),
            Err(TufError::NoSupportedHash { .. })
        ));
    }
}
