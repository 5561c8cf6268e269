//! `/metrics/app`: the app's own metrics with no app change. An unmodified Express app that
//! uses prom-client's cluster pattern (examples/node/metrics.js) gets one aggregated
//! exposition; a Python worker with plain prometheus_client is scraped worker by worker
//! (`--worker-metrics`); PM2's `axm:monitor` values become gauges; and what goes wrong (a
//! worker that answers garbage, too slowly, or never) is bounded and counted.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::daemon::{testworker_app, Daemon};
use crate::common::*;

fn get(herd: &Herd, url: &str) -> String {
    match http_get(url) {
        Ok((200, body)) => body,
        other => herd.fail(&format!("GET {url}: {other:?}")),
    }
}

/// herd run of `program` with an admin listener on a free port, `n` workers ready.
fn start(n: usize, flags: &[&str], program: &[&str], env: &[(&str, &str)]) -> (Herd, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(herd_bin());
    let n_s = n.to_string();
    cmd.args([
        "run",
        "-i",
        &n_s,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        &admin,
    ])
    .args(flags)
    .arg("--")
    .args(program);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let herd = Herd::spawn(cmd, false, true);
    herd.wait_ready(n);
    (herd, admin)
}

#[test]
fn an_unmodified_prom_client_cluster_app_gets_one_aggregated_exposition() {
    npm_installed();
    let script = example("node/metrics.js");
    let node = node();
    let (herd, admin) = start(
        2,
        &["--ready", "notify"],
        &[&node, script.to_str().unwrap()],
        &[],
    );
    let port = herd.port();
    // K requests on new connections: the kernel spreads them over both workers.
    let k = 40;
    let mut pids = std::collections::BTreeSet::new();
    for _ in 0..k {
        let body = get(&herd, &format!("http://127.0.0.1:{port}/"));
        pids.insert(body.split_whitespace().next().unwrap_or("").to_string());
    }
    assert_eq!(pids.len(), 2, "both workers served: {pids:?}");
    let app = "node";
    let body = get(&herd, &format!("http://{admin}/metrics/app"));
    let series = format!("app_requests_total{{app=\"{app}\",route=\"/\"}}");
    assert_eq!(sample_value(&body, &series), Some(k as f64), "{body}");
    // One family each, summed (`sum`) or not (`min`), next to prom-client's defaults.
    assert_eq!(
        body.matches("# TYPE app_requests_total counter").count(),
        1,
        "{body}"
    );
    assert!(
        body.contains("# TYPE app_worker_started_seconds gauge"),
        "{body}"
    );
    assert!(
        body.contains("nodejs_heap_size_total_bytes{app=\"node\"}"),
        "{body}"
    );
    let start = Instant::now();
    let again = get(&herd, &format!("http://{admin}/metrics/app"));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert!(sample_value(&again, &series).is_some());
}

/// A Node program that never answers prom-client's question (it uses no prom-client) but
/// sends PM2's `axm:monitor` values: its scrape waits the bound once, then not again, and
/// the values are gauges per slot.
#[test]
fn pm2_monitor_values_become_gauges_and_silent_workers_are_not_waited_for() {
    let script = TempPath::new("axm.js");
    std::fs::write(
        &script.0,
        r#"const http = require('http');
setInterval(() => process.send({type: 'axm:monitor', data: {'Realtime user': {value: 40 + Number(process.env.NODE_APP_INSTANCE), unit: 'users'}, 'mode': {value: 'fast'}}}), 100);
http.createServer((req, res) => res.end(`pid=${process.pid}\n`)).listen(process.env.PORT);
"#,
    )
    .unwrap();
    let node = node();
    let (herd, admin) = start(2, &["--ready", "notify"], &[&node, script.s()], &[]);
    let url = format!("http://{admin}/metrics/app");
    let first = Instant::now();
    get(&herd, &url);
    assert!(
        first.elapsed() < Duration::from_secs(4),
        "{:?}",
        first.elapsed()
    );
    let mut body = String::new();
    herd.wait_until(
        "both workers' monitor values",
        Duration::from_secs(10),
        || {
            let t = Instant::now();
            body = get(&herd, &url);
            assert!(
                t.elapsed() < Duration::from_secs(1),
                "a silent worker was waited for again: {:?}",
                t.elapsed()
            );
            body.contains("pm2_Realtime_user{app=\"node\",worker=\"1\"} 41")
        },
    );
    assert!(
        body.contains("pm2_Realtime_user{app=\"node\",worker=\"0\"} 40"),
        "{body}"
    );
    assert!(
        !body.contains("mode"),
        "a value that is not a number is left out: {body}"
    );
}

