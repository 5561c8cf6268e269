//! The daemon's apps: their definitions, their state, and the driver thread of each
//! running one. Owns starting a driver and noticing that it ended; it takes no request
//! (the handlers do) and holds its lock only for quick bookkeeping, never across an await.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tracing::warn;

use crate::config::AppConfig;
use crate::control::home::{write_atomic, Home};
use crate::driver::{guardian::Guardian, reap, spawn::Spawner, AppRequest};
use crate::observe::Limits;
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
    pub(super) launching: bool,
}

#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) apps: BTreeMap<String, App>,
    pub(super) routes: HashMap<reap::AppKey, mpsc::UnboundedSender<reap::Reaped>>,
    pub(super) next_key: reap::AppKey,
}

/// Every app of the daemon, and what their drivers share.
pub struct Registry {
    pub(super) home: Home,
    pub(super) children: Arc<reap::Children>,
    pub(super) spawner: Spawner,
    pub(super) guardian: Option<Arc<Guardian>>,
    pub(super) limits: Limits,
    inner: Mutex<Inner>,
    kill: tokio::sync::Notify,
    /// The workers' CPU time between two `herd ls`.
    pub usage: super::usage::Usage,
    /// The daemon is stopping its apps: no app starts any more.
    pub(super) closing: std::sync::atomic::AtomicBool,
    /// When the daemon started.
    pub started: SystemTime,
    previous: Option<String>,
    /// The admin listener's address, once it serves.
    pub(super) admin: Mutex<Option<String>>,
    /// The token a dashboard needs to act (`HERD_HOME/dashboard.token`), once written.
    pub(super) token: std::sync::OnceLock<String>,
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
            limits: Limits::of_this_process(),
            inner: Mutex::new(Inner {
                next_key: 1,
                ..Default::default()
            }),
            kill: tokio::sync::Notify::new(),
            usage: Default::default(),
            closing: Default::default(),
            started: SystemTime::now(),
            previous,
            admin: Mutex::new(None),
            token: std::sync::OnceLock::new(),
        };
        registry.write_state(false);
        registry
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
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
