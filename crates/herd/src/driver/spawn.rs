//! Starting worker processes with the worker contract in place.
//!
//! All spawns happen on one thread that lives as long as herd: PR_SET_PDEATHSIG fires when
//! the *thread* that forked a child exits, so a short-lived spawning thread would kill its
//! workers with it. Between fork and exec (in `pre_exec`, where only async-signal-safe
//! calls are allowed) the child:
//! - asks for SIGKILL when herd dies, and kills itself if herd already died (the race
//!   that PR_SET_PDEATHSIG alone leaves open);
//! - moves the listening sockets to fds 3, 4, …;
//! - writes its own pid into `LISTEN_PID`, which std's `Command` cannot know before fork
//!   (strict consumers such as libsystemd ignore the fds when it is not theirs).
//!
//! The spawn holds the reaper lock so that the reaper's `waitpid(-1)` cannot steal the
//! exit status std's `spawn` waits for when `exec` fails.

use std::ffi::OsString;
use std::io;
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};

use super::reap::{AppKey, Children};

use crate::supervisor::WorkerId;

/// Room for the widest pid (u32::MAX has 10 digits).
const PID_PLACEHOLDER: &str = "0000000000";

/// What the spawner thread needs for one worker.
#[derive(Debug)]
pub struct SpawnRequest {
    /// The worker this process is for, echoed in the [`SpawnResult`].
    pub worker: WorkerId,
    /// The app the worker belongs to (see [`super::reap::Children`]).
    pub app: AppKey,
    /// Where the [`SpawnResult`] goes.
    pub reply: tokio::sync::mpsc::UnboundedSender<SpawnResult>,
    /// The program to run, already resolved against PATH.
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<OsString>,
    /// The environment the worker starts from: herd's own when `None` (`herd run`), the
    /// environment of the `herd start` that added the app in the daemon.
    pub base_env: Option<Arc<Vec<(OsString, OsString)>>>,
    /// Variables set over the base environment, later ones winning (LISTEN_PID is added here).
    pub env: Vec<(String, String)>,
    /// The worker's working directory (herd's own when `None`).
    pub cwd: Option<PathBuf>,
    /// Run the worker as this user and these groups; herd must be root to switch.
    pub credentials: Option<crate::config::Credentials>,
    /// Fds to place at 3, 4, …: the listening sockets (owned by the driver's `Listeners`,
    /// which outlives every spawn), then the worker's end of its channel.
    pub fds: Vec<RawFd>,
    /// How many of `fds` are listening sockets (LISTEN_FDS; LISTEN_PID is set when > 0).
    pub listen_fds: usize,
    /// Fds that must stay open until the fork and be closed in herd after it (the
    /// worker's end of its channel).
    pub keep: Vec<OwnedFd>,
}

/// A started worker process.
#[derive(Debug)]
pub struct Child {
    /// Process id of the worker.
    pub pid: u32,
    /// herd's end of the pipe the worker's stdout goes to.
    pub stdout: OwnedFd,
    /// herd's end of the pipe the worker's stderr goes to.
    pub stderr: OwnedFd,
}

/// The answer to one [`SpawnRequest`].
#[derive(Debug)]
pub struct SpawnResult {
    /// The worker of the request.
    pub worker: WorkerId,
    /// The started process, or why it could not be started.
    pub result: io::Result<Child>,
}

/// Handle to the long-lived spawning thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    tx: mpsc::Sender<SpawnRequest>,
}

