//! What goes into the supervisor (events), what comes out (actions), and the lifecycle
//! log records it asks the driver to write.

use std::time::{Duration, Instant};

/// Identity of one worker process over its whole life (never reused within a run).
pub type WorkerId = u64;

/// How a worker process ended, as the kernel reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

/// A message a worker sent on its sd_notify socket that the supervisor acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyMsg {
    /// `READY=1`: the worker serves.
    Ready,
    /// `"ready"` on the worker's channel (PM2's `wait_ready`): same meaning as `Ready`.
    ReadyMessage,
    /// A Node cluster worker's `listening`: ready, unless the policy waits for `"ready"`.
    Listening,
    /// `--proxy`: the worker's private port accepts connections; ready, unless the policy
    /// waits for `"ready"`.
    PortOpen,
    /// `STOPPING=1`: the worker is shutting down by itself; send it no new work.
    Stopping,
    /// `STATUS=…`: free text for humans.
    Status(String),
    /// `WATCHDOG=1`, or the `"watchdog"` message: a heartbeat.
    Watchdog,
    /// `WATCHDOG=trigger`: the worker says it is hung; replace it now.
    WatchdogTrigger,
}

/// Something that happened, fed to [`Supervisor::step`](super::Supervisor::step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start the app: spawn every slot.
    Start,
    /// The driver started the process for `worker`.
    Spawned {
        /// The worker named in the [`Action::Spawn`] this answers.
        worker: WorkerId,
        /// Process id of the new worker process.
        pid: u32,
    },
    /// The driver could not start the process for `worker`.
    SpawnFailed {
        /// The worker named in the [`Action::Spawn`] this answers.
        worker: WorkerId,
        /// Why the process could not be started, for the log.
        error: String,
    },
    /// A child process ended.
    Exited {
        /// Process id of the child that ended.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
    },
    /// A worker's sd_notify datagram (already attributed to the worker's main pid).
    Notify {
        /// Main pid of the worker that sent it.
        pid: u32,
        /// What the worker said.
        msg: NotifyMsg,
    },
    /// A deadline asked for with [`Action::Wake`] may have passed.
    Timer,
    /// SIGTERM/SIGINT: drain gracefully; a second one kills at once.
    Shutdown,
    /// SIGHUP/SIGUSR2: replace every worker, one batch of slots at a time.
    Reload,
    /// SIGTTIN: one slot more.
    ScaleUp,
    /// SIGTTOU: one slot fewer.
    ScaleDown,
    /// `herd scale <app> N`: exactly this many slots (at least 1; 0 is refused and logged),
    /// as many `ScaleUp`s or `ScaleDown`s would, with one log record.
    ScaleTo(usize),
    /// A periodic sample of a live worker's resident memory (its process group's, in bytes).
    /// Above the policy's `max_memory`, a ready worker is replaced.
    Memory {
        /// Main pid of the sampled worker.
        pid: u32,
        /// Resident set size in bytes.
        rss: u64,
    },
    /// The answer to an [`Action::Check`]: the worker's health check passed (with its
    /// latency) or failed (with what went wrong).
    Checked {
        /// Main pid of the checked worker.
        pid: u32,
        /// The latency of a passed check, or why it failed.
        result: Result<Duration, String>,
    },
}

/// Why a worker is being stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// herd is shutting down.
    Shutdown,
    /// Its replacement of a rolling reload is ready.
    Replaced,
    /// The app was scaled down and its slot removed.
    ScaleDown,
    /// It did not become ready within the listen timeout.
    NotReady,
    /// It was a reload replacement that is no longer wanted (reload aborted or superseded).
    ReloadCancelled,
    /// It used more memory than `max_memory`, and its replacement is ready.
    MemoryLimit,
    /// It was hung (failed health checks, a silent watchdog), and its replacement is ready
    /// or none can be started.
    Hung,
}

/// How herd found a worker hung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HangCause {
    /// It failed `failures` health checks in a row.
    Health,
    /// It sent no heartbeat within the watchdog period, or `WATCHDOG=trigger`.
    Watchdog,
}

impl HangCause {
    /// The restart reason it is counted under.
    pub fn reason(self) -> RestartReason {
        match self {
            HangCause::Health => RestartReason::Health,
            HangCause::Watchdog => RestartReason::Watchdog,
        }
    }
}

/// Why a slot was restarted (what [`Supervisor::restarts`](super::Supervisor::restarts)
/// counts, by cause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestartReason {
    /// Its worker exited unexpectedly (or failed to start).
    Crash,
    /// Its worker used more memory than the limit.
    Memory,
    /// Its worker failed its health checks.
    Health,
    /// Its worker's watchdog expired.
    Watchdog,
}

