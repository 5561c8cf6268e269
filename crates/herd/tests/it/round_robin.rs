//! `--balance round-robin`: herd accepts and hands each connection to the next ready Node
//! cluster worker (Node's own SCHED_RR, with herd as the primary).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use nix::sys::signal::Signal;

fn basic() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/node/basic.mjs")
}

/// `herd run --balance round-robin -p PORT <flags> -- node basic.mjs` (the article's basic
/// cluster program, listening on PORT).
fn start(port: u16, flags: &[&str]) -> Herd {
    let mut cmd = Command::new(herd_bin());
    cmd.args(["run", "--balance", "round-robin", "-p", &port.to_string()])
        .args(flags)
        .arg("--")
        .arg(node())
        .arg(basic())
        .env("APP_PORT", port.to_string());
    Herd::spawn(cmd, false, true)
}

/// One request on a new connection; the answering worker's pid.
fn get(port: u16) -> Result<u32, String> {
    get_from(Ipv4Addr::LOCALHOST, port, "/").map(|(pid, _)| pid)
}

#[test]
fn connections_alternate_between_workers_and_no_fd_leaks() {
    let port = free_port();
    let mut herd = start(port, &["-i", "2", "--ready", "notify"]);
    herd.wait_ready(2);
    // Before any connection: nothing is in flight.
    let before = fd_count(herd.pid());
    let first: Vec<u32> = (0..6).map(|_| get(port).unwrap()).collect();
    for pair in first.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "consecutive connections go to different workers: {first:?}"
        );
    }
    // 100 000 connections, as the issue asks, from 8 clients at once.
    const CLIENTS: usize = 8;
    const EACH: usize = 100_000 / CLIENTS;
    let started = std::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    get(port).map_err(|e| format!("request {i}: {e}"))?;
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for c in clients {
        if let Err(e) = c.join().unwrap() {
            herd.fail(&e);
        }
    }
    eprintln!("100 000 connections in {:?}", started.elapsed());
    // herd closes its copy of a connection when the worker's `accepted` arrives, which can
    // be a moment after the client got its answer: poll.
    let deadline = std::time::Instant::now() + T;
    while fd_count(herd.pid()) != before {
        if std::time::Instant::now() > deadline {
            herd.fail(&format!(
                                "herd's open fds did not come back to {before} after 100 000 handed-over connections: {:?}",
                fd_list(herd.pid())
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A rolling reload under load: the stopping workers get no new connection, the new ones
/// take over, nothing fails.
#[test]
fn reload_under_load_loses_no_connection() {
    let port = free_port();
    let mut herd = start(port, &["-i", "2", "--ready", "notify"]);
    herd.wait_ready(2);
    let load = Load::start(port, 4);
    let old = reload_under(&herd, load);
    let now = get(port).unwrap();
    assert!(!old.contains(&now), "an old worker answered: {now}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
