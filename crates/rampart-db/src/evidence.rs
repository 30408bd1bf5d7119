//! Forensic evidence (issue 16, decision 0034): the server's requests for a bundle, the
//! progress of their chunked uploads, the verified bundles and their transparency-log anchors.
//! Schema: `migrations/0014_evidence.sql`.
//!
//! The bytes themselves live outside the database (the server's spool while uploading, the
//! content-addressed evidence store once verified); the database holds how many bytes are
//! received, which is what the quotas count, so a chunk is accepted or refused in one
//! transaction that reads the quotas and moves `received` on.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::SecurityEvent;
use crate::attestation::insert_event;
use crate::audit::AuditLine;
use crate::error::{DbError, DomainError};
use crate::incidents::{TimelineEntry, insert_timeline};
use crate::sql::check_text;

/// Longest stored refusal reason, in bytes.
pub const MAX_EVIDENCE_REASON: usize = 1024;
/// Most requests or bundles one listing returns.
pub const MAX_EVIDENCE_LIST: i64 = 1000;
/// Longest stored device certificate (DER), in bytes.
pub const MAX_EVIDENCE_CERTIFICATE: usize = 16 * 1024;

/// Where an evidence request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceState {
    /// Waiting for (or receiving) the device's upload.
    Open,
    /// Verified and stored.
    Stored,
    /// Failed a check; never stored as evidence.
    Refused,
}

impl EvidenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceState::Open => "open",
            EvidenceState::Stored => "stored",
            EvidenceState::Refused => "refused",
        }
    }

    fn from_stored(s: &str) -> Result<EvidenceState, DbError> {
        match s {
            "open" => Ok(EvidenceState::Open),
            "stored" => Ok(EvidenceState::Stored),
            "refused" => Ok(EvidenceState::Refused),
            other => Err(invalid(format!("stored evidence state {other:?}"))),
        }
    }
}

/// A request for one device's evidence bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceRequest {
    pub id: String,
    pub incident_id: String,
    pub device_id: String,
    /// The `collect_evidence` action it was made for (empty: none).
    pub action_id: String,
    /// Hex; the bundle must name it.
    pub nonce: String,
    pub max_bytes: u64,
    pub chunk_bytes: u64,
    pub state: EvidenceState,
    /// Bytes received so far (the bundle's length once stored).
    pub received: u64,
    pub requested_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
    /// The bundle's SHA-256 (hex) once stored.
    pub sha256: String,
    /// Why it was refused (empty otherwise).
    pub reason: String,
}

/// A verified, stored bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EvidenceBundle {
    pub request_id: String,
    pub incident_id: String,
    pub device_id: String,
    /// Its content address in the evidence store (hex).
    pub sha256: String,
    pub length: u64,
    /// The certificate the device presented on the upload's connection (DER).
    #[serde(with = "hex_bytes")]
    pub certificate: Vec<u8>,
    /// Whether a TPM quote in the bundle was checked against the device's attestation key.
    pub quote_checked: bool,
    pub stored_at: i64,
    /// The audit record that recorded it.
    pub audit_seq: u64,
    /// The transparency-log entry that anchors it (its text).
    pub log_entry: String,
    pub log_index: Option<u64>,
    /// The entry's inclusion proof with the checkpoint (C2SP tlog-proof text).
    pub log_proof: Option<String>,
}

mod hex_bytes {
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }
}

/// The quotas a chunk is checked against (bytes received or stored, bundles stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceQuota {
    pub device_bytes: u64,
    pub device_bundles: u64,
    pub incident_bytes: u64,
    pub incident_bundles: u64,
}

/// What one scope (a device or an incident) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct EvidenceUsage {
    /// Bytes of open uploads and stored bundles.
    pub bytes: u64,
    /// Bundles stored.
    pub bundles: u64,
}

fn invalid(message: String) -> DbError {
    DbError::Domain(DomainError::Invalid(message))
}

fn to_i64(what: &str, v: u64) -> Result<i64, DbError> {
    i64::try_from(v).map_err(|_| invalid(format!("{what} {v} is out of range")))
}

