//! The daemon's verbs as the command line gives them (`herd start`, `ls`, `reload`, …):
//! their flags and arguments, as clap parses them. What each verb does is [`super::verbs`].

use super::protocol::Scale;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::config::RunFlags;

/// The verbs that talk to the daemon.
#[derive(Debug, Subcommand)]
pub enum Verb {
    /// Start apps in the daemon (which starts when needed): those of a herd.toml or a PM2
    /// ecosystem file (.json, .yaml, .js, .cjs, .mjs), or one command after `--` with
    /// `herd run`'s flags. Waits until every worker is ready, then shows `herd ls`.
    Start(Box<StartArgs>),
    /// Stop apps gracefully (names, namespaces or `all`); they stay listed as stopped.
    Stop(Select),
    /// Stop apps, then start them again (a short gap in service; `reload` has none). Given
    /// a file, its apps take the definition it gives now (those not running start).
    Restart(Redo),
    /// Replace every worker of apps slot by slot, with zero downtime. Given a file, the new
    /// workers run the definition it gives now (its sockets, balancing and log files must
    /// stay as they are; `restart FILE` changes those), and the count of workers follows it.
    Reload(Redo),
    /// Stop apps and forget them.
    Delete(Select),
    /// List the apps and their workers.
    #[command(visible_alias = "list", visible_alias = "status")]
    Ls(LsArgs),
    /// Everything about one app.
    Describe(DescribeArgs),
    /// Print the last lines of apps' logs, and follow them.
    Logs(LogsArgs),
    /// Empty the log files of apps (every app when none is named), safely while they are
    /// written.
    Flush(FlushArgs),
    /// Zero the restart counts and counters of apps.
    Reset(Select),
    /// `herd ls --json` (PM2's `jlist`).
    #[command(hide = true)]
    Jlist,
    /// `herd ls --json`, indented (PM2's `prettylist`).
    #[command(hide = true)]
    Prettylist,
    /// A live full-screen view of the apps: every worker's state, health, CPU, memory and
    /// restarts, the selected worker's output; keys reload, restart, stop and scale.
    Monit(MonitArgs),
    /// Print the URL of the daemon's web dashboard, with the token that lets it act
    /// (opening the admin listener on loopback if the daemon has none yet).
    Dashboard(DashboardArgs),
    /// Print the Prometheus metrics of apps (herd's own series; with --app, the apps' own),
    /// from the daemon, or from a `herd run` with --admin ADDR.
    Metrics(MetricsArgs),
    /// Set the number of workers of an app: N, +N or -N.
    Scale(ScaleArgs),
    /// Send a JSON message to every worker of apps (`process.on('message')` in Node).
    Send(SendArgs),
    /// Send a signal to every worker of apps.
    Signal(SignalArgs),
    /// Save the apps, so that `herd resurrect` brings them back.
    Save,
    /// Start the apps of the last `herd save` that are not running.
    Resurrect,
    /// Print a systemd unit that starts the daemon (and the saved apps) at boot; or, with
    /// `run …`, the units of one `herd run` app.
    Startup(StartupArgs),
    /// Stop every app, then the daemon.
    Kill,
    /// Check that the daemon answers (starting it when needed).
    Ping,
    /// Print the versions of this herd and of the running daemon.
    Version,
    /// Run the daemon in the foreground (the CLI starts it when needed; systemd runs this).
    #[command(hide = true)]
    Daemon(DaemonArgs),
    /// Print the environment a worker of an app started with, as sorted KEY=VALUE lines.
    Env(EnvArgs),
}

/// Flags of `herd start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// herd.toml or a PM2 ecosystem file (default: herd.toml), unless a command follows `--`.
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Select the `env_<PROFILE>` tables of the file.
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// Start only these apps of the file (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// The namespace of an app started from a command.
    #[arg(long)]
    pub namespace: Option<String>,
    /// Answer once the apps are started, without waiting for their workers to be ready.
    #[arg(long)]
    pub no_wait: bool,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// How to run a command (the flags of `herd run`).
    #[command(flatten)]
    pub run: RunFlags,
    /// A program and its arguments, to start as one app.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// Which apps.
#[derive(Debug, Args)]
pub struct Select {
    /// App names, namespaces, or `all`.
    #[arg(required = true, value_name = "NAME")]
    pub apps: Vec<String>,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `herd restart` and `herd reload`.
#[derive(Debug, Args)]
pub struct Redo {
    /// App names, namespaces, or `all`; or one herd.toml or PM2 ecosystem file, whose apps
    /// take the definition it gives.
    #[arg(required = true, value_name = "NAME|FILE")]
    pub apps: Vec<String>,
    /// With a file: select its `env_<PROFILE>` tables.
    #[arg(long = "env", value_name = "PROFILE")]
    pub profile: Option<String>,
    /// With a file: only these of its apps (comma-separated).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub only: Vec<String>,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `herd ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// One JSON document instead of the table (environment values hidden).
    #[arg(long)]
    pub json: bool,
    /// With --json: show the apps' environment values instead of `(hidden)`.
    #[arg(long, requires = "json")]
    pub show_env: bool,
    /// Order the apps (and each app's workers) by name, cpu, memory, restarts or uptime;
    /// `:asc` or `:desc` after it to choose (default: name ascending, the others the
    /// largest first).
    #[arg(long, value_name = "KEY[:asc|:desc]", value_parser = super::everyday::parse_sort)]
    pub sort: Option<super::everyday::Sort>,
    /// Redraw the table every SECS seconds (default 1), as `watch -n1 herd ls`; Ctrl-C ends.
    #[arg(short = 'w', long = "watch", value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
    pub watch: Option<u64>,
}

/// Flags of `herd monit`.
#[derive(Debug, Args)]
pub struct MonitArgs {
    /// Watch the `herd run` whose admin listener is at this address (host:port or
    /// unix:/path) instead of the daemon's apps (read-only: the keys that act need the
    /// daemon).
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<crate::listen::ListenAddr>,
}

/// Flags of `herd dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Where the daemon opens its admin listener if it has none yet (host:port). Default:
    /// 127.0.0.1 on a free port. Another host than loopback makes the page reachable from
    /// other machines (herd warns).
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<String>,
    /// Print the read-only URL, without the token.
    #[arg(long)]
    pub read_only: bool,
}

