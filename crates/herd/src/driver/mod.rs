//! The thin async layer around the [`Supervisor`]: it turns signals, child exits, notify
//! datagrams and timers into supervisor events, and carries out the actions that come
//! back (spawn, stop, kill, steer, log, wake, exit). It makes no lifecycle decision itself.
//!
//! One current-thread tokio runtime drives everything; spawning happens on a dedicated
//! long-lived thread ([`spawn`]) and output writing on another ([`crate::output`]), so neither a
//! slow `fork` nor a slow terminal delays the supervisor.

mod contract;
pub mod guardian;
mod handoff;
pub mod hooks;
mod messages;
pub mod reap;
mod relay;
mod requests;
pub mod signals;
pub mod spawn;
pub mod status;
mod workers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};

pub use crate::output::Sink;
pub use requests::AppRequest;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::channel::framing::Frame;
use crate::channel::notify::{Datagram, NotifySocket};
use crate::channel::worker::Channel;
use crate::config::RunPlan;
use crate::listen::Listeners;
use crate::observe::lifecycle;
use crate::output::{Output, Stream};
use crate::supervisor::{Action, Event, ExitStatus, NotifyMsg, Outcome, Supervisor, WorkerId};
use requests::Waiter;
use spawn::{SpawnResult, Spawner};

/// How long herd waits, after the last worker exited, for output still in the pipes
/// (held open by a grandchild, say) before it exits anyway.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);
/// How long the report of a worker's exit waits for the end of its output (a pipe still
/// held by a process that left the worker's group would otherwise delay it forever).
const OUTPUT_TAIL: Duration = Duration::from_millis(500);
/// Why 10 s: often enough to follow a load test in the log, rare enough not to flood it.
/// Nothing is written while the counters do not change.
const COUNTERS_LOG_INTERVAL: Duration = Duration::from_secs(10);
/// With a memory limit: how often each worker's memory is read. Why 1 s: a leak grows over
/// minutes, and a /proc scan per worker each second costs well under 1 % of a core.
const MEMORY_POLL: Duration = Duration::from_secs(1);
/// least-conn: how often workers that take `"connection"` messages are asked how many of
/// them are still open (besides once after each connection handed over). Closes are seen
/// this late at most.
const LOAD_POLL: Duration = Duration::from_millis(100);

/// What a process that supervises workers shares between its apps: `herd run` has one
/// app, the daemon many.
pub struct Process {
    /// The guardian, if it could be forked.
    pub guardian: Option<Arc<guardian::Guardian>>,
    /// The runtime of the main thread.
    pub runtime: tokio::runtime::Runtime,
    /// The live workers of every app (see [`reap::Children`]).
    pub children: Arc<reap::Children>,
    /// The one spawning thread.
    pub spawner: Spawner,
}

