//! Shared by the server's integration tests: fresh SQLite / PostgreSQL databases (PostgreSQL
//! from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it those tests fail), a
//! running server with its CA and certificates, and a minimal HTTP/1.1 client over tokio-rustls
//! so every request goes through the same handshake a device (or an operator) does.
#![allow(dead_code)]

pub mod delivery;
pub mod moto;
pub mod ops;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rampart_db::Db;
use rampart_pki::{CertificateAuthority, IssuedCert};
use rampart_server::{Metrics, Server, ServerConfig, ServerError};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------
// Backends

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database: a new SQLite file, or a new PostgreSQL database.
pub async fn database_url(backend: Backend, dir: &std::path::Path, name: &str) -> String {
    match backend {
        Backend::Sqlite => format!("sqlite://{}", dir.join(format!("{name}.db")).display()),
        Backend::Postgres => {
            let admin = std::env::var("RAMPART_TEST_POSTGRES_URL").expect(
                "RAMPART_TEST_POSTGRES_URL is not set: run scripts/test.sh, which starts PostgreSQL (scripts/start-postgres.sh)",
            );
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin)
                .await
                .expect("PostgreSQL reachable at RAMPART_TEST_POSTGRES_URL");
            let db_name = format!("rs_{name}_{}", std::process::id());
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {db_name}"
            )))
            .execute(&pool)
            .await
            .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let (base, _) = admin.rsplit_once('/').unwrap();
            format!("{base}/{db_name}")
        }
    }
}

/// Runs each scenario once per backend, as separate tests.
#[macro_export]
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::common::Backend::Sqlite, stringify!($scenario)).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::common::Backend::Postgres, stringify!($scenario)).await;
                }
            )*
        }
    };
}

// ---------------------------------------------------------------------------
// Fixture: a CA, a server certificate, a database and a running server

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
    pub server_cert: IssuedCert,
    pub db_url: String,
    /// The test's own connection, to look at what the server stored.
    pub db: Db,
}

impl Fixture {
    pub async fn new(backend: Backend, name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db_url = database_url(backend, dir.path(), name).await;
        let db = Db::connect(&db_url).await.unwrap();
        let ca = CertificateAuthority::generate("Rampart Test Manufacturer CA", 30).unwrap();
        let server_cert = ca.issue_server(&["localhost", "127.0.0.1"], 30).unwrap();
        Self {
            _dir: dir,
            ca,
            server_cert,
            db_url,
            db,
        }
    }

    /// The management API's TLS configuration (server certificate, no client certificate).
    pub fn management_tls(&self) -> Arc<rustls::ServerConfig> {
        rampart_pki::server_config_without_client_auth(
            &self.server_cert.cert_pem,
            &self.server_cert.key_pem,
        )
        .unwrap()
    }

    /// An operator's client configuration: trusts the CA, presents no certificate.
    pub fn operator(&self) -> Arc<ClientConfig> {
        rampart_pki::client_config_without_identity(self.ca.cert_pem()).unwrap()
    }

    /// A device's client configuration, with a fresh certificate.
    pub fn device(&self, id: &str) -> Arc<ClientConfig> {
        self.client(&self.ca.issue_device(id, 30).unwrap())
    }

    pub fn client(&self, cert: &IssuedCert) -> Arc<ClientConfig> {
        rampart_pki::client_config(self.ca.cert_pem(), &cert.cert_pem, &cert.key_pem).unwrap()
    }

    pub async fn start(&self, crls: &[String], tweak: impl FnOnce(&mut ServerConfig)) -> Running {
        let tls = rampart_pki::server_config(
            &self.server_cert.cert_pem,
            &self.server_cert.key_pem,
            self.ca.cert_pem(),
            crls,
        )
        .unwrap();
        let mut config =
            ServerConfig::new(self.db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
        config.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        tweak(&mut config);
        let server = Server::bind(config).await.unwrap();
        let addr = server.local_addr();
        let metrics_addr = server.metrics_addr().unwrap();
        let management_addr = server.management_addr();
        let ddi_addr = server.ddi_addr();
        let metrics = server.metrics();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async {
            let _ = stopped.await;
        }));
        Running {
            addr,
            metrics_addr,
            management_addr,
            ddi_addr,
            metrics,
            stop,
            task,
        }
    }
}

