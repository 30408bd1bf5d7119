//! Server storage: one sqlx code path (the `Any` driver, runtime queries, no macros) over
//! embedded SQLite (the default: one file, WAL, synchronous commits) and PostgreSQL (by URL, for
//! larger fleets). One set of migrations in the SQL both accept serves both; every
//! multi-statement change runs in a transaction, so nothing is half-written.
#![forbid(unsafe_code)]

mod alerts;
mod assignments;
mod attestation;
mod audit;
mod audit_heads;
mod bulk;
mod campaigns;
mod console_sessions;
mod ddi;
mod detectors;
mod devices;
mod error;
mod evidence;
mod groups;
mod incidents;
mod indicators;
mod poll;
mod quarantine;
mod reports;
mod risk;
mod risk_exposure;
mod risk_nvd;
mod sql;
mod tokens;
mod vex;
mod webhooks;

use std::borrow::Cow;

pub use alerts::{
    ALERT_SINK_SYSLOG, ALERT_SINK_WEBHOOKS, AlertAttempt, AlertQueued, AlertSinkStats,
    ClaimedAlert, INCIDENT_ALERT_EVENT, MAX_ALERT_BODY,
};
pub use assignments::{Assignment, DeviceAssignment, MAX_ASSIGNMENT_DEVICES, UPDATE_TYPES};
pub use attestation::{
    ApprovedEk, AttestationKey, AttestationState, CheckOutcome, CheckResult, EkBasis, IssuedNonce,
    MAX_ATTESTATION_REASON, MAX_SECURITY_EVENTS_READ, MAX_TPM_STRUCTURE, NonceClaim,
    PendingEnrolment, QuoteCounters, SecurityEvent,
};
pub use audit::AuditLine;
pub use audit_heads::StoredAuditHead;
pub use campaigns::{Campaign, CampaignDevice, CampaignUpdate, DeviceInfo, ROLLBACK_SUFFIX};
pub use console_sessions::{ConsoleSession, SessionLimits};
pub use ddi::{
    DdiAction, DdiDeviceState, DdiFeedback, DdiModule, DdiTenant, DeletedDevice, EnrolledBy,
    Enrolment, MAX_STATUSES_PER_ACTION, NewAction, TenantSettings, tenant_name,
};
pub use detectors::{InventoryRow, MAX_SIGNAL_READ, ReportCursor, ReportSignal, StaleAttestation};
pub use devices::{Device, DeviceFacts, DeviceFilter, DevicePage, FleetCounts, MAX_COUNTED_VALUES};
pub use error::{DbError, DomainError, StorageError};
pub use evidence::{
    EvidenceBundle, EvidenceQuota, EvidenceRequest, EvidenceState, EvidenceUsage,
    MAX_EVIDENCE_CERTIFICATE, MAX_EVIDENCE_LIST, MAX_EVIDENCE_REASON,
};
pub use groups::Group;
pub use incidents::{
    Incident, IncidentAction, IncidentDevice, IncidentFilter, IncidentProgress, IncidentTarget,
    IncidentWrite, MAX_ACTION_CLAIM, MAX_INCIDENT_DEVICES_READ, MAX_INCIDENT_PAGE,
    MAX_PLAYBOOKS_BYTES, MAX_TIMELINE_READ, PlannedAction, StoredPlaybooks, TimelineEntry,
};
pub use indicators::{MAX_INDICATOR_CAMPAIGNS, MAX_INDICATOR_ROWS, ResultCount};
pub use poll::PollState;
pub use quarantine::{
    MAX_ACK_DETAIL, NewQuarantine, QUARANTINED_OUTCOME, Quarantine, QuarantineAckRecord,
    QuarantineMark, QuarantineRelease,
};
pub use reports::{PROGRESS_REPORTS_KEPT, REPORT_QUOTA_CHECK_EVERY, REPORTS_PER_DEVICE, Report};
pub use risk::{
    AdvisoryImport, ImportCounts, MAX_ADVISORIES_PER_IMPORT, MAX_ALIAS_LOOKUP,
    MAX_RISK_DEVICE_PAGE, RiskDevice, StoredAdvisory,
};
pub use risk_exposure::{
    ExposureChange, ExposureRecord, MAX_ADVISORY_READ, MAX_EXPOSURE_PAGE, MAX_WATCHED_ADVISORIES,
    RISK_ADVISORY_EVENT, SavedPass, WatchedAdvisory,
};
pub use risk_nvd::{MAX_NVD_PER_IMPORT, NvdImport, StoredNvd};
pub use tokens::ApiToken;
pub use vex::{MAX_VEX_DOCUMENTS, MAX_VEX_PAGE, VexDocumentSummary, VexImport};
pub use webhooks::{
    AttemptOutcome, ClaimedDelivery, DeliveryMaker, DeliveryStatus, Enqueued, MAX_DELIVERY_CLAIM,
    MAX_PENDING_PER_WEBHOOK, MAX_WEBHOOK_BODY, MAX_WEBHOOK_SECRET, MAX_WEBHOOK_URL, MAX_WEBHOOKS,
    MIN_WEBHOOK_SECRET, NewWebhook, StoredSecret, WEBHOOK_EVENTS, Webhook, WebhookDelivery,
    check_webhook_events, check_webhook_secret, check_webhook_url,
};

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr};

