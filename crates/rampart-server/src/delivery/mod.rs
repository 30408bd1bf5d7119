//! Delivery: the image repository the server hosts ([`image_repo`]), where its artifacts are
//! stored ([`artifact_store`]), the Uptane-style director ([`director`]), the signed quarantine
//! instruction ([`instruction`], signed with the director's key), and how an artifact is
//! answered, shared by the native device API and the DDI API.
//!
//! Artifacts are read from the [`ArtifactStore`]: the repository's `targets/` directory, or an
//! S3-compatible object store (`<prefix>/targets/<path>`, one ranged GET per request; `HEAD`
//! asks the store for the size only). The store is not trusted (see [`artifact_store`]): a
//! stored file or object whose length differs from the signed length is not sent (503), and
//! devices check the hashes of what they get.
//!
//! Artifact responses carry `ETag: "<hash from the file name>"` and `Accept-Ranges: bytes`,
//! and are streamed (from disk in 64 KiB chunks; never read whole into memory):
//!
//! * `If-None-Match` naming the ETag (or `*`) → 304.
//! * `Range: bytes=a-b`, `bytes=a-` or `bytes=-n` → 206 with `Content-Range`; a range starting
//!   at or beyond the end (or `-0`) → 416 with `Content-Range: bytes */<length>`.
//! * Several ranges (`bytes=0-1,5-6`), another unit, or a syntactically invalid range are
//!   ignored: the answer is 200 with the whole artifact (RFC 9110 allows a server to ignore
//!   Range; a device resuming a download asks for one range only).
//! * `If-Range` with a different ETag (or a date: no `Last-Modified` is sent) → the Range is
//!   ignored and the whole artifact is sent (200), so a resumed download never splices two
//!   different files.

pub mod artifact_store;
pub mod director;
pub mod evidence_store;
pub mod image_repo;
pub(crate) mod instruction;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use artifact_store::{ArtifactStore, Opened};
use image_repo::Artifact;

use crate::listen::http::ApiError;

/// What to answer to a request's Range headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RangeAnswer {
    /// 200 with the whole artifact.
    Full,
    /// 206 with bytes `start..=end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Decides how to answer `Range` (and `If-Range`) for an artifact of `length` bytes whose
