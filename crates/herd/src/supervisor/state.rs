//! The state the machine holds: the app's [`Phase`], each [`Slot`] and each [`Worker`].
//! Every type here is an enum where the old code had flags, so that a combination that
//! cannot happen (a reload while shutting down, an outcome while running, a pending restart
//! of a slot that has a worker) cannot be written down either. The transitions live with
//! the events that cause them (`step.rs` and the modules it dispatches to).

use std::collections::VecDeque;
use std::time::Instant;

use super::restarts::{Backoff, FlapWindow};
use super::{HangCause, Outcome, StopReason, WorkerId};

/// Where the whole app is in its life. The rows of the state × event table in the module
/// documentation: `running`, `reloading` and `errored` are `Running` with its two
/// sub-states, `shutting down` and `forced` are `ShuttingDown`.
#[derive(Debug)]
pub(super) enum Phase {
    /// Supervising: workers are started, restarted, reloaded, scaled and replaced. Also
    /// before [`Event::Start`](super::Event::Start), when there is no slot yet (an event
    /// then acts on the slots there are, none).
    Running {
        /// Whether exits are restarted. Independent of `reload`: an app that becomes
        /// errored during a reload goes on replacing the workers that still run.
        restarts: Restarts,
        /// The rolling reload under way.
        reload: Option<ReloadPlan>,
        /// A shutdown was asked for with a shutdown delay: it begins at this time. Until
        /// then the workers serve as before (crashed ones are restarted), but nothing new
        /// is asked of them (reload, scale and memory replacements are refused) and the
        /// app is no longer ready.
        shutdown_at: Option<Instant>,
    },
    /// Every worker was asked to stop; nothing is started any more.
    ShuttingDown {
        /// When the request that began it (or forced it) came: a repeat within
        /// [`SAME_STOP_REQUEST`](super::shutdown::SAME_STOP_REQUEST) is that request again.
        requested: Instant,
        /// A second shutdown request came: every worker was SIGKILLed, and a worker whose
        /// spawn is answered now is killed at once.
        forced: bool,
        /// Some worker was SIGKILLed during the shutdown (timeout or forced): the outcome
        /// is [`Outcome::Killed`].
        killed: bool,
        /// The app was errored when the shutdown began; [`is_errored`] still says so.
        ///
        /// [`is_errored`]: super::Supervisor::is_errored
        errored: bool,
    },
    /// The run is over ([`Action::Exit`](super::Action::Exit) was returned); every event is
    /// ignored.
    Ended {
        /// How it ended.
        outcome: Outcome,
        /// The app was errored when it ended (a crash loop, or the shutdown of an errored
        /// app); [`is_errored`] still says so.
        ///
        /// [`is_errored`]: super::Supervisor::is_errored
        errored: bool,
    },
}

/// Whether a running app restarts the workers that exit by themselves.
#[derive(Debug)]
pub(super) enum Restarts {
    /// Yes, after the slot's backoff delay; the window counts the recent unstable ones.
    On(FlapWindow),
    /// The app crashed too often (`max_restarts` unstable restarts within
    /// `restart_window`): no restart until a reload.
    Errored,
}

/// A rolling reload under way: the slots still to replace, in order.
#[derive(Debug, Clone)]
pub(super) struct ReloadPlan {
    pub(super) pending: VecDeque<usize>,
    pub(super) total: usize,
    pub(super) done: usize,
}

/// One slot (`HERD_WORKER_ID`): who serves it, its replacement, its restart history.
#[derive(Debug, Clone)]
pub(super) struct Slot {
    pub(super) state: SlotState,
    /// A new worker that takes the slot over once it is ready.
    pub(super) replacement: Option<Replacement>,
    /// No memory replacement before this (one failed, its backoff runs).
    pub(super) memory_retry_at: Option<Instant>,
    pub(super) backoff: Backoff,
    /// Restarts of this slot: respawns after an unexpected exit, and memory replacements.
    pub(super) restarts: u32,
    /// When the slot last lost its worker (or was created).
    pub(super) vacant_since: Instant,
}

