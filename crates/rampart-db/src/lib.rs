//! Server storage: one sqlx code path (the `Any` driver, runtime queries, no macros) over
//! embedded SQLite (the default: one file, WAL, synchronous commits) and PostgreSQL (by URL, for
//! larger fleets). One set of migrations in the SQL both accept serves both; every
//! multi-statement change runs in a transaction, so nothing is half-written.
#![forbid(unsafe_code)]

mod audit_heads;
mod bulk;
mod campaigns;
mod ddi;
mod management;
mod poll;
mod webhooks;

use std::borrow::Cow;

pub use audit_heads::StoredAuditHead;
pub use campaigns::{Campaign, CampaignDevice, CampaignUpdate, DeviceInfo, ROLLBACK_SUFFIX};
pub use ddi::{
    DdiAction, DdiDeviceState, DdiFeedback, DdiModule, DdiTenant, DeletedDevice, EnrolledBy,
    Enrolment, MAX_STATUSES_PER_ACTION, NewAction, TenantSettings, tenant_name,
};
pub use management::{
    ApiToken, Assignment, AuditLine, DeviceAssignment, Group, MAX_ASSIGNMENT_DEVICES, UPDATE_TYPES,
};
pub use poll::PollState;
pub use webhooks::{
    AttemptOutcome, ClaimedDelivery, DeliveryMaker, DeliveryStatus, Enqueued, MAX_DELIVERY_CLAIM,
    MAX_PENDING_PER_WEBHOOK, MAX_WEBHOOK_BODY, MAX_WEBHOOK_SECRET, MAX_WEBHOOK_URL, MAX_WEBHOOKS,
    MIN_WEBHOOK_SECRET, NewWebhook, StoredSecret, WEBHOOK_EVENTS, Webhook, WebhookDelivery,
    check_webhook_events, check_webhook_secret, check_webhook_url,
};

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row, SqlSafeStr};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database URL {0:?} is not supported: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("database migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unknown device {0:?}")]
    UnknownDevice(String),
    #[error("unknown group {0:?}")]
    UnknownGroup(String),
    #[error("unknown assignment {0:?}")]
    UnknownAssignment(String),
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with stored state (e.g. a device in two active campaigns).
    #[error("{0}")]
    Conflict(String),
    /// A per-object limit is reached (e.g. feedback entries of one DDI action).
    #[error("{0}")]
    Quota(String),
}

/// The database behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The schema, in the SQL subset both backends accept (TEXT and BIGINT columns, `ON CONFLICT`).
/// A migration that needs backend-specific SQL gets a per-backend file here.
fn migrations() -> Vec<Migration> {
    let steps: [(i64, &'static str, &'static str); 9] = [
        (
            1,
            "inventory",
            include_str!("../migrations/0001_inventory.sql"),
        ),
        (
            2,
            "management",
            include_str!("../migrations/0002_management.sql"),
        ),
        (
            3,
            "campaigns",
            include_str!("../migrations/0003_campaigns.sql"),
        ),
        (
            4,
            "webhooks",
            include_str!("../migrations/0004_webhooks.sql"),
        ),
        (
            5,
            "assignment type and report order",
            include_str!("../migrations/0005_assignment_type_report_order.sql"),
        ),
        (6, "ddi", include_str!("../migrations/0006_ddi.sql")),
        (
            7,
            "device enrolment",
            include_str!("../migrations/0007_device_enrolment.sql"),
        ),
        (
            8,
            "webhook secrets and replies",
            include_str!("../migrations/0008_webhook_secrets_and_replies.sql"),
        ),
        (
            9,
            "audit heads",
            include_str!("../migrations/0009_audit_heads.sql"),
        ),
    ];
    steps
        .into_iter()
        .map(|(version, name, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(name),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect()
}

/// The file of a `sqlite://PATH` (or `sqlite:PATH`) URL, as sqlx reads it (percent-decoded, the
/// query string dropped); `None` for other URLs and in-memory databases.
pub fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() || path == ":memory:" || query.split('&').any(|p| p == "mode=memory") {
        return None;
    }
    // Percent-decoding, as sqlx does (`%3F` for a `?` in a file name).
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                decoded.push((hex(h)? * 16 + hex(l)?) as u8);
                i += 3;
            }
            (b, _, _) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(decoded)
        .ok()
        .map(std::path::PathBuf::from)
}

