//! C2SP signed notes (<https://c2sp.org/signed-note>), verifier keys and signer keys.
//!
//! A signed note is a text (valid UTF-8, no ASCII control characters other than newline, every
//! line ending in `\n`), a blank line, then one or more signature lines
//!
//! ```text
//! — <key name> base64(key ID[4] || signature)
//! ```
//!
//! (U+2014 em dash, a space, the key name, a space, the base64 signature, a newline). The key ID
//! is `SHA-256(name || 0x0A || type || public key)[:4]`.
//!
//! Key types: `0x01` Ed25519 over the note text, `0x04` timestamped Ed25519 cosignatures
//! (c2sp.org/tlog-cosignature, see [`crate::cosignature`]). Any other type byte (ECDSA `0x02`,
//! ML-DSA-44 cosignatures `0x06`, ...) is parsed into [`KeyType::Unknown`] so that a policy can
//! name such keys, but signatures from them never verify.
//!
//! Key strings use the Go `golang.org/x/mod/sumdb/note` formats:
//!
//! * verifier key: `<name>+<hex key ID, 8 digits>+base64(type || public key)`
//! * signer key: `PRIVATE+KEY+<name>+<hex key ID>+base64(type || 32-byte Ed25519 seed)`
//!
//! Limits enforced before any other work: a note is at most [`MAX_NOTE_SIZE`] bytes with at most
//! [`MAX_SIGNATURES`] signature lines; a key string is at most [`MAX_KEY_STRING_LEN`] bytes; a key
//! name is at most [`MAX_NAME_LEN`] bytes.
//!
//! This module does no I/O and has no clock. Key generation is left to the caller: pass 32 random
//! bytes to [`NoteSigner::from_seed`].

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};

/// Largest signed note accepted by [`Note::parse`], in bytes.
pub const MAX_NOTE_SIZE: usize = 64 * 1024;
/// Largest number of signature lines accepted in one note.
pub const MAX_SIGNATURES: usize = 100;
/// Largest verifier or signer key string accepted, in bytes (room for post-quantum keys).
pub const MAX_KEY_STRING_LEN: usize = 8 * 1024;
/// Largest key name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// Signature type byte of plain Ed25519 note signatures.
pub const KEY_TYPE_ED25519: u8 = 0x01;
/// Signature type byte of timestamped Ed25519 cosignatures (tlog-cosignature/v1).
pub const KEY_TYPE_ED25519_COSIGNATURE: u8 = 0x04;

/// The em dash and space that start every signature line.
const SIG_PREFIX: &str = "\u{2014} ";
const ED25519_PUBLIC_KEY_LEN: usize = 32;
const ED25519_SIGNATURE_LEN: usize = 64;

/// Errors from parsing or producing signed notes and key strings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("{what} is {size} bytes, over the limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("note contains an ASCII control character other than newline at byte {offset}")]
    ControlCharacter { offset: usize },
    #[error("note text is empty")]
    EmptyText,
    #[error("note text does not end with a newline")]
    TextNotNewlineTerminated,
    #[error("note has no blank line separating the text from the signatures")]
    MissingSeparator,
    #[error("note has no signature lines")]
    NoSignatures,
    #[error("the last signature line of the note does not end with a newline")]
    SignaturesNotNewlineTerminated,
    #[error("note has {count} signature lines, over the limit of {max}")]
    TooManySignatures { count: usize, max: usize },
    #[error("signature line {line} is malformed: {reason}")]
    MalformedSignatureLine { line: usize, reason: &'static str },
    #[error(
        "key name {name:?} is invalid: a name must be 1 to {MAX_NAME_LEN} bytes with no spaces, '+' or control characters"
    )]
    InvalidName { name: String },
    #[error("malformed verifier key: {reason}")]
    MalformedVerifierKey { reason: &'static str },
    #[error("malformed signer key: {reason}")]
    MalformedSignerKey { reason: &'static str },
    #[error("key ID {stated} in the key string does not match the key (computed {computed})")]
    KeyIdMismatch { stated: String, computed: String },
    #[error(
        "key type 0x{0:02x} cannot sign; supported are 0x01 (Ed25519) and 0x04 (Ed25519 cosignature)"
    )]
    UnsupportedSignerType(u8),
    #[error("{0}")]
    WrongSignerKind(&'static str),
    #[error("the Ed25519 seed was rejected")]
    InvalidSeed,
    #[error("two trusted keys share the name and key ID {key}")]
    AmbiguousVerifier { key: String },
    #[error("signature by the known key {key} does not verify")]
    InvalidSignature { key: String },
    #[error("note has no valid signature from a known key")]
    NotVerified,
}

/// Reports whether `name` is a valid key name: non-empty, at most [`MAX_NAME_LEN`] bytes, no
/// Unicode spaces, no `+`, no control characters.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name
            .chars()
            .any(|c| c == '+' || c.is_whitespace() || c.is_control())
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(NoteError::InvalidName {
            name: excerpt(name),
        })
    }
}

