//! An HTTP connection's socket with a write timeout: a peer that takes no bytes of a
//! response for [`EngineConfig::http_write_timeout_ms`](crate::config::EngineConfig)
//! gets its connection closed.
//!
//! hyper's header timeout covers a request's arrival, not the response's departure: a
//! client that pipelines requests and never reads would otherwise hold its descriptor and
//! connection slot for ever. The timer measures time without progress, not the whole
//! response, so a slow reader that keeps taking bytes is never cut. Only HTTP is wrapped:
//! an upgraded WebSocket leaves it behind (`upgraded_stream` unwraps it), and sessions have
//! their own idle timeout. Allocates one timer per stall; runs on the worker thread.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// `io`, whose writes fail with [`io::ErrorKind::TimedOut`] after `timeout` without
/// progress.
#[derive(Debug)]
pub struct WriteTimeout<I> {
    io: I,
    timeout: Duration,
    /// Set when a write first waits; cleared when one makes progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<I> WriteTimeout<I> {
    /// Wraps `io`.
    pub fn new(io: I, timeout: Duration) -> WriteTimeout<I> {
        WriteTimeout {
            io,
            timeout,
            stalled: None,
        }
    }

    /// The socket, unwrapped.
    pub fn into_inner(self) -> I {
        self.io
    }

    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let timeout = self.timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the peer took no bytes of the response for http_write_timeout_ms",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteTimeout<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.check(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.check(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.check(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_shutdown(cx);
        this.check(cx, r)
    }
}
