//! Read-only views of the state machine for `herd ls` and `herd describe`: one line per
//! worker (and per empty slot), the app's restart count and its overall state. Computed on
//! demand from the supervisor's own state; nothing here changes it.

use std::fmt;
use std::time::Instant;

use super::state::{Phase, Restarts, SlotState, Stage, Worker};
use super::{Outcome, RestartReason, Supervisor, WorkerId};

/// One worker as `herd ls` shows it, or an empty slot (`pid` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    /// The slot it serves (`HERD_WORKER_ID`).
    pub slot: usize,
    /// Its process id; `None` while it is being spawned, and for an empty slot.
    pub pid: Option<u32>,
    /// Generation of the program it runs (for an empty slot: the one it will run).
    pub generation: u64,
    /// Where it is in its lifecycle.
    pub state: WorkerState,
    /// When the process started (asked for, while spawning); for an empty slot, when the
    /// slot lost its worker.
    pub started: Instant,
    /// Restarts of its slot (0 for a worker of a slot that was scaled away).
    pub restarts: u32,
    /// A new worker (of a reload or a memory restart) that does not serve yet.
    pub replacement: bool,
    /// Its health checks and heartbeats, when the app has either (`None` otherwise, and
    /// for an empty slot).
    pub health: Option<HealthView>,
}

/// What herd knows of one worker's health, for `herd ls`, `describe` and `/readyz?verbose`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthView {
    /// The last health check: its latency, or why it failed; `None` before the first.
    pub last: Option<Result<std::time::Duration, String>>,
    /// Failed checks in a row (counted ones: after the first pass, out of the start period).
    pub failures: u32,
    /// It passed a check at least once.
    pub passed: bool,
    /// When its last heartbeat (`WATCHDOG=1`, `"watchdog"`) came.
    pub last_heartbeat: Option<Instant>,
}

/// The state of one worker or empty slot, with PM2-like words for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerState {
    /// Asked for; the process does not exist yet. Shown as `spawning`.
    Spawning,
    /// Running, not ready yet. Shown as `starting`.
    Starting,
    /// Ready and serving. Shown as `online`.
    Ready,
    /// Asked to stop (or said `STOPPING=1`); no new connections. Shown as `stopping`.
    Stopping,
    /// Found hung (health checks, watchdog): no new connections, being replaced. Shown as
    /// `hung`.
    Hung,
    /// An empty slot whose restart is pending. Shown as `waiting-restart`.
    Waiting,
    /// An empty slot that will not be restarted (autorestart off, a stop exit code, or
    /// the app shutting down). Shown as `stopped`.
    Stopped,
    /// An empty slot of an errored app: no restart until a reload. Shown as `errored`.
    Errored,
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkerState::Spawning => "spawning",
            WorkerState::Starting => "starting",
            WorkerState::Ready => "online",
            WorkerState::Stopping => "stopping",
            WorkerState::Hung => "hung",
            WorkerState::Waiting => "waiting-restart",
            WorkerState::Stopped => "stopped",
            WorkerState::Errored => "errored",
        })
    }
}

/// The state of the whole app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Serving (or starting up); shown as `running`.
    Running,
    /// A rolling reload is under way; shown as `reloading`.
    Reloading,
    /// It crashed too often: no restarts until a reload. Also once the run ended with
    /// [`Outcome::Errored`] (crash loop, or a last worker that failed and was not
    /// restarted). Shown as `errored`.
    Errored,
    /// Shutting down; shown as `stopping`.
    Stopping,
    /// Not started yet, or ended cleanly (shutdown, or every worker exited cleanly and none
    /// is restarted); shown as `stopped`.
    Stopped,
}

impl fmt::Display for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AppState::Running => "running",
            AppState::Reloading => "reloading",
            AppState::Errored => "errored",
            AppState::Stopping => "stopping",
            AppState::Stopped => "stopped",
        })
    }
}