/// Who serves a slot, or why no one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SlotState {
    /// Its current worker, in whatever stage. During a shutdown the worker may be gone
    /// already: nothing is decided for slots then, so a lookup simply finds nothing.
    Filled(WorkerId),
    /// Empty; a worker is started at `at`. `restart`: the start follows an exit and counts
    /// in the slot's restarts (not the first start of a new slot, nor a reload's start of
    /// an empty one).
    Pending { at: Instant, restart: bool },
    /// Empty for good: its worker exited and is not restarted (`autorestart = false` or a
    /// code in `stop_exit_codes`); `clean` tells whether that exit counts as a clean one.
    /// A reload starts it again.
    Parked { clean: bool },
    /// Empty with nothing planned: the app is errored or shutting down.
    Empty,
}

/// A new worker started next to a slot's current one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Replacement {
    pub(super) worker: WorkerId,
    pub(super) kind: ReplacementKind,
}

/// Why a replacement was started; it decides what its failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReplacementKind {
    /// A rolling reload's worker of the new generation: its failure aborts the reload.
    Reload,
    /// The current worker is over the memory limit: its failure keeps the old worker and
    /// backs the slot off.
    Memory,
    /// The current worker is hung: its failure stops the hung worker, and the slot
    /// restarts as after a crash.
    Hung(HangCause),
}

impl ReplacementKind {
    /// What a replacement of this kind counts as once it takes the slot over; a reload's
    /// is no restart, but the caller never asks for it.
    pub(super) fn restart_reason(self) -> super::RestartReason {
        match self {
            ReplacementKind::Reload | ReplacementKind::Memory => super::RestartReason::Memory,
            ReplacementKind::Hung(cause) => cause.reason(),
        }
    }
}

impl Slot {
    /// A new slot with `state`, its history empty.
    pub(super) fn new(state: SlotState, now: Instant) -> Self {
        Slot {
            state,
            replacement: None,
            memory_retry_at: None,
            backoff: Backoff::default(),
            restarts: 0,
            vacant_since: now,
        }
    }

    /// The current worker, if the slot has one.
    pub(super) fn worker(&self) -> Option<WorkerId> {
        match self.state {
            SlotState::Filled(id) => Some(id),
            _ => None,
        }
    }

    /// The replacement if it is `id`.
    pub(super) fn replacement_is(&self, id: WorkerId) -> Option<Replacement> {
        self.replacement.filter(|r| r.worker == id)
    }
}

/// One worker process, from the spawn request to its exit.
#[derive(Debug, Clone)]
pub(super) struct Worker {
    pub(super) slot: usize,
    pub(super) generation: u64,
    /// `None` until the driver answers the spawn.
    pub(super) pid: Option<u32>,
    /// When the process started (when it was asked for, while spawning).
    pub(super) started: Instant,
    pub(super) stage: Stage,
    /// The worker said `STOPPING=1`: no new connections for it.
    pub(super) draining: bool,
    /// Health checks and heartbeats (`health.rs`).
    pub(super) health: Liveness,
}

/// What herd knows of a worker's health: its checks and its heartbeats. Only a ready
/// worker is checked and watched.
#[derive(Debug, Clone, Default)]
pub(super) struct Liveness {
    /// When the next health check is due; `None` while none is planned.
    pub(super) next_check: Option<Instant>,
    /// A check was asked for and not answered yet.
    pub(super) in_flight: bool,
    /// It passed a check at least once (failures count only after that).
    pub(super) passed: bool,
    /// Failed checks in a row.
    pub(super) failures: u32,
    /// The last check's result: its latency, or why it failed.
    pub(super) last: Option<Result<std::time::Duration, String>>,
    /// With a watchdog: hung unless a heartbeat comes before this.
    pub(super) watchdog_due: Option<Instant>,
    /// When the last heartbeat came.
    pub(super) last_heartbeat: Option<Instant>,
    /// Found hung: out of the route, replaced.
    pub(super) hung: bool,
}

/// Where one worker is in its life: `Spawning → Starting → Ready → Stopping → gone`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Stage {
    /// Asked for; no pid yet.
    Spawning,
    /// Running, not ready yet; judged not ready (or assumed ready) at `deadline`.
    Starting { deadline: Instant },
    /// Ready to serve.
    Ready,
    /// Asked to stop (or unwanted before its pid is known: it is stopped once spawned);
    /// SIGKILLed at `kill_at` unless it exits first.
    Stopping {
        reason: StopReason,
        kill_at: Instant,
        killed: bool,
    },
}

impl Worker {
    /// Ready and not draining: it gets new connections.
    pub(super) fn serves(&self) -> bool {
        self.stage == Stage::Ready && !self.draining && !self.health.hung
    }
}
