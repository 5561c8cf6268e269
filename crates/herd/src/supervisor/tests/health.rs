//! Hung workers: health checks and heartbeats, then the safe replacement.

use super::*;

const S: Duration = Duration::from_secs(1);

fn health_sim(instances: usize, watchdog: Option<Duration>) -> Sim {
    let mut sim = Sim::running(Policy {
        instances,
        readiness: Readiness::Notify,
        health: Some(HealthPolicy {
            interval: S,
            timeout: 500 * MS,
            failures: 3,
            start_period: Duration::ZERO,
        }),
        watchdog,
        ..Policy::default()
    });
    ready_all(&mut sim);
    sim
}

fn checks(actions: &[Action]) -> Vec<u32> {
    pick(actions, |a| match a {
        Action::Check { pid } => Some(*pid),
        _ => None,
    })
}

fn answer(sim: &mut Sim, pid: u32, ok: bool) -> Vec<Action> {
    let result = if ok {
        Ok(3 * MS)
    } else {
        Err("status 503".to_string())
    };
    sim.step(Event::Checked { pid, result })
}

/// Passes the first check, so that failures count.
fn healthy(sim: &mut Sim, pid: u32) {
    let asked = sim.log.contains(&Action::Check { pid });
    assert!(asked, "a ready worker is checked at once");
    answer(sim, pid, true);
}

fn hung_logged(sim: &Sim, pid: u32, cause: HangCause) -> bool {
    logged(
        sim,
        |l| matches!(l, Log::Hung { pid: p, cause: c, .. } if *p == pid && *c == cause),
    )
}

#[test]
fn checks_start_at_ready_and_repeat_every_interval_once_passed() {
    let mut sim = health_sim(1, None);
    let pid = sim.pid_of_slot(0)[0];
    healthy(&mut sim, pid);
    // Dispatched before the pass: the next one comes at the start-up pace.
    assert_eq!(checks(&sim.advance(500 * MS)), vec![pid]);
    answer(&mut sim, pid, true);
    assert!(checks(&sim.advance(900 * MS)).is_empty());
    assert_eq!(checks(&sim.advance(100 * MS)), vec![pid]);
    // No second check while one is in flight.
    assert!(checks(&sim.advance(2 * S)).is_empty());
    // A late answer: the check that is overdue goes at once.
    assert_eq!(checks(&answer(&mut sim, pid, true)), vec![pid]);
}

#[test]
fn failures_in_a_row_replace_the_worker_the_safe_way() {
    let mut sim = health_sim(2, None);
    let old = sim.pid_of_slot(0)[0];
    healthy(&mut sim, old);
    for n in 1..=2 {
        sim.advance(S);
        let acts = answer(&mut sim, old, false);
        assert!(spawns(&acts).is_empty(), "failure {n} is not enough");
    }
    assert!(logged(&sim, |l| matches!(
        l,
        Log::HealthCheckFailed {
            failures: 2,
            threshold: 3,
            ..
        }
    )));
    sim.advance(S);
    let acts = answer(&mut sim, old, false);
    assert!(hung_logged(&sim, old, HangCause::Health));
    assert_eq!(spawns(&acts), vec![0], "the replacement starts first");
    assert!(stops(&acts).is_empty(), "the hung worker is stopped later");
    assert_eq!(last_route(&sim), vec![1], "but it gets no new connections");
    assert_eq!(states(&sim)[0], (0, WorkerState::Hung, false));
    let new = sim.spawn_all()[0];
    let acts = sim.ready(new);
    assert_eq!(stops(&acts), vec![old]);
    assert!(acts.contains(&Action::Log(Log::Stopping {
        slot: 0,
        pid: old,
        reason: StopReason::Hung
    })));
    assert_eq!(last_route(&sim), vec![0, 1]);
    assert_eq!(sim.sup.restarts(), 1);
    let by = sim.sup.restarts_by_reason();
    assert_eq!(by[2], (RestartReason::Health, 1));
    // A hung worker that ignores the stop is killed after the kill timeout.
    let acts = sim.advance(Policy::default().kill_timeout);
    assert_eq!(kills(&acts), vec![old]);
    let acts = sim.exit(old, ExitStatus::Signal(9));
    assert!(restart_delay(&acts).is_none(), "its slot is served already");
}

