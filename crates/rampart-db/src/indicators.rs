//! What the indicators (issue 18) read: update results counted per bucket, the incidents and
//! advisory exposures with a timing in a window, the campaigns that may have started in it and
//! the k-th success of each. Every read is an aggregate or a bounded page over an index
//! (`migrations/0025_indicators.sql`), so a window costs the same at 100,000 devices as at 10;
//! the arithmetic is `rampart_rollout::indicators`'.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Db;
use crate::campaigns::{Campaign, campaign_from_row};
use crate::error::{DbError, DomainError};
use crate::incidents::{INCIDENT_COLUMNS, Incident, incident_from_row};
use crate::risk_exposure::{ExposureRecord, record_from_row};
use crate::sql::placeholders;

/// Most incidents, and most exposure records, one window reads (the answer says when there
/// were more).
pub const MAX_INDICATOR_ROWS: usize = 10_000;
/// Most campaigns one window reads, newest first.
pub const MAX_INDICATOR_CAMPAIGNS: i64 = 50;
/// Most report statuses one count takes.
const MAX_COUNTED_STATUSES: usize = 16;

/// `n` reports of `status` stored in bucket `bucket` (`(created - from) / bucket width`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultCount {
    pub bucket: i64,
    pub status: String,
    pub n: u64,
}

/// The first [`MAX_INDICATOR_ROWS`] of `rows` (read with one more as the limit), and whether
/// there were more.
fn bounded<T>(
    rows: &[AnyRow],
    from_row: fn(&AnyRow) -> Result<T, DbError>,
) -> Result<(Vec<T>, bool), DbError> {
    let items = rows
        .iter()
        .take(MAX_INDICATOR_ROWS)
        .map(from_row)
        .collect::<Result<_, _>>()?;
    Ok((items, rows.len() > MAX_INDICATOR_ROWS))
}

impl Db {
    /// Reports of `statuses` stored in `[from, to)`, counted per bucket of `bucket_secs` from
    /// `from` and per status.
    pub async fn report_counts(
        &self,
        from: i64,
        to: i64,
        bucket_secs: i64,
        statuses: &[&str],
    ) -> Result<Vec<ResultCount>, DbError> {
        if bucket_secs <= 0 || statuses.is_empty() || statuses.len() > MAX_COUNTED_STATUSES {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "a report count takes a bucket of 1 second or more and 1 to {MAX_COUNTED_STATUSES} statuses"
            ))));
        }
        // The placeholders are numbered from constants, never caller text.
        let sql = format!(
            "SELECT CAST((created - $1) / $3 AS BIGINT) AS bucket, status, CAST(COUNT(*) AS BIGINT) AS n \
             FROM reports WHERE created >= $1 AND created < $2 AND status IN ({}) GROUP BY 1, 2",
            placeholders(4, statuses.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .bind(bucket_secs);
        for status in statuses {
            query = query.bind(*status);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(ResultCount {
                    bucket: r.try_get("bucket")?,
                    status: r.try_get("status")?,
                    n: u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Incidents detected or recovered in `[from, to)`, newest first, at most
    /// [`MAX_INDICATOR_ROWS`] (the second value says whether there were more).
    pub async fn incidents_in_window(
        &self,
        from: i64,
        to: i64,
    ) -> Result<(Vec<Incident>, bool), DbError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INCIDENT_COLUMNS} FROM incidents i \
             WHERE (i.detected_at >= $1 AND i.detected_at < $2) \
                OR (i.recovered_at >= $1 AND i.recovered_at < $2) \
             ORDER BY i.detected_at DESC, i.id LIMIT $3"
        )))
        .bind(from)
        .bind(to)
        .bind(MAX_INDICATOR_ROWS as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        bounded(&rows, incident_from_row)
    }

    /// Exposure records first affecting the fleet or remediated in `[from, to)`, at most
    /// [`MAX_INDICATOR_ROWS`] (the second value says whether there were more).
    pub async fn exposures_in_window(
        &self,
        from: i64,
        to: i64,
    ) -> Result<(Vec<ExposureRecord>, bool), DbError> {
        let rows = sqlx::query(
            "SELECT * FROM risk_exposure \
             WHERE (first_affected_at >= $1 AND first_affected_at < $2) \
                OR (remediated_at >= $1 AND remediated_at < $2) \
             ORDER BY first_affected_at DESC, advisory_id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(MAX_INDICATOR_ROWS as i64 + 1)
        .fetch_all(&self.pool)
        .await?;
        bounded(&rows, record_from_row)
    }

    /// Campaigns that may have started in `[from, to)` (created before `to`, changed since
    /// `from`; the caller checks the start in their state), newest first, at most
    /// [`MAX_INDICATOR_CAMPAIGNS`].
    pub async fn campaigns_in_window(&self, from: i64, to: i64) -> Result<Vec<Campaign>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM campaigns WHERE created < $2 AND updated >= $1 \
             ORDER BY created DESC, id LIMIT $3",
        )
        .bind(from)
        .bind(to)
        .bind(MAX_INDICATOR_CAMPAIGNS)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(campaign_from_row).collect()
    }

    /// How many devices a campaign targets.
    pub async fn campaign_targeted(&self, campaign_id: &str) -> Result<u64, DbError> {
        let n: i64 = sqlx::query(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM campaign_devices WHERE campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// For each `k` of `ks`, when a campaign's `k`-th success (by result time, from 1) came,
    /// `None` if it has fewer.
    pub async fn campaign_kth_successes(
        &self,
        campaign_id: &str,
        ks: &[u64],
    ) -> Result<Vec<Option<i64>>, DbError> {
        let mut times = Vec::with_capacity(ks.len());
        for &k in ks {
            let offset = i64::try_from(k.max(1) - 1).unwrap_or(i64::MAX);
            let row = sqlx::query(
                "SELECT result_at FROM campaign_devices \
                 WHERE campaign_id = $1 AND outcome = 'succeeded' AND result_at IS NOT NULL \
                 ORDER BY result_at LIMIT 1 OFFSET $2",
            )
            .bind(campaign_id)
            .bind(offset)
            .fetch_optional(&self.pool)
            .await?;
            times.push(match row {
                Some(r) => r.try_get::<Option<i64>, _>("result_at")?,
                None => None,
            });
        }
        Ok(times)
    }
}
