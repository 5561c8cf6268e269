//! The snapshot `herd ls` shows, and the app's state.

use super::*;

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
