//! Rolling reload: desired generation = N + 1, then per slot "start the replacement on
//! the same sockets, wait until it is ready, stop the old worker", `reload_parallel`
//! slots at a time. A failure stops the plan and leaves the old workers serving.

use std::collections::VecDeque;
use std::time::Instant;

use super::{Action, Log, Mode, ReloadPlan, StopReason, Supervisor};

impl Supervisor {
    pub(super) fn on_reload(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.mode != Mode::Running {
            out.push(Action::Log(Log::Ignored {
                what: "reload",
                why: "shutting down",
            }));
            return;
        }
        if self.errored {
            // A reload is how a user ships the fix for a crash loop: start over.
            self.errored = false;
            self.unstable.clear();
            out.push(Action::Log(Log::Recovered));
            for s in &mut self.slots {
                s.backoff.reset();
                if s.current.is_none() {
                    s.restart_at = Some(now);
                    s.restart_counts = false;
                }
            }
        }
        // Slots whose worker exited for good (autorestart off, a stop exit code) are started
        // again: a reload means "run the program in every slot".
        for s in &mut self.slots {
            if s.parked.take().is_some() && s.current.is_none() && !self.errored {
                s.restart_at = Some(now);
                s.restart_counts = false;
            }
        }
        let superseded = self.reload.is_some();
        // Replacements of an older plan (or memory replacements) are not serving yet: drop
        // them, never double up; the reload replaces their slots anyway.
        for slot in 0..self.slots.len() {
            if let Some(id) = self.slots[slot].take_replacement() {
                self.stop_or_forget(id, StopReason::ReloadCancelled, now, out);
            }
        }
        self.generation += 1;
        let pending: VecDeque<usize> = (0..self.slots.len()).collect();
        out.push(Action::Log(Log::ReloadStarted {
            generation: self.generation,
            slots: pending.len(),
            superseded,
        }));
        self.reload = Some(ReloadPlan {
            total: pending.len(),
            pending,
            done: 0,
        });
    }

    /// Starts replacements while fewer than `reload_parallel` are in flight; ends the plan
    /// when every slot runs the new generation.
    pub(super) fn advance_reload(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.mode != Mode::Running {
            return;
        }
        let Some(plan) = self.reload.as_mut() else {
            return;
        };
        let parallel = self.policy.reload_parallel.max(1);
        let mut in_flight = self
            .slots
            .iter()
            .filter(|s| s.replacement.is_some())
            .count();
        let mut starts = Vec::new();
        while in_flight < parallel {
            let Some(slot) = plan.pending.pop_front() else {
                break;
            };
            let needs = self.slots.get(slot).is_some_and(|s| {
                s.current
                    .and_then(|id| self.workers.get(&id))
                    .is_some_and(|w| w.generation < self.generation)
            });
            if needs {
                starts.push(slot);
                in_flight += 1;
            } else {
                // Empty slot (its restart runs the new program anyway) or already new.
                plan.done += 1;
            }
        }
        let finished = plan.pending.is_empty() && in_flight == 0;
        for slot in starts {
            let id = self.spawn(slot, now, out);
            self.slots[slot].replacement = Some(id);
        }
        if finished {
            self.reload = None;
            out.push(Action::Log(Log::ReloadDone {
                generation: self.generation,
            }));
        }
    }

    /// The replacement of `slot` is ready: it becomes current and the old worker stops.
    /// A memory replacement counts as a restart of the slot.
    pub(super) fn promote(&mut self, slot: usize, now: Instant, out: &mut Vec<Action>) {
        let s = &mut self.slots[slot];
        let memory = s.memory_replacement;
        let Some(new) = s.take_replacement() else {
            return;
        };
        let old = s.current.replace(new);
        // The slot may have been empty, waiting for a restart: the replacement is that restart.
        s.restart_at = None;
        s.restart_counts = false;
        s.parked = None;
        s.backoff.reset();
        s.memory_retry_at = None;
        if memory {
            s.restarts = s.restarts.saturating_add(1);
            self.total_restarts = self.total_restarts.saturating_add(1);
        }
        let reason = if memory {
            StopReason::MemoryLimit
        } else {
            StopReason::Replaced
        };
        if let Some(old) = old {
            self.stop_or_forget(old, reason, now, out);
        }
        if let Some(plan) = self.reload.as_mut() {
            plan.done += 1;
            out.push(Action::Log(Log::ReloadProgress {
                slot,
                done: plan.done,
                total: plan.total,
            }));
        }
    }

    /// Stops the plan after a replacement failed; old workers keep serving.
    pub(super) fn abort_reload(
        &mut self,
        slot: usize,
        reason: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        self.reload = None;
        for s in 0..self.slots.len() {
            if let Some(id) = self.slots[s].take_replacement() {
                self.stop_or_forget(id, StopReason::ReloadCancelled, now, out);
            }
        }
        out.push(Action::Log(Log::ReloadAborted { slot, reason }));
    }
}
