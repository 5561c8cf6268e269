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
fn a_redefined_policy_rules_what_follows_but_not_the_number_of_slots() {
    let mut sim = Sim::started(2, Readiness::Notify);
    let pids = sim.spawn_all();
    for pid in sim.running.keys().copied().collect::<Vec<_>>() {
        sim.ready(pid);
    }
    assert!(pids.is_empty());
    sim.sup.redefine(Policy {
        instances: 5,
        readiness: Readiness::Notify,
        kill_timeout: Duration::from_secs(42),
        ..Policy::default()
    });
    assert_eq!(sim.sup.instances(), 2);
    assert_eq!(stops(&sim.step(Event::Shutdown)).len(), 2);
    assert!(kills(&sim.advance(Duration::from_secs(41))).is_empty());
    assert_eq!(kills(&sim.advance(Duration::from_secs(2))).len(), 2);
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

// ---- status snapshot ----

#[test]
fn snapshot_lists_every_slot_in_order_through_its_states() {
    let mut sim = Sim::new(Policy {
        instances: 3,
        readiness: Readiness::Notify,
        ..Policy::default()
    });
    assert_eq!(sim.sup.app_state(), AppState::Stopped, "not started yet");
    sim.step(Event::Start);
    let spawning = sim.sup.snapshot();
    assert_eq!(spawning.len(), 3);
    assert!(spawning
        .iter()
        .enumerate()
        .all(|(i, v)| v.slot == i && v.pid.is_none() && v.state == WorkerState::Spawning));
    sim.spawn_all();
    let pid1 = sim.pid_of_slot(1)[0];
    sim.ready(pid1);
    assert_eq!(
        states(&sim),
        vec![
            (0, WorkerState::Starting, false),
            (1, WorkerState::Ready, false),
            (2, WorkerState::Starting, false)
        ]
    );
    let v = &sim.sup.snapshot()[1];
    assert_eq!(
        (v.pid, v.generation, v.started, v.restarts),
        (Some(pid1), 0, sim.now, 0)
    );
    assert_eq!(sim.sup.app_state(), AppState::Running);
}

#[test]
fn worker_and_app_states_display_as_pm2_like_words() {
    let words: Vec<String> = [
        WorkerState::Spawning,
        WorkerState::Starting,
        WorkerState::Ready,
        WorkerState::Stopping,
        WorkerState::Waiting,
        WorkerState::Stopped,
        WorkerState::Errored,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        words,
        [
            "spawning",
            "starting",
            "online",
            "stopping",
            "waiting-restart",
            "stopped",
            "errored"
        ]
    );
    let apps: Vec<String> = [
        AppState::Running,
        AppState::Reloading,
        AppState::Errored,
        AppState::Stopping,
        AppState::Stopped,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        apps,
        ["running", "reloading", "errored", "stopping", "stopped"]
    );
}

#[test]
fn a_crashed_slot_shows_once_as_waiting_and_counts_its_restart() {
    let mut sim = Sim::started(2, Readiness::Notify);
    ready_all(&mut sim);
    let pid = sim.pid_of_slot(0)[0];
    sim.advance(Duration::from_secs(1));
    sim.exit(pid, ExitStatus::Code(1));
    let snap = sim.sup.snapshot();
    assert_eq!(snap.len(), 2);
    assert_eq!(
        (snap[0].slot, snap[0].pid, snap[0].state, snap[0].started),
        (0, None, WorkerState::Waiting, sim.now)
    );
    assert_eq!(snap[0].restarts, 0, "counted when the restart happens");
    sim.advance(Duration::from_secs(1));
    sim.spawn_all();
    assert_eq!(sim.sup.snapshot()[0].restarts, 1);
    assert_eq!(sim.sup.snapshot()[1].restarts, 0);
    assert_eq!(sim.sup.restarts(), 1);
    assert_eq!(sim.sup.slot_restarts(0), Some(1));
    // A spawn failure is a crash too.
    let pid = sim.pid_of_slot(0)[0];
    sim.exit(pid, ExitStatus::Signal(9));
    sim.advance(Duration::from_secs(1));
    let (worker, _) = sim.pending.pop().unwrap();
    sim.step(Event::SpawnFailed {
        worker,
        error: "ENOENT".into(),
    });
    sim.advance(Duration::from_secs(2));
    sim.spawn_all();
    assert_eq!(sim.sup.slot_restarts(0), Some(3));
    assert_eq!(sim.sup.restarts(), 3);
}

#[test]
fn reloads_and_scale_ups_are_not_restarts_and_replacements_are_listed() {
    let mut sim = Sim::started(2, Readiness::Notify);
    ready_all(&mut sim);
    sim.step(Event::ScaleUp);
    sim.spawn_all();
    ready_all(&mut sim);
    let old0 = sim.pid_of_slot(0)[0];
    sim.step(Event::Reload);
    assert_eq!(sim.sup.app_state(), AppState::Reloading);
    let new = sim.spawn_all();
    assert_eq!(
        states(&sim),
        vec![
            (0, WorkerState::Ready, false),
            (0, WorkerState::Starting, true),
            (1, WorkerState::Ready, false),
            (2, WorkerState::Ready, false)
        ]
    );
    assert_eq!(sim.sup.snapshot()[1].generation, 1);
    sim.ready(new[0]);
    // The old worker is still there, stopping, after the new current one.
    let snap = sim.sup.snapshot();
    assert_eq!(
        (snap[0].pid, snap[0].state, snap[0].replacement),
        (Some(new[0]), WorkerState::Ready, false)
    );
    assert_eq!(
        (snap[1].pid, snap[1].state),
        (Some(old0), WorkerState::Stopping)
    );
    sim.exit(old0, ExitStatus::Code(0));
    while sim.sup.is_reloading() {
        let new = sim.spawn_all();
        let old: Vec<u32> = sim
            .running
            .keys()
            .copied()
            .filter(|p| !new.contains(p))
            .collect();
        sim.ready(new[0]);
        for p in old {
            if sim.log.contains(&Action::Stop { pid: p }) {
                sim.exit(p, ExitStatus::Code(0));
            }
        }
    }
    assert_eq!(sim.sup.restarts(), 0);
    assert_eq!(sim.sup.app_state(), AppState::Running);
}

#[test]
fn workers_of_a_removed_slot_are_listed_last_while_they_stop() {
    let mut sim = Sim::started(3, Readiness::Notify);
    ready_all(&mut sim);
    let top = sim.pid_of_slot(2)[0];
    sim.step(Event::ScaleTo(1));
    let snap = sim.sup.snapshot();
    assert_eq!(snap.len(), 3);
    assert_eq!(snap[0].state, WorkerState::Ready);
    assert_eq!(
        snap[1..]
            .iter()
            .map(|v| (v.slot, v.state))
            .collect::<Vec<_>>(),
        vec![(1, WorkerState::Stopping), (2, WorkerState::Stopping)]
    );
    assert_eq!(snap[2].pid, Some(top));
}

#[test]
fn app_state_follows_errored_shutdown_and_exit() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        max_restarts: 0,
        ..Policy::default()
    });
    let pid = sim.pid_of_slot(0)[0];
    sim.exit(pid, ExitStatus::Code(1));
    assert_eq!(sim.sup.app_state(), AppState::Errored);
    assert_eq!(sim.sup.snapshot()[0].state, WorkerState::Errored);
    sim.step(Event::Shutdown);
    assert_eq!(sim.sup.app_state(), AppState::Stopping);
    assert_eq!(sim.sup.snapshot()[0].state, WorkerState::Stopped);
    let pid = sim.pid_of_slot(1)[0];
    sim.exit(pid, ExitStatus::Code(0));
    assert_eq!(sim.exit, Some(Outcome::Clean));
    assert_eq!(sim.sup.app_state(), AppState::Stopped);

    let mut sim = Sim::running(Policy {
        instances: 1,
        max_restarts: 0,
        ..Policy::default()
    });
    let pid = sim.pid_of_slot(0)[0];
    sim.exit(pid, ExitStatus::Code(1));
    assert_eq!(sim.exit, Some(Outcome::Errored));
    assert_eq!(sim.sup.app_state(), AppState::Errored);
}

