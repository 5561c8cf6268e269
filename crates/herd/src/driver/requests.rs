//! What the user asks of a running app, besides signals: the daemon's requests (status,
//! scale, send, signal, reload and wait for readiness), and the requests that wait for a
//! state of the app, answered once it is reached.
//!
//! Replies say why a request was not done as a [`RequestError`]: facts, not sentences for a
//! terminal; the daemon words them. Whether a waiting reload is over, and whether it puts
//! the previous definition back, is [`reload_end`], a pure function of the supervisor's state.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tracing::{info, warn};

use super::signals::Intent;
use super::{status, Driver};
use crate::supervisor::Event;

/// Why a request to a running app was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A reload keeps the app's sockets and balancing: the new definition changes these.
    #[error("the new definition changes {}", .0.join(", "))]
    FixedChanges(Vec<String>),
    /// The app errored: its workers exited too often.
    #[error("{app} errored: its workers exited too often")]
    Errored {
        /// The app.
        app: String,
        /// A reload with a new definition failed and the previous one was put back.
        kept_previous: bool,
    },
    /// No worker of the app runs in this slot (`herd env`).
    #[error("no worker runs in slot {slot} (the app has {slots})")]
    NoWorker {
        /// The slot asked for.
        slot: usize,
        /// How many slots the app has.
        slots: usize,
    },
    /// A new worker of a reload did not become ready: the reload stopped, the old workers
    /// keep serving.
    #[error("the reload of {app} stopped: a new worker did not become ready")]
    ReloadStopped {
        /// The app.
        app: String,
        /// The previous definition was put back.
        kept_previous: bool,
    },
}

/// How a waiting reload ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReloadEnd {
    /// Not yet.
    Pending,
    /// Every serving worker runs the new generation.
    Done,
    /// The app errored.
    Errored,
    /// The reload stopped with old workers still serving.
    Stopped,
}

/// Whether a reload is over, from the supervisor's state: `errored`, still `reloading`, and
/// whether a ready worker of an older generation than the reload's still serves (old
/// workers may still be draining after the reload itself ended).
pub(super) fn reload_end(errored: bool, reloading: bool, old_serving: bool) -> ReloadEnd {
    match (errored, reloading, old_serving) {
        (true, _, _) => ReloadEnd::Errored,
        (false, true, _) => ReloadEnd::Pending,
        (false, false, false) => ReloadEnd::Done,
        (false, false, true) => ReloadEnd::Stopped,
    }
}

/// The environment one worker started with (`herd env`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerEnv {
    /// Its slot.
    pub slot: usize,
    /// Its process id.
    pub pid: u32,
    /// Its variables, sorted by name.
    pub vars: Vec<(String, String)>,
}

/// A request to a running app.
#[derive(Debug)]
pub enum AppRequest {
    /// Drain, reload or scale by one, as the signals of `herd run` do.
    Intent(Intent),
    /// Scale to exactly this many slots (at least 1).
    ScaleTo(usize),
    /// Report the app's state.
    Status(tokio::sync::oneshot::Sender<status::AppStatus>),
    /// Send this message on every live worker's channel; answers how many got it.
    Broadcast(serde_json::Value, tokio::sync::oneshot::Sender<usize>),
    /// Send this signal to every live worker's process group; answers how many got it.
    Signal(Signal, tokio::sync::oneshot::Sender<usize>),
    /// Answer once every slot has a ready worker, or with why not (the app errored).
    /// Dropped unanswered when the app ends.
    WhenReady(tokio::sync::oneshot::Sender<Result<(), RequestError>>),
    /// Start a rolling reload; answer when it is over, or with why it was not done.
    Reload(tokio::sync::oneshot::Sender<Result<(), RequestError>>),
    /// A question of an admin listener (the daemon's, which serves every app).
    Probe(crate::admin::Probe),
    /// The environment of the worker serving this slot (the ready one during a reload).
    Env(
        usize,
        tokio::sync::oneshot::Sender<Result<WorkerEnv, RequestError>>,
    ),
    /// The app as `/metrics` shows it (the daemon renders every app's at once).
    Snapshot(tokio::sync::oneshot::Sender<crate::observe::metrics::AppSnapshot>),
    /// Empty the app's log files (`herd flush`); answers when done.
    EmptyLogs(tokio::sync::oneshot::Sender<()>),
    /// Zero the app's restart counts and counters (`herd reset`); answers when done.
    Reset(tokio::sync::oneshot::Sender<()>),
    /// The app's own metrics, labelled with the app (the daemon merges every app's).
    AppMetrics(tokio::sync::oneshot::Sender<Vec<crate::observe::metrics::Family>>),
    /// Take a new plan and reload every worker with it, then scale to its number of
    /// workers (`herd reload FILE`). `accepted` answers at once: `Err` names what the
    /// running app cannot change (its sockets, its balancing), and nothing changed.
    /// `done` answers as [`AppRequest::Reload`] does.
    Redefine {
        /// The app's new plan (same name).
        plan: Box<crate::config::RunPlan>,
        /// Whether the plan was taken.
        accepted: tokio::sync::oneshot::Sender<Result<(), RequestError>>,
        /// When the reload is over.
        done: tokio::sync::oneshot::Sender<Result<(), RequestError>>,
    },
}

