//! Where the server reads the artifacts it delivers: the image repository's `targets/`
//! directory ([`ArtifactStore::Local`], the default) or an S3-compatible object store
//! ([`ArtifactStore::ObjectStore`], `rampart server --artifacts s3://BUCKET/PREFIX`).
//!
//! Only artifacts come from here. The metadata that says which artifacts exist, how long they
//! are and what their hashes are stays in the local image repository and is verified there by
//! [`HostedRepo`](crate::HostedRepo) exactly as a device verifies it. The object store is
//! therefore **not trusted**: whoever can write to the bucket can make the server send wrong
//! bytes, but not make a device install them, because every device checks each artifact's
//! length and hashes against the signed targets metadata before it uses it (and a resumed
//! download is spliced only under an unchanged ETag, which is the signed hash). What a
//! compromised bucket can do is deny service: delete or replace objects so downloads fail.
//!
//! # Object layout
//!
//! An object store holds the same layout as the repository directory: the file
//! `targets/<path>` is the object `<prefix>/targets/<path>` (`rampart repo upload-artifacts`
//! copies a repository's `targets/` there). The URL is `s3://BUCKET` or `s3://BUCKET/PREFIX`;
//! the endpoint, region and credentials come from the usual `AWS_*` environment variables
//! (see [`ObjectStoreArtifacts::from_url`]).

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::{Stream, TryStreamExt as _};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt as _,
    PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

/// Size of the chunks a local artifact is streamed in.
const CHUNK: u64 = 64 * 1024;
/// Files up to this size are uploaded with one request; larger ones in parts of this size.
pub const UPLOAD_PART_BYTES: usize = 8 << 20;
/// Parts of one multipart upload in flight at once.
const UPLOAD_CONCURRENCY: usize = 4;
/// Longest S3 bucket name.
const MAX_BUCKET_LEN: usize = 63;

/// A stream of an artifact's bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Why the artifact store cannot be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactStoreError {
    #[error(
        "{url:?} is not an artifact store URL: {reason}; give s3://BUCKET or s3://BUCKET/PREFIX (objects are PREFIX/targets/<path>; endpoint, region and credentials come from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot configure the object store {url}: {reason}; check the AWS_* environment variables (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP=true for a plain-HTTP endpoint)"
    )]
    Config { url: String, reason: String },
    #[error(
        "cannot reach the artifact store {url}: {reason}; check that the bucket exists, that AWS_ENDPOINT_URL (and AWS_ALLOW_HTTP=true for a plain-HTTP endpoint) and AWS_REGION point at it, and that AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY may list it"
    )]
    Unreachable { url: String, reason: String },
    #[error("reading {location} from the artifact store: {reason}")]
    Read { location: String, reason: String },
    #[error(
        "uploading {file} to {location}: {reason}; nothing partial is left behind, run the upload again"
    )]
    Upload {
        file: String,
        location: String,
        reason: String,
    },
}

/// Where artifacts are read from. Cheap to clone.
#[derive(Clone)]
pub enum ArtifactStore {
    /// A directory holding `<path>` for each artifact `targets/<path>` (the image repository's
    /// `targets/`).
    Local(PathBuf),
    /// An S3-compatible object store.
    ObjectStore(ObjectStoreArtifacts),
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArtifactStore::Local(dir) => f.debug_tuple("Local").field(dir).finish(),
            ArtifactStore::ObjectStore(store) => {
                f.debug_tuple("ObjectStore").field(&store.url).finish()
            }
        }
    }
}

impl std::fmt::Display for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArtifactStore::Local(dir) => write!(f, "{}", dir.display()),
            ArtifactStore::ObjectStore(store) => f.write_str(&store.url),
        }
    }
}

/// An artifact opened for reading: its whole length, and the requested bytes.
pub struct Opened {
    /// The length of the whole stored file or object (not of the requested range).
    pub size: u64,
    pub stream: ByteStream,
}

impl ArtifactStore {
    /// An S3-compatible object store from an `s3://BUCKET[/PREFIX]` URL (see
    /// [`ObjectStoreArtifacts::from_url`]).
    pub fn from_url(url: &str) -> Result<Self, ArtifactStoreError> {
        Ok(ArtifactStore::ObjectStore(ObjectStoreArtifacts::from_url(
            url,
            std::iter::empty::<(&str, &str)>(),
        )?))
    }

    /// Checks at start-up that the store can be read: an object store's bucket must exist and
    /// be listable with the configured credentials. A local directory is not checked (a missing
    /// file is reported per request, as before object stores existed).
    pub async fn check(&self) -> Result<(), ArtifactStoreError> {
        match self {
            ArtifactStore::Local(_) => Ok(()),
            ArtifactStore::ObjectStore(store) => store.check().await,
        }
    }

