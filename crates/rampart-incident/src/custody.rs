//! Chain of custody for forensic evidence (decision 0034): the checks a bundle must pass when
//! a device uploads it ([`check_upload`]), and the export (`rampart-incident-export/1`) that
//! lets anyone verify an incident's evidence offline ([`verify_export`]).
//!
//! An export is one JSON document holding, for one incident:
//!
//! - every stored evidence bundle (base64), with the request it answered (id, nonce), the
//!   certificate the device presented when it uploaded it, the device's TPM attestation key if
//!   it had one, and the transparency-log entry anchoring it with its inclusion proof and
//!   checkpoint (a C2SP tlog-proof);
//! - the incident's timeline;
//! - the audit records from the incident's first timeline entry up to a signed audit head that
//!   covers them all (the segment and the head are what tie every entry to the server's
//!   tamper-evident history).
//!
//! [`verify_export`] checks, naming the first thing that is wrong: the audit head's signature
//! with the audit key, the audit segment (every record's hash, every link, the head's hash),
//! each bundle's hash and length against its audit record, its structure and item hashes, that
//! it answers its request (device, request, incident, nonce), its signature with the key of the
//! certificate it was uploaded with, its TPM quote's binding with the attestation key, its
//! transparency-log entry and (given the log's policy) the entry's inclusion under a checkpoint
//! signed by the log and its witnesses. That the certificates chain to the manufacturer CA is
//! the caller's (it needs an X.509 path builder): [`VerifiedExport`] lists them.
//!
//! Pure: no I/O, no clock.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rampart_audit::{AuditChain, AuditRecord};
use rampart_log::note::Verifier;
use rampart_log::policy::WitnessPolicy;
use rampart_log::proof::TlogProof;
use serde::{Deserialize, Serialize};

use crate::evidence::{Bundle, ExpectedRequest, certificate_spki};

/// The `format` of an export.
pub const EXPORT_FORMAT: &str = "rampart-incident-export/1";
/// The first line of a transparency-log entry anchoring a bundle.
pub const LOG_ENTRY_HEADER: &str = "rampart-evidence v1";
/// The audit action that records a stored bundle.
pub const STORED_ACTION: &str = "incident.evidence_stored";
/// Most audit records an export carries.
pub const MAX_EXPORT_RECORDS: usize = 1_000_000;

/// An incident's chain-of-custody export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    pub incident: String,
    /// When the server made it (Unix seconds).
    pub exported_at: i64,
    pub evidence: Vec<ExportedEvidence>,
    pub timeline: Vec<ExportedEntry>,
    /// Audit records as JSON lines (`rampart_audit::to_json_line`), contiguous, ending with the
    /// record the head covers last.
    pub audit_records: Vec<String>,
    /// The signed audit head (a signed note) covering the last record.
    pub audit_head: String,
}

/// One stored bundle and what vouches for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEvidence {
    pub request_id: String,
    pub device_id: String,
    /// The request's nonce (hex).
    pub nonce: String,
    /// SHA-256 of the bundle, hex: its content address.
    pub sha256: String,
    pub length: u64,
    pub stored_at: i64,
    /// The audit record that recorded it.
    pub audit_seq: u64,
    /// The bundle, base64.
    pub bundle: String,
    /// The certificate the device presented when uploading it (DER, base64).
    pub certificate: String,
    /// The device's TPM attestation key (TPMT_PUBLIC, base64), if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation_key: Option<String>,
    /// The transparency-log entry anchoring the bundle.
    pub log_entry: String,
    /// The entry's tlog-proof (inclusion proof and checkpoint), once the log covered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_proof: Option<String>,
}

/// One timeline entry (each is also the audit record `audit_seq`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportedEntry {
    pub audit_seq: u64,
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub device_id: String,
    pub detail: serde_json::Value,
}

/// What [`verify_export`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedExport {
    pub incident: String,
    /// Bundles verified: (request id, SHA-256 hex, whether a TPM quote was checked).
    pub bundles: Vec<(String, String, bool)>,
    /// The certificates the bundles were uploaded with (DER), each with the time it was
    /// presented: the caller checks they chain to the manufacturer CA.
    pub certificates: Vec<(String, Vec<u8>, i64)>,
    /// Audit records checked (first and last sequence numbers).
    pub audit_range: (u64, u64),
    /// Whether the log inclusion of every bundle was checked (a policy was given).
    pub log_checked: bool,
}

