//! The management API's listener: TLS with the server certificate and no client certificate
//! (operators authenticate with bearer tokens); the DDI listener uses it too, asking for an
//! optional client certificate. Connections are admitted and their handshakes run through
//! [`rampart_listen::HandshakeQueue`] (caps per listener and per source, a handshake deadline,
//! the oldest unproven connection shed at a full listener), and a connection idle for the idle
//! timeout is closed, so clients without a token cannot hold the process's file descriptors.
//! `rampart_listen::PlainListener` does the same without TLS, for `/metrics`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use rampart_listen::idle::IdleTimeout;
use rampart_listen::{Admission, HandshakeQueue, Handshaker, Ticket};

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr, Slot)>;

/// What a connection holds: its connection slot, and the device id of the client certificate
/// it presented, if any (only the DDI listener asks for one, optionally; the management
/// listener never does).
#[derive(Debug)]
pub struct Slot {
    _ticket: Ticket,
    pub certificate_device: Option<String>,
}

fn certificate_device(tls: &TlsStream<TcpStream>) -> Option<String> {
    let leaf = tls.get_ref().1.peer_certificates()?.first()?;
    rampart_pki::device_id_from_cert(leaf)
}

pub struct OperatorListener {
    queue: HandshakeQueue<Handshake>,
    handshaker: OperatorHandshake,
    idle_timeout: Duration,
}

/// The TLS handshake of an operator (or DDI) connection.
struct OperatorHandshake {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl Handshaker for OperatorHandshake {
    type Output = Handshake;

    fn handshake(
        &self,
        tcp: TcpStream,
        addr: SocketAddr,
        ticket: Ticket,
    ) -> impl std::future::Future<Output = Handshake> + Send + 'static {
        let acceptor = self.acceptor.clone();
        let deadline = self.timeout;
        async move {
            let standing = ticket.standing();
            tokio::select! {
                handshake = tokio::time::timeout(deadline, acceptor.accept(tcp)) => match handshake {
                    Ok(Ok(tls)) => {
                        let certificate_device = certificate_device(&tls);
                        Some((tls, addr, Slot { _ticket: ticket, certificate_device }))
                    }
                    _ => None,
                },
                // Shed to make room for a newer connection before its handshake finished.
                () = standing.shed() => None,
            }
        }
    }
}

impl OperatorListener {
    pub fn new(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
        idle_timeout: Duration,
        admission: Admission,
    ) -> Self {
        Self {
            queue: HandshakeQueue::new(tcp, admission, usize::MAX),
            handshaker: OperatorHandshake {
                acceptor: TlsAcceptor::from(tls),
                timeout: handshake_timeout,
            },
            idle_timeout,
        }
    }
}

impl Listener for OperatorListener {
    type Io = OperatorStream;
    type Addr = SocketAddr;

    // Cancel-safe: see HandshakeQueue::next.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok(Some((tls, addr, slot))) = self.queue.next(&self.handshaker).await {
                let standing = slot._ticket.standing();
                let stream =
                    OperatorStream::new(tls, slot, self.idle_timeout).with_standing(standing);
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.queue.local_addr()
    }
}

/// An operator connection: holds its connection slot, and is closed once idle for the idle
/// timeout (see [`rampart_listen::idle`]).
pub type OperatorStream = IdleTimeout<TlsStream<TcpStream>, Slot>;

/// Who is on the other end of a DDI connection: its address and, if it presented a client
/// certificate that chains to the device CA, the device id in it.
#[derive(Debug, Clone)]
pub struct DdiPeer {
    pub remote_addr: SocketAddr,
    pub certificate_device: Option<String>,
}

impl Connected<IncomingStream<'_, OperatorListener>> for DdiPeer {
    fn connect_info(stream: IncomingStream<'_, OperatorListener>) -> Self {
        DdiPeer {
            remote_addr: *stream.remote_addr(),
            certificate_device: stream.io().attached().certificate_device.clone(),
        }
    }
}
