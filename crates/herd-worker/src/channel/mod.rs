//! The channel to herd: the unix stream socket at `NODE_CHANNEL_FD`, speaking Node's IPC
//! `json` format (one JSON value per line, fds attached with SCM_RIGHTS).
//!
//! One reader thread, started by the first use of the channel, owns the reading side: it
//! answers herd's control questions itself (`NODE_HANDLE_ACK`, `NODE_SOCKET_COUNT`), and
//! sorts the rest into queues: handed-over connections ([`connections()`]), application
//! messages ([`recv()`]), herd's stats answers ([`stats()`]) and the `"shutdown"` message
//! ([`shutdown`](crate::shutdown)). Writers take a lock per line, so lines from several
//! threads never interleave.
//!
//! Outside herd (no `NODE_CHANNEL_FD`) there is no channel: [`send()`] is a no-op,
//! [`recv()`] and [`stats()`] return `Ok(None)`, and [`connections()`] ends at once.
//!
//! ```
//! use serde_json::json;
//! herd_worker::send(&json!({"type": "hello"}))?; // a no-op outside herd
//! assert!(herd_worker::recv()?.is_none() || herd_worker::is_worker());
//! # Ok::<(), herd_worker::Error>(())
//! ```

mod connections;

pub use connections::{Connection, Connections, OpenGuard, Stream};

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::AtomicUsize;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::framing::{encode, Decoder, Incoming};
use crate::sys::{self, Family};
use crate::{env, Error};

/// Longest wait for herd's answer to `{"herd":"stats"}`: herd answers from its event loop
/// within milliseconds; after this long it is stuck or gone.
pub const STATS_TIMEOUT: Duration = Duration::from_secs(5);

/// Application messages kept while nobody calls [`recv()`]: beyond this the oldest go,
/// so a program that never reads its messages does not grow without bound.
pub const MAX_QUEUED_MESSAGES: usize = 4096;

/// Bytes read from the channel at a time.
const READ_CHUNK: usize = 64 * 1024;

pub(crate) struct Channel {
    sock: UnixStream,
    /// Held while one line is written.
    write: Mutex<()>,
    state: Mutex<State>,
    changed: Condvar,
    #[cfg(feature = "tokio")]
    pub(crate) async_changed: tokio::sync::Notify,
    /// Handed-over connections received and not yet dropped (herd's least-conn asks).
    pub(crate) open: AtomicUsize,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) closed: bool,
    /// Someone called [`connections()`]: handles are acknowledged as they arrive. Before
    /// that they wait, unacknowledged, so herd does not count a worker that never takes
    /// connections as one that does.
    pub(crate) accepting: bool,
    pub(crate) unacked: usize,
    pub(crate) connections: VecDeque<OwnedFd>,
    pub(crate) messages: VecDeque<Value>,
    stats: Option<Value>,
    stats_seq: u64,
}

static CHANNEL: OnceLock<Result<Option<Channel>, (i32, String)>> = OnceLock::new();

/// The channel, opened (and its reader started) on first use; `Ok(None)` outside herd.
pub(crate) fn get() -> Result<Option<&'static Channel>, Error> {
    let opened = CHANNEL.get_or_init(open);
    match opened {
        Ok(Some(ch)) => {
            start_reader(ch);
            Ok(Some(ch))
        }
        Ok(None) => Ok(None),
        Err((fd, why)) => Err(Error::BadChannel {
            fd: *fd,
            why: why.clone(),
        }),
    }
}

fn open() -> Result<Option<Channel>, (i32, String)> {
    let Some(fd) = env::number(env::real, "NODE_CHANNEL_FD") else {
        return Ok(None);
    };
    let fd = i32::try_from(fd).map_err(|_| (-1, "not an fd number".to_string()))?;
    match sys::stream_socket(fd, false) {
        Ok(Family::Unix) => {}
        Ok(Family::Inet) => return Err((fd, "a TCP socket, not a unix one".to_string())),
        Err(why) => return Err((fd, why)),
    }
    sys::set_cloexec(fd).map_err(|e| (fd, e.to_string()))?;
    // SAFETY: the contract gives this fd to the process as its channel; it was just checked
    // to be an open unix stream socket, and the OnceLock makes this the only adoption.
    let sock = UnixStream::from(unsafe { sys::adopt(fd) });
    sock.set_nonblocking(false)
        .map_err(|e| (fd, e.to_string()))?;
    Ok(Some(Channel {
        sock,
        write: Mutex::new(()),
        state: Mutex::new(State::default()),
        changed: Condvar::new(),
        #[cfg(feature = "tokio")]
        async_changed: tokio::sync::Notify::new(),
        open: AtomicUsize::new(0),
    }))
}

fn start_reader(ch: &'static Channel) {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("herd-channel".into())
            .spawn(move || ch.read_loop());
        if spawned.is_err() {
            // No thread, no reader: say the channel is closed rather than hang readers.
            ch.lock().closed = true;
        }
    });
}

