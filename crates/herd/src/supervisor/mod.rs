//! The lifecycle of one app's workers, as a pure state machine.
//!
//! Theory of operation: the supervisor holds the desired state (how many slots, which
//! generation of the program) and the actual state (which worker process serves each
//! slot, and in what state it is). [`Supervisor::step`] takes one [`Event`] and the current
//! time and returns the [`Action`]s that move the actual state one safe step toward the
//! desired one. It never spawns, signals, sleeps or reads a clock: time comes in as `now`,
//! timers go out as [`Action::Wake`]. Every lifecycle rule (restart backoff, the errored
//! state, readiness, rolling reload, scaling, shutdown) is therefore unit-tested with
//! simulated time in `tests.rs`; the driver only does the I/O.
//!
//! A worker lives through `Spawning` (asked for, no pid yet) → `Starting` (running, not
//! yet ready) → `Ready` → `Stopping` → gone. A slot has at most one current worker, plus,
//! during a rolling reload or a memory restart, one replacement that takes over once it is
//! ready.
//!
//! Restarts (PM2's policies): a worker that exits by itself is restarted in its slot after
//! the slot's backoff delay, unless `autorestart` is off or its exit code is one of
//! `stop_exit_codes`; then its slot stays empty (logged as `NotRestarted`). When every slot
//! is empty for good, the app is stopped: the run ends with [`Outcome::Clean`] if every
//! last exit was code 0 or a stop exit code, and with [`Outcome::Errored`] otherwise (a
//! crash, a spawn failure, a worker stopped for not being ready). A reload while some
//! worker is still running starts the empty slots again. A worker over `max_memory` is
//! replaced the safe way (`memory.rs`). [`Supervisor::restarts`] counts respawns after an
//! unexpected exit and memory replacements, never reloads or scale-ups.

mod backoff;
mod events;
mod memory;
mod reload;
mod status;
#[cfg(test)]
mod tests;

pub use backoff::{Backoff, BackoffPolicy, Jitter, DEFAULT_BACKOFF_INITIAL, DEFAULT_BACKOFF_MAX};
pub use events::{
    Action, Event, ExitStatus, Log, NoRestart, NotifyMsg, Outcome, ReadyHow, StopReason, WorkerId,
};
pub use status::{AppState, WorkerState, WorkerView};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How herd decides that a new worker is ready to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Wait for `READY=1` on the notify socket, up to the listen timeout.
    Notify,
    /// Ready this long after the process started.
    Delay(Duration),
    /// Only the `"ready"` message on the channel counts (PM2's `wait_ready`), up to the
    /// listen timeout; `READY=1` and a Node cluster worker's `listening` do not.
    Message,
    /// `READY=1` if the worker sends it; otherwise assumed ready after a short delay.
    /// Once any worker of the app has sent `READY=1`, later workers are waited for like `Notify`.
    Auto,
}

impl std::fmt::Display for Readiness {
    /// The form `--ready` and herd.toml's `ready` take: "auto", "notify", "message" or
    /// "delay:2s".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Readiness::Notify => f.write_str("notify"),
            Readiness::Message => f.write_str("message"),
            Readiness::Auto => f.write_str("auto"),
            Readiness::Delay(d) => write!(f, "delay:{}", crate::units::format_duration(*d)),
        }
    }
}

