//! The first stage of every entry point: the settings of one app ([`AppConfig`]), as a
//! herd.toml, a PM2 ecosystem file, the command line or the library gave them, with
//! nothing defaulted yet. [`plan`](super::plan) validates them, applies the defaults (here
//! and in [`crate::supervisor::Policy`]), and makes the [`RunPlan`](super::RunPlan).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::flags::ProxyProtocol;
use crate::config::Instances;
use crate::listen::{Balance, ListenAddr};
use crate::output::LogFormat;
use crate::supervisor::Readiness;

/// `sticky_wait` when not set. Why 2 s: a worker's restart (100 ms delay plus its start-up)
/// usually fits, and a client waits no longer than a slow page load before it moves on.
pub const DEFAULT_STICKY_WAIT: Duration = Duration::from_secs(2);
/// `stop_signal` when not set: what servers and process managers expect.
pub const DEFAULT_STOP_SIGNAL: Signal = Signal::SIGTERM;
/// `instances` when not set: one worker per CPU this process may use.
pub const DEFAULT_INSTANCES: Instances = Instances::Max;
/// `min_ready` when not set: one ready worker serves, so the app is ready.
pub const DEFAULT_MIN_READY: MinReady = MinReady::Count(1);

/// How many ready workers make the app ready (`/readyz`): a number, or `all` of the slots
/// it has now (following `scale`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinReady {
    /// At least this many (at least 1).
    Count(usize),
    /// Every slot's worker.
    All,
}

impl std::str::FromStr for MinReady {
    type Err = String;

    fn from_str(s: &str) -> Result<MinReady, String> {
        if s.eq_ignore_ascii_case("all") {
            return Ok(MinReady::All);
        }
        match s.parse::<usize>() {
            Ok(n) if n >= 1 => Ok(MinReady::Count(n)),
            _ => Err(format!(
                "`{s}` is not a number of ready workers: expected N (at least 1) or all"
            )),
        }
    }
}

impl std::fmt::Display for MinReady {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MinReady::Count(n) => write!(f, "{n}"),
            MinReady::All => f.write_str("all"),
        }
    }
}

impl MinReady {
    /// The number of ready workers needed with `slots` slots.
    pub fn of(self, slots: usize) -> usize {
        match self {
            MinReady::Count(n) => n,
            MinReady::All => slots.max(1),
        }
    }
}

