//! Who may in: logging in (a token for a session cookie), logging out, and the gates every
//! console handler passes: a page view needs a live session (else the login page), a form POST
//! also the same origin and the session's CSRF token (see `session` for each rule).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use maud::html;
use rampart_db::ConsoleSession;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::Console;
use super::layout::{Section, document, error_page, html_response};
use super::session::{
    COOKIE, CsrfOnly, HasCsrf, SESSION_ID_BYTES, Session, check_same_origin, read_form, secs,
};
use crate::helpers::{sha256_hex, unix_now};
use crate::listen::auth_failures::FailureKind;
use crate::listen::http::{ApiError, write_error};
use crate::operator::{Caller, MAX_TOKEN_LEN, Permission};

/// A page view's session, as a handler argument: without a live session the browser is sent
/// to the login page. Every page shows the fleet, so the session's role must still be allowed to read it
/// (checked on each view, not only at login: the role is the token's as stored now).
impl FromRequestParts<Arc<Console>> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        console: &Arc<Console>,
    ) -> Result<Session, Response> {
        match console.session(&parts.headers).await {
            Ok(Some(session)) => match session.caller().require(Permission::Read) {
                Ok(()) => Ok(session),
                Err(e) => Err(error_page(&e, None)),
            },
            Ok(None) => Err(Redirect::to("/console/login").into_response()),
            Err(e) => Err(error_page(&e, None)),
        }
    }
}

/// A page's query string, or what is wrong with it.
pub(super) fn page_query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|e| ApiError::invalid(format!("the query string: {}", e.body_text())))
}

impl Console {
    /// The session and form of a state-changing request, after the origin, session and CSRF
    /// checks; else the refusal.
    pub(super) async fn form_session<T: DeserializeOwned + HasCsrf>(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Session, T), Response> {
        check_same_origin(headers).map_err(|e| error_page(&e, None))?;
        let session = match self.session(headers).await {
            Ok(Some(session)) => session,
            Ok(None) => {
                return Err(error_page(
                    &ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "session_ended",
                        "your console session has ended (or never began); log in again",
                    ),
                    None,
                ));
            }
            Err(e) => return Err(error_page(&e, None)),
        };
        let form: T = read_form(headers, body)
            .await
            .map_err(|e| error_page(&e, Some(&session)))?;
        // Compared as digests, so the comparison's time says nothing about the token.
        if sha256_hex(form.csrf().as_bytes()) != sha256_hex(session.csrf().as_bytes()) {
            return Err(error_page(
                &ApiError::new(
                    StatusCode::FORBIDDEN,
                    "csrf_token_invalid",
                    "the form's CSRF token is missing or belongs to another session; reload the page and submit it again",
                ),
                Some(&session),
            ));
        }
        Ok((session, form))
    }
}

/// The login form; `problem` says why the last attempt failed.
fn login_form(problem: Option<&str>) -> maud::Markup {
    let content = html! {
        section.card.login {
            @if let Some(problem) = problem {
                div.error role="alert" { (problem) }
            }
            p { "Log in with a management API token (create one with "
                code { "rampart token create --role viewer" } "). The token is sent once, in this form; the console then uses a session cookie." }
            form method="post" action="/console/login" {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required maxlength=(MAX_TOKEN_LEN);
                button type="submit" { "Log in" }
            }
        }
    };
    document("Log in", Section::None, None, content)
}

