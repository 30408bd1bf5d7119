//! How a release was built, as its builders vouch for it: in-toto Statements v1 carrying SLSA v1
//! provenance, signed in DSSE envelopes, and the policy that accepts them.
//!
//! - [`Envelope`] and [`pae`]: DSSE v1 (`payloadType`, base64 `payload`, `signatures`), signed
//!   over the pre-authentication encoding `"DSSEv1" SP len(type) SP type SP len(body) SP body`.
//! - [`Statement`] and [`SlsaProvenance`]: the in-toto Statement v1 and the SLSA v1 predicate
//!   (`buildDefinition`, `runDetails`); unknown fields are ignored, as in-toto asks of consumers.
//! - [`ProvenancePolicy`]: trusted builders and their keys, allowed sources and build types, and
//!   how many independent builders must name the same image digest (a reproducible build).
//! - [`verify`]: envelopes against a policy for one image digest, with an error naming the
//!   envelope and what failed.
//!
//! Signatures are checked by `rampart_core::keys::Key::verify`, the one home of Rampart's
//! signature schemes (ed25519, ECDSA P-256, RSA-PSS, ML-DSA-65); the builder keys in a policy
//! are TUF public keys as `rampart key export-public` prints them.
//!
//! Every input is bounded before it is parsed (size, then JSON nesting depth, then counts).
//! Hand-written rather than taken from a crate: see docs/decisions/0041-dsse-and-slsa-by-hand.md.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use rampart_core::keys::Key;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The DSSE `payloadType` of an in-toto statement.
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto Statement v1 `_type`.
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The older Statement v0.1 `_type`, accepted only for bare (unsigned) statements.
pub const STATEMENT_V0_1: &str = "https://in-toto.io/Statement/v0.1";
/// The SLSA provenance v1 `predicateType`.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
/// Media type of an in-toto bundle: DSSE envelopes as JSON Lines (`.intoto.jsonl`).
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.in-toto.bundle";

/// Largest envelope, bundle or bare statement accepted.
pub const MAX_ENVELOPE_BYTES: usize = 16 * 1024 * 1024;
/// Deepest JSON nesting accepted in an envelope, its statement or a policy.
pub const MAX_JSON_DEPTH: usize = 64;
/// Most envelopes one verification (or one bundle) takes.
pub const MAX_ENVELOPES: usize = 32;
/// Most signatures one envelope may carry (each may cost a verification per trusted key).
pub const MAX_SIGNATURES: usize = 8;
/// Most subjects one statement may name.
pub const MAX_SUBJECTS: usize = 4096;
/// Most resolved dependencies one provenance may list.
pub const MAX_RESOLVED_DEPENDENCIES: usize = 100_000;
/// Largest policy file accepted.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;
/// Most builders a policy may trust.
pub const MAX_BUILDERS: usize = 64;
/// Most keys a policy may hold in all (bounds the signature checks of an unhinted signature).
pub const MAX_POLICY_KEYS: usize = 128;
/// Most source rules, refs per rule and build types a policy may list.
pub const MAX_POLICY_RULES: usize = 256;

/// Why one envelope (or a bare statement) was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("is {size} bytes, over the {MAX_ENVELOPE_BYTES}-byte limit")]
    TooLarge { size: usize },
    #[error("nests JSON deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
    #[error("is not valid JSON: {0}")]
    NotJson(String),
    #[error("is not a DSSE envelope: {0}")]
    NotEnvelope(String),
    #[error("carries payloadType {0:?}, not {IN_TOTO_PAYLOAD_TYPE:?} (an in-toto statement)")]
    WrongPayloadType(String),
    #[error(
        "is unsigned: it has no signatures; have the builder sign it (`rampart release sign-provenance`)"
    )]
    Unsigned,
    #[error("has {0} signatures, over the limit of {MAX_SIGNATURES}")]
    TooManySignatures(usize),
    #[error("has a payload or signature that is not base64: {0}")]
    NotBase64(String),
    #[error(
        "has a wrong signature: signature {signature} names key {key_id} of builder {builder:?} but does not verify over the payload (tampered, or signed by another key)"
    )]
    WrongSignature {
        signature: usize,
        key_id: String,
        builder: String,
    },
    #[error(
        "is signed by no trusted builder: none of its signatures verifies with a key in the policy (key ids {key_ids:?}); add the builder and its public key to the policy if it is trusted"
    )]
    UnknownSigner { key_ids: Vec<String> },
    #[error("is not an in-toto Statement v1: {0}")]
    NotInToto(String),
    #[error("has predicateType {0:?}, not {SLSA_PROVENANCE_V1:?}")]
    NotSlsa(String),
    #[error("is not SLSA v1 provenance: {0}")]
    NotProvenance(String),
    #[error("names {0} subjects, over the limit of {MAX_SUBJECTS}")]
    TooManySubjects(usize),
    #[error("lists {0} resolved dependencies, over the limit of {MAX_RESOLVED_DEPENDENCIES}")]
    TooManyDependencies(usize),
    #[error(
        "names builder {0:?}, which the policy does not trust; add it under [[builders]] if it is trusted"
    )]
    UnknownBuilder(String),
    #[error(
        "names builder {claimed:?} but is signed only by builder(s) {signed_by:?}: a builder vouches only for its own builds"
    )]
    BuilderMismatch {
        claimed: String,
        signed_by: Vec<String>,
    },
    #[error("has build type {0:?}, which the policy does not allow (build_types)")]
    BuildTypeNotAllowed(String),
    #[error(
        "names no source: externalParameters has no repository and ref (workflow.repository/ref, repository/ref, source.repository/ref or a source \"git+URL@REF\")"
    )]
    NoSource,
    #[error(
        "was built from source {repository:?} at ref {git_ref:?}, which the policy does not allow (sources)"
    )]
    SourceNotAllowed { repository: String, git_ref: String },
}

