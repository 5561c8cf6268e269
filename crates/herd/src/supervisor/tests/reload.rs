//! Rolling reload: one batch of slots at a time, abort on failure, supersede, recover.

use super::*;

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
