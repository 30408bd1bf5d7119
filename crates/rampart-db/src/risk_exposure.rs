//! Each advisory's exposure window and its alerts (issue 17, decision 0046). Schema:
//! `migrations/0020_risk_exposure.sql`. The server's risk watch decides the records
//! (`rampart_vuln::exposure`); this module stores one pass's changes in one transaction, with
//! the `risk.advisory` webhook events they raise, so an alert is queued exactly when its
//! record says it was.

use sqlx::Row;
use sqlx::any::AnyRow;

use rampart_vuln::exposure::{Exposure, ExposureState, MAX_ALERTED_RELEASES};

use crate::error::{DbError, DomainError};
pub use crate::webhooks::RISK_ADVISORY_EVENT;
use crate::webhooks::{DeliveryMaker, Enqueued, enqueue_event_in};

/// Most exposure records one pass reads and writes: a feed that affects more advisories than
/// this is watched for the first ones (in id order) and the rest wait (the pass says so).
pub const MAX_WATCHED_ADVISORIES: usize = 100_000;
/// Most records one exposure page returns.
pub const MAX_EXPOSURE_PAGE: i64 = 1_000;

/// One advisory's stored exposure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureRecord {
    pub advisory_id: String,
    pub exposure: Exposure,
    pub updated_at: i64,
}

/// One record a pass writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExposureChange {
    pub advisory_id: String,
    pub exposure: Exposure,
    /// The stored record the change was decided from (`None`: there was none). The change is
    /// written only if the record is still so (another server's pass may have moved it), so
    /// two servers on one database never alert the same version twice.
    pub decided_from: Option<Exposure>,
    /// Queue a `risk.advisory` event with this record.
    pub alert: bool,
}

/// Makes the delivery (id, signed-envelope body) of change `index`'s alert for one webhook.
pub type AlertMaker<'a> = dyn FnMut(usize, &str) -> Result<(String, String), DbError> + Send + 'a;

/// What a pass stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SavedPass {
    /// Records written.
    pub written: u64,
    /// Records left as another server's pass had moved them.
    pub skipped: u64,
    /// Alerts raised (each queued once per subscribed webhook).
    pub alerts: u64,
    /// Deliveries queued, and dropped for webhooks with too many pending.
    pub deliveries: Enqueued,
}

pub(crate) fn record_from_row(r: &AnyRow) -> Result<ExposureRecord, DbError> {
    let alerted: String = r.try_get("alerted_modified")?;
    let releases: String = r.try_get("alerted_releases")?;
    let count = |name: &str| -> Result<u64, DbError> {
        Ok(u64::try_from(r.try_get::<i64, _>(name)?).unwrap_or(0))
    };
    Ok(ExposureRecord {
        advisory_id: r.try_get("advisory_id")?,
        exposure: Exposure {
            published: r.try_get("published")?,
            first_affected_at: r.try_get("first_affected_at")?,
            affected_now: count("affected_now")?,
            peak_affected: count("peak_affected")?,
            remediated_at: r.try_get("remediated_at")?,
            withdrawn_at: r.try_get("withdrawn_at")?,
            alerted_modified: (!alerted.is_empty()).then_some(alerted),
            alerted_releases: serde_json::from_str(&releases).unwrap_or_default(),
        },
        updated_at: r.try_get("updated_at")?,
    })
}

fn as_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `WHERE` text of an exposure state (the same test as [`Exposure::state`]).
fn state_filter(state: Option<ExposureState>) -> (&'static str, &'static str) {
    match state {
        None => ("", "first_affected_at, advisory_id"),
        Some(ExposureState::Open) => (
            "WHERE withdrawn_at IS NULL AND remediated_at IS NULL",
            "first_affected_at, advisory_id",
        ),
        Some(ExposureState::Remediated) => (
            "WHERE withdrawn_at IS NULL AND remediated_at IS NOT NULL",
            "remediated_at DESC, advisory_id",
        ),
        Some(ExposureState::Withdrawn) => (
            "WHERE withdrawn_at IS NOT NULL",
            "withdrawn_at DESC, advisory_id",
        ),
    }
}

impl crate::Db {
    /// Every exposure record, in advisory id order, at most [`MAX_WATCHED_ADVISORIES`] (the
    /// second value says whether there were more).
    pub async fn exposure_records(&self) -> Result<(Vec<ExposureRecord>, bool), DbError> {
        let rows = sqlx::query("SELECT * FROM risk_exposure ORDER BY advisory_id LIMIT $1")
            .bind(MAX_WATCHED_ADVISORIES as i64 + 1)
            .fetch_all(&self.pool)
            .await?;
        let more = rows.len() > MAX_WATCHED_ADVISORIES;
        let records = rows
            .iter()
            .take(MAX_WATCHED_ADVISORIES)
            .map(record_from_row)
            .collect::<Result<_, _>>()?;
        Ok((records, more))
    }

