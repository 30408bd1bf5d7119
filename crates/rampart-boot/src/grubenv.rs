//! The GRUB environment block (`grubenv`), parsed and written natively.
//!
//! The block is what `grub-editenv` and GRUB's `load_env`/`save_env` use: exactly
//! [`BLOCK_SIZE`] bytes, starting with the [`SIGNATURE`] line, then one `name=value\n` line per
//! variable, the rest filled with `#`. In a value, a backslash and a newline are written with a
//! backslash before them (so a value may span lines); reading drops the backslash and keeps the
//! character after it. Lines starting with `#` are comments (`grub-editenv create` writes a
//! warning comment; the padding is one long comment), which is why a name may not start
//! with `#`. Names end at the first `=`, so they cannot contain one.
//!
//! The size is fixed because GRUB's `save_env` rewrites the file's sectors in place at boot and
//! never changes its length. Parsing is stricter than GRUB (which silently stops at the first
//! broken line): a block that is not exactly what the tools write is refused with the reason,
//! because acting on half an environment could boot the wrong slot.

use std::collections::BTreeMap;

/// Size of every GRUB environment block.
pub const BLOCK_SIZE: usize = 1024;

/// The line every block starts with.
pub const SIGNATURE: &[u8] = b"# GRUB Environment Block\n";

/// The byte GRUB fills the unused end of the block with.
const PAD: u8 = b'#';

/// The hint every refusal of a stored block ends with: the tools cannot repair a block either.
const RECREATE: &str = "recreate it with `grub-editenv FILE create` and set the variables again";

/// Why a GRUB environment block cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrubEnvError {
    /// The block is not [`BLOCK_SIZE`] bytes (truncated, or not an environment block).
    #[error(
        "the GRUB environment block is {len} bytes, but it must be exactly {BLOCK_SIZE}; {RECREATE}"
    )]
    WrongSize { len: usize },
    /// The block does not start with [`SIGNATURE`].
    #[error(
        "the GRUB environment block does not start with the signature line `# GRUB Environment Block`; {RECREATE}"
    )]
    MissingSignature,
    /// A line is not `name=value` (nor a `#` comment).
    #[error(
        "line {line} (byte {offset}) of the GRUB environment block is malformed: {reason}; {RECREATE}"
    )]
    MalformedLine {
        /// Line number, counting the signature as line 1.
        line: usize,
        /// Byte offset of the start of the line in the block.
        offset: usize,
        reason: &'static str,
    },
    /// A variable name GRUB could not read back.
    #[error("{name:?} cannot be a GRUB environment variable name: {reason}")]
    BadName { name: String, reason: &'static str },
    /// A value GRUB could not hold (its strings end at a NUL byte).
    #[error(
        "the value of GRUB environment variable {name} contains a NUL byte, which GRUB cannot store"
    )]
    BadValue { name: String },
    /// The variables do not fit in one block.
    #[error(
        "the variables need {needed} bytes but a GRUB environment block holds {BLOCK_SIZE}; remove or shorten variables"
    )]
    TooLarge { needed: usize },
}

/// Reads the variables of a GRUB environment block.
///
/// If a name occurs twice the last value wins, as it does for GRUB's `load_env`.
pub fn parse(block: &[u8]) -> Result<BTreeMap<String, String>, GrubEnvError> {
    if block.len() != BLOCK_SIZE {
        return Err(GrubEnvError::WrongSize { len: block.len() });
    }
    if !block.starts_with(SIGNATURE) {
        return Err(GrubEnvError::MissingSignature);
    }
    let mut vars = BTreeMap::new();
    let mut pos = SIGNATURE.len();
    let mut line = 1;
    while pos < block.len() {
        line += 1;
        let start = pos;
        let bad = |reason| GrubEnvError::MalformedLine {
            line,
            offset: start,
            reason,
        };
        if block[pos] == PAD {
            // A comment or the padding: skipped the way GRUB skips it (an escaped newline does
            // not end it), up to the end of the block if no newline follows.
            let (end, _) = scan_line(block, pos);
            if block[pos..end.min(block.len())].contains(&0) {
                return Err(bad("a comment contains a NUL byte"));
            }
            pos = end + 1;
            continue;
        }
        let Some(eq) = block[pos..].iter().position(|&b| b == b'=' || b == b'\n') else {
            return Err(bad("it has no `=` and no end of line"));
        };
        let eq = pos + eq;
        if block[eq] != b'=' {
            return Err(bad("it has no `=` between the name and the value"));
        }
        if eq == pos {
            return Err(bad("the variable name is empty"));
        }
        let (end, value) = scan_line(block, eq + 1);
        if end >= block.len() {
            return Err(bad(
                "the value does not end with a newline before the end of the block (truncated)",
            ));
        }
        let name = &block[pos..eq];
        if name.contains(&0) || value.contains(&0) {
            return Err(bad("it contains a NUL byte"));
        }
        let (Ok(name), Ok(value)) = (String::from_utf8(name.to_vec()), String::from_utf8(value))
        else {
            return Err(bad("it is not valid UTF-8"));
        };
        vars.insert(name, value);
        pos = end + 1;
    }
    Ok(vars)
}

