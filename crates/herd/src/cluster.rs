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
//!             // Ends at herd's stop signal, after the connection in hand.
//!             for conn in herd::worker::incoming(&listener) {
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

use crate::config::flags::FlagsOnly;
use crate::config::Instances;
pub use crate::driver::hooks::{Event, Observer, WorkerRef};
use crate::listen::Balance;

/// Marks a process started by a [`Cluster`] primary as one of its workers.
const WORKER_MARK: &str = "HERD_CLUSTER_WORKER";
/// The port of a cluster when neither `PORT` nor a `--port` flag says otherwise.
const DEFAULT_PORT: u16 = 3000;

type OnEvent = Box<dyn Fn(&Event) + Send + Sync>;
type OnMessage = Box<dyn Fn(WorkerRef, &Value) -> Option<Value> + Send + Sync>;

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
    fn message(&self, from: WorkerRef, msg: &Value) -> Option<Value> {
        self.on_message.as_ref().and_then(|f| f(from, msg))
    }
}

/// A cluster of this same program; see the [module documentation](self).
pub struct Cluster {
    /// `herd run` flags given with [`Cluster::flag`], as on the command line.
    flags: Vec<String>,
    instances: Option<Instances>,
    balance: Option<Balance>,
    callbacks: Callbacks,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster::new()
    }
}

impl Cluster {
    /// One worker per CPU (`max`), balance `reuseport`, listening on `0.0.0.0:$PORT`
    /// (3000 when PORT is not set), or on the sockets of systemd's socket activation
    /// (`LISTEN_FDS`) when the program is started with them.
    pub fn new() -> Cluster {
        Cluster {
            flags: Vec::new(),
            instances: None,
            balance: None,
            callbacks: Callbacks {
                on_event: None,
                on_message: None,
            },
        }
    }

    /// How many workers (as `herd run -i`).
    pub fn instances(mut self, instances: Instances) -> Cluster {
        self.instances = Some(instances);
        self
    }

    /// How connections reach workers (as `herd run --balance`).
    pub fn balance(mut self, balance: Balance) -> Cluster {
        self.balance = Some(balance);
        self
    }

    /// Any other `herd run` flag with its value, e.g. `.flag("--kill-timeout", "5s")`;
    /// checked when [`Cluster::run`] starts. `--port` takes the place of `$PORT`.
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
        f: impl Fn(WorkerRef, &Value) -> Option<Value> + Send + Sync + 'static,
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
        let flags = match FlagsOnly::try_parse_from(&self.flags) {
            Ok(parsed) => parsed.flags,
            Err(e) => {
                eprintln!("herd: {e}");
                return ExitCode::from(2);
            }
        };
        let mut command = vec![exe.display().to_string()];
        command.extend(std::env::args().skip(1));
        let (name, mut app) = flags.into_config(command);
        app.instances = self.instances.or(app.instances);
        app.balance = self.balance.or(app.balance);
        // Started by socket activation with no address given: the inherited sockets are
        // the cluster's (as with `herd run`), not a port of its own besides them.
        let inherited_only = app.listen.is_empty() && crate::listen::Inherited::offered();
        if app.port.is_none() && !inherited_only {
            app.port = match std::env::var("PORT") {
                Err(_) => Some(DEFAULT_PORT),
                Ok(port) => match port.parse() {
                    Ok(port) => Some(port),
                    Err(_) => {
                        eprintln!("herd: PORT=`{port}` is not a port number (0 to 65535)");
                        return ExitCode::from(2);
                    }
                },
            };
        }
        let mark = vec![(WORKER_MARK.to_string(), "1".to_string())];
        crate::driver::run_foreground(name.as_deref(), app, mark, Some(Arc::new(self.callbacks)))
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
