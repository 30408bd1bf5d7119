//! Hosting the image repository to devices, and artifact delivery.
//!
//! * `GET /device/v1/repo/metadata/{file}` — the image repository's TUF metadata files
//!   (`N.root.json`, `timestamp.json`, `N.snapshot.json`, `N.targets.json`, delegated roles),
//!   as they are on disk. Any device may read them: they are signed, and the device verifies
//!   them with its TUF client. A name other than letters, digits, `.`, `_` and `-` ending in
//!   `.json` is refused with 400 (no path can leave `metadata/`).
//! * `GET /device/v1/repo/targets/{path}` — an artifact, in consistent-snapshot form
//!   (`[dir/]<hash>.<name>`). Only the artifacts of the device's current assignment are served:
//!   the assigned target and the documents its release information references (SBOM,
//!   provenance, tlog-proof). Anything else is 403 `artifact_not_assigned`; a path with an empty,
//!   `.` or `..` segment, a backslash or a control character is 400 `bad_path`.
//!
//! Artifacts are read from the [`ArtifactStore`]: the repository's `targets/` directory, or an
//! S3-compatible object store (`<prefix>/targets/<path>`, one ranged GET per request; `HEAD`
//! asks the store for the size only). The store is not trusted (see
//! [`artifact_store`](crate::artifact_store)): a stored file or object whose length differs
//! from the signed length is not sent (503), and devices check the hashes of what they get.
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
//!
//! The server's view of the repository ([`HostedRepo`]) is read exactly as a device reads it:
//! the TUF client over `file://`, from `metadata/1.root.json` through every rotation, so a
//! tampered or expired repository is reported (503, logged with the reason) instead of served
//! as assignments.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::artifact_store::{ArtifactStore, Opened, open_file};
use crate::device_api::DeviceApi;
use crate::director::Director;
use crate::helpers::unix_now;
use crate::image_repo::{Artifact, HostedRepo, HostedRepoError, MAX_METADATA_BYTES};
use crate::listen::http::ApiError;
use crate::listen::mtls::PeerIdentity;

/// Longest artifact path accepted, in bytes.
const MAX_PATH_LEN: usize = 1024;

/// Shared state of the repository and director routes.
pub(crate) struct Delivery {
    pub(crate) api: Arc<DeviceApi>,
    pub(crate) repo: Arc<HostedRepo>,
    /// Where the artifacts are read from.
    pub(crate) artifacts: ArtifactStore,
    pub(crate) director: Option<Director>,
}

/// The repository and director routes a configuration asks for (none without an image
/// repository); fails for a director without an image repository, or whose root does not
/// suit its key.
pub(crate) fn routes(
    config: &crate::ServerConfig,
    api: Arc<DeviceApi>,
    repo: Option<Arc<HostedRepo>>,
) -> Result<Router, crate::ServerError> {
    let Some(dir) = &config.image_repo else {
        if config.director.is_some() {
            return Err(crate::ServerError::Config(
                "the director needs an image repository to point into: set image_repo (`rampart server --repo DIR`)".into(),
            ));
        }
        return Ok(Router::new());
    };
    let director = config
        .director
        .as_ref()
        .map(Director::new)
        .transpose()
        .map_err(crate::ServerError::Config)?;
    let repo = repo.unwrap_or_else(|| Arc::new(HostedRepo::new(dir)));
    let artifacts = config
        .artifact_store
        .clone()
        .unwrap_or_else(|| ArtifactStore::Local(dir.join("targets")));
    Ok(router(Arc::new(Delivery {
        api,
        repo,
        artifacts,
        director,
    })))
}

/// The repository routes, and the director's when one is configured.
fn router(delivery: Arc<Delivery>) -> Router {
    // The director route exists even without a director, so a device configured for one gets
    // a clear `no_director` answer rather than an unknown-endpoint one.
    Router::new()
        .route("/device/v1/repo/metadata/{file}", get(metadata_file))
        .route("/device/v1/repo/targets/{*path}", get(target_file))
        .route(
            "/device/v1/director/{file}",
            get(crate::director::director_file),
        )
        .with_state(delivery)
}

impl Delivery {
    /// The calling device (registered on first contact; 403 if revoked), its contact recorded.
    pub(crate) async fn device(&self, peer: &PeerIdentity) -> Result<String, ApiError> {
        let now = unix_now();
        let device = self.api.identify(peer, now).await?;
        self.api.last_seen.record(&device.id, now);
        Ok(device.id)
    }