/// A request that waits for a state of the app.
pub(super) enum Waiter {
    Ready(tokio::sync::oneshot::Sender<Result<(), RequestError>>),
    /// Done when every serving worker runs at least this generation; a reload with a new
    /// definition that fails puts back the one before.
    Reloaded(
        tokio::sync::oneshot::Sender<Result<(), RequestError>>,
        u64,
        Option<Box<Previous>>,
    ),
}

/// The definition an app ran before a reload with a new one, put back if that fails.
pub(super) struct Previous {
    plan: crate::config::RunPlan,
    instances: usize,
}

impl Driver {
    pub(super) fn control(&mut self, c: AppRequest) {
        match c {
            AppRequest::Intent(i) => {
                match i {
                    Intent::Shutdown(sig) | Intent::Reload(sig) => {
                        info!(app = %self.plan.name, signal = sig, "received {sig}")
                    }
                    _ => {}
                }
                self.queue.push_back(i.event());
            }
            // The supervisor logs the change (or why it ignores it).
            AppRequest::ScaleTo(n) => self.queue.push_back(Event::ScaleTo(n)),
            AppRequest::Probe(p) => self.answer_probe(p),
            AppRequest::Snapshot(reply) => drop(reply.send(self.metrics_snapshot())),
            AppRequest::EmptyLogs(reply) => {
                let output = self.output.clone();
                tokio::spawn(async move {
                    output.empty_files().await;
                    let _ = reply.send(());
                });
            }
            AppRequest::Reset(reply) => {
                self.sup.reset_restarts();
                self.counters = Default::default();
                info!(app = %self.plan.name, "restart counts and counters of {} reset", self.plan.name);
                let _ = reply.send(());
            }
            AppRequest::AppMetrics(reply) => {
                let gathering = self.gather_app_metrics();
                tokio::spawn(async move { drop(reply.send(gathering.await)) });
            }
            AppRequest::WhenReady(reply) => self.waiters.push(Waiter::Ready(reply)),
            AppRequest::Reload(reply) => {
                info!(app = %self.plan.name, "reload requested");
                self.reload_then(reply, None);
            }
            AppRequest::Redefine {
                plan,
                accepted,
                done,
            } => {
                let fixed = self.plan.fixed_changes(&plan);
                if !fixed.is_empty() {
                    let _ = accepted.send(Err(RequestError::FixedChanges(fixed)));
                    return;
                }
                let instances = plan.policy.instances;
                info!(app = %self.plan.name, "reload with a new definition requested");
                let previous = Previous {
                    plan: self.plan.clone(),
                    instances: self.sup.instances(),
                };
                self.take_plan(*plan);
                let _ = accepted.send(Ok(()));
                self.reload_then(done, Some(Box::new(previous)));
                // Slots added now start with the new plan; slots removed are skipped by
                // the reload.
                if instances != self.sup.instances() {
                    self.queue.push_back(Event::ScaleTo(instances));
                }
            }
            AppRequest::Status(reply) => {
                let _ = reply.send(self.status());
            }
            AppRequest::Env(slot, reply) => drop(reply.send(self.worker_env(slot))),
            AppRequest::Broadcast(message, reply) => {
                let sent = self
                    .channels
                    .values()
                    .filter(|l| !l.closed && l.channel.send(&message))
                    .count();
                let _ = reply.send(sent);
            }
            AppRequest::Signal(sig, reply) => {
                let sent = self
                    .groups
                    .iter()
                    .filter(|pid| killpg(Pid::from_raw(**pid as i32), sig).is_ok())
                    .count();
                info!(app = %self.plan.name, signal = sig.as_str(), "sent {} to {sent} workers of {}", sig.as_str(), self.plan.name);
                let _ = reply.send(sent);
            }
        }
    }

