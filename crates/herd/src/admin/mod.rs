//! The admin HTTP listener: `/livez` and `/readyz` for orchestrators and load balancers
//! (Kubernetes probes, systemd, HAProxy), never on an app's port, off unless asked for.
//!
//! Theory of operation: the listener runs as tasks on the runtime of the app's driver, and
//! every answer that says something about the app comes *from the driver's loop*: a
//! request becomes a [`Probe`] sent to the loop, which answers with what it knows. So
//! `/livez` proves the loop itself turns (a stuck loop does not answer within
//! [`LOOP_ANSWER`], and `/livez` fails), and `/readyz` is the loop's view at that moment.
//! A slow or hostile client costs a task, never the loop: at most [`MAX_CONNECTIONS`] are
//! served at once (the others are closed at once), a request head may hold at most
//! [`MAX_HEAD`] bytes and must arrive within [`REQUEST_TIMEOUT`], and each connection
//! serves one request (no keep-alive: probes open a connection per check anyway).
//!
//! `/metrics` is answered the same way: the loop takes a snapshot, the exposition is
//! rendered off the loop, and this module only picks the format from the `Accept` header
//! (OpenMetrics when the scraper asks for it, as Prometheus does; the classic text format
//! otherwise).
//!
//! This module owns HTTP and the wording of the answers; it must not decide what is
//! ready (the driver's [`Report`] does) and knows nothing of the driver.

pub mod dashboard;
mod serve;

use std::io;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::listen::ListenAddr;

pub use serve::serve;

/// How long `/livez` and `/readyz` wait for the loop's answer. Why 1 s: the loop answers
/// in microseconds when it turns; Kubernetes' default probe timeout is 1 s, so a loop
/// that has not answered by then fails the probe either way.
pub const LOOP_ANSWER: Duration = Duration::from_secs(1);
/// Connections served at once. Why 32: probes come every few seconds from a handful of
/// clients; more than this at once is a flood, and each costs a task and a buffer.
pub const MAX_CONNECTIONS: usize = 32;
/// The longest request head read (hyper's smallest buffer). A probe's is ~100 bytes.
pub const MAX_HEAD: usize = 8192;
/// The longest a connection may take to send its request and get its answer. Why 5 s:
/// longer than any probe timeout, short enough that an idle connection is not kept.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One check of `/readyz`, as `?verbose` lists it: `[+]name ok` or `[-]name failed: why`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// A stable, short name (`workers`, `shutdown`; an app's name for the daemon).
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What it saw, e.g. `2 of 2 workers ready, 1 needed`.
    pub detail: String,
}

/// The loop's answer to `/readyz`: ready when every check passes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// The checks, in the order `?verbose` lists them.
    pub checks: Vec<Check>,
    /// One line per worker for `?verbose` (its state and health), after the checks; they
    /// do not decide readiness: one hung worker is replaced, the app still serves.
    pub workers: Vec<String>,
}

impl Report {
    /// Whether every check passes.
    pub fn ready(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}

/// A question to the driver's loop.
#[derive(Debug)]
pub enum Probe {
    /// `/livez`: answer at once (that the loop answers is the check).
    Live(oneshot::Sender<()>),
    /// `/readyz`: the loop's report.
    Ready(oneshot::Sender<Report>),
    /// `/status`: what `herd ls --json` shows, as JSON (`herd monit --admin`).
    Status(oneshot::Sender<String>),
    /// `/metrics/app`: the app's own metrics, in the Prometheus text format.
    AppMetrics(oneshot::Sender<String>),
    /// The dashboard's frame: every app as a JSON array of objects with `name`, `state`,
    /// `status` (what `herd ls --json` holds), `env_keys` (names only: never a value),
    /// `command`, `cwd` and `logs` (whether `/logs` can follow its workers).
    View(oneshot::Sender<String>),
    /// The log files to follow for a worker of an app, each with its stream's name
    /// (`out`, `err`, `all`, `herd`), or why there are none.
    LogPath {
        /// The app.
        app: String,
        /// The slot, if one.
        slot: Option<usize>,
        /// The files, or why none.
        reply: oneshot::Sender<Result<Vec<(String, std::path::PathBuf)>, String>>,
    },
    /// An action of a dashboard that had the token: answered with its outcome when done.
    Act {
        /// What to do.
        action: Action,
        /// What happened, or why not.
        reply: oneshot::Sender<Result<String, String>>,
    },
    /// `/metrics`: the exposition, in OpenMetrics text when `openmetrics`, else in the
    /// Prometheus text format (0.0.4).
    Metrics {
        /// The scraper accepts OpenMetrics.
        openmetrics: bool,
        /// The rendered exposition.
        reply: oneshot::Sender<String>,
    },
}

/// An action asked by a dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// The app's name.
    pub app: String,
    /// What to do.
    pub verb: Verb,
}

/// What a dashboard may do to an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// A rolling reload.
    Reload,
    /// Stop, then start (also starts a stopped app).
    Restart,
    /// Stop its workers.
    Stop,
    /// Add (or remove, below 0) this many workers.
    Scale(i64),
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.verb {
            Verb::Reload => write!(f, "reload of {}", self.app),
            Verb::Restart => write!(f, "restart of {}", self.app),
            Verb::Stop => write!(f, "stop of {}", self.app),
            Verb::Scale(by) => write!(f, "scale of {} by {by:+}", self.app),
        }
    }
}

/// Who may act on a listener's dashboard.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The token actions need (the daemon's); `None`: read-only (`herd run`'s).
    pub token: Option<String>,
}

/// How long `/metrics` waits for the exposition: it reads /proc for every worker and
/// renders off the loop, which takes milliseconds; Prometheus' default scrape timeout is
/// 10 s.
pub const METRICS_ANSWER: Duration = Duration::from_secs(5);

/// The admin listener's socket, bound before any worker starts so that a bad address
/// stops herd with a clear error.
#[derive(Debug)]
pub enum Listener {
    /// `host:port`.
    Tcp(tokio::net::TcpListener),
    /// `unix:/path`.
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Binds `addr` (inside the runtime). A unix socket file left by an earlier herd is
    /// replaced only if nothing answers on it.
    pub fn bind(addr: &ListenAddr) -> io::Result<Listener> {
        match addr {
            ListenAddr::Tcp(a) => {
                let std = std::net::TcpListener::bind(a)?;
                std.set_nonblocking(true)?;
                Ok(Listener::Tcp(tokio::net::TcpListener::from_std(std)?))
            }
            ListenAddr::Unix(path) => {
                if std::os::unix::net::UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                Ok(Listener::Unix(tokio::net::UnixListener::bind(path)?))
            }
        }
    }

    /// The address bound (the port the kernel chose for port 0), for the log.
    pub fn local_addr(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("? ({e})"), |a| a.to_string()),
            Listener::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        }
    }
}

/// The channel the listener asks the loop on: the loop keeps the receiver.
pub fn probes() -> (mpsc::UnboundedSender<Probe>, mpsc::UnboundedReceiver<Probe>) {
    mpsc::unbounded_channel()
}