/// Why a bundle or an export does not verify; every message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustodyError {
    #[error("{0}")]
    Bundle(String),
    #[error("the export is not a {EXPORT_FORMAT} document: {0}")]
    Format(String),
    #[error("the audit head: {0}")]
    AuditHead(String),
    #[error("audit record {seq}: {reason}")]
    AuditRecord { seq: u64, reason: String },
    #[error("evidence {request}: {reason}")]
    Evidence { request: String, reason: String },
    #[error("timeline entry {seq}: {reason}")]
    Timeline { seq: u64, reason: String },
}

/// What a bundle must answer.
pub type Expected<'a> = ExpectedRequest<'a>;

/// The transparency-log entry that anchors a bundle.
pub fn log_entry(
    incident: &str,
    device_id: &str,
    request_id: &str,
    sha256: &str,
    length: u64,
) -> String {
    format!(
        "{LOG_ENTRY_HEADER}\nincident {incident}\ndevice {device_id}\nrequest {request_id}\nsha256 {sha256}\nlength {length}\n"
    )
}

/// The checks of an uploaded bundle (`bytes`, at most `max_bytes`): its structure and item
/// hashes, that it answers `expected`, that it carries the certificate the device presented on
/// the connection (`certificate`, DER) and is signed by that certificate's key, and, when the
/// device has an attestation key (`ak_public`, TPMT_PUBLIC), that it carries a TPM quote by
/// that key whose qualifying data binds the manifest and the nonce. Returns whether a quote was
/// checked.
pub fn check_upload(
    bytes: &[u8],
    max_bytes: u64,
    expected: &Expected<'_>,
    certificate: &[u8],
    ak_public: Option<&[u8]>,
) -> Result<bool, CustodyError> {
    let bad = |e: String| CustodyError::Bundle(e);
    let bundle = Bundle::parse(bytes, max_bytes).map_err(|e| bad(e.to_string()))?;
    bundle
        .check_request(expected)
        .map_err(|e| bad(e.to_string()))?;
    if bundle.certificate != certificate {
        return Err(bad(
            "the bundle carries another certificate than the one the device presented: it was signed by another device's key, or for another connection".into(),
        ));
    }
    let spki = certificate_spki(certificate).map_err(|e| bad(e.to_string()))?;
    bundle
        .verify_signature(&spki)
        .map_err(|e| bad(e.to_string()))?;
    check_quote(&bundle, ak_public).map_err(bad)
}

/// The TPM quote's binding: with an attestation key, a quote by it whose qualifying data is
/// the manifest's (manifest and nonce); without one, nothing to check.
fn check_quote(bundle: &Bundle, ak_public: Option<&[u8]>) -> Result<bool, String> {
    use rampart_attest::pcr::{PcrSelection, PcrValues};
    use rampart_attest::quote::{AttestationKey, verify_quote};
    let Some(ak_public) = ak_public else {
        return Ok(false);
    };
    let Some(quote) = &bundle.quote else {
        return Err(
            "the device has a TPM attestation key but the bundle carries no quote binding it: evidence from a TPM device must be quoted"
                .into(),
        );
    };
    let ak = rampart_attest::wire::Public::parse(ak_public)
        .map(|public| AttestationKey::from_public(&public))
        .map_err(|e| format!("the device's attestation key does not parse: {e}"))?;
    let pcrs =
        PcrValues::parse_file(&quote.pcrs).map_err(|e| format!("the quote's PCR values: {e}"))?;
    let qualifying = bundle
        .manifest
        .quote_qualifying_data()
        .map_err(|e| e.to_string())?;
    // Any PCRs the device chose to quote: what matters here is the binding, not the state.
    let selection: PcrSelection = pcrs.selection().clone();
    verify_quote(
        &quote.message,
        &quote.signature,
        &pcrs,
        &ak,
        &qualifying,
        &selection,
    )
    .map_err(|e| format!("the bundle's TPM quote: {e}"))?;
    Ok(true)
}

