//! The worker channel (NODE_CHANNEL_FD, Node's JSON-lines IPC): `"ready"` as readiness from
//! any language, `--stop-message`, and a parser that survives whatever a worker writes.

use std::time::{Duration, Instant};

use crate::common::*;
use nix::sys::signal::Signal;

/// The article's graceful-shutdown worker, reduced to its worker code: it says `ready`
/// late and stops on the `shutdown` message. With `--ready message` its `listening` (it is
/// a Node cluster worker under herd) does not count: only the message makes it ready.
const NODE_WORKER: &str = r#"
const http = require('http');
const server = http.createServer((req, res) => res.end(`Worker ${process.pid}\n`));
server.listen({ fd: 3 }, () => setTimeout(() => process.send('ready'), 600));
process.on('message', (msg) => {
  if (msg === 'shutdown') {
    console.log(`Worker ${process.pid} shutting down...`);
    server.close(() => {
      console.log(`Worker ${process.pid} closed all connections`);
      process.exit(0);
    });
  }
});
"#;

#[test]
fn node_ready_message_and_shutdown_message() {
    let node = node();
    let script = TempPath::new("worker.js");
    std::fs::write(&script.0, NODE_WORKER).unwrap();
    let started = Instant::now();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "2",
        "--ready",
        "message",
        "--stop-message",
        "--listen",
        "127.0.0.1:0",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(2);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "ready before the workers said so"
    );
    assert_eq!(
        herd.count_event("worker.ready", |e| e.str("how") == "\"ready\" message"),
        2
    );
    let (status, body) = herd.get("/");
    assert_eq!(status, 200, "{body}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
    let out = herd.output(Out::Stdout);
    assert_eq!(
        out.iter()
            .filter(|l| l.contains("closed all connections"))
            .count(),
        2,
        "both workers stopped on the message: {out:?}"
    );
    assert_eq!(
        herd.count_event("worker.exited", |e| e.str("status") == "code 0"),
        2,
        "not by a signal"
    );
}

#[test]
fn any_language_can_say_ready_on_the_channel() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
        "--",
        "/bin/sh",
        "-c",
        r#"printf '"ready"\n' >&"$NODE_CHANNEL_FD"; exec "$0""#,
        worker_bin(),
    ]);
    herd.wait_ready(1);
    assert_eq!(herd.get("/").0, 200);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A non-JSON line, bad UTF-8 and a 2 MiB line are each reported with the worker's slot
/// and pid; the worker keeps running and its `"ready"` after them still counts.
#[test]
fn garbage_on_the_channel_is_logged_and_ignored() {
    let python = python();
    let script = r#"
import os, sys
fd = int(os.environ["NODE_CHANNEL_FD"])
os.write(fd, b"ready\n")
os.write(fd, b"\xff\xfe\n")
os.write(fd, b"x" * (2 * 1024 * 1024) + b"\n")
os.write(fd, b'{"type":"request"}\n"ready"\n')
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "notify",
        "--listen",
        "127.0.0.1:0",
        "--",
        &python,
        "-c",
        script,
        worker_bin(),
    ]);
    herd.wait_ready(1);
    let garbage: Vec<String> = herd
        .lines(Out::Stderr)
        .into_iter()
        .filter(|l| l.contains("garbage on the channel of worker"))
        .collect();
    assert_eq!(garbage.len(), 3, "{garbage:?}");
    assert!(garbage[0].contains("not JSON"), "{garbage:?}");
    assert!(garbage[1].contains("not UTF-8"), "{garbage:?}");
    assert!(garbage[2].contains("longer than"), "{garbage:?}");
    assert!(
        garbage.iter().all(|l| l.contains(":0 (pid ")),
        "{garbage:?}"
    );
    assert_eq!(herd.get("/").0, 200);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `--stop-message` to a worker that ignores its channel: the kill timeout still applies.
#[test]
fn stop_message_ignored_is_killed_after_the_kill_timeout() {
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--stop-message",
        "--kill-timeout",
        "1s",
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(1);
    let asked = Instant::now();
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 3);
    let took = asked.elapsed();
    // The 1 s kill timeout, plus slack for a loaded machine.
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    herd.wait_event("worker.kill_timeout");
}

