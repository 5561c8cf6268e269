//! Graceful and forced shutdown.

use super::*;

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
