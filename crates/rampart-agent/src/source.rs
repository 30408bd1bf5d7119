//! Where a release comes from, verified: the update server (director and image repository,
//! [`crate::director`]) or an image repository alone (a URL, or a directory such as a USB
//! stick for offline updates). Either way the result is a [`Verified`] release and the URL
//! its bytes are streamed from.

use std::collections::BTreeMap;
use std::io::{Read, Seek as _, SeekFrom};
use std::path::Path;

use rampart_boot::flow::{Reason, Release};
use rampart_core::metadata::TargetFile;
use rampart_core::release::{ReleaseError, ReleaseInfo};
use rampart_tuf_client::fetch::MinRate;
use rampart_tuf_client::{ClientError, HttpFetcher, Limits, Updater, UpdaterConfig};

use crate::director::VerifiedAssignment;
use crate::disk::Disk;
use crate::server_client::{ServerClient, UpdateError};

/// A refusal or failure, with the reason code reports carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub reason: Reason,
    pub detail: String,
    /// A simulated power cut (tests): the caller must stop touching the device.
    pub crashed: bool,
}

impl Refusal {
    pub fn new(reason: Reason, detail: impl std::fmt::Display) -> Refusal {
        Refusal {
            reason,
            detail: detail.to_string(),
            crashed: false,
        }
    }

    /// The refusal of a release that was rolled back on this device.
    pub fn rolled_back(last: &rampart_boot::flow::LastResult) -> Refusal {
        Refusal::new(
            last.reason,
            format!(
                "{} was rolled back on this device ({}: {}); it is not installed again; assign another release",
                last.target,
                last.reason.as_str(),
                last.detail
            ),
        )
    }

    /// Whether trying again later may succeed (network trouble), as opposed to a refusal of
    /// what was offered.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.reason,
            Reason::DownloadFailed | Reason::DownloadStalled | Reason::Truncated
        )
    }
}

/// The reason code of a release check failure.
pub fn release_reason(e: &ReleaseError) -> Reason {
    match e {
        ReleaseError::WrongHardware { .. } => Reason::HardwareIncompatible,
        ReleaseError::SecurityRollback { .. } => Reason::SecurityVersionRollback,
        _ => Reason::ReleaseInvalid,
    }
}

impl From<&UpdateError> for Reason {
    fn from(e: &UpdateError) -> Reason {
        match e {
            UpdateError::Director(_) => Reason::MetadataInvalid,
            UpdateError::ImageRepo(ClientError::Tuf(_)) => Reason::MetadataInvalid,
            UpdateError::ImageRepo(_) => Reason::DownloadFailed,
            UpdateError::Release { source, .. } => release_reason(source),
            UpdateError::TransparencyLog(_) => Reason::NotInTransparencyLog,
            UpdateError::Download { .. } => Reason::HashMismatch,
            UpdateError::Server { .. } => Reason::DownloadFailed,
            UpdateError::PollRefused { .. } => Reason::PollRefused,
            UpdateError::Identity(_) | UpdateError::NoDirectorRoot(_) | UpdateError::Io { .. } => {
                Reason::MetadataInvalid
            }
        }
    }
}

/// A release verified for this device, ready to stream.
#[derive(Debug, Clone)]
pub struct Verified {
    pub release: Release,
    pub info: TargetFile,
    /// Where the bytes come from (`https://`, `http://` or `file://`).
    pub url: String,
}

impl Verified {
    fn new(
        target: &str,
        info: TargetFile,
        release: &ReleaseInfo,
        url: String,
        assignment: Option<String>,
    ) -> Result<Verified, Refusal> {
        let hashes: BTreeMap<String, String> = info
            .hashes
            .iter()
            .map(|(k, v)| (k.clone(), v.to_ascii_lowercase()))
            .collect();
        if !hashes.contains_key("sha256") {
            return Err(Refusal::new(
                Reason::MetadataInvalid,
                format!("{target} has no sha256 in the signed metadata"),
            ));
        }
        Ok(Verified {
            release: Release {
                target: target.to_owned(),
                version: release.version.clone(),
                security_version: release.security_version,
                length: info.length,
                hashes,
                assignment,
                reimage: false,
            },
            info,
            url,
        })
    }

    /// From the server's verified assignment.
    pub fn from_assignment(v: VerifiedAssignment, assignment: &str) -> Result<Verified, Refusal> {
        Verified::new(
            &v.target,
            v.info,
            &v.release,
            v.url,
            Some(assignment.to_owned()),
        )
    }
}

/// The base URL of an image repository given as a URL or a directory.
pub fn repo_url(from: &str) -> Result<String, Refusal> {
    if from.contains("://") {
        return Ok(from.trim_end_matches('/').to_owned());
    }
    let path = std::fs::canonicalize(from).map_err(|e| {
        Refusal::new(
            Reason::DownloadFailed,
            format!("the repository directory {from}: {e}"),
        )
    })?;
    Ok(format!("file://{}", path.display()))
}

