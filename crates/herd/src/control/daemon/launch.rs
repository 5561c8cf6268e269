//! Starting an app's driver on a thread of its own, and noticing that it ended: the part of
//! the [`Registry`] that touches threads, plans and log files. The bookkeeping of the apps
//! (what is defined, which are running) is in [`super::registry`].

use std::ffi::OsString;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tracing::info;

use super::registry::{Ended, Registry, Running, State};
use crate::config::AppConfig;
use crate::control::home::Home;
use crate::driver::{self, reap, Host, Reaping};
use crate::observe::logfiles::LogPlan;
use crate::supervisor::Outcome;

impl Registry {
    /// The plan of app `name` with `config`, made off the daemon's thread: it looks up the
    /// program, the user and the directory, calls that can hang on a stuck mount or a slow
    /// user database, and the daemon's thread routes every app's exits.
    pub async fn plan(
        &self,
        name: &str,
        config: AppConfig,
        base_env: Arc<Vec<(OsString, OsString)>>,
    ) -> Result<crate::config::RunPlan, String> {
        let (limits, app_name) = (self.limits.clone(), name.to_string());
        let home = self.home.clone();
        tokio::task::spawn_blocking(move || {
            let mut plan = crate::config::plan(Some(&app_name), &config, Some(base_env), &limits)
                .map_err(|source| crate::config::plan::AppError {
                    app: app_name.clone(),
                    source,
                })
                .map_err(|e| e.to_string())?;
            if let Some(watch) = plan.watch.as_mut() {
                // What the daemon writes is no change of the app: its own files, and the
                // app's log files wherever they are.
                watch.ignore.add_tree(home.dir().to_path_buf());
                let written = log_plan(&home, &app_name, &config).written_globs();
                for glob in written.iter().filter_map(|g| g.parse().ok()) {
                    watch.ignore.add_glob(glob);
                }
            }
            Ok(plan)
        })
        .await
        .unwrap_or_else(|e| Err(format!("planning {name} failed: {e}")))
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
            service: false,
            inherited: None,
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
        let (state, reason) = ended.words();
        info!(app = name, state = %state, "{name} is {state}{}", reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default());
        app.state = state;
        app.reason = reason;
    }

    /// Records the end of `run` if its driver has ended already.
    pub fn ended_if_done(&self, name: &str, run: &Running) {
        if let Some(ended) = run.ended.borrow().clone() {
            self.ended(name, run.key, &ended);
        }
    }
}

impl Ended {
    /// What the end of a driver means for its app: the state it is left in and why, in the
    /// words `herd ls`, `describe`, the daemon's log and the answers of requests use.
    pub fn words(&self) -> (State, Option<String>) {
        match &self.outcome {
            Ok(Outcome::Errored) => (
                State::Errored,
                Some("its workers exited too often; no worker is left (see `herd logs`)".into()),
            ),
            Ok(Outcome::Killed) => (
                State::Stopped,
                Some("some worker had to be killed after the kill timeout".into()),
            ),
            Ok(Outcome::Clean) => (State::Stopped, None),
            Err(e) => (State::Errored, Some(format!("it could not start: {e}"))),
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