impl RestartReason {
    /// Every reason, in a fixed order.
    pub const ALL: [RestartReason; 4] = [
        RestartReason::Crash,
        RestartReason::Memory,
        RestartReason::Health,
        RestartReason::Watchdog,
    ];

    /// The reason as one lower-case word (logs, JSON, metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            RestartReason::Crash => "crash",
            RestartReason::Memory => "memory",
            RestartReason::Health => "health",
            RestartReason::Watchdog => "watchdog",
        }
    }
}

/// Why a worker that exited is not restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRestart {
    /// The policy's `autorestart` is off.
    AutorestartOff,
    /// It exited with this code, one of the policy's `stop_exit_codes`.
    StopExitCode(i32),
}

/// How a worker was judged ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadyHow {
    /// It sent `READY=1`.
    Notify,
    /// It sent `"ready"` on its channel.
    Message,
    /// A Node cluster worker reported `listening`.
    Listening,
    /// Its private port (`--proxy`) accepted a connection.
    PortOpen,
    /// The configured `delay:` passed.
    Delay,
    /// `auto`: it sent no `READY=1` within the short auto delay, so it is assumed ready.
    Assumed,
}

/// How the whole run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every worker stopped within the kill timeout.
    Clean,
    /// Shutdown finished, but some worker had to be SIGKILLed (timeout or forced).
    Killed,
    /// The app crashed too often and no worker is left.
    Errored,
}

impl Outcome {
    /// herd's exit code for this ending (a contract, in the README): 0, 3 or 4; 1 and 2
    /// are for a herd that could not start.
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Clean => 0,
            Outcome::Killed => 3,
            Outcome::Errored => 4,
        }
    }

    /// The ending in a few words, for the log line that gives the exit code.
    pub fn meaning(self) -> &'static str {
        match self {
            Outcome::Clean => "every worker stopped in time",
            Outcome::Killed => "some worker had to be killed",
            Outcome::Errored => "the app errored and no worker is left",
        }
    }
}

