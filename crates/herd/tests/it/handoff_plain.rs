//! Plain channel workers in the handoff modes: a worker that is not a Node cluster server
//! of herd's port (a program in any language using the channel at NODE_CHANNEL_FD, or a
//! Node program listening elsewhere) gets each connection as one `NODE_HANDLE` message with
//! the fd attached (Node's `process.on('message', (m, socket) => …)`), and acknowledges it.
//! Workers: `examples/handoff.py` (standard-library Python) and the article's
//! sticky-sessions worker `examples/node/sticky.js`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Instant;

use crate::common::*;
use nix::sys::signal::Signal;

#[derive(Clone, Copy, Debug)]
enum Prog {
    Python,
    Node,
}

/// `herd run -i N --ready notify --listen 127.0.0.1:0 <flags> -- <prog>`, once N workers
/// are ready.
fn start(prog: Prog, n: usize, flags: &[&str]) -> Herd {
    let (interp, file) = match prog {
        Prog::Python => (python(), example("handoff.py")),
        Prog::Node => (node(), example("node/sticky.js")),
    };
    let n = n.to_string();
    let mut args = vec![
        "run",
        "-i",
        &n,
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["--", &interp, file.to_str().unwrap()]);
    let herd = Herd::start(&args);
    herd.wait_ready(n.parse().unwrap());
    herd
}

fn get(herd: &Herd, port: u16) -> u32 {
    get_from(Ipv4Addr::LOCALHOST, port, "/")
        .unwrap_or_else(|e| herd.fail(&e))
        .0
}

/// Round-robin over two plain workers: consecutive connections alternate, a keep-alive
/// connection stays with its worker, and herd's own fds are back where they were after
/// 2000 handed-over connections (it closes its copy of each once the worker acknowledged).
fn round_robin_alternates_and_leaks_no_fd(prog: Prog) {
    let mut herd = start(prog, 2, &["--balance", "round-robin"]);
    let port = herd.port();
    let before = fd_count(herd.pid());
    let first: Vec<u32> = (0..6).map(|_| get(&herd, port)).collect();
    for pair in first.windows(2) {
        if pair[0] == pair[1] {
            herd.fail(&format!(
                "consecutive connections went to the same worker: {first:?}"
            ));
        }
    }
    let workers: BTreeSet<u32> = live_workers(&herd).into_values().collect();
    let answering: BTreeSet<u32> = first.iter().copied().collect();
    assert_eq!(answering, workers);

    let mut s = connect_from(Ipv4Addr::LOCALHOST, port).unwrap();
    let (_, body) = request_on(&mut s, "/", false).unwrap_or_else(|e| herd.fail(&e));
    for _ in 0..5 {
        let (_, again) = request_on(&mut s, "/", false).unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(again, body, "a keep-alive connection changed workers");
    }
    drop(s);

    let started = Instant::now();
    for i in 0..2000 {
        get_from(Ipv4Addr::LOCALHOST, port, "/")
            .unwrap_or_else(|e| herd.fail(&format!("request {i}: {e}")));
    }
    eprintln!(
        "{prog:?}: 2000 handed-over connections in {:?}",
        started.elapsed()
    );
    herd.wait_until(
        &format!("herd's open fds are back to {before} after 2000 handed-over connections"),
        T,
        || fd_count(herd.pid()) == before,
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    if let Prog::Python = prog {
        // handoff.py drains and exits 0 on SIGTERM (a Node cluster worker is disconnected
        // and then gets the stop signal, which it does not handle).
        assert_eq!(
            herd.count_event("worker.exited", |e| e.str("status") == "code 0"),
            2,
            "both workers stopped cleanly"
        );
    }
}

#[test]
fn python_round_robin_alternates_and_leaks_no_fd() {
    round_robin_alternates_and_leaks_no_fd(Prog::Python);
}

#[test]
fn node_round_robin_alternates_and_leaks_no_fd() {
    round_robin_alternates_and_leaks_no_fd(Prog::Node);
}

/// A rolling reload under load: a stopping plain worker gets no new connection (it would
/// no longer take it), the new ones take over, nothing fails.
fn reload_under_load_loses_no_request(prog: Prog, flags: &[&str]) {
    let mut all = vec!["--balance", "round-robin"];
    all.extend_from_slice(flags);
    let mut herd = start(prog, 2, &all);
    let port = herd.port();
    let load = Load::start(port, 4);
    herd.wait_until("the first 50 answers", T, || load.ok() >= 50);
    let old = reload_under(&herd, load);
    let pid = get(&herd, port);
    assert!(!old.contains(&pid), "an old worker answered: {pid}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn python_reload_under_load_loses_no_request() {
    reload_under_load_loses_no_request(Prog::Python, &[]);
}

/// The same with `--stop-message`: the old workers stop on the `"shutdown"` message.
#[test]
fn python_reload_with_stop_message_loses_no_request() {
    reload_under_load_loses_no_request(Prog::Python, &["--stop-message"]);
}

#[test]
fn node_reload_under_load_loses_no_request() {
    reload_under_load_loses_no_request(Prog::Node, &[]);
}

/// `--balance sticky` with plain Python workers: each source address always gets the same
/// worker, and the sources spread over both.
#[test]
fn python_sticky_keeps_each_source_on_one_worker() {
    let mut herd = start(Prog::Python, 2, &["--balance", "sticky"]);
    let port = herd.port();
    let mut used = BTreeSet::new();
    for k in 2..=21 {
        let src = Ipv4Addr::new(127, 0, 0, k);
        let pids: Vec<u32> = (0..3)
            .map(|_| get_from(src, port, "/").unwrap_or_else(|e| herd.fail(&e)).0)
            .collect();
        if pids.iter().any(|p| *p != pids[0]) {
            herd.fail(&format!(
                "the source {src} went to several workers: {pids:?}"
            ));
        }
        used.insert(pids[0]);
    }
    assert_eq!(used.len(), 2, "20 sources all went to one worker");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// The article's worker pattern (`process.on('message', (m, socket) => server.emit(
/// 'connection', socket))`) with a request that takes a second. A graceful stop lets the
/// request in progress finish: a Node cluster worker is stopped like `worker.kill()`
/// (disconnect, its servers close, then the stop signal), but the sockets it got as
/// messages are not counted by its server, so the stop must still wait for them.
#[test]
fn node_plain_worker_finishes_the_request_in_progress_when_stopped() {
    let node = node();
    let script = TempPath::new("slow-plain.js");
    std::fs::write(
        &script.0,
        r#"
const http = require('http');
const server = http.createServer((req, res) => {
  console.log(`request ${req.url}`);
  setTimeout(() => res.end(`slow answer from worker ${process.pid}\n`), 1000);
});
server.listen(0, 'localhost');
process.on('message', (message, connection) => {
  if (message === 'connection') {
    server.emit('connection', connection);
    connection.resume();
  }
});
"#,
    )
    .unwrap();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--balance",
        "round-robin",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(1);
    let port = herd.port();
    let client = std::thread::spawn(move || get_from(Ipv4Addr::LOCALHOST, port, "/slow"));
    herd.wait_output_from(
        Out::Stdout,
        0,
        "the worker got the request",
        |l| l.contains("request /slow"),
        T,
    );
    herd.signal(Signal::SIGTERM);
    let answer = client.join().unwrap();
    if let Err(e) = answer {
        herd.wait_exit(T);
        herd.fail(&format!(
            "the request in progress was lost when the worker was stopped: {e}"
        ));
    }
    assert_eq!(herd.wait_exit(T), 0);
}
