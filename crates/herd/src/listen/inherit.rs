//! Sockets handed to herd itself by socket activation (systemd's `.socket` units,
//! `systemd-socket-activate`, or any launcher of the same protocol): `LISTEN_PID` must be
//! herd's own pid, `LISTEN_FDS` says how many fds from 3 are herd's, `LISTEN_FDNAMES` names
//! them, read as libsystemd's `sd_listen_fds_with_names` reads them. Each fd is checked to be
//! a listening stream socket, TCP or unix with a path, and described by its local address;
//! [`super::Listeners::adopt`] matches them with the app's addresses.
//!
//! The variables are not removed from herd's environment, as `sd_listen_fds(1)` would:
//! `std::env::remove_var` races with any thread that reads the environment (an embedding
//! program's, under `herd::Cluster`), and nothing needs it: the spawner builds every worker's
//! environment without herd's own LISTEN_* (`driver::spawn`), and gives each worker its own.

use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, RawFd};

use socket2::{Domain, Protocol, Socket, Type};

use super::ListenAddr;

/// The first inherited fd (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Most sockets herd takes: a worker gets every listening socket plus its channel, and the
/// spawner places at most 64 fds (`driver::spawn`).
const MAX_SOCKETS: usize = 63;

/// The sockets herd inherited, in fd order.
#[derive(Debug)]
pub struct Inherited {
    pub(super) sockets: Vec<InheritedSocket>,
}

/// One inherited listening socket.
#[derive(Debug)]
pub(super) struct InheritedSocket {
    /// Its number in herd (3, 4, …), for messages.
    pub fd: RawFd,
    pub socket: Socket,
    /// What it is bound to: `getsockname`.
    pub local: ListenAddr,
    /// Its LISTEN_FDNAMES entry, if the launcher named it.
    pub name: Option<String>,
    /// SO_REUSEPORT is set on it.
    pub reuseport: bool,
    /// It was created by herd's effective user: only then may herd add SO_REUSEPORT sockets
    /// to its group (the kernel requires the same owner).
    pub same_owner: bool,
}

impl fmt::Display for InheritedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "fd {} = {}", self.fd, self.local)?;
        if let Some(name) = &self.name {
            write!(f, " (`{name}`)")?;
        }
        Ok(())
    }
}

/// Socket activation that cannot be used: every message names the variable or fd and value.
#[derive(Debug, thiserror::Error)]
pub enum InheritError {
    /// LISTEN_FDS is not a positive count.
    #[error("socket activation: LISTEN_FDS=`{0}` is not a number of sockets (1 or more)")]
    Count(String),

    /// More sockets than a worker can be given.
    #[error("socket activation: LISTEN_FDS={0}: herd takes at most {MAX_SOCKETS} sockets")]
    TooMany(usize),

    /// LISTEN_PID is not a process id.
    #[error("socket activation: LISTEN_PID=`{0}` is not a process id")]
    Pid(String),

    /// LISTEN_FDNAMES names another number of fds.
    #[error("socket activation: LISTEN_FDNAMES=`{names}` names {got} sockets, LISTEN_FDS={count}")]
    Names {
        /// The variable's value.
        names: String,
        /// How many names it has.
        got: usize,
        /// LISTEN_FDS.
        count: usize,
    },

    /// One of the fds is not open.
    #[error("socket activation: fd {fd} of LISTEN_FDS={count} is not open")]
    NotOpen {
        /// The fd.
        fd: RawFd,
        /// LISTEN_FDS.
        count: usize,
    },

    /// One of the fds is something else than a socket.
    #[error("socket activation: fd {fd} of LISTEN_FDS={count} is {what}, not a socket")]
    NotASocket {
        /// The fd.
        fd: RawFd,
        /// LISTEN_FDS.
        count: usize,
        /// What it is: `/dev/null (a character device)`.
        what: String,
    },

