//! When to stop: SIGTERM or SIGINT (herd's default stop signals), the message
//! `"shutdown"` on the channel (herd's `--stop-message`), or herd closing the channel.
//! Signal handlers only write to a pipe; a thread turns that into the one shared state
//! that [`wait()`] (and, with the `tokio` feature, the `shutdown()` future) waits on.
//!
//! ```no_run
//! let why = herd_worker::wait_for_shutdown();
//! eprintln!("stopping: {why:?}");
//! ```

use std::io::Read;
use std::sync::{Condvar, Mutex, Once};

/// Why the worker should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A stop signal (its number: `libc::SIGTERM`, `libc::SIGINT`).
    Signal(i32),
    /// herd sent `"shutdown"` on the channel.
    Message,
    /// herd closed the channel: it is gone, and no connection or message will come.
    ChannelClosed,
}

struct Stop {
    reason: Mutex<Option<Reason>>,
    changed: Condvar,
}

static STOP: Stop = Stop {
    reason: Mutex::new(None),
    changed: Condvar::new(),
};

#[cfg(feature = "tokio")]
pub(crate) static ASYNC_STOP: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Records the first reason to stop and wakes every waiter.
pub(crate) fn request(why: Reason) {
    let mut reason = STOP.reason.lock().unwrap_or_else(|p| p.into_inner());
    if reason.is_none() {
        *reason = Some(why);
    }
    drop(reason);
    STOP.changed.notify_all();
    #[cfg(feature = "tokio")]
    ASYNC_STOP.notify_waiters();
    crate::accept::wake_all();
}

/// The reason to stop, if one came. Starts watching (see [`watch()`]).
pub fn requested() -> Option<Reason> {
    watch();
    *STOP.reason.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts watching for the stop signals and the `"shutdown"` message (idempotent). From
/// then on SIGTERM and SIGINT no longer kill the process: the program decides when to exit.
/// A program that uses tokio's own signal handling should use one or the other.
pub fn watch() {
    static STARTED: Once = Once::new();
    STARTED.call_once(|| {
        // The channel's reader reports "shutdown" and a closed channel.
        let _ = crate::channel::get();
        let Ok(mut pipe) = crate::sys::stop_signal_pipe().map(std::fs::File::from) else {
            return;
        };
        let _ = std::thread::Builder::new()
            .name("herd-signals".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                while let Ok(1) = pipe.read(&mut byte) {
                    request(Reason::Signal(i32::from(byte[0])));
                }
            });
    });
}

/// The reason to stop, if one came, without starting to watch for signals.
pub(crate) fn current() -> Option<Reason> {
    *STOP.reason.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits until the worker should stop, and says why.
pub fn wait() -> Reason {
    watch();
    let reason = STOP.reason.lock().unwrap_or_else(|p| p.into_inner());
    let reason = STOP
        .changed
        .wait_while(reason, |r| r.is_none())
        .unwrap_or_else(|p| p.into_inner());
    reason.unwrap_or(Reason::ChannelClosed)
}
