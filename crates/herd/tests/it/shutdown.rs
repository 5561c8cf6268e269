//! Stopping: SIGTERM drains in-flight requests and exits 0; a stubborn worker is killed
//! after --kill-timeout (exit 3); a second SIGINT kills at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

#[test]
fn sigterm_lets_the_request_in_flight_finish_then_exits_0() {
    let mut herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let client = slow_request(&herd);
    let workers = herd.worker_pids();
    let t0 = Instant::now();
    herd.signal(Signal::SIGTERM);
    let code = herd.wait_exit(T);
    let (read, resp) = client.join().unwrap();
    if code != 0 {
        herd.fail(&format!("exit code {code}, expected 0"));
    }
    if read.is_err() || !resp.starts_with("HTTP/1.1 200") {
        herd.fail(&format!(
            "the in-flight response was lost: {read:?} {resp:?}"
        ));
    }
    // Complete: the body has Content-Length bytes.
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(body.len(), len, "complete body: {resp:?}");
    assert!(ident(body).is_some(), "{body:?}");
    assert!(head.contains("Connection: close"), "{head}");
    // The 1.5 s request, then the worker exits: well before any kill timeout.
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    herd.wait_gone(&workers, Duration::from_secs(5));
    let left = in_groups(&workers);
    assert!(
        left.is_empty(),
        "processes left in the workers' groups: {left:?}"
    );
    let kids = children_of(herd.pid());
    assert!(kids.is_empty(), "processes with herd as parent: {kids:?}");
}

/// A request of 1.5 s in flight: returns once a worker's connection thread sleeps in it;
/// the thread gives (the read's result, the whole response).
fn slow_request(herd: &Herd) -> std::thread::JoinHandle<(Result<usize, String>, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", herd.port())).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    conn.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let client = std::thread::spawn(move || {
        let mut out = Vec::new();
        let r = conn.read_to_end(&mut out);
        (
            r.map_err(|e| e.to_string()),
            String::from_utf8_lossy(&out).into_owned(),
        )
    });
    let workers = herd.worker_pids();
    herd.wait_until("a worker is inside the /slow request", T, || {
        workers.iter().any(|p| worker_in_slow_request(*p))
    });
    client
}

/// One stop request, drained: exit code 0, nobody SIGKILLed, every worker ended by itself.
fn drained_once(herd: &mut Herd, code: i32) {
    if code != 0 {
        herd.fail(&format!("exit code {code}, expected 0 (a drain)"));
    }
    if !herd.events("shutdown.forced").is_empty() || !herd.events("worker.kill_timeout").is_empty()
    {
        herd.fail("the repeated stop signal was taken for a second request: workers killed");
    }
    let ignored = herd.count_event("request.ignored", |e| e.str("what") == "shutdown");
    let exits = herd.events("worker.exited");
    if exits.len() != 2 || exits.iter().any(|e| e.str("status") == "SIGKILL") {
        herd.fail(&format!("every worker should exit by itself: {exits:?}"));
    }
    // The kernel merges a signal that arrives while the same one is pending: herd saw each
    // repeat, or it never reached it as a second one.
    assert!(ignored <= 2, "{ignored} repeats");
}

/// GNU `timeout` signals herd's pid, then its process group, 0.2 ms apart: one stop request,
/// not the "second Ctrl-C" that forces a kill.
#[test]
fn timeout_stops_herd_with_one_request() {
    let timeout = require("timeout", "coreutils, `apt-get install coreutils`");
    let mut cmd = std::process::Command::new(timeout);
    // --preserve-status: timeout exits with herd's own code; 6 s leaves a loaded machine
    // time to start both workers before the signal comes.
    cmd.args([
        "--preserve-status",
        "-s",
        "TERM",
        "6",
        herd_bin(),
        "run",
        "-i",
        "2",
    ]);
    cmd.args(["--listen", "127.0.0.1:0", "--", worker_bin()]);
    let mut herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(2);
    herd.wait_event("shutdown.started");
    let code = herd.wait_exit(T);
    drained_once(&mut herd, code);
}

