//! Restarts after an exit: the backoff curve, the errored state, spawn failures,
//! `autorestart` and `stop_exit_codes`.

use super::*;

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
    // A worker that ran longer than min_uptime resets the curve, and is restarted at once.
    let pid = sim.pid_of_slot(0)[0];
    sim.advance(DEFAULT_MIN_UPTIME);
    let acts = sim.exit(pid, ExitStatus::Signal(9));
    assert_eq!(restart_delay(&acts), Some(Duration::ZERO));
    assert_eq!(spawns(&acts), vec![0], "in the same step");
    // Its replacement's quick crash is the first unstable one: the curve's start.
    let pid = sim.spawn_all()[0];
    sim.advance(10 * MS);
    let d = restart_delay(&sim.exit(pid, ExitStatus::Code(1))).unwrap();
    assert!(
        d >= DEFAULT_BACKOFF_INITIAL.mul_f64(0.9) && d <= DEFAULT_BACKOFF_INITIAL.mul_f64(1.1),
        "{d:?}"
    );
}

#[test]
fn a_stable_worker_is_replaced_at_once_an_unstable_one_after_the_delay() {
    let mut sim = Sim::started(2, Readiness::Auto);
    let (a, b) = (sim.pid_of_slot(0)[0], sim.pid_of_slot(1)[0]);
    sim.advance(MS);
    let acts = sim.exit(a, ExitStatus::Signal(9));
    assert!(restart_delay(&acts).unwrap() >= DEFAULT_BACKOFF_INITIAL.mul_f64(0.9));
    assert!(spawns(&acts).is_empty(), "unstable: not at once");
    sim.advance(DEFAULT_MIN_UPTIME);
    let acts = sim.exit(b, ExitStatus::Signal(9));
    assert_eq!(restart_delay(&acts), Some(Duration::ZERO));
    assert_eq!(spawns(&acts), vec![1]);
    assert_eq!(sim.sup.restarts(), 2, "both counted (slot 0's at its time)");
}

#[test]
fn a_configured_restart_delay_is_honoured_after_a_stable_run_too() {
    let delay = Duration::from_secs(2);
    let mut sim = Sim::running(Policy {
        instances: 1,
        backoff: BackoffPolicy {
            initial: delay,
            stable_at_once: false,
            ..BackoffPolicy::default()
        },
        ..Policy::default()
    });
    let pid = sim.pid_of_slot(0)[0];
    sim.advance(DEFAULT_MIN_UPTIME * 2);
    let acts = sim.exit(pid, ExitStatus::Signal(9));
    let d = restart_delay(&acts).unwrap();
    assert!(d >= delay.mul_f64(0.9) && d <= delay.mul_f64(1.1), "{d:?}");
    assert!(spawns(&acts).is_empty());
    assert!(spawns(&sim.advance(d - MS)).is_empty());
    assert_eq!(spawns(&sim.advance(MS)), vec![0]);
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

fn vacated(actions: &[Action]) -> Vec<usize> {
    pick(actions, |a| match a {
        Action::Vacate { slot } => Some(*slot),
        _ => None,
    })
}

#[test]
fn a_dead_workers_slot_is_vacated_unless_another_worker_serves_it() {
    let mut sim = Sim::started(2, Readiness::Auto);
    let pid = sim.pid_of_slot(1)[0];
    assert_eq!(vacated(&sim.exit(pid, ExitStatus::Signal(9))), vec![1]);
    // A reload's old worker leaves its slot to the new one: nothing to move.
    sim.advance(DEFAULT_AUTO_READY_DELAY);
    sim.spawn_all();
    sim.advance(DEFAULT_AUTO_READY_DELAY);
    sim.step(Event::Reload);
    let new = sim.spawn_all();
    let acts = sim.advance(DEFAULT_AUTO_READY_DELAY);
    let old = stops(&acts);
    assert_eq!(old.len(), 1, "{new:?} replaced one: {acts:?}");
    assert!(vacated(&sim.exit(old[0], ExitStatus::Code(0))).is_empty());
    // Shutting down: nothing either.
    sim.step(Event::Shutdown);
    for pid in sim.running.keys().copied().collect::<Vec<_>>() {
        assert!(vacated(&sim.exit(pid, ExitStatus::Code(0))).is_empty());
    }
}
