//! The daemon's apps: their definitions, their state, and the driver thread of each
//! running one. Owns starting a driver and noticing that it ended; it takes no request
//! (the handlers do) and holds its lock only for quick bookkeeping, never across an await.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::AppConfig;
use crate::control::home::{write_atomic, Home};
use crate::driver::{self, guardian::Guardian, reap, spawn::Spawner, AppRequest, Host, Reaping};
use crate::observe::cpus::CpuBudget;
use crate::observe::logfiles::LogPlan;
use crate::supervisor::Outcome;

/// Where an app is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Its driver runs; not every worker is ready yet, or it was never asked.
    Running,
    /// Asked to stop; its workers drain.
    Stopping,
    /// Not running, by request (or its workers all exited cleanly).
    Stopped,
    /// Its workers crashed too often, or it could not start.
    Errored,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Errored => "errored",
        })
    }
}

/// How a driver ended.
#[derive(Debug, Clone)]
pub struct Ended {
    /// Its outcome, or why it failed (a port in use, say).
    pub outcome: Result<Outcome, String>,
}

/// The handles of a running app's driver.
#[derive(Debug, Clone)]
pub struct Running {
    /// Its key among the daemon's children.
    pub key: reap::AppKey,
    /// Requests to the driver.
    pub commands: mpsc::UnboundedSender<AppRequest>,
    /// Set once the driver has ended.
    pub ended: watch::Receiver<Option<Ended>>,
}

impl Running {
    /// Waits until the driver has ended.
    pub async fn wait(&self) -> Ended {
        let mut ended = self.ended.clone();
        let seen = match ended.wait_for(|e| e.is_some()).await {
            Ok(e) => e.clone(),
            Err(_) => None,
        };
        seen.unwrap_or(Ended {
            outcome: Err("its thread ended without a word".into()),
        })
    }
}

/// One app the daemon knows.
#[derive(Debug)]
pub struct App {
    /// Its definition.
    pub config: AppConfig,
    /// The herd.toml text it was defined in (what `save` keeps).
    pub toml: String,
    /// Where it came from, for messages.
    pub origin: String,
    /// The environment of the `herd start` that added it.
    pub base_env: Arc<Vec<(OsString, OsString)>>,
    /// Where it is in its life.
    pub state: State,
    /// Why it stopped or errored.
    pub reason: Option<String>,
    /// When it was last started.
    pub started: SystemTime,
    /// Its driver, while it runs.
    pub run: Option<Running>,
    /// The number of workers `herd scale` set last (what `save` keeps).
    pub scaled: Option<usize>,
    /// The slots it last ran with: its log files, once it stopped.
    pub slots: usize,
    /// A `launch` prepares its driver: it counts as running for `define`.
    launching: bool,
}

#[derive(Debug, Default)]
struct Inner {
    apps: BTreeMap<String, App>,
    routes: HashMap<reap::AppKey, mpsc::UnboundedSender<reap::Reaped>>,
    next_key: reap::AppKey,
}

/// Every app of the daemon, and what their drivers share.
pub struct Registry {
    home: Home,
    children: Arc<reap::Children>,
    spawner: Spawner,
    guardian: Option<Arc<Guardian>>,
    budget: CpuBudget,
    inner: Mutex<Inner>,
    kill: tokio::sync::Notify,
    /// The workers' CPU time between two `herd ls`.
    pub usage: super::usage::Usage,
    /// The daemon is stopping its apps: no app starts any more.
    closing: std::sync::atomic::AtomicBool,
    /// When the daemon started.
    pub started: SystemTime,
    previous: Option<String>,
}

