//! The raw command line, as clap sees it. Usage errors exit with code 2 (clap's default).

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;

use super::values::{parse_duration, parse_readiness, parse_signal};
use crate::listen::{Balance, ListenAddr};
use crate::observe::cpus::Instances;
use crate::supervisor::{self, Readiness};

/// herd runs any server program on every CPU core.
#[derive(Debug, Parser)]
#[command(name = "herd", version, about, propagate_version = true)]
pub struct Cli {
    /// The verb.
    #[command(subcommand)]
    pub command: Command,
}

/// The verbs.
// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run N workers of a program in the foreground, sharing the listening sockets.
    ///
    /// Signals: SIGTERM/SIGINT drain and exit (a second one kills at once), SIGHUP/SIGUSR2
    /// reload with zero downtime, SIGTTIN/SIGTTOU add/remove one worker.
    Run(RunArgs),
    /// Check a herd.toml or a PM2 ecosystem file: print each app as herd understands it
    /// (and, for an ecosystem file, the PM2 options herd ignores), or the first error with
    /// its file, line and key (exit 1).
    Check(CheckArgs),
    /// Convert a PM2 ecosystem file (.js, .cjs, .mjs, .json, .yaml) to a herd.toml, printed
    /// on stdout; the PM2 options herd ignores are listed on stderr. Exit 1 on bad input.
    Import(ImportArgs),
    /// The daemon's verbs (PM2 style).
    #[command(flatten)]
    Daemon(crate::control::verbs::Verb),
}

/// Flags of `herd import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The ecosystem file, e.g. ecosystem.config.js.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,

    /// Merge the `env_<PROFILE>` objects over `env` (PM2's `--env`).
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// Flags of `herd check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The file to check: a herd.toml, or a PM2 ecosystem file (.js, .json, .yaml, …).
    #[arg(value_name = "FILE", default_value = "herd.toml")]
    pub file: std::path::PathBuf,

    /// Select the `env_<PROFILE>` tables.
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
}

/// Output format of herd's own log and of the workers' lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// PROXY protocol version (HAProxy's proxy-protocol.txt).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProxyProtocol {
    /// The text header: `PROXY TCP4 src dst sport dport`.
    V1,
    /// The binary header.
    V2,
}

/// `herd run`: its flags, then the command.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// How to run the program.
    #[command(flatten)]
    pub flags: RunFlags,

    /// The program to run, and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The flags of `herd run` (also taken by `herd start -- COMMAND`).
#[derive(Debug, Clone, Args)]
pub struct RunFlags {
    /// Number of workers: N, `max` (the CPUs this process may use, after cgroup quota and
    /// affinity) or -K (max minus K, at least 1). 0 means max, as in PM2.
    #[arg(
        short,
        long,
        value_name = "N|max|-K",
        default_value = "max",
        allow_hyphen_values = true
    )]
    pub instances: Instances,

    /// Listen on this TCP port on all interfaces (same as --listen 0.0.0.0:PORT).
    #[arg(short, long)]
    pub port: Option<u16>,

    /// Listen on this address: host:port, [ipv6-addr]:port or unix:/path. Repeatable;
    /// workers get the sockets from fd 3 in this order (after the one of --port).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<ListenAddr>,

    /// How connections reach workers: `reuseport` (one SO_REUSEPORT socket per worker slot,
    /// steered away from slots that are not ready), `shared` (one socket for all), or herd
    /// accepts and hands each connection over: `round-robin`, `least-conn` (fewest open
    /// connections) or `sticky` (the client IP picks the worker). Default: reuseport, or
    /// round-robin with --proxy.
    #[arg(long, value_name = "MODE")]
    pub balance: Option<Balance>,

    /// Proxy transport: each worker listens on its own private PORT on 127.0.0.1 and herd
    /// relays every connection to the worker --balance picks. For programs that take no
    /// inherited socket and no channel.
    #[arg(long)]
    pub proxy: bool,

    /// With --proxy: start each relayed connection with a PROXY protocol header (v1 text or
    /// v2 binary) so the worker sees the client's address.
    #[arg(long, value_enum, requires = "proxy", value_name = "VERSION")]
    pub proxy_protocol: Option<ProxyProtocol>,

    /// With --balance sticky: how long a client whose worker is restarting waits for the
    /// replacement before it goes to its next-choice worker.
    #[arg(long, default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub sticky_wait: Duration,

    /// When a new worker counts as ready: `auto` (when it says so, else after a short delay),
    /// `notify` (wait for READY=1 on NOTIFY_SOCKET, "ready" on the channel or a Node cluster
    /// worker's `listening`), `message` (only "ready": PM2's wait_ready) or `delay:DURATION`.
    #[arg(long, default_value = "auto", value_parser = parse_readiness, value_name = "POLICY")]
    pub ready: Readiness,

    /// Longest wait for a new worker to become ready.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub listen_timeout: Duration,

    /// Longest wait for a worker to exit after the stop signal, before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub kill_timeout: Duration,

    /// Signal that asks a worker to stop gracefully.
    #[arg(long, default_value = "SIGTERM", value_parser = parse_signal, value_name = "SIGNAL")]
    pub stop_signal: Signal,

    /// Stop a worker by sending the message `"shutdown"` on its channel (NODE_CHANNEL_FD,
    /// Node's `process.on('message')`) instead of the stop signal; the kill timeout still
    /// applies. PM2's `shutdown_with_message`.
    #[arg(long)]
    pub stop_message: bool,

    /// Do not set NODE_UNIQUE_ID: Node programs then do not act as `cluster` workers
    /// (their `listen()` binds by itself). Set automatically for `node -e`/`-p`, where Node
    /// cannot be a cluster worker.
    #[arg(long)]
    pub no_node_cluster: bool,

    /// A worker that ran this long was stable: its slot's restart delay starts over.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub min_uptime: Duration,

    /// Unstable restarts (exits before --min-uptime) allowed within --restart-window before
    /// the app is marked errored and no longer restarted.
    #[arg(long, default_value_t = supervisor::DEFAULT_MAX_RESTARTS, value_name = "N")]
    pub max_restarts: usize,

    /// Window over which --max-restarts counts.
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    pub restart_window: Duration,

    /// First restart delay of a crashed slot; it doubles on each unstable restart.
    #[arg(long, default_value = "100ms", value_parser = parse_duration, value_name = "DURATION")]
    pub restart_delay: Duration,

    /// Longest restart delay.
    #[arg(long, default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub restart_delay_max: Duration,

    /// Restart a worker whose memory (resident, with its children) exceeds this size, e.g.
    /// 500M or 1G: its replacement starts first, then it is stopped gracefully.
    #[arg(long, value_parser = crate::config::file::parse_size, value_name = "SIZE")]
    pub max_memory_restart: Option<u64>,

    /// Slots replaced at the same time during a rolling reload.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub reload_parallel: usize,

    /// Name of the app in logs (default: the program's file name).
    #[arg(long)]
    pub name: Option<String>,

    /// Format of herd's log and the workers' output lines.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, value_name = "FORMAT")]
    pub log_format: LogFormat,
}
