//! Validation of the documents a release may carry: an SBOM (CycloneDX or SPDX JSON, read by
//! `rampart_vuln::sbom`, the one home of SBOM parsing: docs/decisions/0039-sbom-and-vex-parsing.md)
//! and in-toto provenance (a bare statement, or a bundle of DSSE envelopes, read by
//! `rampart_vuln::provenance`, its one home: docs/decisions/0041-dsse-and-slsa-by-hand.md); here
//! only the repository's question is asked of provenance: does it belong to this image.

use rampart_vuln::provenance::{self, BareStatementError, EnvelopeError};
use rampart_vuln::sbom::{self, SbomError, SbomFormat};

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
    #[error("provenance {0}")]
    Provenance(EnvelopeError),
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
