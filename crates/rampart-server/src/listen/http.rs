//! HTTP plumbing shared by the APIs: JSON error answers, JSON responses,
//! and bounded, time-limited request-body reading.

use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody as _};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rampart_db::{DbError, DomainError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::helpers::NoRandomness;
use crate::observe::audit::AuditWriteError;

/// An error answer: `{"error": "<code>", "detail": "<human-readable>"}`.
///
/// `error` is a stable machine-readable code; `detail` explains what was
/// wrong and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            error,
            detail: detail.into(),
        }
    }

    /// 422: well-formed JSON that does not say something acceptable.
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", detail)
    }

    /// 400: the body is not JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed_json", detail)
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; the device API is described in the server's OpenAPI document (crates/rampart-server/openapi.json, GET /api/v1/openapi.json)",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this endpoint does not accept that method; see the server's OpenAPI document (GET /api/v1/openapi.json)",
        )
    }

    /// 500, with nothing about the cause sent to the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the server failed to handle the request; retry later",
        )
    }

    /// Maps a storage error: bad input is the client's (422); anything else
    /// is the server's (503 when the database is unreachable, else 500) and
    /// is logged, not described to the client.
    pub fn from_db(context: &str, error: DbError) -> Self {
        let storage = match error.split() {
            Ok(DomainError::Invalid(message)) => return Self::invalid(message),
            Ok(DomainError::Conflict(message)) => {
                return Self::new(StatusCode::CONFLICT, "conflict", message);
            }
            Ok(DomainError::Quota(message)) => {
                return Self::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message);
            }
            // An unknown device, group or assignment where the handler did not expect one
            // (handlers that name them answer 404 through `db_error`).
            Ok(unexpected) => {
                crate::observe::log::error(
                    context,
                    serde_json::json!({"error": unexpected.to_string()}),
                );
                return Self::internal();
            }
            Err(storage) => storage,
        };
        crate::observe::log::error(context, serde_json::json!({"error": storage.to_string()}));
        if storage.is_unavailable() {
            Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the server's database is unavailable; retry later",
            )
        } else {
            Self::internal()
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            detail: &'a str,
        }
        let mut response = json_response(
            self.status,
            &Body {
                error: self.error,
                detail: &self.detail,
            },
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"rampart\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// A JSON response (`application/json`, not cacheable by intermediaries).
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => json_bytes_response(status, body),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response(),
    }
}

/// A response carrying already-serialized JSON.
pub fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Limits on request bodies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest accepted body; bigger ones get 413.
    pub max_bytes: usize,
    /// Time allowed to receive the whole body; slower clients get 408.
    pub read_timeout: Duration,
}

/// A body over the limit is still read and discarded up to this many
/// bytes, so the client receives the 413 on a healthy connection instead of
/// a reset; beyond it (or when `Content-Length` already says so) the
/// connection is simply not reused.
const DRAIN_LIMIT: u64 = 1024 * 1024;

/// Reads a request body within `limits`. A present `Content-Type` must be
/// `application/json`. Every refusal except an announced `Content-Length`
/// over the drain limit consumes the body first, so the client gets its
/// 4xx on a connection it can keep using.
pub async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
) -> Result<Bytes, ApiError> {
    read_body_of(headers, body, limits, "application/json").await
}

/// [`read_body`] for a body of another media type: a present `Content-Type` must be
/// `media_type` (e.g. `application/octet-stream` for an evidence chunk).
pub async fn read_body_of(
    headers: &HeaderMap,
    body: Body,
    limits: BodyLimits,
    media_type: &'static str,
) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is over the limit of {} bytes",
                limits.max_bytes
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        return Err(too_large());
    }
    let max = limits.max_bytes as u64;
    let read = async move {
        let mut body = body;
        let mut collected = Vec::new();
        let mut seen: u64 = 0;
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "body_read_failed",
                    "the request body could not be read (connection closed or invalid framing)",
                )
            })?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            seen = seen.saturating_add(data.len() as u64);
            if seen <= max {
                collected.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                break;
            }
        }
        if seen > max {
            return Err(too_large());
        }
        Ok(Bytes::from(collected))
    };
    let bytes = match tokio::time::timeout(limits.read_timeout, read).await {
        Ok(result) => result?,
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {:.1} seconds",
                    limits.read_timeout.as_secs_f64()
                ),
            ));
        }
    };
    // Judged after reading, so the answer leaves the connection reusable.
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let essence = content_type
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim();
        if !essence.eq_ignore_ascii_case(media_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                if media_type == "application/json" {
                    "the request body must be JSON (Content-Type: application/json)".to_string()
                } else {
                    format!("the request body must be Content-Type: {media_type}")
                },
            ));
        }
    }
    Ok(bytes)
}

