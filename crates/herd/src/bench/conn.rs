//! One connection of the load: it writes requests (up to the pipelining depth in flight,
//! several in one `write`), reads the answers in order, matches each to its request, and
//! records it in its thread's [`Stats`]. In closed loop it sends again as soon as an answer
//! frees a slot; in rate mode it sends at the [`Schedule`]'s times, and a request whose time
//! came while every slot was busy is sent as soon as one frees, its latency still counted
//! from its intended time. It reconnects after a `Connection: close` answer (re-sending
//! the requests that answer cut off) and after a failure (counting the requests lost).
//!
//! Syscalls are the cost (see the reference on load generators): a request costs one
//! `write` and, at most, one `read`; the connection never reads a socket it knows to be
//! empty (it drops tokio's readiness itself when a read did not fill the buffer) and arms
//! its timer only when the time it waits for changes, not per request.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::response::Reader;
use super::schedule::Schedule;
use super::stats::{ErrorKind, Stats};

/// Bytes read at once. An answer's head must fit (bodies are skipped as they come).
const READ_BUF: usize = 64 * 1024;
/// Wait after a failed connect before the next try: a refused port is retried a hundred
/// times a second per connection, not in a busy loop.
const CONNECT_RETRY: Duration = Duration::from_millis(10);
/// A request written this much after its intended time counts as late (above the 1 ms
/// tick of the runtime's timer, which a punctual request may already be behind by).
const LATE: Duration = Duration::from_millis(2);
/// How early a scheduled request may go: the runtime's timer fires up to one 1 ms tick
/// late, so waking half a tick before a request's time centres the sends on their times
/// instead of sending every one late. An early request's latency counts from its send.
const EARLY: Duration = Duration::from_micros(500);
/// Timeouts are checked this many times per --timeout: a stalled request fails within
/// 1 + 1/TIMEOUT_CHECKS of the timeout, without a timer per request.
const TIMEOUT_CHECKS: u32 = 10;

/// What every connection of the run shares (read-only but for the budget).
#[derive(Debug)]
pub struct Shared {
    /// The server.
    pub addr: SocketAddr,
    /// The request, `depth` times in a row: a batch of n is the first n × `len` bytes.
    pub batch: Vec<u8>,
    /// One request's length.
    pub len: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Answers to HEAD have no body.
    pub head: bool,
    /// The load starts (the schedule's origin).
    pub start: Instant,
    /// Measuring starts (after the warm-up).
    pub from: Instant,
    /// Measuring ends; `None`: when the budget is spent.
    pub until: Option<Instant>,
    /// Requests left to send in the measured window (`-a`).
    pub budget: Option<AtomicU64>,
}

impl Shared {
    /// Takes one request from the budget; false when it is spent.
    fn claim(&self) -> bool {
        match &self.budget {
            None => true,
            Some(b) => b
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok(),
        }
    }

    fn spent(&self) -> bool {
        self.budget
            .as_ref()
            .is_some_and(|b| b.load(Ordering::Relaxed) == 0)
    }

    fn over(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now >= u)
    }
}

/// A request on the wire.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// When it was meant to be sent.
    intended: Instant,
    /// When it was written.
    sent: Instant,
}

/// Why a connection's session ended.
enum End {
    /// The run is over.
    Finished,
    /// The server closed it: open another at once.
    Reconnect,
    /// It failed: open another after a pause.
    Failed,
}

/// One connection's whole life in the run.
pub struct Connection {
    shared: Arc<Shared>,
    stats: Rc<RefCell<Stats>>,
    answered: Arc<AtomicU64>,
    schedule: Option<Schedule>,
    inflight: VecDeque<InFlight>,
    /// Requests a `Connection: close` cut off, to send first on the next connection.
    resend: VecDeque<InFlight>,
    buf: Vec<u8>,
}

impl Connection {
    /// A connection of a thread: its stats, its progress counter, its schedule (rate mode).
    pub fn new(
        shared: Arc<Shared>,
        stats: Rc<RefCell<Stats>>,
        answered: Arc<AtomicU64>,
        schedule: Option<Schedule>,
    ) -> Self {
        let depth = shared.depth;
        Connection {
            shared,
            stats,
            answered,
            schedule,
            inflight: VecDeque::with_capacity(depth),
            resend: VecDeque::new(),
            buf: vec![0; READ_BUF],
        }
    }

