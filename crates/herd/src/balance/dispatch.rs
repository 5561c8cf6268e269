//! The handoff modes' decisions, without I/O: which worker gets a connection (round-robin
//! turn, least-conn estimate, sticky rendezvous slot), whether it waits for one (a sticky
//! client's restarting worker, up to `sticky_wait`; or no worker ready, at most
//! [`WAITING_MAX`] connections), and when it is given up ([`RELAY_TRIES`]).
//!
//! Like the supervisor, a [`Dispatcher`] takes events and returns [`Decision`]s; time comes
//! in as `now` and its only timer goes out as [`Dispatcher::wake`]. It must not accept,
//! send, close or sleep: it holds connections (generic `C`, integers in the tests) only
//! while they wait or while a worker has not answered for them, and the driver
//! (`driver/handoff.rs`) carries out what it decides.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::load::OpenEstimate;
use super::{sticky, RoundRobin};

/// Connections waiting for a ready worker; more are closed (the client sees a reset rather
/// than herd's memory growing without bound).
pub const WAITING_MAX: usize = 4096;
/// Workers tried for one relayed connection before it is closed.
pub const RELAY_TRIES: u8 = 3;

/// What the dispatcher needs to know of a connection.
pub trait Incoming {
    /// Index of the listener it came in on.
    fn listener(&self) -> usize;
    /// The client's IP address; `None` on a unix socket (no address to stick by).
    fn client(&self) -> Option<IpAddr>;
    /// When herd accepted it (a sticky connection waits for its worker from then on).
    fn since(&self) -> Instant;
    /// Workers that could not take it so far (relays).
    fn tries(&self) -> u8;
}

/// How the worker is chosen (the handoff values of `--balance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In turn, skipping a worker that has not answered its last `newconn`.
    RoundRobin,
    /// The fewest open connections; ties in turn.
    LeastConn,
    /// The client IP's rendezvous slot; unix socket clients in turn.
    Sticky,
}

/// How a connection reaches a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Node cluster `newconn`.
    NewConn,
    /// The `"connection"` message with a `net.Socket`.
    Socket,
    /// Relayed to the worker's private port.
    Proxy(u16),
}

/// A worker that can take a connection of some listener now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Its slot (the sticky hash picks slots, not pids).
    pub slot: usize,
    /// The worker's pid.
    pub pid: u32,
    /// How it takes connections of this listener.
    pub via: Via,
}

/// Why a connection is closed without a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// [`WAITING_MAX`] connections already wait.
    QueueFull,
    /// [`RELAY_TRIES`] workers refused it.
    TooManyTries,
    /// It came in on a listener herd does not hand off (none of its connections can be).
    UnknownListener,
}

/// What to do with a connection.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<C> {
    /// Send it to this worker.
    HandTo {
        /// The connection.
        conn: C,
        /// The worker.
        to: Candidate,
    },
    /// It waits in the dispatcher (for [`Dispatcher::take_waiting`]).
    Wait,
    /// It waits, and no worker at all takes connections of its listener now.
    WaitNobodyTakes,
    /// Close it.
    Drop {
        /// The connection.
        conn: C,
        /// Why (for the log).
        reason: DropReason,
    },
}

/// A worker's answer to a `newconn`, matched with the connection kept until then.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<C> {
    /// Nothing was pending under that number (answered twice, or the worker is gone).
    Unknown,
    /// The worker has its own copy: herd's can be closed.
    Accepted(C),
    /// Dispatch it again (the worker no longer serves its listener).
    Refused(C),
}

/// The handoff decisions of one app.
#[derive(Debug)]
pub struct Dispatcher<C> {
    mode: Mode,
    sticky_wait: Duration,
    waiting: VecDeque<C>,
    /// `newconn`s sent and not yet answered, by worker pid then seq.
    pending: HashMap<u32, HashMap<u64, C>>,
    /// least-conn: the open connections of `"connection"` workers.
    open: HashMap<u32, OpenEstimate>,
    rr: RoundRobin,
    /// Who can take a connection, by listener; set by the driver when `stale`.
    candidates: Vec<Vec<Candidate>>,
    stale: bool,
    /// When the earliest sticky connection stops waiting for its own worker.
    wake: Option<Instant>,
    /// Said that ready workers take no connection (said once until one does).
    warned_no_taker: bool,
}

impl<C: Incoming> Dispatcher<C> {
    /// A dispatcher with no candidates yet (stale: the driver lists them first).
    pub fn new(mode: Mode, sticky_wait: Duration) -> Dispatcher<C> {
        Dispatcher {
            mode,
            sticky_wait,
            waiting: VecDeque::new(),
            pending: HashMap::new(),
            open: HashMap::new(),
            rr: RoundRobin::default(),
            candidates: Vec::new(),
            stale: true,
            wake: None,
            warned_no_taker: false,
        }
    }

    /// Who may take connections changed (readiness, a channel, a worker gone): the driver
    /// sets the candidates again before the next connection.
    pub fn invalidate(&mut self) {
        self.stale = true;
    }

    /// Whether [`Dispatcher::set_candidates`] is due.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// Who can take a connection of each listener now (in slot order).
    pub fn set_candidates(&mut self, candidates: Vec<Vec<Candidate>>) {
        self.candidates = candidates;
        if self.mode == Mode::LeastConn {
            // An estimate per `"connection"` worker: kept while it is one, new when it
            // becomes one.
            let socket_pids: Vec<u32> = self
                .candidates
                .iter()
                .flatten()
                .filter(|c| c.via == Via::Socket)
                .map(|c| c.pid)
                .collect();
            self.open.retain(|pid, _| socket_pids.contains(pid));
            for pid in socket_pids {
                self.open.entry(pid).or_default();
            }
        }
        self.stale = false;
    }

