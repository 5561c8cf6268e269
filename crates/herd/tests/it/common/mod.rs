//! Test harness for herd's integration tests: runs the real `herd` binary with piped
//! output, collects every line on background threads, and offers polling helpers
//! (log lines, HTTP answers, process states) that fail with herd's captured output.
//!
//! Every helper that waits polls for an event with a generous bound; nothing sleeps to
//! "let things settle".

#![allow(dead_code)]

pub mod daemon;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Default bound for anything we wait for (a noisy 2-core machine, tests in parallel).
pub const T: Duration = Duration::from_secs(20);

pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

pub fn worker_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd-testworker")
}

/// The app name herd derives from the test worker's file name.
pub const APP: &str = "herd-testworker";

/// Which of herd's output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

#[derive(Default)]
struct State {
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// (slot, pid) from every "spawned as pid N" line, in order.
    spawned: Vec<(usize, u32)>,
    /// Start time (/proc stat field 22) of each spawned pid, read when its line arrived,
    /// so Drop never kills a recycled pid.
    starttimes: HashMap<u32, u64>,
    eof: usize,
}

struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

/// A unique path in the temp folder for this test process.
pub fn temp_path(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    std::env::temp_dir().join(format!("herd-it-{}-{n}-{tag}", std::process::id()))
}

/// Removes a file or folder when dropped.
pub struct TempPath(pub PathBuf);

