//! Remote attestation's storage (migration 0010, docs/decisions/0027): each device's attestation
//! key, pending enrolment challenges, single-use quote nonces, each device's last attestation,
//! the endorsement keys operators approved, and security events for incident response.
//!
//! Whether a device is attested is never stored: [`AttestationState::attested`] computes it when
//! read, from the last outcome and when it was verified, so nothing that stops running (a
//! verifier, an engine) can leave a device attested.

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::Db;
use crate::audit::{AuditLine, insert_audit};
use crate::error::{DbError, DomainError};
use crate::sql::{check_text, json_text};

/// Longest stored TPM structure (TPMT_PUBLIC of an RSA-2048 key is about 300 bytes).
pub const MAX_TPM_STRUCTURE: usize = 2048;
/// Longest stored reason of a failed attestation, in bytes.
pub const MAX_ATTESTATION_REASON: usize = 1024;
/// Most security events one read returns.
pub const MAX_SECURITY_EVENTS_READ: i64 = 10_000;

/// Why the server trusted an endorsement key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EkBasis {
    /// Its certificate chain verified against the operator's EK roots.
    Certificate,
    /// An operator approved its public key.
    Approved,
}

impl EkBasis {
    pub fn as_str(self) -> &'static str {
        match self {
            EkBasis::Certificate => "certificate",
            EkBasis::Approved => "approved",
        }
    }

    fn from_stored(s: &str) -> Result<EkBasis, DbError> {
        match s {
            "certificate" => Ok(EkBasis::Certificate),
            "approved" => Ok(EkBasis::Approved),
            other => Err(invalid(format!("stored EK basis {other:?}"))),
        }
    }
}

/// A device's attestation key, bound to its TPM by enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationKey {
    pub device_id: String,
    /// The AK's TPMT_PUBLIC.
    pub ak_public: Vec<u8>,
    /// The AK's TPM name (nameAlg, then the digest of `ak_public`).
    pub ak_name: Vec<u8>,
    /// SHA-256 of the EK's TPMT_PUBLIC, hex.
    pub ek_digest: String,
    pub ek_basis: EkBasis,
    pub enrolled_at: i64,
}

/// An enrolment waiting for the device's answer: the AK it is for, and the SHA-256 of the secret
/// sealed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEnrolment {
    pub challenge_id: String,
    pub key: AttestationKey,
    pub secret_digest: [u8; 32],
    pub expires_at: i64,
}

/// A nonce the server asks a quote to carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedNonce {
    /// The nonce, hex.
    pub nonce: String,
    pub expires_at: i64,
}

/// What a quote's nonce turned out to be when it was claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceClaim {
    /// Issued to this device, unused and unexpired: now used.
    Claimed,
    /// Already named by an earlier quote (a replay).
    AlreadyUsed,
    /// Expired before the quote arrived.
    Expired,
    /// Never issued to this device.
    Unknown,
}

/// The TPM's counters of a verified quote (TPMS_CLOCK_INFO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct QuoteCounters {
    pub reset_count: u32,
    pub restart_count: u32,
    pub clock: u64,
}

/// The outcome of a device's last quote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckOutcome {
    Passed,
    Failed,
}

/// A device's last attestation (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationState {
    pub device_id: String,
    /// The outcome of the last quote.
    pub outcome: CheckOutcome,
    /// Why it failed ('' when it passed).
    pub reason: String,
    /// When the last quote was checked.
    pub checked_at: i64,
    /// When the last passing quote was verified.
    pub verified_at: Option<i64>,
    /// The release (target path) the last passing quote proved.
    pub release: String,
    /// The counters of the last passing quote.
    pub counters: Option<QuoteCounters>,
    /// When the staleness engine audited the last pass going stale.
    pub stale_noted_at: Option<i64>,
    /// The boot the device reported in its facts when its last quote was checked ('' when it
    /// did not say).
    pub quoted_boot_id: String,
}

impl AttestationState {
    /// Attested: the last quote passed, and it was verified less than `freshness_secs` ago.
    /// Computed at every read, never stored (CVE-2022-3500: a verifier that dies must not leave
    /// devices attested).
    pub fn attested(&self, now: i64, freshness_secs: i64) -> bool {
        self.outcome == CheckOutcome::Passed
            && self
                .verified_at
                .is_some_and(|at| at.saturating_add(freshness_secs) > now)
    }
}

