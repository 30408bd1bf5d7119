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
    #[error(
        "{url}: only {bytes} bytes in {seconds} s, below the minimum rate (slow-retrieval defence)"
    )]
    TooSlow {
        url: String,
        bytes: u64,
        seconds: u64,
    },
}

/// The slowest transfer tolerated: after `grace`, the average rate must stay at or above
/// `bytes_per_second`, so a server that trickles data cannot hold a client forever.
#[derive(Debug, Clone, Copy)]
pub struct MinRate {
    pub grace: std::time::Duration,
    pub bytes_per_second: u64,
}

impl Default for MinRate {
    fn default() -> Self {
        MinRate {
            grace: std::time::Duration::from_secs(30),
            bytes_per_second: 1024,
        }
    }
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

    /// Streams at most `limit` bytes of `url` into `sink`, chunk by chunk, so large targets
    /// never sit whole in memory. `sink` may stop the transfer by returning an error.
    fn fetch_into(
        &self,
        url: &str,
        limit: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, FetchError> {
        let bytes = self.fetch(url, limit)?;
        sink(&bytes).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        Ok(bytes.len() as u64)
    }
}

/// Copies at most `limit` bytes from `reader` into `sink`, failing if there are more.
pub fn copy_limited(
    url: &str,
    mut reader: impl Read,
    limit: u64,
    rate: MinRate,
    sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<u64, FetchError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let start = std::time::Instant::now();
    loop {
        let elapsed = start.elapsed();
        if elapsed > rate.grace
            && (total as f64) < rate.bytes_per_second as f64 * elapsed.as_secs_f64()
        {
            return Err(FetchError::TooSlow {
                url: url.to_string(),
                bytes: total,
                seconds: elapsed.as_secs(),
            });
        }
        let n = reader.read(&mut buf).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if n == 0 {
            return Ok(total);
        }
        total += n as u64;
        if total > limit {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                limit,
            });
        }
        sink(&buf[..n]).map_err(|e| FetchError::Transport {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    }
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

/// Like [`read_limited`], and also enforcing a minimum average rate.
pub fn read_limited_rate(
    url: &str,
    reader: impl Read,
    limit: u64,
    rate: MinRate,
) -> Result<Vec<u8>, FetchError> {
    let mut buf = Vec::new();
    copy_limited(url, reader, limit, rate, &mut |chunk| {
        buf.extend_from_slice(chunk);
        Ok(())
    })?;
    Ok(buf)
}

/// HTTP(S) fetcher over ureq with rustls; also reads `file://` URLs, for repositories on disk.
/// Clones share the connection pool and TLS configuration.
#[derive(Clone)]
pub struct HttpFetcher {
    agent: ureq::Agent,
    min_rate: MinRate,
}

impl std::fmt::Debug for HttpFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFetcher")
            .field("min_rate", &self.min_rate)
            .finish_non_exhaustive()
    }
}

impl Default for HttpFetcher {
    fn default() -> Self {
        HttpFetcher::build(None)
    }
}

