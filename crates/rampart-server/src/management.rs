//! The management API (`/api/v1/...`, JSON over HTTPS, bearer tokens).
//!
//! Every request carries `Authorization: Bearer <token>`; the token's role decides what it may
//! do ([`Role::allows`]): `viewer` reads the fleet, releases, assignments and reports;
//! `operator` also changes groups and assignments and revokes devices; `auditor` reads and
//! exports the audit log (and may read everything a viewer may); `admin` may do everything,
//! including managing tokens and reinstating revoked devices. A missing or unknown token is 401,
//! a role without the permission 403. Every change is stored in one transaction with its audit
//! record. The routes are listed in the OpenAPI document served at `GET /api/v1/openapi.json`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rampart_db::{ApiToken, Assignment, Db, DbError, DeviceFilter};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::audit::{AuditWriteError, AuditWriter};
use crate::device_api::unix_now;
use crate::http::{ApiError, BodyLimits, json_response, parse_json, read_body};
use crate::image_repo::{HostedRepo, HostedRepoError, Release};
use crate::metrics::{Metrics, track_requests};

/// The OpenAPI document of both APIs (written by hand, checked against the routers by a test).
pub const OPENAPI_JSON: &str = include_str!("../openapi.json");

/// Largest page of a listing.
const MAX_PAGE: i64 = 1000;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Operator,
    Viewer,
    Auditor,
}

/// What an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read the fleet, releases, assignments and reports.
    Read,
    /// Change groups and assignments, revoke devices.
    Operate,
    /// Read and export the audit log.
    Audit,
    /// Manage tokens, reinstate devices.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Viewer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn allows(self, permission: Permission) -> bool {
        match self {
            Role::Admin => true,
            Role::Operator => matches!(permission, Permission::Read | Permission::Operate),
            Role::Viewer => permission == Permission::Read,
            Role::Auditor => matches!(permission, Permission::Read | Permission::Audit),
        }
    }
}

/// A newly created token; `secret` is shown once and stored only as its SHA-256.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: ApiToken,
    pub secret: String,
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Creates a token with `role`, recorded in the audit log as done by `actor`.
pub async fn create_token(
    db: &Db,
    audit: &AuditWriter,
    role: Role,
    name: &str,
    actor: &str,
    now: i64,
) -> Result<NewToken, AuditWriteError> {
    use ring::rand::SecureRandom as _;
    let rng = ring::rand::SystemRandom::new();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| AuditWriteError::Record("the system random generator failed".into()))?;
    let id = hex::encode(id);
    let secret = format!("rampart_{id}_{}", hex::encode(secret));
    let token = ApiToken {
        id: id.clone(),
        role: role.as_str().to_owned(),
        name: name.to_owned(),
        created: now,
        revoked: false,
    };
    let hash = sha256_hex(secret.as_bytes());
    audit
        .write(
            now,
            actor,
            "token.created",
            &id,
            json!({"role": role.as_str(), "name": name}),
            |line| {
                let (db, token, hash) = (db.clone(), token.clone(), hash.clone());
                async move { db.create_token(&token, &hash, &line).await }
            },
        )
        .await?;
    Ok(NewToken { token, secret })
}

/// Shared state of the management API.
pub(crate) struct ManagementApi {
    pub(crate) db: Db,
    pub(crate) audit: AuditWriter,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) image_repo: Option<Arc<HostedRepo>>,
    pub(crate) body_limits: BodyLimits,
}

/// The authenticated caller.
struct Caller {
    token: ApiToken,
}

impl Caller {
    fn actor(&self) -> String {
        format!("token:{}", self.token.id)
    }
}

