//! Hangs, switched on per process by `/hang?how=…` so that a test can hang exactly one
//! worker at a chosen moment: `busy` (a hung event loop: one thread spins, no request is
//! answered any more), `accept` (the accept loops stop accepting) and `silent` (new
//! connections are read but never answered). None of them can be switched off again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::sockets::Stream;
use crate::stop;

/// The kinds of hang `/hang?how=` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum How {
    Busy,
    Accept,
    Silent,
}

impl How {
    /// The value of `how=`, `None` for an unknown one.
    pub(crate) fn parse(s: &str) -> Option<How> {
        match s {
            "busy" => Some(How::Busy),
            "accept" => Some(How::Accept),
            "silent" => Some(How::Silent),
            _ => None,
        }
    }

    /// What `/hang` answers before the hang takes effect.
    pub(crate) fn answer(self) -> &'static str {
        match self {
            How::Busy => "hanging busy\n",
            How::Accept => "hanging accept\n",
            How::Silent => "hanging silent\n",
        }
    }
}

/// Which hangs are on, for the whole process (they add up, and stay on).
#[derive(Default)]
pub(crate) struct Hangs {
    busy: AtomicBool,
    accept: AtomicBool,
    silent: AtomicBool,
    /// The spinning thread has been started.
    spinning: AtomicBool,
}

impl Hangs {
    /// Switches a hang on. For `busy` this only sets the state; [`Hangs::spin`] starts the
    /// spinning thread.
    pub(crate) fn set(&self, how: How) {
        let flag = match how {
            How::Busy => &self.busy,
            How::Accept => &self.accept,
            How::Silent => &self.silent,
        };
        flag.store(true, Ordering::SeqCst);
    }

    /// No request is to be answered any more, and no watchdog ping sent.
    pub(crate) fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// The accept loops are to stop accepting.
    pub(crate) fn accept(&self) -> bool {
        self.accept.load(Ordering::SeqCst)
    }

    /// Connections accepted from now on are held, never answered.
    pub(crate) fn silent(&self) -> bool {
        self.silent.load(Ordering::SeqCst)
    }

    /// For tests: [`Hangs::spin`] starts no thread (a busy hang then only blocks).
    #[cfg(test)]
    pub(crate) fn never_spin(&self) {
        self.spinning.store(true, Ordering::SeqCst);
    }

    /// Starts, once, the thread that burns a CPU forever: the hung event loop.
    pub(crate) fn spin(&self) {
        if self.spinning.swap(true, Ordering::SeqCst) {
            return;
        }
        let spawned = thread::Builder::new()
            .name("hung-loop".into())
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::hint::spin_loop();
            });
        if let Err(e) = spawned {
            eprintln!("herd-testworker: spawn the spinning thread: {e}");
        }
    }
}

/// Blocks the calling thread for good (a connection thread of a busy-hung worker).
pub(crate) fn block_forever() -> ! {
    loop {
        thread::park();
    }
}

/// Holds a connection without ever answering: reads and discards what the client sends
/// until it closes its side (or the stop drain shuts our reading side), then keeps the
/// connection open until the worker stops. The caller closes it on return.
pub(crate) fn hold(s: &Stream) {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    while !stop::requested() {
        thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kinds_of_hang() {
        assert_eq!(How::parse("busy"), Some(How::Busy));
        assert_eq!(How::parse("accept"), Some(How::Accept));
        assert_eq!(How::parse("silent"), Some(How::Silent));
        for bad in ["", "Busy", "busy ", "forever"] {
            assert_eq!(How::parse(bad), None, "{bad:?}");
        }
        assert_eq!(How::Busy.answer(), "hanging busy\n");
    }

    #[test]
    fn hangs_add_up_and_stay() {
        let h = Hangs::default();
        assert!(!h.busy() && !h.accept() && !h.silent());
        h.set(How::Accept);
        assert!(h.accept() && !h.busy() && !h.silent());
        h.set(How::Silent);
        h.set(How::Accept);
        assert!(h.accept() && h.silent() && !h.busy());
        h.set(How::Busy);
        assert!(h.accept() && h.silent() && h.busy());
    }
}
