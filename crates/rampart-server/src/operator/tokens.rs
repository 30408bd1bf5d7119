//! API tokens: creating one (also from the command line), and the token routes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rampart_db::{ApiToken, Db};
use serde::Deserialize;
use serde_json::json;

use crate::helpers::{sha256_hex, unix_now};
use crate::listen::http::{ApiError, json_response};
use crate::listen::http::{audit_error, db_error};
use crate::observe::audit::{AuditWriteError, AuditWriter};

use super::{ManagementApi, Permission, Role};

#[derive(Debug, Clone)]
pub struct NewToken {
    pub token: ApiToken,
    pub secret: String,
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

// ---- tokens ------------------------------------------------------------------------------

pub(super) async fn list_tokens(
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

pub(super) async fn post_token(
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
            r#"{"role": "admin|operator|viewer|auditor|monitor", "name": "..."}"#,
        )
        .await?;
    let role = Role::parse(&r.role).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown role {:?}: use admin, operator, viewer, auditor or monitor",
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

pub(super) async fn delete_token(
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
