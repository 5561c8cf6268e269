//! Memory restarts: replacement first, then the graceful stop of the old worker.

use super::*;

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