fn b64(what: &str, text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text.trim())
        .map_err(|e| format!("{what} is not base64: {e}"))
}

/// Verifies an export offline (see the module documentation). `audit_keys` are the verifier
/// keys the audit head may be signed with; `log` the transparency log's policy (log key,
/// origin, witnesses): without it the log entries are checked but their inclusion is not.
pub fn verify_export(
    bytes: &[u8],
    audit_keys: &[Verifier],
    log: Option<&WitnessPolicy>,
) -> Result<VerifiedExport, CustodyError> {
    let export: Export =
        serde_json::from_slice(bytes).map_err(|e| CustodyError::Format(e.to_string()))?;
    if export.format != EXPORT_FORMAT {
        return Err(CustodyError::Format(format!(
            "its format is {:?}",
            export.format.chars().take(64).collect::<String>()
        )));
    }
    let records = verify_segment(&export, audit_keys)?;
    let record_at = |seq: u64| -> Option<&AuditRecord> {
        let first = records.first()?.seq;
        records.get(usize::try_from(seq.checked_sub(first)?).ok()?)
    };
    for entry in &export.timeline {
        let record = record_at(entry.audit_seq).ok_or_else(|| CustodyError::Timeline {
            seq: entry.audit_seq,
            reason: "its audit record is not in the export's audit segment".into(),
        })?;
        if record.actor != entry.actor || record.time != entry.at {
            return Err(CustodyError::Timeline {
                seq: entry.audit_seq,
                reason: format!(
                    "it says {} at {}, but its audit record says {} at {}",
                    entry.actor, entry.at, record.actor, record.time
                ),
            });
        }
    }
    let mut verified = VerifiedExport {
        incident: export.incident.clone(),
        bundles: Vec::new(),
        certificates: Vec::new(),
        audit_range: (
            records.first().map_or(0, |r| r.seq),
            records.last().map_or(0, |r| r.seq),
        ),
        log_checked: log.is_some(),
    };
    for evidence in &export.evidence {
        let failed = |reason: String| CustodyError::Evidence {
            request: evidence.request_id.clone(),
            reason,
        };
        let record = record_at(evidence.audit_seq).ok_or_else(|| {
            failed(format!(
                "its audit record {} is not in the export's audit segment",
                evidence.audit_seq
            ))
        })?;
        let details = &record.details;
        let recorded = |key: &str| details.get(key).and_then(|v| v.as_str()).unwrap_or("");
        if record.action != STORED_ACTION
            || recorded("request") != evidence.request_id
            || recorded("incident") != export.incident
            || recorded("device") != evidence.device_id
        {
            return Err(failed(format!(
                "audit record {} does not record storing this request's bundle for this incident and device",
                record.seq
            )));
        }
        if recorded("sha256") != evidence.sha256
            || details.get("length").and_then(|v| v.as_u64()) != Some(evidence.length)
        {
            return Err(failed(format!(
                "the audit record {} recorded SHA-256 {} and length {}, not the {} and {} given",
                record.seq,
                recorded("sha256"),
                details.get("length").unwrap_or(&serde_json::Value::Null),
                evidence.sha256,
                evidence.length
            )));
        }
        let bundle = b64("the bundle", &evidence.bundle).map_err(failed)?;
        let sha256 = hex::encode(crate::device_signature::sha256(&bundle));
        if sha256 != evidence.sha256 || bundle.len() as u64 != evidence.length {
            return Err(failed(format!(
                "the bundle's SHA-256 is {sha256} ({} bytes), not the recorded {} ({} bytes): the bundle was changed",
                bundle.len(),
                evidence.sha256,
                evidence.length
            )));
        }
        let certificate = b64("the certificate", &evidence.certificate).map_err(failed)?;
        let ak = evidence
            .attestation_key
            .as_deref()
            .map(|text| b64("the attestation key", text))
            .transpose()
            .map_err(failed)?;
        let quote_checked = check_upload(
            &bundle,
            bundle.len() as u64,
            &ExpectedRequest {
                device_id: &evidence.device_id,
                request_id: &evidence.request_id,
                incident: &export.incident,
                nonce: &evidence.nonce,
            },
            &certificate,
            ak.as_deref(),
        )
        .map_err(|e| failed(e.to_string()))?;
        let entry = log_entry(
            &export.incident,
            &evidence.device_id,
            &evidence.request_id,
            &evidence.sha256,
            evidence.length,
        );
        if entry != evidence.log_entry {
            return Err(failed(
                "its transparency-log entry does not name this incident, device, request and hash"
                    .into(),
            ));
        }
        if let Some(policy) = log {
            let proof = evidence.log_proof.as_deref().ok_or_else(|| {
                failed("no transparency-log proof: the bundle was not yet anchored when exported; export again later".into())
            })?;
            let proof = TlogProof::parse(proof.as_bytes())
                .map_err(|e| failed(format!("its tlog-proof: {e}")))?;
            policy
                .verify_proof(&rampart_log::merkle::leaf_hash(entry.as_bytes()), &proof)
                .map_err(|e| failed(format!("its transparency-log inclusion: {e}")))?;
        }
        verified
            .bundles
            .push((evidence.request_id.clone(), sha256, quote_checked));
        verified
            .certificates
            .push((evidence.request_id.clone(), certificate, evidence.stored_at));
    }
    Ok(verified)
}

