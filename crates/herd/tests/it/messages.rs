//! The article's "Shared State with IPC", with herd as the primary: workers count requests
//! with `{"herd":"count"}`, ask for the totals with `{"herd":"stats"}`, and message each
//! other with `{"herd":"send"}`.

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
    let (_, line) = herd.wait_line_from(
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
    herd.wait_log("counters of node: {\"requests\":");
}
