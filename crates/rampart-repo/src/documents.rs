//! Validation of the documents a release may carry: a CycloneDX JSON SBOM and in-toto
//! provenance (a bare statement, or a bundle of DSSE envelopes). Hand-written against the
//! published schemas' required fields: see docs/decisions/0004-sbom-validation.md. Provenance is
//! read by `rampart_vuln::provenance`, its one home; here only the repository's question is
//! asked: does it belong to this image.

use rampart_vuln::provenance::{self, BareStatementError, EnvelopeError};
use serde_json::Value;

/// Largest SBOM or provenance document accepted.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024 * 1024;

/// Why a document was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    #[error("{what} is {size} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge { what: &'static str, size: usize },
    #[error("{what} is not valid JSON: {reason}")]
    NotJson { what: &'static str, reason: String },
    #[error("SBOM is not a CycloneDX JSON document: {0}")]
    NotCycloneDx(String),
    #[error("provenance {0}")]
    Provenance(EnvelopeError),
    #[error("provenance does not name the image: no subject has sha256 {0}")]
    SubjectMismatch(String),
}

const CYCLONEDX_SPEC_VERSIONS: [&str; 7] = ["1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6"];

fn parse_json(what: &'static str, bytes: &[u8]) -> Result<Value, DocumentError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            what,
            size: bytes.len(),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| DocumentError::NotJson {
        what,
        reason: e.to_string(),
    })
}

/// Checks the structure CycloneDX 1.x JSON requires: `bomFormat` "CycloneDX", a known
/// `specVersion`, an integer `version` if present, and well-formed `components` (each an object
/// with string `type` and `name`, recursively).
pub fn validate_cyclonedx(bytes: &[u8]) -> Result<(), DocumentError> {
    let v = parse_json("SBOM", bytes)?;
    let bad = |m: String| Err(DocumentError::NotCycloneDx(m));
    let Some(obj) = v.as_object() else {
        return bad("top level is not an object".into());
    };
    match obj.get("bomFormat").and_then(Value::as_str) {
        Some("CycloneDX") => {}
        other => return bad(format!("bomFormat must be \"CycloneDX\", found {other:?}")),
    }
    match obj.get("specVersion").and_then(Value::as_str) {
        Some(s) if CYCLONEDX_SPEC_VERSIONS.contains(&s) => {}
        other => {
            return bad(format!(
                "specVersion must be one of {CYCLONEDX_SPEC_VERSIONS:?}, found {other:?}"
            ));
        }
    }
    if let Some(ver) = obj.get("version")
        && ver.as_u64().is_none_or(|n| n < 1)
    {
        return bad("version must be an integer >= 1".into());
    }
    if let Some(sn) = obj.get("serialNumber")
        && !sn.as_str().is_some_and(|s| s.starts_with("urn:uuid:"))
    {
        return bad("serialNumber must be a urn:uuid: string".into());
    }
    fn components(v: &Value, at: &str) -> Result<(), DocumentError> {
        let Some(list) = v.as_array() else {
            return Err(DocumentError::NotCycloneDx(format!(
                "{at} must be an array"
            )));
        };
        for (i, c) in list.iter().enumerate() {
            let here = format!("{at}[{i}]");
            let ok = c.get("type").and_then(Value::as_str).is_some()
                && c.get("name").and_then(Value::as_str).is_some();
            if !ok {
                return Err(DocumentError::NotCycloneDx(format!(
                    "{here} needs string \"type\" and \"name\""
                )));
            }
            if let Some(sub) = c.get("components") {
                components(sub, &format!("{here}.components"))?;
            }
        }
        Ok(())
    }
    if let Some(c) = obj.get("components") {
        components(c, "components")?;
    }
    if let Some(meta) = obj.get("metadata")
        && !meta.is_object()
    {
        return bad("metadata must be an object".into());
    }
    Ok(())
}

/// Checks a bare in-toto Statement (v0.1 or v1) and that one subject carries `image_sha256`.
pub fn validate_provenance(bytes: &[u8], image_sha256: &str) -> Result<(), DocumentError> {
    provenance::check_bare_statement(bytes, image_sha256).map_err(provenance_error)
}

/// Checks an in-toto bundle (DSSE envelopes as JSON Lines) and that every envelope's statement
/// names `image_sha256`. Signatures are checked against a policy by the caller
/// (`rampart_vuln::provenance::verify`) before anything is written.
pub fn validate_provenance_bundle(bytes: &[u8], image_sha256: &str) -> Result<(), DocumentError> {
    provenance::check_bundle_subjects(bytes, image_sha256).map_err(provenance_error)
}

fn provenance_error(e: BareStatementError) -> DocumentError {
    match e {
        BareStatementError::SubjectMismatch(d) => DocumentError::SubjectMismatch(d),
        BareStatementError::Malformed(EnvelopeError::NotJson(reason)) => DocumentError::NotJson {
            what: "provenance",
            reason,
        },
        BareStatementError::Malformed(other) => DocumentError::Provenance(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_minimal_cyclonedx_and_rejects_malformed() {
        validate_cyclonedx(br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{"type":"library","name":"zlib"}]}"#).unwrap();
        for bad in [
            &b"not json"[..],
            br#"{"bomFormat":"SPDX","specVersion":"1.5"}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"9.9"}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":{}}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library"}]}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":0}"#,
        ] {
            assert!(
                validate_cyclonedx(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn provenance_must_name_the_image() {
        let doc = br#"{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1","subject":[{"name":"fw.img","digest":{"sha256":"ab"}}]}"#;
        validate_provenance(doc, "ab").unwrap();
        assert_eq!(
            validate_provenance(doc, "cd"),
            Err(DocumentError::SubjectMismatch("cd".into()))
        );
    }
}
