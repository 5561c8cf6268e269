//! Starting a worker and judging it ready (auto, notify, delay), and what its
//! sd_notify messages do.

use super::*;

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
