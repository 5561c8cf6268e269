//! Unmodified Node `cluster` programs: herd sets NODE_UNIQUE_ID, so the program takes its
//! worker branch and `listen(port)` asks herd for the server over the channel (Node's
//! NODE_CLUSTER protocol); herd answers with its own socket for that port, or a shared
//! socket bound on demand.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// The article's "Basic Cluster Setup", with the port as a parameter.
fn basic_cluster(port: u16) -> String {
    format!(
        r#"
const cluster = require('cluster');
const http = require('http');
const os = require('os');
const numCPUs = os.cpus().length;
if (cluster.isPrimary) {{
  console.log(`Primary ${{process.pid}} is running`);
  for (let i = 0; i < numCPUs; i++) cluster.fork();
}} else {{
  http.createServer((req, res) => {{
    res.writeHead(200);
    res.end(`Hello from worker ${{process.pid}} id ${{cluster.worker.id}} instance ${{process.env.NODE_APP_INSTANCE}}\n`);
  }}).listen({port});
  console.log(`Worker ${{process.pid}} started`);
}}
"#
    )
}

/// Asks until `n` distinct workers answered; returns their bodies.
fn distinct_answers(herd: &Herd, url: &str, n: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    herd.wait_until(&format!("{n} distinct workers answer {url}"), T, || {
        let (status, body) = http_get(url).unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(status, 200, "{body}");
        seen.insert(body.trim().to_string());
        seen.len() == n
    });
    let mut v: Vec<String> = seen.into_iter().collect();
    v.sort();
    v
}

