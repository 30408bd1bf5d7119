//! Supply-chain risk storage (issue 17, decision 0043): imported OSV advisories, stored by id
//! with their `modified` time and aliases, and the components of each release's SBOM, parsed
//! once. Schema: `migrations/0019_risk.sql`. The advisory records are parsed by the caller
//! (`rampart_vuln::osv`) before they are stored; this module keeps them as given.

use serde::{Deserialize, Serialize};
use sqlx::Row;

use rampart_vuln::component::Component;

use crate::audit::{AuditLine, insert_audit};
use crate::error::{DbError, DomainError};

/// The most advisories one import call stores (the API's batches are smaller).
pub const MAX_ADVISORIES_PER_IMPORT: usize = 10_000;

/// The most advisories an alias lookup answers with (an alias names few advisories).
pub const MAX_ALIAS_LOOKUP: i64 = 16;

/// One advisory to store, already parsed and checked by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvisoryImport {
    pub id: String,
    pub modified: String,
    /// The advisory's `withdrawn` time, when it has one: stored, left out of matching.
    pub withdrawn: Option<String>,
    pub aliases: Vec<String>,
    /// The OSV record, as imported.
    pub record: String,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportCounts {
    /// New ids.
    pub added: u64,
    /// Stored ids whose `modified` (or withdrawal) changed: the record was replaced.
    pub replaced: u64,
    /// Stored ids given again with the same `modified` and withdrawal: left as they were.
    pub unchanged: u64,
    /// Of the added and replaced, how many are withdrawn (out of matching from now on).
    pub withdrawn: u64,
}

/// A stored advisory.
/// What risk posture needs of a device: what it runs and how it is grouped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskDevice {
    pub id: String,
    pub hardware_id: String,
    pub firmware_version: String,
    pub region: String,
    /// Sorted.
    pub tags: Vec<String>,
    /// Slot states as reported (`{"a": "active", "b": "good"}`): which slot runs.
    pub slots: serde_json::Map<String, serde_json::Value>,
    /// The firmware version each slot holds (`None`: the device did not say).
    pub slot_versions: Option<std::collections::BTreeMap<String, String>>,
}

/// Most devices one [`crate::Db::risk_devices_after`] page returns.
pub const MAX_RISK_DEVICE_PAGE: i64 = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAdvisory {
    pub id: String,
    pub modified: String,
    /// `None` while not withdrawn.
    pub withdrawn: Option<String>,
    pub aliases: Vec<String>,
    pub record: String,
    pub imported_at: i64,
}

fn stored_from_row(r: &sqlx::any::AnyRow) -> Result<StoredAdvisory, DbError> {
    let withdrawn: String = r.try_get("withdrawn")?;
    let aliases: String = r.try_get("aliases")?;
    Ok(StoredAdvisory {
        id: r.try_get("id")?,
        modified: r.try_get("modified")?,
        withdrawn: (!withdrawn.is_empty()).then_some(withdrawn),
        aliases: serde_json::from_str(&aliases).unwrap_or_default(),
        record: r.try_get("record")?,
        imported_at: r.try_get("imported_at")?,
    })
}