/// At most 64 characters of `s`, for error messages.
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(64).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// The standard key ID: `SHA-256(name || 0x0A || key_type || public_key)[:4]`.
pub fn key_id(name: &str, key_type: u8, public_key: &[u8]) -> [u8; 4] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(b"\n");
    ctx.update(&[key_type]);
    ctx.update(public_key);
    let digest = ctx.finish();
    let mut id = [0u8; 4];
    id.copy_from_slice(&digest.as_ref()[..4]);
    id
}

/// Ed25519 verification; false on any malformed input.
pub(crate) fn ed25519_verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    public_key.len() == ED25519_PUBLIC_KEY_LEN
        && signature.len() == ED25519_SIGNATURE_LEN
        && UnparsedPublicKey::new(&ED25519, public_key)
            .verify(message, signature)
            .is_ok()
}

/// The domain-separation header line of a tlog-cosignature/v1 signed message, with its newline.
pub const COSIGNATURE_V1_HEADER: &str = "cosignature/v1\n";
/// The largest timestamp a cosignature may carry (2^63 - 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;
/// Length of an Ed25519 cosignature's signature bytes: 8-byte timestamp and 64-byte signature.
pub const COSIGNATURE_LEN: usize = 8 + 64;

/// The message an Ed25519 cosigner signs for `checkpoint_body` at `timestamp`
/// (tlog-cosignature/v1; key type `0x04`).
pub fn cosigned_message(checkpoint_body: &str, timestamp: u64) -> Vec<u8> {
    let mut msg = Vec::with_capacity(COSIGNATURE_V1_HEADER.len() + 26 + checkpoint_body.len());
    msg.extend_from_slice(COSIGNATURE_V1_HEADER.as_bytes());
    msg.extend_from_slice(format!("time {timestamp}\n").as_bytes());
    msg.extend_from_slice(checkpoint_body.as_bytes());
    msg
}

/// Why the signature bytes of a type-`0x04` line do not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CosignatureBytesError {
    WrongLength(usize),
    TimestampTooLarge(u64),
    BadSignature,
}

/// Checks type-`0x04` signature bytes (`u64` big-endian timestamp || Ed25519 signature) by
/// `public_key` over `checkpoint_body`; returns the timestamp. Here rather than in
/// [`crate::cosignature`] because [`Verifier::verify_signature`] checks such lines too.
pub(crate) fn verify_cosignature_bytes(
    public_key: &[u8],
    checkpoint_body: &str,
    signature: &[u8],
) -> Result<u64, CosignatureBytesError> {
    if signature.len() != COSIGNATURE_LEN {
        return Err(CosignatureBytesError::WrongLength(signature.len()));
    }
    let (ts, ed_sig) = signature.split_at(8);
    let mut ts_bytes = [0u8; 8];
    ts_bytes.copy_from_slice(ts);
    let timestamp = u64::from_be_bytes(ts_bytes);
    if timestamp > MAX_TIMESTAMP {
        return Err(CosignatureBytesError::TimestampTooLarge(timestamp));
    }
    let msg = cosigned_message(checkpoint_body, timestamp);
    if !ed25519_verify(public_key, &msg, ed_sig) {
        return Err(CosignatureBytesError::BadSignature);
    }
    Ok(timestamp)
}

/// Checks a note text: non-empty, ends with a newline, no control characters other than
/// newline, at most [`MAX_NOTE_SIZE`] bytes.
pub fn validate_text(text: &str) -> Result<(), NoteError> {
    if text.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            what: "note text",
            size: text.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if let Some(offset) = find_control(text) {
        return Err(NoteError::ControlCharacter { offset });
    }
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotNewlineTerminated);
    }
    Ok(())
}

fn find_control(s: &str) -> Option<usize> {
    s.bytes().position(|b| b < 0x20 && b != b'\n')
}

/// The signature type of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    /// `0x01`: Ed25519 over the note text.
    Ed25519,
    /// `0x04`: timestamped Ed25519 cosignature (tlog-cosignature/v1).
    Ed25519Cosignature,
    /// Any other type byte: parsed and reported, never verified.
    Unknown(u8),
}

impl KeyType {
    /// The type for a type byte.
    pub fn from_byte(b: u8) -> KeyType {
        match b {
            KEY_TYPE_ED25519 => KeyType::Ed25519,
            KEY_TYPE_ED25519_COSIGNATURE => KeyType::Ed25519Cosignature,
            other => KeyType::Unknown(other),
        }
    }

    /// The type byte.
    pub fn to_byte(self) -> u8 {
        match self {
            KeyType::Ed25519 => KEY_TYPE_ED25519,
            KeyType::Ed25519Cosignature => KEY_TYPE_ED25519_COSIGNATURE,
            KeyType::Unknown(b) => b,
        }
    }

