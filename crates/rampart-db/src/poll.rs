//! The device API's most frequent read: what a poll needs, in one query.

use sqlx::Row;

use crate::quarantine::{QUARANTINE_JOIN, QUARANTINE_SELECT, mark_from_joined_row};
use crate::{Db, DbError, DeviceAssignment, Enrolment, QuarantineMark};

/// What a poll needs to know about a registered device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollState {
    /// Revoked by the fleet operator (the device API refuses it).
    pub revoked: bool,
    /// How the row was enrolled: a device certificate may act only for a row a certificate
    /// enrolled (decision 0021).
    pub enrolment: Enrolment,
    /// Its current assignment row, if it ever had one.
    pub assignment: Option<DeviceAssignment>,
    /// Quarantined, or released with the `released` statement not yet acknowledged (read in
    /// the same query).
    pub quarantine: Option<QuarantineMark>,
}

impl Db {
    /// A device's revocation flag, current assignment and quarantine, read together in one
    /// primary-key query (a poll costs one database round trip); `None` if the device is not
    /// registered.
    pub async fn poll_state(&self, device_id: &str) -> Result<Option<PollState>, DbError> {
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT d.revoked AS revoked, d.enrolled_by AS enrolled_by,
                    d.enrolled_tenant AS enrolled_tenant, a.assignment_id AS assignment_id, a.target AS target,
                    a.version AS version, a.updated AS updated, a.update_type AS update_type,
                    a.forced_at AS forced_at, a.reimage AS reimage, {QUARANTINE_SELECT}
             FROM devices d LEFT JOIN device_assignments a ON a.device_id = d.id
             {QUARANTINE_JOIN}
             WHERE d.id = $1",
        )))
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let assignment = assignment_from_joined_row(&row, device_id)?;
        Ok(Some(PollState {
            revoked: row.try_get::<i64, _>("revoked")? != 0,
            enrolment: Enrolment::from_row(&row)?,
            assignment,
            quarantine: mark_from_joined_row(&row)?,
        }))
    }
}

/// The `device_assignments` columns of a row that LEFT JOINed them (`None` when the device has
/// no assignment row).
pub(crate) fn assignment_from_joined_row(
    row: &sqlx::any::AnyRow,
    device_id: &str,
) -> Result<Option<DeviceAssignment>, DbError> {
    let Some(version) = row.try_get::<Option<i64>, _>("version")? else {
        return Ok(None);
    };
    Ok(Some(DeviceAssignment {
        device_id: device_id.to_owned(),
        assignment_id: row.try_get("assignment_id")?,
        target: row.try_get("target")?,
        version,
        updated: row.try_get("updated")?,
        update_type: row.try_get("update_type")?,
        forced_at: row.try_get("forced_at")?,
        reimage: row.try_get::<Option<i64>, _>("reimage")?.unwrap_or(0) != 0,
    }))
}
