//! `--watchdog` with the test worker's `--watchdog` option: workers get `WATCHDOG_USEC`,
//! ping `WATCHDOG=1` every half period and stay; a worker that stops pinging is hung
//! within about the period; `WATCHDOG=trigger` makes it hung at once.

use std::collections::BTreeMap;

use super::node::heartbeat_ms;
use super::*;

const PERIOD: Duration = Duration::from_secs(1);

#[test]
fn pinging_workers_stay_and_a_silent_or_triggering_one_is_replaced() {
    let admin = format!("127.0.0.1:{}", free_port());
    let herd = herd_with(
        &[
            "run",
            "-i",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--watchdog",
            "1s",
            "--kill-timeout",
            "5s",
            "--admin",
            &admin,
            "--",
            worker_bin(),
        ],
        &[("HERD_TESTWORKER_OPTS", "--watchdog")],
    );
    herd.wait_ready(2);
    let port = herd.port();
    // Both workers see the period, in microseconds, and ping every half of it.
    let mut seen = BTreeMap::new();
    herd.wait_until("both workers answered /var?name=WATCHDOG_USEC", T, || {
        let v = ask_one_worker(&herd, port, "/var?name=WATCHDOG_USEC", "");
        seen.insert(v.pid, v.body.trim().to_string());
        seen.len() == 2
    });
    for (pid, usec) in &seen {
        if usec != "1000000" {
            herd.fail(&format!("pid {pid} has WATCHDOG_USEC={usec:?}: {seen:?}"));
        }
        herd.wait_output_from(
            Out::Stdout,
            0,
            "its pings",
            |l| l == format!("testworker pid={pid} watchdog every 500 ms"),
            T,
        );
    }
    // Over three periods: ready, each heartbeat younger than the period, nobody hung.
    herd.wait_until("a heartbeat of each worker", T, || {
        let body = http_get(&format!("http://{admin}/readyz?verbose"))
            .map(|a| a.1)
            .unwrap_or_default();
        body.lines().filter(|l| heartbeat_ms(l).is_some()).count() == 2
    });
    let started = Instant::now();
    while started.elapsed() < PERIOD * 3 {
        let (code, body) = http_get(&format!("http://{admin}/readyz?verbose"))
            .unwrap_or_else(|e| herd.fail(&format!("/readyz?verbose: {e}")));
        let beats: Vec<Option<u64>> = body
            .lines()
            .filter(|l| l.trim_start().starts_with("worker "))
            .map(heartbeat_ms)
            .collect();
        let fresh = beats.len() == 2
            && beats
                .iter()
                .all(|b| b.is_some_and(|ms| ms < PERIOD.as_millis() as u64));
        if code != 200 || !fresh {
            herd.fail(&format!("while pinging, /readyz?verbose: {code} {body}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if herd.count_event("worker.hung", |_| true) != 0 {
        herd.fail("a pinging worker was found hung");
    }

    // A worker that stops pinging: hung after the period since its last ping, which came
    // at most half a period before the stop.
    let mark = herd.mark(Out::Stderr);
    let silent = ask_one_worker(&herd, port, "/watchdog?do=stop", "watchdog stop");
    let done = expect_replaced(&herd, mark, &silent, "watchdog", PERIOD * 2);
    if done.detection < PERIOD / 2 - Duration::from_millis(100) {
        herd.fail(&format!(
            "found hung {:?} after its pings stopped, before the period ({PERIOD:?}) since its last ping could pass",
            done.detection
        ));
    }
    assert_eq!(
        done.hung.str("detail"),
        "no heartbeat for 1s (--watchdog)",
        "{:?}",
        done.hung
    );
    assert_eq!(done.exited.str("status"), "code 0", "{:?}", done.exited);
    report("testworker, --watchdog 1s, pings stopped", &done, 0);

    // WATCHDOG=trigger: hung at once, although its pings go on.
    let mark = herd.mark(Out::Stderr);
    let triggered = ask_one_worker(&herd, port, "/watchdog?do=trigger", "watchdog trigger");
    let done = expect_replaced(&herd, mark, &triggered, "watchdog", PERIOD / 2);
    assert_eq!(
        done.hung.str("detail"),
        "it sent WATCHDOG=trigger",
        "{:?}",
        done.hung
    );
    report("testworker, --watchdog 1s, WATCHDOG=trigger", &done, 0);
}

/// The channel form, for runtimes without datagram sockets: a Node program (not a cluster
/// worker here, so herd asks it no liveness question) that sends `{"herd":"watchdog"}`
/// every 200 ms stays; once it stops it is hung; `"trigger": true` is hung at once.
#[test]
fn the_watchdog_message_on_the_channel_is_a_heartbeat() {
    let script = TempPath::new("beat.js");
    std::fs::write(
        &script.0,
        r#"const http = require('http');
let beat = setInterval(() => process.send({herd: 'watchdog'}), 200);
http.createServer((req, res) => {
  if (req.url === '/quiet') { clearInterval(beat); res.end('quiet\n'); return; }
  if (req.url === '/trigger') { process.send({herd: 'watchdog', trigger: true}); res.end('trigger\n'); return; }
  res.end(`pid=${process.pid} slot=${process.env.HERD_WORKER_ID}\n`);
}).listen({fd: 3});
"#,
    )
    .unwrap();
    let node = node();
    let herd = herd_with(
        &[
            "run",
            "-i",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--no-node-cluster",
            "--watchdog",
            "1s",
            "--kill-timeout",
            "2s",
            "--",
            &node,
            script.s(),
        ],
        &[],
    );
    herd.wait_ready(2);
    let port = herd.port();
    // Three periods of heartbeats: nobody is hung.
    let until = Instant::now() + PERIOD * 3;
    herd.wait_until("three watchdog periods", PERIOD * 4, || {
        Instant::now() >= until
    });
    if herd.count_event("worker.hung", |_| true) > 0 {
        herd.fail("a worker that sends the watchdog message was found hung");
    }
    let mark = herd.mark(Out::Stderr);
    let quiet = ask_one_worker(&herd, port, "/quiet", "quiet");
    let done = expect_replaced(&herd, mark, &quiet, "watchdog", PERIOD * 2);
    report("node, {\"herd\":\"watchdog\"} messages stopped", &done, 0);
    let mark = herd.mark(Out::Stderr);
    let triggered = ask_one_worker(&herd, port, "/trigger", "trigger");
    let done = expect_replaced(&herd, mark, &triggered, "watchdog", PERIOD / 2);
    assert_eq!(done.hung.str("detail"), "it sent WATCHDOG=trigger");
}
