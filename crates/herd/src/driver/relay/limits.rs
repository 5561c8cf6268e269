//! What relays cost herd, and herd short of what a relay needs.
//!
//! Memory: glibc keeps what a burst of relays freed in its arenas (10 000 relayed
//! connections left herd at 194 MB after they closed, scripts/chaos `idle`), so once most
//! of a large burst has ended herd gives that memory back, and again once few relays are
//! left (`trim_at_end`).
//!
//! Descriptors: a relay that cannot open its worker's side because herd is out of
//! descriptors (or socket memory) waits for one (`FdWait`) instead of taking it for the
//! worker's refusal, accepting holds meanwhile ([`Total::starving`]), and a few reserved
//! descriptors let relays through when every descriptor is held by a waiting client.
//!
//! The decisions are pure functions of counts (`trim_at_end`, `FdWait`), unit-tested; the
//! rest applies them.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::debug;

use crate::proxy::relay;
use crate::supervisor::{Backoff, BackoffPolicy};

/// A burst of relays worth giving back: once the open relays fall from a peak of at least
/// this many to a quarter of it. 256 busy relays hold up to 16 MiB of copy buffers.
const TRIM_AFTER_PEAK: u64 = 256;

/// After a burst was given back, the quarter still open then is given back once the open
/// relays fall to this many (300 relays left 6.6 MB behind with only the first trim).
const TRIM_TAIL: u64 = 16;

/// Descriptors kept in reserve.
const RESERVE: usize = 4;

/// How long a relay waits for herd to have a descriptor free for the worker's side.
const FD_WAIT: Duration = Duration::from_secs(10);

/// The wait between two tries of a relay short of a descriptor: 5 ms doubling to 100 ms.
const FD_BACKOFF: BackoffPolicy = BackoffPolicy {
    initial: Duration::from_millis(5),
    max: Duration::from_millis(100),
    factor: 2,
    jitter: 0.0,
    stable_at_once: false,
};

/// What the end of a relay asks of the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trim {
    Nothing,
    /// Most of a burst has ended: give back what it freed.
    Burst,
    /// The rest of a burst given back has ended too.
    Tail,
}

/// With `open` relays left once one ended, their `peak` since memory was last given back,
/// and `tail` (a burst was given back, its tail not yet).
fn trim_at_end(open: u64, peak: u64, tail: bool) -> Trim {
    if peak >= TRIM_AFTER_PEAK && open <= peak / 4 {
        Trim::Burst
    } else if tail && open <= TRIM_TAIL {
        Trim::Tail
    } else {
        Trim::Nothing
    }
}

/// The waits of one relay short of a descriptor, until it gives up.
#[derive(Debug, Default)]
struct FdWait {
    backoff: Backoff,
    waited: Duration,
}

impl FdWait {
    /// [`FD_WAIT`] has passed: give up.
    fn over(&self) -> bool {
        self.waited >= FD_WAIT
    }

    /// How long to wait before the next try.
    fn next(&mut self) -> Duration {
        let pause = self.backoff.next(&FD_BACKOFF, 0.0);
        self.waited += pause;
        pause
    }
}

/// Open relays of every worker, their peak since memory was last given back, and herd's
/// descriptors as relays need them.
#[derive(Default)]
pub(super) struct Total {
    open: AtomicU64,
    peak: AtomicU64,
    /// A burst was given back and its tail was not yet.
    tail: AtomicBool,
    /// Relays waiting for a descriptor of herd's (accepting waits with them).
    starved: AtomicU64,
    /// Descriptors kept in reserve (of /dev/null), given up one by one to relays that
    /// find none: each lets one through, whose end frees two (when every descriptor is
    /// held by a client waiting for its relay, nothing else would free one).
    reserve: Mutex<Vec<OwnedFd>>,
    /// Fewer than [`RESERVE`] are kept: a relay that ends once none waits opens them again.
    reserve_low: AtomicBool,
}

impl Total {
    pub(super) fn new() -> Total {
        let total = Total::default();
        total.refill();
        total
    }

