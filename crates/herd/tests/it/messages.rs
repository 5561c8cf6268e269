//! The article's "Shared State with IPC", with herd as the primary: workers count requests
//! with `{"herd":"count"}`, ask for the totals with `{"herd":"stats"}`, and message each
//! other with `{"herd":"send"}`.

use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

const STATS_WORKER: &str = r#"
const http = require('http');
const slot = process.env.HERD_WORKER_ID;
process.on('message', (msg) => {
  if (msg && msg.hello !== undefined) console.log(`slot ${slot} got hello from ${msg.hello}`);
});
http.createServer((req, res) => {
  process.send({ herd: 'count', key: 'requests' });
  if (req.url === '/stats') {
    process.send({ herd: 'stats' });
    const handler = (msg) => {
      if (msg && msg.herd === 'stats') {
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(msg.counters));
        process.off('message', handler);
      }
    };
    process.on('message', handler);
  } else if (req.url === '/hello') {
    process.send({ herd: 'send', to: 'all', msg: { hello: slot } });
    res.end('sent\n');
  } else if (req.url === '/bad') {
    process.send({ herd: 'dance' });
    res.end('sent\n');
  } else {
    res.end(`Worker ${process.pid}\n`);
  }
}).listen({ fd: 3 });
"#;

#[test]
fn counters_stats_and_messages_between_workers() {
    let node = node();
    let script = TempPath::new("stats.js");
    std::fs::write(&script.0, STATS_WORKER).unwrap();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--listen",
        "127.0.0.1:0",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(2);
    for _ in 0..20 {
        assert_eq!(herd.get("/").0, 200);
    }
    let (status, body) = herd.get("/stats");
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    // The count of /stats itself is sent before the stats request, on the same channel.
    assert_eq!(stats["requests"]["total"], 21, "{stats}");
    let slots = stats["requests"]["slots"].as_object().unwrap();
    let sum: i64 = slots.values().map(|v| v.as_i64().unwrap()).sum();
    assert_eq!(sum, 21, "{stats}");

    // A broadcast reaches the other worker, not the sender.
    let mark = herd.mark(Out::Stdout);
    assert_eq!(herd.get("/hello").0, 200);
    let (_, line) = herd.wait_output_from(
        Out::Stdout,
        mark,
        "a worker's hello reaching the other worker",
        |l| l.contains(" got hello from "),
        T,
    );
    let sender = line.rsplit(' ').next().unwrap().to_string();
    assert!(
        !line.contains(&format!("slot {sender} got")),
        "the sender got its own broadcast: {line}"
    );

    assert_eq!(herd.get("/bad").0, 200);
    herd.wait_log("unknown herd message");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    herd.wait_line_from(
        Out::Stderr,
        0,
        "the counters of node",
        |l| {
            json(l).is_some_and(|v| {
                v["app"] == "node"
                    && v["counters"]
                        .as_str()
                        .is_some_and(|c| c.starts_with(r#"{"requests":"#))
            })
        },
        T,
    );
}

/// "herd logs the counters every 10 s when they changed": a count logged at the next 10 s
/// tick, a second count not before the tick after that, and nothing while they do not
/// change. (This test waits through three ticks, about 30 s.)
#[test]
fn counters_are_logged_every_10_s_when_they_changed() {
    // A worker that counts `hits` on each SIGUSR1 (sh runs its trap between two sleeps).
    let worker = r#"trap 'printf "{\"herd\":\"count\",\"key\":\"hits\"}\n" >&"$NODE_CHANNEL_FD"' USR1
printf '"ready"\n' >&"$NODE_CHANNEL_FD"
while :; do sleep 0.05; done"#;
    let mut herd = Herd::start(&[
        "run", "-i", "1", "--ready", "notify", "--name", "counted", "--", "sh", "-c", worker,
    ]);
    herd.wait_ready(1);
    let pid = herd.worker_pids()[0];
    let usr1 =
        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGUSR1).unwrap();
    // The record's `counters` field (JSON in a JSON string).
    let logged = |total: u64| {
        let want = format!(r#"{{"hits":{{"slots":{{"0":{total}}},"total":{total}}}}}"#);
        move |l: &str| {
            json(l).is_some_and(|v| v["app"] == "counted" && v["counters"] == want.as_str())
        }
    };
    usr1();
    // The first tick is at most 10 s away.
    herd.wait_line_from(
        Out::Stderr,
        0,
        "the first count logged",
        logged(1),
        Duration::from_secs(25),
    );
    let first = Instant::now();
    usr1();
    let (at, _) = herd.wait_line_from(
        Out::Stderr,
        0,
        "the second count logged",
        logged(2),
        Duration::from_secs(25),
    );
    let second = Instant::now();
    let between = second - first;
    if between < Duration::from_secs(8) || between > Duration::from_secs(15) {
        herd.fail(&format!(
            "the two counter lines came {between:?} apart, expected one 10 s tick"
        ));
    }
    // No change: the next tick logs nothing.
    std::thread::sleep(Duration::from_secs(12));
    let lines = herd.lines(Out::Stderr);
    let counters = |l: &String| json(l).is_some_and(|v| v.get("counters").is_some());
    if let Some(l) = lines[at + 1..].iter().find(|l| counters(l)) {
        herd.fail(&format!(
            "counters logged although they did not change: {l}"
        ));
    }
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
