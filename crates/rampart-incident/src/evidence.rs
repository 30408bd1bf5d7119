//! The forensic evidence bundle (`rampart-evidence/1`): what a device collects when the server
//! asks for evidence, signed by the device key, optionally bound to a TPM quote; parsed and
//! checked here with no I/O, by the server on upload and by anyone offline after export.
//!
//! A bundle is one JSON document:
//!
//! ```json
//! {"format": "rampart-evidence/1",
//!  "manifest": {"device_id": "..", "request_id": "..", "incident": "..", "nonce": "<hex>",
//!               "collected_at": 1767000000, "agent_version": "..",
//!               "items": [{"name": "agent-log/agent.log", "sha256": "<hex>", "length": 123}],
//!               "agent_log_head": {"seq": 41, "hash": "<hex>"}},
//!  "items": {"agent-log/agent.log": "<base64>"},
//!  "signature": {"algorithm": "ecdsa_p256_sha256", "value": "<base64>"},
//!  "certificate": "<base64 DER of the device certificate>",
//!  "quote": {"message": "<base64>", "signature": "<base64>", "pcrs": "<base64>"}}
//! ```
//!
//! - The manifest's canonical bytes are its OLPC canonical JSON (`rampart_core::cjson`, as TUF
//!   signs): keys sorted, no whitespace, integers only. [`Bundle::manifest_digest`] is their
//!   SHA-256.
//! - The signature covers [`MANIFEST_SIGNING_CONTEXT`] followed by the canonical manifest
//!   bytes; the prefix keeps a signature by the device's TLS key over a manifest from passing
//!   for anything else that key signs (TLS 1.3 signs 64 spaces first, TLS 1.2 a handshake
//!   transcript starting with a ClientHello). The manifest lists every item with its SHA-256
//!   and length, so the signature covers the items too.
//! - The quote (a TPM2_Quote by the device's attestation key, `tpm2_quote -m/-s/-o` forms) has
//!   qualifying data [`quote_qualifying_data`] = SHA-256(canonical manifest bytes || the
//!   request nonce's bytes): the TPM itself vouches that this manifest was signed now, for this
//!   request. The quote is checked with the device's enrolled AK by `rampart-attest`; this
//!   module only computes what it must carry.
//!
//! What a verified bundle proves: the holder of the device key (and, with a quote, the TPM)
//! produced these bytes after the request was issued. What it does not: that they are true. A
//! compromised device can lie in its evidence; see the agent log ([`crate::agent_log`]) for how
//! anchors bound when its log could have been rewritten.

use std::collections::HashSet;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use crate::device_signature::{
    DeviceSignature, SignatureAlgorithm, SignatureError, certificate_spki,
};

use crate::agent_log::ChainHead;
use crate::device_signature::sha256;

/// The `format` of every bundle this module reads and writes.
pub const FORMAT: &str = "rampart-evidence/1";
/// What the device key signs before the canonical manifest bytes.
pub const MANIFEST_SIGNING_CONTEXT: &[u8] = b"rampart-evidence/1 manifest\n";
/// The most items one bundle may hold.
pub const MAX_ITEMS: usize = 256;
/// The longest item name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// The longest identifier in the manifest (device id, request id, incident, nonce, agent
/// version), in bytes.
pub const MAX_FIELD_BYTES: usize = 256;

/// What the device states about the bundle; the signature covers its canonical bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub device_id: String,
    /// The evidence request's id (`EvidenceRequest.id`).
    pub request_id: String,
    pub incident: String,
    /// The request's nonce, hex, as the server sent it.
    pub nonce: String,
    /// When the device collected the bundle (Unix seconds, the device's clock: a claim).
    pub collected_at: i64,
    pub agent_version: String,
    pub items: Vec<ItemEntry>,
    /// The agent log's head when the bundle was collected (the logs in the bundle end there).
    pub agent_log_head: ChainHead,
}