impl ManagementApi {
    async fn authorize(&self, headers: &HeaderMap, need: Permission) -> Result<Caller, ApiError> {
        let unauthorized =
            |detail: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail);
        let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
            unauthorized(
                "send Authorization: Bearer <token> (create one with `rampart token create`)",
            )
        })?;
        let secret = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
        let token = self
            .db
            .token_by_secret(&sha256_hex(secret.as_bytes()))
            .await
            .map_err(|e| ApiError::from_db("reading tokens", e))?
            .ok_or_else(|| unauthorized("unknown or revoked token"))?;
        let role =
            Role::parse(&token.role).ok_or_else(|| unauthorized("the token's role is unknown"))?;
        if !role.allows(need) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!(
                    "a {} token may not do this; it needs a role with the {need:?} permission",
                    role.as_str()
                ),
            ));
        }
        Ok(Caller { token })
    }

    async fn body<T: serde::de::DeserializeOwned>(
        &self,
        headers: &HeaderMap,
        body: Body,
        expected: &str,
    ) -> Result<T, ApiError> {
        let bytes = read_body(headers, body, self.body_limits).await?;
        parse_json(&bytes, expected)
    }

    fn image_repo(&self) -> Result<Arc<HostedRepo>, ApiError> {
        self.image_repo.clone().ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "no_image_repository",
                "this server hosts no image repository; start it with --repo DIR",
            )
        })
    }
}

fn audit_error(e: AuditWriteError) -> ApiError {
    match e {
        AuditWriteError::Db(e) => ApiError::from_db("writing an audited change", e),
        AuditWriteError::Record(m) => ApiError::invalid(m),
        AuditWriteError::BrokenChain(m) => {
            crate::log::error(
                "the stored audit log does not verify",
                serde_json::json!({"error": m}),
            );
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_log_broken",
                "the stored audit log does not verify, so no change is accepted; an auditor must run `rampart audit verify --db URL`",
            )
        }
    }
}

fn db_error(context: &str, e: DbError) -> ApiError {
    match e {
        DbError::UnknownDevice(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_device",
            format!("no device {id:?} in the inventory"),
        ),
        DbError::UnknownGroup(name) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_group",
            format!("no group {name:?}; create it with POST /api/v1/groups"),
        ),
        DbError::UnknownAssignment(id) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_assignment",
            format!("no assignment {id:?}"),
        ),
        other => ApiError::from_db(context, other),
    }
}

fn write_error(context: &'static str) -> impl Fn(AuditWriteError) -> ApiError {
    move |e| match e {
        AuditWriteError::Db(e) => db_error(context, e),
        other => audit_error(other),
    }
}

// ---- devices -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceQuery {
    hardware_id: Option<String>,
    firmware_version: Option<String>,
    region: Option<String>,
    tag: Option<String>,
    group: Option<String>,
    min_security_version: Option<u64>,
    /// `key=value`: devices whose attribute `key` equals `value`.
    attribute: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list_devices(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<DeviceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let attribute = match q.attribute {
        None => None,
        Some(a) => Some(
            a.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| ApiError::invalid("attribute must be key=value"))?,
        ),
    };
    let filter = DeviceFilter {
        hardware_id: q.hardware_id,
        firmware_version: q.firmware_version,
        region: q.region,
        tag: q.tag,
        group: q.group,
        min_security_version: q.min_security_version,
        attribute,
    };
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let devices = api
        .db
        .list_devices(&filter, limit, q.offset.unwrap_or(0))
        .await
        .map_err(|e| db_error("listing devices", e))?;
    Ok(json_response(StatusCode::OK, &json!({"devices": devices})))
}

async fn get_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let device = api
        .db
        .device(&id)
        .await
        .map_err(|e| db_error("reading a device", e))?
        .ok_or_else(|| db_error("", DbError::UnknownDevice(id.clone())))?;
    let assignment = api
        .db
        .device_assignment(&id)
        .await
        .map_err(|e| db_error("reading an assignment", e))?;
    let reports = api
        .db
        .reports_of(&id)
        .await
        .map_err(|e| db_error("reading reports", e))?;
    let recent: Vec<_> = reports.iter().rev().take(20).collect();
    // Patch status: what it runs against what it was told to install.
    let status = match (&assignment, reports.last()) {
        (None, _) => "unassigned",
        (Some(a), _) if a.target.is_empty() => "unassigned",
        (Some(a), Some(r)) if r.assignment == a.assignment_id && r.status == "installed" => {
            "up_to_date"
        }
        (Some(a), Some(r)) if r.assignment == a.assignment_id && r.status == "failed" => "failed",
        (Some(_), _) => "pending",
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"device": device, "assignment": assignment, "update_status": status, "recent_reports": recent}),
    ))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    #[serde(default)]
    reason: String,
}

