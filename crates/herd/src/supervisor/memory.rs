//! Memory restarts (PM2's `max_memory_restart`): a ready worker whose sampled memory is over
//! the limit is replaced the safe way, like one slot of a rolling reload: its replacement
//! starts first, and the old worker is stopped gracefully only once the replacement is
//! ready. If the replacement fails, the old worker keeps serving and the slot waits out its
//! backoff delay before the next sample over the limit may try again.
//!
//! A sample does nothing while a reload or a shutdown is under way, while the app is
//! errored, while the slot already has a replacement, or while `reload_parallel`
//! replacements are in flight: the driver samples again, and a later sample that is still
//! over the limit acts then. So samples are not queued; the condition is re-judged.

use std::time::Instant;

use super::state::{Phase, Replacement, ReplacementKind, Restarts};
use super::{Action, Log, Supervisor};

impl Supervisor {
    /// Only while running (a shutdown ignores samples in `step.rs`).
    pub(super) fn on_memory(&mut self, pid: u32, rss: u64, now: Instant, out: &mut Vec<Action>) {
        let Some(limit) = self.policy.max_memory else {
            return;
        };
        // Running, neither errored nor reloading.
        let quiet = matches!(
            self.phase,
            Phase::Running {
                restarts: Restarts::On(_),
                reload: None,
                shutdown_at: None,
            }
        );
        if rss <= limit || !quiet {
            return;
        }
        let Some(id) = self.id_of_pid(pid) else {
            return;
        };
        let w = &self.workers[&id];
        if !w.serves() {
            return;
        }
        let slot = w.slot;
        let Some(s) = self.slots.get(slot) else {
            return;
        };
        let waiting = s.memory_retry_at.is_some_and(|t| now < t);
        if s.worker() != Some(id) || s.replacement.is_some() || waiting {
            return;
        }
        let in_flight = self
            .slots
            .iter()
            .filter(|s| s.replacement.is_some())
            .count();
        if in_flight >= self.policy.reload_parallel.max(1) {
            return;
        }
        out.push(Action::Log(Log::MemoryOverLimit {
            slot,
            pid,
            rss,
            limit,
        }));
        let worker = self.spawn(slot, now, out);
        self.slots[slot].replacement = Some(Replacement {
            worker,
            kind: ReplacementKind::Memory,
        });
    }

    /// The memory replacement of `slot` failed (already taken out of the slot): the old
    /// worker keeps serving; no new attempt before the slot's backoff delay.
    pub(super) fn memory_replacement_failed(
        &mut self,
        slot: usize,
        reason: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let unit = self.jitter.unit();
        let Some(s) = self.slots.get_mut(slot) else {
            return;
        };
        let retry_in = s.backoff.next(&self.policy.backoff, unit);
        s.memory_retry_at = Some(now + retry_in);
        out.push(Action::Log(Log::MemoryRestartFailed {
            slot,
            reason,
            retry_in,
        }));
    }
}
