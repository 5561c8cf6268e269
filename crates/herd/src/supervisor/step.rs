//! [`Supervisor::step`]: one event in, the actions out. The dispatch below is the state ×
//! event table of the module documentation: a shutdown refuses the requests that would
//! start workers here, so the handlers only deal with a running app. Every step then ends
//! the same way: the deadlines that passed (readiness, kill timeouts, pending restarts),
//! the next slots of a rolling reload, and the step's summary (route, end of the run,
//! next wake-up).

use std::time::Instant;

use super::state::{Phase, SlotState, Stage};
use super::{Action, Event, Log, Outcome, Supervisor, WorkerId};

impl Supervisor {
    /// Feeds one event in at time `now`; returns what the driver must do, in order.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        let running = match self.phase {
            // An announced shutdown takes no new work either.
            Phase::Running { shutdown_at, .. } => shutdown_at.is_none(),
            Phase::ShuttingDown { .. } => false,
            Phase::Ended { .. } => return out,
        };
        match event {
            Event::Start => self.on_start(now, &mut out),
            Event::Spawned { worker, pid } => self.on_spawned(worker, pid, now, &mut out),
            Event::SpawnFailed { worker, error } => {
                self.on_spawn_failed(worker, error, now, &mut out)
            }
            Event::Exited { pid, status } => self.on_exited(pid, status, now, &mut out),
            Event::Notify { pid, msg } => self.on_notify(pid, msg, now, &mut out),
            // Only the deadlines below.
            Event::Timer => {}
            Event::Shutdown => self.on_shutdown(now, &mut out),
            // A shutdown is final: what would start or replace workers is refused, and the
            // refusal logged (the user asked for it); memory samples are just dropped.
            Event::Reload if !running => ignored("reload", &mut out),
            Event::ScaleUp if !running => ignored("scale up", &mut out),
            Event::ScaleDown if !running => ignored("scale down", &mut out),
            Event::ScaleTo(_) if !running => ignored("scale", &mut out),
            Event::Memory { .. } if !running => {}
            Event::Reload => self.on_reload(now, &mut out),
            Event::ScaleUp => self.on_scale_up(now, &mut out),
            Event::ScaleDown => self.on_scale_down(now, &mut out),
            Event::ScaleTo(n) => self.on_scale_to(n, now, &mut out),
            Event::Memory { pid, rss } => self.on_memory(pid, rss, now, &mut out),
            Event::Checked { pid, result } => self.on_checked(pid, result, now, &mut out),
        }
        self.fire_due(now, &mut out);
        self.advance_reload(now, &mut out);
        self.finish(&mut out);
        out
    }

    /// Handles every deadline that has passed: readiness, kill timeouts, restarts.
    fn fire_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        let due: Vec<(WorkerId, Stage)> = self
            .workers
            .iter()
            .filter(|(_, w)| match w.stage {
                Stage::Starting { deadline } => deadline <= now,
                Stage::Stopping {
                    kill_at, killed, ..
                } => w.pid.is_some() && !killed && kill_at <= now,
                _ => false,
            })
            .map(|(id, w)| (*id, w.stage))
            .collect();
        for (id, stage) in due {
            // An earlier entry of this loop may have changed this worker (a promotion stops
            // the slot's old worker): act only on what is still true.
            if self.workers.get(&id).map(|w| w.stage) != Some(stage) {
                continue;
            }
            match stage {
                Stage::Starting { .. } => self.ready_deadline_passed(id, now, out),
                Stage::Stopping { .. } => {
                    let w = &self.workers[&id];
                    out.push(Action::Log(Log::KillTimeout {
                        slot: w.slot,
                        pid: w.pid.unwrap_or(0),
                        timeout: self.policy.kill_timeout,
                    }));
                    self.kill(id, out);
                }
                _ => {}
            }
        }
        self.health_due(now, out);
        self.start_due(now, out);
        self.shutdown_due(now, out);
    }

    /// Ends the step: the route if it changed, the exit if nothing is left, the next wake-up.
    fn finish(&mut self, out: &mut Vec<Action>) {
        // Slots a hung worker may still accept for (reuseport), found once per step.
        let held: Vec<usize> = if self.policy.slot_socket_shared {
            self.workers
                .values()
                .filter(|w| w.health.hung)
                .map(|w| w.slot)
                .collect()
        } else {
            Vec::new()
        };
        let route: Vec<usize> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                s.worker()
                    .and_then(|id| self.workers.get(&id))
                    .is_some_and(|w| w.serves())
                    && !held.contains(i)
            })
            .map(|(i, _)| i)
            .collect();
        if self.last_route.as_ref() != Some(&route) {
            self.last_route = Some(route.clone());
            out.push(Action::Route(route));
        }
        if let Some(outcome) = self.outcome_now(out) {
            self.phase = Phase::Ended {
                outcome,
                errored: self.is_errored(),
            };
            out.push(Action::Exit(outcome));
            return;
        }
        let next = self.next_deadline();
        if let Some(at) = next {
            if next != self.last_wake {
                self.last_wake = next;
                out.push(Action::Wake(at));
            }
        }
    }

    /// How the run ends, if it ends now: no worker is left, and none will be started.
    fn outcome_now(&self, out: &mut Vec<Action>) -> Option<Outcome> {
        if !self.workers.is_empty() {
            return None;
        }
        match &self.phase {
            Phase::ShuttingDown { killed, .. } => Some(if *killed {
                Outcome::Killed
            } else {
                Outcome::Clean
            }),
            Phase::Running { .. } if self.is_errored() => Some(Outcome::Errored),
            Phase::Running { .. } if self.all_parked() => {
                let clean = self
                    .slots
                    .iter()
                    .all(|s| s.state == SlotState::Parked { clean: true });
                out.push(Action::Log(Log::AppStopped { clean }));
                Some(if clean {
                    Outcome::Clean
                } else {
                    Outcome::Errored
                })
            }
            _ => None,
        }
    }

    /// Every slot is empty for good (its worker exited and is not restarted).
    fn all_parked(&self) -> bool {
        !self.slots.is_empty()
            && self
                .slots
                .iter()
                .all(|s| matches!(s.state, SlotState::Parked { .. }) && s.replacement.is_none())
    }

    fn next_deadline(&self) -> Option<Instant> {
        let workers = self.workers.values().filter_map(|w| match w.stage {
            Stage::Starting { deadline } => Some(deadline),
            Stage::Stopping {
                kill_at,
                killed: false,
                ..
            } => Some(kill_at),
            _ => None,
        });
        let slots = self.slots.iter().filter_map(|s| match s.state {
            SlotState::Pending { at, .. } => Some(at),
            _ => None,
        });
        workers
            .chain(slots)
            .chain(self.shutdown_at())
            .chain(self.next_health_deadline())
            .min()
    }
}

/// Logs that a request was refused because the app is shutting down.
fn ignored(what: &'static str, out: &mut Vec<Action>) {
    out.push(Action::Log(Log::Ignored {
        what,
        why: "shutting down",
    }));
}
