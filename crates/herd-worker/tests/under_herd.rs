//! The `hello` example under the real herd binary: inherited sockets with sd_notify
//! readiness, handed-over connections in the handoff modes, the batched counters reaching
//! herd, a clean exit on the stop signal; and the same binary on its own.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn two_workers_answer_from_distinct_slots_and_stop_cleanly() {
    let (mut herd, port) = herd(&["-i", "2", "--ready", "notify"]);
    herd.wait_events("worker.ready", 2, |e| e["how"] == "READY=1");
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
    let exits = herd.events("worker.exited");
    assert!(
        exits.len() == 2 && exits.iter().all(|e| e["status"] == "code 0"),
        "{out}"
    );
    assert!(!out.contains("panicked"), "{out}");
}

/// Rolling reloads while clients request on new connections: no request fails. The old
/// workers' accept loops (`herd_worker::incoming`) end at the stop signal after the
/// connection in hand, and the process waits for them before it exits; the connections not
/// yet accepted stay queued on the slot's socket for the new worker.
#[test]
fn reloads_under_load_fail_no_request() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let (herd, port) = herd(&["-i", "2", "--ready", "notify"]);
    herd.wait_events("worker.ready", 2, |_| true);
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match try_get(port, "/") {
                        Ok(_) => ok.fetch_add(1, Ordering::SeqCst),
                        Err(e) => {
                            failed.lock().unwrap().push(e);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    let answers_after = |n: usize| {
        let deadline = Instant::now() + T;
        while ok.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "{n} answers not reached within {T:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    answers_after(50);
    for reload in 1..=3 {
        herd.signal(libc::SIGHUP);
        herd.wait_events("reload.done", reload, |_| true);
        answers_after(ok.load(Ordering::SeqCst) + 50);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed across the reloads: {:?}",
        failed.len(),
        failed.len() + ok.load(Ordering::SeqCst),
        &failed[..failed.len().min(5)]
    );
}

#[test]
fn round_robin_hands_connections_to_both_workers() {
    let (herd, port) = herd(&["-i", "2", "--balance", "round-robin", "--ready", "notify"]);
    herd.wait_events("worker.ready", 2, |_| true);
    let slots: Vec<String> = (0..6).map(|_| slot_of(&get(port, "/"))).collect();
    let distinct: HashSet<&String> = slots.iter().collect();
    assert_eq!(distinct.len(), 2, "{slots:?}");
}

/// The worker answers least-conn's count question (`NODE_SOCKET_GET_COUNT`) with the
/// connections it holds open. Three held connections (the request head never finished) on
/// one worker, none on the other: from then on every new connection goes to the idle one.
/// Without the counts herd takes every connection as still open, and alternates.
#[test]
fn least_conn_gets_the_workers_connection_counts() {
    let (herd, port) = herd(&["-i", "2", "--balance", "least-conn", "--ready", "notify"]);
    herd.wait_events("worker.ready", 2, |_| true);
    let workers = worker_pids(&herd, 2);
    // Held connections, each on its own thread of its worker: which worker holds each is
    // read from /proc (the worker's fd of the socket whose peer is our end).
    let mut held: Vec<(TcpStream, u32)> = Vec::new();
    while held.len() < 6 {
        let conn = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        conn.set_read_timeout(Some(T)).unwrap();
        (&conn).write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let owner = wait_owner(&conn, &workers, &herd);
        held.push((conn, owner));
    }
    let busy = held[0].1;
    let idle = *workers.iter().find(|p| **p != busy).unwrap();
    held.retain(|(_, owner)| *owner == busy);
    assert!(!held.is_empty());
    // Closed on our side; the idle worker's threads see EOF and drop theirs.
    let mut answers = Vec::new();
    let started = Instant::now();
    let mut run = 0;
    while run < 10 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "worker {busy} holds {} connections, worker {idle} none, yet no 10 requests in a row went to {idle} in 5 s ({} requests, the last: {:?})\n{}",
            held.len(),
            answers.len(),
            &answers[answers.len().saturating_sub(20)..],
            herd.output()
        );
        let pid = pid_of(&get(port, "/"));
        answers.push(pid);
        run = if pid == idle { run + 1 } else { 0 };
    }
    assert!(
        !herd.output().contains("did not acknowledge"),
        "{}",
        herd.output()
    );
}