/// Python's plain prometheus_client (no multiprocess mode) in each worker: herd scrapes
/// each worker's own /metrics over the path to that one worker and labels its series.
#[test]
fn worker_metrics_scrapes_each_python_worker_and_labels_its_series() {
    let python = python_with_prometheus_client();
    let script = TempPath::new("worker.py");
    std::fs::write(
        &script.0,
        r#"import os, socket
from http.server import BaseHTTPRequestHandler, HTTPServer
from prometheus_client import Counter, generate_latest, CONTENT_TYPE_LATEST
REQUESTS = Counter('py_requests', 'Requests served', ['path'])
SLOT = os.environ.get('HERD_WORKER_ID', '-')
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == '/metrics':
            body, kind = generate_latest(), CONTENT_TYPE_LATEST
        else:
            REQUESTS.labels(self.path).inc()
            body, kind = f"pid={os.getpid()} slot={SLOT}\n".encode(), 'text/plain'
        self.send_response(200)
        self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
class S(HTTPServer):
    def server_bind(self):
        pass
sock = socket.socket(fileno=3)
server = S(sock.getsockname()[:2], H, bind_and_activate=False)
server.socket = sock
server.serve_forever()
"#,
    )
    .unwrap();
    let (herd, admin) = start(
        2,
        &["--worker-metrics", "/metrics", "--name", "py"],
        &[&python, script.s()],
        &[],
    );
    let port = herd.port();
    let mut per_slot = [0u32; 2];
    for _ in 0..30 {
        let body = get(&herd, &format!("http://127.0.0.1:{port}/x"));
        let slot: usize = body
            .rsplit("slot=")
            .next()
            .unwrap_or("")
            .trim()
            .parse()
            .unwrap_or(9);
        per_slot[slot] += 1;
    }
    let body = get(&herd, &format!("http://{admin}/metrics/app"));
    for (slot, n) in per_slot.iter().enumerate() {
        let series = format!("py_requests_total{{app=\"py\",worker=\"{slot}\",path=\"/x\"}}");
        assert_eq!(
            sample_value(&body, &series),
            Some(f64::from(*n)),
            "{series}: {body}"
        );
    }
    assert_eq!(
        body.matches("# TYPE py_requests_total counter").count(),
        1,
        "{body}"
    );
    let herd_metrics = get(&herd, &format!("http://{admin}/metrics"));
    assert!(
        !herd_metrics.contains("herd_worker_scrape_errors_total{"),
        "{herd_metrics}"
    );
}

/// What goes wrong at `--worker-metrics` is bounded and counted: an answer that is not an
/// exposition (the test worker's `/` page), one that never comes (`/slow`).
#[test]
fn worker_metrics_that_fail_are_left_out_and_counted() {
    for (path, bound) in [
        ("/", Duration::from_secs(2)),
        ("/slow?ms=10000", Duration::from_secs(4)),
    ] {
        let (herd, admin) = start(2, &["--worker-metrics", path], &[worker_bin()], &[]);
        let t = Instant::now();
        let body = get(&herd, &format!("http://{admin}/metrics/app"));
        assert!(t.elapsed() < bound, "{path}: {:?}", t.elapsed());
        assert!(!body.contains("pid="), "{path}: {body}");
        let metrics = get(&herd, &format!("http://{admin}/metrics"));
        for slot in 0..2 {
            let series = format!(
                "herd_worker_scrape_errors_total{{app=\"herd-testworker\",worker=\"{slot}\"}}"
            );
            assert_eq!(
                sample_value(&metrics, &series),
                Some(1.0),
                "{path} {series}: {metrics}"
            );
        }
    }
}

