//! Shared by the server's integration tests: fresh SQLite / PostgreSQL databases (PostgreSQL
//! from RAMPART_TEST_POSTGRES_URL, which scripts/test.sh sets; without it those tests fail), a
//! running server with its CA and certificates, and the test kit's HTTP/1.1 client over
//! tokio-rustls so every request goes through the same handshake a device (or an operator) does.
#![allow(dead_code)]

pub mod delivery;
pub mod ops;
pub mod risk;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rampart_db::Db;
use rampart_pki::{CertificateAuthority, IssuedCert};
use rampart_server::{Metrics, Server, ServerConfig, ServerError};
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
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
            rampart_testkit::databases::fresh_postgres(&format!("rs_{name}_{}", std::process::id()))
                .await
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
    rampart_testkit::http::connect_tls(addr, "localhost", config).await
}

/// Waits until `check` holds: a bound for a machine that is not stuck (CI shares 2 cores with
/// other builds; 10 s was seen to run out under load average 14), never a timing assertion.
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
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
// The HTTP client: the test kit's (keep-alive, Content-Length bodies)

pub use rampart_testkit::http::{Conn, Message as Response};

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