    /// Whether signatures of this type can be verified by this crate.
    pub fn is_supported(self) -> bool {
        !matches!(KeyType::from_byte(self.to_byte()), KeyType::Unknown(_))
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match KeyType::from_byte(self.to_byte()) {
            KeyType::Ed25519 => f.write_str("Ed25519 (0x01)"),
            KeyType::Ed25519Cosignature => f.write_str("Ed25519 cosignature (0x04)"),
            KeyType::Unknown(b) => write!(f, "unknown type 0x{b:02x}"),
        }
    }
}

/// One signature line of a note: the key name, the key ID and the signature bytes (without the
/// key ID).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: [u8; 4],
    pub signature: Vec<u8>,
}

impl NoteSignature {
    /// Parses one signature line, with or without its final newline.
    pub fn parse_line(line: &str) -> Result<NoteSignature, NoteError> {
        if line.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                what: "signature line",
                size: line.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let line = line.strip_suffix('\n').unwrap_or(line);
        parse_sig_line(line).map_err(|reason| NoteError::MalformedSignatureLine { line: 1, reason })
    }

    /// The signature line, `— <name> base64(key ID || signature)\n`, with its final newline.
    pub fn to_line(&self) -> String {
        let mut raw = Vec::with_capacity(4 + self.signature.len());
        raw.extend_from_slice(&self.key_id);
        raw.extend_from_slice(&self.signature);
        format!("{SIG_PREFIX}{} {}\n", self.name, B64.encode(raw))
    }

    /// `<name>+<hex key ID>`, for messages.
    pub fn key_label(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }
}

fn parse_sig_line(line: &str) -> Result<NoteSignature, &'static str> {
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or("it does not start with an em dash (U+2014) and a space")?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or("it has no space between the key name and the signature")?;
    if !is_valid_name(name) {
        return Err("the key name is empty or contains spaces, '+' or control characters");
    }
    if b64.is_empty() {
        return Err("the signature is empty");
    }
    if b64.len() > MAX_NOTE_SIZE {
        return Err("the signature is too long");
    }
    let raw = B64
        .decode(b64)
        .map_err(|_| "the signature is not canonical standard base64")?;
    if raw.len() < 5 {
        return Err("the signature is shorter than a 4-byte key ID and one signature byte");
    }
    let mut key_id = [0u8; 4];
    key_id.copy_from_slice(&raw[..4]);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id,
        signature: raw[4..].to_vec(),
    })
}

/// Parses a block of signature lines, each ending in a newline (for example the body of a
/// tlog-witness `add-checkpoint` response). At most [`MAX_NOTE_SIZE`] bytes and
/// [`MAX_SIGNATURES`] lines.
pub fn parse_signature_lines(bytes: &[u8]) -> Result<Vec<NoteSignature>, NoteError> {
    if bytes.len() > MAX_NOTE_SIZE {
        return Err(NoteError::TooLarge {
            what: "signature block",
            size: bytes.len(),
            max: MAX_NOTE_SIZE,
        });
    }
    let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
    if let Some(offset) = find_control(s) {
        return Err(NoteError::ControlCharacter { offset });
    }
    parse_sig_block(s)
}

