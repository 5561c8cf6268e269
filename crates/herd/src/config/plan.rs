//! The second stage: the settings of one app ([`AppConfig`]) validated into the
//! [`RunPlan`] its driver runs, with every default applied in one place (the knobs of the
//! lifecycle default to [`Policy::default`], the others to [`super::settings`]'s
//! constants), the program resolved against the app's own PATH and directory, and the user
//! and group looked up. Every entry point (`herd run`, the daemon, `herd::Cluster`) plans
//! through [`plan`]. Nothing here starts a process.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::signal::Signal;

use super::launch::{credentials, env_value, node_without_script, resolve_program, Launch};
use super::settings::{
    AppConfig, MinReady, DEFAULT_INSTANCES, DEFAULT_MIN_READY, DEFAULT_STICKY_WAIT,
    DEFAULT_STOP_SIGNAL,
};
use crate::listen::{Balance, ListenAddr};
use crate::observe::memory::WorkerMemory;
use crate::observe::Limits;
use crate::output::LogFormat;
use crate::supervisor::{BackoffPolicy, Policy, Readiness};

/// A value of the command line that cannot work, found before any worker starts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The program (as given) is in no directory of PATH.
    #[error("command `{0}` not found in PATH")]
    CommandNotFound(String),
    /// The program exists but cannot be executed.
    #[error("command `{path}` cannot be run: {why}")]
    NotExecutable {
        /// The file that was found.
        path: String,
        /// Why it cannot be run (missing, a directory, no execute permission, …).
        why: String,
    },
    /// `--reload-parallel 0`: a reload would never replace a slot.
    #[error("--reload-parallel must be at least 1")]
    ReloadParallel,
    /// The first restart delay is longer than the cap.
    #[error("--restart-delay ({initial:?}) must not exceed --restart-delay-max ({max:?})")]
    RestartDelay {
        /// `--restart-delay`: the first restart delay.
        initial: std::time::Duration,
        /// `--restart-delay-max`: the cap on the restart delay.
        max: std::time::Duration,
    },
    /// `--name` is empty or blank.
    #[error("--name must not be empty")]
    EmptyName,
    /// `--proxy` with a unix socket address (shown here).
    #[error("--proxy relays TCP connections only: `{0}` is a unix socket; leave out --proxy (the handoff modes pass unix connections to workers that take them) or listen on TCP")]
    ProxyUnix(String),
    /// `--proxy` with a `--balance` mode in which herd does not accept connections.
    #[error("--proxy relays connections herd accepts, it cannot go with --balance {0}: use --balance round-robin, least-conn or sticky (or leave --balance out)")]
    ProxyBalance(crate::listen::Balance),
    /// `cwd` is not a directory.
    #[error("cwd `{path}` {why}")]
    Cwd {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `user` or `group` cannot be used.
    #[error("{0}")]
    Credentials(String),
    /// `--health-timeout` longer than `--health-interval`.
    #[error("--health-timeout ({timeout}) must not exceed --health-interval ({interval}): a check would still run when the next is due")]
    HealthTimeout {
        /// `--health-timeout`.
        timeout: String,
        /// `--health-interval`.
        interval: String,
    },
    /// A `--health-*` knob without `--health-check`.
    #[error("{0} needs --health-check (e.g. --health-check http:/healthz)")]
    HealthNeedsCheck(&'static str),
    /// `--health-failures 0`.
    #[error("--health-failures must be at least 1")]
    HealthFailures,
    /// `--watchdog` below the floor.
    #[error("--watchdog {0} is too short: at least 100ms (a worker pings every half period)")]
    WatchdogTooShort(String),
    /// `--worker-metrics` that cannot work; the text says why.
    #[error("{0}")]
    WorkerMetrics(String),
    /// `--health-check` where herd cannot reach one specific worker; the text says why.
    #[error("--health-check cannot reach one specific worker {0}")]
    HealthUntargetable(String),
    /// `--admin` on an address the app listens on.
    #[error("--admin {0} is one of the app's own addresses: the admin listener needs an address of its own (e.g. 127.0.0.1:9100)")]
    AdminOnAppAddress(String),
    /// A `watch` path that cannot be watched.
    #[error("watch path `{given}` {why} ({})", path.display())]
    WatchPath {
        /// As written.
        given: String,
        /// Made absolute.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// `--max-memory-restart 40%` with no container memory limit.
    #[error(transparent)]
    MemoryShare(#[from] super::memory::NoContainerLimit),
}

/// Why an app of a file (or of the daemon) cannot be planned: the [`PlanError`], with the
/// app's name.
#[derive(Debug, thiserror::Error)]
#[error("app `{app}`: {source}")]
pub struct AppError {
    /// The app.
    pub app: String,
    /// What is wrong.
    pub source: PlanError,
}

impl PlanError {
    /// The flags contradict each other (exit code 2, like clap's usage errors), as opposed
    /// to a value that does not work on this machine.
    pub fn is_usage(&self) -> bool {
        matches!(self, PlanError::ProxyBalance(_))
    }
}

/// How connections reach a worker in the handoff modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Workers inherit the listening sockets (`reuseport`, `shared`): herd is not in the path.
    Inherit,
    /// herd accepts and passes the connection's fd over the worker's channel.
    Handoff,
    /// herd accepts and relays bytes to the worker's private port.
    Proxy(Option<super::flags::ProxyProtocol>),
}

/// Everything `herd run` needs, validated.
#[derive(Debug, Clone)]
pub struct RunPlan {
    /// App name for log prefixes.
    pub name: String,
    /// The program, resolved against PATH.
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<OsString>,
    /// Addresses in the order workers receive them.
    pub listen: Vec<ListenAddr>,
    /// How connections are spread over the workers.
    pub balance: Balance,
    /// How connections reach a worker, derived from `balance` and `--proxy`.
    pub transport: Transport,
    /// `--sticky-wait`.
    pub sticky_wait: std::time::Duration,
    /// `--admin`: where /livez and /readyz are served, if anywhere.
    pub admin: Option<ListenAddr>,
    /// `--health-check`: the request; its timing is `policy.health`.
    pub health_check: Option<super::health::HealthCheck>,
    /// `--worker-metrics`: the path of each worker's own metrics endpoint.
    pub worker_metrics: Option<String>,
    /// `--cron-reload` (`cron_restart`): when the workers are reloaded, in local time.
    pub cron_reload: Option<super::Schedule>,
    /// `--watch`: the files whose change reloads the app, if any.
    pub watch: Option<crate::observe::watch::WatchPlan>,
    /// `--min-ready`: ready workers that make the app ready.
    pub min_ready: MinReady,
    /// Lifecycle knobs; `policy.instances` is resolved.
    pub policy: Policy,
    /// How `policy.instances` was chosen, for the log.
    pub instances_reason: String,
    /// `--max-memory-restart` resolved (`policy.max_memory` is its limit), with the
    /// container's memory limit, for the log and its warning at start.
    pub worker_memory: Option<WorkerMemory>,
    /// Signal that asks a worker to stop gracefully (`--stop-signal`).
    pub stop_signal: Signal,
    /// Stop by sending `"shutdown"` on the worker's channel instead of the signal.
    pub stop_message: bool,
    /// Set NODE_UNIQUE_ID so that Node programs act as `cluster` workers of herd.
    pub node_cluster: bool,
    /// Preload herd's drain into the Node cluster workers (`NODE_OPTIONS`), see
    /// `driver::node_drain`.
    pub node_drain: bool,
    /// Output format of herd's log and of the workers' lines.
    pub log_format: LogFormat,
    /// Variables added to every worker's environment (the library's `Cluster` marks its
    /// re-executed workers with one).
    pub extra_env: Vec<(String, String)>,
    /// How each worker process starts beyond the contract: directory, environment, user.
    pub launch: Launch,
}

impl RunPlan {
    /// What `new` would change that a running app keeps for its whole life: the sockets
    /// herd listens on and how connections reach the workers. A rolling reload replaces
    /// workers behind those sockets, so it cannot apply these (a restart can). Each entry
    /// names the herd.toml key with the running and the new value.
    pub fn fixed_changes(&self, new: &RunPlan) -> Vec<String> {
        let addrs = |l: &[ListenAddr]| {
            l.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut changes = Vec::new();
        if self.listen != new.listen {
            changes.push(format!(
                "listen ({} → {})",
                addrs(&self.listen),
                addrs(&new.listen)
            ));
        }
        if self.balance != new.balance {
            changes.push(format!("balance ({} → {})", self.balance, new.balance));
        }
        // The transport follows from the balance mode, except for `proxy`.
        if self.balance == new.balance && self.transport != new.transport {
            changes.push("proxy".to_string());
        }
        if self.admin != new.admin {
            let shown =
                |a: &Option<ListenAddr>| a.as_ref().map_or("none".into(), |a| a.to_string());
            changes.push(format!(
                "admin ({} → {})",
                shown(&self.admin),
                shown(&new.admin)
            ));
        }
        if self.sticky_wait != new.sticky_wait {
            changes.push(format!(
                "sticky_wait ({:?} → {:?})",
                self.sticky_wait, new.sticky_wait
            ));
        }
        changes
    }
}

/// Plans an app from its settings. `name` is the app's (`None`: the program's file name,
/// as `herd run` names it); `base_env` is the environment its workers start from (the
/// daemon's apps get the environment of the `herd start` that added them; `None`: herd's
/// own); `limits` are what `max` and a memory share mean on this machine.
pub fn plan(
    name: Option<&str>,
    app: &AppConfig,
    base_env: Option<Arc<Vec<(OsString, OsString)>>>,
    limits: &Limits,
) -> Result<RunPlan, PlanError> {
    let name = match name {
        Some(n) if n.trim().is_empty() => return Err(PlanError::EmptyName),
        Some(n) => n.to_string(),
        None => Path::new(&app.program)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| app.program.clone()),
    };
    if let Some(cwd) = &app.cwd {
        let bad = |why: String| PlanError::Cwd {
            path: cwd.clone(),
            why,
        };
        match std::fs::metadata(cwd) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(bad("is not a directory".into())),
            Err(e) => return Err(bad(format!("cannot be used: {e}"))),
        }
    }
    let program = find_program(app, base_env.as_deref())?;
    // Filtered once here, after the program was found in the unfiltered PATH: with
    // `filter_env = true` the workers get no PATH, yet `command = "node app.js"` must work.
    // `herd run`'s environment (`None`: herd's own) is taken now; herd never changes it.
    let base_env = match &app.filter_env {
        None => base_env,
        Some(filter) => Some(Arc::new(match base_env {
            Some(base) => filter.apply(base.iter().cloned()),
            None => filter.apply(std::env::vars_os()),
        })),
    };
    let policy = policy(app)?;
    let (listen, balance, transport) = transport(app)?;
    let proxy = matches!(transport, Transport::Proxy(_));
    if let Some(admin) = &app.admin {
        if listen.iter().any(|a| same_address(a, admin)) {
            return Err(PlanError::AdminOnAppAddress(admin.to_string()));
        }
    }
    let health = super::health::plan(app, balance, transport, &listen)?;
    let (instances, instances_reason) = app
        .instances
        .unwrap_or(DEFAULT_INSTANCES)
        .resolve(&limits.cpus);
    let worker_memory = super::memory::resolve(app.max_memory_restart, limits.memory)?;
    // A proxied worker is ready when its port answers (or when it says so): it must not
    // get connections before, which the `auto` delay could allow.
    let readiness = match (transport, policy.readiness) {
        (Transport::Proxy(_), Readiness::Auto) => Readiness::Notify,
        (_, r) => r,
    };
    Ok(RunPlan {
        name,
        program,
        args: app.args.iter().map(OsString::from).collect(),
        listen,
        balance,
        transport,
        sticky_wait: app.sticky_wait.unwrap_or(DEFAULT_STICKY_WAIT),
        admin: app.admin.clone(),
        min_ready: app.min_ready.unwrap_or(DEFAULT_MIN_READY),
        health_check: health.check,
        worker_metrics: health.worker_metrics,
        cron_reload: app.cron_restart.clone(),
        watch: super::watch::plan(app)?,
        policy: Policy {
            instances,
            readiness,
            health: health.policy,
            watchdog: health.watchdog,
            max_memory: worker_memory.as_ref().map(|w| w.limit),
            slot_socket_shared: balance == Balance::ReusePort,
            ..policy
        },
        instances_reason,
        worker_memory,
        stop_signal: app.stop_signal.unwrap_or(DEFAULT_STOP_SIGNAL),
        stop_message: app.stop_message.unwrap_or(false),
        // A proxied Node program binds its private PORT itself: as a cluster worker it
        // would ask herd for that port, and herd would hold a socket per worker process.
        node_cluster: app.node_cluster != Some(false)
            && !proxy
            && !node_without_script(&app.program, &app.args),
        node_drain: app.node_cluster != Some(false)
            && app.node_drain != Some(false)
            && !proxy
            && !node_without_script(&app.program, &app.args),
        log_format: app.log_format.unwrap_or(LogFormat::Text),
        extra_env: Vec::new(),
        launch: Launch {
            cwd: app.cwd.clone(),
            base_env,
            env: app
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            instance_var: app.instance_var.clone(),
            increment_var: app.increment_var.clone(),
            credentials: credentials(app.user.as_deref(), app.group.as_deref())?,
        },
    })
}

/// The addresses of `app` (`--port` first), its balance and its transport.
fn transport(app: &AppConfig) -> Result<(Vec<ListenAddr>, Balance, Transport), PlanError> {
    let mut listen = Vec::new();
    if let Some(port) = app.port {
        listen.push(ListenAddr::any_port(port));
    }
    listen.extend(app.listen.iter().cloned());
    let proxy = app.proxy.unwrap_or(false);
    let balance = match (app.balance, proxy) {
        (Some(b), true) if !b.is_handoff() => return Err(PlanError::ProxyBalance(b)),
        (Some(b), _) => b,
        (None, true) => Balance::RoundRobin,
        (None, false) => Balance::ReusePort,
    };
    let transport = match (proxy, balance.is_handoff()) {
        (true, _) => Transport::Proxy(app.proxy_protocol),
        (false, true) => Transport::Handoff,
        (false, false) => Transport::Inherit,
    };
    if let Transport::Proxy(_) = transport {
        if let Some(unix) = listen.iter().find(|a| matches!(a, ListenAddr::Unix(_))) {
            return Err(PlanError::ProxyUnix(unix.to_string()));
        }
    }
    Ok((listen, balance, transport))
}

/// What [`plan`] would refuse of settings of `app` that contradict each other (`--proxy`
/// with a socket-sharing balance or a unix address, `--admin` on an app address, restart
/// delays, `--health-*`, `--watchdog`), found without the machine (no PATH, no cwd): a
/// herd.toml names the key and line of such a mistake when it is read (`herd check`
/// too). Any other mistake is left to [`plan`].
pub(crate) fn check_combinations(app: &AppConfig) -> Result<(), PlanError> {
    let (listen, balance, transport) = transport(app)?;
    if let Some(admin) = &app.admin {
        if listen.iter().any(|a| same_address(a, admin)) {
            return Err(PlanError::AdminOnAppAddress(admin.to_string()));
        }
    }
    policy(app)?;
    super::health::plan(app, balance, transport, &listen).map(|_| ())
}

/// Whether two addresses would be the same socket: the same unix path, or the same TCP
/// port (not 0) on the same or an unspecified IP (`0.0.0.0:3000` covers `127.0.0.1:3000`).
fn same_address(a: &ListenAddr, b: &ListenAddr) -> bool {
    match (a, b) {
        (ListenAddr::Unix(a), ListenAddr::Unix(b)) => a == b,
        (ListenAddr::Tcp(a), ListenAddr::Tcp(b)) => {
            a.port() != 0
                && a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => false,
    }
}

/// The program, found as execvp would find it with the app's environment: a path is taken
/// relative to the app's directory; a name is looked up in the app's PATH (its `env`, else
/// its base environment, else herd's own), so a typo is reported before any worker starts.
fn find_program(
    app: &AppConfig,
    base_env: Option<&Vec<(OsString, OsString)>>,
) -> Result<PathBuf, PlanError> {
    if app.program.is_empty() {
        return Err(PlanError::CommandNotFound(String::new()));
    }
    if app.program.contains('/') {
        let p = Path::new(&app.program);
        let p = match (&app.cwd, p.is_relative()) {
            (Some(cwd), true) => cwd.join(p),
            _ => p.to_path_buf(),
        };
        return resolve_program(&p.to_string_lossy(), None);
    }
    let path_var = match (app.env.get("PATH"), base_env) {
        (Some(path), _) => Some(OsString::from(path)),
        (None, Some(base)) => env_value(base, "PATH").cloned(),
        (None, None) => std::env::var_os("PATH"),
    };
    resolve_program(&app.program, path_var.as_deref())
}

/// The lifecycle knobs: the app's values over the supervisor's defaults (`instances`,
/// `max_memory` and the proxy's readiness are settled by [`plan`]).
fn policy(app: &AppConfig) -> Result<Policy, PlanError> {
    let d = Policy::default();
    let reload_parallel = app.reload_parallel.unwrap_or(d.reload_parallel);
    if reload_parallel == 0 {
        return Err(PlanError::ReloadParallel);
    }
    let backoff = BackoffPolicy {
        initial: app
            .restart_delay
            .or(app.restart_backoff)
            .unwrap_or(d.backoff.initial),
        max: app.restart_delay_max.unwrap_or(d.backoff.max),
        // A restart delay the user set is honoured for every restart; `restart_backoff`
        // only shapes the unstable ones.
        stable_at_once: app.restart_delay.is_none() && d.backoff.stable_at_once,
        ..d.backoff
    };
    if backoff.initial > backoff.max {
        return Err(PlanError::RestartDelay {
            initial: backoff.initial,
            max: backoff.max,
        });
    }
    Ok(Policy {
        readiness: app.ready.unwrap_or(d.readiness),
        listen_timeout: app.listen_timeout.unwrap_or(d.listen_timeout),
        kill_timeout: app.kill_timeout.unwrap_or(d.kill_timeout),
        min_uptime: app.min_uptime.unwrap_or(d.min_uptime),
        max_restarts: app.max_restarts.unwrap_or(d.max_restarts),
        restart_window: app.restart_window.unwrap_or(d.restart_window),
        reload_parallel,
        autorestart: app.autorestart.unwrap_or(d.autorestart),
        shutdown_delay: app.shutdown_delay.unwrap_or(d.shutdown_delay),
        stop_exit_codes: app.stop_exit_codes.clone(),
        backoff,
        ..d
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Arc<Vec<(OsString, OsString)>> {
        Arc::new(vec![("PATH".into(), "/bin:/usr/bin".into())])
    }

    /// The app `name` planned as the daemon plans it, with a PATH of /bin and /usr/bin.
    fn planned(name: &str, app: &AppConfig) -> Result<RunPlan, PlanError> {
        plan(Some(name), app, Some(base()), &Limits::of_this_process())
    }

    /// Every default a `herd run` flag's help states is what leaving the flag out means:
    /// the help text and the one place defaults are applied cannot drift apart.
    #[test]
    fn the_defaults_in_the_help_are_the_defaults_applied() {
        use clap::{CommandFactory, Parser};
        let limits = Limits::of_this_process();
        let planned = |flags: Vec<String>| {
            let parsed = crate::config::flags::FlagsOnly::try_parse_from(&flags)
                .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
            let (_, app) = parsed.flags.into_config(vec!["sh".into()]);
            let plan = plan(None, &app, None, &limits).unwrap();
            format!(
                "{:?} {:?} {:?} {:?} {:?}",
                plan.policy,
                plan.sticky_wait,
                plan.stop_signal,
                plan.log_format,
                plan.instances_reason
            )
        };
        let bare = planned(Vec::new());
        let mut checked = 0;
        for arg in crate::config::flags::FlagsOnly::command().get_arguments() {
            let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let Some(default) = help
                .split("[default: ")
                .nth(1)
                .and_then(|d| d.split(']').next())
            else {
                continue;
            };
            let flag = format!("--{}", arg.get_long().expect("a long flag"));
            // The health knobs need a health check (and an address to check through).
            let with: Vec<String> = if flag.starts_with("--health-") {
                ["--health-check", "http:/healthz", "-p", "3000"]
                    .map(String::from)
                    .into()
            } else {
                Vec::new()
            };
            let mut argv = with.clone();
            argv.extend([flag.clone(), default.to_string()]);
            assert_eq!(
                planned(argv),
                if with.is_empty() {
                    bare.clone()
                } else {
                    planned(with)
                },
                "{flag} says [default: {default}], but leaving it out means something else"
            );
            checked += 1;
        }
        assert!(checked >= 12, "only {checked} defaults found in the help");
    }

    #[test]
    fn plans_take_the_file_over_the_defaults() {
        let app = AppConfig {
            program: "sh".into(),
            args: vec!["-c".into(), "exit 0".into()],
            instances: Some(crate::config::Instances::Count(3)),
            kill_timeout: Some(std::time::Duration::from_secs(2)),
            autorestart: Some(false),
            stop_exit_codes: vec![3],
            max_memory_restart: Some(crate::config::MaxMemory::Size(1 << 30)),
            ..AppConfig::default()
        };
        let plan = planned("-dash", &app).unwrap();
        assert_eq!(plan.name, "-dash", "a name may start with `-`");
        assert!(plan.program.ends_with("sh"), "found in the app's PATH");
        assert_eq!(plan.policy.instances, 3);
        assert_eq!(plan.policy.kill_timeout, std::time::Duration::from_secs(2));
        assert!(!plan.policy.autorestart);
        assert_eq!(plan.policy.stop_exit_codes, [3]);
        assert_eq!(plan.policy.max_memory, Some(1 << 30));
        // herd run's defaults for the rest.
        assert_eq!(
            plan.policy.listen_timeout,
            crate::supervisor::DEFAULT_LISTEN_TIMEOUT
        );
    }

    /// `max_memory_restart = "25%"` is a quarter of the container's memory limit, and
    /// without one the plan fails naming the value.
    #[test]
    fn a_memory_share_is_resolved_against_the_container_limit() {
        use crate::observe::memory::MemoryLimit;
        let app = AppConfig {
            program: "sh".into(),
            instances: Some(crate::config::Instances::Count(4)),
            max_memory_restart: Some("25%".parse().unwrap()),
            ..AppConfig::default()
        };
        let mut limits = Limits::of_this_process();
        limits.memory = Some(MemoryLimit {
            bytes: 1 << 30,
            source: "cgroup v2 memory.max",
        });
        let shared = plan(Some("api"), &app, Some(base()), &limits).unwrap();
        assert_eq!(shared.policy.max_memory, Some(256 << 20));
        let memory = shared.worker_memory.as_ref().unwrap();
        assert_eq!(memory.limit, 256 << 20);
        assert_eq!(
            memory.overcommit(shared.policy.instances),
            None,
            "4 × 25% fits"
        );
        assert!(memory.overcommit(5).is_some());

        limits.memory = None;
        let err = plan(Some("api"), &app, Some(base()), &limits).unwrap_err();
        assert!(
            err.to_string().starts_with("--max-memory-restart 25%: "),
            "{err}"
        );
        // A size needs no container limit; none set, none planned.
        let sized = AppConfig {
            max_memory_restart: Some("300M".parse().unwrap()),
            ..app.clone()
        };
        let sized = plan(Some("api"), &sized, Some(base()), &limits).unwrap();
        assert_eq!(sized.policy.max_memory, Some(300 << 20));
        let unset = AppConfig {
            max_memory_restart: None,
            ..app
        };
        let unset = plan(Some("api"), &unset, Some(base()), &limits).unwrap();
        assert_eq!((unset.policy.max_memory, unset.worker_memory), (None, None));
    }

    #[test]
    fn only_the_sockets_and_balancing_are_fixed_for_a_running_app() {
        let app = AppConfig {
            program: "sh".into(),
            listen: vec!["127.0.0.1:0".parse().unwrap()],
            ..AppConfig::default()
        };
        let running = planned("web", &app).unwrap();
        let worker_side = AppConfig {
            args: vec!["-c".into(), "exit 0".into()],
            instances: Some(crate::config::Instances::Count(3)),
            kill_timeout: Some(std::time::Duration::from_secs(2)),
            env: [("A".to_string(), "1".to_string())].into(),
            ..app.clone()
        };
        let new = planned("web", &worker_side).unwrap();
        assert_eq!(running.fixed_changes(&new), Vec::<String>::new());
        let moved = AppConfig {
            listen: vec!["127.0.0.1:9".parse().unwrap()],
            balance: Some(crate::listen::Balance::RoundRobin),
            ..app.clone()
        };
        let new = planned("web", &moved).unwrap();
        let changes = running.fixed_changes(&new);
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(
            changes[0].starts_with("listen (127.0.0.1:0 → 127.0.0.1:9)"),
            "{changes:?}"
        );
        assert!(changes[1].starts_with("balance ("), "{changes:?}");
    }

    /// `filter_env` filters the base environment once, in the plan; the program is still
    /// found in the unfiltered PATH.
    #[test]
    fn filter_env_filters_the_base_environment_not_the_program_lookup() {
        use crate::config::FilterEnv;
        let base = Arc::new(vec![
            ("PATH".into(), "/bin:/usr/bin".into()),
            ("SECRET_TOKEN".into(), "x".into()),
            ("LANG".into(), "C.UTF-8".into()),
        ]);
        let names = |filter: Option<FilterEnv>| {
            let app = AppConfig {
                program: "sh".into(),
                env: [("A".to_string(), "1".to_string())].into(),
                filter_env: filter,
                ..AppConfig::default()
            };
            let plan = plan(
                Some("a"),
                &app,
                Some(base.clone()),
                &Limits::of_this_process(),
            )
            .unwrap();
            assert!(plan.program.ends_with("sh"));
            assert_eq!(plan.launch.env, [("A".to_string(), "1".to_string())]);
            let base = plan.launch.base_env.expect("a base environment");
            base.iter()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(None), ["PATH", "SECRET_TOKEN", "LANG"]);
        assert_eq!(
            names(Some(FilterEnv::Prefixes(vec!["SECRET_".into()]))),
            ["PATH", "LANG"]
        );
        assert!(names(Some(FilterEnv::All)).is_empty());
        // herd run's own environment is taken, filtered, when there is none given.
        let app = AppConfig {
            program: "sh".into(),
            filter_env: Some(FilterEnv::All),
            ..AppConfig::default()
        };
        let run = plan(None, &app, None, &Limits::of_this_process()).unwrap();
        assert_eq!(run.launch.base_env.map(|b| b.len()), Some(0));
    }

    #[test]
    fn a_program_not_in_the_apps_path_is_named() {
        let app = AppConfig {
            program: "no-such-program-herd".into(),
            ..AppConfig::default()
        };
        let err = planned("api", &app).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("command `no-such-program-herd`"),
            "{err}"
        );
        let app = AppConfig {
            program: "sh".into(),
            cwd: Some("/no/such/dir".into()),
            ..AppConfig::default()
        };
        let err = planned("api", &app).unwrap_err();
        assert!(err.to_string().contains("cwd `/no/such/dir`"), "{err}");
    }

    /// `restart_backoff` (PM2's `exp_backoff_restart_delay`) shapes the unstable restarts
    /// only: a stable worker is still restarted at once. `restart_delay` delays every
    /// restart, and wins when both are set.
    #[test]
    fn restart_backoff_keeps_the_stable_restart_at_once() {
        let with = |delay: Option<u64>, backoff: Option<u64>| {
            let app = AppConfig {
                restart_delay: delay.map(std::time::Duration::from_millis),
                restart_backoff: backoff.map(std::time::Duration::from_millis),
                ..AppConfig::default()
            };
            let b = policy(&app).unwrap().backoff;
            (b.initial.as_millis() as u64, b.stable_at_once)
        };
        assert_eq!(with(None, None), (100, true));
        assert_eq!(with(None, Some(2000)), (2000, true));
        assert_eq!(with(Some(300), None), (300, false));
        assert_eq!(with(Some(300), Some(2000)), (300, false));
    }
}