/// Makes a SQLite file owner-only (mode 0600): creates it so if `create` and it is missing,
/// else removes any group and other permissions it has.
fn private_sqlite_file(path: &std::path::Path, create: bool) -> Result<(), DbError> {
    let failed = |e: std::io::Error| {
        DbError::Invalid(format!(
            "cannot make the database file {} private (mode 0600): {e}; check the directory's ownership, or run `chmod 600` on the file",
            path.display()
        ))
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        if create {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                // A missing directory: sqlx says so in its own words.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(failed(e)),
            }
        }
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
                let mode = meta.permissions().mode() & 0o700;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(failed)?;
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(failed(e)),
        }
    }
    #[cfg(not(unix))]
    let _ = (path, create, failed);
    Ok(())
}

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
}

/// A status, progress or result report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub device_id: String,
    pub assignment: String,
    pub status: String,
    pub progress: u64,
    pub details: serde_json::Value,
    pub created: i64,
}

const MAX_TAGS: usize = 64;
const MAX_FIELD: usize = 256;
const MAX_JSON: usize = 16 * 1024;

pub(crate) fn check_text(what: &str, v: &str) -> Result<(), DbError> {
    if v.len() > MAX_FIELD || v.chars().any(char::is_control) {
        return Err(DbError::Invalid(format!(
            "{what} must be at most {MAX_FIELD} bytes without control characters"
        )));
    }
    Ok(())
}

pub(crate) fn json_text(what: &str, v: &impl Serialize) -> Result<String, DbError> {
    let s = serde_json::to_string(v).map_err(|e| DbError::Invalid(format!("{what}: {e}")))?;
    if s.len() > MAX_JSON {
        return Err(DbError::Invalid(format!("{what} is over {MAX_JSON} bytes")));
    }
    Ok(s)
}

impl DeviceFacts {
    /// Checks sizes and characters before anything is stored.
    pub fn validate(&self) -> Result<(), DbError> {
        for (what, v) in [
            ("hardware_id", &self.hardware_id),
            ("firmware_version", &self.firmware_version),
            ("region", &self.region),
        ] {
            check_text(what, v)?;
        }
        if self.tags.len() > MAX_TAGS {
            return Err(DbError::Invalid(format!("at most {MAX_TAGS} tags")));
        }
        for t in &self.tags {
            check_text("tag", t)?;
        }
        json_text("slots", &self.slots)?;
        json_text("attributes", &self.attributes)?;
        if self.security_version > i64::MAX as u64 {
            return Err(DbError::Invalid("security_version is too large".into()));
        }
        Ok(())
    }
}

