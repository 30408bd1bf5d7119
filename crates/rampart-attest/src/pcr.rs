//! PCR selections and PCR values: tpm2-tools' text form (`sha256:0,1,16+sha1:0`) and its PCR
//! file, the one `tpm2_quote -o` writes and `tpm2_checkquote -f` reads.
//!
//! The PCR file is tpm2-tools' in-memory structures written as they are (tpm2-tools 5.4,
//! found by experiment with swtpm; little-endian, as on every host tpm2-tools runs on here):
//!
//! ```text
//! TPML_PCR_SELECTION   u32 count (<= 16), then 16 slots of 8 bytes:
//!                      u16 hash, u8 sizeofSelect, u8 pcrSelect[4], u8 padding
//! u32 n                how many TPML_DIGESTs follow (the TPM returns at most 8 PCRs per read)
//! n x TPML_DIGEST      u32 count (<= 8), then 8 slots of 66 bytes: u16 size, u8 buffer[64]
//! ```
//!
//! The digests are the selected PCRs in selection order (bank by bank, PCR numbers rising).
//! Slots past a count and padding bytes carry nothing and are not read, as tpm2-tools does not.

use std::collections::BTreeSet;
use std::fmt;

use crate::wire::{HashAlg, MAX_PCR_BANKS, MAX_PCR_SELECT, PcrBankSelect, PcrSelectionList};

/// PCRs a TPM has (PC Client: 24, PCR 0 to 23).
pub const PCR_COUNT: u8 = 24;
/// Bytes of a bitmap for [`PCR_COUNT`] PCRs (what TPMs and tpm2-tools write).
const PCR_BITMAP_BYTES: usize = PCR_COUNT as usize / 8;
/// The PCR file's fixed parts (see the module documentation).
const FILE_SELECTION_SLOT: usize = 8;
const FILE_SELECTION_SIZE: usize = 4 + MAX_PCR_BANKS * FILE_SELECTION_SLOT;
const FILE_DIGEST_SLOT: usize = 2 + 64;
const FILE_DIGESTS_PER_LIST: usize = 8;
const FILE_DIGEST_LIST_SIZE: usize = 4 + FILE_DIGESTS_PER_LIST * FILE_DIGEST_SLOT;
/// Most TPML_DIGESTs in a file (tpm2-tools' `TPM2_MAX_PCRS`).
const FILE_MAX_DIGEST_LISTS: usize = 32;
/// The largest PCR file accepted.
pub const MAX_PCR_FILE_SIZE: usize =
    FILE_SELECTION_SIZE + 4 + FILE_MAX_DIGEST_LISTS * FILE_DIGEST_LIST_SIZE;

/// A PCR selection or PCR file is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PcrError {
    #[error(
        "PCR selection {text:?}: {reason} (write it as tpm2-tools does, e.g. sha256:0,1,16 or sha1:0+sha256:0,7)"
    )]
    BadSelectionText { text: String, reason: String },
    #[error("PCR selection: {0}")]
    BadSelection(String),
    #[error("PCR file: {0} (expected the file `tpm2_quote -o` writes)")]
    BadFile(String),
    #[error("PCR values: {0}")]
    BadValues(String),
}

/// Which PCRs of which banks: banks in the order given (the order a quote digests them), each
/// with its PCR numbers. A bank may select no PCR (tpm2-tools keeps such banks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrSelection {
    banks: Vec<(HashAlg, BTreeSet<u8>)>,
}

impl PcrSelection {
    /// A selection of `pcrs` in one bank.
    pub fn bank(hash: HashAlg, pcrs: impl IntoIterator<Item = u8>) -> Result<Self, PcrError> {
        Self::from_banks([(hash, pcrs.into_iter().collect())])
    }

