//! Compatibility: an unmodified Node.js program that listens on the passed fd 3.

use std::collections::HashSet;

use crate::common::*;
use nix::sys::signal::Signal;

const SERVER: &str =
    "require('http').createServer((q,s)=>s.end(String(process.pid))).listen({fd: 3})\n";

#[test]
fn node_http_server_on_fd_3() {
    let node = node();
    let script = TempPath::new("server.js");
    std::fs::write(&script.0, SERVER).unwrap();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(2);
    let url = herd.url("/");
    let mut pids = HashSet::new();
    herd.wait_until("two distinct node pids answer", T, || {
        let (status, body) = http_get(&url).unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(status, 200, "{body}");
        pids.insert(body.trim().parse::<u32>().expect("a pid"));
        pids.len() == 2
    });
    let spawned: HashSet<u32> = herd.worker_pids().into_iter().collect();
    assert_eq!(pids, spawned, "the node processes are the spawned workers");
    // Node dies of SIGTERM (no handler): herd asked for that stop, so it is clean.
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGTERM);
    let code = herd.wait_exit(T);
    let exits: Vec<Event> = herd.events_from(mark, "worker.exited");
    eprintln!("node workers' exits at shutdown: {exits:?}");
    if code != 0 {
        herd.fail(&format!("exit code {code} after SIGTERM; expected 0"));
    }
    herd.wait_gone(&herd.worker_pids(), T);
}

/// The README's quick start: `node -e` runs no script file, so herd must not make it a
/// cluster worker (it would never listen); it serves on fd 3.
#[test]
fn readme_quick_start_node_eval_one_liner() {
    let node = node();
    let mut herd = Herd::start(&[
        "run", "-i", "2", "--listen", "127.0.0.1:0", "--", &node, "-e",
        "require('http').createServer((q,s)=>s.end('hello from '+process.pid+'\\n')).listen({fd:3})",
    ]);
    herd.wait_ready(2);
    let (status, body) = herd.get("/");
    assert_eq!(status, 200);
    assert!(body.starts_with("hello from "), "{body}");
    assert_eq!(
        herd.count_event("worker.exited", |e| !e.bool("expected")
            && e.str("status") == "code 0"),
        0
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
