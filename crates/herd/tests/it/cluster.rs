//! `herd::Cluster`: examples/hello_cluster.rs is the primary and its own workers. Checked
//! like `herd run`: both workers answer over HTTP, the primary sees each worker's lifecycle
//! (fork, online, listening, exit) and its messages, SIGHUP reloads, SIGTERM exits 0.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use nix::sys::signal::Signal;

fn hello_cluster() -> PathBuf {
    // `cargo test` builds the examples next to the binaries.
    PathBuf::from(herd_bin())
        .parent()
        .unwrap()
        .join("examples/hello_cluster")
}

#[test]
fn hello_cluster_serves_reports_events_and_messages_reloads_and_exits() {
    let exe = hello_cluster();
    if !exe.exists() {
        panic!(
            "{} is not built (cargo test builds the examples)",
            exe.display()
        );
    }
    let port = free_port();
    let mut cmd = Command::new(&exe);
    cmd.env("PORT", port.to_string()).env("INSTANCES", "2");
    let mut herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(2);
    let mut slots = HashSet::new();
    for _ in 0..50 {
        let (code, body) =
            http_get(&format!("http://127.0.0.1:{port}/")).unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(code, 200, "{body}");
        if let Some(s) = body.split("(slot ").nth(1) {
            slots.insert(s.trim_end_matches([')', '\n']).to_string());
        }
        if slots.len() == 2 {
            break;
        }
    }
    assert_eq!(slots.len(), 2, "both workers answer: {slots:?}");
    let spawned = herd.spawned();
    for (slot, pid) in &spawned {
        let who = format!("From {{ slot: {slot}, pid: {pid} }}");
        let (fork, _) = herd.wait_line_from(
            Out::Stdout,
            0,
            "fork",
            |l| l.contains(&format!("Fork({who})")),
            T,
        );
        let (online, _) = herd.wait_line_from(
            Out::Stdout,
            0,
            "online",
            |l| l.contains(&format!("Online({who})")),
            T,
        );
        let (listening, _) = herd.wait_line_from(
            Out::Stdout,
            0,
            "listening",
            |l| l.contains(&format!("Listening({who})")),
            T,
        );
        assert!(
            fork < online && online < listening,
            "events of {who} out of order"
        );
        herd.wait_line_from(
            Out::Stdout,
            0,
            "the worker's message",
            |l| {
                l.contains(&format!(
                    "message from worker {slot} (pid {pid}): {{\"hello\":{slot}}}"
                ))
            },
            T,
        );
    }
    // A rolling reload: new workers, the old ones exit.
    herd.signal(Signal::SIGHUP);
    herd.wait_log("done: every worker runs generation 1");
    for (_, pid) in &spawned {
        herd.wait_line_from(
            Out::Stdout,
            0,
            "the old worker's exit",
            |l| l.contains("Exit {") && l.contains(&format!("pid: {pid} }}")),
            T,
        );
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