/// Why a set of envelopes does not vouch for an image.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProvenanceError {
    #[error("no provenance given: pass at least one DSSE envelope")]
    NoEnvelopes,
    #[error("{0} envelopes given, over the limit of {MAX_ENVELOPES}")]
    TooManyEnvelopes(usize),
    #[error("image digest {0:?} is not a sha256 (64 hex digits)")]
    BadImageDigest(String),
    #[error("provenance envelope {index} {reason}")]
    Envelope { index: usize, reason: EnvelopeError },
    #[error(
        "provenance for another digest: the image is sha256 {image}, but {} (only {have} of {need} independent builders vouch for the image: the rebuild did not reproduce it)",
        describe_disagreements(.disagreeing)
    )]
    ForAnotherDigest {
        image: String,
        have: usize,
        need: usize,
        disagreeing: Vec<Disagreement>,
    },
    #[error(
        "only {have} of {need} independent builders vouch for sha256 {image} (counted: {counted:?}; a builder counts once, and builders must have distinct ids and keys); add provenance from another trusted builder that rebuilt the same image"
    )]
    TooFewBuilders {
        image: String,
        have: usize,
        need: usize,
        counted: Vec<String>,
    },
}

fn describe_disagreements(list: &[Disagreement]) -> String {
    list.iter()
        .map(|d| {
            format!(
                "envelope {} from builder {:?} names sha256 {:?}",
                d.envelope, d.builder_id, d.named
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a policy file was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("provenance policy is {0} bytes, over the {MAX_POLICY_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("provenance policy is not valid TOML: {0}")]
    NotToml(String),
    #[error("provenance policy is invalid: {0}")]
    Invalid(String),
}

// ---------------------------------------------------------------------------------------------
// Bounded JSON

/// Refuses JSON nested deeper than `max` before any parser recurses into it (the crate's one
/// depth check, `json_limits`).
fn check_depth(bytes: &[u8], max: usize) -> Result<(), EnvelopeError> {
    crate::json_limits::check_depth(bytes, max).map_err(|_| EnvelopeError::TooDeep)
}

fn bounded_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge { size: bytes.len() });
    }
    check_depth(bytes, MAX_JSON_DEPTH)?;
    serde_json::from_slice(bytes).map_err(|e| EnvelopeError::NotJson(e.to_string()))
}

/// DSSE allows standard and URL-safe base64, padded or not: accept all four.
pub(crate) fn decode_base64(text: &str) -> Result<Vec<u8>, EnvelopeError> {
    const INDIFFERENT: GeneralPurposeConfig =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, INDIFFERENT);
    const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, INDIFFERENT);
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .map_err(|e| EnvelopeError::NotBase64(e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// DSSE

/// The DSSE v1 pre-authentication encoding: what a signature covers, binding the payload type
/// to the payload so that a signed body cannot be replayed as another type.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload_type.len() + payload.len() + 32);
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint naming the key (Rampart writes the TUF key id); unauthenticated, may be empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// The signature over [`pae`], base64.
    pub sig: String,
}

impl Envelope {
    /// Parses one envelope, bounded (size, depth, signature count).
    pub fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        let value: Value = bounded_json(bytes)?;
        if value.get("payloadType").is_none() {
            return Err(EnvelopeError::NotEnvelope(
                "no payloadType (a bare in-toto statement is not signed)".into(),
            ));
        }
        let envelope: Envelope =
            serde_json::from_value(value).map_err(|e| EnvelopeError::NotEnvelope(e.to_string()))?;
        if envelope.signatures.len() > MAX_SIGNATURES {
            return Err(EnvelopeError::TooManySignatures(envelope.signatures.len()));
        }
        Ok(envelope)
    }

    /// Signs `payload` of `payload_type` with one signer: `sign` receives the PAE bytes and
    /// returns the signature in the key's TUF encoding.
    pub fn sign<E>(
        payload_type: &str,
        payload: &[u8],
        keyid: &str,
        sign: impl FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    ) -> Result<Envelope, E> {
        let sig = sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload_type: payload_type.to_string(),
            payload: general_purpose::STANDARD.encode(payload),
            signatures: vec![EnvelopeSignature {
                keyid: keyid.to_string(),
                sig: general_purpose::STANDARD.encode(sig),
            }],
        })
    }

    /// The decoded payload.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, EnvelopeError> {
        decode_base64(&self.payload)
    }

    /// The envelope as one line of JSON (for a bundle).
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("an envelope holds only strings")
    }
}