/// Scans from `pos` to the newline ending a line, honouring backslash escapes. Returns the
/// position of that newline (`>= block.len()` if there is none) and the unescaped text.
fn scan_line(block: &[u8], mut pos: usize) -> (usize, Vec<u8>) {
    let mut text = Vec::new();
    while pos < block.len() {
        match block[pos] {
            b'\n' => return (pos, text),
            b'\\' => {
                // GRUB keeps the escaped character whatever it is; a backslash as the very
                // last byte escapes nothing and the line is unterminated.
                if let Some(&c) = block.get(pos + 1) {
                    text.push(c);
                }
                pos += 2;
            }
            c => {
                text.push(c);
                pos += 1;
            }
        }
    }
    (pos, text)
}

/// Writes `vars` as a GRUB environment block of exactly [`BLOCK_SIZE`] bytes, in name order.
pub fn serialize(vars: &BTreeMap<String, String>) -> Result<Vec<u8>, GrubEnvError> {
    let mut block = Vec::with_capacity(BLOCK_SIZE);
    block.extend_from_slice(SIGNATURE);
    for (name, value) in vars {
        check_name(name)?;
        if value.contains('\0') {
            return Err(GrubEnvError::BadValue { name: name.clone() });
        }
        block.extend_from_slice(name.as_bytes());
        block.push(b'=');
        for &c in value.as_bytes() {
            if c == b'\\' || c == b'\n' {
                block.push(b'\\');
            }
            block.push(c);
        }
        block.push(b'\n');
    }
    if block.len() > BLOCK_SIZE {
        return Err(GrubEnvError::TooLarge {
            needed: block.len(),
        });
    }
    block.resize(BLOCK_SIZE, PAD);
    Ok(block)
}

