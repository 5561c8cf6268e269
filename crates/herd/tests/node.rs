//! Compatibility: an unmodified Node.js program that listens on the passed fd 3.

mod common;

use std::collections::HashSet;

use common::*;
use nix::sys::signal::Signal;

const SERVER: &str =
    "require('http').createServer((q,s)=>s.end(String(process.pid))).listen({fd: 3})\n";

#[test]
fn node_http_server_on_fd_3() {
    let Some(node) = which("node") else {
        eprintln!("SKIPPED: node is not on PATH");
        return;
    };
    let script = TempPath::new("server.js");
    std::fs::write(&script.0, SERVER).unwrap();
    let node = node.display().to_string();
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
    let exits: Vec<String> = herd.lines(Out::Stderr)[mark..]
        .iter()
        .filter(|l| l.contains("exited with") || l.contains("crashed"))
        .cloned()
        .collect();
    eprintln!("node workers' exits at shutdown: {exits:?}");
    if code != 0 {
        herd.fail(&format!("exit code {code} after SIGTERM; expected 0"));
    }
    herd.wait_gone(&herd.worker_pids(), T);
}
