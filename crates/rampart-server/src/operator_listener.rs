//! The management API's listener: TLS with the server certificate and no client certificate
//! (operators authenticate with bearer tokens). Handshakes run off the accept path with a
//! deadline, as on the device listener, so a stalled client cannot block others.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once on the operator listener.
const MAX_PENDING: usize = 256;

pub struct OperatorListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    pending: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl OperatorListener {
    pub fn new(
        tcp: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> Self {
        Self {
            tcp,
            acceptor: TlsAcceptor::from(tls),
            handshake_timeout,
            pending: JoinSet::new(),
        }
    }
}

impl Listener for OperatorListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept(), if self.pending.len() < MAX_PENDING => {
                    match accepted {
                        Ok((tcp, addr)) => {
                            let _ = tcp.set_nodelay(true);
                            let acceptor = self.acceptor.clone();
                            let deadline = self.handshake_timeout;
                            self.pending.spawn(async move {
                                match tokio::time::timeout(deadline, acceptor.accept(tcp)).await {
                                    Ok(Ok(tls)) => Some((tls, addr)),
                                    _ => None,
                                }
                            });
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                Some(Ok(Some((tls, addr)))) = self.pending.join_next() => return (tls, addr),
                else => {}
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
