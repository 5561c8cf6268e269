//! What the user asks of a running app, besides signals: the daemon's requests (status,
//! scale, send, signal, reload and wait for readiness), and the requests that wait for a
//! state of the app, answered once it is reached.

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tracing::info;

use super::signals::Intent;
use super::{status, Driver};
use crate::supervisor::Event;

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
    WhenReady(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Start a rolling reload; answer when it is over, or with why it was not done.
    Reload(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Take a new plan and reload every worker with it, then scale to its number of
    /// workers (`herd reload FILE`). `accepted` answers at once: `Err` names what the
    /// running app cannot change (its sockets, its balancing), and nothing changed.
    /// `done` answers as [`AppRequest::Reload`] does.
    Redefine {
        /// The app's new plan (same name).
        plan: Box<crate::config::RunPlan>,
        /// Whether the plan was taken.
        accepted: tokio::sync::oneshot::Sender<Result<(), String>>,
        /// When the reload is over.
        done: tokio::sync::oneshot::Sender<Result<(), String>>,
    },
}

/// A request that waits for a state of the app.
pub(super) enum Waiter {
    Ready(tokio::sync::oneshot::Sender<Result<(), String>>),
    /// Done when every serving worker runs at least this generation; a reload with a new
    /// definition that fails puts back the one before.
    Reloaded(
        tokio::sync::oneshot::Sender<Result<(), String>>,
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
                    let _ = accepted.send(Err(format!(
                        "a reload keeps the app's sockets, and the new definition changes {}",
                        fixed.join(", ")
                    )));
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

    fn reload_then(
        &mut self,
        reply: tokio::sync::oneshot::Sender<Result<(), String>>,
        previous: Option<Box<Previous>>,
    ) {
        self.queue.push_back(Event::Reload);
        // The reload gives new workers the next generation.
        let target = self.sup.generation() + 1;
        self.waiters.push(Waiter::Reloaded(reply, target, previous));
    }

    /// A reload with a new definition failed: the workers that replace crashed ones, and
    /// the slots `scale` adds, run the definition the old workers run. Returns what to add
    /// to the failure's message.
    fn put_back(&mut self, previous: Option<Box<Previous>>) -> &'static str {
        let Some(previous) = previous else {
            return "";
        };
        self.take_plan(previous.plan);
        if previous.instances != self.sup.instances() {
            self.queue.push_back(Event::ScaleTo(previous.instances));
        }
        "; it keeps its previous definition"
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
        self.plan = plan;
    }

    /// Answers the requests whose awaited state is reached.
    pub(super) fn answer_waiters(&mut self) {
        if self.waiters.is_empty() {
            return;
        }
        let errored = self.sup.is_errored();
        let ready = self.sup.serving().len() >= self.sup.instances();
        let reloading = self.sup.is_reloading();
        let why = format!(
            "{} errored: its workers exited too often (see `herd logs {}`)",
            self.plan.name, self.plan.name
        );
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            match w {
                Waiter::Ready(tx) if errored => drop(tx.send(Err(why.clone()))),
                Waiter::Ready(tx) if ready => drop(tx.send(Ok(()))),
                Waiter::Reloaded(tx, _, previous) if errored => {
                    let kept = self.put_back(previous);
                    drop(tx.send(Err(format!("{why}{kept}"))))
                }
                Waiter::Reloaded(tx, target, previous) if !reloading => {
                    // Old workers may still be draining; the serving ones tell.
                    let old = self.sup.snapshot().iter().any(|w| {
                        w.state == crate::supervisor::WorkerState::Ready && w.generation < target
                    });
                    if !old {
                        let _ = tx.send(Ok(()));
                        continue;
                    }
                    let kept = self.put_back(previous);
                    let _ = tx.send(Err(format!(
                        "the reload of {} stopped: a new worker did not become ready, the old workers keep serving{kept} (see `herd logs {}`)",
                        self.plan.name, self.plan.name
                    )));
                }
                w => keep.push(w),
            }
        }
        self.waiters = keep;
    }
}
