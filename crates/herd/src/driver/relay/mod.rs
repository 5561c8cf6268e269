//! `--proxy`: each worker listens on a private port of 127.0.0.1, and herd relays the
//! connections it accepts to the worker the balance mode picked. The byte copying runs on a
//! multi-threaded runtime of its own, so relayed traffic never delays the supervisor (whose
//! runtime has one thread), and the relays of all workers use every core.
//!
//! A worker counts as listening (ready, under `--ready auto`/`notify`) once a TCP connect
//! to its port succeeds ([`Relays::watch`]). A connection whose worker refuses the connect
//! was not read from yet, so it goes back in line for another worker.
//!
//! What relays cost herd, and what happens when herd runs short, is `limits`: the memory a
//! burst of relays leaves behind, and the descriptors a relay waits for.

mod limits;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;

use crate::balance::accept::Conn;
use crate::proxy::header::{Header, Version};
use crate::proxy::{probe, relay};
use limits::{OpenGuard, Total};

/// How often a starting worker's port is tried.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// The relays and the private ports of the workers.
pub(super) struct Relays {
    rt: Option<tokio::runtime::Runtime>,
    header: Option<Version>,
    /// Private port of each live worker, by pid.
    ports: HashMap<u32, u16>,
    /// Open relayed connections of each worker, by pid (least-conn reads them).
    open: HashMap<u32, Arc<AtomicU64>>,
    /// Open relayed connections of all workers.
    total: Arc<Total>,
    /// Port probes of workers not yet listening.
    probes: HashMap<u32, tokio::task::JoinHandle<()>>,
}

impl Relays {
    /// For the accept loops: hold while relays wait for a descriptor.
    pub(super) fn hold(&self) -> crate::balance::accept::Hold {
        let total = self.total.clone();
        Arc::new(move || total.starving())
    }

    /// Starts the relay runtime with `threads` threads.
    pub(super) fn start(threads: usize, header: Option<Version>) -> std::io::Result<Relays> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("herd-relay")
            .enable_io()
            .enable_time()
            .build()?;
        Ok(Relays {
            rt: Some(rt),
            header,
            ports: HashMap::new(),
            open: HashMap::new(),
            total: Arc::new(Total::new()),
            probes: HashMap::new(),
        })
    }

    /// The private port of worker `pid`.
    pub(super) fn port(&self, pid: u32) -> Option<u16> {
        self.ports.get(&pid).copied()
    }

    /// Open relayed connections of worker `pid`.
    pub(super) fn open(&self, pid: u32) -> u64 {
        self.open.get(&pid).map_or(0, |n| n.load(Ordering::Relaxed))
    }

    /// Worker `pid` was started with `PORT=port`: `listening` gets its pid once the port
    /// answers. Runs on the caller's runtime.
    pub(super) fn watch(&mut self, pid: u32, port: u16, listening: mpsc::UnboundedSender<u32>) {
        self.ports.insert(pid, port);
        let probe = tokio::spawn(async move {
            probe::wait_listening(port, PROBE_INTERVAL).await;
            let _ = listening.send(pid);
        });
        self.probes.insert(pid, probe);
    }

    /// Worker `pid` is listening: its probe is done.
    pub(super) fn listening(&mut self, pid: u32) {
        self.probes.remove(&pid);
    }

    /// Worker `pid` is gone.
    pub(super) fn forget(&mut self, pid: u32) {
        self.ports.remove(&pid);
        self.open.remove(&pid);
        if let Some(p) = self.probes.remove(&pid) {
            p.abort();
        }
    }

    /// Relays `conn` to worker `pid` on `port`. If the worker refuses the connect, the
    /// connection goes back to `requeue` for another worker.
    pub(super) fn relay(&mut self, pid: u32, port: u16, conn: Conn, requeue: mpsc::Sender<Conn>) {
        let Some(rt) = self.rt.as_ref() else {
            return;
        };
        let open = self.open.entry(pid).or_default().clone();
        let guard = OpenGuard::new(open, self.total.clone());
        let version = self.header;
        rt.spawn(async move {
            let total = guard.total();
            let Conn {
                index,
                fd,
                peer,
                since,
                tries,
                replay,
            } = conn;
            let Ok(client) = tokio::net::TcpStream::from_std(std::net::TcpStream::from(fd)) else {
                return;
            };
            let worker = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let header = match (version, peer, client.local_addr()) {
                (Some(v), Some(peer), Ok(local)) => Some(Header::new(v, peer, local)),
                _ => None,
            };
            let header = header.as_ref().map(Header::as_bytes);
            let (client, sent) = match limits::relay_waiting_for_fds(client, worker, header, replay, total).await {
                Ok(_) => return,
                Err(relay::RelayError::Connect { client, sent, source, .. }) => {
                    debug!(pid, "worker (pid {pid}) refused a relayed connection: {source}");
                    (client, sent)
                }
                // A worker that stopped listening resets the connections it had not
                // accepted yet: they go to another worker, with what the client sent.
                Err(relay::RelayError::Unanswered { client, sent, source, .. }) => {
                    debug!(pid, "worker (pid {pid}) reset a relayed connection before answering: {source}; replaying it");
                    (client, sent)
                }
                Err(e) => {
                    debug!(pid, "relay to worker (pid {pid}) ended: {e}");
                    return;
                }
            };
            let Ok(std) = client.into_std() else { return };
            let conn = Conn {
                index,
                fd: OwnedFd::from(std),
                peer,
                since,
                tries: tries + 1,
                replay: sent,
            };
            let _ = requeue.send(conn).await;
        });
    }
}

impl Drop for Relays {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) from inside another one.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
