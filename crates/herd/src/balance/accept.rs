//! The primary's accept loops: one task per listening socket, each accepted connection sent
//! to the driver as an fd with its peer address. The channel is bounded, so a driver that
//! falls behind leaves connections in the kernel's backlog instead of in herd's memory.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tracing::warn;

/// Connections accepted but not yet handed to a worker, across all listeners.
pub const QUEUE: usize = 1024;
/// Pause after an accept error (EMFILE, ENOBUFS…) so that a persistent one does not spin.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

/// One accepted connection on its way to a worker.
#[derive(Debug)]
pub struct Conn {
    /// Index of the listener it came in on.
    pub index: usize,
    /// The connection.
    pub fd: OwnedFd,
    /// The client's address (sticky balancing, PROXY protocol); `None` on a unix socket.
    pub peer: Option<SocketAddr>,
    /// When herd accepted it (bounds how long it may wait for a worker).
    pub since: Instant,
    /// Workers that could not take it so far (a relay whose worker refused the connect
    /// or reset the connection before answering).
    pub tries: u8,
    /// `--proxy`: what the client sent to a worker that reset the connection before it
    /// answered, to be sent to the next one first. Empty (no allocation) otherwise.
    pub replay: Vec<u8>,
}

/// Says when accepting should wait: `--proxy` holds it while relays wait for a descriptor
/// of herd's, since a new client would only take one more (polled every [`ERROR_PAUSE`]).
pub type Hold = Arc<dyn Fn() -> bool + Send + Sync>;

/// Starts an accept loop per socket; connections go to `tx`. Must run inside the runtime.
///
/// The loop waits for readiness on the listener and calls `accept4` itself: tokio's own
/// `accept` registers each connection with its reactor (an allocation, then a
/// deregistration) although herd only passes the fd on.
pub fn start(
    sockets: Vec<(usize, OwnedFd)>,
    tx: mpsc::Sender<Conn>,
    hold: Option<Hold>,
) -> std::io::Result<()> {
    for (index, socket) in sockets {
        // SAFETY: the OwnedFd owns its fd and is moved into the AsyncFd, so the fd stays
        // open and the same for the AsyncFd's whole life.
        let listener = unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }
            .map_err(std::io::Error::from)?;
        let tx = tx.clone();
        let hold = hold.clone();
        tokio::spawn(async move {
            let mut failing = Failing::default();
            loop {
                while hold.as_ref().is_some_and(|h| h()) {
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
                let Ok(mut ready) = listener.readable().await else {
                    return;
                };
                let accepted = match ready.try_io(|l| accept_nonblocking(l.get_ref().as_raw_fd())) {
                    Ok(result) => result,
                    Err(_would_block) => continue,
                };
                match accepted {
                    Ok((fd, peer)) => {
                        if let Some(n) = failing.worked(Instant::now()) {
                            warn!("accepting again; {n} more accepts had failed since the last warning");
                        }
                        let conn = Conn {
                            index,
                            fd,
                            peer,
                            since: Instant::now(),
                            tries: 0,
                            replay: Vec::new(),
                        };
                        if tx.send(conn).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        if let Some(n) = failing.failed(Instant::now()) {
                            let more = match n {
                                0 => String::new(),
                                n => format!(" ({n} more since the last warning)"),
                            };
                            warn!("accept failed: {e}{more}; new connections wait in the backlog, tried again every {} ms", ERROR_PAUSE.as_millis());
                        }
                        tokio::time::sleep(ERROR_PAUSE).await;
                    }
                }
            }
        });
    }
    Ok(())
}

/// Failed accepts (out of descriptors, of memory) are warned about at most once every
/// [`WARN_EVERY`], with the count of those in between, not once every [`ERROR_PAUSE`]
/// (20 lines a second per listener at an fd limit). Pure: the loop passes the time and
/// writes what it is told to.
#[derive(Default)]
struct Failing {
    /// When the last warning was written.
    warned: Option<Instant>,
    /// Failures since that warning.
    since: u64,
}

/// The least time between two warnings of failed accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl Failing {
    fn quiet(&self, now: Instant) -> bool {
        self.warned
            .is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY)
    }

    /// An accept failed: `Some(n)` says to warn now, with `n` failures untold before it.
    fn failed(&mut self, now: Instant) -> Option<u64> {
        if self.quiet(now) {
            self.since += 1;
            return None;
        }
        self.warned = Some(now);
        Some(std::mem::take(&mut self.since))
    }

    /// An accept worked: `Some(n)` says to tell the `n` failures untold, now that the
    /// warnings may speak again.
    fn worked(&mut self, now: Instant) -> Option<u64> {
        if self.since == 0 || self.quiet(now) {
            return None;
        }
        self.warned = None;
        Some(std::mem::take(&mut self.since))
    }
}

/// `accept4` with the new connection nonblocking and close-on-exec, and its peer address
/// (`None` for a unix socket's client).
fn accept_nonblocking(listener: RawFd) -> std::io::Result<(OwnedFd, Option<SocketAddr>)> {
    // SAFETY: accept4 writes at most `len` bytes of address into the storage socket2 hands
    // us, and sets `len`; the fd it returns is new and owned by nobody else.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener,
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(std::io::Error::last_os_error())
            } else {
                Ok(OwnedFd::from_raw_fd(fd))
            }
        })?
    };
    Ok((fd, addr.as_socket()))
}

impl super::dispatch::Incoming for Conn {
    fn listener(&self) -> usize {
        self.index
    }
    fn client(&self) -> Option<std::net::IpAddr> {
        self.peer.map(|p| p.ip())
    }
    fn since(&self) -> Instant {
        self.since
    }
    fn tries(&self) -> u8 {
        self.tries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_accepts_are_warned_once_in_ten_seconds_with_the_count_between() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut f = Failing::default();
        assert_eq!(f.failed(at(0)), Some(0));
        // Every 50 ms for a second: quiet, counted.
        for ms in (50..1000).step_by(50) {
            assert_eq!(f.failed(at(ms)), None);
        }
        // Accepting again within the 10 s: still quiet.
        assert_eq!(f.worked(at(1_000)), None);
        // After them, the failures in between are told once.
        assert_eq!(f.worked(at(10_001)), Some(19));
        assert_eq!(f.worked(at(10_002)), None);
        assert_eq!(f.failed(at(10_003)), Some(0));
    }
}