/// Parses a JSON body: a syntax error or a repeated key is 400 `malformed_json`;
/// JSON of the wrong shape (missing field, wrong type, unknown field) is 422.
///
/// One JSON policy for every route: an object that names a key twice is refused, whatever
/// `T` is. serde's derived structs refuse repeated fields, but a body read as a free
/// [`serde_json::Value`] (the device poll's facts, attribute maps) would silently keep the
/// last one, and two parsers may disagree on which one counts.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::malformed_json(format!(
            "the request body is empty; expected {expected}"
        )));
    }
    if let Some(key) = duplicate_key(bytes) {
        return Err(duplicate_key_error(&key));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(format!("expected {expected}: {e}")),
            Category::Syntax | Category::Eof | Category::Io => {
                ApiError::malformed_json(format!("the request body is not valid JSON: {e}"))
            }
        }
    })
}

/// The 400 answer for a JSON object that names `key` twice.
pub fn duplicate_key_error(key: &str) -> ApiError {
    ApiError::malformed_json(format!(
        "the request body names the key {:?} twice in one object; send each key once",
        key.chars().take(64).collect::<String>()
    ))
}

/// The first key some object of the JSON document `bytes` names twice; `None` if there is
/// none or `bytes` is not JSON (the caller's parser reports that). serde_json bounds the
/// nesting depth (128), so a deep document cannot exhaust the stack.
pub fn duplicate_key(bytes: &[u8]) -> Option<String> {
    use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};

    const DUPLICATE: &str = "rampart: duplicate key ";

    /// Any JSON value, checked for repeated keys and otherwise discarded.
    struct UniqueKeys;

    impl<'de> Deserialize<'de> for UniqueKeys {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(UniqueKeysVisitor)
        }
    }

    struct UniqueKeysVisitor;

    impl<'de> Visitor<'de> for UniqueKeysVisitor {
        type Value = UniqueKeys;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
            Ok(UniqueKeys)
        }
        fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
            Ok(UniqueKeys)
        }
        fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
            Ok(UniqueKeys)
        }
        fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
            Ok(UniqueKeys)
        }
        fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
            Ok(UniqueKeys)
        }
        fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
            Ok(UniqueKeys)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
            while seq.next_element::<UniqueKeys>()?.is_some() {}
            Ok(UniqueKeys)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if seen.contains(&key) {
                    return Err(A::Error::custom(format!("{DUPLICATE}{key}")));
                }
                map.next_value::<UniqueKeys>()?;
                seen.insert(key);
            }
            Ok(UniqueKeys)
        }
    }

    let error = serde_json::from_slice::<UniqueKeys>(bytes).err()?;
    // The error's text is "<message> at line L column C"; only ours carries the marker.
    let text = error.to_string();
    let rest = text.strip_prefix(DUPLICATE)?;
    let end = rest.rfind(" at line ").unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

/// A query string, parsed as `T`; a bad one is answered in the API's error format (422
/// `invalid_request` with what was wrong), never axum's plain-text rejection.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))
    }
}

/// The one device-id grammar, at every entry (device certificates, DDI controller ids,
/// management routes): 1 to 128 characters of `A-Z a-z 0-9 . _ : -`, not `.` or `..`
/// ([`rampart_pki::validate_device_id`], which certificates are issued and read with). 400
/// `invalid_device_id` otherwise.
pub fn check_device_id(id: &str) -> Result<(), ApiError> {
    rampart_pki::validate_device_id(id).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_device_id",
            device_id_problem(id),
        )
    })
}

/// What is wrong with a device id outside the grammar (for [`check_device_id`] and the DDI
/// front's own error format).
pub fn device_id_problem(id: &str) -> String {
    format!(
        "device id {:?} is not valid: a device id is 1 to {} characters of A-Z a-z 0-9 . _ : - and not \".\" or \"..\"",
        id.chars().take(64).collect::<String>(),
        rampart_pki::MAX_DEVICE_ID_LEN
    )
}

/// No id could be made: the answer is a 500 (nothing was stored).
impl From<NoRandomness> for ApiError {
    fn from(_: NoRandomness) -> Self {
        ApiError::internal()
    }
}

