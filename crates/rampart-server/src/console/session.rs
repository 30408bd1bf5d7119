//! Console sessions: the session cookie, the stored session a request's cookie names, the CSRF
//! token of a session, the same-origin check and bounded form bodies (the login and logout
//! handlers that use them are in `access`).
//!
//! * The session id is 32 random bytes (base64url) in the cookie [`COOKIE`] (`HttpOnly`,
//!   `Secure`, `SameSite=Strict`, `Path=/`, no `Max-Age`: it ends with the browser too). Its
//!   `__Host-` prefix makes browsers refuse it unless set by this host over HTTPS without a
//!   `Domain`, so a sibling subdomain or a plain-HTTP answer cannot plant a session of its
//!   choosing; a request carrying the name twice has no session (which one would be ours?).
//!   The database keeps its SHA-256, the token's id and role, and when it ends (absolute and
//!   idle limits, [`super::ConsoleConfig`]); a token holds at most a capped number of sessions.
//!   A revoked token's sessions end at once (the lookup joins the token).
//! * The CSRF token of a session is derived from its id (SHA-256 of a label and the id), so it
//!   is tied to the session, never stored, and useless without the cookie. Every form POST
//!   carries it in the hidden field `csrf`, and is refused without it or with another.
//! * A POST whose `Origin` is not the console's own or whose `Sec-Fetch-Site` is not
//!   `same-origin` is refused before anything else (the login form too, so no other site can
//!   log a browser into a session of its choosing).
//! * A failed login answers 401 marked
//!   [`crate::listen::auth_failures::FailureKind::ConsoleLogin`]: the listener's
//!   failed-authentication throttle counts it against the source, with the API's tokens (the
//!   same secrets), and slows that source down.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use rampart_db::SessionLimits;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::Console;
use crate::helpers::{sha256_hex, unix_now};
use crate::listen::http::{ApiError, BodyLimits, read_body_of};
use crate::operator::{Caller, Permission, Role};

/// The session cookie's name.
pub(super) const COOKIE: &str = "__Host-rampart_console";
/// Random bytes in a session id.
pub(super) const SESSION_ID_BYTES: usize = 32;
/// Largest console form body (a token, a CSRF token, a few short fields).
const MAX_FORM_BYTES: usize = 4096;
/// The media type of HTML forms.
const FORM_MEDIA_TYPE: &str = "application/x-www-form-urlencoded";
/// A session's last use is written at most this often (a page view is not a database write),
/// and at least twice per idle limit.
const TOUCH_EVERY_SECS: i64 = 60;

/// A logged-in browser.
pub(crate) struct Session {
    caller: Caller,
    token_name: String,
    /// The session id's SHA-256, as stored.
    digest: String,
    csrf: String,
}

impl Session {
    pub(super) fn caller(&self) -> &Caller {
        &self.caller
    }

    pub(super) fn role(&self) -> Role {
        self.caller.role()
    }

    /// Whether the session's role has `need` (what a page offers; the server checks again).
    pub(super) fn may(&self, need: Permission) -> bool {
        self.caller.require(need).is_ok()
    }

    /// The session id's SHA-256, as stored.
    pub(super) fn digest(&self) -> &str {
        &self.digest
    }

    pub(super) fn token_name(&self) -> &str {
        &self.token_name
    }

    /// The CSRF token forms of this session carry.
    pub(super) fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The CSRF token of the session whose id is `session_id`.
pub(super) fn csrf_token(session_id: &str) -> String {
    sha256_hex(format!("rampart-console-csrf\n{session_id}").as_bytes())
}

impl Console {
    pub(super) fn limits(&self) -> SessionLimits {
        SessionLimits {
            idle_secs: secs(self.config.idle_timeout),
            max_per_token: i64::from(self.config.max_sessions_per_token),
        }
    }

    /// The session the request's cookie names, if it is live.
    pub(super) async fn session(&self, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
        self.find_session(headers, true).await
    }

    /// Whether the request's session is still live, without counting this as a use: a page
    /// left open (its live stream asks every half minute) must not keep a session from idling
    /// out.
    pub(super) async fn session_is_live(&self, headers: &HeaderMap) -> Result<bool, ApiError> {
        Ok(self.find_session(headers, false).await?.is_some())
    }