// ---- autorestart and stop_exit_codes ----

#[test]
fn autorestart_off_leaves_the_slot_empty_and_a_clean_app_stops() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        autorestart: false,
        ..Policy::default()
    });
    let pids: Vec<u32> = sim.running.keys().copied().collect();
    let acts = sim.exit(pids[0], ExitStatus::Code(0));
    assert!(restart_delay(&acts).is_none());
    assert!(logged(&sim, |l| matches!(
        l,
        Log::NotRestarted {
            slot: 0,
            reason: NoRestart::AutorestartOff,
            ..
        }
    )));
    sim.advance(Duration::from_secs(60));
    assert!(sim.pending.is_empty(), "never restarted");
    assert_eq!(sim.sup.snapshot()[0].state, WorkerState::Stopped);
    assert_eq!(sim.exit, None, "slot 1 still serves");
    sim.exit(pids[1], ExitStatus::Code(0));
    assert!(logged(&sim, |l| *l == Log::AppStopped { clean: true }));
    assert_eq!(sim.exit, Some(Outcome::Clean));
    assert_eq!(sim.sup.app_state(), AppState::Stopped);
    assert_eq!(sim.sup.restarts(), 0);
}

#[test]
fn autorestart_off_with_a_crash_ends_errored() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        autorestart: false,
        ..Policy::default()
    });
    let pids: Vec<u32> = sim.running.keys().copied().collect();
    sim.exit(pids[0], ExitStatus::Signal(11));
    sim.exit(pids[1], ExitStatus::Code(0));
    assert!(logged(&sim, |l| *l == Log::AppStopped { clean: false }));
    assert_eq!(sim.exit, Some(Outcome::Errored));
    assert_eq!(sim.sup.app_state(), AppState::Errored);
}

