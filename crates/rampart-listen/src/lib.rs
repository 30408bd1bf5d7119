//! Bounded HTTP listeners, shared by every Rampart service that accepts connections: the
//! update server's four listeners, the transparency log and its witnesses.
//!
//! * [`admission`]: connection caps per listener and per source, fitted to the open-file limit;
//! * [`serve`]: one HTTP/1.1 serve loop with a deadline on every request head;
//! * [`idle`]: closes connections on which nothing moves;
//! * [`plain`]: a plain-TCP listener built from the three;
//! * [`handshakes`]: the accept loop of listeners that run a handshake per connection (the
//!   update server's TLS listeners), on the same admission.

#![forbid(unsafe_code)]

pub mod admission;
pub mod handshakes;
pub mod idle;
pub mod plain;
pub mod serve;
mod unread_body;

pub use admission::{
    Admission, AdmissionCounters, ListenerCaps, Standing, Ticket, raise_file_limit,
};
pub use handshakes::{HandshakeQueue, Handshaker};
pub use plain::{PlainListener, PlainStream};
pub use serve::{HasStanding, HttpOptions, serve};

/// Bounds for a service with one plain listener and a few clients (the transparency log, a
/// witness): [`serve`] with [`admission::DEFAULT_HEADER_TIMEOUT`] and these caps.
pub const SMALL_SERVICE_CAPS: ListenerCaps = ListenerCaps {
    max_connections: 512,
    max_per_source: 32,
};

/// Binds nothing: wraps a bound listener with [`SMALL_SERVICE_CAPS`] and serves `router` until
/// `shutdown` completes.
pub async fn serve_small_service(
    tcp: tokio::net::TcpListener,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let admission = Admission::new(
        SMALL_SERVICE_CAPS,
        std::sync::Arc::new(AdmissionCounters::default()),
    );
    let listener = PlainListener::new(tcp, std::time::Duration::from_secs(60), admission);
    serve(
        listener,
        router,
        HttpOptions {
            header_timeout: admission::DEFAULT_HEADER_TIMEOUT,
            shutdown_grace: Some(std::time::Duration::from_secs(5)),
        },
        |_, peer| peer,
        shutdown,
    )
    .await;
}
