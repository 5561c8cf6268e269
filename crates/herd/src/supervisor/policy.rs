//! The knobs of one app's lifecycle ([`Policy`], [`Readiness`], [`BackoffPolicy`]) and
//! their defaults, each with the reason for its value. Plain data: the config layer fills
//! it in, the state machine reads it; nothing here decides anything.

use std::time::Duration;

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
    /// stays empty; see the [supervisor](super) documentation for how the app ends.
    pub autorestart: bool,
    /// Exit codes after which a worker is not restarted (PM2's `stop_exit_codes`): such an
    /// exit is treated like one under `autorestart = false`, and counts as clean.
    pub stop_exit_codes: Vec<i32>,
    /// Resident memory (bytes) above which a ready worker is replaced (PM2's
    /// `max_memory_restart`), judged on [`Event::Memory`](super::Event::Memory) samples. `None`: no limit.
    pub max_memory: Option<u64>,
    /// How long after a shutdown request the workers keep serving before they are stopped
    /// (`--shutdown-delay`), while the app reports itself not ready.
    pub shutdown_delay: Duration,
    /// Per-worker health checks (`--health-check`); `None`: none.
    pub health: Option<HealthPolicy>,
    /// A ready worker that sends no heartbeat (`WATCHDOG=1`, the `"watchdog"` message) for
    /// this long is hung and replaced (`--watchdog`); `None`: no watchdog.
    pub watchdog: Option<Duration>,
    /// The workers of a slot accept from one socket of their slot (reuseport), so a hung
    /// worker that still accepts takes a share of its slot's connections and health checks
    /// until it is gone: its slot stays out of the route, and its replacement's failed
    /// checks do not count, until then.
    pub slot_socket_shared: bool,
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
            shutdown_delay: Duration::ZERO,
            health: None,
            watchdog: None,
            slot_socket_shared: false,
        }
    }
}

/// The timing of per-worker health checks. What is checked (an HTTP path) is the driver's
/// business; the state machine only schedules checks and judges their results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Time between two checks of a worker that passed its first one.
    pub interval: Duration,
    /// How long one check may take before it counts as failed (at most `interval`).
    pub timeout: Duration,
    /// Failed checks in a row that make a worker hung.
    pub failures: u32,
    /// After a worker started, failed checks do not count for this long.
    pub start_period: Duration,
}

/// Why 10 s: Kubernetes' default probe period; a check costs herd one connection per
/// worker, so shorter is cheap too (see the README's numbers).
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// Why 2 s: a healthy worker answers its health path in milliseconds even under load;
/// 2 s leaves room for a GC pause without calling it hung (Kubernetes' 1 s is tight).
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Why 3: Kubernetes' and Docker's default; one lost check is noise, three in a row is not.
pub const DEFAULT_HEALTH_FAILURES: u32 = 3;
/// Until a worker passed its first check, it is checked this often (or every `interval`
/// if shorter), so a slow start does not wait a whole interval to be seen healthy.
pub const HEALTH_FIRST_CHECK_EVERY: Duration = Duration::from_millis(500);

impl Default for HealthPolicy {
    fn default() -> Self {
        HealthPolicy {
            interval: DEFAULT_HEALTH_INTERVAL,
            timeout: DEFAULT_HEALTH_TIMEOUT,
            failures: DEFAULT_HEALTH_FAILURES,
            start_period: Duration::ZERO,
        }
    }
}

/// Shape of the restart delay curve for one slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the first restart of a slot.
    pub initial: Duration,
    /// Upper bound of the delay, whatever the number of attempts.
    pub max: Duration,
    /// Each delay is this many times the previous one.
    pub factor: u32,
    /// Fraction of the delay by which it is randomly shortened or lengthened (0.1 = ±10 %),
    /// so workers that crashed together do not restart in lockstep.
    pub jitter: f64,
    /// A worker that ran stably (at least `min_uptime`) is restarted at once, with no delay;
    /// the curve above applies to unstable restarts only. Why: a stable worker's crash is a
    /// one-off and every millisecond its slot is empty costs capacity (gunicorn and Node's
    /// cluster restart at once, PM2's `restart_delay` defaults to 0). False when the user
    /// set a restart delay: then every restart waits at least that delay.
    pub stable_at_once: bool,
}

/// Why 100 ms: the first restart of a worker that did not run stably (a stable one restarts
/// at once, see [`BackoffPolicy::stable_at_once`]); short, since most crashes are one-offs and
/// a worker is a slot of capacity, yet a crash loop does not spin.
pub const DEFAULT_BACKOFF_INITIAL: Duration = Duration::from_millis(100);
/// Why 10 s: long enough that a crash loop costs little CPU, short enough that a fixed
/// dependency (database back up) brings the slot back quickly.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(10);

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            initial: DEFAULT_BACKOFF_INITIAL,
            max: DEFAULT_BACKOFF_MAX,
            factor: 2,
            jitter: 0.1,
            stable_at_once: true,
        }
    }
}