/// Reuseport: the hung worker shares its slot's socket with its replacement and may still
/// accept from it (and ignore the stop) until it is killed: the slot stays out of the route
/// until it is gone, and the replacement's failed checks (which may have landed on the hung
/// worker) do not count meanwhile.
#[test]
fn a_hung_worker_keeps_its_slot_out_of_the_route_until_it_is_gone() {
    let mut sim = Sim::running(Policy {
        instances: 2,
        readiness: Readiness::Notify,
        health: Some(HealthPolicy {
            interval: S,
            timeout: 500 * MS,
            failures: 1,
            start_period: Duration::ZERO,
        }),
        slot_socket_shared: true,
        ..Policy::default()
    });
    ready_all(&mut sim);
    let (old, other) = (sim.pid_of_slot(0)[0], sim.pid_of_slot(1)[0]);
    healthy(&mut sim, old);
    healthy(&mut sim, other);
    sim.advance(S);
    answer(&mut sim, old, false);
    assert!(hung_logged(&sim, old, HangCause::Health));
    let new = sim.spawn_all()[0];
    let acts = sim.ready(new);
    assert_eq!(stops(&acts), vec![old]);
    assert_eq!(
        last_route(&sim),
        vec![1],
        "the hung worker still holds slot 0's socket"
    );
    // Its replacement passes, then fails while the hung worker lives: not counted.
    answer(&mut sim, new, true);
    sim.advance(S);
    answer(&mut sim, new, false);
    assert!(!hung_logged(&sim, new, HangCause::Health));
    // It ignores the stop: killed at the kill timeout; once it is gone, slot 0 is routed
    // and its replacement's failures count again.
    assert_eq!(
        kills(&sim.advance(Policy::default().kill_timeout)),
        vec![old]
    );
    assert_eq!(last_route(&sim), vec![1]);
    sim.exit(old, ExitStatus::Signal(9));
    assert_eq!(last_route(&sim), vec![0, 1]);
    sim.advance(S);
    answer(&mut sim, new, false);
    assert!(hung_logged(&sim, new, HangCause::Health));
}

#[test]
fn a_pass_resets_the_count_and_is_logged() {
    let mut sim = health_sim(1, None);
    let pid = sim.pid_of_slot(0)[0];
    healthy(&mut sim, pid);
    for ok in [false, false, true, false, false, true] {
        sim.advance(S);
        answer(&mut sim, pid, ok);
    }
    assert!(!hung_logged(&sim, pid, HangCause::Health));
    assert!(logged(&sim, |l| matches!(
        l,
        Log::HealthRecovered { failures: 2, .. }
    )));
    assert!(sim.pending.is_empty());
}

#[test]
fn a_worker_that_never_passes_is_a_failed_start() {
    let mut sim = health_sim(1, None);
    let pid = sim.pid_of_slot(0)[0];
    // Failures before the first pass do not count…
    for _ in 0..30 {
        answer(&mut sim, pid, false);
        sim.advance(500 * MS);
        if !sim
            .log
            .iter()
            .any(|a| matches!(a, Action::Log(Log::NeverHealthy { .. })))
        {
            continue;
        }
        break;
    }
    // …the listen timeout (10 s) after its start does.
    assert!(logged(&sim, |l| matches!(l,
        Log::NeverHealthy { pid: p, last: Some(e), .. } if *p == pid && e == "status 503")));
    assert!(sim.log.contains(&Action::Log(Log::Stopping {
        slot: 0,
        pid,
        reason: StopReason::NotReady
    })));
    assert!(!hung_logged(&sim, pid, HangCause::Health));
    let acts = sim.exit(pid, ExitStatus::Code(0));
    assert!(restart_delay(&acts).is_some(), "restarted as after a crash");
}

#[test]
fn failures_in_the_start_period_do_not_count() {
    let mut sim = Sim::running(Policy {
        instances: 1,
        readiness: Readiness::Notify,
        health: Some(HealthPolicy {
            interval: S,
            timeout: 500 * MS,
            failures: 1,
            start_period: 5 * S,
        }),
        ..Policy::default()
    });
    ready_all(&mut sim);
    let pid = sim.pid_of_slot(0)[0];
    healthy(&mut sim, pid);
    sim.advance(S);
    answer(&mut sim, pid, false);
    assert!(!hung_logged(&sim, pid, HangCause::Health));
    sim.advance(5 * S);
    answer(&mut sim, pid, false);
    assert!(hung_logged(&sim, pid, HangCause::Health));
}

