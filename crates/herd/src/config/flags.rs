//! The flags of `herd run` (also taken by `herd start -- COMMAND`), as clap sees them:
//! the first stage of the command line. Usage errors exit with code 2 (clap's default).

use std::time::Duration;

use clap::{Args, ValueEnum};
use nix::sys::signal::Signal;

use super::settings::AppConfig;
use super::values::parse_readiness;
use crate::config::Instances;
use crate::listen::{Balance, ListenAddr};
use crate::output::LogFormat;
use crate::supervisor::Readiness;
use crate::units::{parse_duration, parse_signal};

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
    /// affinity) or -K (max minus K, at least 1). 0 means max, as in PM2. [default: max]
    #[arg(short, long, value_name = "N|max|-K", allow_hyphen_values = true)]
    pub instances: Option<Instances>,

    /// Listen on this TCP port on all interfaces (same as --listen 0.0.0.0:PORT).
    #[arg(short, long)]
    pub port: Option<u16>,

    /// Listen on this address: host:port, [ipv6-addr]:port or unix:/path. Repeatable;
    /// workers get the sockets from fd 3 in this order (after the one of --port). Started
    /// by socket activation (LISTEN_FDS), the inherited socket that matches it is served.
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
    /// replacement before it goes to its next-choice worker. [default: 2s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub sticky_wait: Option<Duration>,

    /// When a new worker counts as ready: `auto` (when it says so, else after a short delay),
    /// `notify` (wait for READY=1 on NOTIFY_SOCKET, "ready" on the channel or a Node cluster
    /// worker's `listening`), `message` (only "ready": PM2's wait_ready) or `delay:DURATION`. [default: auto]
    #[arg(long, value_parser = parse_readiness, value_name = "POLICY")]
    pub ready: Option<Readiness>,

    /// Longest wait for a new worker to become ready. [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub listen_timeout: Option<Duration>,

    /// Longest wait for a worker to exit after the stop signal, before SIGKILL. [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub kill_timeout: Option<Duration>,

    /// Signal that asks a worker to stop gracefully. [default: SIGTERM]
    #[arg(long, value_parser = parse_signal, value_name = "SIGNAL")]
    pub stop_signal: Option<Signal>,

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

    /// Do not preload herd's drain into Node workers (`NODE_OPTIONS=--require …`): on a
    /// stop, Node's `server.close()` then closes idle keep-alive connections at once.
    #[arg(long)]
    pub no_node_drain: bool,

    /// A worker that ran this long was stable: its slot's restart delay starts over. [default: 5s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub min_uptime: Option<Duration>,

    /// Unstable restarts (exits before --min-uptime) allowed within --restart-window before
    /// the app is marked errored and no longer restarted. [default: 10]
    #[arg(long, value_name = "N")]
    pub max_restarts: Option<usize>,

    /// Window over which --max-restarts counts. [default: 60s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub restart_window: Option<Duration>,

    /// Restart delay of a crashed slot; it doubles on each unstable restart. Not set: a
    /// worker that ran stably (--min-uptime) restarts at once, an unstable one after 100ms
    /// (doubling); set: every restart waits at least this long.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub restart_delay: Option<Duration>,

    /// First delay of the doubling backoff of unstable restarts (default 100ms); unlike
    /// --restart-delay, a worker that ran stably is still restarted at once (PM2's
    /// exp_backoff_restart_delay).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub restart_backoff: Option<Duration>,

    /// Longest restart delay. [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub restart_delay_max: Option<Duration>,

    /// Restart a worker whose memory (resident, with its children) exceeds this size, e.g.
    /// 500M or 1G, or this share of the container's memory limit, e.g. 40%: its replacement
    /// starts first, then it is stopped gracefully.
    #[arg(long, value_name = "SIZE|N%")]
    pub max_memory_restart: Option<crate::config::MaxMemory>,

    /// Slots replaced at the same time during a rolling reload. [default: 1]
    #[arg(long, value_name = "N")]
    pub reload_parallel: Option<usize>,

    /// Serve /livez and /readyz on this address (host:port or unix:/path; never an app's
    /// port). Off when not given.
    #[arg(long, value_name = "ADDR")]
    pub admin: Option<ListenAddr>,

    /// Ready workers that make the app ready for /readyz: N, or `all` of its slots. [default: 1]
    #[arg(long, value_name = "N|all")]
    pub min_ready: Option<super::settings::MinReady>,

    /// On SIGTERM/SIGINT, fail /readyz at once but keep the workers serving this long
    /// before the graceful stop (Kubernetes: while the pod leaves the Service's endpoints). [default: 0s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub shutdown_delay: Option<Duration>,

    /// Check each worker with this HTTP request: http:/PATH, or http://HOST/PATH to send
    /// that Host. A worker that fails --health-failures checks in a row is hung: it gets no
    /// new connections and is replaced. Off when not given.
    #[arg(long, value_name = "http:/PATH")]
    pub health_check: Option<super::health::HealthCheck>,

    /// Time between two health checks of a worker. [default: 10s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub health_interval: Option<Duration>,

    /// How long one health check may take before it fails (at most the interval). [default: 2s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub health_timeout: Option<Duration>,

    /// Failed health checks in a row that make a worker hung. [default: 3]
    #[arg(long, value_name = "N")]
    pub health_failures: Option<u32>,

    /// After a worker starts, failed health checks do not count for this long; one that
    /// never passes within it plus --listen-timeout is a failed start. [default: 0s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub health_start_period: Option<Duration>,

    /// A ready worker that sends no heartbeat (WATCHDOG=1 on NOTIFY_SOCKET, or the
    /// {"herd":"watchdog"} message) for this long is hung and replaced; workers get
    /// WATCHDOG_USEC. At least 100ms. Off when not given.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub watchdog: Option<Duration>,

    /// Scrape each worker's own Prometheus endpoint at this path (e.g. /metrics) worker
    /// by worker, and serve the union on the admin listener's /metrics/app, each series
    /// labelled with its worker's slot. Off when not given.
    #[arg(long, value_name = "PATH")]
    pub worker_metrics: Option<String>,

    /// Reload the workers (rolling, zero downtime, as SIGHUP) at the times of this cron
    /// expression, in local time: 5 fields, e.g. `0 3 * * *` (03:00 daily), or 6 with
    /// seconds first. PM2's cron_restart. Off when not given.
    #[arg(long, value_name = "CRON")]
    pub cron_reload: Option<super::Schedule>,

    /// Workers do not inherit herd's environment variables whose name starts with PREFIX
    /// (repeatable); the worker contract's variables are still set. PM2's filter_env.
    #[arg(long, value_name = "PREFIX", value_parser = super::launch::parse_prefix)]
    pub filter_env: Vec<String>,

    /// Workers inherit none of herd's environment variables, PATH included: they get the
    /// worker contract's variables only (herd still finds the program in its own PATH).
    #[arg(long, conflicts_with = "filter_env")]
    pub filter_env_all: bool,
    /// Reload (rolling, zero downtime) when a file under PATH changes; relative to the
    /// app's directory; repeatable. `--watch` alone watches the app's directory. Off when
    /// not given.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = ".")]
    pub watch: Vec<std::path::PathBuf>,

    /// With --watch: changes of paths this glob matches do not count: a name (`dist`,
    /// `*.log`) anywhere, or a path from the app's directory (`tmp/**`); repeatable.
    /// node_modules, .git and herd's log files never count.
    #[arg(long, value_name = "GLOB")]
    pub ignore_watch: Vec<crate::observe::watch::IgnoreGlob>,

    /// With --watch: reload once no change came for this long, so a burst of changes is
    /// one reload. [default: 1s]
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub watch_delay: Option<Duration>,

    /// Name of the app in logs (default: the program's file name).
    #[arg(long)]
    pub name: Option<String>,

    /// Format of herd's log and the workers' output lines. [default: text]
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
}

