//! The lifecycle rules, with simulated time: no process, no clock, microseconds per test.

use super::*;
use proptest::prelude::*;

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

#[test]
fn start_spawns_one_worker_per_slot() {
    let mut sim = Sim::new(Policy {
        instances: 3,
        ..Policy::default()
    });
    let acts = sim.step(Event::Start);
    assert_eq!(spawns(&acts), vec![0, 1, 2]);
    assert_eq!(sim.spawn_all().len(), 3);
    assert_eq!(sim.sup.active_workers(), 3);
}

#[test]
fn auto_readiness_assumes_ready_after_the_short_delay() {
    let mut sim = Sim::started(2, Readiness::Auto);
    assert_eq!(last_route(&sim), Vec::<usize>::new());
    sim.advance(DEFAULT_AUTO_READY_DELAY - MS);
    assert!(last_route(&sim).is_empty());
    let acts = sim.advance(MS);
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Log(Log::Ready {
            how: ReadyHow::Assumed,
            ..
        })
    )));
    assert_eq!(last_route(&sim), vec![0, 1]);
}

#[test]
fn auto_readiness_waits_for_ready_once_the_app_speaks_notify() {
    let mut sim = Sim::started(2, Readiness::Auto);
    let pids: Vec<u32> = sim.running.keys().copied().collect();
    sim.ready(pids[0]);
    // The other worker now gets the whole listen timeout instead of the short delay.
    sim.advance(DEFAULT_AUTO_READY_DELAY * 2);
    assert_eq!(last_route(&sim), vec![0]);
    sim.ready(pids[1]);
    assert_eq!(last_route(&sim), vec![0, 1]);
}

#[test]
fn notify_readiness_and_listen_timeout_restarts_the_slot() {
    let mut sim = Sim::started(1, Readiness::Notify);
    let pid = sim.pid_of_slot(0)[0];
    let acts = sim.advance(DEFAULT_LISTEN_TIMEOUT);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(Log::NotReady { .. }))));
    assert_eq!(stops(&acts), vec![pid]);
    // Its exit is a failure: the slot is restarted.
    let acts = sim.exit(pid, ExitStatus::Code(0));
    assert!(restart_delay(&acts).is_some());
    sim.advance(Duration::from_secs(1));
    let new = sim.spawn_all();
    assert_eq!(new.len(), 1);
    sim.ready(new[0]);
    assert_eq!(last_route(&sim), vec![0]);
}

#[test]
fn delay_readiness() {
    let mut sim = Sim::started(1, Readiness::Delay(200 * MS));
    sim.advance(199 * MS);
    assert!(last_route(&sim).is_empty());
    let acts = sim.advance(MS);
    assert!(acts.iter().any(|a| matches!(
        a,
        Action::Log(Log::Ready {
            how: ReadyHow::Delay,
            ..
        })
    )));
}

#[test]
fn backoff_curve_doubles_is_capped_and_resets_after_stable_running() {
    let mut sim = Sim::running(Policy {
        instances: 1,
        max_restarts: 100,
        ..Policy::default()
    });
    let mut delays = Vec::new();
    for _ in 0..10 {
        let pid = sim.pid_of_slot(0)[0];
        sim.advance(10 * MS);
        let acts = sim.exit(pid, ExitStatus::Code(1));
        let d = restart_delay(&acts).expect("restart scheduled");
        delays.push(d);
        // No spawn before the delay is over, one right after.
        assert!(spawns(&sim.advance(d.saturating_sub(MS))).is_empty());
        assert_eq!(spawns(&sim.advance(MS)), vec![0]);
        sim.spawn_all();
    }
    for (i, d) in delays.iter().enumerate() {
        let base = (DEFAULT_BACKOFF_INITIAL * 2u32.pow(i as u32)).min(DEFAULT_BACKOFF_MAX);
        assert!(
            *d >= base.mul_f64(0.9) && *d <= base.mul_f64(1.1),
            "attempt {i}: {d:?} vs {base:?}"
        );
    }
    // A worker that ran longer than min_uptime resets the curve.
    let pid = sim.pid_of_slot(0)[0];
    sim.advance(DEFAULT_MIN_UPTIME);
    let d = restart_delay(&sim.exit(pid, ExitStatus::Signal(9))).unwrap();
    assert!(d <= DEFAULT_BACKOFF_INITIAL.mul_f64(1.1));
}

#[test]
fn backoff_never_overflows() {
    let policy = BackoffPolicy {
        initial: Duration::from_secs(u64::MAX / 4),
        ..BackoffPolicy::default()
    };
    let mut b = Backoff::default();
    for _ in 0..200 {
        assert!(b.next(&policy, 0.99) <= policy.max.mul_f64(1.1));
    }
}

