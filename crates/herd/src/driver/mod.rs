//! The thin async layer around the [`Supervisor`]: it turns signals, child exits, notify
//! datagrams and timers into supervisor events, and carries out the actions that come
//! back (spawn, stop, kill, steer, log, wake, exit). It makes no lifecycle decision itself.
//!
//! One current-thread tokio runtime drives everything; spawning happens on a dedicated
//! long-lived thread ([`spawn`]) and output writing on another ([`crate::output`]), so neither a
//! slow `fork` nor a slow terminal delays the supervisor.
//!
//! This file is the loop: the `Driver`'s state, waiting for the next input, feeding the
//! supervisor and carrying out its actions. Around it: `process` (what a process sets up
//! and the entry points), `inputs` (each input turned into events), `link` (what the driver
//! keeps per worker), `workers` (spawning and stopping them), `messages` (what they say),
//! `requests` (what the daemon asks), `handoff` and `relay` (connections herd accepts).

mod app_metrics;
mod contract;
pub mod guardian;
mod handoff;
mod health;
pub mod hooks;
mod inputs;
mod link;
mod listening;
mod liveness;
mod messages;
mod metrics;
mod node_drain;
mod probes;
mod process;
pub mod reap;
mod relay;
mod requests;
mod scheduled;
mod service;
pub mod signals;
pub mod spawn;
pub mod status;
mod watch;
mod workers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

pub use crate::output::Sink;
#[cfg(feature = "fuzzing")]
pub(crate) use health::status as health_status;
pub use process::{process_start, run, run_foreground, run_hosted, Host, Process, Reaping};
pub use requests::{AppRequest, RequestError, WorkerEnv};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::channel::framing::Frame;
use crate::channel::notify::{Datagram, NotifySocket};
use crate::channel::worker::Channel;
use crate::config::RunPlan;
use crate::listen::Listeners;
use crate::observe::lifecycle;
use crate::output::Output;
use crate::supervisor::{Action, Event, ExitStatus, NotifyMsg, Outcome, Supervisor, WorkerId};
use link::{Link, Pending, StopWith};
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
    /// A question of the admin listener.
    Probe(crate::admin::Probe),
    /// Time to tell systemd the loop turns (`WATCHDOG=1`).
    Watchdog,
    /// A health check's result.
    Checked(health::Checked),
    /// `--watchdog`: time to ask Node workers whether their event loop turns.
    LivenessTick,
    /// `--watch`: a burst of changes of the app's files.
    Changed(crate::observe::watch::Batch),
    Timer,
    /// `--cron-reload`: time to look at the wall clock (`scheduled.rs`).
    ScheduledReload,
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
    /// The drain preload given to Node workers (`node_drain`), in the notify socket's folder.
    node_drain: Option<std::path::PathBuf>,
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
    /// What herd told systemd so far (`herd run` only).
    announcer: Option<service::Announcer>,
    /// When to send systemd `WATCHDOG=1`, if it asked for it.
    watchdog: Option<tokio::time::Interval>,
    /// The admin listener's socket, until `run` starts serving it.
    admin: Option<crate::admin::Listener>,
    /// Questions of the admin listener, answered by the loop.
    probes: Option<mpsc::UnboundedReceiver<crate::admin::Probe>>,
    /// `--watchdog` with Node cluster workers: when to ask them (`liveness.rs`).
    liveness_tick: Option<tokio::time::Interval>,
    /// Health checks (`--health-check`), once started.
    prober: Option<health::Prober>,
    checked_tx: mpsc::UnboundedSender<health::Checked>,
    checked: mpsc::UnboundedReceiver<health::Checked>,
    /// What `/metrics` counts that the supervisor does not keep (`metrics.rs`).
    tally: metrics::Tally,
    /// Channels whose reader has not reported the end of the stream yet: a worker's last
    /// messages (its counters, flushed as it stops) may still come after its exit.
    open_channels: usize,
    /// The slots of workers that exited while their channel was still being read.
    exited_slots: HashMap<u32, usize>,
    /// `/metrics/app`: scrapes under way, PM2 values, scrape errors (`app_metrics.rs`).
    app_scrapes: app_metrics::AppScrapes,
    /// `--watch`: the watch of the app's files, and the bursts of changes it reports.
    watcher: Option<crate::observe::watch::Watcher>,
    changes: Option<mpsc::UnboundedReceiver<crate::observe::watch::Batch>>,
    /// Slots the supervisor last said should get new connections.
    route: Vec<usize>,
    /// What the steering program was last set to; `None` forces the next update.
    steered: Option<Vec<usize>>,
    /// `--cron-reload`: the schedule's timer, and when the loop next looks at it.
    reloads: Option<scheduled::ReloadTimer>,
    reload_wake: Option<Instant>,
    /// What each live worker's environment was made of, by pid (`herd env`).
    envs: HashMap<u32, spawn::StartedEnv>,
}