impl TempPath {
    pub fn new(tag: &str) -> TempPath {
        TempPath(temp_path(tag))
    }
    pub fn s(&self) -> &str {
        self.0.to_str().expect("utf-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running herd. Dropping it SIGKILLs herd's process group, then every worker pid
/// learned from the log (only if that pid still belongs to the same process).
pub struct Herd {
    child: Child,
    shared: Arc<Shared>,
    exit: Option<ExitStatus>,
    /// False when herd runs in another pid namespace (its logged pids are not ours).
    learn_pids: bool,
    merged: bool,
    started: Instant,
}

impl Herd {
    /// `herd <args>` with stdout and stderr piped separately.
    pub fn start(args: &[&str]) -> Herd {
        let mut cmd = Command::new(herd_bin());
        cmd.args(args);
        Herd::spawn(cmd, false, true)
    }

    /// `herd run -i N --listen 127.0.0.1:0 -- herd-testworker`: the plain cluster most tests need.
    pub fn testworkers(n: usize) -> Herd {
        let n = n.to_string();
        Herd::start(&[
            "run",
            "-i",
            &n,
            "--listen",
            "127.0.0.1:0",
            "--",
            worker_bin(),
        ])
    }

    /// `herd <args>` with stdout and stderr on one pipe (2>&1), so the order of worker
    /// lines and herd's own log lines can be compared. Both `Out`s see every line.
    pub fn start_merged(args: &[&str]) -> Herd {
        let mut cmd = Command::new(herd_bin());
        cmd.args(args);
        Herd::spawn(cmd, true, true)
    }

    /// Any command that runs herd (a wrapper such as setpriv or unshare).
    pub fn spawn(mut cmd: Command, merged: bool, learn_pids: bool) -> Herd {
        cmd.stdin(Stdio::null());
        // Its own group: Drop kills herd (and a wrapper) without touching the test runner.
        cmd.process_group(0);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let child;
        if merged {
            let (r, w) = nix::unistd::pipe().expect("pipe");
            let w2: OwnedFd = w.try_clone().expect("dup");
            cmd.stdout(Stdio::from(w)).stderr(Stdio::from(w2));
            child = cmd.spawn().expect("cannot start herd");
            drop(cmd); // closes our copies of the write end
            reader(std::fs::File::from(r), shared.clone(), None, learn_pids);
        } else {
            cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
            let mut c = cmd.spawn().expect("cannot start herd");
            let out = c.stdout.take().unwrap();
            let err = c.stderr.take().unwrap();
            reader(out, shared.clone(), Some(Out::Stdout), learn_pids);
            reader(err, shared.clone(), Some(Out::Stderr), learn_pids);
            child = c;
        }
        Herd {
            child,
            shared,
            exit: None,
            learn_pids,
            merged,
            started: Instant::now(),
        }
    }

    /// herd's pid (or its wrapper's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// All lines of a stream so far.
    pub fn lines(&self, out: Out) -> Vec<String> {
        let st = self.shared.state.lock().unwrap();
        match out {
            Out::Stdout => st.stdout.clone(),
            Out::Stderr => st.stderr.clone(),
        }
    }

    /// Number of lines of a stream so far: a position for `wait_line`.
    pub fn mark(&self, out: Out) -> usize {
        let st = self.shared.state.lock().unwrap();
        match out {
            Out::Stdout => st.stdout.len(),
            Out::Stderr => st.stderr.len(),
        }
    }

    /// herd's captured output, for failure messages.
    pub fn dump(&self) -> String {
        let st = self.shared.state.lock().unwrap();
        let tail = |v: &Vec<String>| {
            let skip = v.len().saturating_sub(200);
            let mut s = String::new();
            if skip > 0 {
                s.push_str(&format!("  [... {skip} earlier lines]\n"));
            }
            for l in &v[skip..] {
                s.push_str("  ");
                s.push_str(l);
                s.push('\n');
            }
            s
        };
        format!(
            "--- herd stderr ---\n{}--- herd stdout ---\n{}---",
            tail(&st.stderr),
            tail(&st.stdout)
        )
    }

    /// Panics with `msg` and herd's output.
    pub fn fail(&self, msg: &str) -> ! {
        panic!(
            "{msg}\n(after {:.1} s)\n{}",
            self.started.elapsed().as_secs_f64(),
            self.dump()
        )
    }

    /// Waits for the first line at index >= `from` of `out` that satisfies `pred`;
    /// returns its index and text.
    pub fn wait_line_from(
        &self,
        out: Out,
        from: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> (usize, String) {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            let v = match out {
                Out::Stdout => &st.stdout,
                Out::Stderr => &st.stderr,
            };
            if let Some((i, l)) = v.iter().enumerate().skip(from).find(|(_, l)| pred(l)) {
                return (i, l.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.fail(&format!(
                    "timed out after {timeout:?} waiting for a {out:?} line: {what}"
                ));
            }
            // A bounded wait so an exited herd (eof) still reaches the timeout check.
            st = self
                .shared
                .cv
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(200)))
                .unwrap()
                .0;
        }
    }

    /// Waits for a line of stderr containing `needle`, from index `from`.
    pub fn wait_log_from(&self, from: usize, needle: &str) -> (usize, String) {
        self.wait_line_from(
            Out::Stderr,
            from,
            &format!("containing {needle:?}"),
            |l| l.contains(needle),
            T,
        )
    }

    /// Waits for the first stderr line containing `needle`.
    pub fn wait_log(&self, needle: &str) -> String {
        self.wait_log_from(0, needle).1
    }

    /// Waits for the `n`th (1-based) line of `out` satisfying `pred`.
    pub fn wait_nth(
        &self,
        out: Out,
        n: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let mut from = 0;
        let mut line = String::new();
        for k in 1..=n {
            let (i, l) = self.wait_line_from(
                out,
                from,
                &format!("occurrence {k} of {n} of {what}"),
                &pred,
                timeout,
            );
            from = i + 1;
            line = l;
        }
        line
    }

    /// Lines of stderr containing `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.lines(Out::Stderr)
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits until `n` workers have logged they are ready (counted over the whole run).
    pub fn wait_ready(&self, n: usize) {
        self.wait_nth(
            Out::Stderr,
            n,
            "a worker ready line",
            |l| l.contains(") ready after "),
            T,
        );
    }

    /// The TCP port from `listening on 127.0.0.1:PORT`.
    pub fn port(&self) -> u16 {
        let line = self.wait_log("listening on 127.0.0.1:");
        let rest = &line[line.find("listening on 127.0.0.1:").unwrap() + 23..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        digits.parse().unwrap_or_else(|_| {
            self.fail(&format!("no port in the line {line:?}"));
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port())
    }

    /// GET on a fresh connection; fails the test on a transport error.
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = self.url(path);
        http_get(&url).unwrap_or_else(|e| self.fail(&format!("GET {url} failed: {e}")))
    }

    /// GET `/` on a fresh connection, expecting 200; returns (pid, slot) of the worker.
    pub fn who(&self) -> (u32, usize) {
        let (status, body) = self.get("/");
        if status != 200 {
            self.fail(&format!("GET / answered {status}: {body:?}"));
        }
        ident(&body).unwrap_or_else(|| self.fail(&format!("unexpected body of /: {body:?}")))
    }

    /// Makes fresh-connection requests to `/` until `pred(pid, slot)` holds (for at most
    /// `T`); returns the matching (pid, slot).
    pub fn who_until(&self, what: &str, pred: impl Fn(u32, usize) -> bool) -> (u32, usize) {
        let deadline = Instant::now() + T;
        let mut seen: HashMap<(u32, usize), usize> = HashMap::new();
        let mut n = 0;
        while Instant::now() < deadline {
            let (pid, slot) = self.who();
            if pred(pid, slot) {
                return (pid, slot);
            }
            n += 1;
            *seen.entry((pid, slot)).or_default() += 1;
        }
        self.fail(&format!(
            "no answer from {what} in {n} requests over {T:?}; answers ((pid, slot) -> count): {seen:?}"
        ))
    }

    /// Sends `sig` to herd (the direct child).
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid() as i32), sig)
            .unwrap_or_else(|e| self.fail(&format!("cannot send {sig} to herd: {e}")));
    }

