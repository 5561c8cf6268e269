//! Connections handed over by herd: each arrives as a `NODE_HANDLE` line with the fd
//! attached, is acknowledged by the reader thread, and waits in a queue for
//! [`Connections::accept`]. A [`Connection`] counts as open until dropped; herd's
//! least-conn asks for that count (`NODE_SOCKET_GET_COUNT`).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;

use super::{Channel, ACK};
use crate::sys::{self, Family};
use crate::Error;

/// The source of handed-over connections; see [`connections()`](crate::connections).
///
/// ```no_run
/// for conn in herd_worker::connections() {
///     std::thread::spawn(move || {
///         let mut conn = conn;
///         let _ = std::io::Write::write_all(&mut conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
///     });
/// }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Connections {
    channel: Option<&'static Channel>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel").finish_non_exhaustive()
    }
}

impl Connections {
    pub(super) fn new(channel: Option<&'static Channel>) -> Connections {
        if let Some(ch) = channel {
            let mut state = ch.lock();
            if !state.accepting {
                state.accepting = true;
                // The handles that came before anyone took connections, in order.
                for _ in 0..std::mem::take(&mut state.unacked) {
                    let _ = ch.write_raw(ACK);
                }
            }
        }
        Connections { channel }
    }

    /// The next handed-over connection, waiting for one. `Ok(None)` outside herd (there
    /// will never be one); [`Error::ChannelClosed`] once herd closed the channel.
    pub fn accept(&self) -> Result<Option<Connection>, Error> {
        let Some(ch) = self.channel else {
            return Ok(None);
        };
        let mut state = ch.lock();
        loop {
            if let Some(fd) = state.connections.pop_front() {
                drop(state);
                return Connection::new(ch, fd, true).map(Some);
            }
            if state.closed {
                return Err(Error::ChannelClosed);
            }
            state = ch.wait(state);
        }
    }

    /// The channel, for the async accept.
    #[cfg(feature = "tokio")]
    pub(crate) fn channel(&self) -> Option<&'static Channel> {
        self.channel
    }
}

/// Yields connections until the channel closes; nothing outside herd. A handed-over fd
/// that is not a stream socket is closed and skipped.
impl Iterator for Connections {
    type Item = Connection;

    fn next(&mut self) -> Option<Connection> {
        loop {
            match self.accept() {
                Ok(c) => return c,
                Err(Error::NotAListener { .. }) => continue,
                Err(_) => return None,
            }
        }
    }
}

/// A handed-over connection's socket.
#[derive(Debug)]
pub enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A connection on one of herd's unix listeners.
    Unix(UnixStream),
}

/// Keeps a handed-over connection counted as open for herd's least-conn; dropping it
/// says the connection is closed. Comes from [`Connection::into_parts`].
#[derive(Debug)]
pub struct OpenGuard {
    channel: &'static Channel,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.channel.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection handed over by herd: read and write it like an accepted stream.
#[derive(Debug)]
pub struct Connection {
    stream: Stream,
    guard: OpenGuard,
}

impl Connection {
    pub(crate) fn new(
        channel: &'static Channel,
        fd: OwnedFd,
        blocking: bool,
    ) -> Result<Connection, Error> {
        let raw = fd.as_raw_fd();
        let family =
            sys::stream_socket(raw, false).map_err(|why| Error::NotAListener { fd: raw, why })?;
        let stream = match family {
            Family::Inet => Stream::Tcp(TcpStream::from(fd)),
            Family::Unix => Stream::Unix(UnixStream::from(fd)),
        };
        // herd accepts nonblocking; std's streams expect blocking ones, tokio's not.
        match &stream {
            Stream::Tcp(t) => t.set_nonblocking(!blocking),
            Stream::Unix(u) => u.set_nonblocking(!blocking),
        }
        .map_err(Error::io("setting O_NONBLOCK on a handed-over connection"))?;
        channel.open.fetch_add(1, Ordering::Relaxed);
        Ok(Connection {
            stream,
            guard: OpenGuard { channel },
        })
    }

    /// The socket and its guard, for the async conversion.
    #[cfg(feature = "tokio")]
    pub(crate) fn parts(self) -> (Stream, OpenGuard) {
        (self.stream, self.guard)
    }

    /// The socket.
    pub fn stream(&self) -> &Stream {
        &self.stream
    }

    /// The client's address (TCP only; unix clients have none).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        match &self.stream {
            Stream::Tcp(t) => t.peer_addr().ok(),
            Stream::Unix(_) => None,
        }
    }

    /// The socket and the guard that keeps it counted as open: drop the guard when the
    /// connection is closed.
    pub fn into_parts(self) -> (Stream, OpenGuard) {
        (self.stream, self.guard)
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Tcp(t) => t.read(buf),
            Stream::Unix(u) => u.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.stream {
            Stream::Tcp(t) => t.write(buf),
            Stream::Unix(u) => u.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Stream::Tcp(t) => t.as_fd(),
            Stream::Unix(u) => u.as_fd(),
        }
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}
