//! The web dashboard: in Debian's Chromium (playwright-core drives it; the script is
//! tests/browser/dashboard.mjs), and its event stream under reconnects and 50 pages, its
//! token, its read-only modes and its secrets, over real sockets against a real daemon.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::daemon::{testworker_app, Daemon};
use crate::common::*;

const T: Duration = Duration::from_secs(20);

/// `herd dashboard`'s URL, split: `host:port` and the token.
fn dashboard_url(d: &Daemon, extra: &[&str]) -> (String, String) {
    let mut args = vec!["dashboard"];
    args.extend_from_slice(extra);
    let url = d.ok(&args).stdout.trim().to_string();
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not a URL: {url}"));
    let (host, fragment) = rest.split_once('/').expect("a path");
    let token = fragment.strip_prefix("#token=").unwrap_or("").to_string();
    (host.to_string(), token)
}

/// One request over HTTP/1.0 (the answer ends with the connection): status and body.
fn request(addr: &str, head: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
    s.set_read_timeout(Some(T)).unwrap();
    write!(s, "{head}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// An open `/events` stream, read by a thread of its own; the events arrive on a channel.
struct Stream {
    events: std::sync::mpsc::Receiver<(String, String)>,
    socket: TcpStream,
}

impl Stream {
    fn open(addr: &str, path: &str) -> Stream {
        let mut s = TcpStream::connect(addr).expect("connect to the admin listener");
        write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let socket = s.try_clone().unwrap();
        let (tx, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16384];
            let mut head_done = false;
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if !head_done {
                    let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                        continue;
                    };
                    buf.drain(..at + 4);
                    head_done = true;
                }
                while let Some(at) = buf.windows(2).position(|w| w == b"\n\n") {
                    let event: Vec<u8> = buf.drain(..at + 2).collect();
                    let text = String::from_utf8_lossy(&event);
                    let mut name = String::new();
                    let mut data = Vec::new();
                    for line in text.lines() {
                        if let Some(n) = line.strip_prefix("event: ") {
                            name = n.to_string();
                        } else if let Some(d) = line.strip_prefix("data: ") {
                            data.push(d);
                        }
                    }
                    if tx.send((name, data.join("\n"))).is_err() {
                        return;
                    }
                }
            }
        });
        Stream { events, socket }
    }

    /// The next event named `name`, within `timeout`.
    fn next(&self, name: &str, timeout: Duration) -> serde_json::Value {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok((n, data)) if n == name => {
                    return serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("{name} is not JSON ({e}): {data}"))
                }
                Ok(_) => {}
                Err(_) => panic!("no `{name}` event within {timeout:?}"),
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.socket.shutdown(std::net::Shutdown::Both);
    }
}