/// One item of the bundle as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemEntry {
    /// A relative, `/`-separated path of `[A-Za-z0-9._-]` segments (no `.` or `..` segment).
    pub name: String,
    /// SHA-256 of the item's bytes, lowercase hex.
    pub sha256: String,
    /// The item's length in bytes.
    pub length: u64,
}

/// The TPM quote binding the manifest, each part base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleQuote {
    /// TPMS_ATTEST (`tpm2_quote -m`).
    pub message: String,
    /// TPMT_SIGNATURE (`tpm2_quote -s`).
    pub signature: String,
    /// The quoted PCR values in tpm2-tools' PCR file format (`tpm2_quote -o`).
    pub pcrs: String,
}

/// The quote's parts, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteParts {
    pub message: Vec<u8>,
    pub signature: Vec<u8>,
    pub pcrs: Vec<u8>,
}

/// The document as it travels.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundleDocument {
    format: String,
    manifest: Manifest,
    items: ItemMap,
    signature: DeviceSignature,
    certificate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    quote: Option<BundleQuote>,
}

/// The `items` object, in document order, refusing a name given twice (a plain map would keep
/// one of the two silently).
struct ItemMap(Vec<(String, String)>);

impl Serialize for ItemMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de> Deserialize<'de> for ItemMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ItemMapVisitor;
        impl<'de> Visitor<'de> for ItemMapVisitor {
            type Value = ItemMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of item names to base64 contents")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ItemMap, A::Error> {
                let mut seen = HashSet::new();
                let mut items = Vec::new();
                while let Some((name, content)) = map.next_entry::<String, String>()? {
                    if items.len() == MAX_ITEMS {
                        return Err(serde::de::Error::custom(format!(
                            "more than {MAX_ITEMS} items"
                        )));
                    }
                    if !seen.insert(name.clone()) {
                        return Err(serde::de::Error::custom(format!(
                            "item {name:?} is given twice"
                        )));
                    }
                    items.push((name, content));
                }
                Ok(ItemMap(items))
            }
        }
        deserializer.deserialize_map(ItemMapVisitor)
    }
}

/// A parsed bundle whose structure, item lengths and item hashes are checked. The signature,
/// the request it answers and the quote are checked by the caller with
/// [`Bundle::check_request`], [`Bundle::verify_signature`] and [`Bundle::quote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub manifest: Manifest,
    /// The items' bytes, in manifest order.
    pub items: Vec<(String, Vec<u8>)>,
    pub signature: DeviceSignature,
    /// The device certificate, DER.
    pub certificate: Vec<u8>,
    pub quote: Option<QuoteParts>,
}

/// The request a bundle must answer (from the server's record of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedRequest<'a> {
    pub device_id: &'a str,
    pub request_id: &'a str,
    pub incident: &'a str,
    pub nonce: &'a str,
}

impl Manifest {
    /// A manifest listing `items` (name and bytes) with their hashes and lengths.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        device_id: &str,
        request_id: &str,
        incident: &str,
        nonce: &str,
        collected_at: i64,
        agent_version: &str,
        items: &[(String, Vec<u8>)],
        agent_log_head: ChainHead,
    ) -> Manifest {
        Manifest {
            device_id: device_id.to_owned(),
            request_id: request_id.to_owned(),
            incident: incident.to_owned(),
            nonce: nonce.to_owned(),
            collected_at,
            agent_version: agent_version.to_owned(),
            items: items
                .iter()
                .map(|(name, bytes)| ItemEntry {
                    name: name.clone(),
                    sha256: hex::encode(sha256(bytes)),
                    length: bytes.len() as u64,
                })
                .collect(),
            agent_log_head,
        }
    }

    /// The manifest's canonical bytes (OLPC canonical JSON).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        rampart_core::cjson::to_canonical_bytes(self)
            .expect("a manifest has only strings, integers, arrays and objects")
    }

    /// SHA-256 of the canonical bytes.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.canonical_bytes())
    }

    /// What the device key signs: [`MANIFEST_SIGNING_CONTEXT`] || canonical bytes.
    pub fn signing_message(&self) -> Vec<u8> {
        let canonical = self.canonical_bytes();
        let mut message = Vec::with_capacity(MANIFEST_SIGNING_CONTEXT.len() + canonical.len());
        message.extend_from_slice(MANIFEST_SIGNING_CONTEXT);
        message.extend_from_slice(&canonical);
        message
    }

    /// The qualifying data the bundle's TPM quote must carry.
    pub fn quote_qualifying_data(&self) -> Result<[u8; 32], EvidenceError> {
        quote_qualifying_data(&self.canonical_bytes(), &self.nonce)
    }
}