    /// A socket herd cannot accept stream connections on.
    #[error(
        "socket activation: fd {fd} of LISTEN_FDS={count} is not a listening stream socket: {why}"
    )]
    NotListening {
        /// The fd.
        fd: RawFd,
        /// LISTEN_FDS.
        count: usize,
        /// What it is instead.
        why: String,
    },

    /// A system call on an inherited fd failed.
    #[error("socket activation: fd {fd}: {source}")]
    Io {
        /// The fd.
        fd: RawFd,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// What the environment offers herd.
#[derive(Debug, PartialEq, Eq)]
enum Offer {
    /// No sockets, and why (for the debug log): not for this process, or no variables.
    Nothing(String),
    /// `count` fds from 3, with their names (each `None` when LISTEN_FDNAMES is unset).
    Fds {
        count: usize,
        names: Vec<Option<String>>,
    },
}

/// Reads the three variables as `sd_listen_fds_with_names` does: no LISTEN_PID, or one that is
/// another process's, means the sockets are not ours (a launcher's variables inherited by
/// mistake); anything malformed is an error.
fn offer(
    fds: Option<&str>,
    pid: Option<&str>,
    names: Option<&str>,
    own_pid: u32,
) -> Result<Offer, InheritError> {
    let Some(pid) = pid else {
        return Ok(Offer::Nothing(match fds {
            Some(fds) => format!("LISTEN_FDS={fds} without LISTEN_PID: not for herd, ignored"),
            None => "no LISTEN_PID".to_string(),
        }));
    };
    let pid_value: u32 = pid
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| InheritError::Pid(pid.to_string()))?;
    if pid_value != own_pid {
        return Ok(Offer::Nothing(format!(
            "LISTEN_PID={pid_value} is not herd's pid ({own_pid}): LISTEN_FDS is for another process, ignored"
        )));
    }
    let Some(fds) = fds else {
        return Ok(Offer::Nothing(
            "LISTEN_PID without LISTEN_FDS: no sockets".to_string(),
        ));
    };
    let count: usize = fds
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| InheritError::Count(fds.to_string()))?;
    if count > MAX_SOCKETS {
        return Err(InheritError::TooMany(count));
    }
    let names = match names {
        None => vec![None; count],
        Some(all) => {
            let split: Vec<Option<String>> = all
                .split(':')
                .map(|n| Some(n.to_string()).filter(|n| !n.is_empty()))
                .collect();
            if split.len() != count {
                return Err(InheritError::Names {
                    names: all.to_string(),
                    got: split.len(),
                    count,
                });
            }
            split
        }
    };
    Ok(Offer::Fds { count, names })
}

impl Inherited {
    /// The sockets of socket activation, if herd was started with it (LISTEN_PID = herd's
    /// pid). Takes ownership of fds 3.. and makes them close-on-exec: a worker gets exactly the
    /// fds the spawner places for it. Call once, before anything else opens a file.
    pub fn from_env() -> Result<Option<Inherited>, InheritError> {
        let var = |k: &str| std::env::var(k).ok();
        let offer = offer(
            var("LISTEN_FDS").as_deref(),
            var("LISTEN_PID").as_deref(),
            var("LISTEN_FDNAMES").as_deref(),
            std::process::id(),
        )?;
        let (count, names) = match offer {
            Offer::Nothing(why) => {
                tracing::debug!("no socket activation: {why}");
                return Ok(None);
            }
            Offer::Fds { count, names } => (count, names),
        };
        let mut sockets = Vec::with_capacity(count);
        for (i, name) in names.into_iter().enumerate() {
            sockets.push(take(FIRST_FD + i as RawFd, count, name)?);
        }
        Ok(Some(Inherited { sockets }))
    }

    /// Whether socket activation offers herd sockets (without checking them): the library's
    /// `Cluster` then does not listen on its default port.
    pub fn offered() -> bool {
        let var = |k: &str| std::env::var(k).ok();
        matches!(
            offer(
                var("LISTEN_FDS").as_deref(),
                var("LISTEN_PID").as_deref(),
                var("LISTEN_FDNAMES").as_deref(),
                std::process::id(),
            ),
            Ok(Offer::Fds { .. })
        )
    }

    /// Every inherited socket, for messages: `fd 3 = 127.0.0.1:3000 (`web`), fd 4 = …`.
    pub(super) fn list(&self) -> String {
        let all: Vec<String> = self.sockets.iter().map(|s| s.to_string()).collect();
        all.join(", ")
    }
}