async fn revoke_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let bytes = read_body(&headers, body, api.body_limits).await?;
    let request: RevokeRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        RevokeRequest::default()
    } else {
        parse_json(&bytes, r#"{"reason": "..."}"#)?
    };
    set_revoked(&api, &caller, &id, true, &request.reason).await
}

async fn reinstate_device(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    set_revoked(&api, &caller, &id, false, "").await
}

async fn set_revoked(
    api: &ManagementApi,
    caller: &Caller,
    id: &str,
    revoked: bool,
    reason: &str,
) -> Result<Response, ApiError> {
    let action = if revoked {
        "device.revoked"
    } else {
        "device.reinstated"
    };
    api.audit
        .write(
            unix_now(),
            &caller.actor(),
            action,
            id,
            json!({"reason": reason}),
            |line| {
                let db = api.db.clone();
                let id = id.to_owned();
                async move { db.set_revoked_audited(&id, revoked, &line).await }
            },
        )
        .await
        .map_err(write_error("revoking a device"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"device_id": id, "revoked": revoked}),
    ))
}

async fn fleet_versions(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let counts = api
        .db
        .version_counts()
        .await
        .map_err(|e| db_error("counting versions", e))?;
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    let versions: Vec<Value> = counts
        .into_iter()
        .map(|(v, n)| json!({"firmware_version": v, "devices": n}))
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"devices": total, "versions": versions}),
    ))
}

// ---- groups ------------------------------------------------------------------------------

async fn list_groups(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let groups = api
        .db
        .list_groups()
        .await
        .map_err(|e| db_error("listing groups", e))?;
    Ok(json_response(StatusCode::OK, &json!({"groups": groups})))
}

fn valid_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "{what} must be 1-128 characters of A-Z a-z 0-9 . _ -"
        )))
    }
}

async fn create_group(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        name: String,
        #[serde(default)]
        description: String,
    }
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let r: Request = api
        .body(&headers, body, r#"{"name": "...", "description": "..."}"#)
        .await?;
    valid_name("group name", &r.name)?;
    let now = unix_now();
    let created = api
        .audit
        .write(
            now,
            &caller.actor(),
            "group.created",
            &r.name,
            json!({"description": r.description}),
            |line| {
                let (db, name, description) =
                    (api.db.clone(), r.name.clone(), r.description.clone());
                async move { db.create_group(&name, &description, now, &line).await }
            },
        )
        .await
        .map_err(write_error("creating a group"))?;
    if !created {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "group_exists",
            format!("a group {:?} already exists", r.name),
        ));
    }
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"name": r.name, "description": r.description}),
    ))
}

async fn delete_group(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let deleted = api
        .audit
        .write(
            unix_now(),
            &caller.actor(),
            "group.deleted",
            &name,
            json!({}),
            |line| {
                let (db, name) = (api.db.clone(), name.clone());
                async move { db.delete_group(&name, &line).await }
            },
        )
        .await
        .map_err(write_error("deleting a group"))?;
    if !deleted {
        return Err(db_error("", DbError::UnknownGroup(name)));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn group_members(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let group = api
        .db
        .group(&name)
        .await
        .map_err(|e| db_error("reading a group", e))?
        .ok_or_else(|| db_error("", DbError::UnknownGroup(name.clone())))?;
    let devices = api
        .db
        .group_device_ids(&name)
        .await
        .map_err(|e| db_error("reading a group", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"group": group, "devices": devices}),
    ))
}

async fn change_members(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        #[serde(default)]
        add: Vec<String>,
        #[serde(default)]
        remove: Vec<String>,
    }
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let r: Request = api
        .body(
            &headers,
            body,
            r#"{"add": ["device-id", ...], "remove": [...]}"#,
        )
        .await?;
    if r.add.len() + r.remove.len() > 10_000 {
        return Err(ApiError::invalid("at most 10,000 devices per request"));
    }
    for (list, remove, action) in [
        (&r.add, false, "group.members_added"),
        (&r.remove, true, "group.members_removed"),
    ] {
        if list.is_empty() {
            continue;
        }
        api.audit
            .write(
                unix_now(),
                &caller.actor(),
                action,
                &name,
                json!({"devices": list}),
                |line| {
                    let (db, name, list) = (api.db.clone(), name.clone(), list.clone());
                    async move { db.change_group_members(&name, &list, remove, &line).await }
                },
            )
            .await
            .map_err(write_error("changing a group"))?;
    }
    group_members(State(api), headers, Path(name)).await
}

