//! `herd run` basics: N workers answer, the worker contract (systemd socket activation
//! plus PORT / HERD_WORKER_ID / NODE_APP_INSTANCE / NOTIFY_SOCKET), and `-i` resolution.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::common::*;

#[test]
fn three_workers_three_distinct_pids_and_slots_answer() {
    // `auto` readiness and no READY=1: see `every_ready_notification_counts` for why.
    let herd = Herd::testworkers(3);
    herd.wait_ready(3);
    let mut pids = HashSet::new();
    let mut slots = BTreeSet::new();
    for _ in 0..300 {
        let (pid, slot) = herd.who();
        pids.insert(pid);
        slots.insert(slot);
        if pids.len() == 3 && slots.len() == 3 {
            break;
        }
    }
    if pids.len() != 3 || slots != BTreeSet::from([0, 1, 2]) {
        herd.fail(&format!(
            "expected 3 distinct pids and slots 0,1,2 answering; got pids {pids:?}, slots {slots:?}"
        ));
    }
    let spawned: HashSet<u32> = herd.worker_pids().into_iter().collect();
    if pids != spawned {
        herd.fail(&format!(
            "the answering pids {pids:?} should be the spawned workers {spawned:?}"
        ));
    }
}

/// `/env` and the variables `/env` does not show, asked on one connection (one worker).
fn worker_env(herd: &Herd) -> std::collections::HashMap<String, String> {
    // All four answers from one connection, so from one worker. A worker that is stopping
    // (just after a reload) may have accepted the connection: it answers the first request
    // with `Connection: close` and closes, as a draining HTTP server does; like any client,
    // ask again on a new connection then.
    let mut last = String::new();
    for _ in 0..5 {
        let mut conn = connect_from(std::net::Ipv4Addr::LOCALHOST, herd.port())
            .unwrap_or_else(|e| herd.fail(&format!("connect: {e}")));
        let mut ask = |path: &str| -> Result<String, String> {
            let (status, body) = request_on(&mut conn, path, false)?;
            assert_eq!(status, 200, "{path}: {body}");
            Ok(body)
        };
        let answers = (|| {
            let mut env = kv(&ask("/env")?);
            for var in ["HERD_APP", "HERD_GENERATION", "NODE_UNIQUE_ID"] {
                let value = ask(&format!("/var?name={var}"))?.trim_end().to_string();
                env.insert(var.to_string(), value);
            }
            Ok::<_, String>(env)
        })();
        match answers {
            Ok(env) => return env,
            Err(e) => last = e,
        }
    }
    herd.fail(&format!(
        "no worker answered /env and /var on one connection: {last}"
    ))
}

#[test]
fn worker_contract_environment() {
    let herd = Herd::testworkers(2);
    herd.wait_ready(2);
    let port = herd.port();
    let mut slots_seen = HashSet::new();
    for _ in 0..200 {
        let env = worker_env(&herd);
        let body = format!("{env:?}");
        let field = |k: &str| -> &str {
            env.get(k)
                .map(String::as_str)
                .unwrap_or_else(|| herd.fail(&format!("/env has no {k}: {body}")))
        };
        assert_eq!(
            field("LISTEN_PID"),
            field("PID"),
            "LISTEN_PID is the worker's own pid"
        );
        assert_eq!(field("LISTEN_FDS"), "1");
        assert_eq!(field("LISTEN_FDNAMES"), format!("tcp-{port}"), "{body}");
        assert_eq!(field("PORT"), port.to_string());
        assert_eq!(field("HERD_WORKER_ID"), field("NODE_APP_INSTANCE"));
        let slot: usize = field("HERD_WORKER_ID").parse().expect("numeric slot");
        assert!(slot < 2, "slot {slot} out of 0..2");
        assert_eq!(field("HERD_APP"), APP, "the app name: {body}");
        assert_eq!(field("HERD_GENERATION"), "0", "{body}");
        // A program started from a file (not `node -e`) is made a Node cluster worker.
        assert_eq!(field("NODE_UNIQUE_ID"), (slot + 1).to_string(), "{body}");
        assert!(!field("NOTIFY_SOCKET").is_empty());
        // The channel comes right after the one listening socket, in Node's JSON mode.
        assert_eq!(field("NODE_CHANNEL_FD"), "4");
        assert_eq!(field("NODE_CHANNEL_SERIALIZATION_MODE"), "json");
        assert_eq!(field("HERD_TRANSPORT"), "sockets");
        assert_eq!(
            field("PPID"),
            herd.pid().to_string(),
            "the worker's parent is herd"
        );
        let pid: u32 = field("PID").parse().unwrap();
        assert!(
            herd.worker_pids().contains(&pid),
            "pid {pid} was logged as spawned"
        );
        slots_seen.insert(slot);
        if slots_seen.len() == 2 {
            break;
        }
    }
    if slots_seen.len() != 2 {
        herd.fail(&format!("only slots {slots_seen:?} answered /env"));
    }
    // A reload's workers are generation 1.
    let mark = herd.mark(Out::Stderr);
    herd.signal(nix::sys::signal::Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |_| true);
    for _ in 0..4 {
        let env = worker_env(&herd);
        assert_eq!(env["HERD_GENERATION"], "1", "after a reload: {env:?}");
    }
}

