//! The async side (feature `tokio`): tokio listeners, `accept().await` on handed-over
//! connections, `recv().await` on messages, and [`shutdown()`], the future to give to
//! axum's or hyper's graceful shutdown:
//!
//! ```no_run
//! # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
//! let listener = herd_worker::listeners()?.remove(0).into_tokio()?;
//! herd_worker::ready()?;
//! // axum::serve(listener.into_tcp().unwrap(), app)
//! //     .with_graceful_shutdown(herd_worker::tokio::shutdown()).await?;
//! herd_worker::tokio::shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Stop signals here go through tokio's own signal handling (which other tokio code can
//! share); do not also call [`watch_shutdown()`](crate::watch_shutdown), which installs
//! plain handlers in their place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::signal::unix::{signal, SignalKind};

use crate::channel::{Connection, Connections, OpenGuard, Stream};

/// Sends the watchdog heartbeat ([`watchdog()`](crate::watchdog)) every half of
/// [`watchdog_period()`](crate::watchdog_period) from a task on the current runtime, so a
/// runtime that stops turning (a blocked worker thread, a deadlock) stops the heartbeats and
/// herd's `--watchdog` replaces the worker. `None` (and no task) without a watchdog. Must be
/// called inside a runtime; abort the handle to stop.
pub fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let every = crate::watchdog_period()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // A failed send now is no reason to stop: the next one may get through.
            let _ = crate::watchdog();
        }
    }))
}
use crate::shutdown::{self, Reason, ASYNC_STOP};
use crate::{Error, Listener, Socket};

/// A listening socket as a tokio one.
#[derive(Debug)]
pub enum TokioSocket {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix.
    Unix(tokio::net::UnixListener),
}

impl TokioSocket {
    /// The TCP listener, if it is one (what `axum::serve` takes).
    pub fn into_tcp(self) -> Option<tokio::net::TcpListener> {
        match self {
            TokioSocket::Tcp(t) => Some(t),
            TokioSocket::Unix(_) => None,
        }
    }
}

impl Listener {
    /// The socket as a tokio listener (nonblocking). Must be called inside a runtime.
    pub fn into_tokio(self) -> io::Result<TokioSocket> {
        match self.into_socket() {
            Socket::Tcp(t) => {
                t.set_nonblocking(true)?;
                Ok(TokioSocket::Tcp(tokio::net::TcpListener::from_std(t)?))
            }
            Socket::Unix(u) => {
                u.set_nonblocking(true)?;
                Ok(TokioSocket::Unix(tokio::net::UnixListener::from_std(u)?))
            }
        }
    }
}

/// Resolves when the worker should stop: SIGTERM, SIGINT, herd's `"shutdown"` message, or
/// herd closing the channel. Made for `with_graceful_shutdown(herd_worker::tokio::shutdown())`.
pub async fn shutdown() {
    shutdown_reason().await;
}

/// Like [`shutdown()`], and says why.
pub async fn shutdown_reason() -> Reason {
    // The channel's reader reports "shutdown" and a closed channel.
    let _ = crate::channel::get();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    loop {
        let notified = ASYNC_STOP.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(r) = shutdown::current() {
            return r;
        }
        tokio::select! {
            _ = notified => {}
            Some(()) = recv_signal(&mut term) => {
                shutdown::request(Reason::Signal(libc::SIGTERM));
            }
            Some(()) = recv_signal(&mut int) => {
                shutdown::request(Reason::Signal(libc::SIGINT));
            }
        }
    }
}

async fn recv_signal(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

/// The next application message (see [`recv()`](crate::recv)), awaited.
pub async fn recv() -> Result<Option<Value>, Error> {
    let Some(ch) = crate::channel::get()? else {
        return Ok(None);
    };
    loop {
        let notified = ch.async_changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut state = ch.lock();
            if let Some(v) = state.messages.pop_front() {
                return Ok(Some(v));
            }
            if state.closed {
                return Err(Error::ChannelClosed);
            }
        }
        notified.await;
    }
}

impl Connections {
    /// The next handed-over connection as a tokio stream, awaited. `Ok(None)` outside
    /// herd; [`Error::ChannelClosed`] once herd closed the channel. Inside a runtime.
    pub async fn accept_async(&self) -> Result<Option<TokioConnection>, Error> {
        let Some(ch) = self.channel() else {
            return Ok(None);
        };
        loop {
            let notified = ch.async_changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let fd = {
                let mut state = ch.lock();
                match state.connections.pop_front() {
                    Some(fd) => Some(fd),
                    None if state.closed => return Err(Error::ChannelClosed),
                    None => None,
                }
            };
            match fd {
                Some(fd) => return TokioConnection::new(Connection::new(ch, fd, false)?).map(Some),
                None => notified.await,
            }
        }
    }
}

/// A handed-over connection's socket, as a tokio one.
#[derive(Debug)]
pub enum TokioStream {
    /// TCP.
    Tcp(tokio::net::TcpStream),
    /// Unix.
    Unix(tokio::net::UnixStream),
}

/// A handed-over connection for tokio: `AsyncRead + AsyncWrite`, counted as open until
/// dropped (herd's least-conn).
#[derive(Debug)]
pub struct TokioConnection {
    stream: TokioStream,
    _guard: OpenGuard,
}

impl TokioConnection {
    fn new(conn: Connection) -> Result<TokioConnection, Error> {
        let (stream, guard) = conn.parts();
        let stream = match stream {
            Stream::Tcp(t) => tokio::net::TcpStream::from_std(t).map(TokioStream::Tcp),
            Stream::Unix(u) => tokio::net::UnixStream::from_std(u).map(TokioStream::Unix),
        }
        .map_err(Error::io("registering a handed-over connection with tokio"))?;
        Ok(TokioConnection {
            stream,
            _guard: guard,
        })
    }

    /// The socket.
    pub fn stream(&self) -> &TokioStream {
        &self.stream
    }
}

impl AsyncRead for TokioConnection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            TokioStream::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            TokioStream::Unix(u) => Pin::new(u).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for TokioConnection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            TokioStream::Tcp(t) => Pin::new(t).poll_write(cx, buf),
            TokioStream::Unix(u) => Pin::new(u).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            TokioStream::Tcp(t) => Pin::new(t).poll_flush(cx),
            TokioStream::Unix(u) => Pin::new(u).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            TokioStream::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            TokioStream::Unix(u) => Pin::new(u).poll_shutdown(cx),
        }
    }
}
