//! Where the worker gets its listening sockets: systemd socket activation (`LISTEN_FDS`,
//! checked strictly: the tests rely on it), else a port it binds itself with
//! `SO_REUSEPORT` (the no-herd benchmark baseline). TCP and unix stream sockets alike.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    self, getsockopt, setsockopt, sockopt, AddressFamily, Backlog, SockFlag, SockType,
};

use crate::flags::Opts;

/// A listening socket the worker serves.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// An accepted connection.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        match self {
            Listener::Tcp(l) => l.as_fd(),
            Listener::Unix(l) => l.as_fd(),
        }
    }

    pub(crate) fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Listener::Tcp(l) => l.set_nonblocking(true),
            Listener::Unix(l) => l.set_nonblocking(true),
        }
    }

    pub(crate) fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept()?;
                s.set_nonblocking(false)?;
                Ok(Stream::Unix(s))
            }
        }
    }
}

impl Stream {
    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }

    pub(crate) fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).write_all(buf),
            Stream::Unix(s) => (&*s).write_all(buf),
        }
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }

    pub(crate) fn shutdown_read(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Read),
            Stream::Unix(s) => s.shutdown(Shutdown::Read),
        };
    }
}

/// Failure to get the passed sockets: message + exit code.
pub(crate) type SockError = (String, i32);

/// The systemd-style passed listeners, `None` if none were passed.
fn passed_listeners() -> Result<Option<Vec<Listener>>, SockError> {
    let Some(n) = std::env::var_os("LISTEN_FDS") else {
        return Ok(None);
    };
    let bad = |m: String| Err((m, 3));
    let n = match n.to_str().and_then(|s| s.trim().parse::<i32>().ok()) {
        Some(n) if (0..=4096).contains(&n) => n,
        _ => return bad(format!("invalid LISTEN_FDS={n:?}")),
    };
    let me = process::id();
    match std::env::var("LISTEN_PID") {
        Ok(p) if p.trim().parse::<u32>().ok() == Some(me) => {}
        Ok(p) => return bad(format!("LISTEN_PID={p} is not our pid {me}")),
        Err(_) => return bad(format!("LISTEN_FDS={n} without LISTEN_PID")),
    }
    if n == 0 {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(n as usize);
    for fd in 3..3 + n {
        // SAFETY: `fd` is a borrowed view used only for the checks below; it is
        // not closed here and outlives the borrow.
        let bfd = unsafe { BorrowedFd::borrow_raw(fd) };
        let flags = match fcntl(fd, FcntlArg::F_GETFD) {
            Ok(f) => f,
            Err(e) => return bad(format!("passed fd {fd}: {e}")),
        };
        let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
        let _ = fcntl(fd, FcntlArg::F_SETFD(flags));
        match getsockopt(&bfd, sockopt::SockType) {
            Ok(SockType::Stream) => {}
            Ok(t) => return bad(format!("passed fd {fd} is a {t:?} socket, not a stream")),
            Err(e) => return bad(format!("passed fd {fd} is not a socket: {e}")),
        }
        if let Ok(false) = getsockopt(&bfd, sockopt::AcceptConn) {
            return bad(format!("passed fd {fd} is not listening"));
        }
        // SAFETY: fd was handed to us by the parent (LISTEN_PID matched), is a
        // valid open socket (checked above) and nothing else in this process
        // owns it; each fd is taken exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        // Family detection: std's local_addr() calls getsockname and fails
        // unless the family is AF_INET/AF_INET6 (TcpListener) or AF_UNIX.
        let tcp = TcpListener::from(owned);
        if tcp.local_addr().is_ok() {
            out.push(Listener::Tcp(tcp));
            continue;
        }
        let unix = UnixListener::from(OwnedFd::from(tcp));
        if unix.local_addr().is_ok() {
            out.push(Listener::Unix(unix));
            continue;
        }
        std::mem::forget(unix); // not ours to close: report and exit
        return bad(format!("passed fd {fd} is neither a TCP nor a unix socket"));
    }
    Ok(Some(out))
}

/// Binds 0.0.0.0:port with SO_REUSEADDR + SO_REUSEPORT.
fn bind_port(port: u16) -> nix::Result<TcpListener> {
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    setsockopt(&fd, sockopt::ReuseAddr, &true)?;
    setsockopt(&fd, sockopt::ReusePort, &true)?;
    // nix's SockaddrIn needs its "net" feature, which this crate does not
    // enable: build the sockaddr_in by hand.
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::UNSPECIFIED).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a fully initialised sockaddr_in and the length passed
    // is its exact size; `fd` is an open socket we own.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    Errno::result(rc)?;
    socket::listen(&fd, Backlog::new(1024).unwrap_or(Backlog::MAXCONN))?;
    Ok(TcpListener::from(fd))
}

/// The passed sockets, else the port of `--port` or `PORT`.
pub(crate) fn get_listeners(opts: &Opts) -> Result<Vec<Listener>, SockError> {
    if let Some(ls) = passed_listeners()? {
        return Ok(ls);
    }
    let port = match opts.port {
        Some(p) => p,
        None => match std::env::var("PORT") {
            Ok(p) => p
                .trim()
                .parse()
                .map_err(|_| (format!("invalid PORT={p:?}"), 2))?,
            Err(_) => {
                return Err((
                    "no sockets: set LISTEN_FDS/LISTEN_PID, --port or PORT".into(),
                    2,
                ))
            }
        },
    };
    let l = bind_port(port).map_err(|e| (format!("bind 0.0.0.0:{port}: {e}"), 1))?;
    Ok(vec![Listener::Tcp(l)])
}