#[test]
fn article_basic_cluster_runs_unmodified_on_a_socket_bound_on_demand() {
    let node = node();
    let port = free_port();
    let script = TempPath::new("cluster.js");
    std::fs::write(&script.0, basic_cluster(port)).unwrap();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(2);
    assert_eq!(
        herd.count_event("worker.ready", |e| e.str("how")
            == "Node cluster worker listening"),
        2
    );
    herd.wait_event_where("herd.listening_on_demand", |e| {
        e.str("addr") == format!("0.0.0.0:{port}")
    });
    let answers = distinct_answers(&herd, &format!("http://127.0.0.1:{port}/"), 2);
    // cluster.worker.id is the slot + 1, NODE_APP_INSTANCE the slot.
    assert!(
        answers[0].ends_with("id 1 instance 0") || answers[1].ends_with("id 1 instance 0"),
        "{answers:?}"
    );
    assert!(
        answers.iter().any(|a| a.ends_with("id 2 instance 1")),
        "{answers:?}"
    );
    assert_eq!(
        herd.output(Out::Stdout)
            .iter()
            .filter(|l| l.contains("Primary"))
            .count(),
        0,
        "the program took its worker branch"
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `listen(PORT)` where herd listens on PORT: the worker serves herd's own socket (its
/// slot's reuseport socket), nothing is bound on demand.
#[test]
fn listen_on_herds_port_gets_herds_socket() {
    let node = node();
    let port = free_port();
    let script = TempPath::new("cluster.js");
    std::fs::write(&script.0, basic_cluster(port)).unwrap();
    let port_s = port.to_string();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "notify",
        "-p",
        &port_s,
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(2);
    distinct_answers(&herd, &format!("http://127.0.0.1:{port}/"), 2);
    assert_eq!(
        herd.count_event("herd.listening_on_demand", |_| true),
        0,
        "nothing bound on demand"
    );
    // A rolling reload replaces both workers on the same sockets.
    let old = herd.worker_pids();
    let mark = herd.mark(Out::Stderr);
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |e| e.app() == "node");
    let new = distinct_answers(&herd, &format!("http://127.0.0.1:{port}/"), 2);
    for o in old {
        assert!(
            new.iter().all(|a| !a.contains(&format!("worker {o} "))),
            "old pid {o} still answers: {new:?}"
        );
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `--ready message`: a cluster worker that listens at once but says "ready" later is not
/// ready before it says so (PM2's wait_ready).
#[test]
fn ready_message_policy_waits_for_ready_not_listening() {
    let node = node();
    let port = free_port();
    let script = TempPath::new("late-ready.js");
    std::fs::write(
        &script.0,
        format!(
            "require('http').createServer((q,s)=>s.end('ok')).listen({port}, () => setTimeout(() => process.send('ready'), 800));\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "message",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(1);
    assert!(
        started.elapsed() >= Duration::from_millis(800),
        "ready before the message"
    );
    assert_eq!(
        herd.count_event("worker.ready", |e| e.str("how") == "\"ready\" message"),
        1
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// SIGTERM with a request in flight in an unmodified Node cluster worker (which has no
/// SIGTERM handler): herd disconnects the workers like Node's `worker.kill()`, so the
/// request completes, every worker exits within the kill timeout, and herd exits 0.
#[test]
fn cluster_workers_drain_like_node_worker_kill() {
    let node = node();
    let port = free_port();
    let script = TempPath::new("slow.js");
    std::fs::write(
        &script.0,
        format!(
            r#"require('http').createServer((req, res) => {{
    if (req.url === '/slow') {{ console.log('slow start'); setTimeout(() => res.end('slow done'), 1000); }}
  else res.end('fast');
}}).listen({port});
"#
        ),
    )
    .unwrap();
    // `notify`: ready is Node's `listening`, after the worker got its socket; `auto` would
    // call a worker slower than 500 ms to start ready before it holds one.
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--kill-timeout",
        "8s",
        "--ready",
        "notify",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(2);
    // Every worker's epoll wakes for a connection on the shared socket; the losers' accept
    // must return EAGAIN, not block: the socket must be nonblocking, as Node's primary's are.
    for pid in herd.worker_pids() {
        let flags = listening_socket_flags(pid, port);
        assert!(
            !flags.is_empty(),
            "worker {pid} holds no listening socket on {port}"
        );
        assert!(
            flags.iter().all(|f| f & libc::O_NONBLOCK as u32 != 0),
            "blocking listening socket in worker {pid}: {flags:?}"
        );
    }
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..10 {
        assert_eq!(http_get(&format!("{url}/")).unwrap().0, 200);
    }
    let slow = std::thread::spawn({
        let url = format!("{url}/slow");
        move || http_get(&url)
    });
    herd.wait_output_from(
        Out::Stdout,
        0,
        "the slow request reaching a worker",
        |l| l.contains("slow start"),
        T,
    );
    let asked = Instant::now();
    herd.signal(Signal::SIGTERM);
    assert_eq!(slow.join().unwrap(), Ok((200, "slow done".to_string())));
    assert_eq!(herd.wait_exit(T), 0, "every worker stopped in time");
    // The 1 s request and the workers' exit, far from the 8 s kill timeout.
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert_eq!(herd.count_event("worker.disconnecting", |_| true), 2);
}

/// The fd flags of every fd of `pid` that is a TCP socket listening on `port`.
fn listening_socket_flags(pid: u32, port: u16) -> Vec<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        for line in std::fs::read_to_string(table)
            .unwrap_or_default()
            .lines()
            .skip(1)
        {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f
                .get(1)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) && f.get(3) == Some(&"0A") {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    let mut flags = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = std::fs::read_link(e.path())
            .map(|t| t.display().to_string())
            .unwrap_or_default();
        if inodes.contains(&target) {
            let info = std::fs::read_to_string(format!(
                "/proc/{pid}/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            if let Some(v) = info.lines().find_map(|l| l.strip_prefix("flags:")) {
                flags.push(u32::from_str_radix(v.trim(), 8).unwrap_or(0));
            }
        }
    }
    flags
}

/// A Node cluster worker's `listen(0, 'localhost')` (the article's sticky worker): herd's
/// log names the port the kernel chose, not the 0 that was asked.
#[test]
fn a_socket_bound_on_demand_for_port_0_is_logged_with_its_real_port() {
    let node = node();
    let sticky = example("node/sticky.js");
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--balance",
        "round-robin",
        "--listen",
        "127.0.0.1:0",
        "--",
        &node,
        sticky.to_str().unwrap(),
    ]);
    let addr = herd
        .wait_event("herd.listening_on_demand")
        .str("addr")
        .to_string();
    assert!(
        !addr.ends_with(":0"),
        "the log names port 0, not the bound one: {addr}"
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A plain Node `http` app that answers `pid=<pid>` on `listen(port)`.
fn plain_http_app(port: u16) -> TempPath {
    let script = TempPath::new("plain-http.js");
    std::fs::write(
        &script.0,
        format!(
            "require('http').createServer((q, s) => s.end('pid=' + process.pid + '\\n')).listen({port});\n"
        ),
    )
    .unwrap();
    script
}

/// herd with two workers of `node <script of port>` on a free port, `extra` flags before
/// `--`, both ready (Node's `listening`); herd's NODE_OPTIONS is `--max-old-space-size=300`.
fn node_app(extra: &[&str], script: impl Fn(u16) -> Vec<String>) -> (Herd, u16) {
    let node = node();
    start_on_free_port(2, |port| {
        let mut cmd = std::process::Command::new(herd_bin());
        let port_flag = format!("--port={port}");
        cmd.args(["run", "-i", "2", "--ready", "notify", &port_flag])
            .args(extra)
            .arg("--")
            .arg(&node)
            .args(script(port))
            .env("APP_PORT", port.to_string())
            .env("NODE_OPTIONS", "--max-old-space-size=300");
        cmd
    })
}

/// Reloads under load from clients that keep their connections alive as wrk does (no retry
/// of a request whose connection the server closed): none may fail. Node 20's
/// `server.close()`, which a cluster worker runs on `disconnect`, closes idle keep-alive
/// connections at once, racing clients sending their next request; herd's drain preload
/// answers that request with `Connection: close` instead.
fn keep_alive_reloads_fail_nothing(herd: &Herd, port: u16) {
    for _ in 0..2 {
        let load = Load::with(port, &[Client::RawKeepAlive; 6]);
        herd.wait_until("the load to get answers", T, || load.ok() >= 20);
        reload_under(herd, load);
    }
}

#[test]
fn an_unmodified_node_http_app_reloads_under_keep_alive_load_with_no_failed_request() {
    let scripts: std::sync::Mutex<Vec<TempPath>> = Default::default();
    let (mut herd, port) = node_app(&[], |port| {
        let s = plain_http_app(port);
        let arg = s.s().to_string();
        scripts.lock().unwrap().push(s);
        vec![arg]
    });
    keep_alive_reloads_fail_nothing(&herd, port);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn an_express_app_reloads_under_keep_alive_load_with_no_failed_request() {
    npm_installed();
    let express = example("node/express.js").display().to_string();
    let (mut herd, port) = node_app(&[], |_| vec![express.clone()]);
    keep_alive_reloads_fail_nothing(&herd, port);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A client idle on a kept-alive connection sends its next request 300 ms into the stop of
/// its worker (think time, well inside the preload's 1 s grace). With the preload the old
/// worker answers it, with `Connection: close`; with `--no-node-drain` Node closed the
/// idle connection at the `disconnect` and the request fails, as before the preload. The
/// app's own NODE_OPTIONS are kept either way.
#[test]
fn a_request_on_an_idle_connection_during_the_stop_is_answered_unless_opted_out() {
    for opt_out in [false, true] {
        let scripts: std::sync::Mutex<Vec<TempPath>> = Default::default();
        let extra: &[&str] = if opt_out { &["--no-node-drain"] } else { &[] };
        let (mut herd, port) = node_app(extra, |port| {
            let s = TempPath::new("options.js");
            std::fs::write(
                &s.0,
                format!(
                    "require('http').createServer((q, s) => \
                     s.end('pid=' + process.pid + ' ' + process.env.NODE_OPTIONS + '\\n')).listen({port});\n"
                ),
            )
            .unwrap();
            let arg = s.s().to_string();
            scripts.lock().unwrap().push(s);
            vec![arg]
        });
        // The NODE_OPTIONS herd was given are kept; the preload comes after them.
        let (_, body) = http_get(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert!(body.contains(" --max-old-space-size=300"), "{body:?}");
        assert_eq!(body.contains("node-drain.js"), !opt_out, "{body:?}");
        // Idle kept-alive connections to both workers.
        let within = (Duration::from_secs(5), Duration::from_secs(10));
        let old = herd.worker_pids();
        let mut idle: Vec<(u32, Option<_>)> = Vec::new();
        herd.wait_until("kept-alive connections to both workers", T, || {
            let mut conn = None;
            let (pid, _) = keep_alive_get(&mut conn, port, within.0, within.1).unwrap();
            idle.push((pid, conn));
            old.iter().all(|p| idle.iter().any(|(q, _)| q == p))
        });
        let mark = herd.mark(Out::Stderr);
        herd.signal(Signal::SIGHUP);
        let (_, stopping) = herd.wait_event_from(mark, "worker.disconnecting", |_| true);
        let pid = stopping.u64("pid") as u32;
        std::thread::sleep(Duration::from_millis(300));
        let (_, mut conn) = idle
            .into_iter()
            .find(|(p, _)| *p == pid)
            .unwrap_or_else(|| herd.fail(&format!("no connection to worker {pid}")));
        let answer = keep_alive_get(&mut conn, port, within.0, within.1);
        if opt_out {
            assert!(answer.is_err(), "answered: {answer:?}");
        } else {
            assert_eq!(answer, Ok((pid, true)), "the old worker answers and closes");
        }
        herd.wait_event_from(mark, "reload.done", |_| true);
        herd.signal(Signal::SIGTERM);
        assert_eq!(herd.wait_exit(T), 0);
    }
}