/// Refuses names GRUB would read back differently (or not at all).
fn check_name(name: &str) -> Result<(), GrubEnvError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.contains('=') {
        "it contains `=`, which ends a name"
    } else if name.contains('\n') {
        "it contains a newline, which ends a line"
    } else if name.contains('\0') {
        "it contains a NUL byte"
    } else if name.contains('\\') {
        "it contains a backslash, which GRUB reads as an escape when looking for lines"
    } else if name.starts_with('#') {
        "it starts with `#`, so GRUB would read the line as a comment"
    } else {
        return Ok(());
    };
    Err(GrubEnvError::BadName {
        name: name.to_owned(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A block as `grub-editenv create` + `set` writes it (warning comment included).
    fn editenv_block(lines: &[u8]) -> Vec<u8> {
        let mut b = SIGNATURE.to_vec();
        b.extend_from_slice(
            b"# WARNING: Do not edit this file by tools other than grub-editenv!!!\n",
        );
        b.extend_from_slice(lines);
        b.resize(BLOCK_SIZE, b'#');
        b
    }

    #[test]
    fn layout_is_signature_lines_and_hash_padding() {
        let block = serialize(&vars(&[("BOOT_ORDER", "A B"), ("BOOT_A_LEFT", "3")])).unwrap();
        assert_eq!(block.len(), BLOCK_SIZE);
        let text = b"# GRUB Environment Block\nBOOT_A_LEFT=3\nBOOT_ORDER=A B\n";
        assert_eq!(&block[..text.len()], text);
        assert!(block[text.len()..].iter().all(|&b| b == b'#'));
    }

    #[test]
    fn round_trips_including_escapes() {
        let v = vars(&[
            ("BOOT_ORDER", "B A"),
            ("empty", ""),
            ("path", r"C:\dir\\x"),
            ("multi", "line one\nline two\n"),
            ("hash", "#not a comment"),
            ("eq", "a=b=c"),
            ("utf8", "grüße"),
        ]);
        let block = serialize(&v).unwrap();
        assert_eq!(parse(&block).unwrap(), v);
        // Escaped as GRUB escapes: backslash before `\` and newline.
        let text = String::from_utf8_lossy(&block);
        assert!(text.contains("path=C:\\\\dir\\\\\\\\x\n"), "{text}");
        assert!(text.contains("multi=line one\\\nline two\\\n\n"), "{text}");
    }

    #[test]
    fn reads_what_grub_editenv_writes() {
        let block = editenv_block(b"BOOT_ORDER=B A\nx=a\\\\b\\\nc\n");
        assert_eq!(
            parse(&block).unwrap(),
            vars(&[("BOOT_ORDER", "B A"), ("x", "a\\b\nc")])
        );
        assert_eq!(parse(&editenv_block(b"")).unwrap(), BTreeMap::new());
    }

    #[test]
    fn last_duplicate_wins_like_load_env() {
        let block = editenv_block(b"a=1\na=2\n");
        assert_eq!(parse(&block).unwrap(), vars(&[("a", "2")]));
    }

    #[test]
    fn exactly_full_block_fits_and_one_more_byte_does_not() {
        // Signature (25) + "v=" (2) + value + "\n" (1) = 1024.
        let value = "x".repeat(BLOCK_SIZE - SIGNATURE.len() - 3);
        let v = vars(&[("v", &value)]);
        let block = serialize(&v).unwrap();
        assert_eq!(block.len(), BLOCK_SIZE);
        assert_eq!(block[BLOCK_SIZE - 1], b'\n');
        assert_eq!(parse(&block).unwrap(), v);
        let too_long = vars(&[("v", &format!("{value}x"))]);
        assert_eq!(
            serialize(&too_long),
            Err(GrubEnvError::TooLarge { needed: 1025 })
        );
        // Escapes count: one backslash takes two bytes.
        let escaped = vars(&[("v", &format!("{}\\", &value[1..]))]);
        assert!(matches!(
            serialize(&escaped),
            Err(GrubEnvError::TooLarge { needed: 1025 })
        ));
    }

    #[test]
    fn refuses_names_grub_cannot_read_back() {
        for name in ["", "a=b", "a\nb", "#x", "a\\b", "a\0b"] {
            let err = serialize(&vars(&[(name, "v")])).unwrap_err();
            assert!(
                matches!(err, GrubEnvError::BadName { .. }),
                "{name:?}: {err}"
            );
        }
        assert_eq!(
            serialize(&vars(&[("n", "a\0b")])),
            Err(GrubEnvError::BadValue { name: "n".into() })
        );
    }

    #[test]
    fn refuses_wrong_size_and_missing_signature_with_the_fix() {
        let block = serialize(&BTreeMap::new()).unwrap();
        let err = parse(&block[..1000]).unwrap_err();
        assert_eq!(err, GrubEnvError::WrongSize { len: 1000 });
        assert!(
            err.to_string().contains("grub-editenv FILE create"),
            "{err}"
        );
        let mut longer = block.clone();
        longer.push(b'#');
        assert_eq!(parse(&longer), Err(GrubEnvError::WrongSize { len: 1025 }));
        let err = parse(&[0u8; BLOCK_SIZE]).unwrap_err();
        assert_eq!(err, GrubEnvError::MissingSignature);
        assert!(
            err.to_string().contains("grub-editenv FILE create"),
            "{err}"
        );
    }

    #[test]
    fn refuses_malformed_lines_with_their_number() {
        let cases: [(&[u8], usize); 6] = [
            (b"a=1\nno equals sign\n", 4),
            (b"=1\n", 3),
            (b"a=1\n\n", 4),
            (b"a=\xff\n", 3),
            (b"a=1\0\n", 3),
            (b"\n", 3),
        ];
        for (lines, line) in cases {
            let err = parse(&editenv_block(lines)).unwrap_err();
            assert!(
                matches!(err, GrubEnvError::MalformedLine { line: l, .. } if l == line),
                "{:?}: {err}",
                String::from_utf8_lossy(lines)
            );
            assert!(err.to_string().contains("grub-editenv FILE create"));
        }
        // A value running into the end of the block (no newline, no padding).
        let mut block = SIGNATURE.to_vec();
        block.extend_from_slice(b"a=");
        block.resize(BLOCK_SIZE, b'x');
        assert!(matches!(
            parse(&block),
            Err(GrubEnvError::MalformedLine { line: 2, .. })
        ));
        // A zero-filled tail after valid lines (e.g. a torn copy by another tool).
        let mut block = SIGNATURE.to_vec();
        block.extend_from_slice(b"a=1\n");
        block.resize(BLOCK_SIZE, 0);
        assert!(matches!(
            parse(&block),
            Err(GrubEnvError::MalformedLine { line: 3, .. })
        ));
    }
}
