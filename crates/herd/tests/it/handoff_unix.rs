//! The handoff modes on a unix listener: herd accepts on the unix socket and hands each
//! connection over like a TCP one, to Node cluster workers that `listen(path)` (Node's
//! `newconn`) and to workers that take `"connection"` messages. `--proxy` relays TCP only
//! and says so.

use std::collections::HashSet;
use std::os::unix::net::UnixStream;

use crate::common::*;
use nix::sys::signal::Signal;

/// One request on a new connection to the unix socket; the answer's `pid=`.
fn pid_over(path: &std::path::Path) -> Result<u32, String> {
    let s = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(T)).ok();
    let answer = raw_exchange(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    answer
        .split("pid=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no pid in {answer:?}"))
}

/// Runs `program` with 2 workers on a unix listener in `balance`; every one of 20
/// connections, one after the other, is answered and both workers answer. Returns the pid
/// that answered each connection, in order.
fn over_unix(balance: &str, program: &[&str], tag: &str) -> Vec<u32> {
    let sock = TempPath::new(tag);
    let listen = format!("unix:{}", sock.s());
    let mut args = vec!["run", "-i", "2", "--ready", "notify", "--balance", balance];
    args.extend(["--listen", &listen, "--"]);
    args.extend(program);
    let mut cmd = std::process::Command::new(herd_bin());
    cmd.args(&args).env("SOCK", sock.s());
    let mut herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(2);
    let answers: Vec<u32> = (0..20)
        .map(|i| {
            pid_over(&sock.0)
                .unwrap_or_else(|e| herd.fail(&format!("connection {i} over the unix socket: {e}")))
        })
        .collect();
    let pids: HashSet<u32> = answers.iter().copied().collect();
    if pids.len() != 2 {
        herd.fail(&format!("expected both workers to answer, got {answers:?}"));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    answers
}

#[test]
fn node_cluster_workers_listening_on_the_path_get_newconn() {
    let node = node();
    let script = TempPath::new("unix-cluster.js");
    std::fs::write(
        &script.0,
        "require('http').createServer((q, s) => s.end(`pid=${process.pid}\\n`)).listen(process.env.SOCK);\n",
    )
    .unwrap();
    over_unix("round-robin", &[&node, script.s()], "rr-node.sock");
}

#[test]
fn channel_workers_get_unix_connections_as_messages() {
    let python = python();
    let handoff = example("handoff.py");
    over_unix(
        "round-robin",
        &[&python, handoff.to_str().unwrap()],
        "rr-py.sock",
    );
}

/// A unix socket's clients have no address: sticky gives them to the workers in turn, so
/// consecutive connections alternate (a hash of a fixed address would give all to one).
#[test]
fn sticky_on_a_unix_listener_takes_turns() {
    let python = python();
    let handoff = example("handoff.py");
    let answers = over_unix(
        "sticky",
        &[&python, handoff.to_str().unwrap()],
        "sticky-py.sock",
    );
    assert!(
        answers.windows(2).all(|w| w[0] != w[1]),
        "consecutive connections went to the same worker: {answers:?}"
    );
}

#[test]
fn proxy_on_a_unix_listener_is_refused_naming_it() {
    let sock = TempPath::new("proxy.sock");
    let listen = format!("unix:{}", sock.s());
    let mut herd = Herd::start(&["run", "--proxy", "--listen", &listen, "--", worker_bin()]);
    assert_eq!(herd.wait_exit(T), 1);
    let err = herd.lines(Out::Stderr).join("\n");
    assert!(err.contains(&listen) && err.contains("--proxy"), "{err}");
    herd.assert_no_spawn();
}
