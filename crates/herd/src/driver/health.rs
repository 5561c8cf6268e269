//! Health checks of one chosen worker (`--health-check`): the supervisor asks for a check
//! ([`Action::Check`](crate::supervisor::Action::Check)), this module lands an HTTP request
//! on that worker, and the result comes back as an [`Event::Checked`]. How a check reaches
//! one worker and no other depends on the transport:
//!
//! - `--proxy`: a connection to the worker's private port;
//! - the handoff modes: herd connects to a loopback listener of its own and hands the
//!   accepted side to the worker like a client's connection;
//! - `reuseport`: a connection to the app's address from `127.254.H.L`, which the steering
//!   program sends to slot `H * 256 + L` (`listen/steer.rs`).
//!
//! `shared` has one socket for all: the plan refuses the flag there. Each check is a task
//! on herd's runtime with a deadline, reading at most one status line, so a worker that
//! answers garbage, 10 MB or nothing costs herd a bounded buffer and a timer.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use super::Driver;
use crate::balance::accept::Conn;
use crate::balance::dispatch::{Candidate, Via};
use crate::config::Transport;
use crate::supervisor::Event;

/// The status line of an answer must fit in this many bytes.
const STATUS_LINE_MAX: usize = 1024;

/// A check's result, for the supervisor.
pub(super) type Checked = (u32, Result<Duration, String>);

/// What the driver needs to run checks.
pub(super) struct Prober {
    /// `--health-check`: the request and its timeout.
    check: Option<(Arc<[u8]>, Duration)>,
    results: mpsc::UnboundedSender<Checked>,
    /// reuseport: where checks connect to (their source address picks the slot).
    steered: Option<SocketAddr>,
    /// The handoff modes: the listener whose accepted side is handed to the worker.
    loopback: Option<std::net::TcpListener>,
}

/// How one check (or scrape) reaches its worker.
pub(super) enum Route {
    /// Connect to this address (from this source, if any).
    Connect(SocketAddr, Option<Ipv4Addr>),
    /// Already connected: herd's end of a connection handed to the worker.
    Connected(std::net::TcpStream),
}

impl Prober {
    /// A prober; with a health check, sending `request` and giving each check `timeout`,
    /// results going to `results`.
    pub(super) fn new(
        check: Option<(Vec<u8>, Duration)>,
        results: mpsc::UnboundedSender<Checked>,
    ) -> Prober {
        Prober {
            check: check.map(|(r, t)| (r.into(), t)),
            results,
            steered: None,
            loopback: None,
        }
    }
}

impl Driver {
    /// Sets up the paths to single workers (health checks, `--worker-metrics`) for this
    /// app's transport, once its listeners are known.
    pub(super) fn start_prober(&mut self) -> anyhow::Result<()> {
        let check = match (&self.plan.health_check, self.plan.policy.health) {
            (Some(check), Some(policy)) => Some((check.request(), policy.timeout)),
            _ => None,
        };
        if check.is_none() && self.plan.worker_metrics.is_none() {
            return Ok(());
        }
        let mut prober = Prober::new(check, self.checked_tx.clone());
        match self.plan.transport {
            Transport::Proxy(_) => {}
            Transport::Handoff => {
                let l = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
                l.set_nonblocking(true)?;
                prober.loopback = Some(l);
            }
            Transport::Inherit => {
                prober.steered = self.listeners.steer_probes();
                // The plan allows checks only where there is such an address, but an
                // inherited socket (socket activation) may have to be served shared.
                anyhow::ensure!(
                    prober.steered.is_some(),
                    "--health-check cannot reach one specific worker: no reuseport TCP listener on IPv4 or a wildcard address (an inherited socket without SO_REUSEPORT is served shared); use a handoff mode (--balance round-robin) or --proxy, or --watchdog"
                );
                self.steered = None;
            }
        }
        self.prober = Some(prober);
        Ok(())
    }

