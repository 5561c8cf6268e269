//! The admin listener (`--admin`): `/livez` and `/readyz` answered from herd's loop, the
//! readiness rules (`--min-ready`, a shutdown fails it at once), a unix socket address, bad
//! addresses, and clients that hold connections or send oversized heads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::common::daemon::{testworker_app, Daemon};
use crate::common::*;
use nix::sys::signal::Signal;

/// herd run with an admin listener on a free port; returns herd and the admin base URL.
fn with_admin(extra: &[&str], command: &[&str]) -> (Herd, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let mut args = vec!["run", "--admin", &admin, "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(command);
    let herd = Herd::start(&args);
    let listening = herd.wait_event("admin.listening");
    assert_eq!(listening.str("addr"), admin);
    (herd, format!("http://{admin}"))
}

fn get(herd: &Herd, url: &str) -> (u16, String) {
    http_get(url).unwrap_or_else(|e| herd.fail(&format!("GET {url}: {e}")))
}

#[test]
fn livez_and_readyz_follow_the_workers() {
    let (mut herd, admin) = with_admin(
        &["-i", "2", "--min-ready", "all", "--ready", "delay:1500ms"],
        &[worker_bin()],
    );
    // Before the workers are ready: alive, not ready, and it says why.
    let (code, body) = get(&herd, &format!("{admin}/readyz"));
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("[-]workers failed: 0 of 2 workers ready, 2 needed"),
        "{body}"
    );
    assert!(body.ends_with("readyz check failed\n"), "{body}");
    assert_eq!(get(&herd, &format!("{admin}/livez")), (200, "ok\n".into()));
    herd.wait_ready(2);
    assert_eq!(get(&herd, &format!("{admin}/readyz")), (200, "ok\n".into()));
    let (code, body) = get(&herd, &format!("{admin}/readyz?verbose"));
    assert_eq!(code, 200);
    assert_eq!(
        body,
        "[+]workers ok: 2 of 2 workers ready, 2 needed\n[+]shutdown ok: not shutting down\nreadyz check passed\n"
    );
    assert_eq!(
        get(&herd, &format!("{admin}/livez?verbose")),
        (200, "[+]loop ok\nlivez check passed\n".into())
    );
    let (code, body) = get(&herd, &format!("{admin}/nothing"));
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("/livez, /readyz, /metrics, /metrics/app and /status"),
        "{body}"
    );
    let posted = ureq::post(&format!("{admin}/readyz")).call();
    assert!(
        matches!(posted, Err(ureq::Error::Status(405, _))),
        "{posted:?}"
    );
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// A worker that ignores SIGTERM keeps the shutdown going until the kill timeout: meanwhile
/// `/readyz` fails (from the moment the shutdown began) and `/livez` still passes.
#[test]
fn readyz_fails_as_soon_as_a_shutdown_begins() {
    let (mut herd, admin) = with_admin(
        &["-i", "1", "--ready", "delay:100ms", "--kill-timeout", "3s"],
        &["sh", "-c", "trap '' TERM; exec sleep 600"],
    );
    herd.wait_ready(1);
    assert_eq!(get(&herd, &format!("{admin}/readyz")).0, 200);
    let asked = Instant::now();
    herd.signal(Signal::SIGTERM);
    let mut flipped = None;
    while asked.elapsed() < Duration::from_secs(2) {
        let (code, body) = get(&herd, &format!("{admin}/readyz"));
        if code == 503 {
            assert!(body.contains("[-]shutdown failed: shutting down"), "{body}");
            flipped = Some(asked.elapsed());
            break;
        }
    }
    let flipped = flipped.unwrap_or_else(|| herd.fail("/readyz still passed 2 s after SIGTERM"));
    eprintln!("/readyz failed {flipped:?} after SIGTERM");
    // The record of it may reach the log a moment after /readyz already says so.
    herd.wait_event("shutdown.started");
    assert_eq!(get(&herd, &format!("{admin}/livez")).0, 200);
    // The worker is SIGKILLed at the kill timeout: exit code 3.
    assert_eq!(herd.wait_exit(T), 3);
}