    /// herd's exit status if it has exited (reaps it).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits for herd to end (reaps it) and for its output pipes to close.
    pub fn wait_status(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_exit() {
                self.wait_eof(Duration::from_secs(5));
                return st;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("herd did not exit within {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for herd to exit and returns its exit code (fails if it died by a signal).
    pub fn wait_exit(&mut self, timeout: Duration) -> i32 {
        let st = self.wait_status(timeout);
        st.code()
            .unwrap_or_else(|| self.fail(&format!("herd died by a signal: {st:?}")))
    }

    /// Waits until herd's output pipes are closed (every line collected).
    pub fn wait_eof(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        let pipes = if self.merged { 1 } else { 2 };
        while st.eof < pipes {
            let now = Instant::now();
            if now >= deadline {
                return; // a grandchild may hold a pipe; the lines so far are what we have
            }
            st = self.shared.cv.wait_timeout(st, deadline - now).unwrap().0;
        }
    }

    /// (slot, pid) of every worker spawned so far, in order.
    pub fn spawned(&self) -> Vec<(usize, u32)> {
        self.shared.state.lock().unwrap().spawned.clone()
    }

    pub fn worker_pids(&self) -> Vec<u32> {
        self.spawned().into_iter().map(|(_, p)| p).collect()
    }

    /// Waits until the `n`th spawn (1-based, over the whole run) is logged; returns it.
    pub fn wait_spawned(&self, n: usize) -> (usize, u32) {
        self.wait_nth(
            Out::Stderr,
            n,
            "a spawned line",
            |l| l.contains(" spawned as pid "),
            T,
        );
        self.spawned()[n - 1]
    }

    /// Polls `cond` until true, or fails with `what` and herd's output.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !poll_until(timeout, Duration::from_millis(10), cond) {
            self.fail(&format!("timed out after {timeout:?} waiting until {what}"));
        }
    }

    /// Asserts that no worker process was ever started.
    pub fn assert_no_spawn(&self) {
        if self.count_log("spawned") > 0 || !self.spawned().is_empty() {
            self.fail("a worker was started although the input was bad");
        }
    }

    /// Waits until every pid in `pids` is gone (no process, not even a zombie).
    pub fn wait_gone(&self, pids: &[u32], timeout: Duration) {
        self.wait_until(
            &format!(
                "the processes {pids:?} are gone (states: {:?})",
                states(pids)
            ),
            timeout,
            || pids.iter().all(|p| proc_state(*p).is_none()),
        );
    }
}

impl Drop for Herd {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        if self.try_exit().is_none() {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = self.child.wait();
        }
        if self.learn_pids {
            let st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            for (&wpid, &start) in &st.starttimes {
                if stat(wpid).map(|s| s.starttime) == Some(start) {
                    let _ = killpg(Pid::from_raw(wpid as i32), Signal::SIGKILL);
                    let _ = kill(Pid::from_raw(wpid as i32), Signal::SIGKILL);
                }
            }
        }
    }
}

