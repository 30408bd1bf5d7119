//! The management API's listener: TLS with the server certificate and no client certificate
//! (operators authenticate with bearer tokens). Handshakes run off the accept path with a
//! deadline, as on the device listener, so a stalled client cannot block others; at most
//! [`MAX_CONNECTIONS`] connections are open at once (beyond that, new ones wait in the kernel
//! backlog), and a connection idle for the idle timeout is closed, so clients without a token
//! cannot hold the process's file descriptors.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::idle::IdleTimeout;

/// Open management connections (including handshakes in progress) at once.
pub const MAX_CONNECTIONS: usize = 256;

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr, Slot)>;

/// What a connection holds: its connection slot, and the device id of the client certificate
/// it presented, if any (only the DDI listener asks for one, optionally; the management
/// listener never does).
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
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
    slots: Arc<Semaphore>,
    pending: JoinSet<Handshake>,
}

impl OperatorListener {
    pub fn new(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
        idle_timeout: Duration,
    ) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(tls),
            handshake_timeout,
            idle_timeout,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            pending: JoinSet::new(),
        }
    }

    /// At most `n` connections at once instead of [`MAX_CONNECTIONS`] (the DDI listener
    /// serves devices, not a few operators).
    pub fn with_max_connections(mut self, n: usize) -> Self {
        self.slots = Arc::new(Semaphore::new(n.max(1)));
        self
    }
}

impl Listener for OperatorListener {
    type Io = OperatorStream;
    type Addr = SocketAddr;

    // Cancel-safe: the permit is acquired before accept and dropped with it if cancelled.
    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                permit = self.slots.clone().acquire_owned() => {
                    let Ok(permit) = permit else { continue };
                    // Holding a free slot, wait for a connection or a finished handshake.
                    tokio::select! {
                        accepted = self.tcp.accept() => match accepted {
                            Ok((tcp, addr)) => {
                                let _ = tcp.set_nodelay(true);
                                let acceptor = self.acceptor.clone();
                                let deadline = self.handshake_timeout;
                                self.pending.spawn(async move {
                                    match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                                        Ok(Ok(tls)) => {
                                            let certificate_device = certificate_device(&tls);
                                            Some((tls, addr, Slot { _permit: permit, certificate_device }))
                                        }
                                        _ => None,
                                    }
                                });
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                        },
                        Some(done) = self.pending.join_next() => {
                            drop(permit);
                            if let Ok(Some((tls, addr, slot))) = done {
                                return (OperatorStream::new(tls, slot, self.idle_timeout), addr);
                            }
                        }
                    }
                }
                Some(done) = self.pending.join_next() => {
                    if let Ok(Some((tls, addr, slot))) = done {
                        return (OperatorStream::new(tls, slot, self.idle_timeout), addr);
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
/// timeout (see [`crate::idle`]).
pub type OperatorStream = IdleTimeout<TlsStream<TcpStream>, Slot>;
