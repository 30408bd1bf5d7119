//! A mutual-TLS [`axum::serve::Listener`]: it accepts TCP connections,
//! completes the rustls handshake (with a deadline) off the accept path, and
//! hands axum only connections whose client certificate was verified and
//! names a device. The device identity travels with the stream and reaches
//! handlers as [`axum::extract::ConnectInfo<PeerIdentity>`].
//!
//! Connections that fail the handshake (no certificate, unknown CA, expired,
//! revoked, wrong protocol, timeout) or whose certificate carries no device id
//! are dropped and counted in [`ConnectionCounters`]; they never stop the
//! accept loop.
//!
//! Every connection is admitted first ([`rampart_listen::admission`]): the listener holds at
//! most its cap of connections, handshakes included; a source holding its per-source cap has
//! new connections closed at once (counted, and summarised in the audit log with the refused
//! handshakes); and at a full listener the oldest connection without a request head yet is
//! shed, so clients that open connections and never send a ClientHello cannot take the slots
//! of the devices.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use crate::observe::labels::ConnectionCounters;
use rampart_listen::idle::IdleTimeout;
use rampart_listen::{Admission, HandshakeQueue, Handshaker, Ticket};

/// How long a client gets to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an established connection may go without reading or writing a
/// byte before it is closed (idle keep-alive connections, stalled clients).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Handshakes in progress at once; beyond this, new TCP connections wait in
/// the kernel backlog until some finish.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;

/// The authenticated peer of a connection: the device named by its verified
/// client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The TCP peer address.
    pub remote_addr: SocketAddr,
    /// The device id from the certificate (see [`rampart_pki::device_id_from_cert`]).
    pub device_id: String,
    /// The certificate serial number, lower-case hex.
    pub serial: String,
    /// The verified client certificate (DER), e.g. what a signed evidence bundle is checked
    /// against.
    pub certificate: Arc<[u8]>,
}

impl Connected<IncomingStream<'_, MtlsListener>> for PeerIdentity {
    fn connect_info(stream: IncomingStream<'_, MtlsListener>) -> Self {
        stream.io().attached().peer().clone()
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone)]
enum Refusal {
    /// The TLS error, e.g. "invalid peer certificate: Revoked".
    Handshake(String),
    Timeout,
    NoIdentity,
    /// The source already holds its per-source cap of connections.
    SourceCap,
    /// Closed to make room at a full listener before its handshake finished.
    Shed,
}

/// A refused connection, for the audit log (see [`MtlsListener::with_refusal_sink`]).
#[derive(Debug, Clone)]
pub struct RefusedConnection {
    /// Unix seconds.
    pub time: i64,
    pub remote_addr: SocketAddr,
    /// Why, e.g. `tls: invalid peer certificate: Revoked`, `handshake timeout`.
    pub reason: String,
}

type Handshake = Result<(TlsStream<TcpStream>, DeviceConnection), (Refusal, SocketAddr)>;

/// What an established device connection holds besides its bytes.
#[derive(Debug)]
pub struct DeviceConnection {
    peer: PeerIdentity,
    _ticket: Ticket,
}

/// A TCP listener that only yields mutually authenticated TLS connections.
///
/// Handshakes run as separate tasks ([`rampart_listen::HandshakeQueue`]), so a slow or
/// malicious client cannot hold up the acceptance of others.
pub struct MtlsListener {
    queue: HandshakeQueue<Handshake>,
    handshaker: MtlsHandshake,
    idle_timeout: Duration,
}

/// The mutual-TLS handshake and the counting of refused connections.
struct MtlsHandshake {
    acceptor: TlsAcceptor,
    timeout: Duration,
    counters: Arc<ConnectionCounters>,
    refusal_sink: Option<tokio::sync::mpsc::Sender<RefusedConnection>>,
}

impl std::fmt::Debug for MtlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MtlsListener")
            .field("local_addr", &self.queue.local_addr().ok())
            .field("handshake_timeout", &self.handshaker.timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("pending_handshakes", &self.queue.pending())
            .finish_non_exhaustive()
    }
}