fn parse_sig_block(sigs: &str) -> Result<Vec<NoteSignature>, NoteError> {
    if sigs.is_empty() {
        return Err(NoteError::NoSignatures);
    }
    let Some(body) = sigs.strip_suffix('\n') else {
        return Err(NoteError::SignaturesNotNewlineTerminated);
    };
    let count = sigs.bytes().filter(|&b| b == b'\n').count();
    if count > MAX_SIGNATURES {
        return Err(NoteError::TooManySignatures {
            count,
            max: MAX_SIGNATURES,
        });
    }
    body.split('\n')
        .enumerate()
        .map(|(i, line)| {
            parse_sig_line(line).map_err(|reason| NoteError::MalformedSignatureLine {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

/// A signed note: the text (with its final newline) and its signature lines, in order.
///
/// Parsing checks the syntax only; use [`Note::verify`], [`Note::verified_by`] or a
/// [`crate::policy::WitnessPolicy`] before trusting the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub text: String,
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// An unsigned note with a checked text (see [`validate_text`]).
    pub fn new(text: impl Into<String>) -> Result<Note, NoteError> {
        let text = text.into();
        validate_text(&text)?;
        Ok(Note {
            text,
            signatures: Vec::new(),
        })
    }

    /// Parses a signed note. Signatures are not verified here.
    pub fn parse(bytes: &[u8]) -> Result<Note, NoteError> {
        if bytes.len() > MAX_NOTE_SIZE {
            return Err(NoteError::TooLarge {
                what: "note",
                size: bytes.len(),
                max: MAX_NOTE_SIZE,
            });
        }
        let s = std::str::from_utf8(bytes).map_err(|_| NoteError::NotUtf8)?;
        if let Some(offset) = find_control(s) {
            return Err(NoteError::ControlCharacter { offset });
        }
        // The text ends at the last blank line; signature lines cannot contain one.
        let split = s.rfind("\n\n").ok_or(NoteError::MissingSeparator)?;
        let text = &s[..split + 1];
        let signatures = parse_sig_block(&s[split + 2..])?;
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The encoded note: text, blank line, signature lines. For a note that [`Note::parse`]
    /// returned, this gives back the input bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = String::with_capacity(self.text.len() + 1 + 128 * self.signatures.len());
        out.push_str(&self.text);
        out.push('\n');
        for sig in &self.signatures {
            out.push_str(&sig.to_line());
        }
        out.into_bytes()
    }

    /// The signature lines that claim to be from `verifier` (same name and key ID).
    pub fn signatures_from<'a>(
        &'a self,
        verifier: &'a Verifier,
    ) -> impl Iterator<Item = &'a NoteSignature> + 'a {
        self.signatures.iter().filter(move |s| verifier.matches(s))
    }

    /// The verifiers (each listed once, in the order given) with at least one signature line
    /// that matches both name and key ID and verifies over the text. Signatures from unknown
    /// keys, and signatures that fail to verify, are ignored.
    pub fn verified_by<'v>(&self, verifiers: &'v [Verifier]) -> Vec<&'v Verifier> {
        let mut out: Vec<&'v Verifier> = Vec::new();
        for v in verifiers {
            if out.contains(&v) {
                continue;
            }
            if self
                .signatures_from(v)
                .any(|s| v.verify_signature(&self.text, s))
            {
                out.push(v);
            }
        }
        out
    }

    /// Strict verification in the manner of Go's `note.Open`: signatures from unknown keys (and
    /// from known keys of unsupported types) are ignored, a signature from a known key that
    /// fails to verify rejects the whole note, and at least one known signature must verify.
    /// Returns the verifiers that signed, each once, in the order given.
    pub fn verify<'v>(&self, verifiers: &'v [Verifier]) -> Result<Vec<&'v Verifier>, NoteError> {
        validate_text(&self.text)?;
        let mut signed = vec![false; verifiers.len()];
        for sig in &self.signatures {
            let mut matching = verifiers
                .iter()
                .enumerate()
                .filter(|(_, v)| v.matches(sig) && v.key_type().is_supported());
            let Some((i, v)) = matching.next() else {
                continue;
            };
            if matching.any(|(_, other)| other != v) {
                return Err(NoteError::AmbiguousVerifier {
                    key: sig.key_label(),
                });
            }
            if !v.verify_signature(&self.text, sig) {
                return Err(NoteError::InvalidSignature {
                    key: sig.key_label(),
                });
            }
            signed[i] = true;
        }
        let out: Vec<&'v Verifier> = verifiers
            .iter()
            .zip(signed)
            .filter_map(|(v, s)| s.then_some(v))
            .collect();
        if out.is_empty() {
            return Err(NoteError::NotVerified);
        }
        Ok(out)
    }
}

/// A public key that can check note signatures, parsed from a verifier key string
/// `<name>+<hex key ID>+base64(type || public key)`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Verifier {
    name: String,
    key_id: [u8; 4],
    key_type: KeyType,
    public_key: Vec<u8>,
}