/// Flags of `herd flush`.
#[derive(Debug, Args)]
pub struct FlushArgs {
    /// App names, namespaces, or `all` (every app when none is given).
    #[arg(value_name = "NAME")]
    pub apps: Vec<String>,
}

/// Flags of `herd describe`.
#[derive(Debug, Args)]
pub struct DescribeArgs {
    /// The app.
    pub name: String,
    /// One JSON document (environment values hidden).
    #[arg(long)]
    pub json: bool,
    /// With --json: show the app's environment values instead of `(hidden)`.
    #[arg(long, requires = "json")]
    pub show_env: bool,
}

/// Flags of `herd env`.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// The app.
    pub name: String,
    /// The worker's slot (0..N-1).
    #[arg(default_value_t = 0)]
    pub slot: usize,
    /// One JSON document: {"app", "slot", "pid", "env": {KEY: VALUE}}.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `herd logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The app (default: every app).
    pub name: Option<String>,
    /// How many of the last lines of each file to print.
    #[arg(long, short = 'n', default_value_t = 15)]
    pub lines: usize,
    /// Keep printing lines as they are written.
    #[arg(long, short)]
    pub follow: bool,
    /// One JSON object per line: {"file", "line"}.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `herd scale`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// The app.
    pub name: String,
    /// N, +N or -N.
    #[arg(allow_hyphen_values = true)]
    pub to: Scale,
}

/// Flags of `herd send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The app, a namespace, or `all`.
    pub name: String,
    /// The message: JSON (a bare word is sent as a string).
    pub message: String,
}

/// Flags of `herd signal`.
#[derive(Debug, Args)]
pub struct SignalArgs {
    /// The app, a namespace, or `all`.
    pub name: String,
    /// The signal, e.g. SIGUSR1 or USR1.
    pub signal: String,
}

/// Flags of `herd startup`: `herd startup [--install]` for the daemon, `herd startup
/// [--install] [--socket] [--watchdog DUR] run <herd run flags> -- COMMAND` for one app.
#[derive(Debug, Args)]
pub struct StartupArgs {
    /// Write the unit files and enable them with systemctl (otherwise they are only printed).
    #[arg(long)]
    pub install: bool,
    /// With `run`: also a .socket unit that listens on the app's --listen and --port
    /// addresses and hands the sockets to herd run (socket activation), so they stay open
    /// while the service restarts.
    #[arg(long)]
    pub socket: bool,
    /// With `run`: the service's WatchdogSec= (herd run says WATCHDOG=1 every half of it).
    #[arg(long, value_name = "DURATION", value_parser = crate::units::parse_duration)]
    pub watchdog: Option<std::time::Duration>,
    /// Units for one `herd run` app instead of the daemon.
    #[command(subcommand)]
    pub app: Option<StartupApp>,
}

/// What `herd startup` makes units for besides the daemon.
#[derive(Debug, Subcommand)]
pub enum StartupApp {
    /// A systemd service (Type=notify) that runs `herd run` with the arguments that follow,
    /// exactly as given: `herd startup --socket run -i max -p 3000 --name api -- node
    /// server.js`. See `herd run --help` for them.
    Run(StartupRun),
}

/// The command line of `herd startup run`.
#[derive(Debug, Args)]
pub struct StartupRun {
    /// `herd run`'s flags, `--`, the program and its arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "HERD_RUN_ARGS"
    )]
    pub args: Vec<String>,
}

/// Flags of `herd metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Apps (names, namespaces or `all`; every app when none is given).
    pub apps: Vec<String>,
    /// The apps' own metrics (`/metrics/app`: prom-client, --worker-metrics, PM2's) instead
    /// of herd's.
    #[arg(long)]
    pub app: bool,
    /// Ask the admin listener of a `herd run` at this address (host:port or unix:/path)
    /// instead of the daemon.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<crate::listen::ListenAddr>,
}

/// Flags of `herd daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Start the apps of the last `herd save` first.
    #[arg(long)]
    pub resurrect: bool,
    /// Format of the daemon's own log (daemon.log): text, or JSON objects. A daemon the
    /// CLI starts takes HERD_LOG_FORMAT.
    #[arg(long, value_enum, env = "HERD_LOG_FORMAT", default_value_t = crate::output::LogFormat::Text)]
    pub log_format: crate::output::LogFormat,
    /// Serve /livez and /readyz for every app on this address (host:port or unix:/path).
    /// A daemon the CLI starts takes HERD_DAEMON_ADMIN.
    #[arg(long, env = "HERD_DAEMON_ADMIN", value_name = "ADDR")]
    pub admin: Option<crate::listen::ListenAddr>,
}