/// SHA-256(canonical manifest bytes || the nonce's bytes), `nonce_hex` being the request's
/// nonce as hex.
pub fn quote_qualifying_data(
    canonical_manifest: &[u8],
    nonce_hex: &str,
) -> Result<[u8; 32], EvidenceError> {
    let nonce = hex::decode(nonce_hex).map_err(|e| EvidenceError::Malformed {
        reason: format!("the manifest's nonce is not hex: {e}"),
    })?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(canonical_manifest);
    ctx.update(&nonce);
    Ok(ctx
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes"))
}

impl Bundle {
    /// Parses and checks a bundle of at most `max_bytes`: the size first, then the document's
    /// structure, every name, every item against the manifest's length and SHA-256, and no
    /// item missing, unlisted or given twice. Nothing is trusted yet: the caller still checks
    /// the request, the signature and the quote.
    pub fn parse(bytes: &[u8], max_bytes: u64) -> Result<Bundle, EvidenceError> {
        if bytes.len() as u64 > max_bytes {
            return Err(EvidenceError::TooLarge {
                size: bytes.len() as u64,
                max: max_bytes,
            });
        }
        let document: BundleDocument = serde_json::from_slice(bytes).map_err(|e| {
            if e.is_eof() {
                EvidenceError::Truncated {
                    size: bytes.len() as u64,
                }
            } else {
                EvidenceError::Malformed {
                    reason: e.to_string(),
                }
            }
        })?;
        if document.format != FORMAT {
            return Err(EvidenceError::WrongFormat {
                found: document.format.chars().take(64).collect(),
            });
        }
        let manifest = document.manifest;
        check_manifest_fields(&manifest)?;
        let items = check_items(&manifest, document.items.0)?;
        let certificate = decode_b64("the certificate", &document.certificate)?;
        let quote = document
            .quote
            .map(|q| -> Result<QuoteParts, EvidenceError> {
                Ok(QuoteParts {
                    message: decode_b64("the quote's message", &q.message)?,
                    signature: decode_b64("the quote's signature", &q.signature)?,
                    pcrs: decode_b64("the quote's PCR values", &q.pcrs)?,
                })
            })
            .transpose()?;
        Ok(Bundle {
            manifest,
            items,
            signature: document.signature,
            certificate,
            quote,
        })
    }

    /// The bundle as its JSON document.
    pub fn to_bytes(&self) -> Vec<u8> {
        let document = BundleDocument {
            format: FORMAT.to_owned(),
            manifest: self.manifest.clone(),
            items: ItemMap(
                self.items
                    .iter()
                    .map(|(name, bytes)| (name.clone(), STANDARD.encode(bytes)))
                    .collect(),
            ),
            signature: self.signature.clone(),
            certificate: STANDARD.encode(&self.certificate),
            quote: self.quote.as_ref().map(|q| BundleQuote {
                message: STANDARD.encode(&q.message),
                signature: STANDARD.encode(&q.signature),
                pcrs: STANDARD.encode(&q.pcrs),
            }),
        };
        serde_json::to_vec(&document).expect("a bundle document serializes")
    }

    /// SHA-256 of the manifest's canonical bytes.
    pub fn manifest_digest(&self) -> [u8; 32] {
        self.manifest.digest()
    }

    /// An item's bytes by name.
    pub fn item(&self, name: &str) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
    }

    /// Checks that the bundle answers `expected`: the device, the request, the incident and the
    /// nonce. Another nonce means a bundle replayed from another request.
    pub fn check_request(&self, expected: &ExpectedRequest<'_>) -> Result<(), EvidenceError> {
        let m = &self.manifest;
        let pairs = [
            ("device_id", expected.device_id, &m.device_id),
            ("request_id", expected.request_id, &m.request_id),
            ("incident", expected.incident, &m.incident),
        ];
        for (field, want, found) in pairs {
            if want != found {
                return Err(EvidenceError::WrongRequest {
                    field,
                    expected: want.to_owned(),
                    found: found.clone(),
                });
            }
        }
        if !m.nonce.eq_ignore_ascii_case(expected.nonce) {
            return Err(EvidenceError::NonceMismatch {
                expected: expected.nonce.to_owned(),
                found: m.nonce.clone(),
            });
        }
        Ok(())
    }

    /// Verifies the signature over the manifest with the device key `spki_der` (a DER
    /// SubjectPublicKeyInfo: the server's record of the device's certificate, not the one the
    /// bundle carries, unless the caller checked that one itself).
    pub fn verify_signature(&self, spki_der: &[u8]) -> Result<(), EvidenceError> {
        self.signature
            .verify(spki_der, &self.manifest.signing_message())
            .map_err(EvidenceError::Signature)
    }

    /// The SubjectPublicKeyInfo of the certificate the bundle carries.
    pub fn certificate_spki(&self) -> Result<Vec<u8>, EvidenceError> {
        certificate_spki(&self.certificate).map_err(EvidenceError::Signature)
    }
}