/// Joins envelopes into an in-toto bundle (JSON Lines, one envelope a line).
pub fn bundle(envelopes: &[Envelope]) -> Vec<u8> {
    let mut out = String::new();
    for e in envelopes {
        out.push_str(&e.to_line());
        out.push('\n');
    }
    out.into_bytes()
}

/// A provenance document as an operator hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvenanceDocument {
    /// A bare in-toto statement (unsigned; accepted only where no policy is configured).
    Statement,
    /// One or more DSSE envelopes: a single envelope, or a bundle (JSON Lines).
    Envelopes(Vec<Envelope>),
}

/// Tells a bare statement, an envelope and a bundle apart, bounded.
pub fn read_document(bytes: &[u8]) -> Result<ProvenanceDocument, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge { size: bytes.len() });
    }
    check_depth(bytes, MAX_JSON_DEPTH)?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) if value.get("_type").is_some() && value.get("payloadType").is_none() => {
            Ok(ProvenanceDocument::Statement)
        }
        Ok(_) => Ok(ProvenanceDocument::Envelopes(vec![Envelope::parse(bytes)?])),
        // Not one JSON value: a bundle has one envelope a line.
        Err(_) => parse_bundle(bytes).map(ProvenanceDocument::Envelopes),
    }
}

/// Parses an in-toto bundle: one envelope a line (blank lines skipped), at most
/// [`MAX_ENVELOPES`].
pub fn parse_bundle(bytes: &[u8]) -> Result<Vec<Envelope>, EnvelopeError> {
    if bytes.len() > MAX_ENVELOPE_BYTES {
        return Err(EnvelopeError::TooLarge { size: bytes.len() });
    }
    let mut out = Vec::new();
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() == MAX_ENVELOPES {
            return Err(EnvelopeError::NotEnvelope(format!(
                "bundle holds more than {MAX_ENVELOPES} envelopes"
            )));
        }
        out.push(Envelope::parse(line)?);
    }
    if out.is_empty() {
        return Err(EnvelopeError::NotEnvelope(
            "bundle holds no envelope".into(),
        ));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// in-toto Statement v1 and SLSA v1

/// An in-toto statement. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: Value,
}

/// An artifact a statement is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    #[serde(default)]
    pub name: String,
    /// Algorithm -> hex digest (`sha256`, ...).
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    /// Parses a statement, bounded (size, depth, subject count); checks only its shape.
    pub fn parse(bytes: &[u8]) -> Result<Statement, EnvelopeError> {
        let statement: Statement = bounded_json::<Value>(bytes).and_then(|v| {
            serde_json::from_value(v).map_err(|e| EnvelopeError::NotInToto(e.to_string()))
        })?;
        if statement.subject.len() > MAX_SUBJECTS {
            return Err(EnvelopeError::TooManySubjects(statement.subject.len()));
        }
        Ok(statement)
    }

    /// Whether a subject carries `sha256` (compared case-insensitively, as hex).
    pub fn names_sha256(&self, sha256: &str) -> bool {
        self.subject.iter().any(|s| {
            s.digest
                .get("sha256")
                .is_some_and(|d| d.eq_ignore_ascii_case(sha256))
        })
    }

    /// The sha256 digests the subjects carry.
    pub fn subject_sha256s(&self) -> Vec<String> {
        self.subject
            .iter()
            .filter_map(|s| s.digest.get("sha256").map(|d| d.to_ascii_lowercase()))
            .collect()
    }

    /// The SLSA v1 provenance predicate.
    pub fn slsa_provenance(&self) -> Result<SlsaProvenance, EnvelopeError> {
        if self.predicate_type != SLSA_PROVENANCE_V1 {
            return Err(EnvelopeError::NotSlsa(self.predicate_type.clone()));
        }
        let p: SlsaProvenance = serde_json::from_value(self.predicate.clone())
            .map_err(|e| EnvelopeError::NotProvenance(e.to_string()))?;
        let deps = p.build_definition.resolved_dependencies.len();
        if deps > MAX_RESOLVED_DEPENDENCIES {
            return Err(EnvelopeError::TooManyDependencies(deps));
        }
        Ok(p)
    }
}

