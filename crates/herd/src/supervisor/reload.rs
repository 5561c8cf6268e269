//! Rolling reload: desired generation = N + 1, then per slot "start the replacement on
//! the same sockets, wait until it is ready, stop the old worker", `reload_parallel`
//! slots at a time. A failure stops the plan and leaves the old workers serving. A reload
//! is also how an errored app recovers, and how slots left empty for good are started again.

use std::collections::VecDeque;
use std::time::Instant;

use super::restarts::FlapWindow;
use super::state::{Phase, ReloadPlan, Replacement, ReplacementKind, Restarts, SlotState};
use super::{Action, Log, StopReason, Supervisor};

impl Supervisor {
    /// Only while running (a shutdown refuses it in `step.rs`).
    pub(super) fn on_reload(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Running { restarts, .. } = &mut self.phase else {
            return;
        };
        if let Restarts::Errored = restarts {
            // A reload is how a user ships the fix for a crash loop: start over.
            *restarts = Restarts::On(FlapWindow::default());
            out.push(Action::Log(Log::Recovered));
            for s in &mut self.slots {
                s.backoff.reset();
            }
        }
        // Empty slots start again, with the new program: those of an errored app, and
        // those whose worker exited for good (autorestart off, a stop exit code), since a
        // reload means "run the program in every slot". (A slot waiting for its restart
        // keeps its time; none is waiting in an errored app.)
        for s in &mut self.slots {
            if let SlotState::Empty | SlotState::Parked { .. } = s.state {
                s.state = SlotState::Pending {
                    at: now,
                    restart: false,
                };
            }
        }
        let superseded = self.reload_plan().is_some();
        // Replacements of an older plan (or memory replacements) are not serving yet: drop
        // them, never double up; the reload replaces their slots anyway.
        for slot in 0..self.slots.len() {
            if let Some(r) = self.slots[slot].replacement.take() {
                self.stop_or_forget(r.worker, StopReason::ReloadCancelled, now, out);
            }
        }
        self.generation += 1;
        // Slots whose worker is hung go first: they serve nobody.
        let mut pending: VecDeque<usize> = (0..self.slots.len()).collect();
        pending.make_contiguous().sort_by_key(|&slot| {
            !self.slots[slot]
                .worker()
                .and_then(|id| self.workers.get(&id))
                .is_some_and(|w| w.health.hung)
        });
        out.push(Action::Log(Log::ReloadStarted {
            generation: self.generation,
            slots: pending.len(),
            superseded,
        }));
        if let Phase::Running { reload, .. } = &mut self.phase {
            *reload = Some(ReloadPlan {
                total: pending.len(),
                pending,
                done: 0,
            });
        }
    }

    /// Starts replacements while fewer than `reload_parallel` are in flight; ends the plan
    /// when every slot runs the new generation.
    pub(super) fn advance_reload(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Phase::Running {
            reload: Some(plan), ..
        } = &mut self.phase
        else {
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
                // A hung worker's replacement (started after the reload began) runs the
                // new generation already.
                s.replacement.is_none()
                    && s.worker()
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
            let worker = self.spawn(slot, now, out);
            self.slots[slot].replacement = Some(Replacement {
                worker,
                kind: ReplacementKind::Reload,
            });
        }
        if finished {
            if let Phase::Running { reload, .. } = &mut self.phase {
                *reload = None;
            }
            out.push(Action::Log(Log::ReloadDone {
                generation: self.generation,
            }));
        }
    }

    /// The replacement of `slot` is ready: it becomes current and the old worker stops.
    /// A memory replacement counts as a restart of the slot.
    pub(super) fn promote(&mut self, slot: usize, now: Instant, out: &mut Vec<Action>) {
        let s = &mut self.slots[slot];
        let Some(new) = s.replacement.take() else {
            return;
        };
        // The slot may have been empty, waiting for a restart (or parked): the replacement
        // is that restart.
        let old = std::mem::replace(&mut s.state, SlotState::Filled(new.worker));
        s.backoff.reset();
        s.memory_retry_at = None;
        let reason = match new.kind {
            ReplacementKind::Reload => StopReason::Replaced,
            ReplacementKind::Memory => StopReason::MemoryLimit,
            ReplacementKind::Hung(_) => StopReason::Hung,
        };
        if new.kind != ReplacementKind::Reload {
            self.count_restart(slot, new.kind.restart_reason());
        }
        if let SlotState::Filled(old) = old {
            self.stop_or_forget(old, reason, now, out);
        }
        if let (
            Phase::Running {
                reload: Some(plan), ..
            },
            ReplacementKind::Reload,
        ) = (&mut self.phase, new.kind)
        {
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
        if let Phase::Running { reload, .. } = &mut self.phase {
            *reload = None;
        }
        for s in 0..self.slots.len() {
            if let Some(r) = self.slots[s].replacement.take() {
                self.stop_or_forget(r.worker, StopReason::ReloadCancelled, now, out);
            }
        }
        out.push(Action::Log(Log::ReloadAborted { slot, reason }));
    }

    /// The rolling reload under way, if any.
    pub(super) fn reload_plan(&self) -> Option<&ReloadPlan> {
        match &self.phase {
            Phase::Running { reload, .. } => reload.as_ref(),
            _ => None,
        }
    }
}