/// A process's CPU time (user + system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the daemon's stat");
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A process's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("the daemon's status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn dashboard_in_chromium_shows_workers_restarts_reloads_and_acts_only_with_the_token() {
    let chromium = chromium();
    let node = node();
    let dir = playwright_installed();
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 2, ""));
    d.start_each(&file, &["api"]);
    d.wait_online("api", 2);
    let (host, token) = dashboard_url(&d, &[]);
    assert_eq!(token.len(), 32, "a 128-bit token in hex: {token}");
    let artifacts = skips_file()
        .parent()
        .expect("the target directory")
        .join("test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new(node)
        .arg(dir.join("dashboard.mjs"))
        .env("HERD_URL", format!("http://{host}/#token={token}"))
        .env("HERD_APP", "api")
        .env("HERD_WORKERS", "2")
        .env("HERD_ARTIFACTS", &artifacts)
        .env("CHROMIUM", chromium)
        .output()
        .expect("run the browser script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "the browser script printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let say = format!("{seen:#}");
    assert!(seen["error"].is_null(), "the browser script failed: {say}");
    assert_eq!(
        seen["console"],
        serde_json::json!([]),
        "console errors: {say}"
    );
    assert_eq!(
        seen["offsite"],
        serde_json::json!([]),
        "requests off localhost: {say}"
    );
    assert_eq!(seen["rows"], 2, "{say}");
    assert_eq!(seen["token_left_in_address"], false, "{say}");
    assert_eq!(seen["buttons"], 5, "reload, restart, scale ±1, stop: {say}");
    assert_eq!(seen["detail"], "api, slot 1", "arrow down + Enter: {say}");
    assert!(
        seen["log"].as_str().unwrap_or("").contains("testworker"),
        "{say}"
    );
    assert_eq!(
        seen["conn_cell"]["text"], "–",
        "reuseport: no rate herd cannot see: {say}"
    );
    assert!(
        seen["conn_cell"]["title"]
            .as_str()
            .unwrap_or("")
            .contains("herd does not see them"),
        "{say}"
    );
    assert_eq!(seen["conn_chart_hidden"], true, "{say}");
    assert!(
        seen["conn_note"]
            .as_str()
            .unwrap_or("")
            .contains("reuseport"),
        "{say}"
    );
    let restart = seen["restart_ms"].as_u64().unwrap();
    assert!(
        restart <= 2000,
        "the restart shown {restart} ms after the kill: {say}"
    );
    assert!(seen["restart_marks"].as_u64().unwrap() >= 1, "{say}");
    assert_eq!(seen["reload_generation"], 1, "{say}");
    assert_eq!(seen["reload_notice"]["ok"], true, "{say}");
    assert!(seen["reload_marks"].as_u64().unwrap() >= 1, "{say}");
    assert_eq!(seen["readonly_buttons"], 0, "{say}");
    assert!(
        seen["readonly_text"]
            .as_str()
            .unwrap()
            .contains("Read-only: actions need the token"),
        "{say}"
    );
    assert_eq!(seen["readonly_post"]["status"], 403, "{say}");
    assert_eq!(
        seen["zoom_overflow"], 0,
        "a horizontal scroll at 200 %: {say}"
    );
    assert_eq!(seen["dark_background"], "rgb(13, 17, 23)", "{say}");
    for shot in [
        "dashboard.png",
        "dashboard-zoom200.png",
        "dashboard-dark.png",
    ] {
        let len = std::fs::metadata(artifacts.join(shot)).map_or(0, |m| m.len());
        assert!(len > 10_000, "{shot}: {len} bytes");
    }
    // The reload and the restart really happened, as the daemon tells it.
    let workers = d.workers("api");
    assert!(workers.iter().all(|w| w.generation == 1), "{workers:?}");
}

#[test]
fn the_event_stream_survives_100_reconnects_without_leaking() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 2, ""));
    d.start_each(&file, &["api"]);
    let (host, _) = dashboard_url(&d, &[]);
    let daemon = d.daemon_pid().expect("the daemon's pid");
    let cycle = || {
        let s = Stream::open(&host, "/events");
        let hello = s.next("hello", T);
        let status = s.next("status", T);
        assert_eq!(status["apps"][0]["name"], "api");
        hello
    };
    // Warm: the allocator's arenas, the hub's history.
    for _ in 0..20 {
        cycle();
    }
    let settle = |what: &str| {
        // A page that left is noticed at the next frame (a second later).
        d.wait_until(what, T, || cycle()["pages"] == 1);
    };
    settle("the warm-up's pages gone");
    let (fds, rss) = (fd_count(daemon), rss_kib(daemon));
    for _ in 0..100 {
        cycle();
    }
    settle("the 100 pages gone");
    // The last page's own connection may still be open for a frame (the daemon notices a
    // page that left at its next write), in either count: a leak never goes back down.
    d.wait_until(
        &format!("the daemon's fds back to {fds} after 100 reconnects"),
        T,
        || fd_count(daemon) <= fds,
    );
    let rss_after = rss_kib(daemon);
    assert!(
        rss_after <= rss + 1024,
        "the daemon's RSS grew from {rss} KiB to {rss_after} KiB over 100 reconnects"
    );
}

#[test]
fn fifty_open_dashboards_cost_the_daemon_under_5_percent_of_a_core() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 2, ""));
    d.start_each(&file, &["api"]);
    let (host, _) = dashboard_url(&d, &[]);
    let daemon = d.daemon_pid().expect("the daemon's pid");
    // A page follows the stream and a worker's log files.
    let pages: Vec<(Stream, Stream)> = (0..50)
        .map(|i| {
            let events = Stream::open(&host, "/events");
            events.next("hello", T);
            let logs = Stream::open(&host, &format!("/logs?app=api&slot={}", i % 2));
            (events, logs)
        })
        .collect();
    for (events, _) in &pages {
        events.next("status", T);
    }
    let window = Duration::from_secs(10);
    let before = cpu_time(daemon);
    let start = Instant::now();
    // Every page keeps reading meanwhile (their threads), as a browser does.
    std::thread::sleep(window);
    let used = cpu_time(daemon) - before;
    let share = used.as_secs_f64() / start.elapsed().as_secs_f64() * 100.0;
    for (events, _) in &pages {
        // Still served: none was dropped as a slow reader.
        events.next("status", T);
    }
    eprintln!("50 dashboards: the daemon used {share:.2} % of a core");
    assert!(
        share <= 5.0,
        "50 dashboards cost the daemon {share:.2} % of a core"
    );
}