#[test]
fn autorestart_off_a_worker_stopped_for_not_being_ready_is_a_failure() {
    let mut sim = Sim::running(Policy {
        instances: 1,
        autorestart: false,
        readiness: Readiness::Notify,
        ..Policy::default()
    });
    let pid = sim.pid_of_slot(0)[0];
    let acts = sim.advance(DEFAULT_LISTEN_TIMEOUT);
    assert_eq!(stops(&acts), vec![pid]);
    let acts = sim.exit(pid, ExitStatus::Code(0));
    assert!(spawns(&acts).is_empty());
    assert_eq!(sim.exit, Some(Outcome::Errored));
}

#[test]
fn autorestart_off_spawn_failure_is_not_retried() {
    let mut sim = Sim::new(Policy {
        instances: 1,
        autorestart: false,
        ..Policy::default()
    });
    sim.step(Event::Start);
    let (worker, _) = sim.pending.pop().unwrap();
    sim.step(Event::SpawnFailed {
        worker,
        error: "ENOENT".into(),
    });
    assert!(logged(&sim, |l| matches!(
        l,
        Log::NotRestarted {
            slot: 0,
            pid: None,
            ..
        }
    )));
    assert_eq!(sim.exit, Some(Outcome::Errored));
}

#[test]
fn stop_exit_codes_are_not_restarted_other_codes_are() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        stop_exit_codes: vec![3, 0],
        max_restarts: 0,
        ..Policy::default()
    });
    let p0 = sim.pid_of_slot(0)[0];
    let acts = sim.exit(p0, ExitStatus::Code(3));
    assert!(restart_delay(&acts).is_none());
    assert!(logged(&sim, |l| matches!(
        l,
        Log::NotRestarted {
            slot: 0,
            reason: NoRestart::StopExitCode(3),
            ..
        }
    )));
    assert!(!sim.sup.is_errored(), "not an unstable restart");
    sim.advance(Duration::from_secs(30));
    assert!(sim.pending.is_empty());
    // A code that is not listed is a crash, restarted as usual.
    let p1 = sim.pid_of_slot(1)[0];
    let acts = sim.exit(p1, ExitStatus::Code(1));
    assert!(restart_delay(&acts).is_some());

    let mut sim = Sim::running(Policy {
        instances: 1,
        stop_exit_codes: vec![3],
        ..Policy::default()
    });
    let p = sim.pid_of_slot(0)[0];
    let acts = sim.exit(p, ExitStatus::Code(1));
    assert!(restart_delay(&acts).is_some());
    sim.advance(Duration::from_secs(1));
    let p = sim.spawn_all()[0];
    // A signal is never a stop exit code; then code 3 ends the slot, cleanly.
    sim.exit(p, ExitStatus::Code(3));
    assert_eq!(sim.exit, Some(Outcome::Clean));
}