impl Driver {
    fn new(plan: RunPlan, host: Host) -> anyhow::Result<Driver> {
        // Everything that can fail because of the user's input fails here, before any
        // worker starts.
        let slots = plan.policy.instances;
        let listeners = match host.inherited {
            Some(inherited) => Listeners::adopt(&plan.listen, plan.balance, slots, inherited)?,
            None => Listeners::bind(&plan.listen, plan.balance, slots)?,
        };
        if let crate::config::Transport::Proxy(_) = plan.transport {
            // The plan checked the addresses it was given; inherited ones are known only now.
            if let Some(unix) = listeners
                .local_addrs()
                .into_iter()
                .find(|a| matches!(a, crate::listen::ListenAddr::Unix(_)))
            {
                return Err(crate::config::plan::PlanError::ProxyUnix(unix.to_string()).into());
            }
        }
        let admin = match &plan.admin {
            Some(addr) => Some(
                crate::admin::Listener::bind(addr)
                    .with_context(|| format!("cannot listen on --admin {addr}"))?,
            ),
            None => None,
        };
        let notify = NotifySocket::bind(&std::env::temp_dir(), host.app).with_context(|| {
            format!(
                "cannot create the notify socket in {}",
                std::env::temp_dir().display()
            )
        })?;
        let node_drain = match plan.node_drain {
            true => Some(node_drain::write(notify.dir()).with_context(|| {
                format!(
                    "cannot write the Node drain preload in {}",
                    notify.dir().display()
                )
            })?),
            false => None,
        };
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
        let (checked_tx, checked) = mpsc::unbounded_channel();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ u64::from(std::process::id());
        let sup = Supervisor::new(plan.policy.clone(), seed);
        Ok(Driver {
            plan,
            hooks: host.hooks,
            announcer: service::enabled(host.service).then(service::Announcer::default),
            watchdog: service::enabled(host.service)
                .then(service::watchdog_interval)
                .flatten()
                .map(|every| {
                    let mut t = tokio::time::interval(every);
                    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    t
                }),
            listeners,
            notify,
            node_drain,
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
            prober: None,
            tally: Default::default(),
            app_scrapes: Default::default(),
            open_channels: 0,
            exited_slots: HashMap::new(),
            liveness_tick: None,
            checked_tx,
            checked,
            admin,
            probes: None,
            steered: None,
            waiters: Vec::new(),
            memory_tick: memory_tick(memory_limit),
            reloads: None,
            reload_wake: None,
            envs: HashMap::new(),
            watcher: None,
            changes: None,
        })
    }

