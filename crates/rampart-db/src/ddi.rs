//! Storage of the hawkBit DDI front: tenants, device membership and tokens, software modules,
//! actions and their feedback (see migration 0006 and `docs/ddi.md`).

use crate::error::DomainError;
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::audit::insert_audit;
use crate::reports::insert_report_tx;
use crate::sql::{check_text, json_text};
use crate::{AuditLine, Db, DbError, DeviceAssignment, Report};

/// A device's active action (open or being cancelled): the oldest, as hawkBit offers it.
const ACTIVE_ACTION: &str = "SELECT * FROM ddi_actions WHERE device_id = $1 AND state IN ('open', 'canceling') ORDER BY id LIMIT 1";

/// Most feedback entries stored per action (hawkBit's default quota).
pub const MAX_STATUSES_PER_ACTION: i64 = 1000;

/// A DDI tenant and which authentication it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DdiTenant {
    /// Upper-case.
    pub name: String,
    pub target_token: bool,
    pub gateway_token: bool,
    /// Whether a gateway token is set (its digest is never shown).
    pub has_gateway_token: bool,
    pub mtls: bool,
    pub created: i64,
    #[serde(skip)]
    pub gateway_token_hash: String,
}

/// A tenant's settings as an operator sets them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSettings {
    pub target_token: bool,
    pub gateway_token: bool,
    pub mtls: bool,
    /// `Some(digest)` replaces the gateway token's digest; `None` keeps it.
    pub gateway_token_hash: Option<String>,
}

/// How a device row was enrolled (migration 0007, decision 0021): what may act for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrolledBy {
    /// Its device certificate (native mutual TLS, or a DDI tenant accepting certificates):
    /// only that certificate acts for it.
    Certificate,
    /// An operator issued it a TargetToken: that token (or the tenant's gateway token) acts
    /// for it, never a certificate.
    TargetToken,
    /// A tenant's GatewayToken brought it in: gateway and target tokens of that tenant act for
    /// it, never a certificate.
    GatewayToken,
}

impl EnrolledBy {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolledBy::Certificate => "certificate",
            EnrolledBy::TargetToken => "target_token",
            EnrolledBy::GatewayToken => "gateway_token",
        }
    }

    /// The stored spelling; anything else reads as a target token, the enrolment neither a
    /// certificate nor a gateway token may act for.
    pub fn from_stored(s: &str) -> EnrolledBy {
        match s {
            "certificate" => EnrolledBy::Certificate,
            "gateway_token" => EnrolledBy::GatewayToken,
            _ => EnrolledBy::TargetToken,
        }
    }
}

/// How and in which DDI tenant a device row was enrolled (`tenant` is empty for a native
/// enrolment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrolment {
    pub by: EnrolledBy,
    pub tenant: String,
}

impl Enrolment {
    pub(crate) fn from_row(row: &AnyRow) -> Result<Enrolment, DbError> {
        Ok(Enrolment {
            by: EnrolledBy::from_stored(&row.try_get::<String, _>("enrolled_by")?),
            tenant: row.try_get("enrolled_tenant")?,
        })
    }
}

/// What deleting a device removed (for its audit record and the operator).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeletedDevice {
    pub reports: u64,
    pub ddi_actions: u64,
}

/// What a DDI request needs to know about a device, in one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdiDeviceState {
    pub revoked: bool,
    pub enrolment: Enrolment,
    /// `None`: the device has no DDI membership yet.
    pub tenant: Option<String>,
    pub token_hash: String,
    pub request_attributes: bool,
    pub assignment: Option<DeviceAssignment>,
}

/// A release as a DDI software module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DdiModule {
    pub id: i64,
    pub target: String,
    pub filename: String,
    pub version: String,
    pub size: i64,
    pub sha1: String,
    pub md5: String,
    pub sha256: String,
}