/// Why 10 s: PM2's `listen_timeout` default (3 s) is too short for cold JVM or Rails boots,
/// and a reload stalls at most this long per slot when a new worker hangs.
pub const DEFAULT_LISTEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Why 10 s: long enough for in-flight requests of a typical web app to finish, and under
/// Kubernetes' default 30 s termination grace period with room to spare.
pub const DEFAULT_KILL_TIMEOUT: Duration = Duration::from_secs(10);
/// Why 500 ms: `auto` readiness for programs that send no `READY=1`. The primary keeps the
/// socket, so connections that arrive before the worker accepts queue rather than fail; the
/// delay only needs to cover the start of a typical interpreter.
pub const DEFAULT_AUTO_READY_DELAY: Duration = Duration::from_millis(500);
/// Why 5 s: a worker that dies sooner most likely failed its start-up, which is what the
/// errored state guards against; one that ran longer resets its slot's backoff.
pub const DEFAULT_MIN_UPTIME: Duration = Duration::from_secs(5);
/// Unstable restarts allowed within [`DEFAULT_RESTART_WINDOW`] before the app is errored.
pub const DEFAULT_MAX_RESTARTS: usize = 10;
/// Why 60 s: with the default backoff a single crash-looping slot reaches the limit in
/// about 40 s, so the window catches it; sporadic crashes spread over hours never do.
pub const DEFAULT_RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The lifecycle knobs of one app.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Number of slots at start.
    pub instances: usize,
    /// How a new worker is judged ready.
    pub readiness: Readiness,
    /// How long a new worker may take to become ready before it is stopped (or a reload
    /// aborted).
    pub listen_timeout: Duration,
    /// `auto` readiness: how long after its start a worker that sent no `READY=1` is
    /// assumed ready.
    pub auto_ready_delay: Duration,
    /// How long a stopping worker gets between the stop signal and SIGKILL.
    pub kill_timeout: Duration,
    /// Restart delay curve of each slot.
    pub backoff: BackoffPolicy,
    /// A worker that ran at least this long is stable: its exit resets its slot's backoff
    /// and does not count towards `max_restarts`.
    pub min_uptime: Duration,
    /// Unstable restarts allowed within `restart_window` before the app is errored.
    pub max_restarts: usize,
    /// Sliding window in which unstable restarts are counted.
    pub restart_window: Duration,
    /// Slots replaced at the same time during a rolling reload; also the most memory
    /// replacements in flight at once.
    pub reload_parallel: usize,
    /// Restart a worker that exits by itself (PM2's `autorestart`). When false its slot
    /// stays empty; see the module documentation for how the app ends.
    pub autorestart: bool,
    /// Exit codes after which a worker is not restarted (PM2's `stop_exit_codes`): such an
    /// exit is treated like one under `autorestart = false`, and counts as clean.
    pub stop_exit_codes: Vec<i32>,
    /// Resident memory (bytes) above which a ready worker is replaced (PM2's
    /// `max_memory_restart`), judged on [`Event::Memory`] samples. `None`: no limit.
    pub max_memory: Option<u64>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            instances: 1,
            readiness: Readiness::Auto,
            listen_timeout: DEFAULT_LISTEN_TIMEOUT,
            auto_ready_delay: DEFAULT_AUTO_READY_DELAY,
            kill_timeout: DEFAULT_KILL_TIMEOUT,
            backoff: BackoffPolicy::default(),
            min_uptime: DEFAULT_MIN_UPTIME,
            max_restarts: DEFAULT_MAX_RESTARTS,
            restart_window: DEFAULT_RESTART_WINDOW,
            reload_parallel: 1,
            autorestart: true,
            stop_exit_codes: Vec::new(),
            max_memory: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Spawning,
    Starting {
        deadline: Instant,
    },
    Ready,
    Stopping {
        reason: StopReason,
        kill_at: Instant,
        killed: bool,
    },
}

#[derive(Debug, Clone)]
struct Worker {
    slot: usize,
    generation: u64,
    pid: Option<u32>,
    started: Instant,
    state: State,
    /// The worker said `STOPPING=1`: no new connections for it.
    draining: bool,
}

#[derive(Debug, Clone)]
struct Slot {
    current: Option<WorkerId>,
    replacement: Option<WorkerId>,
    /// The replacement is a memory restart, not a reload's new worker.
    memory_replacement: bool,
    /// No memory replacement before this (one failed, its backoff runs).
    memory_retry_at: Option<Instant>,
    restart_at: Option<Instant>,
    /// The pending start at `restart_at` is a restart (after an exit), not the first
    /// start of a new slot or a reload's start of an empty one.
    restart_counts: bool,
    backoff: Backoff,
    /// Restarts of this slot: respawns after an unexpected exit, and memory replacements.
    restarts: u32,
    /// When the slot last lost its worker (or was created).
    vacant_since: Instant,
    /// The slot's worker exited and is not restarted (`autorestart = false` or a code in
    /// `stop_exit_codes`); `clean` tells whether that exit counts as a clean one.
    parked: Option<Parked>,
}