/// `GET /console/login`.
pub(super) async fn login_page(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
) -> Response {
    match console.session(&headers).await {
        Ok(Some(_)) => Redirect::to("/console/fleet").into_response(),
        _ => html_response(StatusCode::OK, login_form(None)),
    }
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// `POST /console/login`: a token for a session cookie.
pub(super) async fn login(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(e) = check_same_origin(&headers) {
        return error_page(&e, None);
    }
    let form: LoginForm = match read_form(&headers, body).await {
        Ok(form) => form,
        Err(e) => return error_page(&e, None),
    };
    let secret = form.token.trim();
    let refused = |status: StatusCode, problem: &str| {
        let mut response = html_response(status, login_form(Some(problem)));
        if status == StatusCode::UNAUTHORIZED {
            response.extensions_mut().insert(FailureKind::ConsoleLogin);
        }
        response
    };
    if secret.is_empty() || secret.len() > MAX_TOKEN_LEN {
        return refused(
            StatusCode::UNAUTHORIZED,
            "Enter a management API token (at most 256 characters).",
        );
    }
    let caller = match console.api.authenticate(secret).await {
        Ok(caller) => caller,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return refused(
                StatusCode::UNAUTHORIZED,
                "That token is unknown or revoked. Check it, or ask an admin for a new one.",
            );
        }
        Err(e) => return error_page(&e, None),
    };
    if let Err(e) = caller.require(Permission::Read) {
        return refused(
            StatusCode::FORBIDDEN,
            &format!(
                "{} The console needs a role that may read the fleet.",
                e.detail
            ),
        );
    }
    // The session this browser already had (if any) ends with this login: a browser holds one
    // session, and one planted before the login cannot outlive it.
    let replaced = match console.session(&headers).await {
        Ok(found) => found,
        Err(e) => return error_page(&e, None),
    };
    if let Some(old) = replaced
        && let Err(e) = console.end_session(&old, "replaced by a new login").await
    {
        return error_page(&e, None);
    }
    match console.start_session(&caller).await {
        Ok(cookie) => {
            let mut response = Redirect::to("/console/fleet").into_response();
            response.headers_mut().insert(header::SET_COOKIE, cookie);
            response
        }
        Err(e) => error_page(&e, None),
    }
}

impl Console {
    /// Ends `session` (audited as `console.logout`, with why).
    async fn end_session(&self, session: &Session, why: &str) -> Result<(), ApiError> {
        self.api
            .audit
            .write(
                unix_now(),
                &session.caller().actor(),
                "console.logout",
                session.caller().token_id(),
                json!({"reason": why}),
                |line| {
                    let (db, digest) = (self.api.db.clone(), session.digest().to_owned());
                    async move { db.end_console_session(&digest, &line).await }
                },
            )
            .await
            .map(|_| ())
            .map_err(write_error("ending a console session"))
    }

    /// Stores a new session for `caller` (audited) and returns its `Set-Cookie` value.
    async fn start_session(&self, caller: &Caller) -> Result<HeaderValue, ApiError> {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; SESSION_ID_BYTES];
        ring::rand::SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| ApiError::internal())?;
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let now = unix_now();
        let session = ConsoleSession {
            id_sha256: sha256_hex(id.as_bytes()),
            token_id: caller.token_id().to_owned(),
            role: caller.role().as_str().to_owned(),
            created: now,
            last_used: now,
            expires: now.saturating_add(secs(self.config.session_lifetime)),
        };
        let limits = self.limits();
        self.api
            .audit
            .write(
                now,
                &caller.actor(),
                "console.login",
                caller.token_id(),
                json!({"role": session.role, "expires": session.expires}),
                |line| {
                    let (db, session) = (self.api.db.clone(), session.clone());
                    async move { db.create_console_session(&session, limits, &line).await }
                },
            )
            .await
            .map_err(write_error("starting a console session"))?;
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict"
        ))
        .map_err(|_| ApiError::internal())
    }
}

/// `POST /console/logout`: ends the session and clears the cookie.
pub(super) async fn logout(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (session, _) = match console.form_session::<CsrfOnly>(&headers, body).await {
        Ok(found) => found,
        Err(refusal) => return refusal,
    };
    if let Err(e) = console.end_session(&session, "logout").await {
        return error_page(&e, Some(&session));
    }
    let mut response = Redirect::to("/console/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "__Host-rampart_console=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    response
}