    async fn run(mut self) -> anyhow::Result<Outcome> {
        let proxy = if matches!(self.plan.transport, crate::config::Transport::Proxy(_)) {
            ", proxy"
        } else {
            ""
        };
        listening::log(&self.plan.name, &self.listeners, self.plan.balance, proxy);
        if let Some(listener) = self.admin.take() {
            let (tx, rx) = crate::admin::probes();
            info!(app = %self.plan.name, event = "admin.listening", addr = %listener.local_addr(),
                "admin listener on {}: /livez, /readyz, /metrics, and the dashboard (read-only) at /", listener.local_addr());
            if let Some(crate::listen::ListenAddr::Tcp(a)) = &self.plan.admin {
                if !a.ip().is_loopback() {
                    tracing::warn!(app = %self.plan.name,
                        "the admin listener on {a} is reachable from other hosts: anyone who reaches it reads the app's state and metrics; its dashboard takes no actions (herd run's has no token)");
                }
            }
            tokio::spawn(crate::admin::serve(
                listener,
                tx,
                crate::admin::Access::default(),
            ));
            self.probes = Some(rx);
        }
        let n = self.plan.policy.instances;
        info!(app = %self.plan.name, event = "herd.starting", instances = n,
            reason = %self.plan.instances_reason,
            "starting {n} worker{} of {}: {}", if n == 1 { "" } else { "s" },
            self.plan.program.display(), self.plan.instances_reason);
        if let Some(memory) = &self.plan.worker_memory {
            memory.log_start(&self.plan.name, n);
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
        if self.plan.balance.is_handoff() {
            let hold = self.relays.as_ref().map(relay::Relays::hold);
            self.handoff = Some(
                handoff::Handoff::start(
                    &self.listeners,
                    self.plan.balance,
                    self.plan.sticky_wait,
                    hold,
                )
                .context("cannot start accepting connections")?,
            );
        }
        self.start_prober()
            .context("cannot start the health checks")?;
        if let (Some(period), true) = (self.plan.policy.watchdog, self.plan.node_cluster) {
            self.liveness_tick = Some(liveness::interval(period));
        }
        // The last thing that can fail before the first worker starts.
        self.start_watching()?;
        self.schedule_reloads();
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
        let handoff_wake = self.handoff.as_ref().and_then(|h| h.wake());
        let reload_wake = self.reload_wake;
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
            _ = async {
                match self.watchdog.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => Input::Watchdog,
            Some(probe) = async {
                match self.probes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Input::Probe(probe),
            Some(c) = self.checked.recv() => Input::Checked(c),
            _ = async {
                match self.liveness_tick.as_mut() {
                    Some(t) => t.tick().await,
                    None => std::future::pending().await,
                }
            } => Input::LivenessTick,
            _ = async {
                match reload_wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => Input::ScheduledReload,
            Some(batch) = async {
                match self.changes.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => Input::Changed(batch),
            d = self.notify.recv() => Input::Notify(d),
            _ = sleep => Input::Timer,
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
            // Only a step changes what systemd is told.
            self.announce();
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
            Action::Check { pid } => self.check(pid),
            Action::Log(l) => {
                self.tally.log(&l);
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
            Action::Vacate { slot } => match self.listeners.vacate(slot) {
                Ok(true) => {
                    info!(app = %self.plan.name, event = "slot.vacated", slot,
                        "the connections queued for {}:{slot} moved to the live workers", self.plan.name);
                    // The fresh socket is steered as the group's new order says.
                    self.steered = None;
                }
                Ok(false) => {}
                Err(e) => warn!(app = %self.plan.name,
                    "cannot move the connections queued for {}:{slot}: {e}", self.plan.name),
            },
            Action::Exit(outcome) => return Some(outcome),
        }
        None
    }

    /// After the last exit: let the output readers reach EOF, then flush.
    async fn finish(mut self) {
        // What workers said just before they exited (their last counters) is read before
        // the counters are written for good.
        let deadline = Instant::now() + OUTPUT_TAIL;
        while self.open_channels > 0 {
            match tokio::time::timeout_at(deadline, self.frames.recv()).await {
                Ok(Some((pid, frame))) => self.on_frame(pid, frame),
                _ => break,
            }
        }
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