impl Registry {
    /// An empty registry for the daemon of `home`. Reads what the previous daemon left
    /// (see [`Registry::previous_notice`]) and marks this one as running.
    pub fn new(
        home: Home,
        children: Arc<reap::Children>,
        spawner: Spawner,
        guardian: Option<Arc<Guardian>>,
    ) -> Registry {
        let previous = previous_notice(&home);
        let registry = Registry {
            home,
            children,
            spawner,
            guardian,
            budget: crate::observe::cpus::cpu_budget(),
            inner: Mutex::new(Inner {
                next_key: 1,
                ..Default::default()
            }),
            kill: tokio::sync::Notify::new(),
            usage: Default::default(),
            closing: Default::default(),
            started: SystemTime::now(),
            previous,
        };
        registry.write_state(false);
        registry
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The daemon's home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// What to tell the user when the previous daemon of this home died with apps running.
    pub fn previous_notice(&self) -> Option<String> {
        self.previous.clone()
    }

    /// Records that the daemon runs (`clean = false`) or ended by request (`true`): a
    /// daemon that finds `false` knows its predecessor died and took its apps with it.
    pub fn write_state(&self, clean: bool) {
        let state = serde_json::json!({ "pid": std::process::id(), "clean": clean });
        if let Err(e) = write_atomic(&self.home.state(), state.to_string().as_bytes()) {
            warn!("cannot write {}: {e}", self.home.state().display());
        }
    }

    /// Reaps every child that exited (SIGCHLD) and sends each worker's exit to its app's
    /// driver.
    pub fn reap(&self) {
        for r in reap::reap_all(&self.children) {
            self.route_exit(r);
        }
    }

    /// Sends a reaped worker's exit to its app's driver.
    fn route_exit(&self, reaped: reap::Reaped) {
        let Some(key) = reaped.app else {
            tracing::debug!(pid = reaped.pid, "reaped an orphan process");
            return;
        };
        let inner = self.lock();
        match inner.routes.get(&key) {
            Some(route) => {
                let _ = route.send(reaped);
            }
            None => tracing::debug!(pid = reaped.pid, "reaped a worker of an app that ended"),
        }
    }

    /// Adds or redefines an app; a running one keeps running with its old definition
    /// (false is returned).
    pub fn define(
        &self,
        name: &str,
        config: AppConfig,
        toml: &str,
        origin: &str,
        base_env: Arc<Vec<(OsString, OsString)>>,
    ) -> bool {
        let mut inner = self.lock();
        if let Some(app) = inner.apps.get(name) {
            if app.run.is_some() || app.launching {
                return false;
            }
        }
        inner.apps.insert(
            name.to_string(),
            App {
                config,
                toml: toml.to_string(),
                origin: origin.to_string(),
                base_env,
                state: State::Stopped,
                reason: None,
                started: SystemTime::now(),
                run: None,
                scaled: None,
                slots: 0,
                launching: false,
            },
        );
        true
    }

    /// The plan of app `name` with `config`, made off the daemon's thread: it looks up the
    /// program, the user and the directory, calls that can hang on a stuck mount or a slow
    /// user database, and the daemon's thread routes every app's exits.
    pub async fn plan(
        &self,
        name: &str,
        config: AppConfig,
        base_env: Arc<Vec<(OsString, OsString)>>,
    ) -> Result<crate::config::RunPlan, String> {
        let (budget, app_name) = (self.budget.clone(), name.to_string());
        tokio::task::spawn_blocking(move || {
            crate::config::plan(Some(&app_name), &config, Some(base_env), &budget)
                .map_err(|source| crate::config::plan::AppError {
                    app: app_name,
                    source,
                })
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("planning {name} failed: {e}")))
    }

    /// Gives app `name` a new definition while it runs (its driver has taken the plan):
    /// what `ls`, `save` and the next start see. The count `scale` set gives way to the
    /// definition's.
    pub fn redefined(
        &self,
        name: &str,
        config: AppConfig,
        toml: &str,
        origin: &str,
        base_env: Arc<Vec<(OsString, OsString)>>,
    ) {
        self.with_app(name, |app| {
            app.config = config;
            app.toml = toml.to_string();
            app.origin = origin.to_string();
            app.base_env = base_env;
            app.scaled = None;
        });
    }

    /// Starts the driver of a defined app that is not running.
    pub async fn launch(self: &Arc<Self>, name: &str) -> Result<Running, String> {
        let (config, base_env) = {
            let mut inner = self.lock();
            let Some(app) = inner.apps.get_mut(name) else {
                return Err(format!("no app `{name}`"));
            };
            if let Some(run) = &app.run {
                return Ok(run.clone());
            }
            app.launching = true;
            (app.config.clone(), app.base_env.clone())
        };
        // The sink creates the log folder: off the daemon's thread too (see `plan`).
        let plan = self.plan(name, config.clone(), base_env).await;
        let (home, app_name) = (self.home.clone(), name.to_string());
        let prepared = match plan {
            Ok(plan) => tokio::task::spawn_blocking(move || {
                let sink = log_plan(&home, &app_name, &config).sink().map_err(|e| {
                    format!(
                        "cannot write {app_name}'s logs in {}: {e}",
                        home.logs().display()
                    )
                })?;
                Ok::<_, String>((plan, sink))
            })
            .await
            .unwrap_or_else(|e| Err(format!("preparing {name} failed: {e}"))),
            Err(e) => Err(e),
        };
        let mut inner = self.lock();
        let key = inner.next_key;
        let Some(app) = inner.apps.get_mut(name) else {
            return Err(format!("{name}: deleted by another command meanwhile"));
        };
        app.launching = false;
        if self.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(format!("{name}: not started: the daemon is shutting down"));
        }
        if let Some(run) = &app.run {
            // Another command started it meanwhile.
            return Ok(run.clone());
        }
        let (plan, sink) = match prepared {
            Ok(p) => {
                app.slots = p.0.policy.instances;
                p
            }
            Err(why) => {
                app.state = State::Errored;
                app.reason = Some(why.clone());
                return Err(why);
            }
        };
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (route_tx, route) = mpsc::unbounded_channel();
        let (ended_tx, ended) = watch::channel(None);
        let host = Host {
            commands,
            reaping: Reaping::Routed(route),
            children: self.children.clone(),
            spawner: self.spawner.clone(),
            guardian: self.guardian.clone(),
            app: key,
            sink: Some(Box::new(sink)),
            hooks: None,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("herd-app-{key}"))
            .spawn(move || {
                let outcome = driver::run_hosted(plan, host).map_err(|e| format!("{e:#}"));
                ended_tx.send_replace(Some(Ended { outcome }));
            });
        if let Err(e) = spawned {
            let why = format!("cannot start a thread for {name}: {e}");
            app.state = State::Errored;
            app.reason = Some(why.clone());
            return Err(why);
        }
        let running = Running {
            key,
            commands: commands_tx,
            ended,
        };
        app.run = Some(running.clone());
        app.state = State::Running;
        app.reason = None;
        app.started = SystemTime::now();
        inner.next_key += 1;
        inner.routes.insert(key, route_tx);
        drop(inner);
        info!(app = name, "started {name}");
        // Notices the end of a driver that nobody waits for (an app that errored).
        let registry = self.clone();
        let name = name.to_string();
        let watch = running.clone();
        tokio::spawn(async move {
            let ended = watch.wait().await;
            registry.ended(&name, watch.key, &ended);
        });
        Ok(running)
    }