#[test]
fn the_daemon_merges_every_apps_own_metrics() {
    npm_installed();
    let d = Daemon::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let script = example("node/metrics.js");
    let node = node();
    let toml = format!(
        "[apps.web]\ncommand = [{node:?}, {script:?}]\ninstances = 2\nlisten = [\"127.0.0.1:0\"]\nnamespace = \"front\"\n\n[apps.api]\ncommand = [{node:?}, {script:?}]\ninstances = 1\nlisten = [\"127.0.0.1:0\"]\n\n{}",
        testworker_app("plain", 1, "")
    );
    let file = d.file("herd.toml", &toml);
    let file = file.to_string_lossy().to_string();
    let mut cmd = d.command(&["start", &file]);
    cmd.env("HERD_DAEMON_ADMIN", &admin);
    let ran = d.run_command(cmd, &["start", &file]);
    assert_eq!(ran.code, 0, "{ran}");
    let web = d.port("web");
    for _ in 0..5 {
        let _ = http_get(&format!("http://127.0.0.1:{web}/"));
    }
    let (code, body) = http_get(&format!("http://{admin}/metrics/app")).unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body.matches("# TYPE app_requests_total counter").count(),
        1,
        "{body}"
    );
    assert!(
        body.contains("app_requests_total{namespace=\"front\",app=\"web\",route=\"/\"} 5\n"),
        "{body}"
    );
    assert!(
        body.contains("nodejs_heap_size_total_bytes{app=\"api\"}"),
        "{body}"
    );
}

/// A prom-client worker that answered before and is now stuck (its event loop blocked):
/// the scrape gives up on it within the bound, serves the other worker's metrics, and
/// counts the failure against its slot.
#[test]
fn a_stuck_prom_client_worker_is_left_out_and_counted() {
    npm_installed();
    let script = example("node/stuck-metrics.js");
    let source = std::fs::read_to_string(example("node/metrics.js"))
        .unwrap()
        .replace(
            "  app.get('/', (req, res) => {",
            "  app.get('/block', (req, res) => { res.end('blocking\\n', () => { for (;;) {} }); });\n  app.get('/', (req, res) => {",
        );
    let temp = TempPath::new("stuck-metrics.js");
    // Next to the example, so that `require` finds examples/node/node_modules.
    let path = script.with_file_name(temp.0.file_name().unwrap());
    std::fs::write(&path, source).unwrap();
    let _cleanup = TempPath(path.clone());
    let node = node();
    let (herd, admin) = start(
        2,
        &["--ready", "notify", "--name", "web"],
        &[&node, path.to_str().unwrap()],
        &[],
    );
    let url = format!("http://{admin}/metrics/app");
    let body = get(&herd, &url);
    assert!(
        body.contains("nodejs_heap_size_total_bytes{app=\"web\"}"),
        "{body}"
    );
    let port = herd.port();
    let blocked = get(&herd, &format!("http://127.0.0.1:{port}/block"));
    assert_eq!(blocked, "blocking\n");
    let t = Instant::now();
    let body = get(&herd, &url);
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(
        body.contains("nodejs_heap_size_total_bytes{app=\"web\"}"),
        "the other worker's: {body}"
    );
    let metrics = get(&herd, &format!("http://{admin}/metrics"));
    let errors: f64 = (0..2)
        .filter_map(|slot| {
            sample_value(
                &metrics,
                &format!("herd_worker_scrape_errors_total{{app=\"web\",worker=\"{slot}\"}}"),
            )
        })
        .sum();
    assert_eq!(errors, 1.0, "{metrics}");
}
