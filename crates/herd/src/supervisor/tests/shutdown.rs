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
    sim.now += SAME_STOP_REQUEST;
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

fn delayed(instances: usize, delay: Duration) -> Sim {
    let mut sim = Sim::running(Policy {
        instances,
        readiness: Readiness::Auto,
        shutdown_delay: delay,
        ..Policy::default()
    });
    sim.advance(DEFAULT_AUTO_READY_DELAY);
    sim
}

#[test]
fn a_shutdown_delay_keeps_the_workers_serving_then_stops_them() {
    let delay = Duration::from_secs(5);
    let mut sim = delayed(2, delay);
    assert!(!sim.sup.is_shutting_down());
    let acts = sim.step(Event::Shutdown);
    assert!(stops(&acts).is_empty(), "nothing stops yet: {acts:?}");
    assert!(acts.contains(&Action::Log(Log::ShutdownDelayed { delay })));
    assert!(sim.sup.is_shutting_down(), "announced: not ready any more");
    assert_eq!(
        last_route(&sim),
        vec![0, 1],
        "the workers still get connections"
    );
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Wake(at) if *at == sim.now + delay)),
        "{acts:?}"
    );
    assert!(stops(&sim.advance(delay - MS)).is_empty());
    let acts = sim.advance(MS);
    assert_eq!(stops(&acts).len(), 2, "{acts:?}");
    for pid in sim.running.keys().copied().collect::<Vec<_>>() {
        sim.exit(pid, ExitStatus::Code(0));
    }
    assert_eq!(sim.exit, Some(Outcome::Clean));
}

#[test]
fn during_the_delay_a_crash_is_restarted_and_new_work_refused() {
    let mut sim = delayed(2, Duration::from_secs(5));
    sim.step(Event::Shutdown);
    let pid = sim.pid_of_slot(0)[0];
    sim.exit(pid, ExitStatus::Code(1));
    let acts = sim.advance(Duration::from_secs(1));
    assert_eq!(
        spawns(&acts),
        vec![0],
        "a crashed worker still serves its slot"
    );
    for ev in [Event::Reload, Event::ScaleUp, Event::ScaleTo(4)] {
        let acts = sim.step(ev);
        assert!(
            spawns(&acts).is_empty() && stops(&acts).is_empty(),
            "{acts:?}"
        );
        assert!(acts
            .iter()
            .any(|a| matches!(a, Action::Log(Log::Ignored { .. }))));
    }
}

#[test]
fn a_second_request_during_the_delay_begins_the_stop_at_once() {
    let mut sim = delayed(2, Duration::from_secs(30));
    sim.step(Event::Shutdown);
    sim.now += SAME_STOP_REQUEST;
    let acts = sim.step(Event::Shutdown);
    assert_eq!(stops(&acts).len(), 2, "{acts:?}");
    assert!(kills(&acts).is_empty(), "graceful, not forced");
    // A third one is the forced shutdown, as without a delay.
    sim.now += SAME_STOP_REQUEST;
    assert_eq!(kills(&sim.step(Event::Shutdown)).len(), 2);
}

/// A repeat of the request within 500 ms of it (GNU `timeout`: herd's pid, then its group).
fn repeats(sim: &mut Sim, after: Duration) -> Vec<Action> {
    sim.now += after;
    let acts = sim.step(Event::Shutdown);
    assert!(
        acts.iter().any(|a| matches!(
            a,
            Action::Log(Log::Ignored {
                what: "shutdown",
                ..
            })
        )),
        "{acts:?}"
    );
    acts
}

#[test]
fn the_same_stop_request_twice_within_500_ms_is_one_request() {
    let mut sim = Sim::started(2, Readiness::Auto);
    assert_eq!(stops(&sim.step(Event::Shutdown)).len(), 2);
    for after in [Duration::ZERO, MS / 5, SAME_STOP_REQUEST - MS * 2] {
        let acts = repeats(&mut sim, after);
        assert!(kills(&acts).is_empty(), "not forced: {acts:?}");
    }
    assert!(!logged(&sim, |l| matches!(l, Log::ShutdownForced { .. })));
    for pid in sim.running.keys().copied().collect::<Vec<_>>() {
        sim.exit(pid, ExitStatus::Code(0));
    }
    assert_eq!(sim.exit, Some(Outcome::Clean), "the workers drained");
}

#[test]
fn a_repeat_does_not_end_a_shutdown_delay_but_a_later_request_does() {
    let delay = Duration::from_secs(30);
    let mut sim = delayed(2, delay);
    sim.step(Event::Shutdown);
    let acts = repeats(&mut sim, MS);
    assert!(stops(&acts).is_empty(), "still serving: {acts:?}");
    sim.now += SAME_STOP_REQUEST;
    assert_eq!(stops(&sim.step(Event::Shutdown)).len(), 2);
    // Its own repeat does not force, a later one does.
    assert!(kills(&repeats(&mut sim, MS)).is_empty());
    sim.now += SAME_STOP_REQUEST;
    assert_eq!(kills(&sim.step(Event::Shutdown)).len(), 2);
}

#[test]
fn the_delay_ending_is_not_a_new_request() {
    // The stop begins when the delay ends; a request right after that is a second
    // request (forced), not a repeat of the delay's end.
    let delay = Duration::from_secs(5);
    let mut sim = delayed(2, delay);
    sim.step(Event::Shutdown);
    assert_eq!(stops(&sim.advance(delay)).len(), 2);
    assert_eq!(kills(&sim.step(Event::Shutdown)).len(), 2);
}

#[test]
fn without_a_delay_nothing_is_announced() {
    let mut sim = delayed(1, Duration::ZERO);
    let acts = sim.step(Event::Shutdown);
    assert_eq!(stops(&acts).len(), 1);
    assert!(!logged(&sim, |l| matches!(l, Log::ShutdownDelayed { .. })));
}