    /// Records that the driver `key` of `name` ended; idempotent.
    pub fn ended(&self, name: &str, key: reap::AppKey, ended: &Ended) {
        let mut inner = self.lock();
        inner.routes.remove(&key);
        let Some(app) = inner.apps.get_mut(name) else {
            return;
        };
        if app.run.as_ref().map(|r| r.key) != Some(key) {
            return;
        }
        app.run = None;
        let (state, reason) = match &ended.outcome {
            Ok(Outcome::Errored) => (
                State::Errored,
                Some("its workers exited too often; no worker is left".to_string()),
            ),
            Ok(Outcome::Killed) => (
                State::Stopped,
                Some("some worker had to be killed after the kill timeout".to_string()),
            ),
            Ok(Outcome::Clean) => (State::Stopped, None),
            Err(e) => (State::Errored, Some(e.clone())),
        };
        info!(app = name, state = %state, "{name} is {state}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default());
        app.state = state;
        app.reason = reason;
    }

    /// The names `select` means: app names, namespaces, or `all`, in registry order.
    pub fn select(&self, select: &[String]) -> Result<Vec<String>, String> {
        let inner = self.lock();
        if select.is_empty() {
            return Err("name an app, a namespace, or `all`".to_string());
        }
        let mut names = Vec::new();
        for s in select {
            let matched: Vec<&String> = if s == "all" {
                inner.apps.keys().collect()
            } else if inner.apps.contains_key(s) {
                vec![inner.apps.get_key_value(s).map(|(k, _)| k).unwrap_or(s)]
            } else {
                inner
                    .apps
                    .iter()
                    .filter(|(_, a)| namespace(&a.config) == Some(s.as_str()))
                    .map(|(k, _)| k)
                    .collect()
            };
            if matched.is_empty() && s != "all" {
                let known: Vec<&str> = inner.apps.keys().map(String::as_str).collect();
                return Err(format!(
                    "no app or namespace `{s}` (apps: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
            }
            for m in matched {
                if !names.contains(m) {
                    names.push(m.clone());
                }
            }
        }
        Ok(names)
    }

    /// Runs `f` on the app `name`, if it exists.
    pub fn with_app<T>(&self, name: &str, f: impl FnOnce(&mut App) -> T) -> Option<T> {
        self.lock().apps.get_mut(name).map(f)
    }

    /// Every app's name.
    pub fn names(&self) -> Vec<String> {
        self.lock().apps.keys().cloned().collect()
    }

    /// Forgets an app unless it runs; false if it runs.
    pub fn remove_if_stopped(&self, name: &str) -> bool {
        let mut inner = self.lock();
        if inner.apps.get(name).is_some_and(|a| a.run.is_some()) {
            return false;
        }
        inner.apps.remove(name);
        true
    }

    /// From now on no app starts (the daemon is stopping them all).
    pub fn close(&self) {
        self.closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Asks the daemon to stop every app and exit.
    pub fn request_kill(&self) {
        self.kill.notify_one();
    }

    /// Resolves when `herd kill` was asked.
    pub async fn killed(&self) {
        self.kill.notified().await
    }
}

/// What the previous daemon of `home` left: a note when it died without `herd kill`.
fn previous_notice(home: &Home) -> Option<String> {
    let text = std::fs::read_to_string(home.state()).ok()?;
    let state: serde_json::Value = serde_json::from_str(&text).ok()?;
    if state.get("clean").and_then(|c| c.as_bool()) != Some(false) {
        return None;
    }
    let pid = state.get("pid").and_then(|p| p.as_u64()).unwrap_or(0);
    let dump = if home.dump().exists() {
        "`herd resurrect` starts the apps of your last `herd save` again"
    } else {
        "there is no `herd save` dump to resurrect them from; start them again"
    };
    Some(format!(
        "the previous herd daemon (pid {pid}) ended without `herd kill`, and its apps' workers ended with it: {dump}"
    ))
}

/// The app's namespace, if it has one.
pub fn namespace(config: &AppConfig) -> Option<&str> {
    config.namespace.as_deref()
}

impl Registry {
    /// Records the end of `run` if its driver has ended already.
    pub fn ended_if_done(&self, name: &str, run: &Running) {
        if let Some(ended) = run.ended.borrow().clone() {
            self.ended(name, run.key, &ended);
        }
    }
}

/// Where the output of the app `name` goes: HERD_HOME/logs unless its config says.
pub fn log_plan(home: &Home, name: &str, config: &AppConfig) -> LogPlan {
    let mut plan = LogPlan::new(home.logs(), name);
    plan.merge = config.merge_logs.unwrap_or(false);
    plan.out_file = config.out_file.clone();
    plan.error_file = config.error_file.clone();
    plan.log_file = config.log_file.clone();
    plan.date_format = config.log_date_format.clone();
    if let Some(size) = config.log_max_size {
        plan.max_size = size;
    }
    if let Some(keep) = config.log_files {
        plan.keep = keep;
    }
    plan.json = config.log_format == Some(crate::output::LogFormat::Json);
    plan
}

/// The current log files of an app with `slots` slots.
pub fn log_files(
    home: &Home,
    name: &str,
    config: &AppConfig,
    slots: usize,
) -> Vec<crate::control::protocol::LogFile> {
    let plan = log_plan(home, name, config);
    // herd's own records of the app: why workers came and went.
    let mut files = vec![crate::control::protocol::LogFile {
        path: crate::observe::app_events::AppEvents::path(&home.logs(), name)
            .display()
            .to_string(),
        slot: None,
        stream: "herd".into(),
    }];
    for slot in 0..slots.max(1) {
        let (out, err) = plan.paths(slot);
        let streams = [
            (Some(out), "out"),
            (Some(err), "err"),
            (plan.combined_path(slot), "all"),
        ];
        for (path, stream) in streams {
            let Some(path) = path else { continue };
            let path = path.display().to_string();
            // out_file = error_file, or merged files: one entry for what they hold.
            if let Some(known) = files.iter_mut().find(|f| f.path == path) {
                if known.stream != stream {
                    known.stream = "all".into();
                }
                continue;
            }
            files.push(crate::control::protocol::LogFile {
                path,
                slot: (!plan.merge).then_some(slot),
                stream: stream.into(),
            });
        }
    }
    files
}