/// The SLSA v1 provenance predicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SlsaProvenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

/// What was built and from what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    /// The builder-specific inputs a user controls (the source repository and ref among them).
    pub external_parameters: Value,
    #[serde(default)]
    pub internal_parameters: Value,
    #[serde(default)]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// An artifact the build used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    #[serde(default)]
    pub uri: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

/// Who ran the build, and which run it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: BuilderId,
    #[serde(default)]
    pub metadata: BuildMetadata,
}

/// The builder's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuilderId {
    pub id: String,
}

/// The run's identity and times, as the builder states them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default)]
    pub invocation_id: Option<String>,
    #[serde(default)]
    pub started_on: Option<String>,
    #[serde(default)]
    pub finished_on: Option<String>,
}

/// A source repository and ref, as the builder states them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub repository: String,
    #[serde(rename = "ref")]
    pub git_ref: String,
}

impl BuildDefinition {
    /// The source the build says it started from. SLSA v1 leaves `externalParameters` to each
    /// build type; the shapes read here are the GitHub Actions workflow build type's
    /// (`workflow.repository`, `workflow.ref`), flat `repository`/`ref`, a `source` object with
    /// the same two fields, and a `source` string `git+URL@REF`.
    pub fn source(&self) -> Option<Source> {
        let params = &self.external_parameters;
        let pair = |v: &Value| -> Option<Source> {
            Some(Source {
                repository: v.get("repository")?.as_str()?.to_string(),
                git_ref: v.get("ref")?.as_str()?.to_string(),
            })
        };
        if let Some(s) = params.get("workflow").and_then(pair) {
            return Some(s);
        }
        if let Some(s) = pair(params) {
            return Some(s);
        }
        match params.get("source")? {
            Value::Object(_) => pair(params.get("source")?),
            Value::String(text) => {
                let rest = text.strip_prefix("git+")?;
                let (repository, git_ref) = rest.rsplit_once('@')?;
                // `git+ssh://git@host/repo` has an '@' but no ref: a repository names a host
                // and a path, and a ref has no ':'.
                let host_and_path = repository.split_once("://")?.1;
                if !host_and_path.contains('/') || git_ref.is_empty() || git_ref.contains(':') {
                    return None;
                }
                Some(Source {
                    repository: repository.to_string(),
                    git_ref: git_ref.to_string(),
                })
            }
            _ => None,
        }
    }
}

/// Checks a bare (unsigned) in-toto statement, v1 or v0.1 with any predicate, and that one
/// subject carries `image_sha256`: the check `rampart release add` makes without a policy.
pub fn check_bare_statement(bytes: &[u8], image_sha256: &str) -> Result<(), BareStatementError> {
    let statement = Statement::parse(bytes).map_err(BareStatementError::Malformed)?;
    if statement.statement_type != STATEMENT_V1 && statement.statement_type != STATEMENT_V0_1 {
        return Err(BareStatementError::Malformed(EnvelopeError::NotInToto(
            format!(
                "_type must be {STATEMENT_V1} (or v0.1), found {:?}",
                statement.statement_type
            ),
        )));
    }
    if statement.names_sha256(image_sha256) {
        Ok(())
    } else {
        Err(BareStatementError::SubjectMismatch(
            image_sha256.to_string(),
        ))
    }
}

/// Checks that every envelope of a bundle carries an in-toto statement v1 naming
/// `image_sha256`. Signatures are not checked here (that is [`verify`]'s, with a policy): this
/// is the repository's own check that a stored bundle belongs to its image.
pub fn check_bundle_subjects(bytes: &[u8], image_sha256: &str) -> Result<(), BareStatementError> {
    let envelopes = parse_bundle(bytes).map_err(BareStatementError::Malformed)?;
    for envelope in &envelopes {
        let statement = envelope_statement(envelope).map_err(BareStatementError::Malformed)?;
        if !statement.names_sha256(image_sha256) {
            return Err(BareStatementError::SubjectMismatch(
                image_sha256.to_string(),
            ));
        }
    }
    Ok(())
}

/// Why a bare statement or a bundle does not belong to an image.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum BareStatementError {
    #[error("provenance {0}")]
    Malformed(EnvelopeError),
    #[error("provenance does not name the image: no subject has sha256 {0}")]
    SubjectMismatch(String),
}

