//! The validated plan of a `herd run`: everything resolved and typed before anything starts.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::sys::signal::Signal;

use super::cli::{LogFormat, RunArgs};
use crate::listen::{Balance, ListenAddr};
use crate::observe::cpus::CpuBudget;
use crate::supervisor::{BackoffPolicy, Policy};

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
    Proxy(Option<super::cli::ProxyProtocol>),
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
    /// Lifecycle knobs; `policy.instances` is resolved.
    pub policy: Policy,
    /// How `policy.instances` was chosen, for the log.
    pub instances_reason: String,
    /// Signal that asks a worker to stop gracefully (`--stop-signal`).
    pub stop_signal: Signal,
    /// Stop by sending `"shutdown"` on the worker's channel instead of the signal.
    pub stop_message: bool,
    /// Set NODE_UNIQUE_ID so that Node programs act as `cluster` workers of herd.
    pub node_cluster: bool,
    /// Output format of herd's log and of the workers' lines.
    pub log_format: LogFormat,
    /// Variables added to every worker's environment (the library's `Cluster` marks its
    /// re-executed workers with one).
    pub extra_env: Vec<(String, String)>,
    /// The embedding program's callbacks (`herd::Cluster`); none for the CLI.
    pub hooks: Option<Hooks>,
    /// How each worker process starts beyond the contract: directory, environment, user.
    pub launch: Launch,
}

/// Where and as whom a worker runs, and the environment it starts with (an app of a
/// herd.toml; `herd run` leaves all of it to the process herd runs in).
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Working directory (herd's own when `None`).
    pub cwd: Option<PathBuf>,
    /// The environment workers start from instead of herd's own: the daemon's apps get
    /// the environment of the `herd start` that added them, as PM2 does.
    pub base_env: Option<std::sync::Arc<Vec<(OsString, OsString)>>>,
    /// The app's `env`, set over the base environment.
    pub env: Vec<(String, String)>,
    /// A variable that carries the slot number besides HERD_WORKER_ID and
    /// NODE_APP_INSTANCE (PM2's `instance_var`).
    pub instance_var: Option<String>,
    /// A variable of `env` (or the base environment) whose number is increased by the slot
    /// number in each worker (PM2's `increment_var`, e.g. a per-worker debug port).
    pub increment_var: Option<String>,
    /// The user, group and supplementary groups to run workers as.
    pub credentials: Option<Credentials>,
}

/// Who a worker runs as (herd is root and switches in the child, before exec).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups: the user's own (as login, systemd and PM2 set them), so a
    /// worker run as `www-data` keeps e.g. `ssl-cert`.
    pub groups: Vec<u32>,
}

impl Launch {
    /// The variables a worker of `slot` gets over its base environment, later ones
    /// winning: the app's env, the incremented variable, the contract, then `extra`.
    pub fn worker_env(
        &self,
        slot: usize,
        contract: Vec<(String, String)>,
        extra: &[(String, String)],
    ) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        if let Some(var) = &self.increment_var {
            let base = env
                .iter()
                .rev()
                .find(|(k, _)| k == var)
                .map(|(_, v)| v.clone())
                .or_else(|| self.base_value(var));
            if let Some(n) = base.and_then(|v| v.trim().parse::<i64>().ok()) {
                env.push((var.clone(), (n + slot as i64).to_string()));
            }
        }
        env.extend(contract);
        if let Some(var) = &self.instance_var {
            env.push((var.clone(), slot.to_string()));
        }
        env.extend(extra.iter().cloned());
        env
    }

    fn base_value(&self, var: &str) -> Option<String> {
        match &self.base_env {
            Some(base) => env_value(base, var).map(|v| v.to_string_lossy().into_owned()),
            None => std::env::var(var).ok(),
        }
    }
}