fn reader(pipe: impl Read + Send + 'static, shared: Arc<Shared>, out: Option<Out>, learn: bool) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if buf.last() == Some(&b'\n') {
                buf.pop();
            }
            let line = String::from_utf8_lossy(&buf).into_owned();
            let mut st = shared.state.lock().unwrap();
            if out != Some(Out::Stdout) {
                if let Some((slot, pid)) = parse_spawned(&line) {
                    st.spawned.push((slot, pid));
                    if learn {
                        if let Some(s) = stat(pid) {
                            st.starttimes.insert(pid, s.starttime);
                        }
                    }
                }
            }
            match out {
                Some(Out::Stdout) => st.stdout.push(line),
                Some(Out::Stderr) => st.stderr.push(line),
                None => {
                    st.stdout.push(line.clone());
                    st.stderr.push(line);
                }
            }
            drop(st);
            shared.cv.notify_all();
        }
        shared.state.lock().unwrap().eof += 1;
        shared.cv.notify_all();
    });
}

/// (slot, pid) of a `worker APP:SLOT spawned as pid PID` line (text or JSON).
pub fn parse_spawned(line: &str) -> Option<(usize, u32)> {
    let i = line.find(" spawned as pid ")?;
    let pid: String = line[i + 16..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let head = &line[..i];
    let w = head.rfind("worker ")?;
    let slot = head[w..].rsplit(':').next()?.parse().ok()?;
    Some((slot, pid.parse().ok()?))
}

/// (pid, slot) from the test worker's `pid=P slot=S gen=G` body.
pub fn ident(body: &str) -> Option<(u32, usize)> {
    let mut pid = None;
    let mut slot = None;
    for kv in body.split_whitespace() {
        if let Some(v) = kv.strip_prefix("pid=") {
            pid = v.parse().ok();
        } else if let Some(v) = kv.strip_prefix("slot=") {
            slot = v.parse().ok();
        }
    }
    Some((pid?, slot?))
}

/// `KEY=VALUE` lines of a body as a map.
pub fn kv(body: &str) -> HashMap<String, String> {
    body.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Calls `cond` every `every` until it is true (true) or `timeout` passed (false).
pub fn poll_until(timeout: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// GET on a fresh connection with timeouts. Non-2xx statuses are answers, not errors.
pub fn http_get(url: &str) -> Result<(u16, String), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build();
    agent_get(&agent, url)
}

/// GET with a given agent (whose pool may reuse a keep-alive connection).
pub fn agent_get(agent: &ureq::Agent, url: &str) -> Result<(u16, String), String> {
    match agent.get(url).call() {
        Ok(r) => {
            let status = r.status();
            let body = r.into_string().map_err(|e| format!("reading body: {e}"))?;
            Ok((status, body))
        }
        Err(ureq::Error::Status(code, r)) => Ok((code, r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}

/// A raw HTTP/1.1 exchange over any stream: writes `request`, reads to EOF.
pub fn raw_exchange(mut s: impl Read + Write, request: &str) -> std::io::Result<String> {
    s.write_all(request.as_bytes())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The parts of /proc/PID/stat the tests use.
#[derive(Debug, Clone)]
pub struct Stat {
    pub pid: u32,
    pub comm: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    pub starttime: u64,
}

/// Parses /proc/PID/stat; None if there is no such process.
pub fn stat(pid: u32) -> Option<Stat> {
    stat_at(Path::new(&format!("/proc/{pid}/stat")), pid)
}

fn stat_at(path: &Path, pid: u32) -> Option<Stat> {
    let s = std::fs::read_to_string(path).ok()?;
    let open = s.find('(')?;
    let close = s.rfind(')')?;
    let comm = s[open + 1..close].to_string();
    let f: Vec<&str> = s[close + 1..].split_whitespace().collect();
    Some(Stat {
        pid,
        comm,
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        pgrp: f.get(2)?.parse().ok()?,
        starttime: f.get(19)?.parse().ok()?,
    })
}

/// The process state letter (R, S, Z, …), or None if there is no such process.
pub fn proc_state(pid: u32) -> Option<char> {
    stat(pid).map(|s| s.state)
}

/// Alive = exists and is not a zombie. A zombie (dead but unreaped) counts as not alive;
/// `proc_state` tells the two apart.
pub fn pid_alive(pid: u32) -> bool {
    matches!(proc_state(pid), Some(c) if c != 'Z')
}

pub fn states(pids: &[u32]) -> Vec<(u32, Option<char>)> {
    pids.iter().map(|p| (*p, proc_state(*p))).collect()
}

/// Every process on the machine.
pub fn all_procs() -> Vec<Stat> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if let Some(s) = stat(pid) {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// Processes whose parent is `pid` (zombies included).
pub fn children_of(pid: u32) -> Vec<Stat> {
    all_procs().into_iter().filter(|s| s.ppid == pid).collect()
}

/// Processes in any of the process groups `groups`.
pub fn in_groups(groups: &[u32]) -> Vec<Stat> {
    let set: HashSet<u32> = groups.iter().copied().collect();
    all_procs()
        .into_iter()
        .filter(|s| set.contains(&s.pgrp))
        .collect()
}

/// True if some thread of `pid` named `conn` (the test worker's connection threads) is
/// sleeping in nanosleep, i.e. serving `/slow`.
pub fn worker_in_slow_request(pid: u32) -> bool {
    let Ok(rd) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    for e in rd.flatten() {
        let dir = e.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != "conn" {
            continue;
        }
        let sys = std::fs::read_to_string(dir.join("syscall")).unwrap_or_default();
        let nr: Option<i64> = sys.split_whitespace().next().and_then(|n| n.parse().ok());
        if nr == Some(libc::SYS_clock_nanosleep) || nr == Some(libc::SYS_nanosleep) {
            return true;
        }
    }
    false
}

/// A path to `name` in PATH, if any.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The path of `node`, or `None` after saying the test is skipped.
pub fn node() -> Option<String> {
    let node = which("node").map(|p| p.display().to_string());
    if node.is_none() {
        eprintln!("SKIPPED: node is not on PATH");
    }
    node
}

/// A TCP port that was free a moment ago, for programs that bind a fixed port themselves.
/// A port nothing listens on now, for a herd that binds it a moment later. Taken below
/// the kernel's ephemeral range (`ip_local_port_range`, 32768 and up by default): a port
/// from that range can become the source port of another test's client connection
/// between this pick and herd's bind, which then fails with "address already in use".
/// Tests of one binary take turns through a counter; the binaries run one at a time.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const FIRST: usize = 20_000;
    let end = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32_768)
        .clamp(FIRST + 1000, 65_535);
    let span = end - FIRST;
    // Each run starts elsewhere: a port a previous run left in TIME_WAIT is not retried first.
    let start = std::process::id() as usize * 97;
    for _ in 0..span {
        let port = (FIRST + (start + NEXT.fetch_add(1, Ordering::SeqCst)) % span) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if free("0.0.0.0") && free("127.0.0.1") {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{end}");
}

// ---------------------------------------------------------------------------
// The handoff modes (sticky, least-conn, proxy, plain channel workers): raw connections
// from chosen source addresses, one response at a time, and held-open connections.

/// A file of the repository's `examples` folder.
pub fn example(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(rel)
}

/// A TCP connection to 127.0.0.1:`port` from the source address `src` (every address of
/// 127.0.0.0/8 is local on Linux), with 10 s read and write timeouts.
pub fn connect_from(src: std::net::Ipv4Addr, port: u16) -> std::io::Result<std::net::TcpStream> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SockAddr::from(std::net::SocketAddrV4::new(src, 0)))?;
    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    s.connect_timeout(&SockAddr::from(to), Duration::from_secs(5))?;
    let s = std::net::TcpStream::from(s);
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Reads exactly one HTTP/1.1 response (body by Content-Length, chunked, or to EOF) from `s`;
/// returns (status, body).
pub fn read_response(s: &mut impl Read) -> Result<(u16, String), String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    // The head, byte by byte: nothing of a following response is consumed.
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => {
                return Err(format!(
                    "connection closed before a full response head: {:?}",
                    String::from_utf8_lossy(&buf)
                ))
            }
            Ok(_) => buf.push(byte[0]),
            Err(e) => {
                return Err(format!(
                    "reading the response head: {e} (got {:?})",
                    String::from_utf8_lossy(&buf)
                ))
            }
        }
        if buf.len() > 64 * 1024 {
            return Err("response head longer than 64 KiB".into());
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_ascii_lowercase())
        })
    };
    let mut body = Vec::new();
    if let Some(n) = header("content-length") {
        let n: usize = n
            .parse()
            .map_err(|_| format!("bad Content-Length in {head:?}"))?;
        body.resize(n, 0);
        s.read_exact(&mut body)
            .map_err(|e| format!("reading a body of {n} bytes: {e}"))?;
    } else if header("transfer-encoding").as_deref() == Some("chunked") {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte)
                    .map_err(|e| format!("reading a chunk size: {e}"))?;
                line.push(byte[0]);
            }
            let size = String::from_utf8_lossy(&line[..line.len() - 2]).into_owned();
            let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size {size:?}"))?;
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk)
                .map_err(|e| format!("reading a chunk: {e}"))?;
            if size == 0 {
                break; // (no trailers from our workers)
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut body)
            .map_err(|e| format!("reading a body to EOF: {e}"))?;
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Sends `GET path` on `s` (with `Connection: close` if `close`) and reads the response.
pub fn request_on(
    s: &mut std::net::TcpStream,
    path: &str,
    close: bool,
) -> Result<(u16, String), String> {
    let conn = if close { "Connection: close\r\n" } else { "" };
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{conn}\r\n").as_bytes())
        .map_err(|e| format!("sending the request: {e}"))?;
    read_response(s)
}

