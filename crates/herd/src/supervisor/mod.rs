//! The lifecycle of one app's workers, as a pure state machine.
//!
//! Theory of operation: the supervisor holds the desired state (how many slots, which
//! generation of the program) and the actual state (which worker process serves each
//! slot, and in what state it is). [`Supervisor::step`] takes one [`Event`] and the current
//! time and returns the [`Action`]s that move the actual state one safe step toward the
//! desired one. It never spawns, signals, sleeps or reads a clock: time comes in as `now`,
//! timers go out as [`Action::Wake`]. Every lifecycle rule (restart backoff, the errored
//! state, readiness, rolling reload, scaling, shutdown) is therefore unit-tested with
//! simulated time in `tests/`; the driver only does the I/O.
//!
//! Restarts (PM2's policies): a worker that exits by itself is restarted in its slot after
//! the slot's backoff delay (none after a stable run, one of at least `min_uptime`, unless
//! the user set a restart delay), unless `autorestart` is off or its exit code is one of
//! `stop_exit_codes`; then its slot stays empty (logged as `NotRestarted`). When every slot
//! is empty for good, the app is stopped: the run ends with [`Outcome::Clean`] if every
//! last exit was code 0 or a stop exit code, and with [`Outcome::Errored`] otherwise (a
//! crash, a spawn failure, a worker stopped for not being ready). A reload while some
//! worker is still running starts the empty slots again. A worker over `max_memory` is
//! replaced the safe way (`memory.rs`). [`Supervisor::restarts`] counts respawns after an
//! unexpected exit and memory replacements, never reloads or scale-ups.
//!
//! # The whole lifecycle in three tables
//!
//! As in s6-supervise's `actions[state][event]`, every pair has its entry; "—" means the
//! event changes nothing in that state. The state types are in `state.rs`; `step.rs` is
//! the dispatch.
//!
//! **The app** (`Phase`): *running* (`Running`, restarts on, no reload), *reloading*
//! (a reload plan under way), *errored* (crashed too often: restarts off until a reload; a
//! reload already under way goes on, its cells as in *reloading*), *shutting down*,
//! *forced* (a second shutdown request), and *ended*, where every event is ignored. Before
//! `Start` the app is *running* with no slot.
//!
//! | event ↓ / app → | running | reloading | errored | shutting down | forced |
//! |---|---|---|---|---|---|
//! | `Start` | no slot yet: `instances` slots, each spawned | — | — | — | — |
//! | `Spawned` | worker → starting (1) | = | = | worker stopped at once | stopped and killed at once |
//! | `SpawnFailed`, `Exited` | worker gone: its slot decides (2) | = | = (no restart) | forgotten | forgotten |
//! | ready signal (3) | a starting worker → ready; a replacement takes its slot over (4) | = | = | — (none is starting) | — |
//! | `STOPPING=1` | the worker leaves the route | = | = | = | = |
//! | `STATUS=` | logged | = | = | = | = |
//! | `WATCHDOG=1`, `Timer` | — (deadlines only (5)) | = | = | = | = |
//! | `Shutdown` | → shutting down: reload and pending starts dropped, every worker stopped; with a `shutdown_delay`, first → announced (7) | = | = | → forced: every stopping worker SIGKILLed (8) | — |
//! | `Reload` | → reloading: generation + 1, empty slots start now, replacements cancelled | = , superseding the plan | → reloading, recovered: window cleared, backoffs reset, as running | refused, logged | refused, logged |
//! | `ScaleUp` | a slot more, started now | = | a slot more, left empty | refused, logged | refused, logged |
//! | `ScaleDown`, `ScaleTo` | highest slots removed, their workers stopped; at least 1 | = | = | refused, logged | refused, logged |
//! | `Memory` | over the limit: a replacement starts (6) | — | — | — | — |
//!
//! "=": as in the column to its left. Then, after every event but in *ended*: the
//! deadlines that passed (5); with a reload plan, new replacements up to
//! `reload_parallel`, and the plan's end once every slot runs the new generation; the
//! route if it changed; the end of the run when no worker is left (*shutting down* and
//! *forced* end [`Outcome::Killed`] if a worker was SIGKILLed, else `Clean`; *errored*
//! ends `Errored`; *running* ends once every slot is parked, `Clean` if every last exit
//! was, else `Errored`); and the next [`Action::Wake`].
//!
//! 1. A worker dropped while it was spawning (its slot scaled away, its reload cancelled)
//!    is stopped at once.
//! 2. A current worker: see the slot table. A replacement that fails (exits or cannot
//!    spawn before it is ready) aborts its reload — every replacement stopped, the old
//!    workers keep serving — or, a memory replacement, backs its slot off (`memory.rs`);
//!    one herd stopped on purpose (superseded, scaled away) did not fail.
//! 3. `READY=1`, the `"ready"` message, Node's `listening`, an open `--proxy` port; with
//!    `ready = "message"` only the message counts. Under `auto`, the first `READY=1` makes
//!    every worker still starting, and every later one, wait for it.
//! 4. The old worker is stopped; a reload counts the slot done, a memory replacement counts
//!    a restart.
//! 5. Readiness deadlines (ready for `delay`, and for `auto` until some worker sent
//!    `READY=1`; else not ready, see the worker table), kill timeouts (SIGKILL), and,
//!    unless errored or shutting down, the slots whose start is due.
//! 6. Of a ready, non-draining current worker whose slot has no replacement and is not
//!    backing off, with fewer than `reload_parallel` memory replacements in flight.
//! 7. *Announced*: the workers serve as in the column the app was in (a crashed one is
//!    restarted), but `Reload`, the scalings and `Memory` are refused as when shutting
//!    down, and [`Supervisor::is_shutting_down`] is true (`/readyz` fails). When the delay
//!    ends (a deadline), or at a second `Shutdown`, → shutting down.
//! 8. A `Shutdown` within [`SAME_STOP_REQUEST`] (500 ms) of the request being carried out
//!    is that request again (a signal to herd's pid and to its process group, as GNU
//!    `timeout` sends): logged and ignored, in every column. The same holds for the second
//!    request that ends an announced shutdown's delay.
//!
//! **A slot** (`SlotState`): *filled* by its current worker, *pending* (empty, started at a
//! given time), *parked* (empty for good: not restarted), *empty* (nothing planned: errored
//! or shutting down). A slot may also have one replacement starting next to it.
//!
//! | event ↓ / slot → | filled | pending | parked | empty |
//! |---|---|---|---|---|
//! | its worker is gone | shutting down: —; a memory replacement takes over; errored app: → empty; `autorestart` off or a stop code: → parked; an unstable exit too many (over `max_restarts` in `restart_window`): app → errored; a stable exit (without a configured restart delay): → pending now; else → pending after the backoff | — | — | — |
//! | start due | — | spawn, → filled (a restart counts) | — | — |
//! | reload | replaced, `reload_parallel` at a time | keeps its time | → pending now | → pending now |
//! | app → errored | — | → empty | — | — |
//! | shutdown | its worker stopped | → empty | — | — |
//! | replacement ready | → filled by it, old worker stopped | → filled by it | → filled by it | → filled by it |
//!
//! **A worker** (`Stage`): *spawning* (asked for, no pid), *starting*, *ready*,
//! *stopping*; gone once it exits or fails to spawn.
//!
//! | event ↓ / worker → | spawning | starting | ready | stopping |
//! |---|---|---|---|---|
//! | `Spawned` | → starting (stopped at once if unwanted or shutting down) | — | — | — |
//! | `SpawnFailed` | gone | — | — | gone (was unwanted) |
//! | ready signal (3) | — | → ready | — | — |
//! | `STOPPING=1` | — | draining: out of the route | = | = |
//! | readiness deadline | — | `delay`, `auto`: → ready; else not ready: → stopping, or, a replacement, its reload or memory restart fails (2) | — | — |
//! | herd stops it | stopped once spawned | → stopping: stop signal | = | — |
//! | kill timeout, forced shutdown | — | — | — | SIGKILL, once |
//! | `Exited` | — | gone | gone | gone |

