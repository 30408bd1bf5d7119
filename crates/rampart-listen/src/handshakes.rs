//! Accepting for a listener that runs a handshake per connection (the update server's TLS
//! listeners): every connection is admitted first ([`crate::admission`]: caps per listener and
//! per source, shedding the oldest unproven connection at a full listener), then its handshake
//! runs as a task of its own, so a slow or malicious client never holds up the others.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::{JoinError, JoinSet};

use crate::admission::{Admission, Ticket};

/// What a listener does with the connections its [`HandshakeQueue`] admits.
pub trait Handshaker {
    type Output: Send + 'static;
    /// The handshake of an admitted connection, run as a task of its own. It holds `ticket`
    /// for as long as the connection is open, and should end early when the ticket's
    /// [`crate::Standing::shed`] resolves.
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
        ticket: Ticket,
    ) -> impl Future<Output = Self::Output> + Send + 'static;
    /// A connection closed at once because its source holds its cap.
    fn source_refused(&self, _peer: SocketAddr) {}
    /// An `accept(2)` error other than a per-connection one (typically out of file
    /// descriptors); the queue backs off for a second after it.
    fn accept_failed(&self, _error: &io::Error) {}
}

/// Admitted connections and their handshakes in progress.
#[derive(Debug)]
pub struct HandshakeQueue<H> {
    tcp: TcpListener,
    admission: Admission,
    pending: JoinSet<H>,
    /// An accepted connection waiting for a slot of the full listener.
    waiting: Option<(TcpStream, SocketAddr)>,
    max_pending: usize,
}

impl<H: Send + 'static> HandshakeQueue<H> {
    /// At most `max_pending` handshakes run at once; beyond that, new connections wait in the
    /// kernel backlog.
    pub fn new(tcp: TcpListener, admission: Admission, max_pending: usize) -> Self {
        Self {
            tcp,
            admission,
            pending: JoinSet::new(),
            waiting: None,
            max_pending: max_pending.max(1),
        }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Handshakes in progress.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Accepts and admits connections, starting their handshakes with `handshaker`, until one
    /// handshake finishes; returns its output (`Err`: its task panicked). Cancel-safe: a
    /// connection waiting for a slot is kept, and accepting, acquiring a slot and joining a
    /// handshake are cancel-safe.
    pub async fn next<S: Handshaker<Output = H>>(
        &mut self,
        handshaker: &S,
    ) -> Result<H, JoinError> {
        loop {
            if let Some((tcp, peer)) = self.waiting.take() {
                if let Some(slot) = self.admission.try_slot() {
                    self.start(handshaker, tcp, peer, slot);
                    continue;
                }
                self.waiting = Some((tcp, peer));
                tokio::select! {
                    slot = self.admission.slot() => {
                        if let Some((tcp, peer)) = self.waiting.take() {
                            self.start(handshaker, tcp, peer, slot);
                        }
                    }
                    Some(done) = self.pending.join_next() => return done,
                }
                continue;
            }
            tokio::select! {
                accepted = self.tcp.accept(), if self.pending.len() < self.max_pending => {
                    match accepted {
                        Ok((tcp, peer)) => {
                            // Closed at once when its source holds its cap, before it can make
                            // room.
                            if self.admission.source_is_full(peer) {
                                handshaker.source_refused(peer);
                                continue;
                            }
                            match self.admission.try_slot() {
                                Some(slot) => self.start(handshaker, tcp, peer, slot),
                                None => {
                                    // Full: the oldest connection without a request head yet
                                    // makes room, and this one waits for its slot.
                                    self.admission.make_room();
                                    self.waiting = Some((tcp, peer));
                                }
                            }
                        }
                        Err(e) if is_connection_error(&e) => {}
                        Err(e) => {
                            handshaker.accept_failed(&e);
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
                Some(done) = self.pending.join_next() => return done,
            }
        }
    }

    fn start<S: Handshaker<Output = H>>(
        &mut self,
        handshaker: &S,
        tcp: TcpStream,
        peer: SocketAddr,
        slot: OwnedSemaphorePermit,
    ) {
        match self.admission.admit(slot, peer) {
            Some(ticket) => {
                let _ = tcp.set_nodelay(true);
                self.pending.spawn(handshaker.handshake(tcp, peer, ticket));
            }
            None => handshaker.source_refused(peer),
        }
    }
}

/// Errors of one connection that `accept(2)` reports, not the listener's.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}