/// The settings of one app, as a source gave them: `None` (or empty) means "not set", and
/// [`plan`](super::plan::plan) applies the defaults. Every entry point produces this: a
/// herd.toml ([`file`](super::file)), a PM2 ecosystem file ([`ecosystem`](super::ecosystem)),
/// the flags of `herd run` and `herd start` ([`RunFlags::into_config`](super::RunFlags::into_config))
/// and the library's `herd::Cluster`.
///
/// `Default` is an app with an empty program and nothing set: a starting point for code
/// that builds an app from another format (PM2 ecosystem files) or in tests.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AppConfig {
    /// The program to run: the first word of `command`.
    pub program: String,
    /// The rest of `command`, then `args`.
    pub args: Vec<String>,
    /// `cwd`; [`load`](super::file::load) makes a relative one relative to the file's directory.
    pub cwd: Option<PathBuf>,
    /// `env`, with the selected profile's `env_<profile>` merged over it.
    pub env: BTreeMap<String, String>,
    /// The `env_<profile>` tables, by profile, when none was selected: not applied, kept
    /// so that `herd import` and `herd check` write them back (empty once a profile is).
    pub profiles: BTreeMap<String, BTreeMap<String, String>>,
    /// `instances`: N, "max" or -K.
    pub instances: Option<Instances>,
    /// `port`: listen on 0.0.0.0:PORT.
    pub port: Option<u16>,
    /// `listen`: addresses to listen on.
    pub listen: Vec<ListenAddr>,
    /// `balance`.
    pub balance: Option<Balance>,
    /// `proxy`: relay connections through the primary.
    pub proxy: Option<bool>,
    /// `proxy_protocol`: "v1" or "v2" (needs `proxy = true`).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `ready`: auto, notify, message or delay:DURATION.
    pub ready: Option<Readiness>,
    /// `listen_timeout`.
    pub listen_timeout: Option<Duration>,
    /// `kill_timeout`.
    pub kill_timeout: Option<Duration>,
    /// `stop_signal`.
    pub stop_signal: Option<Signal>,
    /// `stop_message`.
    pub stop_message: Option<bool>,
    /// `min_uptime`.
    pub min_uptime: Option<Duration>,
    /// `max_restarts`.
    pub max_restarts: Option<usize>,
    /// `restart_window`.
    pub restart_window: Option<Duration>,
    /// `restart_delay`.
    pub restart_delay: Option<Duration>,
    /// `restart_backoff`: the first delay of unstable restarts only (a stable worker is
    /// still restarted at once); `restart_delay`, when set, wins.
    pub restart_backoff: Option<Duration>,
    /// `restart_delay_max`.
    pub restart_delay_max: Option<Duration>,
    /// `reload_parallel` (at least 1).
    pub reload_parallel: Option<usize>,
    /// `max_memory_restart`: a size, or a share of the container's memory limit.
    pub max_memory_restart: Option<crate::config::MaxMemory>,
    /// `user` to run the workers as.
    pub user: Option<String>,
    /// `group` to run the workers as.
    pub group: Option<String>,
    /// `log_format`.
    pub log_format: Option<LogFormat>,
    /// `admin`: the admin listener's address (`/livez`, `/readyz`); none when unset.
    pub admin: Option<ListenAddr>,
    /// `min_ready`: how many ready workers make the app ready.
    pub min_ready: Option<MinReady>,
    /// `shutdown_delay`: how long the workers keep serving after a shutdown request.
    pub shutdown_delay: Option<Duration>,
    /// `health_check`: the request that tells whether a worker serves.
    pub health_check: Option<super::health::HealthCheck>,
    /// `health_interval`: time between two checks of a worker.
    pub health_interval: Option<Duration>,
    /// `health_timeout`: how long one check may take.
    pub health_timeout: Option<Duration>,
    /// `health_failures`: failed checks in a row that make a worker hung (at least 1).
    pub health_failures: Option<u32>,
    /// `health_start_period`: after a start, failed checks do not count for this long.
    pub health_start_period: Option<Duration>,
    /// `watchdog`: a worker that sends no heartbeat for this long is hung.
    pub watchdog: Option<Duration>,
    /// `worker_metrics`: the path of each worker's own metrics endpoint, which herd
    /// scrapes worker by worker for `/metrics/app`.
    pub worker_metrics: Option<String>,
    /// `cron_restart`: when to reload the workers (rolling, as SIGHUP), in local time.
    pub cron_restart: Option<super::Schedule>,
    /// `filter_env`: which of herd's own variables the workers do not inherit.
    pub filter_env: Option<super::launch::FilterEnv>,
    /// `watch`: reload when a file under these paths changes (relative to `cwd`; `true`
    /// is `["."]`); empty: no watch.
    pub watch: Vec<PathBuf>,
    /// `ignore_watch`: changes of paths these globs match do not count (besides the
    /// defaults, `node_modules`, `.git` and herd's log files).
    pub ignore_watch: Vec<crate::observe::watch::IgnoreGlob>,
    /// `watch_delay`: a burst of changes ends when none came for this long.
    pub watch_delay: Option<Duration>,
    /// `sticky_wait`: with `balance = "sticky"`, how long a client whose worker is
    /// restarting waits for it before going to its next-choice worker.
    pub sticky_wait: Option<Duration>,
    /// `node_cluster`: `false` is `herd run --no-node-cluster` (no NODE_UNIQUE_ID).
    pub node_cluster: Option<bool>,
    /// `node_drain`: `false` is `herd run --no-node-drain` (Node workers get no drain
    /// preload in `NODE_OPTIONS`).
    pub node_drain: Option<bool>,
    /// `namespace`: a group of apps that commands can address together (non-empty).
    pub namespace: Option<String>,
    /// `autorestart`: `false` leaves an exited worker stopped.
    pub autorestart: Option<bool>,
    /// `stop_exit_codes`: exit codes after which a worker is not restarted (empty when
    /// absent).
    pub stop_exit_codes: Vec<i32>,
    /// `instance_var`: the env var that carries the slot number (PM2's `instance_var`;
    /// herd sets `NODE_APP_INSTANCE` when absent).
    pub instance_var: Option<String>,
    /// `increment_var`: an env var whose value in `env` (0 when absent) is incremented by
    /// the slot number for each worker (PM2's `increment_var`, e.g. `PORT`).
    pub increment_var: Option<String>,
    /// `out_file`: the workers' stdout; [`load`](super::file::load) anchors a relative path at
    /// the file's directory.
    pub out_file: Option<PathBuf>,
    /// `error_file`: the workers' stderr, anchored like `out_file`.
    pub error_file: Option<PathBuf>,
    /// `log_file`: stdout and stderr combined, anchored like `out_file`.
    pub log_file: Option<PathBuf>,
    /// `merge_logs`: one file for all workers rather than one per slot.
    pub merge_logs: Option<bool>,
    /// `log_date_format`: timestamp format of log lines (non-empty).
    pub log_date_format: Option<String>,
    /// `log_max_size`: rotate a log file past this many bytes.
    pub log_max_size: Option<u64>,
    /// `log_files`: rotated files kept (at least 1).
    pub log_files: Option<usize>,
}
