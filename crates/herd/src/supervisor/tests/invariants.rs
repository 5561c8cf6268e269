//! Properties that hold for every sequence of events and every policy.

use super::*;
use proptest::prelude::*;

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
            prop_assert_eq!(sim.sup.ready_count(), sim.sup.serving().len());
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