/// A quote's outcome to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    /// Verified: the release it proved and the TPM's counters.
    Passed {
        release: String,
        counters: QuoteCounters,
    },
    /// Refused, with a reason a person can act on.
    Failed { reason: String },
}

/// An endorsement key an operator approved (a TPM without an EK certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApprovedEk {
    /// SHA-256 of `ek_public`, hex.
    pub ek_digest: String,
    /// The EK's TPMT_PUBLIC, hex.
    pub ek_public: String,
    pub approved_at: i64,
    /// Who approved it (the management token's name).
    pub approved_by: String,
    pub note: String,
}

/// A security event for incident response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SecurityEvent {
    pub id: String,
    /// What happened, e.g. `attestation.failed`.
    pub kind: String,
    pub device_id: String,
    pub detail: serde_json::Value,
    pub created: i64,
}

fn invalid(message: String) -> DbError {
    DbError::Domain(DomainError::Invalid(message))
}

fn structure_hex(what: &str, bytes: &[u8]) -> Result<String, DbError> {
    if bytes.is_empty() || bytes.len() > MAX_TPM_STRUCTURE {
        return Err(invalid(format!(
            "{what} must be 1 to {MAX_TPM_STRUCTURE} bytes, not {}",
            bytes.len()
        )));
    }
    Ok(hex::encode(bytes))
}

fn from_hex(what: &str, text: &str) -> Result<Vec<u8>, DbError> {
    hex::decode(text).map_err(|e| invalid(format!("stored {what} is not hex: {e}")))
}

fn counter(value: Option<i64>) -> Option<u64> {
    value.map(|v| v.max(0) as u64)
}

fn key_from_row(row: &AnyRow) -> Result<AttestationKey, DbError> {
    Ok(AttestationKey {
        device_id: row.try_get("device_id")?,
        ak_public: from_hex("AK public", &row.try_get::<String, _>("ak_public")?)?,
        ak_name: from_hex("AK name", &row.try_get::<String, _>("ak_name")?)?,
        ek_digest: row.try_get("ek_digest")?,
        ek_basis: EkBasis::from_stored(&row.try_get::<String, _>("ek_basis")?)?,
        enrolled_at: row.try_get("enrolled_at")?,
    })
}

const STATE_COLUMNS: &str = "device_id, outcome, reason, checked_at, verified_at, release, reset_count, restart_count, clock, stale_noted_at, quoted_boot_id";

fn state_from_row(row: &AnyRow) -> Result<AttestationState, DbError> {
    let outcome = match row.try_get::<String, _>("outcome")?.as_str() {
        "passed" => CheckOutcome::Passed,
        "failed" => CheckOutcome::Failed,
        other => return Err(invalid(format!("stored attestation outcome {other:?}"))),
    };
    let reset = counter(row.try_get("reset_count")?);
    let restart = counter(row.try_get("restart_count")?);
    let clock = counter(row.try_get("clock")?);
    let counters = match (reset, restart, clock) {
        (Some(reset), Some(restart), Some(clock)) => Some(QuoteCounters {
            reset_count: u32::try_from(reset).unwrap_or(u32::MAX),
            restart_count: u32::try_from(restart).unwrap_or(u32::MAX),
            clock,
        }),
        _ => None,
    };
    Ok(AttestationState {
        device_id: row.try_get("device_id")?,
        outcome,
        reason: row.try_get("reason")?,
        checked_at: row.try_get("checked_at")?,
        verified_at: row.try_get("verified_at")?,
        release: row.try_get("release")?,
        counters,
        stale_noted_at: row.try_get("stale_noted_at")?,
        quoted_boot_id: row.try_get("quoted_boot_id")?,
    })
}

fn event_from_row(row: &AnyRow) -> Result<SecurityEvent, DbError> {
    let detail: String = row.try_get("detail")?;
    Ok(SecurityEvent {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        device_id: row.try_get("device_id")?,
        detail: serde_json::from_str(&detail)
            .map_err(|e| invalid(format!("stored security event detail: {e}")))?,
        created: row.try_get("created")?,
    })
}