/// Sets up what a process that supervises workers needs first, while it has one thread:
/// the guardian (forked, so it must come before any thread), the open-file limit, the
/// child subreaper, the runtime and the spawner thread. `herd run` and the daemon both
/// start with it.
pub fn process_start() -> anyhow::Result<Process> {
    let guardian = match guardian::Guardian::start() {
        Ok(g) => Some(Arc::new(g)),
        Err(e) => {
            warn!("no guardian process ({e}): if herd is SIGKILLed, grandchildren of workers may survive it");
            None
        }
    };
    if let Some((old, new)) = spawn::raise_fd_limit() {
        debug!("open-file limit raised from {old} to {new} (workers keep {old})");
    }
    if let Err(e) = reap::become_subreaper() {
        warn!(
            "cannot become a child subreaper ({e}): orphans of workers will be re-parented to init"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let children = Arc::new(reap::Children::default());
    let spawner = Spawner::start(children.clone()).context("cannot start the spawner thread")?;
    Ok(Process {
        guardian,
        runtime,
        children,
        spawner,
    })
}

/// Runs the plan to its end; the outcome decides herd's exit code. `hooks` are the
/// embedding program's (`herd::Cluster`); the CLI has none.
pub fn run(plan: RunPlan, hooks: Option<hooks::Hooks>) -> anyhow::Result<Outcome> {
    let Process {
        guardian,
        runtime,
        children,
        spawner,
    } = process_start()?;
    runtime.block_on(async move {
        // Handlers first: a child that exits at once must not be missed.
        let commands = signals::intents().context("cannot install signal handlers")?;
        let sigchld = signal(SignalKind::child()).context("cannot install the SIGCHLD handler")?;
        let host = Host {
            commands,
            reaping: Reaping::Own(sigchld),
            children,
            spawner,
            guardian,
            app: 0,
            sink: None,
            hooks,
        };
        let driver = Driver::new(plan, host)?;
        driver.run().await
    })
}

/// Runs one app in the foreground (`herd run`, `herd::Cluster`): herd's log set up in the
/// app's format, the app planned (an error is exit code 1, or 2 for flags that contradict
/// each other), run to its end, and the way it ended as herd's exit code. `extra_env` is
/// added to every worker's environment; `hooks` are an embedding program's.
pub fn run_foreground(
    name: Option<&str>,
    app: &crate::config::AppConfig,
    extra_env: Vec<(String, String)>,
    hooks: Option<hooks::Hooks>,
) -> std::process::ExitCode {
    crate::observe::logging::init(app.log_format.unwrap_or(crate::output::LogFormat::Text));
    let budget = crate::observe::cpus::cpu_budget();
    let mut plan = match crate::config::plan(name, app, None, &budget) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("{e}");
            return std::process::ExitCode::from(if e.is_usage() { 2 } else { 1 });
        }
    };
    plan.extra_env = extra_env;
    match run(plan, hooks) {
        Ok(outcome) => {
            let code = outcome.exit_code();
            info!(
                event = "herd.exiting",
                code,
                "herd exits with code {code}: {}",
                outcome.meaning()
            );
            std::process::ExitCode::from(code)
        }
        Err(e) => {
            tracing::error!("{e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs one app of a process that runs several (the daemon), on the calling thread, to
/// its end. The process-wide parts (reaping, spawning, the guardian) come from `host`.
pub fn run_hosted(plan: RunPlan, host: Host) -> anyhow::Result<Outcome> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let driver = Driver::new(plan, host)?;
        driver.run().await
    })
}

/// What one app's driver shares with the process it runs in: `herd run` has one app, the
/// daemon many, with one reaper, one spawner thread and one guardian between them.
pub struct Host {
    /// What the user asks of the app: signals in `herd run`, control requests in the daemon.
    pub commands: mpsc::UnboundedReceiver<AppRequest>,
    /// Where the exits of the app's workers come from.
    pub reaping: Reaping,
    /// The live workers of every app of the process (see [`reap::Children`]).
    pub children: Arc<reap::Children>,
    /// The process's spawning thread.
    pub spawner: Spawner,
    /// The process's guardian, if it could be started.
    pub guardian: Option<Arc<guardian::Guardian>>,
    /// This app's key in `children`.
    pub app: reap::AppKey,
    /// Where the workers' output goes: herd's stdout and stderr when `None`.
    pub sink: Option<Box<dyn crate::output::Sink>>,
    /// The embedding program's observer, if any.
    pub hooks: Option<hooks::Hooks>,
}

/// How a driver learns of its workers' exits.
pub enum Reaping {
    /// It reaps every child of the process itself on SIGCHLD (`herd run`: one app).
    Own(tokio::signal::unix::Signal),
    /// The process's reaper sends it the exits of its own workers (the daemon).
    Routed(mpsc::UnboundedReceiver<reap::Reaped>),
}

impl Reaping {
    async fn next(&mut self, children: &reap::Children) -> Vec<reap::Reaped> {
        match self {
            Reaping::Own(sigchld) => {
                if sigchld.recv().await.is_none() {
                    std::future::pending::<()>().await;
                }
                reap::reap_all(children)
            }
            Reaping::Routed(rx) => match rx.recv().await {
                Some(r) => {
                    let mut all = vec![r];
                    while let Ok(r) = rx.try_recv() {
                        all.push(r);
                    }
                    all
                }
                None => std::future::pending().await,
            },
        }
    }
}

/// herd's side of one worker's channel.
struct Link {
    channel: Channel,
    /// `seq` of the next cluster message herd sends.
    seq: u64,
    /// The worker spoke Node's cluster protocol: it is stopped like Node's `worker.kill()`.
    cluster: bool,
    /// It was told to disconnect; when its channel closes, it gets the stop signal.
    disconnecting: bool,
    /// The worker closed its end.
    closed: bool,
    /// Indexes of herd's listeners whose connections the worker takes as a Node cluster
    /// server (`newconn`, in the handoff modes).
    serves: std::collections::HashSet<usize>,
    /// A Node cluster worker that listens on a server of its own (not one of herd's).
    own_server: bool,
    /// Connections handed over as `"connection"` messages.
    sockets_handed: u64,
    /// Stopping: waiting for Node's `NODE_SOCKET_ALL_CLOSED` before the disconnect.
    draining_sockets: bool,
    /// It never acknowledged a handle: it does not read its channel, and gets no more.
    deaf: bool,
    /// It said something already (`herd::Cluster`'s `online` event).
    spoke: bool,
}

impl Link {
    fn new(channel: Channel) -> Link {
        Link {
            channel,
            seq: 0,
            cluster: false,
            disconnecting: false,
            closed: false,
            serves: Default::default(),
            own_server: false,
            sockets_handed: 0,
            draining_sockets: false,
            deaf: false,
            spoke: false,
        }
    }

    /// In the handoff modes, the worker takes connections as `"connection"` messages: it is
    /// not a Node cluster worker, or one that never listened on herd's sockets (the
    /// article's sticky-session worker listens on a port of its own and takes sockets).
    /// A cluster worker that has not listened yet takes nothing.
    fn takes_sockets(&self) -> bool {
        !self.deaf && (!self.cluster || (self.own_server && self.serves.is_empty()))
    }

    /// The `seq` for the next cluster message.
    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq - 1
    }
}

