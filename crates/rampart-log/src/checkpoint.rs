//! C2SP tlog-checkpoint note bodies (<https://c2sp.org/tlog-checkpoint>).
//!
//! ```text
//! <origin>
//! <tree size, decimal, no leading zeros>
//! <base64 of the 32-byte RFC 6962 root hash>
//! [<extension line>...]
//! ```
//!
//! Every line ends in `\n` and none is empty. Parsing is strict: the origin must be non-empty,
//! the size canonical decimal that fits in a `u64`, the root hash canonical standard base64 of
//! exactly 32 bytes; no control characters other than the newlines. A body is at most
//! [`MAX_CHECKPOINT_SIZE`] bytes with at most [`MAX_EXTENSION_LINES`] extension lines.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::note::excerpt;

/// Largest checkpoint body accepted, in bytes (the largest note).
pub const MAX_CHECKPOINT_SIZE: usize = crate::note::MAX_NOTE_SIZE;
/// Largest number of extension lines accepted.
pub const MAX_EXTENSION_LINES: usize = 100;

/// Errors from parsing a checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint body is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("checkpoint body does not end with a newline")]
    NotNewlineTerminated,
    #[error("checkpoint body contains a control character on line {line}")]
    ControlCharacter { line: usize },
    #[error("checkpoint body has {found} line(s); it needs an origin, a tree size and a root hash")]
    TooFewLines { found: usize },
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    #[error("line {line} of the checkpoint body is empty")]
    EmptyLine { line: usize },
    #[error(
        "checkpoint tree size {found:?} is not a decimal number without leading zeros that fits in 64 bits"
    )]
    InvalidSize { found: String },
    #[error("checkpoint root hash {found:?} is not the standard base64 encoding of 32 bytes")]
    InvalidRootHash { found: String },
    #[error("checkpoint has {count} extension lines, over the limit of {max}")]
    TooManyExtensions { count: usize, max: usize },
    #[error("checkpoint origin or extension lines contain a newline")]
    EmbeddedNewline,
}

/// A parsed checkpoint body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checkpoint {
    /// The log's origin line (without the newline).
    pub origin: String,
    /// Number of leaves in the tree.
    pub size: u64,
    /// RFC 6962 root hash of the tree.
    pub root: [u8; 32],
    /// Opaque extension lines, without newlines, in order.
    pub extensions: Vec<String>,
}

/// Parses a canonical ASCII decimal `u64`: digits only, no sign, no leading zeros (except `0`).
pub(crate) fn parse_decimal_u64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse::<u64>().ok()
}