#[test]
fn crash_loop_marks_the_app_errored_and_exits_when_no_worker_is_left() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        max_restarts: 3,
        ..Policy::default()
    });
    let stable = sim.pid_of_slot(1)[0];
    let mut errored = false;
    for _ in 0..4 {
        let pid = sim.pid_of_slot(0)[0];
        let acts = sim.exit(pid, ExitStatus::Code(1));
        errored = acts
            .iter()
            .any(|a| matches!(a, Action::Log(Log::Errored { .. })));
        sim.advance(Duration::from_secs(10));
        sim.spawn_all();
    }
    assert!(errored && sim.sup.is_errored());
    assert!(sim.pid_of_slot(0).is_empty(), "no restart once errored");
    assert_eq!(sim.exit, None, "slot 1 still serves");
    let acts = sim.exit(stable, ExitStatus::Code(0));
    assert!(spawns(&acts).is_empty());
    assert_eq!(sim.exit, Some(Outcome::Errored));
}

#[test]
fn unstable_restarts_outside_the_window_do_not_count() {
    let mut sim = Sim::running(Policy {
        instances: 1,
        max_restarts: 2,
        ..Policy::default()
    });
    for _ in 0..6 {
        let pid = sim.pid_of_slot(0)[0];
        sim.exit(pid, ExitStatus::Code(1));
        sim.advance(DEFAULT_RESTART_WINDOW); // restart happens, then the window passes
        sim.spawn_all();
        sim.advance(MS);
    }
    assert!(!sim.sup.is_errored());
}

#[test]
fn graceful_shutdown_stops_everyone_and_never_restarts() {
    let mut sim = Sim::started(3, Readiness::Auto);
    let acts = sim.step(Event::Shutdown);
    let mut stopped = stops(&acts);
    stopped.sort();
    assert_eq!(stopped, sim.running.keys().copied().collect::<Vec<_>>());
    for pid in stopped {
        let acts = sim.exit(pid, ExitStatus::Code(0));
        assert!(spawns(&acts).is_empty());
        sim.advance(Duration::from_secs(1));
        assert!(sim.pending.is_empty());
    }
    assert_eq!(sim.exit, Some(Outcome::Clean));
}

#[test]
fn shutdown_kills_stragglers_after_the_kill_timeout() {
    let mut sim = Sim::started(2, Readiness::Auto);
    sim.step(Event::Shutdown);
    let pids: Vec<u32> = sim.running.keys().copied().collect();
    sim.exit(pids[0], ExitStatus::Code(0));
    assert!(kills(&sim.advance(DEFAULT_KILL_TIMEOUT - MS)).is_empty());
    assert_eq!(kills(&sim.advance(MS)), vec![pids[1]]);
    sim.exit(pids[1], ExitStatus::Signal(9));
    assert_eq!(sim.exit, Some(Outcome::Killed));
}

#[test]
fn second_shutdown_kills_at_once() {
    let mut sim = Sim::started(2, Readiness::Auto);
    sim.step(Event::Shutdown);
    let acts = sim.step(Event::Shutdown);
    assert_eq!(kills(&acts).len(), 2);
    for pid in sim.running.keys().copied().collect::<Vec<_>>() {
        sim.exit(pid, ExitStatus::Signal(9));
    }
    assert_eq!(sim.exit, Some(Outcome::Killed));
}

#[test]
fn a_worker_spawned_during_shutdown_is_stopped_at_once() {
    let mut sim = Sim::started(1, Readiness::Auto);
    let pid = sim.pid_of_slot(0)[0];
    sim.exit(pid, ExitStatus::Code(1));
    sim.advance(Duration::from_secs(1)); // restart spawn requested
    assert_eq!(sim.pending.len(), 1);
    sim.step(Event::Shutdown);
    let new = sim.spawn_all();
    assert!(sim.log.iter().any(|a| *a == Action::Stop { pid: new[0] }));
    sim.exit(new[0], ExitStatus::Code(0));
    assert_eq!(sim.exit, Some(Outcome::Clean));
}

#[test]
fn rolling_reload_replaces_one_slot_at_a_time() {
    let mut sim = Sim::started(3, Readiness::Notify);
    let old: Vec<u32> = sim.running.keys().copied().collect();
    for p in &old {
        sim.ready(*p);
    }
    let acts = sim.step(Event::Reload);
    assert_eq!(spawns(&acts), vec![0]);
    for old_pid in old {
        let new = sim.spawn_all();
        assert_eq!(new.len(), 1);
        assert!(sim.sup.active_workers() <= 4);
        // Nothing is stopped before the new one is ready.
        let acts = sim.ready(new[0]);
        assert_eq!(stops(&acts), vec![old_pid]);
        assert_eq!(last_route(&sim), vec![0, 1, 2]);
        sim.exit(old_pid, ExitStatus::Code(0));
    }
    assert!(sim
        .log
        .iter()
        .any(|a| matches!(a, Action::Log(Log::ReloadDone { generation: 1 }))));
    assert!(!sim.sup.is_reloading());
    assert_eq!(sim.running.len(), 3);
}

