//! `--balance round-robin`: herd accepts every connection and hands it to the next ready
//! worker that serves that listener, as Node's own primary does in SCHED_RR, over Node's
//! cluster protocol (`newconn` + the fd, answered by `accepted`). A worker that is stopping
//! or not ready gets nothing; a connection with no worker to take it waits (bounded) until
//! one is ready; one refused (`accepted: false`) goes to the next worker. herd keeps its
//! copy of a connection until the worker has accepted it, then closes it: no fd is leaked.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use tokio::sync::mpsc;
use tracing::warn;

use super::Driver;
use crate::balance::{accept, RoundRobin};
use crate::channel::cluster;

/// Connections waiting for a ready worker; more are closed (the client sees a reset rather
/// than herd's memory growing without bound).
const WAITING_MAX: usize = 4096;

/// The primary's side of the handoff modes.
pub(super) struct Handoff {
    pub(super) conns: mpsc::Receiver<(usize, OwnedFd)>,
    waiting: VecDeque<(usize, OwnedFd)>,
    /// Sent and not yet accepted, by worker pid then newconn seq (the per-worker count is
    /// what `pick_least` balances on).
    pending: HashMap<u32, HashMap<u64, (usize, OwnedFd)>>,
    rr: RoundRobin,
    /// Key and address of each listener, by index.
    servers: Vec<Option<(String, SocketAddr)>>,
}

impl Handoff {
    /// Starts the accept loops on the TCP listeners of `listeners`.
    pub(super) fn start(listeners: &crate::listen::Listeners) -> std::io::Result<Handoff> {
        let sockets = listeners.accept_sockets()?;
        let mut servers = Vec::new();
        for addr in listeners.local_addrs() {
            servers.push(match addr {
                crate::listen::ListenAddr::Tcp(a) => Some((addr.to_string(), a)),
                crate::listen::ListenAddr::Unix(_) => None,
            });
        }
        let (tx, conns) = mpsc::channel(accept::QUEUE);
        accept::start(sockets, tx)?;
        Ok(Handoff {
            conns,
            waiting: VecDeque::new(),
            pending: HashMap::new(),
            rr: RoundRobin::default(),
            servers,
        })
    }

    /// The key and local address a cluster worker's `listen(port)` is answered with.
    pub(super) fn server(&self, index: usize) -> Option<&(String, SocketAddr)> {
        self.servers.get(index).and_then(Option::as_ref)
    }
}

impl Driver {
    /// Gives connection `fd` of listener `index` to the next ready worker serving it.
    pub(super) fn dispatch(&mut self, index: usize, fd: OwnedFd) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let candidates: Vec<u32> = self
            .sup
            .serving()
            .into_iter()
            .map(|(_, pid)| pid)
            .filter(|pid| {
                self.channels
                    .get(pid)
                    .is_some_and(|l| !l.closed && l.serves.contains(&index))
            })
            .collect();
        let pending = &h.pending;
        let in_flight = |pid: u32| pending.get(&pid).map_or(0, HashMap::len);
        let Some(pid) = h.rr.pick_least(&candidates, in_flight) else {
            if h.waiting.len() < WAITING_MAX {
                h.waiting.push_back((index, fd));
            } else {
                warn!("{WAITING_MAX} connections wait for a ready worker: closing one");
            }
            return;
        };
        let Some(key) = h.server(index).map(|(k, _)| k.clone()) else {
            return;
        };
        let Some(link) = self.channels.get_mut(&pid) else {
            return;
        };
        let copy = match fd.try_clone() {
            Ok(c) => c,
            Err(e) => {
                warn!("cannot keep a copy of a connection for worker {pid}: {e}");
                return;
            }
        };
        let seq = link.next_seq();
        if link
            .channel
            .send_handle("net.Native", cluster::newconn(&key, seq), fd)
        {
            h.pending.entry(pid).or_default().insert(seq, (index, copy));
        } else {
            h.waiting.push_back((index, copy));
        }
    }

    /// A worker answered `newconn` `ack`.
    pub(super) fn on_accepted(&mut self, pid: u32, ack: u64, accepted: bool) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let Some((index, fd)) = h.pending.get_mut(&pid).and_then(|p| p.remove(&ack)) else {
            return;
        };
        if accepted {
            drop(fd); // the worker has its own copy now
        } else {
            if let Some(link) = self.channels.get_mut(&pid) {
                link.serves.remove(&index);
            }
            self.dispatch(index, fd);
        }
    }

    /// Connections that waited for a worker: try again (after readiness changed).
    pub(super) fn retry_waiting(&mut self) {
        let Some(h) = self.handoff.as_mut() else {
            return;
        };
        let waiting: Vec<(usize, OwnedFd)> = h.waiting.drain(..).collect();
        for (index, fd) in waiting {
            self.dispatch(index, fd);
        }
    }

    /// A worker is gone: connections sent to it and not acknowledged are closed (it may
    /// have read from them; giving them to another worker could replay half a request).
    pub(super) fn forget_handoffs(&mut self, pid: u32) {
        if let Some(h) = self.handoff.as_mut() {
            h.pending.remove(&pid);
        }
    }
}
