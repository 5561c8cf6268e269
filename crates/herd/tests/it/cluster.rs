//! `herd::Cluster`: examples/hello_cluster.rs is the primary and its own workers. Checked
//! like `herd run`: both workers answer over HTTP, the primary sees each worker's lifecycle
//! (fork, online, listening, exit) and its messages, SIGHUP reloads with no failed request
//! under load, SIGTERM exits 0.

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
        let who = format!("WorkerRef {{ slot: {slot}, pid: {pid} }}");
        let (fork, _) = herd.wait_output_from(
            Out::Stdout,
            0,
            "fork",
            |l| l.contains(&format!("Fork({who})")),
            T,
        );
        let (online, _) = herd.wait_output_from(
            Out::Stdout,
            0,
            "online",
            |l| l.contains(&format!("Online({who})")),
            T,
        );
        let (listening, _) = herd.wait_output_from(
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
        herd.wait_output_from(
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
    // Rolling reloads under load: new workers, the old ones exit, no request fails (the
    // old workers' accept loops end at the stop signal, after the connection in hand).
    reloads_under_load(&herd, port, 3);
    herd.wait_event_where("reload.done", |e| e.u64("generation") == 3);
    for (_, pid) in &spawned {
        herd.wait_output_from(
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

/// The README: "A reply returned from `on_message` goes back to the worker that sent the
/// message." examples/on_message.rs: `/ask?n=N` makes the answering worker send `{"n":N}`
/// and wait for the reply, which `on_message` builds from the sender (`n`, its slot and
/// pid). Each answer carries its own `n` and the pid of the worker that answered; a reply
/// sent to the wrong worker, or to every worker, would be read by a later `/ask` of that
/// worker and carry a stale `n`.
#[test]
fn on_message_replies_go_back_to_the_sender() {
    let exe = PathBuf::from(herd_bin())
        .parent()
        .unwrap()
        .join("examples/on_message");
    assert!(exe.exists(), "{} is not built", exe.display());
    let (mut herd, port) = start_on_free_port(2, |port| {
        let mut cmd = Command::new(&exe);
        cmd.env("PORT", port.to_string()).env("INSTANCES", "2");
        cmd
    });
    let mut slots = HashSet::new();
    for n in 0..40u64 {
        let (code, body) = http_get(&format!("http://127.0.0.1:{port}/ask?n={n}"))
            .unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| herd.fail(&format!("{e}: {body:?}")));
        let reply = &v["reply"];
        if reply["n"] != n || reply["pid"] != v["me"] {
            herd.fail(&format!(
                "request {n} was answered by worker {} with the reply {reply} (its own n and pid expected)",
                v["me"]
            ));
        }
        slots.insert(reply["slot"].as_u64().unwrap_or(99));
    }
    assert_eq!(slots, HashSet::from([0, 1]), "both workers asked");
    reloads_under_load(&herd, port, 2);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A `herd run` flag given with `Cluster::flag` counts like on the command line: here
/// `--log-format json` beats `HERD_LOG_FORMAT=text` (it was once ignored, the log stayed
/// text). Only JSON lines are events, so the event is there only if the flag was taken.
#[test]
fn a_cluster_takes_the_log_format_flag() {
    let port = free_port();
    let mut cmd = Command::new(hello_cluster());
    cmd.env("PORT", port.to_string())
        .env("INSTANCES", "1")
        .env("LOG_FORMAT", "json")
        .env("HERD_LOG_FORMAT", "text");
    let mut herd = Herd::spawn(cmd, false, true);
    let starting = herd.wait_event("herd.starting");
    assert_eq!(starting.u64("instances"), 1);
    herd.wait_ready(1);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