/// `SELECT <every request column> FROM evidence_requests <rest>` (a literal, for sqlx).
macro_rules! select_requests {
    ($rest:literal) => {
        concat!(
            "SELECT id, incident_id, device_id, action_id, nonce, max_bytes, chunk_bytes, state, received, requested_at, updated_at, finished_at, sha256, reason FROM evidence_requests ",
            $rest
        )
    };
}

/// `SELECT <every bundle column> FROM evidence_bundles <rest>` (a literal, for sqlx).
macro_rules! select_bundles {
    ($rest:literal) => {
        concat!(
            "SELECT request_id, incident_id, device_id, sha256, length, certificate, quote_checked, stored_at, audit_seq, log_entry, log_index, log_proof FROM evidence_bundles ",
            $rest
        )
    };
}

fn request_from_row(r: &AnyRow) -> Result<EvidenceRequest, DbError> {
    let state: String = r.try_get("state")?;
    Ok(EvidenceRequest {
        id: r.try_get("id")?,
        incident_id: r.try_get("incident_id")?,
        device_id: r.try_get("device_id")?,
        action_id: r.try_get("action_id")?,
        nonce: r.try_get("nonce")?,
        max_bytes: r.try_get::<i64, _>("max_bytes")?.max(0) as u64,
        chunk_bytes: r.try_get::<i64, _>("chunk_bytes")?.max(0) as u64,
        state: EvidenceState::from_stored(&state)?,
        received: r.try_get::<i64, _>("received")?.max(0) as u64,
        requested_at: r.try_get("requested_at")?,
        updated_at: r.try_get("updated_at")?,
        finished_at: r.try_get("finished_at")?,
        sha256: r.try_get("sha256")?,
        reason: r.try_get("reason")?,
    })
}

fn bundle_from_row(r: &AnyRow) -> Result<EvidenceBundle, DbError> {
    let certificate: String = r.try_get("certificate")?;
    Ok(EvidenceBundle {
        request_id: r.try_get("request_id")?,
        incident_id: r.try_get("incident_id")?,
        device_id: r.try_get("device_id")?,
        sha256: r.try_get("sha256")?,
        length: r.try_get::<i64, _>("length")?.max(0) as u64,
        certificate: hex::decode(certificate)
            .map_err(|e| invalid(format!("stored evidence certificate is not hex: {e}")))?,
        quote_checked: r.try_get::<i64, _>("quote_checked")? != 0,
        stored_at: r.try_get("stored_at")?,
        audit_seq: r.try_get::<i64, _>("audit_seq")?.max(0) as u64,
        log_entry: r.try_get("log_entry")?,
        log_index: r
            .try_get::<Option<i64>, _>("log_index")?
            .map(|v| v.max(0) as u64),
        log_proof: r.try_get("log_proof")?,
    })
}

/// Whose evidence a usage sums.
#[derive(Clone, Copy)]
enum Scope {
    Device,
    Incident,
}

macro_rules! usage_query {
    ($column:literal) => {
        concat!(
            // SUM of BIGINT is NUMERIC on PostgreSQL: cast back for the Any driver.
            "SELECT CAST(COALESCE(SUM(CASE WHEN state = 'refused' THEN 0 ELSE received END), 0) AS BIGINT) AS bytes,
                    CAST(COALESCE(SUM(CASE WHEN state = 'stored' THEN 1 ELSE 0 END), 0) AS BIGINT) AS bundles
             FROM evidence_requests WHERE ",
            $column,
            " = $1"
        )
    };
}

async fn usage_where(
    conn: &mut sqlx::AnyConnection,
    scope: Scope,
    value: &str,
) -> Result<EvidenceUsage, DbError> {
    let query = match scope {
        Scope::Device => usage_query!("device_id"),
        Scope::Incident => usage_query!("incident_id"),
    };
    let row = sqlx::query(query).bind(value).fetch_one(conn).await?;
    Ok(EvidenceUsage {
        bytes: row.try_get::<i64, _>("bytes")?.max(0) as u64,
        bundles: row.try_get::<i64, _>("bundles")?.max(0) as u64,
    })
}

