//! Hung workers: health checks and heartbeats. A worker that is alive but no longer serves
//! (a busy loop, a deadlock, a blocked event loop) keeps its slot forever unless herd looks.
//!
//! Only a ready worker is watched. With a [`HealthPolicy`], its first check is asked for at
//! once and repeated every [`HEALTH_FIRST_CHECK_EVERY`] (or `interval`, if shorter) until
//! one passes, then every `interval`; a worker that never passes within `start_period` +
//! the listen timeout of its start is a failed start (stopped as not ready; its slot
//! restarts with backoff, so a program that never gets healthy ends errored). After the
//! first pass, `failures` failed checks in a row (outside the start period) make it hung.
//! With a watchdog, a ready worker that sends no heartbeat for the period, or sends
//! `WATCHDOG=trigger`, is hung.
//!
//! A hung worker leaves the route at once and is replaced the safe way, as over the memory
//! limit: the replacement starts first, the hung worker is stopped gracefully once the
//! replacement is ready (SIGKILL after the kill timeout), and the slot counts a restart
//! with reason `health` or `watchdog`. No limit on replacements in flight: a hung worker
//! serves nobody, so waiting gains nothing. If its slot already has a replacement (a
//! reload's, a memory one), that one takes over. If the replacement fails, the hung worker
//! is stopped and its slot restarts as after a crash; an errored app just stops it.
//!
//! Where a slot's workers share the slot's socket (reuseport), a hung worker may go on
//! accepting from it, and ignore its stop, until it is killed: it would take a share of
//! the connections and checks meant for its replacement. So its slot stays out of the
//! route until it is gone, and a failed check of the replacement (which may have landed
//! on it) does not count meanwhile.

use std::time::{Duration, Instant};

use super::policy::HEALTH_FIRST_CHECK_EVERY;
use super::state::{Phase, Replacement, ReplacementKind, Restarts, Stage};
use super::{Action, HangCause, HealthPolicy, Log, StopReason, Supervisor, WorkerId};

impl Supervisor {
    /// A worker just became ready: its checks and its watchdog start now.
    pub(super) fn start_watching(&mut self, id: WorkerId, now: Instant) {
        let watchdog = self.policy.watchdog;
        let checks = self.policy.health.is_some();
        if let Some(w) = self.workers.get_mut(&id) {
            if checks {
                w.health.next_check = Some(now);
            }
            w.health.watchdog_due = watchdog.map(|d| now + d);
        }
    }

    /// A heartbeat (`WATCHDOG=1`, the `"watchdog"` message): the watchdog starts over.
    pub(super) fn on_heartbeat(&mut self, id: WorkerId, now: Instant) {
        let watchdog = self.policy.watchdog;
        if let Some(w) = self.workers.get_mut(&id) {
            w.health.last_heartbeat = Some(now);
            if w.health.watchdog_due.is_some() {
                w.health.watchdog_due = watchdog.map(|d| now + d);
            }
        }
    }

    /// The result of a health check.
    pub(super) fn on_checked(
        &mut self,
        pid: u32,
        result: Result<Duration, String>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Some(policy) = self.policy.health else {
            return;
        };
        let Some(id) = self.id_of_pid(pid) else {
            return;
        };
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        // A check that may have landed on a hung worker of the same slot judges nothing.
        let shared = !w.health.hung && self.hung_worker_holds_socket(w.slot);
        let w = self.workers.get_mut(&id).expect("looked up above");
        w.health.in_flight = false;
        let watched = w.stage == Stage::Ready && !w.health.hung && !shared;
        let (slot, started) = (w.slot, w.started);
        let h = &mut w.health;
        match &result {
            Ok(_) => {
                if watched && h.passed && h.failures > 0 {
                    out.push(Action::Log(Log::HealthRecovered {
                        slot,
                        pid,
                        failures: h.failures,
                    }));
                }
                h.passed = true;
                h.failures = 0;
            }
            Err(error) => {
                // Before the first pass, the start deadline judges; in the start period,
                // nothing does.
                let counted = watched && h.passed && now >= started + policy.start_period;
                if counted {
                    h.failures += 1;
                    out.push(Action::Log(Log::HealthCheckFailed {
                        slot,
                        pid,
                        failures: h.failures,
                        threshold: policy.failures,
                        error: error.clone(),
                    }));
                }
                if counted && h.failures >= policy.failures.max(1) {
                    let detail = format!(
                        "{} health checks failed in a row, the last: {error}",
                        h.failures
                    );
                    h.last = Some(result);
                    self.on_hung(id, HangCause::Health, detail, now, out);
                    return;
                }
            }
        }
        h.last = Some(result);
    }

