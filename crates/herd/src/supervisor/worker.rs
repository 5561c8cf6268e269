//! One worker's own lifecycle: `Spawning → Starting → Ready → Stopping → gone`. Asking for
//! a process, learning its pid, judging it ready (by `READY=1`, the `"ready"` message,
//! Node's `listening`, an open port, a delay, or `auto`), its sd_notify messages, asking
//! it to stop and SIGKILLing it. What its slot needs once it is gone is `restarts.rs`'s
//! business.

use std::time::Instant;

use super::state::{Phase, ReplacementKind, Stage, Worker};
use super::{
    Action, ExitStatus, Log, NotifyMsg, Readiness, ReadyHow, StopReason, Supervisor, WorkerId,
};

impl Supervisor {
    /// Asks the driver for a new worker in `slot`, of the current generation.
    pub(super) fn spawn(&mut self, slot: usize, now: Instant, out: &mut Vec<Action>) -> WorkerId {
        let id = self.next_id;
        self.next_id += 1;
        let generation = self.generation;
        self.workers.insert(
            id,
            Worker {
                slot,
                generation,
                pid: None,
                // Replaced by the real start time in `on_spawned`.
                started: now,
                stage: Stage::Spawning,
                draining: false,
                health: Default::default(),
            },
        );
        out.push(Action::Log(Log::Spawning {
            slot,
            worker: id,
            generation,
        }));
        out.push(Action::Spawn {
            worker: id,
            slot,
            generation,
        });
        id
    }

    /// When a worker started at `started` is judged: ready (delay, `auto` without
    /// `READY=1`) or not ready in time.
    fn ready_deadline(&self, started: Instant) -> Instant {
        match self.policy.readiness {
            Readiness::Notify | Readiness::Message => started + self.policy.listen_timeout,
            Readiness::Delay(d) => started + d,
            Readiness::Auto if self.speaks_notify => started + self.policy.listen_timeout,
            Readiness::Auto => started + self.policy.auto_ready_delay,
        }
    }

    pub(super) fn on_spawned(
        &mut self,
        id: WorkerId,
        pid: u32,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let deadline = self.ready_deadline(now);
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        // A worker can be unwanted before its pid is known (scale-down, reload cancelled).
        let unwanted = match w.stage {
            Stage::Stopping { reason, .. } => Some(reason),
            _ => None,
        };
        w.pid = Some(pid);
        w.started = now;
        w.stage = Stage::Starting { deadline };
        out.push(Action::Log(Log::Spawned { slot: w.slot, pid }));
        let (reason, forced) = match (&self.phase, unwanted) {
            (Phase::ShuttingDown { forced, .. }, _) => (StopReason::Shutdown, *forced),
            (Phase::Running { .. }, Some(reason)) => (reason, false),
            // Wanted (and the run cannot have ended: `step` ignores every event then).
            _ => return,
        };
        self.stop(id, reason, now, out);
        if forced {
            self.kill(id, out);
        }
    }

    pub(super) fn on_spawn_failed(
        &mut self,
        id: WorkerId,
        error: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        out.push(Action::Log(Log::SpawnFailed {
            slot: w.slot,
            error: error.clone(),
        }));
        self.worker_gone(id, &w, now, out, Some(error), None);
    }

    pub(super) fn on_exited(
        &mut self,
        pid: u32,
        status: ExitStatus,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(id) = self.id_of_pid(pid) else {
            return;
        };
        let Some(w) = self.workers.remove(&id) else {
            return;
        };
        let stopped_for = match w.stage {
            Stage::Stopping { reason, .. } => Some(reason),
            _ => None,
        };
        let expected = matches!(self.phase, Phase::ShuttingDown { .. })
            || stopped_for.is_some_and(|r| r != StopReason::NotReady);
        out.push(Action::Log(Log::Exited {
            slot: w.slot,
            pid,
            status,
            uptime: now.saturating_duration_since(w.started),
            expected,
            stopped_for,
        }));
        let why = match status {
            ExitStatus::Code(c) => {
                format!("new worker (pid {pid}) exited with code {c} before it was ready")
            }
            ExitStatus::Signal(s) => {
                format!("new worker (pid {pid}) was killed by signal {s} before it was ready")
            }
        };
        self.worker_gone(id, &w, now, out, Some(why), Some(status));
    }

    pub(super) fn on_notify(
        &mut self,
        pid: u32,
        msg: NotifyMsg,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(id) = self.id_of_pid(pid) else {
            out.push(Action::Log(Log::UnknownNotify { pid }));
            return;
        };
        match msg {
            NotifyMsg::Ready | NotifyMsg::Listening | NotifyMsg::PortOpen
                if self.policy.readiness == Readiness::Message => {}
            NotifyMsg::Ready
            | NotifyMsg::ReadyMessage
            | NotifyMsg::Listening
            | NotifyMsg::PortOpen => {
                if !self.speaks_notify && self.policy.readiness == Readiness::Auto {
                    self.speaks_notify = true;
                    // From now on `auto` waits for READY=1: give the others the full timeout.
                    let timeout = self.policy.listen_timeout;
                    for w in self.workers.values_mut() {
                        if let Stage::Starting { deadline } = &mut w.stage {
                            *deadline = w.started + timeout;
                        }
                    }
                }
                if matches!(self.workers[&id].stage, Stage::Starting { .. }) {
                    let how = match msg {
                        NotifyMsg::Ready => ReadyHow::Notify,
                        NotifyMsg::Listening => ReadyHow::Listening,
                        NotifyMsg::PortOpen => ReadyHow::PortOpen,
                        _ => ReadyHow::Message,
                    };
                    self.become_ready(id, how, now, out);
                }
            }
            NotifyMsg::Stopping => {
                let w = self.workers.get_mut(&id).expect("looked up above");
                if !w.draining {
                    w.draining = true;
                    out.push(Action::Log(Log::WorkerStopping { slot: w.slot, pid }));
                }
            }
            NotifyMsg::Status(text) => {
                let slot = self.workers[&id].slot;
                out.push(Action::Log(Log::Status { slot, pid, text }));
            }
            NotifyMsg::Watchdog => self.on_heartbeat(id, now),
            NotifyMsg::WatchdogTrigger => self.on_watchdog_trigger(id, now, out),
        }
    }