// ---- releases ----------------------------------------------------------------------------

async fn list_releases(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let repo = api.image_repo()?;
    let catalog = tokio::task::spawn_blocking(move || repo.catalog(unix_now()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(repo_error)?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"timestamp_version": catalog.timestamp_version, "releases": catalog.releases}),
    ))
}

fn repo_error(e: HostedRepoError) -> ApiError {
    crate::log::error(
        "the image repository does not verify",
        serde_json::json!({"error": e.to_string()}),
    );
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "image_repository_invalid",
        e.to_string(),
    )
}

// ---- assignments -------------------------------------------------------------------------

/// Which devices an assignment is for; every given criterion must match.
#[derive(Debug, Deserialize, serde::Serialize, Default)]
#[serde(deny_unknown_fields)]
struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    devices: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hardware_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    region: Option<String>,
}

async fn create_assignment(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        target: String,
        #[serde(flatten)]
        selector: Selector,
    }
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let r: Request = api
        .body(
            &headers,
            body,
            r#"{"target": "<release target>", "devices": [...] | "group": "..." | "tag": "..." | "hardware_id": "..." | "region": "..."}"#,
        )
        .await?;
    let s = &r.selector;
    if s.devices.is_none()
        && s.group.is_none()
        && s.tag.is_none()
        && s.hardware_id.is_none()
        && s.region.is_none()
    {
        return Err(ApiError::invalid(
            "name the devices: give at least one of devices, group, tag, hardware_id, region",
        ));
    }
    let repo = api.image_repo()?;
    let target = r.target.clone();
    let release = tokio::task::spawn_blocking(move || repo.target(&target, unix_now()))
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(repo_error)?
        .map(|file| Release::new(&r.target, &file))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown_release",
                format!(
                    "the image repository has no target {:?}; list releases with GET /api/v1/releases",
                    r.target
                ),
            )
        })?;
    let info = release.release.ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "not_a_release",
            format!(
                "{:?} carries no release information (it is a document, not firmware)",
                r.target
            ),
        )
    })?;

    // Resolve the devices.
    let filter = DeviceFilter {
        hardware_id: s.hardware_id.clone(),
        region: s.region.clone(),
        tag: s.tag.clone(),
        group: s.group.clone(),
        ..DeviceFilter::default()
    };
    if let Some(group) = &s.group
        && api
            .db
            .group(group)
            .await
            .map_err(|e| db_error("reading a group", e))?
            .is_none()
    {
        return Err(db_error("", DbError::UnknownGroup(group.clone())));
    }
    let mut devices = Vec::new();
    let mut offset = 0;
    loop {
        let page = api
            .db
            .list_devices(&filter, 10_000, offset)
            .await
            .map_err(|e| db_error("selecting devices", e))?;
        let n = page.len() as i64;
        devices.extend(page);
        if n < 10_000 {
            break;
        }
        offset += n;
    }
    if let Some(ids) = &s.devices {
        let wanted: std::collections::HashSet<&String> = ids.iter().collect();
        for id in ids {
            if !devices.iter().any(|d| &d.id == id) {
                // Either unknown, or excluded by the other criteria.
                let known = api
                    .db
                    .device(id)
                    .await
                    .map_err(|e| db_error("reading a device", e))?;
                if known.is_none() {
                    return Err(db_error("", DbError::UnknownDevice(id.clone())));
                }
            }
        }
        devices.retain(|d| wanted.contains(&d.id));
    }
    devices.retain(|d| !d.revoked);
    if devices.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_devices",
            "no (unrevoked) device matches the selector",
        ));
    }
    // Never tell a device to install firmware built for other hardware.
    let incompatible: Vec<&str> = devices
        .iter()
        .filter(|d| {
            !d.facts.hardware_id.is_empty() && !info.hardware_ids.contains(&d.facts.hardware_id)
        })
        .map(|d| d.id.as_str())
        .take(10)
        .collect();
    if !incompatible.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incompatible_hardware",
            format!(
                "{} is built for {:?}, but these devices report other hardware: {}; narrow the selector (e.g. hardware_id)",
                r.target,
                info.hardware_ids,
                incompatible.join(", ")
            ),
        ));
    }
    let ids: Vec<String> = devices.into_iter().map(|d| d.id).collect();
    let now = unix_now();
    let assignment = Assignment {
        id: new_id("asg")?,
        target: r.target.clone(),
        selector: serde_json::to_value(&r.selector).map_err(|_| ApiError::internal())?,
        created: now,
        created_by: caller.actor(),
        device_count: ids.len() as i64,
    };
    api.audit
        .write(
            now,
            &caller.actor(),
            "assignment.created",
            &assignment.id,
            json!({"target": assignment.target, "selector": assignment.selector, "devices": ids.len(), "version": info.version}),
            |line| {
                let (db, assignment, ids) = (api.db.clone(), assignment.clone(), ids.clone());
                async move { db.create_assignment(&assignment, &ids, &line).await }
            },
        )
        .await
        .map_err(write_error("creating an assignment"))?;
    Metrics::inc(&api.metrics.assignments_created);
    Ok(json_response(StatusCode::CREATED, &assignment))
}

