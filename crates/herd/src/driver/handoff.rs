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
//!
//! Which worker, whether to wait and when to give up are decided by
//! [`crate::balance::dispatch::Dispatcher`]; this module only does the I/O: it lists who can
//! take connections, sends the fds, keeps the timer and closes what the dispatcher drops.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use super::Driver;
use crate::balance::accept::{self, Conn};
use crate::balance::dispatch::{
    Answer, Candidate, Decision, Dispatcher, DropReason, Mode, Via, RELAY_TRIES, WAITING_MAX,
};
use crate::channel::node_cluster;
use crate::config::Transport;
use crate::listen::Balance;

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
    servers: Vec<Option<Server>>,
    core: Dispatcher<Conn>,
}

impl Handoff {
    /// Starts the accept loops on the TCP listeners of `listeners`.
    pub(super) fn start(
        listeners: &crate::listen::Listeners,
        policy: Balance,
        sticky_wait: Duration,
        hold: Option<accept::Hold>,
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
        accept::start(sockets, tx.clone(), hold)?;
        let mode = match policy {
            Balance::LeastConn => Mode::LeastConn,
            Balance::Sticky => Mode::Sticky,
            _ => Mode::RoundRobin,
        };
        Ok(Handoff {
            conns,
            requeue: tx,
            servers,
            core: Dispatcher::new(mode, sticky_wait),
        })
    }

    /// The listener a cluster worker's `listen(port)` is answered with.
    pub(super) fn server(&self, index: usize) -> Option<&Server> {
        self.servers.get(index).and_then(Option::as_ref)
    }

    /// Who may take connections changed: the candidates are rebuilt before the next one.
    pub(super) fn invalidate(&mut self) {
        self.core.invalidate();
    }

    /// A `"connection"` worker answered how many of its connections are open.
    pub(super) fn on_count(&mut self, pid: u32, count: u64) {
        self.core.open_count(pid, count);
    }

    /// Connections wait for a worker.
    pub(super) fn has_waiting(&self) -> bool {
        self.core.has_waiting()
    }

    /// How many connections wait for a worker.
    pub(super) fn waiting(&self) -> usize {
        self.core.waiting_len()
    }

    /// When the earliest sticky connection stops waiting for its own worker.
    pub(super) fn wake(&self) -> Option<tokio::time::Instant> {
        self.core.wake().map(tokio::time::Instant::from_std)
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
        let mut lists = Vec::with_capacity(h.servers.len());
        for index in 0..h.servers.len() {
            let mut list = Vec::new();
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
            lists.push(list);
        }
        h.core.set_candidates(lists);
    }

    /// Gives a connection to the worker the balance mode picks, or lets it wait for one.
    pub(super) fn dispatch(&mut self, conn: Conn) {
        if self.handoff.as_ref().is_some_and(|h| h.core.is_stale()) {
            self.rebuild_candidates();
        }
        let instances = self.sup.instances();
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let relays = self.relays.as_ref();
        let index = conn.index;
        let decision = h.core.connection(conn, Instant::now(), instances, |pid| {
            relays.map_or(0, |r| r.open(pid))
        });
        self.carry_out(decision, index);
    }

    fn carry_out(&mut self, decision: Decision<Conn>, index: usize) {
        match decision {
            Decision::HandTo { conn, to } => self.deliver(to, conn, true),
            Decision::Wait => {}
            Decision::WaitNobodyTakes => self.warn_if_nobody_takes(index),
            Decision::Drop { reason, .. } => match reason {
                DropReason::QueueFull => {
                    warn!("{WAITING_MAX} connections wait for a ready worker: closing one")
                }
                DropReason::TooManyTries => {
                    warn!("a connection found no worker to relay to after {RELAY_TRIES} tries: closed")
                }
                DropReason::UnknownListener => {}
            },
        }
    }

    /// Puts a connection back in line: the worker chosen for it cannot be sent it.
    fn wait_again(&mut self, conn: Conn) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let index = conn.index;
        let decision = h.core.wait(conn);
        self.carry_out(decision, index);
    }

    /// Gives `conn` to the worker `c`; a client's connection (`client`, not a health
    /// check) is counted for `/metrics`.
    pub(super) fn deliver(&mut self, c: Candidate, conn: Conn, client: bool) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let proxied = matches!(c.via, Via::Proxy(_));
        if client {
            self.tally.handed(proxied);
        }
        if let Via::Proxy(port) = c.via {
            if let Some(r) = self.relays.as_mut() {
                r.relay(c.pid, port, conn, h.requeue.clone());
            }
            if let Some(link) = self.channels.get_mut(&c.pid).filter(|_| client) {
                link.handed += 1;
            }
            return;
        }
        let Some(link) = self.channels.get_mut(&c.pid) else {
            self.wait_again(conn);
            return;
        };
        if client {
            link.handed += 1;
        }
        if c.via == Via::Socket {
            let Conn { fd, .. } = conn;
            if link
                .channel
                .send_handle_line(node_cluster::CONNECTION_LINE, fd)
                .is_ok()
            {
                link.sockets_handed += 1;
                if h.core.sent_socket(c.pid) {
                    link.channel.send_line(node_cluster::SOCKET_COUNT_QUERY);
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
            h.core.sent_newconn(c.pid, seq, kept);
        } else {
            self.wait_again(kept);
        }
    }

    /// Connections wait although workers are ready: none of them takes connections in this
    /// mode. Said once (until one does), naming what a worker must do.
    fn warn_if_nobody_takes(&mut self, index: usize) {
        let ready = self.sup.serving();
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        if !h.core.warn_nobody_takes(!ready.is_empty()) {
            return;
        }
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
        if self.liveness_answer(pid, ack) {
            return;
        }
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        match h.core.answered(pid, ack, accepted) {
            Answer::Unknown => {}
            Answer::Accepted(conn) => drop(conn), // the worker has its own copy now
            Answer::Refused(conn) => {
                if let Some(link) = self.channels.get_mut(&pid) {
                    link.serves.remove(&conn.index);
                }
                self.dispatch(conn);
            }
        }
    }

    /// Connections that waited for a worker: try again (who can take them changed, or a
    /// sticky one waited long enough for its own worker).
    pub(super) fn retry_waiting(&mut self) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        for conn in h.core.take_waiting() {
            self.dispatch(conn);
        }
    }

    /// A worker is gone: connections sent to it and not acknowledged are closed (it may
    /// have read from them; giving them to another worker could replay half a request).
    pub(super) fn forget_handoffs(&mut self, pid: u32) {
        if let Some(h) = self.handoff.as_mut() {
            drop(h.core.worker_gone(pid));
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
        for pid in h.core.due_questions() {
            if let Some(link) = self.channels.get(&pid) {
                link.channel.send_line(node_cluster::SOCKET_COUNT_QUERY);
            }
        }
    }
}
