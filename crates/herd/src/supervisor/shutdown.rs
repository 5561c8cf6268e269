//! Graceful shutdown (SIGTERM/SIGINT, `herd stop`): every worker gets the stop signal and
//! `kill_timeout` to exit; nothing is started or restarted any more, and a reload under way
//! is dropped. A second request kills what is left at once. The run ends when the last
//! worker is gone, with [`Outcome::Killed`](super::Outcome::Killed) if any had to be
//! SIGKILLed.

use std::time::Instant;

use super::state::{Phase, Restarts, SlotState};
use super::{Action, Log, StopReason, Supervisor, WorkerId};

impl Supervisor {
    pub(super) fn on_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
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
}
