//! C2SP tlog-proof@v1 (<https://c2sp.org/tlog-proof>): an offline inclusion proof shipped with
//! a release.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! [extra <base64 opaque data>]
//! index <decimal leaf index, no leading zeros>
//! [<base64 SHA-256 proof hash>...]
//!
//! <checkpoint signed note, with the log signature and witness cosignatures>
//! ```
//!
//! Parsing is strict: every header line ends in `\n`, the lines come in this order, `extra` and
//! `index` appear at most once, base64 is canonical standard base64, proof hashes are exactly 32
//! bytes, the checkpoint is a well-formed signed note whose text is a well-formed checkpoint
//! body, and nothing follows the last signature line. Limits: at most [`MAX_TLOG_PROOF_SIZE`]
//! bytes in all, [`MAX_EXTRA_SIZE`] bytes of extra data and [`MAX_PROOF_HASHES`] proof hashes.
//!
//! Parsing does not verify anything: use [`crate::policy::WitnessPolicy::verify_proof`]. The
//! extra data is never authenticated.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, CheckpointError, decode_hash, parse_decimal_u64};
use crate::note::{MAX_NOTE_SIZE, Note, NoteError, excerpt};

/// The first line of a proof (without its newline).
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";
/// Most proof hashes accepted (a tree of 2^64 leaves needs at most 64).
pub const MAX_PROOF_HASHES: usize = 64;
/// Largest extra data accepted, in decoded bytes.
pub const MAX_EXTRA_SIZE: usize = 8 * 1024;
/// Largest encoded proof accepted, in bytes: the header lines at their limits plus the largest
/// note.
pub const MAX_TLOG_PROOF_SIZE: usize = 16 * 1024 + MAX_NOTE_SIZE;

