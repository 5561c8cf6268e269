//! Graceful shutdown (SIGTERM/SIGINT, `herd stop`): with a `shutdown_delay`, the workers
//! first keep serving for that long (the app is announced as shutting down: not ready,
//! so load balancers take it out while its workers still answer; a second request ends the
//! delay); then every worker gets the stop signal and `kill_timeout` to exit; nothing is started or restarted any more, and a reload under way
//! is dropped. A second request kills what is left at once. The run ends when the last
//! worker is gone, with [`Outcome::Killed`](super::Outcome::Killed) if any had to be
//! SIGKILLed.
//!
//! A request that comes within [`SAME_STOP_REQUEST`] of the one before is that request
//! again, not a second one: GNU `timeout` and `kill -- -PGID` signal herd's process and its
//! process group, so herd receives one stop twice, 0.2 ms apart.

use std::time::{Duration, Instant};

use super::state::{Phase, Restarts, SlotState};
use super::{Action, Log, StopReason, Supervisor, WorkerId};

/// Why 500 ms: the duplicates of one stop request (a signal to herd's pid and to its
/// process group, as GNU `timeout` sends) arrive well under a millisecond apart, even on a
/// loaded machine within a few; a person's second Ctrl-C comes later than this.
pub const SAME_STOP_REQUEST: Duration = Duration::from_millis(500);

impl Supervisor {
    pub(super) fn on_shutdown(&mut self, now: Instant, out: &mut Vec<Action>) {
        let delay = self.policy.shutdown_delay;
        if self
            .stop_requested_at()
            .is_some_and(|at| now.saturating_duration_since(at) < SAME_STOP_REQUEST)
        {
            out.push(Action::Log(Log::Ignored {
                what: "shutdown",
                why: "the same stop request again (within 500 ms of the first: a signal to herd and to its process group)",
            }));
            return;
        }
        match &mut self.phase {
            Phase::Running {
                shutdown_at: at @ None,
                ..
            } if !delay.is_zero() => {
                *at = Some(now + delay);
                out.push(Action::Log(Log::ShutdownDelayed { delay }));
            }
            Phase::Running { .. } => self.begin_shutdown(now, now, out),
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
            let requested = self.stop_requested_at().unwrap_or(now);
            self.begin_shutdown(now, requested, out);
        }
    }

    /// When the stop request being carried out came (the one that announced the shutdown,
    /// or the one that began it), if one did.
    fn stop_requested_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running {
                shutdown_at: Some(at),
                ..
            } => at.checked_sub(self.policy.shutdown_delay),
            Phase::ShuttingDown { requested, .. } => Some(requested),
            Phase::Running { .. } | Phase::Ended { .. } => None,
        }
    }

    /// When the announced shutdown begins, if one is announced.
    pub(super) fn shutdown_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running { shutdown_at, .. } => shutdown_at,
            _ => None,
        }
    }

    /// Every worker is asked to stop; pending starts are dropped. `requested`: when the
    /// stop request came.
    fn begin_shutdown(&mut self, now: Instant, requested: Instant, out: &mut Vec<Action>) {
        match &mut self.phase {
            Phase::Running { restarts, .. } => {
                let errored = matches!(restarts, Restarts::Errored);
                self.phase = Phase::ShuttingDown {
                    requested,
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