/// What [`verify_from_repo`] verified: the release, the updater holding the trusted metadata,
/// and what the transparency log proved (`None` when the device has no log policy).
pub type RepoVerification = (Verified, Updater<HttpFetcher>, Option<String>);

/// Refreshes the image repository at `base` (TUF, full verification) and checks `target` for
/// this device: hardware, anti-rollback counter, transparency log. The trusted metadata is
/// written through `disk`.
pub fn verify_from_repo(
    disk: &Disk,
    state: &Path,
    base: &str,
    hardware_id: &str,
    installed_security_version: u64,
    target: &str,
    now_unix: i64,
) -> Result<RepoVerification, Refusal> {
    let tuf = |e: ClientError| match e {
        ClientError::Tuf(e) => Refusal::new(Reason::MetadataInvalid, e),
        other => Refusal::new(Reason::DownloadFailed, other),
    };
    let config = UpdaterConfig {
        metadata_url: format!("{base}/metadata"),
        metadata_dir: state.join("metadata"),
        target_base_url: Some(format!("{base}/targets")),
        limits: Limits::default(),
    };
    let mut up = Updater::new(config, HttpFetcher::default(), now_unix)
        .map_err(tuf)?
        .with_store(Box::new(disk.clone()));
    up.refresh().map_err(tuf)?;
    let info = up.get_targetinfo(target).map_err(tuf)?.ok_or_else(|| {
        Refusal::new(
            Reason::MetadataInvalid,
            format!("{target} is not a release in the trusted metadata"),
        )
    })?;
    let release = ReleaseInfo::from_custom(info.custom.as_ref())
        .map_err(|e| Refusal::new(release_reason(&e), format!("{target}: {e}")))?;
    release
        .check_installable(hardware_id, installed_security_version)
        .map_err(|e| Refusal::new(release_reason(&e), format!("{target}: {e}")))?;
    let logged = crate::check_logged(state, &mut up, target, &info, &release)
        .map_err(|e| Refusal::new(Reason::NotInTransparencyLog, format!("{e:#}")))?;
    let url = up.target_url(target, &info).map_err(tuf)?;
    let verified = Verified::new(target, info, &release, url, None)?;
    Ok((verified, up, logged))
}

/// How bytes are fetched: over HTTP(S) with an agent (mutual TLS for the server), or from
/// the local file system.
#[derive(Clone)]
pub struct Fetch {
    pub http: ureq::Agent,
    pub min_rate: MinRate,
}

impl Fetch {
    pub fn plain() -> Fetch {
        let f = HttpFetcher::default();
        Fetch {
            http: f.agent().clone(),
            min_rate: f.min_rate(),
        }
    }

    pub fn server(client: &ServerClient) -> Fetch {
        Fetch {
            http: client.http().clone(),
            min_rate: client.min_rate(),
        }
    }

    /// Opens `url` from byte `offset` on. Returns the reader and the offset it actually starts
    /// at (0 when an HTTP server ignored the range, or the file changed).
    pub fn open(
        &self,
        url: &str,
        offset: u64,
        release: &Release,
    ) -> Result<(Box<dyn Read + Send>, u64), Refusal> {
        if let Some(path) = url.strip_prefix("file://") {
            let mut file = std::fs::File::open(path).map_err(|e| {
                Refusal::new(Reason::DownloadFailed, format!("opening {path}: {e}"))
            })?;
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| Refusal::new(Reason::DownloadFailed, format!("{path}: {e}")))?;
            return Ok((Box::new(file), offset));
        }
        let failed = |e: &dyn std::fmt::Display| {
            Refusal::new(Reason::DownloadFailed, format!("downloading {url}: {e}"))
        };
        let mut request = self.http.get(url);
        if offset > 0 {
            let etag = format!("\"{}\"", release.sha256().unwrap_or_default());
            request = request
                .header("range", format!("bytes={offset}-"))
                .header("if-range", etag);
        }
        let response = request.call().map_err(|e| failed(&e))?;
        match response.status().as_u16() {
            206 if offset > 0 => {
                let got = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                let expected = format!(
                    "bytes {offset}-{}/{}",
                    release.length.saturating_sub(1),
                    release.length
                );
                if got != expected {
                    return Err(failed(&format!(
                        "answered Content-Range {got:?}, not {expected:?}"
                    )));
                }
                Ok((Box::new(response.into_body().into_reader()), offset))
            }
            200 => Ok((Box::new(response.into_body().into_reader()), 0)),
            other => Err(failed(&format!("HTTP status {other}"))),
        }
    }
}