/// Decodes canonical standard base64 of exactly 32 bytes.
pub(crate) fn decode_hash(s: &str) -> Option<[u8; 32]> {
    if s.len() != 44 {
        return None;
    }
    let raw = B64.decode(s).ok()?;
    raw.try_into().ok()
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: [u8; 32]) -> Checkpoint {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// Parses a checkpoint body (a note text).
    pub fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        if body.len() > MAX_CHECKPOINT_SIZE {
            return Err(CheckpointError::TooLarge {
                size: body.len(),
                max: MAX_CHECKPOINT_SIZE,
            });
        }
        let Some(content) = body.strip_suffix('\n') else {
            return Err(CheckpointError::NotNewlineTerminated);
        };
        let line_count = body.bytes().filter(|&b| b == b'\n').count();
        if line_count > 3 + MAX_EXTENSION_LINES {
            return Err(CheckpointError::TooManyExtensions {
                count: line_count.saturating_sub(3),
                max: MAX_EXTENSION_LINES,
            });
        }
        let lines: Vec<&str> = content.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if line.chars().any(char::is_control) {
                return Err(CheckpointError::ControlCharacter { line: i + 1 });
            }
        }
        if lines.len() < 3 {
            // `content.split` yields one (possibly empty) line even for an empty body.
            let found = if content.is_empty() { 0 } else { lines.len() };
            return Err(CheckpointError::TooFewLines { found });
        }
        let origin = lines[0];
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        for (i, line) in lines.iter().enumerate().skip(1) {
            if line.is_empty() {
                return Err(CheckpointError::EmptyLine { line: i + 1 });
            }
        }
        let size = parse_decimal_u64(lines[1]).ok_or_else(|| CheckpointError::InvalidSize {
            found: excerpt(lines[1]),
        })?;
        let root = decode_hash(lines[2]).ok_or_else(|| CheckpointError::InvalidRootHash {
            found: excerpt(lines[2]),
        })?;
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions: lines[3..].iter().map(|s| (*s).to_owned()).collect(),
        })
    }

    /// The body: origin, size, base64 root hash and extension lines, each ending in `\n`.
    ///
    /// For a checkpoint that [`Checkpoint::validate`] accepts, [`Checkpoint::parse_body`] gives
    /// it back.
    pub fn to_body(&self) -> String {
        let mut out = String::with_capacity(self.origin.len() + 70);
        out.push_str(&self.origin);
        out.push('\n');
        out.push_str(&self.size.to_string());
        out.push('\n');
        out.push_str(&B64.encode(self.root));
        out.push('\n');
        for ext in &self.extensions {
            out.push_str(ext);
            out.push('\n');
        }
        out
    }

    /// Checks that [`Checkpoint::to_body`] yields a body that parses back to `self` (non-empty
    /// origin and extension lines without newlines or control characters, within the limits).
    pub fn validate(&self) -> Result<(), CheckpointError> {
        if self.extensions.len() > MAX_EXTENSION_LINES {
            return Err(CheckpointError::TooManyExtensions {
                count: self.extensions.len(),
                max: MAX_EXTENSION_LINES,
            });
        }
        let parsed = Checkpoint::parse_body(&self.to_body())?;
        if &parsed != self {
            return Err(CheckpointError::EmbeddedNewline);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str =
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";

    #[test]
    fn parses_spec_example_and_round_trips() {
        let cp = Checkpoint::parse_body(BODY).unwrap();
        assert_eq!(cp.origin, "example.com/behind-the-sofa");
        assert_eq!(cp.size, 20852163);
        assert_eq!(cp.root[0], 0x0a);
        assert!(cp.extensions.is_empty());
        assert_eq!(cp.to_body(), BODY);
        cp.validate().unwrap();

        let with_ext = format!("{BODY}ext one\nanother ext\n");
        let cp = Checkpoint::parse_body(&with_ext).unwrap();
        assert_eq!(cp.extensions, vec!["ext one", "another ext"]);
        assert_eq!(cp.to_body(), with_ext);
    }

    #[test]
    fn size_zero_and_max() {
        let empty_root = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        let cp = Checkpoint::parse_body(&format!("o\n0\n{empty_root}\n")).unwrap();
        assert_eq!(cp.size, 0);
        let cp = Checkpoint::parse_body(&format!("o\n{}\n{empty_root}\n", u64::MAX)).unwrap();
        assert_eq!(cp.size, u64::MAX);
    }

    #[test]
    fn rejects_malformed_bodies() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let cases = [
            (String::new(), "empty"),
            ("o\n1\n".to_string(), "two lines"),
            (format!("o\n1\n{root}"), "no final newline"),
            (format!("\n1\n{root}\n"), "empty origin"),
            (format!("o\n01\n{root}\n"), "leading zero"),
            (format!("o\n+1\n{root}\n"), "plus sign"),
            (format!("o\n-1\n{root}\n"), "negative"),
            (format!("o\n 1\n{root}\n"), "space"),
            (format!("o\n18446744073709551616\n{root}\n"), "overflow"),
            (format!("o\n1\n{}\n", &root[..43]), "short base64"),
            (
                format!("o\n1\n{}\n", root.replace("2I=", "2J=")),
                "non-canonical trailing bits",
            ),
            (format!("o\n1\n{}==\n", &root[..42]), "extra padding"),
            ("o\n1\nAAAA\n".to_string(), "short hash"),
            (format!("o\n1\n{root}AAAA\n"), "long hash"),
            (
                format!("o\n1\n{}\n", root.replace('C', "-")),
                "url alphabet",
            ),
            (format!("o\n1\n{root}\n\n"), "empty extension"),
            (format!("o\n1\n{root}\r\n"), "CRLF"),
            (format!("o\r\n1\n{root}\n"), "CR in origin"),
            (format!("o\n1\n{root}\nx\ty\n"), "tab in extension"),
        ];
        for (body, what) in cases {
            assert!(
                Checkpoint::parse_body(&body).is_err(),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn limits() {
        let root = "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=";
        let mut body = format!("o\n1\n{root}\n");
        for _ in 0..MAX_EXTENSION_LINES {
            body.push_str("e\n");
        }
        assert!(Checkpoint::parse_body(&body).is_ok());
        body.push_str("e\n");
        assert!(matches!(
            Checkpoint::parse_body(&body),
            Err(CheckpointError::TooManyExtensions { .. })
        ));
        let huge = format!("{}\n1\n{root}\n", "o".repeat(MAX_CHECKPOINT_SIZE));
        assert!(matches!(
            Checkpoint::parse_body(&huge),
            Err(CheckpointError::TooLarge { .. })
        ));
    }

    #[test]
    fn validate_catches_embedded_newlines() {
        let mut cp = Checkpoint::new("o", 1, [0; 32]);
        cp.validate().unwrap();
        cp.origin = "a\nb".into();
        assert!(cp.validate().is_err());
        cp.origin = String::new();
        assert_eq!(cp.validate(), Err(CheckpointError::EmptyOrigin));
        cp.origin = "o".into();
        cp.extensions = vec![String::new()];
        assert!(cp.validate().is_err());
        cp.extensions = vec!["x\ny".into()];
        assert_eq!(cp.validate(), Err(CheckpointError::EmbeddedNewline));
    }
}
