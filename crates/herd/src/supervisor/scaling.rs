//! The number of slots: the first start (`instances` of them), and scaling up and down
//! (SIGTTIN/SIGTTOU, `herd scale`). A new slot starts at once, unless the app is errored;
//! a removed slot is always the highest, and its workers are stopped gracefully. One slot
//! is the minimum. A shutdown refuses every change (in `step.rs`).

use std::time::Instant;

use super::state::{Phase, Restarts, Slot, SlotState};
use super::{Action, Log, StopReason, Supervisor};

impl Supervisor {
    /// Creates and spawns the first slots; nothing once there are slots.
    pub(super) fn on_start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !self.slots.is_empty() {
            return;
        }
        for slot in 0..self.policy.instances.max(1) {
            let id = self.spawn(slot, now, out);
            self.slots.push(Slot::new(SlotState::Filled(id), now));
        }
    }

    pub(super) fn on_scale_up(&mut self, now: Instant, out: &mut Vec<Action>) {
        let from = self.slots.len();
        self.add_slot(now);
        out.push(Action::Log(Log::Scaled { from, to: from + 1 }));
    }

    pub(super) fn on_scale_down(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.slots.len() <= 1 {
            out.push(Action::Log(Log::Ignored {
                what: "scale down",
                why: "one worker is the minimum",
            }));
            return;
        }
        let from = self.slots.len();
        out.push(Action::Log(Log::Scaled { from, to: from - 1 }));
        self.remove_slot(now, out);
    }

    pub(super) fn on_scale_to(&mut self, to: usize, now: Instant, out: &mut Vec<Action>) {
        if to == 0 {
            out.push(Action::Log(Log::Ignored {
                what: "scale",
                why: "one worker is the minimum",
            }));
            return;
        }
        let from = self.slots.len();
        if to == from {
            out.push(Action::Log(Log::Ignored {
                what: "scale",
                why: "already at that number of workers",
            }));
            return;
        }
        while self.slots.len() < to {
            self.add_slot(now);
        }
        while self.slots.len() > to {
            self.remove_slot(now, out);
        }
        out.push(Action::Log(Log::Scaled { from, to }));
    }

    /// One slot more, started at once unless the app is errored (then a reload starts it).
    fn add_slot(&mut self, now: Instant) {
        let state = match self.phase {
            Phase::Running {
                restarts: Restarts::Errored,
                ..
            } => SlotState::Empty,
            _ => SlotState::Pending {
                at: now,
                restart: false,
            },
        };
        self.slots.push(Slot::new(state, now));
    }

    /// The highest slot less; its workers are stopped gracefully.
    fn remove_slot(&mut self, now: Instant, out: &mut Vec<Action>) {
        let Some(slot) = self.slots.pop() else {
            return;
        };
        for id in [slot.worker(), slot.replacement.map(|r| r.worker)]
            .into_iter()
            .flatten()
        {
            self.stop_or_forget(id, StopReason::ScaleDown, now, out);
        }
    }
}