fn check_manifest_fields(m: &Manifest) -> Result<(), EvidenceError> {
    let fields = [
        ("device_id", &m.device_id),
        ("request_id", &m.request_id),
        ("incident", &m.incident),
        ("nonce", &m.nonce),
        ("agent_version", &m.agent_version),
    ];
    for (field, value) in fields {
        if value.len() > MAX_FIELD_BYTES {
            return Err(EvidenceError::FieldTooLong {
                field,
                length: value.len(),
                max: MAX_FIELD_BYTES,
            });
        }
    }
    if m.nonce.is_empty() || hex::decode(&m.nonce).is_err() {
        return Err(EvidenceError::Malformed {
            reason: "the manifest's nonce is not non-empty hex".into(),
        });
    }
    if !is_sha256_hex(&m.agent_log_head.hash) {
        return Err(EvidenceError::Malformed {
            reason: "the manifest's agent_log_head.hash is not 64 lowercase hex digits".into(),
        });
    }
    if m.items.len() > MAX_ITEMS {
        return Err(EvidenceError::TooManyItems {
            count: m.items.len(),
            max: MAX_ITEMS,
        });
    }
    Ok(())
}

/// Checks the items against the manifest and decodes them, in manifest order.
fn check_items(
    manifest: &Manifest,
    mut given: Vec<(String, String)>,
) -> Result<Vec<(String, Vec<u8>)>, EvidenceError> {
    let mut listed = HashSet::new();
    for entry in &manifest.items {
        check_name(&entry.name)?;
        if !listed.insert(entry.name.as_str()) {
            return Err(EvidenceError::DuplicateItem {
                name: entry.name.clone(),
            });
        }
        if !is_sha256_hex(&entry.sha256) {
            return Err(EvidenceError::Malformed {
                reason: format!(
                    "item {:?}'s sha256 is not 64 lowercase hex digits",
                    entry.name
                ),
            });
        }
    }
    if let Some((name, _)) = given.iter().find(|(n, _)| !listed.contains(n.as_str())) {
        return Err(EvidenceError::UnlistedItem {
            name: name.chars().take(MAX_NAME_BYTES).collect(),
        });
    }
    let mut items = Vec::with_capacity(manifest.items.len());
    for entry in &manifest.items {
        let position = given
            .iter()
            .position(|(n, _)| *n == entry.name)
            .ok_or_else(|| EvidenceError::MissingItem {
                name: entry.name.clone(),
            })?;
        let (name, content) = given.swap_remove(position);
        let bytes = STANDARD
            .decode(&content)
            .map_err(|e| EvidenceError::ItemNotBase64 {
                name: name.clone(),
                reason: e.to_string(),
            })?;
        if bytes.len() as u64 != entry.length {
            return Err(EvidenceError::ItemLength {
                name,
                listed: entry.length,
                actual: bytes.len() as u64,
            });
        }
        let actual = hex::encode(sha256(&bytes));
        if actual != entry.sha256 {
            return Err(EvidenceError::ItemHash {
                name,
                listed: entry.sha256.clone(),
                actual,
            });
        }
        items.push((name, bytes));
    }
    Ok(items)
}