/// A spawn asked of the spawner thread and not answered yet.
struct Pending {
    slot: usize,
    /// How it is to be stopped, as the plan said when it was spawned.
    stop: StopWith,
    /// herd's end of the worker's channel.
    channel: std::os::unix::net::UnixStream,
    /// Its private port (`--proxy`).
    port: Option<u16>,
}

/// How a worker is asked to stop: fixed when it is spawned, so that a reload with a new
/// definition stops the old workers the way their own definition says.
#[derive(Debug, Clone, Copy)]
struct StopWith {
    signal: nix::sys::signal::Signal,
    /// The `"shutdown"` message rather than the signal (when it has a channel).
    message: bool,
}

impl StopWith {
    fn of(plan: &RunPlan) -> StopWith {
        StopWith {
            signal: plan.stop_signal,
            message: plan.stop_message,
        }
    }
}

/// One input of the main loop.
enum Input {
    AppRequest(AppRequest),
    Spawned(SpawnResult),
    Reaped(Vec<reap::Reaped>),
    /// A worker's exit, after its output was written.
    Exited(u32, ExitStatus),
    /// A message on a worker's channel.
    Frame(u32, Frame),
    /// Time to log the counters.
    CountersTick,
    /// A connection the primary accepted (handoff modes).
    Connection(crate::balance::accept::Conn),
    /// Sticky connections waited long enough for their own worker.
    HandoffWake,
    /// least-conn: time to ask workers for their open connections.
    LoadTick,
    /// Time to read the workers' memory (`max_memory_restart`).
    MemoryTick,
    /// A proxied worker's port answers.
    Listening(u32),
    Notify(std::io::Result<Datagram>),
    Timer,
}

/// Notify datagrams of unknown senders kept for a spawn in flight. Why 64: a worker sends
/// one or two before its spawn returns; anything beyond is not a worker's.
const UNPLACED_MAX: usize = 64;

/// The memory sampling clock, with a memory limit.
fn memory_tick(limit: Option<u64>) -> Option<tokio::time::Interval> {
    limit.map(|_| {
        let mut t = tokio::time::interval(MEMORY_POLL);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    })
}

