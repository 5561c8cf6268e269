//! Graceful shutdown (SIGTERM/SIGINT, `herd stop`): with a `shutdown_delay`, the workers
//! first keep serving for that long (the app is announced as shutting down: not ready,
//! so load balancers take it out while its workers still answer; a second request ends the
//! delay); then every worker gets the stop signal and `kill_timeout` to exit; nothing is started or restarted any more, and a reload under way
//! is dropped. A second request kills what is left at once. The run ends when the last
//! worker is gone, with [`Outcome::Killed`](super::Outcome::Killed) if any had to be
//! SIGKILLed.

use std::time::Instant;

use super::state::{Phase, Restarts, SlotState};
use super::{Action, Log, StopReason, Supervisor, WorkerId};

impl Supervisor {
    pub(super) fn on_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        let delay = self.policy.shutdown_delay;
        match &mut self.phase {
            Phase::Running {
                shutdown_at: at @ None,
                ..
            } if !delay.is_zero() => {
                *at = Some(now + delay);
                out.push(Action::Log(Log::ShutdownDelayed { delay }));
            }
            Phase::Running { .. } => self.begin_shutdown(now, out),
            Phase::ShuttingDown { forced, .. } if !*forced => {
                *forced = true;
                out.push(Action::Log(Log::ShutdownForced {
                    workers: self.workers.len(),
                }));
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.kill(id, out);
                }
            }
            Phase::ShuttingDown { .. } | Phase::Ended { .. } => {}
        }
    }

    /// The announced shutdown's time came.
    pub(super) fn shutdown_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        if matches!(self.phase, Phase::Running { shutdown_at: Some(at), .. } if at <= now) {
            self.begin_shutdown(now, out);
        }
    }

    /// When the announced shutdown begins, if one is announced.
    pub(super) fn shutdown_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running { shutdown_at, .. } => shutdown_at,
            _ => None,
        }
    }

    /// Every worker is asked to stop; pending starts are dropped.
    fn begin_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Running { restarts, .. } => {
                let errored = matches!(restarts, Restarts::Errored);
                self.phase = Phase::ShuttingDown {
                    forced: false,
                    killed: false,
                    errored,
                };
                for s in &mut self.slots {
                    if let SlotState::Pending { .. } = s.state {
                        s.state = SlotState::Empty;
                    }
                }
                out.push(Action::Log(Log::ShutdownStarted {
                    workers: self.workers.len(),
                }));
                let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
                for id in ids {
                    self.stop(id, StopReason::Shutdown, now, out);
                }
            }
            Phase::ShuttingDown { .. } | Phase::Ended { .. } => {}
        }
    }
}
