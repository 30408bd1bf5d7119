//! Connection exhaustion, on every listener (device, DDI, management, metrics): slow request
//! heads, floods of idle connections and connections that never start their TLS handshake,
//! all from one source (127.0.0.1), while a legitimate client from another source (127.0.0.2)
//! must still be served within a few seconds. And the deadlines that free the slots: a
//! request head that never completes, and an idle kept-alive connection, are closed.
//!
//! Each listener gets small caps (64 connections, 16 per source) and a 10 s head deadline, so
//! that without the per-source cap the attack would hold every slot and the legitimate request
//! would wait for the head deadline (10 s) before being served: the bound below (3 s) tells the
//! two apart with room for a busy machine. The attacks are bounded: 200 connections, stopped
//! at the end of each test.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Backend, Conn, Fixture, Running, unix_now};
use rampart_server::Role;
use rampart_server::connections::ListenerCaps;
use rampart_server::management::create_token;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

const ATTACK_CONNECTIONS: usize = 200;
const CAPS: ListenerCaps = ListenerCaps {
    max_connections: 64,
    max_per_source: 16,
};
/// How long the legitimate client may take, attack or not (the head deadline is 10 s).
const LEGITIMATE_BOUND: Duration = Duration::from_secs(3);
const ATTACKER: &str = "127.0.0.1";
const LEGITIMATE: &str = "127.0.0.2";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Listener {
    Device,
    Ddi,
    Management,
    Metrics,
}

struct Target {
    fx: Fixture,
    server: Running,
    admin_token: String,
}

async fn start(name: &str, header_timeout: Duration) -> Target {
    let fx = Fixture::new(Backend::Sqlite, name).await;
    let management_tls = fx.management_tls();
    let ddi_tls = rampart_pki::server_config_optional_client_auth(
        &fx.server_cert.cert_pem,
        &fx.server_cert.key_pem,
        fx.ca.cert_pem(),
        &[],
    )
    .unwrap();
    let server = fx
        .start(&[], |config| {
            config.management_listen = Some("127.0.0.1:0".parse().unwrap());
            config.management_tls = Some(management_tls);
            config.ddi_listen = Some("127.0.0.1:0".parse().unwrap());
            config.ddi_tls = Some(ddi_tls);
            config.connections.device = CAPS;
            config.connections.ddi = CAPS;
            config.connections.management = CAPS;
            config.connections.metrics = CAPS;
            config.connections.header_timeout = header_timeout;
            config.connections.scale_to_file_limit = false;
        })
        .await;
    let audit = rampart_server::audit::AuditWriter::new(fx.db.clone());
    let admin_token = create_token(&fx.db, &audit, Role::Admin, "test", "cli:test", unix_now())
        .await
        .unwrap()
        .secret;
    Target {
        fx,
        server,
        admin_token,
    }
}

impl Target {
    fn addr(&self, listener: Listener) -> SocketAddr {
        match listener {
            Listener::Device => self.server.addr,
            Listener::Ddi => self.server.ddi_addr.unwrap(),
            Listener::Management => self.server.management_addr.unwrap(),
            Listener::Metrics => self.server.metrics_addr,
        }
    }

    /// The listener's admission counters.
    fn admission(&self, listener: Listener) -> &rampart_server::connections::AdmissionCounters {
        let listeners = &self.server.metrics.listeners;
        match listener {
            Listener::Device => &listeners.device,
            Listener::Ddi => &listeners.ddi,
            Listener::Management => &listeners.management,
            Listener::Metrics => &listeners.metrics,
        }
    }

    /// The TLS client configuration for a listener (`None`: plain TCP).
    fn tls(&self, listener: Listener, device: &str) -> Option<Arc<ClientConfig>> {
        match listener {
            Listener::Device => Some(self.fx.device(device)),
            Listener::Ddi | Listener::Management => Some(self.fx.operator()),
            Listener::Metrics => None,
        }
    }

