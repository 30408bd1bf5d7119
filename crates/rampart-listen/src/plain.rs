//! A plain-TCP listener: the same admission and idle timeout as the TLS listeners of the
//! update server, without a handshake (the server's metrics listener, the transparency log
//! and its witnesses).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};

use crate::admission::{Admission, Ticket};
use crate::idle::IdleTimeout;

/// A plain-TCP listener with admission and an idle timeout.
pub struct PlainListener {
    tcp: TcpListener,
    idle_timeout: Duration,
    admission: Admission,
}

impl PlainListener {
    pub fn new(tcp: TcpListener, idle_timeout: Duration, admission: Admission) -> Self {
        Self {
            tcp,
            idle_timeout,
            admission,
        }
    }
}

/// A plain connection holding its admission ticket.
pub type PlainStream = IdleTimeout<TcpStream, Ticket>;

impl Listener for PlainListener {
    type Io = PlainStream;
    type Addr = SocketAddr;

    // Cancel-safe: the slot is acquired before accept and dropped with it if cancelled.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Closed at once when its source holds its cap (before it can make room).
            if self.admission.source_is_full(addr) {
                continue;
            }
            let slot = match self.admission.try_slot() {
                Some(slot) => slot,
                None => {
                    // Full: the oldest connection without a request head yet makes room.
                    self.admission.make_room();
                    self.admission.slot().await
                }
            };
            if let Some(ticket) = self.admission.admit(slot, addr) {
                let _ = tcp.set_nodelay(true);
                let standing = ticket.standing();
                return (
                    IdleTimeout::new(tcp, ticket, self.idle_timeout).with_standing(standing),
                    addr,
                );
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