impl Verifier {
    /// Parses a verifier key string.
    ///
    /// Ed25519 (`0x01`) and Ed25519 cosignature (`0x04`) keys must be 32 bytes and their key ID
    /// must equal the standard key ID. Keys of other types are accepted as given (their key-ID
    /// derivation is type specific) and never verify anything.
    pub fn parse(vkey: &str) -> Result<Verifier, NoteError> {
        if vkey.len() > MAX_KEY_STRING_LEN {
            return Err(NoteError::TooLarge {
                what: "verifier key",
                size: vkey.len(),
                max: MAX_KEY_STRING_LEN,
            });
        }
        let bad = |reason| NoteError::MalformedVerifierKey { reason };
        let (name, stated, key) = split_key_string(vkey, "expected <name>+<key ID>+<key>", bad)?;
        let (&type_byte, public_key) = key.split_first().ok_or(bad("the key is empty"))?;
        let key_type = KeyType::from_byte(type_byte);
        if key_type.is_supported() {
            if public_key.len() != ED25519_PUBLIC_KEY_LEN {
                return Err(bad("an Ed25519 public key must be 32 bytes"));
            }
            let computed = key_id(name, type_byte, public_key);
            if computed != stated {
                return Err(NoteError::KeyIdMismatch {
                    stated: hex::encode(stated),
                    computed: hex::encode(computed),
                });
            }
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: stated,
            key_type,
            public_key: public_key.to_vec(),
        })
    }

    /// A verifier with the standard key ID for `name`, `key_type` and `public_key`.
    pub fn new(name: &str, key_type: KeyType, public_key: &[u8]) -> Result<Verifier, NoteError> {
        check_name(name)?;
        let key_type = KeyType::from_byte(key_type.to_byte());
        if key_type.is_supported() && public_key.len() != ED25519_PUBLIC_KEY_LEN {
            return Err(NoteError::MalformedVerifierKey {
                reason: "an Ed25519 public key must be 32 bytes",
            });
        }
        if public_key.len() + 1 > MAX_KEY_STRING_LEN {
            return Err(NoteError::TooLarge {
                what: "public key",
                size: public_key.len(),
                max: MAX_KEY_STRING_LEN,
            });
        }
        Ok(Verifier {
            name: name.to_owned(),
            key_id: key_id(name, key_type.to_byte(), public_key),
            key_type,
            public_key: public_key.to_vec(),
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The signature type.
    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// The public key bytes, without the type byte.
    pub fn public_key(&self) -> &[u8] {
        &self.public_key
    }

    /// `<name>+<hex key ID>`, for messages.
    pub fn key_label(&self) -> String {
        format!("{}+{}", self.name, hex::encode(self.key_id))
    }

    /// The verifier key string.
    pub fn to_vkey_string(&self) -> String {
        let mut key = Vec::with_capacity(1 + self.public_key.len());
        key.push(self.key_type.to_byte());
        key.extend_from_slice(&self.public_key);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(key)
        )
    }

    /// Whether `sig` claims to be from this key (same name and key ID).
    pub fn matches(&self, sig: &NoteSignature) -> bool {
        sig.name == self.name && sig.key_id == self.key_id
    }

    /// Whether `sig` is a valid signature by this key over `text`. False when the name or key
    /// ID differ, for unknown key types, and for any malformed input. For cosignature keys the
    /// signature is checked as a tlog-cosignature/v1 over `text` as the checkpoint body.
    pub fn verify_signature(&self, text: &str, sig: &NoteSignature) -> bool {
        if !self.matches(sig) {
            return false;
        }
        match KeyType::from_byte(self.key_type.to_byte()) {
            KeyType::Ed25519 => ed25519_verify(&self.public_key, text.as_bytes(), &sig.signature),
            KeyType::Ed25519Cosignature => {
                verify_cosignature_bytes(&self.public_key, text, &sig.signature).is_ok()
            }
            KeyType::Unknown(_) => false,
        }
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Verifier({})", self.to_vkey_string())
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey_string())
    }
}

impl FromStr for Verifier {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verifier::parse(s)
    }
}

/// Splits the `<name>+<hex key ID>+base64(type || key)` form shared by verifier and signer key
/// strings; `bad` builds the caller's error type for a reason.
fn split_key_string<'a>(
    s: &'a str,
    shape: &'static str,
    bad: impl Fn(&'static str) -> NoteError,
) -> Result<(&'a str, [u8; 4], Vec<u8>), NoteError> {
    let (name, rest) = s.split_once('+').ok_or_else(|| bad(shape))?;
    let (id_hex, key_b64) = rest.split_once('+').ok_or_else(|| bad(shape))?;
    check_name(name)?;
    let stated =
        parse_key_id_hex(id_hex).ok_or_else(|| bad("the key ID is not 8 lowercase hex digits"))?;
    let key = B64
        .decode(key_b64)
        .map_err(|_| bad("the key is not canonical standard base64"))?;
    Ok((name, stated, key))
}

fn parse_key_id_hex(s: &str) -> Option<[u8; 4]> {
    // Lowercase only, as written by every implementation: one spelling per key ID.
    if s.len() != 8 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut id = [0u8; 4];
    hex::decode_to_slice(s, &mut id).ok()?;
    Some(id)
}

/// What a [`NoteSigner`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignerKind {
    /// Plain Ed25519 note signatures (type `0x01`), e.g. a log signing its checkpoints.
    Ed25519,
    /// Timestamped Ed25519 cosignatures (type `0x04`), e.g. a witness.
    Ed25519Cosignature,
}

impl SignerKind {
    /// The key type of the signatures.
    pub fn key_type(self) -> KeyType {
        match self {
            SignerKind::Ed25519 => KeyType::Ed25519,
            SignerKind::Ed25519Cosignature => KeyType::Ed25519Cosignature,
        }
    }
}

/// An Ed25519 note signing key, built from a 32-byte seed and a key name.
///
/// The seed is secret: `Debug` does not print it, and only [`NoteSigner::signer_key_string`]
/// reveals it.
pub struct NoteSigner {
    name: String,
    kind: SignerKind,
    seed: [u8; 32],
    key_pair: Ed25519KeyPair,
    public_key: [u8; 32],
    key_id: [u8; 4],
}