    /// A connection to give to a worker. `slots` is the app's number of worker slots (the
    /// sticky hash's range); `relayed_open` the open relayed connections of a worker
    /// (least-conn with `--proxy`: the relays count them, not the dispatcher).
    pub fn connection(
        &mut self,
        conn: C,
        now: Instant,
        slots: usize,
        relayed_open: impl Fn(u32) -> u64,
    ) -> Decision<C> {
        let Some(candidates) = self.candidates.get(conn.listener()) else {
            return Decision::Drop {
                conn,
                reason: DropReason::UnknownListener,
            };
        };
        let sticky_key = conn
            .client()
            .filter(|_| self.mode == Mode::Sticky)
            .map(sticky::client_key);
        let choice = match (self.mode, sticky_key) {
            (_, Some(key)) => {
                let top = sticky::best(key, slots, |_| true);
                let own = candidates.iter().find(|c| Some(c.slot) == top);
                let deadline = conn.since() + self.sticky_wait;
                match own {
                    Some(c) => Some(*c),
                    // Its worker is (re)starting: wait for it, up to sticky_wait.
                    None if top.is_some() && now < deadline => {
                        self.wake = Some(self.wake.map_or(deadline, |w| w.min(deadline)));
                        return self.wait(conn);
                    }
                    // Waited long enough: the client's next choice among those ready.
                    None => candidates
                        .iter()
                        .max_by_key(|c| sticky::weight(key, c.slot))
                        .copied(),
                }
            }
            (Mode::LeastConn, _) => {
                let (pending, open) = (&self.pending, &self.open);
                self.rr.pick_least(candidates, |c| match c.via {
                    Via::NewConn => pending.get(&c.pid).map_or(0, HashMap::len) as u64,
                    Via::Socket => open.get(&c.pid).map_or(0, OpenEstimate::open),
                    Via::Proxy(_) => relayed_open(c.pid),
                })
            }
            _ => {
                // Round-robin still skips a worker slow to answer its last `newconn`.
                let pending = &self.pending;
                self.rr.pick_least(candidates, |c| {
                    pending.get(&c.pid).map_or(0, HashMap::len) as u64
                })
            }
        };
        match choice {
            Some(to) => {
                self.warned_no_taker = false;
                if matches!(to.via, Via::Proxy(_)) && conn.tries() >= RELAY_TRIES {
                    return Decision::Drop {
                        conn,
                        reason: DropReason::TooManyTries,
                    };
                }
                Decision::HandTo { conn, to }
            }
            None => match self.wait(conn) {
                Decision::Wait => Decision::WaitNobodyTakes,
                other => other,
            },
        }
    }

    /// Puts a connection in line for the next ready worker (or closes it if the line is
    /// full): [`Decision::Wait`] or [`Decision::Drop`].
    pub fn wait(&mut self, conn: C) -> Decision<C> {
        if self.waiting.len() < WAITING_MAX {
            self.waiting.push_back(conn);
            Decision::Wait
        } else {
            Decision::Drop {
                conn,
                reason: DropReason::QueueFull,
            }
        }
    }

    /// Connections wait for a worker.
    pub fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// How many connections wait for a worker.
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// When a waiting sticky connection stops waiting for its own worker.
    pub fn wake(&self) -> Option<Instant> {
        self.wake
    }

    /// The waiting connections, to dispatch again (who can take them changed, or the wake
    /// time came).
    pub fn take_waiting(&mut self) -> Vec<C> {
        self.wake = None;
        self.waiting.drain(..).collect()
    }

    /// Whether to say that connections wait although `ready` workers exist: once, until a
    /// connection finds a worker again.
    pub fn warn_nobody_takes(&mut self, ready: bool) -> bool {
        if self.warned_no_taker || !ready {
            return false;
        }
        self.warned_no_taker = true;
        true
    }

    /// A `newconn` numbered `seq` went to `pid`; `kept` is herd's copy until it answers.
    pub fn sent_newconn(&mut self, pid: u32, seq: u64, kept: C) {
        self.pending.entry(pid).or_default().insert(seq, kept);
    }

    /// A `"connection"` went to `pid`; true if the worker should now be asked how many it
    /// has open (least-conn).
    pub fn sent_socket(&mut self, pid: u32) -> bool {
        self.open.get_mut(&pid).is_some_and(|e| {
            e.handed();
            e.ask()
        })
    }

    /// `pid` answered the `newconn` numbered `seq`.
    pub fn answered(&mut self, pid: u32, seq: u64, accepted: bool) -> Answer<C> {
        let Some(conn) = self.pending.get_mut(&pid).and_then(|p| p.remove(&seq)) else {
            return Answer::Unknown;
        };
        if accepted {
            Answer::Accepted(conn)
        } else {
            self.stale = true;
            Answer::Refused(conn)
        }
    }

    /// A `"connection"` worker answered how many of its connections are open.
    pub fn open_count(&mut self, pid: u32, count: u64) {
        if let Some(e) = self.open.get_mut(&pid) {
            e.answered(count);
        }
    }

    /// The `"connection"` workers to ask for their open connections now (least-conn),
    /// marked as asked.
    pub fn due_questions(&mut self) -> Vec<u32> {
        self.open
            .iter_mut()
            .filter_map(|(pid, e)| e.ask().then_some(*pid))
            .collect()
    }

    /// A worker is gone: connections sent to it and not acknowledged are returned to be
    /// closed (it may have read from them; another worker could replay half a request).
    pub fn worker_gone(&mut self, pid: u32) -> Option<HashMap<u64, C>> {
        self.open.remove(&pid);
        self.stale = true;
        self.pending.remove(&pid)
    }
}

#[cfg(test)]
#[path = "dispatch_tests.rs"]
mod tests;
