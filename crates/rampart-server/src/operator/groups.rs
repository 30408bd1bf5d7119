//! The group routes: groups and their members.

use rampart_db::DomainError;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_db::DbError;
use serde::Deserialize;
use serde_json::json;

use crate::helpers::unix_now;
use crate::listen::http::{ApiError, json_response};
use crate::listen::http::{db_error, write_error};

use super::{ManagementApi, Permission, device_list_summary};

pub(super) async fn list_groups(
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

pub(super) fn valid_name(what: &str, name: &str) -> Result<(), ApiError> {
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

pub(super) async fn create_group(
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

pub(super) async fn delete_group(
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
        return Err(db_error(
            "",
            DbError::Domain(DomainError::UnknownGroup(name)),
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn group_members(
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
        .ok_or_else(|| db_error("", DbError::Domain(DomainError::UnknownGroup(name.clone()))))?;
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

pub(super) async fn change_members(
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
    if r.add.is_empty() && r.remove.is_empty() {
        return Err(ApiError::invalid("give devices to add and/or remove"));
    }
    // Both lists in one transaction with one record: all of the change or none of it.
    let details =
        json!({"added": device_list_summary(&r.add), "removed": device_list_summary(&r.remove)});
    api.audit
        .write(
            unix_now(),
            &caller.actor(),
            "group.members_changed",
            &name,
            details,
            |line| {
                let (db, name, add, remove) = (
                    api.db.clone(),
                    name.clone(),
                    r.add.clone(),
                    r.remove.clone(),
                );
                async move { db.change_group_members(&name, &add, &remove, &line).await }
            },
        )
        .await
        .map_err(write_error("changing a group"))?;
    group_members(State(api), headers, Path(name)).await
}
