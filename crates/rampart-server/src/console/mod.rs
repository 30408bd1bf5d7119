//! The web console (issue 18, decision 0052): HTML pages on the management listener, for the
//! people who hold a management API token.
//!
//! A browser logs in once with its token (`POST /console/login`, the token in the form body,
//! never in a URL) and gets a random session id in an `HttpOnly; Secure; SameSite=Strict`
//! cookie; the server keeps only its SHA-256, with the token and the token's role
//! ([`session`]). Every page is rendered on the server with maud, which escapes every value it
//! interpolates, so device-controlled text (hardware ids, attributes, report messages) is shown
//! as text. Every state-changing request is a form POST that carries the session's CSRF token
//! and comes from the console's own origin.
//!
//! The console sits on top of the management API (`operator`): it authorizes with the API's
//! roles ([`crate::operator::Caller::require`]) and acts through the API's own code (campaign
//! actions go through `operator::campaigns::act`, incident moves through
//! `operator::incidents::act`, remediation through `operator::risk_remediate`), so what a role
//! may do is decided in one place. No other room imports the console.
//!
//! Pages: `/console/fleet` (counts, search and filters, keyset pages), `/console/devices/{id}`
//! (with its risk, incidents and audit records), `/console/releases` and `/console/release`
//! (SBOM, provenance, transparency-log entry, where deployed), `/console/campaigns` and
//! `/console/campaigns/{id}` (progress per wave, gate, actions, kept current by the
//! server-sent events of `/console/campaigns/{id}/live`), `/console/incidents` and
//! `/console/incidents/{id}` (timeline, devices, evidence, the operator's moves),
//! `/console/risk` (the risk posture by region, hardware, release, tag or device; the
//! advisories affecting the fleet and their remediation), `/console/indicators` (success and
//! rollback rates, incident and advisory timings, campaigns' time to a share of their targets,
//! as SVG charts drawn on the server by [`chart`]) and `/console/audit` (browse, verify,
//! export; auditors and admins).

mod access;
mod assets;
mod audit;
mod campaigns;
mod chart;
mod device;
mod fleet;
mod incidents;
mod indicators;
mod layout;
mod live;
mod releases;
mod risk;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::listen::http::html_security_headers;
use crate::observe::metrics::track_requests;
use crate::operator::ManagementApi;

/// How long console sessions live and how many a token may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// A session ends this long after its login, however busy.
    pub session_lifetime: Duration,
    /// A session unused for this long ends.
    pub idle_timeout: Duration,
    /// Sessions one token may hold at once; a login beyond it ends the token's oldest.
    pub max_sessions_per_token: u32,
    /// Live progress streams the server holds at once. Each holds a connection of the
    /// management listener, so the server sets it to half that listener's connection cap: the
    /// API and the console's pages always keep the other half.
    pub max_live_streams: u32,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            session_lifetime: Duration::from_secs(12 * 3600),
            idle_timeout: Duration::from_secs(30 * 60),
            max_sessions_per_token: 16,
            max_live_streams: 128,
        }
    }
}

impl ConsoleConfig {
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.idle_timeout < Duration::from_secs(1) {
            return Err("console.idle_timeout must be at least 1 second".into());
        }
        if self.session_lifetime < self.idle_timeout {
            return Err("console.session_lifetime must be at least console.idle_timeout".into());
        }
        if self.max_sessions_per_token == 0 {
            return Err("console.max_sessions_per_token must be at least 1".into());
        }
        if self.max_live_streams == 0 {
            return Err("the console's live stream cap must be at least 1".into());
        }
        Ok(())
    }
}

/// The console's state: the management API it is a face of, and its session settings.
pub(crate) struct Console {
    api: Arc<ManagementApi>,
    config: ConsoleConfig,
    /// The open live streams and the campaign readings they share.
    live: Arc<live::LiveStreams>,
}

/// The console's routes, with request metrics and the security headers on every answer.
pub(crate) fn router(api: Arc<ManagementApi>, config: ConsoleConfig) -> Router {
    let metrics = api.metrics.clone();
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/fleet") }))
        .route(
            "/console/",
            get(|| async { Redirect::to("/console/fleet") }),
        )
        .route(
            "/console/login",
            get(access::login_page).post(access::login),
        )
        .route("/console/logout", post(access::logout))
        .route("/console/fleet", get(fleet::page))
        .route("/console/devices/{id}", get(device::page))
        .route("/console/releases", get(releases::list))
        .route("/console/release", get(releases::detail))
        .route("/console/campaigns", get(campaigns::list))
        .route("/console/campaigns/{id}", get(campaigns::detail))
        .route("/console/campaigns/{id}/live", get(live::stream))
        .route("/console/campaigns/{id}/{action}", post(campaigns::action))
        .route("/console/incidents", get(incidents::list))
        .route("/console/incidents/{id}", get(incidents::detail))
        .route("/console/incidents/{id}/{act}", post(incidents::action))
        .route(
            "/console/incident-actions/{id}/{decision}",
            post(incidents::decide),
        )
        .route("/console/risk", get(risk::page))
        .route(
            "/console/risk/advisories/{id}/remediate",
            post(risk::remediate),
        )
        .route("/console/audit", get(audit::page))
        .route("/console/audit/export", get(audit::export))
        .route("/console/indicators", get(indicators::page))
        .route("/console/assets/{name}", get(assets::serve))
        .route("/console/{*rest}", get(layout::not_found))
        .layer(axum::middleware::map_response(security_headers))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            track_requests,
        ))
        .with_state(Arc::new(Console {
            api,
            config,
            live: Arc::default(),
        }))
}

/// Adds the security headers of HTML answers ([`html_security_headers`]) to every console answer;
/// pages are also never cached: they show what a role may see, and the browser's back button
/// must not show it after logout.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    html_security_headers(headers);
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response.into_response()
}
