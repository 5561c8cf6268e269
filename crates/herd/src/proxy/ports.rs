//! Private loopback ports for proxied workers.

use std::io;
use std::net::{Ipv4Addr, TcpListener};

/// A TCP port that is free on 127.0.0.1 at the time of the call.
///
/// The kernel picks it (bind to port 0), then the socket is closed again.
///
/// This is racy: between this call and the worker's own `bind`, another process may take
/// the port. That is acceptable because the window is short, the kernel hands out
/// ephemeral ports in a rotating order (a port just returned is not the next one given to
/// someone else's `bind(0)` or `connect`), and the failure is loud and recoverable: the
/// worker fails to bind and exits, or never starts listening, and the supervisor restarts
/// it with a fresh port. Holding the port open and passing it down would close the race,
/// but that is exactly the inherited-fd mechanism these workers do not understand.
pub fn free_loopback_port() -> io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_is_nonzero_and_bindable() {
        let port = free_loopback_port().expect("free port");
        assert_ne!(port, 0);
        // Free means we can take it ourselves right away.
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("port should be bindable");
    }
}