/// The database behind a [`Db`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The schema, in the SQL subset both backends accept (TEXT and BIGINT columns, `ON CONFLICT`).
/// A migration that needs backend-specific SQL gets a per-backend file here.
fn migrations() -> Vec<Migration> {
    let steps: &[(i64, &'static str, &'static str)] = &[
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
        (
            10,
            "attestation",
            include_str!("../migrations/0010_attestation.sql"),
        ),
        (
            11,
            "incidents",
            include_str!("../migrations/0011_incidents.sql"),
        ),
        (
            12,
            "quarantine releases",
            include_str!("../migrations/0012_quarantine_releases.sql"),
        ),
        (
            13,
            "reimage",
            include_str!("../migrations/0013_reimage.sql"),
        ),
        (
            14,
            "evidence",
            include_str!("../migrations/0014_evidence.sql"),
        ),
        (15, "alerts", include_str!("../migrations/0015_alerts.sql")),
        (
            16,
            "incident playbooks",
            include_str!("../migrations/0016_incident_playbooks.sql"),
        ),
        (
            17,
            "detectors",
            include_str!("../migrations/0017_detectors.sql"),
        ),
        (
            18,
            "device changes",
            include_str!("../migrations/0018_device_changes.sql"),
        ),
        (19, "risk", include_str!("../migrations/0019_risk.sql")),
        (
            20,
            "risk exposure",
            include_str!("../migrations/0020_risk_exposure.sql"),
        ),
        (21, "vex", include_str!("../migrations/0021_vex.sql")),
        (22, "nvd", include_str!("../migrations/0022_nvd.sql")),
        (
            23,
            "slot_versions",
            include_str!("../migrations/0023_slot_versions.sql"),
        ),
        (
            24,
            "console sessions",
            include_str!("../migrations/0024_console_sessions.sql"),
        ),
        (
            25,
            "indicators",
            include_str!("../migrations/0025_indicators.sql"),
        ),
    ];
    steps
        .iter()
        .map(|&(version, name, sql)| {
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
        DbError::Domain(DomainError::Invalid(format!(
            "cannot make the database file {} private (mode 0600): {e}; check the directory's ownership, or run `chmod 600` on the file",
            path.display()
        )))
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
            return Err(DbError::Storage(StorageError::UnsupportedUrl(
                url.to_string(),
            )));
        };
        let file = match backend {
            Backend::Sqlite => sqlite_file(url),
            Backend::Postgres => None,
        };
        if let Some(dir) = file.as_deref().and_then(std::path::Path::parent)
            && !dir.as_os_str().is_empty()
            && !dir.is_dir()
        {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "cannot create the database in {}: no such directory; create it or give another path",
                dir.display()
            ))));
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

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