/// Variables of herd's own environment a worker must not inherit: they describe herd's
/// sockets, not the worker's.
const SCRUBBED: &[&str] = &[
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

impl Spawner {
    /// Starts the spawning thread; each result is sent on its request's `reply`.
    /// `children` is shared with the reaper (see [`super::reap::Children`]). One spawner
    /// serves every app of a process: the thread that forks must live as long as the
    /// process, since the workers' death signal is tied to it.
    pub fn start(children: Arc<Children>) -> io::Result<Spawner> {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        let parent = std::process::id();
        std::thread::Builder::new()
            .name("herd-spawner".into())
            .spawn(move || {
                for mut req in rx {
                    let worker = req.worker;
                    let app = req.app;
                    let reply = req.reply.clone();
                    let result = children.spawning(app, || spawn_one(&mut req, parent), |c| c.pid);
                    // The worker's ends of its fds are its own now.
                    req.keep.clear();
                    if let Err(unsent) = reply.send(SpawnResult { worker, result }) {
                        // Its driver is gone (the app stopped meanwhile): nobody would
                        // ever stop this worker.
                        if let Ok(child) = unsent.0.result {
                            let _ = nix::sys::signal::killpg(
                                nix::unistd::Pid::from_raw(child.pid as i32),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                    }
                }
                // Every driver is gone: herd is exiting. Park until the process ends so that the
                // death signal of the children is tied to the process, not to this thread.
                loop {
                    std::thread::park();
                }
            })?;
        Ok(Spawner { tx })
    }

    /// Queues a spawn, whose result arrives on the request's `reply`; false if the spawner
    /// thread is gone.
    pub fn spawn(&self, req: SpawnRequest) -> bool {
        self.tx.send(req).is_ok()
    }
}

/// Longest argv or environment herd passes (pointer arrays live on the child's stack).
const MAX_STRINGS: usize = 4096;

/// argv and envp as NUL-terminated byte strings, prepared before fork.
struct ExecStrings {
    program: Vec<u8>,
    argv: Vec<Vec<u8>>,
    envp: Vec<Vec<u8>>,
    /// Index in `envp` of `LISTEN_PID=0000000000`, rewritten in the child.
    listen_pid: Option<usize>,
}

fn nul_terminated(bytes: &[u8]) -> io::Result<Vec<u8>> {
    if bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "argument or variable contains a NUL byte",
        ));
    }
    let mut v = Vec::with_capacity(bytes.len() + 1);
    v.extend_from_slice(bytes);
    v.push(0);
    Ok(v)
}

/// A worker's environment but `LISTEN_PID` (written in the child): the base environment
/// (herd's own when `None`) without [`SCRUBBED`] and without what `env` sets, then `env`,
/// each name once, later settings winning (getenv takes the first).
fn environment(
    base: Option<&[(OsString, OsString)]>,
    env: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    use std::os::unix::ffi::OsStrExt;
    let inherited = |k: &OsString| {
        let key = k.as_bytes();
        !SCRUBBED.iter().any(|s| s.as_bytes() == key)
            && !env.iter().any(|(ours, _)| ours.as_bytes() == key)
    };
    let base: Vec<(OsString, OsString)> = match base {
        Some(base) => base.iter().filter(|(k, _)| inherited(k)).cloned().collect(),
        None => std::env::vars_os().filter(|(k, _)| inherited(k)).collect(),
    };
    let ours = env
        .iter()
        .enumerate()
        .filter(|(i, (k, _))| !env[i + 1..].iter().any(|(later, _)| later == k))
        .map(|(_, (k, v))| (OsString::from(k), OsString::from(v)));
    base.into_iter().chain(ours).collect()
}

/// What a worker's environment was made of, kept by the driver while the worker lives so
/// that `herd env` shows exactly what it started with (the base is shared, not copied).
#[derive(Debug, Clone)]
pub struct StartedEnv {
    /// [`SpawnRequest::base_env`].
    pub base_env: Option<Arc<Vec<(OsString, OsString)>>>,
    /// [`SpawnRequest::env`].
    pub env: Vec<(String, String)>,
    /// [`SpawnRequest::listen_fds`]: with sockets, the worker got `LISTEN_PID`.
    pub listen_fds: usize,
}

impl StartedEnv {
    /// The variables of worker `pid`, sorted by name (bytes that are not UTF-8 shown as
    /// U+FFFD).
    pub fn vars(&self, pid: u32) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> =
            environment(self.base_env.as_deref().map(|b| &b[..]), &self.env)
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    )
                })
                .collect();
        if self.listen_fds > 0 {
            vars.push(("LISTEN_PID".into(), pid.to_string()));
        }
        vars.sort();
        vars
    }
}