impl NoteSigner {
    /// A signer of the given kind.
    pub fn new(name: &str, kind: SignerKind, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        check_name(name)?;
        let key_pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| NoteError::InvalidSeed)?;
        let mut public_key = [0u8; 32];
        let pk = key_pair.public_key().as_ref();
        if pk.len() != public_key.len() {
            return Err(NoteError::InvalidSeed);
        }
        public_key.copy_from_slice(pk);
        Ok(NoteSigner {
            name: name.to_owned(),
            kind,
            seed,
            key_pair,
            public_key,
            key_id: key_id(name, kind.key_type().to_byte(), &public_key),
        })
    }

    /// A plain Ed25519 (type `0x01`) signer.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        NoteSigner::new(name, SignerKind::Ed25519, seed)
    }

    /// An Ed25519 cosignature (type `0x04`) signer, for witnesses.
    pub fn cosigner_from_seed(name: &str, seed: [u8; 32]) -> Result<NoteSigner, NoteError> {
        NoteSigner::new(name, SignerKind::Ed25519Cosignature, seed)
    }

    /// Parses `PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)`; the type is `0x01` or
    /// `0x04` and the key ID must match the derived public key. Error messages never include
    /// the key material.
    pub fn parse_signer_key(skey: &str) -> Result<NoteSigner, NoteError> {
        if skey.len() > MAX_KEY_STRING_LEN {
            return Err(NoteError::TooLarge {
                what: "signer key",
                size: skey.len(),
                max: MAX_KEY_STRING_LEN,
            });
        }
        let bad = |reason| NoteError::MalformedSignerKey { reason };
        let rest = skey
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(bad("it does not start with PRIVATE+KEY+"))?;
        let (name, stated, key) =
            split_key_string(rest, "expected PRIVATE+KEY+<name>+<key ID>+<key>", bad)?;
        let (&type_byte, seed) = key.split_first().ok_or(bad("the key is empty"))?;
        let kind = match KeyType::from_byte(type_byte) {
            KeyType::Ed25519 => SignerKind::Ed25519,
            KeyType::Ed25519Cosignature => SignerKind::Ed25519Cosignature,
            KeyType::Unknown(b) => return Err(NoteError::UnsupportedSignerType(b)),
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| bad("an Ed25519 seed must be 32 bytes"))?;
        let signer = NoteSigner::new(name, kind, seed)?;
        if signer.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated: hex::encode(stated),
                computed: hex::encode(signer.key_id),
            });
        }
        Ok(signer)
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The kind of signatures this signer makes.
    pub fn kind(&self) -> SignerKind {
        self.kind
    }

    /// The 4-byte key ID.
    pub fn key_id(&self) -> [u8; 4] {
        self.key_id
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.public_key
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key_type: self.kind.key_type(),
            public_key: self.public_key.to_vec(),
        }
    }

    /// The public verifier key string `<name>+<hex key ID>+base64(type || public key)`.
    pub fn verifier_key_string(&self) -> String {
        self.verifier().to_vkey_string()
    }

    /// The secret signer key string `PRIVATE+KEY+<name>+<hex key ID>+base64(type || seed)`.
    pub fn signer_key_string(&self) -> String {
        let mut key = Vec::with_capacity(33);
        key.push(self.kind.key_type().to_byte());
        key.extend_from_slice(&self.seed);
        format!(
            "PRIVATE+KEY+{}+{}+{}",
            self.name,
            hex::encode(self.key_id),
            B64.encode(key)
        )
    }

    /// A plain Ed25519 signature over `text` (which must be a valid note text). Cosignature
    /// signers must use [`crate::cosignature::cosign`] instead.
    pub fn sign(&self, text: &str) -> Result<NoteSignature, NoteError> {
        if self.kind != SignerKind::Ed25519 {
            return Err(NoteError::WrongSignerKind(
                "a cosignature key (type 0x04) signs only checkpoints, with cosignature::cosign",
            ));
        }
        validate_text(text)?;
        Ok(self.signature(self.sign_raw(text.as_bytes())))
    }

    /// Signs `note.text` and adds the signature, replacing any earlier signature line with the
    /// same name and key ID.
    pub fn sign_note(&self, note: &mut Note) -> Result<(), NoteError> {
        let sig = self.sign(&note.text)?;
        note.signatures
            .retain(|s| !(s.name == self.name && s.key_id == self.key_id));
        if note.signatures.len() >= MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures {
                count: note.signatures.len() + 1,
                max: MAX_SIGNATURES,
            });
        }
        note.signatures.push(sig);
        Ok(())
    }

    pub(crate) fn signature(&self, signature: Vec<u8>) -> NoteSignature {
        NoteSignature {
            name: self.name.clone(),
            key_id: self.key_id,
            signature,
        }
    }

    pub(crate) fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        self.key_pair.sign(message).as_ref().to_vec()
    }
}

impl fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NoteSigner")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("key_id", &hex::encode(self.key_id))
            .field("seed", &"<redacted>")
            .finish()
    }
}