#[derive(Debug, Clone, Copy)]
struct Parked {
    clean: bool,
}

impl Slot {
    fn new(now: Instant) -> Self {
        Slot {
            current: None,
            replacement: None,
            memory_replacement: false,
            memory_retry_at: None,
            restart_at: None,
            restart_counts: false,
            backoff: Backoff::default(),
            restarts: 0,
            vacant_since: now,
            parked: None,
        }
    }

    /// Takes the replacement out of the slot, whatever kind it is.
    fn take_replacement(&mut self) -> Option<WorkerId> {
        self.memory_replacement = false;
        self.replacement.take()
    }
}

#[derive(Debug, Clone)]
struct ReloadPlan {
    pending: VecDeque<usize>,
    total: usize,
    done: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Running,
    ShuttingDown { forced: bool },
}

/// The lifecycle state machine of one app. See the module documentation.
#[derive(Debug)]
pub struct Supervisor {
    policy: Policy,
    slots: Vec<Slot>,
    workers: BTreeMap<WorkerId, Worker>,
    next_id: WorkerId,
    generation: u64,
    mode: Mode,
    errored: bool,
    any_killed: bool,
    /// Some worker of this app has sent `READY=1` (`auto` then waits for it).
    speaks_notify: bool,
    unstable: VecDeque<Instant>,
    reload: Option<ReloadPlan>,
    last_route: Option<Vec<usize>>,
    last_wake: Option<Instant>,
    exited: bool,
    /// How the run ended, once it has.
    outcome: Option<Outcome>,
    /// Restarts of every slot the app ever had.
    total_restarts: u32,
    jitter: Jitter,
}

impl Supervisor {
    /// A supervisor for an app with `policy`; `seed` feeds the restart jitter.
    pub fn new(policy: Policy, seed: u64) -> Self {
        Supervisor {
            policy,
            slots: Vec::new(),
            workers: BTreeMap::new(),
            next_id: 1,
            generation: 0,
            mode: Mode::Running,
            errored: false,
            any_killed: false,
            speaks_notify: false,
            unstable: VecDeque::new(),
            reload: None,
            last_route: None,
            last_wake: None,
            exited: false,
            outcome: None,
            total_restarts: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// Feeds one event in at time `now`; returns what the driver must do, in order.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.exited {
            return out;
        }
        match event {
            Event::Start => self.on_start(now, &mut out),
            Event::Spawned { worker, pid } => self.on_spawned(worker, pid, now, &mut out),
            Event::SpawnFailed { worker, error } => {
                self.on_spawn_failed(worker, error, now, &mut out)
            }
            Event::Exited { pid, status } => self.on_exited(pid, status, now, &mut out),
            Event::Notify { pid, msg } => self.on_notify(pid, msg, now, &mut out),
            Event::Timer => {}
            Event::Shutdown => self.on_shutdown(now, &mut out),
            Event::Reload => self.on_reload(now, &mut out),
            Event::ScaleUp => self.on_scale_up(now, &mut out),
            Event::ScaleDown => self.on_scale_down(now, &mut out),
            Event::ScaleTo(n) => self.on_scale_to(n, now, &mut out),
            Event::Memory { pid, rss } => self.on_memory(pid, rss, now, &mut out),
        }
        self.fire_due(now, &mut out);
        self.advance_reload(now, &mut out);
        self.finish(&mut out);
        out
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
            .filter(|w| !matches!(w.state, State::Stopping { .. }))
            .count()
    }