fn envelope_statement(envelope: &Envelope) -> Result<Statement, EnvelopeError> {
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(EnvelopeError::WrongPayloadType(
            envelope.payload_type.clone(),
        ));
    }
    let statement = Statement::parse(&envelope.payload_bytes()?)?;
    if statement.statement_type != STATEMENT_V1 {
        return Err(EnvelopeError::NotInToto(format!(
            "_type must be {STATEMENT_V1}, found {:?}",
            statement.statement_type
        )));
    }
    Ok(statement)
}

/// What a provenance document says, for people (the web console's release page): each
/// statement's predicate, builder and subjects, and whether every statement names the image.
/// Signatures are counted, not checked: that is [`verify`]'s, with a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenanceSummary {
    /// `statement` (a bare, unsigned in-toto statement) or `envelopes` (DSSE, signed).
    pub form: &'static str,
    pub statements: Vec<StatementSummary>,
    /// Whether every statement has a subject with the image's SHA-256.
    pub names_image: bool,
}

/// One statement of a [`ProvenanceSummary`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatementSummary {
    pub predicate_type: String,
    /// The SLSA v1 builder id, when the predicate is SLSA v1 provenance.
    pub builder: Option<String>,
    /// The subjects' names and SHA-256 digests (empty when a subject carries none).
    pub subjects: Vec<(String, String)>,
    /// Signatures on the envelope that carried it (0 for a bare statement).
    pub signatures: usize,
}

fn statement_summary(statement: &Statement, signatures: usize) -> StatementSummary {
    StatementSummary {
        predicate_type: statement.predicate_type.clone(),
        builder: statement
            .slsa_provenance()
            .ok()
            .map(|p| p.run_details.builder.id),
        subjects: statement
            .subject
            .iter()
            .map(|s| {
                let digest = s.digest.get("sha256").cloned().unwrap_or_default();
                (s.name.clone(), digest.to_ascii_lowercase())
            })
            .collect(),
        signatures,
    }
}

/// Summarizes a provenance document (a bare statement, an envelope or a bundle), bounded like
/// [`read_document`], for the image whose SHA-256 is `image_sha256`.
pub fn summarize(bytes: &[u8], image_sha256: &str) -> Result<ProvenanceSummary, EnvelopeError> {
    let (form, statements) = match read_document(bytes)? {
        ProvenanceDocument::Statement => {
            let statement = Statement::parse(bytes)?;
            ("statement", vec![(statement, 0)])
        }
        ProvenanceDocument::Envelopes(envelopes) => {
            let mut statements = Vec::with_capacity(envelopes.len());
            for envelope in &envelopes {
                statements.push((envelope_statement(envelope)?, envelope.signatures.len()));
            }
            ("envelopes", statements)
        }
    };
    Ok(ProvenanceSummary {
        form,
        names_image: statements.iter().all(|(s, _)| s.names_sha256(image_sha256)),
        statements: statements
            .iter()
            .map(|(s, signatures)| statement_summary(s, *signatures))
            .collect(),
    })
}

// ---------------------------------------------------------------------------------------------
// Policy

/// A pattern that matches exactly, or, ending in `*`, by prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    Prefix(String),
}

impl Pattern {
    fn parse(text: &str, what: &str) -> Result<Pattern, PolicyError> {
        let (body, prefix) = match text.strip_suffix('*') {
            Some(body) => (body, true),
            None => (text, false),
        };
        if body.is_empty() {
            return Err(PolicyError::Invalid(format!(
                "{what} {text:?} matches everything; name it, or a prefix ending in *"
            )));
        }
        if body.contains('*') {
            return Err(PolicyError::Invalid(format!(
                "{what} {text:?}: only a trailing * (a prefix) is allowed"
            )));
        }
        Ok(if prefix {
            Pattern::Prefix(body.to_string())
        } else {
            Pattern::Exact(body.to_string())
        })
    }

    fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(e) => text == e,
            Pattern::Prefix(p) => text.starts_with(p.as_str()),
        }
    }
}

/// One allowed source: a repository (exact or prefix) and the refs allowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceRule {
    repository: Pattern,
    refs: Vec<Pattern>,
}

/// A builder the policy trusts, and the keys that sign its provenance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedBuilder {
    pub id: String,
    pub keys: Vec<Key>,
}

/// Which provenance `rampart release add` accepts. Built only by [`ProvenancePolicy::from_toml`]
/// (or [`ProvenancePolicy::new`]), which check it, so a policy in hand is always coherent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenancePolicy {
    required_builders: usize,
    builders: Vec<TrustedBuilder>,
    sources: Vec<SourceRule>,
    build_types: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "one")]
    required_builders: usize,
    build_types: Vec<String>,
    sources: Vec<SourceFile>,
    builders: Vec<BuilderFile>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    repository: String,
    refs: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BuilderFile {
    id: String,
    keys: Vec<Key>,
}