fn new_id(prefix: &str) -> Result<String, ApiError> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::internal())?;
    Ok(format!("{prefix}-{}", hex::encode(bytes)))
}

async fn list_assignments(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let list = api
        .db
        .list_assignments(MAX_PAGE)
        .await
        .map_err(|e| db_error("listing assignments", e))?;
    Ok(json_response(StatusCode::OK, &json!({"assignments": list})))
}

async fn get_assignment(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let assignment = api
        .db
        .assignment(&id)
        .await
        .map_err(|e| db_error("reading an assignment", e))?
        .ok_or_else(|| db_error("", DbError::UnknownAssignment(id.clone())))?;
    let counts = api
        .db
        .assignment_status_counts(&id)
        .await
        .map_err(|e| db_error("counting reports", e))?;
    let status: serde_json::Map<String, Value> =
        counts.into_iter().map(|(s, n)| (s, json!(n))).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({"assignment": assignment, "devices_by_last_status": status}),
    ))
}

async fn cancel_assignment(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Operate).await?;
    let now = unix_now();
    let changed = api
        .audit
        .write(
            now,
            &caller.actor(),
            "assignment.cancelled",
            &id,
            json!({}),
            |line| {
                let (db, id) = (api.db.clone(), id.clone());
                async move { db.cancel_assignment(&id, now, &line).await }
            },
        )
        .await
        .map_err(write_error("cancelling an assignment"))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"id": id, "devices_cancelled": changed}),
    ))
}

// ---- reports -----------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    device: String,
}

async fn list_reports(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<ReportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let Query(q) = query.map_err(|_| ApiError::invalid("give ?device=<device id>"))?;
    if api
        .db
        .device(&q.device)
        .await
        .map_err(|e| db_error("reading a device", e))?
        .is_none()
    {
        return Err(db_error("", DbError::UnknownDevice(q.device)));
    }
    let reports = api
        .db
        .reports_of(&q.device)
        .await
        .map_err(|e| db_error("reading reports", e))?;
    Ok(json_response(StatusCode::OK, &json!({"reports": reports})))
}

// ---- audit log ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// `jsonl` (default), `json` or `csv`.
    format: Option<String>,
    from: Option<u64>,
    limit: Option<i64>,
}

