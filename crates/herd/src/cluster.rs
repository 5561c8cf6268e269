//! `herd::Cluster`: the article's `startCluster(workerFn)` inside your own binary.
//!
//! The same program is the primary and every worker. Run normally, [`Cluster::run`] becomes
//! the primary: it re-executes the current binary once per worker (never `fork()` in a
//! threaded process) and supervises them with the same core as `herd run` (restarts,
//! graceful shutdown, rolling reload on SIGHUP/SIGUSR2, every balancing mode). In a worker,
//! `run` calls your worker function with a [`Worker`] and exits with its result.
//!
//! ```no_run
//! use std::io::{Read, Write};
//!
//! fn main() -> std::process::ExitCode {
//!     herd::Cluster::new()
//!         .on_event(|e| eprintln!("cluster: {e:?}"))
//!         .run(|worker| {
//!             let listener = worker.tcp_listener()?;
//!             worker.ready()?;
//!             for conn in listener.incoming() {
//!                 let mut conn = conn?;
//!                 let mut buf = [0u8; 1024];
//!                 let _ = conn.read(&mut buf)?;
//!                 conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nhi\n")?;
//!             }
//!             Ok(())
//!         })
//! }
//! ```
//!
//! A worker's JSON messages (one per line on its channel; [`Worker::send`]) reach
//! [`Cluster::on_message`] in the primary, whose answer, if any, goes back to that worker.

use std::io;
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use serde_json::Value;

use crate::config::{Cli, Command, Hooks, LogFormat, RunPlan};
use crate::observe::cpus::Instances;
use crate::supervisor::{ExitStatus, Log, Outcome};

/// Marks a process started by a [`Cluster`] primary as one of its workers.
const WORKER_MARK: &str = "HERD_CLUSTER_WORKER";

/// Which worker a message or event is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct From {
    /// The worker's slot, 0..N-1, kept across restarts and reloads.
    pub slot: usize,
    /// The worker's process id.
    pub pid: u32,
}

/// A worker's lifecycle, as Node's `cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The worker process was started (Node's `fork`).
    Fork(From),
    /// The worker said something for the first time: its code runs (Node's `online`).
    Online(From),
    /// The worker is ready for connections (Node's `listening`).
    Listening(From),
    /// The worker exited with `code`, or was killed by `signal` (Node's `exit`).
    Exit {
        /// Which worker.
        worker: From,
        /// Its exit code, when it exited by itself.
        code: Option<i32>,
        /// The signal that ended it, when one did.
        signal: Option<i32>,
    },
}

impl Event {
    /// The event a lifecycle log record stands for, if any.
    pub(crate) fn from_log(log: &Log) -> Option<Event> {
        Some(match *log {
            Log::Spawned { slot, pid } => Event::Fork(From { slot, pid }),
            Log::Ready { slot, pid, .. } => Event::Listening(From { slot, pid }),
            Log::Exited {
                slot, pid, status, ..
            } => {
                let (code, signal) = match status {
                    ExitStatus::Code(c) => (Some(c), None),
                    ExitStatus::Signal(s) => (None, Some(s)),
                };
                Event::Exit {
                    worker: From { slot, pid },
                    code,
                    signal,
                }
            }
            _ => return None,
        })
    }
}

/// What the primary's driver tells an embedding program. Called on the driver's thread:
/// keep it quick.
pub trait Observer: Send + Sync {
    /// A lifecycle event.
    fn event(&self, _event: &Event) {}
    /// An app message from a worker; the answer, if any, is sent back to it.
    fn message(&self, _from: From, _msg: &Value) -> Option<Value> {
        None
    }
}

type OnEvent = Box<dyn Fn(&Event) + Send + Sync>;
type OnMessage = Box<dyn Fn(From, &Value) -> Option<Value> + Send + Sync>;

struct Callbacks {
    on_event: Option<OnEvent>,
    on_message: Option<OnMessage>,
}

impl Observer for Callbacks {
    fn event(&self, event: &Event) {
        if let Some(f) = &self.on_event {
            f(event);
        }
    }
    fn message(&self, from: From, msg: &Value) -> Option<Value> {
        self.on_message.as_ref().and_then(|f| f(from, msg))
    }
}

/// A cluster of this same program; see the [module documentation](self).
pub struct Cluster {
    /// `herd run` flags, as on the command line.
    flags: Vec<String>,
    callbacks: Callbacks,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    /// One worker per CPU (`max`), balance `reuseport`, listening on `0.0.0.0:$PORT`
    /// (3000 when PORT is not set).
    pub fn new() -> Cluster {
        let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
        Cluster {
            flags: vec!["-p".into(), port],
            callbacks: Callbacks {
                on_event: None,
                on_message: None,
            },
        }
    }

    /// How many workers (as `herd run -i`).
    pub fn instances(self, instances: Instances) -> Cluster {
        let value = match instances {
            Instances::Count(n) => n.to_string(),
            Instances::Max => "max".into(),
            Instances::MaxMinus(k) => format!("-{k}"),
        };
        self.flag("--instances", &value)
    }

