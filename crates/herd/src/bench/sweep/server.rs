//! A server of the sweep: the COMMAND under `herd run -i N` (this same executable) on a
//! fresh port with an admin address, or the `--compare` command as it is; waited for until
//! it answers, asked for its workers, and stopped with SIGTERM. Only what a user could do
//! from outside: herd's `/readyz` and `/status`, signals, `/proc`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::CpuSet;

/// How often readiness is asked while waiting.
const READY_POLL: Duration = Duration::from_millis(50);
/// One admin request's bound (herd answers in milliseconds).
const ADMIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a stopped server to exit before SIGKILL (herd's own kill timeout is
/// 10 s by default).
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A running server of the sweep.
pub struct Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    admin: Option<u16>,
    log: PathBuf,
}

/// A port nothing listens on now.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A plain GET: the status code and the body.
pub fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, ADMIN_TIMEOUT)?;
    s.set_read_timeout(Some(ADMIN_TIMEOUT))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not HTTP"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((status, body))
}

impl Server {
    /// `herd run -i N --listen 127.0.0.1:PORT --admin 127.0.0.1:ADMIN FLAGS -- COMMAND`, on
    /// `cpus` if given.
    pub fn herd(
        n: usize,
        flags: &[String],
        command: &[String],
        cpus: Option<CpuSet>,
    ) -> Result<Server, String> {
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find herd's own executable: {e}"))?;
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let admin = free_port().map_err(|e| format!("no free port: {e}"))?;
        let mut cmd = Command::new(exe);
        cmd.args(["run", "-i", &n.to_string(), "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin")
            .arg(format!("127.0.0.1:{admin}"));
        // Ready means every worker is: a load that starts with one worker up would go all
        // to it (its connections are kept for the whole run).
        if !flags.iter().any(|f| f.starts_with("--min-ready")) {
            cmd.args(["--min-ready", "all"]);
        }
        cmd.args(flags).arg("--").args(command);
        // A Node cluster program asks herd for the port it listens on: these say which
        // (PORT by convention, APP_PORT in herd's examples), so it is the one herd serves.
        let env = [("PORT", port.to_string()), ("APP_PORT", port.to_string())];
        Server::spawn(cmd, port, Some(admin), cpus, &env)
    }

    /// The `--compare` command as it is, with `PORT` and `WEB_CONCURRENCY` (N) in its
    /// environment, and `{port}` and `{workers}` in its arguments replaced by them.
    pub fn plain(n: usize, command: &[String], cpus: Option<CpuSet>) -> Result<Server, String> {
        let port = free_port().map_err(|e| format!("no free port: {e}"))?;
        let args: Vec<String> = command
            .iter()
            .map(|a| {
                a.replace("{port}", &port.to_string())
                    .replace("{workers}", &n.to_string())
            })
            .collect();
        let mut cmd = Command::new(&args[0]);
        cmd.args(&args[1..]);
        let env = [
            ("PORT", port.to_string()),
            ("WEB_CONCURRENCY", n.to_string()),
        ];
        Server::spawn(cmd, port, None, cpus, &env)
    }

    fn spawn(
        mut cmd: Command,
        port: u16,
        admin: Option<u16>,
        cpus: Option<CpuSet>,
        env: &[(&str, String)],
    ) -> Result<Server, String> {
        let log =
            std::env::temp_dir().join(format!("herd-bench-{}-{port}.log", std::process::id()));
        let out = std::fs::File::create(&log)
            .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(set) = cpus {
            // SAFETY: between fork and exec only sched_setaffinity runs, an
            // async-signal-safe system call on this (the child's) process.
            unsafe {
                cmd.pre_exec(move || {
                    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
                        .map_err(std::io::Error::from)
                });
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
        Ok(Server {
            child,
            port,
            admin,
            log,
        })
    }

    /// Each worker leads a process group of its own (herd's workers do).
    pub fn groups(&self) -> bool {
        self.admin.is_some()
    }

    /// The last lines of its output, for an error message.
    pub fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// Waits until it is ready: herd's `/readyz` says 200 (without herd: always) and `path`
    /// gets an HTTP answer.
    pub fn wait_ready(&mut self, path: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            // herd may call a worker ready before it listens (`--ready auto`): the path must
            // answer too.
            let ready = match self.admin {
                Some(a) => {
                    matches!(get(a, "/readyz"), Ok((200, _))) && get(self.port, path).is_ok()
                }
                None => get(self.port, path).is_ok(),
            };
            if ready {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited ({status}) before it was ready; its last lines:\n{}",
                    self.tail()
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "it did not become ready within {}; its last lines:\n{}",
                    crate::units::format_duration(within),
                    self.tail()
                ));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// The worker processes: from herd's `/status`, or the command's process and its
    /// children (without herd).
    pub fn workers(&self) -> Vec<u32> {
        match self.admin {
            Some(a) => {
                let Ok((200, body)) = get(a, "/status") else {
                    return Vec::new();
                };
                let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                v["status"]["workers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
                    .collect()
            }
            None => {
                let root = self.child.id();
                let kids = super::balance::children(root);
                if kids.is_empty() {
                    vec![root]
                } else {
                    kids
                }
            }
        }
    }

    /// SIGTERM, then waits (SIGKILL of its group after [`STOP_WAIT`]).
    pub fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_WAIT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(READY_POLL);
        }
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