    /// The exposure record of `advisory_id` (`None`: it never affected a device).
    pub async fn exposure_of(&self, advisory_id: &str) -> Result<Option<ExposureRecord>, DbError> {
        let row = sqlx::query("SELECT * FROM risk_exposure WHERE advisory_id = $1")
            .bind(advisory_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(record_from_row).transpose()
    }

    /// One page of exposure records in `state` (`None`: all): open ones oldest first (by when
    /// they first affected a device), remediated and withdrawn ones latest first; with the
    /// total in that state.
    pub async fn exposure_page(
        &self,
        state: Option<ExposureState>,
        limit: i64,
        offset: i64,
    ) -> Result<(u64, Vec<ExposureRecord>), DbError> {
        if !(1..=MAX_EXPOSURE_PAGE).contains(&limit) || offset < 0 {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "an exposure page holds 1 to {MAX_EXPOSURE_PAGE} records from an offset of 0 or more, not {limit} from {offset}"
            ))));
        }
        let (filter, order) = state_filter(state);
        // Both texts are constants of `state_filter`, never caller input.
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM risk_exposure {filter}"
        )))
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM risk_exposure {filter} ORDER BY {order} LIMIT $1 OFFSET $2"
        )))
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let records = rows.iter().map(record_from_row).collect::<Result<_, _>>()?;
        Ok((u64::try_from(total).unwrap_or(0), records))
    }

    /// Stores one pass: every changed record, and for each one marked `alert` its
    /// `risk.advisory` event (one delivery per subscribed webhook, made by `make(change index,
    /// webhook id)`), all in one transaction. A change whose stored record moved since the
    /// pass read it is skipped with its alert (the next pass decides again).
    pub async fn save_exposure_pass(
        &self,
        changes: &[ExposureChange],
        now: i64,
        now_ms: i64,
        make: &mut AlertMaker<'_>,
    ) -> Result<SavedPass, DbError> {
        if changes.len() > MAX_WATCHED_ADVISORIES {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "a pass writes at most {MAX_WATCHED_ADVISORIES} exposure records, not {}",
                changes.len()
            ))));
        }
        let mut saved = SavedPass::default();
        let mut tx = self.begin_write().await?;
        for (index, change) in changes.iter().enumerate() {
            let e = &change.exposure;
            let releases: Vec<&String> = e
                .alerted_releases
                .iter()
                .take(MAX_ALERTED_RELEASES)
                .collect();
            let releases = serde_json::to_string(&releases).unwrap_or_else(|_| "[]".into());
            let alerted = e.alerted_modified.clone().unwrap_or_default();
            let written = match &change.decided_from {
                None => sqlx::query(
                    "INSERT INTO risk_exposure (advisory_id, published, first_affected_at,
                     affected_now, peak_affected, remediated_at, withdrawn_at, alerted_modified,
                     alerted_releases, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (advisory_id) DO NOTHING",
                )
                .bind(&change.advisory_id)
                .bind(e.published)
                .bind(e.first_affected_at)
                .bind(as_count(e.affected_now))
                .bind(as_count(e.peak_affected))
                .bind(e.remediated_at)
                .bind(e.withdrawn_at)
                .bind(&alerted)
                .bind(&releases)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Some(from) => sqlx::query(
                    "UPDATE risk_exposure SET published = $2, first_affected_at = $3,
                     affected_now = $4, peak_affected = $5, remediated_at = $6, withdrawn_at = $7,
                     alerted_modified = $8, alerted_releases = $9, updated_at = $10
                     WHERE advisory_id = $1 AND alerted_modified = $11 AND affected_now = $12",
                )
                .bind(&change.advisory_id)
                .bind(e.published)
                .bind(e.first_affected_at)
                .bind(as_count(e.affected_now))
                .bind(as_count(e.peak_affected))
                .bind(e.remediated_at)
                .bind(e.withdrawn_at)
                .bind(&alerted)
                .bind(&releases)
                .bind(now)
                .bind(from.alerted_modified.clone().unwrap_or_default())
                .bind(as_count(from.affected_now))
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if written == 0 {
                saved.skipped += 1;
                continue;
            }
            saved.written += 1;
            if change.alert {
                let mut one: Box<DeliveryMaker<'_>> = Box::new(|hook: &str| make(index, hook));
                let done =
                    enqueue_event_in(&mut tx, RISK_ADVISORY_EVENT, now, now_ms, &mut *one).await?;
                saved.alerts += 1;
                saved.deliveries.queued += done.queued;
                saved.deliveries.dropped += done.dropped;
            }
        }
        tx.commit().await?;
        Ok(saved)
    }
}

/// Most advisories one [`crate::Db::advisories_by_id`] call reads.
pub const MAX_ADVISORY_READ: usize = 500;

/// A stored advisory as the risk watch reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedAdvisory {
    pub id: String,
    pub modified: String,
    /// `None` while not withdrawn.
    pub withdrawn: Option<String>,
    /// The OSV record, as imported.
    pub record: String,
}

impl crate::Db {
    /// The stored advisories among `ids` (at most [`MAX_ADVISORY_READ`]), in id order; ids not
    /// stored are left out.
    pub async fn advisories_by_id(&self, ids: &[String]) -> Result<Vec<WatchedAdvisory>, DbError> {
        if ids.len() > MAX_ADVISORY_READ {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "at most {MAX_ADVISORY_READ} advisories are read at once, not {}",
                ids.len()
            ))));
        }
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Only numbered placeholders are formatted in; the ids are bound.
        let sql = format!(
            "SELECT id, modified, withdrawn, record FROM advisories WHERE id IN ({}) ORDER BY id",
            crate::sql::placeholders(1, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let withdrawn: String = r.try_get("withdrawn")?;
                Ok(WatchedAdvisory {
                    id: r.try_get("id")?,
                    modified: r.try_get("modified")?,
                    withdrawn: (!withdrawn.is_empty()).then_some(withdrawn),
                    record: r.try_get("record")?,
                })
            })
            .collect()
    }
}