/// Why a chunk is refused by the quotas, or `None` if it fits.
fn over_quota(
    device: EvidenceUsage,
    incident: EvidenceUsage,
    quota: &EvidenceQuota,
    more: u64,
) -> Option<String> {
    if device.bytes.saturating_add(more) > quota.device_bytes {
        return Some(format!(
            "the device's evidence quota of {} bytes is reached ({} held); an operator can delete its old evidence or raise --evidence-device-bytes",
            quota.device_bytes, device.bytes
        ));
    }
    if incident.bytes.saturating_add(more) > quota.incident_bytes {
        return Some(format!(
            "the incident's evidence quota of {} bytes is reached ({} held); raise --evidence-incident-bytes",
            quota.incident_bytes, incident.bytes
        ));
    }
    None
}

impl crate::Db {
    /// Opens an evidence request, unless the device or incident already holds its quota of
    /// bundles (then a [`DomainError::Quota`] says which). A device has at most one open
    /// request per incident: an existing one is returned instead (`false`: not new).
    pub async fn open_evidence_request(
        &self,
        request: &EvidenceRequest,
        quota: &EvidenceQuota,
    ) -> Result<(EvidenceRequest, bool), DbError> {
        check_text("evidence request id", &request.id)?;
        check_text("incident id", &request.incident_id)?;
        check_text("device id", &request.device_id)?;
        check_text("action id", &request.action_id)?;
        check_text("nonce", &request.nonce)?;
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(select_requests!(
            "WHERE device_id = $1 AND incident_id = $2 AND state = 'open'"
        ))
        .bind(&request.device_id)
        .bind(&request.incident_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            return Ok((request_from_row(&row)?, false));
        }
        let device = usage_where(&mut tx, Scope::Device, &request.device_id).await?;
        let incident = usage_where(&mut tx, Scope::Incident, &request.incident_id).await?;
        if device.bundles >= quota.device_bundles {
            return Err(DomainError::Quota(format!(
                "device {:?} already holds {} evidence bundles, its quota; raise --evidence-device-bundles",
                request.device_id, device.bundles
            ))
            .into());
        }
        if incident.bundles >= quota.incident_bundles {
            return Err(DomainError::Quota(format!(
                "incident {:?} already holds {} evidence bundles, its quota; raise --evidence-incident-bundles",
                request.incident_id, incident.bundles
            ))
            .into());
        }
        if let Some(reason) = over_quota(device, incident, quota, 0) {
            return Err(DomainError::Quota(reason).into());
        }
        let r = sqlx::query(
            "INSERT INTO evidence_requests (id, incident_id, device_id, action_id, nonce, max_bytes, chunk_bytes, state, received, requested_at, updated_at)
             SELECT $1, id, $3, $4, $5, $6, $7, 'open', 0, $8, $8 FROM incidents WHERE id = $2",
        )
        .bind(&request.id)
        .bind(&request.incident_id)
        .bind(&request.device_id)
        .bind(&request.action_id)
        .bind(&request.nonce)
        .bind(to_i64("max_bytes", request.max_bytes)?)
        .bind(to_i64("chunk_bytes", request.chunk_bytes)?)
        .bind(request.requested_at)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(invalid(format!(
                "no incident {:?}; list incidents with `rampart incident list`",
                request.incident_id
            )));
        }
        tx.commit().await?;
        let mut stored = request.clone();
        stored.state = EvidenceState::Open;
        stored.received = 0;
        stored.updated_at = request.requested_at;
        Ok((stored, true))
    }

    /// One evidence request.
    pub async fn evidence_request(&self, id: &str) -> Result<Option<EvidenceRequest>, DbError> {
        sqlx::query(select_requests!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(request_from_row)
            .transpose()
    }

    /// The device's oldest open request, for its poll answer.
    pub async fn open_evidence_request_of(
        &self,
        device_id: &str,
    ) -> Result<Option<EvidenceRequest>, DbError> {
        sqlx::query(select_requests!(
            "WHERE device_id = $1 AND state = 'open' ORDER BY requested_at, id LIMIT 1"
        ))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(request_from_row)
        .transpose()
    }

    /// An incident's requests, oldest first.
    pub async fn evidence_requests_of_incident(
        &self,
        incident_id: &str,
        limit: i64,
    ) -> Result<Vec<EvidenceRequest>, DbError> {
        let rows = sqlx::query(select_requests!(
            "WHERE incident_id = $1 ORDER BY requested_at, id LIMIT $2"
        ))
        .bind(incident_id)
        .bind(limit.clamp(1, MAX_EVIDENCE_LIST))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(request_from_row).collect()
    }

    /// What a device and an incident hold.
    pub async fn evidence_usage(
        &self,
        device_id: &str,
        incident_id: &str,
    ) -> Result<(EvidenceUsage, EvidenceUsage), DbError> {
        let mut conn = self.pool.acquire().await?;
        let device = usage_where(&mut conn, Scope::Device, device_id).await?;
        let incident = usage_where(&mut conn, Scope::Incident, incident_id).await?;
        Ok((device, incident))
    }

    /// Accounts a chunk of `length` bytes written at `offset` of an open request: `received`
    /// moves from `offset` to `offset + length` if it still is `offset`, the request is open
    /// and the quotas allow it. Returns the request as it now stands. A request not open, or
    /// an offset that is not `received`, is a [`DomainError::Conflict`]; a quota a
    /// [`DomainError::Quota`]; over the request's `max_bytes` a [`DomainError::Invalid`].
    pub async fn account_evidence_chunk(
        &self,
        id: &str,
        offset: u64,
        length: u64,
        quota: &EvidenceQuota,
        now: i64,
    ) -> Result<EvidenceRequest, DbError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(select_requests!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| invalid(format!("no evidence request {id:?}")))?;
        let mut request = request_from_row(&row)?;
        if request.state != EvidenceState::Open {
            return Err(DomainError::Conflict(format!(
                "evidence request {id} is {}: a request is used once",
                request.state.as_str()
            ))
            .into());
        }
        if request.received != offset {
            return Err(DomainError::Conflict(format!(
                "the upload continues at offset {}, not {offset}",
                request.received
            ))
            .into());
        }
        if offset.saturating_add(length) > request.max_bytes {
            return Err(invalid(format!(
                "the bundle would be over this request's limit of {} bytes",
                request.max_bytes
            )));
        }
        let device = usage_where(&mut tx, Scope::Device, &request.device_id).await?;
        let incident = usage_where(&mut tx, Scope::Incident, &request.incident_id).await?;
        if let Some(reason) = over_quota(device, incident, quota, length) {
            return Err(DomainError::Quota(reason).into());
        }
        let received = offset + length;
        sqlx::query("UPDATE evidence_requests SET received = $2, updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(to_i64("received", received)?)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        request.received = received;
        request.updated_at = now;
        Ok(request)
    }

    /// Marks an open request refused with `reason`, with its timeline entry, audit record and
    /// security event, in one transaction. A request no longer open is a
    /// [`DomainError::Conflict`].
    pub async fn refuse_evidence(
        &self,
        id: &str,
        reason: &str,
        now: i64,
        entry: &TimelineEntry,
        audit: &AuditLine,
        event: Option<&SecurityEvent>,
    ) -> Result<(), DbError> {
        let reason = bounded_reason(reason);
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE evidence_requests SET state = 'refused', reason = $2, updated_at = $3, finished_at = $3
             WHERE id = $1 AND state = 'open'",
        )
        .bind(id)
        .bind(&reason)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(
                DomainError::Conflict(format!("evidence request {id} is no longer open")).into(),
            );
        }
        insert_timeline(&mut tx, entry, audit).await?;
        if let Some(event) = event {
            insert_event(&mut tx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The devices with an open request.
    pub async fn devices_with_open_evidence(
        &self,
    ) -> Result<std::collections::HashSet<String>, DbError> {
        let rows =
            sqlx::query("SELECT DISTINCT device_id FROM evidence_requests WHERE state = 'open'")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>("device_id")?))
            .collect()
    }

    /// Records a verified bundle: the request becomes `stored`, the bundle row, its timeline
    /// entry and audit record are written in one transaction. The bundle's `audit_seq` must be
    /// the audit record's.
    pub async fn store_evidence(
        &self,
        bundle: &EvidenceBundle,
        entry: &TimelineEntry,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        if bundle.audit_seq != audit.seq {
            return Err(invalid(format!(
                "the bundle names audit record {} but its audit record is {}",
                bundle.audit_seq, audit.seq
            )));
        }
        if bundle.certificate.is_empty() || bundle.certificate.len() > MAX_EVIDENCE_CERTIFICATE {
            return Err(invalid(format!(
                "the device certificate must be 1 to {MAX_EVIDENCE_CERTIFICATE} bytes"
            )));
        }
        check_text("evidence sha256", &bundle.sha256)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE evidence_requests SET state = 'stored', sha256 = $2, received = $3, updated_at = $4, finished_at = $4
             WHERE id = $1 AND state = 'open' AND device_id = $5 AND incident_id = $6",
        )
        .bind(&bundle.request_id)
        .bind(&bundle.sha256)
        .bind(to_i64("length", bundle.length)?)
        .bind(bundle.stored_at)
        .bind(&bundle.device_id)
        .bind(&bundle.incident_id)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(DomainError::Conflict(format!(
                "evidence request {} is no longer open",
                bundle.request_id
            ))
            .into());
        }
        sqlx::query(
            "INSERT INTO evidence_bundles (request_id, incident_id, device_id, sha256, length, certificate, quote_checked, stored_at, audit_seq, log_entry)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&bundle.request_id)
        .bind(&bundle.incident_id)
        .bind(&bundle.device_id)
        .bind(&bundle.sha256)
        .bind(to_i64("length", bundle.length)?)
        .bind(hex::encode(&bundle.certificate))
        .bind(i64::from(bundle.quote_checked))
        .bind(bundle.stored_at)
        .bind(to_i64("audit seq", bundle.audit_seq)?)
        .bind(&bundle.log_entry)
        .execute(&mut *tx)
        .await?;
        insert_timeline(&mut tx, entry, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The bundle stored for a request.
    pub async fn evidence_bundle(
        &self,
        request_id: &str,
    ) -> Result<Option<EvidenceBundle>, DbError> {
        sqlx::query(select_bundles!("WHERE request_id = $1"))
            .bind(request_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(bundle_from_row)
            .transpose()
    }

    /// An incident's bundles, oldest first.
    pub async fn evidence_bundles_of_incident(
        &self,
        incident_id: &str,
        limit: i64,
    ) -> Result<Vec<EvidenceBundle>, DbError> {
        let rows = sqlx::query(select_bundles!(
            "WHERE incident_id = $1 ORDER BY stored_at, request_id LIMIT $2"
        ))
        .bind(incident_id)
        .bind(limit.clamp(1, MAX_EVIDENCE_LIST))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bundle_from_row).collect()
    }

    /// Bundles whose transparency-log anchor is not complete (no index, or no proof yet).
    pub async fn unanchored_evidence(&self, limit: i64) -> Result<Vec<EvidenceBundle>, DbError> {
        let rows = sqlx::query(select_bundles!(
            "WHERE log_proof IS NULL ORDER BY stored_at, request_id LIMIT $1"
        ))
        .bind(limit.clamp(1, MAX_EVIDENCE_LIST))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(bundle_from_row).collect()
    }

    /// Records a bundle's transparency-log index (once appended) and proof (once a witnessed
    /// checkpoint covers it).
    pub async fn set_evidence_anchor(
        &self,
        request_id: &str,
        log_index: u64,
        log_proof: Option<&str>,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE evidence_bundles SET log_index = $2, log_proof = COALESCE($3, log_proof) WHERE request_id = $1",
        )
        .bind(request_id)
        .bind(to_i64("log index", log_index)?)
        .bind(log_proof)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Timeline entries of an incident, in audit order, at most `limit`.
    pub async fn incident_timeline_entries(
        &self,
        incident_id: &str,
        limit: i64,
    ) -> Result<Vec<TimelineEntry>, DbError> {
        let rows = sqlx::query(
            "SELECT audit_seq, incident_id, at, kind, actor, device_id, detail FROM incident_timeline
             WHERE incident_id = $1 ORDER BY audit_seq LIMIT $2",
        )
        .bind(incident_id)
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(crate::incidents::timeline_from_row)
            .collect()
    }
}

/// A reason cut to [`MAX_EVIDENCE_REASON`] bytes at a character boundary, control characters
/// replaced (it comes partly from what a device sent).
fn bounded_reason(reason: &str) -> String {
    crate::sql::bounded_text(reason, MAX_EVIDENCE_REASON)
}
