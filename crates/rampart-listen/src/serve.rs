//! Serves HTTP/1.1 on any of the server's listeners, with a deadline on every request head.
//!
//! `axum::serve` sets no header timer: a client that sends its request line and then one
//! header byte every few seconds holds its connection for as long as it likes, and a few
//! hundred such clients take every slot of a listener. This loop drives hyper directly with
//! [`hyper::server::conn::http1::Builder::header_read_timeout`]: a request head (request line
//! and headers) must arrive whole within the deadline, counted from the moment the server waits
//! for it, which on a kept-alive connection is right after the previous response. So the same
//! deadline also closes idle keep-alive connections. Stalled bodies and responses are closed by
//! the listeners' idle timeout ([`crate::idle`]), slow bodies by the routes' own body deadlines.
//!
//! Handlers see the connection as `ConnectInfo<SocketAddr>` (the TCP peer) and as
//! `ConnectInfo<I>` with whatever the listener learnt (the device identity of a verified
//! client certificate, for example).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::admission::Standing;

/// How [`serve`] runs a listener.
#[derive(Debug, Clone, Copy)]
pub struct HttpOptions {
    /// Deadline for each request head (see the module documentation).
    pub header_timeout: Duration,
    /// After shutdown, how long requests in flight may take before their connections are
    /// dropped; `None` waits for them all.
    pub shutdown_grace: Option<Duration>,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets the
/// requests in flight finish (within [`HttpOptions::shutdown_grace`]).
pub async fn serve<L, I, F>(
    mut listener: L,
    router: Router,
    options: HttpOptions,
    connection_info: F,
    shutdown: impl Future<Output = ()>,
) where
    L: Listener<Addr = SocketAddr>,
    L::Io: AsyncRead + AsyncWrite + HasStanding + Unpin + Send + 'static,
    F: Fn(&L::Io, SocketAddr) -> I,
    I: Clone + Send + Sync + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let service = ConnectionService {
            router: router.clone(),
            standing: io.standing(),
            peer,
            info: connection_info(&io, peer),
        };
        let connection = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            // A connection's end (closed, timed out, malformed request) concerns it alone.
            let _ = connection.await;
        });
    }
    drop(listener);
    match options.shutdown_grace {
        Some(grace) => {
            let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
        }
        None => graceful.shutdown().await,
    }
}

/// The router, seen from one connection.
#[derive(Clone)]
struct ConnectionService<I> {
    router: Router,
    /// Proven by the first request head, after which the listener never sheds it.
    standing: Option<Standing>,
    peer: SocketAddr,
    info: I,
}

impl<I: Clone + Send + Sync + 'static> hyper::service::Service<hyper::Request<Incoming>>
    for ConnectionService<I>
{
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>,
    >;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        if let Some(standing) = &self.standing {
            standing.prove();
        }
        // An answer given before the body was read says `Connection: close` (see
        // crate::unread_body).
        let (parts, body) = request.into_parts();
        let (body, body_read) = crate::unread_body::TrackedBody::new(body);
        let mut request = hyper::Request::from_parts(parts, body);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        request
            .extensions_mut()
            .insert(ConnectInfo(self.info.clone()));
        let mut router = self.router.clone();
        let answer = tower_service::Service::call(&mut router, request);
        Box::pin(async move { answer.await.map(|response| body_read.mark(response)) })
    }
}

/// A connection that may carry a [`Standing`] with its listener.
pub trait HasStanding {
    fn standing(&self) -> Option<Standing>;
}

impl<S, T> HasStanding for crate::idle::IdleTimeout<S, T> {
    fn standing(&self) -> Option<Standing> {
        crate::idle::IdleTimeout::standing(self).cloned()
    }
}

/// A bare TCP connection (no admission) is never shed.
impl HasStanding for tokio::net::TcpStream {
    fn standing(&self) -> Option<Standing> {
        None
    }
}
