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
            let slot = self.admission.slot().await;
            match self.tcp.accept().await {
                Ok((tcp, addr)) => {
                    if let Some(ticket) = self.admission.admit(slot, addr) {
                        let _ = tcp.set_nodelay(true);
                        return (IdleTimeout::new(tcp, ticket, self.idle_timeout), addr);
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