    /// Relays wait for a descriptor: accepting should wait too.
    pub(super) fn starving(&self) -> bool {
        self.starved.load(Ordering::Relaxed) > 0
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

    /// A relay ended, `open` are left: give memory back if [`trim_at_end`] says so (one
    /// relay wins the exchange of the peak and trims; the peak starts again from there).
    fn ended(&self, open: u64) {
        let peak = self.peak.load(Ordering::Relaxed);
        match trim_at_end(open, peak, self.tail.load(Ordering::Relaxed)) {
            Trim::Burst
                if self
                    .peak
                    .compare_exchange(peak, open, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok() =>
            {
                self.tail.store(true, Ordering::Relaxed);
                give_back_memory();
            }
            Trim::Tail if self.tail.swap(false, Ordering::Relaxed) => give_back_memory(),
            _ => {}
        }
    }
}

/// Open relayed connections of one worker, and of all; the counts drop when the relay ends.
pub(super) struct OpenGuard(Arc<AtomicU64>, Arc<Total>);

impl OpenGuard {
    pub(super) fn new(worker: Arc<AtomicU64>, total: Arc<Total>) -> OpenGuard {
        worker.fetch_add(1, Ordering::Relaxed);
        let open = total.open.fetch_add(1, Ordering::Relaxed) + 1;
        total.peak.fetch_max(open, Ordering::Relaxed);
        OpenGuard(worker, total)
    }

    /// The counts of all relays.
    pub(super) fn total(&self) -> &Total {
        &self.1
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        let total = &self.1;
        // Only once no relay waits: until then what this one frees is theirs.
        if total.reserve_low.load(Ordering::Relaxed) && !total.starving() {
            total.refill();
        }
        let open = total.open.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        total.ended(open);
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

/// [`relay::relay_replaying`], waiting while herd itself is out of descriptors (EMFILE,
/// ENFILE) or socket memory for the worker's side: that is herd's shortage, not the
/// worker's refusal, and trying other workers at once only closes the client (at an fd
/// limit of 300, 1 009 of 2 000 clients arriving at once were closed so). Accepting waits
/// meanwhile, so that the descriptors other relays free come to the waiting ones; a
/// reserved descriptor is taken first if one is left. The client waits with the relay.
pub(super) async fn relay_waiting_for_fds(
    mut client: tokio::net::TcpStream,
    worker: SocketAddr,
    header: Option<&[u8]>,
    mut replay: Vec<u8>,
    total: &Total,
) -> Result<(u64, u64), relay::RelayError> {
    let mut wait = FdWait::default();
    loop {
        let (c, sent, source) = match relay::relay_replaying(client, worker, header, replay).await {
            Err(relay::RelayError::Connect {
                client,
                sent,
                source,
                ..
            }) if herd_is_short(&source) => (client, sent, source),
            other => return other,
        };
        if wait.over() {
            return Err(relay::RelayError::Connect {
                worker,
                client: c,
                sent,
                source,
            });
        }
        (client, replay) = (c, sent);
        // A reserved descriptor lets this relay through at once; the two its end frees go
        // to the next waiting ones.
        if total.release_one() {
            continue;
        }
        let pause = wait.next();
        debug!("no descriptor for a relay to {worker} ({source}): waiting {pause:?}");
        let _starving = Starving::new(total);
        tokio::time::sleep(pause).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_given_back_at_a_quarter_of_its_peak_and_its_tail_at_sixteen() {
        // Small peaks are not worth a trim.
        assert_eq!(trim_at_end(0, TRIM_AFTER_PEAK - 1, false), Trim::Nothing);
        assert_eq!(trim_at_end(76, 300, false), Trim::Nothing);
        assert_eq!(trim_at_end(75, 300, false), Trim::Burst);
        // After the burst's trim the peak is 75: its tail waits for 16.
        assert_eq!(trim_at_end(17, 75, true), Trim::Nothing);
        assert_eq!(trim_at_end(16, 75, true), Trim::Tail);
        assert_eq!(trim_at_end(16, 75, false), Trim::Nothing);
    }

    #[test]
    fn a_relay_short_of_a_descriptor_waits_5_ms_doubling_to_100_for_10_s_in_all() {
        let mut wait = FdWait::default();
        let mut pauses = Vec::new();
        while !wait.over() {
            pauses.push(wait.next().as_millis() as u64);
        }
        assert_eq!(pauses[..6], [5, 10, 20, 40, 80, 100]);
        assert!(pauses[6..].iter().all(|&p| p == 100), "{pauses:?}");
        let total: u64 = pauses.iter().sum();
        assert!(
            (10_000..10_100).contains(&total),
            "gives up after 10 s in all: {total} ms"
        );
    }

    #[test]
    fn only_herds_own_shortages_are_waited_for() {
        let e = |n| std::io::Error::from_raw_os_error(n);
        assert!(herd_is_short(&e(libc::EMFILE)));
        assert!(herd_is_short(&e(libc::ENFILE)));
        assert!(!herd_is_short(&e(libc::ECONNREFUSED)));
        assert!(!herd_is_short(&std::io::ErrorKind::TimedOut.into()));
    }
}