/// A DDI action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DdiAction {
    pub id: i64,
    pub device_id: String,
    pub assignment_id: String,
    pub assignment_version: i64,
    pub target: String,
    pub module_id: i64,
    pub update_type: String,
    pub forced_at: i64,
    pub state: String,
    pub statuses: i64,
    pub created: i64,
    pub closed: i64,
    /// The device refused a cancellation of it: it is not cancelled again.
    pub cancel_rejected: bool,
}

/// A new action, before it has an id.
#[derive(Debug, Clone)]
pub struct NewAction<'a> {
    pub device_id: &'a str,
    pub assignment_id: &'a str,
    pub assignment_version: i64,
    pub target: &'a str,
    pub module_id: i64,
    pub update_type: &'a str,
    pub forced_at: i64,
    pub now: i64,
}

/// One feedback to store: the action's state change (if any), its messages, and the native
/// report it counts as.
#[derive(Debug, Clone)]
pub struct DdiFeedback<'a> {
    pub action_id: i64,
    /// The state the caller decided from; the write fails with a conflict if it changed.
    pub expected_state: &'a str,
    pub new_state: &'a str,
    pub execution: &'a str,
    pub finished: &'a str,
    pub messages: &'a [String],
    pub report: Option<&'a Report>,
    pub now: i64,
}

fn tenant_from_row(r: &AnyRow) -> Result<DdiTenant, DbError> {
    let hash: String = r.try_get("gateway_token_hash")?;
    Ok(DdiTenant {
        name: r.try_get("name")?,
        target_token: r.try_get::<i64, _>("target_token")? != 0,
        gateway_token: r.try_get::<i64, _>("gateway_token")? != 0,
        has_gateway_token: !hash.is_empty(),
        mtls: r.try_get::<i64, _>("mtls")? != 0,
        created: r.try_get("created")?,
        gateway_token_hash: hash,
    })
}

fn device_state_from_row(row: &AnyRow, device_id: &str) -> Result<DdiDeviceState, DbError> {
    Ok(DdiDeviceState {
        revoked: row.try_get::<i64, _>("revoked")? != 0,
        enrolment: Enrolment::from_row(row)?,
        tenant: row.try_get("tenant")?,
        token_hash: row
            .try_get::<Option<String>, _>("token_hash")?
            .unwrap_or_default(),
        request_attributes: row
            .try_get::<Option<i64>, _>("request_attributes")?
            .unwrap_or(1)
            != 0,
        assignment: crate::poll::assignment_from_joined_row(row, device_id)?,
    })
}

fn module_from_row(r: &AnyRow) -> Result<DdiModule, DbError> {
    Ok(DdiModule {
        id: r.try_get("id")?,
        target: r.try_get("target")?,
        filename: r.try_get("filename")?,
        version: r.try_get("version")?,
        size: r.try_get("size")?,
        sha1: r.try_get("sha1")?,
        md5: r.try_get("md5")?,
        sha256: r.try_get("sha256")?,
    })
}

fn action_from_row(r: &AnyRow) -> Result<DdiAction, DbError> {
    Ok(DdiAction {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        assignment_id: r.try_get("assignment_id")?,
        assignment_version: r.try_get("assignment_version")?,
        target: r.try_get("target")?,
        module_id: r.try_get("module_id")?,
        update_type: r.try_get("update_type")?,
        forced_at: r.try_get("forced_at")?,
        state: r.try_get("state")?,
        statuses: r.try_get("statuses")?,
        created: r.try_get("created")?,
        closed: r.try_get("closed")?,
        cancel_rejected: r.try_get::<i64, _>("cancel_rejected")? != 0,
    })
}

/// Checks a tenant name: 1 to 64 ASCII letters, digits, `-` and `_` (it is a URL path
/// segment); returns it upper-cased.
pub fn tenant_name(name: &str) -> Result<String, DbError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(DbError::Domain(DomainError::Invalid(format!(
            "tenant name {:?} must be 1 to 64 ASCII letters, digits, '-' or '_'",
            name.chars().take(80).collect::<String>()
        ))));
    }
    Ok(name.to_ascii_uppercase())
}