/// A Node worker that sends a handle to herd (which takes none) gets NACKs, gives up after
/// three tries, and its later messages still arrive: its `"ready"` makes it ready.
#[test]
fn a_handle_sent_to_herd_is_refused_and_the_channel_goes_on() {
    let node = node();
    let script = TempPath::new("handle.js");
    std::fs::write(
        &script.0,
        "const s = require('net').createServer().listen(0, () => { process.send('take this', s); process.send('ready'); });\n",
    )
    .unwrap();
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "message",
        "--no-node-cluster",
        "--",
        &node,
        script.s(),
    ]);
    herd.wait_ready(1);
    assert!(herd.count_log("sent a handle to herd") >= 1);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A worker that never acknowledges a handle: later messages do not wait behind it (herd
/// keeps several handles in flight, unlike Node's sender), and herd gives up on it after
/// the ACK timeout and closes its copy.
#[test]
fn a_handle_never_acknowledged_is_given_up_and_the_channel_goes_on() {
    let python = python();
    let port = free_port();
    // A fake cluster worker: asks for a server (herd answers with a handle), never ACKs it,
    // then asks for the stats and reports how long the answer took.
    let script = format!(
        r#"
import json, os, time
fd = int(os.environ["NODE_CHANNEL_FD"])
os.write(fd, b'"ready"\n')
os.write(fd, json.dumps({{"cmd":"NODE_CLUSTER","act":"queryServer","address":None,"port":{port},"addressType":4,"seq":0}}).encode() + b"\n")
start = time.monotonic()
os.write(fd, b'{{"herd":"stats"}}\n')
buf = b""
while b'"stats"' not in buf:
    buf += os.read(fd, 65536)
print("stats after %.1f s" % (time.monotonic() - start), flush=True)
time.sleep(60)
"#
    );
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "message",
        "--kill-timeout",
        "1s",
        "--",
        &python,
        "-c",
        &script,
    ]);
    herd.wait_ready(1);
    let (_, line) = herd.wait_output_from(
        Out::Stdout,
        0,
        "the stats answer",
        |l| l.contains("stats after"),
        T,
    );
    let secs: f64 = line
        .rsplit("after ")
        .next()
        .unwrap()
        .trim_end_matches(" s")
        .parse()
        .unwrap();
    assert!(
        secs < 2.0,
        "the stats answer waited behind the unacknowledged handle: {line}"
    );
    herd.wait_log("did not acknowledge a handle");
    herd.signal(Signal::SIGTERM);
    // A (fake) Node cluster worker is stopped like Node's `worker.kill()`: `disconnect`
    // first, the stop signal once it closes its channel. This one never does: it is
    // SIGKILLed after the 1 s kill timeout, and herd says so with its exit code.
    assert_eq!(herd.wait_exit(T), 3);
}

/// sd_notify `STATUS=…` is logged with the worker's slot, `WATCHDOG=1` is understood (not
/// reported as garbage), and the worker goes on serving.
#[test]
fn status_and_watchdog_on_notify_socket() {
    let python = python();
    let script = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
p = os.environ["NOTIFY_SOCKET"]
s.sendto(b"STATUS=warming up", p)
s.sendto(b"WATCHDOG=1", p)
s.sendto(b"READY=1\nSTATUS=serving 3 conns\nWATCHDOG=1", p)
os.execv(sys.argv[1], sys.argv[1:])
"#;
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--ready",
        "notify",
        "--name",
        "st",
        "--listen",
        "127.0.0.1:0",
        "--",
        &python,
        "-c",
        script,
        worker_bin(),
    ]);
    herd.wait_ready(1);
    let is = |text: &'static str| {
        move |e: &Event| e.app() == "st" && e.slot() == 0 && e.str("status") == text
    };
    let (first, _) = herd.wait_event_from(0, "worker.status", is("warming up"));
    herd.wait_event_from(first + 1, "worker.status", is("serving 3 conns"));
    assert_eq!(herd.get("/").0, 200);
    let garbage: Vec<String> = herd
        .lines(Out::Stderr)
        .into_iter()
        .filter(|l| l.contains("NOTIFY_SOCKET") || l.contains("WATCHDOG"))
        .collect();
    assert!(garbage.is_empty(), "{garbage:?}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