impl MtlsListener {
    /// Wraps a bound TCP listener. `tls` must require client certificates
    /// (as [`rampart_pki::server_config`] does); a connection without one is
    /// refused regardless.
    pub fn new(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        counters: Arc<ConnectionCounters>,
        admission: Admission,
    ) -> Self {
        Self {
            queue: HandshakeQueue::new(tcp, admission, MAX_PENDING_HANDSHAKES),
            handshaker: MtlsHandshake {
                acceptor: TlsAcceptor::from(tls),
                timeout: DEFAULT_HANDSHAKE_TIMEOUT,
                counters,
                refusal_sink: None,
            },
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Also reports every refused connection to `sink` (never blocking: when
    /// the queue is full the report is dropped; the counters still count it).
    pub fn with_refusal_sink(mut self, sink: tokio::sync::mpsc::Sender<RefusedConnection>) -> Self {
        self.handshaker.refusal_sink = Some(sink);
        self
    }

    /// Sets the handshake deadline and the idle timeout of established connections.
    pub fn with_timeouts(mut self, handshake: Duration, idle: Duration) -> Self {
        self.handshaker.timeout = handshake;
        self.idle_timeout = idle;
        self
    }

    /// The counters this listener updates.
    pub fn counters(&self) -> &Arc<ConnectionCounters> {
        &self.handshaker.counters
    }

    /// A finished handshake: the connection to serve, or the refusal counted.
    fn finished(
        &self,
        done: Result<Handshake, tokio::task::JoinError>,
    ) -> Option<(MtlsStream, SocketAddr)> {
        match done {
            Ok(Ok((tls, connection))) => {
                self.handshaker
                    .counters
                    .accepted
                    .fetch_add(1, Ordering::Relaxed);
                let addr = connection.peer.remote_addr;
                let standing = connection._ticket.standing();
                Some((
                    MtlsStream::new(tls, connection, self.idle_timeout).with_standing(standing),
                    addr,
                ))
            }
            Ok(Err((refusal, addr))) => {
                self.handshaker.count(refusal, Some(addr));
                None
            }
            // The handshake task panicked or was cancelled.
            Err(_) => {
                self.handshaker
                    .count(Refusal::Handshake("handshake task failed".into()), None);
                None
            }
        }
    }
}

impl MtlsHandshake {
    fn count(&self, refusal: Refusal, remote_addr: Option<SocketAddr>) {
        let (counter, reason) = match refusal {
            // Counted by the admission counters; not the client's fault as such.
            Refusal::Shed => return,
            Refusal::Handshake(e) => (&self.counters.handshake_failed, format!("tls: {e}")),
            Refusal::Timeout => (
                &self.counters.handshake_timeout,
                "handshake timeout".to_owned(),
            ),
            Refusal::NoIdentity => (
                &self.counters.no_device_identity,
                "certificate names no device".to_owned(),
            ),
            Refusal::SourceCap => (
                &self.counters.source_cap,
                "too many connections from this source".to_owned(),
            ),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let (Some(sink), Some(remote_addr)) = (&self.refusal_sink, remote_addr) {
            let _ = sink.try_send(RefusedConnection {
                time: crate::helpers::unix_now(),
                remote_addr,
                reason,
            });
        }
    }
}

impl Handshaker for MtlsHandshake {
    type Output = Handshake;

    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        ticket: Ticket,
    ) -> impl std::future::Future<Output = Handshake> + Send + 'static {
        handshake(self.acceptor.clone(), tcp, peer, self.timeout, ticket)
    }

    fn source_refused(&self, peer: SocketAddr) {
        self.count(Refusal::SourceCap, Some(peer));
    }

    fn accept_failed(&self, _error: &io::Error) {
        self.counters.accept_errors.fetch_add(1, Ordering::Relaxed);
    }
}

impl Listener for MtlsListener {
    type Io = MtlsStream;
    type Addr = SocketAddr;

    // Cancel-safe: see HandshakeQueue::next.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let done = self.queue.next(&self.handshaker).await;
            if let Some(ready) = self.finished(done) {
                return ready;
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.queue.local_addr()
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    remote_addr: SocketAddr,
    deadline: Duration,
    ticket: Ticket,
) -> Handshake {
    let standing = ticket.standing();
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(deadline, acceptor.accept(tcp)) => handshake,
        // Shed to make room for a newer connection before it finished its handshake (counted
        // by the admission counters).
        () = standing.shed() => return Err((Refusal::Shed, remote_addr)),
    };
    let tls = match handshake {
        Err(_) => return Err((Refusal::Timeout, remote_addr)),
        Ok(Err(e)) => {
            return Err((
                Refusal::Handshake(refusal_reason(&e).to_owned()),
                remote_addr,
            ));
        }
        Ok(Ok(tls)) => tls,
    };
    let (_, connection) = tls.get_ref();
    let leaf = connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or((Refusal::NoIdentity, remote_addr))?;
    let device_id =
        rampart_pki::device_id_from_cert(leaf).ok_or((Refusal::NoIdentity, remote_addr))?;
    let serial =
        rampart_pki::serial_hex_from_cert(leaf).ok_or((Refusal::NoIdentity, remote_addr))?;
    let peer = PeerIdentity {
        remote_addr,
        device_id,
        serial,
        certificate: Arc::from(leaf.as_ref()),
    };
    Ok((
        tls,
        DeviceConnection {
            peer,
            _ticket: ticket,
        },
    ))
}

/// A fixed category for a failed handshake. The audit log summarises refusals by this, so it
/// must never carry client-chosen text (a certificate's dates, names): otherwise every
/// handshake could make its own audit record.
fn refusal_reason(e: &io::Error) -> &'static str {
    use rustls::{CertificateError, Error};
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::NoCertificatesPresented) => "no client certificate",
        Some(Error::InvalidCertificate(c)) => match c {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired"
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not yet valid"
            }
            CertificateError::Revoked => "certificate revoked",
            CertificateError::UnknownIssuer => "certificate from an unknown CA",
            CertificateError::BadSignature => "bad certificate signature",
            _ => "invalid certificate",
        },
        Some(Error::InvalidMessage(_) | Error::InappropriateHandshakeMessage { .. }) => {
            "TLS protocol error"
        }
        Some(Error::PeerIncompatible(_)) => "incompatible TLS client",
        Some(_) => "TLS handshake failed",
        None => "connection failed during the handshake",
    }
}

/// An established, mutually authenticated connection, closed once idle for the idle timeout
/// (see [`rampart_listen::idle`]); it carries its [`PeerIdentity`].
pub type MtlsStream = IdleTimeout<TlsStream<TcpStream>, DeviceConnection>;

impl DeviceConnection {
    /// The authenticated peer.
    pub fn peer(&self) -> &PeerIdentity {
        &self.peer
    }
}
