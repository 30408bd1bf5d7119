//! The device inventory: what devices say about themselves, registration (plain or audited),
//! last-seen times, revocation, listing and fleet versions.

use crate::error::DomainError;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::Db;
use crate::audit::{AuditLine, insert_audit};
use crate::error::DbError;
use crate::sql::{check_text, json_text};

/// Tags a device may carry.
const MAX_TAGS: usize = 64;

/// What a device says about itself when it polls or reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceFacts {
    pub hardware_id: String,
    pub firmware_version: String,
    pub security_version: u64,
    #[serde(default)]
    pub region: String,
    /// Slot states, e.g. `{"a": "good", "b": "inactive"}`.
    #[serde(default)]
    pub slots: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Free key/values.
    #[serde(default)]
    pub attributes: serde_json::Map<String, serde_json::Value>,
    /// The boot the device is in (Linux's `/proc/sys/kernel/random/boot_id`), '' when it does
    /// not say: a new one makes the server ask for a quote at once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boot_id: String,
    /// The firmware version each slot holds, by slot name (`None`: the device did not say).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot_versions: Option<std::collections::BTreeMap<String, String>>,
}

/// A device in the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: String,
    #[serde(flatten)]
    pub facts: DeviceFacts,
    pub first_seen: i64,
    pub last_seen: i64,
    pub revoked: bool,
}

/// Filters for listing devices; every field set must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeviceFilter {
    pub hardware_id: Option<String>,
    pub firmware_version: Option<String>,
    pub region: Option<String>,
    pub tag: Option<String>,
    /// Only members of this operator-managed group.
    pub group: Option<String>,
    pub min_security_version: Option<u64>,
    /// Only devices whose attribute `key` equals `value` (as a JSON string).
    pub attribute: Option<(String, String)>,
    /// Only devices whose slot `name` reports state `state` (e.g. `("b", "bad")`).
    pub slot: Option<(String, String)>,
    /// Only devices whose id contains this text, ignoring ASCII case.
    #[serde(default)]
    pub id_contains: Option<String>,
    /// Only revoked (`true`) or only unrevoked (`false`) devices.
    #[serde(default)]
    pub revoked: Option<bool>,
    /// Only quarantined (`true`) or only unquarantined (`false`) devices.
    #[serde(default)]
    pub quarantined: Option<bool>,
}

/// Distinct values counted per column of [`FleetCounts`]; the rest are summed in `others`.
pub const MAX_COUNTED_VALUES: i64 = 200;

/// The fleet at a glance: devices per firmware version, hardware id and region (the
/// [`MAX_COUNTED_VALUES`] largest of each), and per status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetCounts {
    pub devices: i64,
    pub versions: Vec<(String, i64)>,
    pub hardware: Vec<(String, i64)>,
    pub regions: Vec<(String, i64)>,
    pub revoked: i64,
    pub quarantined: i64,
}

/// Where a page of devices starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePage<'a> {
    /// After skipping this many matches (the API's `offset`).
    Offset(i64),
    /// After the device with this id (keyset paging: as fast on the last page as the first).
    After(&'a str),
}

/// `text` as a LIKE pattern matching it anywhere, with `\`, `%` and `_` escaped (`ESCAPE '\'`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl DeviceFacts {
    /// Checks sizes and characters before anything is stored.
    pub fn validate(&self) -> Result<(), DbError> {
        for (what, v) in [
            ("hardware_id", &self.hardware_id),
            ("firmware_version", &self.firmware_version),
            ("region", &self.region),
            ("boot_id", &self.boot_id),
        ] {
            check_text(what, v)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "at most {MAX_TAGS} tags"
            ))));
        }
        for t in &self.tags {
            check_text("tag", t)?;
        }
        json_text("slots", &self.slots)?;
        json_text("attributes", &self.attributes)?;
        if let Some(versions) = &self.slot_versions {
            // The wire type refuses these already; storage holds the same line for any caller.
            if versions.len() > rampart_protocol::MAX_SLOT_VERSIONS {
                return Err(DbError::Domain(DomainError::Invalid(format!(
                    "slot_versions gives more than {} slots",
                    rampart_protocol::MAX_SLOT_VERSIONS
                ))));
            }
            for (name, version) in versions {
                rampart_protocol::check_slot_version(name, version)
                    .map_err(|e| DbError::Domain(DomainError::Invalid(e)))?;
            }
        }
        if self.security_version > i64::MAX as u64 {
            return Err(DbError::Domain(DomainError::Invalid(
                "security_version is too large".into(),
            )));
        }
        Ok(())
    }
}

