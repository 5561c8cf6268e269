//! Creating one listening socket: TCP (plain or SO_REUSEPORT) or unix, with the checks that
//! turn a raw errno into an explained [`ListenError`]. Knows nothing of slots or workers.
//!
//! Every socket is CLOEXEC (socket2 creates them so): a worker gets exactly the fds the driver
//! places at 3.. for it, never the other slots' sockets. They stay blocking, as socket2 creates
//! them: the mode is shared by every process holding the fd, so the workers choose their own.

use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{ListenAddr, ListenError};

/// Listen backlog of every socket. Connections queue here while no worker accepts, notably
/// while a reuseport slot's worker is being replaced (its socket outlives it): 1024 absorbs a
/// second of a busy server's new connections. The kernel silently caps it at
/// `net.core.somaxconn` (4096 by default since Linux 5.4), so asking more buys nothing.
pub const BACKLOG: i32 = 1024;

/// Longest unix socket path: `sun_path` is 108 bytes including the terminating NUL.
pub const UNIX_PATH_MAX: usize = 107;

/// A TCP socket bound to `addr` and listening. With `reuseport`, other reuseport sockets of
/// this user may bind the same address and the kernel spreads connections across them.
pub(super) fn tcp(addr: SocketAddr, reuseport: bool) -> Result<Socket, ListenError> {
    let socket = tcp_unbound(addr, reuseport)?;
    tcp_listen(&socket, addr)?;
    Ok(socket)
}

/// The socket of [`tcp`], not bound yet.
pub(super) fn tcp_unbound(addr: SocketAddr, reuseport: bool) -> Result<Socket, ListenError> {
    let io_err = |source| ListenError::Io {
        addr: ListenAddr::Tcp(addr),
        source,
    };
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
        .map_err(io_err)?;
    // Rebinding must not wait for the TIME_WAIT connections of a previous herd to expire.
    socket.set_reuse_address(true).map_err(io_err)?;
    if reuseport {
        socket.set_reuse_port(true).map_err(io_err)?;
    }
    Ok(socket)
}

/// Binds a socket of [`tcp_unbound`] to `addr` and listens.
pub(super) fn tcp_listen(socket: &Socket, addr: SocketAddr) -> Result<(), ListenError> {
    let named = ListenAddr::Tcp(addr);
    socket
        .bind(&addr.into())
        .map_err(|e| ListenError::from_bind(&named, e))?;
    socket
        .listen(BACKLOG)
        .map_err(|e| ListenError::from_bind(&named, e))
}

/// Fails with [`ListenError::InUse`] if any socket is bound to `addr`, even one of another
/// process of this user that set SO_REUSEPORT too: without this probe a second herd (or an
/// nginx with `reuseport`) on the same port would silently get half of the connections.
pub(super) fn ensure_unused(addr: SocketAddr) -> Result<(), ListenError> {
    let named = ListenAddr::Tcp(addr);
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(
        |source| ListenError::Io {
            addr: named.clone(),
            source,
        },
    )?;
    // SO_REUSEADDR (without SO_REUSEPORT) ignores TIME_WAIT leftovers, not listeners.
    probe
        .set_reuse_address(true)
        .map_err(|source| ListenError::Io {
            addr: named.clone(),
            source,
        })?;
    probe
        .bind(&addr.into())
        .map_err(|e| ListenError::from_bind(&named, e))
    // Dropped unlistened: closing it leaves nothing behind (no TIME_WAIT).
}

/// The unix socket file a [`unix`] socket created; removed on drop if it is still ours.
#[derive(Debug)]
pub(super) struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // Only if the path still is the file we created: a successor that removed and rebound
        // it must keep its socket.
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// A unix stream socket bound to `path` and listening. A stale socket file (nothing accepts
/// on it: connect is refused) is removed and rebound; a live one is an error, and so is a
/// path that exists and is not a socket (never delete a user's file).
pub(super) fn unix(path: &Path) -> Result<(Socket, SocketFile), ListenError> {
    let named = ListenAddr::Unix(path.to_path_buf());
    if path.as_os_str().len() > UNIX_PATH_MAX {
        return Err(ListenError::PathTooLong { addr: named });
    }
    let io_err = |source| ListenError::Io {
        addr: named.clone(),
        source,
    };
    let sockaddr = SockAddr::unix(path).map_err(io_err)?;
    // Two tries: the second follows the removal of a stale file (or its disappearance).
    let mut tries_left = 2;
    loop {
        tries_left -= 1;
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io_err)?;
        match socket.bind(&sockaddr) {
            Ok(()) => {
                let created = std::fs::symlink_metadata(path).map_err(io_err)?;
                let file = SocketFile {
                    path: path.to_path_buf(),
                    dev: created.dev(),
                    ino: created.ino(),
                };
                socket
                    .listen(BACKLOG)
                    .map_err(|e| ListenError::from_bind(&named, e))?;
                return Ok((socket, file));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries_left > 0 => {
                remove_if_stale(path, &sockaddr, &named)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let folder = match path.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                if folder.is_dir() {
                    return Err(io_err(e));
                }
                return Err(ListenError::NoFolder {
                    addr: named,
                    folder,
                });
            }
            Err(e) => return Err(ListenError::from_bind(&named, e)),
        }
    }
}

/// `path` exists: removes it if it is a socket nobody listens on.
fn remove_if_stale(
    path: &Path,
    sockaddr: &SockAddr,
    named: &ListenAddr,
) -> Result<(), ListenError> {
    let io_err = |source| ListenError::Io {
        addr: named.clone(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ListenError::NotASocket {
                addr: named.clone(),
            })
        }
        Ok(_) => {}
        // Gone in the meantime: the caller binds again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(e)),
    }
    // Nonblocking, so a live server with a full backlog answers EAGAIN instead of hanging us.
    let client = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io_err)?;
    client.set_nonblocking(true).map_err(io_err)?;
    match client.connect(sockaddr) {
        Ok(()) => Err(ListenError::LiveUnixSocket {
            addr: named.clone(),
        }),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(ListenError::LiveUnixSocket {
            addr: named.clone(),
        }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(ListenError::from_bind(named, e)),
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(e)),
    }
}
