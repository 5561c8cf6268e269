//! The article's Node.js programs (examples/node/), run under herd unchanged but for the
//! port: herd is their primary. Express comes from `npm ci` in examples/node (run here when
//! node_modules is missing; .ci/run installs it up front).

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;

use crate::common::*;
use nix::sys::signal::Signal;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/node")
}

/// `herd run <flags> -- node examples/node/<script>` with APP_PORT set.
fn herd_with(script: &str, flags: &[&str], port: u16) -> Herd {
    let node = node();
    let mut cmd = Command::new(herd_bin());
    cmd.arg("run")
        .args(flags)
        .arg("--")
        .arg(node)
        .arg(examples().join(script));
    cmd.env("APP_PORT", port.to_string());
    Herd::spawn(cmd, false, true)
}

fn answers(herd: &Herd, url: &str, n: usize) -> HashSet<String> {
    let mut seen = HashSet::new();
    herd.wait_until(&format!("{n} distinct answers from {url}"), T, || {
        let (status, body) = http_get(url).unwrap_or_else(|e| herd.fail(&e));
        assert_eq!(status, 200, "{body}");
        seen.insert(body);
        seen.len() == n
    });
    seen
}

#[test]
fn basic_cluster_setup_esm() {
    let port = free_port();
    let mut herd = herd_with("basic.mjs", &["-i", "2", "--ready", "notify"], port);
    herd.wait_ready(2);
    answers(&herd, &format!("http://127.0.0.1:{port}/"), 2);
    assert!(
        herd.output(Out::Stdout)
            .iter()
            .all(|l| !l.contains("Primary")),
        "worker branch only"
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn express_with_clustering() {
    npm_installed();
    let port = free_port();
    let mut herd = herd_with("express.js", &["-i", "2", "--ready", "notify"], port);
    herd.wait_ready(2);
    let url = format!("http://127.0.0.1:{port}");
    let pids: HashSet<u64> = answers(&herd, &format!("{url}/"), 2)
        .iter()
        .map(|b| {
            let v: serde_json::Value = serde_json::from_str(b).unwrap();
            assert_eq!(v["message"], "Hello", "{b}");
            v["pid"].as_u64().unwrap()
        })
        .collect();
    let (status, body) = http_get(&format!("{url}/heavy")).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["sum"].as_u64(), Some(4_999_999_950_000_000), "{body}");
    assert!(pids.contains(&v["pid"].as_u64().unwrap()));
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn graceful_shutdown_with_the_shutdown_message() {
    let port = free_port();
    let mut herd = herd_with(
        "graceful.js",
        &["-i", "2", "--ready", "message", "--stop-message"],
        port,
    );
    herd.wait_ready(2);
    assert_eq!(
        herd.count_event("worker.ready", |e| e.str("how") == "\"ready\" message"),
        2
    );
    let slow = std::thread::spawn(move || http_get(&format!("http://127.0.0.1:{port}/slow")));
    herd.wait_output_from(
        Out::Stdout,
        0,
        "a worker serving the slow request",
        |l| l.contains("serving a slow request"),
        T,
    );
    herd.signal(Signal::SIGTERM);
    let (status, body) = slow.join().unwrap().unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(herd.wait_exit(T), 0);
    let closed = herd
        .output(Out::Stdout)
        .iter()
        .filter(|l| l.contains("closed all connections"))
        .count();
    assert_eq!(closed, 2);
}

#[test]
fn shared_state_with_ipc() {
    let port = free_port();
    let mut herd = herd_with("stats.js", &["-i", "2"], port);
    herd.wait_ready(2);
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..5 {
        assert_eq!(http_get(&format!("{url}/")).unwrap().0, 200);
    }
    let (status, body) = http_get(&format!("{url}/stats")).unwrap();
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["requests"]["total"], 6, "{body}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}