    /// One legitimate request from 127.0.0.2, answered within [`LEGITIMATE_BOUND`].
    async fn legitimate_request(&self, listener: Listener) {
        let addr = self.addr(listener);
        let tls = self.tls(listener, "legit-device");
        let token = format!("Bearer {}", self.admin_token);
        let request = async move {
            let stream = connect(LEGITIMATE, addr, tls.as_ref()).await?;
            let mut conn = Conn::new(stream);
            let (method, path, headers, body): (_, _, Vec<(&str, &str)>, &[u8]) = match listener {
                Listener::Device => ("POST", "/device/v1/poll", vec![], b"{}"),
                Listener::Ddi => ("GET", "/DEFAULT/controller/v1/legit-device", vec![], b""),
                Listener::Management => (
                    "GET",
                    "/api/v1/openapi.json",
                    vec![("Authorization", token.as_str())],
                    b"",
                ),
                Listener::Metrics => ("GET", "/metrics", vec![], b""),
            };
            conn.send(method, path, &headers, body).await
        };
        let response = tokio::time::timeout(LEGITIMATE_BOUND, request)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{listener:?} listener: a legitimate request was not answered within {LEGITIMATE_BOUND:?} during the attack"
                )
            })
            .unwrap_or_else(|e| panic!("{listener:?} listener: legitimate request failed: {e}"));
        let expected: &[u16] = match listener {
            // No DDI tenant exists: the answer (401) shows the listener serves requests.
            Listener::Ddi => &[401, 404],
            _ => &[200],
        };
        assert!(
            expected.contains(&response.status),
            "{listener:?} listener answered {} to the legitimate request",
            response.status
        );
    }
}