    /// The app crashed too often and is no longer restarted.
    pub fn is_errored(&self) -> bool {
        self.errored
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

    /// A rolling reload is under way.
    pub fn is_reloading(&self) -> bool {
        self.reload.is_some()
    }

    /// The workers that should get new connections: each slot's current worker when it is
    /// ready and not stopping, as (slot, pid), by slot.
    pub fn serving(&self) -> Vec<(usize, u32)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(slot, s)| {
                let w = self.workers.get(&s.current?)?;
                (w.state == State::Ready && !w.draining).then_some((slot, w.pid?))
            })
            .collect()
    }

    /// The slot and generation of the worker with this pid, if it is one of ours.
    pub fn worker_of_pid(&self, pid: u32) -> Option<(usize, u64)> {
        self.workers
            .values()
            .find(|w| w.pid == Some(pid))
            .map(|w| (w.slot, w.generation))
    }

    fn on_start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.slots.is_empty() {
            return;
        }
        for slot in 0..self.policy.instances.max(1) {
            self.slots.push(Slot::new(now));
            let id = self.spawn(slot, now, out);
            self.slots[slot].current = Some(id);
        }
    }

    fn spawn(&mut self, slot: usize, now: Instant, out: &mut Vec<Action>) -> WorkerId {
        let id = self.next_id;
        self.next_id += 1;
        let generation = self.generation;
        self.workers.insert(
            id,
            Worker {
                slot,
                generation,
                pid: None,
                // Replaced by the real start time in `on_spawned`.
                started: now,
                state: State::Spawning,
                draining: false,
            },
        );
        out.push(Action::Log(Log::Spawning {
            slot,
            worker: id,
            generation,
        }));
        out.push(Action::Spawn {
            worker: id,
            slot,
            generation,
        });
        id
    }

    fn ready_deadline(&self, started: Instant) -> Instant {
        match self.policy.readiness {
            Readiness::Notify | Readiness::Message => started + self.policy.listen_timeout,
            Readiness::Delay(d) => started + d,
            Readiness::Auto if self.speaks_notify => started + self.policy.listen_timeout,
            Readiness::Auto => started + self.policy.auto_ready_delay,
        }
    }

    fn on_spawned(&mut self, id: WorkerId, pid: u32, now: Instant, out: &mut Vec<Action>) {
        let deadline = self.ready_deadline(now);
        let mode = self.mode;
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        // A worker can be unwanted before its pid is known (scale-down, reload cancelled).
        let unwanted = match w.state {
            State::Stopping { reason, .. } => Some(reason),
            _ => None,
        };
        w.pid = Some(pid);
        w.started = now;
        w.state = State::Starting { deadline };
        out.push(Action::Log(Log::Spawned { slot: w.slot, pid }));
        let reason = match (mode, unwanted) {
            (Mode::ShuttingDown { .. }, _) => StopReason::Shutdown,
            (Mode::Running, Some(reason)) => reason,
            (Mode::Running, None) => return,
        };
        self.stop(id, reason, now, out);
        if mode == (Mode::ShuttingDown { forced: true }) {
            self.kill(id, out);
        }
    }

    fn on_spawn_failed(
        &mut self,
        id: WorkerId,
        error: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        out.push(Action::Log(Log::SpawnFailed {
            slot: w.slot,
            error: error.clone(),
        }));
        self.worker_gone(id, &w, now, out, Some(error), None);
    }

    fn on_exited(&mut self, pid: u32, status: ExitStatus, now: Instant, out: &mut Vec<Action>) {
        let Some(id) = self.id_of_pid(pid) else {
            return;
        };
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let expected = matches!(self.mode, Mode::ShuttingDown { .. })
            || matches!(w.state, State::Stopping { reason, .. } if reason != StopReason::NotReady);
        out.push(Action::Log(Log::Exited {
            slot: w.slot,
            pid,
            status,
            uptime: now.saturating_duration_since(w.started),
            expected,
        }));
        let why = match status {
            ExitStatus::Code(c) => {
                format!("new worker (pid {pid}) exited with code {c} before it was ready")
            }
            ExitStatus::Signal(s) => {
                format!("new worker (pid {pid}) was killed by signal {s} before it was ready")
            }
        };
        self.worker_gone(id, &w, now, out, Some(why), Some(status));
    }

    /// A worker is gone (exited with `status`, or never started: `None`): decide what its
    /// slot needs.
    fn worker_gone(
        &mut self,
        id: WorkerId,
        w: &Worker,
        now: Instant,
        out: &mut Vec<Action>,
        why: Option<String>,
        status: Option<ExitStatus>,
    ) {
        if self.mode != Mode::Running {
            return;
        }
        let Some(slot) = self.slots.get_mut(w.slot) else {
            return;
        };
        if slot.replacement == Some(id) {
            let memory = slot.memory_replacement;
            slot.take_replacement();
            if !matches!(w.state, State::Stopping { .. }) {
                let reason = why.unwrap_or_else(|| "new worker failed".into());
                if memory {
                    self.memory_replacement_failed(w.slot, reason, now, out);
                } else {
                    self.abort_reload(w.slot, reason, now, out);
                }
            }
            return;
        }
        if slot.current != Some(id) {
            return;
        }
        slot.current = None;
        slot.vacant_since = now;
        if slot.memory_replacement {
            // The old worker died while its memory replacement starts: that replacement is
            // the slot's restart.
            slot.current = slot.take_replacement();
            slot.restarts = slot.restarts.saturating_add(1);
            self.total_restarts = self.total_restarts.saturating_add(1);
            return;
        }
        if self.errored {
            return;
        }
        let stop_code = match status {
            Some(ExitStatus::Code(c)) if self.policy.stop_exit_codes.contains(&c) => Some(c),
            _ => None,
        };
        let no_restart = match (self.policy.autorestart, stop_code) {
            (_, Some(code)) => Some(NoRestart::StopExitCode(code)),
            (false, None) => Some(NoRestart::AutorestartOff),
            (true, None) => None,
        };
        if let Some(reason) = no_restart {
            // A worker herd stopped because it was not ready failed, whatever its code.
            let failed = matches!(
                w.state,
                State::Stopping {
                    reason: StopReason::NotReady,
                    ..
                }
            );
            let clean = !failed && (stop_code.is_some() || status == Some(ExitStatus::Code(0)));
            slot.parked = Some(Parked { clean });
            slot.restart_at = None;
            out.push(Action::Log(Log::NotRestarted {
                slot: w.slot,
                pid: w.pid,
                reason,
            }));
            return;
        }
        let uptime = now.saturating_duration_since(w.started);
        let stable = w.pid.is_some() && uptime >= self.policy.min_uptime;
        if stable {
            slot.backoff.reset();
        } else {
            self.unstable.push_back(now);
            while let Some(&t) = self.unstable.front() {
                if now.saturating_duration_since(t) > self.policy.restart_window {
                    self.unstable.pop_front();
                } else {
                    break;
                }
            }
            if self.unstable.len() > self.policy.max_restarts {
                self.errored = true;
                for s in &mut self.slots {
                    s.restart_at = None;
                }
                out.push(Action::Log(Log::Errored {
                    unstable: self.unstable.len(),
                    window: self.policy.restart_window,
                }));
                return;
            }
        }
        let unit = self.jitter.unit();
        let slot = &mut self.slots[w.slot];
        let delay = slot.backoff.next(&self.policy.backoff, unit);
        slot.restart_at = Some(now + delay);
        slot.restart_counts = true;
        out.push(Action::Log(Log::Restarting {
            slot: w.slot,
            delay,
            unstable: self.unstable.len(),
        }));
    }

    fn on_notify(&mut self, pid: u32, msg: NotifyMsg, now: Instant, out: &mut Vec<Action>) {
        let Some(id) = self.id_of_pid(pid) else {
            out.push(Action::Log(Log::UnknownNotify { pid }));
            return;
        };
        match msg {
            NotifyMsg::Ready | NotifyMsg::Listening | NotifyMsg::PortOpen
                if self.policy.readiness == Readiness::Message => {}
            NotifyMsg::Ready
            | NotifyMsg::ReadyMessage
            | NotifyMsg::Listening
            | NotifyMsg::PortOpen => {
                if !self.speaks_notify && self.policy.readiness == Readiness::Auto {
                    self.speaks_notify = true;
                    // From now on `auto` waits for READY=1: give the others the full timeout.
                    let timeout = self.policy.listen_timeout;
                    for w in self.workers.values_mut() {
                        if let State::Starting { deadline } = &mut w.state {
                            *deadline = w.started + timeout;
                        }
                    }
                }
                if matches!(self.workers[&id].state, State::Starting { .. }) {
                    let how = match msg {
                        NotifyMsg::Ready => ReadyHow::Notify,
                        NotifyMsg::Listening => ReadyHow::Listening,
                        NotifyMsg::PortOpen => ReadyHow::PortOpen,
                        _ => ReadyHow::Message,
                    };
                    self.become_ready(id, how, now, out);
                }
            }
            NotifyMsg::Stopping => {
                let w = self.workers.get_mut(&id).expect("looked up above");
                if !w.draining {
                    w.draining = true;
                    out.push(Action::Log(Log::WorkerStopping { slot: w.slot, pid }));
                }
            }
            NotifyMsg::Status(text) => {
                let slot = self.workers[&id].slot;
                out.push(Action::Log(Log::Status { slot, pid, text }));
            }
            NotifyMsg::Watchdog => {}
        }
    }

    fn become_ready(&mut self, id: WorkerId, how: ReadyHow, now: Instant, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.state = State::Ready;
        let (slot, pid) = (w.slot, w.pid.unwrap_or(0));
        out.push(Action::Log(Log::Ready {
            slot,
            pid,
            after: now.saturating_duration_since(w.started),
            how,
        }));
        if self.slots.get(slot).and_then(|s| s.replacement) == Some(id) {
            self.promote(slot, now, out);
        }
    }

    fn on_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        match self.mode {
            Mode::Running => {
                self.mode = Mode::ShuttingDown { forced: false };
                self.reload = None;
                for s in &mut self.slots {
                    s.restart_at = None;
                }
                out.push(Action::Log(Log::ShutdownStarted {
                    workers: self.workers.len(),
                }));
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.stop(id, StopReason::Shutdown, now, out);
                }
            }
            Mode::ShuttingDown { forced: false } => {
                self.mode = Mode::ShuttingDown { forced: true };
                out.push(Action::Log(Log::ShutdownForced {
                    workers: self.workers.len(),
                }));
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.kill(id, out);
                }
            }
            Mode::ShuttingDown { forced: true } => {}
        }
    }

    /// SIGKILLs a stopping worker, once. A kill during shutdown makes the outcome `Killed`.
    fn kill(&mut self, id: WorkerId, out: &mut Vec<Action>) {
        let shutting_down = self.mode != Mode::Running;
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let (Some(pid), State::Stopping { killed, .. }) = (w.pid, &mut w.state) else {
            return;
        };
        if !*killed {
            *killed = true;
            self.any_killed |= shutting_down;
            out.push(Action::Kill { pid });
        }
    }

    /// Asks a worker to stop gracefully. A worker not spawned yet is stopped once it is.
    fn stop(&mut self, id: WorkerId, reason: StopReason, now: Instant, out: &mut Vec<Action>) {
        let kill_at = now + self.policy.kill_timeout;
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if matches!(w.state, State::Stopping { .. }) {
            return;
        }
        if let Some(pid) = w.pid {
            w.state = State::Stopping {
                reason,
                kill_at,
                killed: false,
            };
            out.push(Action::Log(Log::Stopping {
                slot: w.slot,
                pid,
                reason,
            }));
            out.push(Action::Stop { pid });
        }
        // A worker still in Spawning is handled in `on_spawned` (shutdown) or by the
        // replacement bookkeeping (it is no longer referenced by its slot).
    }

    fn on_scale_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.mode != Mode::Running {
            out.push(Action::Log(Log::Ignored {
                what: "scale up",
                why: "shutting down",
            }));
            return;
        }
        let from = self.slots.len();
        self.add_slot(now);
        out.push(Action::Log(Log::Scaled { from, to: from + 1 }));
    }

    /// One slot more, started at once unless the app is errored.
    fn add_slot(&mut self, now: Instant) {
        let mut slot = Slot::new(now);
        if !self.errored {
            slot.restart_at = Some(now);
        }
        self.slots.push(slot);
    }

    /// The highest slot less; its workers are stopped gracefully.
    fn remove_slot(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(slot) = self.slots.pop() else {
            return;
        };
        for id in [slot.current, slot.replacement].into_iter().flatten() {
            self.stop_or_forget(id, StopReason::ScaleDown, now, out);
        }
    }

    fn on_scale_to(&mut self, to: usize, now: Instant, out: &mut Vec<Action>) {
        if self.mode != Mode::Running {
            out.push(Action::Log(Log::Ignored {
                what: "scale",
                why: "shutting down",
            }));
            return;
        }
        if to == 0 {
            out.push(Action::Log(Log::Ignored {
                what: "scale",
                why: "one worker is the minimum",
            }));
            return;
        }
        let from = self.slots.len();
        if to == from {
            out.push(Action::Log(Log::Ignored {
                what: "scale",
                why: "already at that number of workers",
            }));
            return;
        }
        while self.slots.len() < to {
            self.add_slot(now);
        }
        while self.slots.len() > to {
            self.remove_slot(now, out);
        }
        out.push(Action::Log(Log::Scaled { from, to }));
    }

    fn on_scale_down(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.mode != Mode::Running {
            out.push(Action::Log(Log::Ignored {
                what: "scale down",
                why: "shutting down",
            }));
            return;
        }
        if self.slots.len() <= 1 {
            out.push(Action::Log(Log::Ignored {
                what: "scale down",
                why: "one worker is the minimum",
            }));
            return;
        }
        let from = self.slots.len();
        out.push(Action::Log(Log::Scaled { from, to: from - 1 }));
        self.remove_slot(now, out);
    }

    /// Stops a worker that no slot references any more; one still spawning is marked so
    /// that it is stopped as soon as its pid is known.
    fn stop_or_forget(
        &mut self,
        id: WorkerId,
        reason: StopReason,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let kill_at = now + self.policy.kill_timeout;
        if let Some(w) = self.workers.get_mut(&id) {
            if w.pid.is_none() {
                w.state = State::Stopping {
                    reason,
                    kill_at,
                    killed: false,
                };
                return;
            }
        }
        self.stop(id, reason, now, out);
    }

    /// Handles every deadline that has passed: readiness, kill timeouts, restarts.
    fn fire_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due: Vec<(WorkerId, State)> = self
            .workers
            .iter()
            .filter(|(_, w)| match w.state {
                State::Starting { deadline } => deadline <= now,
                State::Stopping {
                    kill_at, killed, ..
                } => w.pid.is_some() && !killed && kill_at <= now,
                _ => false,
            })
            .map(|(id, w)| (*id, w.state))
            .collect();
        for (id, state) in due {
            // An earlier entry of this loop may have changed this worker (a promotion stops
            // the slot's old worker): act only on what is still true.
            if self.workers.get(&id).map(|w| w.state) != Some(state) {
                continue;
            }
            match state {
                State::Starting { .. } => self.ready_deadline_passed(id, now, out),
                State::Stopping { .. } => {
                    let w = &self.workers[&id];
                    out.push(Action::Log(Log::KillTimeout {
                        slot: w.slot,
                        pid: w.pid.unwrap_or(0),
                        timeout: self.policy.kill_timeout,
                    }));
                    self.kill(id, out);
                }
                _ => {}
            }
        }
        if self.mode != Mode::Running || self.errored {
            return;
        }
        for slot in 0..self.slots.len() {
            let s = &self.slots[slot];
            if s.current.is_none() && matches!(s.restart_at, Some(t) if t <= now) {
                let s = &mut self.slots[slot];
                s.restart_at = None;
                if std::mem::take(&mut s.restart_counts) {
                    s.restarts = s.restarts.saturating_add(1);
                    self.total_restarts = self.total_restarts.saturating_add(1);
                }
                let id = self.spawn(slot, now, out);
                self.slots[slot].current = Some(id);
            }
        }
    }

    fn ready_deadline_passed(&mut self, id: WorkerId, now: Instant, out: &mut Vec<Action>) {
        let readiness = self.policy.readiness;
        match readiness {
            Readiness::Delay(_) => self.become_ready(id, ReadyHow::Delay, now, out),
            Readiness::Auto if !self.speaks_notify => {
                self.become_ready(id, ReadyHow::Assumed, now, out)
            }
            _ => {
                let w = &self.workers[&id];
                let (slot, pid) = (w.slot, w.pid.unwrap_or(0));
                out.push(Action::Log(Log::NotReady {
                    slot,
                    pid,
                    timeout: self.policy.listen_timeout,
                }));
                if self.slots.get(slot).and_then(|s| s.replacement) == Some(id) {
                    let reason = format!(
                        "new worker (pid {pid}) was not ready within the listen timeout ({:?})",
                        self.policy.listen_timeout
                    );
                    if self.slots[slot].memory_replacement {
                        self.slots[slot].take_replacement();
                        self.stop(id, StopReason::NotReady, now, out);
                        self.memory_replacement_failed(slot, reason, now, out);
                    } else {
                        self.abort_reload(slot, reason, now, out);
                    }
                } else {
                    self.stop(id, StopReason::NotReady, now, out);
                }
            }
        }
    }

    /// Ends the step: the route if it changed, the exit if nothing is left, the next wake-up.
    fn finish(&mut self, out: &mut Vec<Action>) {
        let route: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.current
                    .and_then(|id| self.workers.get(&id))
                    .is_some_and(|w| w.state == State::Ready && !w.draining)
            })
            .map(|(i, _)| i)
            .collect();
        if self.last_route.as_ref() != Some(&route) {
            self.last_route = Some(route.clone());
            out.push(Action::Route(route));
        }
        let outcome = match self.mode {
            Mode::ShuttingDown { .. } if self.workers.is_empty() => Some(if self.any_killed {
                Outcome::Killed
            } else {
                Outcome::Clean
            }),
            Mode::Running if self.errored && self.workers.is_empty() => Some(Outcome::Errored),
            Mode::Running if self.workers.is_empty() && self.all_parked() => {
                let clean = self.slots.iter().all(|s| s.parked.is_some_and(|p| p.clean));
                out.push(Action::Log(Log::AppStopped { clean }));
                Some(if clean {
                    Outcome::Clean
                } else {
                    Outcome::Errored
                })
            }
            _ => None,
        };
        if let Some(outcome) = outcome {
            self.exited = true;
            self.outcome = Some(outcome);
            out.push(Action::Exit(outcome));
            return;
        }
        let next = self.next_deadline();
        if let Some(at) = next {
            if next != self.last_wake {
                self.last_wake = next;
                out.push(Action::Wake(at));
            }
        }
    }

    /// Every slot is empty for good (its worker exited and is not restarted).
    fn all_parked(&self) -> bool {
        !self.slots.is_empty()
            && self
                .slots
                .iter()
                .all(|s| s.current.is_none() && s.replacement.is_none() && s.parked.is_some())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let workers = self.workers.values().filter_map(|w| match w.state {
            State::Starting { deadline } => Some(deadline),
            State::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            _ => None,
        });
        let slots = self.slots.iter().filter_map(|s| s.restart_at);
        workers.chain(slots).min()
    }

    fn id_of_pid(&self, pid: u32) -> Option<WorkerId> {
        self.workers
            .iter()
            .find(|(_, w)| w.pid == Some(pid))
            .map(|(id, _)| *id)
    }
}
