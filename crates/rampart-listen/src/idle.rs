//! A stream that fails with `TimedOut` once it has been idle (no byte read or written) for its
//! idle timeout, which closes stalled connections (a body or a response that stops moving).
//! Every listener wraps its connections in it; `attached` carries what the connection holds besides its bytes (the
//! device's identity, an operator connection's slot).

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::admission::Standing;

type ShedSignal = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

pub struct IdleTimeout<S, T> {
    inner: S,
    attached: T,
    /// The connection's standing with its listener and the future that resolves when the
    /// listener sheds it (see [`crate::admission::Admission::make_room`]).
    standing: Option<(Standing, ShedSignal)>,
    idle_timeout: Duration,
    last_activity: Instant,
    /// Fires at or before `last_activity + idle_timeout`; re-armed lazily.
    idle_deadline: Pin<Box<Sleep>>,
}

impl<S, T: std::fmt::Debug> std::fmt::Debug for IdleTimeout<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleTimeout")
            .field("attached", &self.attached)
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl<S, T> IdleTimeout<S, T> {
    pub fn new(inner: S, attached: T, idle_timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            inner,
            attached,
            standing: None,
            idle_timeout,
            last_activity: now,
            idle_deadline: Box::pin(tokio::time::sleep_until(now + idle_timeout)),
        }
    }

    /// Closes the connection (its next read or write fails) once its listener sheds it.
    pub fn with_standing(mut self, standing: Standing) -> Self {
        let watched = standing.clone();
        self.standing = Some((standing, Box::pin(async move { watched.shed().await })));
        self
    }

    /// The connection's standing with its listener, if it has one.
    pub fn standing(&self) -> Option<&Standing> {
        self.standing.as_ref().map(|(standing, _)| standing)
    }

    /// What the connection carries besides its bytes.
    pub fn attached(&self) -> &T {
        &self.attached
    }

    /// Records I/O progress, then passes the result on.
    fn active<R>(&mut self, result: R) -> Poll<R> {
        self.last_activity = Instant::now();
        Poll::Ready(result)
    }

    /// Called when I/O is pending: `Ready(err)` once the connection has been
    /// idle too long, else `Pending` with the timer registered.
    fn poll_idle<R>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<R>> {
        if let Some((_, shed)) = &mut self.standing
            && shed.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection (no request head yet)",
            )));
        }
        loop {
            if self.idle_deadline.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let due = self.last_activity + self.idle_timeout;
            if Instant::now() >= due {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection idle for too long",
                )));
            }
            self.idle_deadline.as_mut().reset(due);
        }
    }
}

impl<S: AsyncRead + Unpin, T: Unpin> AsyncRead for IdleTimeout<S, T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(result) => this.active(result),
            Poll::Pending => this.poll_idle(cx),
        }
    }
}

impl<S: AsyncWrite + Unpin, T: Unpin> AsyncWrite for IdleTimeout<S, T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Ready(result) => this.active(result),
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_shutdown(cx) {
            Poll::Ready(result) => Poll::Ready(result),
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => this.active(result),
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
