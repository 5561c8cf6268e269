//! What `herd ls` and `herd describe` show of a running app: the driver's answer to
//! [`AppRequest::Status`](super::AppRequest::Status). The values are plain (strings, numbers),
//! since they travel over the daemon's control socket as JSON.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::Driver;

/// One app as it is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppStatus {
    /// `running`, `reloading`, `errored`, `stopping`.
    pub state: String,
    /// Slots wanted now.
    pub instances: usize,
    /// How connections reach workers.
    pub balance: String,
    /// The addresses herd listens on for the app.
    pub listen: Vec<String>,
    /// Every slot's worker (and a reload's replacement), by slot.
    pub workers: Vec<WorkerStatus>,
    /// The workers' named counters (`{"herd":"count"}` messages), as JSON.
    pub counters: serde_json::Value,
}

/// One worker process (or a slot waiting for its restart).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    /// Its slot, 0..N-1.
    pub slot: usize,
    /// Its process id; `None` while it is being spawned or waits for a restart.
    pub pid: Option<u32>,
    /// Program generation: 1 at start, one more per reload.
    pub generation: u64,
    /// `spawning`, `starting`, `online`, `stopping`, `waiting-restart`.
    pub state: String,
    /// Milliseconds since it started.
    pub uptime_ms: u64,
    /// Restarts of its slot after crashes.
    pub restarts: u32,
    /// CPU use of its process group since the previous `herd ls` (or since it started), in
    /// percent of one core; 0 until the daemon measured it.
    pub cpu_percent: f64,
    /// Resident memory of its process group, in bytes.
    pub memory: u64,
}

impl Driver {
    pub(super) fn status(&mut self) -> AppStatus {
        let now = Instant::now();
        let sup = &self.sup;
        let state = sup.app_state().to_string();
        let workers = sup
            .snapshot()
            .into_iter()
            .map(|w| {
                WorkerStatus {
                    slot: w.slot,
                    pid: w.pid,
                    generation: w.generation,
                    state: w.state.to_string(),
                    uptime_ms: now.saturating_duration_since(w.started).as_millis() as u64,
                    restarts: w.restarts,
                    // Filled in by whoever asked (one /proc scan for every app).
                    cpu_percent: 0.0,
                    memory: 0,
                }
            })
            .collect();
        AppStatus {
            state,
            instances: sup.instances(),
            balance: self.plan.balance.to_string(),
            listen: self
                .listeners
                .local_addrs()
                .iter()
                .map(|a| a.to_string())
                .collect(),
            workers,
            counters: self.counters.to_json(),
        }
    }
}
