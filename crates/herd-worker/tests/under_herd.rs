//! The `hello` example under the real herd binary: inherited sockets with sd_notify
//! readiness, handed-over connections in the handoff modes, the batched counters reaching
//! herd, a clean exit on the stop signal; and the same binary on its own.

mod common;

use std::collections::HashSet;
use std::process::Command;

use common::*;

#[test]
fn two_workers_answer_from_distinct_slots_and_stop_cleanly() {
    let (mut herd, port) = herd(&["-i", "2", "--ready", "notify"]);
    herd.wait_count("ready (READY=1)", 2, |l| {
        l.contains("ready after") && l.contains("READY=1")
    });
    let mut slots = HashSet::new();
    // The kernel hashes each new connection to one slot's socket; both show up quickly.
    for _ in 0..500 {
        slots.insert(slot_of(&get(port, "/")));
        if slots.len() == 2 {
            break;
        }
    }
    assert_eq!(slots, HashSet::from(["0".to_string(), "1".to_string()]));
    herd.term();
    let status = herd.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", herd.output());
    let out = herd.output();
    assert_eq!(out.matches("exited with code 0").count(), 2, "{out}");
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn round_robin_hands_connections_to_both_workers() {
    let (herd, port) = herd(&["-i", "2", "--balance", "round-robin", "--ready", "notify"]);
    herd.wait_count("ready", 2, |l| l.contains("ready after"));
    let slots: Vec<String> = (0..6).map(|_| slot_of(&get(port, "/"))).collect();
    let distinct: HashSet<&String> = slots.iter().collect();
    assert_eq!(distinct.len(), 2, "{slots:?}");
}

#[test]
fn least_conn_gets_the_workers_connection_counts() {
    let (herd, port) = herd(&["-i", "2", "--balance", "least-conn", "--ready", "notify"]);
    herd.wait_count("ready", 2, |l| l.contains("ready after"));
    let slots: HashSet<String> = (0..8).map(|_| slot_of(&get(port, "/"))).collect();
    assert_eq!(slots.len(), 2, "{slots:?}");
    assert!(
        !herd.output().contains("did not acknowledge"),
        "{}",
        herd.output()
    );
}

#[test]
fn counters_reach_herd_in_stats_and_at_exit() {
    let (mut herd, port) = herd(&["-i", "1", "--ready", "notify"]);
    herd.wait_count("ready", 1, |l| l.contains("ready after"));
    for _ in 0..5 {
        get(port, "/");
    }
    // /stats counts itself too, and flushes before asking herd.
    let stats: serde_json::Value = serde_json::from_str(get(port, "/stats").trim()).unwrap();
    assert_eq!(stats["herd"], "stats");
    assert_eq!(stats["counters"]["requests"]["total"], 6, "{stats}");
    assert_eq!(stats["counters"]["requests"]["slots"]["0"], 6, "{stats}");
    get(port, "/");
    herd.term();
    assert_eq!(herd.wait_exit().code(), Some(0));
    // The last request's count is flushed at exit.
    let line = herd.wait_line("counters of", |l| l.contains("counters of"));
    assert!(line.contains("\"total\":7"), "{line}");
}

#[test]
fn standalone_it_serves_port_and_stops_on_sigterm() {
    let (_, hello) = bins();
    // A free port: bind 0, read it, let it go.
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(hello);
    cmd.env("PORT", port.to_string());
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "NOTIFY_SOCKET",
        "NODE_CHANNEL_FD",
        "HERD_WORKER_ID",
    ] {
        cmd.env_remove(var);
    }
    let mut p = Proc::spawn(cmd);
    p.wait_line("serving", |l| l.contains(&format!("serving tcp-{port}")));
    assert_eq!(slot_of(&get(port, "/")), "-");
    assert_eq!(get(port, "/stats").trim(), "{}");
    p.term();
    assert_eq!(p.wait_exit().code(), Some(0), "{}", p.output());
    assert!(
        p.output().contains("stopping (Signal(15))"),
        "{}",
        p.output()
    );
}

/// `--stop-message`: herd sends `"shutdown"` on the channel instead of SIGTERM; the worker's
/// shutdown resolves with `Reason::Message` and it exits 0.
#[test]
fn the_shutdown_message_stops_the_worker() {
    let (mut herd, port) = herd(&["-i", "1", "--ready", "notify", "--stop-message"]);
    herd.wait_count("ready", 1, |l| l.contains("ready after"));
    assert_eq!(slot_of(&get(port, "/")), "0");
    herd.term();
    assert_eq!(herd.wait_exit().code(), Some(0), "{}", herd.output());
    let out = herd.output();
    assert!(out.contains("stopping (Message)"), "{out}");
    assert!(out.contains("exited with code 0"), "{out}");
}

/// The channel closing (herd gone) resolves shutdown with `Reason::ChannelClosed`: a worker
/// never outlives its primary's channel.
#[test]
fn a_closed_channel_stops_the_worker() {
    use std::os::fd::AsRawFd;
    let (_, hello) = bins();
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    // The child inherits its end of the channel (std makes both ends close-on-exec).
    // SAFETY: F_SETFD on an fd this test owns.
    assert_eq!(
        unsafe { libc::fcntl(theirs.as_raw_fd(), libc::F_SETFD, 0) },
        0
    );
    let mut cmd = Command::new(hello);
    cmd.env("PORT", port.to_string())
        .env("NODE_CHANNEL_FD", theirs.as_raw_fd().to_string());
    for var in [
        "LISTEN_FDS",
        "LISTEN_PID",
        "NOTIFY_SOCKET",
        "HERD_WORKER_ID",
    ] {
        cmd.env_remove(var);
    }
    let mut p = Proc::spawn(cmd);
    drop(theirs);
    p.wait_line("serving", |l| l.contains(&format!("serving tcp-{port}")));
    // The worker says "ready" on the channel after it serves: close only once it has.
    let mut said = std::io::BufReader::new(&ours);
    let mut line = String::new();
    while std::io::BufRead::read_line(&mut said, &mut line).unwrap() > 0 {
        if line.trim() == "\"ready\"" {
            break;
        }
        line.clear();
    }
    assert_eq!(
        line.trim(),
        "\"ready\"",
        "the worker never said ready on its channel"
    );
    drop(said);
    drop(ours);
    assert_eq!(p.wait_exit().code(), Some(0), "{}", p.output());
    assert!(
        p.output().contains("stopping (ChannelClosed)"),
        "{}",
        p.output()
    );
}