struct Driver {
    plan: RunPlan,
    /// The embedding program's observer (`herd::Cluster`).
    hooks: Option<hooks::Hooks>,
    listeners: Listeners,
    notify: NotifySocket,
    spawner: Spawner,
    spawned: mpsc::UnboundedReceiver<SpawnResult>,
    spawned_tx: mpsc::UnboundedSender<SpawnResult>,
    commands: mpsc::UnboundedReceiver<AppRequest>,
    reaping: Reaping,
    children: Arc<reap::Children>,
    /// This app's key among the process's children.
    app_key: reap::AppKey,
    /// Exits of workers reaped before their spawn result was handled (a worker that exits at once).
    early_exits: HashMap<u32, ExitStatus>,
    /// Notify messages of workers whose spawn result was not handled yet.
    early_notify: HashMap<u32, Vec<NotifyMsg>>,
    /// Notify datagrams from unknown senders while a spawn was in flight, placed when a
    /// spawn result arrives (at most [`UNPLACED_MAX`]).
    unplaced: Vec<Datagram>,
    /// How each live worker is to be stopped, by pid.
    stop_with: HashMap<u32, StopWith>,
    output: Output,
    output_thread: std::thread::JoinHandle<()>,
    /// The stdout and stderr readers of each worker, by pid.
    readers: HashMap<u32, [tokio::task::JoinHandle<()>; 2]>,
    /// Exits whose output tail is being written; see `worker_exited`.
    exits_tx: mpsc::UnboundedSender<(u32, ExitStatus)>,
    exits: mpsc::UnboundedReceiver<(u32, ExitStatus)>,
    sup: Supervisor,
    /// Spawns not answered yet.
    spawning: HashMap<WorkerId, Pending>,
    /// The message channel of each live worker, by pid, with the `seq` of the next
    /// cluster message herd sends it.
    channels: HashMap<u32, Link>,
    frames_tx: mpsc::UnboundedSender<(u32, Frame)>,
    /// Workers' named counters (`{"herd":"count"}` messages).
    counters: crate::channel::messages::Counters,
    /// When the counters are written to the log (if they changed).
    counters_tick: tokio::time::Interval,
    frames: mpsc::UnboundedReceiver<(u32, Frame)>,
    /// Process groups of live workers (= their pids).
    groups: HashSet<u32>,
    wake: Option<Instant>,
    queue: VecDeque<Event>,
    guardian: Option<Arc<guardian::Guardian>>,
    /// The primary's accept loops and pending handoffs (the handoff modes).
    handoff: Option<handoff::Handoff>,
    /// Relays and private ports (`--proxy`).
    relays: Option<relay::Relays>,
    listening_tx: mpsc::UnboundedSender<u32>,
    listening: mpsc::UnboundedReceiver<u32>,
    /// least-conn: when to ask `"connection"` workers for their open connections.
    load_tick: Option<tokio::time::Interval>,
    /// Requests waiting for a state of the app.
    waiters: Vec<Waiter>,
    /// When to read the workers' memory, with a memory limit.
    memory_tick: Option<tokio::time::Interval>,
    /// Slots the supervisor last said should get new connections.
    route: Vec<usize>,
    /// What the steering program was last set to; `None` forces the next update.
    steered: Option<Vec<usize>>,
}

impl Driver {
    fn new(plan: RunPlan, host: Host) -> anyhow::Result<Driver> {
        // Everything that can fail because of the user's input fails here, before any
        // worker starts.
        let listeners = Listeners::bind(&plan.listen, plan.balance, plan.policy.instances)?;
        let notify = NotifySocket::bind(&std::env::temp_dir(), host.app).with_context(|| {
            format!(
                "cannot create the notify socket in {}",
                std::env::temp_dir().display()
            )
        })?;
        let (spawned_tx, spawned) = mpsc::unbounded_channel();
        let memory_limit = plan.policy.max_memory;
        let (output, output_thread) = match host.sink {
            Some(sink) => Output::start_to(sink),
            None => Output::start(plan.name.clone(), plan.log_format),
        }
        .context("cannot start the output thread")?;
        let (exits_tx, exits) = mpsc::unbounded_channel();
        let (frames_tx, frames) = mpsc::unbounded_channel();
        let (listening_tx, listening) = mpsc::unbounded_channel();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        let sup = Supervisor::new(plan.policy.clone(), seed);
        Ok(Driver {
            plan,
            hooks: host.hooks,
            listeners,
            notify,
            spawner: host.spawner,
            spawned,
            spawned_tx,
            commands: host.commands,
            reaping: host.reaping,
            children: host.children,
            app_key: host.app,
            early_exits: HashMap::new(),
            early_notify: HashMap::new(),
            unplaced: Vec::new(),
            stop_with: HashMap::new(),
            output,
            output_thread,
            readers: HashMap::new(),
            exits_tx,
            exits,
            sup,
            spawning: HashMap::new(),
            channels: HashMap::new(),
            frames_tx,
            frames,
            counters: Default::default(),
            counters_tick: {
                let mut t = tokio::time::interval(COUNTERS_LOG_INTERVAL);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            },
            groups: HashSet::new(),
            wake: None,
            queue: VecDeque::new(),
            guardian: host.guardian,
            handoff: None,
            relays: None,
            listening_tx,
            listening,
            load_tick: None,
            route: Vec::new(),
            steered: None,
            waiters: Vec::new(),
            memory_tick: memory_tick(memory_limit),
        })
    }

