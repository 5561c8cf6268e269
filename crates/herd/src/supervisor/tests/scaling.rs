//! Scaling up, down and to N.

use super::*;

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
