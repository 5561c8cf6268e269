//! Serving: one accept thread per listener, one thread per connection, a registry of
//! the open connections, and the graceful drain once a stop is asked for. Also the
//! process-wide state that routes switch (hangs, `/healthz`'s mode, the watchdog pings).

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::{Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use crate::hang::{self, Hangs};
use crate::health::Health;
use crate::http::serve_conn;
use crate::sockets::{Listener, Stream};
use crate::stop::{self, poll_readable};
use crate::watchdog;

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
    /// The hangs `/hang` switched on.
    pub(crate) hangs: Hangs,
    /// What `/healthz` answers, as `/health` set it.
    pub(crate) health: Health,
    /// Whether `/watchdog` stopped the pings.
    pub(crate) watchdog: watchdog::Switch,
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
            hangs: Hangs::default(),
            health: Health::default(),
            watchdog: watchdog::Switch::default(),
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

/// Accepts on `l` until a stop is asked for, then returns, closing the listener. Once
/// `/hang?how=accept` is on, it accepts no more and only waits for the stop; once
/// `/hang?how=silent` is on, the connections it accepts are held, never answered.
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
            if ctx.hangs.busy() {
                hang::block_forever(); // a hung process does not even close its listeners
            }
            return; // drops (closes) the listener
        }
        if !conn_ready {
            continue;
        }
        if ctx.hangs.accept() {
            // Connections pile up in the listen backlog until we stop.
            while !stop::wait(stop_rd, -1) {}
            return;
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
        let silent = ctx.hangs.silent();
        let spawned = thread::Builder::new()
            .name("conn".into())
            .stack_size(CONN_STACK)
            .spawn(move || {
                if silent {
                    hang::hold(&stream);
                } else {
                    serve_conn(ctx, &stream);
                }
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::{AsFd, OwnedFd};
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::thread::JoinHandle;

    use nix::fcntl::OFlag;

    use super::*;
    use crate::http::tests::{assert_no_answer, ctx, get};

    /// An accept thread of `ctx` on a new abstract unix socket: its address, the write
    /// end of its stop pipe, and the thread.
    fn serve(ctx: &'static Ctx) -> (SocketAddr, OwnedFd, JoinHandle<()>) {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "herd-testworker-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let addr = SocketAddr::from_abstract_name(name).expect("an abstract address");
        let l = Listener::Unix(UnixListener::bind_addr(&addr).expect("a listener"));
        l.set_nonblocking().expect("nonblocking");
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("a pipe");
        let rd: &'static OwnedFd = Box::leak(Box::new(rd));
        let accepter = thread::spawn(move || accept_loop(ctx, l, rd.as_fd()));
        (addr, wr, accepter)
    }

    /// Makes the accept thread return, as a stop would, and waits for it.
    fn stop(wr: OwnedFd, accepter: JoinHandle<()>) {
        std::fs::File::from(wr)
            .write_all(b"x")
            .expect("a write to the stop pipe");
        accepter.join().expect("the accept thread ends");
    }

    #[test]
    fn an_accept_hang_leaves_new_connections_in_the_backlog() {
        let ctx = ctx();
        let (addr, wr, accepter) = serve(ctx);
        let a = &mut UnixStream::connect_addr(&addr).expect("a connection");
        assert_eq!(get(a, "/hang?how=accept").1, "hanging accept\n");
        // The kernel completes the connection, but nobody accepts it.
        let b = &mut UnixStream::connect_addr(&addr).expect("a connection");
        b.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        assert_no_answer(b);
        assert_eq!(get(a, "/").1, "id\n");
        assert_eq!(ctx.conns.lock().unwrap().live.len(), 1);
        stop(wr, accepter);
    }

    #[test]
    fn a_silent_hang_holds_new_connections_only() {
        let ctx = ctx();
        let (addr, wr, accepter) = serve(ctx);
        let a = &mut UnixStream::connect_addr(&addr).expect("a connection");
        assert_eq!(get(a, "/hang?how=silent").1, "hanging silent\n");
        let b = &mut UnixStream::connect_addr(&addr).expect("a connection");
        b.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert_no_answer(b);
        b.shutdown(std::net::Shutdown::Write).unwrap();
        assert_no_answer(b);
        assert_eq!(get(a, "/healthz").1, "ok\n");
        stop(wr, accepter);
    }
}