/// The server's database.
#[derive(Clone)]
pub struct Db {
    pub(crate) pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects and migrates. `sqlite://PATH` (created if missing) or `postgres://...`.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(DbError::UnsupportedUrl(url.to_string()));
        };
        let file = match backend {
            Backend::Sqlite => sqlite_file(url),
            Backend::Postgres => None,
        };
        if let Some(dir) = file.as_deref().and_then(std::path::Path::parent)
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return Err(DbError::Invalid(format!(
                "cannot create the database in {}: no such directory; create it or give another path",
                dir.display()
            )));
        }
        if let Some(file) = &file {
            // The database holds webhook secrets (sealed) and the audit log: created owner-only
            // before SQLite opens it, as SQLite gives its -wal and -shm files the database's mode.
            let creates = !url.contains('?') || url.contains("mode=rwc");
            private_sqlite_file(file, creates)?;
        }
        let pool = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_string()
                } else {
                    format!("{url}?mode=rwc")
                };
                // No liveness ping before each use: an embedded file has no far end to lose, and
                // the ping costs a round trip to the connection's worker thread per query.
                AnyPoolOptions::new()
                    .max_connections(4)
                    .test_before_acquire(false)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL for concurrent readers; FULL so a committed report survives power
                            // loss, not only a process crash; wait rather than fail on a busy file.
                            sqlx::query("PRAGMA journal_mode = WAL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA synchronous = FULL")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA foreign_keys = ON")
                                .execute(&mut *conn)
                                .await?;
                            sqlx::query("PRAGMA busy_timeout = 5000")
                                .execute(&mut *conn)
                                .await?;
                            Ok(())
                        })
                    })
                    .connect(&url)
                    .await?
            }
            Backend::Postgres => {
                // A liveness ping (one network round trip) only before reusing a connection that
                // sat idle for a second or more, not before every query of a busy server.
                AnyPoolOptions::new()
                    .max_connections(16)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for >= std::time::Duration::from_secs(1) {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect(url)
                    .await?
            }
        };
        Migrator::with_migrations(migrations()).run(&pool).await?;
        if let Some(file) = &file {
            // WAL mode is on by now, so -wal and -shm exist: make sure they are owner-only too
            // (a file left by an older server, or made under another umask, is tightened).
            for companion in ["-wal", "-shm"] {
                let mut name = file.clone().into_os_string();
                name.push(companion);
                let path = std::path::PathBuf::from(name);
                if path.exists() {
                    private_sqlite_file(&path, false)?;
                }
            }
        }
        Ok(Db { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction that writes. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`), so it waits for another writer under the busy timeout; a deferred
    /// transaction that reads first and then writes fails at once with SQLITE_BUSY instead.
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

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
        sqlx::query(
            "INSERT INTO devices (id, hardware_id, firmware_version, security_version, region, slots, attributes, first_seen, last_seen)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)
             ON CONFLICT (id) DO UPDATE SET hardware_id = $2, firmware_version = $3, security_version = $4,
                 region = $5, slots = $6, attributes = $7, last_seen = $8",
        )
        .bind(id)
        .bind(&facts.hardware_id)
        .bind(&facts.firmware_version)
        .bind(facts.security_version as i64)
        .bind(&facts.region)
        .bind(json_text("slots", &facts.slots)?)
        .bind(json_text("attributes", &facts.attributes)?)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        for tag in &facts.tags {
            sqlx::query(
                "INSERT INTO device_tags (device_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(tag)
            .execute(&mut *tx)
            .await?;
        }
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
        management::insert_audit(&mut tx, audit).await?;
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
            return Err(DbError::UnknownDevice(id.to_string()));
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
        let mut sql = String::from("SELECT d.* FROM devices d WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let param = |binds: &mut Vec<String>, v: String| {
            binds.push(v);
            format!("${}", binds.len())
        };
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

    pub async fn device_count(&self) -> Result<i64, DbError> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM devices")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?)
    }

    /// Stores a report durably; the device must exist. Returns once committed.
    pub async fn insert_report(&self, r: &Report) -> Result<(), DbError> {
        self.insert_report_audited(r, None).await
    }

    /// Stores a report and, if given, its audit record, in one transaction.
    pub async fn insert_report_audited(
        &self,
        r: &Report,
        audit: Option<&AuditLine>,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        insert_report_tx(&mut tx, r).await?;
        if let Some(audit) = audit {
            management::insert_audit(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn reports_of(&self, device_id: &str) -> Result<Vec<Report>, DbError> {
        let rows =
            sqlx::query("SELECT * FROM reports WHERE device_id = $1 ORDER BY created, seq, id")
                .bind(device_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(report_from_row).collect()
    }

    /// A device's newest reports, newest first, at most `limit` (1 to 10,000).
    pub async fn recent_reports(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<Report>, DbError> {
        let rows = sqlx::query(
            "SELECT * FROM reports WHERE device_id = $1 ORDER BY created DESC, seq DESC, id DESC LIMIT $2",
        )
        .bind(device_id)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(report_from_row).collect()
    }

    /// Whether the device has reported a result (not progress) for `assignment`.
    pub async fn has_result_for(&self, device_id: &str, assignment: &str) -> Result<bool, DbError> {
        let found = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 AS found FROM reports WHERE device_id = $1 AND assignment = $2 AND status NOT IN {PROGRESS_STATUSES} LIMIT 1"
        )))
        .bind(device_id)
        .bind(assignment)
        .fetch_optional(&self.pool)
        .await?;
        // The first result is enough; counting a device's reports is not needed.
        Ok(found.is_some())
    }

    /// One report of a device, by its id.
    pub async fn report(&self, device_id: &str, id: &str) -> Result<Option<Report>, DbError> {
        let row = sqlx::query("SELECT * FROM reports WHERE device_id = $1 AND id = $2")
            .bind(device_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(report_from_row).transpose()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Stores a report inside `tx`: the device must exist; the per-device sequence keeps arrival
/// order within a second.
pub(crate) async fn insert_report_tx(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &Report,
) -> Result<(), DbError> {
    check_text("report id", &r.id)?;
    check_text("status", &r.status)?;
    check_text("assignment", &r.assignment)?;
    let details = json_text("details", &r.details)?;
    // The device's next report number; also proves the device exists.
    let Some(row) = sqlx::query(
        "UPDATE devices SET report_seq = report_seq + 1 WHERE id = $1 RETURNING report_seq",
    )
    .bind(&r.device_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Err(DbError::UnknownDevice(r.device_id.clone()));
    };
    let seq: i64 = row.try_get("report_seq")?;
    sqlx::query("INSERT INTO reports (id, device_id, assignment, status, progress, details, created, seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(&r.id)
        .bind(&r.device_id)
        .bind(&r.assignment)
        .bind(&r.status)
        .bind(r.progress.min(i64::MAX as u64) as i64)
        .bind(details)
        .bind(r.created)
        .bind(seq)
        .execute(&mut **tx)
        .await?;
    if seq % REPORT_QUOTA_CHECK_EVERY == 0 {
        enforce_report_quota(tx, &r.device_id).await?;
    }
    Ok(())
}

/// Reports one device may keep stored. Past it, the device's oldest progress reports are
/// deleted (see [`PROGRESS_REPORTS_KEPT`]); results (`installed`, `failed`, `rolled_back`, ...)
/// never are: when results alone fill the quota, new reports are refused with
/// [`DbError::Quota`] (the device keeps them queued and an operator can look at why a device
/// reports so much).
pub const REPORTS_PER_DEVICE: i64 = 5_000;
/// The newest progress reports of a device kept when its reports are compacted.
pub const PROGRESS_REPORTS_KEPT: i64 = 100;
/// The quota is checked on every this-many-th report of a device (counting is not free), so a
/// device may briefly hold up to this many reports over it.
pub const REPORT_QUOTA_CHECK_EVERY: i64 = 64;
/// Statuses that say how far a device got, as opposed to results; compaction may delete them.
const PROGRESS_STATUSES: &str = "('downloading', 'installing', 'rebooting')";

async fn device_report_count(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    device_id: &str,
) -> Result<i64, DbError> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM reports WHERE device_id = $1")
        .bind(device_id)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get("n")?)
}

async fn enforce_report_quota(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    device_id: &str,
) -> Result<(), DbError> {
    if device_report_count(tx, device_id).await? <= REPORTS_PER_DEVICE {
        return Ok(());
    }
    // Every progress report older than the newest PROGRESS_REPORTS_KEPT goes.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM reports WHERE device_id = $1 AND status IN {PROGRESS_STATUSES} AND seq <= \
         (SELECT seq FROM reports WHERE device_id = $1 AND status IN {PROGRESS_STATUSES} \
          ORDER BY seq DESC LIMIT 1 OFFSET $2)"
    )))
    .bind(device_id)
    .bind(PROGRESS_REPORTS_KEPT)
    .execute(&mut **tx)
    .await?;
    if device_report_count(tx, device_id).await? > REPORTS_PER_DEVICE {
        return Err(DbError::Quota(format!(
            "device {device_id:?} already has {REPORTS_PER_DEVICE} stored results, its quota: further reports are refused (the device keeps them queued); an operator should find out why it reports so much"
        )));
    }
    Ok(())
}

fn report_from_row(r: &AnyRow) -> Result<Report, DbError> {
    Ok(Report {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        assignment: r.try_get("assignment")?,
        status: r.try_get("status")?,
        progress: r.try_get::<i64, _>("progress")?.max(0) as u64,
        details: serde_json::from_str(&r.try_get::<String, _>("details")?).unwrap_or_default(),
        created: r.try_get("created")?,
    })
}
