//! `--balance sticky`: herd accepts every connection and hands it to the worker whose slot
//! the client's IP picks by rendezvous hashing. Clients come from 40 source addresses
//! (127.0.0.2 … 127.0.0.41, all local on Linux's loopback), each on new connections.
//!
//! Every test runs twice: with Node cluster workers (`examples/node/basic.mjs`, whose
//! `listen(port)` on herd's port gets `newconn` handoffs) and with the article's
//! sticky-sessions worker (`examples/node/sticky.js`, which listens nowhere useful and takes
//! the `'connection'` message).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The tests of this file start 3–4 Node workers each and some measure waits: one at a
/// time, so a replacement worker's start-up is not slowed down by the other tests' workers.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Clone, Copy, Debug)]
enum Prog {
    /// examples/node/basic.mjs: a Node cluster worker listening on herd's port.
    Cluster,
    /// examples/node/sticky.js: the article's worker, taking `'connection'` messages.
    Article,
}

/// `herd run --balance sticky -p PORT -i N <flags> -- node <prog>` with a free PORT, once
/// N workers are ready.
fn start(prog: Prog, n: usize, flags: &[&str]) -> (Herd, u16) {
    let file = match prog {
        Prog::Cluster => example("node/basic.mjs"),
        Prog::Article => example("node/sticky.js"),
    };
    let mut all = vec!["--balance", "sticky"];
    all.extend_from_slice(flags);
    node_app_on_free_port(n, &all, &file, &[])
}

/// 127.0.0.2 … 127.0.0.41.
fn sources() -> Vec<Ipv4Addr> {
    (2..=41).map(|k| Ipv4Addr::new(127, 0, 0, k)).collect()
}

/// `per_source` requests from every source, each on a new connection; every source must
/// be answered by one worker each time. Returns source → pid.
fn mapping(herd: &Herd, port: u16, per_source: usize) -> BTreeMap<Ipv4Addr, u32> {
    let mut map = BTreeMap::new();
    for src in sources() {
        let pids: Vec<u32> = (0..per_source)
            .map(|_| get_from(src, port, "/").unwrap_or_else(|e| herd.fail(&e)).0)
            .collect();
        if pids.iter().any(|p| *p != pids[0]) {
            herd.fail(&format!(
                "the source {src} was answered by different workers: {pids:?}"
            ));
        }
        map.insert(src, pids[0]);
    }
    map
}

/// Sources per pid.
fn by_pid(map: &BTreeMap<Ipv4Addr, u32>) -> BTreeMap<u32, Vec<Ipv4Addr>> {
    let mut out: BTreeMap<u32, Vec<Ipv4Addr>> = BTreeMap::new();
    for (src, pid) in map {
        out.entry(*pid).or_default().push(*src);
    }
    out
}

/// The pid of the live worker of `slot` (the last spawned in it).
fn pid_of_slot(herd: &Herd, slot: usize) -> u32 {
    herd.spawned()
        .into_iter()
        .rev()
        .find(|(s, _)| *s == slot)
        .map(|(_, p)| p)
        .unwrap_or_else(|| herd.fail(&format!("no worker was spawned in slot {slot}")))
}

fn slot_of_pid(herd: &Herd, pid: u32) -> usize {
    herd.spawned()
        .into_iter()
        .find(|(_, p)| *p == pid)
        .map(|(s, _)| s)
        .unwrap_or_else(|| herd.fail(&format!("pid {pid} is no worker of herd")))
}

