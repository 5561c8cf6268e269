//! Where a driver runs: what a process that supervises workers sets up first (the
//! guardian, the reaper, the spawner thread, the runtime), and the entry points that run
//! one app on it: [`run`] and [`run_foreground`] for `herd run` and `herd::Cluster`,
//! [`run_hosted`] for each app of the daemon.

use std::sync::Arc;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::spawn::{self, Spawner};
use super::{guardian, hooks, reap, signals, AppRequest, Driver};
use crate::config::RunPlan;
use crate::supervisor::Outcome;

/// What a process that supervises workers shares between its apps: `herd run` has one
/// app, the daemon many.
pub struct Process {
    /// The guardian, if it could be forked.
    pub guardian: Option<Arc<guardian::Guardian>>,
    /// The runtime of the main thread.
    pub runtime: tokio::runtime::Runtime,
    /// The live workers of every app (see [`reap::Children`]).
    pub children: Arc<reap::Children>,
    /// The one spawning thread.
    pub spawner: Spawner,
}

/// Sets up what a process that supervises workers needs first, while it has one thread:
/// the guardian (forked, so it must come before any thread), the open-file limit, the
/// child subreaper, the runtime and the spawner thread. `herd run` and the daemon both
/// start with it.
pub fn process_start() -> anyhow::Result<Process> {
    let guardian = match guardian::Guardian::start() {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            warn!("no guardian process ({e}): if herd is SIGKILLed, grandchildren of workers may survive it");
            None
        }
    };
    if let Some((old, new)) = spawn::raise_fd_limit() {
        debug!("open-file limit raised from {old} to {new} (workers keep {old})");
    }
    if let Err(e) = reap::become_subreaper() {
        warn!(
            "cannot become a child subreaper ({e}): orphans of workers will be re-parented to init"
        );
    }
    let runtime = runtime()?;
    let children = Arc::new(reap::Children::default());
    let spawner = Spawner::start(children.clone()).context("cannot start the spawner thread")?;
    Ok(Process {
        guardian,
        runtime,
        children,
        spawner,
    })
}

/// Runs the plan to its end; the outcome decides herd's exit code. `hooks` are the
/// embedding program's (`herd::Cluster`); the CLI has none. `inherited`: the sockets herd
/// was started with (socket activation), served instead of binding the plan's addresses.
pub fn run(
    plan: RunPlan,
    hooks: Option<hooks::Hooks>,
    inherited: Option<crate::listen::Inherited>,
) -> anyhow::Result<Outcome> {
    let Process {
        guardian,
        runtime,
        children,
        spawner,
    } = process_start()?;
    runtime.block_on(async move {
        // Handlers first: a child that exits at once must not be missed.
        let commands = signals::intents().context("cannot install signal handlers")?;
        let sigchld = signal(SignalKind::child()).context("cannot install the SIGCHLD handler")?;
        let host = Host {
            commands,
            reaping: Reaping::Own(sigchld),
            children,
            spawner,
            guardian,
            app: 0,
            sink: None,
            hooks,
            service: true,
            inherited,
        };
        let driver = Driver::new(plan, host)?;
        driver.run().await
    })
}

/// Runs one app in the foreground (`herd run`, `herd::Cluster`): herd's log set up in the
/// app's format (`HERD_LOG_FORMAT` when neither a flag nor a file gave one), the app planned (an error is exit code 1, or 2 for flags that contradict
/// each other), run to its end, and the way it ended as herd's exit code. `extra_env` is
/// added to every worker's environment; `hooks` are an embedding program's.
pub fn run_foreground(
    name: Option<&str>,
    mut app: crate::config::AppConfig,
    extra_env: Vec<(String, String)>,
    hooks: Option<hooks::Hooks>,
) -> std::process::ExitCode {
    if let Err(e) = crate::observe::logging::format_from_env(&mut app.log_format) {
        eprintln!("herd: {e}");
        return std::process::ExitCode::from(2);
    }
    crate::observe::logging::init(app.log_format.unwrap_or(crate::output::LogFormat::Text));
    let limits = crate::observe::Limits::of_this_process();
    let mut plan = match crate::config::plan(name, &app, None, &limits) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    plan.extra_env = extra_env;
    // Checked before anything starts, so bad sockets fail herd before any worker runs.
    let inherited = match crate::listen::Inherited::from_env() {
        Ok(inherited) => inherited,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(1);
        }
    };
    match run(plan, hooks, inherited) {
        Ok(outcome) => {
            let code = outcome.exit_code();
            info!(
                event = "herd.exiting",
                code,
                "herd exits with code {code}: {}",
                outcome.meaning()
            );
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs one app of a process that runs several (the daemon), on the calling thread, to
/// its end. The process-wide parts (reaping, spawning, the guardian) come from `host`.
pub fn run_hosted(plan: RunPlan, host: Host) -> anyhow::Result<Outcome> {
    runtime()?.block_on(async move {
        let driver = Driver::new(plan, host)?;
        driver.run().await
    })
}

/// What one app's driver shares with the process it runs in: `herd run` has one app, the
/// daemon many, with one reaper, one spawner thread and one guardian between them.
pub struct Host {
    /// What the user asks of the app: signals in `herd run`, control requests in the daemon.
    pub commands: mpsc::UnboundedReceiver<AppRequest>,
    /// Where the exits of the app's workers come from.
    pub reaping: Reaping,
    /// The live workers of every app of the process (see [`reap::Children`]).
    pub children: Arc<reap::Children>,
    /// The process's spawning thread.
    pub spawner: Spawner,
    /// The process's guardian, if it could be started.
    pub guardian: Option<Arc<guardian::Guardian>>,
    /// This app's key in `children`.
    pub app: reap::AppKey,
    /// Where the workers' output goes: herd's stdout and stderr when `None`.
    pub sink: Option<Box<dyn crate::output::Sink>>,
    /// The embedding program's observer, if any.
    pub hooks: Option<hooks::Hooks>,
    /// Whether the app speaks for the process to systemd (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC`): `herd run` yes, the daemon's apps no (the daemon does).
    pub service: bool,
    /// The sockets the process was started with (socket activation, `herd run` only), to
    /// serve instead of binding the app's addresses.
    pub inherited: Option<crate::listen::Inherited>,
}

/// How a driver learns of its workers' exits.
pub enum Reaping {
    /// It reaps every child of the process itself on SIGCHLD (`herd run`: one app).
    Own(tokio::signal::unix::Signal),
    /// The process's reaper sends it the exits of its own workers (the daemon).
    Routed(mpsc::UnboundedReceiver<reap::Reaped>),
}

impl Reaping {
    pub(super) async fn next(&mut self, children: &reap::Children) -> Vec<reap::Reaped> {
        match self {
            Reaping::Own(sigchld) => {
                if sigchld.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
                reap::reap_all(children)
            }
            Reaping::Routed(rx) => match rx.recv().await {
                Some(r) => {
                    let mut all = vec![r];
                    while let Ok(r) = rx.try_recv() {
                        all.push(r);
                    }
                    all
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// The runtime an app's driver runs on: one thread, the driver's own, so that nothing of
/// one app waits for another's (the daemon gives each app a thread).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