/// The worker pid in an answer: `pid=P` (herd-testworker, examples/handoff.py) or
/// `worker P` (the article's programs).
pub fn answer_pid(body: &str) -> Option<u32> {
    let digits = |rest: &str| {
        rest.chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    };
    let rest = body
        .split("pid=")
        .nth(1)
        .or_else(|| body.split("worker ").nth(1))?;
    digits(rest).parse().ok()
}

/// `GET path` on a new connection from `src` (closed after the answer); the answer must
/// be a 200 naming a worker pid. Returns (pid, body).
pub fn get_from(src: std::net::Ipv4Addr, port: u16, path: &str) -> Result<(u32, String), String> {
    let mut s = connect_from(src, port).map_err(|e| format!("connect from {src}: {e}"))?;
    let (status, body) = request_on(&mut s, path, true).map_err(|e| format!("from {src}: {e}"))?;
    if status != 200 {
        return Err(format!("from {src}: status {status}: {body:?}"));
    }
    let pid = answer_pid(&body).ok_or_else(|| format!("from {src}: no worker pid in {body:?}"))?;
    Ok((pid, body))
}

/// A connection kept open: one request answered (so we know the worker), then the start
/// of a second request head, so that no keep-alive idle timeout of the worker closes it.
/// Dropping it closes the connection.
pub struct Held {
    pub stream: std::net::TcpStream,
    pub pid: u32,
}