impl RunFlags {
    /// The flags as the settings of one app (the first stage every entry point produces):
    /// a flag that was not given stays unset, so the plan applies the one set of defaults.
    /// `command` is the program and its arguments. Returns `--name` besides.
    pub fn into_config(self, command: Vec<String>) -> (Option<String>, AppConfig) {
        let mut command = command.into_iter();
        let app = AppConfig {
            program: command.next().unwrap_or_default(),
            args: command.collect(),
            instances: self.instances,
            port: self.port,
            listen: self.listen,
            balance: self.balance,
            proxy: self.proxy.then_some(true),
            proxy_protocol: self.proxy_protocol,
            sticky_wait: self.sticky_wait,
            ready: self.ready,
            listen_timeout: self.listen_timeout,
            kill_timeout: self.kill_timeout,
            stop_signal: self.stop_signal,
            stop_message: self.stop_message.then_some(true),
            node_cluster: self.no_node_cluster.then_some(false),
            node_drain: self.no_node_drain.then_some(false),
            min_uptime: self.min_uptime,
            max_restarts: self.max_restarts,
            restart_window: self.restart_window,
            restart_delay: self.restart_delay,
            restart_backoff: self.restart_backoff,
            restart_delay_max: self.restart_delay_max,
            reload_parallel: self.reload_parallel,
            max_memory_restart: self.max_memory_restart,
            log_format: self.log_format,
            admin: self.admin,
            min_ready: self.min_ready,
            shutdown_delay: self.shutdown_delay,
            health_check: self.health_check,
            health_interval: self.health_interval,
            health_timeout: self.health_timeout,
            health_failures: self.health_failures,
            health_start_period: self.health_start_period,
            watchdog: self.watchdog,
            worker_metrics: self.worker_metrics,
            cron_restart: self.cron_reload,
            filter_env: super::launch::FilterEnv::from_flags(self.filter_env_all, self.filter_env),
            watch: self.watch,
            ignore_watch: self.ignore_watch,
            watch_delay: self.watch_delay,
            ..AppConfig::default()
        };
        (self.name, app)
    }
}