/// A TCP connection from `source` (a loopback address), then TLS if `tls` is given.
async fn connect(
    source: &str,
    addr: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
) -> std::io::Result<Box<dyn Stream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse::<IpAddr>().unwrap(), 0))?;
    let tcp = socket.connect(addr).await?;
    match tls {
        None => Ok(Box::new(tcp)),
        Some(config) => {
            let name = ServerName::try_from("localhost").unwrap();
            let tls = TlsConnector::from(config.clone())
                .connect(name, tcp)
                .await?;
            Ok(Box::new(tls))
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[derive(Debug, Clone, Copy)]
enum Attack {
    /// A request line and one header, then one byte every 500 ms, never finishing the head.
    SlowHeaders,
    /// Connections (TLS completed where the listener speaks TLS) that send nothing.
    IdleFlood,
    /// TCP connections that never send a TLS ClientHello.
    NoClientHello,
    /// Slow headers from 12 sources (127.0.0.10 to .21), together over the listener's cap
    /// although each stays under its per-source cap.
    ManySourcesSlowHeaders,
    /// No ClientHello from 12 sources.
    ManySourcesNoClientHello,
}

impl Attack {
    fn many_sources(self) -> bool {
        matches!(
            self,
            Attack::ManySourcesSlowHeaders | Attack::ManySourcesNoClientHello
        )
    }

    fn slow_headers(self) -> bool {
        matches!(self, Attack::SlowHeaders | Attack::ManySourcesSlowHeaders)
    }
}

/// Opens the attack's connections from 127.0.0.1 and keeps them busy until the returned set
/// is dropped. Connections the server closes at once (over the per-source cap) are let go.
async fn launch(target: &Target, listener: Listener, attack: Attack) -> JoinSet<()> {
    let mut attackers = JoinSet::new();
    let addr = target.addr(listener);
    let tls = match attack {
        Attack::NoClientHello | Attack::ManySourcesNoClientHello => None,
        _ => target.tls(listener, "attacker-device"),
    };
    for i in 0..ATTACK_CONNECTIONS {
        let tls = tls.clone();
        let source = if attack.many_sources() {
            format!("127.0.0.{}", 10 + i % 12)
        } else {
            ATTACKER.to_owned()
        };
        attackers.spawn(async move {
            let Ok(mut stream) = connect(&source, addr, tls.as_ref()).await else {
                return;
            };
            match attack {
                _ if attack.slow_headers() => {
                    let head = b"POST /device/v1/poll HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
                    if stream.write_all(head).await.is_err() {
                        return;
                    }
                    loop {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if stream.write_all(b"a").await.is_err() {
                            return;
                        }
                    }
                }
                _ => {
                    // Hold the connection until the server closes it or the test ends.
                    let mut buf = [0u8; 64];
                    let _ = stream.read(&mut buf).await;
                }
            }
        });
    }
    // Let the attack take every slot it can before the legitimate client comes.
    let counters = target.admission(listener);
    // The attack is in place once its source holds its whole share of the listener (with many
    // sources: the whole listener).
    let share = if attack.many_sources() {
        CAPS.max_connections
    } else {
        CAPS.max_per_source
    };
    let in_place = async {
        while counters.open.load(Ordering::Relaxed) < share as u64 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(120), in_place)
        .await
        .expect("the attack's connections were admitted up to the per-source cap");
    attackers
}

/// One attack at a time in this test binary: each test's attack already keeps a machine's two
/// cores busy with handshakes, and two at once would measure the machine, not the defence.
static ONE_ATTACK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn survives_every_attack(listener: Listener, name: &str) {
    let _serial = ONE_ATTACK_AT_A_TIME.lock().await;
    let target = start(name, Duration::from_secs(10)).await;
    let attacks: &[Attack] = match listener {
        Listener::Metrics => &[
            Attack::SlowHeaders,
            Attack::IdleFlood,
            Attack::ManySourcesSlowHeaders,
        ],
        _ => &[
            Attack::SlowHeaders,
            Attack::IdleFlood,
            Attack::NoClientHello,
            Attack::ManySourcesSlowHeaders,
            Attack::ManySourcesNoClientHello,
        ],
    };
    for &attack in attacks {
        let attackers = launch(&target, listener, attack).await;
        target.legitimate_request(listener).await;
        let counters = target.admission(listener);
        if attack.many_sources() {
            assert!(
                counters.shed.load(Ordering::Relaxed) > 0,
                "{listener:?}, {attack:?}: no unproven connection was shed to make room"
            );
        } else {
            assert!(
                counters.refused_per_source.load(Ordering::Relaxed) > 0,
                "{listener:?}, {attack:?}: the per-source cap closed none of the attack's connections"
            );
        }
        drop(attackers);
        // The next attack starts on an empty listener.
        tokio::time::timeout(Duration::from_secs(60), async {
            while counters.open.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the attack's connections were closed");
    }
    target.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_listener_serves_a_legitimate_device_during_slow_header_and_idle_floods() {
    survives_every_attack(Listener::Device, "conn_device").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ddi_listener_serves_a_legitimate_client_during_slow_header_and_idle_floods() {
    survives_every_attack(Listener::Ddi, "conn_ddi").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_listener_serves_an_operator_during_slow_header_and_idle_floods() {
    survives_every_attack(Listener::Management, "conn_management").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_listener_serves_a_scraper_during_slow_header_and_idle_floods() {
    survives_every_attack(Listener::Metrics, "conn_metrics").await;
}

/// Reads until the server closes the connection; panics if it is still open after `bound`.
async fn closed_by_server_within(stream: &mut dyn Stream, bound: Duration, what: &str) {
    let closed = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, closed)
        .await
        .unwrap_or_else(|_| panic!("{what}: the server kept the connection open"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_completes_is_closed_at_the_head_deadline_on_every_listener() {
    // A 1 s head deadline; the client keeps sending a byte every 200 ms, so only the head
    // deadline (not the idle timeout) can close it.
    let target = start("conn_head_deadline", Duration::from_secs(1)).await;
    for listener in [
        Listener::Device,
        Listener::Ddi,
        Listener::Management,
        Listener::Metrics,
    ] {
        let tls = target.tls(listener, "slow-device");
        let mut stream = connect(LEGITIMATE, target.addr(listener), tls.as_ref())
            .await
            .unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
            .await
            .unwrap();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let dribble = tokio::spawn(async move {
            for _ in 0..150 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer.write_all(b"a").await.is_err() {
                    return;
                }
            }
        });
        let closed = async {
            let mut buf = [0u8; 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), closed)
            .await
            .unwrap_or_else(|_| {
                panic!("{listener:?} listener kept a never-ending request head open")
            });
        dribble.abort();
    }
    target.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_on_every_listener() {
    // The idle timeout is the default 60 s; the head deadline (1 s) is what closes a
    // kept-alive connection that sends no next request.
    let target = start("conn_keep_alive", Duration::from_secs(1)).await;
    for listener in [
        Listener::Device,
        Listener::Ddi,
        Listener::Management,
        Listener::Metrics,
    ] {
        let tls = target.tls(listener, "idle-device");
        let stream = connect(LEGITIMATE, target.addr(listener), tls.as_ref())
            .await
            .unwrap();
        let mut conn = Conn::new(stream);
        let response = conn.send("GET", "/metrics", &[], b"").await.unwrap();
        assert!(response.status < 500, "{listener:?}: {}", response.status);
        let mut stream = conn.into_inner();
        closed_by_server_within(
            &mut *stream,
            Duration::from_secs(20),
            &format!("{listener:?} listener, idle kept-alive connection"),
        )
        .await;
    }
    target.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_that_do_not_fit_the_open_file_limit_refuse_to_start() {
    let fx = Fixture::new(Backend::Sqlite, "conn_file_limit").await;
    let tls = rampart_pki::server_config(
        &fx.server_cert.cert_pem,
        &fx.server_cert.key_pem,
        fx.ca.cert_pem(),
        &[],
    )
    .unwrap();
    let mut config =
        rampart_server::ServerConfig::new(fx.db_url.clone(), tls, "127.0.0.1:0".parse().unwrap());
    // More files than any process may open (Linux caps the limit at fs.nr_open, 2^20 by
    // default and at most 2^30).
    config.connections.device = ListenerCaps {
        max_connections: 1 << 40,
        max_per_source: 16,
    };
    config.connections.scale_to_file_limit = false;
    let err = rampart_server::Server::bind(config).await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("may open only") && message.contains("ulimit -n"),
        "{message}"
    );
}
