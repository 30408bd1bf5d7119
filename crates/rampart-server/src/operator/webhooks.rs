//! The webhook routes of the management API: `GET/POST /api/v1/webhooks`,
//! `GET/DELETE /api/v1/webhooks/{id}`, `GET /api/v1/webhooks/{id}/deliveries` (admins and
//! auditors) and `POST /api/v1/webhooks/{id}/test`. Deliveries are the dispatcher's
//! (`engines::webhooks`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rampart_db::NewWebhook;
use serde::Deserialize;
use serde_json::json;

use crate::engines::webhooks::{AddressPolicy, WebhookEvent, Webhooks, address};
use crate::helpers::unix_now;
use crate::listen::http::{ApiError, json_response, parse_json, read_body};
use crate::observe::audit::AuditWriteError;
use crate::observe::metrics::track_requests;
use crate::operator::{ManagementApi, Permission};

/// How long creating a webhook waits for its host name to resolve.
const CREATE_RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest page of the deliveries listing.
const MAX_DELIVERY_PAGE: i64 = 1000;

/// State of the webhook routes: the management API's (tokens, audit, limits) and the webhooks.
pub(crate) struct WebhookApi {
    management: Arc<ManagementApi>,
    webhooks: Webhooks,
}

impl WebhookApi {
    /// The caller's actor name (`token:<id>`) if its bearer token grants `need`. The same rules
    /// and answers as the rest of the management API (401 without a known token, 403 without
    /// the permission).
    async fn authorize(&self, headers: &HeaderMap, need: Permission) -> Result<String, ApiError> {
        Ok(self.management.authorize(headers, need).await?.actor())
    }
}

fn unknown_webhook(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_webhook",
        format!("no webhook {id:?}; list them with GET /api/v1/webhooks"),
    )
}

fn audit_error(context: &str, e: AuditWriteError) -> ApiError {
    match e {
        AuditWriteError::Db(e) => ApiError::from_db(context, e),
        AuditWriteError::Record(m) => ApiError::invalid(m),
        AuditWriteError::BrokenChain(m) => {
            crate::observe::log::error("the stored audit log does not verify", json!({"error": m}));
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_log_broken",
                "the stored audit log does not verify, so no change is accepted; an auditor must run `rampart audit verify --db URL`",
            )
        }
    }
}

/// Checks a webhook URL fully: the storage bounds, then a real parse; http or https with a host
/// and no credentials (receivers authenticate deliveries by their signature, and a password in
/// the URL would be shown to every reader of the listing). Returns the parsed URL.
fn check_url(url: &str) -> Result<reqwest::Url, ApiError> {
    rampart_db::check_webhook_url(url).map_err(|e| ApiError::invalid(e.to_string()))?;
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        ApiError::invalid(format!(
            "the webhook url does not parse ({e}); give e.g. https://alerts.example.com/rampart"
        ))
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ApiError::invalid(
            "the webhook url must start with https:// (or http://)",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ApiError::invalid(
            "the webhook url has no host, e.g. https://alerts.example.com/rampart",
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ApiError::invalid(
            "the webhook url must not contain credentials (user:password@); receivers check the X-Rampart-Signature instead",
        ));
    }
    Ok(parsed)
}

/// Checks where a new webhook would deliver: its literal address, or every address its host
/// name resolves to now, against the address policy; a refusal is a 422 that names the address
/// and the `--webhook-allow` flag. A name that does not resolve (yet) is accepted: every
/// delivery resolves it again and is refused then if it leads somewhere refused.
async fn check_destination(policy: &AddressPolicy, url: &reqwest::Url) -> Result<(), ApiError> {
    if let Some(ip) = address::literal_address(url) {
        return policy
            .check(ip)
            .map_err(|denied| ApiError::invalid(format!("the webhook url leads to {denied}")));
    }
    let Some(name) = url.host_str() else {
        return Ok(());
    };
    let port = url.port_or_known_default().unwrap_or(443);
    let resolved = tokio::time::timeout(
        CREATE_RESOLVE_TIMEOUT,
        tokio::net::lookup_host((name, port)),
    )
    .await;
    let Ok(Ok(addresses)) = resolved else {
        return Ok(());
    };
    let ips: Vec<IpAddr> = addresses.map(|a| a.ip()).collect();
    policy.check_all(&ips).map_err(|denied| {
        ApiError::invalid(format!(
            "the webhook url's host {name} resolves to {denied}"
        ))
    })
}

async fn list_webhooks(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let webhooks = api
        .management
        .db
        .list_webhooks()
        .await
        .map_err(|e| ApiError::from_db("listing webhooks", e))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"webhooks": webhooks}),
    ))
}

async fn get_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Read).await?;
    let webhook = api
        .management
        .db
        .webhook(&id)
        .await
        .map_err(|e| ApiError::from_db("reading a webhook", e))?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(json_response(StatusCode::OK, &webhook))
}