/// The audit segment: the head's signature, then every record from the first to the one the
/// head covers last, each hash and each link.
fn verify_segment(
    export: &Export,
    audit_keys: &[Verifier],
) -> Result<Vec<AuditRecord>, CustodyError> {
    if export.audit_records.len() > MAX_EXPORT_RECORDS {
        return Err(CustodyError::Format(format!(
            "more than {MAX_EXPORT_RECORDS} audit records"
        )));
    }
    let mut last_error = "no audit key given".to_string();
    let mut head = None;
    for key in audit_keys {
        match rampart_audit::verify_signed_head(export.audit_head.as_bytes(), key) {
            Ok(verified) => {
                head = Some(verified);
                break;
            }
            Err(e) => last_error = e.to_string(),
        }
    }
    let head = head.ok_or(CustodyError::AuditHead(last_error))?;
    let mut records = Vec::with_capacity(export.audit_records.len());
    for (i, line) in export.audit_records.iter().enumerate() {
        let mut parsed =
            rampart_audit::parse_jsonl(line.as_bytes()).map_err(|e| CustodyError::AuditRecord {
                seq: i as u64,
                reason: format!("line {} does not parse: {e}", i + 1),
            })?;
        match (parsed.pop(), parsed.is_empty()) {
            (Some(record), true) => records.push(record),
            _ => {
                return Err(CustodyError::AuditRecord {
                    seq: i as u64,
                    reason: format!("line {} is not exactly one record", i + 1),
                });
            }
        }
    }
    let Some(first) = records.first() else {
        return Err(CustodyError::AuditHead(
            "the export carries no audit records".into(),
        ));
    };
    let record_error = |seq: u64, reason: String| CustodyError::AuditRecord { seq, reason };
    first
        .validate()
        .map_err(|e| record_error(first.seq, e.to_string()))?;
    if first.compute_hash() != first.hash {
        return Err(record_error(
            first.seq,
            "its hash does not match its content: it was edited".into(),
        ));
    }
    let mut chain =
        AuditChain::resume(Some(first)).map_err(|e| record_error(first.seq, e.to_string()))?;
    for record in &records[1..] {
        let rebuilt = chain
            .append(
                record.time,
                &record.actor,
                &record.action,
                &record.subject,
                record.details.clone(),
            )
            .map_err(|e| record_error(record.seq, e.to_string()))?;
        if &rebuilt != record {
            return Err(record_error(
                rebuilt.seq,
                "it does not follow the record before it (edited, removed or reordered)".into(),
            ));
        }
    }
    let last = records.last().unwrap_or(first);
    if last.seq + 1 != head.size || last.hash != head.hash {
        return Err(CustodyError::AuditHead(format!(
            "it covers {} records with last hash {}, but the export's records end at record {} with hash {}",
            head.size,
            hex::encode(head.hash),
            last.seq,
            hex::encode(last.hash)
        )));
    }
    Ok(records)
}

#[cfg(test)]
mod tests;