/// Errors from parsing a tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlogProofError {
    #[error("proof is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("proof is truncated: it ends before {what}")]
    Truncated { what: &'static str },
    #[error("proof does not start with the line {TLOG_PROOF_HEADER}")]
    BadHeader,
    #[error("line {line} of the proof is not valid UTF-8")]
    NotUtf8 { line: usize },
    #[error("extra data is malformed: {reason}")]
    MalformedExtra { reason: &'static str },
    #[error("extra data is {size} bytes, over the limit of {max} bytes")]
    ExtraTooLarge { size: usize, max: usize },
    #[error("proof has more than one extra line")]
    DuplicateExtra,
    #[error("line {line}: the extra line must come right after the header line")]
    ExtraOutOfOrder { line: usize },
    #[error("line {line} should be the index line (index <n>) but is {found:?}")]
    MissingIndex { line: usize, found: String },
    #[error("line {line}: the proof has more than one index line")]
    DuplicateIndex { line: usize },
    #[error("index {found:?} is not a decimal number without leading zeros that fits in 64 bits")]
    InvalidIndex { found: String },
    #[error("line {line}: proof hash {found:?} is not the standard base64 encoding of 32 bytes")]
    MalformedHash { line: usize, found: String },
    #[error("proof has more than {max} proof hashes")]
    TooManyHashes { max: usize },
    #[error("the checkpoint is not a well-formed signed note: {0}")]
    Note(#[from] NoteError),
    #[error("the checkpoint body is malformed: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// A parsed tlog-proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque, unauthenticated extra data (`Some(vec![])` for an `extra ` line with no data).
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// RFC 6962 inclusion proof, from the leaf's sibling up to the root's child.
    pub hashes: Vec<[u8; 32]>,
    /// The checkpoint note, with the log signature and cosignatures.
    pub checkpoint: Note,
}

/// Splits off the next `\n`-terminated line.
fn next_line<'a>(rest: &mut &'a [u8], what: &'static str) -> Result<&'a [u8], TlogProofError> {
    let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
        return Err(TlogProofError::Truncated { what });
    };
    let line = &rest[..nl];
    *rest = &rest[nl + 1..];
    Ok(line)
}

fn as_str(line: &[u8], line_no: usize) -> Result<&str, TlogProofError> {
    std::str::from_utf8(line).map_err(|_| TlogProofError::NotUtf8 { line: line_no })
}

impl TlogProof {
    /// Parses an encoded proof.
    pub fn parse(input: &[u8]) -> Result<TlogProof, TlogProofError> {
        if input.len() > MAX_TLOG_PROOF_SIZE {
            return Err(TlogProofError::TooLarge {
                size: input.len(),
                max: MAX_TLOG_PROOF_SIZE,
            });
        }
        let mut rest = input;

        let header = next_line(&mut rest, "the end of the header line")?;
        if header != TLOG_PROOF_HEADER.as_bytes() {
            return Err(TlogProofError::BadHeader);
        }

        let mut line_no = 2;
        let mut line = as_str(next_line(&mut rest, "the index line")?, line_no)?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            if b64.len() > MAX_EXTRA_SIZE.div_ceil(3) * 4 {
                return Err(TlogProofError::ExtraTooLarge {
                    size: b64.len() / 4 * 3,
                    max: MAX_EXTRA_SIZE,
                });
            }
            let data = B64
                .decode(b64)
                .map_err(|_| TlogProofError::MalformedExtra {
                    reason: "not canonical standard base64",
                })?;
            if data.len() > MAX_EXTRA_SIZE {
                return Err(TlogProofError::ExtraTooLarge {
                    size: data.len(),
                    max: MAX_EXTRA_SIZE,
                });
            }
            extra = Some(data);
            line_no += 1;
            line = as_str(next_line(&mut rest, "the index line")?, line_no)?;
        } else if line == "extra" {
            return Err(TlogProofError::MalformedExtra {
                reason: "the extra line has no space after \"extra\"",
            });
        }

        let index = if let Some(n) = line.strip_prefix("index ") {
            parse_decimal_u64(n)
                .ok_or_else(|| TlogProofError::InvalidIndex { found: excerpt(n) })?
        } else if line.starts_with("extra ") {
            return Err(TlogProofError::DuplicateExtra);
        } else {
            return Err(TlogProofError::MissingIndex {
                line: line_no,
                found: excerpt(line),
            });
        };

        let mut hashes = Vec::new();
        loop {
            line_no += 1;
            let line = as_str(
                next_line(&mut rest, "the blank line before the checkpoint")?,
                line_no,
            )?;
            if line.is_empty() {
                break;
            }
            if line.starts_with("index ") || line == "index" {
                return Err(TlogProofError::DuplicateIndex { line: line_no });
            }
            if line.starts_with("extra ") || line == "extra" {
                return Err(if extra.is_some() {
                    TlogProofError::DuplicateExtra
                } else {
                    TlogProofError::ExtraOutOfOrder { line: line_no }
                });
            }
            if hashes.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyHashes {
                    max: MAX_PROOF_HASHES,
                });
            }
            let hash = decode_hash(line).ok_or_else(|| TlogProofError::MalformedHash {
                line: line_no,
                found: excerpt(line),
            })?;
            hashes.push(hash);
        }

        if rest.is_empty() {
            return Err(TlogProofError::Truncated {
                what: "the checkpoint",
            });
        }
        let checkpoint = Note::parse(rest)?;
        Checkpoint::parse_body(&checkpoint.text)?;
        Ok(TlogProof {
            extra,
            index,
            hashes,
            checkpoint,
        })
    }

    /// The encoded proof. For a proof that [`TlogProof::parse`] returned, this gives back the
    /// input bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(128 + 45 * self.hashes.len());
        out.push_str(TLOG_PROOF_HEADER);
        out.push('\n');
        if let Some(extra) = &self.extra {
            out.push_str("extra ");
            out.push_str(&B64.encode(extra));
            out.push('\n');
        }
        out.push_str(&format!("index {}\n", self.index));
        for h in &self.hashes {
            out.push_str(&B64.encode(h));
            out.push('\n');
        }
        out.push('\n');
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.checkpoint.to_bytes());
        bytes
    }

    /// The checkpoint body, parsed (the signatures are not checked here).
    pub fn checkpoint_body(&self) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(&self.checkpoint.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cosignature::{cosign, sign_checkpoint};
    use crate::note::NoteSigner;

    fn sample() -> TlogProof {
        let log = NoteSigner::from_seed("example.com/log", [1; 32]).unwrap();
        let w = NoteSigner::cosigner_from_seed("witness.example/w1", [2; 32]).unwrap();
        let cp = Checkpoint::new("example.com/log", 3, [0x22; 32]);
        let mut note = sign_checkpoint(&log, &cp).unwrap();
        note.signatures
            .push(cosign(&w, &note.text, 1_700_000_000).unwrap());
        TlogProof {
            extra: Some(b"app-v1.2.1.tar.gz".to_vec()),
            index: 2,
            hashes: vec![[0x33; 32], [0x44; 32]],
            checkpoint: note,
        }
    }

    fn encoded() -> String {
        String::from_utf8(sample().to_bytes()).unwrap()
    }

    #[test]
    fn round_trips() {
        let p = sample();
        let bytes = p.to_bytes();
        assert!(
            bytes.starts_with(b"c2sp.org/tlog-proof@v1\nextra YXBwLXYxLjIuMS50YXIuZ3o=\nindex 2\n")
        );
        assert_eq!(TlogProof::parse(&bytes).unwrap(), p);

        let mut no_extra = sample();
        no_extra.extra = None;
        no_extra.hashes.clear();
        let bytes = no_extra.to_bytes();
        assert!(bytes.starts_with(b"c2sp.org/tlog-proof@v1\nindex 2\n\nexample.com/log\n3\n"));
        assert_eq!(TlogProof::parse(&bytes).unwrap(), no_extra);

        let mut empty_extra = sample();
        empty_extra.extra = Some(Vec::new());
        assert_eq!(
            TlogProof::parse(&empty_extra.to_bytes()).unwrap(),
            empty_extra
        );
    }

    #[test]
    fn rejects_truncated_input() {
        let full = sample().to_bytes();
        // A prefix that ends right after a signature line is a well-formed proof with fewer
        // signatures (the policy then counts fewer cosignatures); every other strict prefix
        // fails.
        let sig_start = full.len()
            - sample()
                .checkpoint
                .signatures
                .last()
                .unwrap()
                .to_line()
                .len();
        for n in 0..full.len() {
            match TlogProof::parse(&full[..n]) {
                Err(_) => {}
                Ok(p) => {
                    assert_eq!(n, sig_start, "prefix of {n} bytes was accepted");
                    assert_eq!(p.checkpoint.signatures.len(), 1);
                }
            }
        }
        assert!(matches!(
            TlogProof::parse(b"c2sp.org/tlog-proof@v1\nindex 2\n"),
            Err(TlogProofError::Truncated { .. })
        ));
        assert!(matches!(
            TlogProof::parse(b"c2sp.org/tlog-proof@v1\nindex 2\n\n"),
            Err(TlogProofError::Truncated { .. })
        ));
    }

    #[test]
    fn rejects_padding_and_trailing_garbage() {
        let full = encoded();
        let cases = [
            (format!("{full}\n"), "trailing newline"),
            (format!("{full}garbage"), "trailing garbage"),
            (format!("{full}garbage\n"), "trailing garbage line"),
            (format!("{full} "), "trailing space"),
            (format!("\n{full}"), "leading newline"),
            (format!(" {full}"), "leading space"),
            (full.replace("index 2\n", "index 2 \n"), "space after index"),
            (full.replace("index 2\n", "index  2\n"), "double space"),
            (full.replace("index 2\n", "index 02\n"), "leading zero"),
            (full.replace("index 2\n", "index -2\n"), "negative"),
            (full.replace("index 2\n", "index +2\n"), "plus"),
            (full.replace('\n', "\r\n"), "CRLF"),
            (
                full.replace("\n\nexample.com/log", "\n\n\nexample.com/log"),
                "double blank line",
            ),
            (
                full.replace("tlog-proof@v1\n", "tlog-proof@v1 \n"),
                "header padding",
            ),
            (full.replace("tlog-proof@v1", "tlog-proof@v2"), "version"),
            (
                full.replace("YXBwLXYxLjIuMS50YXIuZ3o=", "YXBwLXYxLjIuMS50YXIuZ3o"),
                "extra without padding",
            ),
            (
                full.replace("YXBwLXYxLjIuMS50YXIuZ3o=", "YXBw LXYxLjIuMS50YXIuZ3o="),
                "extra with space",
            ),
        ];
        for (input, what) in cases {
            assert!(
                TlogProof::parse(input.as_bytes()).is_err(),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn rejects_lines_out_of_order_and_duplicates() {
        let full = encoded();
        let extra = "extra YXBwLXYxLjIuMS50YXIuZ3o=\n";
        let swapped = full.replace(&format!("{extra}index 2\n"), &format!("index 2\n{extra}"));
        assert!(matches!(
            TlogProof::parse(swapped.as_bytes()),
            Err(TlogProofError::ExtraOutOfOrder { .. })
        ));
        let dup_extra = full.replacen(extra, &format!("{extra}{extra}"), 1);
        assert_eq!(
            TlogProof::parse(dup_extra.as_bytes()),
            Err(TlogProofError::DuplicateExtra)
        );
        let dup_index = full.replace("index 2\n", "index 2\nindex 2\n");
        assert!(matches!(
            TlogProof::parse(dup_index.as_bytes()),
            Err(TlogProofError::DuplicateIndex { .. })
        ));
        let no_index = full.replace("index 2\n", "");
        assert!(matches!(
            TlogProof::parse(no_index.as_bytes()),
            Err(TlogProofError::MissingIndex { .. })
        ));
        let hash_first = full
            .replace("index 2\n", "")
            .replace("\n\nexample.com/log", "\nindex 2\n\nexample.com/log");
        assert!(TlogProof::parse(hash_first.as_bytes()).is_err());
    }

    #[test]
    fn rejects_bad_hashes() {
        let full = encoded();
        let h = B64.encode([0x33u8; 32]);
        let cases = [
            full.replace(&h, &h[..43]),
            full.replace(&h, &format!("{h}AAAA")),
            full.replace(&h, &B64.encode([0x33u8; 31])),
            full.replace(&h, &B64.encode([0x33u8; 33])),
            full.replace(&h, &h.replace('z', "_")),
            full.replace(&h, "not base64 at all"),
        ];
        for input in cases {
            assert!(matches!(
                TlogProof::parse(input.as_bytes()),
                Err(TlogProofError::MalformedHash { .. })
            ));
        }
    }

    #[test]
    fn limits() {
        let mut p = sample();
        p.hashes = vec![[7; 32]; MAX_PROOF_HASHES];
        assert_eq!(TlogProof::parse(&p.to_bytes()).unwrap(), p);
        p.hashes.push([7; 32]);
        assert!(matches!(
            TlogProof::parse(&p.to_bytes()),
            Err(TlogProofError::TooManyHashes { .. })
        ));

        let mut p = sample();
        p.extra = Some(vec![1; MAX_EXTRA_SIZE]);
        assert_eq!(TlogProof::parse(&p.to_bytes()).unwrap(), p);
        p.extra = Some(vec![1; MAX_EXTRA_SIZE + 1]);
        assert!(matches!(
            TlogProof::parse(&p.to_bytes()),
            Err(TlogProofError::ExtraTooLarge { .. })
        ));

        let huge = vec![b'a'; MAX_TLOG_PROOF_SIZE + 1];
        assert!(matches!(
            TlogProof::parse(&huge),
            Err(TlogProofError::TooLarge { .. })
        ));
    }

    #[test]
    fn checkpoint_must_be_a_checkpoint() {
        let log = NoteSigner::from_seed("example.com/log", [1; 32]).unwrap();
        let mut note = Note::new("just a note\n").unwrap();
        log.sign_note(&mut note).unwrap();
        let p = TlogProof {
            extra: None,
            index: 0,
            hashes: vec![],
            checkpoint: note,
        };
        assert!(matches!(
            TlogProof::parse(&p.to_bytes()),
            Err(TlogProofError::Checkpoint(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        let full = sample().to_bytes();
        for i in 0..full.len() {
            for b in [0u8, b'\n', b' ', 0xff, b'A'] {
                let mut m = full.clone();
                m[i] = b;
                let _ = TlogProof::parse(&m);
            }
        }
    }
}