/// Checks fd `fd` and takes it (`count`: LISTEN_FDS, for messages).
pub(super) fn take(
    fd: RawFd,
    count: usize,
    name: Option<String>,
) -> Result<InheritedSocket, InheritError> {
    let stat = match nix::sys::stat::fstat(fd) {
        Ok(stat) => stat,
        Err(nix::errno::Errno::EBADF) => return Err(InheritError::NotOpen { fd, count }),
        Err(e) => {
            return Err(InheritError::Io {
                fd,
                source: e.into(),
            })
        }
    };
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(InheritError::NotASocket {
            fd,
            count,
            what: file_kind(fd, stat.st_mode),
        });
    }
    // SAFETY: `fd` is open and a socket (fstat above), and by the socket-activation protocol
    // (LISTEN_PID is this process) it is herd's to own: nothing else in herd refers to it.
    // From here the socket closes it when dropped.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let io = |source| InheritError::Io { fd, source };
    let not_listening = |why: &str| InheritError::NotListening {
        fd,
        count,
        why: why.to_string(),
    };
    // As sd_listen_fds does: herd's workers get the fds the spawner places, no others.
    socket.set_cloexec(true).map_err(io)?;
    let kind = socket.r#type().map_err(io)?;
    if kind != Type::STREAM {
        let what = if kind == Type::DGRAM {
            "a datagram socket"
        } else if kind == Type::SEQPACKET {
            "a SOCK_SEQPACKET socket"
        } else {
            "not a SOCK_STREAM socket"
        };
        return Err(not_listening(what));
    }
    if !socket.is_listener().map_err(io)? {
        return Err(not_listening(
            "a stream socket that does not listen (a connection, or listen() was never called)",
        ));
    }
    let domain = socket.domain().map_err(io)?;
    let addr = socket.local_addr().map_err(io)?;
    let local = if domain == Domain::IPV4 || domain == Domain::IPV6 {
        if socket
            .protocol()
            .map_err(io)?
            .is_some_and(|p| p != Protocol::TCP)
        {
            return Err(not_listening("an IP stream socket that is not TCP"));
        }
        match addr.as_socket() {
            Some(a) => ListenAddr::Tcp(a),
            None => return Err(not_listening("an IP socket without an IP address")),
        }
    } else if domain == Domain::UNIX {
        match addr.as_pathname() {
            Some(path) => ListenAddr::Unix(path.to_path_buf()),
            None => {
                return Err(not_listening(
                    "a unix socket without a path (abstract or unnamed): herd serves unix sockets with a path",
                ))
            }
        }
    } else {
        return Err(not_listening(&format!(
            "a socket of family {domain:?}: herd serves TCP and unix sockets"
        )));
    };
    let reuseport = matches!(local, ListenAddr::Tcp(_)) && socket.reuse_port().map_err(io)?;
    // A socket is blocking when herd binds it, and the workers choose their own mode (see
    // `bind`); systemd creates its sockets nonblocking. The mode belongs to the open socket,
    // shared with the launcher, which only polls it while herd is not running.
    socket.set_nonblocking(false).map_err(io)?;
    Ok(InheritedSocket {
        fd,
        socket,
        local,
        name,
        reuseport,
        same_owner: stat.st_uid == nix::unistd::geteuid().as_raw(),
    })
}

/// What a non-socket fd is, for the message: `/dev/null (a character device)`.
fn file_kind(fd: RawFd, mode: libc::mode_t) -> String {
    let kind = match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a pipe",
        _ => "a file",
    };
    match std::fs::read_link(format!("/proc/self/fd/{fd}")) {
        Ok(path) => format!("{} ({kind})", path.display()),
        Err(_) => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(count: usize, names: &[Option<&str>]) -> Offer {
        Offer::Fds {
            count,
            names: names.iter().map(|n| n.map(str::to_string)).collect(),
        }
    }

    #[test]
    fn sockets_are_ours_only_with_our_pid() {
        assert_eq!(
            offer(Some("2"), Some("42"), None, 42).unwrap(),
            fds(2, &[None, None])
        );
        assert_eq!(
            offer(Some("2"), Some("42"), Some("web:unix-app.sock"), 42).unwrap(),
            fds(2, &[Some("web"), Some("unix-app.sock")])
        );
        // Another process's, or no LISTEN_PID: ignored, as sd_listen_fds does.
        for (fds, pid) in [(Some("1"), Some("41")), (Some("1"), None), (None, None)] {
            assert!(matches!(
                offer(fds, pid, None, 42).unwrap(),
                Offer::Nothing(_)
            ));
        }
        assert!(matches!(
            offer(None, Some("42"), None, 42).unwrap(),
            Offer::Nothing(_)
        ));
    }

    #[test]
    fn malformed_variables_are_errors_naming_the_value() {
        let err = |fds, pid, names| offer(fds, pid, names, 42).unwrap_err().to_string();
        assert_eq!(
            err(Some("two"), Some("42"), None),
            "socket activation: LISTEN_FDS=`two` is not a number of sockets (1 or more)"
        );
        assert!(err(Some("0"), Some("42"), None).contains("LISTEN_FDS=`0`"));
        assert!(err(Some("-1"), Some("42"), None).contains("LISTEN_FDS=`-1`"));
        assert_eq!(
            err(Some("1"), Some("me"), None),
            "socket activation: LISTEN_PID=`me` is not a process id"
        );
        assert_eq!(
            err(Some("2"), Some("42"), Some("web")),
            "socket activation: LISTEN_FDNAMES=`web` names 1 sockets, LISTEN_FDS=2"
        );
        assert!(err(Some("1000"), Some("42"), None).contains("at most 63"));
    }
}