#[test]
fn reload_starts_slots_that_were_not_restarted() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        autorestart: false,
        readiness: Readiness::Notify,
        ..Policy::default()
    });
    ready_all(&mut sim);
    let p0 = sim.pid_of_slot(0)[0];
    sim.exit(p0, ExitStatus::Code(0));
    let acts = sim.step(Event::Reload);
    assert!(spawns(&acts).contains(&0));
    let new = sim.spawn_all();
    assert_eq!(sim.sup.snapshot()[0].pid, Some(new[0]));
    assert_eq!(sim.sup.restarts(), 0);
}

#[test]
fn intentional_stops_are_not_affected_by_autorestart() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        autorestart: false,
        readiness: Readiness::Notify,
        ..Policy::default()
    });
    ready_all(&mut sim);
    sim.step(Event::ScaleDown);
    let top = sim.pid_of_slot(1)[0];
    sim.exit(top, ExitStatus::Code(1));
    assert!(!logged(&sim, |l| matches!(l, Log::NotRestarted { .. })));
    assert_eq!(sim.exit, None);
}

// ---- scale to N ----

#[test]
fn scale_to_adds_and_removes_slots_in_one_step() {
    let mut sim = Sim::started(2, Readiness::Auto);
    let acts = sim.step(Event::ScaleTo(5));
    assert_eq!(spawns(&acts), vec![2, 3, 4]);
    assert!(acts.contains(&Action::Log(Log::Scaled { from: 2, to: 5 })));
    sim.spawn_all();
    assert_eq!(sim.sup.instances(), 5);
    let mut top: Vec<u32> = (2..5).map(|s| sim.pid_of_slot(s)[0]).collect();
    let acts = sim.step(Event::ScaleTo(2));
    let mut stopped = stops(&acts);
    stopped.sort();
    top.sort();
    assert_eq!(stopped, top);
    assert!(acts.contains(&Action::Log(Log::Scaled { from: 5, to: 2 })));
    assert_eq!(sim.sup.instances(), 2);
    for p in top {
        assert!(spawns(&sim.exit(p, ExitStatus::Code(0))).is_empty());
    }
    for n in [0, 2] {
        let acts = sim.step(Event::ScaleTo(n));
        assert!(acts
            .iter()
            .any(|a| matches!(a, Action::Log(Log::Ignored { what: "scale", .. }))));
        assert_eq!(sim.sup.instances(), 2);
    }
    sim.step(Event::Shutdown);
    let acts = sim.step(Event::ScaleTo(4));
    assert!(spawns(&acts).is_empty());
}

#[test]
fn scale_to_while_errored_adds_slots_without_starting_them() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        max_restarts: 0,
        ..Policy::default()
    });
    let p = sim.pid_of_slot(0)[0];
    sim.exit(p, ExitStatus::Code(1));
    let acts = sim.step(Event::ScaleTo(3));
    assert!(spawns(&acts).is_empty());
    assert_eq!(sim.sup.instances(), 3);
}

// ---- memory limit ----

const MB: u64 = 1024 * 1024;

fn memory_sim(instances: usize) -> Sim {
    let mut sim = Sim::running(Policy {
        instances,
        readiness: Readiness::Notify,
        max_memory: Some(100 * MB),
        ..Policy::default()
    });
    ready_all(&mut sim);
    sim
}

fn memory(sim: &mut Sim, pid: u32, rss: u64) -> Vec<Action> {
    sim.step(Event::Memory { pid, rss })
}

#[test]
fn over_the_memory_limit_the_replacement_starts_before_the_old_worker_stops() {
    let mut sim = memory_sim(2);
    let old = sim.pid_of_slot(0)[0];
    assert!(
        memory(&mut sim, old, 100 * MB).is_empty(),
        "at the limit is fine"
    );
    let acts = memory(&mut sim, old, 101 * MB);
    assert!(acts.contains(&Action::Log(Log::MemoryOverLimit {
        slot: 0,
        pid: old,
        rss: 101 * MB,
        limit: 100 * MB
    })));
    assert_eq!(spawns(&acts), vec![0]);
    assert!(stops(&acts).is_empty());
    let new = sim.spawn_all()[0];
    assert_eq!(
        states(&sim)[..2],
        [
            (0, WorkerState::Ready, false),
            (0, WorkerState::Starting, true)
        ]
    );
    // Only one replacement per slot at a time.
    assert!(spawns(&memory(&mut sim, old, 150 * MB)).is_empty());
    let acts = sim.ready(new);
    assert_eq!(stops(&acts), vec![old]);
    assert!(acts.contains(&Action::Log(Log::Stopping {
        slot: 0,
        pid: old,
        reason: StopReason::MemoryLimit
    })));
    assert_eq!(last_route(&sim), vec![0, 1]);
    assert_eq!(sim.sup.restarts(), 1);
    assert_eq!(sim.sup.slot_restarts(0), Some(1));
    // Its exit was asked for: no restart.
    let acts = sim.exit(old, ExitStatus::Code(0));
    assert!(restart_delay(&acts).is_none());
    sim.advance(Duration::from_secs(30));
    assert!(sim.pending.is_empty());
    assert_eq!(sim.running.len(), 2);
}

