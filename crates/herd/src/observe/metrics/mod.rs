//! `/metrics`: herd's own Prometheus metrics, rendered at scrape time from a snapshot of
//! each app ([`AppSnapshot`], taken by the app's loop) and one pass over `/proc` for every
//! worker of every app ([`procs`]), so a worker that is gone leaves no series behind and
//! nothing is kept between scrapes but a 1 s cache of the `/proc` pass.
//!
//! The encoding is the Prometheus project's `prometheus-client` crate, behind a
//! scrape-time `Collector` (`render.rs`): OpenMetrics text, or the classic text format
//! (0.0.4), as the scraper asks. Names follow Prometheus' conventions: `herd_` and a base
//! unit suffix; every per-worker series is labelled by `app` and `worker` (the slot, which
//! survives restarts), never by pid, except `herd_worker_info`.

mod families;
mod procs;
mod render;

use std::time::SystemTime;

pub use families::{
    aggregate, encode, from_prom_client, from_text, label_all, merge, Family, Sample,
};
pub use procs::{sample, ProcInfo, Procs};
pub use render::render;

/// What one app's loop knows at a scrape: plain data, taken in microseconds.
#[derive(Debug, Clone, Default)]
pub struct AppSnapshot {
    /// The app's name (label `app`).
    pub app: String,
    /// Its namespace (label `namespace`), under the daemon.
    pub namespace: Option<String>,
    /// `running`, `reloading`, `errored`, `stopping`, `stopped`.
    pub state: String,
    /// Slots wanted now.
    pub desired: usize,
    /// The program generation new workers get.
    pub generation: u64,
    /// Rolling reloads that ended with every slot replaced.
    pub reloads_ok: u64,
    /// Rolling reloads that stopped because a new worker failed.
    pub reloads_failed: u64,
    /// Restarts by reason (`crash`, `memory`, `health`, `watchdog`).
    pub restarts: Vec<(&'static str, u32)>,
    /// The listening sockets' accept queues.
    pub listeners: Vec<ListenerSnapshot>,
    /// Connections herd handed to a worker (the handoff modes).
    pub handed_over: u64,
    /// Connections herd relayed to a worker's private port (`--proxy`).
    pub relayed: u64,
    /// Connections that wait for a worker to take them.
    pub waiting: usize,
    /// Every worker process (current, replacements, stopping) and empty slot.
    pub workers: Vec<WorkerSnapshot>,
    /// The workers' `{"herd":"count"}` counters: name, then the value of each slot.
    pub counters: Vec<(String, Vec<(usize, i64)>)>,
    /// Failed `--worker-metrics` scrapes, by slot.
    pub scrape_errors: Vec<(usize, u64)>,
}

/// One listening socket (or the sockets of one address, one per slot) of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSnapshot {
    /// The address (label `listener`).
    pub addr: String,
    /// Connections the kernel completed and nobody accepted yet (`TCP_INFO`'s
    /// `tcpi_unacked` of a listening socket), over the address' sockets.
    pub queued: u64,
    /// The accept queue's limit (`tcpi_sacked`), over the address' sockets.
    pub backlog: u64,
}

/// One worker process, or an empty slot (`pid` is `None`).
#[derive(Debug, Clone, Default)]
pub struct WorkerSnapshot {
    /// Its slot (label `worker`).
    pub slot: usize,
    /// Its process id.
    pub pid: Option<u32>,
    /// The program generation it runs.
    pub generation: u64,
    /// `spawning`, `starting`, `online`, `stopping`, `hung`, `waiting-restart`, `stopped`,
    /// `errored`.
    pub state: String,
    /// It gets new connections.
    pub ready: bool,
    /// When it started.
    pub started: Option<SystemTime>,
    /// Restarts of its slot.
    pub restarts: u32,
    /// How the last worker of its slot ended: its exit code, or 128 + the signal number,
    /// as a shell reports it.
    pub last_exit: Option<i32>,
    /// It is a replacement starting next to the slot's current worker, or an older worker
    /// of the slot that is stopping: not the slot's series.
    pub extra: bool,
    /// Its health checks and heartbeat, when the app has either.
    pub health: Option<HealthSnapshot>,
    /// Connections handed or relayed to it.
    pub handed_over: u64,
}

/// A worker's health as the supervisor knows it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSnapshot {
    /// The last check passed (`None`: no check yet, or no checks).
    pub ok: Option<bool>,
    /// Failed checks in a row.
    pub failures: u32,
    /// The last passed check's latency, seconds.
    pub latency: Option<f64>,
    /// Seconds since its last heartbeat (`--watchdog`).
    pub heartbeat_age: Option<f64>,
}

/// A counter name as a Prometheus name: `[a-zA-Z0-9_]` kept, anything else `_`, and a
/// leading `_` when it starts with a digit (`req/s` → `req_s`, `2xx` → `_2xx`).
pub fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests;
