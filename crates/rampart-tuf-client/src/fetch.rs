//! Fetching bytes with a hard size limit.

use std::io::Read;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: HTTP status {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: response is larger than the {limit}-byte limit (endless-data defence)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: {reason}")]
    Transport { url: String, reason: String },
}

impl FetchError {
    /// True for the answers that mean "there is no such file" (TUF treats 403 like 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            FetchError::Status {
                status: 403 | 404,
                ..
            }
        )
    }
}

/// Something that can fetch a URL, reading at most `limit` bytes.
pub trait Fetcher {
    fn fetch(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError>;
}

/// Reads at most `limit` bytes from `reader`, failing if there are more.
pub fn read_limited(url: &str, reader: impl Read, limit: u64) -> Result<Vec<u8>, FetchError> {
    let mut buf = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| FetchError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    if buf.len() as u64 > limit {
        return Err(FetchError::TooLarge {
            url: url.to_string(),
            limit,
        });
    }
    Ok(buf)
}

/// HTTP(S) fetcher over ureq with rustls; also reads `file://` URLs, for repositories on disk.
pub struct HttpFetcher {
    agent: ureq::Agent,
}

impl Default for HttpFetcher {
    fn default() -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(300)))
            .build();
        HttpFetcher {
            agent: config.into(),
        }
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        if let Some(path) = url.strip_prefix("file://") {
            let decoded = percent_encoding::percent_decode_str(path)
                .decode_utf8_lossy()
                .into_owned();
            let f = std::fs::File::open(&decoded).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => FetchError::Status {
                    url: url.to_string(),
                    status: 404,
                },
                _ => FetchError::Transport {
                    url: url.to_string(),
                    reason: e.to_string(),
                },
            })?;
            return read_limited(url, f, limit);
        }
        let mut resp = self
            .agent
            .get(url)
            .call()
            .map_err(|e| FetchError::Transport {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(FetchError::Status {
                url: url.to_string(),
                status,
            });
        }
        if let Some(len) = resp.body().content_length()
            && len > limit
        {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        read_limited(url, resp.body_mut().as_reader(), limit)
    }
}
