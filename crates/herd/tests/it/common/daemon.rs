//! Harness for the daemon's tests: a [`Daemon`] is a temporary HERD_HOME in which the
//! tests run `herd` CLI commands (each with a deadline, its output captured), read
//! `herd ls --json`, and poll for states. Dropping it runs `herd kill`, then makes sure
//! no process of that home is left (SIGKILL as a last resort) and removes the folder.
//!
//! Every test has its own home, and apps listen on `127.0.0.1:0` (the port is read back
//! from `ls`), so the tests run in parallel.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::{herd_bin, pid_alive, stat, worker_bin, TempPath, T};

/// Longest a single CLI command may take (a `herd start` waits for readiness; `herd kill`
/// for every app to stop): generous for a loaded 2-core machine.
pub const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// What a CLI command did.
#[derive(Debug, Clone)]
pub struct Ran {
    pub args: Vec<String>,
    /// The exit code (-1 if it died by a signal).
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Ran {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`herd {}` exited {}\n--- stdout ---\n{}--- stderr ---\n{}---",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// A worker of `ls --json`.
#[derive(Debug, Clone, PartialEq)]
pub struct Worker {
    pub slot: usize,
    pub pid: Option<u32>,
    pub generation: u64,
    pub state: String,
}

/// A temporary HERD_HOME and the CLI commands run in it.
pub struct Daemon {
    root: TempPath,
    home: PathBuf,
    started: Instant,
    /// Every daemon or worker pid seen, with its start time, for Drop's last resort.
    seen: Mutex<HashMap<u32, u64>>,
}

impl Default for Daemon {
    fn default() -> Self {
        Self::new()
    }
}

impl Daemon {
    /// A fresh home (not created: the CLI creates it when it starts the daemon).
    pub fn new() -> Daemon {
        let root = TempPath::new("daemon");
        std::fs::create_dir_all(&root.0).expect("create the test folder");
        let home = root.0.join("home");
        Daemon {
            root,
            home,
            started: Instant::now(),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// The HERD_HOME.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The test's folder (config files live here; it holds the home).
    pub fn root(&self) -> &Path {
        &self.root.0
    }

    /// `herd <args>` with HERD_HOME set, run in the test's folder, not yet started. A
    /// daemon it starts writes daemon.log as JSON (`HERD_LOG_FORMAT=json`): see
    /// [`Daemon::daemon_events`].
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(herd_bin());
        cmd.args(args)
            .env("HERD_HOME", &self.home)
            .env("HERD_LOG_FORMAT", "json")
            .current_dir(self.root())
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `herd <args>` to its end (at most CLI_DEADLINE).
    pub fn run(&self, args: &[&str]) -> Ran {
        self.run_command(self.command(args), args)
    }

    /// Runs a prepared command (a wrapper such as setpriv) to its end.
    pub fn run_command(&self, mut cmd: Command, args: &[&str]) -> Ran {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cannot run herd");
        let read = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                let _ = pipe.read_to_string(&mut s);
                s
            })
        };
        let out = read(Box::new(child.stdout.take().unwrap()));
        let err = read(Box::new(child.stderr.take().unwrap()));
        let deadline = Instant::now() + CLI_DEADLINE;
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail(&format!(
                    "`herd {}` did not end within {CLI_DEADLINE:?}",
                    args.join(" ")
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Ran {
            args: args.iter().map(|s| s.to_string()).collect(),
            code: status.code().unwrap_or(-1),
            stdout: out.join().unwrap_or_default(),
            stderr: err.join().unwrap_or_default(),
        }
    }

    /// Runs `herd <args>`, which must exit 0.
    pub fn ok(&self, args: &[&str]) -> Ran {
        let r = self.run(args);
        if r.code != 0 {
            self.fail(&format!("expected exit 0:\n{r}"));
        }
        r
    }

    /// Runs `herd <args>`, which must exit 1 (a failed request).
    pub fn refused(&self, args: &[&str]) -> Ran {
        let r = self.run(args);
        if r.code != 1 {
            self.fail(&format!("expected exit 1:\n{r}"));
        }
        r
    }

    /// `herd start FILE --only NAME` for each name in turn: apps of one file started one
    /// at a time. (One `herd start` of several apps races: see `daemon.rs`,
    /// `one_start_of_several_apps_starts_them_all`.)
    pub fn start_each(&self, file: &Path, names: &[&str]) {
        for name in names {
            self.ok(&["start", file.to_str().unwrap(), "--only", name]);
        }
    }

    /// The daemon's log so far.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.home.join("daemon.log")).unwrap_or_default()
    }

    /// The lifecycle records named `event` in the daemon's log so far.
    pub fn daemon_events(&self, event: &str) -> Vec<serde_json::Value> {
        self.daemon_log()
            .lines()
            .filter_map(super::events::json)
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Panics with `msg` and the end of the daemon's log.
    pub fn fail(&self, msg: &str) -> ! {
        let log = self.daemon_log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n  ");
        panic!(
            "{msg}\n(after {:.1} s)\n--- daemon.log (end) ---\n  {tail}\n---",
            self.started.elapsed().as_secs_f64()
        )
    }

    /// Polls `cond` every 20 ms until true, or fails with `what`.
    pub fn wait_until(&self, what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
        if !super::poll_until(timeout, Duration::from_millis(20), cond) {
            self.fail(&format!("timed out after {timeout:?} waiting until {what}"));
        }
    }

    /// Writes a file in the test's folder; returns its path.
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.root().join(name);
        std::fs::write(&path, text).expect("write a test file");
        path
    }

    /// Runs `herd start FILE` with `toml` as FILE in this (fresh) home; it must fail
    /// naming `file:line:` and `key`, and start nothing (not even the daemon). Returns
    /// what it printed.
    pub fn refuses_file(&self, toml: &str, line: usize, key: &str) -> Ran {
        let file = self.file("herd.toml", toml);
        let r = self.refused(&["start", file.to_str().unwrap()]);
        let at = format!("{}:{line}:", file.display());
        assert!(
            r.stderr.contains(&at) && r.stderr.contains(key),
            "stderr should name {at} and `{key}`:\n{r}"
        );
        assert_eq!(self.ok(&["ls", "--json"]).stdout.trim(), "[]");
        // The file is checked by the CLI before it talks to a daemon: none was started.
        assert_eq!(self.daemon_pid(), None);
        assert!(!self.home().exists(), "the home was created for a bad file");
        assert!(
            self.processes().is_empty(),
            "{:?}",
            self.describe_processes()
        );
        r
    }

    /// `herd ls --json`, parsed; remembers the pids for Drop.
    pub fn ls(&self) -> Vec<Value> {
        let r = self.ok(&["ls", "--json"]);
        let apps: Vec<Value> = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| self.fail(&format!("ls --json is not a JSON list ({e}):\n{r}")));
        for app in &apps {
            for w in workers_of(app) {
                if let Some(pid) = w.pid {
                    self.remember(pid);
                }
            }
        }
        apps
    }

    /// The app `name` of `ls --json`, if listed.
    pub fn find(&self, name: &str) -> Option<Value> {
        self.ls().into_iter().find(|a| a["name"] == name)
    }

    /// The app `name` of `ls --json`; fails if it is not listed.
    pub fn app(&self, name: &str) -> Value {
        self.find(name)
            .unwrap_or_else(|| self.fail(&format!("`{name}` is not in `herd ls`")))
    }

    /// The workers of `name`.
    pub fn workers(&self, name: &str) -> Vec<Worker> {
        workers_of(&self.app(name))
    }

    /// Pids of the online workers of `name`, by slot.
    pub fn online_pids(&self, name: &str) -> Vec<u32> {
        self.workers(name)
            .into_iter()
            .filter(|w| w.state == "online")
            .filter_map(|w| w.pid)
            .collect()
    }

    /// GETs until `pids` all answered on `port` (fresh connections; at most T).
    pub fn wait_answers_from(&self, port: u16, pids: &[u32]) {
        let want: std::collections::HashSet<u32> = pids.iter().copied().collect();
        let mut seen = std::collections::HashSet::new();
        let mut errors = Vec::new();
        self.wait_until(
            &format!(
                "every worker {want:?} answered on port {port} (seen {seen:?}, errors {errors:?})"
            ),
            T,
            || {
                match who(port) {
                    Ok((pid, _)) => {
                        seen.insert(pid);
                    }
                    Err(e) => errors.push(e),
                }
                want.is_subset(&seen)
            },
        );
        if !seen.is_subset(&want) {
            self.fail(&format!(
                "port {port} was answered by {seen:?}, not only by the listed workers {want:?}"
            ));
        }
    }

    /// Waits until `name` is running with exactly `n` workers, all online; returns their pids.
    pub fn wait_online(&self, name: &str, n: usize) -> Vec<u32> {
        let mut last = Vec::new();
        let mut pids = Vec::new();
        self.wait_until(
            &format!("`{name}` has exactly {n} online workers (last seen: {last:?})"),
            T,
            || {
                let app = self.app(name);
                last = workers_of(&app);
                pids = last.iter().filter_map(|w| w.pid).collect();
                app["state"] == "running"
                    && last.len() == n
                    && last.iter().all(|w| w.state == "online" && w.pid.is_some())
            },
        );
        pids
    }

    /// The TCP port `name` listens on (from `status.listen` of `ls --json`).
    pub fn port(&self, name: &str) -> u16 {
        let app = self.app(name);
        let addr = app["status"]["listen"][0]
            .as_str()
            .unwrap_or_else(|| self.fail(&format!("`{name}` listens nowhere: {app:#}")));
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no port in {addr:?}")))
    }

    /// The running daemon's pid (`herd version`, which starts none), or None.
    pub fn daemon_pid(&self) -> Option<u32> {
        let r = self.ok(&["version"]);
        let pid = r
            .stdout
            .split("(pid ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .and_then(|s| s.parse().ok());
        if let Some(pid) = pid {
            self.remember(pid);
        }
        pid
    }

    fn remember(&self, pid: u32) {
        if let Some(s) = stat(pid) {
            self.seen.lock().unwrap().insert(pid, s.starttime);
        }
    }

    /// Processes started for this home (the daemon, its guardian, workers): those whose
    /// environment has our HERD_HOME. Zombies are not counted.
    pub fn processes(&self) -> Vec<u32> {
        let want = format!("HERD_HOME={}", self.home.display());
        let me = std::process::id();
        let mut out = Vec::new();
        for s in super::all_procs() {
            if s.pid == me || s.state == 'Z' {
                continue;
            }
            let Ok(env) = std::fs::read(format!("/proc/{}/environ", s.pid)) else {
                continue;
            };
            if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
                out.push(s.pid);
            }
        }
        out
    }

    /// `processes()` with each one's command name, for messages.
    pub fn describe_processes(&self) -> Vec<(u32, String)> {
        self.processes()
            .into_iter()
            .map(|p| (p, stat(p).map(|s| s.comm).unwrap_or_default()))
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // `herd kill` (bounded: a hung kill must not hang the suite).
        if self.home.join("herd.sock").exists() {
            if let Ok(mut child) = self
                .command(&["kill"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                let deadline = Instant::now() + Duration::from_secs(30);
                while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let left = self.describe_processes();
        if !left.is_empty() {
            eprintln!(
                "NOTE: processes of {} left after `herd kill`: {left:?}; SIGKILLing them",
                self.home.display()
            );
        }
        for (pid, _) in left {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        for (&pid, &start) in self.seen.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            if stat(pid).map(|s| s.starttime) == Some(start) && pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// The workers of an app of `ls --json`.
pub fn workers_of(app: &Value) -> Vec<Worker> {
    app["status"]["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| Worker {
                    slot: w["slot"].as_u64().unwrap_or(u64::MAX) as usize,
                    pid: w["pid"].as_u64().map(|p| p as u32),
                    generation: w["generation"].as_u64().unwrap_or(0),
                    state: w["state"].as_str().unwrap_or("").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A herd.toml table for an app of `instances` test workers on 127.0.0.1:0, plus `extra`
/// lines (`key = value`).
pub fn testworker_app(name: &str, instances: usize, extra: &str) -> String {
    testworker_args_app(name, &[], instances, extra)
}

/// [`testworker_app`] with arguments for the test worker (e.g. `--ignore-term`).
pub fn testworker_args_app(name: &str, args: &[&str], instances: usize, extra: &str) -> String {
    let command: Vec<&str> = std::iter::once(worker_bin())
        .chain(args.iter().copied())
        .collect();
    format!(
        "[apps.{name}]\ncommand = {command:?}\ninstances = {instances}\nlisten = [\"127.0.0.1:0\"]\n{extra}\n"
    )
}

/// GET / on 127.0.0.1:`port`, expecting the test worker's 200; returns (pid, slot).
pub fn who(port: u16) -> Result<(u32, usize), String> {
    let (status, body) = super::http_get(&format!("http://127.0.0.1:{port}/"))?;
    if status != 200 {
        return Err(format!("status {status}: {body:?}"));
    }
    super::ident(&body).ok_or_else(|| format!("unexpected body {body:?}"))
}

/// True if nothing accepts connections on 127.0.0.1:`port`.
pub fn refuses(port: u16) -> bool {
    matches!(
        std::net::TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Duration::from_secs(2)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}