impl Channel {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data behind: keep going.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self) {
        self.changed.notify_all();
        #[cfg(feature = "tokio")]
        self.async_changed.notify_waiters();
    }

    /// Writes whole lines (one or more), atomically with respect to other writers.
    pub(crate) fn write_raw(&self, bytes: &[u8]) -> Result<(), Error> {
        let _line = self.write.lock().unwrap_or_else(|p| p.into_inner());
        (&self.sock).write_all(bytes).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                Error::ChannelClosed
            }
            _ => Error::Io {
                what: "writing to herd's channel",
                source: e,
            },
        })
    }

    fn read_loop(&'static self) {
        let mut buf = vec![0u8; READ_CHUNK];
        let mut fds: VecDeque<OwnedFd> = VecDeque::new();
        let mut received = Vec::new();
        let mut decoder = Decoder::default();
        loop {
            // An error reading is the end of the channel, as EOF is.
            let n = sys::recv_with_fds(self.sock.as_raw_fd(), &mut buf, &mut received)
                .unwrap_or_default();
            fds.extend(received.drain(..));
            if n == 0 {
                break;
            }
            decoder.feed(&buf[..n], |msg| self.handle(msg, &mut fds));
        }
        self.lock().closed = true;
        self.wake();
        crate::shutdown::request(crate::shutdown::Reason::ChannelClosed);
    }

    fn handle(&'static self, msg: Incoming, fds: &mut VecDeque<OwnedFd>) {
        match msg {
            Incoming::Handle { connection } => {
                // Each NODE_HANDLE line takes the next fd, in order: the kernel never
                // merges two SCM_RIGHTS messages into one read.
                let fd = fds.pop_front();
                let mut state = self.lock();
                match (fd, connection) {
                    (Some(fd), true) => {
                        state.connections.push_back(fd);
                        if state.accepting {
                            // Acknowledged under the state lock, so these acks and the
                            // backlog's (sent by connections()) go out in order.
                            let _ = self.write_raw(ACK);
                        } else {
                            state.unacked += 1;
                        }
                        drop(state);
                        self.wake();
                    }
                    // A handle that is not a connection, or a line whose fd is missing:
                    // acknowledge, so herd does not wait for it; the fd (if any) closes.
                    _ => {
                        let _ = self.write_raw(ACK);
                    }
                }
            }
            Incoming::GetCount { key } => {
                let count = self.open.load(std::sync::atomic::Ordering::Relaxed)
                    + self.lock().connections.len();
                let answer = json!({"cmd": "NODE_SOCKET_COUNT", "key": key, "count": count});
                let _ = self.write_raw(&encode(&answer));
            }
            Incoming::Control => {}
            Incoming::Shutdown => crate::shutdown::request(crate::shutdown::Reason::Message),
            Incoming::Stats(v) => {
                let mut state = self.lock();
                state.stats = Some(v);
                state.stats_seq += 1;
                drop(state);
                self.wake();
            }
            Incoming::App(v) => {
                let mut state = self.lock();
                if state.messages.len() >= MAX_QUEUED_MESSAGES {
                    state.messages.pop_front();
                }
                state.messages.push_back(v);
                drop(state);
                self.wake();
            }
        }
    }
}

/// The acknowledgement of one handle, as Node writes it.
pub(crate) const ACK: &[u8] = b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n";

/// Whether this process has a channel to herd (`NODE_CHANNEL_FD`).
pub fn has_channel() -> bool {
    matches!(get(), Ok(Some(_)))
}

/// Sends one JSON message to herd (Node's `process.send(value)`). A no-op outside herd;
/// [`Error::ChannelClosed`] once herd closed the channel.
pub fn send(value: &Value) -> Result<(), Error> {
    match get()? {
        Some(ch) => ch.write_raw(&encode(value)),
        None => Ok(()),
    }
}

/// Sends `"ready"` when there is a channel (for [`ready()`](crate::ready)).
pub(crate) fn ready_message() -> Result<(), Error> {
    send(&Value::from("ready"))
}

/// The next application message from herd (or from another worker through herd's
/// `{"herd":"send"}`), waiting for one. `Ok(None)` outside herd;
/// [`Error::ChannelClosed`] once herd closed the channel and every message was read.
/// herd's control traffic, its stats answers and `"shutdown"` never show up here.
pub fn recv() -> Result<Option<Value>, Error> {
    let Some(ch) = get()? else { return Ok(None) };
    let mut state = ch.lock();
    loop {
        if let Some(v) = state.messages.pop_front() {
            return Ok(Some(v));
        }
        if state.closed {
            return Err(Error::ChannelClosed);
        }
        state = ch.wait(state);
    }
}

/// herd's counters, from the answer to `{"herd":"stats"}`:
/// `{"herd":"stats","counters":{"requests":{"total":21,"slots":{"0":10,"1":11}}}}`.
/// This worker's batched counts are flushed first, so they are in the answer.
/// `Ok(None)` outside herd; [`Error::Timeout`] after [`STATS_TIMEOUT`].
pub fn stats() -> Result<Option<Value>, Error> {
    let Some(ch) = get()? else { return Ok(None) };
    crate::counters::flush()?;
    let seq = ch.lock().stats_seq;
    ch.write_raw(b"{\"herd\":\"stats\"}\n")?;
    let deadline = Instant::now() + STATS_TIMEOUT;
    let mut state = ch.lock();
    loop {
        if state.stats_seq > seq {
            return Ok(state.stats.clone());
        }
        if state.closed {
            return Err(Error::ChannelClosed);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout {
                what: "{\"herd\":\"stats\"}",
                secs: STATS_TIMEOUT.as_secs(),
            });
        }
        state = ch
            .changed
            .wait_timeout(state, deadline - now)
            .map(|(g, _)| g)
            .unwrap_or_else(|p| p.into_inner().0);
    }
}

/// The connections herd hands over in its handoff modes (`--balance round-robin`,
/// `least-conn`, `sticky`). The first call starts acknowledging them; call it before
/// [`ready()`](crate::ready). Outside herd the iterator ends at once.
pub fn connections() -> Connections {
    Connections::new(get().ok().flatten())
}
