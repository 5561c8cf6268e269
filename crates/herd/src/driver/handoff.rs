//! The handoff modes (`--balance round-robin | least-conn | sticky`): herd accepts every
//! connection and gives it to one ready worker, chosen by the mode, in one of three ways:
//!
//! - a Node cluster worker that called `listen()` on herd's port gets Node's own `newconn`
//!   (the fd, answered by `accepted`), as from Node's SCHED_RR primary. herd keeps a copy
//!   until the answer: a refused connection goes to another worker, an accepted one is closed
//!   in herd, so no fd is leaked;
//! - any other worker with a channel (another language, or a Node program that did not
//!   listen on herd's port, as in the article's sticky-session example) gets the message
//!   `"connection"` with a `net.Socket`;
//! - with `--proxy`, the worker's private port gets a relayed connection (`relay`).
//!
//! A worker that is stopping or not ready gets nothing. A connection with no worker to take
//! it waits (bounded in number) until one is ready.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use super::Driver;
use crate::balance::accept::{self, Conn};
use crate::balance::load::OpenEstimate;
use crate::balance::{sticky, RoundRobin};
use crate::channel::node_cluster;
use crate::config::Transport;
use crate::listen::Balance;

/// Connections waiting for a ready worker; more are closed (the client sees a reset rather
/// than herd's memory growing without bound).
const WAITING_MAX: usize = 4096;
/// Workers tried for one relayed connection before it is closed.
const RELAY_TRIES: u8 = 3;

/// How a connection reaches a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// Node cluster `newconn`.
    NewConn,
    /// The `"connection"` message with a `net.Socket`.
    Socket,
    /// Relayed to the worker's private port.
    Proxy(u16),
}

/// A worker that can take a connection of some listener now.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    slot: usize,
    pid: u32,
    via: Via,
}

/// One of herd's listeners, as Node cluster workers know it.
#[derive(Debug)]
pub(super) struct Server {
    /// The key of Node's cluster protocol.
    pub(super) key: String,
    /// The same, as a JSON string (written into every `newconn` line).
    key_json: std::sync::Arc<str>,
    /// Its address; `None` for a unix socket (Node asks none for a pipe).
    pub(super) local: Option<SocketAddr>,
}

/// The primary's side of the handoff modes.
pub(super) struct Handoff {
    pub(super) conns: mpsc::Receiver<Conn>,
    /// Puts a connection back in line (a relay whose worker refused the connect).
    pub(super) requeue: mpsc::Sender<Conn>,
    policy: Balance,
    sticky_wait: Duration,
    waiting: VecDeque<Conn>,
    /// `newconn`s sent and not yet answered, by worker pid then seq.
    pending: HashMap<u32, HashMap<u64, Conn>>,
    /// least-conn: the open connections of `"connection"` workers.
    open: HashMap<u32, OpenEstimate>,
    rr: RoundRobin,
    servers: Vec<Option<Server>>,
    /// Who can take a connection, by listener; rebuilt when `stale`.
    candidates: Vec<Vec<Candidate>>,
    stale: bool,
    /// When the earliest sticky connection stops waiting for its own worker.
    pub(super) wake: Option<tokio::time::Instant>,
    /// Said that ready workers take no connection (said once until one does).
    warned_no_taker: bool,
}

impl Handoff {
    /// Starts the accept loops on the TCP listeners of `listeners`.
    pub(super) fn start(
        listeners: &crate::listen::Listeners,
        policy: Balance,
        sticky_wait: Duration,
    ) -> std::io::Result<Handoff> {
        let sockets = listeners.accept_sockets()?;
        let mut servers = Vec::new();
        for addr in listeners.local_addrs() {
            let key = addr.to_string();
            let key_json = serde_json::Value::from(key.as_str()).to_string().into();
            let local = match addr {
                crate::listen::ListenAddr::Tcp(a) => Some(a),
                crate::listen::ListenAddr::Unix(_) => None,
            };
            servers.push(Some(Server {
                key,
                key_json,
                local,
            }));
        }
        let (tx, conns) = mpsc::channel(accept::QUEUE);
        accept::start(sockets, tx.clone())?;
        Ok(Handoff {
            conns,
            requeue: tx,
            policy,
            sticky_wait,
            waiting: VecDeque::new(),
            pending: HashMap::new(),
            open: HashMap::new(),
            rr: RoundRobin::default(),
            candidates: vec![Vec::new(); servers.len()],
            servers,
            stale: true,
            wake: None,
            warned_no_taker: false,
        })
    }

