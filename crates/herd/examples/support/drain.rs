//! Shared by the examples (not an example itself): stop serving at herd's stop signal
//! without dropping the connections accepted just before it.
//!
//! `axum::serve(…).with_graceful_shutdown(herd::worker::tokio::shutdown())` alone loses
//! some: at the signal, hyper closes at once every HTTP/1 connection whose request it has
//! not started to read, as idle (hyperium/hyper#2730, #3808), and one accepted a moment
//! before the signal is such a connection. Its client gets a reset, in a reload under load
//! about one run in four. So [`on_shutdown`] stops accepting first, waits until every
//! connection accepted so far has sent its first bytes (at most [`FIRST_BYTES_GRACE`]),
//! and only then lets axum shut down gracefully:
//!
//! ```ignore
//! let (listener, stopped) = drain::on_shutdown(listener);
//! axum::serve(listener, app).with_graceful_shutdown(stopped).await
//! ```

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::serve::Listener;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;

/// Longest wait for a connection accepted before the stop signal to send its request. A
/// client that connected sends it within a round trip; a browser's preconnect may never
/// send anything, and must not hold the worker until herd's kill timeout.
pub const FIRST_BYTES_GRACE: Duration = Duration::from_secs(1);

/// `listener`, which stops accepting at herd's stop signal, and the future to give to
/// `with_graceful_shutdown`: it resolves once every accepted connection sent its request.
pub fn on_shutdown<L: Listener>(listener: L) -> (Drain<L>, impl Future<Output = ()> + Send) {
    let (stopping, stopping_rx) = watch::channel(false);
    let (unread, mut unread_rx) = watch::channel(0usize);
    let stopped = async move {
        herd::worker::tokio::shutdown().await;
        stopping.send_replace(true);
        let _ = tokio::time::timeout(FIRST_BYTES_GRACE, unread_rx.wait_for(|n| *n == 0)).await;
    };
    let drain = Drain {
        inner: listener,
        stopping: stopping_rx,
        unread,
    };
    (drain, stopped)
}

/// A listener that accepts nothing once herd asked the worker to stop, and counts the
/// accepted connections that have not sent anything yet.
pub struct Drain<L> {
    inner: L,
    stopping: watch::Receiver<bool>,
    unread: watch::Sender<usize>,
}

impl<L: Listener> Listener for Drain<L> {
    type Io = FirstBytes<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let mut stopping = self.stopping.clone();
        let accepted = tokio::select! {
            // Checked first: once stopping, not one more connection.
            biased;
            _ = stopping.wait_for(|s| *s) => None,
            accepted = self.inner.accept() => Some(accepted),
        };
        let Some((io, addr)) = accepted else {
            return std::future::pending().await;
        };
        self.unread.send_modify(|n| *n += 1);
        let unread = Some(Unread(self.unread.clone()));
        (FirstBytes { io, unread }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Counts one connection as unread until dropped.
struct Unread(watch::Sender<usize>);

impl Drop for Unread {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// An accepted connection, counted as unread until its first bytes are read.
pub struct FirstBytes<Io> {
    io: Io,
    unread: Option<Unread>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for FirstBytes<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        // hyper parses what it read before its task yields, so once the count reaches zero
        // every request that had arrived is in progress, and a graceful shutdown keeps it.
        if matches!(polled, Poll::Ready(_)) && buf.filled().len() > before {
            self.unread = None;
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for FirstBytes<Io> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
