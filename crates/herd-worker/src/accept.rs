//! A plain blocking accept loop that ends at the stop: [`incoming()`] is
//! `listener.incoming()` that returns `None` once the worker should stop (SIGTERM, SIGINT,
//! herd's `"shutdown"`, a closed channel), so the connection in hand is served to the end
//! and nothing accepted is dropped:
//!
//! ```no_run
//! # use std::io::Write;
//! let tcp = herd_worker::listeners()?.remove(0).into_tcp().expect("a TCP listener");
//! herd_worker::ready()?;
//! for conn in herd_worker::incoming(&tcp) {
//!     let Ok(mut conn) = conn else { continue };
//!     let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n");
//! }
//! // Every connection this worker accepted was answered; the rest wait for the others.
//! # Ok::<(), herd_worker::Error>(())
//! ```
//!
//! How a thread blocked in `accept(2)` learns of the stop, and why not otherwise: the
//! listening socket is shared. During a reload the old and the new worker hold the same
//! slot socket (with `--balance shared`, every worker does), and their fds point to one
//! open file description, so `O_NONBLOCK` set by one worker (or `SO_RCVTIMEO`, a socket
//! option) would change every other worker's `accept` too: a blocking loop elsewhere would
//! start failing with `EAGAIN`. `poll(2)` on the listener plus a wake-up pipe keeps the fd
//! blocking, but two workers woken by one connection race for it, and the loser blocks in
//! `accept` where the pipe cannot reach it: an idle worker would then miss the stop until
//! herd's kill timeout. So the fd stays blocking and untouched, the loop calls `accept4`
//! itself (std's `accept` retries `EINTR`), and the stop interrupts the threads waiting in
//! it: each registers itself for the duration of the call, and the stop sends them
//! [`WAKE_SIGNAL`] (a handler that does nothing, installed without `SA_RESTART`, so their
//! `accept4` fails with `EINTR`) until none is left. A thread that registered and then saw
//! the stop never calls `accept4`; one that was about to call it when the signal came gets
//! the signal again a moment later, so no interleaving leaves one waiting.

use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Mutex, Once};
use std::time::Duration;

use crate::sys;

/// The signal that interrupts a thread waiting in [`incoming()`]'s `accept`: `SIGURG`, which
/// by default is ignored and which nothing sends a process that did not ask for it (Go's
/// runtime uses it the same way). Its handler does nothing; it is installed by the first
/// [`incoming()`], replacing any the program had.
pub const WAKE_SIGNAL: i32 = libc::SIGURG;

/// How often the stop repeats [`WAKE_SIGNAL`] to a thread still waiting: one that was
/// between its last check and `accept4` when the first signal came.
const WAKE_AGAIN: Duration = Duration::from_millis(5);

/// The longest the stop keeps waking a thread that does not leave `accept` (one that blocks
/// [`WAKE_SIGNAL`] in its signal mask): herd's kill timeout ends such a worker anyway.
const WAKE_FOR: Duration = Duration::from_secs(10);

/// A listening socket [`incoming()`] accepts on: [`TcpListener`] or [`UnixListener`].
pub trait Accept: AsFd + private::Sealed {
    /// What an accepted connection is.
    type Stream: From<OwnedFd>;
}

impl Accept for TcpListener {
    type Stream = TcpStream;
}

impl Accept for UnixListener {
    type Stream = UnixStream;
}

mod private {
    pub trait Sealed {}
    impl Sealed for std::net::TcpListener {}
    impl Sealed for std::os::unix::net::UnixListener {}
}

/// The connections of `listener` until the worker should stop; see the module documentation.
pub fn incoming<L: Accept>(listener: &L) -> Incoming<'_, L> {
    crate::shutdown::watch();
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        // Without the handler the loop still ends at the next connection after the stop.
        let _ = sys::install_wake_handler(WAKE_SIGNAL);
    });
    Incoming { listener }
}

/// The iterator of [`incoming()`]: like [`std::net::Incoming`], it yields each accepted
/// connection or the error of one `accept`, and it ends at the stop.
#[derive(Debug)]
pub struct Incoming<'a, L> {
    listener: &'a L,
}

impl<L: Accept> Iterator for Incoming<'_, L> {
    type Item = io::Result<L::Stream>;

    fn next(&mut self) -> Option<Self::Item> {
        let fd = self.listener.as_fd().as_raw_fd();
        loop {
            let _waiting = Waiting::register();
            // After registering: a stop from now on will signal this thread.
            if crate::shutdown::current().is_some() {
                return None;
            }
            match sys::accept(fd) {
                Ok(conn) => return Some(Ok(L::Stream::from(conn))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The threads waiting in `accept`.
static WAITING: Mutex<Vec<libc::pthread_t>> = Mutex::new(Vec::new());

/// This thread's entry in [`WAITING`] while it exists. The stop signals threads only while
/// it holds the lock, and a thread leaves (under the lock) before it can exit, so no signal
/// goes to a thread that is gone.
struct Waiting(libc::pthread_t);

impl Waiting {
    fn register() -> Waiting {
        let me = sys::this_thread();
        lock().push(me);
        Waiting(me)
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut waiting = lock();
        if let Some(i) = waiting.iter().position(|t| *t == self.0) {
            waiting.swap_remove(i);
        }
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<libc::pthread_t>> {
    WAITING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Called once the stop is recorded: interrupts every thread waiting in `accept`, again
/// every [`WAKE_AGAIN`] until none is left, from a thread of its own (the caller is the
/// signal or channel thread, which must not wait).
pub(crate) fn wake_all() {
    if lock().is_empty() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("herd-wake".into())
        .spawn(|| {
            let until = std::time::Instant::now() + WAKE_FOR;
            while std::time::Instant::now() < until {
                {
                    let waiting = lock();
                    if waiting.is_empty() {
                        return;
                    }
                    for thread in waiting.iter() {
                        sys::signal_thread(*thread, WAKE_SIGNAL);
                    }
                }
                std::thread::sleep(WAKE_AGAIN);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One test for the whole stop (it is process-wide): a thread waiting in `accept` ends
    /// its loop at the stop, after serving what it accepted before; a thread that starts
    /// after it accepts nothing.
    #[test]
    fn the_loop_serves_what_it_accepted_and_ends_at_the_stop() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (served_tx, served_rx) = std::sync::mpsc::channel();
        let server = std::thread::spawn(move || {
            let mut n = 0;
            for conn in incoming(&listener) {
                let mut conn = conn.unwrap();
                let mut byte = [0u8; 1];
                conn.read_exact(&mut byte).unwrap();
                conn.write_all(&byte).unwrap();
                n += 1;
                served_tx.send(()).unwrap();
            }
            (n, listener)
        });
        let mut client = TcpStream::connect(addr).unwrap();
        client.write_all(b"x").unwrap();
        served_rx.recv().unwrap();
        // The server waits in accept again; the stop must end it there.
        while lock().is_empty() {
            std::thread::yield_now();
        }
        crate::shutdown::request(crate::Reason::Message);
        let (n, listener) = server.join().unwrap();
        assert_eq!(n, 1);
        let mut answer = [0u8; 1];
        client.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"x");
        // The fd is still blocking (nothing shared was changed), and a loop started after
        // the stop ends at once.
        assert!(!sys::is_nonblocking(listener.as_raw_fd()).unwrap());
        let _queued = TcpStream::connect(addr).unwrap();
        assert!(incoming(&listener).next().is_none());
    }
}
