//! `--balance least-conn`: herd accepts every connection and gives it to the ready worker
//! with the fewest open connections. Exact with `--proxy` (herd relays, so it knows every
//! open connection); for plain Node workers taking `'connection'` messages herd polls
//! Node's own socket count (NODE_SOCKET_GET_COUNT), which lags by a poll interval; for Node
//! cluster workers only the connections in flight are known.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// Open held connections per worker pid (workers without any count as 0).
fn counts(held: &[Held], workers: &[u32]) -> BTreeMap<u32, usize> {
    let mut c: BTreeMap<u32, usize> = workers.iter().map(|p| (*p, 0)).collect();
    for h in held {
        *c.entry(h.pid).or_default() += 1;
    }
    c
}

fn spread(c: &BTreeMap<u32, usize>) -> usize {
    c.values().max().unwrap() - c.values().min().unwrap()
}

/// Opens a held connection; fails the test on error.
fn hold(herd: &Herd, port: u16) -> Held {
    Held::open(Ipv4Addr::LOCALHOST, port)
        .unwrap_or_else(|e| herd.fail(&format!("held connection: {e}")))
}

/// `--proxy`: herd counts every relayed connection, so the choice is exact. Connections
/// are opened one at a time and kept open: after each, no worker has two more than
/// another. Then one worker's connections are closed: the next three all go to it.
#[test]
fn proxy_next_connection_goes_to_the_worker_with_the_fewest_open() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "3",
        "--proxy",
        "--balance",
        "least-conn",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(3);
    let port = herd.port();
    let workers: Vec<u32> = live_workers(&herd).into_values().collect();
    assert_eq!(workers.len(), 3, "{:?}", herd.spawned());
    let base = fd_count(herd.pid());

    let mut held: Vec<Held> = Vec::new();
    for i in 0..9 {
        held.push(hold(&herd, port));
        let c = counts(&held, &workers);
        if spread(&c) > 1 {
            herd.fail(&format!(
                "after {} held connections, opened one at a time, the open connections per worker are {c:?}",
                i + 1
            ));
        }
    }
    let full = fd_count(herd.pid());
    if full <= base || (full - base) % 9 != 0 {
        herd.fail(&format!(
            "herd's fds went from {base} to {full} with 9 relayed connections: {:?}",
            fd_list(herd.pid())
        ));
    }
    let per_conn = (full - base) / 9;

    // Close the three connections of one worker; once herd has closed its ends of them
    // (its fds say so), that worker has 0 open connections and the others 3 each.
    let light = workers[1];
    held.retain(|h| h.pid != light);
    assert_eq!(held.len(), 6);
    herd.wait_until(
        "herd closed its ends of the 3 connections closed by the client",
        T,
        || fd_count(herd.pid()) == base + 6 * per_conn,
    );
    let next: Vec<u32> = (0..3)
        .map(|_| {
            let h = hold(&herd, port);
            let pid = h.pid;
            held.push(h);
            pid
        })
        .collect();
    if next.iter().any(|p| *p != light) {
        herd.fail(&format!(
            "worker {light} had 0 open connections and the others 3 each; the next 3 went to {next:?}"
        ));
    }
    let c = counts(&held, &workers);
    assert!(c.values().all(|n| *n == 3), "{c:?}");

    // Plain requests on new connections are served alongside the held ones.
    for _ in 0..5 {
        get_from(Ipv4Addr::LOCALHOST, port, "/").unwrap_or_else(|e| herd.fail(&e));
    }
    drop(held);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// Plain Node workers (the article's sticky-sessions worker, which takes `'connection'`