    /// The length of the artifact `path` (below `targets/`), or `None` if there is none.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, ArtifactStoreError> {
        match self {
            ArtifactStore::Local(dir) => {
                let file = dir.join(path);
                match tokio::fs::metadata(&file).await {
                    Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
                    Ok(_) => Ok(None),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(ArtifactStoreError::Read {
                        location: file.display().to_string(),
                        reason: e.to_string(),
                    }),
                }
            }
            ArtifactStore::ObjectStore(store) => store.size(path).await,
        }
    }

    /// Opens `count` bytes of the artifact `path` (below `targets/`) from offset `start`, or
    /// `None` if there is no such artifact. `start + count` must not pass the length the
    /// caller expects; if the stored artifact is shorter, the stream ends with an error (the
    /// caller compares [`Opened::size`] first).
    pub async fn open(
        &self,
        path: &str,
        start: u64,
        count: u64,
    ) -> Result<Option<Opened>, ArtifactStoreError> {
        match self {
            ArtifactStore::Local(dir) => {
                let file = dir.join(path);
                open_file(&file, start, Some(count))
                    .await
                    .map(|found| found.map(|(stream, size)| Opened { size, stream }))
                    .map_err(|e| ArtifactStoreError::Read {
                        location: file.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            ArtifactStore::ObjectStore(store) => store.open(path, start, count).await,
        }
    }

    /// Where the artifact `path` is, for log messages.
    pub fn location(&self, path: &str) -> String {
        match self {
            ArtifactStore::Local(dir) => dir.join(path).display().to_string(),
            ArtifactStore::ObjectStore(store) => store.location(path),
        }
    }
}

/// Artifacts in an S3-compatible object store, below `<prefix>/targets/`.
#[derive(Clone)]
pub struct ObjectStoreArtifacts {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/targets`.
    targets: ObjectPath,
    bucket: String,
    url: String,
}

impl std::fmt::Debug for ObjectStoreArtifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreArtifacts")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// Parses `s3://BUCKET[/PREFIX]` into the bucket and the prefix.
fn parse_s3_url(url: &str) -> Result<(String, ObjectPath), String> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return Err(match url.split_once("://") {
            Some((scheme, _)) => format!("the scheme {scheme:?} is not supported, only s3"),
            None => "it does not start with s3://".into(),
        });
    };
    if rest.contains(['?', '#']) {
        return Err("a query or fragment (? or #) has no meaning here".into());
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err("the bucket name is missing".into());
    }
    let bucket_ok = (3..=MAX_BUCKET_LEN).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !bucket_ok {
        return Err(format!(
            "{bucket:?} is not a bucket name (3 to {MAX_BUCKET_LEN} lowercase letters, digits, '.' or '-', starting and ending with a letter or digit)"
        ));
    }
    let prefix = prefix.trim_end_matches('/');
    let prefix = if prefix.is_empty() {
        ObjectPath::default()
    } else {
        ObjectPath::parse(prefix)
            .map_err(|e| format!("the prefix {prefix:?} is not usable: {e}"))?
    };
    Ok((bucket.to_owned(), prefix))
}

impl ObjectStoreArtifacts {
    /// An S3-compatible object store from an `s3://BUCKET[/PREFIX]` URL.
    ///
    /// Configuration comes from the environment as [`AmazonS3Builder::from_env`] reads it:
    /// `AWS_ENDPOINT_URL` (an S3-compatible server; without it, AWS itself), `AWS_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), and
    /// `AWS_ALLOW_HTTP=true` for a plain-HTTP endpoint. `options` (the same keys, e.g.
    /// `("aws_endpoint_url", "http://...")`) override the environment.
    ///
    /// Nothing is contacted yet: [`check`](Self::check) does that.
    pub fn from_url<K: AsRef<str>, V: AsRef<str>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ArtifactStoreError> {
        let (bucket, prefix) = parse_s3_url(url).map_err(|reason| ArtifactStoreError::BadUrl {
            url: url.to_owned(),
            reason,
        })?;
        let config_error = |reason: String| ArtifactStoreError::Config {
            url: url.to_owned(),
            reason,
        };
        // object_store's HTTP client is reqwest with rustls and no built-in crypto provider:
        // use ring, like the rest of Rampart. An already installed default is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();

        // Client options replace the builder's as a whole, so they are collected here: no
        // overall request timeout (an artifact streams to a slow device for as long as the
        // device keeps reading; a stalled device is cut off by the server's idle timeout),
        // then the environment's settings, then `options`.
        let mut client = ClientOptions::new().with_timeout_disabled();
        let mut builder = AmazonS3Builder::from_env();
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .collect();
        for (key, value) in &env {
            if let Ok(AmazonS3ConfigKey::Client(key)) = key.to_ascii_lowercase().parse() {
                client = client.with_config(key, value);
            }
        }
        for (key, value) in options {
            let (key, value) = (key.as_ref(), value.as_ref());
            match key.to_ascii_lowercase().parse() {
                Ok(AmazonS3ConfigKey::Client(key)) => client = client.with_config(key, value),
                Ok(key) => builder = builder.with_config(key, value),
                Err(e) => return Err(config_error(format!("option {key:?}: {e}"))),
            }
        }
        let store = builder
            .with_bucket_name(&bucket)
            .with_client_options(client)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: 3,
                retry_timeout: Duration::from_secs(30),
            })
            .build()
            .map_err(|e| config_error(e.to_string()))?;
        Ok(ObjectStoreArtifacts {
            store: Arc::new(store),
            targets: prefix.clone().join("targets"),
            bucket,
            url: url.to_owned(),
        })
    }

    /// The URL the store was configured with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The same bucket and credentials with objects below `<prefix>/<directory>/` instead of
    /// `<prefix>/targets/` (the evidence store keeps its bundles beside the artifacts).
    pub(crate) fn under(&self, directory: &str) -> Self {
        let prefix = parse_s3_url(&self.url).map_or_else(|_| ObjectPath::default(), |(_, p)| p);
        ObjectStoreArtifacts {
            targets: prefix.join(directory),
            ..self.clone()
        }
    }

    /// The object of the artifact `path` (below `targets/`).
    fn object(&self, path: &str) -> Result<ObjectPath, ArtifactStoreError> {
        let mut object = self.targets.clone();
        for segment in path.split('/') {
            let part = object_store::path::PathPart::parse(segment).map_err(|e| {
                ArtifactStoreError::Read {
                    location: self.location(path),
                    reason: format!("not an object name: {e}"),
                }
            })?;
            object = object.join(part);
        }
        Ok(object)
    }

    /// `s3://bucket/<prefix>/targets/<path>`, for messages.
    pub fn location(&self, path: &str) -> String {
        format!("s3://{}/{}/{path}", self.bucket, self.targets)
    }

    /// Lists below the prefix once: fails if the endpoint, bucket or credentials are wrong.
    pub async fn check(&self) -> Result<(), ArtifactStoreError> {
        self.store
            .list_with_delimiter(Some(&self.targets))
            .await
            .map(|_| ())
            .map_err(|e| ArtifactStoreError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            })
    }

    fn read_error(&self, path: &str, e: impl ToString) -> ArtifactStoreError {
        ArtifactStoreError::Read {
            location: self.location(path),
            reason: e.to_string(),
        }
    }

    /// The size of the object of `path`, or `None` if there is none.
    pub async fn size(&self, path: &str) -> Result<Option<u64>, ArtifactStoreError> {
        match self.store.head(&self.object(path)?).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.read_error(path, e)),
        }
    }

    /// One ranged GET: the object's size and `count` bytes from `start`.
    pub(crate) async fn open(
        &self,
        path: &str,
        start: u64,
        count: u64,
    ) -> Result<Option<Opened>, ArtifactStoreError> {
        if count == 0 {
            // S3 has no empty range; the size alone answers.
            return Ok(self.size(path).await?.map(|size| Opened {
                size,
                stream: Box::pin(futures_util::stream::empty()),
            }));
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + count)),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&self.object(path)?, options).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.read_error(path, e)),
        };
        let size = result.meta.size;
        if size >= start + count && result.range != (start..start + count) {
            return Err(self.read_error(
                path,
                format!(
                    "asked for bytes {start}..{} and got {:?}",
                    start + count,
                    result.range
                ),
            ));
        }
        let location = self.location(path);
        let stream = result
            .into_stream()
            .map_err(move |e| std::io::Error::other(format!("reading {location}: {e}")));
        Ok(Some(Opened {
            size,
            stream: Box::pin(stream),
        }))
    }

    /// Uploads the local file `file` as the artifact `path` (below `targets/`): one request up
    /// to [`UPLOAD_PART_BYTES`], a streamed multipart upload beyond (never read whole into
    /// memory). `progress` is called with each number of bytes sent. Returns the size.
    pub async fn upload(
        &self,
        path: &str,
        file: &Path,
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<u64, ArtifactStoreError> {
        let upload_error = |reason: String| ArtifactStoreError::Upload {
            file: file.display().to_string(),
            location: self.location(path),
            reason,
        };
        let object = self.object(path).map_err(|e| upload_error(e.to_string()))?;
        let mut input = tokio::fs::File::open(file)
            .await
            .map_err(|e| upload_error(e.to_string()))?;
        let size = input
            .metadata()
            .await
            .map_err(|e| upload_error(e.to_string()))?
            .len();
        if size <= UPLOAD_PART_BYTES as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            input
                .read_to_end(&mut bytes)
                .await
                .map_err(|e| upload_error(e.to_string()))?;
            let sent = bytes.len() as u64;
            if sent != size {
                return Err(upload_error(
                    "the file changed while it was being read".into(),
                ));
            }
            self.store
                .put(&object, PutPayload::from(bytes))
                .await
                .map_err(|e| upload_error(e.to_string()))?;
            progress(sent);
            return Ok(sent);
        }
        let upload = self
            .store
            .put_multipart(&object)
            .await
            .map_err(|e| upload_error(e.to_string()))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
        let mut buf = vec![0u8; 1 << 20];
        let mut sent = 0u64;
        let copied: Result<(), String> = async {
            loop {
                writer
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(|e| e.to_string())?;
                let n = input.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                writer.write(&buf[..n]);
                sent += n as u64;
                progress(n as u64);
            }
            if sent != size {
                return Err("the file changed while it was being read".into());
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| upload_error(e.to_string()))?;
                Ok(sent)
            }
            Err(reason) => {
                // Best effort: the store also expires abandoned uploads.
                let _ = writer.abort().await;
                Err(upload_error(reason))
            }
        }
    }
}