/// Whether `name` is a safe item name: non-empty, at most [`MAX_NAME_BYTES`], `/`-separated
/// segments of `[A-Za-z0-9._-]`, none empty, `.` or `..` (so an extractor writing items under a
/// directory stays in it).
pub fn check_name(name: &str) -> Result<(), EvidenceError> {
    let bad = |reason: &str| EvidenceError::BadName {
        name: name.chars().take(MAX_NAME_BYTES).collect(),
        reason: reason.to_owned(),
    };
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(bad("names are 1 to 128 bytes"));
    }
    for segment in name.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(bad(
                "a name is relative, with no empty, `.` or `..` segment",
            ));
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("names use only A-Z a-z 0-9 . _ - and /"));
        }
    }
    Ok(())
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn decode_b64(what: &str, value: &str) -> Result<Vec<u8>, EvidenceError> {
    STANDARD
        .decode(value)
        .map_err(|e| EvidenceError::Malformed {
            reason: format!("{what} is not base64: {e}"),
        })
}

/// Why a bundle was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error(
        "the bundle is {size} bytes, more than the {max} this request allows; collect less (fewer commands, a shorter journal excerpt)"
    )]
    TooLarge { size: u64, max: u64 },
    #[error("the bundle ends early after {size} bytes: upload the rest before completing it")]
    Truncated { size: u64 },
    #[error("the bundle is not a valid rampart-evidence/1 document: {reason}")]
    Malformed { reason: String },
    #[error("the bundle's format is {found:?}; this verifier reads rampart-evidence/1 only")]
    WrongFormat { found: String },
    #[error("a manifest {field} of {length} bytes is longer than the {max} allowed")]
    FieldTooLong {
        field: &'static str,
        length: usize,
        max: usize,
    },
    #[error("the bundle has {count} items; at most {max} are allowed")]
    TooManyItems { count: usize, max: usize },
    #[error("item name {name:?} is refused: {reason}")]
    BadName { name: String, reason: String },
    #[error("item {name:?} is listed twice in the manifest")]
    DuplicateItem { name: String },
    #[error("item {name:?} is in the bundle but not in the signed manifest")]
    UnlistedItem { name: String },
    #[error("item {name:?} is listed in the manifest but missing from the bundle")]
    MissingItem { name: String },
    #[error("item {name:?} is not base64: {reason}")]
    ItemNotBase64 { name: String, reason: String },
    #[error(
        "item {name:?} is {actual} bytes but the manifest says {listed}: it was truncated or changed"
    )]
    ItemLength {
        name: String,
        listed: u64,
        actual: u64,
    },
    #[error(
        "item {name:?} has SHA-256 {actual} but the manifest says {listed}: it was changed after signing"
    )]
    ItemHash {
        name: String,
        listed: String,
        actual: String,
    },
    #[error("the bundle answers another request: its {field} is {found:?}, expected {expected:?}")]
    WrongRequest {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error(
        "the bundle carries nonce {found} but the request's is {expected}: it was collected for another request (replayed)"
    )]
    NonceMismatch { expected: String, found: String },
    #[error("the bundle's signature: {0}")]
    Signature(SignatureError),
}

#[cfg(test)]
mod tests;