impl HttpFetcher {
    /// The agent configuration of every fetcher.
    fn config(tls: Option<ureq::tls::TlsConfig>) -> ureq::config::Config {
        use std::time::Duration;
        // No overall deadline (large firmware takes as long as it takes on a slow link); instead
        // bounded connect and response waits, a per-read idle timeout and a minimum average rate.
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(None)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(30)));
        if let Some(tls) = tls {
            config = config.tls_config(tls);
        }
        config.build()
    }

    fn build(tls: Option<ureq::tls::TlsConfig>) -> Self {
        HttpFetcher {
            agent: HttpFetcher::config(tls).into(),
            min_rate: MinRate::default(),
        }
    }

    /// A fetcher whose connections are made by `connector` (with ureq's default resolver),
    /// with the same timeouts and minimum rate as every other fetcher. For transports ureq's
    /// [`ureq::tls::TlsConfig`] cannot express, such as mutual TLS with a client key that
    /// signs inside a PKCS#11 token. `connector` must produce plain TCP for `http://` and
    /// TLS for `https://` itself (for example, a chain ending in its own TLS connector).
    ///
    /// The connector API is ureq's `unversioned` one, which may change in ureq minor releases.
    pub fn with_connector(connector: impl ureq::unversioned::transport::Connector) -> Self {
        HttpFetcher {
            agent: ureq::Agent::with_parts(
                HttpFetcher::config(None),
                connector,
                ureq::unversioned::resolver::DefaultResolver::default(),
            ),
            min_rate: MinRate::default(),
        }
    }

    /// A fetcher whose HTTPS connections use `tls`: e.g. a device's client certificate for
    /// mutual TLS, with the update server's CA as the only trusted root.
    pub fn with_tls(tls: ureq::tls::TlsConfig) -> Self {
        HttpFetcher::build(Some(tls))
    }

    /// The HTTP agent (and its connection pool), for requests beyond plain GETs, such as a
    /// device's poll or a ranged download.
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// The minimum transfer rate this fetcher enforces.
    pub fn min_rate(&self) -> MinRate {
        self.min_rate
    }

    /// Opens `url` for reading after checking the status and any announced length.
    fn open(&self, url: &str, limit: u64) -> Result<Box<dyn Read>, FetchError> {
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
            return Ok(Box::new(f));
        }
        let resp = self
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
        Ok(Box::new(resp.into_body().into_reader()))
    }
}

impl Fetcher for HttpFetcher {
    fn fetch(&self, url: &str, limit: u64) -> Result<Vec<u8>, FetchError> {
        read_limited_rate(url, self.open(url, limit)?, limit, self.min_rate)
    }

    fn fetch_into(
        &self,
        url: &str,
        limit: u64,
        sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>,
    ) -> Result<u64, FetchError> {
        copy_limited(url, self.open(url, limit)?, limit, self.min_rate, sink)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Yields one byte per call, slowly: a server trickling data.
    struct Trickle;
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(20));
            buf[0] = 0;
            Ok(1)
        }
    }

    #[test]
    fn slow_retrieval_is_cut_off_by_the_minimum_rate() {
        let rate = MinRate {
            grace: Duration::from_millis(200),
            bytes_per_second: 1000,
        };
        let err = read_limited_rate("http://x/t", Trickle, 1 << 20, rate).unwrap_err();
        assert!(matches!(err, FetchError::TooSlow { .. }), "{err}");
    }

    #[test]
    fn a_fetcher_on_a_custom_connector_fetches_and_keeps_the_limits() {
        use std::io::{BufRead as _, Write as _};
        use ureq::unversioned::transport::{Connector as _, TcpConnector};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for body in ["hello", "too long for the limit"] {
                let (mut tcp, _) = listener.accept().unwrap();
                let mut reader = std::io::BufReader::new(tcp.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                        break;
                    }
                }
                write!(
                    tcp,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
            }
        });
        let fetcher = HttpFetcher::with_connector(().chain(TcpConnector::default()));
        assert_eq!(
            fetcher.min_rate().bytes_per_second,
            MinRate::default().bytes_per_second
        );
        let url = format!("http://{addr}/x");
        assert_eq!(fetcher.fetch(&url, 100).unwrap(), b"hello");
        let err = fetcher.fetch(&url, 10).unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit: 10, .. }),
            "{err}"
        );
        server.join().unwrap();
    }

    #[test]
    fn endless_data_is_cut_off_at_the_limit() {
        let err = read_limited_rate("http://x/t", std::io::repeat(1), 1000, MinRate::default())
            .unwrap_err();
        assert!(matches!(err, FetchError::TooLarge { limit: 1000, .. }));
        let ok = read_limited_rate(
            "http://x/t",
            std::io::repeat(1).take(1000),
            1000,
            MinRate::default(),
        )
        .unwrap();
        assert_eq!(ok.len(), 1000);
    }
}
