//! The `/proc` pass of a scrape: CPU time, resident memory and threads of each worker's
//! process group (one scan of `/proc` for all of them, [`crate::observe::procstat`]), and
//! the open fds of each worker's main process. Kept for at most [`CACHE`], so two
//! Prometheus servers scraping the same herd (or a scrape right after `herd metrics`) do
//! the work once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::observe::procstat;

/// How long one `/proc` pass answers scrapes.
pub const CACHE: Duration = Duration::from_secs(1);

/// What `/proc` says of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcInfo {
    /// CPU time of its process group, seconds.
    pub cpu: f64,
    /// Resident memory of its process group, bytes.
    pub rss: u64,
    /// Threads of its process group.
    pub threads: u32,
    /// Open fds of its main process.
    pub fds: Option<u64>,
}

/// The pass: by worker pid (= its process group).
pub type Procs = HashMap<u32, ProcInfo>;

static LAST: Mutex<Option<(Instant, Procs)>> = Mutex::new(None);

/// `/proc` for the workers `pids` (their process groups), from the cache when it is
/// younger than [`CACHE`] and has every one of them.
pub fn sample(pids: &[u32]) -> Procs {
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((at, procs)) = last.as_ref() {
        if at.elapsed() < CACHE && pids.iter().all(|p| procs.contains_key(p)) {
            return pids.iter().map(|p| (*p, procs[p])).collect();
        }
    }
    let samples = procstat::sample_groups(pids).unwrap_or_default();
    let procs: Procs = pids
        .iter()
        .zip(samples)
        .filter_map(|(pid, s)| {
            let s = s?;
            Some((
                *pid,
                ProcInfo {
                    cpu: s.cpu.as_secs_f64(),
                    rss: s.rss,
                    threads: s.threads,
                    fds: open_fds(&pid.to_string()),
                },
            ))
        })
        .collect();
    *last = Some((Instant::now(), procs.clone()));
    procs
}

/// Entries of `/proc/<pid>/fd` (`self` for herd).
pub fn open_fds(pid: &str) -> Option<u64> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count() as u64)
}