    async fn run(mut self) -> anyhow::Result<Outcome> {
        let proxy = if matches!(self.plan.transport, crate::config::Transport::Proxy(_)) {
            ", proxy"
        } else {
            ""
        };
        for addr in self.listeners.local_addrs() {
            info!(app = %self.plan.name, event = "herd.listening", addr = %addr, balance = %self.plan.balance,
                "listening on {addr} ({}{proxy})", self.plan.balance);
        }
        let n = self.plan.policy.instances;
        info!(app = %self.plan.name, instances = n,
            "starting {n} worker{} of {}: {}", if n == 1 { "" } else { "s" },
            self.plan.program.display(), self.plan.instances_reason);
        if self.plan.balance.is_handoff() {
            self.handoff = Some(
                handoff::Handoff::start(&self.listeners, self.plan.balance, self.plan.sticky_wait)
                    .context("cannot start accepting connections")?,
            );
        }
        match self.plan.transport {
            crate::config::Transport::Proxy(header) => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                let version = header.map(|h| match h {
                    crate::config::ProxyProtocol::V1 => crate::proxy::header::Version::V1,
                    crate::config::ProxyProtocol::V2 => crate::proxy::header::Version::V2,
                });
                self.relays = Some(
                    relay::Relays::start(threads, version)
                        .context("cannot start the relay threads")?,
                );
            }
            crate::config::Transport::Handoff
                if self.plan.balance == crate::listen::Balance::LeastConn =>
            {
                let mut tick = tokio::time::interval(LOAD_POLL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                self.load_tick = Some(tick);
            }
            _ => {}
        }
        self.queue.push_back(Event::Start);
        let outcome = loop {
            if let Some(outcome) = self.drain_queue() {
                break outcome;
            }
            if !self.waiters.is_empty() {
                self.answer_waiters();
            }
            let input = self.next_input().await;
            self.handle(input);
        };
        self.finish().await;
        Ok(outcome)
    }

