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
    /// `WATCHDOG=1`: a heartbeat.
    Watchdog,
}

/// Something that happened, fed to [`Supervisor::step`](super::Supervisor::step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start the app: spawn every slot.
    Start,
    /// The driver started the process for `worker`.
    Spawned { worker: WorkerId, pid: u32 },
    /// The driver could not start the process for `worker`.
    SpawnFailed { worker: WorkerId, error: String },
    /// A child process ended.
    Exited { pid: u32, status: ExitStatus },
    /// A worker's sd_notify datagram (already attributed to the worker's main pid).
    Notify { pid: u32, msg: NotifyMsg },
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

/// A lifecycle record for the log; the driver decides how to write it.
#[derive(Debug, Clone, PartialEq)]
pub enum Log {
    Spawning {
        slot: usize,
        worker: WorkerId,
        generation: u64,
    },
    Spawned {
        slot: usize,
        pid: u32,
    },
    SpawnFailed {
        slot: usize,
        error: String,
    },
    Ready {
        slot: usize,
        pid: u32,
        after: Duration,
        how: ReadyHow,
    },
    /// `expected` is false for crashes.
    Exited {
        slot: usize,
        pid: u32,
        status: ExitStatus,
        uptime: Duration,
        expected: bool,
    },
    Restarting {
        slot: usize,
        delay: Duration,
        unstable: usize,
    },
    Errored {
        unstable: usize,
        window: Duration,
    },
    NotReady {
        slot: usize,
        pid: u32,
        timeout: Duration,
    },
    Stopping {
        slot: usize,
        pid: u32,
        reason: StopReason,
    },
    KillTimeout {
        slot: usize,
        pid: u32,
        timeout: Duration,
    },
    WorkerStopping {
        slot: usize,
        pid: u32,
    },
    Status {
        slot: usize,
        pid: u32,
        text: String,
    },
    ReloadStarted {
        generation: u64,
        slots: usize,
        superseded: bool,
    },
    ReloadProgress {
        slot: usize,
        done: usize,
        total: usize,
    },
    ReloadDone {
        generation: u64,
    },
    ReloadAborted {
        slot: usize,
        reason: String,
    },
    ShutdownStarted {
        workers: usize,
    },
    ShutdownForced {
        workers: usize,
    },
    Scaled {
        from: usize,
        to: usize,
    },
    Recovered,
    Ignored {
        what: &'static str,
        why: &'static str,
    },
    UnknownNotify {
        pid: u32,
    },
}

/// Something for the driver to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Start a process for `worker` in `slot`; answer with `Spawned` or `SpawnFailed`.
    Spawn {
        worker: WorkerId,
        slot: usize,
        generation: u64,
    },
    /// Ask the worker to stop gracefully (stop signal to its process group).
    Stop { pid: u32 },
    /// SIGKILL the worker's process group.
    Kill { pid: u32 },
    /// Write a lifecycle record.
    Log(Log),
    /// Send `Event::Timer` at this instant (replaces any earlier request).
    Wake(Instant),
    /// New connections should go to these slots only (their worker is ready and not stopping).
    Route(Vec<usize>),
    /// Nothing is left to supervise: exit.
    Exit(Outcome),
}