impl FromStr for NoteSigner {
    type Err = NoteError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NoteSigner::parse_signer_key(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GO_SKEY: &str =
        "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    const GO_VKEY: &str = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
    const GO_TEXT: &str = "If you think cryptography is the answer to your problem,\n\
                           then you don't know what your problem is.\n";
    const GO_SIG: &str = "\u{2014} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";

    fn go_note() -> Vec<u8> {
        format!("{GO_TEXT}\n{GO_SIG}").into_bytes()
    }

    #[test]
    fn go_example_round_trips_and_verifies() {
        let signer = NoteSigner::parse_signer_key(GO_SKEY).unwrap();
        assert_eq!(signer.verifier_key_string(), GO_VKEY);
        assert_eq!(signer.signer_key_string(), GO_SKEY);
        let v = Verifier::parse(GO_VKEY).unwrap();
        assert_eq!(v.to_vkey_string(), GO_VKEY);
        assert_eq!(v.key_type(), KeyType::Ed25519);
        assert_eq!(v, signer.verifier());

        let note = Note::parse(&go_note()).unwrap();
        assert_eq!(note.text, GO_TEXT);
        assert_eq!(note.to_bytes(), go_note());
        assert_eq!(note.verified_by(std::slice::from_ref(&v)), vec![&v]);
        assert_eq!(note.verify(std::slice::from_ref(&v)).unwrap(), vec![&v]);

        // Ed25519 is deterministic: signing again gives the same line.
        let sig = signer.sign(GO_TEXT).unwrap();
        assert_eq!(sig.to_line(), GO_SIG);
    }

    #[test]
    fn sign_parse_round_trip_with_two_signers() {
        let a = NoteSigner::from_seed("example.com/a", [1; 32]).unwrap();
        let b = NoteSigner::from_seed("example.com/b", [2; 32]).unwrap();
        let mut note = Note::new("hello\n\nworld\n").unwrap();
        a.sign_note(&mut note).unwrap();
        b.sign_note(&mut note).unwrap();
        a.sign_note(&mut note).unwrap(); // replaces, does not duplicate
        assert_eq!(note.signatures.len(), 2);
        let bytes = note.to_bytes();
        let parsed = Note::parse(&bytes).unwrap();
        assert_eq!(parsed, note);
        let vs = [a.verifier(), b.verifier()];
        assert_eq!(parsed.verified_by(&vs).len(), 2);
        // A verifier with the same name but another key is unknown and ignored.
        let other = NoteSigner::from_seed("example.com/a", [3; 32]).unwrap();
        assert!(parsed.verified_by(&[other.verifier()]).is_empty());
        assert_eq!(
            parsed.verify(&[other.verifier()]),
            Err(NoteError::NotVerified)
        );
    }

    #[test]
    fn known_key_with_bad_signature_rejects_in_strict_mode() {
        let a = NoteSigner::from_seed("example.com/a", [1; 32]).unwrap();
        let mut note = Note::new("text\n").unwrap();
        a.sign_note(&mut note).unwrap();
        note.signatures[0].signature[0] ^= 1;
        let vs = [a.verifier()];
        assert!(note.verified_by(&vs).is_empty());
        assert!(matches!(
            note.verify(&vs),
            Err(NoteError::InvalidSignature { .. })
        ));
    }

    #[test]
    fn unknown_key_types_parse_but_never_verify() {
        let a = NoteSigner::from_seed("example.com/a", [1; 32]).unwrap();
        let pk = a.public_key();
        let mut key = vec![0x06];
        key.extend_from_slice(&pk);
        let id = key_id("example.com/a", 0x06, &pk);
        let vkey = format!("example.com/a+{}+{}", hex::encode(id), B64.encode(&key));
        let v = Verifier::parse(&vkey).unwrap();
        assert_eq!(v.key_type(), KeyType::Unknown(0x06));
        assert_eq!(v.to_vkey_string(), vkey);
        let text = "text\n";
        let mut sig = a.sign(text).unwrap();
        sig.key_id = id;
        assert!(!v.verify_signature(text, &sig));
        let note = Note {
            text: text.into(),
            signatures: vec![sig],
        };
        assert_eq!(note.verify(&[v]), Err(NoteError::NotVerified));
    }

    #[test]
    fn rejects_malformed_notes() {
        let good = go_note();
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"".to_vec(), "empty"),
            (GO_TEXT.as_bytes().to_vec(), "no separator"),
            (format!("{GO_TEXT}\n").into_bytes(), "no signatures"),
            (
                format!("{GO_TEXT}\n{}", GO_SIG.trim_end()).into_bytes(),
                "unterminated",
            ),
            (
                format!("{GO_TEXT}\n{GO_SIG}\n").into_bytes(),
                "trailing blank",
            ),
            (
                format!("{GO_TEXT}\n{GO_SIG}garbage\n").into_bytes(),
                "garbage line",
            ),
            (
                format!("{GO_TEXT}\n{}", GO_SIG.replace('\u{2014}', "-")).into_bytes(),
                "hyphen",
            ),
            (
                format!("{GO_TEXT}\n{}", GO_SIG.replace("M=", "M")).into_bytes(),
                "no padding",
            ),
            (
                format!("{GO_TEXT}\n{}", GO_SIG.replace("Neumann", "Neu+mann")).into_bytes(),
                "plus in name",
            ),
            (
                format!("{GO_TEXT}\n{}", GO_SIG.replace('\n', "\r\n")).into_bytes(),
                "CRLF",
            ),
            (
                format!("{GO_TEXT}\n\u{2014} a AAAAAA==\n").into_bytes(),
                "too short",
            ),
            (
                format!("{GO_TEXT}\n\u{2014}  AAAAAAA=\n").into_bytes(),
                "empty name",
            ),
            (
                format!("{GO_TEXT}\n\u{2014} a\u{a0}b AAAAAAA=\n").into_bytes(),
                "nbsp in name",
            ),
            (vec![0xff, b'\n', b'\n'], "not utf-8"),
        ];
        for (input, what) in cases {
            assert!(Note::parse(&input).is_err(), "{what} was accepted");
        }
        assert!(Note::parse(&good).is_ok());
    }

    #[test]
    fn enforces_limits() {
        let big = vec![b'a'; MAX_NOTE_SIZE + 1];
        assert!(matches!(Note::parse(&big), Err(NoteError::TooLarge { .. })));
        let mut many = String::from("t\n\n");
        for _ in 0..=MAX_SIGNATURES {
            many.push_str("\u{2014} a AAAAAAA=\n");
        }
        assert!(matches!(
            Note::parse(many.as_bytes()),
            Err(NoteError::TooManySignatures { .. })
        ));
        let mut ok = String::from("t\n\n");
        for _ in 0..MAX_SIGNATURES {
            ok.push_str("\u{2014} a AAAAAAA=\n");
        }
        assert_eq!(Note::parse(ok.as_bytes()).unwrap().signatures.len(), 100);
        let long = "x".repeat(MAX_KEY_STRING_LEN + 1);
        assert!(matches!(
            Verifier::parse(&long),
            Err(NoteError::TooLarge { .. })
        ));
        assert!(NoteSigner::from_seed(&"n".repeat(MAX_NAME_LEN + 1), [0; 32]).is_err());
    }

    #[test]
    fn text_may_contain_blank_lines_and_end_with_one() {
        let s = NoteSigner::from_seed("n", [9; 32]).unwrap();
        for text in ["a\n\nb\n", "a\n\n", "\n"] {
            let mut note = Note::new(text).unwrap();
            s.sign_note(&mut note).unwrap();
            let parsed = Note::parse(&note.to_bytes()).unwrap();
            assert_eq!(parsed.text, text);
            assert_eq!(parsed.verified_by(&[s.verifier()]).len(), 1);
        }
        assert_eq!(Note::new(""), Err(NoteError::EmptyText));
        assert_eq!(Note::new("a"), Err(NoteError::TextNotNewlineTerminated));
        assert!(Note::new("a\tb\n").is_err());
    }

    #[test]
    fn rejects_bad_key_strings() {
        let bad_id = GO_VKEY.replace("c74f20a3", "c74f20a4");
        assert!(matches!(
            Verifier::parse(&bad_id),
            Err(NoteError::KeyIdMismatch { .. })
        ));
        for s in [
            "",
            "PeterNeumann",
            "PeterNeumann+c74f20a3",
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",
            "PeterNeumann+c74f20a3+",
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWAA==",
        ] {
            assert!(Verifier::parse(s).is_err(), "{s:?} was accepted");
        }
        let bad_skey = GO_SKEY.replace("c74f20a3", "00000000");
        let err = NoteSigner::parse_signer_key(&bad_skey).unwrap_err();
        assert!(matches!(err, NoteError::KeyIdMismatch { .. }));
        assert!(!err.to_string().contains("AYEKFALV"));
        assert!(NoteSigner::parse_signer_key(GO_VKEY).is_err());
        let s = NoteSigner::parse_signer_key(GO_SKEY).unwrap();
        assert!(!format!("{s:?}").contains("AYEKFALV"));
    }

    #[test]
    fn cosigner_key_strings_round_trip() {
        let w = NoteSigner::cosigner_from_seed("witness.example/w1", [7; 32]).unwrap();
        let skey = w.signer_key_string();
        let parsed = NoteSigner::parse_signer_key(&skey).unwrap();
        assert_eq!(parsed.kind(), SignerKind::Ed25519Cosignature);
        assert_eq!(parsed.verifier_key_string(), w.verifier_key_string());
        let v = Verifier::parse(&w.verifier_key_string()).unwrap();
        assert_eq!(v.key_type(), KeyType::Ed25519Cosignature);
        // The same seed as a plain key has a different key ID.
        let plain = NoteSigner::from_seed("witness.example/w1", [7; 32]).unwrap();
        assert_ne!(plain.key_id(), w.key_id());
        assert!(w.sign("text\n").is_err());
    }

    #[test]
    fn signature_block_parsing() {
        let sigs = parse_signature_lines(GO_SIG.as_bytes()).unwrap();
        assert_eq!(sigs.len(), 1);
        assert_eq!(sigs[0].to_line(), GO_SIG);
        assert_eq!(NoteSignature::parse_line(GO_SIG).unwrap(), sigs[0]);
        assert!(parse_signature_lines(b"").is_err());
        assert!(parse_signature_lines(GO_SIG.trim_end().as_bytes()).is_err());
    }
}