    async fn next_input(&mut self) -> Input {
        let wake = self.wake;
        let handoff_wake = self.handoff.as_ref().and_then(|h| h.wake);
        let sleep = async move {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(c) = self.commands.recv() => Input::AppRequest(c),
            Some(r) = self.spawned.recv() => Input::Spawned(r),
            r = self.reaping.next(&self.children) => Input::Reaped(r),
            Some((pid, status)) = self.exits.recv() => Input::Exited(pid, status),
            Some((pid, frame)) = self.frames.recv() => Input::Frame(pid, frame),
                        _ = self.counters_tick.tick() => Input::CountersTick,
                        Some(conn) = async {
                match self.handoff.as_mut() {
                    Some(h) => h.conns.recv().await,
                    None => std::future::pending().await,
                }
            } => Input::Connection(conn),
            _ = async {
                                match handoff_wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => Input::HandoffWake,
            _ = async {
                match self.load_tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => Input::LoadTick,
            _ = async {
                match self.memory_tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => Input::MemoryTick,
            Some(pid) = self.listening.recv() => Input::Listening(pid),
            d = self.notify.recv() => Input::Notify(d),
            _ = sleep => Input::Timer,
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::AppRequest(c) => self.control(c),
            Input::Spawned(SpawnResult { worker, result }) => {
                let pending = self.spawning.remove(&worker);
                let slot = pending.as_ref().map_or(0, |p| p.slot);
                match result {
                    Ok(child) => {
                        if let Some(p) = pending {
                            self.stop_with.insert(child.pid, p.stop);
                            if let (Some(port), Some(r)) = (p.port, self.relays.as_mut()) {
                                r.watch(child.pid, port, self.listening_tx.clone());
                            }
                            match Channel::start(p.channel, child.pid, self.frames_tx.clone()) {
                                Ok(ch) => {
                                    self.channels.insert(child.pid, Link::new(ch));
                                }
                                Err(e) => warn!(
                                    pid = child.pid,
                                    slot,
                                    "no channel for worker {}:{slot} (pid {}): {e}",
                                    self.plan.name,
                                    child.pid
                                ),
                            }
                        }
                        let out = self
                            .output
                            .follow(child.stdout, slot, child.pid, Stream::Stdout);
                        let err = self
                            .output
                            .follow(child.stderr, slot, child.pid, Stream::Stderr);
                        self.readers.insert(child.pid, [out, err]);
                        self.groups.insert(child.pid);
                        if let Some(g) = &self.guardian {
                            g.register(child.pid);
                        }
                        self.queue.push_back(Event::Spawned {
                            worker,
                            pid: child.pid,
                        });
                        for msg in self.early_notify.remove(&child.pid).unwrap_or_default() {
                            self.queue.push_back(Event::Notify {
                                pid: child.pid,
                                msg,
                            });
                        }
                        // Its messages from before its pid was recorded, if any.
                        for d in std::mem::take(&mut self.unplaced) {
                            self.on_datagram(d);
                        }
                        if let Some(status) = self.early_exits.remove(&child.pid) {
                            self.worker_exited(child.pid, status);
                        }
                    }
                    Err(e) => self.queue.push_back(Event::SpawnFailed {
                        worker,
                        error: e.to_string(),
                    }),
                }
            }
            Input::Reaped(reaped) => {
                for r in reaped {
                    if r.app.is_none() {
                        debug!(pid = r.pid, "reaped an orphan process");
                    } else if self.groups.contains(&r.pid) {
                        self.worker_exited(r.pid, r.status);
                    } else {
                        // Its spawn result is still in the channel: handled with it.
                        self.early_exits.insert(r.pid, r.status);
                    }
                }
            }
            Input::Exited(pid, status) => self.queue.push_back(Event::Exited { pid, status }),
            Input::Frame(pid, frame) => self.on_frame(pid, frame),
            Input::CountersTick => self.log_counters(),
            Input::Connection(conn) => self.dispatch(conn),
            Input::HandoffWake => self.retry_waiting(),
            Input::LoadTick => self.ask_open_counts(),
            Input::MemoryTick => {
                // One /proc scan for every worker's process group.
                let pids: Vec<u32> = self.groups.iter().copied().collect();
                if let Ok(samples) = crate::observe::procstat::sample_groups(&pids) {
                    for (pid, sample) in pids.into_iter().zip(samples) {
                        if let Some(sample) = sample {
                            self.queue.push_back(Event::Memory {
                                pid,
                                rss: sample.rss,
                            });
                        }
                    }
                }
            }
            Input::Listening(pid) => {
                if let Some(r) = self.relays.as_mut() {
                    r.listening(pid);
                }
                self.queue.push_back(Event::Notify {
                    pid,
                    msg: NotifyMsg::PortOpen,
                });
            }
            Input::Notify(Ok(d)) => self.on_datagram(d),
            Input::Notify(Err(e)) => warn!("reading the notify socket failed: {e}"),
            Input::Timer => {
                self.wake = None;
                self.queue.push_back(Event::Timer);
            }
        }
    }

    fn on_datagram(&mut self, d: Datagram) {
        let Some(sender) = d.pid else {
            warn!("notify datagram without sender credentials: ignored");
            return;
        };
        // Workers whose spawn result is still in the channel are in `children` already;
        // a worker whose spawn has not returned yet is not (see `reap::Children`). Read
        // before the record: the sender existed before this read, and a spawn that ends
        // in between has recorded its pid by the time it stops counting.
        let in_flight = self.children.spawns_in_flight();
        let spawned = {
            let children = self.children.lock();
            let known = |pid: u32| self.groups.contains(&pid) || children.contains_key(&pid);
            // A worker's child (a shell wrapper's program, say) speaks for the worker.
            if known(sender) {
                Some(sender)
            } else {
                nix::unistd::getpgid(Some(Pid::from_raw(sender as i32)))
                    .ok()
                    .map(|pg| pg.as_raw() as u32)
                    .filter(|pg| known(*pg))
            }
        };
        if spawned.is_none() && in_flight {
            // Maybe a worker that spoke before its spawn returned: placed once it has.
            if self.unplaced.len() >= UNPLACED_MAX {
                self.unplaced.remove(0);
            }
            self.unplaced.push(d);
            return;
        }
        let pid = spawned.unwrap_or(sender);
        for g in &d.garbage {
            let slot = self.sup.worker_of_pid(pid).map(|(s, _)| s);
            warn!(
                pid = sender,
                slot, "garbage on NOTIFY_SOCKET from pid {sender}: {g}"
            );
        }
        if spawned.is_some() && !self.groups.contains(&pid) {
            // READY=1 sent before herd handled the spawn result: replayed with it.
            self.early_notify.entry(pid).or_default().extend(d.messages);
            return;
        }
        self.spoke(pid);
        for msg in d.messages {
            self.queue.push_back(Event::Notify { pid, msg });
        }
    }

    /// Feeds queued events to the supervisor and carries out its actions.
    fn drain_queue(&mut self) -> Option<Outcome> {
        let changed = !self.queue.is_empty();
        while let Some(event) = self.queue.pop_front() {
            let now = Instant::now().into_std();
            for action in self.sup.step(event, now) {
                if let Some(outcome) = self.apply(action) {
                    return Some(outcome);
                }
            }
        }
        self.steer();
        if changed {
            // Readiness, stops and exits change who may take connections.
            if let Some(h) = self.handoff.as_mut() {
                h.invalidate();
                if h.has_waiting() {
                    self.retry_waiting();
                }
            }
        }
        None
    }

    /// Points new connections at the ready slots. With none ready, at every current slot
    /// (they queue until a worker is back), never at the sockets of removed slots, which
    /// stay bound (a scale up binds new ones, and a socket nobody serves would hold its
    /// connections forever).
    fn steer(&mut self) {
        // Compared before anything is built: this runs after every input (once per
        // connection in the handoff modes).
        let unchanged = match &self.steered {
            Some(s) if self.route.is_empty() => s.iter().copied().eq(0..self.sup.instances()),
            Some(s) => *s == self.route,
            None => false,
        };
        if unchanged {
            return;
        }
        let target: Vec<usize> = if self.route.is_empty() {
            (0..self.sup.instances()).collect()
        } else {
            self.route.clone()
        };
        // Connections that waited for a ready worker may have one now.
        self.retry_waiting();
        if let Err(e) = self.listeners.steer(&target) {
            warn!("cannot steer connections to slots {target:?}: {e}");
        }
        self.steered = Some(target);
    }

    fn apply(&mut self, action: Action) -> Option<Outcome> {
        match action {
            Action::Spawn {
                worker,
                slot,
                generation,
            } => self.spawn(worker, slot, generation),
            Action::Stop { pid } => self.stop(pid),
            Action::Kill { pid } => self.signal(pid, Signal::SIGKILL),
            Action::Log(l) => {
                if let crate::supervisor::Log::Ready { pid, .. } = l {
                    // A worker is online before it is listening, whichever spoke first.
                    self.spoke(pid);
                }
                if let Some(h) = &self.hooks {
                    if let Some(e) = hooks::Event::from_log(&l) {
                        h.event(&e);
                    }
                }
                lifecycle::write(&self.plan.name, &l)
            }
            Action::Wake(at) => self.wake = Some(Instant::from_std(at)),
            Action::Route(slots) => self.route = slots,
            Action::Exit(outcome) => return Some(outcome),
        }
        None
    }

    /// After the last exit: let the output readers reach EOF, then flush.
    async fn finish(mut self) {
        self.log_counters();
        // Anything still alive in a group we started does not outlive herd.
        for pid in &self.groups {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + OUTPUT_DRAIN;
        let mut complete = true;
        for r in self.readers.values_mut().flatten() {
            if tokio::time::timeout_at(deadline, &mut *r).await.is_err() {
                complete = false;
                r.abort();
            }
        }
        if !complete {
            warn!("some worker output pipes were still open {} s after the last worker exited; not waiting longer",
                OUTPUT_DRAIN.as_secs());
        }
        self.output.close().await;
        let _ = self.output_thread.join();
        drop(self.notify);
    }
}
