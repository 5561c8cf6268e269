//! What `herd ls` and `herd describe` show of a running app: the driver's answer to
//! [`AppRequest::Status`](super::AppRequest::Status). The values are plain (strings, numbers),
//! since they travel over the daemon's control socket as JSON.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::observe::procstat;

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
    /// Connections waiting in the accept queues of the app's TCP listeners (`TCP_INFO`).
    #[serde(default)]
    pub queued: u64,
    /// Restarts of the app by reason (`crash`, `memory`, `health`, `watchdog`).
    #[serde(default)]
    pub restarts_by_reason: std::collections::BTreeMap<String, u32>,
    /// The next scheduled reload (`cron_restart`), Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_reload_ms: Option<u64>,
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
    /// Its health checks and heartbeats, when the app has either.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthStatus>,
    /// Connections herd handed or relayed to it (the handoff modes, `--proxy`).
    #[serde(default)]
    pub handed_over: u64,
    /// How the slot's last worker ended (`code 1`, `SIGKILL`), if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// When, Unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit_ms: Option<u64>,
}

/// What herd knows of one worker's health (`--health-check`, `--watchdog`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthStatus {
    /// The last check passed; `None` before the first check (or without checks).
    pub ok: Option<bool>,
    /// The last passed check's latency, in milliseconds.
    pub latency_ms: Option<f64>,
    /// Why the last check failed.
    pub error: Option<String>,
    /// Failed checks in a row.
    pub failures: u32,
    /// It passed a check at least once.
    pub passed: bool,
    /// Milliseconds since its last heartbeat, with `--watchdog`.
    pub heartbeat_age_ms: Option<u64>,
    /// A Node worker's event-loop lag at the last liveness answer, in milliseconds.
    pub loop_lag_ms: Option<f64>,
}

impl HealthStatus {
    /// A few words for the `herd ls` column: `ok 3ms`, `failing 2`, `pending`, `beat 120ms`.
    pub fn short(&self) -> String {
        let check = match (self.ok, self.failures, self.passed) {
            (None, _, _) => None,
            (_, n, _) if n > 0 => Some(format!("failing {n}")),
            (Some(true), _, _) => Some(format!("ok {:.0}ms", self.latency_ms.unwrap_or(0.0))),
            (Some(false), _, false) => Some("pending".to_string()),
            (Some(false), _, true) => Some("failed".to_string()),
        };
        let beat = self.heartbeat_age_ms.map(|ms| format!("beat {ms}ms"));
        match (check, beat) {
            (Some(c), Some(b)) => format!("{c}, {b}"),
            (Some(c), None) => c,
            (None, Some(b)) => b,
            (None, None) => "-".to_string(),
        }
    }
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
                    handed_over: w
                        .pid
                        .and_then(|p| self.channels.get(&p))
                        .map_or(0, |l| l.handed),
                    last_exit: self
                        .tally
                        .last_exit(w.slot)
                        .map(|(s, _)| crate::observe::lifecycle::describe_exit(s)),
                    last_exit_ms: self.tally.last_exit(w.slot).and_then(|(_, t)| {
                        t.duration_since(std::time::UNIX_EPOCH)
                            .ok()
                            .map(|d| d.as_millis() as u64)
                    }),
                    health: w.health.map(|h| HealthStatus {
                        ok: h.last.as_ref().map(Result::is_ok),
                        latency_ms: h
                            .last
                            .as_ref()
                            .and_then(|r| r.as_ref().ok())
                            .map(|d| d.as_secs_f64() * 1000.0),
                        error: h.last.and_then(Result::err),
                        failures: h.failures,
                        passed: h.passed,
                        heartbeat_age_ms: h
                            .last_heartbeat
                            .map(|t| now.saturating_duration_since(t).as_millis() as u64),
                        loop_lag_ms: w
                            .pid
                            .and_then(|p| self.channels.get(&p))
                            .and_then(|l| l.loop_lag)
                            .map(|d| d.as_secs_f64() * 1000.0),
                    }),
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
            queued: self
                .listeners
                .accept_queues()
                .iter()
                .map(|(_, q, _)| q)
                .sum(),
            restarts_by_reason: sup
                .restarts_by_reason()
                .into_iter()
                .map(|(r, n)| (r.as_str().to_string(), n))
                .collect(),
            next_reload_ms: self.next_reload_ms(),
        }
    }
}

/// CPU and memory of workers, for `herd ls` and `/status`: one scan of /proc for all of
/// them (a scan per worker made `ls` of 10 apps cost 20 ms), and each worker's CPU time
/// remembered between two measures, so CPU is a rate over the time between them (since
/// the worker's start the first time).
#[derive(Debug, Default)]
pub struct Usage {
    seen: std::sync::Mutex<std::collections::HashMap<u32, (Instant, procstat::Sample)>>,
}

impl Usage {
    /// Fills in `cpu_percent` and `memory` of `workers`.
    pub fn measure<'a>(&self, workers: impl IntoIterator<Item = &'a mut WorkerStatus>) {
        let mut workers: Vec<&mut WorkerStatus> = workers.into_iter().collect();
        let pids: Vec<u32> = workers.iter().filter_map(|w| w.pid).collect();
        if pids.is_empty() {
            return;
        }
        let Ok(samples) = procstat::sample_groups(&pids) else {
            return;
        };
        let by_pid: std::collections::HashMap<u32, procstat::Sample> = pids
            .into_iter()
            .zip(samples)
            .filter_map(|(pid, s)| Some((pid, s?)))
            .collect();
        let now = Instant::now();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = std::collections::HashMap::with_capacity(by_pid.len());
        for w in workers.iter_mut() {
            let Some(sample) = w.pid.and_then(|p| by_pid.get(&p)) else {
                continue;
            };
            let pid = w.pid.unwrap_or_default();
            // The first time: since the worker started, from no CPU time.
            let (since, before) = seen.get(&pid).copied().unwrap_or((
                now.checked_sub(std::time::Duration::from_millis(w.uptime_ms))
                    .unwrap_or(now),
                procstat::Sample::default(),
            ));
            w.cpu_percent =
                procstat::cpu_percent(&before, sample, now.saturating_duration_since(since));
            w.memory = sample.rss;
            next.insert(pid, (now, *sample));
        }
        // Workers gone since are forgotten.
        *seen = next;
    }
}

/// `herd run`'s `/status` measures: one process, one app.
pub(super) fn fill_usage(workers: &mut [WorkerStatus]) {
    static USAGE: std::sync::LazyLock<Usage> = std::sync::LazyLock::new(Usage::default);
    USAGE.measure(workers.iter_mut());
}