fn exec_strings(req: &SpawnRequest) -> io::Result<ExecStrings> {
    use std::os::unix::ffi::OsStrExt;
    let program = nul_terminated(req.program.as_os_str().as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in &req.args {
        argv.push(nul_terminated(a.as_bytes())?);
    }
    let mut envp = Vec::new();
    for (k, v) in environment(req.base_env.as_deref().map(|b| &b[..]), &req.env) {
        envp.push(nul_terminated(
            &[k.as_bytes(), b"=", v.as_bytes()].concat(),
        )?);
    }
    let mut listen_pid = None;
    if req.listen_fds > 0 {
        listen_pid = Some(envp.len());
        envp.push(nul_terminated(
            format!("LISTEN_PID={PID_PLACEHOLDER}").as_bytes(),
        )?);
    }
    if argv.len() >= MAX_STRINGS || envp.len() >= MAX_STRINGS {
        return Err(io::Error::other(format!(
            "more than {MAX_STRINGS} arguments or environment variables"
        )));
    }
    Ok(ExecStrings {
        program,
        argv,
        envp,
        listen_pid,
    })
}

fn spawn_one(req: &mut SpawnRequest, parent: u32) -> io::Result<Child> {
    let mut strings = exec_strings(req)?;
    let mut cmd = Command::new(&req.program);
    if let Some(cwd) = &req.cwd {
        cmd.current_dir(cwd);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Its own process group, so that stop and kill reach everything the worker started.
    cmd.process_group(0);
    let fds = req.fds.clone();
    let credentials = req.credentials.clone();
    // SAFETY: the closure runs in the child between fork and exec and only makes
    // async-signal-safe calls (setgroups, setgid, setuid, prctl, getppid, fcntl, dup2,
    // getpid, execve, _exit) and writes to memory the child owns; it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            // Before the death signal is asked for: changing credentials clears it.
            if let Some(c) = &credentials {
                switch_user(c)?;
            }
            child_setup(parent, &fds)?;
            exec(&mut strings)
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id();
    let stdout = child
        .stdout
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| io::Error::other("no stdout pipe"))?;
    let stderr = child
        .stderr
        .take()
        .map(OwnedFd::from)
        .ok_or_else(|| io::Error::other("no stderr pipe"))?;
    // `child` is dropped without waiting: the reaper collects every exit with waitpid(-1).
    Ok(Child {
        pid,
        stdout,
        stderr,
    })
}

/// Workers' open-file limit, when herd raised its own ([`raise_fd_limit`]).
static WORKER_NOFILE: std::sync::OnceLock<libc::rlimit> = std::sync::OnceLock::new();

/// Raises herd's soft open-file limit to the hard one: the primary of the handoff modes
/// holds connections in flight for every worker (a 1024 soft limit, common under Docker
/// and login shells, runs out at a few hundred connections in flight). Workers are started
/// with the limit herd was given, since programs that use `select()` break above 1024.
/// Returns the (old, new) soft limits when raised.
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0
        || lim.rlim_cur >= lim.rlim_max
    {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return None;
    }
    let _ = WORKER_NOFILE.set(lim);
    Some((lim.rlim_cur, lim.rlim_max))
}