#[test]
fn two_listeners_tcp_and_unix() {
    let sock = TempPath::new("two.sock");
    let unix_arg = format!("unix:{}", sock.s());
    let herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--listen",
        "127.0.0.1:0",
        "--listen",
        &unix_arg,
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(1);
    let (status, body) = herd.get("/env");
    assert_eq!(status, 200);
    let env = kv(&body);
    assert_eq!(
        env.get("LISTEN_FDS").map(String::as_str),
        Some("2"),
        "{body}"
    );
    let port = herd.port();
    let file = sock.0.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        env.get("LISTEN_FDNAMES"),
        Some(&format!("tcp-{port}:unix-{file}")),
        "{body}"
    );

    let s = UnixStream::connect(&sock.0)
        .unwrap_or_else(|e| herd.fail(&format!("connect {}: {e}", sock.s())));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let resp = raw_exchange(&s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap_or_else(|e| herd.fail(&format!("unix socket exchange: {e}")));
    assert!(resp.starts_with("HTTP/1.1 200"), "unix answer: {resp:?}");
    let (pid, slot) = ident(resp.split("\r\n\r\n").nth(1).unwrap_or(""))
        .unwrap_or_else(|| herd.fail(&format!("bad unix answer {resp:?}")));
    assert_eq!(slot, 0);
    assert_eq!(herd.worker_pids(), vec![pid]);
}

/// The `herd.starting` record: how many workers, and how `-i` was resolved.
fn starting_line(herd: &Herd) -> (usize, String) {
    let e = herd.wait_event("herd.starting");
    (e.u64("instances") as usize, e.str("reason").to_string())
}

#[test]
fn instances_max_and_minus_one() {
    let max = Herd::start(&[
        "run",
        "-i",
        "max",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    let (n, line) = starting_line(&max);
    assert!(n >= 1);
    assert!(
        line.contains(&format!("max = {n}")),
        "the reason explains max: {line:?}"
    );
    assert!(line.contains("-i max"), "{line:?}");
    // As many workers as announced, each in its own slot.
    max.wait_spawned(n);
    let slots: BTreeSet<usize> = max.spawned().iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, (0..n).collect::<BTreeSet<_>>());

    let minus = Herd::start(&[
        "run",
        "-i",
        "-1",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    let (m, line) = starting_line(&minus);
    assert_eq!(m, (n - 1).max(1), "-i -1 with max = {n}: {line:?}");
    assert!(line.contains("minus 1"), "{line:?}");
    minus.wait_spawned(m);
    let slots: BTreeSet<usize> = minus.spawned().iter().map(|(s, _)| *s).collect();
    assert_eq!(slots, (0..m).collect::<BTreeSet<_>>());
}

/// Workers that send READY=1 as soon as they start must all count as ready: a READY=1 that
/// arrives before herd has handled the worker's spawn result must not be dropped as coming
/// from "a pid which is not a worker".
#[test]
fn every_ready_notification_counts() {
    let herd = Herd::start(&[
        "run",
        "-i",
        "12",
        "--ready",
        "notify",
        "--listen-timeout",
        "3s",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
        "--notify",
    ]);
    herd.wait_until(
        "12 workers are ready, or one is not ready in time",
        T,
        || herd.events("worker.ready").len() == 12 || !herd.events("worker.not_ready").is_empty(),
    );
    if herd.events("worker.ready").len() != 12 || !herd.events("notify.unknown_sender").is_empty() {
        herd.fail("a worker's READY=1 was ignored: it came before herd knew the worker's pid");
    }
}

/// `-i max` counts the CPUs this process may run on, not the machine's: under
/// `taskset -c 0` it is one worker, and the log says why.
#[test]
fn instances_max_honours_the_affinity_mask() {
    let taskset = util_linux("taskset");
    let mut cmd = std::process::Command::new(taskset);
    cmd.args([
        "-c",
        "0",
        herd_bin(),
        "run",
        "-i",
        "max",
        "--",
        worker_bin(),
    ]);
    let herd = Herd::spawn(cmd, false, true);
    let (n, line) = starting_line(&herd);
    assert_eq!(n, 1, "{line:?}");
    assert!(
        line.contains("max = 1: affinity mask allows 1 of"),
        "{line:?}"
    );
}

/// herd raises its own soft open-file limit to the hard one (the handoff modes hold
/// connections in flight), but workers start with the limit herd was given.
#[test]
fn herd_raises_its_open_file_limit_and_workers_keep_the_original() {
    let hard: u64 = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .unwrap_or(0);
    if hard <= 1000 {
        skip(&format!(
            "the hard open-file limit ({hard}) leaves nothing to raise"
        ));
        return;
    }
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "ulimit -Sn 1000 && exec {} run -i 1 --ready delay:50ms -- sh -c 'echo nofile=$(ulimit -Sn); exec sleep 30'",
        herd_bin()
    ));
    let mut herd = Herd::spawn(cmd, false, true);
    let (_, line) = herd.wait_output_from(
        Out::Stdout,
        0,
        "the worker's limit",
        |l| l.contains("nofile="),
        Duration::from_secs(20),
    );
    assert!(line.ends_with("nofile=1000"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", herd.pid())).unwrap();
    let soft: u64 = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
        .unwrap();
    assert_eq!(soft, hard, "herd's own soft limit: {limits}");
    herd.signal(nix::sys::signal::Signal::SIGTERM);
    // The worker's `sleep` dies of the SIGTERM herd sent: a clean stop.
    assert_eq!(herd.wait_exit(T), 0);
}
