//! `--proxy`: each worker listens on a private port of 127.0.0.1, and herd relays the
//! connections it accepts to the worker the balance mode picked. The byte copying runs on a
//! multi-threaded runtime of its own, so relayed traffic never delays the supervisor (whose
//! runtime has one thread), and the relays of all workers use every core.
//!
//! A worker counts as listening (ready, under `--ready auto`/`notify`) once a TCP connect
//! to its port succeeds ([`Relays::watch`]). A connection whose worker refuses the connect
//! was not read from yet, so it goes back in line for another worker.
//!
//! Each relay has a copy buffer per direction. The allocator keeps what a burst of relays
//! freed for itself, so once most of a large burst has ended (the open relays fall to a
//! quarter of a peak of at least [`TRIM_AFTER_PEAK`], and again once few are left) herd gives
//! that memory back.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::debug;

use crate::balance::accept::Conn;
use crate::proxy::header::{Header, Version};
use crate::proxy::{probe, relay};

/// How often a starting worker's port is tried.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);

/// A burst of relays worth giving back: once the open relays fall from a peak of at least
/// this many to a quarter of it, the memory the allocator kept goes back to the system.
/// Why: glibc keeps freed memory in its arenas, and each relay had two 64 KiB copy
/// buffers: 10 000 idle relayed connections left herd at 210 MB after they closed
/// (scripts/chaos, `idle`), 9 MB once trimmed. 256 relays: up to 32 MiB of buffers.
const TRIM_AFTER_PEAK: u64 = 256;

/// After a burst was given back, the quarter still open then is given back once the open
/// relays fall to this many (300 relays left 6.6 MB behind with only the first trim).
const TRIM_TAIL: u64 = 16;

/// Open relays of every worker, and their peak since memory was last given back.
#[derive(Default)]
struct Total {
    open: AtomicU64,
    peak: AtomicU64,
    /// A burst was given back and its tail was not yet.
    tail: AtomicBool,
    /// Relays waiting for a descriptor of herd's (accepting waits with them).
    starved: AtomicU64,
    /// Descriptors kept in reserve (of /dev/null), given up one by one to relays that
    /// find none: each lets one through, whose end frees two (when every descriptor is
    /// held by a client waiting for its relay, nothing else would free one).
    reserve: std::sync::Mutex<Vec<OwnedFd>>,
    /// Fewer than [`RESERVE`] are kept: a relay that ends once none waits opens them again.
    reserve_low: AtomicBool,
}

/// Descriptors kept in reserve.
const RESERVE: usize = 4;

impl Total {
    fn new() -> Total {
        let total = Total::default();
        total.refill();
        total
    }

    /// Opens the reserve up to [`RESERVE`], as far as descriptors allow.
    fn refill(&self) {
        let Ok(mut reserve) = self.reserve.lock() else {
            return;
        };
        while reserve.len() < RESERVE {
            match std::fs::File::open("/dev/null") {
                Ok(f) => reserve.push(OwnedFd::from(f)),
                Err(_) => break,
            }
        }
        self.reserve_low
            .store(reserve.len() < RESERVE, Ordering::Relaxed);
    }

    /// Closes one reserved descriptor, if one is left.
    fn release_one(&self) -> bool {
        let released = self.reserve.lock().ok().and_then(|mut r| r.pop()).is_some();
        if released {
            self.reserve_low.store(true, Ordering::Relaxed);
        }
        released
    }
}

/// Open relayed connections of one worker, and of all; the counts drop when the relay ends.
struct OpenGuard(Arc<AtomicU64>, Arc<Total>);