/// A failed audited write, as an answer: the audit log's own failures, or a storage error.
pub(crate) fn audit_error(e: AuditWriteError) -> ApiError {
    match e {
        AuditWriteError::Db(e) => ApiError::from_db("writing an audited change", e),
        AuditWriteError::Record(m) => ApiError::invalid(m),
        AuditWriteError::BrokenChain(m) => {
            crate::observe::log::error(
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

/// A storage error as an answer, naming the unknown device, group or assignment.
pub(crate) fn db_error(context: &str, e: DbError) -> ApiError {
    match e {
        DbError::Domain(DomainError::UnknownDevice(id)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_device",
            format!("no device {id:?} in the inventory"),
        ),
        DbError::Domain(DomainError::UnknownGroup(name)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_group",
            format!("no group {name:?}; create it with POST /api/v1/groups"),
        ),
        DbError::Domain(DomainError::UnknownAssignment(id)) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_assignment",
            format!("no assignment {id:?}"),
        ),
        other => ApiError::from_db(context, other),
    }
}

/// A failed audited write (`context` names the change) as an answer.
pub(crate) fn write_error(context: &'static str) -> impl Fn(AuditWriteError) -> ApiError {
    move |e| match e {
        AuditWriteError::Db(e) => db_error(context, e),
        other => audit_error(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        assert_eq!(duplicate_key(br#"{"a": 1, "b": 2}"#), None);
        assert_eq!(duplicate_key(br#"{"a": 1, "a": 2}"#).as_deref(), Some("a"));
        assert_eq!(
            duplicate_key(br#"[{"x": {"k": 1, "k\u0020": 2, "k": 3}}]"#).as_deref(),
            Some("k")
        );
        // Not JSON: the caller's parser answers.
        assert_eq!(duplicate_key(b"{\"a\": "), None);
        let e = parse_json::<serde_json::Value>(
            br#"{"firmware_version": "1", "firmware_version": "2"}"#,
            "x",
        )
        .unwrap_err();
        assert_eq!(
            (e.status, e.error),
            (StatusCode::BAD_REQUEST, "malformed_json")
        );
    }

    #[test]
    fn one_device_id_grammar() {
        for good in ["dev-1", "a.b_c:d", &"x".repeat(128)] {
            assert!(check_device_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "<script>",
            "a b",
            &"x".repeat(129),
            "é",
        ] {
            let e = check_device_id(bad).unwrap_err();
            assert_eq!(
                (e.status, e.error),
                (StatusCode::BAD_REQUEST, "invalid_device_id")
            );
        }
    }
}

/// Which error document a listener answers in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ErrorFormat {
    /// `{"error", "detail"}` (device and management APIs).
    Api,
    /// hawkBit's `{"exceptionClass", "errorCode", "message"}` (the DDI API).
    Ddi,
}

/// Largest framework rejection text carried into the error document.
const MAX_REJECTION_TEXT: usize = 1024;

/// The Content-Security-Policy of every HTML answer (the web console, and the listener's own
/// refusals in HTML): only the page's own script, styles, images and connections; no inline
/// script or style; no framing; forms post only to the same origin.
pub(crate) const HTML_CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Sets the headers every HTML answer carries: [`HTML_CONTENT_SECURITY_POLICY`], no MIME
/// sniffing, no referrer, no framing (for browsers older than `frame-ancestors`).
pub(crate) fn html_security_headers(headers: &mut HeaderMap) {
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            HTML_CONTENT_SECURITY_POLICY,
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}

/// One error format for every answer: the framework's own rejections (a path that does not
/// decode, a method a route does not take) are plain text or empty; they are rewritten into
/// the listener's error document, so clients parse one format whatever went wrong.
pub(crate) async fn framework_rejections_in(format: ErrorFormat, response: Response) -> Response {
    let status = response.status();
    let content_type = response.headers().get(header::CONTENT_TYPE);
    let plain = content_type.is_some_and(|t| t.as_bytes().starts_with(b"text/plain"));
    // An empty 405 is the router's; other empty answers are deliberate (DDI's bodiless 404
    // and 410, as hawkBit sends them).
    let bare_405 = content_type.is_none() && status == StatusCode::METHOD_NOT_ALLOWED;
    if !(status.is_client_error() && (plain || bare_405)) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let detail = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned()
    } else {
        text
    };
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_FOUND => "not_found",
        _ => "invalid_request",
    };
    let rewritten = match format {
        ErrorFormat::Api => ApiError::new(status, code, detail).into_response(),
        ErrorFormat::Ddi => json_response(
            status,
            &rampart_ddi::wire::ErrorBody {
                exception_class: "io.rampart.ddi.DdiException".into(),
                error_code: format!("rampart.{code}"),
                message: detail,
            },
        ),
    };
    // Keep what the framework said besides the body (`Allow` on a 405, for one).
    let (new_parts, new_body) = rewritten.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in &new_parts.headers {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, new_body)
}