/// Opens `path` and streams `count` bytes (all the rest if `None`) from offset `start`, in
/// 64 KiB chunks. Returns the stream and the file's length, or `None` if there is no such
/// regular file.
pub(crate) async fn open_file(
    path: &Path,
    start: u64,
    count: Option<u64>,
) -> std::io::Result<Option<(ByteStream, u64)>> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Ok(None);
    }
    let length = meta.len();
    let count = count.unwrap_or(length.saturating_sub(start));
    if start > 0 {
        file.seek(SeekFrom::Start(start)).await?;
    }
    let stream =
        futures_util::stream::try_unfold((file, count), |(mut file, remaining)| async move {
            if remaining == 0 {
                return Ok::<_, std::io::Error>(None);
            }
            let mut buf = vec![0u8; CHUNK.min(remaining) as usize];
            let n = file.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was being sent",
                ));
            }
            buf.truncate(n);
            Ok(Some((Bytes::from(buf), (file, remaining - n as u64))))
        });
    Ok(Some((Box::pin(stream), length)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        let (bucket, prefix) = parse_s3_url("s3://firmware").unwrap();
        assert_eq!((bucket.as_str(), prefix.as_ref()), ("firmware", ""));
        let (bucket, prefix) = parse_s3_url("s3://fw.example-1/prod/eu/").unwrap();
        assert_eq!(
            (bucket.as_str(), prefix.as_ref()),
            ("fw.example-1", "prod/eu")
        );
        for (bad, why) in [
            ("firmware", "does not start with s3://"),
            ("https://s3.amazonaws.com/fw", "scheme \"https\""),
            ("s3://", "bucket name is missing"),
            ("s3:///prefix", "bucket name is missing"),
            ("s3://Firmware", "not a bucket name"),
            ("s3://ab", "not a bucket name"),
            ("s3://-fw", "not a bucket name"),
            ("s3://fw_1", "not a bucket name"),
            ("s3://firmware/a//b", "prefix"),
            ("s3://firmware/a/../b", "prefix"),
            ("s3://firmware/p?x=1", "query"),
        ] {
            let reason = parse_s3_url(bad).unwrap_err();
            assert!(reason.contains(why), "{bad}: {reason}");
        }
    }

    #[test]
    fn malformed_urls_say_what_to_give() {
        let e = ArtifactStore::from_url("s3:/firmware").unwrap_err();
        assert!(matches!(e, ArtifactStoreError::BadUrl { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("s3://BUCKET/PREFIX"), "{text}");
        assert!(text.contains("AWS_ENDPOINT_URL"), "{text}");
        let e = ObjectStoreArtifacts::from_url("s3://firmware", [("aws_no_such_option", "1")])
            .unwrap_err();
        assert!(matches!(e, ArtifactStoreError::Config { .. }), "{e}");
    }

    #[test]
    fn keys_follow_the_repository_layout() {
        let store = ObjectStoreArtifacts::from_url(
            "s3://firmware/prod",
            [
                ("aws_endpoint_url", "http://127.0.0.1:9"),
                ("aws_access_key_id", "k"),
                ("aws_secret_access_key", "s"),
                ("aws_allow_http", "true"),
            ],
        )
        .unwrap();
        assert_eq!(
            store.object("1.0.0/ab12.fw.img").unwrap().as_ref(),
            "prod/targets/1.0.0/ab12.fw.img"
        );
        assert_eq!(
            store.location("1.0.0/ab12.fw.img"),
            "s3://firmware/prod/targets/1.0.0/ab12.fw.img"
        );
        assert!(store.object("a/../b").is_err());
    }
}
