//! Restarts after a worker exits by itself: at once after a stable run (unless a restart
//! delay was configured), else the slot's backoff curve (exponential, capped, jittered), the flapping window that turns too many unstable restarts into the errored
//! state, and the decision of what a slot needs once its worker is gone (restart, stay
//! empty, or hand the slot to a memory replacement).
//!
//! The arithmetic is pure: randomness comes in as a number ([`Jitter`] is a seeded
//! generator) so every delay is testable.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::state::{Phase, ReplacementKind, Restarts, SlotState, Stage, Worker};
use super::{
    Action, BackoffPolicy, ExitStatus, Log, NoRestart, RestartReason, StopReason, Supervisor,
    WorkerId,
};

/// Where one slot is on its delay curve.
#[derive(Debug, Clone, Default)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next delay, given `unit`, a uniform random number in [0, 1).
    /// Saturating throughout: no number of attempts overflows.
    pub fn next(&mut self, policy: &BackoffPolicy, unit: f64) -> Duration {
        let mut base = policy.initial;
        for _ in 0..self.attempt {
            base = base.saturating_mul(policy.factor.max(1));
            if base >= policy.max {
                break;
            }
        }
        let base = base.min(policy.max);
        self.attempt = self.attempt.saturating_add(1);
        let jitter = policy.jitter.clamp(0.0, 1.0);
        let scale = 1.0 - jitter + 2.0 * jitter * unit.clamp(0.0, 1.0);
        base.mul_f64(scale)
    }

    /// Back to the start of the curve, after a worker has run stably.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A small deterministic generator (xorshift64*) for jitter: the supervisor owns one,