/// One allowed source as [`ProvenancePolicy::new`] takes it: patterns end in `*` for a prefix.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub repository: String,
    pub refs: Vec<String>,
}

impl ProvenancePolicy {
    /// Reads a policy from TOML:
    ///
    /// ```toml
    /// required_builders = 2
    /// build_types = ["https://actions.github.io/buildtypes/workflow/v1"]
    /// [[sources]]
    /// repository = "https://github.com/acme/firmware"
    /// refs = ["refs/heads/main", "refs/tags/v*"]
    /// [[builders]]
    /// id = "https://builder-a.acme.example"
    /// keys = [{ keytype = "ed25519", scheme = "ed25519", keyval = { public = "..." } }]
    /// ```
    pub fn from_toml(bytes: &[u8]) -> Result<ProvenancePolicy, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge(bytes.len()));
        }
        let text = std::str::from_utf8(bytes)
            .map_err(|e| PolicyError::NotToml(format!("not UTF-8: {e}")))?;
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::NotToml(e.to_string()))?;
        ProvenancePolicy::new(
            file.required_builders,
            file.builders
                .into_iter()
                .map(|b| TrustedBuilder {
                    id: b.id,
                    keys: b.keys,
                })
                .collect(),
            file.sources
                .into_iter()
                .map(|s| SourceSpec {
                    repository: s.repository,
                    refs: s.refs,
                })
                .collect(),
            file.build_types,
        )
    }

    /// Builds a policy and checks it: at least one builder, source and build type; every
    /// builder with a distinct id and at least one supported key; no key shared by two
    /// builders (then distinct builders are distinct keys); k between 1 and the number of
    /// builders; repository prefixes ending at a path separator.
    pub fn new(
        required_builders: usize,
        builders: Vec<TrustedBuilder>,
        sources: Vec<SourceSpec>,
        build_types: Vec<String>,
    ) -> Result<ProvenancePolicy, PolicyError> {
        let invalid = |m: String| Err(PolicyError::Invalid(m));
        if builders.is_empty() {
            return invalid("no [[builders]]: trust at least one builder and its key".into());
        }
        if builders.len() > MAX_BUILDERS {
            return invalid(format!(
                "{} builders, over the limit of {MAX_BUILDERS}",
                builders.len()
            ));
        }
        if required_builders == 0 || required_builders > builders.len() {
            return invalid(format!(
                "required_builders = {required_builders} cannot be met by {} trusted builder(s): it must be between 1 and the number of builders",
                builders.len()
            ));
        }
        let total_keys: usize = builders.iter().map(|b| b.keys.len()).sum();
        if total_keys > MAX_POLICY_KEYS {
            return invalid(format!(
                "{total_keys} builder keys, over the limit of {MAX_POLICY_KEYS}"
            ));
        }
        let mut ids = BTreeSet::new();
        let mut key_owner: BTreeMap<Vec<u8>, &str> = BTreeMap::new();
        for b in &builders {
            if b.id.is_empty() {
                return invalid("a builder has an empty id".into());
            }
            if !ids.insert(b.id.as_str()) {
                return invalid(format!("builder {:?} is listed twice", b.id));
            }
            if b.keys.is_empty() {
                return invalid(format!("builder {:?} has no keys", b.id));
            }
            for k in &b.keys {
                let material = k
                    .material()
                    .map_err(|e| PolicyError::Invalid(format!("builder {:?}: {e}", b.id)))?;
                if let Some(other) = key_owner.insert(material, &b.id)
                    && other != b.id
                {
                    return invalid(format!(
                        "builders {other:?} and {:?} share key {}: builders sharing a key are not independent",
                        b.id,
                        k.key_id()
                    ));
                }
            }
        }
        if sources.is_empty() {
            return invalid(
                "no [[sources]]: allow at least one source repository and its refs".into(),
            );
        }
        if build_types.is_empty() {
            return invalid("build_types is empty: allow at least one build type".into());
        }
        if sources.len() > MAX_POLICY_RULES || build_types.len() > MAX_POLICY_RULES {
            return invalid(format!(
                "more than {MAX_POLICY_RULES} sources or build types"
            ));
        }
        let mut rules = Vec::with_capacity(sources.len());
        for s in sources {
            let repository = Pattern::parse(&s.repository, "source repository")?;
            if let Pattern::Prefix(p) = &repository
                && !p.ends_with('/')
            {
                return invalid(format!(
                    "source repository prefix {:?} must end in \"/*\": otherwise it also matches repositories whose names merely start the same",
                    s.repository
                ));
            }
            if s.refs.is_empty() || s.refs.len() > MAX_POLICY_RULES {
                return invalid(format!(
                    "source {:?} must list between 1 and {MAX_POLICY_RULES} refs",
                    s.repository
                ));
            }
            let refs = s
                .refs
                .iter()
                .map(|r| Pattern::parse(r, "source ref"))
                .collect::<Result<Vec<_>, _>>()?;
            rules.push(SourceRule { repository, refs });
        }
        Ok(ProvenancePolicy {
            required_builders,
            builders,
            sources: rules,
            build_types,
        })
    }

    /// How many independent builders must vouch for the same digest.
    pub fn required_builders(&self) -> usize {
        self.required_builders
    }

    /// The trusted builders.
    pub fn builders(&self) -> &[TrustedBuilder] {
        &self.builders
    }

    fn source_allowed(&self, source: &Source) -> bool {
        self.sources.iter().any(|rule| {
            rule.repository.matches(&source.repository)
                && rule.refs.iter().any(|r| r.matches(&source.git_ref))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Verification

/// A builder whose provenance counted towards the verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcceptedBuild {
    /// Index of the envelope among those given.
    pub envelope: usize,
    pub builder_id: String,
    /// TUF key id of the key whose signature verified.
    pub key_id: String,
    pub build_type: String,
    pub source: Source,
    pub invocation_id: Option<String>,
    pub started_on: Option<String>,
}

/// A trusted, well-signed provenance that names other digests than the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Disagreement {
    pub envelope: usize,
    pub builder_id: String,
    /// The sha256 digests its subjects name.
    pub named: Vec<String>,
}

/// What [`verify`] found: enough independent builders vouch for the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProvenanceVerdict {
    pub image_sha256: String,
    pub required_builders: usize,
    /// One per independent builder counted, in envelope order.
    pub builders: Vec<AcceptedBuild>,
    /// Envelopes that were valid but did not count: the same builder (or key) again.
    pub repeated: Vec<usize>,
    /// Trusted builders whose rebuild produced another digest.
    pub disagreeing: Vec<Disagreement>,
}