impl Supervisor {
    /// Every slot in order: its current worker (or, when it has none, one line for the
    /// empty slot), its replacement if one is starting, then older workers of that slot
    /// still stopping; last, stopping workers of slots that were scaled away.
    pub fn snapshot(&self) -> Vec<WorkerView> {
        let mut views = Vec::with_capacity(self.workers.len() + 1);
        let mut listed: Vec<WorkerId> = Vec::with_capacity(self.workers.len());
        for (i, slot) in self.slots.iter().enumerate() {
            match slot
                .worker()
                .and_then(|id| Some((id, self.workers.get(&id)?)))
            {
                Some((id, w)) => {
                    listed.push(id);
                    views.push(self.view(w, slot.restarts, false));
                }
                None => views.push(WorkerView {
                    slot: i,
                    pid: None,
                    generation: self.generation,
                    state: self.empty_slot_state(slot.state),
                    started: slot.vacant_since,
                    restarts: slot.restarts,
                    replacement: false,
                    health: None,
                }),
            }
            if let Some((id, w)) = slot
                .replacement
                .and_then(|r| Some((r.worker, self.workers.get(&r.worker)?)))
            {
                listed.push(id);
                views.push(self.view(w, slot.restarts, true));
            }
            for (id, w) in &self.workers {
                if w.slot == i && !listed.contains(id) {
                    views.push(self.view(w, slot.restarts, false));
                }
            }
        }
        let mut gone: Vec<&Worker> = self
            .workers
            .values()
            .filter(|w| w.slot >= self.slots.len())
            .collect();
        gone.sort_by_key(|w| w.slot);
        views.extend(gone.into_iter().map(|w| self.view(w, 0, false)));
        views
    }

    /// Restarts of the app since it started: respawns after a worker exited unexpectedly
    /// and memory replacements, over every slot it ever had. Reloads and scale-ups do not
    /// count.
    pub fn restarts(&self) -> u32 {
        self.total_restarts
    }

    /// [`Supervisor::restarts`] by reason, every reason listed (in the order of
    /// [`RestartReason::ALL`]).
    pub fn restarts_by_reason(&self) -> [(RestartReason, u32); 4] {
        let mut out = [(RestartReason::Crash, 0); 4];
        for (i, reason) in RestartReason::ALL.into_iter().enumerate() {
            out[i] = (reason, self.restarts_by[i]);
        }
        out
    }

    /// Zeroes the restart counts (`herd reset`): the app's, by reason and each slot's. What
    /// decides restarts (backoff, the flapping window) is left as it is.
    pub fn reset_restarts(&mut self) {
        self.total_restarts = 0;
        self.restarts_by = [0; 4];
        for s in &mut self.slots {
            s.restarts = 0;
        }
    }

    /// Restarts of one slot, `None` if there is no such slot.
    pub fn slot_restarts(&self, slot: usize) -> Option<u32> {
        self.slots.get(slot).map(|s| s.restarts)
    }

    /// The state of the whole app.
    pub fn app_state(&self) -> AppState {
        match &self.phase {
            Phase::Ended {
                outcome: Outcome::Errored,
                ..
            } => AppState::Errored,
            Phase::Ended { .. } => AppState::Stopped,
            Phase::ShuttingDown { .. } => AppState::Stopping,
            Phase::Running { .. } if self.slots.is_empty() => AppState::Stopped,
            Phase::Running {
                restarts: Restarts::Errored,
                ..
            } => AppState::Errored,
            Phase::Running {
                reload: Some(_), ..
            } => AppState::Reloading,
            Phase::Running { .. } => AppState::Running,
        }
    }

    /// What an empty slot in `state` shows. After the run ended errored, an empty slot
    /// that was not parked is one the crash loop left empty.
    fn empty_slot_state(&self, state: SlotState) -> WorkerState {
        if let SlotState::Parked { .. } = state {
            return WorkerState::Stopped;
        }
        match &self.phase {
            Phase::Running {
                restarts: Restarts::Errored,
                ..
            }
            | Phase::Ended {
                outcome: Outcome::Errored,
                ..
            } => WorkerState::Errored,
            Phase::Running { .. } => WorkerState::Waiting,
            Phase::ShuttingDown { .. } | Phase::Ended { .. } => WorkerState::Stopped,
        }
    }

    fn view(&self, w: &Worker, restarts: u32, replacement: bool) -> WorkerView {
        let state = match w.stage {
            Stage::Spawning => WorkerState::Spawning,
            Stage::Starting { .. } => WorkerState::Starting,
            Stage::Ready if w.draining => WorkerState::Stopping,
            Stage::Ready if w.health.hung => WorkerState::Hung,
            Stage::Ready => WorkerState::Ready,
            Stage::Stopping { .. } => WorkerState::Stopping,
        };
        WorkerView {
            slot: w.slot,
            pid: w.pid,
            generation: w.generation,
            state,
            started: w.started,
            restarts,
            replacement,
            health: (self.policy.health.is_some() || self.policy.watchdog.is_some()).then(|| {
                HealthView {
                    last: w.health.last.clone(),
                    failures: w.health.failures,
                    passed: w.health.passed,
                    last_heartbeat: w.health.last_heartbeat,
                }
            }),
        }
    }
}