impl crate::Db {
    /// Stores a batch of advisories with its audit record, in one transaction: a new id is
    /// added; a stored one is replaced when its `modified` or withdrawal differs, else left
    /// unchanged (an import of the same feed twice changes nothing).
    pub async fn import_advisories(
        &self,
        batch: &[AdvisoryImport],
        now: i64,
        audit: &AuditLine,
    ) -> Result<ImportCounts, DbError> {
        if batch.len() > MAX_ADVISORIES_PER_IMPORT {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "an import stores at most {MAX_ADVISORIES_PER_IMPORT} advisories at once, not {}; send smaller batches",
                batch.len()
            ))));
        }
        let mut counts = ImportCounts::default();
        let mut tx = self.begin_write().await?;
        for advisory in batch {
            let withdrawn = advisory.withdrawn.clone().unwrap_or_default();
            let stored = sqlx::query("SELECT modified, withdrawn FROM advisories WHERE id = $1")
                .bind(&advisory.id)
                .fetch_optional(&mut *tx)
                .await?;
            match stored {
                Some(row) => {
                    let modified: String = row.try_get("modified")?;
                    let was_withdrawn: String = row.try_get("withdrawn")?;
                    if modified == advisory.modified && was_withdrawn == withdrawn {
                        counts.unchanged += 1;
                        continue;
                    }
                    sqlx::query(
                        "UPDATE advisories SET modified = $2, withdrawn = $3, aliases = $4,
                         record = $5, imported_at = $6 WHERE id = $1",
                    )
                    .bind(&advisory.id)
                    .bind(&advisory.modified)
                    .bind(&withdrawn)
                    .bind(serde_json::to_string(&advisory.aliases).unwrap_or_default())
                    .bind(&advisory.record)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("DELETE FROM advisory_aliases WHERE advisory_id = $1")
                        .bind(&advisory.id)
                        .execute(&mut *tx)
                        .await?;
                    counts.replaced += 1;
                }
                None => {
                    sqlx::query(
                        "INSERT INTO advisories (id, modified, withdrawn, aliases, record, imported_at)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind(&advisory.id)
                    .bind(&advisory.modified)
                    .bind(&withdrawn)
                    .bind(serde_json::to_string(&advisory.aliases).unwrap_or_default())
                    .bind(&advisory.record)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    counts.added += 1;
                }
            }
            if !withdrawn.is_empty() {
                counts.withdrawn += 1;
            }
            let mut aliases: Vec<&String> = advisory.aliases.iter().collect();
            aliases.sort();
            aliases.dedup();
            for alias in aliases {
                sqlx::query("INSERT INTO advisory_aliases (alias, advisory_id) VALUES ($1, $2)")
                    .bind(alias)
                    .bind(&advisory.id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if counts.added + counts.replaced > 0 {
            sqlx::query("UPDATE advisory_feed SET version = version + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// The advisory feed's version: it changes with every import that changed a stored
    /// advisory (a cached index of an older version is stale).
    pub async fn advisory_feed_version(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT version FROM advisory_feed WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) => row.try_get("version")?,
            None => 0,
        })
    }

    /// Every advisory that is not withdrawn, as `(id, record)`, in id order: what matching
    /// indexes.
    pub async fn advisories_for_matching(&self) -> Result<Vec<(String, String)>, DbError> {
        let rows =
            sqlx::query("SELECT id, record FROM advisories WHERE withdrawn = '' ORDER BY id")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("record")?)))
            .collect()
    }

    /// How many advisories are stored: `(in matching, withdrawn)`.
    pub async fn advisory_counts(&self) -> Result<(u64, u64), DbError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN withdrawn = '' THEN 1 ELSE 0 END), 0) AS BIGINT) AS active,
                    CAST(COALESCE(SUM(CASE WHEN withdrawn = '' THEN 0 ELSE 1 END), 0) AS BIGINT) AS withdrawn
             FROM advisories",
        )
        .fetch_one(&self.pool)
        .await?;
        let active: i64 = row.try_get("active")?;
        let withdrawn: i64 = row.try_get("withdrawn")?;
        Ok((active as u64, withdrawn as u64))
    }

    /// Devices with an id after `after` (keyset order), at most `limit`, with their tags: two
    /// range reads per page, whatever the fleet's size (posture reads the whole inventory).
    pub async fn risk_devices_after(
        &self,
        after: &str,
        limit: i64,
    ) -> Result<Vec<RiskDevice>, DbError> {
        let rows = sqlx::query(
            "SELECT id, hardware_id, firmware_version, region, slots, slot_versions FROM devices
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(limit.clamp(1, MAX_RISK_DEVICE_PAGE))
        .fetch_all(&self.pool)
        .await?;
        let mut page: Vec<RiskDevice> = rows
            .iter()
            .map(|r| {
                Ok(RiskDevice {
                    id: r.try_get("id")?,
                    hardware_id: r.try_get("hardware_id")?,
                    firmware_version: r.try_get("firmware_version")?,
                    region: r.try_get("region")?,
                    tags: Vec::new(),
                    slots: serde_json::from_str(&r.try_get::<String, _>("slots")?)
                        .unwrap_or_default(),
                    slot_versions: crate::devices::slot_versions_from(r.try_get("slot_versions")?),
                })
            })
            .collect::<Result<_, DbError>>()?;
        let (Some(first), Some(last)) = (page.first(), page.last()) else {
            return Ok(page);
        };
        let tags = sqlx::query(
            "SELECT device_id, tag FROM device_tags WHERE device_id >= $1 AND device_id <= $2
             ORDER BY device_id, tag",
        )
        .bind(&first.id)
        .bind(&last.id)
        .fetch_all(&self.pool)
        .await?;
        // By id, not by walking both orders together: the database's collation orders text,
        // and it need not be Rust's byte order.
        let position: std::collections::HashMap<String, usize> = page
            .iter()
            .enumerate()
            .map(|(i, d)| (d.id.clone(), i))
            .collect();
        for row in &tags {
            let device: String = row.try_get("device_id")?;
            if let Some(&i) = position.get(&device) {
                page[i].tags.push(row.try_get("tag")?);
            }
        }
        for device in &mut page {
            device.tags.sort();
        }
        Ok(page)
    }

    /// The advisory stored under `id`, else those having `id` as an alias (at most
    /// [`MAX_ALIAS_LOOKUP`], in id order).
    pub async fn advisories_named(&self, id: &str) -> Result<Vec<StoredAdvisory>, DbError> {
        let row = sqlx::query("SELECT * FROM advisories WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = row {
            return Ok(vec![stored_from_row(&row)?]);
        }
        let rows = sqlx::query(
            "SELECT a.* FROM advisories a JOIN advisory_aliases l ON l.advisory_id = a.id
             WHERE l.alias = $1 ORDER BY a.id LIMIT $2",
        )
        .bind(id)
        .bind(MAX_ALIAS_LOOKUP)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_from_row).collect()
    }

    /// The stored components of `target`'s SBOM, if they were indexed from the SBOM with this
    /// digest (`None`: not indexed yet, or indexed from another SBOM).
    pub async fn release_components(
        &self,
        target: &str,
        sbom_sha256: &str,
    ) -> Result<Option<Vec<Component>>, DbError> {
        let indexed = sqlx::query("SELECT sbom_sha256 FROM release_sboms WHERE target = $1")
            .bind(target)
            .fetch_optional(&self.pool)
            .await?;
        match indexed {
            Some(row) if row.try_get::<String, _>("sbom_sha256")? == sbom_sha256 => {}
            _ => return Ok(None),
        }
        let rows = sqlx::query(
            "SELECT reference, name, version, purl, cpe, component_group FROM release_components
             WHERE target = $1 ORDER BY position",
        )
        .bind(target)
        .fetch_all(&self.pool)
        .await?;
        let optional = |s: String| (!s.is_empty()).then_some(s);
        rows.iter()
            .map(|r| {
                Ok(Component {
                    reference: r.try_get("reference")?,
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    purl: optional(r.try_get("purl")?),
                    cpe: optional(r.try_get("cpe")?),
                    group: optional(r.try_get("component_group")?),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()
            .map(Some)
    }

    /// Stores `target`'s SBOM components (replacing what an earlier SBOM of it gave), so
    /// matching reads them without parsing the SBOM again.
    pub async fn store_release_components(
        &self,
        target: &str,
        sbom_sha256: &str,
        components: &[Component],
        now: i64,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM release_components WHERE target = $1")
            .bind(target)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM release_sboms WHERE target = $1")
            .bind(target)
            .execute(&mut *tx)
            .await?;
        // Two assessments (the risk watch and a posture request, or two servers) may index
        // the same release at once: the second waits for the first's row and then stores
        // nothing, as the components are the same parse of the same hash-checked SBOM.
        let inserted = sqlx::query(
            "INSERT INTO release_sboms (target, sbom_sha256, components, indexed_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (target) DO NOTHING",
        )
        .bind(target)
        .bind(sbom_sha256)
        .bind(components.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        for (position, c) in components.iter().enumerate() {
            sqlx::query(
                "INSERT INTO release_components
                 (target, position, reference, name, version, purl, cpe, component_group)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(target)
            .bind(position as i64)
            .bind(&c.reference)
            .bind(&c.name)
            .bind(&c.version)
            .bind(c.purl.as_deref().unwrap_or(""))
            .bind(c.cpe.as_deref().unwrap_or(""))
            .bind(c.group.as_deref().unwrap_or(""))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