#[test]
fn admin_on_a_unix_socket() {
    let dir = TempPath::new("admin");
    std::fs::create_dir_all(&dir.0).unwrap();
    let sock = dir.0.join("admin.sock");
    let admin = format!("unix:{}", sock.display());
    let mut herd = Herd::start(&[
        "run",
        "-i",
        "1",
        "--admin",
        &admin,
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    herd.wait_ready(1);
    let stream = std::os::unix::net::UnixStream::connect(&sock)
        .unwrap_or_else(|e| herd.fail(&format!("connect {admin}: {e}")));
    let answer = raw_exchange(stream, "GET /readyz HTTP/1.1\r\nHost: herd\r\n\r\n").unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("ok\n"), "{answer}");
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

#[test]
fn bad_admin_addresses_are_named_before_any_worker_starts() {
    for (args, code, needle) in [
        (vec!["--admin", "nowhere"], 2, "nowhere"),
        (
            vec!["--admin", "0.0.0.0:3999", "-p", "3999"],
            1,
            "--admin 0.0.0.0:3999",
        ),
        (
            vec!["--min-ready", "0"],
            2,
            "`0` is not a number of ready workers",
        ),
    ] {
        let mut all = vec!["run"];
        all.extend(args);
        all.extend(["--listen", "127.0.0.1:0", "--", worker_bin()]);
        let mut herd = Herd::start(&all);
        assert_eq!(herd.wait_exit(T), code, "{all:?}");
        let err = herd.lines(Out::Stderr).join("\n");
        assert!(err.contains(needle), "{all:?}: {err}");
        herd.assert_no_spawn();
    }
    // An address in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut herd = Herd::start(&[
        "run",
        "--admin",
        &addr,
        "--listen",
        "127.0.0.1:0",
        "--",
        worker_bin(),
    ]);
    assert_eq!(herd.wait_exit(T), 1);
    let err = herd.lines(Out::Stderr).join("\n");
    assert!(
        err.contains(&format!("cannot listen on --admin {addr}")),
        "{err}"
    );
    herd.assert_no_spawn();
}

/// Clients that connect and send nothing take the listener's connections (32): more are
/// closed at once, the idle ones are closed after the request timeout (5 s), then probes
/// pass again; an oversized request head is refused; the app serves throughout.
#[test]
fn hostile_clients_cost_connections_not_the_loop() {
    let (mut herd, admin) = with_admin(&["-i", "1"], &[worker_bin()]);
    herd.wait_ready(1);
    let addr = admin.trim_start_matches("http://").to_string();
    let idle: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // The 33rd is closed unanswered, at once.
    let started = Instant::now();
    let extra = loop {
        let mut extra = TcpStream::connect(&addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = extra.write_all(b"GET /livez HTTP/1.1\r\nHost: herd\r\n\r\n");
        let mut got = Vec::new();
        let _ = extra.read_to_end(&mut got);
        if got.is_empty() {
            break started.elapsed();
        }
        // An idle connection was not counted yet when this one came: once more.
        assert!(started.elapsed() < Duration::from_secs(3), "never refused");
    };
    assert!(extra < Duration::from_secs(2), "{extra:?}");
    // The app serves meanwhile.
    assert_eq!(herd.get("/").0, 200);
    // The idle ones are dropped after the request timeout; then /livez answers again.
    let freed = Instant::now();
    let answered = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        http_get(&format!("{admin}/livez")).is_ok_and(|(c, _)| c == 200)
    });
    assert!(answered, "/livez never answered again");
    let took = freed.elapsed();
    assert!(took < Duration::from_secs(8), "freed after {took:?}");
    drop(idle);
    // A request head larger than the listener reads: refused, not served.
    let mut big = TcpStream::connect(&addr).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "GET /livez HTTP/1.1\r\nHost: herd\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = big.write_all(head.as_bytes());
    let mut got = Vec::new();
    let _ = big.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || got.starts_with("HTTP/1.1 431"),
        "an oversized head was answered: {got}"
    );
    assert_eq!(get(&herd, &format!("{admin}/livez")).0, 200);
    herd.signal(Signal::SIGTERM);
    assert_eq!(herd.wait_exit(T), 0);
}

