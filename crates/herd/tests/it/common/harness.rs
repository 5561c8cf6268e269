//! The real `herd` binary: [`Herd`] runs it with piped output, collects every line on
//! background threads, and offers waits on that output (lifecycle events, log lines,
//! spawned workers, the exit code) that fail with herd's captured output.
//!
//! herd runs with `HERD_LOG_FORMAT=json` unless a test sets that variable or passes
//! `--log-format`: its log lines are JSON objects, and tests wait for lifecycle records
//! by their stable `event` name and fields ([`Herd::wait_event`]), never by the English
//! sentence (`src/observe/lifecycle.rs` lists the names). The workers' output lines are
//! JSON objects too (`{"app","slot","pid","stream","line"}`): [`Herd::output`] gives
//! their text.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::http::{http_get, ident};
use super::load::Load;
use super::ports::free_port;
use super::procfs::{pid_alive, proc_state, stat, states};
use super::{poll_until, T};

/// The herd binary.
pub fn herd_bin() -> &'static str {
    env!("CARGO_BIN_EXE_herd")
}

/// The small HTTP worker of the tests (`src/bin/herd-testworker.rs`).
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
    /// The lifecycle event of each stderr line, if it is one (parallel to `stderr`).
    events: Vec<Option<Event>>,
    /// (slot, pid) from every `worker.spawned` event, in order.
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
        // A `--log-format` flag beats the variable; a test that sets it keeps its value.
        if !cmd.get_envs().any(|(k, _)| k == "HERD_LOG_FORMAT") {
            cmd.env("HERD_LOG_FORMAT", "json");
        }
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

    /// Waits for the first workers' output line at index >= `from` of `out` whose text
    /// ([`worker_text`]) satisfies `pred`; returns its index and text.
    pub fn wait_output_from(
        &self,
        out: Out,
        from: usize,
        what: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> (usize, String) {
        let (i, l) = self.wait_line_from(out, from, what, |l| pred(&worker_text(l)), timeout);
        (i, worker_text(&l))
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

    /// Lines of stderr containing `needle` so far.
    pub fn count_log(&self, needle: &str) -> usize {
        self.lines(Out::Stderr)
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// Waits for the first event `name` at stderr index >= `from` that satisfies `pred`;
    /// returns its index and the event.
    pub fn wait_event_from(
        &self,
        from: usize,
        name: &str,
        pred: impl Fn(&Event) -> bool,
    ) -> (usize, Event) {
        let deadline = Instant::now() + T;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            let found = st.events.iter().enumerate().skip(from).find_map(|(i, e)| {
                e.as_ref()
                    .filter(|e| e.name() == name && pred(e))
                    .map(|e| (i, e.clone()))
            });
            if let Some(found) = found {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.fail(&format!(
                    "timed out after {T:?} waiting for the event {name:?} (from line {from})"
                ));
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, (deadline - now).min(Duration::from_millis(200)))
                .unwrap()
                .0;
        }
    }

    /// Waits for the first event `name` that satisfies `pred`.
    pub fn wait_event_where(&self, name: &str, pred: impl Fn(&Event) -> bool) -> Event {
        self.wait_event_from(0, name, pred).1
    }

    /// Waits for the first event `name`.
    pub fn wait_event(&self, name: &str) -> Event {
        self.wait_event_from(0, name, |_| true).1
    }

    /// Waits for the `n`th (1-based, over the whole run) event `name` satisfying `pred`.
    pub fn wait_nth_event(&self, n: usize, name: &str, pred: impl Fn(&Event) -> bool) -> Event {
        let mut from = 0;
        let mut last = None;
        for _ in 1..=n {
            let (i, e) = self.wait_event_from(from, name, &pred);
            from = i + 1;
            last = Some(e);
        }
        last.unwrap_or_else(|| self.fail("wait_nth_event with n = 0"))
    }

    /// The events `name` at stderr index >= `from` so far.
    pub fn events_from(&self, from: usize, name: &str) -> Vec<Event> {
        let st = self.shared.state.lock().unwrap();
        st.events
            .iter()
            .skip(from)
            .flatten()
            .filter(|e| e.name() == name)
            .cloned()
            .collect()
    }

    /// The events `name` so far, with their stderr index.
    pub fn indexed_events(&self, name: &str) -> Vec<(usize, Event)> {
        let st = self.shared.state.lock().unwrap();
        st.events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.clone().filter(|e| e.name() == name)?)))
            .collect()
    }

    /// The events `name` so far.
    pub fn events(&self, name: &str) -> Vec<Event> {
        self.events_from(0, name)
    }

    /// Number of events `name` so far that satisfy `pred`.
    pub fn count_event(&self, name: &str, pred: impl Fn(&Event) -> bool) -> usize {
        self.events(name).iter().filter(|e| pred(e)).count()
    }

    /// The text of the workers' output lines on `out` (herd's JSON objects decoded; a line
    /// that is not one, e.g. in text mode, as it is).
    pub fn output(&self, out: Out) -> Vec<String> {
        self.lines(out).iter().map(|l| worker_text(l)).collect()
    }

    /// Waits until `n` workers have logged they are ready (counted over the whole run).
    pub fn wait_ready(&self, n: usize) {
        self.wait_nth_event(n, "worker.ready", |_| true);
    }

    /// The TCP port of herd's first `herd.listening` event on 127.0.0.1.
    pub fn port(&self) -> u16 {
        let e = self.wait_event_where("herd.listening", |e| {
            e.str("addr").starts_with("127.0.0.1:")
        });
        let addr = e.str("addr");
        addr["127.0.0.1:".len()..]
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("no port in the event {e:?}")))
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
        let e = self.wait_nth_event(n, "worker.spawned", |_| true);
        (e.slot(), e.pid())
    }

    /// Polls `cond` until true, or fails with `what` and herd's output.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !poll_until(timeout, Duration::from_millis(10), cond) {
            self.fail(&format!("timed out after {timeout:?} waiting until {what}"));
        }
    }

    /// Asserts that no worker process was ever started.
    pub fn assert_no_spawn(&self) {
        if !self.events("worker.spawned").is_empty() || !self.spawned().is_empty() {
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
            let event = (out != Some(Out::Stdout))
                .then(|| Event::parse(&line))
                .flatten();
            let mut st = shared.state.lock().unwrap();
            let spawned = match &event {
                Some(e) if e.name() == "worker.spawned" => Some((e.slot(), e.pid())),
                Some(_) => None,
                // A test of the text format: its workers are still learned, for Drop.
                None if out != Some(Out::Stdout) => spawned_text(&line),
                None => None,
            };
            if let Some((slot, pid)) = spawned {
                st.spawned.push((slot, pid));
                if learn {
                    if let Some(s) = stat(pid) {
                        st.starttimes.insert(pid, s.starttime);
                    }
                }
            }
            match out {
                Some(Out::Stdout) => st.stdout.push(line),
                Some(Out::Stderr) => {
                    st.stderr.push(line);
                    st.events.push(event);
                }
                None => {
                    st.stdout.push(line.clone());
                    st.stderr.push(line);
                    st.events.push(event);
                }
            }
            drop(st);
            shared.cv.notify_all();
        }
        shared.state.lock().unwrap().eof += 1;
        shared.cv.notify_all();
    });
}