    /// The listener a cluster worker's `listen(port)` is answered with.
    pub(super) fn server(&self, index: usize) -> Option<&Server> {
        self.servers.get(index).and_then(Option::as_ref)
    }

    /// Who may take connections changed: the candidates are rebuilt before the next one.
    pub(super) fn invalidate(&mut self) {
        self.stale = true;
    }

    /// A `"connection"` worker answered how many of its connections are open.
    pub(super) fn on_count(&mut self, pid: u32, count: u64) {
        if let Some(e) = self.open.get_mut(&pid) {
            e.answered(count);
        }
    }

    /// The `"connection"` workers to ask for their open connections (least-conn), marked
    /// as asked.
    pub(super) fn due_questions(&mut self) -> impl Iterator<Item = u32> + '_ {
        self.open
            .iter_mut()
            .filter_map(|(pid, e)| e.ask().then_some(*pid))
    }

    /// Connections wait for a worker.
    pub(super) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    fn wait(&mut self, conn: Conn) {
        if self.waiting.len() < WAITING_MAX {
            self.waiting.push_back(conn);
        } else {
            warn!("{WAITING_MAX} connections wait for a ready worker: closing one");
        }
    }
}

impl Driver {
    /// Who can take a connection of each listener now.
    fn rebuild_candidates(&mut self) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let proxy = matches!(self.plan.transport, Transport::Proxy(_));
        let serving = self.sup.serving();
        for (index, list) in h.candidates.iter_mut().enumerate() {
            list.clear();
            for &(slot, pid) in &serving {
                let via = if proxy {
                    match self.relays.as_ref().and_then(|r| r.port(pid)) {
                        Some(port) => Via::Proxy(port),
                        None => continue,
                    }
                } else {
                    match self.channels.get(&pid) {
                        Some(l) if l.closed => continue,
                        Some(l) if l.serves.contains(&index) => Via::NewConn,
                        Some(l) if l.takes_sockets() => Via::Socket,
                        _ => continue,
                    }
                };
                list.push(Candidate { slot, pid, via });
            }
        }
        let least = h.policy == Balance::LeastConn;
        if least && !proxy {
            let socket_pids: Vec<u32> = h
                .candidates
                .iter()
                .flatten()
                .filter(|c| c.via == Via::Socket)
                .map(|c| c.pid)
                .collect();
            h.open.retain(|pid, _| socket_pids.contains(pid));
            for pid in socket_pids {
                h.open.entry(pid).or_default();
            }
        }
        h.stale = false;
    }

    /// Gives a connection to the worker the balance mode picks, or lets it wait for one.
    pub(super) fn dispatch(&mut self, conn: Conn) {
        if self.handoff.as_ref().is_some_and(|h| h.stale) {
            self.rebuild_candidates();
        }
        let instances = self.sup.instances();
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let Some(candidates) = h.candidates.get(conn.index) else {
            return;
        };
        // A unix socket's clients have no address to stick by: they take turns.
        let sticky_key = conn
            .peer
            .filter(|_| h.policy == Balance::Sticky)
            .map(|p| sticky::client_key(p.ip()));
        let choice = match (h.policy, sticky_key) {
            (_, Some(key)) => {
                let top = sticky::best(key, instances, |_| true);
                let own = candidates.iter().find(|c| Some(c.slot) == top);
                let deadline = conn.since + h.sticky_wait;
                match own {
                    Some(c) => Some(*c),
                    // Its worker is (re)starting: wait for it, up to --sticky-wait.
                    None if top.is_some() && Instant::now() < deadline => {
                        let at = tokio::time::Instant::from_std(deadline);
                        h.wake = Some(h.wake.map_or(at, |w| w.min(at)));
                        h.wait(conn);
                        return;
                    }
                    None => candidates
                        .iter()
                        .max_by_key(|c| sticky::weight(key, c.slot))
                        .copied(),
                }
            }
            (Balance::LeastConn, _) => {
                let relays = self.relays.as_ref();
                let (pending, open) = (&h.pending, &h.open);
                h.rr.pick_least(candidates, |c| match c.via {
                    Via::NewConn => pending.get(&c.pid).map_or(0, HashMap::len) as u64,
                    Via::Socket => open.get(&c.pid).map_or(0, OpenEstimate::open),
                    Via::Proxy(_) => relays.map_or(0, |r| r.open(c.pid)),
                })
            }
            _ => {
                let pending = &h.pending;
                h.rr.pick_least(candidates, |c| {
                    pending.get(&c.pid).map_or(0, HashMap::len) as u64
                })
            }
        };
        match choice {
            Some(c) => {
                h.warned_no_taker = false;
                self.deliver(c, conn)
            }
            None => {
                let index = conn.index;
                h.wait(conn);
                self.warn_if_nobody_takes(index);
            }
        }
    }

    fn deliver(&mut self, c: Candidate, conn: Conn) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        if let Via::Proxy(port) = c.via {
            if conn.tries >= RELAY_TRIES {
                warn!("a connection found no worker to relay to after {RELAY_TRIES} tries: closed");
                return;
            }
            if let Some(r) = self.relays.as_mut() {
                r.relay(c.pid, port, conn, h.requeue.clone());
            }
            return;
        }
        let Some(link) = self.channels.get_mut(&c.pid) else {
            h.wait(conn);
            return;
        };
        if c.via == Via::Socket {
            let Conn { fd, .. } = conn;
            if link
                .channel
                .send_handle_line(node_cluster::CONNECTION_LINE, fd)
                .is_ok()
            {
                link.sockets_handed += 1;
                if let Some(e) = h.open.get_mut(&c.pid) {
                    e.handed();
                    if e.ask() {
                        link.channel.send_line(node_cluster::SOCKET_COUNT_QUERY);
                    }
                }
            }
            // A closed channel took the fd with it: the client sees the connection close.
            return;
        }
        let Some(server) = h.server(conn.index) else {
            return;
        };
        let copy = match conn.fd.try_clone() {
            Ok(fd) => fd,
            Err(e) => {
                warn!(
                    "cannot keep a copy of a connection for worker {}: {e}",
                    c.pid
                );
                return;
            }
        };
        let seq = link.next_seq();
        let Conn {
            index,
            fd,
            peer,
            since,
            tries,
            replay,
        } = conn;
        let kept = Conn {
            index,
            fd: copy,
            peer,
            since,
            tries,
            replay,
        };
        if link.channel.send_newconn(&server.key_json, seq, fd).is_ok() {
            h.pending.entry(c.pid).or_default().insert(seq, kept);
        } else {
            h.wait(kept);
        }
    }

    /// Connections wait although workers are ready: none of them takes connections in this
    /// mode. Said once (until one does), naming what a worker must do.
    fn warn_if_nobody_takes(&mut self, index: usize) {
        let ready = self.sup.serving();
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        if h.warned_no_taker || ready.is_empty() {
            return;
        }
        h.warned_no_taker = true;
        let pids: Vec<String> = ready.iter().map(|(_, p)| p.to_string()).collect();
        warn!(
            app = %self.plan.name,
            "connections on listener {index} wait: the ready workers (pids {}) take no handed-over connection in --balance {}; a worker must be a Node cluster worker that listens on herd's port, read connections from its channel (NODE_CHANNEL_FD, see README \"Handoff\"), or run with --proxy and listen on PORT",
            pids.join(", "),
            self.plan.balance
        );
    }

    /// A worker answered `newconn` `ack`.
    pub(super) fn on_accepted(&mut self, pid: u32, ack: u64, accepted: bool) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let Some(conn) = h.pending.get_mut(&pid).and_then(|p| p.remove(&ack)) else {
            return;
        };
        if accepted {
            drop(conn); // the worker has its own copy now
        } else {
            if let Some(link) = self.channels.get_mut(&pid) {
                link.serves.remove(&conn.index);
            }
            h.invalidate();
            self.dispatch(conn);
        }
    }

    /// Connections that waited for a worker: try again (who can take them changed, or a
    /// sticky one waited long enough for its own worker).
    pub(super) fn retry_waiting(&mut self) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        h.wake = None;
        let waiting: Vec<Conn> = h.waiting.drain(..).collect();
        for conn in waiting {
            self.dispatch(conn);
        }
    }

    /// A worker is gone: connections sent to it and not acknowledged are closed (it may
    /// have read from them; giving them to another worker could replay half a request).
    pub(super) fn forget_handoffs(&mut self, pid: u32) {
        if let Some(h) = self.handoff.as_mut() {
            h.pending.remove(&pid);
            h.open.remove(&pid);
            h.invalidate();
        }
        if let Some(r) = self.relays.as_mut() {
            r.forget(pid);
        }
    }

    /// least-conn: asks the `"connection"` workers how many connections they still have
    /// open (their answers only come with a question).
    pub(super) fn ask_open_counts(&mut self) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        for pid in h.due_questions().collect::<Vec<_>>() {
            if let Some(link) = self.channels.get(&pid) {
                link.channel.send_line(node_cluster::SOCKET_COUNT_QUERY);
            }
        }
    }
}