/// `--shutdown-delay`: on SIGTERM `/readyz` fails at once, the app keeps answering for the
/// delay, then the graceful stop begins.
#[test]
fn a_shutdown_delay_fails_readyz_at_once_and_serves_until_it_ends() {
    let delay = Duration::from_millis(1500);
    let (mut herd, admin) = with_admin(&["-i", "2", "--shutdown-delay", "1500ms"], &[worker_bin()]);
    herd.wait_ready(2);
    let asked = Instant::now();
    herd.signal(Signal::SIGTERM);
    // The signal reaches herd's loop asynchronously: a probe sent at the same moment may
    // still be answered before it. Poll.
    let flipped = loop {
        let (code, body) = get(&herd, &format!("{admin}/readyz"));
        if code == 503 {
            assert!(body.contains("[-]shutdown failed: shutting down"), "{body}");
            break asked.elapsed();
        }
        assert!(
            asked.elapsed() < Duration::from_millis(500),
            "/readyz still passes {:?} after SIGTERM",
            asked.elapsed()
        );
    };
    let announced = herd.wait_event("shutdown.delayed");
    assert_eq!(announced.u64("delay_ms"), 1500);
    // The app answers every request during the delay.
    let mut served = 0;
    while asked.elapsed() < delay - Duration::from_millis(300) {
        assert_eq!(herd.get("/").0, 200, "after {:?}", asked.elapsed());
        served += 1;
    }
    assert!(served > 0);
    herd.wait_event("shutdown.started");
    let stopped_after = asked.elapsed();
    assert!(
        stopped_after >= delay - Duration::from_millis(50) && stopped_after < delay * 3,
        "the stop began {stopped_after:?} after SIGTERM, the delay is {delay:?}"
    );
    eprintln!("/readyz failed {flipped:?} after SIGTERM; {served} requests served during the delay; stop began after {stopped_after:?}");
    assert_eq!(herd.wait_exit(T), 0);
}

/// `herd daemon --admin` (here through HERD_DAEMON_ADMIN, as a daemon the CLI starts takes
/// it): one listener for every app, each app's readiness from its own loop.
#[test]
fn the_daemon_serves_every_app_on_one_admin_listener() {
    let d = Daemon::new();
    let admin = format!("127.0.0.1:{}", free_port());
    let file = d.file(
        "herd.toml",
        &(testworker_app("api", 2, "") + &testworker_app("jobs", 1, "")),
    );
    let file = file.to_string_lossy().to_string();
    let mut cmd = d.command(&["start", &file]);
    cmd.env("HERD_DAEMON_ADMIN", &admin);
    let ran = d.run_command(cmd, &["start", &file]);
    assert_eq!(ran.code, 0, "{ran}");
    let listening = d.daemon_events("admin.listening");
    assert_eq!(listening.len(), 1, "{}", d.daemon_log());
    let get = |path: &str| {
        http_get(&format!("http://{admin}{path}"))
            .unwrap_or_else(|e| d.fail(&format!("GET {path}: {e}")))
    };
    // `herd start` answered once every worker was ready.
    let (code, body) = get("/readyz?verbose");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("[+]api ok: 2 of 2 workers ready, 1 needed\n"),
        "{body}"
    );
    assert!(
        body.contains("[+]jobs ok: 1 of 1 workers ready, 1 needed\n"),
        "{body}"
    );
    assert_eq!(get("/livez"), (200, "ok\n".into()));
    // An app stopped on purpose is not a failure; one whose workers cannot serve is.
    d.ok(&["stop", "jobs"]);
    let (code, body) = get("/readyz?verbose");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("[+]jobs ok: stopped\n"), "{body}");
}