#[test]
fn memory_samples_do_nothing_without_a_limit_or_for_unready_workers() {
    let mut sim = Sim::started(1, Readiness::Notify);
    let pid = sim.pid_of_slot(0)[0];
    sim.ready(pid);
    assert!(memory(&mut sim, pid, u64::MAX).is_empty());

    let mut sim = Sim::running(Policy {
        instances: 1,
        readiness: Readiness::Notify,
        max_memory: Some(MB),
        ..Policy::default()
    });
    let pid = sim.pid_of_slot(0)[0];
    assert!(
        spawns(&memory(&mut sim, pid, 2 * MB)).is_empty(),
        "starting"
    );
    assert!(memory(&mut sim, 9999, 2 * MB).is_empty(), "unknown pid");
    sim.step(Event::Notify {
        pid,
        msg: NotifyMsg::Stopping,
    });
    sim.ready(pid);
    assert!(
        spawns(&memory(&mut sim, pid, 2 * MB)).is_empty(),
        "draining"
    );
}

#[test]
fn a_failed_memory_replacement_keeps_the_old_worker_and_backs_off() {
    let mut sim = memory_sim(1);
    let old = sim.pid_of_slot(0)[0];
    memory(&mut sim, old, 200 * MB);
    let new = sim.spawn_all()[0];
    let acts = sim.exit(new, ExitStatus::Code(1));
    let retry_in = pick(&acts, |a| match a {
        Action::Log(Log::MemoryRestartFailed {
            slot: 0, retry_in, ..
        }) => Some(*retry_in),
        _ => None,
    });
    assert_eq!(retry_in.len(), 1);
    assert!(spawns(&acts).is_empty() && stops(&acts).is_empty());
    assert!(!logged(&sim, |l| matches!(l, Log::ReloadAborted { .. })));
    assert_eq!(last_route(&sim), vec![0]);
    assert_eq!(sim.sup.restarts(), 0);
    // Not again before the backoff delay, then again.
    sim.now += retry_in[0] - MS;
    assert!(spawns(&memory(&mut sim, old, 200 * MB)).is_empty());
    sim.now += MS;
    assert_eq!(spawns(&memory(&mut sim, old, 200 * MB)), vec![0]);
    // This one misses the listen timeout: stopped, the old one stays.
    let new = sim.spawn_all()[0];
    let acts = sim.advance(DEFAULT_LISTEN_TIMEOUT);
    assert_eq!(stops(&acts), vec![new]);
    assert!(acts
        .iter()
        .any(|a| matches!(a, Action::Log(Log::MemoryRestartFailed { slot: 0, .. }))));
    let acts = sim.exit(new, ExitStatus::Signal(15));
    assert!(spawns(&acts).is_empty());
    assert_eq!(sim.running.keys().copied().collect::<Vec<_>>(), vec![old]);
    assert_eq!(last_route(&sim), vec![0]);
}

#[test]
fn memory_restarts_wait_for_reloads_shutdown_and_errored_apps() {
    let mut sim = memory_sim(2);
    let pid = sim.pid_of_slot(1)[0];
    sim.step(Event::Reload);
    assert!(spawns(&memory(&mut sim, pid, 200 * MB)).is_empty());
    sim.step(Event::Shutdown);
    assert!(spawns(&memory(&mut sim, pid, 200 * MB)).is_empty());

    let mut sim = Sim::running(Policy {
        instances: 2,
        readiness: Readiness::Notify,
        max_memory: Some(MB),
        max_restarts: 0,
        ..Policy::default()
    });
    ready_all(&mut sim);
    let p0 = sim.pid_of_slot(0)[0];
    sim.exit(p0, ExitStatus::Code(1));
    assert!(sim.sup.is_errored());
    let p1 = sim.pid_of_slot(1)[0];
    assert!(spawns(&memory(&mut sim, p1, 2 * MB)).is_empty());
}