/// The text of a workers' output line: the `line` of herd's JSON object, or the line as
/// it is if it is not one (text mode).
pub fn worker_text(line: &str) -> String {
    json(line)
        .and_then(|v| Some(v.get("line")?.as_str()?.to_string()))
        .unwrap_or_else(|| line.to_string())
}

/// A line of herd's JSON log as an object (None for a line that is not JSON).
pub fn json(line: &str) -> Option<serde_json::Value> {
    line.starts_with('{')
        .then(|| serde_json::from_str(line).ok())
        .flatten()
}

/// A lifecycle record of herd's JSON log: the line's object, with its `event` name.
#[derive(Clone)]
pub struct Event(pub serde_json::Value);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Event {
    /// The event of a log line: a JSON object with an `event` field.
    pub fn parse(line: &str) -> Option<Event> {
        if !line.starts_with('{') {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        v.get("event")?.as_str()?;
        Some(Event(v))
    }

    pub fn name(&self) -> &str {
        self.0["event"].as_str().unwrap_or_default()
    }

    /// A number field; panics (naming the event) if there is none.
    pub fn u64(&self, key: &str) -> u64 {
        self.0[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no number {key:?} in the event {self:?}"))
    }

    /// A text field; panics (naming the event) if there is none.
    pub fn str(&self, key: &str) -> &str {
        self.0[key]
            .as_str()
            .unwrap_or_else(|| panic!("no text {key:?} in the event {self:?}"))
    }

    /// A boolean field; panics (naming the event) if there is none.
    pub fn bool(&self, key: &str) -> bool {
        self.0[key]
            .as_bool()
            .unwrap_or_else(|| panic!("no boolean {key:?} in the event {self:?}"))
    }

    pub fn slot(&self) -> usize {
        self.u64("slot") as usize
    }

    pub fn pid(&self) -> u32 {
        self.u64("pid") as u32
    }

    pub fn app(&self) -> &str {
        self.str("app")
    }
}

/// (slot, pid) of a text-format `worker APP:SLOT spawned as pid PID` line: only for the
/// few tests of the text format, so that Drop knows their workers.
fn spawned_text(line: &str) -> Option<(usize, u32)> {
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
            if herd.events("worker.ready").len() >= ready {
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

/// A rolling reload under `load`, which must overlap it: 20 answers of the old workers
/// before the SIGHUP, the event `reload.done` (after the SIGHUP), the old workers gone, then 50
/// answers of the new workers after the reload is done. Fails the test with the failed
/// requests (ms after the SIGHUP). Returns the old workers' pids.
pub fn reload_under(herd: &Herd, load: Load) -> Vec<u32> {
    let old = herd.worker_pids();
    let answered_by = |load: &Load, pids: &dyn Fn(u32) -> bool| -> usize {
        load.by_pid()
            .iter()
            .filter(|(p, _)| pids(**p))
            .map(|(_, n)| n)
            .sum()
    };
    herd.wait_until("20 answers of the old workers before the reload", T, || {
        answered_by(&load, &|p| old.contains(&p)) >= 20
    });
    let mark = herd.mark(Out::Stderr);
    let hup = Instant::now();
    let before = load.ok();
    herd.signal(Signal::SIGHUP);
    herd.wait_event_from(mark, "reload.done", |_| true);
    let at_done = load.ok();
    herd.wait_gone(&old, T);
    let new_before = answered_by(&load, &|p| !old.contains(&p));
    herd.wait_until(
        &format!(
            "50 answers of the new workers after the reload (answers by pid: {:?})",
            load.by_pid()
        ),
        T,
        || answered_by(&load, &|p| !old.contains(&p)) >= new_before + 50,
    );
    eprintln!(
        "answers: {before} before the SIGHUP, {} while the reload ran, {} after it",
        at_done - before,
        load.ok() - at_done
    );
    if let Err(e) = load.finish_clean(hup) {
        herd.fail(&format!("across the reload (SIGHUP at {hup:?}): {e}"));
    }
    old
}