    /// The environment of slot `slot`'s worker: the ready one, else the newest.
    fn worker_env(&self, slot: usize) -> Result<WorkerEnv, RequestError> {
        let serving = self
            .sup
            .snapshot()
            .into_iter()
            .filter(|w| w.slot == slot)
            .filter_map(|w| {
                Some((
                    w.state == crate::supervisor::WorkerState::Ready,
                    w.generation,
                    w.pid?,
                ))
            })
            .filter(|(_, _, pid)| self.envs.contains_key(pid))
            .max();
        match serving.and_then(|(_, _, pid)| Some((pid, self.envs.get(&pid)?))) {
            Some((pid, env)) => Ok(WorkerEnv {
                slot,
                pid,
                vars: env.vars(pid),
            }),
            None => Err(RequestError::NoWorker {
                slot,
                slots: self.sup.instances(),
            }),
        }
    }

    fn reload_then(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Result<(), RequestError>>,
        previous: Option<Box<Previous>>,
    ) {
        self.queue.push_back(Event::Reload);
        // The reload gives new workers the next generation.
        let target = self.sup.generation() + 1;
        self.waiters.push(Waiter::Reloaded(reply, target, previous));
    }

    /// A reload with a new definition failed: the workers that replace crashed ones, and
    /// the slots `scale` adds, run the definition the old workers run. Returns whether a
    /// definition was put back.
    fn put_back(&mut self, previous: Option<Box<Previous>>) -> bool {
        let Some(previous) = previous else {
            return false;
        };
        self.take_plan(previous.plan);
        if previous.instances != self.sup.instances() {
            self.queue.push_back(Event::ScaleTo(previous.instances));
        }
        true
    }

    /// Workers started from now on run `plan` (checked by `fixed_changes`): its program,
    /// environment, user, stop signal and lifecycle knobs. What belongs to the embedding
    /// program and the process (hooks, log format) stays.
    fn take_plan(&mut self, mut plan: crate::config::RunPlan) {
        plan.log_format = self.plan.log_format;
        self.sup.redefine(plan.policy.clone());
        if plan.policy.max_memory.is_some() != self.memory_tick.is_some() {
            self.memory_tick = super::memory_tick(plan.policy.max_memory);
        }
        let rewatch = plan.watch != self.plan.watch;
        self.plan = plan;
        self.schedule_reloads();
        if rewatch {
            if let Err(e) = self.start_watching() {
                warn!(app = %self.plan.name, event = "watch.failed", error = %e,
                    "{e}: {} runs on without watching its files", self.plan.name);
            }
        }
    }

    /// Answers the requests whose awaited state is reached.
    pub(super) fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let errored = self.sup.is_errored();
        let ready = self.sup.serving().len() >= self.sup.instances();
        let reloading = self.sup.is_reloading();
        let app = self.plan.name.clone();
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            match w {
                Waiter::Ready(tx) if errored => drop(tx.send(Err(RequestError::Errored {
                    app: app.clone(),
                    kept_previous: false,
                }))),
                Waiter::Ready(tx) if ready => drop(tx.send(Ok(()))),
                Waiter::Reloaded(tx, target, previous) => {
                    let old_serving = || {
                        self.sup.snapshot().iter().any(|w| {
                            w.state == crate::supervisor::WorkerState::Ready
                                && w.generation < target
                        })
                    };
                    // Asked of the supervisor only once the reload itself is over.
                    let old = !errored && !reloading && old_serving();
                    let app = app.clone();
                    match reload_end(errored, reloading, old) {
                        ReloadEnd::Pending => keep.push(Waiter::Reloaded(tx, target, previous)),
                        ReloadEnd::Done => drop(tx.send(Ok(()))),
                        ReloadEnd::Errored => {
                            let kept_previous = self.put_back(previous);
                            drop(tx.send(Err(RequestError::Errored { app, kept_previous })))
                        }
                        ReloadEnd::Stopped => {
                            let kept_previous = self.put_back(previous);
                            drop(tx.send(Err(RequestError::ReloadStopped { app, kept_previous })))
                        }
                    }
                }
                w => keep.push(w),
            }
        }
        self.waiters = keep;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reload_waits_while_the_supervisor_reloads() {
        assert_eq!(reload_end(false, true, true), ReloadEnd::Pending);
        assert_eq!(reload_end(false, true, false), ReloadEnd::Pending);
    }

    #[test]
    fn a_reload_is_done_when_no_old_worker_serves() {
        assert_eq!(reload_end(false, false, false), ReloadEnd::Done);
    }

    #[test]
    fn a_reload_that_left_old_workers_serving_stopped() {
        assert_eq!(reload_end(false, false, true), ReloadEnd::Stopped);
    }

    #[test]
    fn an_errored_app_ends_the_reload_whatever_else() {
        for reloading in [false, true] {
            for old in [false, true] {
                assert_eq!(reload_end(true, reloading, old), ReloadEnd::Errored);
            }
        }
    }
}
