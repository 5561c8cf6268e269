//! The CLI's side of the control socket: connect (starting the daemon when asked to),
//! send one request, read one response. Synchronous: a CLI command makes one round trip,
//! and a runtime would cost more than the round trip itself (`herd ls` must stay fast).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::time::{Duration, Instant};

use super::home::Home;
use super::protocol::{Envelope, Request, Response, VERSION};

/// How long a CLI waits for a daemon it started to answer. Why 10 s: the daemon answers
/// within milliseconds of its start; this only bounds a machine that is thrashing.
const DAEMON_START: Duration = Duration::from_secs(10);
/// How long a CLI that needs a daemon waits for the previous one to finish stopping its
/// apps: each within its kill timeout, 10 s by default.
const STOPPING_WAIT: Duration = Duration::from_secs(120);
/// A daemon that holds its lock without answering for this long is stopping, not starting.
const STOPPING_NOTICE: Duration = Duration::from_secs(1);
/// How often a CLI tries to connect while a daemon starts or stops.
const POLL: Duration = Duration::from_millis(5);

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon runs for this home (and none was to be started).
    #[error("no herd daemon runs for {0} (`herd start` starts one)")]
    NoDaemon(String),
    /// The daemon could not be started.
    #[error("the herd daemon did not start: {0}")]
    Start(String),
    /// The connection failed half-way.
    #[error("talking to the herd daemon at {path} failed: {source}")]
    Io {
        /// The socket.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
    /// The daemon's answer is not one of ours.
    #[error("the herd daemon answered something this herd does not understand ({0}); is it of another version? `herd kill` stops it")]
    Protocol(String),
}

/// A connection to the daemon of one home.
#[derive(Debug, Clone)]
pub struct Client {
    home: Home,
}

impl Client {
    /// A client of the daemon of `home`.
    pub fn new(home: Home) -> Client {
        Client { home }
    }

    /// The home.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Sends `request` to a running daemon.
    pub fn request(&self, request: Request) -> Result<Response, ClientError> {
        let stream = self.connect()?.ok_or_else(|| self.no_daemon())?;
        self.exchange(stream, request)
    }

    /// Sends `request` to a running daemon, and says which process answered: the daemon
    /// that got a `kill` is the one to wait for, not whichever holds the lock later (a
    /// CLI may start a new daemon as soon as the old one has closed its socket).
    pub fn request_from(&self, request: Request) -> Result<(Response, Peer), ClientError> {
        let stream = self.connect()?.ok_or_else(|| self.no_daemon())?;
        let pid = nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
            .map_err(|e| self.io(e.into()))?
            .pid() as u32;
        // Read before the request: a daemon that exits at once is seen to exit, not missed.
        let peer = Peer {
            pid,
            started: crate::observe::procstat::started(pid),
        };
        Ok((self.exchange(stream, request)?, peer))
    }

    /// Sends `request`, starting the daemon first when none runs. The flag says whether
    /// this call started it.
    pub fn request_starting(&self, request: Request) -> Result<(Response, bool), ClientError> {
        let (stream, started) = match self.connect()? {
            Some(s) => (s, false),
            None => (self.start_daemon()?, true),
        };
        Ok((self.exchange(stream, request)?, started))
    }

    fn no_daemon(&self) -> ClientError {
        ClientError::NoDaemon(self.home.dir().display().to_string())
    }

    fn io(&self, source: std::io::Error) -> ClientError {
        ClientError::Io {
            path: self.home.socket().display().to_string(),
            source,
        }
    }

    /// A connection, or `None` when no daemon listens.
    fn connect(&self) -> Result<Option<UnixStream>, ClientError> {
        match UnixStream::connect(self.home.socket()) {
            Ok(s) => Ok(Some(s)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.io(e)),
        }
    }

