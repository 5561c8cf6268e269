//! Why a socket could not be set up, in words a user can act on: every message names the
//! address and, where the cause is known, what to do about it.

use std::io;
use std::path::PathBuf;

use super::ListenAddr;

/// A listening socket could not be created, bound, or steered.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Another socket is already bound to the address.
    #[error("cannot listen on {addr}: address already in use (another process is serving it)")]
    InUse {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// The same address was given twice.
    #[error("cannot listen on {addr}: the address is listed twice")]
    Duplicate {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// The OS refused the bind: a privileged port, or a folder this user cannot write to.
    #[error("cannot listen on {addr}: permission denied ({})", permission_hint(.addr))]
    PermissionDenied {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// The IP address belongs to no interface of this machine.
    #[error("cannot listen on {addr}: no interface of this machine has that IP address")]
    NotAvailable {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// The folder of a unix socket path does not exist.
    #[error("cannot listen on {addr}: folder {} does not exist", .folder.display())]
    NoFolder {
        /// The address herd tried to listen on.
        addr: ListenAddr,
        /// The missing folder.
        folder: PathBuf,
    },

    /// A unix socket path is in use by a server that accepts connections.
    #[error("cannot listen on {addr}: a live server is already listening on it")]
    LiveUnixSocket {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// A unix socket path names an existing file that is not a socket (never removed).
    #[error(
        "cannot listen on {addr}: the path exists and is not a socket (remove it or choose another path)"
    )]
    NotASocket {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// A unix socket path is longer than `sockaddr_un` can hold.
    #[error(
        "cannot listen on {addr}: the path is too long for a unix socket (at most {max} bytes)",
        max = super::bind::UNIX_PATH_MAX
    )]
    PathTooLong {
        /// The address herd tried to listen on.
        addr: ListenAddr,
    },

    /// herd was started with sockets (socket activation) and none of them is this address.
    #[error("cannot listen on {addr}: none of the sockets herd was started with (LISTEN_FDS) is on this address: {inherited}")]
    NotInherited {
        /// The address of the app.
        addr: ListenAddr,
        /// Every inherited socket: `fd 3 = 127.0.0.1:3000 (`web`)`.
        inherited: String,
    },

    /// Any other I/O error while creating, binding or listening.
    #[error("cannot listen on {addr}: {source}")]
    Io {
        /// The address herd tried to listen on.
        addr: ListenAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },

    /// The reuseport steering program, which sends new connections to ready slots only,
    /// could not be attached or detached.
    #[error("cannot steer connections on {addr} to ready workers: {source}")]
    Steer {
        /// The address whose sockets were to be steered.
        addr: ListenAddr,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

fn permission_hint(addr: &ListenAddr) -> String {
    match addr {
        ListenAddr::Tcp(_) => "ports below 1024 need root or CAP_NET_BIND_SERVICE".to_string(),
        ListenAddr::Unix(path) => match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(folder) => format!("this user cannot create files in {}", folder.display()),
            None => "this user cannot create files in the current folder".to_string(),
        },
    }
}

impl ListenError {
    /// Turns the error of a bind/listen on `addr` into the variant that explains it.
    pub(crate) fn from_bind(addr: &ListenAddr, source: io::Error) -> Self {
        let addr = addr.clone();
        match source.kind() {
            io::ErrorKind::AddrInUse => ListenError::InUse { addr },
            io::ErrorKind::PermissionDenied => ListenError::PermissionDenied { addr },
            io::ErrorKind::AddrNotAvailable => ListenError::NotAvailable { addr },
            _ => ListenError::Io { addr, source },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_address_and_the_fix() {
        let tcp = ListenAddr::any_port(80);
        assert_eq!(
            ListenError::from_bind(&tcp, io::Error::from(io::ErrorKind::PermissionDenied))
                .to_string(),
            "cannot listen on 0.0.0.0:80: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        );
        assert_eq!(
            ListenError::from_bind(
                &ListenAddr::any_port(3000),
                io::Error::from(io::ErrorKind::AddrInUse)
            )
            .to_string(),
            "cannot listen on 0.0.0.0:3000: address already in use (another process is serving it)"
        );
        let unix = ListenAddr::Unix("/root/app.sock".into());
        assert_eq!(
            ListenError::PermissionDenied { addr: unix }.to_string(),
            "cannot listen on unix:/root/app.sock: permission denied (this user cannot create files in /root)"
        );
        let missing = ListenError::NoFolder {
            addr: ListenAddr::Unix("/nope/app.sock".into()),
            folder: "/nope".into(),
        };
        assert_eq!(
            missing.to_string(),
            "cannot listen on unix:/nope/app.sock: folder /nope does not exist"
        );
    }
}