    async fn find_session(
        &self,
        headers: &HeaderMap,
        is_use: bool,
    ) -> Result<Option<Session>, ApiError> {
        let Some(id) = session_cookie(headers) else {
            return Ok(None);
        };
        let digest = sha256_hex(id.as_bytes());
        let now = unix_now();
        let found = self
            .api
            .db
            .console_session(&digest, now, self.limits())
            .await
            .map_err(|e| ApiError::from_db("reading a console session", e))?;
        let Some((stored, token)) = found else {
            return Ok(None);
        };
        // Often enough that a session in use never idles out: at least twice per idle limit.
        let touch_every = (self.limits().idle_secs / 2).clamp(0, TOUCH_EVERY_SECS);
        if is_use && stored.last_used + touch_every <= now {
            self.api
                .db
                .touch_console_session(&digest, now)
                .await
                .map_err(|e| ApiError::from_db("noting a console session's use", e))?;
        }
        let token_name = token.name.clone();
        Ok(Some(Session {
            caller: Caller::from_token(token)?,
            token_name,
            digest,
            csrf: csrf_token(&id),
        }))
    }
}

pub(super) fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A console form, which carries the session's CSRF token.
pub(super) trait HasCsrf {
    fn csrf(&self) -> &str;
}

/// A form with nothing but the CSRF token (logout, campaign actions).
#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The session id in the request's cookies, if it looks like one of ours.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    let mut named = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE);
    let (_, value) = named.next()?;
    if named.next().is_some() {
        return None;
    }
    Some(value.to_owned()).filter(|v| {
        v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// Refuses a request a browser sent from another site: `Sec-Fetch-Site` other than
/// `same-origin`, or an `Origin` other than this console's (`https://` and the `Host`).
/// `Origin: null` is what browsers send for a same-origin form under the console's
/// `Referrer-Policy: no-referrer`, but also what a sandboxed frame or a `data:` page sends: it
/// passes only with `Sec-Fetch-Site: same-origin`. Clients that send neither header (scripts)
/// are held by the CSRF token alone.
pub(super) fn check_same_origin(headers: &HeaderMap) -> Result<(), ApiError> {
    let refuse =
        |detail: String| ApiError::new(StatusCode::FORBIDDEN, "cross_site_request", detail);
    let site = headers.get("sec-fetch-site").map(|v| v.as_bytes());
    if let Some(site) = site
        && site != b"same-origin"
    {
        return Err(refuse(format!(
            "the console takes forms only from its own pages, not from a {} request; open the console and submit the form there",
            String::from_utf8_lossy(site)
        )));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same = origin.to_str().ok() == Some(format!("https://{host}").as_str());
        let hidden_but_same = origin.as_bytes() == b"null" && site == Some(b"same-origin");
        if !same && !hidden_but_same {
            return Err(refuse(
                "the form came from another origin; open the console and submit the form there"
                    .into(),
            ));
        }
    }
    Ok(())
}

/// Reads a bounded `application/x-www-form-urlencoded` body.
pub(super) async fn read_form<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Body,
) -> Result<T, ApiError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(FORM_MEDIA_TYPE));
    if !is_form {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "console forms are sent as application/x-www-form-urlencoded",
        ));
    }
    let limits = BodyLimits {
        max_bytes: MAX_FORM_BYTES,
        read_timeout: std::time::Duration::from_secs(10),
    };
    let bytes = read_body_of(headers, body, limits, FORM_MEDIA_TYPE).await?;
    serde_urlencoded::from_bytes(&bytes)
        .map_err(|e| ApiError::invalid(format!("the form does not read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others_and_must_look_like_an_id() {
        let id = "A".repeat(43);
        let h = headers(&[
            ("cookie", "a=1"),
            ("cookie", &format!("x=2; {COOKIE}={id}")),
        ]);
        assert_eq!(session_cookie(&h), Some(id.clone()));
        for bad in ["<script>", "a b", &"A".repeat(65)] {
            let h = headers(&[("cookie", &format!("{COOKIE}={bad}"))]);
            assert_eq!(session_cookie(&h), None, "{bad}");
        }
        // A planted second cookie of the name (another path or domain, sent first or last):
        // no session, rather than whichever came first.
        let planted = "B".repeat(43);
        for pair in [
            headers(&[("cookie", &format!("{COOKIE}={planted}; {COOKIE}={id}"))]),
            headers(&[
                ("cookie", &format!("{COOKIE}={id}")),
                ("cookie", &format!("{COOKIE}={planted}")),
            ]),
        ] {
            assert_eq!(session_cookie(&pair), None);
        }
        // The name without the prefix (what a subdomain could set) is not the session.
        let h = headers(&[("cookie", &format!("rampart_console={id}"))]);
        assert_eq!(session_cookie(&h), None);
        assert_eq!(session_cookie(&headers(&[("cookie", "other=1")])), None);
    }

    #[test]
    fn cross_site_posts_are_refused_and_same_origin_ones_pass() {
        let host = ("host", "127.0.0.1:8444");
        assert!(
            check_same_origin(&headers(&[host])).is_ok(),
            "no browser headers"
        );
        assert!(
            check_same_origin(&headers(&[
                host,
                ("origin", "https://127.0.0.1:8444"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok()
        );
        assert!(
            check_same_origin(&headers(&[
                host,
                ("origin", "null"),
                ("sec-fetch-site", "same-origin"),
            ]))
            .is_ok(),
            "a same-origin form under Referrer-Policy: no-referrer"
        );
        for refused in [
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "http://127.0.0.1:8444")],
            vec![host, ("origin", "null")],
            vec![host, ("sec-fetch-site", "cross-site")],
            vec![host, ("sec-fetch-site", "same-site")],
        ] {
            let e = check_same_origin(&headers(&refused)).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN, "{refused:?}");
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_ne!(csrf_token("a"), sha256_hex(b"a"), "not the stored digest");
    }
}
