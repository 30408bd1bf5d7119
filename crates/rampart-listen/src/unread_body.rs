//! An answer given before the request's body was read ends its connection, and says so.
//!
//! A handler may answer without reading the body: a refused credential, an unknown route or
//! id. hyper then closes the connection after the answer (unless the rest of the body happens
//! to be buffered already), but the answer does not say so, and a client that meanwhile sends
//! its next request on the kept-alive connection loses that request to a reset. The
//! schemathesis run against the update server saw this on about one in eight such requests.
//! Such answers therefore carry `Connection: close`: the client opens a new connection
//! instead of racing the close.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use axum::http::{HeaderValue, header};
use axum::response::Response;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};

/// A request body that records whether it was read to its end.
pub(crate) struct TrackedBody {
    inner: Incoming,
    finished: Arc<AtomicBool>,
}

/// Whether a [`TrackedBody`] was read to its end (or had nothing to read).
#[derive(Clone)]
pub(crate) struct BodyRead(Arc<AtomicBool>);

impl TrackedBody {
    pub(crate) fn new(inner: Incoming) -> (TrackedBody, BodyRead) {
        let finished = Arc::new(AtomicBool::new(inner.is_end_stream()));
        (
            TrackedBody {
                inner,
                finished: finished.clone(),
            },
            BodyRead(finished),
        )
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        // The end, or a broken body: either way nothing is left for the connection to drain.
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) || this.inner.is_end_stream() {
            this.finished.store(true, Ordering::Release);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl BodyRead {
    /// `response`, with `Connection: close` if the body was not read to its end.
    pub(crate) fn mark(&self, mut response: Response) -> Response {
        if !self.0.load(Ordering::Acquire) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
