//! The lifecycle rules, with simulated time: no process, no clock, microseconds per test.
//! `Sim` is a fake driver; each file tests one concern of the state machine.

mod health;
mod invariants;
mod memory;
mod readiness;
mod reload;
mod restarts;
mod scaling;
mod shutdown;
mod status;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

/// A fake driver: hands out pids for spawns and remembers everything the supervisor asked.
struct Sim {
    sup: Supervisor,
    now: Instant,
    next_pid: u32,
    /// Spawn actions not answered yet.
    pending: Vec<(WorkerId, usize)>,
    /// pid -> slot of processes that are running.
    running: BTreeMap<u32, usize>,
    log: Vec<Action>,
    exit: Option<Outcome>,
}

impl Sim {
    fn new(policy: Policy) -> Self {
        Sim {
            sup: Supervisor::new(policy, 7),
            now: Instant::now(),
            next_pid: 100,
            pending: Vec::new(),
            running: BTreeMap::new(),
            log: Vec::new(),
            exit: None,
        }
    }

    /// Started with `policy`, every first spawn answered.
    fn running(policy: Policy) -> Self {
        let mut sim = Sim::new(policy);
        sim.step(Event::Start);
        sim.spawn_all();
        sim
    }

    fn started(instances: usize, readiness: Readiness) -> Self {
        Sim::running(Policy {
            instances,
            readiness,
            ..Policy::default()
        })
    }

    fn step(&mut self, ev: Event) -> Vec<Action> {
        let actions = self.sup.step(ev, self.now);
        for a in &actions {
            match a {
                Action::Spawn { worker, slot, .. } => self.pending.push((*worker, *slot)),
                Action::Exit(o) => {
                    assert!(self.exit.is_none(), "exit twice");
                    self.exit = Some(*o)
                }
                _ => {}
            }
        }
        self.log.extend(actions.iter().cloned());
        actions
    }

    /// Answers every pending spawn with a new pid; returns the pids.
    fn spawn_all(&mut self) -> Vec<u32> {
        let mut pids = Vec::new();
        for (worker, slot) in std::mem::take(&mut self.pending) {
            let pid = self.next_pid;
            self.next_pid += 1;
            self.running.insert(pid, slot);
            self.step(Event::Spawned { worker, pid });
            pids.push(pid);
        }
        pids
    }

    fn advance(&mut self, d: Duration) -> Vec<Action> {
        self.now += d;
        self.step(Event::Timer)
    }

    fn exit(&mut self, pid: u32, status: ExitStatus) -> Vec<Action> {
        self.running.remove(&pid);
        self.step(Event::Exited { pid, status })
    }

    fn ready(&mut self, pid: u32) -> Vec<Action> {
        self.step(Event::Notify {
            pid,
            msg: NotifyMsg::Ready,
        })
    }

    fn pid_of_slot(&self, slot: usize) -> Vec<u32> {
        self.running
            .iter()
            .filter(|(_, s)| **s == slot)
            .map(|(p, _)| *p)
            .collect()
    }
}

fn pick<T>(actions: &[Action], f: impl Fn(&Action) -> Option<T>) -> Vec<T> {
    actions.iter().filter_map(f).collect()
}

fn spawns(actions: &[Action]) -> Vec<usize> {
    pick(actions, |a| match a {
        Action::Spawn { slot, .. } => Some(*slot),
        _ => None,
    })
}

fn stops(actions: &[Action]) -> Vec<u32> {
    pick(actions, |a| match a {
        Action::Stop { pid } => Some(*pid),
        _ => None,
    })
}

fn kills(actions: &[Action]) -> Vec<u32> {
    pick(actions, |a| match a {
        Action::Kill { pid } => Some(*pid),
        _ => None,
    })
}

fn restart_delay(actions: &[Action]) -> Option<Duration> {
    actions.iter().find_map(|a| match a {
        Action::Log(Log::Restarting { delay, .. }) => Some(*delay),
        _ => None,
    })
}

fn last_route(sim: &Sim) -> Vec<usize> {
    sim.log
        .iter()
        .rev()
        .find_map(|a| match a {
            Action::Route(r) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn logged(sim: &Sim, f: impl Fn(&Log) -> bool) -> bool {
    sim.log.iter().any(|a| matches!(a, Action::Log(l) if f(l)))
}

fn ready_all(sim: &mut Sim) {
    for p in sim.running.keys().copied().collect::<Vec<_>>() {
        sim.ready(p);
    }
}

fn states(sim: &Sim) -> Vec<(usize, WorkerState, bool)> {
    sim.sup
        .snapshot()
        .iter()
        .map(|v| (v.slot, v.state, v.replacement))
        .collect()
}