impl ProvenanceVerdict {
    /// The envelopes that vouch for the image (counted or repeated), in the order given.
    pub fn vouching_envelopes(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .builders
            .iter()
            .map(|b| b.envelope)
            .chain(self.repeated.iter().copied())
            .collect();
        v.sort_unstable();
        v
    }
}

/// One envelope that passed every check but the digest comparison.
struct Checked {
    builder_id: String,
    accepted: AcceptedBuild,
    statement: Statement,
}

/// Verifies envelopes against `policy` for the image whose digest is `image_sha256`.
///
/// Each envelope must be signed by a trusted builder's key, carry an in-toto Statement v1 with
/// SLSA v1 provenance naming that same builder, an allowed build type and an allowed source;
/// any envelope failing that is an error naming it. Of those, the ones naming the image count,
/// once per builder id and key: at least `required_builders` must. A valid envelope naming
/// another digest does not count (a rebuild that did not reproduce the image) and is reported.
pub fn verify<B: AsRef<[u8]>>(
    policy: &ProvenancePolicy,
    envelopes: &[B],
    image_sha256: &str,
) -> Result<ProvenanceVerdict, ProvenanceError> {
    if envelopes.is_empty() {
        return Err(ProvenanceError::NoEnvelopes);
    }
    if envelopes.len() > MAX_ENVELOPES {
        return Err(ProvenanceError::TooManyEnvelopes(envelopes.len()));
    }
    if image_sha256.len() != 64 || !image_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ProvenanceError::BadImageDigest(image_sha256.to_string()));
    }
    let image = image_sha256.to_ascii_lowercase();
    let mut checked = Vec::with_capacity(envelopes.len());
    for (index, bytes) in envelopes.iter().enumerate() {
        let c = check_envelope(policy, index, bytes.as_ref())
            .map_err(|reason| ProvenanceError::Envelope { index, reason })?;
        checked.push(c);
    }
    let mut verdict = ProvenanceVerdict {
        image_sha256: image.clone(),
        required_builders: policy.required_builders,
        builders: Vec::new(),
        repeated: Vec::new(),
        disagreeing: Vec::new(),
    };
    // Independence: a builder counts once. Distinct builders have distinct keys because a
    // policy refuses a key shared by two builders, so counting ids counts keys too.
    let mut counted_ids = BTreeSet::new();
    for c in checked {
        if !c.statement.names_sha256(&image) {
            verdict.disagreeing.push(Disagreement {
                envelope: c.accepted.envelope,
                builder_id: c.builder_id,
                named: c.statement.subject_sha256s(),
            });
            continue;
        }
        if !counted_ids.insert(c.builder_id) {
            verdict.repeated.push(c.accepted.envelope);
            continue;
        }
        verdict.builders.push(c.accepted);
    }
    let have = verdict.builders.len();
    let need = policy.required_builders;
    if have >= need {
        return Ok(verdict);
    }
    if !verdict.disagreeing.is_empty() {
        return Err(ProvenanceError::ForAnotherDigest {
            image,
            have,
            need,
            disagreeing: verdict.disagreeing,
        });
    }
    Err(ProvenanceError::TooFewBuilders {
        image,
        have,
        need,
        counted: verdict.builders.into_iter().map(|b| b.builder_id).collect(),
    })
}