async fn next_id(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    counter: &str,
) -> Result<i64, DbError> {
    let row = sqlx::query("UPDATE ddi_counters SET next = next + 1 WHERE name = $1 RETURNING next")
        .bind(counter)
        .fetch_one(&mut **tx)
        .await?;
    Ok(row.try_get::<i64, _>("next")? - 1)
}

impl Db {
    // ---- tenants ---------------------------------------------------------------------------

    /// Creates a tenant (refused if it exists), with its audit record.
    pub async fn create_ddi_tenant(
        &self,
        name: &str,
        settings: &TenantSettings,
        now: i64,
        audit: &AuditLine,
    ) -> Result<DdiTenant, DbError> {
        let name = tenant_name(name)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "INSERT INTO ddi_tenants (name, target_token, gateway_token, gateway_token_hash, mtls, created)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&name)
        .bind(i64::from(settings.target_token))
        .bind(i64::from(settings.gateway_token))
        .bind(settings.gateway_token_hash.clone().unwrap_or_default())
        .bind(i64::from(settings.mtls))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(DbError::Domain(DomainError::Conflict(format!(
                "tenant {name} already exists"
            ))));
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        self.ddi_tenant(&name)
            .await?
            .ok_or_else(|| DbError::Domain(DomainError::Invalid(format!("tenant {name} vanished"))))
    }

