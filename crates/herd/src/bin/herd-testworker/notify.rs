//! sd_notify: one datagram to `$NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace), written here by hand rather than with the herd-worker SDK, so that the
//! integration tests check herd against the protocol itself.

use std::ffi::OsStr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};

/// Sends one datagram to $NOTIFY_SOCKET, if set.
pub(crate) fn sd_notify(msg: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => UnixAddr::from_abstract_name(name),
        None => UnixAddr::from_pathname(OsStr::from_bytes(bytes)),
    };
    let res = addr.and_then(|addr| UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &addr));
    if let Err(e) = res {
        eprintln!("herd-testworker: notify {path:?}: {e}");
    }
}