/// ETag is `etag` (quoted).
fn range_answer(headers: &HeaderMap, length: u64, etag: &str) -> RangeAnswer {
    let Some(range) = headers.get(header::RANGE) else {
        return RangeAnswer::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.to_str().ok().map(str::trim) != Some(etag)
    {
        return RangeAnswer::Full;
    }
    match range.to_str() {
        Ok(range) => parse_range(range, length),
        Err(_) => RangeAnswer::Full,
    }
}

/// Parses one `bytes=` range (see the module documentation for what is ignored).
fn parse_range(range: &str, length: u64) -> RangeAnswer {
    let range = range.trim();
    let Some(unit) = range.get(..6) else {
        return RangeAnswer::Full;
    };
    if !unit.eq_ignore_ascii_case("bytes=") {
        return RangeAnswer::Full;
    }
    let set = &range[6..];
    if set.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, true) => RangeAnswer::Full,
        (true, false) => match number(last) {
            None => RangeAnswer::Full,
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if length == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: length.saturating_sub(n),
                end: length - 1,
            },
        },
        (false, true) => match number(first) {
            None => RangeAnswer::Full,
            Some(start) if start >= length => RangeAnswer::Unsatisfiable,
            Some(start) => RangeAnswer::Partial {
                start,
                end: length - 1,
            },
        },
        (false, false) => match (number(first), number(last)) {
            (Some(start), Some(end)) if end >= start => {
                if start >= length {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        start,
                        end: end.min(length - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
    }
}

/// Whether `If-None-Match` names `etag` (weak comparison, `*` matches).
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Answers a request for the artifact `path` (below `targets/`) from `store`; `head_only` for
/// `HEAD` (the store is asked for the size, no bytes are read).
pub(crate) async fn serve_artifact(
    store: &ArtifactStore,
    path: &str,
    artifact: &Artifact,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response, ApiError> {
    let etag = format!("\"{}\"", artifact.hash);
    let etag_value = HeaderValue::from_str(&etag).map_err(|_| ApiError::internal())?;
    let length = artifact.info.length;
    // `reason` names the stored file or object.
    let unavailable = |reason: String| {
        crate::observe::log::error(&reason, serde_json::Value::Null);
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "artifact_unavailable",
            "the server cannot send this artifact right now (the operator has been told why in the server log); retry later",
        )
    };
    let common = |response: &mut Response| {
        let h = response.headers_mut();
        h.insert(header::ETAG, etag_value.clone());
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
    };
    if if_none_match(headers, &etag) {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        common(&mut response);
        return Ok(response);
    }
    let (status, start, count) = match range_answer(headers, length, &etag) {
        RangeAnswer::Full => (StatusCode::OK, 0, length),
        RangeAnswer::Partial { start, end } => {
            (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
        }
        RangeAnswer::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!(
                    "the artifact is {length} bytes; ask for a range that starts before its end (e.g. Range: bytes=0-)"
                ),
            )
            .into_response();
            common(&mut response);
            let content_range = HeaderValue::from_str(&format!("bytes */{length}"))
                .map_err(|_| ApiError::internal())?;
            response
                .headers_mut()
                .insert(header::CONTENT_RANGE, content_range);
            return Ok(response);
        }
    };
    let opened = if head_only {
        store.size(path).await.map(|found| {
            found.map(|size| Opened {
                size,
                stream: Box::pin(futures_util::stream::empty()),
            })
        })
    } else {
        store.open(path, start, count).await
    };
    let body = match opened {
        Ok(Some(Opened { size, stream })) if size == length => Body::from_stream(stream),
        Ok(Some(Opened { size, .. })) => {
            return Err(unavailable(format!(
                "{} is {size} bytes but the image repository lists {length}",
                store.location(path)
            )));
        }
        Ok(None) => {
            return Err(unavailable(format!(
                "{} is missing from the artifact store",
                store.location(path)
            )));
        }
        Err(e) => return Err(unavailable(e.to_string())),
    };
    let mut response = (status, body).into_response();
    common(&mut response);
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    if status == StatusCode::PARTIAL_CONTENT {
        let content_range =
            HeaderValue::from_str(&format!("bytes {start}-{}/{length}", start + count - 1))
                .map_err(|_| ApiError::internal())?;
        h.insert(header::CONTENT_RANGE, content_range);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn byte_ranges() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-9", 100), Partial { start: 0, end: 9 });
        assert_eq!(
            parse_range("bytes=90-", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            Partial { start: 50, end: 99 }
        );
        assert_eq!(parse_range("BYTES=1-1", 100), Partial { start: 1, end: 1 });
        assert_eq!(parse_range("bytes=100-", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=100-200", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Unsatisfiable);
        // Ignored: several ranges, other units, nonsense.
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Full);
        assert_eq!(parse_range("items=0-1", 100), Full);
        assert_eq!(parse_range("bytes=5-1", 100), Full);
        assert_eq!(parse_range("bytes=+5-", 100), Full);
        assert_eq!(parse_range("bytes=a-b", 100), Full);
        assert_eq!(parse_range("bytes=-", 100), Full);
        assert_eq!(parse_range("bytes", 100), Full);
        assert_eq!(parse_range("bytes=0-99999999999999999999999", 100), Full);
    }

    #[test]
    fn if_range_with_another_etag_or_a_date_sends_everything() {
        let etag = "\"abc\"";
        let h = headers(&[(header::RANGE, "bytes=5-")]);
        assert_eq!(
            range_answer(&h, 10, etag),
            RangeAnswer::Partial { start: 5, end: 9 }
        );
        let h = headers(&[(header::RANGE, "bytes=5-"), (header::IF_RANGE, "\"abc\"")]);
        assert_eq!(
            range_answer(&h, 10, etag),
            RangeAnswer::Partial { start: 5, end: 9 }
        );
        let h = headers(&[(header::RANGE, "bytes=5-"), (header::IF_RANGE, "\"abd\"")]);
        assert_eq!(range_answer(&h, 10, etag), RangeAnswer::Full);
        let h = headers(&[(header::RANGE, "bytes=5-"), (header::IF_RANGE, "W/\"abc\"")]);
        assert_eq!(range_answer(&h, 10, etag), RangeAnswer::Full);
        let h = headers(&[
            (header::RANGE, "bytes=5-"),
            (header::IF_RANGE, "Wed, 21 Oct 2015 07:28:00 GMT"),
        ]);
        assert_eq!(range_answer(&h, 10, etag), RangeAnswer::Full);
    }
}