#[test]
fn reload_parallel_bounds_the_surge() {
    let mut sim = Sim::new(Policy {
        instances: 4,
        reload_parallel: 2,
        readiness: Readiness::Notify,
        ..Policy::default()
    });
    sim.step(Event::Start);
    for p in sim.spawn_all() {
        sim.ready(p);
    }
    let acts = sim.step(Event::Reload);
    assert_eq!(spawns(&acts), vec![0, 1]);
    assert_eq!(sim.sup.active_workers(), 6);
}

#[test]
fn failed_reload_keeps_the_old_workers() {
    let mut sim = Sim::started(2, Readiness::Notify);
    let old: Vec<u32> = sim.running.keys().copied().collect();
    for p in &old {
        sim.ready(*p);
    }
    sim.step(Event::Reload);
    let new = sim.spawn_all();
    let acts = sim.exit(new[0], ExitStatus::Code(1));
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(Log::ReloadAborted { slot: 0, .. }))));
    assert!(spawns(&acts).is_empty() && stops(&acts).is_empty());
    sim.advance(Duration::from_secs(30));
    assert!(sim.pending.is_empty(), "no restart of a failed replacement");
    assert_eq!(sim.running.keys().copied().collect::<Vec<_>>(), old);
    assert_eq!(last_route(&sim), vec![0, 1]);
}

#[test]
fn reload_aborts_when_the_new_worker_misses_the_listen_timeout() {
    let mut sim = Sim::started(2, Readiness::Notify);
    let old: Vec<u32> = sim.running.keys().copied().collect();
    for p in &old {
        sim.ready(*p);
    }
    sim.step(Event::Reload);
    let new = sim.spawn_all();
    let acts = sim.advance(DEFAULT_LISTEN_TIMEOUT);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(Log::ReloadAborted { .. }))));
    assert_eq!(stops(&acts), vec![new[0]]);
    let acts = sim.exit(new[0], ExitStatus::Code(0));
    assert!(spawns(&acts).is_empty());
    assert!(!sim.sup.is_reloading());
}

#[test]
fn second_reload_restarts_the_plan_without_doubling_workers() {
    let mut sim = Sim::started(2, Readiness::Notify);
    for p in sim.running.keys().copied().collect::<Vec<_>>() {
        sim.ready(p);
    }
    sim.step(Event::Reload);
    let first = sim.spawn_all();
    let acts = sim.step(Event::Reload);
    assert_eq!(
        stops(&acts),
        first,
        "the unready replacement of the old plan is dropped"
    );
    assert_eq!(spawns(&acts), vec![0]);
    assert!(sim.sup.active_workers() <= 3);
    assert!(sim.log.iter().any(|a| matches!(
        a,
        Action::Log(Log::ReloadStarted {
            generation: 2,
            superseded: true,
            ..
        })
    )));
}

#[test]
fn reload_while_errored_recovers() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        max_restarts: 0,
        ..Policy::default()
    });
    let pid = sim.pid_of_slot(0)[0];
    sim.exit(pid, ExitStatus::Code(1));
    assert!(sim.sup.is_errored());
    let acts = sim.step(Event::Reload);
    assert!(
        spawns(&acts).contains(&0),
        "the empty slot is started again"
    );
    assert!(!sim.sup.is_errored());
}

#[test]
fn scale_up_and_down() {
    let mut sim = Sim::started(2, Readiness::Auto);
    let acts = sim.step(Event::ScaleUp);
    assert_eq!(spawns(&acts), vec![2]);
    sim.spawn_all();
    assert_eq!(sim.sup.instances(), 3);
    let top = sim.pid_of_slot(2)[0];
    let acts = sim.step(Event::ScaleDown);
    assert_eq!(stops(&acts), vec![top]);
    let acts = sim.exit(top, ExitStatus::Code(0));
    assert!(spawns(&acts).is_empty());
    sim.step(Event::ScaleDown);
    let acts = sim.step(Event::ScaleDown);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(Log::Ignored { .. }))));
    assert_eq!(sim.sup.instances(), 1);
}

#[test]
fn scale_down_of_a_worker_still_spawning_stops_it_once_spawned() {
    let mut sim = Sim::started(1, Readiness::Auto);
    sim.step(Event::ScaleUp);
    sim.step(Event::ScaleDown);
    let pids = sim.spawn_all();
    assert!(sim.log.iter().any(|a| *a == Action::Stop { pid: pids[0] }));
}