/// messages): herd learns their open connections from Node's socket count, polled, so it
/// may lag; once it has caught up, every new connection goes to the idle worker.
#[test]
fn plain_node_workers_connections_go_to_the_idle_worker_once_counted() {
    let node = node();
    let sticky = example("node/sticky.js");
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--balance",
        "least-conn",
        "--listen",
        "127.0.0.1:0",
        "--",
        &node,
        sticky.to_str().unwrap(),
    ]);
    herd.wait_ready(2);
    let port = herd.port();
    let workers: Vec<u32> = live_workers(&herd).into_values().collect();
    let mut held: Vec<Held> = (0..8).map(|_| hold(&herd, port)).collect();
    let c = counts(&held, &workers);
    // The worker with fewer held connections loses all of them; the other keeps at least 4.
    let (&light, _) = c.iter().min_by_key(|(_, n)| **n).unwrap();
    let heavy = *workers.iter().find(|p| **p != light).unwrap();
    held.retain(|h| h.pid != light);
    assert!(held.len() >= 4, "{c:?}");

    // Within the bound, a run of 10 requests in a row (new connections, one at a time,
    // each closed after its answer) is answered by the idle worker. Round-robin or any
    // choice blind to the counts would alternate.
    let started = Instant::now();
    let mut run = 0;
    let mut answers: Vec<u32> = Vec::new();
    while run < 10 {
        // Counts are asked every 100 ms: the idle worker shows within a few polls.
        if started.elapsed() > Duration::from_secs(3) {
            herd.fail(&format!(
                "worker {heavy} holds {} connections, worker {light} none, yet no 10 requests in a row went to {light} in 3 s: {answers:?}",
                held.len()
            ));
        }
        let (pid, _) = get_from(Ipv4Addr::LOCALHOST, port, "/").unwrap_or_else(|e| herd.fail(&e));
        answers.push(pid);
        run = if pid == light { run + 1 } else { 0 };
    }
    eprintln!(
        "the idle worker took 10 in a row after {} requests, {:?}",
        answers.len() - 10,
        started.elapsed()
    );
    drop(held);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// Node cluster workers (examples/node/basic.mjs listening on herd's port): only the
/// connections in flight are known, but least-conn works: every request is answered, and
/// both workers answer.
#[test]
fn cluster_workers_are_served() {
    let (mut herd, port) = start_on_free_port(2, |port| {
        let mut cmd = Command::new(herd_bin());
        cmd.args([
            "run",
            "-i",
            "2",
            "--ready",
            "notify",
            "--balance",
            "least-conn",
        ])
        .args(["-p", &port.to_string(), "--"])
        .arg(node())
        .arg(example("node/basic.mjs"))
        .env("APP_PORT", port.to_string());
        cmd
    });
    let mut seen = BTreeSet::new();
    for _ in 0..50 {
        let (pid, _) = get_from(Ipv4Addr::LOCALHOST, port, "/").unwrap_or_else(|e| herd.fail(&e));
        seen.insert(pid);
    }
    let workers: BTreeSet<u32> = live_workers(&herd).into_values().collect();
    if seen != workers {
        herd.fail(&format!(
            "50 requests were answered by {seen:?}, the workers are {workers:?}"
        ));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A worker that is not Node (examples/handoff.py) does not answer Node's socket-count
/// question: herd must not wait for the answer. Every request is answered, by both workers.
#[test]
fn python_workers_that_never_answer_the_count_are_served() {
    let python = python();
    let script = example("handoff.py");
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--balance",
        "least-conn",
        "--listen",
        "127.0.0.1:0",
        "--",
        &python,
        script.to_str().unwrap(),
    ]);
    herd.wait_ready(2);
    let port = herd.port();
    let mut seen = BTreeSet::new();
    let started = Instant::now();
    for _ in 0..100 {
        let (pid, _) = get_from(Ipv4Addr::LOCALHOST, port, "/").unwrap_or_else(|e| herd.fail(&e));
        seen.insert(pid);
    }
    let took = started.elapsed();
    // Far more than enough on a loaded machine; a herd waiting for an answer that never
    // comes would need seconds per connection.
    if took > Duration::from_secs(5) {
        herd.fail(&format!("100 requests took {took:?}"));
    }
    let workers: BTreeSet<u32> = live_workers(&herd).into_values().collect();
    if seen != workers {
        herd.fail(&format!(
            "100 requests were answered by {seen:?}, the workers are {workers:?}"
        ));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