impl OpenGuard {
    fn new(worker: Arc<AtomicU64>, total: Arc<Total>) -> OpenGuard {
        worker.fetch_add(1, Ordering::Relaxed);
        let open = total.open.fetch_add(1, Ordering::Relaxed) + 1;
        total.peak.fetch_max(open, Ordering::Relaxed);
        OpenGuard(worker, total)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        // Only once no relay waits: until then what this one frees is theirs.
        if self.1.reserve_low.load(Ordering::Relaxed) && self.1.starved.load(Ordering::Relaxed) == 0
        {
            self.1.refill();
        }
        let open = self
            .1
            .open
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        let total = &self.1;
        let peak = total.peak.load(Ordering::Relaxed);
        // One relay wins the exchange and trims; the peak starts again from here.
        if peak >= TRIM_AFTER_PEAK
            && open <= peak / 4
            && total
                .peak
                .compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            total.tail.store(true, Ordering::Relaxed);
            give_back_memory();
        } else if open <= TRIM_TAIL && total.tail.swap(false, Ordering::Relaxed) {
            give_back_memory();
        }
    }
}

/// Returns the free memory of glibc's arenas to the system, on a thread of its own (with
/// hundreds of MiB free it takes milliseconds, which no relay should wait for).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn give_back_memory() {
    let _ = std::thread::Builder::new()
        .name("herd-trim".into())
        .spawn(|| {
            // SAFETY: malloc_trim only releases free memory of the allocator's own arenas.
            unsafe { libc::malloc_trim(0) };
        });
}

/// Other allocators return memory by themselves (musl's) or not at all.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn give_back_memory() {}

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
        Arc::new(move || total.starved.load(Ordering::Relaxed) > 0)
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
        let total = self.total.clone();
        rt.spawn(async move {
            let _guard = guard;
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
            let (client, sent) = match relay_waiting_for_fds(client, worker, header, replay, &total).await {
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

/// How long a relay waits for herd to have a descriptor free for the worker's side.
const FD_WAIT: Duration = Duration::from_secs(10);

/// [`relay::relay_replaying`], waiting while herd itself is out of descriptors (EMFILE,
/// ENFILE) or socket memory for the worker's side: that is herd's shortage, not the
/// worker's refusal, and trying other workers at once only closes the client (at an fd
/// limit of 300, 1 009 of 2 000 clients arriving at once were closed so). Accepting waits
/// meanwhile, so that the descriptors other relays free come to the waiting ones; a
/// reserved descriptor is taken first if one is left. The wait doubles from 5 ms to
/// 100 ms, for at most [`FD_WAIT`]; the client waits with it.
async fn relay_waiting_for_fds(
    mut client: tokio::net::TcpStream,
    worker: SocketAddr,
    header: Option<&[u8]>,
    mut replay: Vec<u8>,
    total: &Total,
) -> Result<(u64, u64), relay::RelayError> {
    let mut pause = Duration::from_millis(5);
    let mut waited = Duration::ZERO;
    loop {
        let result = relay::relay_replaying(client, worker, header, replay).await;
        match result {
            Err(relay::RelayError::Connect {
                client: c,
                sent,
                source,
                ..
            }) if herd_is_short(&source) && waited < FD_WAIT => {
                if total.release_one() {
                    // A reserved descriptor lets this relay through at once; the two
                    // its end frees go to the next waiting ones.
                    (client, replay) = (c, sent);
                    continue;
                }
                let starving = Starving::new(total);
                debug!("no descriptor for a relay to {worker} ({source}): waiting {pause:?}");
                tokio::time::sleep(pause).await;
                drop(starving);
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(100));
                (client, replay) = (c, sent);
            }
            other => return other,
        }
    }
}

/// A relay counted among those waiting for a descriptor, until dropped.
struct Starving<'a>(&'a Total);

impl<'a> Starving<'a> {
    fn new(total: &'a Total) -> Starving<'a> {
        total.starved.fetch_add(1, Ordering::Relaxed);
        Starving(total)
    }
}

impl Drop for Starving<'_> {
    fn drop(&mut self) {
        self.0.starved.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Errors of a connect that come from herd's own limits, not from the worker.
fn herd_is_short(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Drop for Relays {
    fn drop(&mut self) {
        // A runtime may not be dropped (blocking) from inside another one.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}