/// The value of `key` in an environment given as pairs.
pub fn env_value<'a>(env: &'a [(OsString, OsString)], key: &str) -> Option<&'a OsString> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Callbacks of a program that embeds herd ([`crate::cluster::Cluster`]): run on the
/// driver's thread, so they must be quick.
#[derive(Clone)]
pub struct Hooks(pub std::sync::Arc<dyn crate::cluster::Observer>);

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hooks")
    }
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
        if self.sticky_wait != new.sticky_wait {
            changes.push(format!(
                "sticky_wait ({:?} → {:?})",
                self.sticky_wait, new.sticky_wait
            ));
        }
        changes
    }

    /// Validates raw flags into a plan; `budget` is what `max` means on this machine.
    pub fn from_args(args: RunArgs, budget: &CpuBudget) -> Result<RunPlan, PlanError> {
        let RunArgs {
            flags: args,
            command,
        } = args;
        let Some((program_arg, rest)) = command.split_first() else {
            return Err(PlanError::CommandNotFound(String::new()));
        };
        let program = resolve_program(program_arg, std::env::var_os("PATH").as_deref())?;
        if args.reload_parallel == 0 {
            return Err(PlanError::ReloadParallel);
        }
        if args.restart_delay > args.restart_delay_max {
            return Err(PlanError::RestartDelay {
                initial: args.restart_delay,
                max: args.restart_delay_max,
            });
        }
        let name = match args.name {
            Some(n) if n.trim().is_empty() => return Err(PlanError::EmptyName),
            Some(n) => n,
            None => Path::new(program_arg)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| program_arg.clone()),
        };
        let mut listen = Vec::new();
        if let Some(port) = args.port {
            listen.push(ListenAddr::any_port(port));
        }
        listen.extend(args.listen);
        let balance = match (args.balance, args.proxy) {
            (Some(b), true) if !b.is_handoff() => return Err(PlanError::ProxyBalance(b)),
            (Some(b), _) => b,
            (None, true) => Balance::RoundRobin,
            (None, false) => Balance::ReusePort,
        };
        let transport = match (args.proxy, balance.is_handoff()) {
            (true, _) => Transport::Proxy(args.proxy_protocol),
            (false, true) => Transport::Handoff,
            (false, false) => Transport::Inherit,
        };
        // A proxied worker is ready when its port answers (or when it says so): it must
        // not get connections before, which the `auto` delay could allow.
        let readiness = match (transport, args.ready) {
            (Transport::Proxy(_), crate::supervisor::Readiness::Auto) => {
                crate::supervisor::Readiness::Notify
            }
            (_, r) => r,
        };
        if let Transport::Proxy(_) = transport {
            if let Some(unix) = listen.iter().find(|a| matches!(a, ListenAddr::Unix(_))) {
                return Err(PlanError::ProxyUnix(unix.to_string()));
            }
        }
        let (instances, instances_reason) = args.instances.resolve(budget);
        let policy = Policy {
            instances,
            readiness,
            listen_timeout: args.listen_timeout,
            kill_timeout: args.kill_timeout,
            min_uptime: args.min_uptime,
            max_restarts: args.max_restarts,
            restart_window: args.restart_window,
            reload_parallel: args.reload_parallel,
            max_memory: args.max_memory_restart,
            backoff: BackoffPolicy {
                initial: args.restart_delay,
                max: args.restart_delay_max,
                ..BackoffPolicy::default()
            },
            ..Policy::default()
        };
        Ok(RunPlan {
            name,
            program,
            args: rest.iter().map(OsString::from).collect(),
            listen,
            balance,
            transport,
            sticky_wait: args.sticky_wait,
            policy,
            instances_reason,
            stop_signal: args.stop_signal,
            stop_message: args.stop_message,
            // A proxied Node program binds its private PORT itself: as a cluster worker it
            // would ask herd for that port, and herd would hold a socket per worker process.
            node_cluster: !args.no_node_cluster
                && !args.proxy
                && !node_without_script(program_arg, rest),
            log_format: args.log_format,
            extra_env: Vec::new(),
            hooks: None,
            launch: Launch::default(),
        })
    }
}

/// `node -e …`, `node -p …`, `node -` or a bare `node`: Node runs no script file, and a
/// Node started with NODE_UNIQUE_ID but no script file is a half-set-up cluster worker
/// whose `listen()` never completes (checked with Node 20).
fn node_without_script(program: &str, args: &[String]) -> bool {
    let name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !name.starts_with("node") {
        return false;
    }
    for a in args {
        match a.as_str() {
            "-e" | "--eval" | "-p" | "--print" | "-" | "-i" | "--interactive" => return true,
            a if a.starts_with("--eval=") || a.starts_with("--print=") => return true,
            a if a.starts_with('-') => continue,
            _ => return false,
        }
    }
    true
}

/// Finds `program` the way execvp would, so a typo is reported before any worker starts.
pub fn resolve_program(
    program: &str,
    path_var: Option<&std::ffi::OsStr>,
) -> Result<PathBuf, PlanError> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        check_executable(&p)?;
        return Ok(p);
    }
    let mut last_err = None;
    for dir in std::env::split_paths(path_var.unwrap_or_default()) {
        let candidate = dir.join(program);
        if candidate.exists() {
            match check_executable(&candidate) {
                Ok(()) => return Ok(candidate),
                Err(e) => last_err = Some(e),
            }
        }
    }
    Err(last_err.unwrap_or_else(|| PlanError::CommandNotFound(program.to_string())))
}

fn check_executable(p: &Path) -> Result<(), PlanError> {
    let bad = |why: &str| PlanError::NotExecutable {
        path: p.display().to_string(),
        why: why.into(),
    };
    let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => bad("no such file"),
        _ => bad(&e.to_string()),
    })?;
    if meta.is_dir() {
        return Err(bad("it is a directory"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(bad(
            "it is not executable (chmod +x, or name its interpreter first)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_eval_is_not_a_cluster_worker() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(node_without_script("node", &v(&["-e", "1"])));
        assert!(node_without_script(
            "/usr/bin/node",
            &v(&["--max-old-space-size=100", "-p", "1"])
        ));
        assert!(node_without_script("node", &v(&[])));
        assert!(!node_without_script(
            "node",
            &v(&["--inspect", "server.js", "-e"])
        ));
        assert!(!node_without_script("python3", &v(&["-e"])));
    }

    #[test]
    fn resolves_programs_in_path() {
        let p = resolve_program("sh", Some("/nonexistent:/bin:/usr/bin".as_ref())).unwrap();
        assert!(p.ends_with("sh"));
        assert_eq!(
            resolve_program("no-such-program-herd", Some("/bin".as_ref())),
            Err(PlanError::CommandNotFound("no-such-program-herd".into()))
        );
    }

    #[test]
    fn rejects_paths_that_cannot_run() {
        let dir = std::env::temp_dir();
        let err = resolve_program(dir.to_str().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("directory"), "{err}");
        let f = dir.join(format!("herd-plan-test-{}", std::process::id()));
        std::fs::write(&f, "#!/bin/sh\n").unwrap();
        let err = resolve_program(f.to_str().unwrap(), None).unwrap_err();
        assert!(err.to_string().contains("not executable"), "{err}");
        std::fs::remove_file(&f).unwrap();
        assert!(resolve_program("./definitely/missing", None)
            .unwrap_err()
            .to_string()
            .contains("no such file"));
    }
}