pub(crate) async fn insert_event(
    tx: &mut Transaction<'_, Any>,
    event: &SecurityEvent,
) -> Result<(), DbError> {
    check_text("security event id", &event.id)?;
    check_text("security event kind", &event.kind)?;
    sqlx::query(
        "INSERT INTO security_events (id, kind, device_id, detail, created) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(&event.id)
    .bind(&event.kind)
    .bind(&event.device_id)
    .bind(json_text("security event detail", &event.detail)?)
    .bind(event.created)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Writes the audit record and the security event of a change, when given, in its transaction.
async fn record_alongside(
    tx: &mut Transaction<'_, Any>,
    audit: Option<&AuditLine>,
    event: Option<&SecurityEvent>,
) -> Result<(), DbError> {
    if let Some(audit) = audit {
        insert_audit(tx, audit).await?;
    }
    if let Some(event) = event {
        insert_event(tx, event).await?;
    }
    Ok(())
}

fn u64_param(what: &str, value: u64) -> Result<i64, DbError> {
    i64::try_from(value).map_err(|_| invalid(format!("{what} {value} is out of range")))
}

impl Db {
    /// Stores an enrolment challenge, replacing any earlier one of the same device (a device
    /// has at most one pending enrolment), with its audit record when given.
    pub async fn insert_enrolment_challenge(
        &self,
        pending: &PendingEnrolment,
    ) -> Result<(), DbError> {
        check_text("challenge id", &pending.challenge_id)?;
        let key = &pending.key;
        let ak_public = structure_hex("AK public area", &key.ak_public)?;
        let ak_name = structure_hex("AK name", &key.ak_name)?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM attestation_challenges WHERE device_id = $1")
            .bind(&key.device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO attestation_challenges (challenge_id, device_id, ak_public, ak_name, ek_digest, ek_basis, secret_digest, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&pending.challenge_id)
        .bind(&key.device_id)
        .bind(ak_public)
        .bind(ak_name)
        .bind(&key.ek_digest)
        .bind(key.ek_basis.as_str())
        .bind(hex::encode(pending.secret_digest))
        .bind(pending.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Takes (deletes and returns) the device's pending enrolment `challenge_id` if it has not
    /// expired: a challenge is answered once, right or wrong. `None` for an unknown, expired or
    /// another device's challenge.
    pub async fn take_enrolment_challenge(
        &self,
        device_id: &str,
        challenge_id: &str,
        now: i64,
    ) -> Result<Option<PendingEnrolment>, DbError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT challenge_id, device_id, ak_public, ak_name, ek_digest, ek_basis, secret_digest, expires_at, CAST(0 AS BIGINT) AS enrolled_at
             FROM attestation_challenges WHERE challenge_id = $1 AND device_id = $2",
        )
        .bind(challenge_id)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM attestation_challenges WHERE challenge_id = $1")
            .bind(challenge_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= now {
            return Ok(None);
        }
        let digest = from_hex("secret digest", &row.try_get::<String, _>("secret_digest")?)?;
        Ok(Some(PendingEnrolment {
            challenge_id: row.try_get("challenge_id")?,
            key: key_from_row(&row)?,
            secret_digest: digest
                .try_into()
                .map_err(|_| invalid("stored secret digest is not 32 bytes".into()))?,
            expires_at,
        }))
    }

    /// Makes `key` the device's attestation key, with its audit record, in one transaction. A
    /// new key starts with no attestation: the device's earlier state, counters and pending
    /// nonces are dropped (they belonged to the old key).
    pub async fn enrol_attestation_key(
        &self,
        key: &AttestationKey,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let ak_public = structure_hex("AK public area", &key.ak_public)?;
        let ak_name = structure_hex("AK name", &key.ak_name)?;
        let mut tx = self.begin_write().await?;
        for table in ["attestation_states", "attestation_nonces"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE device_id = $1"
            )))
            .bind(&key.device_id)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "INSERT INTO attestation_keys (device_id, ak_public, ak_name, ek_digest, ek_basis, enrolled_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (device_id) DO UPDATE SET ak_public = excluded.ak_public, ak_name = excluded.ak_name,
                 ek_digest = excluded.ek_digest, ek_basis = excluded.ek_basis, enrolled_at = excluded.enrolled_at",
        )
        .bind(&key.device_id)
        .bind(ak_public)
        .bind(ak_name)
        .bind(&key.ek_digest)
        .bind(key.ek_basis.as_str())
        .bind(key.enrolled_at)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The device's attestation key, if it enrolled one.
    pub async fn attestation_key(
        &self,
        device_id: &str,
    ) -> Result<Option<AttestationKey>, DbError> {
        sqlx::query(
            "SELECT device_id, ak_public, ak_name, ek_digest, ek_basis, enrolled_at FROM attestation_keys WHERE device_id = $1",
        )
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    /// The attestation key enrolled with the EK whose TPMT_PUBLIC has SHA-256 `ek_digest`, if
    /// any device holds one.
    pub async fn attestation_key_by_ek(
        &self,
        ek_digest: &str,
    ) -> Result<Option<AttestationKey>, DbError> {
        sqlx::query(
            "SELECT device_id, ak_public, ak_name, ek_digest, ek_basis, enrolled_at FROM attestation_keys WHERE ek_digest = $1 LIMIT 1",
        )
        .bind(ek_digest)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    /// The device's pending nonce: the one issued earlier if it is unused and valid until at
    /// least `now + min_left` (so a poll answer, and its ETag, stays the same between polls),
    /// else a new one (`make_nonce`, hex) valid for `lifetime` seconds. Used and expired nonces
    /// of the device are dropped here, so the table stays bounded.
    pub async fn pending_nonce(
        &self,
        device_id: &str,
        now: i64,
        lifetime: i64,
        min_left: i64,
        make_nonce: impl FnOnce() -> String,
    ) -> Result<IssuedNonce, DbError> {
        if let Some(row) = sqlx::query(
            "SELECT nonce, expires_at FROM attestation_nonces
             WHERE device_id = $1 AND used_at IS NULL AND expires_at > $2 ORDER BY expires_at DESC LIMIT 1",
        )
        .bind(device_id)
        .bind(now.saturating_add(min_left))
        .fetch_optional(&self.pool)
        .await?
        {
            return Ok(IssuedNonce {
                nonce: row.try_get("nonce")?,
                expires_at: row.try_get("expires_at")?,
            });
        }
        let issued = IssuedNonce {
            nonce: make_nonce(),
            expires_at: now.saturating_add(lifetime),
        };
        check_text("nonce", &issued.nonce)?;
        let mut tx = self.begin_write().await?;
        // Used nonces are kept until they expire, so a replay is told apart from a made-up one.
        sqlx::query("DELETE FROM attestation_nonces WHERE device_id = $1 AND expires_at <= $2")
            .bind(device_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO attestation_nonces (nonce, device_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&issued.nonce)
        .bind(device_id)
        .bind(now)
        .bind(issued.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(issued)
    }

    /// Claims `nonce` for a quote of `device_id`: marks it used when it was issued to this device
    /// and is unused and unexpired. A nonce is used up by the first quote naming it, before that
    /// quote is verified, so no nonce is verified twice.
    pub async fn claim_nonce(
        &self,
        device_id: &str,
        nonce: &str,
        now: i64,
    ) -> Result<NonceClaim, DbError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT expires_at, used_at FROM attestation_nonces WHERE nonce = $1 AND device_id = $2",
        )
        .bind(nonce)
        .bind(device_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(NonceClaim::Unknown);
        };
        if row.try_get::<Option<i64>, _>("used_at")?.is_some() {
            return Ok(NonceClaim::AlreadyUsed);
        }
        if row.try_get::<i64, _>("expires_at")? <= now {
            return Ok(NonceClaim::Expired);
        }
        let claimed = sqlx::query(
            "UPDATE attestation_nonces SET used_at = $1 WHERE nonce = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(nonce)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        tx.commit().await?;
        Ok(if claimed {
            NonceClaim::Claimed
        } else {
            NonceClaim::AlreadyUsed
        })
    }

    /// Records a quote's outcome, with its audit record and security event when given, in one
    /// transaction. A pass sets the verified time, release and counters; a failure keeps those
    /// of the last pass (the next quote's counters are still checked against them) but makes
    /// the device not attested.
    pub async fn record_attestation(
        &self,
        device_id: &str,
        now: i64,
        result: &CheckResult,
        audit: Option<&AuditLine>,
        event: Option<&SecurityEvent>,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        match result {
            CheckResult::Passed { release, counters } => {
                check_text("release", release)?;
                sqlx::query(
                    "INSERT INTO attestation_states (device_id, outcome, reason, checked_at, verified_at, release, reset_count, restart_count, clock, stale_noted_at, quoted_boot_id)
                     VALUES ($1, 'passed', '', $2, $2, $3, $4, $5, $6, NULL, (SELECT d.boot_id FROM devices d WHERE d.id = $1))
                     ON CONFLICT (device_id) DO UPDATE SET outcome = 'passed', reason = '', checked_at = excluded.checked_at, quoted_boot_id = excluded.quoted_boot_id,
                         verified_at = excluded.verified_at, release = excluded.release, reset_count = excluded.reset_count,
                         restart_count = excluded.restart_count, clock = excluded.clock, stale_noted_at = NULL",
                )
                .bind(device_id)
                .bind(now)
                .bind(release)
                .bind(i64::from(counters.reset_count))
                .bind(i64::from(counters.restart_count))
                .bind(u64_param("TPM clock", counters.clock)?)
                .execute(&mut *tx)
                .await?;
            }
            CheckResult::Failed { reason } => {
                let reason: String = reason
                    .chars()
                    .map(|c| if c.is_control() { ' ' } else { c })
                    .collect::<String>();
                let mut cut = reason.len().min(MAX_ATTESTATION_REASON);
                while !reason.is_char_boundary(cut) {
                    cut -= 1;
                }
                sqlx::query(
                    "INSERT INTO attestation_states (device_id, outcome, reason, checked_at, release, quoted_boot_id)
                     VALUES ($1, 'failed', $2, $3, '', (SELECT d.boot_id FROM devices d WHERE d.id = $1))
                     ON CONFLICT (device_id) DO UPDATE SET outcome = 'failed', reason = excluded.reason, quoted_boot_id = excluded.quoted_boot_id,
                         checked_at = excluded.checked_at, stale_noted_at = NULL",
                )
                .bind(device_id)
                .bind(&reason[..cut])
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
        }
        record_alongside(&mut tx, audit, event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The device's last attestation, if it ever sent a quote.
    pub async fn attestation_state(
        &self,
        device_id: &str,
    ) -> Result<Option<AttestationState>, DbError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STATE_COLUMNS} FROM attestation_states WHERE device_id = $1"
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(state_from_row)
        .transpose()
    }

    /// Of `device_ids`, those attested at `now` (a pass verified less than `freshness_secs`
    /// ago), computed by the same rule as [`AttestationState::attested`].
    pub async fn attested_among(
        &self,
        device_ids: &[String],
        now: i64,
        freshness_secs: i64,
    ) -> Result<std::collections::HashSet<String>, DbError> {
        let mut attested = std::collections::HashSet::new();
        for chunk in device_ids.chunks(500) {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT device_id FROM attestation_states WHERE outcome = 'passed' AND verified_at > $1 AND device_id IN ({})",
                crate::sql::placeholders(2, chunk.len())
            )))
            .bind(now.saturating_sub(freshness_secs));
            let rows = chunk
                .iter()
                .fold(rows, |q, id| q.bind(id))
                .fetch_all(&self.pool)
                .await?;
            for row in rows {
                attested.insert(row.try_get("device_id")?);
            }
        }
        Ok(attested)
    }

    /// Devices whose last quote passed but went stale at `now` (verified `freshness_secs` or
    /// more ago) and whose staleness is not yet audited, at most `limit`.
    pub async fn newly_stale_attestations(
        &self,
        now: i64,
        freshness_secs: i64,
        limit: i64,
    ) -> Result<Vec<AttestationState>, DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STATE_COLUMNS} FROM attestation_states
             WHERE outcome = 'passed' AND verified_at <= $1 AND stale_noted_at IS NULL
             ORDER BY verified_at LIMIT $2"
        )))
        .bind(now.saturating_sub(freshness_secs))
        .bind(limit.clamp(1, 100_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(state_from_row).collect()
    }

    /// Notes that the device's pass verified at `verified_at` went stale, with its audit record
    /// and security event, in one transaction; false (nothing written) if a newer quote came in
    /// meanwhile or it was already noted.
    pub async fn note_stale_attestation(
        &self,
        device_id: &str,
        verified_at: i64,
        now: i64,
        audit: &AuditLine,
        event: &SecurityEvent,
    ) -> Result<bool, DbError> {
        let mut tx = self.begin_write().await?;
        let noted = sqlx::query(
            "UPDATE attestation_states SET stale_noted_at = $1
             WHERE device_id = $2 AND outcome = 'passed' AND verified_at = $3 AND stale_noted_at IS NULL",
        )
        .bind(now)
        .bind(device_id)
        .bind(verified_at)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !noted {
            return Ok(false);
        }
        record_alongside(&mut tx, Some(audit), Some(event)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// How many devices of the inventory are attested, failed and stale at `now` (a device that
    /// never attested counts as stale).
    pub async fn attestation_counts(
        &self,
        now: i64,
        freshness_secs: i64,
    ) -> Result<(i64, i64, i64), DbError> {
        let row = sqlx::query(
            "SELECT
                 (SELECT COUNT(*) FROM devices) AS total,
                 (SELECT COUNT(*) FROM attestation_states WHERE outcome = 'passed' AND verified_at > $1) AS attested,
                 (SELECT COUNT(*) FROM attestation_states WHERE outcome = 'failed') AS failed",
        )
        .bind(now.saturating_sub(freshness_secs))
        .fetch_one(&self.pool)
        .await?;
        let total: i64 = row.try_get("total")?;
        let attested: i64 = row.try_get("attested")?;
        let failed: i64 = row.try_get("failed")?;
        Ok((attested, failed, (total - attested - failed).max(0)))
    }

    /// Approves an endorsement key (its TPMT_PUBLIC) with its audit record, in one transaction;
    /// approving one again keeps the first approval and returns false.
    pub async fn approve_ek(&self, ek: &ApprovedEk, audit: &AuditLine) -> Result<bool, DbError> {
        check_text("approver", &ek.approved_by)?;
        check_text("note", &ek.note)?;
        if ek.ek_digest.len() != 64 || hex::decode(&ek.ek_digest).is_err() {
            return Err(invalid("EK digest must be 64 hex digits (SHA-256)".into()));
        }
        if ek.ek_public.is_empty() || ek.ek_public.len() > 2 * MAX_TPM_STRUCTURE {
            return Err(invalid(format!(
                "EK public area must be 1 to {MAX_TPM_STRUCTURE} bytes"
            )));
        }
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO approved_eks (ek_digest, ek_public, approved_at, approved_by, note) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (ek_digest) DO NOTHING",
        )
        .bind(&ek.ek_digest)
        .bind(&ek.ek_public)
        .bind(ek.approved_at)
        .bind(&ek.approved_by)
        .bind(&ek.note)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            insert_audit(&mut tx, audit).await?;
            tx.commit().await?;
        }
        Ok(inserted)
    }

    /// The approval of the EK whose TPMT_PUBLIC has SHA-256 `ek_digest` (hex), if any.
    pub async fn approved_ek(&self, ek_digest: &str) -> Result<Option<ApprovedEk>, DbError> {
        sqlx::query(
            "SELECT ek_digest, ek_public, approved_at, approved_by, note FROM approved_eks WHERE ek_digest = $1",
        )
        .bind(ek_digest)
        .fetch_optional(&self.pool)
        .await?
        .map(|row| {
            Ok(ApprovedEk {
                ek_digest: row.try_get("ek_digest")?,
                ek_public: row.try_get("ek_public")?,
                approved_at: row.try_get("approved_at")?,
                approved_by: row.try_get("approved_by")?,
                note: row.try_get("note")?,
            })
        })
        .transpose()
    }

    /// Stores a security event with its audit record, in one transaction.
    pub async fn insert_security_event(
        &self,
        event: &SecurityEvent,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        record_alongside(&mut tx, Some(audit), Some(event)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Security events created at or after `since`, oldest first, at most `limit`; only the
    /// device's when `device_id` is given.
    pub async fn security_events(
        &self,
        since: i64,
        device_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<SecurityEvent>, DbError> {
        let limit = limit.clamp(1, MAX_SECURITY_EVENTS_READ);
        let rows = match device_id {
            Some(device) => {
                sqlx::query(
                    "SELECT id, kind, device_id, detail, created FROM security_events
                     WHERE created >= $1 AND device_id = $2 ORDER BY created, id LIMIT $3",
                )
                .bind(since)
                .bind(device)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, kind, device_id, detail, created FROM security_events
                     WHERE created >= $1 ORDER BY created, id LIMIT $2",
                )
                .bind(since)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(event_from_row).collect()
    }
}