    /// Changes a tenant's settings, with its audit record; `None` if it does not exist.
    pub async fn update_ddi_tenant(
        &self,
        name: &str,
        settings: &TenantSettings,
        audit: &AuditLine,
    ) -> Result<Option<DdiTenant>, DbError> {
        let name = tenant_name(name)?;
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE ddi_tenants SET target_token = $2, gateway_token = $3, mtls = $4,
                 gateway_token_hash = COALESCE($5, gateway_token_hash) WHERE name = $1",
        )
        .bind(&name)
        .bind(i64::from(settings.target_token))
        .bind(i64::from(settings.gateway_token))
        .bind(i64::from(settings.mtls))
        .bind(settings.gateway_token_hash.clone())
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(None);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        self.ddi_tenant(&name).await
    }

    pub async fn ddi_tenant(&self, name: &str) -> Result<Option<DdiTenant>, DbError> {
        let Ok(name) = tenant_name(name) else {
            return Ok(None);
        };
        sqlx::query("SELECT * FROM ddi_tenants WHERE name = $1")
            .bind(&name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(tenant_from_row)
            .transpose()
    }

    pub async fn ddi_tenants(&self) -> Result<Vec<DdiTenant>, DbError> {
        sqlx::query("SELECT * FROM ddi_tenants ORDER BY name")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(tenant_from_row)
            .collect()
    }

    // ---- devices ---------------------------------------------------------------------------

    /// Makes `device_id` (registered if new) a member of `tenant` with the given TargetToken
    /// digest, replacing an earlier one; refused if it belongs to another tenant. With
    /// `hardware_id`, records the device's hardware (DDI clients do not report it). A device its
    /// certificate enrolled gets a token only with `bind_certificate_device` (the operator's
    /// explicit choice that the token also speaks for it); its enrolment stays the certificate's.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_ddi_target_token(
        &self,
        device_id: &str,
        tenant: &str,
        token_hash: &str,
        hardware_id: Option<&str>,
        bind_certificate_device: bool,
        now: i64,
        audit: &AuditLine,
    ) -> Result<(), DbError> {
        check_text("device id", device_id)?;
        if let Some(hw) = hardware_id {
            check_text("hardware id", hw)?;
        }
        let tenant = tenant_name(tenant)?;
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 AS one FROM ddi_tenants WHERE name = $1")
            .bind(&tenant)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Err(DbError::Domain(DomainError::Invalid(format!(
                "unknown tenant {tenant}; create it first (rampart ddi tenant create {tenant})"
            ))));
        }
        sqlx::query(
            "INSERT INTO devices (id, first_seen, last_seen, enrolled_by, enrolled_tenant)
             VALUES ($1, $2, $2, 'target_token', $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(device_id)
        .bind(now)
        .bind(&tenant)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query("SELECT enrolled_by, enrolled_tenant FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_one(&mut *tx)
            .await?;
        let certificate_row = Enrolment::from_row(&row)?.by == EnrolledBy::Certificate;
        if certificate_row && !bind_certificate_device {
            return Err(DbError::Domain(DomainError::Conflict(format!(
                "device {device_id} was enrolled with its device certificate, so only that certificate acts for it; let it use DDI with its certificate (PUT /api/v1/ddi/tenants/{tenant} {{\"mtls\": true}}), or, if a token must also speak for it, issue one with {{\"bind_certificate_device\": true}}"
            ))));
        }
        if !certificate_row {
            // The operator vouches for this controller by name now (a gateway-enrolled row
            // becomes a target-token row).
            sqlx::query(
                "UPDATE devices SET enrolled_by = 'target_token', enrolled_tenant = $2 WHERE id = $1",
            )
            .bind(device_id)
            .bind(&tenant)
            .execute(&mut *tx)
            .await?;
        }
        let current = sqlx::query("SELECT tenant FROM ddi_devices WHERE device_id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = current {
            let other: String = row.try_get("tenant")?;
            if other != tenant {
                return Err(DbError::Domain(DomainError::Conflict(format!(
                    "device {device_id} belongs to tenant {other}, not {tenant}"
                ))));
            }
        }
        if let Some(hw) = hardware_id {
            sqlx::query("UPDATE devices SET hardware_id = $2 WHERE id = $1")
                .bind(device_id)
                .bind(hw)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO ddi_devices (device_id, tenant, token_hash, created) VALUES ($1, $2, $3, $4)
             ON CONFLICT (device_id) DO UPDATE SET token_hash = excluded.token_hash",
        )
        .bind(device_id)
        .bind(&tenant)
        .bind(token_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Registers a device that a gateway token or its certificate (`by`) vouched for: the
    /// inventory row if new (enrolled by `by` in `tenant`), and its membership of `tenant` if
    /// it has none, with the audit record of the join (nothing is written if it already had a
    /// membership). An existing row joins only if `by` may act for it (a certificate for a
    /// certificate's row, a gateway token for a token's row); else `Conflict`, so a row another
    /// request created a moment earlier is never taken over. Returns whether the device was new
    /// to the inventory.
    pub async fn join_ddi_tenant(
        &self,
        device_id: &str,
        tenant: &str,
        by: EnrolledBy,
        now: i64,
        audit: &AuditLine,
    ) -> Result<bool, DbError> {
        check_text("device id", device_id)?;
        let tenant = tenant_name(tenant)?;
        let mut tx = self.begin_write().await?;
        let new = sqlx::query(
            "INSERT INTO devices (id, first_seen, last_seen, enrolled_by, enrolled_tenant)
             VALUES ($1, $2, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(device_id)
        .bind(now)
        .bind(by.as_str())
        .bind(&tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !new {
            let row = sqlx::query("SELECT enrolled_by, enrolled_tenant FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_one(&mut *tx)
                .await?;
            let stored = Enrolment::from_row(&row)?;
            let fits = match by {
                EnrolledBy::Certificate => stored.by == EnrolledBy::Certificate,
                _ => stored.by != EnrolledBy::Certificate && stored.tenant == tenant,
            };
            if !fits {
                return Err(DbError::Domain(DomainError::Conflict(format!(
                    "device {device_id} was enrolled by {} and may not join by {}",
                    stored.by.as_str(),
                    by.as_str()
                ))));
            }
        }
        let joined = sqlx::query(
            "INSERT INTO ddi_devices (device_id, tenant, created) VALUES ($1, $2, $3)
             ON CONFLICT (device_id) DO NOTHING",
        )
        .bind(device_id)
        .bind(&tenant)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !joined {
            return Ok(false);
        }
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(new)
    }

    /// What a DDI request needs, in one query: the tenant (`None`: no such tenant) and the
    /// device's revocation, membership and assignment (`None`: not in the inventory).
    pub async fn ddi_request_view(
        &self,
        tenant: &str,
        device_id: &str,
    ) -> Result<Option<(DdiTenant, Option<DdiDeviceState>)>, DbError> {
        let Ok(tenant) = tenant_name(tenant) else {
            return Ok(None);
        };
        let Some(row) = sqlx::query(
            "SELECT t.name AS name, t.target_token AS target_token, t.gateway_token AS gateway_token,
                    t.gateway_token_hash AS gateway_token_hash, t.mtls AS mtls, t.created AS created,
                    d.id AS device_id, d.revoked AS revoked, d.enrolled_by AS enrolled_by,
                    d.enrolled_tenant AS enrolled_tenant, m.tenant AS tenant,
                    m.token_hash AS token_hash, m.request_attributes AS request_attributes,
                    a.assignment_id AS assignment_id, a.target AS target, a.version AS version,
                    a.updated AS updated, a.update_type AS update_type, a.forced_at AS forced_at,
                    a.reimage AS reimage
             FROM ddi_tenants t
             LEFT JOIN devices d ON d.id = $2
             LEFT JOIN ddi_devices m ON m.device_id = d.id
             LEFT JOIN device_assignments a ON a.device_id = d.id
             WHERE t.name = $1",
        )
        .bind(&tenant)
        .bind(device_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let state = match row.try_get::<Option<String>, _>("device_id")? {
            None => None,
            Some(_) => Some(device_state_from_row(&row, device_id)?),
        };
        Ok(Some((tenant_from_row(&row)?, state)))
    }

    /// How a device row was enrolled; `None` if it is not in the inventory.
    pub async fn device_enrolment(&self, device_id: &str) -> Result<Option<Enrolment>, DbError> {
        sqlx::query("SELECT enrolled_by, enrolled_tenant FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(Enrolment::from_row)
            .transpose()
    }

    /// Deletes a device and everything stored of it (reports, DDI membership, actions and
    /// their messages; assignments, tags, group and campaign rows go with it), with its audit
    /// record, in one transaction; `UnknownDevice` if there is no such device. How an operator
    /// resolves a row that the wrong identity enrolled (decision 0021): the device enrols
    /// afresh at its next contact.
    pub async fn delete_device(
        &self,
        device_id: &str,
        audit: &AuditLine,
    ) -> Result<DeletedDevice, DbError> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT 1 AS one FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_none()
        {
            return Err(DbError::Domain(DomainError::UnknownDevice(
                device_id.to_owned(),
            )));
        }
        sqlx::query(
            "DELETE FROM ddi_action_messages WHERE action_id IN
                 (SELECT id FROM ddi_actions WHERE device_id = $1)",
        )
        .bind(device_id)
        .execute(&mut *tx)
        .await?;
        let ddi_actions = sqlx::query("DELETE FROM ddi_actions WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        // Named one by one rather than left to ON DELETE CASCADE: SQLite enforces foreign keys
        // only when the connection asks, and a re-enrolled device must inherit nothing.
        for table in [
            "ddi_devices",
            "device_assignments",
            "device_tags",
            "group_members",
            "campaign_devices",
            "attestation_keys",
            "attestation_challenges",
            "attestation_nonces",
            "attestation_states",
        ] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE device_id = $1"
            )))
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        }
        let reports = sqlx::query("DELETE FROM reports WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM devices WHERE id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        insert_audit(&mut tx, audit).await?;
        tx.commit().await?;
        Ok(DeletedDevice {
            reports,
            ddi_actions,
        })
    }

    /// Sets whether the server asks the device for its attributes (the configData link).
    pub async fn set_ddi_request_attributes(
        &self,
        device_id: &str,
        request: bool,
    ) -> Result<(), DbError> {
        sqlx::query("UPDATE ddi_devices SET request_attributes = $2 WHERE device_id = $1")
            .bind(device_id)
            .bind(i64::from(request))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The maintenance windows (stored JSON) of the groups the device belongs to.
    pub async fn device_windows(&self, device_id: &str) -> Result<Vec<String>, DbError> {
        sqlx::query(
            "SELECT g.maintenance_window AS window FROM group_members gm
             JOIN device_groups g ON g.name = gm.group_name
             WHERE gm.device_id = $1 AND g.maintenance_window <> ''",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("window").map_err(DbError::from))
        .collect()
    }

    // ---- modules ---------------------------------------------------------------------------

    pub async fn ddi_module_by_target(&self, target: &str) -> Result<Option<DdiModule>, DbError> {
        sqlx::query("SELECT * FROM ddi_modules WHERE target = $1")
            .bind(target)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(module_from_row)
            .transpose()
    }

    pub async fn ddi_module(&self, id: i64) -> Result<Option<DdiModule>, DbError> {
        sqlx::query("SELECT * FROM ddi_modules WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(module_from_row)
            .transpose()
    }

    /// Stores a module (its `id` is assigned here); if another request stored the same target
    /// first, returns that one.
    pub async fn insert_ddi_module(&self, m: &DdiModule, now: i64) -> Result<DdiModule, DbError> {
        let mut tx = self.begin_write().await?;
        if let Some(row) = sqlx::query("SELECT * FROM ddi_modules WHERE target = $1")
            .bind(&m.target)
            .fetch_optional(&mut *tx)
            .await?
        {
            return module_from_row(&row);
        }
        let id = next_id(&mut tx, "module").await?;
        sqlx::query(
            "INSERT INTO ddi_modules (id, target, filename, version, size, sha1, md5, sha256, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(&m.target)
        .bind(&m.filename)
        .bind(&m.version)
        .bind(m.size)
        .bind(&m.sha1)
        .bind(&m.md5)
        .bind(&m.sha256)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DdiModule { id, ..m.clone() })
    }

    // ---- actions ---------------------------------------------------------------------------

    pub async fn ddi_action(&self, id: i64) -> Result<Option<DdiAction>, DbError> {
        sqlx::query("SELECT * FROM ddi_actions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(action_from_row)
            .transpose()
    }

    /// The device's newest actions, newest first (at most `limit`).
    pub async fn ddi_actions_of(
        &self,
        device_id: &str,
        limit: i64,
    ) -> Result<Vec<DdiAction>, DbError> {
        sqlx::query("SELECT * FROM ddi_actions WHERE device_id = $1 ORDER BY id DESC LIMIT $2")
            .bind(device_id)
            .bind(limit.clamp(1, 1000))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(action_from_row)
            .collect()
    }

    /// The device's newest action of this assignment version, if any.
    pub async fn ddi_action_for(
        &self,
        device_id: &str,
        assignment_id: &str,
        assignment_version: i64,
    ) -> Result<Option<DdiAction>, DbError> {
        sqlx::query(
            "SELECT * FROM ddi_actions WHERE device_id = $1 AND assignment_id = $2
                 AND assignment_version = $3 ORDER BY id DESC LIMIT 1",
        )
        .bind(device_id)
        .bind(assignment_id)
        .bind(assignment_version)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(action_from_row)
        .transpose()
    }

    /// Opens an action, unless the device already has an active one (then returns that).
    pub async fn open_ddi_action(&self, a: &NewAction<'_>) -> Result<DdiAction, DbError> {
        let mut tx = self.begin_write().await?;
        if let Some(row) = sqlx::query(ACTIVE_ACTION)
            .bind(a.device_id)
            .fetch_optional(&mut *tx)
            .await?
        {
            return action_from_row(&row);
        }
        let id = next_id(&mut tx, "action").await?;
        let inserted = sqlx::query(
            "INSERT INTO ddi_actions (id, device_id, assignment_id, assignment_version, target,
                 module_id, update_type, forced_at, state, created)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'open', $9)",
        )
        .bind(id)
        .bind(a.device_id)
        .bind(a.assignment_id)
        .bind(a.assignment_version)
        .bind(a.target)
        .bind(a.module_id)
        .bind(a.update_type)
        .bind(a.forced_at)
        .bind(a.now)
        .execute(&mut *tx)
        .await;
        if let Err(e) = inserted {
            // A concurrent poll of the same device opened one first (the unique index on its
            // active action): answer with that one.
            drop(tx);
            if let Some(row) = sqlx::query(ACTIVE_ACTION)
                .bind(a.device_id)
                .fetch_optional(&self.pool)
                .await?
            {
                return action_from_row(&row);
            }
            return Err(e.into());
        }
        let row = sqlx::query("SELECT * FROM ddi_actions WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        action_from_row(&row)
    }

    /// In one query: the device's active action (open or being cancelled; the oldest, as
    /// hawkBit offers it) and its newest finished (installed) one.
    pub async fn ddi_actions_now(
        &self,
        device_id: &str,
    ) -> Result<(Option<DdiAction>, Option<DdiAction>), DbError> {
        let rows = sqlx::query(
            "SELECT * FROM (SELECT * FROM ddi_actions WHERE device_id = $1 AND state IN ('open', 'canceling')
                            ORDER BY id LIMIT 1) active
             UNION ALL
             SELECT * FROM (SELECT * FROM ddi_actions WHERE device_id = $1 AND state = 'finished'
                            ORDER BY id DESC LIMIT 1) installed",
        )
        .bind(device_id)
        .fetch_all(&self.pool)
        .await?;
        let (mut active, mut installed) = (None, None);
        for row in &rows {
            let a = action_from_row(row)?;
            if a.state == "finished" {
                installed = Some(a);
            } else {
                active = Some(a);
            }
        }
        Ok((active, installed))
    }

    /// Moves an open action to `canceling` (the assignment it came from was withdrawn or
    /// replaced); false if it was no longer open.
    pub async fn cancel_ddi_action(&self, id: i64) -> Result<bool, DbError> {
        let r = sqlx::query(
            "UPDATE ddi_actions SET state = 'canceling' WHERE id = $1 AND state = 'open'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores one feedback in one transaction: the state change (only from the state the
    /// caller decided from), the messages, the native report. Closing states set `closed`.
    /// `Conflict` if the state changed meanwhile; `Invalid` past the per-action quota.
    pub async fn record_ddi_feedback(&self, f: &DdiFeedback<'_>) -> Result<(), DbError> {
        let messages = serde_json::to_string(f.messages).map_err(|e| {
            DbError::Domain(DomainError::Invalid(format!("feedback messages: {e}")))
        })?;
        let closing = !matches!(f.new_state, "open" | "canceling");
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE ddi_actions SET state = $3, statuses = statuses + 1,
                 closed = CASE WHEN $4 = 1 THEN $5 ELSE closed END,
                 cancel_rejected = CASE WHEN $2 = 'canceling' AND $3 = 'open' THEN 1 ELSE cancel_rejected END
             WHERE id = $1 AND state = $2 AND (statuses < $6 OR $4 = 1)",
        )
        .bind(f.action_id)
        .bind(f.expected_state)
        .bind(f.new_state)
        .bind(i64::from(closing))
        .bind(f.now)
        .bind(MAX_STATUSES_PER_ACTION)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            let row = sqlx::query("SELECT state, statuses FROM ddi_actions WHERE id = $1")
                .bind(f.action_id)
                .fetch_optional(&mut *tx)
                .await?;
            return Err(match row {
                Some(row) if row.try_get::<i64, _>("statuses")? >= MAX_STATUSES_PER_ACTION => {
                    DbError::Domain(DomainError::Quota(format!(
                        "action {} already has {MAX_STATUSES_PER_ACTION} feedback entries, the most one action may have before it is closed",
                        f.action_id
                    )))
                }
                _ => DbError::Domain(DomainError::Conflict(format!(
                    "action {} changed while this feedback was processed; send it again",
                    f.action_id
                ))),
            });
        }
        sqlx::query(
            "INSERT INTO ddi_action_messages (action_id, seq, execution, finished, messages, created)
             VALUES ($1, (SELECT statuses FROM ddi_actions WHERE id = $1), $2, $3, $4, $5)",
        )
        .bind(f.action_id)
        .bind(f.execution)
        .bind(f.finished)
        .bind(messages)
        .bind(f.now)
        .execute(&mut *tx)
        .await?;
        if let Some(report) = f.report {
            insert_report_tx(&mut tx, report).await?;
        }
        if f.new_state == "finished" {
            // The device now runs the action's release: its inventory version says so, as a
            // native device's next poll would (DDI clients report no version of their own), so
            // fleet versions and version filters count it.
            sqlx::query(
                "UPDATE devices SET firmware_version = (SELECT m.version FROM ddi_actions a
                     JOIN ddi_modules m ON m.id = a.module_id WHERE a.id = $1)
                 WHERE id = (SELECT device_id FROM ddi_actions WHERE id = $1)
                   AND (SELECT m.version FROM ddi_actions a JOIN ddi_modules m ON m.id = a.module_id
                        WHERE a.id = $1) <> ''",
            )
            .bind(f.action_id)
            .execute(&mut *tx)
            .await?;
        }
        if f.new_state == "finished" || f.new_state == "downloaded" {
            // hawkBit asks for the attributes again after an update.
            sqlx::query(
                "UPDATE ddi_devices SET request_attributes = 1 WHERE device_id =
                     (SELECT device_id FROM ddi_actions WHERE id = $1)",
            )
            .bind(f.action_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The device's messages about an action, newest first, at most `limit`.
    pub async fn ddi_action_messages(
        &self,
        action_id: i64,
        limit: usize,
    ) -> Result<Vec<String>, DbError> {
        let rows = sqlx::query(
            "SELECT messages FROM ddi_action_messages WHERE action_id = $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(action_id)
        .bind(limit.min(1000) as i64)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for row in rows {
            let list: Vec<String> =
                serde_json::from_str(&row.try_get::<String, _>("messages")?).unwrap_or_default();
            for m in list.into_iter().rev() {
                if out.len() == limit {
                    return Ok(out);
                }
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Changes a device's free attributes (configData) and clears its request flag, in one
    /// transaction: `apply` computes the new attributes from the stored ones, read inside it
    /// (row-locked on PostgreSQL), so concurrent updates never lose each other's changes. An
    /// attribute `hardware_id` also sets the device's hardware id (the one campaigns and
    /// releases match), as a native device's poll does. `Ok(Err(e))`: `apply` refused; nothing
    /// was written.
    pub async fn update_ddi_attributes<E>(
        &self,
        device_id: &str,
        apply: impl FnOnce(
            &serde_json::Map<String, serde_json::Value>,
        ) -> Result<serde_json::Map<String, serde_json::Value>, E>,
    ) -> Result<Result<(), E>, DbError> {
        let mut tx = self.begin_write().await?;
        let select = match self.backend {
            crate::Backend::Postgres => "SELECT attributes FROM devices WHERE id = $1 FOR UPDATE",
            // SQLite's write transaction (BEGIN IMMEDIATE) already excludes other writers.
            crate::Backend::Sqlite => "SELECT attributes FROM devices WHERE id = $1",
        };
        let Some(row) = sqlx::query(select)
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(DbError::Domain(DomainError::UnknownDevice(
                device_id.to_owned(),
            )));
        };
        let current: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&row.try_get::<String, _>("attributes")?).unwrap_or_default();
        let attributes = match apply(&current) {
            Ok(next) => next,
            Err(e) => return Ok(Err(e)),
        };
        let text = json_text("attributes", &attributes)?;
        let hardware = attributes.get("hardware_id").and_then(|v| v.as_str());
        if let Some(hw) = hardware {
            check_text("hardware id", hw)?;
        }
        sqlx::query(
            "UPDATE devices SET attributes = $2, hardware_id = COALESCE($3, hardware_id) WHERE id = $1",
        )
        .bind(device_id)
        .bind(text)
        .bind(hardware)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE ddi_devices SET request_attributes = 0 WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Ok(()))
    }
}
