//! The management API's listener: TLS with the server certificate and no client certificate
//! (operators authenticate with bearer tokens). Handshakes run off the accept path with a
//! deadline, as on the device listener, so a stalled client cannot block others. Connections
//! are admitted by [`rampart_listen::admission`] (a cap per listener, beyond which new ones wait in
//! the kernel backlog, and a cap per source, beyond which they are closed at once), and a
//! connection idle for the idle timeout is closed, so clients without a token cannot hold the
//! process's file descriptors. [`PlainListener`] does the same without TLS, for `/metrics`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use rampart_listen::idle::IdleTimeout;
use rampart_listen::{Admission, Ticket};

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
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    idle_timeout: Duration,
    admission: Admission,
    pending: JoinSet<Handshake>,
    /// An accepted connection waiting for a slot of the full listener.
    waiting: Option<(TcpStream, SocketAddr)>,
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
            tcp,
            acceptor: TlsAcceptor::from(tls),
            handshake_timeout,
            idle_timeout,
            admission,
            pending: JoinSet::new(),
            waiting: None,
        }
    }
}

impl OperatorListener {
    /// Starts the handshake of an admitted connection; a connection whose source holds its
    /// cap is dropped.
    fn start_handshake(&mut self, tcp: TcpStream, addr: SocketAddr, slot: OwnedSemaphorePermit) {
        let Some(ticket) = self.admission.admit(slot, addr) else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = self.acceptor.clone();
        let deadline = self.handshake_timeout;
        let standing = ticket.standing();
        self.pending.spawn(async move {
            tokio::select! {
                handshake = tokio::time::timeout(deadline, acceptor.accept(tcp)) => match handshake {
                    Ok(Ok(tls)) => {
                        let certificate_device = certificate_device(&tls);
                        Some((tls, addr, Slot { _ticket: ticket, certificate_device }))
                    }
                    _ => None,
                },
                // Shed to make room for a newer connection before it finished its handshake.
                () = standing.shed() => None,
            }
        });
    }

    fn served(&self, tls: TlsStream<TcpStream>, slot: Slot) -> OperatorStream {
        let standing = slot._ticket.standing();
        OperatorStream::new(tls, slot, self.idle_timeout).with_standing(standing)
    }
}

impl Listener for OperatorListener {
    type Io = OperatorStream;
    type Addr = SocketAddr;

    // Cancel-safe: a connection waiting for a slot is kept in `self.waiting`; accepting,
    // acquiring a slot and joining a handshake are cancel-safe.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Some((tcp, addr)) = self.waiting.take() {
                if let Some(slot) = self.admission.try_slot() {
                    self.start_handshake(tcp, addr, slot);
                    continue;
                }
                self.waiting = Some((tcp, addr));
                tokio::select! {
                    slot = self.admission.slot() => {
                        if let Some((tcp, addr)) = self.waiting.take() {
                            self.start_handshake(tcp, addr, slot);
                        }
                    }
                    Some(done) = self.pending.join_next() => {
                        if let Ok(Some((tls, addr, slot))) = done {
                            return (self.served(tls, slot), addr);
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, addr)) => {
                        // Closed at once when its source holds its cap, before it can make room.
                        if self.admission.source_is_full(addr) {
                            continue;
                        }
                        match self.admission.try_slot() {
                            Some(slot) => self.start_handshake(tcp, addr, slot),
                            None => {
                                // Full: the oldest connection without a request head yet makes
                                // room, and this one waits for its slot.
                                self.admission.make_room();
                                self.waiting = Some((tcp, addr));
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                },
                Some(done) = self.pending.join_next() => {
                    if let Ok(Some((tls, addr, slot))) = done {
                        return (self.served(tls, slot), addr);
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// An operator connection: holds its connection slot, and is closed once idle for the idle
/// timeout (see [`rampart_listen::idle`]).
pub type OperatorStream = IdleTimeout<TlsStream<TcpStream>, Slot>;