    /// Runs until the end of the run.
    pub async fn run(mut self) {
        let shared = self.shared.clone();
        let s = &*shared;
        loop {
            let now = Instant::now();
            if s.over(now) || (s.spent() && self.resend.is_empty()) {
                break;
            }
            // A connect still pending when the run ends fails too: a server that never
            // completes the handshake is reported, not waited for in silence.
            let give_up = s.until.map_or(now + s.timeout, |u| u.min(now + s.timeout));
            let connect = tokio::time::timeout_at(give_up.into(), TcpStream::connect(s.addr)).await;
            let stream = match connect {
                Ok(Ok(stream)) => stream,
                Ok(Err(_)) | Err(_) => {
                    let retry = self.connect_failed(Instant::now());
                    tokio::time::sleep_until(retry.into()).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            if Instant::now() < s.start {
                tokio::time::sleep_until(s.start.into()).await;
            }
            match self.session(&stream).await {
                End::Finished => break,
                End::Reconnect => self.stats.borrow_mut().reconnects += 1,
                End::Failed => tokio::time::sleep(CONNECT_RETRY).await,
            }
        }
        if let (Some(sched), Some(until)) = (&self.schedule, s.until) {
            self.stats.borrow_mut().missed += sched.unsent(s.from, until);
        }
    }

    /// Counts what a failed connect cost; returns when to try again. A request that could
    /// not be sent counts against the budget, so an `-a` run against a dead server ends.
    /// Closed-loop, that is one request per try. At a fixed rate it is each request that
    /// came due while no connection was there, once, and the next try waits for the next
    /// request due: a refused port costs the rate, not a hundred failures a second per
    /// connection.
    fn connect_failed(&mut self, now: Instant) -> Instant {
        let s = &*self.shared;
        let mut stats = self.stats.borrow_mut();
        let Some(sched) = &mut self.schedule else {
            if s.claim() {
                stats.error(ErrorKind::Connect, now, 1);
            }
            return now + CONNECT_RETRY;
        };
        while sched.due() <= now {
            let intended = sched.due();
            if intended >= s.from {
                if !s.claim() {
                    break;
                }
                stats.error(ErrorKind::Connect, intended, 1);
            }
            sched.advance();
        }
        sched.due().max(now + CONNECT_RETRY)
    }

    /// Fails every request in flight with `kind`.
    fn fail(&mut self, kind: ErrorKind) -> End {
        let mut stats = self.stats.borrow_mut();
        for r in self.inflight.drain(..) {
            stats.error(kind, r.intended, 1);
        }
        End::Failed
    }

    /// Writes what is due: first what a closed connection cut off, then new requests.
    /// Returns how many.
    fn due(&mut self, now: Instant) -> usize {
        let shared = self.shared.clone();
        let s = &*shared;
        let mut n = 0;
        while self.inflight.len() < s.depth {
            let Some(r) = self.resend.pop_front() else {
                break;
            };
            self.inflight.push_back(InFlight { sent: now, ..r });
            n += 1;
        }
        while self.inflight.len() < s.depth {
            let intended = match &self.schedule {
                None => now,
                Some(sched) if sched.due() <= now + EARLY => sched.due().min(now),
                Some(_) => break,
            };
            if intended >= s.from {
                if !s.claim() {
                    break;
                }
                let mut stats = self.stats.borrow_mut();
                stats.sent += 1;
                if now.saturating_duration_since(intended) > LATE {
                    stats.late += 1;
                }
            }
            if let Some(sched) = &mut self.schedule {
                sched.advance();
            }
            self.inflight.push_back(InFlight {
                intended,
                sent: now,
            });
            n += 1;
        }
        n
    }

    /// When to wake if no answer comes: the next scheduled send (with a free slot), the
    /// next timeout check, the end of the run.
    fn wake(&self, check: Instant) -> Instant {
        let mut at = check;
        if let Some(u) = self.shared.until {
            at = at.min(u);
        }
        if let Some(sched) = &self.schedule {
            if self.inflight.len() < self.shared.depth {
                at = at.min(sched.due().checked_sub(EARLY).unwrap_or(sched.due()));
            }
        }
        at
    }

    async fn session(&mut self, stream: &TcpStream) -> End {
        let shared = self.shared.clone();
        let s = &*shared;
        let mut reader = Reader::new(s.head);
        let mut filled = 0;
        let check_every = s.timeout / TIMEOUT_CHECKS;
        let mut check = Instant::now() + check_every;
        let alarm = tokio::time::sleep_until(self.wake(check).into());
        tokio::pin!(alarm);
        loop {
            let now = Instant::now();
            if s.over(now) {
                return End::Finished;
            }
            let n = self.due(now);
            if n > 0 {
                if let Err(e) = write_all(stream, &s.batch[..n * s.len]).await {
                    return self.fail(write_kind(&e));
                }
            }
            if self.inflight.is_empty() && self.schedule.is_none() {
                // Closed loop with nothing to send: the budget is spent.
                return End::Finished;
            }
            if self.inflight.is_empty() && s.spent() && self.resend.is_empty() {
                return End::Finished;
            }
            let wake = self.wake(check);
            if alarm.deadline() != wake.into() {
                alarm.as_mut().reset(wake.into());
            }
            tokio::select! {
                biased;
                ready = stream.readable() => {
                    if ready.is_err() {
                        return self.fail(ErrorKind::Read);
                    }
                }
                () = &mut alarm => {
                    let now = Instant::now();
                    if now >= check {
                        if self.inflight.front().is_some_and(|r| now - r.sent >= s.timeout) {
                            return self.fail(ErrorKind::Timeout);
                        }
                        check = now + check_every;
                    }
                    continue;
                }
            }
            // Read what is there.
            loop {
                match stream.try_read(&mut self.buf[filled..]) {
                    Ok(0) => return self.closed(&mut reader),
                    Ok(k) => {
                        let full = filled + k == self.buf.len();
                        let now = Instant::now();
                        self.stats.borrow_mut().read(k, now);
                        filled += k;
                        match self.answers(&mut reader, filled, now) {
                            Err(end) => return end,
                            Ok(left) => filled = left,
                        }
                        if filled == self.buf.len() {
                            // A head larger than the buffer.
                            return self.fail(ErrorKind::Parse);
                        }
                        if !full {
                            // The read emptied the socket: what comes next raises a new
                            // edge, so drop the readiness without a read that would fail.
                            let _ = stream.try_io(Interest::READABLE, || {
                                Err::<(), _>(io::ErrorKind::WouldBlock.into())
                            });
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return self.fail(read_kind(&e)),
                }
            }
        }
    }

    /// Matches the complete answers in `buf[..filled]` to their requests; keeps the partial
    /// rest at the start of the buffer and returns its length.
    fn answers(&mut self, reader: &mut Reader, filled: usize, now: Instant) -> Result<usize, End> {
        let mut pos = 0;
        let mut done = 0;
        let result = loop {
            match reader.feed(&self.buf[pos..filled]) {
                Err(_) => break Err(self.fail(ErrorKind::Parse)),
                Ok((used, answer)) => {
                    pos += used;
                    let Some(a) = answer else { break Ok(()) };
                    let Some(r) = self.inflight.pop_front() else {
                        // An answer nobody asked for.
                        break Err(self.fail(ErrorKind::Parse));
                    };
                    self.stats
                        .borrow_mut()
                        .answer(a.status, r.intended, r.sent, now);
                    done += 1;
                    if a.close {
                        // The server closes after this answer: what was pipelined behind
                        // it was not answered, and is sent again on the next connection.
                        self.resend.extend(self.inflight.drain(..));
                        break Err(End::Reconnect);
                    }
                }
            }
        };
        self.answered.fetch_add(done, Ordering::Relaxed);
        result?;
        self.buf.copy_within(pos..filled, 0);
        Ok(filled - pos)
    }

    /// The server closed the connection.
    fn closed(&mut self, reader: &mut Reader) -> End {
        let mid_answer = reader.in_answer();
        if let Some(a) = reader.eof() {
            // A body that ran to the close: a complete answer.
            if let Some(r) = self.inflight.pop_front() {
                let now = Instant::now();
                self.stats
                    .borrow_mut()
                    .answer(a.status, r.intended, r.sent, now);
                self.answered.fetch_add(1, Ordering::Relaxed);
            }
            self.resend.extend(self.inflight.drain(..));
            return End::Reconnect;
        }
        if self.inflight.is_empty() {
            // An idle connection closed (the server's keep-alive timeout).
            return End::Reconnect;
        }
        self.fail(if mid_answer {
            ErrorKind::Read
        } else {
            ErrorKind::Reset
        })
    }
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn read_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => ErrorKind::Reset,
        _ => ErrorKind::Read,
    }
}

fn write_kind(e: &io::Error) -> ErrorKind {
    match e.kind() {
        io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted
        | io::ErrorKind::BrokenPipe => ErrorKind::Reset,
        _ => ErrorKind::Write,
    }
}
