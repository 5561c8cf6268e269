//! The stop request: SIGTERM/SIGINT set a flag and write to a self-pipe (all a signal
//! handler may safely do); the main thread and the accept threads wait on that pipe with
//! poll(2), and connection threads read the flag when they answer.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// Set by the signal handler; read by connection threads when answering.
static STOP: AtomicBool = AtomicBool::new(false);
/// Write end of the self-pipe, for the signal handler (-1 until set up).
static STOP_PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(_: libc::c_int) {
    // Only async-signal-safe operations: an atomic store and write(2).
    // SAFETY: __errno_location returns this thread's errno slot; we restore
    // errno so the interrupted code does not see it clobbered.
    let errno = unsafe { *libc::__errno_location() };
    STOP.store(true, Ordering::SeqCst);
    let fd = STOP_PIPE_WR.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; the buffer is a static byte;
        // the fd is the nonblocking self-pipe, which is never closed.
        unsafe { libc::write(fd, b"x".as_ptr().cast(), 1) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs the stop handlers (or ignores the signals) for SIGTERM and SIGINT.
pub(crate) fn install_signals(ignore: bool, pipe_wr: &OwnedFd) {
    STOP_PIPE_WR.store(pipe_wr.as_raw_fd(), Ordering::SeqCst);
    let handler = if ignore {
        SigHandler::SigIgn
    } else {
        SigHandler::Handler(on_stop_signal)
    };
    let action = SigAction::new(handler, SaFlags::SA_RESTART, SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only does an atomic store and write(2), both
        // async-signal-safe; SigIgn is always safe.
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            eprintln!("herd-testworker: sigaction {sig}: {e}");
        }
    }
}

/// poll(2) for readability of `fds` (nix's poll needs a feature this crate
/// does not enable). Returns, per fd, whether it is ready (any revents).
pub(crate) fn poll_readable<const N: usize>(
    fds: [BorrowedFd<'_>; N],
    timeout_ms: i32,
) -> nix::Result<[bool; N]> {
    let mut pfds = fds.map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    // SAFETY: `pfds` is a valid, initialised array of N pollfd structs, the
    // length passed matches it, and the fds are borrowed (open) for the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), N as libc::nfds_t, timeout_ms) };
    Errno::result(rc)?;
    Ok(pfds.map(|p| p.revents != 0))
}

/// Waits until the stop pipe is readable, or `timeout_ms` elapses (-1: no
/// timeout). True if stopping.
pub(crate) fn wait(stop_rd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    loop {
        match poll_readable([stop_rd], timeout_ms) {
            Ok([ready]) => return ready || STOP.load(Ordering::SeqCst),
            Err(Errno::EINTR) => {
                if STOP.load(Ordering::SeqCst) {
                    return true;
                }
            }
            Err(e) => {
                eprintln!("herd-testworker: poll: {e}");
                return STOP.load(Ordering::SeqCst);
            }
        }
    }
}

/// A stop was asked for (a signal, or the worker stopping by itself).
pub(crate) fn requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// From now on the worker is stopping: connections answer with `Connection: close`.
pub(crate) fn request() {
    STOP.store(true, Ordering::SeqCst);
}