#[test]
fn the_token_is_the_daemons_own_and_changes_at_each_start() {
    let d = Daemon::new();
    let file = d.file("herd.toml", &testworker_app("api", 1, ""));
    d.start_each(&file, &["api"]);
    let (host, token) = dashboard_url(&d, &[]);
    let path = d.home().join("dashboard.token");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), token);
    // One listener: asking again (even elsewhere) answers the same address.
    assert_eq!(dashboard_url(&d, &["--addr", "127.0.0.1:0"]).0, host);
    let ro = d.ok(&["dashboard", "--read-only"]).stdout;
    assert_eq!(ro.trim(), format!("http://{host}/"));

    let action = r#"{"app":"api","verb":"scale","by":1}"#;
    let post = |token: &str| {
        request(
            &host,
            &format!("POST /api/action HTTP/1.0\r\nHost: {host}\r\nX-Herd-Token: {token}\r\nContent-Type: application/json"),
            action,
        )
    };
    let (status, body) = post("0123456789abcdef0123456789abcdef");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not this daemon's"), "{body}");
    let (status, body) = request(
        &host,
        "POST /api/action HTTP/1.0\r\nHost: 127.0.0.1",
        action,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("actions need the token"), "{body}");
    let (status, body) = post(&token);
    assert_eq!(status, 202, "{body}");
    d.wait_online("api", 2);
    let (status, body) = request(
        &host,
        &format!("POST /api/action HTTP/1.0\r\nHost: {host}\r\nX-Herd-Token: {token}"),
        r#"{"app":"api","verb":"nuke"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown verb `nuke`"), "{body}");

    // A new daemon, a new token: the old one acts no more.
    d.ok(&["kill"]);
    d.ok(&["ping"]);
    let (host, new) = dashboard_url(&d, &[]);
    assert_ne!(new, token);
    let (status, body) = request(
        &host,
        &format!("POST /api/action HTTP/1.0\r\nHost: {host}\r\nX-Herd-Token: {token}"),
        action,
    );
    assert_eq!(status, 403, "{body}");
}

#[test]
fn pages_never_see_environment_values() {
    let d = Daemon::new();
    let file = d.file(
        "herd.toml",
        &testworker_app("api", 1, "env = { API_SECRET = \"hunter2-do-not-show\" }\n"),
    );
    d.start_each(&file, &["api"]);
    let (host, _) = dashboard_url(&d, &[]);
    let s = Stream::open(&host, "/events");
    let status = s.next("status", T);
    let app = &status["apps"][0];
    assert_eq!(
        app["env_keys"],
        serde_json::json!(["API_SECRET"]),
        "{app:#}"
    );
    assert!(!status.to_string().contains("hunter2"), "{status:#}");
    let (code, body) = request(&host, "GET /status HTTP/1.0\r\nHost: 127.0.0.1", "");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("API_SECRET"), "{body}");
    assert!(
        !body.contains("hunter2"),
        "/status shows an env value: {body}"
    );
    for path in ["/metrics", "/metrics/app"] {
        let (code, body) = request(
            &host,
            &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1"),
            "",
        );
        assert_eq!(code, 200, "{path}: {body}");
        assert!(
            !body.contains("hunter2"),
            "{path} shows an env value: {body}"
        );
    }
}

#[test]
fn a_loopback_listener_refuses_other_host_names() {
    let d = Daemon::new();
    let (host, _) = dashboard_url(&d, &[]);
    // A page of evil.example whose name resolves to 127.0.0.1 (DNS rebinding) reads nothing.
    let (status, body) = request(&host, "GET /events HTTP/1.0\r\nHost: evil.example", "");
    assert_eq!(status, 421, "{body}");
    assert!(body.contains("open it as 127.0.0.1"), "{body}");
    for name in ["localhost", "127.0.0.1", "[::1]"] {
        let (status, body) = request(&host, &format!("GET / HTTP/1.0\r\nHost: {name}:1"), "");
        assert_eq!(status, 200, "Host {name}: {body}");
        assert!(body.contains("<title>herd</title>"), "{body}");
    }
}

/// `herd run` of one worker with an admin listener on `addr`.
fn run_with_admin(addr: &str) -> Herd {
    Herd::start(&[
        "run",
        "-i",
        "1",
        "-p",
        "0",
        "--admin",
        addr,
        "--",
        worker_bin(),
    ])
}

#[test]
fn herd_runs_dashboard_is_read_only_and_says_why() {
    let herd = run_with_admin("127.0.0.1:0");
    let addr = herd.wait_event("admin.listening").str("addr").to_string();
    herd.wait_ready(1);
    let (code, body) = request(&addr, "GET /api/access HTTP/1.0\r\nHost: 127.0.0.1", "");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"actions\":false") && body.contains("herd run's has no token"),
        "{body}"
    );
    let (code, body) = request(
        &addr,
        "POST /api/action HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Herd-Token: anything",
        r#"{"app":"x","verb":"reload"}"#,
    );
    assert_eq!(code, 403, "{body}");
    let s = Stream::open(&addr, "/events");
    assert!(s.next("hello", T)["read_only"]
        .as_str()
        .unwrap()
        .contains("read-only"));
    let status = s.next("status", T);
    assert_eq!(status["apps"][0]["logs"], false, "{status:#}");
    assert_eq!(
        status["apps"][0]["status"]["workers"][0]["state"], "online",
        "{status:#}"
    );
    let (code, body) = request(
        &addr,
        "GET /logs?app=x&slot=0 HTTP/1.0\r\nHost: 127.0.0.1",
        "",
    );
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("follows no log file"), "{body}");
}

#[test]
fn an_admin_listener_beyond_loopback_is_announced() {
    let herd = run_with_admin("0.0.0.0:0");
    herd.wait_log("is reachable from other hosts");
    let d = Daemon::new();
    d.ok(&["dashboard", "--addr", "0.0.0.0:0"]);
    d.wait_until("the daemon's warning", T, || {
        d.daemon_log().contains("is reachable from other hosts")
    });
}