/// A lifecycle record for the log; the driver decides how to write it.
#[derive(Debug, Clone, PartialEq)]
pub enum Log {
    /// A worker process is about to be started.
    Spawning {
        /// Slot the worker will serve.
        slot: usize,
        /// Identity of the new worker.
        worker: WorkerId,
        /// Generation of the program it runs.
        generation: u64,
    },
    /// A worker process started.
    Spawned {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
    },
    /// A worker process could not be started.
    SpawnFailed {
        /// Slot the worker was meant to serve.
        slot: usize,
        /// Why it could not be started.
        error: String,
    },
    /// A worker became ready to serve.
    Ready {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// Time from the process start to readiness.
        after: Duration,
        /// How it was judged ready.
        how: ReadyHow,
    },
    /// A worker process ended. `expected` is false for crashes.
    Exited {
        /// Slot the worker served.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// How it ended.
        status: ExitStatus,
        /// Time from the process start to its end.
        uptime: Duration,
        /// herd had asked it to stop (or is shutting down); false for crashes and for a
        /// worker stopped because it was not ready in time.
        expected: bool,
        /// herd had asked it to stop, and why (`None`: it ended by itself).
        stopped_for: Option<StopReason>,
    },
    /// An empty slot will get a new worker after a backoff delay.
    Restarting {
        /// The slot to restart.
        slot: usize,
        /// Time until the restart.
        delay: Duration,
        /// Unstable restarts within the restart window so far.
        unstable: usize,
    },
    /// The app crashed too often: no more restarts until a reload.
    Errored {
        /// Unstable restarts counted within the window.
        unstable: usize,
        /// The restart window they were counted in.
        window: Duration,
    },
    /// A worker was not ready within the listen timeout.
    NotReady {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// The listen timeout that passed.
        timeout: Duration,
    },
    /// herd asks a worker to stop gracefully.
    Stopping {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// Why it is stopped.
        reason: StopReason,
    },
    /// A stopping worker outlived the kill timeout and is SIGKILLed.
    KillTimeout {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// The kill timeout that passed.
        timeout: Duration,
    },
    /// A worker said `STOPPING=1`: it gets no new connections.
    WorkerStopping {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
    },
    /// A worker sent `STATUS=…`.
    Status {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// The free text it sent.
        text: String,
    },
    /// A rolling reload began.
    ReloadStarted {
        /// The generation every slot is moved to.
        generation: u64,
        /// Number of slots to replace.
        slots: usize,
        /// It replaces a reload that was still under way.
        superseded: bool,
    },
    /// One slot of a rolling reload now runs the new generation.
    ReloadProgress {
        /// The slot just replaced.
        slot: usize,
        /// Slots done so far.
        done: usize,
        /// Slots in the whole reload.
        total: usize,
    },
    /// A rolling reload finished: every worker runs the new generation.
    ReloadDone {
        /// The generation every worker now runs.
        generation: u64,
    },
    /// A rolling reload stopped because a replacement failed; the old workers keep serving.
    ReloadAborted {
        /// The slot whose replacement failed.
        slot: usize,
        /// What went wrong with the replacement.
        reason: String,
    },
    /// A shutdown was asked for: the workers serve for `delay` more, then stop.
    ShutdownDelayed {
        /// The shutdown delay.
        delay: std::time::Duration,
    },
    /// A graceful shutdown began.
    ShutdownStarted {
        /// Workers asked to stop.
        workers: usize,
    },
    /// A second shutdown request: every worker left is SIGKILLed.
    ShutdownForced {
        /// Workers killed.
        workers: usize,
    },
    /// The number of slots changed.
    Scaled {
        /// Slots before.
        from: usize,
        /// Slots after.
        to: usize,
    },
    /// A reload took the app out of the errored state.
    Recovered,
    /// A request was not acted on.
    Ignored {
        /// The request, e.g. `"scale down"`.
        what: &'static str,
        /// Why it was ignored.
        why: &'static str,
    },
    /// A worker exited and its slot stays empty: it is not restarted.
    NotRestarted {
        /// The slot left empty.
        slot: usize,
        /// Process id of the worker, if it had started.
        pid: Option<u32>,
        /// Why it is not restarted.
        reason: NoRestart,
    },
    /// No worker is left and none will be restarted (`autorestart` off or stop exit codes):
    /// the app is stopped.
    AppStopped {
        /// Every last exit was code 0 or a stop exit code (the run exits `Clean`; otherwise
        /// `Errored`).
        clean: bool,
    },
    /// A ready worker uses more memory than the limit: a replacement is started, and the
    /// worker is stopped once the replacement is ready.
    MemoryOverLimit {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// Its resident memory, bytes.
        rss: u64,
        /// The limit, bytes.
        limit: u64,
    },
    /// The replacement of a worker over the memory limit failed; the old worker keeps
    /// serving, and the next sample over the limit tries again after `retry_in`.
    MemoryRestartFailed {
        /// The slot whose replacement failed.
        slot: usize,
        /// What went wrong with the replacement.
        reason: String,
        /// No new attempt before this much time has passed.
        retry_in: Duration,
    },
    /// A counted health check of a worker failed (it had passed one before).
    HealthCheckFailed {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// Failed checks in a row so far.
        failures: u32,
        /// Failed checks in a row that make it hung.
        threshold: u32,
        /// What went wrong.
        error: String,
    },
    /// A worker passed a health check after failing some.
    HealthRecovered {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// Failed checks in a row before this pass.
        failures: u32,
    },
    /// A ready worker is hung: it leaves the route, a replacement starts, and the worker
    /// is stopped once the replacement is ready.
    Hung {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// How it was found hung.
        cause: HangCause,
        /// The evidence (the last failed check, the silent period).
        detail: String,
    },
    /// A worker never passed a health check within the start period plus the listen
    /// timeout: a failed start, stopped like a worker not ready in time.
    NeverHealthy {
        /// Slot the worker serves.
        slot: usize,
        /// Process id of the worker.
        pid: u32,
        /// The time it had.
        within: Duration,
        /// Why its last check failed, if one was made.
        last: Option<String>,
    },
    /// The replacement of a hung worker failed: the hung worker is stopped, and its slot
    /// restarts as after a crash.
    HungRestartFailed {
        /// The slot whose replacement failed.
        slot: usize,
        /// What went wrong with the replacement.
        reason: String,
    },
    /// A notify message came from a pid that is not one of this app's workers.
    UnknownNotify {
        /// The sender's pid.
        pid: u32,
    },
}

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a process for `worker` in `slot`; answer with `Spawned` or `SpawnFailed`.
    Spawn {
        /// Identity of the new worker.
        worker: WorkerId,
        /// Slot it will serve.
        slot: usize,
        /// Generation of the program it runs.
        generation: u64,
    },
    /// Ask the worker to stop gracefully (stop signal to its process group).
    Stop {
        /// Process id of the worker.
        pid: u32,
    },
    /// SIGKILL the worker's process group.
    Kill {
        /// Process id of the worker.
        pid: u32,
    },
    /// Run one health check of the worker; answer with [`Event::Checked`].
    Check {
        /// Process id of the worker.
        pid: u32,
    },
    /// Write a lifecycle record.
    Log(Log),
    /// Send `Event::Timer` at this instant (replaces any earlier request).
    Wake(Instant),
    /// New connections should go to these slots only (their worker is ready and not stopping).
    Route(Vec<usize>),
    /// The slot's worker exited and no other worker serves the slot: the connections queued
    /// on the slot's own socket (reuseport) should move to live slots, if the kernel can.
    Vacate {
        /// The slot left without a worker.
        slot: usize,
    },
    /// Nothing is left to supervise: exit.
    Exit(Outcome),
}