impl Held {
    pub fn open(src: std::net::Ipv4Addr, port: u16) -> Result<Held, String> {
        let mut stream = connect_from(src, port).map_err(|e| format!("connect: {e}"))?;
        let (status, body) = request_on(&mut stream, "/", false)?;
        if status != 200 {
            return Err(format!("status {status}: {body:?}"));
        }
        let pid = answer_pid(&body).ok_or_else(|| format!("no worker pid in {body:?}"))?;
        stream
            .write_all(b"GET / HTTP/1.1\r\n")
            .map_err(|e| format!("starting the second request: {e}"))?;
        Ok(Held { stream, pid })
    }
}

/// Number of open fds of `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `fd->target` of every open fd of `pid`, for failure messages.
pub fn fd_list(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            format!(
                "{}->{}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path())
                    .map(|t| t.display().to_string())
                    .unwrap_or_default()
            )
        })
        .collect()
}

/// The path of `python3`, or `None` after saying the test is skipped.
pub fn python() -> Option<String> {
    let p = which("python3").map(|p| p.display().to_string());
    if p.is_none() {
        eprintln!("SKIPPED: python3 is not on PATH");
    }
    p
}

/// Clients doing `GET /` on new connections in a loop until stopped; counts answers and
/// keeps the errors.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    pub ok: Arc<AtomicUsize>,
    pub errors: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Load {
    /// `clients` threads, each with one request at a time to 127.0.0.1:`port`.
    pub fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, ok, errors) = (stop.clone(), ok.clone(), errors.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match get_from(std::net::Ipv4Addr::LOCALHOST, port, "/") {
                            Ok(_) => {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => errors.lock().unwrap().push((Instant::now(), e)),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            ok,
            errors,
        }
    }

    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    /// Stops the clients; returns (answers, errors).
    pub fn finish(mut self) -> (usize, Vec<(Instant, String)>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let errors = std::mem::take(&mut *self.errors.lock().unwrap());
        (self.ok(), errors)
    }

    /// Stops the clients: the number of answers, or, if any request failed, how many of
    /// how many, with the first 10 (each with the ms after `since`).
    pub fn finish_clean(self, since: Instant) -> Result<usize, String> {
        let (ok, errors) = self.finish();
        if errors.is_empty() {
            return Ok(ok);
        }
        Err(format!(
            "{} of {} requests failed (ms after {since:?}, error): {:?}",
            errors.len(),
            ok + errors.len(),
            errors
                .iter()
                .map(|(at, e)| (at.saturating_duration_since(since).as_millis(), e))
                .take(10)
                .collect::<Vec<_>>()
        ))
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The pid of the newest worker of each slot that is alive, by slot. (A worker that
/// failed at start-up and was replaced is not among them.)
pub fn live_workers(herd: &Herd) -> std::collections::BTreeMap<usize, u32> {
    let mut out = std::collections::BTreeMap::new();
    for (slot, pid) in herd.spawned() {
        out.insert(slot, pid);
    }
    out.retain(|_, pid| pid_alive(*pid));
    out
}

/// Starts herd on a port picked with `free_port` by `make(port)`, for programs that must
/// know the port before herd starts (a Node cluster worker's `listen(port)`); picks another
/// port if someone took that one before herd could bind it (herd exits 1 saying "address
/// already in use"). Waits for `ready` workers. Returns herd and the port.
pub fn start_on_free_port(ready: usize, make: impl Fn(u16) -> Command) -> (Herd, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut herd = Herd::spawn(make(port), false, true);
        let deadline = Instant::now() + T;
        loop {
            if herd.count_log(") ready after ") >= ready {
                return (herd, port);
            }
            if let Some(st) = herd.try_exit() {
                herd.wait_eof(Duration::from_secs(5));
                if st.code() == Some(1) && herd.count_log("address already in use") > 0 {
                    break; // taken meanwhile: another port
                }
                herd.fail(&format!(
                    "herd exited with {st:?} before {ready} workers were ready"
                ));
            }
            if Instant::now() >= deadline {
                herd.fail(&format!("{ready} workers not ready within {T:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("five free ports in a row were taken before herd could bind them");
}

/// A rolling reload under `load`: SIGHUP, the log line `done` (after the reload started),
/// the old workers gone, 50 more answers; fails the test with the failed requests (ms after
/// the SIGHUP). Returns the old workers' pids.
pub fn reload_under(herd: &Herd, load: Load, done: &str) -> Vec<u32> {
    let old = herd.worker_pids();
    let mark = herd.mark(Out::Stderr);
    let hup = Instant::now();
    herd.signal(nix::sys::signal::Signal::SIGHUP);
    herd.wait_log_from(mark, done);
    herd.wait_gone(&old, T);
    let ok = load.ok();
    herd.wait_until("50 more answers", T, || load.ok() >= ok + 50);
    if let Err(e) = load.finish_clean(hup) {
        herd.fail(&format!("across the reload (SIGHUP at {hup:?}): {e}"));
    }
    old
}
