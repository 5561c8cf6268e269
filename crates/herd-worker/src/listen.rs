//! The listening sockets: adopted from herd (systemd's socket activation: fds from 3,
//! `LISTEN_FDS`, `LISTEN_PID`, `LISTEN_FDNAMES`), or bound from `PORT` when the program
//! runs on its own, so one binary serves both ways.
//!
//! The variables are left in the environment (sd_listen_fds' `unset_environment` is not
//! copied): removing variables is unsound while other threads may read the environment,
//! and it is not needed: the fds are made close-on-exec, and a program this worker starts
//! sees a `LISTEN_PID` that is not its own and so adopts nothing.
//!
//! ```no_run
//! for listener in herd_worker::listeners()? {
//!     println!("serving {} ({:?})", listener.name(), listener.local_addr());
//! }
//! # Ok::<(), herd_worker::Error>(())
//! ```

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::env::{self, ListenEnv};
use crate::sys::{self, Family};
use crate::Error;

/// The first inherited fd (0, 1, 2 are stdio).
pub const FIRST_FD: i32 = 3;

/// One listening socket and its name.
#[derive(Debug)]
pub struct Listener {
    name: String,
    socket: Socket,
}

/// A listening socket: TCP or unix.
#[derive(Debug)]
pub enum Socket {
    /// A TCP socket (IPv4 or IPv6).
    Tcp(TcpListener),
    /// A unix stream socket.
    Unix(UnixListener),
}

impl Listener {
    /// The name herd gave it (`tcp-3000`, `unix-app.sock`; `unknown` when the launcher
    /// gave none; standalone: `tcp-<PORT>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The socket.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// The socket, by value.
    pub fn into_socket(self) -> Socket {
        self.socket
    }

    /// The TCP socket, if it is one.
    pub fn into_tcp(self) -> Option<TcpListener> {
        match self.socket {
            Socket::Tcp(t) => Some(t),
            Socket::Unix(_) => None,
        }
    }

    /// The address, as text (`0.0.0.0:3000`, `/run/app.sock`).
    pub fn local_addr(&self) -> String {
        match &self.socket {
            Socket::Tcp(t) => t
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|e| e.to_string()),
            Socket::Unix(u) => match u.local_addr() {
                Ok(a) => a
                    .as_pathname()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "(unnamed)".to_string()),
                Err(e) => e.to_string(),
            },
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Socket::Tcp(t) => t.as_fd(),
            Socket::Unix(u) => u.as_fd(),
        }
    }
}

/// Set by the first [`listeners()`] call that adopted fds: each fd has one owner.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The sockets to serve.
///
/// Under herd: the inherited fds from 3, after checking that `LISTEN_PID` is this process
/// ([`Error::StaleListenPid`] otherwise) and that each is a listening stream socket
/// ([`Error::NotAListener`] naming the fd); each is made close-on-exec. Only the first call
/// adopts them ([`Error::AlreadyTaken`] after).
///
/// Standalone (no `LISTEN_FDS`): one TCP socket bound to `0.0.0.0:$PORT`, where `PORT`
/// defaults to [`DEFAULT_PORT`](crate::DEFAULT_PORT) (3000). A herd worker gets no
/// sockets in two cases: with `--proxy` its `PORT` is a private port to bind (done as
/// above); in the handoff modes (`HERD_TRANSPORT=handoff`; an older herd that does not
/// say so is recognised by `PORT` being taken, by herd itself) the answer is an empty
/// list: the connections come from [`connections()`](crate::connections).
pub fn listeners() -> Result<Vec<Listener>, Error> {
    let pid = std::process::id();
    match env::listen_env(env::real, pid)? {
        Some(listen) => adopt_all(&listen),
        // herd says the connections come on the channel: nothing to bind.
        None if std::env::var("HERD_TRANSPORT").as_deref() == Ok("handoff") => Ok(Vec::new()),
        None => {
            let port = env::port(env::real)?;
            match bind_standalone(port) {
                // A herd worker without inherited sockets whose PORT is taken: herd holds
                // that port itself and hands connections over (`--balance round-robin`,
                // `least-conn`, `sticky`): they come from `connections()`.
                Err(Error::Bind { source, .. })
                    if crate::is_worker() && source.kind() == std::io::ErrorKind::AddrInUse =>
                {
                    Ok(Vec::new())
                }
                bound => Ok(vec![bound?]),
            }
        }
    }
}