async fn export_audit(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Audit).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let lines = api
        .db
        .audit_lines(q.from.unwrap_or(0), q.limit.unwrap_or(100_000))
        .await
        .map_err(|e| db_error("reading the audit log", e))?;
    let mut jsonl = String::new();
    for l in &lines {
        jsonl.push_str(&l.line);
        jsonl.push('\n');
    }
    let (content_type, body) = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => ("application/jsonl", jsonl),
        format @ ("json" | "csv") => {
            let records = rampart_audit::parse_jsonl(jsonl.as_bytes()).map_err(|e| {
                ApiError::new(
                    StatusCode::CONFLICT,
                    "audit_log_unreadable",
                    format!("a stored record does not parse ({e}); export as jsonl and run `rampart audit verify`"),
                )
            })?;
            if format == "csv" {
                ("text/csv", rampart_audit::to_csv(&records))
            } else {
                (
                    "application/json",
                    serde_json::to_string(&records).map_err(|_| ApiError::internal())?,
                )
            }
        }
        other => {
            return Err(ApiError::invalid(format!(
                "unknown format {other:?}: use jsonl, json or csv"
            )));
        }
    };
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response())
}

// ---- tokens ------------------------------------------------------------------------------

async fn list_tokens(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Admin).await?;
    let tokens = api
        .db
        .list_tokens()
        .await
        .map_err(|e| db_error("listing tokens", e))?;
    Ok(json_response(StatusCode::OK, &json!({"tokens": tokens})))
}

async fn post_token(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        role: String,
        #[serde(default)]
        name: String,
    }
    let caller = api.authorize(&headers, Permission::Admin).await?;
    let r: Request = api
        .body(
            &headers,
            body,
            r#"{"role": "admin|operator|viewer|auditor", "name": "..."}"#,
        )
        .await?;
    let role = Role::parse(&r.role).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown role {:?}: use admin, operator, viewer or auditor",
            r.role
        ))
    })?;
    let created = create_token(
        &api.db,
        &api.audit,
        role,
        &r.name,
        &caller.actor(),
        unix_now(),
    )
    .await
    .map_err(audit_error)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({"token": created.token, "secret": created.secret}),
    ))
}

async fn delete_token(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = api.authorize(&headers, Permission::Admin).await?;
    let revoked = api
        .audit
        .write(
            unix_now(),
            &caller.actor(),
            "token.revoked",
            &id,
            json!({}),
            |line| {
                let (db, id) = (api.db.clone(), id.clone());
                async move { db.revoke_token(&id, &line).await }
            },
        )
        .await
        .map_err(audit_error)?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_token",
            format!("no unrevoked token {id:?}"),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn openapi(
    State(api): State<Arc<ManagementApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI_JSON,
    )
        .into_response())
}

/// The management API routes, with request metrics.
pub(crate) fn router(api: Arc<ManagementApi>) -> Router {
    let metrics = api.metrics.clone();
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", get(get_device))
        .route("/api/v1/devices/{id}/revoke", post(revoke_device))
        .route("/api/v1/devices/{id}/reinstate", post(reinstate_device))
        .route("/api/v1/fleet/versions", get(fleet_versions))
        .route("/api/v1/groups", get(list_groups).post(create_group))
        .route(
            "/api/v1/groups/{name}",
            get(group_members).delete(delete_group),
        )
        .route("/api/v1/groups/{name}/members", post(change_members))
        .route("/api/v1/releases", get(list_releases))
        .route(
            "/api/v1/assignments",
            get(list_assignments).post(create_assignment),
        )
        .route("/api/v1/assignments/{id}", get(get_assignment))
        .route("/api/v1/assignments/{id}/cancel", post(cancel_assignment))
        .route("/api/v1/reports", get(list_reports))
        .route("/api/v1/audit", get(export_audit))
        .route("/api/v1/tokens", get(list_tokens).post(post_token))
        .route("/api/v1/tokens/{id}", axum::routing::delete(delete_token))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such endpoint; the management API is described at GET /api/v1/openapi.json",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method; see GET /api/v1/openapi.json",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            track_requests,
        ))
        .with_state(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_only_their_permissions() {
        use Permission::*;
        let table = [
            (Role::Admin, [true, true, true, true]),
            (Role::Operator, [true, true, false, false]),
            (Role::Viewer, [true, false, false, false]),
            (Role::Auditor, [true, false, true, false]),
        ];
        for (role, expected) in table {
            for (perm, want) in [Read, Operate, Audit, Admin].into_iter().zip(expected) {
                assert_eq!(role.allows(perm), want, "{role:?} {perm:?}");
            }
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
