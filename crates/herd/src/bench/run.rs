//! One load run: `threads` OS threads, each with its own current-thread tokio runtime and
//! its share of the connections, each counting into its own [`Stats`]; the calling thread
//! draws the progress line (on a terminal) and merges the counts at the end. The
//! generator's own CPU time is measured over the run, per thread and in all.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::args::{Load, Pace};
use super::conn::{Connection, Shared};
use super::schedule::Schedule;
use super::stats::{Stats, Summary};

/// Time given to the threads to start and connect before the clock of the run starts, so
/// that thread start-up and the first connects are not measured as latency.
pub(super) const START_DELAY: Duration = Duration::from_millis(50);
/// How often the progress line is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// A counter on a cache line of its own: each thread bumps its own, the progress line
/// reads them all.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Counter(Arc<AtomicU64>);

/// CPU time of the calling thread (`who` = RUSAGE_THREAD) or process (RUSAGE_SELF).
fn cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage writes the struct it is given and nothing else.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Runs `load` against `addr` with `threads` threads; `progress`: draw the live line on
/// stderr.
pub fn run(load: &Load, addr: SocketAddr, threads: usize, progress: bool) -> Summary {
    let threads = threads.clamp(1, load.connections);
    let start = Instant::now() + START_DELAY;
    let from = start + load.warmup;
    let depth = load.pipelining;
    let shared = Arc::new(Shared {
        addr,
        batch: load.request.repeat(depth),
        len: load.request.len(),
        depth,
        timeout: load.timeout,
        head: load.head,
        start,
        from,
        until: load.duration.map(|d| from + d),
        budget: load.amount.map(AtomicU64::new),
    });
    let counters: Arc<Vec<Counter>> = Arc::new((0..threads).map(|_| Counter::default()).collect());
    let cpu_before = cpu_time(libc::RUSAGE_SELF);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            // Connections t, t + threads, …: spread evenly.
            let conns: Vec<usize> = (t..load.connections).step_by(threads).collect();
            let shared = shared.clone();
            let counters = counters.clone();
            let pace = load.pace;
            let total = load.connections;
            std::thread::Builder::new()
                .name(format!("herd-bench-{t}"))
                .spawn(move || thread(shared, counters[t].0.clone(), &conns, total, pace))
        })
        .collect();
    let mut results = Vec::new();
    let mut spawn_error = None;
    let mut joined = Vec::new();
    for h in handles {
        match h {
            Ok(h) => joined.push(h),
            Err(e) => spawn_error = Some(e),
        }
    }
    if progress {
        draw_progress(load, &joined, &counters, start, from);
    }
    for h in joined {
        if let Ok(r) = h.join() {
            results.push(r);
        }
    }
    if let Some(e) = spawn_error {
        eprintln!("herd bench: warning: a load thread could not start ({e})");
    }
    let end = Instant::now();
    let cpu = cpu_time(libc::RUSAGE_SELF).saturating_sub(cpu_before);
    let window_end = shared.until.map_or(end, |u| u.min(end));
    let elapsed = window_end.saturating_duration_since(from);
    let wall = end.saturating_duration_since(start).as_secs_f64().max(1e-9);
    let mut stats = Stats::new(from);
    let mut busiest: f64 = 0.0;
    for (s, thread_cpu) in &results {
        stats.merge(s);
        busiest = busiest.max(thread_cpu.as_secs_f64() / wall * 100.0);
    }
    Summary {
        stats,
        elapsed,
        threads: results.len(),
        cpu_cores: cpu.as_secs_f64() / wall,
        busiest_thread: busiest,
    }
}

/// A load thread: its connections on a runtime of its own, until the end; its counts and
/// its CPU time.
fn thread(
    shared: Arc<Shared>,
    answered: Arc<AtomicU64>,
    conns: &[usize],
    total: usize,
    pace: Pace,
) -> (Stats, Duration) {
    let cpu0 = cpu_time(libc::RUSAGE_THREAD);
    let stats = Rc::new(RefCell::new(Stats::new(shared.from)));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("herd bench: warning: a load thread has no runtime ({e})");
            return (stats.replace(Stats::new(shared.from)), Duration::ZERO);
        }
    };
    // Each connection is a task of its own: a wake-up polls the one connection it is for.
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let mut tasks = Vec::new();
        for &k in conns {
            let schedule = match pace {
                Pace::Closed => None,
                Pace::Rate(r) => Some(Schedule::new(shared.start, r, k, total)),
            };
            let c = Connection::new(shared.clone(), stats.clone(), answered.clone(), schedule);
            tasks.push(tokio::task::spawn_local(c.run()));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
    let cpu = cpu_time(libc::RUSAGE_THREAD).saturating_sub(cpu0);
    (stats.replace(Stats::new(shared.from)), cpu)
}

/// The live line: elapsed time, a bar, and req/s over the last interval.
fn draw_progress(
    load: &Load,
    threads: &[std::thread::JoinHandle<(Stats, Duration)>],
    counters: &[Counter],
    start: Instant,
    from: Instant,
) {
    let total = load
        .duration
        .map(|d| (from + d).saturating_duration_since(start));
    let mut last = (Instant::now(), 0u64);
    let mut err = std::io::stderr();
    while !threads.iter().all(|h| h.is_finished()) {
        std::thread::sleep(PROGRESS_EVERY);
        let now = Instant::now();
        let n: u64 = counters.iter().map(|c| c.0.load(Ordering::Relaxed)).sum();
        let rate = (n - last.1) as f64 / now.duration_since(last.0).as_secs_f64();
        last = (now, n);
        let done = now.saturating_duration_since(start);
        let phase = if now < from { "warm-up" } else { "running" };
        let bar = match (total, load.amount) {
            (Some(t), _) => fraction_bar(done.as_secs_f64() / t.as_secs_f64().max(1e-9)),
            (None, Some(a)) => fraction_bar(n as f64 / a as f64),
            (None, None) => String::new(),
        };
        let _ = write!(
            err,
            "\r\x1b[2K{phase} [{bar}] {:.1}s  {} req/s",
            done.as_secs_f64(),
            super::text::count(rate)
        );
        let _ = err.flush();
    }
    let _ = write!(err, "\r\x1b[2K");
    let _ = err.flush();
}

fn fraction_bar(f: f64) -> String {
    const WIDTH: usize = 30;
    let filled = ((f.clamp(0.0, 1.0)) * WIDTH as f64) as usize;
    format!("{}{}", "=".repeat(filled), " ".repeat(WIDTH - filled))
}