impl Db {
    /// Records a device's first contact or its latest facts, tags replaced, in one transaction.
    pub async fn upsert_device(
        &self,
        id: &str,
        facts: &DeviceFacts,
        now: i64,
    ) -> Result<(), DbError> {
        check_text("device id", id)?;
        facts.validate()?;
        let mut tx = self.begin_write().await?;
        upsert_device_tx(&mut tx, id, facts, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Registers a device on first contact if unknown; true if it was new.
    pub async fn register_if_new(&self, id: &str, now: i64) -> Result<bool, DbError> {
        check_text("device id", id)?;
        let r = sqlx::query("INSERT INTO devices (id, first_seen, last_seen) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Registers a device on first contact together with its enrolment audit record, in one
    /// transaction; false (and nothing written) if it was already known.
    pub async fn register_audited(
        &self,
        id: &str,
        now: i64,
        audit: &AuditLine,
    ) -> Result<bool, DbError> {
        check_text("device id", id)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("INSERT INTO devices (id, first_seen, last_seen) VALUES ($1, $2, $2) ON CONFLICT (id) DO NOTHING")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Applies a batch of last-seen times in one transaction (polls are not written one by one).
    pub async fn touch_last_seen(&self, batch: &[(String, i64)]) -> Result<(), DbError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for (id, t) in batch {
            sqlx::query("UPDATE devices SET last_seen = $2 WHERE id = $1 AND last_seen < $2")
                .bind(id)
                .bind(*t)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_revoked(&self, id: &str, revoked: bool) -> Result<(), DbError> {
        let r = sqlx::query("UPDATE devices SET revoked = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(revoked))
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DbError::Domain(DomainError::UnknownDevice(id.to_string())));
        }
        Ok(())
    }

    fn device_from_row(row: &AnyRow, tags: Vec<String>) -> Result<Device, DbError> {
        let parse = |s: String| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&s)
                .unwrap_or_default()
        };
        Ok(Device {
            id: row.try_get("id")?,
            facts: DeviceFacts {
                hardware_id: row.try_get("hardware_id")?,
                firmware_version: row.try_get("firmware_version")?,
                security_version: row.try_get::<i64, _>("security_version")?.max(0) as u64,
                region: row.try_get("region")?,
                slots: parse(row.try_get("slots")?),
                tags,
                attributes: parse(row.try_get("attributes")?),
                boot_id: row.try_get("boot_id")?,
                slot_versions: slot_versions_from(row.try_get("slot_versions")?),
            },
            first_seen: row.try_get("first_seen")?,
            last_seen: row.try_get("last_seen")?,
            revoked: row.try_get::<i64, _>("revoked")? != 0,
        })
    }

    async fn tags_of(&self, id: &str) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query("SELECT tag FROM device_tags WHERE device_id = $1 ORDER BY tag")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("tag").map_err(DbError::from))
            .collect()
    }

    pub async fn device(&self, id: &str) -> Result<Option<Device>, DbError> {
        let Some(row) = sqlx::query("SELECT * FROM devices WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let tags = self.tags_of(id).await?;
        Ok(Some(Self::device_from_row(&row, tags)?))
    }

    /// Devices matching `filter`, ordered by id, at most `limit` after `offset`.
    pub async fn list_devices(
        &self,
        filter: &DeviceFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Device>, DbError> {
        self.list_devices_from(filter, DevicePage::Offset(offset), limit)
            .await
    }

    /// Devices matching `filter`, ordered by id, at most `limit` from `page`.
    pub async fn list_devices_from(
        &self,
        filter: &DeviceFilter,
        page: DevicePage<'_>,
        limit: i64,
    ) -> Result<Vec<Device>, DbError> {
        let mut sql = String::from("SELECT d.* FROM devices d WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let param = |binds: &mut Vec<String>, v: String| {
            binds.push(v);
            format!("${}", binds.len())
        };
        let offset = match page {
            DevicePage::Offset(n) => n,
            DevicePage::After(id) => {
                let p = param(&mut binds, id.to_owned());
                sql.push_str(&format!(" AND d.id > {p}"));
                0
            }
        };
        if let Some(v) = &filter.id_contains {
            let p = param(&mut binds, contains_pattern(v));
            sql.push_str(&format!(" AND LOWER(d.id) LIKE {p} ESCAPE '\\'"));
        }
        if let Some(revoked) = filter.revoked {
            sql.push_str(&format!(" AND d.revoked = {}", i64::from(revoked)));
        }
        if let Some(quarantined) = filter.quarantined {
            let not = if quarantined { "" } else { "NOT " };
            sql.push_str(&format!(
                " AND {not}EXISTS (SELECT 1 FROM device_quarantine q WHERE q.device_id = d.id)"
            ));
        }
        if let Some(v) = &filter.hardware_id {
            let p = param(&mut binds, v.clone());
            sql.push_str(&format!(" AND d.hardware_id = {p}"));
        }
        if let Some(v) = &filter.firmware_version {
            let p = param(&mut binds, v.clone());
            sql.push_str(&format!(" AND d.firmware_version = {p}"));
        }
        if let Some(v) = &filter.region {
            let p = param(&mut binds, v.clone());
            sql.push_str(&format!(" AND d.region = {p}"));
        }
        if let Some(v) = &filter.tag {
            let p = param(&mut binds, v.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = {p})"
            ));
        }
        if let Some(v) = &filter.group {
            let p = param(&mut binds, v.clone());
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM group_members g WHERE g.device_id = d.id AND g.group_name = {p})"
            ));
        }
        // Integers are written into the SQL (they are typed, so nothing can be injected); the
        // text binds above are strings, which the two backends compare differently with numbers.
        if let Some(v) = filter.min_security_version {
            let v = v.min(i64::MAX as u64) as i64;
            sql.push_str(&format!(" AND d.security_version >= {v}"));
        }
        let limit = limit.clamp(1, 10_000);
        let offset = offset.max(0);
        sql.push_str(" ORDER BY d.id");
        // Without filters on JSON columns (applied below), the database pages: no full scan.
        let paged_in_sql = filter.attribute.is_none() && filter.slot.is_none();
        if paged_in_sql {
            sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
        }
        let offset = if paged_in_sql { 0 } else { offset };
        let mut rows: Vec<AnyRow> = {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in &binds {
                q = q.bind(b.clone());
            }
            q.fetch_all(&self.pool).await?
        };
        // Filters needing typed comparison or JSON are applied here; tags are read for the page only.
        let mut page = Vec::new();
        let mut skipped = 0i64;
        for row in rows.drain(..) {
            let d = Self::device_from_row(&row, Vec::new())?;
            if let Some((k, v)) = &filter.attribute
                && d.facts.attributes.get(k).map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string())
                }) != Some(v.clone())
            {
                continue;
            }
            if let Some((name, state)) = &filter.slot
                && d.facts.slots.get(name).and_then(|x| x.as_str()) != Some(state.as_str())
            {
                continue;
            }
            if skipped < offset {
                skipped += 1;
                continue;
            }
            page.push(d);
            if page.len() as i64 >= limit {
                break;
            }
        }
        for d in &mut page {
            d.facts.tags = self.tags_of(&d.id).await?;
        }
        Ok(page)
    }

    /// Fleet-wide device counts per firmware version.
    pub async fn version_counts(&self) -> Result<Vec<(String, i64)>, DbError> {
        let rows = sqlx::query("SELECT firmware_version, COUNT(*) AS n FROM devices GROUP BY firmware_version ORDER BY firmware_version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("firmware_version")?,
                    r.try_get::<i64, _>("n")?,
                ))
            })
            .collect()
    }

    /// Devices per firmware version, hardware id, region and status (see [`FleetCounts`]).
    pub async fn fleet_counts(&self) -> Result<FleetCounts, DbError> {
        let mut counts = FleetCounts {
            devices: self.device_count().await?,
            ..FleetCounts::default()
        };
        for (column, into) in [
            ("firmware_version", &mut counts.versions),
            ("hardware_id", &mut counts.hardware),
            ("region", &mut counts.regions),
        ] {
            // `column` is one of three fixed names; nothing from a caller reaches this SQL.
            let sql = format!(
                "SELECT {column} AS v, COUNT(*) AS n FROM devices GROUP BY {column} ORDER BY n DESC, {column} LIMIT {MAX_COUNTED_VALUES}"
            );
            for row in sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await?
            {
                into.push((row.try_get("v")?, row.try_get("n")?));
            }
        }
        counts.revoked = sqlx::query("SELECT COUNT(*) AS n FROM devices WHERE revoked <> 0")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        counts.quarantined = sqlx::query("SELECT COUNT(*) AS n FROM device_quarantine")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(counts)
    }

    pub async fn device_count(&self) -> Result<i64, DbError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM devices")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Marks a device revoked or reinstated in the inventory, with its audit record.
    pub async fn set_revoked_audited(
        &self,
        id: &str,
        revoked: bool,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("UPDATE devices SET revoked = $2 WHERE id = $1")
            .bind(id)
            .bind(i64::from(revoked))
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DbError::Domain(DomainError::UnknownDevice(id.to_string())));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    // ---- groups ----------------------------------------------------------------------------
}

