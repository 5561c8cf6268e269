//! The real `herd` binary: [`Herd`] runs it with piped output, collects every line on
//! background threads, and offers waits on that output (lifecycle events, log lines,
//! spawned workers, the exit code) that fail with herd's captured output.
//!
//! (A little over 500 lines: one type, [`Herd`], with the process handling and the waits
//! on its output that every test uses; the event waits are in `events.rs`.)
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

use super::events::{worker_text, Event};
use super::http::{http_get, ident};
use super::procfs::{proc_state, stat, states};
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
pub(super) struct State {
    stdout: Vec<String>,
    stderr: Vec<String>,
    /// The lifecycle event of each stderr line, if it is one (parallel to `stderr`).
    pub(super) events: Vec<Option<Event>>,
    /// (slot, pid) from every `worker.spawned` event, in order.
    spawned: Vec<(usize, u32)>,
    /// Start time (/proc stat field 22) of each spawned pid, read when its line arrived,
    /// so Drop never kills a recycled pid.
    starttimes: HashMap<u32, u64>,
    eof: usize,
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    pub(super) cv: Condvar,
}

/// A running herd. Dropping it SIGKILLs herd's process group, then every worker pid
/// learned from the log (only if that pid still belongs to the same process).
pub struct Herd {
    child: Child,
    pub(super) shared: Arc<Shared>,
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

    /// Waits until `find` finds something in the collected output; fails the test with
    /// `what` (and herd's output) after `timeout`.
    pub(super) fn wait_for<R>(
        &self,
        timeout: Duration,
        what: impl FnOnce() -> String,
        mut find: impl FnMut(&State) -> Option<R>,
    ) -> R {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if let Some(found) = find(&st) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(st);
                self.fail(&format!(
                    "timed out after {timeout:?} waiting for {}",
                    what()
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
        self.wait_for(
            timeout,
            || format!("a {out:?} line: {what}"),
            |st| {
                let lines = match out {
                    Out::Stdout => &st.stdout,
                    Out::Stderr => &st.stderr,
                };
                let (i, l) = lines.iter().enumerate().skip(from).find(|(_, l)| pred(l))?;
                Some((i, l.clone()))
            },
        )
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

    /// A second stop request, as a person's later Ctrl-C: sends `sig` until herd logs
    /// `event`. herd takes a repeat within 500 ms of the first request for that request
    /// again (`request.ignored`); each ignored one is answered by sending it again.
    pub fn signal_again(&self, sig: Signal, event: &str) -> Event {
        loop {
            let ignored = self.count_event("request.ignored", |e| e.str("what") == "shutdown");
            self.signal(sig);
            let mut seen = None;
            self.wait_until(
                &format!("{event} or request.ignored after {sig}"),
                T,
                || {
                    seen = self.events(event).into_iter().next();
                    seen.is_some()
                        || self.count_event("request.ignored", |e| e.str("what") == "shutdown")
                            > ignored
                },
            );
            if let Some(e) = seen {
                return e;
            }
        }
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