#[test]
fn stopping_notification_takes_the_worker_out_of_the_route() {
    let mut sim = Sim::started(2, Readiness::Notify);
    let pids: Vec<u32> = sim.running.keys().copied().collect();
    sim.ready(pids[0]);
    sim.ready(pids[1]);
    sim.step(Event::Notify {
        pid: pids[1],
        msg: NotifyMsg::Stopping,
    });
    assert_eq!(last_route(&sim), vec![0]);
}

#[test]
fn notify_from_an_unknown_pid_is_logged_and_ignored() {
    let mut sim = Sim::started(1, Readiness::Notify);
    let acts = sim.ready(4242);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(Log::UnknownNotify { pid: 4242 }))));
}

#[test]
fn spawn_failure_counts_as_a_crash() {
    let mut sim = Sim::new(Policy {
        instances: 1,
        max_restarts: 1,
        ..Policy::default()
    });
    sim.step(Event::Start);
    for _ in 0..2 {
        let (worker, _) = sim.pending.pop().unwrap();
        sim.step(Event::SpawnFailed {
            worker,
            error: "ENOENT".into(),
        });
        sim.advance(Duration::from_secs(1));
    }
    assert!(sim.sup.is_errored());
    assert_eq!(sim.exit, Some(Outcome::Errored));
}

#[derive(Debug, Clone)]
enum Op {
    AnswerSpawn(bool),
    Exit(usize, bool),
    Ready(usize),
    Advance(u64),
    Shutdown,
    Reload,
    ScaleUp,
    ScaleDown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::AnswerSpawn),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::Exit(i, b)),
        3 => any::<usize>().prop_map(Op::Ready),
        4 => (0u64..20_000).prop_map(Op::Advance),
        1 => Just(Op::Shutdown),
        2 => Just(Op::Reload),
        1 => Just(Op::ScaleUp),
        1 => Just(Op::ScaleDown),
    ]
}

proptest! {
    /// For every event sequence: never more than N + parallel active workers, nothing is
    /// spawned once shutdown began, and the run exits at most once (asserted by `Sim`).
    #[test]
    fn lifecycle_invariants(
        ops in prop::collection::vec(op(), 1..120),
        parallel in 1usize..3,
        readiness in prop_oneof![Just(Readiness::Auto), Just(Readiness::Notify), Just(Readiness::Delay(Duration::from_millis(300)))],
    ) {
        let mut sim = Sim::new(Policy { instances: 3, reload_parallel: parallel, readiness, max_restarts: 5, ..Policy::default() });
        sim.step(Event::Start);
        let mut shutting_down = false;
        for op in ops {
            let acts = match op {
                Op::AnswerSpawn(ok) => {
                    if sim.pending.is_empty() { continue; }
                    let (worker, slot) = sim.pending.remove(0);
                    if ok {
                        let pid = sim.next_pid;
                        sim.next_pid += 1;
                        sim.running.insert(pid, slot);
                        sim.step(Event::Spawned { worker, pid })
                    } else {
                        sim.step(Event::SpawnFailed { worker, error: "boom".into() })
                    }
                }
                Op::Exit(i, by_signal) => {
                    if sim.running.is_empty() { continue; }
                    let pid = *sim.running.keys().nth(i % sim.running.len()).unwrap();
                    sim.exit(pid, if by_signal { ExitStatus::Signal(9) } else { ExitStatus::Code(1) })
                }
                Op::Ready(i) => {
                    if sim.running.is_empty() { continue; }
                    let pid = *sim.running.keys().nth(i % sim.running.len()).unwrap();
                    sim.ready(pid)
                }
                Op::Advance(ms) => sim.advance(Duration::from_millis(ms)),
                Op::Shutdown => { shutting_down = true; sim.step(Event::Shutdown) }
                Op::Reload => sim.step(Event::Reload),
                Op::ScaleUp => sim.step(Event::ScaleUp),
                Op::ScaleDown => sim.step(Event::ScaleDown),
            };
            prop_assert!(sim.sup.active_workers() <= sim.sup.instances() + parallel,
                "active {} > {} + {}", sim.sup.active_workers(), sim.sup.instances(), parallel);
            if shutting_down {
                prop_assert!(spawns(&acts).is_empty(), "spawn after shutdown: {:?}", acts);
            }
            // Every stop/kill names a process that is running.
            for pid in stops(&acts).into_iter().chain(kills(&acts)) {
                prop_assert!(sim.running.contains_key(&pid), "signal to a dead pid {}", pid);
            }
        }
        // Whatever happened, a shutdown followed by all exits ends the run.
        sim.step(Event::Shutdown);
        while !sim.pending.is_empty() { sim.spawn_all(); }
        for pid in sim.running.keys().copied().collect::<Vec<_>>() {
            sim.exit(pid, ExitStatus::Code(0));
        }
        prop_assert!(sim.exit.is_some());
    }
}