/// Runs in the forked child. See the module documentation.
fn child_setup(parent: u32, fds: &[RawFd]) -> io::Result<()> {
    if let Some(lim) = WORKER_NOFILE.get() {
        // SAFETY: setrlimit is async-signal-safe and reads a struct set before any spawn.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and changes only this process.
    // Arguments are passed as unsigned long, the width the kernel reads.
    let r = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getppid cannot fail.
    if unsafe { libc::getppid() } as u32 != parent {
        // herd died between fork and prctl: nobody would kill us later.
        // SAFETY: _exit ends this process at once, which is what we want.
        unsafe { libc::_exit(1) };
    }
    let n = fds.len() as RawFd;
    if n == 0 {
        return Ok(());
    }
    // Two passes: first copy every socket above the target range (fds 3..3+n), so that
    // placing one cannot overwrite a source still to be placed.
    let mut high = [0 as RawFd; 64];
    if fds.len() > high.len() {
        return Err(io::Error::other("too many listening sockets (64 at most)"));
    }
    for (i, fd) in fds.iter().enumerate() {
        // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd >= 3+n or -1.
        let h = unsafe { libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3 + n) };
        if h < 0 {
            return Err(io::Error::last_os_error());
        }
        high[i] = h;
    }
    for (i, h) in high[..fds.len()].iter().enumerate() {
        // SAFETY: dup2 onto 3+i; the copy has no CLOEXEC so it survives exec. The high
        // copies keep CLOEXEC and vanish at exec.
        if unsafe { libc::dup2(*h, 3 + i as RawFd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Becomes the worker's user: supplementary groups, group, then user (the order in which
/// each step is still allowed). Runs in the child; allocates nothing.
fn switch_user(c: &crate::config::Credentials) -> io::Result<()> {
    let groups: &[libc::gid_t] = &c.groups;
    // SAFETY: setgroups reads `groups.len()` gids from a live slice; setgid and setuid
    // take plain ids. All three only change this (child) process.
    unsafe {
        if libc::setgroups(groups.len(), groups.as_ptr()) != 0
            || libc::setgid(c.gid) != 0
            || libc::setuid(c.uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Writes our pid into LISTEN_PID and execs; returns only on failure.
fn exec(s: &mut ExecStrings) -> io::Result<()> {
    if let Some(i) = s.listen_pid {
        // SAFETY: getpid cannot fail.
        let mut pid = unsafe { libc::getpid() } as u32;
        let mut digits = [0u8; 10];
        let mut len = 0;
        loop {
            digits[len] = b'0' + (pid % 10) as u8;
            len += 1;
            pid /= 10;
            if pid == 0 {
                break;
            }
        }
        let value = &mut s.envp[i]["LISTEN_PID=".len()..];
        for k in 0..len {
            value[k] = digits[len - 1 - k];
        }
        value[len] = 0;
    }
    let mut argv = [std::ptr::null::<libc::c_char>(); MAX_STRINGS];
    let mut envp = [std::ptr::null::<libc::c_char>(); MAX_STRINGS];
    for (slot, a) in argv.iter_mut().zip(&s.argv) {
        *slot = a.as_ptr().cast();
    }
    for (slot, e) in envp.iter_mut().zip(&s.envp) {
        *slot = e.as_ptr().cast();
    }
    // SAFETY: every pointer is to a NUL-terminated string that lives until exec replaces
    // the process; both arrays are NULL-terminated (fewer than MAX_STRINGS entries).
    unsafe { libc::execve(s.program.as_ptr().cast(), argv.as_ptr(), envp.as_ptr()) };
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        p.iter().map(|(k, v)| (k.into(), v.into())).collect()
    }

    /// The base without herd's sockets and without what the app sets, then the app's
    /// variables, each once, the last setting winning: what `herd env` shows is what exec
    /// gets.
    #[test]
    fn the_environment_a_worker_gets() {
        let base = pairs(&[
            ("LISTEN_FDS", "2"),
            ("A", "base"),
            ("B", "b"),
            ("NOTIFY_SOCKET", "/x"),
        ]);
        let env: Vec<(String, String)> = [("A", "1"), ("C", "2"), ("C", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            environment(Some(&base), &env),
            pairs(&[("B", "b"), ("A", "1"), ("C", "3")])
        );
        let started = StartedEnv {
            base_env: Some(Arc::new(base)),
            env,
            listen_fds: 1,
        };
        let vars = started.vars(42);
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["A", "B", "C", "LISTEN_PID"]);
        assert_eq!(vars[3].1, "42");
    }
}