/// The pids of the `n` workers, from herd's `worker.spawned` records.
fn worker_pids(herd: &Proc, n: usize) -> Vec<u32> {
    herd.wait_events("worker.spawned", n, |_| true)
        .iter()
        .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Which of `workers` has the server end of `conn` open (polled: herd hands it over).
fn wait_owner(conn: &TcpStream, workers: &[u32], herd: &Proc) -> u32 {
    let ours = conn.local_addr().unwrap().port();
    let deadline = Instant::now() + T;
    loop {
        if let Some(inode) = server_inode(ours) {
            let target = format!("socket:[{inode}]");
            for &w in workers {
                let fds = std::fs::read_dir(format!("/proc/{w}/fd"))
                    .into_iter()
                    .flatten();
                if fds.flatten().any(|e| {
                    std::fs::read_link(e.path()).is_ok_and(|t| t.to_str() == Some(&target))
                }) {
                    return w;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no worker holds the connection from port {ours}\n{}",
            herd.output()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The inode of the server-side socket whose peer is 127.0.0.1:`client_port`.
fn server_inode(client_port: u16) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let remote = u16::from_str_radix(f.get(2)?.rsplit(':').next()?, 16).ok()?;
        (remote == client_port && f.get(3) == Some(&"01")).then(|| f[9].to_string())
    })
}

/// The `pid=` of a `pid=… slot=…` body.
fn pid_of(body: &str) -> u32 {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {body:?}"))
}

#[test]
fn counters_reach_herd_in_stats_and_at_exit() {
    let (mut herd, port) = herd(&["-i", "1", "--ready", "notify"]);
    herd.wait_events("worker.ready", 1, |_| true);
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
    // The last request's count is flushed at exit: the last counters record says so (a
    // periodic one may come before it, on a slow machine).
    // herd.exiting is herd's last line: every counters record is read by then.
    herd.wait_line("herd.exiting", |l| l.contains("\"herd.exiting\""));
    let output = herd.output();
    let line = output
        .lines()
        .rfind(|l| l.contains("\"counters\""))
        .unwrap_or_default()
        .to_string();
    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
    let counters: serde_json::Value =
        serde_json::from_str(record["counters"].as_str().unwrap_or_default()).unwrap();
    assert_eq!(counters["requests"]["total"], 7, "{line}");
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
    herd.wait_events("worker.ready", 1, |_| true);
    assert_eq!(slot_of(&get(port, "/")), "0");
    herd.term();
    assert_eq!(herd.wait_exit().code(), Some(0), "{}", herd.output());
    let out = herd.output();
    assert!(out.contains("stopping (Message)"), "{out}");
    let exits = herd.events("worker.exited");
    assert!(exits.len() == 1 && exits[0]["status"] == "code 0", "{out}");
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

/// `herd run --watchdog`: the tokio heartbeat (`spawn_watchdog`, in `hello_tokio`) keeps a
/// worker alive period after period; `hello`, which sends none, is found hung.
#[test]
fn the_tokio_heartbeat_keeps_a_worker_under_the_watchdog() {
    let (herd_bin, _) = bins();
    let status = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "herd-worker", "--features", "tokio"])
        .args(["--example", "hello_tokio"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build of hello_tokio failed");
    let tokio_hello = target_dir().join("examples").join("hello_tokio");
    let run = |program: &std::path::Path| {
        let mut cmd = Command::new(herd_bin);
        cmd.args(["run", "--log-format", "json", "-i", "1", "-p", "0"])
            .args(["--ready", "notify", "--watchdog", "300ms", "--"])
            .arg(program);
        Proc::spawn(cmd)
    };
    let mut beating = run(&tokio_hello);
    beating.wait_events("worker.ready", 1, |_| true);
    let (_, hello) = bins();
    let mut silent = run(hello);
    silent.wait_events("worker.ready", 1, |_| true);
    // The silent one is found hung after one period; by then, and for five periods more,
    // the beating one is not.
    silent.wait_events("worker.hung", 1, |e| e["cause"] == "watchdog");
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        assert!(
            beating.events("worker.hung").is_empty(),
            "{}",
            beating.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in [&mut beating, &mut silent] {
        p.term();
        p.wait_exit();
    }
}
