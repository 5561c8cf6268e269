//! What the loop tells `/metrics`: a snapshot of the app ([`AppSnapshot`]), taken from the
//! supervisor's view and what the driver counts itself ([`Tally`]: reloads by result, each
//! slot's last exit, connections handed over and relayed). Rendering happens off the loop.

use std::collections::HashMap;
use std::time::{Instant, SystemTime};

use super::Driver;
use crate::observe::metrics::{AppSnapshot, HealthSnapshot, ListenerSnapshot, WorkerSnapshot};
use crate::supervisor::{ExitStatus, Log};

/// The driver's own counts for `/metrics`.
#[derive(Debug, Default)]
pub(super) struct Tally {
    reloads_ok: u64,
    reloads_failed: u64,
    /// How each slot's last worker ended, and when.
    last_exit: HashMap<usize, (ExitStatus, SystemTime)>,
    handed_over: u64,
    relayed: u64,
}

impl Tally {
    /// Counts what a lifecycle record says.
    pub(super) fn log(&mut self, log: &Log) {
        match log {
            Log::ReloadDone { .. } => self.reloads_ok += 1,
            Log::ReloadAborted { .. } => self.reloads_failed += 1,
            Log::Exited { slot, status, .. } => {
                self.last_exit.insert(*slot, (*status, SystemTime::now()));
            }
            _ => {}
        }
    }

    /// How `slot`'s last worker ended, and when.
    pub(super) fn last_exit(&self, slot: usize) -> Option<(ExitStatus, SystemTime)> {
        self.last_exit.get(&slot).copied()
    }

    /// A connection went to a worker: relayed (`--proxy`) or handed over.
    pub(super) fn handed(&mut self, relayed: bool) {
        if relayed {
            self.relayed += 1;
        } else {
            self.handed_over += 1;
        }
    }
}

impl Driver {
    /// The app as `/metrics` shows it, now.
    pub(super) fn metrics_snapshot(&self) -> AppSnapshot {
        let (now, wall) = (Instant::now(), SystemTime::now());
        let mut seen = std::collections::HashSet::new();
        let instances = self.sup.instances();
        let workers = self
            .sup
            .snapshot()
            .into_iter()
            .map(|w| WorkerSnapshot {
                slot: w.slot,
                pid: w.pid,
                generation: w.generation,
                state: w.state.to_string(),
                ready: w.state == crate::supervisor::WorkerState::Ready,
                started: w
                    .pid
                    .map(|_| wall - now.saturating_duration_since(w.started)),
                restarts: w.restarts,
                last_exit: self.tally.last_exit(w.slot).map(|(s, _)| match s {
                    ExitStatus::Code(c) => c,
                    ExitStatus::Signal(s) => 128 + s,
                }),
                // The slot's first entry is its series; the others (a replacement, older
                // workers still stopping, workers of slots scaled away) are not.
                extra: w.slot >= instances || !seen.insert(w.slot),
                health: w.health.map(|h| HealthSnapshot {
                    ok: h.last.as_ref().map(Result::is_ok),
                    failures: h.failures,
                    latency: h
                        .last
                        .as_ref()
                        .and_then(|r| r.as_ref().ok())
                        .map(|d| d.as_secs_f64()),
                    heartbeat_age: h
                        .last_heartbeat
                        .map(|t| now.saturating_duration_since(t).as_secs_f64()),
                }),
                handed_over: w
                    .pid
                    .and_then(|p| self.channels.get(&p))
                    .map_or(0, |l| l.handed),
            })
            .collect();
        AppSnapshot {
            app: self.plan.name.clone(),
            namespace: None,
            state: self.sup.app_state().to_string(),
            desired: instances,
            generation: self.sup.generation(),
            reloads_ok: self.tally.reloads_ok,
            reloads_failed: self.tally.reloads_failed,
            restarts: self
                .sup
                .restarts_by_reason()
                .iter()
                .map(|(r, n)| (r.as_str(), *n))
                .collect(),
            listeners: self
                .listeners
                .accept_queues()
                .into_iter()
                .map(|(addr, queued, backlog)| ListenerSnapshot {
                    addr: addr.to_string(),
                    queued,
                    backlog,
                })
                .collect(),
            handed_over: self.tally.handed_over,
            relayed: self.tally.relayed,
            waiting: self.handoff.as_ref().map_or(0, |h| h.waiting()),
            workers,
            scrape_errors: self
                .app_scrapes
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(s, n)| (*s, *n))
                .collect(),
            counters: self
                .counters
                .iter()
                .map(|(k, slots)| (k.clone(), slots.iter().map(|(s, v)| (*s, *v)).collect()))
                .collect(),
        }
    }
}