#[test]
fn a_reload_replaces_a_memory_replacement_in_flight() {
    let mut sim = memory_sim(2);
    let old = sim.pid_of_slot(0)[0];
    memory(&mut sim, old, 200 * MB);
    let mem = sim.spawn_all()[0];
    let acts = sim.step(Event::Reload);
    assert!(stops(&acts).contains(&mem));
    assert_eq!(spawns(&acts), vec![0]);
    assert!(sim.sup.active_workers() <= 3);
    sim.exit(mem, ExitStatus::Code(0));
    let new = sim.spawn_all()[0];
    sim.ready(new);
    assert!(sim.log.contains(&Action::Stop { pid: old }));
    assert_eq!(sim.sup.restarts(), 0);
}

#[test]
fn when_the_old_worker_dies_first_its_memory_replacement_takes_the_slot() {
    let mut sim = memory_sim(1);
    let old = sim.pid_of_slot(0)[0];
    memory(&mut sim, old, 200 * MB);
    let new = sim.spawn_all()[0];
    let acts = sim.exit(old, ExitStatus::Signal(9));
    assert!(restart_delay(&acts).is_none() && spawns(&acts).is_empty());
    assert_eq!(states(&sim), vec![(0, WorkerState::Starting, false)]);
    sim.advance(Duration::from_secs(5));
    assert!(sim.pending.is_empty());
    sim.ready(new);
    assert_eq!(last_route(&sim), vec![0]);
    assert_eq!(sim.sup.restarts(), 1);
}

#[test]
fn memory_replacements_in_flight_are_bounded_by_reload_parallel() {
    let mut sim = memory_sim(3);
    let pids: Vec<u32> = sim.running.keys().copied().collect();
    let mut started = 0;
    for p in &pids {
        started += spawns(&memory(&mut sim, *p, 200 * MB)).len();
    }
    assert_eq!(started, 1);
    assert_eq!(sim.sup.active_workers(), 4);
    // Once that one is done, the next sample over the limit goes ahead.
    let new = sim.spawn_all()[0];
    sim.ready(new);
    assert_eq!(spawns(&memory(&mut sim, pids[1], 200 * MB)), vec![1]);
}

#[test]
fn memory_restarts_work_with_autorestart_off() {
    let mut sim = Sim::running(Policy {
        instances: 1,
        readiness: Readiness::Notify,
        max_memory: Some(MB),
        autorestart: false,
        ..Policy::default()
    });
    ready_all(&mut sim);
    let old = sim.pid_of_slot(0)[0];
    memory(&mut sim, old, 2 * MB);
    let new = sim.spawn_all()[0];
    sim.ready(new);
    sim.exit(old, ExitStatus::Code(0));
    assert_eq!(sim.exit, None);
    assert_eq!(sim.sup.snapshot()[0].pid, Some(new));
}

#[derive(Debug, Clone)]
enum Op {
    AnswerSpawn(bool),
    /// Which running worker, and how it ends: 0 = code 1, 1 = SIGKILL, 2 = code 0,
    /// 3 = code 3 (a stop exit code when the policy has one).
    Exit(usize, u8),
    Ready(usize),
    Advance(u64),
    Shutdown,
    Reload,
    ScaleUp,
    ScaleDown,
    ScaleTo(usize),
    /// A memory sample of a running worker, over the limit or not.
    Memory(usize, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::AnswerSpawn),
        3 => (any::<usize>(), 0u8..4).prop_map(|(i, k)| Op::Exit(i, k)),
        3 => any::<usize>().prop_map(Op::Ready),
        4 => (0u64..20_000).prop_map(Op::Advance),
        1 => Just(Op::Shutdown),
        2 => Just(Op::Reload),
        1 => Just(Op::ScaleUp),
        1 => Just(Op::ScaleDown),
        1 => (0usize..6).prop_map(Op::ScaleTo),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(i, over)| Op::Memory(i, over)),
    ]
}

