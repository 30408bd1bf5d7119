//! Vendor-signed VEX: a CycloneDX VEX or OpenVEX document carried as the payload of a DSSE
//! envelope (`provenance::Envelope`, the same code that carries build provenance), signed by a
//! vendor key of any Rampart scheme. The payload type names the format
//! ([`CYCLONEDX_VEX_PAYLOAD_TYPE`], [`OPENVEX_PAYLOAD_TYPE`]) and the signature covers it with
//! the body (DSSE's pre-authentication encoding), so a signed document cannot be replayed as
//! another type.
//!
//! [`verify_signed_vex`] checks the signatures against the trusted vendor keys BEFORE the VEX
//! document is parsed, then reads its statements (`vex::parse_vex`, limits first) and checks
//! that the document is of the format its payload type names. [`read_vex_unverified`] is for
//! where no vendor key is configured: a bare document or an envelope, its signature unchecked
//! (the caller says so). See docs/decisions/0047-vendor-signed-vex.md.

use rampart_core::keys::Key;

use crate::provenance::{Envelope, EnvelopeError, MAX_ENVELOPE_BYTES, pae};
use crate::vex::{VexError, VexFormat, VexStatement, parse_vex};

/// The DSSE `payloadType` of a CycloneDX VEX document (CycloneDX's JSON media type).
pub const CYCLONEDX_VEX_PAYLOAD_TYPE: &str = "application/vnd.cyclonedx+json";
/// The DSSE `payloadType` of an OpenVEX document.
pub const OPENVEX_PAYLOAD_TYPE: &str = "application/vnd.openvex+json";
/// Most vendor keys one verification tries (bounds the work of an unhinted signature).
pub const MAX_TRUSTED_VEX_KEYS: usize = 128;

/// The payload type a document of `format` is signed under.
pub fn payload_type(format: VexFormat) -> &'static str {
    match format {
        VexFormat::CycloneDx => CYCLONEDX_VEX_PAYLOAD_TYPE,
        VexFormat::OpenVex => OPENVEX_PAYLOAD_TYPE,
    }
}

/// Why a signed VEX document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedVexError {
    #[error("the VEX envelope {0}")]
    Envelope(EnvelopeError),
    #[error(
        "the VEX envelope carries payloadType {0:?}, not {CYCLONEDX_VEX_PAYLOAD_TYPE:?} or {OPENVEX_PAYLOAD_TYPE:?}: sign the VEX document with `rampart risk vex sign`"
    )]
    NotVexPayload(String),
    #[error(
        "the VEX document is not signed (a bare document, or an envelope without signatures): vendor keys are configured, so only VEX signed by one of them is accepted; have the vendor sign it (`rampart risk vex sign`)"
    )]
    Unsigned,
    #[error(
        "the VEX envelope's signature {signature} names vendor key {key_id} but does not verify over the payload: the document was changed after signing, or signed by another key"
    )]
    WrongSignature { signature: usize, key_id: String },
    #[error(
        "the VEX envelope is signed by no trusted vendor key (signature key ids {key_ids:?}); if the vendor is trusted, add its public key (`rampart key export-public`) as a VEX signer"
    )]
    UntrustedSigner { key_ids: Vec<String> },
    #[error("no trusted vendor key given: give at least one vendor public key to check VEX with")]
    NoTrustedKeys,
    #[error("{0} trusted vendor keys given, over the limit of {MAX_TRUSTED_VEX_KEYS}")]
    TooManyTrustedKeys(usize),
    #[error(
        "the VEX envelope's payloadType {payload_type:?} says one format but the signed document is {found:?} VEX: sign it again with `rampart risk vex sign`"
    )]
    FormatMismatch {
        payload_type: String,
        found: VexFormat,
    },
    #[error("the signed VEX document: {0}")]
    Vex(VexError),
}

/// A VEX document read from an envelope or bare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexDocument {
    pub format: VexFormat,
    pub statements: Vec<VexStatement>,
    /// The document's bytes (the envelope's payload): its digest names it.
    pub payload: Vec<u8>,
    /// The key id of the trusted vendor key whose signature verified; `None` when the
    /// signature was not checked.
    pub signer_key_id: Option<String>,
}

/// Whether `bytes` look like a DSSE envelope (a JSON object with `payloadType`), cheaply and
/// bounded: the check runs before any parse.
fn is_envelope(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "payloadType")]
        payload_type: Option<serde::de::IgnoredAny>,
    }
    if bytes.len() > MAX_ENVELOPE_BYTES
        || crate::json_limits::check_depth(bytes, crate::provenance::MAX_JSON_DEPTH).is_err()
    {
        return false;
    }
    serde_json::from_slice::<Probe>(bytes).is_ok_and(|p| p.payload_type.is_some())
}

/// Checks the format the signed payload names against the document it holds.
fn statements_of(
    payload_type: &str,
    payload: &[u8],
) -> Result<(VexFormat, Vec<VexStatement>), SignedVexError> {
    let named = match payload_type {
        CYCLONEDX_VEX_PAYLOAD_TYPE => VexFormat::CycloneDx,
        OPENVEX_PAYLOAD_TYPE => VexFormat::OpenVex,
        other => return Err(SignedVexError::NotVexPayload(other.to_owned())),
    };
    let statements = parse_vex(payload).map_err(SignedVexError::Vex)?;
    let found = format_of(payload)?;
    if found != named {
        return Err(SignedVexError::FormatMismatch {
            payload_type: payload_type.to_owned(),
            found,
        });
    }
    Ok((found, statements))
}