mod events;
mod health;
mod memory;
mod policy;
mod reload;
mod restarts;
mod scaling;
mod shutdown;
mod state;
mod status;
mod step;
#[cfg(test)]
mod tests;
mod worker;

pub use events::{
    Action, Event, ExitStatus, HangCause, Log, NoRestart, NotifyMsg, Outcome, ReadyHow,
    RestartReason, StopReason, WorkerId,
};
pub use policy::{
    BackoffPolicy, HealthPolicy, Policy, Readiness, DEFAULT_AUTO_READY_DELAY,
    DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX, DEFAULT_HEALTH_FAILURES, DEFAULT_HEALTH_INTERVAL,
    DEFAULT_HEALTH_TIMEOUT, DEFAULT_KILL_TIMEOUT, DEFAULT_LISTEN_TIMEOUT, DEFAULT_MAX_RESTARTS,
    DEFAULT_MIN_UPTIME, DEFAULT_RESTART_WINDOW,
};
pub use restarts::{Backoff, Jitter};
pub use shutdown::SAME_STOP_REQUEST;
pub use status::{AppState, HealthView, WorkerState, WorkerView};

use std::collections::BTreeMap;

use restarts::FlapWindow;
use state::{Phase, Restarts, Slot, Worker};

/// The lifecycle state machine of one app. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    policy: Policy,
    /// Where the app is in its life: running (errored or not, reloading or not), shutting
    /// down, or ended.
    phase: Phase,
    slots: Vec<Slot>,
    workers: BTreeMap<WorkerId, Worker>,
    next_id: WorkerId,
    /// The generation new workers get.
    generation: u64,
    /// Some worker of this app has sent `READY=1` (`auto` then waits for it).
    speaks_notify: bool,
    /// The last route and wake-up handed out, so a step only repeats them when they change.
    last_route: Option<Vec<usize>>,
    last_wake: Option<std::time::Instant>,
    /// Restarts of every slot the app ever had.
    total_restarts: u32,
    /// The same, by reason, in the order of [`RestartReason::ALL`].
    restarts_by: [u32; 4],
    jitter: Jitter,
}