/// The same request sent to herd's pid and to its process group at once (`kill -TERM $pid;
/// kill -TERM -$pid`), and once more to the group while herd drains: the request in flight
/// is answered, the workers drain, exit code 0.
#[test]
fn a_stop_signal_to_pid_and_group_at_once_drains() {
    let mut herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let client = slow_request(&herd);
    let pid = Pid::from_raw(herd.pid() as i32);
    nix::sys::signal::kill(pid, Signal::SIGTERM).unwrap();
    nix::sys::signal::killpg(pid, Signal::SIGTERM).unwrap();
    // The kernel merges the second into the first while that one is pending; once herd
    // acted on the first, one more (still well within 500 ms) surely reaches it on its own.
    herd.wait_event("shutdown.started");
    nix::sys::signal::killpg(pid, Signal::SIGTERM).unwrap();
    herd.wait_event("request.ignored");
    let code = herd.wait_exit(T);
    let (read, resp) = client.join().unwrap();
    if read.is_err() || !resp.starts_with("HTTP/1.1 200") {
        herd.fail(&format!(
            "the request in flight was lost: {read:?} {resp:?}"
        ));
    }
    drained_once(&mut herd, code);
}

#[test]
fn stubborn_worker_is_killed_after_the_kill_timeout_exit_3() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--kill-timeout",
        "1s",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--ignore-term",
    ]);
    herd.wait_ready(2);
    let workers = herd.worker_pids();
    let t0 = Instant::now();
    herd.signal(Signal::SIGTERM);
    herd.wait_event("worker.kill_timeout");
    let code = herd.wait_exit(T);
    let took = t0.elapsed();
    if code != 3 {
        herd.fail(&format!("exit code {code}, expected 3"));
    }
    // The 1 s kill timeout, plus slack for a loaded machine.
    assert!(
        took >= Duration::from_secs(1),
        "herd waited the kill timeout before SIGKILL: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(herd.events("worker.kill_timeout").len(), 2);
    herd.wait_gone(&workers, Duration::from_secs(5));
}

#[test]
fn second_sigint_kills_at_once() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--kill-timeout",
        "60s",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--ignore-term",
    ]);
    herd.wait_ready(2);
    let workers = herd.worker_pids();
    let t0 = Instant::now();
    herd.signal(Signal::SIGINT);
    herd.wait_event("shutdown.started");
    // The workers ignore it: herd is waiting for them.
    assert!(herd.try_exit().is_none());
    herd.signal_again(Signal::SIGINT, "shutdown.forced");
    let code = herd.wait_exit(Duration::from_secs(10));
    if code != 3 {
        herd.fail(&format!("exit code {code}, expected 3"));
    }
    // At once, not after the 60 s kill timeout.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    herd.wait_gone(&workers, Duration::from_secs(5));
}

/// `--stop-signal SIG` (`SIGUSR1`, `QUIT`, `10`, …): the workers ignore SIGTERM and die of
/// the configured signal, at once: herd exits 0 long before the 30 s kill timeout, having
/// killed nobody.
#[test]
fn stop_signal_is_what_the_workers_get() {
    for (given, name) in [
        ("SIGUSR1", "SIGUSR1"),
        ("QUIT", "SIGQUIT"),
        ("10", "SIGUSR1"),
    ] {
        let mut herd = Herd::start(&[
            "run",
            "-i",
            "2",
            "--stop-signal",
            given,
            "--kill-timeout",
            "30s",
            "--listen",
            "127.0.0.1:0",
            "--",
            worker_bin(),
            "--ignore-term",
        ]);
        herd.wait_ready(2);
        let workers = herd.worker_pids();
        let t0 = Instant::now();
        herd.signal(Signal::SIGTERM);
        let code = herd.wait_exit(T);
        let took = t0.elapsed();
        if code != 0 || took > Duration::from_secs(3) {
            herd.fail(&format!(
                "--stop-signal {given}: exit code {code} after {took:?} (0, at once, expected)"
            ));
        }
        for pid in &workers {
            let exit = herd.wait_event_where("worker.exited", |e| e.pid() == *pid);
            if exit.str("status") != name {
                herd.fail(&format!(
                    "--stop-signal {given}: worker {pid} did not end by {name}: {exit:?}"
                ));
            }
        }
        assert_eq!(herd.events("worker.kill_timeout").len(), 0);
    }
}