    fn exchange(&self, mut stream: UnixStream, request: Request) -> Result<Response, ClientError> {
        let mut bytes = serde_json::to_vec(&Envelope {
            v: VERSION,
            request,
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        bytes.push(b'\n');
        // A daemon that refuses this client answers and closes before reading it all:
        // the answer is still there to read after a failed write.
        let written = stream.write_all(&bytes);
        let mut line = String::new();
        let read = BufReader::new(stream).read_line(&mut line);
        if line.is_empty() {
            written.map_err(|e| self.io(e))?;
            read.map_err(|e| self.io(e))?;
            return Err(self.io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the daemon closed the connection without answering (see its log)",
            )));
        }
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// Starts `herd daemon` in a session of its own (no terminal's hangup reaches it),
    /// with its output in the daemon log, and waits until it answers. Two CLIs may race
    /// here: the daemon's lock lets one win, and both connect to it.
    fn start_daemon(&self) -> Result<UnixStream, ClientError> {
        self.home.create().map_err(|e| {
            ClientError::Start(format!("cannot create {}: {e}", self.home.dir().display()))
        })?;
        let exe = std::env::current_exe()
            .map_err(|e| ClientError::Start(format!("cannot find herd's own binary: {e}")))?;
        // A daemon holds the lock but does not answer: it is starting (another CLI started
        // it a moment ago: it answers soon) or stopping its apps after `herd kill` (its
        // socket is gone; a new daemon can start once it has exited).
        let since = Instant::now();
        let mut told = false;
        while self.lock_held() {
            if let Some(stream) = self.connect()? {
                return Ok(stream);
            }
            if !told && since.elapsed() > STOPPING_NOTICE {
                eprintln!(
                    "herd: the daemon of {} is stopping its apps; waiting for it to exit",
                    self.home.dir().display()
                );
                told = true;
            }
            if since.elapsed() > STOPPING_WAIT {
                return Err(ClientError::Start(format!(
                    "the previous daemon is still stopping its apps after {} s (see {})",
                    STOPPING_WAIT.as_secs(),
                    self.home.daemon_log().display()
                )));
            }
            std::thread::sleep(POLL);
        }
        crate::observe::logfiles::set_aside_if_larger(&self.home.daemon_log(), DAEMON_LOG_MAX);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.home.daemon_log())
            .map_err(|e| {
                ClientError::Start(format!(
                    "cannot open {}: {e}",
                    self.home.daemon_log().display()
                ))
            })?;
        let log2 = log
            .try_clone()
            .map_err(|e| ClientError::Start(e.to_string()))?;
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("daemon")
            .env("HERD_HOME", self.home.dir())
            // This CLI's own service manager and sockets are not the daemon's.
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        // SAFETY: setsid is async-signal-safe and only changes the child's own session.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| ClientError::Start(format!("cannot run `herd daemon`: {e}")))?;
        let deadline = Instant::now() + DAEMON_START;
        loop {
            if let Some(stream) = self.connect()? {
                // The daemon lives on in its own session; its exit is collected by init.
                std::thread::spawn(move || child.wait());
                return Ok(stream);
            }
            if let Ok(Some(status)) = child.try_wait() {
                // It lost the race to another daemon (which will answer) or failed.
                if !status.success() && !self.lock_held() {
                    return Err(ClientError::Start(format!(
                        "it exited with {status}; its log {} ends with:\n{}",
                        self.home.daemon_log().display(),
                        log_tail(&self.home.daemon_log(), 5)
                    )));
                }
            }
            if Instant::now() > deadline {
                return Err(ClientError::Start(format!(
                    "no answer after {} s; see {}",
                    DAEMON_START.as_secs(),
                    self.home.daemon_log().display()
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Whether a daemon holds the home's lock (it runs, or is stopping its apps).
    pub fn lock_held(&self) -> bool {
        let Ok(f) = std::fs::File::open(self.home.lock()) else {
            return false;
        };
        match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockSharedNonblock) {
            Ok(_) => false,
            Err((_, e)) => e == nix::errno::Errno::EWOULDBLOCK,
        }
    }
}

/// The daemon process that answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// Its pid.
    pub pid: u32,
    /// When it started (`None`: it had already ended).
    started: Option<u64>,
}

impl Client {
    /// Waits until the daemon process `peer` has ended (after `kill`), at most `timeout`.
    /// It has released the home's lock by then: a process closes its files before it
    /// ends (and its guardian holds none of them). Where its process cannot be seen (no
    /// /proc, another pid namespace), until the lock is free.
    pub fn wait_exit(&self, peer: &Peer, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let running = || match peer.started {
            Some(_) => crate::observe::procstat::started(peer.pid) == peer.started,
            None => self.lock_held(),
        };
        while running() {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(POLL);
        }
        true
    }
}

/// The daemon log is kept below this size: it is moved to `daemon.log.1` (replacing the
/// one before) when a daemon starts. Why 10 MiB: months of lifecycle records of a busy
/// machine, and small enough to read whole.
const DAEMON_LOG_MAX: u64 = 10 * 1024 * 1024;

/// The last `n` lines of a log, for error messages.
fn log_tail(path: &std::path::Path, n: usize) -> String {
    crate::observe::logfiles::tail(path, n)
        .unwrap_or_default()
        .join("\n")
}
