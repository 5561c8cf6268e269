//! Harness for the integration tests: the real `herd` binary and the real `hello`
//! example, their output collected by threads, and waits on that output (no sleeps).
//!
//! The binaries are found next to the test executable (`target/debug/herd`,
//! `target/debug/examples/hello`), and built first with `cargo build -p herd --bin herd
//! -p herd-worker --example hello`: a no-op when `cargo test` already built them, and what
//! makes `cargo test -p herd-worker` work on its own in a clean tree.
//!
//! herd runs with `--log-format json`: the tests wait for its lifecycle records by their
//! `event` name and fields ([`Proc::wait_events`]), not by its English sentences.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bound of every wait (a loaded 2-core machine, tests in parallel).
pub const T: Duration = Duration::from_secs(20);

/// `target/debug` (or wherever this test runs from).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/debug/deps/<test>-<hash>
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .to_path_buf()
}

/// Builds herd and the example once per test process; returns (herd, hello).
pub fn bins() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "herd", "--bin", "herd"])
            .args(["-p", "herd-worker", "--example", "hello"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of herd and hello failed");
        let dir = target_dir();
        (dir.join("herd"), dir.join("examples").join("hello"))
    })
}

/// A running process whose stdout and stderr lines are collected.
pub struct Proc {
    pub child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let out: Box<dyn Read + Send> = Box::new(child.stdout.take().expect("stdout"));
        let err: Box<dyn Read + Send> = Box::new(child.stderr.take().expect("stderr"));
        for stream in [out, err] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.0.lock().unwrap().push(line);
                    lines.1.notify_all();
                }
            });
        }
        Proc { child, lines }
    }

    /// Every line so far.
    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Waits for a line matching `pred`; returns it.
    pub fn wait_line(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + T;
        let mut lines = self.lines.0.lock().unwrap();
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return l.clone();
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "no line {what} within {T:?}; output:\n{}",
                lines.join("\n")
            );
            lines = self.lines.1.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits until `n` lines match `pred`.
    pub fn wait_count(&self, what: &str, n: usize, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + T;
        let mut lines = self.lines.0.lock().unwrap();
        loop {
            if lines.iter().filter(|l| pred(l)).count() >= n {
                return;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "not {n} lines {what} within {T:?}; output:\n{}",
                lines.join("\n")
            );
            lines = self.lines.1.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// herd's records named `event` so far (JSON objects of `--log-format json`).
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Waits until `n` records named `event` satisfy `pred`; returns them.
    pub fn wait_events(
        &self,
        event: &str,
        n: usize,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Vec<serde_json::Value> {
        let is = |l: &str| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["event"] == event && pred(&v))
        };
        self.wait_count(&format!("of the event {event:?}"), n, is);
        self.events(event).into_iter().filter(|v| pred(v)).collect()
    }

    /// Sends SIGTERM.
    pub fn term(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Sends `sig`.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which is not reaped before `wait` (so the pid
        // is not recycled).
        unsafe { libc::kill(pid, sig) };
    }

    /// Waits for the exit (bounded by [`T`], then SIGKILL and a failure).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + T;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit within {T:?}; output:\n{}", self.output());
            }
            // Polling the exit status: std offers no wait with a timeout.
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.term();
            let _ = self.wait_exit();
        }
    }
}

/// Starts `herd run --log-format json <args> -- hello` on a free port (`-p 0`); returns
/// herd and the port (of its `herd.listening` record).
pub fn herd(args: &[&str]) -> (Proc, u16) {
    let (herd, hello) = bins();
    let mut cmd = Command::new(herd);
    cmd.args(["run", "--log-format", "json"])
        .args(args)
        .args(["-p", "0", "--"])
        .arg(hello);
    let p = Proc::spawn(cmd);
    let listening = p.wait_events("herd.listening", 1, |_| true);
    let addr = listening[0]["addr"].as_str().unwrap_or_default();
    let port = addr
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {:?}", listening[0]));
    (p, port)
}

/// `GET path` on 127.0.0.1:port; the body.
pub fn get(port: u16, path: &str) -> String {
    try_get(port, path).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET path` on a new connection to 127.0.0.1:port; the body of a 200, or what went wrong.
pub fn try_get(port: u16, path: &str) -> Result<String, String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    conn.set_read_timeout(Some(T)).map_err(|e| e.to_string())?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer)
        .map_err(|e| format!("read: {e} (got {answer:?})"))?;
    match answer.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.1 200") => Ok(body.to_string()),
        _ => Err(format!("bad answer to GET {path}: {answer:?}")),
    }
}

/// The `slot=` of a `pid=… slot=…` body.
pub fn slot_of(body: &str) -> String {
    body.split_whitespace()
        .find_map(|w| w.strip_prefix("slot="))
        .unwrap_or_else(|| panic!("no slot in {body:?}"))
        .to_string()
}