    /// With one socket per slot: a hung worker of `slot` is still alive, and may still
    /// accept from the socket it shares with its replacement (see
    /// [`Policy::slot_socket_shared`](super::Policy)).
    pub(super) fn hung_worker_holds_socket(&self, slot: usize) -> bool {
        self.policy.slot_socket_shared
            && self
                .workers
                .values()
                .any(|w| w.slot == slot && w.health.hung)
    }

    /// A worker said `WATCHDOG=trigger`.
    pub(super) fn on_watchdog_trigger(
        &mut self,
        id: WorkerId,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let detail = "it sent WATCHDOG=trigger".to_string();
        self.on_hung(id, HangCause::Watchdog, detail, now, out);
    }

    /// A ready worker is hung: out of the route, replaced (see the module documentation).
    fn on_hung(
        &mut self,
        id: WorkerId,
        cause: HangCause,
        detail: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let Phase::Running { restarts, .. } = &self.phase else {
            return;
        };
        let errored = matches!(restarts, Restarts::Errored);
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.stage != Stage::Ready || w.health.hung {
            return;
        }
        w.health.hung = true;
        w.health.next_check = None;
        w.health.watchdog_due = None;
        let (slot, pid) = (w.slot, w.pid.unwrap_or(0));
        out.push(Action::Log(Log::Hung {
            slot,
            pid,
            cause,
            detail,
        }));
        let current = self.slots.get(slot).is_some_and(|s| s.worker() == Some(id));
        if !current || errored {
            self.stop(id, StopReason::Hung, now, out);
            return;
        }
        if self.slots[slot].replacement.is_some() {
            // A reload's or a memory replacement starts already: it takes over.
            return;
        }
        let worker = self.spawn(slot, now, out);
        self.slots[slot].replacement = Some(Replacement {
            worker,
            kind: ReplacementKind::Hung(cause),
        });
    }

    /// The replacement of a hung worker failed (already taken out of the slot): the hung
    /// worker is stopped; once it is gone its slot restarts as after a crash.
    pub(super) fn hung_replacement_failed(
        &mut self,
        slot: usize,
        reason: String,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Log(Log::HungRestartFailed { slot, reason }));
        if let Some(id) = self.slots.get(slot).and_then(|s| s.worker()) {
            self.stop(id, StopReason::Hung, now, out);
        }
    }

    /// Asks for the checks that are due, and judges the deadlines that passed: a silent
    /// watchdog, a worker that never got healthy. Only while running.
    pub(super) fn health_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        if !matches!(self.phase, Phase::Running { .. }) {
            return;
        }
        let health = self.policy.health;
        let never_by = health.map(|p| p.start_period + self.policy.listen_timeout);
        let mut silent = Vec::new();
        let mut never = Vec::new();
        for (id, w) in &mut self.workers {
            if w.stage != Stage::Ready || w.health.hung {
                continue;
            }
            let h = &mut w.health;
            if h.watchdog_due.is_some_and(|due| due <= now) {
                silent.push(*id);
                continue;
            }
            if let (Some(within), false) = (never_by, h.passed) {
                if w.started + within <= now {
                    never.push((*id, within));
                    continue;
                }
            }
            let (Some(p), Some(due), Some(pid)) = (health, h.next_check, w.pid) else {
                continue;
            };
            if h.in_flight || due > now {
                continue;
            }
            h.in_flight = true;
            h.next_check = Some((due + check_every(&p, h.passed)).max(now));
            out.push(Action::Check { pid });
        }
        let watchdog = self.policy.watchdog.unwrap_or_default();
        for id in silent {
            let detail = format!(
                "no heartbeat for {} (--watchdog)",
                crate::units::format_duration(watchdog)
            );
            self.on_hung(id, HangCause::Watchdog, detail, now, out);
        }
        for (id, within) in never {
            let w = &self.workers[&id];
            out.push(Action::Log(Log::NeverHealthy {
                slot: w.slot,
                pid: w.pid.unwrap_or(0),
                within,
                last: w.health.last.clone().and_then(Result::err),
            }));
            self.stop(id, StopReason::NotReady, now, out);
        }
    }

    /// The earliest health deadline: a check due, a watchdog, the first-pass deadline.
    pub(super) fn next_health_deadline(&self) -> Option<Instant> {
        let never_by = self
            .policy
            .health
            .map(|p| p.start_period + self.policy.listen_timeout);
        self.workers
            .values()
            .filter(|w| w.stage == Stage::Ready && !w.health.hung)
            .flat_map(|w| {
                let h = &w.health;
                let check = h.next_check.filter(|_| !h.in_flight);
                let first = never_by.filter(|_| !h.passed).map(|d| w.started + d);
                [check, h.watchdog_due, first]
            })
            .flatten()
            .min()
    }
}

/// How long after one check the next is due.
fn check_every(p: &HealthPolicy, passed: bool) -> Duration {
    if passed {
        p.interval
    } else {
        p.interval.min(HEALTH_FIRST_CHECK_EVERY)
    }
}