fn check_envelope(
    policy: &ProvenancePolicy,
    index: usize,
    bytes: &[u8],
) -> Result<Checked, EnvelopeError> {
    let envelope = Envelope::parse(bytes)?;
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE {
        return Err(EnvelopeError::WrongPayloadType(envelope.payload_type));
    }
    if envelope.signatures.is_empty() {
        return Err(EnvelopeError::Unsigned);
    }
    let payload = envelope.payload_bytes()?;
    // Signatures first: the payload is parsed only once a trusted key vouches for it.
    let signed_by = verified_signers(policy, &envelope, &payload)?;
    let statement = envelope_statement(&envelope)?;
    let provenance = statement.slsa_provenance()?;
    let claimed = &provenance.run_details.builder.id;
    let Some(builder) = policy.builders.iter().find(|b| &b.id == claimed) else {
        return Err(EnvelopeError::UnknownBuilder(claimed.clone()));
    };
    let Some((_, key)) = signed_by.iter().find(|(b, _)| b.id == builder.id) else {
        return Err(EnvelopeError::BuilderMismatch {
            claimed: claimed.clone(),
            signed_by: signed_by.iter().map(|(b, _)| b.id.clone()).collect(),
        });
    };
    let build_type = &provenance.build_definition.build_type;
    if !policy.build_types.iter().any(|t| t == build_type) {
        return Err(EnvelopeError::BuildTypeNotAllowed(build_type.clone()));
    }
    let source = provenance
        .build_definition
        .source()
        .ok_or(EnvelopeError::NoSource)?;
    if !policy.source_allowed(&source) {
        return Err(EnvelopeError::SourceNotAllowed {
            repository: source.repository,
            git_ref: source.git_ref,
        });
    }
    let metadata = provenance.run_details.metadata;
    Ok(Checked {
        builder_id: builder.id.clone(),
        accepted: AcceptedBuild {
            envelope: index,
            builder_id: builder.id.clone(),
            key_id: key.key_id(),
            build_type: build_type.clone(),
            source,
            invocation_id: metadata.invocation_id,
            started_on: metadata.started_on,
        },
        statement,
    })
}

/// The (builder, key) pairs whose signatures verify over the envelope's PAE. A signature whose
/// key id names a policy key is checked against that key only, and failing is a wrong
/// signature; one without a known key id is tried against every policy key.
fn verified_signers<'p>(
    policy: &'p ProvenancePolicy,
    envelope: &Envelope,
    payload: &[u8],
) -> Result<Vec<(&'p TrustedBuilder, &'p Key)>, EnvelopeError> {
    let message = pae(&envelope.payload_type, payload);
    let mut out: Vec<(&TrustedBuilder, &Key)> = Vec::new();
    let mut wrong = None;
    for (i, s) in envelope.signatures.iter().enumerate() {
        let sig = decode_base64(&s.sig)?;
        let hinted: Vec<(&TrustedBuilder, &Key)> = policy
            .builders
            .iter()
            .flat_map(|b| b.keys.iter().map(move |k| (b, k)))
            .filter(|(_, k)| !s.keyid.is_empty() && k.key_id() == s.keyid)
            .collect();
        let candidates: Vec<(&TrustedBuilder, &Key)> = if hinted.is_empty() {
            policy
                .builders
                .iter()
                .flat_map(|b| b.keys.iter().map(move |k| (b, k)))
                .collect()
        } else {
            hinted.clone()
        };
        match candidates
            .into_iter()
            .find(|(_, k)| k.verify(&message, &sig).is_ok())
        {
            Some(found) => out.push(found),
            None => {
                if let Some((b, k)) = hinted.first()
                    && wrong.is_none()
                {
                    wrong = Some(EnvelopeError::WrongSignature {
                        signature: i,
                        key_id: k.key_id(),
                        builder: b.id.clone(),
                    });
                }
            }
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    Err(wrong.unwrap_or_else(|| EnvelopeError::UnknownSigner {
        key_ids: envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect(),
    }))
}

#[cfg(test)]
mod tests;
