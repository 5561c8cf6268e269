//! Private ports for proxied workers.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// The range private ports come from when the kernel's ephemeral range cannot be read:
/// below Linux's default ephemeral range (32768–60999).
const DEFAULT_RANGE: (u16, u16) = (20000, 32767);
/// Lowest private port: above the registered ports most services use.
const LOWEST: u16 = 10000;

/// The next candidate, as an offset into the range; starts at a point that differs per herd
/// process, so two herds on one machine do not probe the same ports in the same order.
static CURSOR: AtomicU32 = AtomicU32::new(u32::MAX);

/// A TCP port that is free now on every address, for a worker to listen on.
///
/// Two things make a port handed out this way fail the worker's `bind`, both seen under
/// load: the port is in the kernel's ephemeral range, where the next outgoing connection
/// of any client on the machine may take it as its source port (a worker binding the
/// wildcard address then gets EADDRINUSE); or it is handed out again before the first
/// worker has bound it. So ports come from below the ephemeral range
/// (`net.ipv4.ip_local_port_range`), in turn (a port is not handed out again before the
/// whole range has been), and each is checked by binding the wildcard addresses, as a
/// worker that listens on `PORT` alone does.
///
/// A race with an unrelated process remains; it is loud and recoverable: the worker fails
/// to bind and exits, and the supervisor restarts it with another port.
pub fn free_port() -> io::Result<u16> {
    let (low, high) = private_range();
    let size = u32::from(high - low) + 1;
    let _ = CURSOR.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(2_654_435_761) % size,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let mut last_err = None;
    for _ in 0..size.min(512) {
        let offset = CURSOR.fetch_add(1, Ordering::Relaxed) % size;
        let port = low + offset as u16;
        match bindable(port) {
            Ok(()) => return Ok(port),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| io::Error::other("no free port")))
}

/// The ports below the ephemeral range, or [`DEFAULT_RANGE`].
fn private_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok());
    match ephemeral_low {
        Some(l) if l > LOWEST + 1000 => (LOWEST, l - 1),
        _ => DEFAULT_RANGE,
    }
}

/// Whether a listener could bind `port` on the wildcard address: `[::]`, which on Linux is
/// dual-stack and so conflicts with any IPv4 or IPv6 use of the port (what Node's
/// `listen(PORT)` binds), or `0.0.0.0` on a host without IPv6.
fn bindable(port: u16) -> io::Result<()> {
    match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)) {
        Ok(_) => Ok(()),
        Err(e)
            if e.kind() == io::ErrorKind::AddrNotAvailable
                || e.raw_os_error() == Some(libc::EAFNOSUPPORT) =>
        {
            TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).map(drop)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_outside_the_ephemeral_range_and_not_repeated() {
        let (low, high) = private_range();
        let a = free_port().expect("free port");
        let b = free_port().expect("free port");
        assert!((low..=high).contains(&a), "{a} not in {low}..={high}");
        assert_ne!(a, b, "a port handed out twice in a row");
        // Free means a worker can take it on the wildcard address right away.
        TcpListener::bind((Ipv4Addr::UNSPECIFIED, a)).expect("port should be bindable");
    }
}