    /// A selection from banks in order; a bank named twice or a PCR past 23 is refused.
    pub fn from_banks(
        banks: impl IntoIterator<Item = (HashAlg, BTreeSet<u8>)>,
    ) -> Result<Self, PcrError> {
        let mut out = PcrSelection::default();
        for (hash, pcrs) in banks {
            if out.banks.iter().any(|(h, _)| *h == hash) {
                return Err(PcrError::BadSelection(format!(
                    "bank {hash} is selected twice"
                )));
            }
            if let Some(p) = pcrs.iter().find(|p| **p >= PCR_COUNT) {
                return Err(PcrError::BadSelection(format!(
                    "PCR {p} does not exist (a TPM has PCRs 0 to {})",
                    PCR_COUNT - 1
                )));
            }
            out.banks.push((hash, pcrs));
        }
        Ok(out)
    }

    /// Parses tpm2-tools' form: banks separated by `+`, each `ALG:N,N,...` (`ALG:all` for 0-23).
    pub fn parse(text: &str) -> Result<Self, PcrError> {
        let bad = |reason: String| PcrError::BadSelectionText {
            text: text.chars().take(200).collect(),
            reason,
        };
        if text.len() > 1024 {
            return Err(bad("longer than any PCR selection".into()));
        }
        let mut banks = Vec::new();
        for part in text.split('+') {
            let (alg, list) = part
                .split_once(':')
                .ok_or_else(|| bad(format!("{part:?} has no ':' between the bank and its PCRs")))?;
            let hash = HashAlg::from_name(alg.trim()).ok_or_else(|| {
                bad(format!(
                    "unknown bank {alg:?}; use sha1, sha256, sha384 or sha512"
                ))
            })?;
            let pcrs: BTreeSet<u8> = if list.trim() == "all" {
                (0..PCR_COUNT).collect()
            } else {
                list.split(',')
                    .map(|n| {
                        n.trim()
                            .parse::<u8>()
                            .ok()
                            .filter(|n| *n < PCR_COUNT)
                            .ok_or_else(|| {
                                bad(format!(
                                    "{n:?} is not a PCR number from 0 to {}",
                                    PCR_COUNT - 1
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?
            };
            banks.push((hash, pcrs));
        }
        Self::from_banks(banks).map_err(|e| bad(e.to_string()))
    }

    /// From a quote's TPML_PCR_SELECTION.
    pub fn from_wire(list: &PcrSelectionList) -> Result<Self, PcrError> {
        let banks = list.0.iter().map(|bank| {
            let hash = HashAlg::from_id(bank.hash).ok_or_else(|| {
                PcrError::BadSelection(format!("unknown bank {:#06x}", bank.hash))
            })?;
            let mut pcrs = BTreeSet::new();
            for (byte_index, byte) in bank.bitmap.iter().enumerate() {
                for bit in 0..8 {
                    if byte & (1 << bit) != 0 {
                        pcrs.insert((byte_index * 8 + bit) as u8);
                    }
                }
            }
            Ok((hash, pcrs))
        });
        Self::from_banks(banks.collect::<Result<Vec<_>, PcrError>>()?)
    }

    /// As a TPML_PCR_SELECTION with 3-byte bitmaps (24 PCRs), as TPMs write it.
    pub fn to_wire(&self) -> PcrSelectionList {
        PcrSelectionList(
            self.banks
                .iter()
                .map(|(hash, pcrs)| {
                    let mut bitmap = vec![0u8; PCR_BITMAP_BYTES];
                    for p in pcrs {
                        bitmap[usize::from(*p / 8)] |= 1 << (p % 8);
                    }
                    PcrBankSelect {
                        hash: hash.id(),
                        bitmap,
                    }
                })
                .collect(),
        )
    }

    /// The selected (bank, PCR) pairs in digest order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8)> + '_ {
        self.banks
            .iter()
            .flat_map(|(hash, pcrs)| pcrs.iter().map(move |p| (*hash, *p)))
    }

    /// How many PCRs are selected.
    pub fn len(&self) -> usize {
        self.banks.iter().map(|(_, pcrs)| pcrs.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether both select the same PCRs of the same banks, whatever the bank order and
    /// whatever banks with no PCR either names.
    pub fn same_pcrs(&self, other: &PcrSelection) -> bool {
        let set = |s: &PcrSelection| s.iter().collect::<BTreeSet<_>>();
        set(self) == set(other)
    }
}

impl fmt::Display for PcrSelection {
    /// tpm2-tools' form; banks with no PCR are left out (tpm2-tools cannot write them).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (hash, pcrs) in self.banks.iter().filter(|(_, p)| !p.is_empty()) {
            if !first {
                f.write_str("+")?;
            }
            first = false;
            let list: Vec<String> = pcrs.iter().map(u8::to_string).collect();
            write!(f, "{hash}:{}", list.join(","))?;
        }
        if first {
            f.write_str("(no PCR)")?;
        }
        Ok(())
    }
}

/// PCR values for a selection, in its digest order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrValues {
    selection: PcrSelection,
    values: Vec<Vec<u8>>,
}

impl PcrValues {
    /// Values for `selection`, one per selected PCR in digest order, each its bank's size.
    pub fn new(selection: PcrSelection, values: Vec<Vec<u8>>) -> Result<Self, PcrError> {
        if values.len() != selection.len() {
            return Err(PcrError::BadValues(format!(
                "{} values for {} selected PCRs",
                values.len(),
                selection.len()
            )));
        }
        for ((hash, pcr), value) in selection.iter().zip(&values) {
            if value.len() != hash.digest_size() {
                return Err(PcrError::BadValues(format!(
                    "{hash} PCR {pcr} is {} bytes, a {hash} digest {}",
                    value.len(),
                    hash.digest_size()
                )));
            }
        }
        Ok(PcrValues { selection, values })
    }

    pub fn selection(&self) -> &PcrSelection {
        &self.selection
    }

    /// The value of `pcr` in `bank`, if selected.
    pub fn get(&self, bank: HashAlg, pcr: u8) -> Option<&[u8]> {
        self.iter()
            .find(|(h, p, _)| *h == bank && *p == pcr)
            .map(|(_, _, v)| v)
    }

    /// (bank, PCR, value) in digest order.
    pub fn iter(&self) -> impl Iterator<Item = (HashAlg, u8, &[u8])> + '_ {
        self.selection
            .iter()
            .zip(&self.values)
            .map(|((h, p), v)| (h, p, v.as_slice()))
    }

    /// The digest a TPM quotes over `selection` (in that selection's order) with these
    /// values: `hash` of their concatenation. `None` when a PCR of `selection` has no value
    /// here.
    pub fn digest_for(&self, selection: &PcrSelection, hash: HashAlg) -> Option<Vec<u8>> {
        let parts: Option<Vec<&[u8]>> = selection.iter().map(|(h, p)| self.get(h, p)).collect();
        Some(hash.digest(parts?))
    }

    /// Parses a PCR file (see the module documentation); any inconsistency is refused.
    pub fn parse_file(bytes: &[u8]) -> Result<Self, PcrError> {
        let bad = |reason: String| PcrError::BadFile(reason);
        if bytes.len() > MAX_PCR_FILE_SIZE {
            return Err(bad(format!(
                "{} bytes, more than the {MAX_PCR_FILE_SIZE} of the largest",
                bytes.len()
            )));
        }
        if bytes.len() < FILE_SELECTION_SIZE + 4 {
            return Err(bad(format!(
                "{} bytes, shorter than its {}-byte header",
                bytes.len(),
                FILE_SELECTION_SIZE + 4
            )));
        }
        let count = le_u32(bytes, 0) as usize;
        if count > MAX_PCR_BANKS {
            return Err(bad(format!("{count} banks, more than a TPM has")));
        }
        let mut banks = Vec::with_capacity(count);
        for i in 0..count {
            let slot = &bytes[4 + i * FILE_SELECTION_SLOT..][..FILE_SELECTION_SLOT];
            let id = u16::from_le_bytes([slot[0], slot[1]]);
            let size = usize::from(slot[2]);
            if size == 0 || size > MAX_PCR_SELECT {
                return Err(bad(format!(
                    "bank {i} has a {size}-byte bitmap (1 to {MAX_PCR_SELECT})"
                )));
            }
            banks.push(PcrBankSelect {
                hash: id,
                bitmap: slot[3..3 + size].to_vec(),
            });
        }
        let selection =
            PcrSelection::from_wire(&PcrSelectionList(banks)).map_err(|e| bad(e.to_string()))?;
        let lists = le_u32(bytes, FILE_SELECTION_SIZE) as usize;
        if lists > FILE_MAX_DIGEST_LISTS {
            return Err(bad(format!(
                "{lists} digest lists, more than tpm2-tools writes"
            )));
        }
        let expected_len = FILE_SELECTION_SIZE + 4 + lists * FILE_DIGEST_LIST_SIZE;
        if bytes.len() != expected_len {
            return Err(bad(format!(
                "{} bytes, but a file with {lists} digest lists is {expected_len}",
                bytes.len()
            )));
        }
        let mut values = Vec::with_capacity(selection.len());
        let mut wanted = selection.iter();
        for l in 0..lists {
            let list = &bytes[FILE_SELECTION_SIZE + 4 + l * FILE_DIGEST_LIST_SIZE..]
                [..FILE_DIGEST_LIST_SIZE];
            let in_list = le_u32(list, 0) as usize;
            if in_list > FILE_DIGESTS_PER_LIST {
                return Err(bad(format!(
                    "digest list {l} counts {in_list} digests, more than {FILE_DIGESTS_PER_LIST}"
                )));
            }
            for d in 0..in_list {
                let slot = &list[4 + d * FILE_DIGEST_SLOT..][..FILE_DIGEST_SLOT];
                let size = usize::from(u16::from_le_bytes([slot[0], slot[1]]));
                let Some((hash, pcr)) = wanted.next() else {
                    return Err(bad(format!(
                        "more digests than the {} PCRs it selects",
                        selection.len()
                    )));
                };
                if size != hash.digest_size() {
                    return Err(bad(format!(
                        "{hash} PCR {pcr} has a {size}-byte digest, not {}",
                        hash.digest_size()
                    )));
                }
                values.push(slot[2..2 + size].to_vec());
            }
        }
        drop(wanted);
        if values.len() != selection.len() {
            return Err(bad(format!(
                "{} digests for the {} PCRs it selects ({selection})",
                values.len(),
                selection.len()
            )));
        }
        PcrValues::new(selection, values).map_err(|e| bad(e.to_string()))
    }

    /// Writes the PCR file `tpm2_quote -o` would: digests in lists of eight, unused slots
    /// and padding zero.
    pub fn to_file(&self) -> Vec<u8> {
        let wire = self.selection.to_wire();
        let lists = self.values.len().div_ceil(FILE_DIGESTS_PER_LIST);
        let mut out = vec![0u8; FILE_SELECTION_SIZE + 4 + lists * FILE_DIGEST_LIST_SIZE];
        out[..4].copy_from_slice(&(wire.0.len() as u32).to_le_bytes());
        for (i, bank) in wire.0.iter().enumerate() {
            let slot = &mut out[4 + i * FILE_SELECTION_SLOT..][..FILE_SELECTION_SLOT];
            slot[..2].copy_from_slice(&bank.hash.to_le_bytes());
            slot[2] = bank.bitmap.len() as u8;
            slot[3..3 + bank.bitmap.len()].copy_from_slice(&bank.bitmap);
        }
        out[FILE_SELECTION_SIZE..][..4].copy_from_slice(&(lists as u32).to_le_bytes());
        for (l, chunk) in self.values.chunks(FILE_DIGESTS_PER_LIST).enumerate() {
            let list = &mut out[FILE_SELECTION_SIZE + 4 + l * FILE_DIGEST_LIST_SIZE..]
                [..FILE_DIGEST_LIST_SIZE];
            list[..4].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
            for (d, value) in chunk.iter().enumerate() {
                let slot = &mut list[4 + d * FILE_DIGEST_SLOT..][..FILE_DIGEST_SLOT];
                slot[..2].copy_from_slice(&(value.len() as u16).to_le_bytes());
                slot[2..2 + value.len()].copy_from_slice(value);
            }
        }
        out
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::*;

    #[test]
    fn selection_text_round_trips_in_tpm2_tools_form() {
        let s = PcrSelection::parse("sha256:0,1,16").unwrap();
        assert_eq!(s.to_string(), "sha256:0,1,16");
        let two = PcrSelection::parse("sha1:7,0+sha256:23").unwrap();
        assert_eq!(two.to_string(), "sha1:0,7+sha256:23");
        assert_eq!(PcrSelection::parse("sha256:all").unwrap().len(), 24);
        assert_eq!(
            s.to_wire().0,
            vec![PcrBankSelect {
                hash: 0x000b,
                bitmap: vec![0x03, 0x00, 0x01]
            }]
        );
    }

    #[test]
    fn bad_selection_text_is_refused_with_the_reason() {
        for (text, reason) in [
            ("sha256", "no ':'"),
            ("md5:0", "unknown bank"),
            ("sha256:24", "not a PCR number"),
            ("sha256:", "not a PCR number"),
            ("sha256:0+sha256:1", "selected twice"),
        ] {
            let err = PcrSelection::parse(text).unwrap_err().to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn same_pcrs_ignores_bank_order_and_empty_banks() {
        let a = PcrSelection::parse("sha1:0+sha256:1").unwrap();
        let b = PcrSelection::parse("sha256:1+sha1:0").unwrap();
        assert!(a.same_pcrs(&b));
        let with_empty = PcrSelection::from_banks([(HashAlg::Sha384, BTreeSet::new())]).unwrap();
        assert!(with_empty.same_pcrs(&PcrSelection::default()));
        assert!(!a.same_pcrs(&PcrSelection::parse("sha256:1").unwrap()));
    }

    #[test]
    fn swtpm_pcr_files_parse_and_encode_to_the_same_bytes() {
        let three = PcrValues::parse_file(SWTPM_PCRS).unwrap();
        assert_eq!(three.selection().to_string(), "sha256:0,1,16");
        assert_eq!(three.get(HashAlg::Sha256, 16), Some(&[0u8; 32][..]));
        assert_eq!(three.to_file(), SWTPM_PCRS);

        // Ten PCRs: two digest lists (8 + 2), and a SHA-1 bank with no PCR.
        let ten = PcrValues::parse_file(SWTPM_PCRS_10).unwrap();
        assert_eq!(ten.selection().to_string(), "sha256:0,1,2,3,4,5,6,7,8,23");
        assert_eq!(ten.iter().count(), 10);
        assert_ne!(ten.get(HashAlg::Sha256, 3), Some(&[0u8; 32][..]));
        assert_eq!(ten.to_file(), SWTPM_PCRS_10);
    }

    #[test]
    fn inconsistent_pcr_files_are_refused() {
        let mut truncated = SWTPM_PCRS.to_vec();
        truncated.pop();
        assert!(PcrValues::parse_file(&truncated).is_err());
        let mut trailing = SWTPM_PCRS.to_vec();
        trailing.push(0);
        assert!(PcrValues::parse_file(&trailing).is_err());
        // A digest count the selection does not match: 2 digests for 3 PCRs.
        let mut short = SWTPM_PCRS.to_vec();
        short[FILE_SELECTION_SIZE + 4] = 2;
        let err = PcrValues::parse_file(&short).unwrap_err().to_string();
        assert!(err.contains("2 digests for the 3 PCRs"), "{err}");
        // A digest of the wrong size for its bank.
        let mut wrong_size = SWTPM_PCRS.to_vec();
        wrong_size[FILE_SELECTION_SIZE + 8] = 20;
        assert!(PcrValues::parse_file(&wrong_size).is_err());
        assert!(PcrValues::parse_file(&[]).is_err());
    }
}