    /// How connections reach workers (as `herd run --balance`).
    pub fn balance(self, balance: crate::listen::Balance) -> Cluster {
        self.flag("--balance", &balance.to_string())
    }

    /// Any other `herd run` flag with its value, e.g. `.flag("--kill-timeout", "5s")`;
    /// checked when [`Cluster::run`] starts.
    pub fn flag(mut self, name: &str, value: &str) -> Cluster {
        self.flags.push(name.into());
        self.flags.push(value.into());
        self
    }

    /// Called for each worker lifecycle [`Event`].
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Cluster {
        self.callbacks.on_event = Some(Box::new(f));
        self
    }

    /// Called for each app message of a worker; the answer, if any, goes back to it.
    pub fn on_message(
        mut self,
        f: impl Fn(From, &Value) -> Option<Value> + Send + Sync + 'static,
    ) -> Cluster {
        self.callbacks.on_message = Some(Box::new(f));
        self
    }

    /// In the primary: supervises the workers until shutdown; the exit code is herd's (0
    /// clean, 1 cannot start, 2 bad flags, 3 a worker had to be killed, 4 errored). In a
    /// worker: runs `worker` and exits 0, or 1 with its error on stderr.
    pub fn run<F>(self, worker: F) -> ExitCode
    where
        F: FnOnce(Worker) -> io::Result<()>,
    {
        if std::env::var_os(WORKER_MARK).is_some() {
            return match worker(Worker::from_env()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("worker failed: {e}");
                    ExitCode::from(1)
                }
            };
        }
        self.primary()
    }

    fn primary(self) -> ExitCode {
        let exe = match std::env::current_exe() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("herd: cannot find this program's own path to start workers: {e}");
                return ExitCode::from(1);
            }
        };
        let mut argv = vec!["herd".to_string(), "run".into()];
        argv.extend(self.flags.iter().cloned());
        argv.push("--".into());
        argv.push(exe.display().to_string());
        argv.extend(std::env::args().skip(1));
        let args = match Cli::try_parse_from(argv) {
            Ok(Cli {
                command: Command::Run(args),
            }) => args,
            Err(e) => {
                eprintln!("herd: {e}");
                return ExitCode::from(2);
            }
            // The argv above always starts with `run`.
            Ok(_) => unreachable!("the cluster's command line is a `herd run`"),
        };
        crate::observe::logging::init(LogFormat::Text);
        let mut plan = match RunPlan::from_args(args, &crate::observe::cpus::cpu_budget()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("herd: {e}");
                return ExitCode::from(if e.is_usage() { 2 } else { 1 });
            }
        };
        plan.extra_env.push((WORKER_MARK.into(), "1".into()));
        plan.hooks = Some(Hooks(Arc::new(self.callbacks)));
        match crate::driver::run(plan) {
            Ok(Outcome::Clean) => ExitCode::SUCCESS,
            Ok(Outcome::Killed) => ExitCode::from(3),
            Ok(Outcome::Errored) => ExitCode::from(4),
            Err(e) => {
                tracing::error!("{e:#}");
                ExitCode::from(1)
            }
        }
    }
}

/// What a worker process knows of itself (the worker contract's variables).
#[derive(Debug, Clone)]
pub struct Worker {
    slot: usize,
    generation: u64,
}

impl Worker {
    fn from_env() -> Worker {
        let var = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
        Worker {
            slot: var("HERD_WORKER_ID").unwrap_or(0) as usize,
            generation: var("HERD_GENERATION").unwrap_or(0),
        }
    }

    /// The slot, 0..N-1.
    pub fn slot(&self) -> usize {
        self.slot
    }

    /// The reload generation (0, then 1 after the first reload, …).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The listening sockets herd passed (see [`herd_worker::listeners`]). Call it once.
    pub fn listeners(&self) -> Result<Vec<herd_worker::Listener>, herd_worker::Error> {
        herd_worker::listeners()
    }

    /// The first listening socket, as a TCP listener (the `PORT` of the cluster).
    pub fn tcp_listener(&self) -> io::Result<TcpListener> {
        self.listeners()
            .map_err(io::Error::other)?
            .into_iter()
            .find_map(herd_worker::Listener::into_tcp)
            .ok_or_else(|| io::Error::other("herd passed no TCP listening socket to this worker"))
    }

    /// The first listening socket, as a tokio TCP listener (call it inside a runtime).
    pub fn tokio_listener(&self) -> io::Result<tokio::net::TcpListener> {
        let listener = self.tcp_listener()?;
        listener.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(listener)
    }

    /// Says the worker is ready for connections (`READY=1`, see [`herd_worker::ready`]).
    pub fn ready(&self) -> io::Result<()> {
        herd_worker::ready().map_err(io::Error::other)
    }

    /// Sends one JSON message to the primary ([`Cluster::on_message`]).
    pub fn send(&self, msg: &Value) -> io::Result<()> {
        herd_worker::send(msg).map_err(io::Error::other)
    }
}