impl Supervisor {
    /// A supervisor for an app with `policy`; `seed` feeds the restart jitter.
    pub fn new(policy: Policy, seed: u64) -> Self {
        Supervisor {
            policy,
            phase: Phase::Running {
                restarts: Restarts::On(FlapWindow::default()),
                reload: None,
                shutdown_at: None,
            },
            slots: Vec::new(),
            workers: BTreeMap::new(),
            next_id: 1,
            generation: 0,
            speaks_notify: false,
            last_route: None,
            last_wake: None,
            total_restarts: 0,
            restarts_by: [0; 4],
            jitter: Jitter::new(seed),
        }
    }

    /// Number of slots wanted now.
    pub fn instances(&self) -> usize {
        self.slots.len()
    }

    /// Worker processes alive or being started, whatever their state.
    pub fn live_workers(&self) -> usize {
        self.workers.len()
    }

    /// Workers that serve or are about to (not stopping).
    pub fn active_workers(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !matches!(w.stage, state::Stage::Stopping { .. }))
            .count()
    }

    /// The app crashed too often and is no longer restarted. Stays true through a
    /// shutdown that began while errored, and after the run ended.
    pub fn is_errored(&self) -> bool {
        match self.phase {
            Phase::Running { ref restarts, .. } => matches!(restarts, Restarts::Errored),
            Phase::ShuttingDown { errored, .. } | Phase::Ended { errored, .. } => errored,
        }
    }

    /// Takes the knobs of `policy` for what happens next (`herd reload FILE` with a changed
    /// definition): the next readiness judged, restart delayed, stop timed. The number of
    /// slots is not among them: it changes by [`Event::ScaleTo`], which stops or starts
    /// workers (and logs it).
    pub fn redefine(&mut self, policy: Policy) {
        let instances = self.policy.instances;
        self.policy = Policy {
            instances,
            ..policy
        };
    }

    /// The program generation new workers get: one more with each reload.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A shutdown was asked for (its delay may still run), or the run ended: the app
    /// takes no new work.
    pub fn is_shutting_down(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Running {
                shutdown_at: None,
                ..
            }
        )
    }

    /// A rolling reload is under way.
    pub fn is_reloading(&self) -> bool {
        self.reload_plan().is_some()
    }

    /// The workers that should get new connections: each slot's current worker when it is
    /// ready and not stopping, as (slot, pid), by slot.
    pub fn serving(&self) -> Vec<(usize, u32)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let w = self.workers.get(&s.worker()?)?;
                w.serves().then_some((slot, w.pid?))
            })
            .collect()
    }

    /// How many workers [`Supervisor::serving`] lists, without listing them.
    pub fn ready_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| {
                s.worker()
                    .and_then(|id| self.workers.get(&id))
                    .is_some_and(|w| w.serves() && w.pid.is_some())
            })
            .count()
    }

    /// The slot and generation of the worker with this pid, if it is one of ours.
    pub fn worker_of_pid(&self, pid: u32) -> Option<(usize, u64)> {
        self.workers
            .values()
            .find(|w| w.pid == Some(pid))
            .map(|w| (w.slot, w.generation))
    }
}
