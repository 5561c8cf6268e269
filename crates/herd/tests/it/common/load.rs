//! The suite's one load generator: client threads requesting `/` in a loop until stopped,
//! each either on a new connection per request or on one keep-alive connection (ureq's
//! pool, which opens another when the server closes one). Every answer must be a 200 that
//! names a worker pid; answers are counted per pid, failures kept with the time the request
//! was sent and the time it failed. A request has 5 s to connect and 10 s for each read
//! unless the load is started with a shorter [`Load::within`] timeout.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{agent_get, answer_pid, get_from_within, keep_alive_get};

/// How a client thread connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// A new connection per request (`Connection: close`).
    NewConnection,
    /// Requests on a kept-alive connection.
    KeepAlive,
    /// Requests on a kept-alive connection made by hand, as wrk makes them: a request on a
    /// connection the server closed under it fails (ureq would retry it).
    RawKeepAlive,
}

#[derive(Default)]
struct Counts {
    /// Answers per worker pid.
    by_pid: BTreeMap<u32, usize>,
    /// Failed requests.
    errors: Vec<Failure>,
}

/// A failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// When the request began (before its connection was made).
    pub sent: Instant,
    /// When it failed.
    pub at: Instant,
    /// Which client, and what went wrong.
    pub what: String,
}

/// Running clients; see the module documentation.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    ok: Arc<AtomicUsize>,
    counts: Arc<Mutex<Counts>>,
}

impl Load {
    /// `clients` threads on new connections to 127.0.0.1:`port`.
    pub fn start(port: u16, clients: usize) -> Load {
        Load::with(port, &vec![Client::NewConnection; clients])
    }

    /// One thread per entry of `clients`, to 127.0.0.1:`port`.
    pub fn with(port: u16, clients: &[Client]) -> Load {
        Load::within(
            port,
            clients,
            Duration::from_secs(5),
            Duration::from_secs(10),
        )
    }

    /// [`Load::with`], each request given `connect` to connect and `io` for each read and
    /// write: a request to a hung worker fails after `io` instead of waiting long.
    pub fn within(port: u16, clients: &[Client], connect: Duration, io: Duration) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let counts = Arc::new(Mutex::new(Counts::default()));
        let threads = clients
            .iter()
            .enumerate()
            .map(|(n, &kind)| {
                let (stop, ok, counts) = (stop.clone(), ok.clone(), counts.clone());
                std::thread::spawn(move || {
                    let agent = ureq::AgentBuilder::new()
                        .timeout_connect(connect)
                        .timeout(io)
                        .build();
                    let url = format!("http://127.0.0.1:{port}/");
                    let mut raw = None;
                    while !stop.load(Ordering::Relaxed) {
                        let sent = Instant::now();
                        let answer = match kind {
                            Client::NewConnection => {
                                get_from_within(Ipv4Addr::LOCALHOST, port, "/", connect, io)
                                    .map(|(pid, _)| pid)
                            }
                            Client::KeepAlive => match agent_get(&agent, &url) {
                                Ok((200, body)) => answer_pid(&body)
                                    .ok_or_else(|| format!("no worker pid in {body:?}")),
                                Ok((status, body)) => Err(format!("status {status}: {body:?}")),
                                Err(e) => Err(e),
                            },
                            Client::RawKeepAlive => {
                                keep_alive_get(&mut raw, port, connect, io).map(|(pid, _)| pid)
                            }
                        };
                        let mut c = counts.lock().unwrap();
                        match answer {
                            Ok(pid) => {
                                *c.by_pid.entry(pid).or_default() += 1;
                                ok.fetch_add(1, Ordering::SeqCst);
                            }
                            Err(e) => c.errors.push(Failure {
                                sent,
                                at: Instant::now(),
                                what: format!("client {n} ({kind:?}): {e}"),
                            }),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            ok,
            counts,
        }
    }

    /// Answers so far.
    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Answers so far per worker pid.
    pub fn by_pid(&self) -> BTreeMap<u32, usize> {
        self.counts.lock().unwrap().by_pid.clone()
    }

    /// Stops the clients; returns (answers, failures as (when it failed, what)).
    pub fn finish(self) -> (usize, Vec<(Instant, String)>) {
        let (ok, failures) = self.finish_failures();
        (ok, failures.into_iter().map(|f| (f.at, f.what)).collect())
    }

    /// Stops the clients; returns (answers, failures).
    pub fn finish_failures(mut self) -> (usize, Vec<Failure>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let errors = std::mem::take(&mut self.counts.lock().unwrap().errors);
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