#[test]
fn a_silent_watchdog_or_a_trigger_replaces_the_worker() {
    let mut sim = health_sim(2, Some(S));
    let (a, b) = (sim.pid_of_slot(0)[0], sim.pid_of_slot(1)[0]);
    for p in [a, b] {
        healthy(&mut sim, p);
    }
    for _ in 0..3 {
        sim.advance(900 * MS);
        for p in [a, b] {
            sim.step(Event::Notify {
                pid: p,
                msg: NotifyMsg::Watchdog,
            });
        }
        for p in checks(&sim.log.clone()) {
            answer(&mut sim, p, true);
        }
    }
    assert!(sim.pending.is_empty(), "heartbeats keep them");
    sim.advance(600 * MS);
    sim.step(Event::Notify {
        pid: b,
        msg: NotifyMsg::Watchdog,
    });
    let acts = sim.advance(500 * MS);
    assert!(hung_logged(&sim, a, HangCause::Watchdog));
    assert_eq!(spawns(&acts), vec![0]);
    let acts = sim.step(Event::Notify {
        pid: b,
        msg: NotifyMsg::WatchdogTrigger,
    });
    assert!(hung_logged(&sim, b, HangCause::Watchdog));
    assert_eq!(spawns(&acts), vec![1]);
    assert_eq!(last_route(&sim), Vec::<usize>::new());
    for p in sim.spawn_all() {
        sim.ready(p);
    }
    assert_eq!(
        sim.sup.restarts_by_reason()[3],
        (RestartReason::Watchdog, 2)
    );
}

#[test]
fn a_failed_replacement_stops_the_hung_worker_and_its_slot_restarts() {
    let mut sim = health_sim(1, None);
    let old = sim.pid_of_slot(0)[0];
    healthy(&mut sim, old);
    sim.step(Event::Notify {
        pid: old,
        msg: NotifyMsg::Watchdog,
    });
    for _ in 0..3 {
        sim.advance(S);
        answer(&mut sim, old, false);
    }
    let new = sim.spawn_all()[0];
    let acts = sim.exit(new, ExitStatus::Code(1));
    assert!(logged(&sim, |l| matches!(
        l,
        Log::HungRestartFailed { slot: 0, .. }
    )));
    assert_eq!(stops(&acts), vec![old]);
    let acts = sim.exit(old, ExitStatus::Signal(15));
    assert!(restart_delay(&acts).is_some());
}

#[test]
fn the_hung_worker_dying_first_hands_the_slot_to_its_replacement() {
    let mut sim = health_sim(1, None);
    let old = sim.pid_of_slot(0)[0];
    healthy(&mut sim, old);
    for _ in 0..3 {
        sim.advance(S);
        answer(&mut sim, old, false);
    }
    let new = sim.spawn_all()[0];
    let acts = sim.exit(old, ExitStatus::Signal(11));
    assert!(restart_delay(&acts).is_none());
    sim.ready(new);
    assert_eq!(last_route(&sim), vec![0]);
    assert_eq!(sim.sup.restarts_by_reason()[2], (RestartReason::Health, 1));
}

#[test]
fn nothing_is_checked_while_shutting_down_and_reloads_take_hung_slots_first() {
    let mut sim = health_sim(3, None);
    let pids: Vec<u32> = (0..3).map(|s| sim.pid_of_slot(s)[0]).collect();
    for p in &pids {
        healthy(&mut sim, *p);
    }
    for _ in 0..3 {
        sim.advance(S);
        answer(&mut sim, pids[2], false);
        answer(&mut sim, pids[0], true);
        answer(&mut sim, pids[1], true);
    }
    assert!(hung_logged(&sim, pids[2], HangCause::Health));
    // A reload drops the hung worker's replacement, then replaces its slot first.
    let acts = sim.step(Event::Reload);
    assert_eq!(spawns(&acts), vec![2]);
    sim.step(Event::Shutdown);
    let acts = sim.advance(10 * S);
    assert!(checks(&acts).is_empty());
}