    /// The worker is ready; a replacement that is ready takes its slot over.
    fn become_ready(&mut self, id: WorkerId, how: ReadyHow, now: Instant, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.stage = Stage::Ready;
        let (slot, pid) = (w.slot, w.pid.unwrap_or(0));
        out.push(Action::Log(Log::Ready {
            slot,
            pid,
            after: now.saturating_duration_since(w.started),
            how,
        }));
        self.start_watching(id, now);
        if self
            .slots
            .get(slot)
            .and_then(|s| s.replacement_is(id))
            .is_some()
        {
            self.promote(slot, now, out);
        }
    }

    /// A starting worker's deadline passed: ready by delay (or assumed, for `auto`), or not
    /// ready in time. A replacement not ready in time fails its reload or memory restart.
    pub(super) fn ready_deadline_passed(
        &mut self,
        id: WorkerId,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let readiness = self.policy.readiness;
        match readiness {
            Readiness::Delay(_) => self.become_ready(id, ReadyHow::Delay, now, out),
            Readiness::Auto if !self.speaks_notify => {
                self.become_ready(id, ReadyHow::Assumed, now, out)
            }
            _ => {
                let w = &self.workers[&id];
                let (slot, pid) = (w.slot, w.pid.unwrap_or(0));
                out.push(Action::Log(Log::NotReady {
                    slot,
                    pid,
                    timeout: self.policy.listen_timeout,
                }));
                let Some(r) = self.slots.get(slot).and_then(|s| s.replacement_is(id)) else {
                    self.stop(id, StopReason::NotReady, now, out);
                    return;
                };
                let reason = format!(
                    "new worker (pid {pid}) was not ready within the listen timeout ({:?})",
                    self.policy.listen_timeout
                );
                match r.kind {
                    ReplacementKind::Memory => {
                        self.slots[slot].replacement = None;
                        self.stop(id, StopReason::NotReady, now, out);
                        self.memory_replacement_failed(slot, reason, now, out);
                    }
                    ReplacementKind::Reload => self.abort_reload(slot, reason, now, out),
                    ReplacementKind::Hung(_) => {
                        self.slots[slot].replacement = None;
                        self.stop(id, StopReason::NotReady, now, out);
                        self.hung_replacement_failed(slot, reason, now, out);
                    }
                }
            }
        }
    }

    /// Asks a worker to stop gracefully. A worker not spawned yet is stopped once it is.
    pub(super) fn stop(
        &mut self,
        id: WorkerId,
        reason: StopReason,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let kill_at = now + self.policy.kill_timeout;
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if matches!(w.stage, Stage::Stopping { .. }) {
            return;
        }
        if let Some(pid) = w.pid {
            w.stage = Stage::Stopping {
                reason,
                kill_at,
                killed: false,
            };
            out.push(Action::Log(Log::Stopping {
                slot: w.slot,
                pid,
                reason,
            }));
            out.push(Action::Stop { pid });
        }
        // A worker still in Spawning is handled in `on_spawned` (shutdown) or by the
        // replacement bookkeeping (it is no longer referenced by its slot).
    }

    /// Stops a worker that no slot references any more; one still spawning is marked so
    /// that it is stopped as soon as its pid is known.
    pub(super) fn stop_or_forget(
        &mut self,
        id: WorkerId,
        reason: StopReason,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let kill_at = now + self.policy.kill_timeout;
        if let Some(w) = self.workers.get_mut(&id) {
            if w.pid.is_none() {
                w.stage = Stage::Stopping {
                    reason,
                    kill_at,
                    killed: false,
                };
                return;
            }
        }
        self.stop(id, reason, now, out);
    }

    /// SIGKILLs a stopping worker, once. A kill during shutdown makes the outcome `Killed`.
    pub(super) fn kill(&mut self, id: WorkerId, out: &mut Vec<Action>) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let (Some(pid), Stage::Stopping { killed, .. }) = (w.pid, &mut w.stage) else {
            return;
        };
        if !*killed {
            *killed = true;
            if let Phase::ShuttingDown { killed, .. } = &mut self.phase {
                *killed = true;
            }
            out.push(Action::Kill { pid });
        }
    }

    pub(super) fn id_of_pid(&self, pid: u32) -> Option<WorkerId> {
        self.workers
            .iter()
            .find(|(_, w)| w.pid == Some(pid))
            .map(|(id, _)| *id)
    }
}
