//! Serving: one accept thread per listener, one thread per connection, a registry of
//! the open connections, and the graceful drain once a stop is asked for.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::http::serve_conn;
use crate::sockets::{Listener, Stream};
use crate::stop::{self, poll_readable};

/// Stack size of connection threads (they need very little).
const CONN_STACK: usize = 128 * 1024;

/// What every thread shares, for the life of the process.
pub(crate) struct Ctx {
    /// Body of `/`.
    pub(crate) ident: String,
    /// Body of `/env`, without the PPID line.
    pub(crate) env_body: String,
    /// Live connections (a dup of each stream), to wake idle ones at stop.
    conns: Mutex<Conns>,
    /// Signalled when a connection ends.
    conn_gone: Condvar,
}

#[derive(Default)]
struct Conns {
    next: u64,
    live: HashMap<u64, Stream>,
}

impl Ctx {
    /// Shared state with the bodies of `/` and `/env`, and no connection yet.
    pub(crate) fn new(ident: String, env_body: String) -> Self {
        Ctx {
            ident,
            env_body,
            conns: Mutex::new(Conns::default()),
            conn_gone: Condvar::new(),
        }
    }

    fn register(&self, s: &Stream) -> Option<u64> {
        let dup = s.try_clone().ok()?;
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let id = c.next;
        c.next += 1;
        c.live.insert(id, dup);
        Some(id)
    }

    fn unregister(&self, id: u64) {
        let mut c = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        c.live.remove(&id);
        self.conn_gone.notify_all();
    }
}

/// Accepts on `l` until a stop is asked for, then returns, closing the listener.
pub(crate) fn accept_loop(ctx: &'static Ctx, l: Listener, stop_rd: BorrowedFd<'static>) {
    loop {
        let (conn_ready, stop_ready) = match poll_readable([l.fd(), stop_rd], -1) {
            Ok([c, s]) => (c, s),
            Err(Errno::EINTR) => (false, false),
            Err(e) => {
                eprintln!("herd-testworker: poll: {e}");
                thread::sleep(Duration::from_millis(10));
                (false, false)
            }
        };
        if stop_ready || stop::requested() {
            return; // drops (closes) the listener
        }
        if !conn_ready {
            continue;
        }
        let stream = match l.accept() {
            Ok(s) => s,
            Err(e) => {
                match e.raw_os_error().map(Errno::from_raw) {
                    // Another worker won the race, or the client went away.
                    Some(Errno::EAGAIN | Errno::ECONNABORTED | Errno::EINTR | Errno::EPROTO) => {}
                    _ => {
                        eprintln!("herd-testworker: accept: {e}");
                        thread::sleep(Duration::from_millis(10));
                    }
                }
                continue;
            }
        };
        let Some(id) = ctx.register(&stream) else {
            continue;
        };
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                serve_conn(ctx, &stream);
                ctx.unregister(id);
            });
        if let Err(e) = spawned {
            eprintln!("herd-testworker: spawn: {e}");
            ctx.unregister(id);
        }
    }
}

/// How long a stopping worker keeps answering the next request of its open connections
/// (with `Connection: close`) before closing the idle ones.
const DRAIN_GRACE: Duration = Duration::from_millis(1000);

/// Waits until every connection is closed, once the listeners are.
pub(crate) fn drain(ctx: &Ctx) {
    // Drain like a well-behaved HTTP/1.1 server: for a grace period, a connection's next
    // request (or the first one of a connection accepted just before the stop) is still
    // answered, with `Connection: close`. Closing an idle keep-alive connection at once
    // would race with a client that is sending on it, which sees a reset.
    let grace_end = Instant::now() + DRAIN_GRACE;
    let mut c = ctx.conns.lock().unwrap_or_else(|e| e.into_inner());
    while !c.live.is_empty() {
        let left = grace_end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        c = ctx
            .conn_gone
            .wait_timeout(c, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    // Then wake the connections still idle: their blocked read returns EOF. Busy ones
    // finish their response (marked Connection: close) first.
    for s in c.live.values() {
        s.shutdown_read();
    }
    while !c.live.is_empty() {
        c = ctx.conn_gone.wait(c).unwrap_or_else(|e| e.into_inner());
    }
}