/// The format of a document `parse_vex` accepted (CycloneDX names itself by `bomFormat`).
fn format_of(payload: &[u8]) -> Result<VexFormat, SignedVexError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "bomFormat")]
        bom_format: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(payload)
        .map_err(|e| SignedVexError::Vex(VexError::NotJson(e.to_string())))?;
    Ok(if probe.bom_format.as_deref() == Some("CycloneDX") {
        VexFormat::CycloneDx
    } else {
        VexFormat::OpenVex
    })
}

/// The payload type to sign `document` under, once it has been read as VEX (a document that
/// is not VEX is never signed).
pub fn prepare_for_signing(document: &[u8]) -> Result<&'static str, VexError> {
    let statements = parse_vex(document)?;
    let format = format_of(document).map_err(|e| match e {
        SignedVexError::Vex(e) => e,
        other => VexError::NotJson(other.to_string()),
    })?;
    // A CycloneDX SBOM without analyses reads as VEX of no statement: signing it says nothing.
    if statements.is_empty() {
        return Err(VexError::Malformed {
            format,
            reason: "the document makes no VEX statement (no vulnerabilities[].analysis, or no statements)".into(),
        });
    }
    Ok(payload_type(format))
}

/// Opens a signed VEX document: the envelope bounded, its payload type a VEX one, a signature
/// by one of `trusted` verifying over the payload (a signature whose key id hint names a
/// trusted key is checked against that key only; one without is tried against each), and
/// only then the document parsed.
pub fn verify_signed_vex(bytes: &[u8], trusted: &[Key]) -> Result<VexDocument, SignedVexError> {
    if trusted.is_empty() {
        return Err(SignedVexError::NoTrustedKeys);
    }
    if trusted.len() > MAX_TRUSTED_VEX_KEYS {
        return Err(SignedVexError::TooManyTrustedKeys(trusted.len()));
    }
    if !is_envelope(bytes) {
        // Size and depth errors are the envelope parser's to name; a bare document is unsigned.
        return match Envelope::parse(bytes) {
            Err(
                e @ (EnvelopeError::TooLarge { .. }
                | EnvelopeError::TooDeep
                | EnvelopeError::NotJson(_)),
            ) => Err(SignedVexError::Envelope(e)),
            _ => Err(SignedVexError::Unsigned),
        };
    }
    let envelope = Envelope::parse(bytes).map_err(SignedVexError::Envelope)?;
    if envelope.payload_type != CYCLONEDX_VEX_PAYLOAD_TYPE
        && envelope.payload_type != OPENVEX_PAYLOAD_TYPE
    {
        return Err(SignedVexError::NotVexPayload(envelope.payload_type));
    }
    if envelope.signatures.is_empty() {
        return Err(SignedVexError::Unsigned);
    }
    let payload = envelope.payload_bytes().map_err(SignedVexError::Envelope)?;
    let signer = verified_signer(&envelope, &payload, trusted)?;
    let (format, statements) = statements_of(&envelope.payload_type, &payload)?;
    Ok(VexDocument {
        format,
        statements,
        payload,
        signer_key_id: Some(signer.key_id()),
    })
}

/// The trusted key whose signature verifies over the envelope's pre-authentication encoding.
fn verified_signer<'k>(
    envelope: &Envelope,
    payload: &[u8],
    trusted: &'k [Key],
) -> Result<&'k Key, SignedVexError> {
    let message = pae(&envelope.payload_type, payload);
    let ids: Vec<String> = trusted.iter().map(Key::key_id).collect();
    let mut wrong = None;
    for (index, signature) in envelope.signatures.iter().enumerate() {
        let sig =
            crate::provenance::decode_base64(&signature.sig).map_err(SignedVexError::Envelope)?;
        let hinted: Vec<usize> = (0..trusted.len())
            .filter(|&i| !signature.keyid.is_empty() && ids[i] == signature.keyid)
            .collect();
        let candidates: Vec<usize> = if hinted.is_empty() {
            (0..trusted.len()).collect()
        } else {
            hinted.clone()
        };
        if let Some(&found) = candidates
            .iter()
            .find(|&&i| trusted[i].verify(&message, &sig).is_ok())
        {
            return Ok(&trusted[found]);
        }
        if let (Some(&i), None) = (hinted.first(), &wrong) {
            wrong = Some(SignedVexError::WrongSignature {
                signature: index,
                key_id: ids[i].clone(),
            });
        }
    }
    Err(wrong.unwrap_or_else(|| SignedVexError::UntrustedSigner {
        key_ids: envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect(),
    }))
}

/// Reads a VEX document without checking any signature, for where no vendor key is
/// configured: a bare CycloneDX VEX or OpenVEX document, or a DSSE envelope holding one.
/// Returns the document and whether it came in an envelope (whose signature went unchecked).
pub fn read_vex_unverified(bytes: &[u8]) -> Result<(VexDocument, bool), SignedVexError> {
    if is_envelope(bytes) {
        let envelope = Envelope::parse(bytes).map_err(SignedVexError::Envelope)?;
        let payload = envelope.payload_bytes().map_err(SignedVexError::Envelope)?;
        let (format, statements) = statements_of(&envelope.payload_type, &payload)?;
        return Ok((
            VexDocument {
                format,
                statements,
                payload,
                signer_key_id: None,
            },
            true,
        ));
    }
    let statements = parse_vex(bytes).map_err(SignedVexError::Vex)?;
    let format = format_of(bytes)?;
    Ok((
        VexDocument {
            format,
            statements,
            payload: bytes.to_vec(),
            signer_key_id: None,
        },
        false,
    ))
}