fn adopt_all(listen: &ListenEnv) -> Result<Vec<Listener>, Error> {
    // Check every fd before adopting any, so an error leaves nothing half-owned.
    let mut families = Vec::with_capacity(listen.count);
    for i in 0..listen.count {
        let fd = FIRST_FD + i as i32;
        let family = sys::stream_socket(fd, true).map_err(|why| Error::NotAListener { fd, why })?;
        families.push(family);
    }
    if TAKEN.swap(true, Ordering::SeqCst) {
        return Err(Error::AlreadyTaken);
    }
    let mut out = Vec::with_capacity(listen.count);
    for (i, (family, name)) in families.into_iter().zip(&listen.names).enumerate() {
        let fd = FIRST_FD + i as i32;
        sys::set_cloexec(fd).map_err(Error::io("FD_CLOEXEC on an inherited socket"))?;
        // SAFETY: the contract hands fds 3..3+LISTEN_FDS to this process (LISTEN_PID was
        // checked), each was just checked to be an open socket, and TAKEN makes this the
        // only adoption.
        let owned: OwnedFd = unsafe { sys::adopt(fd) };
        let socket = match family {
            Family::Inet => Socket::Tcp(TcpListener::from(owned)),
            Family::Unix => Socket::Unix(UnixListener::from(owned)),
        };
        // herd's sockets block in accept, as std expects; a launcher may have passed
        // nonblocking ones.
        let blocking = match &socket {
            Socket::Tcp(t) => t.set_nonblocking(false),
            Socket::Unix(u) => u.set_nonblocking(false),
        };
        blocking.map_err(Error::io("O_NONBLOCK off on an inherited socket"))?;
        out.push(Listener {
            name: name.clone(),
            socket,
        });
    }
    Ok(out)
}

fn bind_standalone(port: u16) -> Result<Listener, Error> {
    let addr = SocketAddr::from(([0, 0, 0, 0], port));
    let tcp = TcpListener::bind(addr).map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let port = tcp.local_addr().map(|a| a.port()).unwrap_or(port);
    Ok(Listener {
        name: format!("tcp-{port}"),
        socket: Socket::Tcp(tcp),
    })
}

impl AsRawFd for Listener {
    fn as_raw_fd(&self) -> i32 {
        self.socket.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;

    #[test]
    fn the_checks_name_what_an_fd_is() {
        let listening = TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            sys::stream_socket(listening.as_raw_fd(), true),
            Ok(Family::Inet)
        );
        let conn = TcpStream::connect(listening.local_addr().unwrap()).unwrap();
        let why = sys::stream_socket(conn.as_raw_fd(), true).unwrap_err();
        assert!(why.contains("not listening"), "{why}");
        let file = std::fs::File::open("/dev/null").unwrap();
        let why = sys::stream_socket(file.as_raw_fd(), true).unwrap_err();
        assert_eq!(why, "not a socket");
        let dir = std::env::temp_dir().join(format!("herd-worker-unit-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let unix = UnixListener::bind(&dir).unwrap();
        assert_eq!(sys::stream_socket(unix.as_raw_fd(), true), Ok(Family::Unix));
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn standalone_binds_the_port_and_names_it() {
        let l = bind_standalone(0).unwrap();
        assert!(l.name().starts_with("tcp-"));
        assert!(l.name() != "tcp-0");
        assert!(l.local_addr().starts_with("0.0.0.0:"));
    }
}
