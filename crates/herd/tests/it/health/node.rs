//! An unmodified Node program (the `http` module, nothing of herd) whose event loop blocks:
//! found by `--watchdog` alone (herd asks each Node cluster worker Node's own `newconn`
//! question; a blocked loop answers nothing), with reuseport and with round-robin, and by
//! `--health-check` through the handoff path (the check's connection handed to the worker
//! like a client's).

use std::process::Command;

use super::*;

/// A plain Node http server on `process.env.PORT`: `/` names the worker as the test
/// worker does (`pid=P slot=S`), `/healthz` answers `ok`, and `/block` answers, then
/// blocks the event loop for good once the answer is flushed.
const SERVER: &str = r#"const http = require('http');
http.createServer((req, res) => {
  if (req.url === '/block') {
    res.end(`blocking pid=${process.pid}\n`, () => { for (;;) {} });
  } else if (req.url === '/healthz') {
    res.end('ok\n');
  } else {
    res.end(`pid=${process.pid} slot=${process.env.NODE_APP_INSTANCE}\n`);
  }
}).listen(process.env.PORT);
"#;

/// The watchdog's period here.
const WATCHDOG: Duration = Duration::from_secs(1);

/// `herd run -i 2 -p PORT --ready notify <flags> -- node server.js` on a free port, both
/// workers ready (Node's `listening`), and, with checks, past their first passed check.
fn start(script: &TempPath, flags: &[&str]) -> (Herd, u16) {
    let node = node();
    let (herd, port) = start_on_free_port(2, |port| {
        let mut cmd = Command::new(herd_bin());
        cmd.args([
            "run",
            "-i",
            "2",
            "-p",
            &port.to_string(),
            "--ready",
            "notify",
        ])
        .args(["--kill-timeout", "1s"])
        .args(flags)
        .arg("--")
        .arg(&node)
        .arg(script.s())
        .env("HERD_LOG", "debug");
        cmd
    });
    if flags.contains(&"--health-check") {
        for pid in herd.worker_pids() {
            wait_check_passed(&herd, 0, pid);
        }
    }
    (herd, port)
}

/// Blocks one Node worker's event loop under a load of new-connection clients; it must be
/// found hung with `cause` within `bound`, replaced, SIGKILLed (a blocked loop handles no
/// signal and no disconnect), and no request sent after `worker.hung` may fail.
fn block_under_load(what: &str, flags: &[&str], cause: &str, bound: Duration) {
    let script = TempPath::new("block.js");
    std::fs::write(&script.0, SERVER).unwrap();
    let (herd, port) = start(&script, flags);
    let load = Load::within(
        port,
        &[Client::NewConnection; 2],
        REQUEST_TIMEOUT,
        REQUEST_TIMEOUT,
    );
    herd.wait_until("20 answers before the block", T, || load.ok() >= 20);
    let mark = herd.mark(Out::Stderr);
    let victim = ask_one_worker(&herd, port, "/block", "blocking");
    let done = expect_replaced(&herd, mark, &victim, cause, bound);
    if done.exited.str("status") != "SIGKILL" {
        herd.fail(&format!(
            "a blocked Node worker can only be SIGKILLed: {:?}",
            done.exited
        ));
    }
    let failed_before = no_failure_after_hung(&herd, load, &done);
    report(what, &done, failed_before);
}

/// Detection by the watchdog: the last answer came at most a question interval (a quarter
/// of the period) before the loop blocked, so the hung event comes within the period;
/// doubled for a loaded machine.
fn watchdog_bound() -> Duration {
    WATCHDOG * 2
}

#[test]
fn watchdog_finds_a_blocked_node_event_loop_with_reuseport() {
    block_under_load(
        "node, reuseport, --watchdog 1s",
        &["--watchdog", "1s"],
        "watchdog",
        watchdog_bound(),
    );
}

#[test]
fn watchdog_finds_a_blocked_node_event_loop_with_round_robin() {
    block_under_load(
        "node, round-robin, --watchdog 1s",
        &["--balance", "round-robin", "--watchdog", "1s"],
        "watchdog",
        watchdog_bound(),
    );
}

/// The handoff path of a check: herd hands the check's connection to the chosen worker as
/// Node's `newconn`; a blocked loop never takes it.
#[test]
fn a_health_check_finds_a_blocked_node_event_loop_with_round_robin() {
    let mut flags = vec![
        "--balance",
        "round-robin",
        "--health-check",
        "http:/healthz",
    ];
    flags.extend(TIMINGS);
    block_under_load(
        "node, round-robin, --health-check",
        &flags,
        "health",
        check_detection_bound(),
    );
}

/// The watchdog of a Node worker that keeps its loop free never fires, and its event-loop
/// lag is reported.
#[test]
fn a_free_node_event_loop_answers_the_watchdog() {
    let script = TempPath::new("free.js");
    std::fs::write(&script.0, SERVER).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let (herd, _port) = start(&script, &["--watchdog", "1s", "--admin", &admin]);
    // Once each worker answered a first question: for several periods, each worker's
    // heartbeat is always younger than the period.
    herd.wait_until("a heartbeat of each worker", T, || {
        let body = http_get(&format!("http://{admin}/readyz?verbose"))
            .map(|a| a.1)
            .unwrap_or_default();
        body.lines().filter(|l| heartbeat_ms(l).is_some()).count() == 2
    });
    let started = Instant::now();
    let mut samples = 0;
    while started.elapsed() < WATCHDOG * 3 {
        let (code, body) = http_get(&format!("http://{admin}/readyz?verbose"))
            .unwrap_or_else(|e| herd.fail(&format!("/readyz?verbose: {e}")));
        let lines: Vec<&str> = body.lines().filter(|l| l.contains("worker ")).collect();
        let fresh = lines.iter().all(|l| {
            l.contains("event-loop lag ")
                && heartbeat_ms(l).is_some_and(|ms| ms < WATCHDOG.as_millis() as u64)
        });
        if code != 200 || lines.len() != 2 || !fresh {
            herd.fail(&format!("/readyz?verbose: {code} {body}"));
        }
        samples += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(herd.count_event("worker.hung", |_| true), 0);
    eprintln!(
        "{samples} samples of /readyz?verbose over {:?}",
        started.elapsed()
    );
}

/// `heartbeat N ms ago` of a `/readyz?verbose` worker line.
pub fn heartbeat_ms(line: &str) -> Option<u64> {
    line.split("heartbeat ")
        .nth(1)?
        .split(" ms ago")
        .next()?
        .parse()
        .ok()
}
