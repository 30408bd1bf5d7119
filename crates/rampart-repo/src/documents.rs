//! Validation of the documents a release may carry: an SBOM (CycloneDX or SPDX JSON, read by
//! `rampart_vuln::sbom`, the one home of SBOM parsing: docs/decisions/0039-sbom-and-vex-parsing.md)
//! and an in-toto provenance statement (checked by hand: docs/decisions/0004-sbom-validation.md).

use rampart_vuln::sbom::{self, SbomError, SbomFormat};
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
    #[error("SBOM refused: {0}")]
    Sbom(SbomError),
    #[error("provenance is not an in-toto statement: {0}")]
    NotInToto(String),
    #[error("provenance does not name the image: no subject has sha256 {0}")]
    SubjectMismatch(String),
}

/// How a release stores a validated SBOM: its target name's suffix and its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbomKind {
    pub suffix: &'static str,
    pub media_type: &'static str,
}

/// Every suffix an SBOM target may carry (for telling documents from images).
pub const SBOM_SUFFIXES: [&str; 2] = [".cdx.json", ".spdx.json"];

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

/// Checks an SBOM the way matching reads it (CycloneDX 1.2-1.6 or SPDX 2.2/2.3 JSON, every
/// component with its limits) and says how to store it.
pub fn validate_sbom(bytes: &[u8]) -> Result<SbomKind, DocumentError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(DocumentError::TooLarge {
            what: "SBOM",
            size: bytes.len(),
        });
    }
    let parsed = sbom::parse_sbom(bytes).map_err(DocumentError::Sbom)?;
    Ok(match parsed.format {
        SbomFormat::Spdx => SbomKind {
            suffix: ".spdx.json",
            media_type: "application/spdx+json",
        },
        // parse_sbom reads JSON documents only; a dpkg status file is never one.
        SbomFormat::CycloneDx | SbomFormat::DpkgStatus => SbomKind {
            suffix: ".cdx.json",
            media_type: "application/vnd.cyclonedx+json",
        },
    })
}

/// Checks an in-toto Statement (v0.1 or v1) and that one subject carries `image_sha256`.
pub fn validate_provenance(bytes: &[u8], image_sha256: &str) -> Result<(), DocumentError> {
    let v = parse_json("provenance", bytes)?;
    let bad = |m: &str| Err(DocumentError::NotInToto(m.to_string()));
    match v.get("_type").and_then(Value::as_str) {
        Some("https://in-toto.io/Statement/v1" | "https://in-toto.io/Statement/v0.1") => {}
        _ => return bad("_type must be https://in-toto.io/Statement/v1 (or v0.1)"),
    }
    if v.get("predicateType").and_then(Value::as_str).is_none() {
        return bad("predicateType must be a string");
    }
    let Some(subjects) = v.get("subject").and_then(Value::as_array) else {
        return bad("subject must be an array");
    };
    let named = subjects.iter().any(|s| {
        s.get("digest")
            .and_then(|d| d.get("sha256"))
            .and_then(Value::as_str)
            == Some(image_sha256)
    });
    if named {
        Ok(())
    } else {
        Err(DocumentError::SubjectMismatch(image_sha256.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_cyclonedx_and_spdx_and_rejects_malformed() {
        assert_eq!(
            validate_sbom(br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,"components":[{"type":"library","name":"zlib"}]}"#).unwrap().suffix,
            ".cdx.json"
        );
        assert_eq!(
            validate_sbom(br#"{"spdxVersion":"SPDX-2.3","packages":[{"SPDXID":"SPDXRef-zlib","name":"zlib"}]}"#).unwrap(),
            SbomKind { suffix: ".spdx.json", media_type: "application/spdx+json" }
        );
        for bad in [
            &b"not json"[..],
            br#"{"bomFormat":"SPDX","specVersion":"1.5"}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"9.9"}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":{}}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","components":[{"type":"library"}]}"#,
            br#"{"bomFormat":"CycloneDX","specVersion":"1.5","version":0}"#,
        ] {
            assert!(
                matches!(validate_sbom(bad), Err(DocumentError::Sbom(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let err = validate_sbom(br#"{"bomFormat":"CycloneDX","specVersion":"9.9"}"#).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("SBOM refused: CycloneDX version \"9.9\" is not supported"),
            "{err}"
        );
    }

    #[test]
    fn sbom_over_the_repository_limit_is_refused_before_parsing() {
        let oversized = vec![b' '; MAX_DOCUMENT_BYTES + 1];
        assert_eq!(
            validate_sbom(&oversized),
            Err(DocumentError::TooLarge {
                what: "SBOM",
                size: MAX_DOCUMENT_BYTES + 1
            })
        );
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