/// `herd run`'s flags alone, for a program that embeds herd ([`crate::cluster::Cluster`]'s
/// `flag`): parsed with the same definitions as the command line.
#[derive(Debug, clap::Parser)]
#[command(name = "herd::Cluster", no_binary_name = true)]
pub struct FlagsOnly {
    /// The flags.
    #[command(flatten)]
    pub flags: RunFlags,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::FlagsOnly;

    /// A value each flag accepts, where its help states no default.
    fn sample(flag: &str) -> Option<&'static str> {
        Some(match flag {
            "port" => "3000",
            "listen" => "127.0.0.1:0",
            "balance" => "round-robin",
            "proxy-protocol" => "v1",
            "max-memory-restart" => "1G",
            "admin" => "127.0.0.1:9100",
            "health-check" => "http:/healthz",
            "watchdog" => "5s",
            "worker-metrics" => "/metrics",
            "cron-reload" => "0 3 * * *",
            "filter-env" => "SECRET_",
            "watch" => "src",
            "ignore-watch" => "*.log",
            "name" => "web",
            "restart-delay" | "restart-backoff" => "250ms",
            "proxy" | "stop-message" | "no-node-cluster" | "no-node-drain" | "filter-env-all" => {
                return None
            }
            other => panic!("--{other}: give it a sample value in this test"),
        })
    }

    /// Every flag of `herd run` reaches the settings: given alone, it sets its herd.toml
    /// key (`--no-node-cluster` is `node_cluster = false`; `--name` names the app), so a
    /// new flag that `into_config` forgets fails here.
    #[test]
    fn every_flag_reaches_the_settings() {
        let mut checked = 0;
        for arg in FlagsOnly::command().get_arguments() {
            let long = arg.get_long().expect("a long flag");
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let default = help
                .split("[default: ")
                .nth(1)
                .and_then(|d| d.split(']').next());
            let mut argv = vec![format!("--{long}")];
            argv.extend(default.or_else(|| sample(long)).map(String::from));
            if long == "proxy-protocol" {
                argv.push("--proxy".into());
            }
            let parsed =
                FlagsOnly::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
            let (name, app) = parsed.flags.into_config(vec!["sh".into()]);
            if long == "name" {
                assert_eq!(name.as_deref(), Some("web"));
                continue;
            }
            let toml = crate::config::file::to_toml(&[("app".to_string(), app)].into());
            let key = match long {
                "no-node-cluster" => "node_cluster".to_string(),
                "no-node-drain" => "node_drain".to_string(),
                "cron-reload" => "cron_restart".to_string(),
                "filter-env-all" => "filter_env".to_string(),
                other => other.replace('-', "_"),
            };
            assert!(
                toml.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "--{long} does not reach the settings (no `{key}` in):\n{toml}"
            );
            checked += 1;
        }
        assert!(checked >= 20, "only {checked} flags checked");
    }
}