    /// Runs one health check of worker `pid`; its result comes back as an input.
    pub(super) fn check(&mut self, pid: u32) {
        let route = self.route_to(pid);
        let Some((p, (request, timeout))) = self
            .prober
            .as_ref()
            .and_then(|p| Some((p, p.check.clone()?)))
        else {
            return;
        };
        let tx = p.results.clone();
        let route = match route {
            Ok(route) => route,
            Err(e) => {
                let _ = tx.send((pid, Err(e)));
                return;
            }
        };
        tokio::spawn(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, exchange(route, &request)).await {
                Ok(r) => r.map(|()| started.elapsed()),
                Err(_) => Err(format!(
                    "no answer within {} (--health-timeout)",
                    crate::units::format_duration(timeout)
                )),
            };
            let _ = tx.send((pid, result));
        });
    }

    /// How a check or scrape gets to worker `pid`, or why it cannot.
    pub(super) fn route_to(&mut self, pid: u32) -> Result<Route, String> {
        let Some(p) = &self.prober else {
            return Err("no health check".into());
        };
        match self.plan.transport {
            Transport::Proxy(_) => match self.relays.as_ref().and_then(|r| r.port(pid)) {
                Some(port) => Ok(Route::Connect((Ipv4Addr::LOCALHOST, port).into(), None)),
                None => Err("its private port is not known".into()),
            },
            Transport::Inherit => {
                let (slot, _) = self.sup.worker_of_pid(pid).ok_or("not a worker")?;
                let target = p.steered.ok_or("no address to check through")?;
                Ok(Route::Connect(
                    target,
                    Some(crate::listen::probe_source(slot)),
                ))
            }
            Transport::Handoff => {
                let (ours, theirs) = self.loopback_pair().map_err(|e| e.to_string())?;
                self.hand_probe(pid, theirs)?;
                Ok(Route::Connected(ours))
            }
        }
    }

    /// A connected pair over herd's loopback listener: herd's end and the worker's.
    fn loopback_pair(&self) -> std::io::Result<(std::net::TcpStream, std::net::TcpStream)> {
        let l = self
            .prober
            .as_ref()
            .and_then(|p| p.loopback.as_ref())
            .ok_or_else(|| std::io::Error::other("no loopback listener"))?;
        let ours = std::net::TcpStream::connect(l.local_addr()?)?;
        let me = ours.local_addr()?;
        // Loopback completes the handshake before connect returns; anything else queued on
        // the listener is someone else's connection and is dropped.
        loop {
            let (theirs, from) = l.accept()?;
            if from == me {
                ours.set_nonblocking(true)?;
                return Ok((ours, theirs));
            }
        }
    }

    /// Hands the worker's end of a check to `pid`, as a client's connection of the first
    /// TCP listener.
    fn hand_probe(&mut self, pid: u32, theirs: std::net::TcpStream) -> Result<(), String> {
        let (slot, _) = self.sup.worker_of_pid(pid).ok_or("not a worker")?;
        let index = self
            .listeners
            .local_addrs()
            .iter()
            .position(|a| matches!(a, crate::listen::ListenAddr::Tcp(_)))
            .ok_or("no TCP listener")?;
        let via = match self.channels.get(&pid) {
            Some(l) if l.closed => return Err("its channel is closed".into()),
            Some(l) if l.serves.contains(&index) => Via::NewConn,
            Some(l) if l.takes_sockets() => Via::Socket,
            _ => return Err("it takes no handed-over connection".into()),
        };
        let peer = theirs.peer_addr().ok();
        let conn = Conn {
            index,
            fd: OwnedFd::from(theirs),
            peer,
            since: Instant::now(),
            tries: 0,
            replay: Vec::new(),
        };
        self.deliver(Candidate { slot, pid, via }, conn, false);
        Ok(())
    }

    /// A check's result reached the loop.
    pub(super) fn on_checked(&mut self, (pid, result): Checked) {
        tracing::debug!(app = %self.plan.name, pid, result = ?result, "health check of pid {pid}");
        self.queue.push_back(Event::Checked { pid, result });
    }
}

/// A connection to the worker `route` leads to.
pub(super) async fn connect(route: Route) -> Result<TcpStream, String> {
    Ok(match route {
        Route::Connected(s) => TcpStream::from_std(s).map_err(|e| e.to_string())?,
        Route::Connect(to, from) => {
            let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
            if let Some(ip) = from {
                socket
                    .bind((ip, 0).into())
                    .map_err(|e| format!("cannot bind the check's source {ip}: {e}"))?;
            }
            socket
                .connect(to)
                .await
                .map_err(|e| format!("cannot connect to {to}: {e}"))?
        }
    })
}

/// Sends the request and reads the status line: a 2xx or 3xx passes, as in Kubernetes.
async fn exchange(route: Route, request: &[u8]) -> Result<(), String> {
    let mut stream = connect(route).await?;
    stream
        .write_all(request)
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut buf = [0u8; STATUS_LINE_MAX];
    let mut n = 0;
    let line = loop {
        let read = stream
            .read(&mut buf[n..])
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?;
        if read == 0 {
            return Err(if n == 0 {
                "the connection closed without an answer".into()
            } else {
                format!(
                    "the connection closed in the status line: {}",
                    shown(&buf[..n])
                )
            });
        }
        n += read;
        if let Some(end) = buf[..n].iter().position(|b| *b == b'\n') {
            break &buf[..end];
        }
        if n == buf.len() {
            return Err(format!(
                "no status line in the first {STATUS_LINE_MAX} bytes: {}",
                shown(&buf[..40])
            ));
        }
    };
    match status(line) {
        Some(code) if (200..400).contains(&code) => Ok(()),
        Some(code) => Err(format!("status {code}")),
        None => Err(format!("not an HTTP answer: {}", shown(line))),
    }
}

/// The status code of an HTTP/1.x status line.
pub(crate) fn status(line: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    // Three digits, 100 to 999 (RFC 9112's 3DIGIT): u16's parser alone also takes `+20`
    // and `002` (found by fuzzing).
    let digits = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
    if !version.starts_with("HTTP/1.") || !digits || code.starts_with('0') {
        return None;
    }
    code.parse().ok()
}

/// At most 40 bytes of what a worker sent, printable.
fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]);
    format!("{:?}", text.trim_end())
}

#[cfg(test)]
mod tests {
    use super::status;

    #[test]
    fn status_lines() {
        assert_eq!(status(b"HTTP/1.1 200 OK\r"), Some(200));
        assert_eq!(status(b"HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status(b"HTTP/1.1 204"), Some(204));
        assert_eq!(status(b"garbage garbage"), None);
        assert_eq!(status(b"HTTP/2 200"), None);
        assert_eq!(status(b"HTTP/1.1 2000 x"), None);
        // Found by fuzzing: not three digits of 100 to 999.
        assert_eq!(status(b"HTTP/1.1 002 OK\r"), None);
        assert_eq!(status(b"HTTP/1.1 +20 OK"), None);
        assert_eq!(status(&[0xff, 0xfe]), None);
    }
}