pub struct Running {
    pub addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// The management API, when the test enabled it.
    pub management_addr: Option<SocketAddr>,
    /// The hawkBit DDI API, when the test enabled it.
    pub ddi_addr: Option<SocketAddr>,
    pub metrics: Arc<Metrics>,
    pub stop: oneshot::Sender<()>,
    pub task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    pub async fn connect(&self, config: &Arc<ClientConfig>) -> Conn<TlsStream<TcpStream>> {
        Conn::new(tls_connect(self.addr, config).await.unwrap())
    }

    /// A connection to the management API.
    pub async fn connect_management(
        &self,
        config: &Arc<ClientConfig>,
    ) -> Conn<TlsStream<TcpStream>> {
        let addr = self.management_addr.expect("the management API is enabled");
        Conn::new(tls_connect(addr, config).await.unwrap())
    }

    /// `GET /metrics` from the operator listener.
    pub async fn scrape(&self) -> String {
        let mut conn = Conn::new(TcpStream::connect(self.metrics_addr).await.unwrap());
        let response = conn.send("GET", "/metrics", &[], b"").await.unwrap();
        assert_eq!(response.status, 200);
        assert!(
            response
                .header("content-type")
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        String::from_utf8(response.body).unwrap()
    }

    /// One series of the scrape, e.g. `rampart_server_polls_total` or
    /// `rampart_server_reports_total{status="installed"}`.
    pub async fn metric(&self, series: &str) -> u64 {
        let text = self.scrape().await;
        metric_value(&text, series)
            .unwrap_or_else(|| panic!("no series {series} in the metrics:\n{text}"))
    }

    /// Graceful shutdown; returns once the server (and its final last-seen
    /// flush) is done.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("server shut down in time")
            .unwrap()
            .unwrap();
    }
}

pub fn metric_value(text: &str, series: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.parse().unwrap())
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(config.clone()).connect(name, tcp).await
}

/// Waits (up to 10 s) until `check` holds.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Sleeps until the Unix-seconds clock is past `t`.
pub async fn wait_past(t: i64) {
    while unix_now() <= t {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// A minimal HTTP/1.1 client (keep-alive, Content-Length bodies)

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Asserts a JSON error answer with this status and code, and returns
    /// its detail.
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let body = self.json();
        assert_eq!(body["error"], code, "{body}");
        let detail = body["detail"].as_str().unwrap().to_owned();
        assert!(!detail.is_empty());
        assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
        detail
    }
}

pub struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// The connection itself, e.g. to watch the server close it.
    pub fn into_inner(self) -> S {
        self.stream
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\n");
        if !has("content-length") {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        if !has("content-type") && !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body).await?;
        self.stream.flush().await?;
        self.read_response().await
    }

    pub async fn post(&mut self, path: &str, body: &Value) -> Response {
        self.send("POST", path, &[], body.to_string().as_bytes())
            .await
            .unwrap()
    }

    pub async fn put(&mut self, path: &str, body: &Value) -> Response {
        self.send("PUT", path, &[], body.to_string().as_bytes())
            .await
            .unwrap()
    }

    pub async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    pub async fn read_response(&mut self) -> io::Result<Response> {
        let head_end = loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse::<usize>().unwrap());
        let length = match (length, status) {
            (Some(n), _) => n,
            (None, 304 | 204) => 0,
            (None, _) => return Err(io::Error::other("response without Content-Length")),
        };
        while self.buf.len() < head_end + 4 + length {
            self.fill().await?;
        }
        let body = self.buf[head_end + 4..head_end + 4 + length].to_vec();
        self.buf.drain(..head_end + 4 + length);
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

// ---------------------------------------------------------------------------
// Signing keys for test repositories (fast KDF parameters)

/// Passphrase of the test key files.
pub const PASSPHRASE: &str = "pw";

pub fn open_key(reference: &str) -> Result<Box<dyn rampart_keys::Signer>, rampart_keys::SignError> {
    Ok(Box::new(rampart_keys::file::FileSigner::open(
        std::path::Path::new(reference),
        PASSPHRASE,
    )?))
}

/// A new Ed25519 key file `DIR/NAME.key`; returns its path.
pub fn gen_key(dir: &std::path::Path, name: &str) -> String {
    let (_, bytes) = rampart_keys::file::FileSigner::generate(
        rampart_core::Scheme::Ed25519,
        PASSPHRASE,
        rampart_keys::file::KdfParams {
            m_kib: 1024,
            t: 1,
            p: 1,
        },
    )
    .unwrap();
    let path = dir.join(format!("{name}.key"));
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_owned()
}