/// Same source → same worker; the sources spread over every worker; one worker more
/// (SIGTTIN) moves only the sources whose new first choice is the new slot, about a
/// quarter of them; one fewer again (SIGTTOU) gives every source its first worker back.
fn same_source_same_worker_and_scaling_moves_few(prog: Prog) {
    let _serial = serial();
    let (mut herd, port) = start(prog, 3, &[]);

    let before = mapping(&herd, port, 3);
    let groups = by_pid(&before);
    let workers: BTreeSet<u32> = live_workers(&herd).into_values().collect();
    let answering: BTreeSet<u32> = groups.keys().copied().collect();
    if answering != workers {
        herd.fail(&format!(
            "the answers came from {answering:?}, the workers are {workers:?}"
        ));
    }
    for (pid, srcs) in &groups {
        if srcs.len() < 5 {
            herd.fail(&format!(
                "40 sources over 3 workers: worker {pid} got only {} of them: {:?}",
                srcs.len(),
                groups
                    .iter()
                    .map(|(p, s)| (*p, s.len()))
                    .collect::<Vec<_>>()
            ));
        }
    }

    // One worker more.
    herd.signal(Signal::SIGTTIN);
    herd.wait_ready(4);
    let added = pid_of_slot(&herd, 3);
    let after = mapping(&herd, port, 2);
    let moved: Vec<(Ipv4Addr, u32, u32)> = before
        .iter()
        .filter(|(src, pid)| after[*src] != **pid)
        .map(|(src, pid)| (*src, *pid, after[src]))
        .collect();
    if let Some(m) = moved.iter().find(|(_, _, to)| *to != added) {
        herd.fail(&format!(
            "after adding slot 3 (pid {added}), the source {} moved from {} to {}, not to the new worker (all moves: {moved:?})",
            m.0, m.1, m.2
        ));
    }
    // Rendezvous hashing moves about 40/4 = 10 sources; the hash is fixed, so this is not
    // a matter of luck, but the band is wide enough for any decent hash.
    if !(3..=20).contains(&moved.len()) {
        herd.fail(&format!(
            "{} of 40 sources moved to the added worker, expected about 10: {moved:?}",
            moved.len()
        ));
    }

    // One fewer: the highest slot (the added worker) stops; its sources go back.
    herd.signal(Signal::SIGTTOU);
    herd.wait_gone(&[added], T);
    let back = mapping(&herd, port, 1);
    if back != before {
        let diff: Vec<_> = before
            .iter()
            .filter(|(s, p)| back[*s] != **p)
            .map(|(s, p)| (*s, *p, back[s]))
            .collect();
        herd.fail(&format!(
            "after removing slot 3, sources are not where they were with 3 slots: (source, before, now) {diff:?}"
        ));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn cluster_workers_same_source_same_worker_and_scaling_moves_few() {
    same_source_same_worker_and_scaling_moves_few(Prog::Cluster);
}

#[test]
fn article_worker_same_source_same_worker_and_scaling_moves_few() {
    same_source_same_worker_and_scaling_moves_few(Prog::Article);
}

/// Requests from every source in `srcs` at once (one thread each), each on a new
/// connection: source → (pid, how long the answer took).
fn at_once(herd: &Herd, port: u16, srcs: &[Ipv4Addr]) -> BTreeMap<Ipv4Addr, (u32, Duration)> {
    type Answer = (Ipv4Addr, Result<(u32, String), String>, Duration);
    let results: Vec<Answer> = std::thread::scope(|s| {
        let handles: Vec<_> = srcs
            .iter()
            .map(|src| {
                s.spawn(move || {
                    let t = Instant::now();
                    let r = get_from(*src, port, "/");
                    (*src, r, t.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut out = BTreeMap::new();
    for (src, r, took) in results {
        let (pid, _) = r.unwrap_or_else(|e| herd.fail(&format!("after {took:?}: {e}")));
        out.insert(src, (pid, took));
    }
    out
}

/// A crashed worker whose restart is far off (`--restart-delay 30s`): its clients wait
/// `--sticky-wait 1s`, then each goes to its next choice, the same one every time; the
/// other clients keep their workers.
fn crashed_slot_clients_go_to_their_next_choice_after_the_wait(prog: Prog) {
    let _serial = serial();
    let (mut herd, port) = start(
        prog,
        3,
        &[
            "--restart-delay",
            "30s",
            "--restart-delay-max",
            "30s",
            "--sticky-wait",
            "1s",
        ],
    );
    let before = mapping(&herd, port, 1);
    let groups = by_pid(&before);
    let (&victim, victims) = groups.iter().max_by_key(|(_, s)| s.len()).unwrap();
    let victims = victims.clone();
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    herd.wait_event_where("worker.exited", |e| {
        e.pid() == victim && e.str("status") == "SIGKILL"
    });

    // The crashed worker's clients, all at once, right away: each waits for the sticky
    // wait (at most, plus slack for a loaded machine), then is answered by another worker.
    let first = at_once(&herd, port, &victims);
    for (src, (pid, took)) in &first {
        if *pid == victim {
            herd.fail(&format!("the dead worker {victim} answered {src}"));
        }
        // The 1 s sticky wait, plus slack for a loaded machine.
        if *took > Duration::from_secs(3) {
            herd.fail(&format!(
                "the source {src} of the crashed worker was answered only after {took:?} (--sticky-wait 1s)"
            ));
        }
    }
    let longest = first.values().map(|(_, t)| *t).max().unwrap();
    if longest < Duration::from_millis(500) {
        herd.fail(&format!(
            "no client of the crashed slot waited for its replacement (longest answer {longest:?}, --sticky-wait 1s)"
        ));
    }
    // Their next choice is a fixed function of the source: asked again, same worker.
    let second = at_once(&herd, port, &victims);
    for src in &victims {
        if first[src].0 != second[src].0 {
            herd.fail(&format!(
                "the source {src} went to {} and then to {} while its worker was down",
                first[src].0, second[src].0
            ));
        }
    }
    // The other clients: unaffected, and not delayed.
    for (src, pid) in before.iter().filter(|(_, p)| **p != victim) {
        let t = Instant::now();
        let (now, _) = get_from(*src, port, "/").unwrap_or_else(|e| herd.fail(&e));
        if now != *pid {
            herd.fail(&format!(
                "the source {src} of a live worker ({pid}) moved to {now} when another worker crashed"
            ));
        }
        if t.elapsed() > Duration::from_millis(700) {
            herd.fail(&format!(
                "the source {src} of a live worker waited {:?}",
                t.elapsed()
            ));
        }
    }

    // Rendezvous hashing: the next choices are spread like the first ones, so the 14 or
    // more clients of the crashed worker do not all land on one neighbour.
    let spread: BTreeSet<u32> = first.values().map(|(p, _)| *p).collect();
    if spread.len() != 2 {
        herd.fail(&format!(
            "the {} clients of the crashed worker all went to {spread:?}",
            victims.len()
        ));
    }
    eprintln!(
        "{} sources of the crashed worker went to {spread:?}; longest wait {longest:?}",
        victims.len()
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn cluster_workers_crashed_slot_clients_go_to_their_next_choice_after_the_wait() {
    crashed_slot_clients_go_to_their_next_choice_after_the_wait(Prog::Cluster);
}

#[test]
fn article_worker_crashed_slot_clients_go_to_their_next_choice_after_the_wait() {
    crashed_slot_clients_go_to_their_next_choice_after_the_wait(Prog::Article);
}

/// With the defaults (restart after 100 ms, sticky wait 2 s), a client of a crashed worker
/// that connects while the slot restarts waits and is answered by the replacement in the
/// same slot (or, if the replacement is not ready within the 2 s, by its next choice, but
/// not before); once the replacement is ready, all the slot's clients are back on it.
fn crashed_slot_clients_wait_for_the_replacement(prog: Prog) {
    let _serial = serial();
    let (mut herd, port) = start(prog, 3, &[]);
    let before = mapping(&herd, port, 1);
    let groups = by_pid(&before);
    let (&victim, victims) = groups.iter().max_by_key(|(_, s)| s.len()).unwrap();
    let victims = victims.clone();
    let slot = slot_of_pid(&herd, victim);
    kill(Pid::from_raw(victim as i32), Signal::SIGKILL).unwrap();
    herd.wait_event_where("worker.exited", |e| {
        e.pid() == victim && e.str("status") == "SIGKILL"
    });
    if herd.events("worker.ready").len() != 3 {
        herd.fail("the replacement was ready before the test could ask: nothing to test");
    }
    let t = Instant::now();
    let (pid, body) = get_from(victims[0], port, "/").unwrap_or_else(|e| herd.fail(&e));
    let took = t.elapsed();
    if pid == victim {
        herd.fail(&format!("the dead worker {victim} answered"));
    }
    // The replacement normally starts well within the 2 s; on a very loaded machine it may
    // not, and then the client rightly goes to its next choice, but only after the wait.
    let waited = pid == pid_of_slot(&herd, slot);
    if waited {
        if let Prog::Article = prog {
            assert!(body.contains(&format!("slot {slot}")), "{body:?}");
        }
    } else if took < Duration::from_millis(1900) {
        herd.fail(&format!(
            "the source {} of the crashed worker {victim} (slot {slot}) was answered by {pid} after {took:?}, without waiting for the replacement (--sticky-wait 2s): {body:?}",
            victims[0]
        ));
    } else {
        eprintln!(
            "the replacement of slot {slot} was not ready within the sticky wait (loaded machine): answered by the next choice {pid} after {took:?}"
        );
    }
    // Once the replacement is ready, every client of the slot is back on it.
    herd.wait_ready(4);
    let replacement = pid_of_slot(&herd, slot);
    let now = at_once(&herd, port, &victims);
    let wrong: HashMap<_, _> = now.iter().filter(|(_, (p, _))| *p != replacement).collect();
    if !wrong.is_empty() {
        herd.fail(&format!(
            "sources of slot {slot} not answered by its replacement {replacement}: {wrong:?}"
        ));
    }
    eprintln!("the first client of the restarting slot was answered after {took:?}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn cluster_workers_crashed_slot_clients_wait_for_the_replacement() {
    crashed_slot_clients_wait_for_the_replacement(Prog::Cluster);
}

#[test]
fn article_worker_crashed_slot_clients_wait_for_the_replacement() {
    crashed_slot_clients_wait_for_the_replacement(Prog::Article);
}

/// `--proxy --balance sticky`: relayed connections stick by client address too (herd-testworker,
/// which knows nothing of herd, on its private PORT).
#[test]
fn proxied_workers_same_source_same_worker() {
    let _serial = serial();
    let (mut herd, port) = start_on_free_port(3, |port| {
        let mut cmd = Command::new(herd_bin());
        cmd.args(["run", "--proxy", "--balance", "sticky"]).args([
            "-p",
            &port.to_string(),
            "-i",
            "3",
            "--",
            worker_bin(),
        ]);
        cmd
    });
    let map = mapping(&herd, port, 3);
    let spread = by_pid(&map);
    if spread.len() != 3 || spread.values().any(|s| s.len() < 5) {
        herd.fail(&format!(
            "40 sources spread badly over 3 workers: {spread:?}"
        ));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// "A client keeps its slot … across restarts of herd": the slot a client address gets
/// with 3 slots is a fixed function of the address, the same in two herd processes, and
/// pinned here (rendezvous hashing of the IPv4 address with each slot number): a change
/// of the hash would move every client of a restarted herd to another worker.
#[test]
fn sticky_slots_are_the_same_across_herd_restarts() {
    let _serial = serial();
    const PINNED: [(u8, usize); 10] = [
        (2, 2),
        (3, 0),
        (4, 1),
        (5, 1),
        (6, 0),
        (7, 1),
        (8, 2),
        (9, 2),
        (10, 0),
        (11, 2),
    ];
    let mut runs = Vec::new();
    for _ in 0..2 {
        let mut herd = Herd::start(&[
            "run",
            "--proxy",
            "--balance",
            "sticky",
            "-i",
            "3",
            "--listen",
            "127.0.0.1:0",
            "--",
            worker_bin(),
        ]);
        herd.wait_ready(3);
        let port = herd.port();
        let slots: Vec<(u8, usize)> = PINNED
            .iter()
            .map(|(last, _)| {
                let src = Ipv4Addr::new(127, 0, 0, *last);
                let (_, body) = get_from(src, port, "/").unwrap_or_else(|e| herd.fail(&e));
                let (_, slot) = ident(&body).unwrap_or_else(|| herd.fail(&body));
                (*last, slot)
            })
            .collect();
        herd.signal(Signal::SIGTERM);
        assert_eq!(herd.wait_exit(T), 0);
        runs.push(slots);
    }
    assert_eq!(runs[0], runs[1], "two herd processes");
    assert_eq!(runs[0], PINNED, "127.0.0.N -> slot with 3 slots");
}