async fn create_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Request {
        url: String,
        secret: String,
        events: Vec<String>,
        #[serde(default)]
        description: String,
    }
    let actor = api.authorize(&headers, Permission::Admin).await?;
    let bytes = read_body(&headers, body, api.management.body_limits).await?;
    let r: Request = parse_json(
        &bytes,
        r#"{"url": "https://...", "secret": "<16 to 256 bytes>", "events": ["campaign.halted", ...], "description": "..."}"#,
    )?;
    let url = check_url(&r.url)?;
    rampart_db::check_webhook_secret(&r.secret).map_err(|e| ApiError::invalid(e.to_string()))?;
    if r.events.iter().any(|e| e == WebhookEvent::Test.as_str()) {
        return Err(ApiError::invalid(
            "webhook.test cannot be subscribed to; every webhook receives the test deliveries asked with POST /api/v1/webhooks/{id}/test",
        ));
    }
    let events = rampart_db::check_webhook_events(&r.events)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if r.description.len() > 256 || r.description.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "the description must be at most 256 bytes without control characters",
        ));
    }
    check_destination(api.webhooks.policy(), &url).await?;
    let key = api.webhooks.secrets_key().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets_key_missing",
            "this server has no webhook secrets key, so it cannot store a webhook's secret; restart it with `rampart server --secrets-key FILE`",
        )
    })?;
    let now = unix_now();
    let id = crate::helpers::new_id("whk")?;
    let secret = key.seal(&id, &r.secret).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "secrets_key_failed",
            format!("{e}; try again"),
        )
    })?;
    let new = NewWebhook {
        id,
        url: r.url,
        secret,
        events,
        description: r.description,
        created: now,
    };
    // The record names the endpoint and the subscriptions, never the secret.
    let details = json!({"url": new.url, "events": new.events, "description": new.description});
    let webhook = api
        .management
        .audit
        .write(now, &actor, "webhook.created", &new.id, details, |line| {
            let (db, new) = (api.management.db.clone(), new.clone());
            async move { db.create_webhook(&new, &line).await }
        })
        .await
        .map_err(|e| audit_error("creating a webhook", e))?;
    Ok(json_response(StatusCode::CREATED, &webhook))
}

async fn delete_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let actor = api.authorize(&headers, Permission::Admin).await?;
    let deleted = api
        .management
        .audit
        .write(
            unix_now(),
            &actor,
            "webhook.deleted",
            &id,
            json!({}),
            |line| {
                let (db, id) = (api.management.db.clone(), id.clone());
                async move { db.delete_webhook(&id, &line).await }
            },
        )
        .await
        .map_err(|e| audit_error("deleting a webhook", e))?;
    if !deleted {
        return Err(unknown_webhook(&id));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    /// Newest first, at most this many (default 100, at most 1000).
    limit: Option<i64>,
}

async fn list_deliveries(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: Result<Query<DeliveryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // Deliveries show what endpoints answered (status, length, errors): admins and auditors
    // only, not every reader of the fleet.
    api.authorize(&headers, Permission::Audit).await?;
    let Query(q) = query.map_err(|_| {
        ApiError::invalid("the only query parameter is limit, a number from 1 to 1000")
    })?;
    let limit = q.limit.unwrap_or(100).clamp(1, MAX_DELIVERY_PAGE);
    let deliveries = api
        .management
        .db
        .webhook_deliveries(&id, limit)
        .await
        .map_err(|e| ApiError::from_db("listing webhook deliveries", e))?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({"webhook": id, "deliveries": deliveries}),
    ))
}

async fn test_webhook(
    State(api): State<Arc<WebhookApi>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    api.authorize(&headers, Permission::Admin).await?;
    let delivery = api
        .webhooks
        .send_test(&id)
        .await
        .map_err(|e| ApiError::from_db("queueing a test delivery", e))?
        .ok_or_else(|| unknown_webhook(&id))?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &json!({"webhook": id, "delivery": delivery, "event": WebhookEvent::Test.as_str()}),
    ))
}

/// The webhook routes, to merge into the management API's router. They have no fallback of their
/// own (the management router's answers unknown paths) and count in the same request metrics.
pub(crate) fn router(management: Arc<ManagementApi>, webhooks: Webhooks) -> Router {
    let metrics = management.metrics.clone();
    let state = Arc::new(WebhookApi {
        management,
        webhooks,
    });
    Router::new()
        .route("/api/v1/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/api/v1/webhooks/{id}",
            get(get_webhook).delete(delete_webhook),
        )
        .route("/api/v1/webhooks/{id}/deliveries", get(list_deliveries))
        .route("/api/v1/webhooks/{id}/test", post(test_webhook))
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not accept that method; webhooks are GET/POST /api/v1/webhooks, GET/DELETE /api/v1/webhooks/{id}, GET .../deliveries and POST .../test",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            track_requests,
        ))
        .with_state(state)
}