/// Writes a device's facts (inserting it on first contact), tags replaced, in `tx`.
/// The stored `slot_versions` column: NULL (not said) is `None`; text that is not a map of
/// strings (never written so) is read as not said rather than failing the whole read.
pub(crate) fn slot_versions_from(
    text: Option<String>,
) -> Option<std::collections::BTreeMap<String, String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

pub(crate) async fn upsert_device_tx(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    id: &str,
    facts: &DeviceFacts,
    now: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO devices (id, hardware_id, firmware_version, security_version, region, slots, attributes, first_seen, last_seen, firmware_changed_at, boot_id, slot_versions)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $8, $9, $10)
         ON CONFLICT (id) DO UPDATE SET hardware_id = $2, firmware_version = $3, security_version = $4,
             region = $5, slots = $6, attributes = $7, last_seen = $8, boot_id = $9, slot_versions = $10,
             firmware_changed_at = CASE WHEN devices.firmware_version <> $3 OR devices.slots <> $6
                 THEN $8 ELSE devices.firmware_changed_at END",
    )
    .bind(id)
    .bind(&facts.hardware_id)
    .bind(&facts.firmware_version)
    .bind(facts.security_version as i64)
    .bind(&facts.region)
    .bind(json_text("slots", &facts.slots)?)
    .bind(json_text("attributes", &facts.attributes)?)
    .bind(now)
    .bind(&facts.boot_id)
    .bind(
        facts
            .slot_versions
            .as_ref()
            .map(|v| json_text("slot_versions", v))
            .transpose()?,
    )
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    for tag in &facts.tags {
        sqlx::query(
            "INSERT INTO device_tags (device_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(tag)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