    /// Runs blocking repository work off the async threads.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&HostedRepo) -> Result<T, HostedRepoError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let repo = self.repo.clone();
        match tokio::task::spawn_blocking(move || work(&repo)).await {
            Ok(result) => result.map_err(|e| e.to_api()),
            Err(_) => Err(ApiError::internal()),
        }
    }
}

fn bad_path(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_path", detail)
}

/// A metadata file name: letters, digits, `.`, `_`, `-`, ending in `.json`, not hidden.
fn check_metadata_name(file: &str) -> Result<(), ApiError> {
    let ok = file.len() <= 255
        && file.len() > ".json".len()
        && file.ends_with(".json")
        && !file.starts_with('.')
        && file
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(bad_path(format!(
            "{file:?} is not a metadata file name; ask for e.g. timestamp.json, 1.root.json or 3.snapshot.json"
        )))
    }
}

/// An artifact path below `targets/`: relative, no empty, `.` or `..` segment, no backslash or
/// control character.
fn check_artifact_path(path: &str) -> Result<(), ApiError> {
    let bad = path.is_empty()
        || path.len() > MAX_PATH_LEN
        || path.bytes().any(|b| b == b'\\' || b.is_ascii_control())
        || path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "." || segment == "..");
    if bad {
        Err(bad_path(format!(
            "{path:?} is not an artifact path; ask for targets/[dir/]<hash>.<name> as the TUF metadata lists it"
        )))
    } else {
        Ok(())
    }
}

async fn metadata_file(
    State(delivery): State<Arc<Delivery>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    UrlPath(file): UrlPath<String>,
) -> Result<Response, ApiError> {
    check_metadata_name(&file)?;
    delivery.device(&peer).await?;
    let path = delivery.repo.dir().join("metadata").join(&file);
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the image repository has no metadata file {file:?}"),
        )
    };
    let (body, length) = match open_file(&path, 0, None).await {
        Ok(Some((stream, length))) => (Body::from_stream(stream), length),
        Ok(None) => return Err(not_found()),
        Err(e) => {
            crate::observe::log::error(
                &format!("reading {}: {e}", path.display()),
                serde_json::Value::Null,
            );
            return Err(ApiError::internal());
        }
    };
    if length > MAX_METADATA_BYTES {
        crate::observe::log::error(
            &format!(
                "{} is {length} bytes, over the {MAX_METADATA_BYTES}-byte limit",
                path.display()
            ),
            serde_json::Value::Null,
        );
        return Err(not_found());
    }
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn target_file(
    State(delivery): State<Arc<Delivery>>,
    ConnectInfo(peer): ConnectInfo<PeerIdentity>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_artifact_path(&path)?;
    let device_id = delivery.device(&peer).await?;
    let assignment = delivery
        .api
        .db
        .device_assignment(&device_id)
        .await
        .map_err(|e| ApiError::from_db("reading a device assignment", e))?;
    let not_assigned = || {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "artifact_not_assigned",
            format!(
                "{path:?} is not an artifact of the release assigned to device {device_id:?}; a device may fetch only the target its director metadata lists and that release's documents"
            ),
        )
    };
    let target = match assignment {
        Some(a) if !a.target.is_empty() => a.target,
        _ => return Err(not_assigned()),
    };
    let now = unix_now();
    let artifacts = delivery
        .blocking(move |repo| repo.artifacts(&target, now))
        .await?;
    let Some(artifact) = artifacts.into_iter().find(|a| a.file == path) else {
        return Err(not_assigned());
    };
    serve_artifact(
        &delivery.artifacts,
        &path,
        &artifact,
        &headers,
        method == Method::HEAD,
    )
    .await
}

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

    #[test]
    fn traversal_and_odd_paths_are_refused() {
        for bad in [
            "../secret",
            "a/../../b",
            "./a",
            "a//b",
            "/etc/passwd",
            "a\\..\\b",
            "a\0b",
            "",
            "a/",
        ] {
            assert_eq!(
                check_artifact_path(bad).unwrap_err().status,
                StatusCode::BAD_REQUEST,
                "{bad:?}"
            );
        }
        check_artifact_path("1.0.0/abc.fw.img").unwrap();
        check_artifact_path("abc.fw..img").unwrap();
        for bad in [
            "../1.root.json",
            "a/b.json",
            ".hidden.json",
            "x.txt",
            ".json",
            "a b.json",
        ] {
            assert!(check_metadata_name(bad).is_err(), "{bad:?}");
        }
        check_metadata_name("timestamp.json").unwrap();
        check_metadata_name("3.board-a_x.json").unwrap();
    }
}