/// seeded by the driver, so tests can replay a run exactly.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator from `seed` (0 is replaced by a fixed non-zero value).
    pub fn new(seed: u64) -> Self {
        Jitter(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// A uniform number in [0, 1).
    pub fn unit(&mut self) -> f64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The flapping window: when the recent unstable restarts (of a worker that ran less than
/// `min_uptime`) happened. More than `max_restarts` of them within `restart_window` and the
/// app is errored.
#[derive(Debug, Default)]
pub(super) struct FlapWindow {
    times: VecDeque<Instant>,
}

impl FlapWindow {
    /// Counts an unstable restart at `now` and forgets those more than `window` old;
    /// returns how many are left.
    fn record(&mut self, now: Instant, window: Duration) -> usize {
        self.times.push_back(now);
        while let Some(&t) = self.times.front() {
            if now.saturating_duration_since(t) > window {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.len()
    }

    /// Unstable restarts counted so far (as of the last one recorded).
    fn count(&self) -> usize {
        self.times.len()
    }
}

impl Supervisor {
    /// A worker is gone (exited with `status`, or never started: `None`): decide what its
    /// slot needs. `why` describes the failure in case it was a replacement.
    pub(super) fn worker_gone(
        &mut self,
        id: WorkerId,
        w: &Worker,
        now: Instant,
        out: &mut Vec<Action>,
        why: Option<String>,
        status: Option<ExitStatus>,
    ) {
        // Shutting down, nothing is decided for slots any more.
        if !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        let Some(slot) = self.slots.get_mut(w.slot) else {
            return;
        };
        if let Some(r) = slot.replacement_is(id) {
            slot.replacement = None;
            // A replacement herd stopped itself (reload superseded, scale-down) did not fail.
            if !matches!(w.stage, Stage::Stopping { .. }) {
                let reason = why.unwrap_or_else(|| "new worker failed".into());
                match r.kind {
                    ReplacementKind::Memory => {
                        self.memory_replacement_failed(w.slot, reason, now, out)
                    }
                    ReplacementKind::Reload => self.abort_reload(w.slot, reason, now, out),
                    ReplacementKind::Hung(_) => {
                        self.hung_replacement_failed(w.slot, reason, now, out)
                    }
                }
            }
            return;
        }
        if slot.state != SlotState::Filled(id) {
            return;
        }
        slot.state = SlotState::Empty;
        slot.vacant_since = now;
        if let Some(r) = slot
            .replacement
            .filter(|r| r.kind != ReplacementKind::Reload)
        {
            // The old worker died while its memory or hung replacement starts: that
            // replacement is the slot's restart.
            slot.replacement = None;
            slot.state = SlotState::Filled(r.worker);
            self.count_restart(w.slot, r.kind.restart_reason());
            return;
        }
        if slot.replacement.is_none() {
            // Nobody accepts on the slot's socket until a replacement is up.
            out.push(Action::Vacate { slot: w.slot });
        }
        let Phase::Running {
            restarts: Restarts::On(window),
            ..
        } = &mut self.phase
        else {
            // Errored: the slot stays empty until a reload.
            return;
        };
        let stop_code = match status {
            Some(ExitStatus::Code(c)) if self.policy.stop_exit_codes.contains(&c) => Some(c),
            _ => None,
        };
        let no_restart = match (self.policy.autorestart, stop_code) {
            (_, Some(code)) => Some(NoRestart::StopExitCode(code)),
            (false, None) => Some(NoRestart::AutorestartOff),
            (true, None) => None,
        };
        if let Some(reason) = no_restart {
            // A worker herd stopped because it was not ready failed, whatever its code.
            let failed = matches!(
                w.stage,
                Stage::Stopping {
                    reason: StopReason::NotReady,
                    ..
                }
            );
            let clean = !failed && (stop_code.is_some() || status == Some(ExitStatus::Code(0)));
            slot.state = SlotState::Parked { clean };
            out.push(Action::Log(Log::NotRestarted {
                slot: w.slot,
                pid: w.pid,
                reason,
            }));
            return;
        }
        let uptime = now.saturating_duration_since(w.started);
        let stable = w.pid.is_some() && uptime >= self.policy.min_uptime;
        let unstable = if stable {
            slot.backoff.reset();
            window.count()
        } else {
            let unstable = window.record(now, self.policy.restart_window);
            if unstable > self.policy.max_restarts {
                self.become_errored(unstable, out);
                return;
            }
            unstable
        };
        let slot = &mut self.slots[w.slot];
        let delay = if stable && self.policy.backoff.stable_at_once {
            Duration::ZERO
        } else {
            slot.backoff.next(&self.policy.backoff, self.jitter.unit())
        };
        slot.state = SlotState::Pending {
            at: now + delay,
            restart: true,
        };
        out.push(Action::Log(Log::Restarting {
            slot: w.slot,
            delay,
            unstable,
        }));
    }

    /// Counts a restart of `slot`, in the slot, the app and the app's count by reason.
    pub(super) fn count_restart(&mut self, slot: usize, reason: RestartReason) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.restarts = s.restarts.saturating_add(1);
        }
        self.total_restarts = self.total_restarts.saturating_add(1);
        let i = RestartReason::ALL
            .iter()
            .position(|r| *r == reason)
            .expect("every reason is listed");
        self.restarts_by[i] = self.restarts_by[i].saturating_add(1);
    }

    /// Too many unstable restarts: no restart until a reload, and the pending ones are
    /// dropped. A reload under way goes on.
    fn become_errored(&mut self, unstable: usize, out: &mut Vec<Action>) {
        if let Phase::Running { restarts, .. } = &mut self.phase {
            *restarts = Restarts::Errored;
        }
        for s in &mut self.slots {
            if let SlotState::Pending { .. } = s.state {
                s.state = SlotState::Empty;
            }
        }
        out.push(Action::Log(Log::Errored {
            unstable,
            window: self.policy.restart_window,
        }));
    }

    /// Starts the empty slots whose start is due (unless the app is errored or shutting
    /// down, when no slot is pending anyway).
    pub(super) fn start_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(
            self.phase,
            Phase::Running {
                restarts: Restarts::On(_),
                ..
            }
        ) {
            return;
        }
        for slot in 0..self.slots.len() {
            let SlotState::Pending { at, restart } = self.slots[slot].state else {
                continue;
            };
            if at > now {
                continue;
            }
            if restart {
                self.count_restart(slot, RestartReason::Crash);
            }
            let id = self.spawn(slot, now, out);
            self.slots[slot].state = SlotState::Filled(id);
        }
    }
}