proptest! {
    /// For every event sequence and policy: never more than N + parallel active workers
    /// (reload and memory surge together), nothing is spawned once shutdown began, a worker
    /// herd stopped on purpose is never restarted, nothing restarts with autorestart off or
    /// after a stop exit code, the snapshot lists every slot in order, the restart count
    /// never goes down, and the run exits at most once (asserted by `Sim`).
    #[test]
    fn lifecycle_invariants(
        ops in prop::collection::vec(op(), 1..120),
        parallel in 1usize..3,
        readiness in prop_oneof![Just(Readiness::Auto), Just(Readiness::Notify), Just(Readiness::Delay(Duration::from_millis(300)))],
        autorestart in prop::bool::weighted(0.8),
        stop_code in any::<bool>(),
    ) {
        let policy = Policy {
            instances: 3,
            reload_parallel: parallel,
            readiness,
            max_restarts: 5,
            autorestart,
            stop_exit_codes: if stop_code { vec![3] } else { Vec::new() },
            max_memory: Some(1000),
            ..Policy::default()
        };
        let mut sim = Sim::new(policy);
        sim.step(Event::Start);
        let mut shutting_down = false;
        let mut restarts = 0;
        // Workers herd asked to stop, and why.
        let mut stopped: BTreeMap<u32, StopReason> = BTreeMap::new();
        for op in ops {
            let mut exit_of = None;
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
                Op::Exit(i, kind) => {
                    if sim.running.is_empty() { continue; }
                    let pid = *sim.running.keys().nth(i % sim.running.len()).unwrap();
                    let status = match kind {
                        0 => ExitStatus::Code(1),
                        1 => ExitStatus::Signal(9),
                        2 => ExitStatus::Code(0),
                        _ => ExitStatus::Code(3),
                    };
                    exit_of = Some((pid, status));
                    sim.exit(pid, status)
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
                Op::ScaleTo(n) => sim.step(Event::ScaleTo(n)),
                Op::Memory(i, over) => {
                    if sim.running.is_empty() { continue; }
                    let pid = *sim.running.keys().nth(i % sim.running.len()).unwrap();
                    sim.step(Event::Memory { pid, rss: if over { 2000 } else { 500 } })
                }
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
            if let Some((pid, status)) = exit_of {
                let restarted = restart_delay(&acts).is_some();
                match stopped.get(&pid) {
                    // Stopped on purpose: its exit never schedules a restart.
                    Some(r) if *r != StopReason::NotReady => prop_assert!(!restarted && spawns(&acts).is_empty(),
                        "pid {} stopped for {:?} was restarted: {:?}", pid, r, acts),
                    _ => {}
                }
                if !autorestart || (stop_code && status == ExitStatus::Code(3)) {
                    prop_assert!(!restarted, "restart with autorestart off / stop code: {:?}", acts);
                }
            }
            if !autorestart {
                prop_assert!(restart_delay(&acts).is_none(), "restart with autorestart off: {:?}", acts);
            }
            for a in &acts {
                if let Action::Log(Log::Stopping { pid, reason, .. }) = a {
                    stopped.insert(*pid, *reason);
                }
            }
            // The snapshot: every slot, in order, each with exactly one main line.
            let snap = sim.sup.snapshot();
            let n = sim.sup.instances();
            prop_assert!(snap.windows(2).all(|w| w[0].slot <= w[1].slot), "{:?}", snap);
            for slot in 0..n {
                let main = snap.iter().filter(|v| v.slot == slot && !v.replacement && v.state != WorkerState::Stopping).count();
                let any = snap.iter().filter(|v| v.slot == slot && !v.replacement).count();
                prop_assert!(main <= 1 && any >= 1, "slot {} in {:?}", slot, snap);
                prop_assert!(snap.iter().filter(|v| v.slot == slot && v.replacement).count() <= 1);
            }
            let placeholder = |v: &WorkerView| matches!(v.state, WorkerState::Waiting | WorkerState::Stopped | WorkerState::Errored);
            prop_assert!(snap.iter().filter(|v| placeholder(v)).all(|v| v.pid.is_none() && !v.replacement));
            prop_assert_eq!(snap.iter().filter(|v| !placeholder(v)).count(), sim.sup.live_workers());
            prop_assert!(sim.sup.restarts() >= restarts);
            restarts = sim.sup.restarts();
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
